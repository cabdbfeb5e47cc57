//! The data plane: one rskafka `PartitionClient` per assigned partition, at most one fetch
//! in flight per partition, and a small per-partition buffer.
//!
//! In-flight fetches are kept between calls to [`Fetcher::poll`]: when one partition
//! answers, its records are delivered at once and the other partitions' requests keep
//! waiting at the broker for the next call — nothing fetched is thrown away, and no
//! background task exists. A partition with buffered records is not fetched again until
//! its buffer is empty, so memory stays within about `fetch_max_bytes` per partition.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use reader_core::{ErrorKind, EventKind, EventSink, Message, Position, ReadError};
use rskafka::client::error::{Error as RsError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient};
use rskafka::record::RecordAndOffset;

use crate::classify::classify_rskafka;
use crate::config::{OffsetReset, StartAt};

/// One assigned partition.
pub(crate) struct Part {
    pub topic: Arc<str>,
    pub partition: i32,
    pub client: Arc<PartitionClient>,
    /// The next offset to fetch.
    pub next: i64,
    /// The next offset to deliver (lag is measured from here).
    pub delivered: i64,
    /// The last high watermark seen (-1: unknown yet).
    pub high_watermark: i64,
    /// Fetched, not yet delivered.
    pub buf: VecDeque<Message>,
    /// Bumped by seeks and resets: answers to older requests are dropped.
    pub epoch: u64,
    pub inflight: bool,
}

enum Failure {
    Rs(RsError),
    Timeout(Duration),
}

type Done = (usize, u64, Result<(Vec<RecordAndOffset>, i64), Failure>);

/// What the fetcher needs from the reader's configuration.
#[derive(Clone, Debug)]
pub(crate) struct FetchSettings {
    pub max_wait: Duration,
    pub fetch_max_bytes: i32,
    pub request_timeout: Duration,
    pub reset: OffsetReset,
}

/// The partitions of one session and their in-flight fetches.
pub(crate) struct Fetcher {
    pub parts: Vec<Part>,
    inflight: FuturesUnordered<BoxFuture<'static, Done>>,
    rr: usize,
    settings: FetchSettings,
}

/// Resolve a start position to an offset through the partition's leader (ListOffsets).
pub(crate) async fn resolve(
    client: &PartitionClient,
    to: StartAt,
    timeout: Duration,
    missing_permanent: bool,
) -> Result<i64, ReadError> {
    let at = match to {
        StartAt::Offset(n) => return Ok(n),
        StartAt::Earliest => OffsetAt::Earliest,
        StartAt::Latest => OffsetAt::Latest,
        StartAt::Timestamp(ms) => match rskafka::chrono::DateTime::from_timestamp_millis(ms) {
            Some(t) => OffsetAt::Timestamp(t),
            None => {
                return Err(ReadError::config(format!(
                    "seek/start time:{ms} is not a representable timestamp"
                )))
            }
        },
    };
    let what = format!(
        "ListOffsets ({to}) of {}/{}",
        client.topic(),
        client.partition()
    );
    let offset = match tokio::time::timeout(timeout, client.get_offset(at)).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(classify_rskafka(&e, &what, missing_permanent)),
        Err(_) => {
            return Err(ReadError::transient(
                ErrorKind::Timeout,
                format!("{what} got no answer within {timeout:?}"),
            ))
        }
    };
    if offset < 0 {
        // No record at or after the timestamp: the end of the log.
        return Box::pin(resolve(client, StartAt::Latest, timeout, missing_permanent)).await;
    }
    if let StartAt::Timestamp(ms) = to {
        if !timestamp_answer_holds(client, offset, ms, timeout, missing_permanent).await? {
            tracing::warn!(
                topic = client.topic(),
                partition = client.partition(),
                offset,
                "the broker answered ListOffsets by timestamp with a record older than asked; \
                 no record is that new, so reading starts at the end of the log"
            );
            return Box::pin(resolve(client, StartAt::Latest, timeout, missing_permanent)).await;
        }
    }
    Ok(offset)
}

/// Whether the record at `offset` (the broker's answer to "first record at or after `ms`")
/// really is that new. By definition it must be; some brokers (tansu 0.6.0) answer offset 0
/// instead of -1 when no record is new enough, which would replay the whole partition.
/// An answer at the end of the log (no record there yet) holds.
async fn timestamp_answer_holds(
    client: &PartitionClient,
    offset: i64,
    ms: i64,
    timeout: Duration,
    missing_permanent: bool,
) -> Result<bool, ReadError> {
    let what = format!(
        "checking the ListOffsets answer {offset} of {}/{}",
        client.topic(),
        client.partition()
    );
    match tokio::time::timeout(timeout, client.fetch_records(offset, 1..64 * 1024, 0)).await {
        Ok(Ok((records, _))) => Ok(records
            .iter()
            .find(|r| r.offset >= offset)
            .is_none_or(|r| r.record.timestamp.timestamp_millis() >= ms)),
        // Out of range: the answer is the end (or the start moved); trust it.
        Ok(Err(RsError::ServerError {
            protocol_error: ProtocolError::OffsetOutOfRange,
            ..
        })) => Ok(true),
        Ok(Err(e)) => Err(classify_rskafka(&e, &what, missing_permanent)),
        Err(_) => Err(ReadError::transient(
            ErrorKind::Timeout,
            format!("{what}: no answer within {timeout:?}"),
        )),
    }
}

fn to_message(topic: &Arc<str>, partition: i32, r: RecordAndOffset) -> Message {
    let rec = r.record;
    let mut m = Message::new(
        rec.value.map(Bytes::from).unwrap_or_default(),
        Position::Partition {
            topic: topic.clone(),
            partition,
            offset: r.offset,
        },
    );
    m.key = rec.key.map(Bytes::from);
    m.headers = rec
        .headers
        .into_iter()
        .map(|(k, v)| (k, Bytes::from(v)))
        .collect();
    let ms = rec.timestamp.timestamp_millis();
    m.timestamp = u64::try_from(ms)
        .ok()
        .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
    m
}

impl Fetcher {
    pub(crate) fn new(parts: Vec<Part>, settings: FetchSettings) -> Self {
        Self {
            parts,
            inflight: FuturesUnordered::new(),
            rr: 0,
            settings,
        }
    }

    /// `(topic, partition)` of every assigned partition, in index order.
    pub(crate) fn owned(&self) -> Vec<(Arc<str>, i32)> {
        self.parts
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .collect()
    }

    /// Whether any partition has records waiting to be delivered.
    pub(crate) fn has_buffered(&self) -> bool {
        self.parts.iter().any(|p| !p.buf.is_empty())
    }

    /// Move partition `i` to `offset`: drop its buffer and any answer still in flight.
    pub(crate) fn reposition(&mut self, i: usize, offset: i64) {
        if let Some(p) = self.parts.get_mut(i) {
            p.next = offset;
            p.delivered = offset;
            p.buf.clear();
            p.epoch += 1;
        }
    }

    /// Start a fetch for every partition with nothing buffered and nothing in flight.
    pub(crate) fn launch(&mut self, wait: Duration) {
        let max_wait = self.settings.max_wait.min(wait);
        let max_wait_ms = i32::try_from(max_wait.as_millis()).unwrap_or(i32::MAX);
        let bound = self.settings.request_timeout + max_wait;
        let max_bytes = self.settings.fetch_max_bytes.max(1);
        for (i, p) in self.parts.iter_mut().enumerate() {
            if p.inflight || !p.buf.is_empty() {
                continue;
            }
            p.inflight = true;
            let client = p.client.clone();
            let (offset, epoch) = (p.next, p.epoch);
            self.inflight.push(
                async move {
                    let r = match tokio::time::timeout(
                        bound,
                        client.fetch_records(offset, 1..max_bytes, max_wait_ms),
                    )
                    .await
                    {
                        Ok(Ok(x)) => Ok(x),
                        Ok(Err(e)) => Err(Failure::Rs(e)),
                        Err(_) => Err(Failure::Timeout(bound)),
                    };
                    (i, epoch, r)
                }
                .boxed(),
            );
        }
    }

    /// Wait for the next fetch to finish (`None` when nothing is in flight).
    async fn next_done(&mut self) -> Option<Done> {
        self.inflight.next().await
    }

    /// Wait until records are buffered or `deadline` passes, handling the answers that come
    /// in (and taking every other answer already there). `missing_permanent` tells whether
    /// an unknown topic is a permanent error by now.
    pub(crate) async fn poll(
        &mut self,
        deadline: tokio::time::Instant,
        wait: Duration,
        events: &EventSink,
        missing_permanent: &(dyn Fn(&str) -> bool + Send + Sync),
    ) -> Result<(), ReadError> {
        loop {
            if self.has_buffered() {
                return Ok(());
            }
            self.launch(wait);
            let done = match tokio::time::timeout_at(deadline, self.next_done()).await {
                Err(_) => return Ok(()),
                Ok(None) => {
                    tokio::time::sleep_until(deadline).await;
                    return Ok(());
                }
                Ok(Some(d)) => d,
            };
            self.complete(done, events, missing_permanent).await?;
            // Take whatever else already answered, without waiting.
            while let Some(Some(d)) = self.next_done().now_or_never() {
                self.complete(d, events, missing_permanent).await?;
            }
        }
    }

    async fn complete(
        &mut self,
        (i, epoch, result): Done,
        events: &EventSink,
        missing_permanent: &(dyn Fn(&str) -> bool + Send + Sync),
    ) -> Result<(), ReadError> {
        let Some(p) = self.parts.get_mut(i) else {
            return Ok(());
        };
        p.inflight = false;
        if p.epoch != epoch {
            // A seek or reset happened while this was in flight.
            return Ok(());
        }
        match result {
            Ok((records, hw)) => {
                p.high_watermark = hw;
                for r in records {
                    if r.offset < p.next {
                        continue;
                    }
                    p.next = r.offset + 1;
                    p.buf.push_back(to_message(&p.topic, p.partition, r));
                }
                Ok(())
            }
            Err(Failure::Timeout(d)) => Err(ReadError::transient(
                ErrorKind::Timeout,
                format!(
                    "fetch of {}/{} got no answer within {d:?}",
                    p.topic, p.partition
                ),
            )),
            Err(Failure::Rs(RsError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            })) => {
                let from = p.next;
                let to = match self.settings.reset {
                    OffsetReset::Earliest => StartAt::Earliest,
                    OffsetReset::Latest => StartAt::Latest,
                };
                let client = p.client.clone();
                let (topic, partition) = (p.topic.clone(), p.partition);
                let target = resolve(
                    &client,
                    to,
                    self.settings.request_timeout,
                    missing_permanent(&topic),
                )
                .await?;
                self.reposition(i, target);
                let detail = format!(
                    "{topic}/{partition}: offset {from} is out of range (OFFSET_OUT_OF_RANGE); auto_offset_reset={} moved to offset {target}",
                    self.settings.reset.as_str()
                );
                tracing::warn!("{detail}");
                events.emit(
                    EventKind::Gap,
                    Some(Position::Partition {
                        topic,
                        partition,
                        offset: target,
                    }),
                    detail,
                );
                Ok(())
            }
            Err(Failure::Rs(e)) => {
                let what = format!("fetch of {}/{} at offset {}", p.topic, p.partition, p.next);
                Err(classify_rskafka(&e, &what, missing_permanent(&p.topic)))
            }
        }
    }

    /// Up to `max` buffered messages, taken round-robin across partitions (in order within
    /// each partition).
    pub(crate) fn take(&mut self, max: usize) -> Vec<Message> {
        let n = self.parts.len();
        let mut out = Vec::new();
        if n == 0 || max == 0 {
            return out;
        }
        let start = self.rr % n;
        self.rr = self.rr.wrapping_add(1);
        for k in 0..n {
            if out.len() >= max {
                break;
            }
            let p = &mut self.parts[(start + k) % n];
            let take = (max - out.len()).min(p.buf.len());
            for m in p.buf.drain(..take) {
                if let Position::Partition { offset, .. } = &m.position {
                    p.delivered = offset + 1;
                }
                out.push(m);
            }
        }
        out
    }

    /// Records written and not delivered yet, per partition (`None` while the high
    /// watermark is unknown).
    pub(crate) fn lags(&self) -> Vec<(Arc<str>, i32, Option<i64>)> {
        self.parts
            .iter()
            .map(|p| {
                let lag = (p.high_watermark >= 0).then(|| (p.high_watermark - p.delivered).max(0));
                (p.topic.clone(), p.partition, lag)
            })
            .collect()
    }
}

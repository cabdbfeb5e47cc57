//! [`MongoReader`]: one change-stream session.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use mongodb::bson::{doc, RawDocumentBuf};
use mongodb::change_stream::ChangeStream;
use mongodb::Client;
use reader_core::{ErrorKind, Message, Position, ReadError, Reader};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::classify::{classify_mongo_error, history_lost_message, Facts};
use crate::config::{MongoConfig, OnHistoryLost};
use crate::connector::{redact_error, shutdown_client};
use crate::event::{convert, Converted};
use crate::redact::Redactor;
use crate::token;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the pump task hands to `fetch`, in the order the change stream produced it.
enum Pumped {
    /// A change event, raw.
    Event(RawDocumentBuf),
    /// An empty `getMore`: the stream's post-batch resume token after it.
    Idle(Option<Bytes>),
    /// The change stream failed (the pump stops after this).
    Failed(mongodb::error::Error),
    /// The server closed the cursor (the pump stops after this).
    Closed,
}

/// How many events the pump may read ahead of `fetch` (bounded memory, and backpressure:
/// when it is full no `getMore` is sent).
const PUMP_AHEAD: usize = 512;

/// Drives the change stream to completion of every call, whatever `fetch` does.
///
/// The driver's `next_if_any` is not cancellation safe: when it resumes the stream by itself
/// (after a network error) it moves the cursor's implicit session into the resume, and a
/// caller that drops that future mid-resume (a fetch timing out) loses the session; the next
/// `getMore` then runs in a new session and the server refuses it ("Cannot run getMore on
/// cursor …, which was created in session …", code 50738). So the stream lives in a task of
/// its own that always awaits each call to the end, and `fetch` only waits on a channel.
async fn pump(mut cs: ChangeStream<RawDocumentBuf>, tx: mpsc::Sender<Pumped>) {
    loop {
        let item = match cs.next_if_any().await {
            Ok(Some(ev)) => Pumped::Event(ev),
            Ok(None) if !cs.is_alive() => Pumped::Closed,
            Ok(None) => Pumped::Idle(cs.resume_token().as_ref().and_then(token::from_driver)),
            Err(e) => Pumped::Failed(e),
        };
        // An idle token matters only to a fetch that finds nothing else: while items wait
        // unread (a consumer behind), skip it rather than queue up stale ones. Never skip
        // or reorder anything else: an idle token must not overtake the events before it.
        if matches!(item, Pumped::Idle(_)) && tx.capacity() < tx.max_capacity() {
            continue;
        }
        let last = matches!(item, Pumped::Failed(_) | Pumped::Closed);
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

struct StreamState {
    /// What the pump task produced (`None` once closed).
    rx: Option<mpsc::Receiver<Pumped>>,
    /// An error met after some events of a batch were already taken: returned by the next
    /// fetch, so those events are delivered first.
    pending: Option<ReadError>,
    /// The newest token handed out (an event's or an idle one).
    last_token: Option<Bytes>,
}

/// One change-stream session: a driver client of its own and the open change stream.
///
/// * A task of the session (the pump, aborted on close and drop) owns the change stream and
///   reads at most `PUMP_AHEAD` (512) events ahead; [`Reader::fetch`] waits at most about
///   `wait` for the first of them, then takes what the pump has already read, up to `max`,
///   without waiting again. See `pump` for why the stream is not polled from `fetch`.
/// * Each event's position is its resume token (the raw BSON of its `_id`), with its cluster
///   time for the checkpoint-age gauge.
/// * [`Reader::idle_position`] is the stream's post-batch resume token after an empty fetch,
///   so a quiet stream's checkpoint keeps moving.
/// * [`Reader::commit`] does nothing: a change stream has no server-side progress; the
///   reader saves the committed token to its `CheckpointStore` after this returns.
/// * An `invalidate` event (collection dropped or renamed, database dropped) ends the
///   session with an [`ErrorKind::Invalidated`] error, after the events before it.
pub struct MongoReader {
    client: Client,
    /// The task that owns the change stream (aborted on close and on drop).
    pump: AbortHandle,
    state: tokio::sync::Mutex<StreamState>,
    idle: Mutex<Option<Position>>,
    cfg: Arc<MongoConfig>,
    redactor: Arc<Redactor>,
}

impl std::fmt::Debug for MongoReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoReader")
            .field("target", &self.cfg.target().to_string())
            .finish_non_exhaustive()
    }
}

impl MongoReader {
    pub(crate) fn new(
        client: Client,
        cs: ChangeStream<RawDocumentBuf>,
        cfg: Arc<MongoConfig>,
        redactor: Arc<Redactor>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(PUMP_AHEAD);
        let pump = tokio::spawn(pump(cs, tx)).abort_handle();
        Self {
            client,
            pump,
            state: tokio::sync::Mutex::new(StreamState {
                rx: Some(rx),
                pending: None,
                last_token: None,
            }),
            idle: Mutex::new(None),
            cfg,
            redactor,
        }
    }

    fn fetch_error(&self, e: &mongodb::error::Error) -> ReadError {
        let facts = Facts::of(e);
        if facts.is_history_lost() {
            let text = self.redactor.apply(&facts.server_text());
            return match self.cfg.on_history_lost {
                OnHistoryLost::Fail => ReadError::permanent(
                    ErrorKind::PositionLost,
                    format!(
                        "the change stream on {} cannot continue: {}",
                        self.cfg.target(),
                        history_lost_message(&text)
                    ),
                ),
                // Reopen from the last checkpoint, where the connector applies the policy.
                _ => ReadError::transient(
                    ErrorKind::PositionLost,
                    format!(
                        "the change stream fell off the oplog ({text}); reopening from the \
                         checkpoint to apply on_history_lost"
                    ),
                ),
            };
        }
        redact_error(&self.redactor, classify_mongo_error(e))
    }

    fn invalidated(&self, token: &Bytes) -> ReadError {
        let hint = token::data_hex(token).map_or_else(String::new, |hex| {
            format!(
                "; to watch again from after this point, start a new reader with \
                 start=token:{hex}"
            )
        });
        ReadError::permanent(
            ErrorKind::Invalidated,
            format!(
                "the change stream on {} was invalidated (the collection was dropped or \
                 renamed, or the database dropped){hint}",
                self.cfg.target()
            ),
        )
    }
}

#[async_trait]
impl Reader for MongoReader {
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Message>, ReadError> {
        let mut guard = self.state.lock().await;
        let st = &mut *guard;
        if let Some(e) = st.pending.take() {
            return Err(e);
        }
        let Some(rx) = st.rx.as_mut() else {
            return Err(ReadError::transient(
                ErrorKind::Connection,
                "the change stream of this session is closed",
            ));
        };
        let max = max.max(1);
        let mut out: Vec<Message> = Vec::new();
        let mut pending = None;
        let mut idle = None;
        // The first item: wait at most `wait` (receiving is cancellation safe).
        let mut next = match tokio::time::timeout(wait, rx.recv()).await {
            Err(_) => None,
            Ok(None) => Some(Pumped::Closed),
            Ok(Some(item)) => Some(item),
        };
        while let Some(item) = next.take() {
            match item {
                Pumped::Event(ev) => match convert(ev, self.cfg.payload) {
                    Ok(Converted::Event(m)) => {
                        if let Position::ResumeToken { token, .. } = &m.position {
                            st.last_token = Some(token.clone());
                        }
                        out.push(m);
                    }
                    Ok(Converted::Invalidate(t)) => {
                        pending = Some(self.invalidated(&t));
                        break;
                    }
                    Err(e) => {
                        pending = Some(e);
                        break;
                    }
                },
                // Ends this fetch: an idle token after events is not needed (the next
                // empty fetch brings a newer one).
                Pumped::Idle(t) => {
                    idle = t;
                    break;
                }
                Pumped::Failed(e) => {
                    pending = Some(self.fetch_error(&e));
                    break;
                }
                Pumped::Closed => {
                    pending = Some(ReadError::transient(
                        ErrorKind::Connection,
                        "the server closed the change stream's cursor",
                    ));
                    break;
                }
            }
            if out.len() >= max {
                break;
            }
            // Only what the pump has already read.
            next = rx.try_recv().ok();
        }
        if !out.is_empty() {
            st.pending = pending;
            lock(&self.idle).take();
            return Ok(out);
        }
        if let Some(e) = pending {
            return Err(e);
        }
        if let Some(t) = idle {
            if st.last_token.as_ref() != Some(&t) {
                st.last_token = Some(t.clone());
                *lock(&self.idle) = Some(Position::ResumeToken {
                    cluster_time: token::cluster_time(&t).map(|ts| ts.time),
                    token: t,
                });
            }
        }
        Ok(out)
    }

    async fn commit(&self, _positions: &[Position]) -> Result<(), ReadError> {
        // Nothing to do on the server: the core saves the checkpoint to its store next.
        Ok(())
    }

    fn idle_position(&self) -> Option<Position> {
        lock(&self.idle).take()
    }

    /// Insert the event and the reason into `<collection>_dlq` of its database.
    async fn dead_letter(&self, message: &Message, reason: &str) -> Result<(), ReadError> {
        crate::dlq::write(&self.client, &self.cfg, &self.redactor, message, reason).await
    }

    async fn server_version(&self) -> Option<String> {
        let info = tokio::time::timeout(
            self.cfg.op_timeout,
            self.client
                .database("admin")
                .run_command(doc! { "buildInfo": 1 }),
        )
        .await
        .ok()?
        .ok()?;
        info.get_str("version").ok().map(|v| format!("MongoDB {v}"))
    }

    async fn ping(&self) -> Result<Duration, ReadError> {
        let t0 = Instant::now();
        let bound = self.cfg.op_timeout;
        match tokio::time::timeout(
            bound,
            self.client
                .database("admin")
                .run_command(doc! { "ping": 1 }),
        )
        .await
        {
            Ok(Ok(_)) => Ok(t0.elapsed()),
            Ok(Err(e)) => Err(redact_error(&self.redactor, classify_mongo_error(&e))),
            Err(_) => Err(ReadError::transient(
                ErrorKind::Timeout,
                format!("ping did not answer within {bound:?}"),
            )),
        }
    }

    async fn close(&self) {
        // Dropping the stream (with the pump) makes the driver kill the server cursor in
        // the background.
        self.pump.abort();
        if let Ok(mut st) = tokio::time::timeout(Duration::from_secs(1), self.state.lock()).await {
            st.rx.take();
        }
        shutdown_client(self.client.clone()).await;
    }
}

impl Drop for MongoReader {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

//! Kafka (tansu): rskafka's plain `fetch_records` loop next to unireader's consumer group.
//!
//! The tansu build here has only SQLite storage (`memory://` needs its `dynostore` feature),
//! and with SQLite tansu itself is the limit (about 32k records/s, tansu at a full core):
//! these figures measure tansu more than either client. Both sides fetch with
//! `max_wait_ms` 10. Runs are capped at [`MAX_MESSAGES`] records to keep the bench short.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use testkit::{KafkaOpts, Server};
use unireader::ReaderConfig;

use crate::common::{self, measure, stamp_of, stamped, ur_consume, Lat, Mode};
use crate::{trials, Args, BackendResult};

const TOPIC: &str = "bench";
const MAX_WAIT_MS: i32 = 10;
/// Most records per throughput run (tansu on SQLite is slow to fill and to read).
pub const MAX_MESSAGES: u64 = 50_000;

async fn client(addr: &str) -> Result<Client> {
    Ok(ClientBuilder::new(vec![addr.to_owned()]).build().await?)
}

async fn create(c: &Client, topic: &str) -> Result<()> {
    c.controller_client()?
        .create_topic(topic, 1, 1, 5_000)
        .await?;
    Ok(())
}

async fn partition(c: &Client, topic: &str) -> Result<PartitionClient> {
    Ok(c.partition_client(topic, 0, UnknownTopicHandling::Retry)
        .await?)
}

fn record(size: usize) -> Record {
    Record {
        key: None,
        value: Some(stamped(size)),
        headers: BTreeMap::new(),
        timestamp: rskafka::chrono::DateTime::from_timestamp_millis(1_700_000_000_000)
            .unwrap_or_default(),
    }
}

async fn preload(p: &PartitionClient, n: u64, size: usize) -> Result<()> {
    let mut left = n;
    while left > 0 {
        let chunk = left.min(1000);
        let recs = (0..chunk).map(|_| record(size)).collect();
        p.produce(recs, Compression::NoCompression).await?;
        left -= chunk;
    }
    Ok(())
}

/// `rate` records/s for `secs` s, one produce of rate/100 records every 10 ms.
async fn produce_at(addr: String, topic: String, rate: u64, secs: u64, size: usize) -> Result<()> {
    let c = client(&addr).await?;
    let p = partition(&c, &topic).await?;
    let per_tick = (rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..secs * 100 {
        tick.tick().await;
        let recs = (0..per_tick).map(|_| record(size)).collect();
        p.produce(recs, Compression::NoCompression).await?;
    }
    Ok(())
}

/// The plain loop: fetch_records(offset, up to 1 MiB, 10 ms) until `n` records.
async fn raw_consume<R, Fut>(
    addr: &str,
    topic: &str,
    n: u64,
    ready: R,
    mut on: impl FnMut(&[u8]),
) -> Result<(u64, Duration)>
where
    R: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let c = client(addr).await?;
    let p = partition(&c, topic).await?;
    let mut offset = p.get_offset(OffsetAt::Earliest).await?;
    let producer = tokio::spawn(ready());
    let mut count = 0;
    let mut t0 = None;
    while count < n {
        let (recs, _hw) = p.fetch_records(offset, 1..1_048_576, MAX_WAIT_MS).await?;
        if recs.is_empty() {
            continue;
        }
        t0.get_or_insert_with(Instant::now);
        for r in recs {
            if let Some(v) = &r.record.value {
                on(v);
            }
            offset = r.offset + 1;
            count += 1;
        }
    }
    let el = t0.map_or(Duration::ZERO, |t| t.elapsed());
    producer.await.map_err(|e| anyhow!("producer: {e}"))??;
    Ok((count, el))
}

fn tweak(c: &mut ReaderConfig) {
    c.fetch_max = 1000;
}

fn url(addr: &str, topic: &str, group: &str) -> String {
    format!("kafka://{addr}/{topic}?group={group}&max_wait_ms={MAX_WAIT_MS}&session_timeout_ms=6000&heartbeat_ms=1000")
}

/// The whole Kafka bench.
pub async fn run(a: &Args) -> Result<BackendResult> {
    let mut server = Server::kafka(KafkaOpts::default()).await?;
    let addr = server.host_port();
    let n = a.messages.min(MAX_MESSAGES);
    let w = client(&addr).await?;
    create(&w, TOPIC).await?;
    let wp = partition(&w, TOPIC).await?;
    eprintln!(
        "bench kafka: preloading {n} records of {} bytes…",
        a.payload
    );
    preload(&wp, n, a.payload).await?;
    let mut res = BackendResult::new(
        "kafka",
        "Kafka consumer group on tansu 0.6 with SQLite storage: TANSU IS THE LIMIT (~32k records/s, one full core), not the clients; runs capped at 50k records",
    );
    res.version = common::version_of(&testkit::paths::tansu(), "--version");
    for r in 0..a.rounds {
        let raw = measure(raw_consume(
            &addr,
            TOPIC,
            n,
            || async { Ok(()) },
            |p| {
                std::hint::black_box(p.len());
            },
        ))
        .await?;
        let mut ur = Vec::new();
        for mode in [Mode::Stream, Mode::Batch] {
            let u = url(&addr, TOPIC, &format!("ur{r}{}", mode.tag()));
            ur.push(
                measure(ur_consume(
                    &u,
                    n,
                    mode,
                    tweak,
                    || async { Ok(()) },
                    |p| {
                        std::hint::black_box(p.len());
                    },
                ))
                .await?,
            );
        }
        eprintln!(
            "bench kafka: round {r}: raw {:.0}/s, stream {:.0}/s, batch {:.0}/s",
            raw.rate(),
            ur[0].rate(),
            ur[1].rate()
        );
        res.push_round(raw, ur[0], ur[1]);
    }

    // Latency on fresh topics, read from their start.
    let total = a.rate * a.lat_secs;
    let (rate, secs, size) = (a.rate, a.lat_secs, a.payload);
    for t in ["lat-raw", "lat-ur"] {
        create(&w, t).await?;
    }
    let mut lat = Lat::default();
    let a1 = addr.clone();
    raw_consume(
        &addr,
        "lat-raw",
        total,
        move || produce_at(a1, "lat-raw".into(), rate, secs, size),
        |p| lat.see(stamp_of(p)),
    )
    .await?;
    res.lat_raw = lat.0;
    let mut lat = Lat::default();
    let a2 = addr.clone();
    ur_consume(
        &url(&addr, "lat-ur", "lat"),
        total,
        Mode::Stream,
        tweak,
        move || produce_at(a2, "lat-ur".into(), rate, secs, size),
        |p| lat.see(stamp_of(p)),
    )
    .await?;
    res.lat_ur = lat.0;
    eprintln!("bench kafka: latency done");

    res.cancel = trials::cancellation(
        a.trials,
        |i| url(&addr, TOPIC, &format!("cancel{i}")),
        tweak,
    )
    .await?;
    eprintln!("bench kafka: cancellation done");
    drop(wp);

    // Reconnect: SQLite storage, so the topic and the group's offsets survive kill -9.
    let kaddr = addr.clone();
    create(&w, "rc").await?;
    drop(w);
    let u = format!("kafka://{kaddr}/rc?group=rc&session_timeout_ms=6000&heartbeat_ms=1000");
    let rc = trials::reconnect(
        &mut server,
        &u,
        |_| {},
        a.trials,
        trials::plain,
        || {
            let kaddr = kaddr.clone();
            async move {
                let c = client(&kaddr).await?;
                let p = partition(&c, "rc").await?;
                p.produce(vec![record(16)], Compression::NoCompression)
                    .await?;
                Ok(())
            }
        },
    )
    .await?;
    res.reconnect = rc;
    eprintln!("bench kafka: reconnect done");
    Ok(res)
}

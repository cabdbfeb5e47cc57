//! MongoDB change streams: the driver's `ChangeStream::next` next to unireader, both while
//! inserting (insert_many of 1000), so the figure is end-to-end events/s.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use futures::StreamExt;
use mongodb::bson::{doc, spec::BinarySubtype, Binary, Document, RawDocument};
use mongodb::{Client, Collection};
use testkit::{MongoOpts, Server};
use unireader::ReaderConfig;

use crate::common::{self, measure, now_us, ur_consume, Lat, Mode};
use crate::{trials, Args, BackendResult};

const DB: &str = "bench";

fn docs(from: u64, n: u64, size: usize) -> Vec<Document> {
    (from..from + n)
        .map(|i| {
            doc! {
                "_id": i64::try_from(i).unwrap_or_default(),
                "t": i64::try_from(now_us()).unwrap_or_default(),
                "payload": Binary { subtype: BinarySubtype::Generic, bytes: vec![b'x'; size] },
            }
        })
        .collect()
}

async fn insert_all(c: Collection<Document>, n: u64, size: usize) -> Result<()> {
    let mut at = 0;
    while at < n {
        let k = (n - at).min(1000);
        c.insert_many(docs(at, k, size)).await?;
        at += k;
    }
    Ok(())
}

async fn insert_at(c: Collection<Document>, rate: u64, secs: u64, size: usize) -> Result<()> {
    let per_tick = (rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut at = 0;
    for _ in 0..secs * 100 {
        tick.tick().await;
        c.insert_many(docs(at, per_tick, size)).await?;
        at += per_tick;
    }
    Ok(())
}

/// The plain loop: watch the collection, start the inserter, `next` until `n` inserts.
async fn raw_consume<R, Fut>(
    c: &Collection<Document>,
    n: u64,
    start: R,
    mut on: impl FnMut(&Document),
) -> Result<(u64, Duration)>
where
    R: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let mut cs = c.watch().await?;
    let producer = tokio::spawn(start());
    let mut count = 0;
    let mut t0 = None;
    while count < n {
        match tokio::time::timeout(common::STALL, cs.next()).await {
            Ok(Some(Ok(ev))) => {
                t0.get_or_insert_with(Instant::now);
                if let Some(d) = &ev.full_document {
                    on(d);
                }
                count += 1;
            }
            Ok(Some(Err(e))) => bail!("change stream: {e}"),
            Ok(None) => bail!("change stream ended"),
            Err(_) => bail!("change stream stalled after {count} of {n}"),
        }
    }
    let el = t0.map_or(Duration::ZERO, |t| t.elapsed());
    producer.await.map_err(|e| anyhow!("inserter: {e}"))??;
    Ok((count, el))
}

fn bson_stamp(p: &[u8]) -> Option<u64> {
    let ev = RawDocument::from_bytes(p).ok()?;
    let full = ev.get_document("fullDocument").ok()?;
    u64::try_from(full.get_i64("t").ok()?).ok()
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The whole MongoDB bench.
pub async fn run(a: &Args) -> Result<BackendResult> {
    let bench_start = unix_secs().saturating_sub(2);
    let mut server = Server::mongod(MongoOpts {
        oplog_size_mb: 2048,
        ..MongoOpts::default()
    })
    .await?;
    let url = server.url();
    let client = Client::with_uri_str(format!("{url}&serverSelectionTimeoutMS=60000")).await?;
    let db = client.database(DB);
    let mut res = BackendResult::new(
        "mongo",
        if a.mongo_payload == "bson" {
            "MongoDB change stream while inserting (insert_many of 1000); unireader payload=bson (raw event bytes, no conversion)"
        } else {
            "MongoDB change stream while inserting (insert_many of 1000); unireader payload = relaxed JSON (the default)"
        },
    );
    res.version = common::version_of(&testkit::paths::mongod(), "--version");
    let n = a.messages;
    let size = a.payload;
    for r in 0..a.rounds {
        let c = db.collection::<Document>(&format!("raw{r}"));
        let c2 = c.clone();
        let raw = measure(raw_consume(
            &c,
            n,
            move || insert_all(c2, n, size),
            |d| {
                std::hint::black_box(d.len());
            },
        ))
        .await?;
        let mut ur = Vec::new();
        for mode in [Mode::Stream, Mode::Batch] {
            let name = format!("ur{r}{}", mode.tag());
            let c = db.collection::<Document>(&name);
            let u = format!(
                "{url}&database={DB}&collection={name}&payload={}&start=time:{}",
                a.mongo_payload,
                unix_secs().saturating_sub(2)
            );
            ur.push(
                measure(ur_consume(
                    &u,
                    n,
                    mode,
                    |_| {},
                    move || insert_all(c, n, size),
                    |p| {
                        std::hint::black_box(p.len());
                    },
                ))
                .await?,
            );
        }
        eprintln!(
            "bench mongo: round {r}: raw {:.0}/s, stream {:.0}/s, batch {:.0}/s",
            raw.rate(),
            ur[0].rate(),
            ur[1].rate()
        );
        res.push_round(raw, ur[0], ur[1]);
    }

    let total = a.rate * a.lat_secs;
    let (rate, secs) = (a.rate, a.lat_secs);
    let mut lat = Lat::default();
    let c = db.collection::<Document>("lat-raw");
    let c2 = c.clone();
    raw_consume(
        &c,
        total,
        move || insert_at(c2, rate, secs, size),
        |d| lat.see(d.get_i64("t").ok().and_then(|t| u64::try_from(t).ok())),
    )
    .await?;
    res.lat_raw = lat.0;
    let mut lat = Lat::default();
    let c = db.collection::<Document>("lat-ur");
    let u = format!(
        "{url}&database={DB}&collection=lat-ur&payload=bson&start=time:{}",
        unix_secs().saturating_sub(2)
    );
    ur_consume(
        &u,
        total,
        Mode::Stream,
        |_| {},
        move || insert_at(c, rate, secs, size),
        |p| lat.see(bson_stamp(p)),
    )
    .await?;
    res.lat_ur = lat.0;
    eprintln!("bench mongo: latency done");

    // Cancellation mid-replay of the first round's events.
    res.cancel = trials::cancellation(
        a.trials,
        |_| format!("{url}&database={DB}&collection=raw0&start=time:{bench_start}"),
        |_: &mut ReaderConfig| {},
    )
    .await?;
    eprintln!("bench mongo: cancellation done");

    // Reconnect on the same server (its data survives kill -9 in the journal).
    let rc_coll = db.collection::<Document>("rc");
    let u = format!(
        "{url}&database={DB}&collection=rc&payload=bson&start=time:{}",
        unix_secs().saturating_sub(2)
    );
    let rc = trials::reconnect(
        &mut server,
        &u,
        |_| {},
        a.trials,
        bson_stamp,
        || {
            let c = rc_coll.clone();
            async move {
                c.insert_one(doc! { "t": i64::try_from(now_us()).unwrap_or_default() })
                    .await?;
                Ok(())
            }
        },
    )
    .await?;
    res.reconnect = rc;
    eprintln!("bench mongo: reconnect done");
    Ok(res)
}

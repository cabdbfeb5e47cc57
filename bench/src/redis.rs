//! Redis Streams: fred's plain `XREADGROUP COUNT 1000` + `XACK` loop next to unireader.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use bytes::Bytes;
use fred::interfaces::{ClientLike, StreamsInterface};
use fred::types::streams::XReadResponse;
use fred::types::Value;
use testkit::{RedisOpts, Server};
use unireader::ReaderConfig;

use crate::common::{self, measure, stamp_of, stamped, ur_consume, Lat, Mode};
use crate::{trials, Args, BackendResult};

const KEY: &str = "bench";

async fn connect(url: &str) -> Result<fred::clients::Client> {
    let c = fred::types::Builder::from_config(fred::types::config::Config::from_url(url)?)
        .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(30))
        .build()?;
    c.init().await?;
    Ok(c)
}

/// Append `n` stamped payloads of `size` bytes, pipelined 1000 at a time.
async fn preload(c: &fred::clients::Client, key: &str, n: u64, size: usize) -> Result<()> {
    let mut left = n;
    while left > 0 {
        let chunk = left.min(1000);
        let p = c.pipeline();
        for _ in 0..chunk {
            let _: () = p
                .xadd(
                    key,
                    false,
                    None,
                    "*",
                    vec![("payload", Bytes::from(stamped(size)))],
                )
                .await?;
        }
        let _: Vec<Value> = p.all().await?;
        left -= chunk;
    }
    Ok(())
}

/// Write `rate` messages/s for `secs` seconds (bursts every 10 ms).
async fn produce_at(url: String, key: String, rate: u64, secs: u64, size: usize) -> Result<()> {
    let c = connect(&url).await?;
    let per_tick = (rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..secs * 100 {
        tick.tick().await;
        for _ in 0..per_tick {
            let _: String = c
                .xadd(
                    &key,
                    false,
                    None,
                    "*",
                    vec![("payload", Bytes::from(stamped(size)))],
                )
                .await?;
        }
    }
    Ok(())
}

/// The plain loop: XREADGROUP COUNT 1000 (BLOCK 1000) then XACK of that batch, until `n`.
#[allow(clippy::too_many_arguments)]
async fn raw_consume<R, Fut>(
    url: &str,
    key: &str,
    group: &str,
    start: &str,
    n: u64,
    ready: R,
    mut on: impl FnMut(&[u8]),
) -> Result<(u64, Duration)>
where
    R: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let c = connect(url).await?;
    let _: Value = c.xgroup_create(key, group, start, true).await?;
    // The producer (live runs) starts only once the group exists.
    let producer = tokio::spawn(ready());
    let mut count = 0;
    let mut t0 = None;
    while count < n {
        let v: Value = c
            .xreadgroup(group, "raw", Some(1000), Some(1000), false, key, ">")
            .await?;
        if v.is_null() {
            continue;
        }
        t0.get_or_insert_with(Instant::now);
        let r: XReadResponse<String, String, String, Bytes> = v.into_xread_response()?;
        for (_, entries) in r {
            let mut ids = Vec::with_capacity(entries.len());
            for (id, fields) in entries {
                if let Some(p) = fields.get("payload") {
                    on(p);
                }
                ids.push(id);
            }
            count += ids.len() as u64;
            if !ids.is_empty() {
                let _: u64 = c.xack(key, group, ids).await?;
            }
        }
    }
    let el = t0.map_or(Duration::ZERO, |t| t.elapsed());
    producer.await.map_err(|e| anyhow!("producer: {e}"))??;
    let _ = c.quit().await;
    Ok((count, el))
}

fn tweak(c: &mut ReaderConfig) {
    c.fetch_max = 1000;
}

/// The whole Redis bench.
pub async fn run(a: &Args) -> Result<BackendResult> {
    let server = Server::redis(RedisOpts::default()).await?;
    let url = server.url();
    let w = connect(&url).await?;
    eprintln!(
        "bench redis: preloading {} entries of {} bytes…",
        a.messages, a.payload
    );
    preload(&w, KEY, a.messages, a.payload).await?;
    let mut res = BackendResult::new("redis", "Redis Streams (XREADGROUP/XACK)");
    res.version = common::version_of(&testkit::paths::redis_server(), "--version");
    let n = a.messages;
    for r in 0..a.rounds {
        let raw = measure(raw_consume(
            &url,
            KEY,
            &format!("raw{r}"),
            "0",
            n,
            || async { Ok(()) },
            |p| {
                std::hint::black_box(p.len());
            },
        ))
        .await?;
        let mut ur = Vec::new();
        for mode in [Mode::Stream, Mode::Batch] {
            let u = format!(
                "{url}?stream={KEY}&group=ur{r}{}&start=0&count=1000",
                mode.tag()
            );
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
            "bench redis: round {r}: raw {:.0}/s, stream {:.0}/s, batch {:.0}/s",
            raw.rate(),
            ur[0].rate(),
            ur[1].rate()
        );
        res.push_round(raw, ur[0], ur[1]);
    }

    // Latency at a fixed moderate rate, on fresh streams.
    let total = a.rate * a.lat_secs;
    let mut lat = Lat::default();
    let (url1, rate, secs, size) = (url.clone(), a.rate, a.lat_secs, a.payload);
    raw_consume(
        &url,
        "lat-raw",
        "lat",
        "$",
        total,
        move || produce_at(url1, "lat-raw".into(), rate, secs, size),
        |p| lat.see(stamp_of(p)),
    )
    .await?;
    res.lat_raw = lat.0;
    let mut lat = Lat::default();
    let u = format!("{url}?stream=lat-ur&group=lat&start=$&count=1000");
    let (url2, rate, secs, size) = (url.clone(), a.rate, a.lat_secs, a.payload);
    ur_consume(
        &u,
        total,
        Mode::Stream,
        tweak,
        move || produce_at(url2, "lat-ur".into(), rate, secs, size),
        |p| lat.see(stamp_of(p)),
    )
    .await?;
    res.lat_ur = lat.0;
    eprintln!("bench redis: latency done");

    // Cancellation: a reader mid-backlog.
    res.cancel = trials::cancellation(
        a.trials,
        |i| format!("{url}?stream={KEY}&group=cancel{i}&start=0&count=1000"),
        tweak,
    )
    .await?;
    eprintln!("bench redis: cancellation done");

    if a.soak > 0 {
        res.soak = Some(soak(&url, a.soak, a.payload).await?);
        eprintln!("bench redis: soak done");
    }
    drop(w);
    drop(server);

    // Reconnect: a server with AOF (fsync always) so the stream and group survive kill -9.
    let mut rs = Server::redis(RedisOpts {
        aof: true,
        ..RedisOpts::default()
    })
    .await?;
    let rurl = rs.url();
    let u = format!("{rurl}?stream=rc&group=rc&start=0");
    let wurl = rurl.clone();
    let rc = trials::reconnect(
        &mut rs,
        &u,
        |_| {},
        a.trials,
        trials::plain,
        move || {
            let wurl = wurl.clone();
            async move {
                let c = connect(&wurl).await?;
                let _: String = c
                    .xadd(
                        "rc",
                        false,
                        None,
                        "*",
                        vec![("payload", Bytes::from(stamped(16)))],
                    )
                    .await?;
                let _ = c.quit().await;
                Ok(())
            }
        },
    )
    .await?;
    res.reconnect = rc;
    eprintln!("bench redis: reconnect done");
    Ok(res)
}

/// Memory with a slow consumer: a producer writes `n` entries as fast as Redis takes them
/// while unireader's consumer pauses 1 ms (in practice 1-2 ms) every 200 messages; RSS sampled
/// every 250 ms. The backlog must stay in Redis, not in us.
async fn soak(url: &str, n: u64, size: usize) -> Result<serde_json::Value> {
    eprintln!("bench redis: soak over {n} messages with a slow consumer…");
    let key = "soak";
    let w = connect(url).await?;
    let _: Value = w.xgroup_create(key, "soak", "0", true).await?;
    let producer = {
        let url = url.to_owned();
        tokio::spawn(async move {
            let c = connect(&url).await?;
            preload(&c, key, n, size).await
        })
    };
    let u = format!("{url}?stream={key}&group=soak&start=0&count=1000");
    let reader = unireader::from_url(&u)?.configure(tweak).build()?;
    let token = unireader::CancellationToken::new();
    let mut s = reader.read(token.child_token());
    let mut samples: Vec<(u64, f64)> = Vec::new();
    let mut next_sample = Instant::now();
    let mut count = 0_u64;
    let t = Instant::now();
    while count < n {
        use futures::StreamExt;
        let d = match tokio::time::timeout(common::STALL, s.next()).await {
            Ok(Some(Ok(d))) => d,
            Ok(Some(Err(e))) => return Err(anyhow!("soak read: {e}")),
            _ => return Err(anyhow!("soak stalled after {count}")),
        };
        std::hint::black_box(d.payload().len());
        d.ack();
        count += 1;
        if count % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if Instant::now() >= next_sample {
            samples.push((count, common::rss_mib()));
            next_sample += Duration::from_millis(250);
        }
    }
    samples.push((count, common::rss_mib()));
    let secs = t.elapsed().as_secs_f64();
    token.cancel();
    drop(s);
    let _ = reader.close().await;
    producer
        .await
        .map_err(|e| anyhow!("soak producer: {e}"))??;
    let at = |frac: f64| {
        samples
            .iter()
            .find(|(c, _)| *c as f64 >= frac * n as f64)
            .map_or(f64::NAN, |s| s.1)
    };
    let max = samples.iter().map(|s| s.1).fold(0.0, f64::max);
    Ok(serde_json::json!({
        "messages": n,
        "secs": secs,
        "rate": count as f64 / secs,
        "rss_mib_at_10pct": at(0.10),
        "rss_mib_at_50pct": at(0.50),
        "rss_mib_at_100pct": at(1.0),
        "rss_mib_max": max,
        "samples": samples.len(),
        "rss_series": samples.iter().step_by((samples.len() / 20).max(1)).map(|s| [s.0 as f64, s.1]).collect::<Vec<_>>(),
    }))
}

//! Trials every backend runs the same way: reconnect after a `kill -9` + restart of the
//! server, and cancellation (token cancelled → every task of the reader ended).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use futures::StreamExt;
use testkit::Server;
use tokio::sync::mpsc;
use unireader::{CancellationToken, ConnState, ReaderConfig};

use crate::common::{now_us, stamp_of, time_until};

/// Reconnect figures, milliseconds, one entry per trial.
#[derive(Default, Debug)]
pub struct Reconnect {
    /// Server ready again (testkit's restart returned) → reader Ready (0 when the reader
    /// was Ready before restart() noticed the server was).
    pub back_to_ready: Vec<f64>,
    /// Server ready again → the first message written after the restart is handled
    /// (includes the writer's own fresh connection and write).
    pub back_to_first: Vec<f64>,
    /// kill -9 → reader Ready (the whole outage as the application sees it).
    pub kill_to_ready: Vec<f64>,
    /// kill -9 → server ready again (testkit's restart: the server's own part).
    pub kill_to_back: Vec<f64>,
    /// Trials where the reader never left Ready: the driver healed the outage by itself
    /// (MongoDB's one automatic resume) — only `back_to_first` has a figure then.
    pub stayed_ready: u32,
}

/// `trials` times: kill -9 the server, restart it on the same port and data, write one
/// stamped message with `write`, and time the reader's Ready and that message.
///
/// Flakiness detection is switched off here: 20 kills within a minute are, by design, a
/// flapping source to the core (its retry budget is then not renewed by the short
/// successes, so the backoff keeps growing: p50 ≈ 3 s measured on Redis). With it off, each
/// trial measures one isolated outage.
pub async fn reconnect<W, Fut>(
    server: &mut Server,
    url: &str,
    tweak: impl FnOnce(&mut ReaderConfig),
    trials: u32,
    decode: fn(&[u8]) -> Option<u64>,
    write: W,
) -> Result<Reconnect>
where
    W: Fn() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let reader = unireader::from_url(url)?
        .configure(|c| {
            tweak(c);
            c.flaky.min_flips = usize::MAX;
        })
        .build()?;
    let token = CancellationToken::new();
    let mut s = reader.read(token.child_token());
    let (msg_tx, mut msg_rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let consumer = tokio::spawn(async move {
        while let Some(d) = s.next().await {
            let Ok(d) = d else { continue };
            let _ = msg_tx.send((decode(d.payload()).unwrap_or(0), Instant::now()));
            d.ack();
        }
    });
    let mut tr = reader.transitions();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Instant>();
    let watcher = tokio::spawn(async move {
        let trace = std::env::var_os("BENCH_TRACE").is_some();
        let t0 = Instant::now();
        while let Ok(t) = tr.recv().await {
            if trace {
                eprintln!(
                    "bench trace: +{:>8.1} ms {} -> {} (after {:?})",
                    t0.elapsed().as_secs_f64() * 1e3,
                    t.from,
                    t.to,
                    t.after
                );
            }
            if t.to == ConnState::Ready {
                let _ = ready_tx.send(Instant::now());
            }
            if t.to.is_terminal() {
                break;
            }
        }
    });
    let events = if std::env::var_os("BENCH_TRACE").is_some() {
        let mut ev = reader.events();
        let t0 = Instant::now();
        Some(tokio::spawn(async move {
            while let Ok(e) = ev.recv().await {
                eprintln!(
                    "bench trace: +{:>8.1} ms event {:?}: {}",
                    t0.elapsed().as_secs_f64() * 1e3,
                    e.kind,
                    e.detail
                );
            }
        }))
    } else {
        None
    };
    let wait = Duration::from_secs(90);
    // The first connect, and one message through.
    tokio::time::timeout(wait, ready_rx.recv())
        .await
        .map_err(|_| anyhow!("reader never Ready"))?;
    let mut out = Reconnect::default();
    let first_us = now_us();
    write().await?;
    wait_msg(&mut msg_rx, first_us, wait).await?;
    for i in 0..trials {
        while ready_rx.try_recv().is_ok() {}
        let killed = Instant::now();
        server.kill();
        server.restart().await?;
        let back = Instant::now();
        if std::env::var_os("BENCH_TRACE").is_some() {
            eprintln!(
                "bench trace: trial {i}: server back {:.1} ms after kill",
                back.duration_since(killed).as_secs_f64() * 1e3
            );
        }
        let back_us = now_us();
        out.kill_to_back
            .push(back.duration_since(killed).as_secs_f64() * 1e3);
        write().await?;
        let got = wait_msg(&mut msg_rx, back_us, wait)
            .await
            .map_err(|e| anyhow!("trial {i}: {e}"))?;
        out.back_to_first
            .push(got.saturating_duration_since(back).as_secs_f64() * 1e3);
        // A reader that went through Reconnecting is Ready again before it delivers.
        // The watcher forwards Ready a moment after the reader entered it: give it 100 ms.
        let ready = match ready_rx.try_recv() {
            Ok(r) => Some(r),
            Err(_) => tokio::time::timeout(Duration::from_millis(100), ready_rx.recv())
                .await
                .ok()
                .flatten(),
        };
        match ready {
            Some(ready) => {
                out.back_to_ready
                    .push(ready.saturating_duration_since(back).as_secs_f64() * 1e3);
                out.kill_to_ready
                    .push(ready.saturating_duration_since(killed).as_secs_f64() * 1e3);
            }
            None if reader.state() == ConnState::Ready => out.stayed_ready += 1,
            None => bail!(
                "trial {i}: a message arrived while the reader was {}",
                reader.state()
            ),
        }
    }
    token.cancel();
    let _ = reader.close().await;
    let _ = consumer.await;
    watcher.abort();
    if let Some(e) = events {
        e.abort();
    }
    Ok(out)
}

async fn wait_msg(
    rx: &mut mpsc::UnboundedReceiver<(u64, Instant)>,
    sent_after_us: u64,
    within: Duration,
) -> Result<Instant> {
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Ok(Some((stamp, at))) if stamp >= sent_after_us => return Ok(at),
            Ok(Some(_)) => {} // a re-delivery of an older message
            Ok(None) => bail!("reader ended before the message arrived"),
            Err(_) => bail!("the message written after the restart never arrived"),
        }
    }
}

/// `trials` times: a fresh reader on `url_of(i)` (a source with a backlog), wait for its
/// first delivery, cancel the token and time until `live_tasks() == 0`. Milliseconds.
pub async fn cancellation(
    trials: u32,
    url_of: impl Fn(u32) -> String,
    tweak: impl Fn(&mut ReaderConfig),
) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for i in 0..trials {
        let reader = unireader::from_url(&url_of(i))?
            .configure(|c| tweak(c))
            .build()?;
        let token = CancellationToken::new();
        let mut s = reader.read(token.child_token());
        match tokio::time::timeout(Duration::from_secs(60), s.next()).await {
            Ok(Some(Ok(d))) => d.ack(),
            Ok(Some(Err(e))) => bail!("cancel trial {i}: {e}"),
            _ => bail!("cancel trial {i}: no first delivery"),
        }
        token.cancel();
        let took = time_until(Duration::from_secs(30), || reader.live_tasks() == 0).await;
        match took {
            Some(d) => out.push(d.as_secs_f64() * 1e3),
            None => bail!(
                "cancel trial {i}: {} tasks still alive 30 s after cancel",
                reader.live_tasks()
            ),
        }
        drop(s);
        let _ = reader.close().await;
    }
    Ok(out)
}

/// Stamp decoding for sources whose payload is the stamped bytes themselves.
pub fn plain(p: &[u8]) -> Option<u64> {
    stamp_of(p)
}

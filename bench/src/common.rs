//! What every backend's bench shares: process figures from /proc, percentiles, timestamps in
//! payloads, and unireader's consume loops (stream and batch mode).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use futures::StreamExt;
use unireader::{CancellationToken, ConnState, ReaderConfig};

/// The instant every payload timestamp counts from (producer and consumer share the process).
pub fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`].
pub fn now_us() -> u64 {
    u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// A payload of `size` bytes (at least 8) whose first 8 bytes are the send time.
pub fn stamped(size: usize) -> Vec<u8> {
    let mut v = vec![b'x'; size.max(8)];
    v[..8].copy_from_slice(&now_us().to_le_bytes());
    v
}

/// The send time in a [`stamped`] payload.
pub fn stamp_of(p: &[u8]) -> Option<u64> {
    let b: [u8; 8] = p.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// CPU seconds (user + system, all threads) this process has used.
pub fn cpu_secs() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15; clock ticks of 1/100 s.
    let tick = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (tick(11) + tick(12)) / 100.0
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Peak resident set size (VmHWM) in MiB since the last [`reset_peak`].
pub fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:") as f64 / 1024.0
}

/// Current resident set size (VmRSS) in MiB.
pub fn rss_mib() -> f64 {
    status_kib("VmRSS:") as f64 / 1024.0
}

/// Reset VmHWM to the current RSS (`echo 5 > /proc/self/clear_refs`), so each phase has its
/// own peak. Best effort: without it the peak is the process's so far.
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The `p`th percentile (0..=100) of `v` (sorted here), or NaN when empty.
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Median.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    pct(&mut v, 50.0)
}

/// One throughput run: how many, how long (first message in hand → last handled), CPU.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// Messages handled.
    pub msgs: u64,
    /// First message received → last one handled.
    pub secs: f64,
    /// CPU seconds of the whole process during the run (set-up included).
    pub cpu: f64,
    /// Peak RSS during the run, MiB.
    pub peak_mib: f64,
}

impl Run {
    /// Messages per second.
    pub fn rate(&self) -> f64 {
        self.msgs as f64 / self.secs.max(1e-9)
    }
    /// CPU seconds per million messages.
    pub fn cpu_per_m(&self) -> f64 {
        self.cpu * 1e6 / self.msgs.max(1) as f64
    }
}

/// Measure `f`, which returns (messages, first → last).
pub async fn measure<F>(f: F) -> Result<Run>
where
    F: std::future::Future<Output = Result<(u64, Duration)>>,
{
    reset_peak();
    let c0 = cpu_secs();
    let (msgs, el) = f.await?;
    Ok(Run {
        msgs,
        secs: el.as_secs_f64(),
        cpu: cpu_secs() - c0,
        peak_mib: peak_rss_mib(),
    })
}

/// How unireader hands deliveries over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `StreamExt::next`, one delivery at a time.
    Stream,
    /// `ReadStream::recv_batch(1000, 1 ms)`.
    Batch,
}

impl Mode {
    /// A short tag for group and collection names.
    pub fn tag(self) -> &'static str {
        match self {
            Mode::Stream => "s",
            Mode::Batch => "b",
        }
    }
}

/// Up to how long a run may wait for its next message before it is declared stuck.
pub const STALL: Duration = Duration::from_secs(60);

/// Build a reader from `url` (with `tweak`), call `ready` once it is Ready, consume `n`
/// deliveries in `mode`, acking each, calling `on` with each payload; then cancel and close.
pub async fn ur_consume<R, Fut>(
    url: &str,
    n: u64,
    mode: Mode,
    tweak: impl FnOnce(&mut ReaderConfig),
    ready: R,
    mut on: impl FnMut(&[u8]),
) -> Result<(u64, Duration)>
where
    R: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let reader = unireader::from_url(url)?.configure(tweak).build()?;
    let token = CancellationToken::new();
    let mut s = reader.read(token.child_token());
    let mut st = reader.watch_state();
    let fut = ready();
    let started = tokio::spawn(async move {
        // Ready, then the caller's start (a producer, for live sources).
        let _ = st.wait_for(|s| *s == ConnState::Ready).await;
        fut.await
    });
    let mut count = 0_u64;
    let mut t0 = None;
    while count < n {
        match mode {
            Mode::Stream => match tokio::time::timeout(STALL, s.next()).await {
                Ok(Some(Ok(d))) => {
                    t0.get_or_insert_with(Instant::now);
                    on(d.payload());
                    d.ack();
                    count += 1;
                }
                Ok(Some(Err(e))) => bail!("unireader read: {e}"),
                Ok(None) => bail!("unireader stream ended after {count} of {n}"),
                Err(_) => bail!("unireader stalled after {count} of {n}"),
            },
            Mode::Batch => {
                match tokio::time::timeout(STALL, s.recv_batch(1000, Duration::from_millis(1)))
                    .await
                {
                    Ok(Some(Ok(b))) => {
                        t0.get_or_insert_with(Instant::now);
                        for d in &b {
                            on(d.payload());
                            d.ack();
                        }
                        count += b.len() as u64;
                    }
                    Ok(Some(Err(e))) => bail!("unireader read: {e}"),
                    Ok(None) => bail!("unireader stream ended after {count} of {n}"),
                    Err(_) => bail!("unireader stalled after {count} of {n}"),
                }
            }
        }
    }
    let el = t0.map_or(Duration::ZERO, |t| t.elapsed());
    token.cancel();
    drop(s);
    let _ = reader.close().await;
    started
        .await
        .map_err(|e| anyhow!("start task: {e}"))?
        .map_err(|e| anyhow!("start: {e}"))?;
    Ok((count, el))
}

/// A latency collector: produce → handler, in milliseconds.
#[derive(Default)]
pub struct Lat(pub Vec<f64>);

impl Lat {
    /// Record the payload's send time.
    pub fn see(&mut self, sent_us: Option<u64>) {
        if let Some(t) = sent_us {
            self.0.push(now_us().saturating_sub(t) as f64 / 1000.0);
        }
    }
}

/// Wait until `f` is true, polling every 100 µs, at most `within`; the elapsed time or None.
pub async fn time_until(within: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while !f() {
        if t.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    Some(t.elapsed())
}

/// The version line a server binary prints.
pub fn version_of(program: &std::path::Path, arg: &str) -> String {
    std::process::Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into())
}

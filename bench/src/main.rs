//! `unireader-bench` (run it as `cargo xtask bench`): unireader next to the raw drivers, in
//! the same run, on private servers (testkit), alternating rounds.
//!
//! ```text
//! cargo xtask bench [--backend redis|kafka|mongo|all] [--messages N] [--payload BYTES]
//!                   [--rounds R] [--trials T] [--rate MSG_PER_S] [--lat-secs S] [--soak N]
//!                   [--mongo-payload json|bson] [--out FILE]
//! ```
//!
//! Per backend: throughput (median of rounds) of the raw driver's plain consume loop, of
//! unireader's stream mode and of its batch mode; CPU seconds per million messages; peak RSS;
//! produce → handler latency at a fixed rate; reconnect after kill -9 + restart; and
//! cancellation (token → every task ended). A markdown table goes to stdout and JSON to
//! `target/bench/latest.json`. It prints numbers; nothing passes or fails on speed.
#![forbid(unsafe_code)]

mod common;
mod kafka;
mod mongo;
mod redis;
mod trials;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::json;

use common::{median, pct, Run};

/// Command-line settings.
#[derive(Clone, Debug)]
pub struct Args {
    backends: Vec<String>,
    messages: u64,
    payload: usize,
    rounds: u32,
    trials: u32,
    rate: u64,
    lat_secs: u64,
    soak: u64,
    mongo_payload: String,
    out: PathBuf,
}

const USAGE: &str = "usage: cargo xtask bench [--backend redis|kafka|mongo|all] [--messages N] [--payload BYTES]
                        [--rounds R] [--trials T] [--rate MSG_PER_S] [--lat-secs S] [--soak N]
                        [--mongo-payload json|bson] [--out FILE]
defaults: all, 200000 messages (kafka: at most 50000), 100 bytes, 3 rounds, 20 trials,
          1000 msg/s for 5 s, soak 1000000 (redis; 0 = off), mongo payload json (unireader's default)
BENCH_TRACE=1 prints the reader's transitions and events during the reconnect trials";

fn parse() -> Result<Args> {
    let mut a = Args {
        backends: vec!["redis".into(), "kafka".into(), "mongo".into()],
        messages: 200_000,
        payload: 100,
        rounds: 3,
        trials: 20,
        rate: 1000,
        lat_secs: 5,
        soak: 1_000_000,
        mongo_payload: "json".into(),
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench/latest.json"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let Some(v) = it.next() else {
            bail!("{flag} needs a value\n{USAGE}");
        };
        let num = |v: &str| -> Result<u64> {
            v.replace('_', "")
                .parse()
                .map_err(|_| anyhow::anyhow!("{flag}: `{v}` is not a number"))
        };
        match flag.as_str() {
            "--backend" => {
                a.backends = match v.as_str() {
                    "all" => a.backends,
                    "redis" | "kafka" | "mongo" => vec![v],
                    other => bail!("--backend: unknown `{other}`\n{USAGE}"),
                }
            }
            "--messages" => a.messages = num(&v)?.max(1000),
            "--payload" => a.payload = usize::try_from(num(&v)?)?.max(8),
            "--rounds" => a.rounds = u32::try_from(num(&v)?)?.max(1),
            "--trials" => a.trials = u32::try_from(num(&v)?)?.max(1),
            "--rate" => a.rate = num(&v)?.max(100),
            "--lat-secs" => a.lat_secs = num(&v)?.max(1),
            "--soak" => a.soak = num(&v)?,
            "--mongo-payload" => match v.as_str() {
                "json" | "bson" => a.mongo_payload = v,
                other => bail!("--mongo-payload: `{other}` is neither json nor bson"),
            },
            "--out" => a.out = PathBuf::from(v),
            other => bail!("unknown flag `{other}`\n{USAGE}"),
        }
    }
    Ok(a)
}

/// What one backend measured.
#[derive(Debug)]
pub struct BackendResult {
    name: &'static str,
    what: &'static str,
    version: String,
    raw: Vec<Run>,
    stream: Vec<Run>,
    batch: Vec<Run>,
    lat_raw: Vec<f64>,
    lat_ur: Vec<f64>,
    cancel: Vec<f64>,
    reconnect: trials::Reconnect,
    soak: Option<serde_json::Value>,
}

impl BackendResult {
    fn new(name: &'static str, what: &'static str) -> Self {
        Self {
            name,
            what,
            version: String::new(),
            raw: Vec::new(),
            stream: Vec::new(),
            batch: Vec::new(),
            lat_raw: Vec::new(),
            lat_ur: Vec::new(),
            cancel: Vec::new(),
            reconnect: trials::Reconnect::default(),
            soak: None,
        }
    }

    fn push_round(&mut self, raw: Run, stream: Run, batch: Run) {
        self.raw.push(raw);
        self.stream.push(stream);
        self.batch.push(batch);
    }
}

fn runs_json(runs: &[Run]) -> serde_json::Value {
    let rates: Vec<f64> = runs.iter().map(Run::rate).collect();
    json!({
        "messages_per_run": runs.first().map(|r| r.msgs),
        "msgs_per_s_median": median(&rates),
        "msgs_per_s_rounds": rates,
        "cpu_s_per_million_median": median(&runs.iter().map(Run::cpu_per_m).collect::<Vec<_>>()),
        "peak_rss_mib_max": runs.iter().map(|r| r.peak_mib).fold(0.0, f64::max),
    })
}

fn p(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    pct(&mut v, q)
}

fn dist(v: &[f64]) -> serde_json::Value {
    json!({ "n": v.len(), "p50": p(v, 50.0), "p99": p(v, 99.0), "max": p(v, 100.0) })
}

fn to_json(r: &BackendResult) -> serde_json::Value {
    let raw = median(&r.raw.iter().map(Run::rate).collect::<Vec<_>>());
    let st = median(&r.stream.iter().map(Run::rate).collect::<Vec<_>>());
    let ba = median(&r.batch.iter().map(Run::rate).collect::<Vec<_>>());
    json!({
        "what": r.what,
        "server_version": r.version,
        "raw": runs_json(&r.raw),
        "unireader_stream": runs_json(&r.stream),
        "unireader_batch": runs_json(&r.batch),
        "ratio_stream_to_raw": st / raw,
        "ratio_batch_to_raw": ba / raw,
        "latency_ms": { "raw": dist(&r.lat_raw), "unireader": dist(&r.lat_ur) },
        "reconnect_ms": {
            "server_back_to_ready": dist(&r.reconnect.back_to_ready),
            "server_back_to_first_message": dist(&r.reconnect.back_to_first),
            "kill_to_ready": dist(&r.reconnect.kill_to_ready),
            "kill_to_server_back": dist(&r.reconnect.kill_to_back),
            "trials_where_reader_stayed_ready": r.reconnect.stayed_ready,
        },
        "cancel_ms": dist(&r.cancel),
        "soak": r.soak,
    })
}

fn markdown(a: &Args, results: &[BackendResult]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n{} messages of {} bytes per run, {} rounds alternating raw / stream / batch; latency at {} msg/s for {} s; {} reconnect and cancel trials; {} cores\n",
        a.messages,
        a.payload,
        a.rounds,
        a.rate,
        a.lat_secs,
        a.trials,
        cores()
    );
    let _ = writeln!(
        s,
        "| backend | loop | msg/s (median) | ratio to raw | CPU s / M msgs | peak RSS MiB |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for r in results {
        let raw = median(&r.raw.iter().map(Run::rate).collect::<Vec<_>>());
        for (name, runs) in [
            ("raw driver", &r.raw),
            ("unireader stream", &r.stream),
            ("unireader batch", &r.batch),
        ] {
            let rate = median(&runs.iter().map(Run::rate).collect::<Vec<_>>());
            let cpu = median(&runs.iter().map(Run::cpu_per_m).collect::<Vec<_>>());
            let peak = runs.iter().map(|r| r.peak_mib).fold(0.0, f64::max);
            let _ = writeln!(
                s,
                "| {} | {name} | {rate:.0} | {:.2} | {cpu:.2} | {peak:.0} |",
                r.name,
                rate / raw
            );
        }
    }
    let _ = writeln!(s, "\n| backend | latency raw p50/p99 ms | latency unireader p50/p99 ms | kill → server back p50/p99 ms | server back → Ready p50/p99 ms | server back → first msg p50/p99 ms | kill → Ready p50/p99 ms | cancel → 0 tasks p50/p99 ms |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for r in results {
        let pp = |v: &[f64]| format!("{:.2} / {:.2}", p(v, 50.0), p(v, 99.0));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            pp(&r.lat_raw),
            pp(&r.lat_ur),
            pp(&r.reconnect.kill_to_back),
            pp(&r.reconnect.back_to_ready),
            pp(&r.reconnect.back_to_first),
            pp(&r.reconnect.kill_to_ready),
            pp(&r.cancel)
        );
    }
    for r in results {
        let _ = writeln!(s, "\n- {}: {} ({})", r.name, r.what, r.version);
        if r.reconnect.stayed_ready > 0 {
            let _ = writeln!(
                s,
                "- {}: in {} of the reconnect trials the reader never left Ready (the driver healed the outage itself): no Ready figure for those",
                r.name, r.reconnect.stayed_ready
            );
        }
        if let Some(soak) = &r.soak {
            let _ = writeln!(
                s,
                "- {} soak, slow consumer: {} messages at {:.0} msg/s; RSS MiB at 10% {:.1}, 50% {:.1}, 100% {:.1}, max {:.1}",
                r.name,
                soak["messages"],
                soak["rate"].as_f64().unwrap_or(f64::NAN),
                soak["rss_mib_at_10pct"].as_f64().unwrap_or(f64::NAN),
                soak["rss_mib_at_50pct"].as_f64().unwrap_or(f64::NAN),
                soak["rss_mib_at_100pct"].as_f64().unwrap_or(f64::NAN),
                soak["rss_mib_max"].as_f64().unwrap_or(f64::NAN),
            );
        }
    }
    s
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
}

async fn bench(a: &Args) -> Result<()> {
    let _ = common::epoch();
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for b in &a.backends {
        let t = std::time::Instant::now();
        eprintln!("bench: === {b}");
        let r = match b.as_str() {
            "redis" => redis::run(a).await,
            "kafka" => kafka::run(a).await,
            _ => mongo::run(a).await,
        };
        match r {
            Ok(r) => {
                eprintln!("bench: {b} took {:.0} s", t.elapsed().as_secs_f64());
                results.push(r);
            }
            Err(e) => {
                eprintln!("bench: {b} FAILED: {e:#}");
                failures.push(format!("{b}: {e:#}"));
            }
        }
    }
    let table = markdown(a, &results);
    println!("{table}");
    let mut backends = serde_json::Map::new();
    for r in &results {
        backends.insert(r.name.to_owned(), to_json(r));
    }
    let doc = json!({
        "cores": cores(),
        "messages": a.messages,
        "payload_bytes": a.payload,
        "rounds": a.rounds,
        "trials": a.trials,
        "latency_rate_per_s": a.rate,
        "latency_secs": a.lat_secs,
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "backends": backends,
        "failures": failures,
    });
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&a.out, serde_json::to_string_pretty(&doc)?)?;
    eprintln!("bench: JSON in {}", a.out.display());
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("{}", failures.join("; "))
    }
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(bench(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

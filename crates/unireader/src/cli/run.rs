//! Running the commands.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use reader_core::{
    CancellationToken, Checkpoint, ConnState, Connector, EventSink, Reader, SessionContext,
};

use super::args::{Ack, Cli, Command, Format, From, TailArgs};
use super::output::message_json;
use crate::{connector_from_url, from_url, merge, Source};

fn has_option(url: &str, key: &str) -> bool {
    url.split_once('?').is_some_and(|(_, q)| {
        q.split('&')
            .any(|kv| kv.split_once('=').map_or(kv, |(k, _)| k) == key)
    })
}

fn add_option(url: &mut String, key: &str, value: &str) {
    if has_option(url, key) {
        return;
    }
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(key);
    url.push('=');
    url.push_str(value);
}

/// Unix seconds as milliseconds (Kafka and Redis count those).
fn millis(t: u64) -> Result<u64, String> {
    t.checked_mul(1000)
        .ok_or_else(|| format!("--from time:{t}: too far in the future"))
}

/// The URL the CLI reads: `url` with `--group` and `--from` applied in the backend's own
/// option names, unless the URL sets them already.
///
/// # Errors
/// When an option does not apply to that backend (e.g. `--group` on MongoDB).
pub fn url_for_cli(url: &str, group: Option<&str>, from: Option<&From>) -> Result<String, String> {
    let scheme = url
        .split_once("://")
        .map_or("", |(s, _)| s)
        .to_ascii_lowercase();
    let mut u = url.to_owned();
    match scheme.as_str() {
        s if s.starts_with("redis") => {
            if let Some(g) = group {
                add_option(&mut u, "group", g);
            }
            match from {
                Some(From::Earliest) => add_option(&mut u, "start", "0"),
                Some(From::Latest) => add_option(&mut u, "start", "$"),
                Some(From::Id(id)) => add_option(&mut u, "start", id),
                Some(From::Time(t)) => add_option(&mut u, "start", &format!("{}-0", millis(*t)?)),
                None => {}
            }
        }
        s if s.starts_with("kafka") => {
            if let Some(g) = group {
                add_option(&mut u, "group", g);
            }
            let grouped = has_option(&u, "group");
            match (from, grouped) {
                (None, _) => {}
                (Some(From::Earliest), true) => add_option(&mut u, "auto_offset_reset", "earliest"),
                (Some(From::Latest), true) => add_option(&mut u, "auto_offset_reset", "latest"),
                (Some(_), true) => {
                    return Err(format!(
                        "--from with an offset or time needs a Kafka URL without a group (a group starts at its committed offsets): {}",
                        crate::builder::redact(url)
                    ))
                }
                (Some(From::Earliest), false) => add_option(&mut u, "start", "earliest"),
                (Some(From::Latest), false) => add_option(&mut u, "start", "latest"),
                (Some(From::Id(o)), false) => add_option(&mut u, "start", &format!("offset:{o}")),
                (Some(From::Time(t)), false) => add_option(&mut u, "start", &format!("time:{}", millis(*t)?)),
            }
        }
        s if s.starts_with("mongodb") => {
            if group.is_some() {
                return Err("--group does not apply to MongoDB change streams (they have no consumer groups)".into());
            }
            match from {
                None => {}
                Some(From::Latest) => add_option(&mut u, "start", "now"),
                Some(From::Time(t)) => add_option(&mut u, "start", &format!("time:{t}")),
                Some(From::Earliest | From::Id(_)) => {
                    return Err("--from for MongoDB is latest or time:<unix secs> (change streams cannot start at the oldest event; resume tokens go in the URL as start=token:<hex>)".into())
                }
            }
        }
        _ => {}
    }
    Ok(u)
}

/// Run the command line with these arguments (the first is the program name).
pub fn main_with(args: impl IntoIterator<Item = String>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    reader_obs::init_tracing("warn");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("unireader: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        match cli.command {
            Command::Tail(t) => tail(t).await,
            Command::Check { urls, timeout } => check(&urls, Duration::from_secs(timeout)).await,
        }
    })
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("unireader: {msg}");
    ExitCode::from(2)
}

async fn tail(a: TailArgs) -> ExitCode {
    let metrics = if a.metrics_addr.is_some() {
        match reader_obs::install_prometheus() {
            Ok(h) => Some(h),
            Err(e) => return usage_error(&e.to_string()),
        }
    } else {
        None
    };
    let mut readers: Vec<Arc<Source>> = Vec::new();
    for (i, url) in a.urls.iter().enumerate() {
        let url = match url_for_cli(url, a.group.as_deref(), a.from.as_ref()) {
            Ok(u) => u,
            Err(e) => return usage_error(&e),
        };
        let built = from_url(&url).and_then(|b| {
            let scheme = url.split_once("://").map_or("", |(s, _)| s);
            let backend = if scheme.starts_with("redis") {
                "redis"
            } else if scheme.starts_with("mongodb") {
                "mongo"
            } else {
                "kafka"
            };
            b.name(format!("{backend}-{i}"))
                .configure(|c| c.close_timeout = Duration::from_secs(a.close_timeout))
                .build()
        });
        match built {
            Ok(r) => readers.push(Arc::new(r)),
            Err(e) => return usage_error(&e.to_string()),
        }
    }
    let token = CancellationToken::new();
    let health = reader_obs::HealthRegistry::new();
    for r in &readers {
        health.register(r.health_handle());
    }
    let _server = match a.metrics_addr {
        Some(addr) => match reader_obs::serve(addr, metrics, health, token.child_token()).await {
            Ok(s) => {
                eprintln!(
                    "unireader: metrics and health on http://{}/metrics",
                    s.local_addr()
                );
                Some(s)
            }
            Err(e) => return usage_error(&e.to_string()),
        },
        None => None,
    };
    for r in &readers {
        let mut t = r.transitions();
        let name = r.source().to_owned();
        let stop = token.child_token();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    x = t.recv() => match x {
                        Ok(tr) => eprintln!("unireader: {name}: {} -> {} (after {:.1?})", tr.from, tr.to, tr.after),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    }
                }
            }
        });
    }
    spawn_signal_handler(token.clone());

    let streams: Vec<_> = readers
        .iter()
        .map(|r| (r.source().to_owned(), r.read(token.child_token())))
        .collect();
    let mut all = merge(streams);
    let (mut count, mut failed) = (0_u64, false);
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut since_report = 0_u64;
    let stdout = std::io::stdout();
    while a.max.is_none_or(|m| count < m) {
        let Some(t) = all.next().await else { break };
        match t.item {
            Ok(d) => {
                let mut out = stdout.lock();
                let written = match a.format {
                    Format::Json => writeln!(out, "{}", message_json(d.message())),
                    Format::Raw => out
                        .write_all(d.payload())
                        .and_then(|()| out.write_all(b"\n")),
                };
                if written.is_err() {
                    break; // stdout closed (e.g. piped into head)
                }
                if a.ack == Ack::Auto {
                    d.ack();
                }
                count += 1;
                since_report += 1;
            }
            Err(e) => {
                eprintln!("unireader: {}: {e}", t.source);
                failed = true;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            let rate = since_report as f64 / last_report.elapsed().as_secs_f64();
            eprintln!("unireader: {count} messages, {rate:.0} msg/s");
            last_report = Instant::now();
            since_report = 0;
        }
    }
    let _ = std::io::stdout().flush();
    token.cancel();
    let mut reports = Vec::new();
    for r in &readers {
        let rep = r.close_within(Duration::from_secs(a.close_timeout)).await;
        reports.push(serde_json::json!({
            "source": r.source(),
            "committed": rep.committed.positions.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "unacked": rep.unacked,
        }));
    }
    eprintln!(
        "unireader: shutdown after {count} messages in {:.1?}: {}",
        started.elapsed(),
        serde_json::Value::Array(reports)
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn spawn_signal_handler(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                let _ = tokio::signal::ctrl_c().await;
                token.cancel();
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        eprintln!("unireader: closing (signal)");
        token.cancel();
    });
}

async fn check(urls: &[String], within: Duration) -> ExitCode {
    let mut ok = true;
    for url in urls {
        let connector = match connector_from_url(url) {
            Ok(c) => c,
            Err(e) => return usage_error(&e.to_string()),
        };
        let ctx = SessionContext {
            source: Arc::from("check"),
            events: EventSink::new(Arc::from("check"), connector.backend()),
            session: 1,
        };
        let what = connector.describe();
        let result = tokio::time::timeout(within, async {
            let session = connector.connect(&ctx, &Checkpoint::new()).await?;
            let rtt = session.ping().await;
            let version = session.server_version().await;
            session.close().await;
            rtt.map(|r| (r, version))
        })
        .await;
        let line = match result {
            Ok(Ok((rtt, version))) => serde_json::json!({
                "source": what, "backend": connector.backend(), "state": ConnState::Ready.as_str(),
                "ping_ms": rtt.as_secs_f64() * 1000.0,
                "server_version": version.unwrap_or_else(|| "unknown (the protocol does not say)".into()),
            }),
            Ok(Err(e)) => {
                ok = false;
                serde_json::json!({
                    "source": what, "backend": connector.backend(), "state": ConnState::Failed.as_str(),
                    "error_class": e.class().as_str(), "error": e.to_string(),
                })
            }
            Err(_) => {
                ok = false;
                serde_json::json!({
                    "source": what, "backend": connector.backend(), "state": ConnState::Disconnected.as_str(),
                    "error": format!("no session within {within:?}"),
                })
            }
        };
        println!("{line}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_and_from_become_backend_options_unless_set() {
        let u = url_for_cli("kafka://h:1/t", Some("g"), Some(&From::Earliest)).unwrap();
        assert_eq!(u, "kafka://h:1/t?group=g&auto_offset_reset=earliest");
        let u = url_for_cli("kafka://h:1/t?group=x", Some("g"), None).unwrap();
        assert_eq!(u, "kafka://h:1/t?group=x");
        let u = url_for_cli("kafka://h:1/t", None, Some(&From::Id("42".into()))).unwrap();
        assert_eq!(u, "kafka://h:1/t?start=offset:42");
        let u = url_for_cli("redis://h:1?stream=s", Some("g"), Some(&From::Latest)).unwrap();
        assert_eq!(u, "redis://h:1?stream=s&group=g&start=$");
        assert!(url_for_cli("mongodb://h:1/d?collection=c", Some("g"), None).is_err());
        assert!(url_for_cli("kafka://h:1/t?group=g", None, Some(&From::Time(5))).is_err());
        // Found by the cli_args fuzzer: seconds * 1000 overflowed.
        let huge = Some(From::Time(u64::MAX / 10));
        assert!(url_for_cli("kafka://h:1/t", None, huge.as_ref())
            .unwrap_err()
            .contains("too far"));
        assert!(url_for_cli("redis://h:1?stream=s", None, huge.as_ref()).is_err());
    }

    #[test]
    fn from_parses_and_explains() {
        assert_eq!("earliest".parse::<From>().unwrap(), From::Earliest);
        assert_eq!("time:10".parse::<From>().unwrap(), From::Time(10));
        assert_eq!("1-0".parse::<From>().unwrap(), From::Id("1-0".into()));
        assert!("yesterday"
            .parse::<From>()
            .unwrap_err()
            .contains("expected"));
    }
}

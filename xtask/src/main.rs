//! `cargo xtask`: the project's own tasks.
//!
//! ```text
//! cargo xtask servers up|down|status|env        the shared real servers (installs what is missing)
//! cargo xtask servers kill|restart NAME         kill -9 / bring back on the same port and data
//! cargo xtask unit                              tests that need no server
//! cargo xtask integ [NEXTEST ARGS…]             servers up, then every test of the workspace
//! cargo xtask ci                                fmt, clippy, deny, doc tests, servers, all tests (last)
//! cargo xtask demo                              one reader over Redis, Kafka and MongoDB, through a kill -9 of the broker
//! cargo xtask bench [--backend B] [--messages N] [--payload BYTES]   unireader next to the raw drivers (release build)
//! ```
#![forbid(unsafe_code)]

mod demo;
mod install;
mod run;
mod servers;

use std::process::ExitCode;
use std::time::Instant;

use run::{cargo, run, Fail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  servers up [NAME…]      install (if missing) and start redis, mongo, kafka on loopback
  servers down            stop them
  servers status          which are up, where their logs are
  servers env             the environment variables tests read (eval \"$(cargo xtask servers env)\")
  servers kill NAME       kill -9 one (redis, mongo or kafka)
  servers restart NAME    kill -9 and start again on the same port and data
  unit                    the tests that need no server (fast)
  integ [ARGS…]           servers up, then every test of the workspace (ARGS go to nextest)
  ci                      fmt --check, clippy -D warnings, servers up, all tests, doc tests
  demo                    servers up, sample data, ONE reader over all three, a broker killed mid-way
  bench [ARGS…]           release build of unireader-bench on private servers: throughput next to the
                          raw drivers, latency, CPU, RSS, reconnect, cancellation (--help for ARGS)

ports: UNIREADER_REDIS_PORT (16379), UNIREADER_MONGO_PORT (27117), UNIREADER_KAFKA_PORT (19092)
tools: UNIREADER_TOOLS (~/.cache/unireader) holds mongod's venv and the tansu build";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xtask: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(args: &[String]) -> Result<(), Fail> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["servers", "up", names @ ..] => {
            let kinds = kinds(names)?;
            install::ensure(&kinds)?;
            servers::up(&kinds).await
        }
        ["servers", "down"] => {
            for k in servers::ALL {
                servers::down_one(k);
            }
            Ok(())
        }
        ["servers", "status"] => {
            if servers::status().await {
                Ok(())
            } else {
                Err(Fail::new("some servers are down: `cargo xtask servers up`"))
            }
        }
        ["servers", "env"] => {
            for (k, v) in servers::env_vars() {
                println!("export {k}='{v}'");
            }
            Ok(())
        }
        ["servers", "kill", name] => servers::kill_one(servers::kind_named(name)?),
        ["servers", "restart", name] => servers::restart_one(servers::kind_named(name)?).await,
        ["unit"] => unit(),
        ["integ", rest @ ..] => {
            install::ensure_all()?;
            servers::up(&servers::ALL).await?;
            integ(rest)
        }
        ["ci"] => ci().await,
        ["demo"] => demo::demo().await,
        ["bench", rest @ ..] => {
            install::ensure_all()?;
            run(
                cargo()
                    .args(["run", "--release", "-p", "unireader-bench", "--"])
                    .args(rest.iter()),
                "bench",
            )
        }
        ["help" | "--help" | "-h"] | [] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(Fail::new(format!(
            "unknown command `{}`\n\n{USAGE}",
            args.join(" ")
        ))),
    }
}

fn kinds(names: &[&str]) -> Result<Vec<testkit::Kind>, Fail> {
    if names.is_empty() {
        return Ok(servers::ALL.to_vec());
    }
    names.iter().map(|n| servers::kind_named(n)).collect()
}

/// The nextest filter of tests that need no server.
const UNIT_FILTER: &str =
    "kind(lib) | kind(bin) | package(reader-retry) | package(reader-core) | package(reader-obs)";

fn unit() -> Result<(), Fail> {
    run(
        cargo().args([
            "nextest",
            "run",
            "--workspace",
            "--no-fail-fast",
            "-E",
            UNIT_FILTER,
        ]),
        "unit tests",
    )
}

fn integ(extra: &[&str]) -> Result<(), Fail> {
    let mut cmd = cargo();
    cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    cmd.args(extra);
    for (k, v) in servers::env_vars() {
        cmd.env(k, v);
    }
    run(&mut cmd, "tests")
}

fn step(
    name: &str,
    f: impl FnOnce() -> Result<(), Fail>,
    times: &mut Vec<(String, f64)>,
) -> Result<(), Fail> {
    eprintln!("\n=== xtask ci: {name}");
    let t = Instant::now();
    let r = f();
    times.push((name.to_owned(), t.elapsed().as_secs_f64()));
    r
}

async fn ci() -> Result<(), Fail> {
    let mut times = Vec::new();
    let t = Instant::now();
    let result = async {
        step(
            "fmt",
            || {
                run(
                    cargo().args(["fmt", "--all", "--check"]),
                    "cargo fmt --check",
                )
            },
            &mut times,
        )?;
        step(
            "clippy",
            || {
                run(
                    cargo().args([
                        "clippy",
                        "--workspace",
                        "--all-targets",
                        "--",
                        "-D",
                        "warnings",
                    ]),
                    "cargo clippy -D warnings",
                )
            },
            &mut times,
        )?;
        step(
            "cargo deny (licenses, bans, sources)",
            || {
                install::ensure_cargo_tool("cargo-deny", "cargo-deny")?;
                run(
                    cargo().args(["deny", "check", "licenses", "bans", "sources"]),
                    "cargo deny check licenses bans sources",
                )
            },
            &mut times,
        )?;
        step(
            "doc tests",
            || {
                run(
                    cargo().args(["test", "--workspace", "--doc", "--quiet"]),
                    "doc tests",
                )
            },
            &mut times,
        )?;
        step(
            "otlp feature (clippy + tests)",
            || {
                run(
                    cargo().args([
                        "clippy",
                        "-p",
                        "reader-obs",
                        "--features",
                        "otlp",
                        "--all-targets",
                        "--",
                        "-D",
                        "warnings",
                    ]),
                    "clippy of reader-obs --features otlp",
                )?;
                run(
                    cargo().args(["nextest", "run", "-p", "reader-obs", "--features", "otlp"]),
                    "tests of reader-obs --features otlp",
                )
            },
            &mut times,
        )?;
        step("install servers", install::ensure_all, &mut times)?;
        eprintln!("\n=== xtask ci: servers up");
        let s = Instant::now();
        servers::up(&servers::ALL).await?;
        times.push(("servers up".into(), s.elapsed().as_secs_f64()));
        step("tests (unit + integration)", || integ(&[]), &mut times)?;
        Ok::<(), Fail>(())
    }
    .await;
    eprintln!("\n=== xtask ci: timings");
    for (name, secs) in &times {
        eprintln!("  {name:<28} {secs:>7.1} s");
    }
    eprintln!("  {:<28} {:>7.1} s", "total", t.elapsed().as_secs_f64());
    result
}

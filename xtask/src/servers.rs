//! The shared servers: one redis-server, one `mongod` single-node replica set and one tansu
//! broker on fixed loopback ports, data and logs under `target/servers/NAME/`, detached so
//! they outlive the command that started them. Tests reach them through the environment
//! variables of [`env_vars`]; tests that kill servers start private ones (testkit).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{KafkaOpts, Kind, MongoOpts, RedisOpts, ServerSpec};

use crate::run::Fail;

/// All server kinds, in start order.
pub const ALL: [Kind; 3] = [Kind::Redis, Kind::Mongo, Kind::Kafka];

fn port_of(kind: Kind) -> u16 {
    let (var, default) = match kind {
        Kind::Redis => ("UNIREADER_REDIS_PORT", 16379),
        Kind::Mongo => ("UNIREADER_MONGO_PORT", 27117),
        Kind::Kafka => ("UNIREADER_KAFKA_PORT", 19092),
    };
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The workspace's `target/` directory (honouring `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(t);
    }
    workspace_root().join("target")
}

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn dir_of(kind: Kind) -> PathBuf {
    target_dir().join("servers").join(kind.name())
}

/// The spec of a shared server.
pub fn spec(kind: Kind) -> ServerSpec {
    let dir = dir_of(kind);
    let port = port_of(kind);
    match kind {
        Kind::Redis => ServerSpec::redis(&RedisOpts::default(), port, &dir),
        Kind::Mongo => ServerSpec::mongod(&MongoOpts::default(), port, &dir),
        Kind::Kafka => ServerSpec::kafka(&KafkaOpts::default(), port, &dir),
    }
}

/// Parse a server name.
pub fn kind_named(name: &str) -> Result<Kind, Fail> {
    match name {
        "redis" => Ok(Kind::Redis),
        "mongo" | "mongod" | "mongodb" => Ok(Kind::Mongo),
        "kafka" | "tansu" => Ok(Kind::Kafka),
        other => Err(Fail::new(format!(
            "unknown server `{other}`: expected redis, mongo or kafka"
        ))),
    }
}

/// The environment the tests read (see `testkit::shared`).
pub fn env_vars() -> Vec<(&'static str, String)> {
    vec![
        ("UNIREADER_REDIS_URL", spec(Kind::Redis).url()),
        ("UNIREADER_MONGO_URL", spec(Kind::Mongo).url()),
        ("UNIREADER_KAFKA_ADDR", spec(Kind::Kafka).url()),
        (
            "UNIREADER_TEST_DATA",
            target_dir().join("test-data").display().to_string(),
        ),
    ]
}

fn pid_file(kind: Kind) -> PathBuf {
    dir_of(kind).join("pid")
}

fn read_pid(kind: Kind) -> Option<u32> {
    std::fs::read_to_string(pid_file(kind))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// Start one server unless it already answers; wait until ready.
pub async fn up_one(kind: Kind) -> Result<String, Fail> {
    let spec = spec(kind);
    let t = Instant::now();
    if spec.is_ready().await {
        return Ok(format!(
            "{:<6} already up on {}",
            kind.name(),
            spec.host_port()
        ));
    }
    if let Some(pid) = read_pid(kind).filter(|p| alive(*p)) {
        // Started but not answering (still starting, or wedged): give it a chance first.
        if spec.wait_ready(None, Duration::from_secs(20)).await.is_ok() {
            return Ok(format!(
                "{:<6} up on {} (pid {pid})",
                kind.name(),
                spec.host_port()
            ));
        }
        signal(pid, "-9");
    }
    let mut child = spec
        .spawn_detached()
        .map_err(|e| Fail::new(e.to_string()))?;
    std::fs::write(pid_file(kind), child.id().to_string())?;
    let within = if kind == Kind::Mongo { 90 } else { 45 };
    spec.wait_ready(Some(&mut child), Duration::from_secs(within))
        .await
        .map_err(|e| Fail::new(format!("server `{}` failed to start: {e}", kind.name())))?;
    Ok(format!(
        "{:<6} up on {} (pid {}, {:.1} s, log {})",
        kind.name(),
        spec.host_port(),
        child.id(),
        t.elapsed().as_secs_f64(),
        spec.log.display()
    ))
}

/// Start all servers concurrently.
pub async fn up(kinds: &[Kind]) -> Result<(), Fail> {
    let t = Instant::now();
    let results = futures_join(kinds).await;
    let mut failed = Vec::new();
    for r in results {
        match r {
            Ok(line) => eprintln!("xtask: {line}"),
            Err(e) => failed.push(e.0),
        }
    }
    if !failed.is_empty() {
        return Err(Fail::new(failed.join("\n")));
    }
    eprintln!("xtask: servers ready in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

async fn futures_join(kinds: &[Kind]) -> Vec<Result<String, Fail>> {
    let handles: Vec<_> = kinds.iter().map(|k| tokio::spawn(up_one(*k))).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(
            h.await
                .unwrap_or_else(|e| Err(Fail::new(format!("start task failed: {e}")))),
        );
    }
    out
}

/// Stop a server: SIGTERM, then SIGKILL after 10 s.
pub fn down_one(kind: Kind) {
    let Some(pid) = read_pid(kind) else {
        eprintln!("xtask: {:<6} not started by xtask", kind.name());
        return;
    };
    if alive(pid) {
        signal(pid, "-TERM");
        let t = Instant::now();
        while alive(pid) && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(pid) {
            signal(pid, "-9");
        }
        eprintln!("xtask: {:<6} stopped (pid {pid})", kind.name());
    }
    let _ = std::fs::remove_file(pid_file(kind));
}

/// `kill -9` a server.
pub fn kill_one(kind: Kind) -> Result<(), Fail> {
    let pid = read_pid(kind)
        .filter(|p| alive(*p))
        .ok_or_else(|| Fail::new(format!("{} is not running (no live pid)", kind.name())))?;
    signal(pid, "-9");
    let t = Instant::now();
    while alive(pid) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("xtask: {} killed (kill -9 {pid})", kind.name());
    Ok(())
}

/// `kill -9`, then start again on the same port and data.
pub async fn restart_one(kind: Kind) -> Result<(), Fail> {
    if read_pid(kind).is_some_and(alive) {
        kill_one(kind)?;
    }
    let line = up_one(kind).await?;
    eprintln!("xtask: {line}");
    Ok(())
}

/// What is running.
pub async fn status() -> bool {
    let mut all = true;
    for kind in ALL {
        let spec = spec(kind);
        let ready = spec.is_ready().await;
        all &= ready;
        let pid = read_pid(kind).filter(|p| alive(*p));
        println!(
            "{:<6} {:<5} {}  pid {}  log {}",
            kind.name(),
            if ready { "up" } else { "DOWN" },
            spec.url(),
            pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            spec.log.display()
        );
    }
    all
}

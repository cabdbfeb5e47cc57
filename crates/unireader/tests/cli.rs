//! The `unireader` binary end to end against real servers: `tail` prints valid JSON for
//! every backend and exits 0 after `--max`; `/health/ready` goes 503 while a server is down
//! and back to 200 after it returns; `/metrics` has the named series; SIGTERM closes
//! gracefully with a shutdown report; `check` reports state; bad URLs exit 2 naming the part.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use fred::prelude::*;
use mongodb::bson::doc;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record;
use testkit::{shared, RedisOpts, Server};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_unireader");

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), fastrand::u64(..))
}

async fn redis_client(url: &str) -> Client {
    let c = Builder::from_config(Config::from_url(url).unwrap())
        .build()
        .unwrap();
    c.init().await.unwrap();
    c
}

#[tokio::test]
async fn tail_prints_json_from_every_backend_and_exits_after_max() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 5;
    // Redis: 5 entries.
    let redis_url = shared::redis_url();
    let key = unique("cli");
    let r = redis_client(&redis_url).await;
    for i in 0..5 {
        let _: String = r
            .xadd(&key, false, None, "*", vec![("payload", format!("r{i}"))])
            .await
            .unwrap();
    }
    // Kafka: 5 records.
    let kafka = shared::kafka_addr();
    let topic = unique("cli");
    let client = ClientBuilder::new(vec![kafka.clone()])
        .build()
        .await
        .unwrap();
    client
        .controller_client()
        .unwrap()
        .create_topic(&topic, 1, 1, 5_000)
        .await
        .unwrap();
    let pc = client
        .partition_client(&topic, 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let records = (0..5)
        .map(|i| Record {
            key: None,
            value: Some(format!("k{i}").into_bytes()),
            headers: BTreeMap::new(),
            timestamp: rskafka::chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
        })
        .collect();
    pc.produce(records, Compression::NoCompression)
        .await
        .unwrap();
    // MongoDB: 5 inserts, read from a time before them.
    let mongo = shared::mongo_url();
    let db = unique("cli");
    let coll = mongodb::Client::with_uri_str(&mongo)
        .await
        .unwrap()
        .database(&db)
        .collection::<mongodb::bson::Document>("c");
    for i in 0..5 {
        coll.insert_one(doc! { "_id": i, "v": format!("m{i}") })
            .await
            .unwrap();
    }
    let mongo_url = format!("{mongo}&database={db}&collection=c&start=time:{now}");
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        Command::new(BIN)
            .args([
                "tail",
                &format!("{redis_url}?stream={key}&group=g&start=0"),
                &format!("kafka://{kafka}/{topic}?group={}", unique("g")),
                &mongo_url,
                "--max",
                "15",
            ])
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("tail finished")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    let mut per_backend = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let source = v["source"]
            .as_str()
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .to_owned();
        assert!(v["position"].is_string() && v["payload"].is_string(), "{v}");
        *per_backend.entry(source).or_insert(0) += 1;
    }
    assert_eq!(
        per_backend.get("redis"),
        Some(&5),
        "{per_backend:?}\n{stderr}"
    );
    assert_eq!(
        per_backend.get("kafka"),
        Some(&5),
        "{per_backend:?}\n{stderr}"
    );
    assert_eq!(
        per_backend.get("mongo"),
        Some(&5),
        "{per_backend:?}\n{stderr}"
    );
    assert!(stderr.contains("shutdown after 15 messages"), "{stderr}");
}

async fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n")?.1.to_owned()))
}

async fn wait_status(addr: &str, path: &str, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((s, body)) = get(addr, path).await {
            if s == want {
                return body;
            }
        }
        assert!(Instant::now() < deadline, "{path} never answered {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn health_flips_while_the_server_is_down_and_sigterm_closes_gracefully() {
    let mut server = Server::redis(RedisOpts {
        aof: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let key = unique("cli-health");
    let port = testkit::free_port().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args([
            "tail",
            &format!("{}?stream={key}&group=g", server.url()),
            "--metrics-addr",
            &addr,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut all = String::new();
        while let Ok(Some(l)) = lines.next_line().await {
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    let body = wait_status(&addr, "/health/ready", 200).await;
    assert!(body.contains("\"state\":\"ready\""), "{body}");

    let r = redis_client(&server.url()).await;
    let _: String = r
        .xadd(&key, false, None, "*", vec![("payload", "x")])
        .await
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(line.contains("\"payload\":\"x\""), "{line}");

    server.kill();
    let body = wait_status(&addr, "/health/ready", 503).await;
    assert!(!body.contains("\"state\":\"ready\""), "{body}");
    server.restart().await.unwrap();
    wait_status(&addr, "/health/ready", 200).await;

    let (status, metrics) = get(&addr, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    for name in [
        "unireader_messages_total",
        "unireader_connection_state",
        "unireader_reconnect_duration_seconds",
        "unireader_state_transitions_total",
        "unireader_errors_total",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }

    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    let stderr = log.await.unwrap();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(
        // At least the one entry: a second delivery is allowed (its XACK may not have
        // reached the server before the kill — at-least-once).
        stderr.contains("closing (signal)") && stderr.contains("shutdown after"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ready -> disconnected"),
        "state changes go to stderr:\n{stderr}"
    );
}

#[tokio::test]
async fn check_reports_ready_and_bad_urls_exit_2_naming_the_part() {
    let kafka = shared::kafka_addr();
    let topic = unique("cli-check");
    let client = ClientBuilder::new(vec![kafka.clone()])
        .build()
        .await
        .unwrap();
    client
        .controller_client()
        .unwrap()
        .create_topic(&topic, 1, 1, 5_000)
        .await
        .unwrap();
    let out = Command::new(BIN)
        .args([
            "check",
            &format!("kafka://{kafka}/{topic}?group=g"),
            &format!("{}?stream={}&group=g", shared::redis_url(), unique("check")),
            &format!("{}&database=d&collection=c", shared::mongo_url()),
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for l in &lines {
        assert_eq!(l["state"], "ready", "{l}");
    }
    assert!(
        lines[1]["server_version"]
            .as_str()
            .unwrap()
            .starts_with("Redis 7"),
        "{stdout}"
    );
    assert!(
        lines[2]["server_version"]
            .as_str()
            .unwrap()
            .starts_with("MongoDB 6"),
        "{stdout}"
    );

    let out = Command::new(BIN)
        .args(["tail", "amqp://u:s3cret@h/q"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown scheme `amqp`"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");

    let out = Command::new(BIN)
        .args(["tail", "kafka://h:1/t", "--from", "yesterday"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from"));
}

//! Secret hygiene, end to end: everything a run produces — the CLI's stdout and stderr at
//! trace level, `check` output, `/metrics`, `/health`, error strings and `Debug` of the
//! configs — is searched for the passwords used, and none is found.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Stdio;
use std::time::Duration;

use testkit::{shared, KafkaOpts, RedisOpts, ScramUser, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_unireader");
const GOOD: &str = "Sup3r-s3cret-pw";
const BAD: &str = "Wr0ng-s3cret-pw";
const MONGO_PW: &str = "M0ng0-s3cret-pw";
const KAFKA_PW: &str = "K4fka-s3cret-pw";
const KAFKA_BAD: &str = "K4fka-wr0ng-pw";

fn assert_clean(what: &str, text: &str) {
    for secret in [GOOD, BAD, MONGO_PW, KAFKA_PW, KAFKA_BAD] {
        assert!(!text.contains(secret), "{what} contains a secret:\n{text}");
    }
}

async fn get(addr: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn no_password_appears_in_anything_a_run_produces() {
    let redis = Server::redis(RedisOpts {
        requirepass: Some(GOOD.into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let good = format!("redis://:{GOOD}@{}?stream=s&group=g", redis.host_port());
    let bad = format!("redis://:{BAD}@{}?stream=s&group=g", redis.host_port());
    let mongo = shared::mongo_url().replace("mongodb://", &format!("mongodb://app:{MONGO_PW}@"));
    let mongo = format!("{mongo}&database=d&collection=c&serverSelectionTimeoutMS=3000");

    // Library surfaces: Debug, describe, errors.
    for url in [&good, &bad, &mongo] {
        let c = unireader::connector_from_url(url).unwrap();
        assert_clean("Debug of a connector", &format!("{c:?}"));
        let r = unireader::from_url(url).unwrap().build().unwrap();
        assert_clean("health", &format!("{:?}", r.health()));
    }
    let e = unireader::from_url(&format!("redis://:{GOOD}@h:notaport?stream=s&group=g"))
        .err()
        .expect("a bad port is an error");
    assert_clean("a URL error", &e.to_string());

    // `check` with the wrong password (Redis) and wrong credentials (MongoDB): they fail,
    // naming the source without the secret.
    let out = Command::new(BIN)
        .env("RUST_LOG", "trace")
        .args(["check", &bad, &mongo])
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !out.status.success(),
        "wrong credentials must fail: {stdout}"
    );
    assert!(stdout.contains("\"state\":\"failed\""), "{stdout}");
    assert_clean("check stdout", &stdout);
    assert_clean("check stderr", &stderr);

    // `tail` with the right password, metrics on, trace logging, then the wrong one.
    let port = testkit::free_port().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .env("RUST_LOG", "trace")
        .args([
            "tail",
            &good,
            "--metrics-addr",
            &addr,
            "--close-timeout",
            "5",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut health = String::new();
    while tokio::time::Instant::now() < deadline {
        if let Ok(Ok(mut s)) = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        {
            let _ = s.shutdown().await;
            health = get(&addr, "/health/ready").await;
            if health.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(health.starts_with("HTTP/1.1 200"), "never ready: {health}");
    assert_clean("/health", &health);
    assert_clean("/metrics", &get(&addr, "/metrics").await);
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG") || stderr.contains("INFO"),
        "trace logging was on:\n{stderr}"
    );
    assert_clean("tail stderr", &stderr);
    assert_clean("tail stdout", &String::from_utf8_lossy(&out.stdout));

    let out = Command::new(BIN)
        .env("RUST_LOG", "trace")
        .args(["tail", &bad, "--max", "1"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a wrong password fails the run:\n{stderr}"
    );
    assert!(
        stderr.contains("redis-0"),
        "the error names the source:\n{stderr}"
    );
    assert_clean("tail stderr (wrong password)", &stderr);
}

#[tokio::test]
async fn no_kafka_sasl_password_appears_in_check_output_or_trace_logs() {
    let kafka = Server::kafka(KafkaOpts {
        authentication: true,
        scram_users: vec![ScramUser {
            name: "reader".into(),
            password: KAFKA_PW.into(),
            mechanism: "scram256",
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let url = |pw: &str| {
        format!(
            "kafka://reader:{pw}@{}/orders?group=g&sasl=scram-sha-256",
            kafka.host_port()
        )
    };
    for u in [url(KAFKA_PW), url(KAFKA_BAD)] {
        let c = unireader::connector_from_url(&u).unwrap();
        assert_clean("Debug of a Kafka connector", &format!("{c:?}"));
        assert_clean("describe", &reader_core::Connector::describe(&c));
    }
    // The right password logs in (the topic does not exist: `check` reports that); the
    // wrong one is refused. Both at trace level, through rskafka's and our own logins.
    for (pw, what) in [(KAFKA_PW, "right"), (KAFKA_BAD, "wrong")] {
        let out = Command::new(BIN)
            .env("RUST_LOG", "trace")
            .args(["check", &url(pw)])
            .output()
            .await
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(!out.status.success(), "{what}: {stdout}");
        assert!(
            stderr.contains("TRACE") || stderr.contains("DEBUG"),
            "{what}: trace logging was on:\n{stderr}"
        );
        if what == "wrong" {
            assert!(stdout.contains("SASL authentication failed"), "{stdout}");
        } else {
            assert!(stdout.contains("does not exist"), "{stdout}");
        }
        assert_clean("kafka check stdout", &stdout);
        assert_clean("kafka check stderr", &stderr);
    }
}

//! The endpoint serves the named series and flips readiness with a reader's state
//! (against the scripted connector: the real-server version is in the CLI tests).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use futures::StreamExt;
use reader_core::testing::ScriptedConnector;
use reader_core::{CancellationToken, ConnState, DataReader};
use reader_obs::{install_prometheus, serve, HealthRegistry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

#[tokio::test]
async fn metrics_and_readiness_follow_the_reader() {
    let metrics = install_prometheus().unwrap();
    let source = ScriptedConnector::new();
    source.push_messages(3);
    let reader = DataReader::builder(source.clone())
        .retry(reader_retry::Retry::fixed(Duration::from_millis(20)).into_policy())
        .configure(|c| c.name = Some("orders".into()))
        .build()
        .unwrap();
    let health = HealthRegistry::new();
    health.register(reader.health_handle());
    let token = CancellationToken::new();
    let server = serve(
        "127.0.0.1:0".parse().unwrap(),
        Some(metrics),
        health,
        token.clone(),
    )
    .await
    .unwrap();
    let addr = server.local_addr();

    assert_eq!(get(addr, "/health/ready").await.0, 503, "not reading yet");
    let mut stream = reader.read(token.child_token());
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap().ack();
    }
    let mut state = reader.watch_state();
    state.wait_for(|s| *s == ConnState::Ready).await.unwrap();
    let (status, body) = get(addr, "/health/ready").await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["sources"][0]["source"], "orders");
    assert_eq!(json["sources"][0]["state"], "ready");

    let (status, text) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    for name in ["unireader_messages_total", "unireader_connection_state"] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(text.contains("source=\"orders\""), "{text}");

    reader.close().await;
    let (status, body) = get(addr, "/health/ready").await;
    assert_eq!(status, 503, "a closed reader is not ready: {body}");
    server.shutdown().await;
}

//! Helpers shared by the integration tests (real redis-server processes from testkit).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use reader_core::{
    DataReader, Delivery, EventKind, ReadError, ReadStream, ReaderEvent, RetryPolicy,
};
use reader_redis::RedisConnector;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// The policy every test reads with: keep reconnecting quickly.
pub fn policy() -> Arc<dyn RetryPolicy> {
    reader_retry::Retry::persistent(Duration::from_secs(90))
        .initial(Duration::from_millis(50))
        .max_delay(Duration::from_millis(500))
        .into_policy()
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A reader of `url`, named, with short waits.
pub fn reader(
    url: &str,
    name: &str,
    tune: impl FnOnce(&mut reader_core::ReaderConfig),
) -> DataReader<RedisConnector> {
    RedisConnector::from_url(url)
        .expect("url")
        .reader_builder()
        .retry(policy())
        .configure(|c| {
            c.name = Some(name.to_owned());
            c.fetch_wait = Duration::from_millis(200);
            c.commit_interval = Duration::from_millis(20);
            tune(c);
        })
        .build()
        .expect("build")
}

/// A plain fred client for writing test data, with fred's own reconnects (test code only).
pub async fn raw(host_port: &str) -> Client {
    let (host, port) = host_port.rsplit_once(':').unwrap();
    let config = Config {
        server: ServerConfig::new_centralized(host, port.parse::<u16>().unwrap()),
        ..Config::default()
    };
    let client = Builder::from_config(config)
        .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(2))
        .with_connection_config(|c| c.connection_timeout = Duration::from_secs(2))
        .set_policy(ReconnectPolicy::new_constant(0, 100))
        .build()
        .unwrap();
    client.init().await.expect("raw client connects");
    client
}

/// XADD with an explicit ID `ms-1` (so a retry after an unknown outcome is safe), retrying
/// for up to 60 s through server deaths. Returns the number of retries.
pub async fn xadd(c: &Client, key: &str, ms: u64, fields: Vec<(&str, Value)>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut retries = 0;
    loop {
        let r: Result<Value, _> = c
            .xadd(key, false, None, format!("{ms}-1"), fields.clone())
            .await;
        match r {
            Ok(_) => return retries,
            Err(e) if e.details().contains("equal or smaller") => return retries,
            Err(e) => {
                retries += 1;
                assert!(Instant::now() < deadline, "XADD kept failing for 60 s: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The `ms` part of a delivery's stream ID.
pub fn ms_of(d: &Delivery) -> u64 {
    match d.position() {
        reader_core::Position::Stream { id, .. } => id.ms,
        p => panic!("not a stream position: {p}"),
    }
}

/// Wait until the reader is `Ready`, bounded.
pub async fn until_ready<C: reader_core::Connector>(reader: &DataReader<C>) {
    testkit::readers::until_ready(reader, Duration::from_secs(30)).await;
}

/// The next stream item, bounded.
pub async fn next(stream: &mut ReadStream) -> Option<Result<Delivery, ReadError>> {
    testkit::readers::next(stream, Duration::from_secs(30)).await
}

/// The next event of a kind, bounded.
pub async fn event_of(rx: &mut broadcast::Receiver<ReaderEvent>, kind: EventKind) -> ReaderEvent {
    testkit::readers::event_of(rx, kind, Duration::from_secs(30)).await
}

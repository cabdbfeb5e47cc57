//! Helpers shared by the Kafka integration tests: a private tansu broker, topic creation and
//! producing through rskafka, readers, and bounded waits.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reader_core::{
    DataReader, Delivery, EventKind, ReadError, ReadStream, ReaderEvent, RetryPolicy,
};
use reader_kafka::{KafkaConfig, KafkaConnector};
use rskafka::chrono::DateTime;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use rskafka::BackoffConfig;
use testkit::{KafkaOpts, Server};
use tokio::sync::broadcast;
use tokio::time::Instant;

/// The policy every test reads with.
pub fn policy() -> Arc<dyn RetryPolicy> {
    reader_retry::Retry::persistent(Duration::from_secs(90))
        .initial(Duration::from_millis(50))
        .max_delay(Duration::from_millis(500))
        .into_policy()
}

/// A name no other test (or earlier run) uses: tansu never forgets a topic or a group.
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

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A private tansu broker of this test.
pub async fn broker() -> Server {
    init_tracing();
    Server::kafka(KafkaOpts::default())
        .await
        .expect("start a private tansu broker (`cargo xtask servers up` installs tansu)")
}

/// An rskafka client for producing and administration (bounded internal retries).
pub async fn admin(addr: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let b = ClientBuilder::new(vec![addr.to_owned()]).backoff_config(BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            base: 2.0,
            deadline: Some(Duration::from_secs(3)),
        });
        match tokio::time::timeout(Duration::from_secs(5), b.build()).await {
            Ok(Ok(c)) => return c,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no admin client to {addr} within 30 s: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Create `topic` with `partitions` partitions (replication 1) and wait until its metadata
/// shows them all.
pub async fn create_topic(client: &Client, topic: &str, partitions: i32) {
    client
        .controller_client()
        .expect("controller client")
        .create_topic(topic, partitions, 1, 5_000)
        .await
        .unwrap_or_else(|e| panic!("create topic {topic}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ts = client.list_topics().await.expect("metadata");
        if ts
            .iter()
            .any(|t| t.name == topic && t.partitions.len() == usize::try_from(partitions).unwrap())
        {
            return;
        }
        assert!(Instant::now() < deadline, "topic {topic} did not appear");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A record whose value is `value` and whose timestamp is `ts_ms`.
pub fn record(value: String, ts_ms: i64) -> Record {
    Record {
        key: None,
        value: Some(value.into_bytes()),
        headers: BTreeMap::new(),
        timestamp: DateTime::from_timestamp_millis(ts_ms).unwrap(),
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Produce `values` to `topic`/`partition` (one request); returns their offsets.
pub async fn produce(
    client: &Client,
    topic: &str,
    partition: i32,
    values: Vec<String>,
) -> Vec<i64> {
    let pc = client
        .partition_client(topic, partition, UnknownTopicHandling::Error)
        .await
        .expect("partition client");
    let ts = now_ms();
    let records = values.into_iter().map(|v| record(v, ts)).collect();
    pc.produce(records, Compression::NoCompression)
        .await
        .unwrap_or_else(|e| panic!("produce to {topic}/{partition}: {e}"))
}

/// Produce `per_partition` records `"p:i"` (i from `from`) to every partition of `topic`.
pub async fn produce_each(
    client: &Client,
    topic: &str,
    partitions: i32,
    from: usize,
    per_partition: usize,
) {
    for p in 0..partitions {
        let values = (from..from + per_partition)
            .map(|i| format!("{p}:{i}"))
            .collect();
        produce(client, topic, p, values).await;
    }
}

/// The connector of a group reader of `topic` through `addr`, with the short timeouts tansu
/// tests need (session 6 s, heartbeat 1 s).
pub fn group_config(addr: &str, topic: &str, group: &str) -> KafkaConfig {
    let mut cfg = KafkaConfig::new(vec![addr.to_owned()], vec![topic.to_owned()]).with_group(group);
    cfg.session_timeout = Duration::from_secs(6);
    cfg.heartbeat_interval = Duration::from_secs(1);
    cfg.rebalance_timeout = Duration::from_secs(10);
    cfg.max_wait = Duration::from_millis(200);
    cfg.commit_interval = Duration::from_millis(50);
    cfg
}

/// A reader built from `cfg`, named `name`.
pub fn reader(
    cfg: KafkaConfig,
    name: &str,
    tune: impl FnOnce(&mut reader_core::ReaderConfig),
) -> DataReader<KafkaConnector> {
    KafkaConnector::new(cfg)
        .expect("config")
        .reader_builder()
        .retry(policy())
        .configure(|c| {
            c.name = Some(name.to_owned());
            c.fetch_wait = Duration::from_millis(300);
            c.ping_interval = Duration::from_secs(1);
            c.ping_timeout = Duration::from_secs(3);
            c.fetch_grace = Duration::from_secs(5);
            tune(c);
        })
        .build()
        .expect("build")
}

/// Wait until the reader is `Ready`, bounded.
pub async fn until_ready<C: reader_core::Connector>(reader: &DataReader<C>) {
    testkit::readers::until_ready(reader, Duration::from_secs(60)).await;
}

/// The next stream item, bounded.
pub async fn next(
    stream: &mut ReadStream,
    within: Duration,
) -> Option<Result<Delivery, ReadError>> {
    testkit::readers::next(stream, within).await
}

/// `(partition, offset)` of a delivery.
pub fn po(d: &Delivery) -> (i32, i64) {
    match d.position() {
        reader_core::Position::Partition {
            partition, offset, ..
        } => (*partition, *offset),
        other => panic!("not a Kafka position: {other:?}"),
    }
}

/// The next event of a kind, bounded.
pub async fn event_of(
    rx: &mut broadcast::Receiver<ReaderEvent>,
    kind: EventKind,
    within: Duration,
) -> ReaderEvent {
    testkit::readers::event_of(rx, kind, within).await
}

/// The partitions named in a `Rebalanced` event's detail (`… owns topic/0,1,2 — joined …`).
pub fn owned_in(detail: &str, topic: &str) -> Vec<i32> {
    let Some(rest) = detail.split(" owns ").nth(1) else {
        return Vec::new();
    };
    let prefix = format!("{topic}/");
    rest.split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .map(|ps| ps.split(',').filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// What a reader running on its own runtime reports to the test.
#[derive(Debug)]
pub enum Seen {
    /// A delivery (acknowledged right away).
    Record(i32, i64),
    /// A `Rebalanced` event: the partitions of `topic` this member owns now.
    Assigned(Vec<i32>),
    /// The stream surfaced an error.
    Error(String),
}

/// A group reader on its own thread and runtime, acknowledging every delivery. Dropping
/// [`Crashable::crash`] ends the runtime *without* closing the reader: no final commit, no
/// LeaveGroup — the coordinator only learns of it when the session times out, as with a
/// process that died.
pub struct Crashable {
    pub rx: tokio::sync::mpsc::UnboundedReceiver<Seen>,
    stop: Option<std::sync::mpsc::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Crashable {
    pub fn start(cfg: KafkaConfig, name: &str) -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<bool>();
        let topic = cfg.topics[0].clone();
        let name = name.to_owned();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let (stopped_tx, mut stopped_rx) = tokio::sync::oneshot::channel::<bool>();
            std::thread::spawn(move || {
                let graceful = stop_rx.recv().unwrap_or(false);
                let _ = stopped_tx.send(graceful);
            });
            rt.block_on(async move {
                let r = reader(cfg, &name, |_| {});
                let mut events = r.events();
                let mut s = r.read(reader_core::CancellationToken::new());
                loop {
                    tokio::select! {
                        graceful = &mut stopped_rx => {
                            if graceful.unwrap_or(false) {
                                r.close().await;
                            }
                            return;
                        }
                        e = events.recv() => {
                            if let Ok(e) = e {
                                if e.kind == EventKind::Rebalanced {
                                    let _ = tx.send(Seen::Assigned(owned_in(&e.detail, &topic)));
                                }
                            }
                        }
                        d = s.recv() => match d {
                            Some(Ok(d)) => {
                                d.ack();
                                let (p, o) = po(&d);
                                let _ = tx.send(Seen::Record(p, o));
                            }
                            Some(Err(e)) => { let _ = tx.send(Seen::Error(e.to_string())); }
                            None => return,
                        }
                    }
                }
            });
            // Dropping the runtime drops every task of the reader without polling it again.
            drop(rt);
        });
        Self {
            rx,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// End the runtime without closing the reader (a crash).
    pub fn crash(mut self) {
        self.end(false);
    }

    /// Close the reader properly (final commit, LeaveGroup).
    pub fn close(mut self) {
        self.end(true);
    }

    fn end(&mut self, graceful: bool) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(graceful);
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Crashable {
    fn drop(&mut self) {
        self.end(false);
    }
}

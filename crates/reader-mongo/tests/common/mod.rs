//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, Document, Timestamp};
use mongodb::Client;
use reader_core::{
    Checkpoint, DataReader, Delivery, ReadError, ReadStream, ReaderEvent, RetryPolicy,
};
use reader_mongo::MongoConnector;
use tokio::sync::broadcast;

/// The policy every test reads with.
pub fn policy() -> Arc<dyn RetryPolicy> {
    reader_retry::Retry::persistent(Duration::from_secs(90)).into_policy()
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` (which has a query already, as the testkit's do) plus more query parameters.
pub fn with_params(url: &str, params: &str) -> String {
    if url.contains('?') {
        format!("{url}&{params}")
    } else {
        format!("{url}/?{params}")
    }
}

/// A plain driver client for writing test data, directly to the server.
pub async fn writer(url: &str) -> Client {
    Client::with_uri_str(with_params(url, "serverSelectionTimeoutMS=3000"))
        .await
        .expect("writer client")
}

/// Wait until the reader is `Ready` (its change stream is open), bounded.
pub async fn until_ready<C: reader_core::Connector>(reader: &DataReader<C>) {
    testkit::readers::until_ready(reader, Duration::from_secs(60)).await;
}

/// The next stream item, bounded.
pub async fn next(stream: &mut ReadStream) -> Option<Result<Delivery, ReadError>> {
    testkit::readers::next(stream, Duration::from_secs(60)).await
}

/// The inserted document's `_id` of an insert event (its key, as JSON).
pub fn id_of(d: &Delivery) -> i64 {
    let key = d.message().key.as_ref().expect("event without key");
    serde_json::from_slice::<i64>(key)
        .unwrap_or_else(|_| panic!("key {:?} is not an integer", String::from_utf8_lossy(key)))
}

/// A reader of `url` with a name and a checkpoint store.
pub fn reader(
    url: &str,
    name: &str,
    store: Arc<dyn reader_core::CheckpointStore>,
    tune: impl FnOnce(&mut reader_core::ReaderConfig),
) -> DataReader<MongoConnector> {
    reader_of(
        MongoConnector::from_url(url).expect("url"),
        name,
        store,
        tune,
    )
}

/// A reader of any connector (e.g. a [`MongoConnector`] built from a tuned config, or one
/// wrapped to record what its sessions do), with the tests' settings.
pub fn reader_of<C: reader_core::Connector>(
    connector: C,
    name: &str,
    store: Arc<dyn reader_core::CheckpointStore>,
    tune: impl FnOnce(&mut reader_core::ReaderConfig),
) -> DataReader<C> {
    DataReader::builder(connector)
        .retry(policy())
        .checkpoint_store(store)
        .configure(|c| {
            c.name = Some(name.to_owned());
            c.fetch_wait = Duration::from_millis(300);
            tune(c);
        })
        .build()
        .expect("build")
}

/// The next event of a kind, bounded.
pub async fn event_of(
    rx: &mut broadcast::Receiver<ReaderEvent>,
    kind: reader_core::EventKind,
) -> ReaderEvent {
    testkit::readers::event_of(rx, kind, Duration::from_secs(60)).await
}

/// Insert `ids` in order (one `insert_many`), with majority write concern.
pub async fn insert_ids(client: &Client, db: &str, coll: &str, ids: std::ops::Range<i64>) {
    let docs: Vec<Document> = ids.map(|i| doc! { "_id": i, "n": i }).collect();
    client
        .database(db)
        .collection::<Document>(coll)
        .insert_many(docs)
        .await
        .expect("insert");
}

/// The timestamp of the oldest oplog entry.
pub async fn oplog_start(client: &Client) -> Timestamp {
    let first: Vec<Document> = client
        .database("local")
        .collection::<Document>("oplog.rs")
        .find(doc! {})
        .sort(doc! { "$natural": 1 })
        .limit(1)
        .await
        .expect("oplog find")
        .try_collect()
        .await
        .expect("oplog read");
    first[0].get_timestamp("ts").expect("ts")
}

/// A checkpoint holding one raw resume token.
pub fn checkpoint_of(token: bytes::Bytes) -> Checkpoint {
    let mut cp = Checkpoint::new();
    cp.advance(&reader_core::Position::ResumeToken {
        cluster_time: reader_mongo::token::cluster_time(&token).map(|t| t.time),
        token,
    });
    cp
}

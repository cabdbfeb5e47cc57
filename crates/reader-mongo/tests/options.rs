//! The change-stream options reach the server and do what they say, on the shared mongod
//! (`UNIREADER_MONGO_URL`): the pipeline filter, `fullDocument` / `fullDocumentBeforeChange`,
//! `batchSize`, `maxAwaitTimeMS`, `start=time:` and `start=token:` (after an invalidate);
//! and a quiet stream's checkpoint advancing on the post-batch resume token, with the
//! checkpoint-age gauge set.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use mongodb::bson::{doc, Document};
use reader_core::{
    CancellationToken, Checkpoint, CheckpointStore, CommitOrder, Connector, EventKind, Lane,
    MemoryCheckpointStore, Message, Position, ReadError, Reader, SessionContext,
};
use reader_mongo::{MongoConfig, MongoConnector};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

/// What each session's fetches returned: (messages, how long the fetch took).
type FetchLog = watch::Sender<Vec<(usize, Duration)>>;

/// A connector whose sessions record their fetches, so a test sees what the server sent.
struct Recording<C> {
    inner: C,
    log: Arc<FetchLog>,
}

struct RecordingReader<R> {
    inner: R,
    log: Arc<FetchLog>,
}

#[async_trait]
impl<C: Connector> Connector for Recording<C> {
    type Reader = RecordingReader<C::Reader>;
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn commit_order(&self) -> CommitOrder {
        self.inner.commit_order()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn connect(
        &self,
        ctx: &SessionContext,
        from: &Checkpoint,
    ) -> Result<Self::Reader, ReadError> {
        Ok(RecordingReader {
            inner: self.inner.connect(ctx, from).await?,
            log: self.log.clone(),
        })
    }
}

#[async_trait]
impl<R: Reader> Reader for RecordingReader<R> {
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Message>, ReadError> {
        let t0 = Instant::now();
        let got = self.inner.fetch(max, wait).await?;
        let took = t0.elapsed();
        self.log.send_modify(|l| l.push((got.len(), took)));
        Ok(got)
    }
    async fn commit(&self, positions: &[Position]) -> Result<(), ReadError> {
        self.inner.commit(positions).await
    }
    fn idle_position(&self) -> Option<Position> {
        self.inner.idle_position()
    }
    async fn ping(&self) -> Result<Duration, ReadError> {
        self.inner.ping().await
    }
    async fn close(&self) {
        self.inner.close().await;
    }
}

fn recording(cfg: MongoConfig) -> (Recording<MongoConnector>, Arc<FetchLog>) {
    let log = Arc::new(watch::channel(Vec::new()).0);
    (
        Recording {
            inner: MongoConnector::new(cfg).unwrap(),
            log: log.clone(),
        },
        log,
    )
}

fn payload_json(d: &reader_core::Delivery) -> Value {
    serde_json::from_slice(d.payload()).expect("payload is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_and_full_document_options_reach_the_server() {
    let base = testkit::shared::mongo_url();
    let db = "unireader_test";
    let coll = unique("opts_fd");
    let w = writer(&base).await;
    // Pre-images must be switched on per collection for fullDocumentBeforeChange.
    w.database(db)
        .run_command(doc! { "create": &coll, "changeStreamPreAndPostImages": { "enabled": true } })
        .await
        .unwrap();
    let mut cfg = MongoConfig::from_url(&with_params(
        &base,
        &format!(
            "database={db}&collection={coll}&full_document=updateLookup&full_document_before_change=required"
        ),
    ))
    .unwrap();
    // Only inserts and updates of even ids.
    cfg.pipeline = vec![doc! { "$match": {
        "operationType": { "$in": ["insert", "update"] },
        "documentKey._id": { "$mod": [2, 0] },
    } }];
    let r = reader_of(
        MongoConnector::new(cfg).unwrap(),
        &unique("opts_fd_src"),
        Arc::new(MemoryCheckpointStore::new()),
        |_| {},
    );
    let mut s = r.read(CancellationToken::new());
    until_ready(&r).await;
    insert_ids(&w, db, &coll, 0..10).await;
    let c = w.database(db).collection::<Document>(&coll);
    for i in 0..10_i64 {
        c.update_one(doc! { "_id": i }, doc! { "$set": { "n": 100 + i } })
            .await
            .unwrap();
    }
    c.delete_many(doc! {}).await.unwrap();
    // A last even insert marks the end: the deletes before it must have been filtered out.
    c.insert_one(doc! { "_id": 1000_i64, "n": 0 })
        .await
        .unwrap();

    let mut seen = Vec::new();
    loop {
        let d = next(&mut s).await.unwrap().unwrap();
        let v = payload_json(&d);
        let op = v["operationType"].as_str().unwrap().to_owned();
        let id = id_of(&d);
        if op == "update" {
            assert_eq!(
                v["fullDocument"]["n"].as_i64(),
                Some(100 + id),
                "updateLookup: the post-image: {v}"
            );
            assert_eq!(
                v["fullDocumentBeforeChange"]["n"].as_i64(),
                Some(id),
                "the pre-image: {v}"
            );
        } else {
            assert_eq!(op, "insert", "{v}");
            assert!(v.get("fullDocumentBeforeChange").is_none(), "{v}");
        }
        d.ack();
        seen.push((op, id));
        if id == 1000 {
            break;
        }
    }
    let mut want: Vec<(String, i64)> = (0..10).step_by(2).map(|i| ("insert".into(), i)).collect();
    want.extend((0..10).step_by(2).map(|i| ("update".into(), i)));
    want.push(("insert".into(), 1000));
    assert_eq!(seen, want, "the $match stage filtered on the server");
    r.close().await;
    println!("pipeline + fullDocument + fullDocumentBeforeChange: {seen:?}");
}

/// The profiled `getMore`s of one client (by its `appName`) on `db.coll`.
async fn profiled_get_mores(w: &mongodb::Client, db: &str, coll: &str, app: &str) -> Vec<Document> {
    use futures::TryStreamExt;
    w.database(db)
        .collection::<Document>("system.profile")
        .find(doc! { "op": "getmore", "ns": format!("{db}.{coll}"), "appName": app })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_size_and_max_await_time_reach_the_server() {
    let base = testkit::shared::mongo_url();
    // A database of its own, profiled, so the server records every getMore it was sent.
    let db = &unique("unireader_prof");
    let coll = "watched";
    let w = writer(&base).await;
    w.database(db)
        .run_command(doc! { "profile": 2 })
        .await
        .unwrap();
    let url = with_params(&base, &format!("database={db}&collection={coll}"));
    let tune = |c: &mut reader_core::ReaderConfig| {
        // A fetch may wait 5 s: only maxAwaitTimeMS can make an idle one return sooner.
        c.fetch_wait = Duration::from_secs(5);
    };
    let small = MongoConfig::from_url(&with_params(
        &url,
        "appName=batch3&batch_size=3&max_await_ms=200",
    ))
    .unwrap();
    let (small, small_log) = recording(small);
    let plain =
        MongoConnector::new(MongoConfig::from_url(&with_params(&url, "appName=plain")).unwrap())
            .unwrap();
    let store = Arc::new(MemoryCheckpointStore::new());
    let a = reader_of(small, &unique("batch3"), store.clone(), tune);
    let b = reader_of(plain, &unique("batch_default"), store, |_| {});
    let mut sa = a.read(CancellationToken::new());
    let mut sb = b.read(CancellationToken::new());
    until_ready(&a).await;
    until_ready(&b).await;
    // Idle fetches of the 200 ms stream come back after about maxAwaitTimeMS, not `wait`.
    let mut watch_small = small_log.subscribe();
    tokio::time::timeout(
        Duration::from_secs(30),
        watch_small.wait_for(|l| l.iter().filter(|(n, _)| *n == 0).count() >= 3),
    )
    .await
    .expect("three idle fetches within 30 s")
    .unwrap();
    let idle: Vec<Duration> = small_log
        .borrow()
        .iter()
        .filter(|(n, _)| *n == 0)
        .map(|(_, t)| *t)
        .collect();
    assert!(
        idle.iter().all(|t| *t < Duration::from_millis(2500)),
        "idle fetches must end after about max_await (200 ms), not the 5 s wait: {idle:?}"
    );

    insert_ids(&w, db, coll, 0..300).await;
    for want in 0..300 {
        for s in [&mut sa, &mut sb] {
            let d = next(s).await.unwrap().unwrap();
            assert_eq!(id_of(&d), want);
            d.ack();
        }
    }
    a.close().await;
    b.close().await;
    let small_gm = profiled_get_mores(&w, db, coll, "batch3").await;
    let plain_gm = profiled_get_mores(&w, db, coll, "plain").await;
    let _ = w.database(db).run_command(doc! { "profile": 0 }).await;
    let _ = w.database(db).drop().await;
    let returned = |gm: &[Document]| -> Vec<i64> {
        gm.iter()
            .map(|d| i64::from(d.get_i32("nreturned").unwrap_or(0)))
            .collect()
    };
    let (small_n, plain_n) = (returned(&small_gm), returned(&plain_gm));
    assert!(
        small_n.iter().sum::<i64>() >= 297,
        "the batch_size=3 stream's events came through getMores: {small_n:?}"
    );
    for d in &small_gm {
        let cmd = d.get_document("command").unwrap();
        assert_eq!(
            cmd.get_i64("batchSize")
                .ok()
                .or_else(|| cmd.get_i32("batchSize").ok().map(i64::from)),
            Some(3),
            "batchSize: {cmd}"
        );
        assert_eq!(
            cmd.get_i64("maxTimeMS")
                .ok()
                .or_else(|| cmd.get_i32("maxTimeMS").ok().map(i64::from)),
            Some(200),
            "maxAwaitTimeMS is sent as the getMore's maxTimeMS: {cmd}"
        );
    }
    assert!(small_n.iter().all(|n| *n <= 3), "{small_n:?}");
    assert!(
        plain_n.iter().any(|n| *n > 3),
        "the control: without batch_size the server sends larger batches: {plain_n:?}"
    );
    println!(
        "batch_size=3 + max_await_ms=200: {} getMores (batchSize 3, maxTimeMS 200, at most \
         {} returned each); default: {} getMores, up to {} each; idle fetch durations with a \
         5 s wait: {idle:.0?}",
        small_gm.len(),
        small_n.iter().max().unwrap(),
        plain_gm.len(),
        plain_n.iter().max().unwrap(),
    );
}

/// The `operationTime` ("ts") of the server's last write.
async fn last_write(client: &mongodb::Client) -> mongodb::bson::Timestamp {
    let hello = client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .unwrap();
    hello
        .get_document("lastWrite")
        .and_then(|l| l.get_document("opTime"))
        .and_then(|o| o.get_timestamp("ts"))
        .expect("hello.lastWrite.opTime.ts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_a_time_and_start_after_an_invalidate_token() {
    let base = testkit::shared::mongo_url();
    let db = "unireader_test";
    let coll = unique("opts_start");
    let w = writer(&base).await;
    let url = with_params(&base, &format!("database={db}&collection={coll}"));

    // start=time: the events at or after a cluster time, from the oplog.
    insert_ids(&w, db, &coll, 0..5).await;
    let ts = last_write(&w).await;
    insert_ids(&w, db, &coll, 5..10).await;
    let r = reader(
        &with_params(
            &url,
            &format!("start=time:{}.{}", ts.time, ts.increment + 1),
        ),
        &unique("start_time"),
        Arc::new(MemoryCheckpointStore::new()),
        |_| {},
    );
    let mut events = r.events();
    let mut s = r.read(CancellationToken::new());
    for want in 5..10 {
        let d = next(&mut s).await.unwrap().unwrap();
        assert_eq!(id_of(&d), want, "start=time replays from that time only");
        d.ack();
    }
    // Dropping the collection invalidates; its token is given back to the user.
    w.database(db)
        .collection::<Document>(&coll)
        .drop()
        .await
        .unwrap();
    let d = next(&mut s).await.unwrap().unwrap();
    assert_eq!(d.message().header("operationType").unwrap(), "drop");
    d.ack();
    assert!(next(&mut s).await.is_none(), "clean end after invalidate");
    let ev = common::event_of(&mut events, EventKind::Invalidated).await;
    r.close().await;
    let hex: String = ev
        .detail
        .split_once("start=token:")
        .expect("the invalidate event gives the token")
        .1
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();

    // start=token: of an invalidate event (startAfter): the re-created collection's events.
    insert_ids(&w, db, &coll, 100..105).await;
    let r = reader(
        &with_params(&url, &format!("start=token:{hex}")),
        &unique("start_token"),
        Arc::new(MemoryCheckpointStore::new()),
        |_| {},
    );
    let mut s = r.read(CancellationToken::new());
    for want in 100..105 {
        let d = next(&mut s).await.unwrap().unwrap();
        assert_eq!(id_of(&d), want, "startAfter the invalidate token");
        d.ack();
    }
    assert_eq!(r.health().sessions, 1);
    r.close().await;
    println!(
        "start=time:{}.{} → 5..10; start=token:<invalidate> → 100..105",
        ts.time,
        ts.increment + 1
    );
}

/// A metrics recorder that keeps the last value of every gauge, by name and labels, and
/// tells watchers about every change.
struct Gauges(watch::Sender<BTreeMap<String, f64>>);

struct GaugeCell {
    key: String,
    all: &'static Gauges,
}

impl metrics::GaugeFn for GaugeCell {
    fn increment(&self, v: f64) {
        self.all
            .0
            .send_modify(|m| *m.entry(self.key.clone()).or_default() += v);
    }
    fn decrement(&self, v: f64) {
        self.all
            .0
            .send_modify(|m| *m.entry(self.key.clone()).or_default() -= v);
    }
    fn set(&self, v: f64) {
        self.all.0.send_modify(|m| {
            m.insert(self.key.clone(), v);
        });
    }
}

struct Recorder(&'static Gauges);

fn gauge_key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    l.sort();
    format!("{name}{{{}}}", l.join(","))
}

impl metrics::Recorder for Recorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        metrics::Gauge::from_arc(Arc::new(GaugeCell {
            key: gauge_key(key.name(), &labels),
            all: self.0,
        }))
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

fn gauges() -> &'static Gauges {
    static G: OnceLock<&'static Gauges> = OnceLock::new();
    G.get_or_init(|| {
        let g: &'static Gauges = Box::leak(Box::new(Gauges(watch::channel(BTreeMap::new()).0)));
        metrics::set_global_recorder(Recorder(g)).expect("no other recorder in this test process");
        g
    })
}

/// A checkpoint store that tells the test about every save.
#[derive(Debug)]
struct Notifying {
    inner: MemoryCheckpointStore,
    saves: watch::Sender<(u64, Option<Checkpoint>)>,
}

#[async_trait]
impl CheckpointStore for Notifying {
    async fn load(&self, source: &str) -> Result<Option<Checkpoint>, ReadError> {
        self.inner.load(source).await
    }
    async fn save(&self, source: &str, checkpoint: &Checkpoint) -> Result<(), ReadError> {
        self.inner.save(source, checkpoint).await?;
        self.saves
            .send_modify(|(n, c)| (*n, *c) = (*n + 1, Some(checkpoint.clone())));
        Ok(())
    }
}

fn token_of(cp: &Checkpoint) -> (bytes::Bytes, u32) {
    match cp.get(&Lane::ChangeStream) {
        Some(Position::ResumeToken {
            token,
            cluster_time: Some(t),
        }) => (token.clone(), *t),
        other => panic!("no resume token with a cluster time: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_stream_checkpoint_advances_on_the_post_batch_token() {
    let gauges = gauges();
    let base = testkit::shared::mongo_url();
    let db = "unireader_test";
    let (quiet, busy) = (unique("idle_quiet"), unique("idle_busy"));
    let name = unique("idle_src");
    let w = writer(&base).await;
    let url = with_params(
        &base,
        &format!("database={db}&collection={quiet}&max_await_ms=200"),
    );
    let store = Arc::new(Notifying {
        inner: MemoryCheckpointStore::new(),
        saves: watch::channel((0, None)).0,
    });
    let mut saves = store.saves.subscribe();
    let r = reader(&url, &name, store.clone(), |c| {
        c.commit_interval = Duration::from_millis(20);
        c.ping_interval = Duration::from_millis(200);
    });
    let mut s = r.read(CancellationToken::new());
    until_ready(&r).await;
    insert_ids(&w, db, &quiet, 0..1).await;
    let d = next(&mut s).await.unwrap().unwrap();
    assert_eq!(id_of(&d), 0);
    let event_token = match d.position() {
        Position::ResumeToken { token, .. } => token.clone(),
        p => panic!("{p:?}"),
    };
    d.ack();
    let first = tokio::time::timeout(
        Duration::from_secs(30),
        saves.wait_for(|(_, c)| c.as_ref().is_some_and(|c| token_of(c).0 == event_token)),
    )
    .await
    .expect("the acked event's token saved within 30 s")
    .unwrap()
    .1
    .clone()
    .unwrap();
    let (_, first_time) = token_of(&first);

    // Only the other collection is written to: the watched one stays quiet.
    let busy_writer = {
        let w = w.clone();
        let (db, busy) = (db.to_owned(), busy.clone());
        tokio::spawn(async move {
            let c = w.database(&db).collection::<Document>(&busy);
            // Load shaping, not synchronisation: a write every 100 ms.
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for i in 0_i64.. {
                tick.tick().await;
                c.insert_one(doc! { "_id": i }).await.unwrap();
            }
        })
    };
    let t0 = Instant::now();
    let later = tokio::time::timeout(
        Duration::from_secs(30),
        saves.wait_for(|(_, c)| {
            c.as_ref()
                .is_some_and(|c| token_of(c).0 != event_token && token_of(c).1 > first_time)
        }),
    )
    .await
    .expect("the quiet stream's checkpoint did not advance within 30 s")
    .unwrap()
    .1
    .clone()
    .unwrap();
    let advanced_after = t0.elapsed();
    busy_writer.abort();
    let (later_token, later_time) = token_of(&later);
    assert_eq!(r.committed(), later, "committed and saved agree");

    // The checkpoint-age gauge is set from the saved token's cluster time.
    let key = gauge_key(
        reader_core::metrics::MONGO_CHECKPOINT_AGE_SECONDS,
        &[("backend", "mongo"), ("source", &name)],
    );
    let mut gauge_watch = gauges.0.subscribe();
    let age = tokio::time::timeout(
        Duration::from_secs(10),
        gauge_watch.wait_for(|m| m.contains_key(&key)),
    )
    .await
    .unwrap_or_else(|_| panic!("gauge {key} never set: {:?}", *gauges.0.borrow()))
    .unwrap()[&key];
    assert!((0.0..30.0).contains(&age), "{key} = {age}");
    r.close().await;

    // A new reader from the idle checkpoint sees the next event of the watched collection,
    // not the one before the quiet period again.
    insert_ids(&w, db, &quiet, 1..2).await;
    let r2 = reader(&url, &name, store.clone(), |_| {});
    let mut s2 = r2.read(CancellationToken::new());
    let d = next(&mut s2).await.unwrap().unwrap();
    assert_eq!(
        id_of(&d),
        1,
        "resumes from the post-batch token, after event 0"
    );
    d.ack();
    r2.close().await;
    println!(
        "idle stream: checkpoint moved from cluster time {first_time} to {later_time} \
         ({} token) {advanced_after:.1?} after the other collection got busy; \
         {} = {age}",
        reader_mongo::token::data_hex(&later_token).unwrap_or_default(),
        reader_core::metrics::MONGO_CHECKPOINT_AGE_SECONDS,
    );
}

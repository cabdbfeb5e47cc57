//! Non-destructive tests on the shared mongod (`UNIREADER_MONGO_URL`): resuming from a file
//! checkpoint after a drop without close, invalidation, and the MongoDB checkpoint store.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;

use common::*;
use mongodb::bson::{doc, Document};
use reader_core::{
    CheckpointStore, ErrorKind, EventKind, FileCheckpointStore, Lane, MemoryCheckpointStore,
    Position,
};
use reader_mongo::MongoCheckpointStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_without_close_then_a_new_reader_continues_after_the_last_ack() {
    let base = testkit::shared::mongo_url();
    let db = "unireader_test";
    let coll = unique("resume");
    let name = unique("resume_src");
    let dir = std::env::temp_dir().join(unique("rm_ckpt"));
    let store: Arc<dyn CheckpointStore> = Arc::new(FileCheckpointStore::new(&dir));
    let url = with_params(&base, &format!("database={db}&collection={coll}"));
    let w = writer(&base).await;

    let first = reader(&url, &name, store.clone(), |_| {});
    let mut s = first.read(reader_core::CancellationToken::new());
    until_ready(&first).await;
    insert_ids(&w, db, &coll, 0..100).await;
    // Handle and ack 0..60; receive 60..70 without acking them.
    for want in 0..70 {
        let d = next(&mut s).await.expect("open").expect("delivery");
        assert_eq!(id_of(&d), want);
        if want < 60 {
            d.ack();
        }
    }
    first.commit_now().await.expect("commit");
    let committed = first.committed();
    assert!(committed.get(&Lane::ChangeStream).is_some());
    drop(s);
    drop(first); // no close: the process "died"

    insert_ids(&w, db, &coll, 100..150).await;
    let second = reader(&url, &name, store.clone(), |_| {});
    let mut s = second.read(reader_core::CancellationToken::new());
    let mut got = Vec::new();
    for _ in 60..150 {
        let d = next(&mut s).await.expect("open").expect("delivery");
        got.push(id_of(&d));
        d.ack();
    }
    let want: Vec<i64> = (60..150).collect();
    assert_eq!(
        got, want,
        "the second reader must start right after the last acked event"
    );
    let report = second.close().await;
    assert_eq!(report.unacked, 0);
    assert!(!report.timed_out);
    assert_eq!(second.live_tasks(), 0);
    println!(
        "resume: first reader acked 0..60 and left 60..70 unacked; second delivered {}..{} \
         ({} events, 10 re-deliveries = the unacked window, 0 lost)",
        got[0],
        got[got.len() - 1],
        got.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_watched_collection_ends_the_stream_cleanly() {
    let base = testkit::shared::mongo_url();
    let db = "unireader_test";
    let coll = unique("invalidate");
    let url = with_params(&base, &format!("database={db}&collection={coll}"));
    let w = writer(&base).await;
    let r = reader(
        &url,
        &unique("inv_src"),
        Arc::new(MemoryCheckpointStore::new()),
        |_| {},
    );
    let mut events = r.events();
    let mut s = r.read(reader_core::CancellationToken::new());
    until_ready(&r).await;
    insert_ids(&w, db, &coll, 0..5).await;
    w.database(db)
        .collection::<Document>(&coll)
        .drop()
        .await
        .unwrap();
    let mut ops = Vec::new();
    while let Some(item) = next(&mut s).await {
        let d = item.expect("no error item may end an invalidated stream");
        let op = String::from_utf8_lossy(d.message().header("operationType").unwrap()).into_owned();
        ops.push(op);
        d.ack();
    }
    assert_eq!(
        ops,
        ["insert", "insert", "insert", "insert", "insert", "drop"]
    );
    let ev = event_of(&mut events, EventKind::Invalidated).await;
    assert!(ev.detail.contains("invalidated"), "{}", ev.detail);
    assert!(ev.detail.contains("start=token:"), "{}", ev.detail);
    assert_eq!(r.state(), reader_core::ConnState::Closed);
    r.close().await;
    assert_eq!(r.live_tasks(), 0);
    println!(
        "invalidate: {} events then a clean end; event: {}",
        ops.len(),
        ev.detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_checkpoint_store_round_trips_and_serves_a_reader() {
    let base = testkit::shared::mongo_url();
    let db = "unireader_test";
    let store_coll = unique("ckpts");
    let store = MongoCheckpointStore::connect(&base, db, &store_coll)
        .await
        .unwrap();
    assert_eq!(store.load("nobody").await.unwrap(), None);

    // A real reader saving to it.
    let coll = unique("store_src");
    let name = unique("store_reader");
    let url = with_params(&base, &format!("database={db}&collection={coll}"));
    let w = writer(&base).await;
    let store: Arc<dyn CheckpointStore> = Arc::new(store);
    let r = reader(&url, &name, store.clone(), |_| {});
    let mut s = r.read(reader_core::CancellationToken::new());
    until_ready(&r).await;
    insert_ids(&w, db, &coll, 0..10).await;
    let mut last = None;
    for want in 0..10 {
        let d = next(&mut s).await.unwrap().unwrap();
        assert_eq!(id_of(&d), want);
        last = Some(d.position().clone());
        d.ack();
    }
    r.commit_now().await.unwrap();
    let loaded = store.load(&name).await.unwrap().expect("saved");
    assert_eq!(loaded.get(&Lane::ChangeStream), last.as_ref());
    r.close().await;
    let saved = store.load(&name).await.unwrap().expect("saved");
    let Some(Position::ResumeToken { cluster_time, .. }) = saved.get(&Lane::ChangeStream) else {
        panic!("{saved:?}")
    };
    assert!(cluster_time.is_some());

    // The stored document is readable by humans too.
    let raw = w
        .database(db)
        .collection::<Document>(&store_coll)
        .find_one(doc! { "_id": &name })
        .await
        .unwrap()
        .unwrap();
    assert!(raw.get_str("token_data").unwrap().starts_with("82"));
    assert!(raw.get_i64("cluster_time").is_ok());

    // Garbage is refused loudly, never taken for "nothing saved".
    w.database(db)
        .collection::<Document>(&store_coll)
        .update_one(
            doc! { "_id": &name },
            doc! { "$set": { "checkpoint": "{not json" } },
        )
        .await
        .unwrap();
    let e = store.load(&name).await.unwrap_err();
    assert!(e.is_permanent());
    assert_eq!(e.kind(), ErrorKind::Checkpoint);
    assert!(e.to_string().contains("not a valid checkpoint"), "{e}");
    println!(
        "mongo store: saved and loaded {:?}",
        saved.get(&Lane::ChangeStream).map(ToString::to_string)
    );
}

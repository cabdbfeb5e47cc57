//! On mongods of our own: a resume token older than the oplog (a real roll-over with a 1 MB
//! oplog), a standalone mongod, and a wrong password: each must surface at once, never loop.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::*;
use mongodb::bson::{doc, Document};
use reader_core::{CheckpointStore, ErrorKind, EventKind, MemoryCheckpointStore};
use testkit::{MongoOpts, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_older_than_the_oplog_follows_the_policy() {
    // 1 MB oplog, and a checkpoint every second so the oplog is truncated at once.
    let srv = Server::mongod(MongoOpts {
        oplog_size_mb: 1,
        extra_args: vec!["--syncdelay".into(), "1".into()],
        ..MongoOpts::default()
    })
    .await
    .expect("own mongod");
    let w = writer(&srv.url()).await;
    let (db, coll) = ("hist", "watched");
    let watched = w.database(db).collection::<Document>(coll);

    // A real token, then enough writes elsewhere to roll the oplog past it.
    let mut cs = watched.watch().await.unwrap();
    watched.insert_one(doc! { "_id": -1 }).await.unwrap();
    let ev = loop {
        if let Some(e) = cs.next_if_any().await.unwrap() {
            break e;
        }
    };
    drop(cs);
    let stale = reader_mongo::token::from_driver(&ev.id).unwrap();
    let stale_ts = ev.cluster_time.unwrap();
    let pad = "x".repeat(4000);
    let t0 = Instant::now();
    let mut n = 0_i64;
    while oplog_start(&w).await <= stale_ts {
        assert!(n < 400_000, "the oplog never rolled over");
        let docs: Vec<Document> = (n..n + 200)
            .map(|i| doc! { "_id": i, "pad": &pad })
            .collect();
        w.database(db)
            .collection::<Document>("pad")
            .insert_many(docs)
            .await
            .unwrap();
        n += 200;
    }
    println!(
        "oplog rolled past the token after {n} padding inserts in {:?}",
        t0.elapsed()
    );

    // 1. fail (the default): one connect, a permanent error that explains, the end.
    let store = Arc::new(MemoryCheckpointStore::new());
    let name = "hist_fail";
    store
        .save(name, &checkpoint_of(stale.clone()))
        .await
        .unwrap();
    let url = with_params(&srv.url(), &format!("database={db}&collection={coll}"));
    let r = reader(&url, name, store.clone(), |_| {});
    let mut s = r.read(reader_core::CancellationToken::new());
    let e = next(&mut s)
        .await
        .expect("an error item")
        .expect_err("must fail");
    assert!(e.is_permanent(), "{e}");
    assert_eq!(e.kind(), ErrorKind::PositionLost);
    let msg = e.to_string();
    assert!(
        msg.contains("older than the oldest entry of the oplog"),
        "{msg}"
    );
    assert!(msg.contains("on_history_lost=restart_now"), "{msg}");
    assert!(
        next(&mut s).await.is_none(),
        "the stream ends after the error"
    );
    assert_eq!(r.health().sessions, 1, "exactly one connect: no retry loop");
    r.close().await;
    println!("fail: {msg}");

    // 2. restart_at a time that is lost too: permanent as well, one connect.
    let name = "hist_restart_at";
    store
        .save(name, &checkpoint_of(stale.clone()))
        .await
        .unwrap();
    let r = reader(
        &with_params(&url, "on_history_lost=restart_at:1000"),
        name,
        store.clone(),
        |_| {},
    );
    let mut s = r.read(reader_core::CancellationToken::new());
    let e = next(&mut s)
        .await
        .expect("an error item")
        .expect_err("must fail");
    assert!(e.is_permanent(), "{e}");
    assert!(e.to_string().contains("restart_at"), "{e}");
    assert_eq!(r.health().sessions, 1);
    r.close().await;

    // 3. restart_now: a gap event, then reading goes on from now.
    let name = "hist_restart_now";
    store
        .save(name, &checkpoint_of(stale.clone()))
        .await
        .unwrap();
    let r = reader(
        &with_params(&url, "on_history_lost=restart_now"),
        name,
        store.clone(),
        |_| {},
    );
    let mut events = r.events();
    let mut s = r.read(reader_core::CancellationToken::new());
    let gap = event_of(&mut events, EventKind::Gap).await;
    assert!(
        gap.detail.contains("older than the oplog"),
        "{}",
        gap.detail
    );
    assert!(gap.position.is_some());
    until_ready(&r).await;
    insert_ids(&w, db, coll, 1000..1010).await;
    for want in 1000..1010 {
        let d = next(&mut s).await.unwrap().unwrap();
        assert_eq!(id_of(&d), want);
        d.ack();
    }
    r.commit_now().await.unwrap();
    let saved = store.load(name).await.unwrap().unwrap();
    assert_ne!(
        saved,
        checkpoint_of(stale.clone()),
        "the checkpoint moved on"
    );
    assert_eq!(r.health().sessions, 1);
    r.close().await;
    println!(
        "restart_now: gap event \"{}\"; then 10 new events delivered",
        gap.detail
    );

    // 4. restart_at a time still in the oplog: a gap event, then the events from that time.
    let name = "hist_restart_at_ok";
    store
        .save(name, &checkpoint_of(stale.clone()))
        .await
        .unwrap();
    // The second after the oldest oplog entry's (a restart time of `T.0` in the oldest
    // entry's own second would precede it, and be lost too), once the server's clock has
    // passed it: small writes elsewhere show the server's time.
    let since = oplog_start(&w).await.time + 1;
    for i in 0.. {
        assert!(i < 100, "the server's clock did not pass {since}");
        let hello = w
            .database("admin")
            .run_command(doc! { "hello": 1 })
            .await
            .unwrap();
        let last = hello
            .get_document("lastWrite")
            .and_then(|l| l.get_document("opTime"))
            .and_then(|o| o.get_timestamp("ts"))
            .expect("hello.lastWrite.opTime.ts");
        if last.time >= since {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        w.database(db)
            .collection::<Document>("tick")
            .insert_one(doc! { "i": i })
            .await
            .unwrap();
    }
    let r = reader(
        &with_params(&url, &format!("on_history_lost=restart_at:{since}")),
        name,
        store.clone(),
        |_| {},
    );
    let mut events = r.events();
    let mut s = r.read(reader_core::CancellationToken::new());
    // The gap is reported during recovery, before anything is fetched; `biased` polls the
    // event first so an item that is also ready already does not win the race.
    let gap = tokio::select! {
        biased;
        gap = event_of(&mut events, EventKind::Gap) => gap,
        item = next(&mut s) => panic!("a stream item before the gap event: {item:?}"),
    };
    assert!(
        gap.detail.contains(&format!("cluster time {since}")),
        "{}",
        gap.detail
    );
    until_ready(&r).await;
    insert_ids(&w, db, coll, 2000..2010).await;
    // From `since` on: maybe the last of 1000..1010 (written in that same second), then all
    // of 2000..2010, in order.
    let mut got = Vec::new();
    while got.last() != Some(&2009) {
        let d = next(&mut s).await.unwrap().unwrap();
        got.push(id_of(&d));
        d.ack();
    }
    let tail: Vec<i64> = got.iter().copied().filter(|i| *i >= 2000).collect();
    assert_eq!(tail, (2000..2010).collect::<Vec<_>>(), "{got:?}");
    assert!(
        got.iter().all(|i| (1000..1010).contains(i) || *i >= 2000) && got.is_sorted(),
        "only events at or after the restart time, in order: {got:?}"
    );
    assert_eq!(r.health().sessions, 1);
    r.close().await;
    println!("restart_at:{since}: gap event, then {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_mongod_is_a_permanent_error_that_explains() {
    let srv = Server::mongod(MongoOpts {
        replica_set: false,
        ..MongoOpts::default()
    })
    .await
    .expect("own standalone mongod");
    let url = with_params(&srv.url(), "database=db&collection=c");
    let r = reader(
        &url,
        "standalone",
        Arc::new(MemoryCheckpointStore::new()),
        |_| {},
    );
    let mut s = r.read(reader_core::CancellationToken::new());
    let e = next(&mut s)
        .await
        .expect("an error item")
        .expect_err("must fail");
    assert!(e.is_permanent(), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("change streams need a replica set"), "{msg}");
    assert!(next(&mut s).await.is_none());
    assert_eq!(r.health().sessions, 1);
    r.close().await;
    println!("standalone: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_permanent_auth_error_that_never_shows_it() {
    let srv = Server::mongod(MongoOpts {
        replica_set: false,
        extra_args: vec!["--auth".into()],
        ..MongoOpts::default()
    })
    .await
    .expect("own mongod with --auth");
    // The localhost exception lets the first user be created without credentials.
    writer(&srv.url())
        .await
        .database("admin")
        .run_command(doc! { "createUser": "bob", "pwd": "right-pa55word", "roles": ["root"] })
        .await
        .unwrap();
    let secret = "wr0ng-pa55word";
    let url = format!(
        "mongodb://bob:{secret}@{}/?directConnection=true&database=db&collection=c",
        srv.host_port()
    );
    let r = reader(&url, "auth", Arc::new(MemoryCheckpointStore::new()), |_| {});
    let shown = format!(
        "{:?} {}",
        r.connector(),
        reader_core::Connector::describe(r.connector())
    );
    assert!(!shown.contains(secret), "{shown}");
    assert!(shown.contains("bob:***@"), "{shown}");
    let mut s = r.read(reader_core::CancellationToken::new());
    let e = next(&mut s)
        .await
        .expect("an error item")
        .expect_err("must fail");
    assert!(e.is_permanent(), "{e}");
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    let msg = format!("{e} {e:?}");
    assert!(!msg.contains(secret), "the password leaked: {msg}");
    assert!(next(&mut s).await.is_none());
    assert_eq!(r.health().sessions, 1, "auth failures are not retried");
    let health = format!("{:?}", r.health());
    assert!(!health.contains(secret), "{health}");
    r.close().await;

    // The checkpoint store redacts too.
    let store_url = format!(
        "mongodb://bob:{secret}@{}/?directConnection=true",
        srv.host_port()
    );
    let store = reader_mongo::MongoCheckpointStore::connect(&store_url, "db", "ckpt")
        .await
        .unwrap();
    let e = store.load("x").await.unwrap_err();
    let msg = format!("{e} {e:?} {store:?}");
    assert!(e.is_permanent(), "{e}");
    assert!(!msg.contains(secret), "{msg}");
    println!("auth: {e}");
}

/// Roll the oplog of `w` past `ts` with padding writes to another collection.
async fn roll_oplog_past(w: &mongodb::Client, db: &str, ts: mongodb::bson::Timestamp) -> i64 {
    let pad = "x".repeat(4000);
    let mut n = 0_i64;
    while oplog_start(w).await <= ts {
        assert!(n < 400_000, "the oplog never rolled over");
        let docs: Vec<Document> = (n..n + 200)
            .map(|i| doc! { "_id": format!("{i}-{}-{}", ts.time, ts.increment), "pad": &pad })
            .collect();
        w.database(db)
            .collection::<Document>("pad")
            .insert_many(docs)
            .await
            .unwrap();
        n += 200;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_falls_off_the_oplog_mid_stream_follows_the_policy() {
    // restart_now first, then fail (the default), on one mongod with a 1 MB oplog.
    let srv = Server::mongod(MongoOpts {
        oplog_size_mb: 1,
        extra_args: vec!["--syncdelay".into(), "1".into()],
        ..MongoOpts::default()
    })
    .await
    .expect("own mongod");
    let w = writer(&srv.url()).await;
    let (db, coll) = ("midstream", "watched");
    let url = with_params(
        &srv.url(),
        &format!("database={db}&collection={coll}&on_history_lost=restart_now"),
    );
    let r = reader(
        &url,
        "midstream",
        Arc::new(MemoryCheckpointStore::new()),
        |c| c.max_unacked = 10,
    );
    let mut events = r.events();
    let mut s = r.read(reader_core::CancellationToken::new());
    until_ready(&r).await;
    // More events than the reader holds (10 unacked) plus what its session reads ahead
    // (512): the session stops sending getMores, its server cursor stays behind…
    insert_ids(&w, db, coll, 0..1000).await;
    let mut held = Vec::new();
    for want in 0..10 {
        let d = next(&mut s).await.unwrap().unwrap();
        assert_eq!(id_of(&d), want);
        held.push(d);
    }
    let hello = w
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .unwrap();
    let last = hello
        .get_document("lastWrite")
        .and_then(|l| l.get_document("opTime"))
        .and_then(|o| o.get_timestamp("ts"))
        .expect("hello.lastWrite.opTime.ts");
    // …and the oplog rolls past it.
    let t0 = Instant::now();
    let n = roll_oplog_past(&w, db, last).await;
    println!(
        "oplog rolled past the held cursor after {n} padding inserts in {:?}",
        t0.elapsed()
    );
    insert_ids(&w, db, coll, 5000..5010).await;

    // Acknowledge and read on: what the session had read is delivered, in order; then its
    // getMore fails with history lost; the policy reopens from now with a gap event.
    for d in held.drain(..) {
        d.ack();
    }
    let mut got: Vec<i64> = (0..10).collect();
    let gap = loop {
        let d = tokio::select! {
            biased;
            gap = event_of(&mut events, EventKind::Gap) => break gap,
            item = next(&mut s) => item.expect("open").expect("no error may surface"),
        };
        let id = id_of(&d);
        assert_eq!(
            id,
            i64::try_from(got.len()).unwrap(),
            "in order, none skipped"
        );
        assert!(id < 1000, "{id}: a later event before the gap");
        got.push(id);
        d.ack();
    };
    assert!(
        gap.detail.contains("older than the oplog"),
        "{}",
        gap.detail
    );
    // From now on: the events written after the restart.
    until_ready(&r).await;
    insert_ids(&w, db, coll, 6000..6005).await;
    let mut after = Vec::new();
    while after.last() != Some(&6004) {
        let d = next(&mut s).await.unwrap().unwrap();
        after.push(id_of(&d));
        d.ack();
    }
    assert!(
        after.iter().all(|i| *i >= 6000 || (5000..5010).contains(i)),
        "{after:?}"
    );
    let sessions = r.health().sessions;
    assert!(sessions <= 3, "one reopen, no loop: {sessions} sessions");
    r.close().await;
    println!(
        "mid-stream: delivered {} of 1000 in order (what the session had read) before its cursor fell off the oplog; gap event \
         \"{}\"; then {after:?}; sessions {sessions}",
        got.len(),
        gap.detail
    );

    // The same with the default policy (fail): the events the session had read, then one
    // permanent error that explains, the end; no reconnect.
    let coll = "watched_fail";
    let r = reader(
        &with_params(&srv.url(), &format!("database={db}&collection={coll}")),
        "midstream_fail",
        Arc::new(MemoryCheckpointStore::new()),
        |c| c.max_unacked = 10,
    );
    let mut s = r.read(reader_core::CancellationToken::new());
    until_ready(&r).await;
    insert_ids(&w, db, coll, 0..1000).await;
    let mut held = Vec::new();
    for want in 0..10 {
        let d = next(&mut s).await.unwrap().unwrap();
        assert_eq!(id_of(&d), want);
        held.push(d);
    }
    let hello = w
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .unwrap();
    let last = hello
        .get_document("lastWrite")
        .and_then(|l| l.get_document("opTime"))
        .and_then(|o| o.get_timestamp("ts"))
        .expect("hello.lastWrite.opTime.ts");
    roll_oplog_past(&w, db, last).await;
    for d in held.drain(..) {
        d.ack();
    }
    let mut delivered = 10_i64;
    let e = loop {
        match next(&mut s).await.expect("an error item ends the stream") {
            Ok(d) => {
                assert_eq!(id_of(&d), delivered, "in order, none skipped");
                delivered += 1;
                d.ack();
            }
            Err(e) => break e,
        }
    };
    assert!(e.is_permanent(), "{e}");
    assert_eq!(e.kind(), ErrorKind::PositionLost, "{e}");
    assert!(e.to_string().contains("cannot continue"), "{e}");
    assert!(e.to_string().contains("on_history_lost=restart_now"), "{e}");
    assert!(
        next(&mut s).await.is_none(),
        "the stream ends after the error"
    );
    assert_eq!(r.health().sessions, 1, "no retry");
    r.close().await;
    println!("mid-stream, fail: {delivered} delivered, then: {e}");
}

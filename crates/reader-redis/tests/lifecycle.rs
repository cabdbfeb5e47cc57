//! Behaviour against a real redis-server: payloads, auth failure, group healing, dead
//! letters, consumers splitting a group and claiming a dead one's entries, Pub/Sub gaps.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use fred::prelude::*;
use reader_core::{CancellationToken, ConnState, ErrorClass, ErrorKind, EventKind};
use testkit::{RedisOpts, Server};
use tokio::time::Instant;

/// Acked by the survivor, or acked by the dropped consumer before it died.
fn handled(i: u64, b_got: &HashSet<u64>, a_got: &HashSet<u64>, a_unacked: &HashSet<u64>) -> bool {
    b_got.contains(&i) || (a_got.contains(&i) && !a_unacked.contains(&i))
}

async fn own_redis() -> Server {
    Server::redis(RedisOpts::default())
        .await
        .expect("own redis-server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_and_one_mebibyte_payloads_pass_unchanged() {
    let srv = own_redis().await;
    let key = unique("bin");
    let url = format!("{}?stream={key}&group=g&consumer=c&start=0", srv.url());
    let w = raw(&srv.host_port()).await;
    let binary: Vec<u8> = (0..=255u8)
        .rev()
        .chain([0xff, 0xfe, 0x00, 0xc3, 0x28])
        .collect();
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    xadd(
        &w,
        &key,
        1,
        vec![
            ("body", Value::Bytes(Bytes::from(binary.clone()))),
            ("h\u{e9}", Value::Bytes(Bytes::from_static(b"\x80\x81"))),
        ],
    )
    .await;
    xadd(
        &w,
        &key,
        2,
        vec![("body", Value::Bytes(Bytes::from(big.clone())))],
    )
    .await;
    let r = reader(&url, "bin", |_| {});
    let token = CancellationToken::new();
    let mut s = r.read(token.child_token());
    let a = next(&mut s).await.unwrap().unwrap();
    assert_eq!(&a.payload()[..], &binary[..], "binary payload changed");
    assert!(
        std::str::from_utf8(a.payload()).is_err(),
        "the test payload must not be UTF-8"
    );
    assert_eq!(a.message().key.as_deref(), Some(&b"body"[..]));
    assert_eq!(
        a.message().header("h\u{e9}").map(|b| &b[..]),
        Some(&b"\x80\x81"[..])
    );
    let b = next(&mut s).await.unwrap().unwrap();
    assert_eq!(b.payload().len(), big.len());
    assert!(b.payload()[..] == big[..], "1 MiB payload changed");
    a.ack();
    b.ack();
    let report = r.close().await;
    assert_eq!(report.unacked, 0);
    // Both XACKed: nothing pending in the group.
    let pending: Value = w.xpending(key.as_str(), "g", ()).await.unwrap();
    let count = match pending {
        Value::Array(v) => v[0].as_u64().unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(count, 0, "close must flush the acks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_permanent_at_once() {
    let srv = Server::redis(RedisOpts {
        requirepass: Some("right-one".into()),
        ..Default::default()
    })
    .await
    .expect("redis with requirepass");
    let url = format!(
        "redis://default:wrong-pass@{}?stream=k&group=g",
        srv.host_port()
    );
    let r = reader(&url, "auth", |_| {});
    let mut transitions = r.transitions();
    let t0 = Instant::now();
    let mut s = r.read(CancellationToken::new());
    let e = next(&mut s)
        .await
        .expect("an error item")
        .expect_err("must fail");
    let took = t0.elapsed();
    assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(e.exhausted().is_none(), "not retried: {e}");
    assert!(
        !e.to_string().contains("wrong-pass"),
        "password leaked: {e}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        next(&mut s).await.is_none(),
        "the stream ends after a permanent error"
    );
    assert_eq!(r.state(), ConnState::Failed);
    let mut seen = Vec::new();
    while let Ok(t) = transitions.try_recv() {
        seen.push(t.to);
    }
    let attempts = seen
        .iter()
        .filter(|s| **s == ConnState::Reconnecting)
        .count();
    assert_eq!(attempts, 1, "exactly one attempt, no retry loop: {seen:?}");
    println!("wrong password: permanent auth error after {took:?}, states {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_group_heals_once_then_is_permanent() {
    let srv = own_redis().await;
    let key = unique("heal");
    let url = format!("{}?stream={key}&group=g&consumer=c&start=0", srv.url());
    let w = raw(&srv.host_port()).await;
    let r = reader(&url, "heal", |_| {});
    let mut events = r.events();
    let mut s = r.read(CancellationToken::new());
    until_ready(&r).await;
    for i in 1..=10 {
        xadd(&w, &key, i, vec![("n", Value::Integer(i as i64))]).await;
    }
    for i in 1..=10 {
        let d = next(&mut s).await.unwrap().unwrap();
        assert_eq!(ms_of(&d), i);
        d.ack();
    }
    // Delete the group under the reader: healed once, reading goes on from the last entry.
    let _: Value = w.xgroup_destroy(key.as_str(), "g").await.unwrap();
    let healed = event_of(&mut events, EventKind::GroupRecreated).await;
    assert!(
        healed.detail.contains("re-created from 10-1"),
        "{}",
        healed.detail
    );
    for i in 11..=15 {
        xadd(&w, &key, i, vec![("n", Value::Integer(i as i64))]).await;
    }
    for i in 11..=15 {
        let d = next(&mut s).await.unwrap().unwrap();
        assert_eq!(ms_of(&d), i, "entries after the heal arrive, none lost");
        d.ack();
    }
    assert_eq!(r.state(), ConnState::Ready);
    // Deleted again at once: something keeps deleting it — permanent, no hot loop.
    let _: Value = w.xgroup_destroy(key.as_str(), "g").await.unwrap();
    let e = next(&mut s)
        .await
        .unwrap()
        .expect_err("a second NOGROUP is permanent");
    assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("vanished again"), "{e}");
    assert!(next(&mut s).await.is_none());
    assert_eq!(r.state(), ConnState::Failed);
    let mut heals = 1;
    while let Ok(ev) = events.try_recv() {
        if ev.kind == EventKind::GroupRecreated {
            heals += 1;
        }
    }
    assert_eq!(heals, 1, "healed exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_entry_lands_in_the_dead_letter_stream() {
    let srv = own_redis().await;
    let key = unique("poison");
    let url = format!(
        "{}?stream={key}&group=g&consumer=c&start=0&claim_idle_ms=200&claim_interval_ms=100&max_deliveries=3",
        srv.url()
    );
    let w = raw(&srv.host_port()).await;
    xadd(&w, &key, 1, vec![("body", "poison".into())]).await;
    xadd(&w, &key, 2, vec![("body", "fine".into())]).await;
    let r = reader(&url, "poison", |_| {});
    let mut events = r.events();
    let mut s = r.read(CancellationToken::new());
    let mut poison_deliveries = 0;
    let mut held = Vec::new();
    let dead = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            tokio::select! {
                d = s.recv() => {
                    let d = d.unwrap().unwrap();
                    if ms_of(&d) == 1 {
                        poison_deliveries += 1;
                        held.push(d); // never acked
                    } else {
                        d.ack();
                    }
                }
                e = events.recv() => {
                    let e = e.unwrap();
                    if e.kind == EventKind::DeadLettered {
                        return e;
                    }
                }
            }
        }
    })
    .await
    .expect("the poison entry was not dead-lettered within 30 s");
    assert_eq!(
        poison_deliveries, 3,
        "delivered max_deliveries times, then dead-lettered"
    );
    assert!(
        dead.detail.contains(&format!("{key}:dlq")),
        "{}",
        dead.detail
    );
    let dlq: Vec<(String, BTreeMap<String, String>)> = w
        .xrange(format!("{key}:dlq"), "-", "+", None)
        .await
        .unwrap();
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let f = &dlq[0].1;
    assert_eq!(f["original_id"], "1-1");
    assert_eq!(f["stream"], key);
    assert_eq!(f["body"], "poison");
    assert!(f["reason"].contains("4 times"), "{f:?}");
    // And it is no longer pending.
    let pending: Value = w.xpending(key.as_str(), "g", ()).await.unwrap();
    let count = match pending {
        Value::Array(v) => v[0].as_u64().unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(count, 0, "dead-lettered entries are XACKed");
    drop(held);
    r.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_claims_the_pending_entries_of_a_dropped_consumer() {
    const N: u64 = 400;
    let srv = own_redis().await;
    let key = unique("split");
    let base = format!(
        "{}?stream={key}&group=g&start=0&claim_idle_ms=500&claim_interval_ms=200",
        srv.url()
    );
    let w = raw(&srv.host_port()).await;
    let a = reader(&format!("{base}&consumer=a"), "a", |c| c.fetch_max = 20);
    let b = reader(&format!("{base}&consumer=b"), "b", |c| c.fetch_max = 20);
    let mut sa = a.read(CancellationToken::new());
    let mut sb = b.read(CancellationToken::new());
    until_ready(&a).await;
    until_ready(&b).await;
    for i in 1..=N {
        xadd(&w, &key, i, vec![("n", Value::Integer(i as i64))]).await;
    }
    // A takes some entries and acks only half of them, then dies.
    let mut a_got = HashSet::new();
    let mut a_held = Vec::new();
    while a_got.len() < 50 {
        let d = next(&mut sa).await.unwrap().unwrap();
        a_got.insert(ms_of(&d));
        if ms_of(&d) % 2 == 0 {
            d.ack();
        } else {
            a_held.push(d);
        }
    }
    a.commit_now().await.unwrap();
    drop(sa);
    drop(a); // dropped without close: its unacked entries stay pending under consumer a
    let a_unacked: HashSet<u64> = a_held.iter().map(ms_of).collect();
    drop(a_held);
    let mut b_got = HashSet::new();
    let mut claimed = 0;
    let mut events = b.events();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let need = (1..=N)
                .filter(|i| !handled(*i, &b_got, &a_got, &a_unacked))
                .count();
            if need == 0 {
                break;
            }
            let d = next(&mut sb).await.unwrap().unwrap();
            let i = ms_of(&d);
            if a_unacked.contains(&i) {
                claimed += 1;
            }
            b_got.insert(i);
            d.ack();
        }
    })
    .await
    .expect("the survivor did not get every entry within 30 s");
    let ev = event_of(&mut events, EventKind::Claimed).await;
    let _ = ev;
    let lost: Vec<u64> = (1..=N)
        .filter(|i| !handled(*i, &b_got, &a_got, &a_unacked))
        .collect();
    println!(
        "split: a got {} (left {} unacked), b got {}, claimed from a {claimed}, lost {}",
        a_got.len(),
        a_unacked.len(),
        b_got.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "lost {lost:?}");
    assert_eq!(
        claimed,
        a_unacked.len(),
        "every entry a left unacked was claimed by b"
    );
    assert!(b_got.len() as u64 >= N - 50, "b read the rest");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_resubscribes_after_a_restart_and_reports_the_gap() {
    let mut srv = own_redis().await;
    let chan = unique("chan");
    let url = format!("{}?channel={chan}&pattern={chan}.p.*", srv.url());
    let r = reader(&url, "pubsub", |c| {
        c.ping_interval = Duration::from_millis(300);
        c.ping_timeout = Duration::from_secs(1);
    });
    let mut events = r.events();
    let mut s = r.read(CancellationToken::new());
    until_ready(&r).await;
    let publisher = raw(&srv.host_port()).await;
    // Publish until the subscription is live (a publish reports its receivers).
    let publish = |c: Client, ch: String, body: &'static str| async move {
        for _ in 0..200 {
            let n: i64 = c.publish(ch.as_str(), body).await.unwrap_or(0);
            if n > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nobody subscribed to {ch} within 5 s");
    };
    publish(publisher.clone(), chan.clone(), "before").await;
    let d = next(&mut s).await.unwrap().unwrap();
    assert_eq!(&d.payload()[..], b"before");
    assert_eq!(d.message().key.as_deref(), Some(chan.as_bytes()));
    // PING works on a subscribed connection: the health ping succeeds and the session stays.
    tokio::time::timeout(Duration::from_secs(10), async {
        while r.health().last_ping.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("no successful ping within 10 s");
    assert_eq!(r.state(), ConnState::Ready);
    let sessions = r.health().sessions;
    assert_eq!(
        sessions, 1,
        "the ping must not replace a healthy subscriber session"
    );
    srv.kill();
    srv.restart().await.expect("restart");
    let gap = event_of(&mut events, EventKind::Gap).await;
    assert!(gap.detail.contains("at-most-once"), "{}", gap.detail);
    until_ready(&r).await;
    publish(publisher.clone(), chan.clone(), "after").await;
    publish(publisher.clone(), format!("{chan}.p.x"), "by-pattern").await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let d = next(&mut s).await.unwrap().unwrap();
        got.push(String::from_utf8(d.payload().to_vec()).unwrap());
    }
    got.sort();
    assert_eq!(got, ["after", "by-pattern"]);
    r.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connection_is_detected_and_replaced() {
    let srv = own_redis().await;
    let proxy = testkit::FaultProxy::start(srv.host_port())
        .await
        .expect("proxy");
    let key = unique("halfopen");
    let url = format!(
        "redis://{}?stream={key}&group=g&consumer=c&start=0&command_timeout_ms=1000&connect_timeout_ms=500",
        proxy.addr()
    );
    let w = raw(&srv.host_port()).await;
    let r = reader(&url, "halfopen", |c| {
        c.ping_interval = Duration::from_millis(300);
        c.ping_timeout = Duration::from_secs(1);
        c.fetch_grace = Duration::from_secs(1);
    });
    let mut transitions = r.transitions();
    let mut s = r.read(CancellationToken::new());
    until_ready(&r).await;
    for i in 1..=50 {
        xadd(&w, &key, i, vec![("n", Value::Integer(i as i64))]).await;
    }
    let mut got = HashSet::new();
    while got.len() < 50 {
        let d = next(&mut s).await.unwrap().unwrap();
        got.insert(ms_of(&d));
        d.ack();
    }
    r.commit_now().await.unwrap();
    // The peer stops answering without closing anything: only timeouts can tell.
    let t0 = Instant::now();
    proxy.set_blackhole(true);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if transitions.recv().await.unwrap().to == ConnState::Disconnected {
                return;
            }
        }
    })
    .await
    .expect("a black-holed session was not declared dead within 10 s");
    let detected = t0.elapsed();
    proxy.set_blackhole(false);
    for i in 51..=100 {
        xadd(&w, &key, i, vec![("n", Value::Integer(i as i64))]).await;
    }
    while got.len() < 100 {
        let d = next(&mut s).await.unwrap().unwrap();
        got.insert(ms_of(&d));
        d.ack();
    }
    let recovered = t0.elapsed();
    println!(
        "half-open: declared dead after {detected:.1?}, all 100 entries after {recovered:.1?}"
    );
    assert!(detected < Duration::from_secs(5), "{detected:?}");
    assert_eq!(r.state(), ConnState::Ready);
    r.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keys_and_pending_entries_come_back_after_a_cut() {
    let srv = own_redis().await;
    let proxy = testkit::FaultProxy::start(srv.host_port())
        .await
        .expect("proxy");
    let (k1, k2) = (unique("multi-a"), unique("multi-b"));
    let url = format!(
        "redis://{}?stream={k1},{k2}&group=g&consumer=c&start=0",
        proxy.addr()
    );
    let w = raw(&srv.host_port()).await;
    for i in 1..=100 {
        xadd(&w, &k1, i, vec![("n", Value::Integer(i as i64))]).await;
        xadd(&w, &k2, i, vec![("n", Value::Integer(i as i64))]).await;
    }
    let r = reader(&url, "multi", |_| {});
    let mut s = r.read(CancellationToken::new());
    let mut first: HashSet<(String, u64)> = HashSet::new();
    let mut unacked = HashSet::new();
    let stream_of = |d: &reader_core::Delivery| match d.position() {
        reader_core::Position::Stream { stream, id } => (stream.to_string(), id.ms),
        p => panic!("{p}"),
    };
    while first.len() < 200 {
        let d = next(&mut s).await.unwrap().unwrap();
        let at = stream_of(&d);
        if at.1 % 10 == 0 {
            unacked.insert(at.clone()); // never acked in this session
        } else {
            d.ack();
        }
        first.insert(at);
    }
    assert!(first.iter().any(|(k, _)| *k == k1) && first.iter().any(|(k, _)| *k == k2));
    r.commit_now().await.unwrap();
    proxy.cut_all();
    // The new session re-delivers this consumer's pending entries of both keys.
    let mut again = HashSet::new();
    while again.len() < unacked.len() {
        let d = next(&mut s).await.unwrap().unwrap();
        let at = stream_of(&d);
        assert!(
            unacked.contains(&at),
            "{at:?} was acknowledged, yet delivered again"
        );
        again.insert(at);
        d.ack();
    }
    assert_eq!(again, unacked);
    assert!(
        r.health().sessions >= 2,
        "the cut must have replaced the session"
    );
    r.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_entries_deleted_from_the_stream_are_acked_away() {
    let srv = own_redis().await;
    let proxy = testkit::FaultProxy::start(srv.host_port())
        .await
        .expect("proxy");
    let key = unique("deleted");
    let url = format!(
        "redis://{}?stream={key}&group=g&consumer=c&start=0",
        proxy.addr()
    );
    let w = raw(&srv.host_port()).await;
    for i in 1..=10 {
        xadd(&w, &key, i, vec![("n", Value::Integer(i as i64))]).await;
    }
    let r = reader(&url, "deleted", |_| {});
    let mut events = r.events();
    let mut s = r.read(CancellationToken::new());
    let mut held = Vec::new();
    for _ in 1..=10 {
        held.push(next(&mut s).await.unwrap().unwrap()); // none acked: all 10 pending
    }
    // Three of them vanish from the stream while pending; then the session is replaced.
    let _: Value = w
        .xdel(key.as_str(), vec!["2-1", "5-1", "9-1"])
        .await
        .unwrap();
    proxy.cut_all();
    let dropped = event_of(&mut events, EventKind::PendingDropped).await;
    assert!(dropped.detail.contains("2-1 5-1 9-1"), "{}", dropped.detail);
    // The other seven are delivered again, the deleted ones never.
    let mut again = Vec::new();
    while again.len() < 7 {
        let d = next(&mut s).await.unwrap().unwrap();
        again.push(ms_of(&d));
        d.ack();
    }
    again.sort_unstable();
    assert_eq!(again, [1, 3, 4, 6, 7, 8, 10]);
    drop(held);
    r.close().await;
    let pending: Value = w.xpending(key.as_str(), "g", ()).await.unwrap();
    let count = match pending {
        Value::Array(v) => v[0].as_u64().unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(count, 0, "deleted entries do not stay pending forever");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_reports_one_gap_per_reconnect() {
    let srv = own_redis().await;
    let proxy = testkit::FaultProxy::start(srv.host_port())
        .await
        .expect("proxy");
    let chan = unique("gaps");
    let url = format!("redis://{}?channel={chan}", proxy.addr());
    let r = reader(&url, "gaps", |_| {});
    let mut events = r.events();
    let mut s = r.read(CancellationToken::new());
    let publisher = raw(&srv.host_port()).await;
    let mut gaps = 0;
    for round in 0..4 {
        if round > 0 {
            proxy.cut_all();
            event_of(&mut events, EventKind::Gap).await;
            gaps += 1;
        }
        // Publish until this session's subscription receives it.
        let body = format!("round {round}");
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let _: i64 = publisher
                    .publish(chan.as_str(), body.as_str())
                    .await
                    .unwrap();
                if let Ok(Some(d)) =
                    tokio::time::timeout(Duration::from_millis(100), s.recv()).await
                {
                    let d = d.unwrap();
                    if d.payload()[..] == *body.as_bytes() {
                        return;
                    }
                }
            }
        })
        .await;
        assert!(
            got.is_ok(),
            "round {round}: nothing received after the reconnect"
        );
    }
    while let Ok(e) = events.try_recv() {
        if e.kind == EventKind::Gap {
            gaps += 1;
        }
    }
    assert_eq!(
        gaps, 3,
        "one gap event per reconnect, none for the first session"
    );
    r.close().await;
}

//! Typed reading and poison handling against the shared redis-server
//! (`cargo xtask servers up`): every valid payload decoded, every invalid one in the
//! dead-letter stream with its reason, nothing lost, nothing stalled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{raw, reader, unique, xadd};
use fred::prelude::*;
use futures::StreamExt;
use reader_core::{CancellationToken, Position, StreamId};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Order {
    id: u64,
    amount: f64,
}

fn shared_host_port() -> String {
    let url = testkit::shared::redis_url();
    url.trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_payloads_valid_decoded_invalid_dead_lettered_nothing_lost() {
    const N: u64 = 300;
    let url = testkit::shared::redis_url();
    let key = unique("typed");
    let w = raw(&shared_host_port()).await;
    let mut invalid = BTreeSet::new();
    for i in 1..=N {
        let body = match i % 10 {
            3 => format!(r#"{{"id":{i},"amt":1.0}}"#), // renamed field
            7 => format!("garbage {i}"),
            _ => format!(r#"{{"id":{i},"amount":{}}}"#, i as f64 / 2.0),
        };
        if matches!(i % 10, 3 | 7) {
            invalid.insert(i);
        }
        xadd(&w, &key, i, vec![("body", body.as_str().into())]).await;
    }
    let r = reader(
        &format!("{url}?stream={key}&group=g&consumer=c&start=0"),
        "typed-redis",
        |_| {},
    );
    let t0 = std::time::Instant::now();
    let mut s = r.read(CancellationToken::new()).typed::<Order>();
    let mut ok = BTreeSet::new();
    let mut bad = BTreeMap::new();
    while (ok.len() + bad.len()) < N as usize {
        let d = tokio::time::timeout(Duration::from_secs(20), s.next())
            .await
            .expect("the stream never stalls")
            .unwrap()
            .unwrap();
        let Position::Stream { id, .. } = d.position() else {
            panic!("{:?}", d.position())
        };
        let ms = id.ms;
        match d.value() {
            Ok(o) => {
                assert_eq!(o.id, ms);
                assert!((o.amount - ms as f64 / 2.0).abs() < 1e-9);
                assert!(ok.insert(ms), "duplicate {ms}");
                d.ack();
            }
            Err(e) => {
                assert_eq!(e.position(), d.position());
                if ms % 10 == 3 {
                    assert!(
                        e.to_string().contains("missing field `amount`")
                            && e.to_string().contains(&format!("{key}@{ms}-1")),
                        "names the field and the position: {e}"
                    );
                }
                assert!(bad.insert(ms, e.to_string()).is_none(), "duplicate {ms}");
                d.dead_letter(e).await.unwrap();
            }
        }
    }
    let elapsed = t0.elapsed();
    r.close().await;
    let expected_ok: BTreeSet<u64> = (1..=N).filter(|i| !invalid.contains(i)).collect();
    assert_eq!(ok, expected_ok, "every valid payload decoded");
    assert_eq!(
        bad.keys().copied().collect::<BTreeSet<_>>(),
        invalid,
        "every invalid payload surfaced"
    );
    let dlq: Vec<(String, BTreeMap<String, String>)> = w
        .xrange(format!("{key}:dlq"), "-", "+", None)
        .await
        .unwrap();
    let in_dlq: BTreeSet<u64> = dlq
        .iter()
        .map(|(_, f)| StreamId::parse(&f["original_id"]).unwrap().ms)
        .collect();
    assert_eq!(in_dlq, invalid, "every invalid payload is in the DLQ, once");
    assert_eq!(dlq.len(), invalid.len());
    for (_, f) in &dlq {
        let ms = StreamId::parse(&f["original_id"]).unwrap().ms;
        assert_eq!(f["stream"], key);
        assert_eq!(f["reason"], bad[&ms], "the reason is the decode error");
        assert!(f["body"].contains(&ms.to_string()), "the raw payload kept");
    }
    let pending: Value = w.xpending(key.as_str(), "g", ()).await.unwrap();
    let count = match pending {
        Value::Array(v) => v[0].as_u64().unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(count, 0, "everything acknowledged");
    eprintln!(
        "redis typed: {N} messages, {} decoded, {} dead-lettered, 0 lost, in {elapsed:?}",
        ok.len(),
        in_dlq.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_delivery_counter_drives_dead_lettering_after_three_attempts() {
    let url = testkit::shared::redis_url();
    let key = unique("typed-count");
    let w = raw(&shared_host_port()).await;
    xadd(&w, &key, 1, vec![("body", r#"{"id":1}"#.into())]).await;
    xadd(&w, &key, 2, vec![("body", r#"{"id":2,"amount":1}"#.into())]).await;
    let r = reader(
        &format!(
            "{url}?stream={key}&group=g&consumer=c&start=0&claim_idle_ms=200&claim_interval_ms=100"
        ),
        "typed-redis-count",
        |_| {},
    );
    let mut s = r.read(CancellationToken::new()).typed::<Order>();
    let mut counts = Vec::new();
    loop {
        let d = tokio::time::timeout(Duration::from_secs(20), s.next())
            .await
            .expect("redelivered")
            .unwrap()
            .unwrap();
        if d.is_ok() {
            d.ack();
            continue;
        }
        counts.push(d.delivery_count());
        if d.delivery_count() >= 3 {
            d.dead_letter("failed 3 times").await.unwrap();
            break;
        }
        // Retry: left pending, claimed again once idle, counted by Redis.
    }
    r.close().await;
    assert_eq!(counts, vec![1, 2, 3]);
    let dlq: Vec<(String, BTreeMap<String, String>)> = w
        .xrange(format!("{key}:dlq"), "-", "+", None)
        .await
        .unwrap();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].1["reason"], "failed 3 times");
    assert_eq!(dlq[0].1["deliveries"], "3");
    assert_eq!(dlq[0].1["original_id"], "1-1");
}

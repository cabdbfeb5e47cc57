//! Typed reading and poison handling against the shared tansu broker
//! (`cargo xtask servers up`): every valid record decoded, every invalid one in
//! `<topic>.dlq` with its origin and reason in headers, nothing lost, nothing stalled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{admin, create_topic, group_config, po, produce, reader, unique, until_ready};
use futures::StreamExt;
use reader_core::CancellationToken;
use rskafka::client::partition::UnknownTopicHandling;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Order {
    id: u64,
    amount: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_records_valid_decoded_invalid_dead_lettered_with_headers() {
    const PER_PARTITION: u64 = 100;
    let addr = testkit::shared::kafka_addr();
    let topic = unique("typed");
    let client = admin(&addr).await;
    create_topic(&client, &topic, 2).await;
    // (partition, offset) -> id; ids are unique across partitions.
    let mut invalid = BTreeSet::new();
    for p in 0..2 {
        let values = (0..PER_PARTITION)
            .map(|i| {
                let id = u64::try_from(p).unwrap() * 1000 + i;
                match i % 10 {
                    3 => {
                        invalid.insert((p, i64::try_from(i).unwrap()));
                        format!(r#"{{"id":{id},"amt":1.0}}"#) // renamed field
                    }
                    7 => {
                        invalid.insert((p, i64::try_from(i).unwrap()));
                        format!("garbage {id}")
                    }
                    _ => format!(r#"{{"id":{id},"amount":{}}}"#, id as f64 / 2.0),
                }
            })
            .collect();
        let offsets = produce(&client, &topic, p, values).await;
        assert_eq!(offsets.first(), Some(&0));
    }
    let total = 2 * PER_PARTITION as usize;
    let r = reader(
        group_config(&addr, &topic, &unique("g")),
        "typed-kafka",
        |_| {},
    );
    let t0 = std::time::Instant::now();
    let mut s = r.read(CancellationToken::new()).typed::<Order>();
    until_ready(&r).await;
    let mut ok = BTreeSet::new();
    let mut bad = BTreeMap::new();
    while ok.len() + bad.len() < total {
        let d = tokio::time::timeout(Duration::from_secs(30), s.next())
            .await
            .expect("the stream never stalls")
            .unwrap()
            .unwrap();
        let (p, o) = po(&d);
        match d.value() {
            Ok(order) => {
                assert_eq!(
                    order.id,
                    u64::try_from(p).unwrap() * 1000 + u64::try_from(o).unwrap()
                );
                assert!((order.amount - order.id as f64 / 2.0).abs() < 1e-9);
                assert!(ok.insert((p, o)), "duplicate {p}@{o}");
                d.ack();
            }
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains(&format!("{topic}/{p}@{o}")),
                    "names the position: {text}"
                );
                if o % 10 == 3 {
                    assert!(
                        text.contains("missing field `amount`"),
                        "names the field: {text}"
                    );
                }
                assert!(bad.insert((p, o), text).is_none(), "duplicate {p}@{o}");
                d.dead_letter(e).await.unwrap();
            }
        }
    }
    let elapsed = t0.elapsed();
    let report = r.close().await;
    assert_eq!(report.unacked, 0);
    assert_eq!(bad.keys().copied().collect::<BTreeSet<_>>(), invalid);
    assert_eq!(
        ok.len(),
        total - invalid.len(),
        "every valid record decoded"
    );
    // The dead letters, from <topic>.dlq partition 0.
    let dlq = client
        .partition_client(format!("{topic}.dlq"), 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let mut got = BTreeMap::new();
    let mut next = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while got.len() < invalid.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "dead letters missing: {got:?}"
        );
        let (records, _hw) = dlq.fetch_records(next, 1..1_000_000, 200).await.unwrap();
        for r in records {
            next = r.offset + 1;
            let h = &r.record.headers;
            let s = |k: &str| String::from_utf8(h[k].clone()).unwrap();
            assert_eq!(s("dlq.topic"), topic);
            assert_eq!(s("dlq.source"), "typed-kafka");
            let key = (
                s("dlq.partition").parse::<i32>().unwrap(),
                s("dlq.offset").parse::<i64>().unwrap(),
            );
            assert_eq!(s("dlq.error"), bad[&key], "the reason is the decode error");
            let value = String::from_utf8(r.record.value.clone().unwrap()).unwrap();
            let id = u64::try_from(key.0).unwrap() * 1000 + u64::try_from(key.1).unwrap();
            assert!(
                value.contains(&id.to_string()),
                "the original value: {value}"
            );
            assert!(got.insert(key, ()).is_none(), "dead-lettered once: {key:?}");
        }
    }
    assert_eq!(got.keys().copied().collect::<BTreeSet<_>>(), invalid);
    eprintln!(
        "kafka typed: {total} records, {} decoded, {} dead-lettered, 0 lost, in {elapsed:?}",
        ok.len(),
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_delivery_count_survives_reconnects_then_dead_letters() {
    use testkit::{FaultProxy, KafkaOpts, Server};
    let port = testkit::free_port().unwrap();
    let proxy = FaultProxy::start(format!("127.0.0.1:{port}"))
        .await
        .expect("proxy");
    let _srv = Server::kafka(KafkaOpts {
        port: Some(port),
        advertised: Some(proxy.addr().to_owned()),
        ..Default::default()
    })
    .await
    .expect("own tansu");
    let client = admin(proxy.addr()).await;
    let topic = unique("typed-count");
    create_topic(&client, &topic, 1).await;
    produce(
        &client,
        &topic,
        0,
        vec![
            r#"{"id":1}"#.to_owned(),
            r#"{"id":2,"amount":1}"#.to_owned(),
        ],
    )
    .await;
    let r = reader(
        group_config(proxy.addr(), &topic, &unique("g")),
        "typed-kafka-count",
        |_| {},
    );
    let mut s = r.read(CancellationToken::new()).typed::<Order>();
    let t0 = std::time::Instant::now();
    let mut counts = Vec::new();
    loop {
        let d = tokio::time::timeout(Duration::from_secs(60), s.next())
            .await
            .expect("re-delivered after the reconnect")
            .unwrap()
            .unwrap();
        if d.is_ok() {
            d.ack();
            continue;
        }
        assert_eq!(po(&d), (0, 0));
        counts.push(d.delivery_count());
        if d.delivery_count() >= 3 {
            d.dead_letter("failed 3 times").await.unwrap();
            break;
        }
        // Retry: leave it unacknowledged and break the connection; the next session
        // starts from the committed offset and delivers it again.
        drop(d);
        proxy.cut_all();
    }
    let elapsed = t0.elapsed();
    r.close().await;
    assert_eq!(
        counts,
        vec![1, 2, 3],
        "counted by the reader across sessions"
    );
    let dlq = client
        .partition_client(format!("{topic}.dlq"), 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let (records, _) = dlq.fetch_records(0, 1..1_000_000, 1_000).await.unwrap();
    assert_eq!(records.len(), 1);
    let h = &records[0].record.headers;
    assert_eq!(h["dlq.deliveries"], b"3");
    assert_eq!(h["dlq.error"], b"failed 3 times");
    assert_eq!(h["dlq.offset"], b"0");
    eprintln!(
        "kafka delivery count: 3 deliveries over 2 connection cuts, dead-lettered in {elapsed:?}"
    );
}

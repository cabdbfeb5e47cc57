//! Typed reading and poison handling against the scripted connector, on the paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reader_core::testing::{position, FetchFault, ScriptedConnector};
use reader_core::{
    CancellationToken, DataReader, Delivery, ErrorKind, EventKind, Message, MessagePack, ReadError,
    RetryContext, RetryDecision, RetryPolicy, RetrySchedule, TypedDelivery, Utf8,
};
use serde::Deserialize;

#[derive(Debug)]
struct Every10ms;
impl RetryPolicy for Every10ms {
    fn schedule(&self) -> Box<dyn RetrySchedule> {
        Box::new(Every10ms)
    }
}
impl RetrySchedule for Every10ms {
    fn next(&mut self, _ctx: &RetryContext<'_>) -> RetryDecision {
        RetryDecision::RetryAfter(Duration::from_millis(10))
    }
}

fn reader(c: &ScriptedConnector) -> DataReader<ScriptedConnector> {
    DataReader::builder(c.clone())
        .retry(Arc::new(Every10ms))
        .configure(|cfg| {
            cfg.name = Some("orders".into());
            cfg.ping_interval = Duration::from_secs(3600);
            cfg.commit_interval = Duration::from_millis(10);
        })
        .build()
        .unwrap()
}

#[derive(Debug, Deserialize, PartialEq)]
struct Order {
    id: u64,
    amount: f64,
}

#[tokio::test(start_paused = true)]
async fn mixed_payloads_decode_or_dead_letter_and_the_stream_goes_on() {
    let c = ScriptedConnector::new();
    let payloads = [
        r#"{"id":1,"amount":2.5}"#,
        r#"{"id":2,"amt":3.0}"#, // renamed field
        "not json at all",
        r#"{"id":4,"amount":1}"#,
        r#"{"id":"five","amount":1}"#, // wrong type
        r#"{"id":6,"amount":0.5}"#,
    ];
    for p in payloads {
        c.push_payload(p);
    }
    let r = reader(&c);
    let mut events = r.events();
    let mut s = r.read(CancellationToken::new()).typed::<Order>();
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for _ in 0..payloads.len() {
        let d = s.next().await.unwrap().unwrap();
        assert_eq!(d.delivery_count(), 1);
        match d.value() {
            Ok(o) => {
                ok.push(o.id);
                d.ack();
            }
            Err(e) => {
                assert_eq!(e.position(), d.position());
                assert_eq!(e.source_name(), "orders");
                assert_eq!(e.codec(), "json");
                assert_eq!(e.payload(), d.payload());
                bad.push((e.position().clone(), e.message().to_owned(), e.to_string()));
                d.dead_letter(e).await.unwrap();
                assert!(d.is_acked(), "a dead-lettered delivery is acknowledged");
            }
        }
    }
    assert_eq!(ok, vec![1, 4, 6]);
    assert_eq!(bad.len(), 3);
    assert_eq!(bad[0].0, position(1));
    assert!(bad[0].1.contains("missing field `amount`"), "{}", bad[0].1);
    assert!(
        bad[0].2.contains("scripted/0@1") && bad[0].2.contains("Order"),
        "the display names the position and the type: {}",
        bad[0].2
    );
    assert!(bad[2].1.contains("invalid type"), "{}", bad[2].1);
    let dl = c.dead_letters();
    assert_eq!(
        dl.iter().map(|(p, _, _)| p.clone()).collect::<Vec<_>>(),
        vec![position(1), position(2), position(4)]
    );
    assert_eq!(&dl[1].1[..], b"not json at all");
    assert!(dl[0].2.contains("missing field `amount`"));
    for _ in 0..3 {
        let ev = events.recv().await.unwrap();
        assert_eq!(ev.kind, EventKind::DeadLettered);
    }
    let report = r.close().await;
    assert_eq!(report.unacked, 0);
    assert_eq!(
        c.commits().last(),
        Some(&position(5)),
        "everything, poison included, is committed: nothing stalls"
    );
}

#[tokio::test(start_paused = true)]
async fn the_reader_counts_deliveries_across_sessions_and_forgets_acked_ones() {
    let c = ScriptedConnector::new();
    c.push_payload(r#"{"id":1}"#);
    c.push_payload(r#"{"id":2,"amount":1.0}"#);
    let r = reader(&c);
    let mut s = r.read(CancellationToken::new()).typed::<Order>();
    let mut counts = Vec::new();
    loop {
        let first = s.next().await.unwrap().unwrap();
        let second = s.next().await.unwrap().unwrap();
        assert_eq!(first.position(), &position(0));
        assert!(first.value().is_err());
        assert_eq!(
            second.delivery_count(),
            1,
            "acked in every session: counts from 1"
        );
        second.ack();
        counts.push(first.delivery_count());
        if first.delivery_count() >= 3 {
            first.dead_letter("failed 3 times").await.unwrap();
            break;
        }
        // Retry: leave it unacknowledged; the next session delivers it again.
        drop(first);
        c.on_fetch(FetchFault::Fail(ReadError::transient(
            ErrorKind::Connection,
            "reset",
        )));
    }
    assert_eq!(counts, vec![1, 2, 3]);
    assert_eq!(c.dead_letters().len(), 1);
    assert_eq!(c.dead_letters()[0].2, "failed 3 times");
    r.close().await;
    assert_eq!(c.commits().last(), Some(&position(1)));
}

#[test]
fn a_source_delivery_counter_wins_and_detached_deliveries_cannot_dead_letter() {
    let mut m = Message::new("x", position(0));
    m.deliveries = Some(7);
    let d = Delivery::detached(m);
    assert_eq!(d.delivery_count(), 7);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let e = rt.block_on(d.dead_letter("nope")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.is_permanent());
    assert!(!d.is_acked());
}

#[test]
fn msgpack_and_utf8_codecs() {
    #[derive(serde::Serialize)]
    struct Wrong {
        id: u64,
        total: f64,
    }
    let good = rmp_serde::to_vec_named(&serde_json::json!({"id": 3, "amount": 1.5})).unwrap();
    let d = TypedDelivery::<Order>::decode(
        Delivery::detached(Message::new(good, position(0))),
        &MessagePack,
    );
    assert_eq!(d.value().unwrap(), &Order { id: 3, amount: 1.5 });
    let wrong = rmp_serde::to_vec_named(&Wrong { id: 1, total: 2.0 }).unwrap();
    let d = TypedDelivery::<Order>::decode(
        Delivery::detached(Message::new(wrong, position(9))),
        &MessagePack,
    );
    let e = d.value().unwrap_err();
    assert!(e.message().contains("amount"), "{}", e.message());
    assert_eq!(e.position(), &position(9));
    assert_eq!(e.codec(), "msgpack");
    let d = TypedDelivery::<String>::decode(
        Delivery::detached(Message::new(&[0x61, 0xff][..], position(1))),
        &Utf8,
    );
    assert!(d.value().unwrap_err().message().contains("invalid utf-8"));
    let d = TypedDelivery::<String>::decode(
        Delivery::detached(Message::new("héllo", position(2))),
        &Utf8,
    );
    assert_eq!(d.value().unwrap(), "héllo");
    let secret = TypedDelivery::<Order>::decode(
        Delivery::detached(Message::new("secret-token", position(3))),
        &reader_core::Json,
    );
    assert!(
        !format!("{secret:?}").contains("secret-token"),
        "Debug never shows the payload"
    );
}

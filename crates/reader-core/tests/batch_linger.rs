//! Batch mode's linger against the scripted connector, on the paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use reader_core::testing::{position, ScriptedConnector};
use reader_core::{
    CancellationToken, DataReader, RetryContext, RetryDecision, RetryPolicy, RetrySchedule,
};

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
        .configure(|cfg| cfg.ping_interval = Duration::from_secs(3600))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_waits_the_linger_and_brings_what_arrived_in_it() {
    let c = ScriptedConnector::new();
    c.push_messages(3);
    let r = reader(&c);
    let mut s = r.read(CancellationToken::new());
    // The first delivery, then 4 more arrive 20 ms into a 50 ms linger.
    let c2 = c.clone();
    let later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        c2.push_messages(4);
    });
    let b = s
        .recv_batch(100, Duration::from_millis(50))
        .await
        .unwrap()
        .unwrap();
    later.await.unwrap();
    assert_eq!(b.len(), 7, "what arrived during the linger is in the batch");
    for (i, d) in b.iter().enumerate() {
        assert_eq!(d.position(), &position(i64::try_from(i).unwrap()));
        d.ack();
    }
    // Nothing more: the next batch waits the whole linger after its first delivery.
    c.push_messages(1);
    let t0 = tokio::time::Instant::now();
    let b = s
        .recv_batch(100, Duration::from_millis(50))
        .await
        .unwrap()
        .unwrap();
    let waited = t0.elapsed();
    assert_eq!(b.len(), 1);
    assert!(
        waited >= Duration::from_millis(50) && waited < Duration::from_millis(60),
        "a partial batch returns at the end of its linger, took {waited:?}"
    );
    b[0].ack();
    drop(s);
    r.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_batch_that_fills_during_the_linger_returns_about_a_millisecond_later() {
    let start = tokio::time::Instant::now();
    let c = ScriptedConnector::new();
    c.push_messages(2);
    let r = reader(&c);
    let mut s = r.read(CancellationToken::new());
    let c2 = c.clone();
    let filler = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        c2.push_messages(8);
    });
    let b = s
        .recv_batch(10, Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    let took = start.elapsed();
    filler.await.unwrap();
    assert_eq!(b.len(), 10);
    drop(b);
    // 10 ms until the batch could fill, then at most a poll interval or two; never the
    // 10 s linger.
    assert!(
        took >= Duration::from_millis(10) && took < Duration::from_millis(13),
        "{took:?}"
    );
    drop(s);
    r.close().await;
}

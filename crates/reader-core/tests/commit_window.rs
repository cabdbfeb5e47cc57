//! The fetch window against the scripted connector, on the paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reader_core::testing::{position, ScriptedConnector};
use reader_core::{
    CancellationToken, CommitOrder, DataReader, RetryContext, RetryDecision, RetryPolicy,
    RetrySchedule,
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

/// In Individual mode (Redis) an acknowledged position stays in the fetch window until its
/// commit succeeds. A consumer that acknowledges at once must not have to wait out
/// `commit_interval` each time the window fills: it was what capped Redis Streams at
/// `max_unacked` per `commit_interval` (8192 / 100 ms ≈ 80 000 msg/s).
#[tokio::test(start_paused = true)]
async fn a_window_full_of_acked_entries_is_committed_without_waiting_for_the_interval() {
    const N: usize = 2_000;
    const WINDOW: usize = 64;
    let interval = Duration::from_secs(3600);
    let c = ScriptedConnector::new();
    c.push_messages(N);
    let r = DataReader::builder(c.clone())
        .retry(Arc::new(Every10ms))
        .commit_order(CommitOrder::Individual)
        .configure(|cfg| {
            cfg.max_unacked = WINDOW;
            cfg.buffer = 16;
            cfg.fetch_max = 32;
            cfg.commit_interval = interval;
            cfg.ping_interval = Duration::from_secs(36_000);
        })
        .build()
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let mut s = r.read(CancellationToken::new());
    for i in 0..N {
        let d = s.next().await.unwrap().unwrap();
        assert_eq!(d.position(), &position(i64::try_from(i).unwrap()));
        d.ack();
    }
    let took = t0.elapsed();
    assert!(
        took < interval,
        "{N} deliveries through a window of {WINDOW} took {took:?} of the paused clock: \
         fetching waited for commit intervals"
    );
    // Everything that let the window move on was committed, one position at a time.
    let commits = c.commits();
    assert!(
        commits.len() >= N - WINDOW,
        "{} of {N} positions committed",
        commits.len()
    );
    assert!(
        commits.windows(2).all(|w| w[0] != w[1]),
        "no position committed twice"
    );
    drop(s);
    r.close().await;
}

//! The Reconnector and DataReader against the scripted connector, on tokio's paused clock:
//! backoff arithmetic is exact and tests take no wall time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reader_core::testing::{position, ConnectStep, FetchFault, ScriptedConnector};
use reader_core::{
    AckMode, CancellationToken, ConnState, DataReader, ErrorClass, ErrorKind, FileCheckpointStore,
    FlakyConfig, ReadError, ReaderConfig,
};
use reader_retry::Retry;

fn transient() -> ReadError {
    ReadError::transient(ErrorKind::Connection, "connection refused")
}

fn reader(c: &ScriptedConnector, policy: Retry) -> DataReader<ScriptedConnector> {
    DataReader::builder(c.clone())
        .retry(policy.into_policy())
        .configure(|cfg| {
            cfg.name = Some("test".into());
            cfg.ping_interval = Duration::from_secs(3600);
        })
        .build()
        .unwrap()
}

async fn wait_state(r: &DataReader<ScriptedConnector>, s: ConnState) {
    let mut w = r.watch_state();
    tokio::time::timeout(Duration::from_secs(600), w.wait_for(|x| *x == s))
        .await
        .expect("state reached in time")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn connect_retries_follow_the_exact_schedule() {
    let c = ScriptedConnector::new();
    for _ in 0..4 {
        c.on_connect(ConnectStep::Fail(transient()));
    }
    c.push_messages(1);
    let r = reader(&c, Retry::default());
    let t0 = tokio::time::Instant::now();
    let mut s = r.read(CancellationToken::new());
    let d = s.next().await.unwrap().unwrap();
    assert_eq!(d.position(), &position(0));
    let offsets: Vec<u128> = c
        .connect_times()
        .iter()
        .map(|t| (*t - t0).as_millis())
        .collect();
    assert_eq!(offsets, vec![0, 100, 300, 700, 1500]);
    r.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_is_surfaced_at_once_and_never_retried() {
    let c = ScriptedConnector::new();
    c.on_connect(ConnectStep::Fail(ReadError::permanent(
        ErrorKind::Auth,
        "WRONGPASS",
    )));
    let r = reader(&c, Retry::default().max_retries(None));
    let mut s = r.read(CancellationToken::new());
    let e = s.next().await.unwrap().unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert_eq!(e.source_name(), Some("test"));
    assert!(e.exhausted().is_none());
    assert!(
        s.next().await.is_none(),
        "the stream ends after a surfaced error"
    );
    assert_eq!(c.connects(), 1);
    assert_eq!(r.state(), ConnState::Failed);
}

#[tokio::test(start_paused = true)]
async fn a_transient_error_is_retried_then_surfaced_with_the_attempt_count() {
    let c = ScriptedConnector::new();
    for _ in 0..10 {
        c.on_connect(ConnectStep::Fail(transient()));
    }
    let r = reader(&c, Retry::default());
    let mut s = r.read(CancellationToken::new());
    let e = s.next().await.unwrap().unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient);
    let ex = e.exhausted().expect("budget ran out");
    assert_eq!(ex.attempts, 6, "the first try and 5 retries");
    assert_eq!(
        ex.elapsed,
        Duration::from_millis(100 + 200 + 400 + 800 + 1600)
    );
    assert_eq!(c.connects(), 6);
    assert!(e.to_string().contains("gave up after 6 attempts"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_disconnect_walks_the_state_machine_exactly() {
    let c = ScriptedConnector::new();
    c.push_messages(1);
    let r = reader(&c, Retry::default());
    let mut transitions = r.transitions();
    let mut s = r.read(CancellationToken::new());
    s.next().await.unwrap().unwrap().ack();
    c.on_fetch(FetchFault::Fail(transient()));
    let mut seen = Vec::new();
    let mut readies = 0;
    while readies < 2 {
        let t = transitions.recv().await.unwrap();
        seen.push((t.from, t.to));
        if t.to == ConnState::Ready {
            readies += 1;
        }
    }
    c.push_messages(1);
    let d = s.next().await.unwrap().unwrap();
    assert_eq!(d.position(), &position(1));
    d.ack();
    use ConnState::*;
    assert_eq!(
        seen,
        vec![
            (Disconnected, Reconnecting),
            (Reconnecting, Recovering),
            (Recovering, Ready),
            (Ready, Disconnected),
            (Disconnected, Reconnecting),
            (Reconnecting, Recovering),
            (Recovering, Ready),
        ]
    );
    let report = r.close().await;
    assert_eq!(report.unacked, 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_token_ends_the_stream_and_every_task() {
    let c = ScriptedConnector::new();
    c.push_messages(3);
    let r = reader(&c, Retry::default());
    let token = CancellationToken::new();
    let mut s = r.read(token.child_token());
    s.next().await.unwrap().unwrap().ack();
    assert!(r.live_tasks() > 0);
    token.cancel();
    // Drain whatever was buffered; the stream must end.
    while let Some(item) = s.next().await {
        item.unwrap();
    }
    wait_state(&r, ConnState::Closed).await;
    // The tasks finish right after publishing the final state.
    tokio::time::timeout(Duration::from_secs(5), async {
        while r.live_tasks() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("no live task remains");
    assert_eq!(c.open_sessions(), 0, "the session was closed and dropped");
    assert_eq!(
        c.commits().last(),
        Some(&position(0)),
        "the ack was committed on the way out"
    );
}

#[tokio::test(start_paused = true)]
async fn close_respects_its_deadline_when_the_connector_hangs() {
    let c = ScriptedConnector::new();
    c.on_connect(ConnectStep::Hang);
    let r = reader(&c, Retry::default());
    let _s = r.read(CancellationToken::new());
    wait_state(&r, ConnState::Reconnecting).await;
    let t0 = tokio::time::Instant::now();
    let report = r.close_within(Duration::from_secs(2)).await;
    assert!(t0.elapsed() <= Duration::from_secs(3));
    assert_eq!(r.live_tasks(), 0);
    assert_eq!(r.state(), ConnState::Closed);
    assert_eq!(report.unacked, 0);
}

#[tokio::test(start_paused = true)]
async fn close_respects_its_deadline_when_the_session_close_hangs() {
    let c = ScriptedConnector::new();
    c.hang_close();
    c.push_messages(1);
    let r = reader(&c, Retry::default());
    let mut s = r.read(CancellationToken::new());
    s.next().await.unwrap().unwrap().ack();
    let t0 = tokio::time::Instant::now();
    let report = r.close_within(Duration::from_secs(2)).await;
    assert!(t0.elapsed() <= Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(report.timed_out);
    assert_eq!(r.live_tasks(), 0, "aborted");
    assert_eq!(
        c.open_sessions(),
        0,
        "the session was dropped with its task"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_buffer_stops_fetching() {
    let c = ScriptedConnector::new();
    c.push_messages(10_000);
    let r = DataReader::builder(c.clone())
        .retry(Retry::default().into_policy())
        .configure(|cfg| {
            cfg.buffer = 8;
            cfg.fetch_max = 4;
            cfg.fetch_min = 4;
            cfg.ping_interval = Duration::from_secs(3600);
        })
        .build()
        .unwrap();
    let mut s = r.read(CancellationToken::new());
    let first = s.next().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let fetches = c.fetches();
    assert!(
        fetches <= 4,
        "{fetches} fetches with a buffer of 8 and fetches of 4"
    );
    assert!(s.buffered_len() <= 8);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        c.fetches(),
        fetches,
        "nothing fetched while the buffer stays full"
    );
    first.ack();
    // Consuming frees room and fetching resumes.
    for _ in 0..20 {
        s.next().await.unwrap().unwrap().ack();
    }
    assert!(c.fetches() > fetches);
    r.close().await;
}

#[tokio::test(start_paused = true)]
async fn the_unacked_window_bounds_fetching() {
    let c = ScriptedConnector::new();
    c.push_messages(1000);
    let r = DataReader::builder(c.clone())
        .retry(Retry::default().into_policy())
        .configure(|cfg| {
            cfg.max_unacked = 10;
            cfg.ping_interval = Duration::from_secs(3600);
        })
        .build()
        .unwrap();
    let mut s = r.read(CancellationToken::new());
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(s.next().await.unwrap().unwrap());
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        s.buffered_len(),
        0,
        "no more than 10 unacked deliveries exist"
    );
    held.remove(0).ack();
    let next = s.next().await.unwrap().unwrap();
    assert_eq!(next.position(), &position(10));
    r.close().await;
}

#[tokio::test(start_paused = true)]
async fn out_of_order_acks_commit_only_the_contiguous_prefix() {
    let c = ScriptedConnector::new();
    c.push_messages(4);
    let r = reader(&c, Retry::default());
    let mut s = r.read(CancellationToken::new());
    let mut ds = Vec::new();
    for _ in 0..4 {
        ds.push(s.next().await.unwrap().unwrap());
    }
    ds[3].ack();
    ds[1].ack();
    r.commit_now().await.unwrap();
    assert!(
        c.commits().is_empty(),
        "offset 0 not acked: nothing is committable"
    );
    ds[0].ack();
    r.commit_now().await.unwrap();
    assert_eq!(c.commits(), vec![position(1)]);
    ds[2].ack();
    r.commit_now().await.unwrap();
    assert_eq!(c.commits(), vec![position(1), position(3)]);
    let report = r.close().await;
    assert_eq!(report.committed.positions, vec![position(3)]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_never_blocks_deliveries_already_buffered() {
    let c = ScriptedConnector::new();
    c.push_messages(5);
    let r = reader(&c, Retry::default().max_retries(None));
    let mut s = r.read(CancellationToken::new());
    let first = s.next().await.unwrap().unwrap();
    // The connection dies and stays away for a long time.
    c.on_fetch(FetchFault::Fail(transient()));
    for _ in 0..1000 {
        c.on_connect(ConnectStep::Fail(transient()));
    }
    wait_state(&r, ConnState::Reconnecting).await;
    first.ack();
    for i in 1..5 {
        let d = s.next().await.unwrap().unwrap();
        assert_eq!(d.position(), &position(i));
    }
    r.close_within(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_new_reader_resumes_after_the_last_committed_position() {
    let dir = std::env::temp_dir().join(format!("unireader-cp-{}", std::process::id()));
    let store = Arc::new(FileCheckpointStore::new(&dir));
    let c = ScriptedConnector::new();
    c.push_messages(6);
    {
        let r = DataReader::builder(c.clone())
            .retry(Retry::default().into_policy())
            .checkpoint_store(store.clone())
            .build()
            .unwrap();
        let mut s = r.read(CancellationToken::new());
        for _ in 0..3 {
            s.next().await.unwrap().unwrap().ack();
        }
        let report = r.close().await;
        assert_eq!(report.committed.positions, vec![position(2)]);
    }
    let r = DataReader::builder(c.clone())
        .retry(Retry::default().into_policy())
        .checkpoint_store(store)
        .build()
        .unwrap();
    let mut s = r.read(CancellationToken::new());
    assert_eq!(s.next().await.unwrap().unwrap().position(), &position(3));
    r.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(start_paused = true)]
async fn flapping_is_detected_and_exhausts_the_budget() {
    let c = ScriptedConnector::new();
    // Every session fails on its first fetch: connect succeeds, read fails, forever.
    for _ in 0..100 {
        c.on_fetch(FetchFault::Fail(transient()));
    }
    let r = DataReader::builder(c.clone())
        .retry(Retry::default().max_retries(Some(8)).into_policy())
        .configure(|cfg| {
            cfg.flaky = FlakyConfig {
                window_len: 10,
                window_age: Duration::from_secs(600),
                min_flips: 4,
            };
        })
        .build()
        .unwrap();
    let mut events = r.events();
    let mut s = r.read(CancellationToken::new());
    let e = s.next().await.unwrap().unwrap_err();
    assert_eq!(e.class(), ErrorClass::Flaky, "{e}");
    assert!(
        e.exhausted().is_some(),
        "short successes did not renew the budget"
    );
    let mut flaky_events = 0;
    while let Ok(ev) = events.try_recv() {
        if ev.kind == reader_core::EventKind::Flaky {
            flaky_events += 1;
        }
    }
    assert!(flaky_events >= 1);
}

#[tokio::test(start_paused = true)]
async fn batch_adaptive_and_auto_ack_modes() {
    let c = ScriptedConnector::new();
    c.push_messages(100);
    let r = DataReader::builder(c.clone())
        .retry(Retry::default().into_policy())
        .configure(|cfg| cfg.ack_mode = AckMode::Auto)
        .build()
        .unwrap();
    let mut s = r.read(CancellationToken::new());
    // Let the buffer fill: a backlog.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = s
        .recv_batch(10, Duration::from_millis(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.len(), 10);
    assert!(b.iter().all(reader_core::Delivery::is_acked), "auto-ack");
    let mut sizes = Vec::new();
    for _ in 0..5 {
        sizes.push(s.recv_adaptive(64).await.unwrap().unwrap().len());
    }
    assert_eq!(sizes, vec![1, 2, 4, 8, 16], "grows under backlog");
    // Drain, then the consumer keeps up: the target shrinks.
    while s.buffered_len() > 0 {
        s.recv_adaptive(64).await.unwrap().unwrap();
    }
    let before = s.adaptive_target();
    c.push_messages(1);
    s.recv_adaptive(64).await.unwrap().unwrap();
    assert!(s.adaptive_target() < before.max(2));
    r.close().await;
    assert_eq!(c.commits().last(), Some(&position(100)));
}

#[tokio::test(start_paused = true)]
async fn reading_twice_is_a_clear_error_and_config_is_checked() {
    let c = ScriptedConnector::new();
    let r = reader(&c, Retry::default());
    let _s = r.read(CancellationToken::new());
    let mut s2 = r.read(CancellationToken::new());
    let e = s2.next().await.unwrap().unwrap_err();
    assert!(e.to_string().contains("already called"), "{e}");
    let bad = DataReader::builder(c.clone())
        .retry(Retry::default().into_policy())
        .config(ReaderConfig {
            buffer: 0,
            ..ReaderConfig::default()
        })
        .build();
    assert!(bad.err().unwrap().to_string().contains("buffer"));
    assert!(DataReader::builder(c).build().is_err(), "no policy");
}

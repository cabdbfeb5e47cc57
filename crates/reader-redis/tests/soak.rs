//! The fault soak: 100 000 entries produced while a consumer-group reader reads and
//! acknowledges through a TCP proxy; redis-server (AOF, appendfsync always) is killed with
//! `kill -9` and restarted 5 times and the TCP path is cut 5 times. Every entry ID must be
//! delivered at least once, duplicates stay within the unacked window, and each fault shows
//! as a Ready → Disconnected → … → Ready cycle.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use fred::prelude::*;
use reader_core::{CancellationToken, ConnState, ReadStream};
use testkit::{FaultProxy, RedisOpts, Server};
use tokio::sync::watch;
use tokio::time::Instant;

const TOTAL: u64 = 100_000;
const BATCH: u64 = 500;
const FAULTS: u64 = 10;
/// The writer stays at most this far ahead of the reader, so faults land mid-stream.
const LEAD: u64 = 10_000;
const MAX_UNACKED: usize = 4096;
const BUFFER: usize = 1024;
/// The consumer keeps this many deliveries unacknowledged, so a reconnect has something to
/// re-deliver.
const ACK_LAG: usize = 200;

struct Stats {
    deliveries: u64,
    counts: Vec<u32>,
}

async fn consume(mut s: ReadStream, progress: watch::Sender<u64>, dups: Arc<AtomicU64>) -> Stats {
    let mut counts = vec![0_u32; usize::try_from(TOTAL).unwrap() + 1];
    let (mut deliveries, mut distinct) = (0_u64, 0_u64);
    let mut held = std::collections::VecDeque::new();
    while let Some(item) = s.recv().await {
        let d = item.unwrap_or_else(|e| panic!("the reader surfaced an error: {e}"));
        let ms = ms_of(&d);
        deliveries += 1;
        let slot = &mut counts[usize::try_from(ms).unwrap()];
        if *slot == 0 {
            distinct += 1;
            progress.send_replace(distinct);
        } else {
            dups.fetch_add(1, Ordering::Relaxed);
        }
        *slot += 1;
        held.push_back(d);
        while held.len() > ACK_LAG {
            if let Some(old) = held.pop_front() {
                old.ack();
            }
        }
        if distinct == TOTAL {
            break;
        }
    }
    for d in held {
        d.ack();
    }
    Stats { deliveries, counts }
}

/// XADD 1..=TOTAL (IDs `n-1`) in pipelined batches, riding out the server's deaths.
async fn write_all(host_port: String, key: String, mut progress: watch::Receiver<u64>) -> u64 {
    let c = raw(&host_port).await;
    let mut retries = 0;
    let mut next = 1;
    while next <= TOTAL {
        progress
            .wait_for(|d| *d + LEAD >= next)
            .await
            .expect("consumer gone");
        let end = (next + BATCH).min(TOTAL + 1);
        let batch = (next..end).map(|ms| {
            let c = c.clone();
            let key = key.clone();
            async move {
                let r: Result<Value, _> = c
                    .xadd(
                        key.as_str(),
                        false,
                        None,
                        format!("{ms}-1"),
                        vec![("n", Value::Integer(ms as i64))],
                    )
                    .await;
                r.is_ok()
            }
        });
        let ok = futures::future::join_all(batch).await;
        if ok.iter().any(|ok| !ok) {
            // Find out entry by entry (explicit IDs make a repeat safe).
            for ms in next..end {
                retries += xadd(&c, &key, ms, vec![("n", Value::Integer(ms as i64))]).await;
            }
        }
        next = end;
    }
    retries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_soak_100k_entries_5_kills_5_cuts() {
    let mut srv = Server::redis(RedisOpts {
        aof: true,
        ..Default::default()
    })
    .await
    .expect("own redis-server");
    let proxy = FaultProxy::start(srv.host_port()).await.expect("proxy");
    let key = unique("soak");
    let url = format!(
        "redis://{}?stream={key}&group=soak&consumer=c1&start=0&count=512&block_ms=500\
         &command_timeout_ms=2000&connect_timeout_ms=1000&max_deliveries=1000",
        proxy.addr()
    );
    let r = Arc::new(reader(&url, "soak", |c| {
        c.max_unacked = MAX_UNACKED;
        c.buffer = BUFFER;
        c.commit_interval = Duration::from_millis(50);
        c.fetch_grace = Duration::from_secs(3);
        c.ping_interval = Duration::from_secs(1);
        c.ping_timeout = Duration::from_secs(2);
    }));
    let mut transitions = r.transitions();
    let seen: Arc<Mutex<Vec<(Instant, ConnState)>>> = Arc::default();
    let listener = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Ok(t) = transitions.recv().await {
                seen.lock().unwrap().push((Instant::now(), t.to));
            }
        })
    };
    let cancel = CancellationToken::new();
    let s = r.read(cancel.child_token());
    until_ready(&r).await;
    let started = Instant::now();

    let (tx, rx) = watch::channel(0_u64);
    let dups = Arc::new(AtomicU64::new(0));
    let consumer = tokio::spawn(consume(s, tx, dups.clone()));
    let writer = tokio::spawn(write_all(srv.host_port(), key.clone(), rx.clone()));

    let mut progress = rx.clone();
    let mut report = Vec::new();
    let mut reconnect_times = Vec::new();
    let mut dups_at_fault = Vec::new();
    let mut fault_at: Vec<Instant> = Vec::new();
    for i in 0..FAULTS {
        progress
            .wait_for(|d| *d >= (i + 1) * 9_000)
            .await
            .expect("consumer gone");
        let at = *progress.borrow();
        dups_at_fault.push(dups.load(Ordering::Relaxed));
        let t0 = Instant::now();
        fault_at.push(t0);
        let kind = if i % 2 == 0 {
            srv.kill();
            srv.restart().await.expect("restart redis-server");
            "kill -9 + restart"
        } else {
            proxy.cut_all();
            "cut TCP"
        };
        let down = t0.elapsed();
        progress
            .wait_for(|d| *d >= (at + 2_000).min(TOTAL))
            .await
            .expect("consumer gone");
        let flow = t0.elapsed();
        let reconnect = {
            let seen = seen.lock().unwrap();
            let after: Vec<&(Instant, ConnState)> = seen.iter().filter(|(t, _)| *t >= t0).collect();
            after
                .iter()
                .position(|(_, s)| *s == ConnState::Disconnected)
                .and_then(|i| after[i..].iter().find(|(_, s)| *s == ConnState::Ready))
                .map(|(t, _)| t.duration_since(t0))
        };
        let reconnect = reconnect.unwrap_or_else(|| {
            panic!(
                "fault {} ({kind}): no Ready → Disconnected → … → Ready cycle",
                i + 1
            )
        });
        reconnect_times.push(reconnect);
        report.push(format!(
            "fault {:>2} {kind:<17} at {at:>6} delivered: server back after {down:>7.1?}; \
             reader Ready again after {reconnect:>7.1?}; 2000 more new entries after {flow:>7.1?}",
            i + 1
        ));
    }
    let stats = tokio::time::timeout(Duration::from_secs(120), consumer)
        .await
        .expect("consumer did not finish in 120 s")
        .unwrap();
    let retries = writer.await.unwrap();
    let elapsed = started.elapsed();
    cancel.cancel();
    let shutdown = r.close().await;
    listener.abort();
    dups_at_fault.push(dups.load(Ordering::Relaxed));

    let check = raw(&srv.host_port()).await;
    let len: u64 = check.xlen(key.as_str()).await.unwrap();
    let lost = stats.counts[1..].iter().filter(|c| **c == 0).count();
    let duplicates: u64 = stats
        .counts
        .iter()
        .map(|c| u64::from(c.saturating_sub(1)))
        .sum();
    let per_fault: Vec<u64> = dups_at_fault.windows(2).map(|w| w[1] - w[0]).collect();
    let cycles = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, s)| *s == ConnState::Ready)
        .count();
    // Each new session re-delivers at most the window (this consumer's pending entries);
    // a fault that costs two sessions (a second disconnect before the re-delivered entries
    // were XACKed) may re-deliver twice.
    let readies: Vec<(Instant, ConnState)> = seen.lock().unwrap().clone();
    let sessions_per_interval: Vec<u64> = (0..per_fault.len())
        .map(|i| {
            let (from, to) = (fault_at[i], fault_at.get(i + 1).copied());
            readies
                .iter()
                .filter(|(t, s)| {
                    *s == ConnState::Ready && *t >= from && to.is_none_or(|to| *t < to)
                })
                .count()
                .max(1) as u64
        })
        .collect();
    println!("--- Redis Streams fault soak ---");
    for line in &report {
        println!("{line}");
    }
    println!(
        "entries {TOTAL} (XLEN {len}), deliveries {}, lost {lost}, duplicates {duplicates} \
         (per fault interval {per_fault:?} in {sessions_per_interval:?} sessions; window {} = max_unacked + buffer), faults {FAULTS} \
         (5 kill -9, 5 TCP cuts), Ready cycles {cycles}, sessions {}, reconnect times \
         {reconnect_times:.1?}, writer retries {retries}, elapsed {elapsed:.1?}, close: \
         unacked {} timed_out {}",
        stats.deliveries,
        MAX_UNACKED + BUFFER,
        r.health().sessions,
        shutdown.unacked,
        shutdown.timed_out,
    );
    assert_eq!(len, TOTAL, "the writer wrote every entry exactly once");
    assert_eq!(lost, 0, "every entry ID must be delivered");
    let window = u64::try_from(MAX_UNACKED + BUFFER).unwrap();
    for (i, d) in per_fault.iter().enumerate() {
        let sessions = sessions_per_interval[i];
        assert!(
            *d <= window * sessions,
            "interval {}: {d} duplicates exceed the window {window} x {sessions} sessions",
            i + 1
        );
    }
    assert!(
        cycles as u64 > FAULTS,
        "each fault is a Ready → … → Ready cycle"
    );
    assert!(!shutdown.timed_out);
    assert_eq!(r.live_tasks(), 0);
}

//! The fault soak: 100 000 records over 6 partitions read in a group with acknowledgements,
//! through a TCP proxy the broker advertises (so every client connection passes through
//! it), while tansu is killed (`kill -9`) and restarted 5 times and the TCP path is cut 5
//! times. Every (partition, offset) must be delivered at least once, first deliveries in
//! offset order per partition, duplicates within the unacknowledged window per fault.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use reader_core::{ConnState, ReadStream};
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use testkit::{FaultProxy, KafkaOpts, Server};
use tokio::sync::watch;
use tokio::time::Instant;

const TOTAL: u64 = 100_000;
const PARTITIONS: i32 = 6;
const BATCH: u64 = 500;
const FAULTS: u64 = 10;
/// The producer stays at most this far ahead of the reader, so faults land mid-stream.
const LEAD: u64 = 10_000;
const MAX_UNACKED: usize = 4096;
const BUFFER: usize = 1024;
/// Acknowledgements lag this many deliveries behind handling, so a fault has something to
/// re-deliver.
const ACK_LAG: usize = 200;

struct Stats {
    deliveries: u64,
    /// Delivery count per partition and offset.
    counts: Vec<Vec<u32>>,
    order_violations: u64,
    payload_mismatches: u64,
}

fn u(x: i64) -> usize {
    usize::try_from(x).unwrap()
}

async fn consume(
    mut s: ReadStream,
    progress: watch::Sender<u64>,
    mut target: watch::Receiver<Option<Vec<i64>>>,
    dups: Arc<AtomicU64>,
) -> Stats {
    let mut counts: Vec<Vec<u32>> = vec![Vec::new(); u(i64::from(PARTITIONS))];
    let mut payloads: HashMap<(i32, i64), Vec<u8>> = HashMap::new();
    let (mut deliveries, mut distinct, mut order_violations, mut payload_mismatches) =
        (0_u64, 0_u64, 0, 0);
    let mut held = std::collections::VecDeque::new();
    let done = |counts: &Vec<Vec<u32>>, t: &Option<Vec<i64>>| {
        t.as_ref().is_some_and(|hw| {
            hw.iter().enumerate().all(|(p, hw)| {
                counts[p].len() >= u(*hw) && counts[p][..u(*hw)].iter().all(|c| *c > 0)
            })
        })
    };
    loop {
        if done(&counts, &target.borrow()) {
            break;
        }
        let item = tokio::select! {
            item = s.recv() => item,
            _ = target.changed() => continue,
        };
        let Some(item) = item else { break };
        let d = item.unwrap_or_else(|e| panic!("the reader surfaced an error: {e}"));
        deliveries += 1;
        let (p, o) = po(&d);
        let c = &mut counts[u(i64::from(p))];
        if c.len() <= u(o) {
            c.resize(u(o) + 1, 0);
        }
        if c[u(o)] == 0 {
            // A first delivery must come right after the highest one seen of its partition.
            let prev_max = c[..u(o)]
                .iter()
                .rposition(|n| *n > 0)
                .map_or(-1, |i| i64::try_from(i).unwrap());
            if o != prev_max + 1 || c[u(o) + 1..].iter().any(|n| *n > 0) {
                order_violations += 1;
            }
            distinct += 1;
            progress.send_replace(distinct);
            payloads.insert((p, o), d.payload().to_vec());
        } else {
            dups.fetch_add(1, Ordering::Relaxed);
            if payloads
                .get(&(p, o))
                .is_some_and(|v| v[..] != d.payload()[..])
            {
                payload_mismatches += 1;
            }
        }
        c[u(o)] += 1;
        held.push_back(d);
        while held.len() > ACK_LAG {
            if let Some(old) = held.pop_front() {
                old.ack();
            }
        }
    }
    for d in held {
        d.ack();
    }
    Stats {
        deliveries,
        counts,
        order_violations,
        payload_mismatches,
    }
}

/// Produce ids 0..TOTAL (id i to partition i % 6) in batches, riding out the broker's
/// deaths and the cuts. Returns (produce retries, records acknowledged by the broker per
/// partition as (offset, id)).
async fn produce_all(
    addr: String,
    topic: String,
    mut progress: watch::Receiver<u64>,
) -> (u64, Vec<Vec<(i64, u64)>>) {
    let mut client = admin(&addr).await;
    let mut retries = 0;
    let mut acked: Vec<Vec<(i64, u64)>> = vec![Vec::new(); u(i64::from(PARTITIONS))];
    let mut next = 0_u64;
    while next < TOTAL {
        progress
            .wait_for(|d| *d + LEAD >= next)
            .await
            .expect("consumer gone");
        let end = (next + BATCH * u64::try_from(PARTITIONS).unwrap()).min(TOTAL);
        for p in 0..PARTITIONS {
            let ids: Vec<u64> = (next..end)
                .filter(|i| i % u64::try_from(PARTITIONS).unwrap() == u64::try_from(p).unwrap())
                .collect();
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let attempt = async {
                    let pc = client
                        .partition_client(topic.as_str(), p, UnknownTopicHandling::Error)
                        .await?;
                    let ts = now_ms();
                    pc.produce(
                        ids.iter().map(|i| record(i.to_string(), ts)).collect(),
                        Compression::NoCompression,
                    )
                    .await
                };
                match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                    Ok(Ok(offsets)) => {
                        acked[u(i64::from(p))].extend(offsets.into_iter().zip(ids.iter().copied()));
                        break;
                    }
                    _ => {
                        retries += 1;
                        assert!(
                            Instant::now() < deadline,
                            "the producer could not produce for 120 s"
                        );
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        client = admin(&addr).await;
                    }
                }
            }
        }
        next = end;
    }
    (retries, acked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_soak_100k_records_5_kills_5_cuts() {
    init_tracing();
    let port = testkit::free_port().unwrap();
    let proxy = FaultProxy::start(format!("127.0.0.1:{port}"))
        .await
        .expect("proxy");
    let mut srv = Server::kafka(KafkaOpts {
        port: Some(port),
        advertised: Some(proxy.addr().to_owned()),
        ..Default::default()
    })
    .await
    .expect("own tansu");
    let admin_client = admin(proxy.addr()).await;
    let topic = unique("soak");
    create_topic(&admin_client, &topic, PARTITIONS).await;

    let cfg = group_config(proxy.addr(), &topic, &unique("g-soak"));
    let r = Arc::new(reader(cfg, "soak", |c| {
        c.max_unacked = MAX_UNACKED;
        c.buffer = BUFFER;
        c.fetch_max = 2048;
    }));
    let mut transitions = r.transitions();
    let seen: Arc<std::sync::Mutex<Vec<(Instant, ConnState)>>> = Arc::default();
    let listener = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Ok(t) = transitions.recv().await {
                seen.lock().unwrap().push((Instant::now(), t.to));
            }
        })
    };
    let s = r.read(reader_core::CancellationToken::new());
    until_ready(&r).await;
    let started = Instant::now();

    let (tx, rx) = watch::channel(0_u64);
    let (target_tx, target_rx) = watch::channel(None);
    let dups = Arc::new(AtomicU64::new(0));
    let consumer = tokio::spawn(consume(s, tx, target_rx, dups.clone()));
    let producer = tokio::spawn(produce_all(
        proxy.addr().to_owned(),
        topic.clone(),
        rx.clone(),
    ));

    let mut progress = rx.clone();
    let mut report = Vec::new();
    let mut reconnect_times = Vec::new();
    let mut dups_at_fault = Vec::new();
    for i in 0..FAULTS {
        progress
            .wait_for(|d| *d >= (i + 1) * 9_000)
            .await
            .expect("consumer gone");
        let at = *progress.borrow();
        dups_at_fault.push(dups.load(Ordering::Relaxed));
        let t0 = Instant::now();
        let kind = if i % 2 == 0 {
            srv.kill();
            srv.restart().await.expect("restart tansu");
            "kill -9 + restart"
        } else {
            proxy.cut_all();
            "cut TCP"
        };
        let down = t0.elapsed();
        progress
            .wait_for(|d| *d >= (at + 3_000).min(TOTAL))
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
        if let Some(d) = reconnect {
            reconnect_times.push(d);
        }
        report.push(format!(
            "fault {:>2} {kind:<17} at {at:>6} delivered: broker back after {down:>7.1?}; {}; 3000 more new records after {flow:>7.1?}",
            i + 1,
            reconnect.map_or_else(|| "no session change".to_owned(), |d| format!("reader Ready again after {d:.1?}"))
        ));
    }
    let (retries, acked) = tokio::time::timeout(Duration::from_secs(180), producer)
        .await
        .expect("producer did not finish")
        .unwrap();
    // What the broker holds now: every offset below each high watermark must be delivered.
    let mut hws = Vec::new();
    for p in 0..PARTITIONS {
        let pc = admin_client
            .partition_client(topic.as_str(), p, UnknownTopicHandling::Error)
            .await
            .unwrap();
        hws.push(pc.get_offset(OffsetAt::Latest).await.unwrap());
    }
    target_tx.send_replace(Some(hws.clone()));
    let stats = tokio::time::timeout(Duration::from_secs(180), consumer)
        .await
        .expect("consumer did not finish in 180 s")
        .unwrap();
    let elapsed = started.elapsed();
    let shutdown = r.close().await;
    listener.abort();
    dups_at_fault.push(dups.load(Ordering::Relaxed));

    let in_log: u64 = hws.iter().map(|h| u64::try_from(*h).unwrap()).sum();
    let lost_offsets: usize = hws
        .iter()
        .enumerate()
        .map(|(p, hw)| {
            (0..u(*hw))
                .filter(|o| stats.counts[p].get(*o).is_none_or(|c| *c == 0))
                .count()
        })
        .sum();
    let acked_lost: usize = acked
        .iter()
        .enumerate()
        .map(|(p, v)| {
            v.iter()
                .filter(|(o, _)| stats.counts[p].get(u(*o)).is_none_or(|c| *c == 0))
                .count()
        })
        .sum();
    let acked_total: usize = acked.iter().map(Vec::len).sum();
    let duplicates: u64 = stats
        .counts
        .iter()
        .flatten()
        .map(|c| u64::from(c.saturating_sub(1)))
        .sum();
    let per_fault: Vec<u64> = dups_at_fault.windows(2).map(|w| w[1] - w[0]).collect();
    println!("--- Kafka (tansu) fault soak ---");
    for line in &report {
        println!("{line}");
    }
    println!(
        "records produced {TOTAL} (broker acks {acked_total}, producer retries {retries}); in the log {in_log} (high watermarks {hws:?}); \
         deliveries {}, lost offsets {lost_offsets}, lost acked records {acked_lost}, duplicates {duplicates} \
         (per fault interval {per_fault:?}; window {} = max_unacked + buffer), order violations {}, payload mismatches {}, \
         sessions {}, reconnect times {reconnect_times:.1?}, elapsed {elapsed:.1?} ({:.0} records/s), close: unacked {} timed_out {}",
        stats.deliveries,
        MAX_UNACKED + BUFFER,
        stats.order_violations,
        stats.payload_mismatches,
        r.health().sessions,
        stats.deliveries as f64 / elapsed.as_secs_f64(),
        shutdown.unacked,
        shutdown.timed_out,
    );
    assert_eq!(lost_offsets, 0, "every offset in the log must be delivered");
    assert_eq!(
        acked_lost, 0,
        "every record the broker acknowledged must be delivered"
    );
    assert_eq!(
        stats.order_violations, 0,
        "first deliveries must follow offset order per partition"
    );
    assert_eq!(
        stats.payload_mismatches, 0,
        "a re-delivered offset must carry the same record"
    );
    let window = u64::try_from(MAX_UNACKED + BUFFER).unwrap();
    for (i, d) in per_fault.iter().enumerate() {
        assert!(
            *d <= window,
            "fault interval {}: {d} duplicates exceed the window {window}",
            i + 1
        );
    }
    assert!(!shutdown.timed_out);
    assert_eq!(r.live_tasks(), 0);
}

//! Consumer groups against the real broker: two readers split the partitions without
//! overlap and the survivor takes over after the other one dies; a restarted reader resumes
//! from the committed offsets; `auto_offset_reset=latest` skips what was written before.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use reader_kafka::OffsetReset;
use tokio::time::Instant;

const PARTITIONS: i32 = 6;
const PER_PARTITION: usize = 100;

/// Drain `c` until `done` says so, collecting records per partition and the latest
/// assignment.
async fn drain(
    c: &mut Crashable,
    records: &mut BTreeMap<i32, Vec<i64>>,
    assigned: &mut Vec<i32>,
    within: Duration,
    mut done: impl FnMut(&BTreeMap<i32, Vec<i64>>, &[i32]) -> bool,
) {
    let deadline = Instant::now() + within;
    while !done(records, assigned) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.rx.recv()).await {
            Ok(Some(Seen::Record(p, o))) => records.entry(p).or_default().push(o),
            Ok(Some(Seen::Assigned(ps))) => *assigned = ps,
            Ok(Some(Seen::Error(e))) => panic!("reader error: {e}"),
            Ok(None) => panic!("reader thread ended"),
            Err(_) => panic!(
                "condition not reached within {within:?}: assigned {assigned:?}, records per partition {:?}",
                records.iter().map(|(p, v)| (*p, v.len())).collect::<Vec<_>>()
            ),
        }
    }
}

fn covers(records: &BTreeMap<i32, Vec<i64>>, parts: &[i32], upto: i64) -> bool {
    parts
        .iter()
        .all(|p| records.get(p).is_some_and(|v| v.contains(&(upto - 1))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_readers_split_partitions_and_the_survivor_takes_over_after_a_crash() {
    let srv = broker().await;
    let client = admin(&srv.host_port()).await;
    let topic = unique("split");
    create_topic(&client, &topic, PARTITIONS).await;
    let group = unique("g-split");
    let cfg = group_config(&srv.host_port(), &topic, &group);

    let t0 = Instant::now();
    let mut a = Crashable::start(cfg.clone(), "a");
    let (mut ra, mut aa) = (BTreeMap::new(), Vec::new());
    drain(&mut a, &mut ra, &mut aa, Duration::from_secs(30), |_, a| {
        a.len() == 6
    })
    .await;
    let first_join = t0.elapsed();
    let t1 = Instant::now();
    let mut b = Crashable::start(cfg.clone(), "b");
    let (mut rb, mut ab) = (BTreeMap::new(), Vec::new());
    // Both settle on complementary halves.
    drain(&mut b, &mut rb, &mut ab, Duration::from_secs(40), |_, b| {
        !b.is_empty()
    })
    .await;
    drain(&mut a, &mut ra, &mut aa, Duration::from_secs(40), |_, a| {
        a.len() < 6
    })
    .await;
    let rebalance_join = t1.elapsed();
    let sa: BTreeSet<i32> = aa.iter().copied().collect();
    let sb: BTreeSet<i32> = ab.iter().copied().collect();
    println!("group split: first join {first_join:.1?}; second member joined, both assigned after {rebalance_join:.1?}: a={aa:?} b={ab:?}");
    assert!(
        sa.is_disjoint(&sb),
        "overlapping assignments a={aa:?} b={ab:?}"
    );
    assert_eq!(sa.union(&sb).count(), 6, "a={aa:?} b={ab:?}");

    // Phase 1: every record read once, by the owner of its partition.
    produce_each(&client, &topic, PARTITIONS, 0, PER_PARTITION).await;
    let upto = i64::try_from(PER_PARTITION).unwrap();
    drain(&mut a, &mut ra, &mut aa, Duration::from_secs(30), |r, a| {
        covers(r, a, upto)
    })
    .await;
    drain(&mut b, &mut rb, &mut ab, Duration::from_secs(30), |r, b| {
        covers(r, b, upto)
    })
    .await;
    let pa: BTreeSet<i32> = ra.keys().copied().collect();
    let pb: BTreeSet<i32> = rb.keys().copied().collect();
    assert!(
        pa.is_disjoint(&pb),
        "both readers read partitions {:?}",
        pa.intersection(&pb).collect::<Vec<_>>()
    );
    assert_eq!(pa, sa);
    assert_eq!(pb, sb);
    for (p, v) in ra.iter().chain(rb.iter()) {
        assert_eq!(
            *v,
            (0..upto).collect::<Vec<_>>(),
            "partition {p} in order, once"
        );
    }
    // Let b live for a few heartbeats (1 s apart) — the coordinator times a member out from
    // its last contact — and its acknowledgements reach the coordinator (commit interval
    // 50 ms); then b dies.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let t2 = Instant::now();
    b.crash();
    produce_each(&client, &topic, PARTITIONS, PER_PARTITION, PER_PARTITION).await;
    // a gets everything after the session timeout and continues where b committed.
    drain(&mut a, &mut ra, &mut aa, Duration::from_secs(60), |_, a| {
        a.len() == 6
    })
    .await;
    let takeover = t2.elapsed();
    let upto2 = 2 * upto;
    drain(&mut a, &mut ra, &mut aa, Duration::from_secs(30), |r, _| {
        covers(r, &(0..6).collect::<Vec<_>>(), upto2)
    })
    .await;
    let mut lost = 0;
    let mut dups = 0;
    for p in 0..PARTITIONS {
        let mut all: Vec<i64> = ra.get(&p).cloned().unwrap_or_default();
        all.extend(rb.get(&p).cloned().unwrap_or_default());
        let distinct: BTreeSet<i64> = all.iter().copied().collect();
        lost += (0..upto2).filter(|o| !distinct.contains(o)).count();
        dups += all.len() - distinct.len();
    }
    // On b's partitions a started from b's committed offsets, not from the beginning.
    let restarts: Vec<(i32, i64)> = sb
        .iter()
        .map(|p| (*p, ra.get(p).and_then(|v| v.first().copied()).unwrap_or(-1)))
        .collect();
    println!(
        "crash take-over: survivor owns all 6 partitions {takeover:.1?} after the crash \
         (session timeout 6 s); first offsets on the dead member's partitions {restarts:?}; lost {lost}, duplicates {dups}"
    );
    assert_eq!(lost, 0);
    for (p, first) in &restarts {
        assert_eq!(
            *first, upto,
            "partition {p}: the survivor must continue at b's committed offset {upto}"
        );
    }
    // The coordinator expires b a session timeout (6 s) after its last heartbeat, which was
    // at most one heartbeat interval (1 s) before the crash.
    assert!(
        takeover >= Duration::from_millis(4_500),
        "took over {takeover:?} after the crash, before the session timeout: b was not really dead?"
    );
    a.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_reader_resumes_from_committed_offsets() {
    let srv = broker().await;
    let client = admin(&srv.host_port()).await;
    let topic = unique("resume");
    create_topic(&client, &topic, 2).await;
    produce_each(&client, &topic, 2, 0, 100).await;
    let group = unique("g-resume");
    let cfg = group_config(&srv.host_port(), &topic, &group);

    // First run: acknowledge offsets 0..50 of each partition only.
    let r = reader(cfg.clone(), "first", |_| {});
    let mut s = r.read(reader_core::CancellationToken::new());
    let mut seen = BTreeSet::new();
    while seen.len() < 2 {
        let d = next(&mut s, Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        let (p, o) = po(&d);
        if o < 50 {
            d.ack();
        }
        if o == 49 {
            seen.insert(p);
        }
    }
    let t = Instant::now();
    let report = r.close().await;
    println!(
        "first run closed in {:.0?}: committed {:?}, unacked {}",
        t.elapsed(),
        report.committed,
        report.unacked
    );
    assert!(!report.timed_out);
    for p in 0..2 {
        assert!(
            report
                .committed
                .positions
                .contains(&reader_core::Position::Partition {
                    topic: topic.as_str().into(),
                    partition: p,
                    offset: 49
                }),
            "close committed partition {p} up to 49: {:?}",
            report.committed
        );
    }

    // Second run, same group, new reader: starts at 50 on both partitions.
    let t = Instant::now();
    let r = reader(cfg.clone(), "second", |_| {});
    let mut s = r.read(reader_core::CancellationToken::new());
    let mut first = BTreeMap::new();
    while first.len() < 2 {
        let d = next(&mut s, Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        let (p, o) = po(&d);
        first.entry(p).or_insert(o);
        d.ack();
    }
    println!(
        "restart: second reader's first offsets {first:?} after {:.1?}",
        t.elapsed()
    );
    assert_eq!(first, BTreeMap::from([(0, 50), (1, 50)]));
    r.close().await;

    // A new group with auto_offset_reset=latest reads only what is written after it joined.
    let mut latest = group_config(&srv.host_port(), &topic, &unique("g-latest"));
    latest.auto_offset_reset = OffsetReset::Latest;
    let r = reader(latest, "latest", |_| {});
    let mut s = r.read(reader_core::CancellationToken::new());
    until_ready(&r).await;
    produce(&client, &topic, 1, vec!["new".into()]).await;
    let d = next(&mut s, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(po(&d), (1, 100), "latest: the first record after joining");
    assert_eq!(&d.payload()[..], b"new");
    r.close().await;
}

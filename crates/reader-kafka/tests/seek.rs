//! Seek to earliest / an offset / a timestamp / latest while reading in a group, a groupless
//! reader starting at a timestamp, and an unknown topic surfacing as a clear Permanent error.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use reader_core::{ErrorKind, MemoryCheckpointStore};
use reader_kafka::{KafkaConfig, KafkaConnector, StartAt};
use tokio::time::Instant;

const BASE_TS: i64 = 1_700_000_000_000;

/// Produce 20 records to partition 0 with timestamps BASE_TS + i s.
async fn fill(client: &rskafka::client::Client, topic: &str) {
    let pc = client
        .partition_client(
            topic,
            0,
            rskafka::client::partition::UnknownTopicHandling::Error,
        )
        .await
        .unwrap();
    let records = (0..20)
        .map(|i| record(format!("r{i}"), BASE_TS + i * 1_000))
        .collect();
    let offsets = pc
        .produce(
            records,
            rskafka::client::partition::Compression::NoCompression,
        )
        .await
        .unwrap();
    assert_eq!(offsets, (0..20).collect::<Vec<i64>>());
}

/// Read until a delivery of partition 0 arrives; returns its offset (acks everything).
async fn next_p0(s: &mut reader_core::ReadStream) -> i64 {
    loop {
        let d = next(s, Duration::from_secs(30))
            .await
            .expect("stream ended")
            .expect("read error");
        d.ack();
        let (p, o) = po(&d);
        if p == 0 {
            return o;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_earliest_offset_timestamp_latest_while_running() {
    let srv = broker().await;
    let client = admin(&srv.host_port()).await;
    let topic = unique("seek");
    create_topic(&client, &topic, 2).await;
    fill(&client, &topic).await;

    let cfg = group_config(&srv.host_port(), &topic, &unique("g-seek"));
    let connector = KafkaConnector::new(cfg).unwrap();
    let seek = connector.seek_handle();
    let r = connector
        .reader_builder()
        .retry(policy())
        .configure(|c| c.fetch_wait = Duration::from_millis(200))
        .build()
        .unwrap();
    let mut s = r.read(reader_core::CancellationToken::new());
    let t0 = Instant::now();
    for want in 0..20 {
        assert_eq!(next_p0(&mut s).await, want);
    }
    let first_read = t0.elapsed();

    // Each seek goes back from the end of the partition (everything read, nothing
    // buffered), so the next delivery must be the target itself, then the rest in order.
    let mut timings = Vec::new();
    for (to, want) in [
        (StartAt::Offset(5), 5),
        (StartAt::Earliest, 0),
        (StartAt::Timestamp(BASE_TS + 12_000), 12),
        // Between two records: the first at or after it.
        (StartAt::Timestamp(BASE_TS + 7_500), 8),
    ] {
        let t = Instant::now();
        let applied = seek.applied();
        seek.seek(&topic, 0, to);
        assert_eq!(next_p0(&mut s).await, want, "seek to {to}");
        timings.push(format!("{to} -> {want} in {:.0?}", t.elapsed()));
        assert_eq!(seek.applied(), applied + 1);
        for o in want + 1..20 {
            assert_eq!(next_p0(&mut s).await, o, "after the seek to {to}");
        }
    }
    // A timestamp after every record: the end of the log; the next record written is read.
    let applied = seek.applied();
    seek.seek(&topic, 0, StartAt::Timestamp(BASE_TS + 1_000_000));
    tokio::time::timeout(Duration::from_secs(10), async {
        while seek.applied() == applied {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the seek past the end was not applied within 10 s");
    produce(&client, &topic, 0, vec!["late".into()]).await;
    assert_eq!(
        next_p0(&mut s).await,
        20,
        "after seeking past the end, the next record written"
    );
    println!(
        "seek: first read of 20 in {first_read:.0?}; {}; applied {}",
        timings.join("; "),
        seek.applied()
    );
    let report = r.close().await;
    assert!(!report.timed_out);
    assert_eq!(r.live_tasks(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groupless_reader_starts_at_a_timestamp_and_resumes_from_its_checkpoint() {
    let srv = broker().await;
    let client = admin(&srv.host_port()).await;
    let topic = unique("start");
    create_topic(&client, &topic, 1).await;
    fill(&client, &topic).await;
    let store = std::sync::Arc::new(MemoryCheckpointStore::new());
    let url = format!(
        "kafka://{}/{topic}?partitions=0&start=time:{}&max_wait_ms=200",
        srv.host_port(),
        BASE_TS + 15_000
    );
    let build = || {
        KafkaConnector::from_url(&url)
            .unwrap()
            .reader_builder()
            .retry(policy())
            .checkpoint_store(store.clone())
            .configure(|c| {
                c.name = Some("groupless".into());
                c.fetch_wait = Duration::from_millis(200);
            })
            .build()
            .unwrap()
    };
    let r = build();
    let mut s = r.read(reader_core::CancellationToken::new());
    for want in 15..18 {
        assert_eq!(next_p0(&mut s).await, want);
    }
    r.commit_now().await.unwrap();
    r.close().await;
    // A new reader with the same checkpoint store continues after the last acknowledged.
    let r = build();
    let mut s = r.read(reader_core::CancellationToken::new());
    assert_eq!(
        next_p0(&mut s).await,
        18,
        "resumes from the checkpoint, not from start="
    );
    r.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topic_is_a_clear_permanent_error() {
    let srv = broker().await;
    let missing = unique("missing");
    for group in [Some(unique("g-missing")), None] {
        let mut cfg = KafkaConfig::new(vec![srv.host_port()], vec![missing.clone()]);
        cfg.group = group.clone();
        cfg.topic_wait = Duration::from_secs(1);
        let r = reader(cfg, "missing", |_| {});
        let t0 = Instant::now();
        let mut s = r.read(reader_core::CancellationToken::new());
        let e = next(&mut s, Duration::from_secs(30))
            .await
            .expect("an error, not the end")
            .expect_err("no records can come from a missing topic");
        println!(
            "unknown topic (group {group:?}) after {:.1?}: {e}",
            t0.elapsed()
        );
        assert!(e.is_permanent(), "{e}");
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(
            e.to_string().contains(&missing),
            "the error names the topic: {e}"
        );
        assert!(
            next(&mut s, Duration::from_secs(10)).await.is_none(),
            "the stream ends"
        );
        r.close().await;
    }
}

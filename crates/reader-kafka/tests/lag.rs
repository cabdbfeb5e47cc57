//! The consumer-lag gauge `unireader_kafka_lag_records`, per reader and (opted in) per
//! partition, read through a small gauge-recording `metrics` recorder.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use tokio::time::Instant;

/// Keeps every gauge, keyed by `name{label="value",…}` (labels sorted).
#[derive(Clone, Default)]
struct Gauges(Arc<Mutex<BTreeMap<String, Arc<AtomicU64>>>>);

impl Gauges {
    /// One `name{labels} value` line per gauge.
    fn render(&self) -> String {
        let g = self.0.lock().unwrap();
        g.iter()
            .map(|(k, v)| format!("{k} {}\n", f64::from_bits(v.load(Ordering::Relaxed))))
            .collect()
    }
}

impl Recorder for Gauges {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let cell = self.0.lock().unwrap().entry(name).or_default().clone();
        Gauge::from_arc(cell)
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// The value of the lag series whose label set contains every one of `labels`.
fn lag(text: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with("unireader_kafka_lag_records{"))
        .find(|l| {
            labels.iter().all(|want| l.contains(want))
                && (labels.iter().any(|w| w.starts_with("partition")) || !l.contains("partition="))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn until(within: Duration, mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_gauge_follows_the_high_watermark() {
    let prom = Gauges::default();
    metrics::set_global_recorder(prom.clone()).expect("install the recorder");
    let srv = broker().await;
    let client = admin(&srv.host_port()).await;
    let topic = unique("lag");
    create_topic(&client, &topic, 2).await;
    produce_each(&client, &topic, 2, 0, 50).await;

    let mut cfg = group_config(&srv.host_port(), &topic, &unique("g-lag"));
    cfg.lag_per_partition = true;
    // At most 10 deliveries unacknowledged: the reader stops there, 90 records behind.
    let r = reader(cfg, "lag", |c| {
        c.max_unacked = 10;
        c.buffer = 10;
    });
    let mut s = r.read(reader_core::CancellationToken::new());
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(
            next(&mut s, Duration::from_secs(30))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let total = r#"source="lag""#;
    until(
        Duration::from_secs(10),
        || lag(&prom.render(), &[total]).is_some(),
        "a lag series",
    )
    .await;
    // A partition counts once its high watermark is known (its first fetch answered): here
    // 40 (one partition: 50 written, 10 delivered) or 90 (both).
    let behind = lag(&prom.render(), &[total]).unwrap();
    println!("lag while 10 of 100 are delivered and unacknowledged: {behind}");
    assert!(
        (40.0..=90.0).contains(&behind),
        "lag {behind} (100 written, 10 delivered)"
    );

    // Read and acknowledge everything: the lag goes to 0, per partition too.
    for d in held.drain(..) {
        d.ack();
    }
    for _ in 10..100 {
        next(&mut s, Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap()
            .ack();
    }
    until(
        Duration::from_secs(10),
        || {
            let text = prom.render();
            lag(&text, &[total]) == Some(0.0)
                && (0..2).all(|p| lag(&text, &[total, &format!("partition=\"{p}\"")]) == Some(0.0))
        },
        "lag 0 in total and per partition",
    )
    .await;
    r.close().await;
}

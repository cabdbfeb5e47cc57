//! A half-open broker (the TCP path stops answering but stays open): the reader notices
//! within its ping / request timeouts, replaces the session, and loses nothing once the path
//! answers again.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use reader_core::ConnState;
use testkit::{FaultProxy, KafkaOpts, Server};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_broker_is_detected_and_nothing_is_lost() {
    init_tracing();
    let port = testkit::free_port().unwrap();
    let proxy = FaultProxy::start(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let _srv = Server::kafka(KafkaOpts {
        port: Some(port),
        advertised: Some(proxy.addr().to_owned()),
        ..Default::default()
    })
    .await
    .expect("own tansu");
    let client = admin(proxy.addr()).await;
    let topic = unique("halfopen");
    create_topic(&client, &topic, 3).await;
    produce_each(&client, &topic, 3, 0, 1_000).await;

    let r = reader(
        group_config(proxy.addr(), &topic, &unique("g-halfopen")),
        "halfopen",
        |_| {},
    );
    let mut s = r.read(reader_core::CancellationToken::new());
    let mut seen = BTreeSet::new();
    while seen.len() < 1_000 {
        let d = next(&mut s, Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        seen.insert(po(&d));
        d.ack();
    }
    let mut state = r.watch_state();
    let t0 = Instant::now();
    proxy.set_blackhole(true);
    // Keep consuming what is buffered while waiting for the reader to notice.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            tokio::select! {
                changed = state.changed() => {
                    changed.unwrap();
                    if *state.borrow() != ConnState::Ready {
                        return;
                    }
                }
                d = s.recv() => {
                    let d = d.unwrap().unwrap();
                    seen.insert(po(&d));
                    d.ack();
                }
            }
        }
    })
    .await
    .expect("the reader did not notice the black hole within 30 s");
    let detected = t0.elapsed();
    let t1 = Instant::now();
    proxy.set_blackhole(false);
    proxy.cut_all();
    // Records written after the path came back arrive through the replaced session.
    produce_each(&client, &topic, 3, 1_000, 500).await;
    while seen.len() < 4_500 {
        let d = next(&mut s, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        seen.insert(po(&d));
        d.ack();
    }
    let recovered = t1.elapsed();
    println!(
        "half-open: detected after {detected:.1?} (ping timeout 3 s, request timeout 5 s, fetch grace 5 s); \
         1500 records written afterwards read {recovered:.1?} after the path answered again; lost 0"
    );
    assert!(
        detected < Duration::from_secs(12),
        "detection took {detected:?}"
    );
    for p in 0..3 {
        for o in 0..1_500 {
            assert!(seen.contains(&(p, o)), "{p}/{o} lost");
        }
    }
    let report = r.close().await;
    assert!(!report.timed_out);
}

//! Interoperability with librdkafka: one of our readers and a Python `confluent-kafka`
//! consumer (tests/librdkafka_member.py) in the same group split the partitions without
//! overlap, and each sees the other's committed offsets.
//!
//! The interpreter is `~/.cache/unireader/venv/bin/python` (override: `UNIREADER_PYTHON`);
//! `cargo xtask servers up` installs confluent-kafka there. Without it this test FAILS.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::Instant;

const PARTITIONS: i32 = 6;
const PER_PARTITION: i64 = 50;

fn python() -> PathBuf {
    std::env::var_os("UNIREADER_PYTHON")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || testkit::paths::venv().join("bin").join("python"),
            PathBuf::from,
        )
}

/// Fail loudly when the librdkafka side is missing: this test never skips.
fn require_confluent_kafka() -> PathBuf {
    let py = python();
    let out = std::process::Command::new(&py)
        .args([
            "-c",
            "import confluent_kafka; print(confluent_kafka.libversion()[0])",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            println!("librdkafka {} via {}", String::from_utf8_lossy(&o.stdout).trim(), py.display());
            py
        }
        other => panic!(
            "the librdkafka interop test needs Python with the `confluent-kafka` package at {} \
             (set UNIREADER_PYTHON to use another interpreter). `cargo xtask servers up` installs it \
             (pip install confluent-kafka into ~/.cache/unireader/venv). Got: {other:?}",
            py.display()
        ),
    }
}

struct Member {
    child: Child,
    stdin: ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    assigned: Vec<i32>,
    records: BTreeMap<i32, Vec<i64>>,
}

impl Member {
    fn start(py: &PathBuf, bootstrap: &str, topic: &str, group: &str) -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/librdkafka_member.py");
        let mut child = Command::new(py)
            .arg(script)
            .args(["--bootstrap", bootstrap, "--topic", topic, "--group", group])
            .args(["--partitions", &PARTITIONS.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the python member");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            lines,
            assigned: Vec::new(),
            records: BTreeMap::new(),
        }
    }

    /// Read lines until `f` returns something, bounded.
    async fn until<T>(
        &mut self,
        within: Duration,
        mut f: impl FnMut(&mut Self, &Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(left, self.lines.next_line())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "python member: nothing expected within {within:?} (assigned {:?})",
                        self.assigned
                    )
                })
                .expect("read python stdout")
                .expect("the python member exited");
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            if let Some(a) = v.get("assigned") {
                self.assigned = a
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| i32::try_from(p.as_i64().unwrap()).unwrap())
                    .collect();
            }
            if let Some(r) = v.get("record") {
                let p = i32::try_from(r[0].as_i64().unwrap()).unwrap();
                self.records
                    .entry(p)
                    .or_default()
                    .push(r[1].as_i64().unwrap());
            }
            if let Some(t) = f(self, &v) {
                return t;
            }
        }
    }

    async fn send(&mut self, cmd: &str) {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }
}

/// Our reader's deliveries (acknowledged at once) and assignments, through its event stream.
struct Ours {
    r: reader_core::DataReader<reader_kafka::KafkaConnector>,
    s: reader_core::ReadStream,
    events: tokio::sync::broadcast::Receiver<reader_core::ReaderEvent>,
    topic: String,
    assigned: Vec<i32>,
    records: BTreeMap<i32, Vec<i64>>,
    /// The detail of the last `Rebalanced` event (says whether ours led the group).
    detail: String,
}

impl Ours {
    async fn until(&mut self, within: Duration, mut f: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + within;
        while !f(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::select! {
                () = tokio::time::sleep(left) => panic!("our reader: condition not reached within {within:?} (assigned {:?})", self.assigned),
                e = self.events.recv() => {
                    if let Ok(e) = e {
                        if e.kind == reader_core::EventKind::Rebalanced {
                            self.assigned = owned_in(&e.detail, &self.topic);
                            self.detail = e.detail;
                        }
                    }
                }
                d = self.s.recv() => {
                    let d = d.expect("stream ended").unwrap_or_else(|e| panic!("our reader: {e}"));
                    d.ack();
                    let (p, o) = po(&d);
                    self.records.entry(p).or_default().push(o);
                }
            }
        }
    }
}

fn complementary(a: &[i32], b: &[i32]) -> bool {
    let sa: BTreeSet<i32> = a.iter().copied().collect();
    let sb: BTreeSet<i32> = b.iter().copied().collect();
    !sa.is_empty()
        && !sb.is_empty()
        && sa.is_disjoint(&sb)
        && sa.union(&sb).count() == usize::try_from(PARTITIONS).unwrap()
}

fn read_upto(records: &BTreeMap<i32, Vec<i64>>, parts: &[i32], upto: i64) -> bool {
    parts
        .iter()
        .all(|p| records.get(p).is_some_and(|v| v.contains(&(upto - 1))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_member_and_ours_share_a_group() {
    let py = require_confluent_kafka();
    let srv = broker().await;
    let client = admin(&srv.host_port()).await;
    let topic = unique("interop");
    create_topic(&client, &topic, PARTITIONS).await;
    let group = unique("g-interop");

    // librdkafka first: it gets every partition.
    let t0 = Instant::now();
    let mut py_member = Member::start(&py, &srv.host_port(), &topic, &group);
    py_member
        .until(Duration::from_secs(60), |m, _| {
            (m.assigned.len() == 6).then_some(())
        })
        .await;
    let py_join = t0.elapsed();

    // Then ours joins: the group rebalances into two complementary halves.
    let t1 = Instant::now();
    let r = reader(
        group_config(&srv.host_port(), &topic, &group),
        "ours",
        |_| {},
    );
    let events = r.events();
    let s = r.read(reader_core::CancellationToken::new());
    let mut ours = Ours {
        r,
        s,
        events,
        topic: topic.clone(),
        assigned: Vec::new(),
        records: BTreeMap::new(),
        detail: String::new(),
    };
    ours.until(Duration::from_secs(60), |o| !o.assigned.is_empty())
        .await;
    let theirs_now = ours.assigned.clone();
    py_member
        .until(Duration::from_secs(60), |m, _| {
            complementary(&m.assigned, &theirs_now).then_some(())
        })
        .await;
    let split = t1.elapsed();
    println!(
        "interop: librdkafka joined alone in {py_join:.1?}; after ours joined both were assigned in {split:.1?}: \
         ours {:?}, librdkafka {:?}",
        ours.assigned, py_member.assigned
    );
    assert!(complementary(&ours.assigned, &py_member.assigned));

    // Phase 1: each reads its own partitions, nothing of the other's.
    produce_each(
        &client,
        &topic,
        PARTITIONS,
        0,
        usize::try_from(PER_PARTITION).unwrap(),
    )
    .await;
    let mine = ours.assigned.clone();
    ours.until(Duration::from_secs(30), |o| {
        read_upto(&o.records, &mine, PER_PARTITION)
    })
    .await;
    let theirs = py_member.assigned.clone();
    py_member
        .until(Duration::from_secs(30), |m, _| {
            read_upto(&m.records, &theirs, PER_PARTITION).then_some(())
        })
        .await;
    let po_ours: BTreeSet<i32> = ours.records.keys().copied().collect();
    let po_theirs: BTreeSet<i32> = py_member.records.keys().copied().collect();
    assert!(
        po_ours.is_disjoint(&po_theirs),
        "both read {:?}",
        po_ours.intersection(&po_theirs).collect::<Vec<_>>()
    );
    for (p, v) in ours.records.iter().chain(py_member.records.iter()) {
        assert_eq!(
            *v,
            (0..PER_PARTITION).collect::<Vec<_>>(),
            "partition {p}: every offset once, in order"
        );
    }

    // librdkafka sees our commits.
    ours.r.commit_now().await.expect("commit");
    py_member.send("committed").await;
    let committed: BTreeMap<i32, i64> = py_member
        .until(Duration::from_secs(30), |_, v| {
            v.get("committed").map(|c| {
                c.as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, o)| (k.parse().unwrap(), o.as_i64().unwrap()))
                    .collect()
            })
        })
        .await;
    println!("interop: committed offsets as librdkafka sees them: {committed:?}");
    for p in 0..PARTITIONS {
        assert_eq!(
            committed.get(&p),
            Some(&PER_PARTITION),
            "partition {p}: committed next offset (ours {mine:?})"
        );
    }

    // librdkafka leaves (commit + LeaveGroup); ours takes over its partitions from its commits.
    let t2 = Instant::now();
    py_member.send("stop").await;
    py_member
        .until(Duration::from_secs(30), |_, v| v.get("closed").map(|_| ()))
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(10), py_member.child.wait()).await;
    ours.until(Duration::from_secs(60), |o| o.assigned.len() == 6)
        .await;
    let takeover = t2.elapsed();
    produce_each(
        &client,
        &topic,
        PARTITIONS,
        usize::try_from(PER_PARTITION).unwrap(),
        usize::try_from(PER_PARTITION).unwrap(),
    )
    .await;
    let all: Vec<i32> = (0..PARTITIONS).collect();
    ours.until(Duration::from_secs(30), |o| {
        read_upto(&o.records, &all, 2 * PER_PARTITION)
    })
    .await;
    let firsts: BTreeMap<i32, i64> = theirs
        .iter()
        .map(|p| {
            (
                *p,
                ours.records
                    .get(p)
                    .and_then(|v| v.first().copied())
                    .unwrap_or(-1),
            )
        })
        .collect();
    println!("interop: librdkafka left; ours owned all partitions after {takeover:.1?}; first offsets on its partitions {firsts:?}");
    for (p, o) in &firsts {
        assert_eq!(
            *o, PER_PARTITION,
            "partition {p}: ours must continue at librdkafka's committed offset"
        );
    }

    // A new librdkafka member joins while ours leads the group: it decodes our assignment
    // (our leader computed it) and starts its partitions from our commits.
    ours.r.commit_now().await.expect("commit");
    let t3 = Instant::now();
    let mut second = Member::start(&py, &srv.host_port(), &topic, &group);
    let mut last = Vec::new();
    let split_again = loop {
        ours.until(Duration::from_secs(60), |o| {
            o.assigned != last && o.assigned.len() < 6
        })
        .await;
        last = ours.assigned.clone();
        let mine = last.clone();
        // Its assignment arrives right after ours (same generation).
        let got = tokio::time::timeout(
            Duration::from_secs(20),
            second.until(Duration::from_secs(20), |m, _| {
                complementary(&m.assigned, &mine).then_some(())
            }),
        )
        .await;
        if got.is_ok() {
            break t3.elapsed();
        }
    };
    println!(
        "interop: second librdkafka member joined while ours leads; split after {split_again:.1?}: ours {:?}, librdkafka {:?}",
        ours.assigned, second.assigned
    );
    assert!(
        ours.detail.contains("leader of 2 members"),
        "ours should have led this rebalance: {}",
        ours.detail
    );
    produce_each(
        &client,
        &topic,
        PARTITIONS,
        2 * usize::try_from(PER_PARTITION).unwrap(),
        usize::try_from(PER_PARTITION).unwrap(),
    )
    .await;
    let theirs2 = second.assigned.clone();
    second
        .until(Duration::from_secs(30), |m, _| {
            read_upto(&m.records, &theirs2, 3 * PER_PARTITION).then_some(())
        })
        .await;
    let firsts2: BTreeMap<i32, i64> = theirs2
        .iter()
        .map(|p| {
            (
                *p,
                second
                    .records
                    .get(p)
                    .and_then(|v| v.first().copied())
                    .unwrap_or(-1),
            )
        })
        .collect();
    println!("interop: the second librdkafka member's first offsets {firsts2:?}");
    for (p, o) in &firsts2 {
        assert_eq!(
            *o,
            2 * PER_PARTITION,
            "partition {p}: librdkafka must start at our committed offset"
        );
    }
    second.send("stop").await;
    second
        .until(Duration::from_secs(30), |_, v| v.get("closed").map(|_| ()))
        .await;
    let report = ours.r.close().await;
    assert!(!report.timed_out);
}

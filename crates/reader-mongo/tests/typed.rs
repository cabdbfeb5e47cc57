//! Typed reading and poison handling against the shared mongod replica set
//! (`cargo xtask servers up`): every valid document decoded into the struct, every invalid
//! one in `<collection>_dlq` with its reason, nothing lost, nothing stalled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::{reader, unique, until_ready, with_params, writer};
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, Bson, Document};
use reader_core::{CancellationToken, MemoryCheckpointStore};
use reader_mongo::FullDocument;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Order {
    #[serde(rename = "_id")]
    id: i64,
    amount: f64,
}

async fn mixed(payload: &str) {
    const N: i64 = 200;
    let base = testkit::shared::mongo_url();
    let db = "unireader_test";
    let coll = unique("typed");
    let url = with_params(
        &base,
        &format!("database={db}&collection={coll}&payload={payload}"),
    );
    let w = writer(&base).await;
    let r = reader(
        &url,
        &unique("typed_src"),
        Arc::new(MemoryCheckpointStore::new()),
        |_| {},
    );
    let t0 = std::time::Instant::now();
    let mut s = r
        .read(CancellationToken::new())
        .typed_with::<Order, _>(FullDocument);
    until_ready(&r).await;
    let mut invalid = BTreeSet::new();
    let docs: Vec<Document> = (1..=N)
        .map(|i| match i % 10 {
            3 => {
                invalid.insert(i);
                doc! { "_id": i, "amt": 1.0 } // renamed field
            }
            7 => {
                invalid.insert(i);
                doc! { "_id": i, "amount": "lots" } // wrong type
            }
            _ => doc! { "_id": i, "amount": i as f64 / 2.0 },
        })
        .collect();
    w.database(db)
        .collection::<Document>(&coll)
        .insert_many(docs)
        .await
        .unwrap();
    let mut ok = BTreeSet::new();
    let mut bad = BTreeMap::new();
    while (ok.len() + bad.len()) < N as usize {
        let d = tokio::time::timeout(Duration::from_secs(30), s.next())
            .await
            .expect("the stream never stalls")
            .unwrap()
            .unwrap();
        let id: i64 = serde_json::from_slice(d.message().key.as_ref().unwrap()).unwrap();
        match d.value() {
            Ok(o) => {
                assert_eq!(o.id, id);
                assert!((o.amount - id as f64 / 2.0).abs() < 1e-9);
                assert!(ok.insert(id), "duplicate {id}");
                d.ack();
            }
            Err(e) => {
                assert_eq!(e.position(), d.position());
                let text = e.to_string();
                assert!(
                    text.contains(&d.position().to_string()),
                    "names the position: {text}"
                );
                if id % 10 == 3 {
                    assert!(
                        text.contains("missing field `amount`"),
                        "names the field: {text}"
                    );
                }
                assert!(bad.insert(id, text).is_none(), "duplicate {id}");
                d.dead_letter(e).await.unwrap();
            }
        }
    }
    let elapsed = t0.elapsed();
    let report = r.close().await;
    assert_eq!(report.unacked, 0);
    let expected_ok: BTreeSet<i64> = (1..=N).filter(|i| !invalid.contains(i)).collect();
    assert_eq!(ok, expected_ok, "every valid document decoded");
    assert_eq!(bad.keys().copied().collect::<BTreeSet<_>>(), invalid);
    let dlq: Vec<Document> = w
        .database(db)
        .collection::<Document>(&format!("{coll}_dlq"))
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut in_dlq = BTreeSet::new();
    for d in &dlq {
        let ev = d.get_document("event").unwrap();
        assert_eq!(ev.get_str("operationType").unwrap(), "insert");
        let id = match ev.get_document("fullDocument").unwrap().get("_id") {
            Some(Bson::Int64(i)) => *i,
            Some(Bson::Int32(i)) => i64::from(*i),
            other => panic!("{other:?}"),
        };
        assert_eq!(d.get_str("error").unwrap(), bad[&id], "the reason is kept");
        assert_eq!(d.get_str("ns").unwrap(), format!("{db}.{coll}"));
        assert!(in_dlq.insert(id), "dead-lettered once: {id}");
    }
    assert_eq!(in_dlq, invalid, "every invalid document is in the DLQ");
    eprintln!(
        "mongo typed ({payload}): {N} events, {} decoded, {} dead-lettered, 0 lost, in {elapsed:?}",
        ok.len(),
        in_dlq.len()
    );
    w.database(db)
        .collection::<Document>(&coll)
        .drop()
        .await
        .ok();
    w.database(db)
        .collection::<Document>(&format!("{coll}_dlq"))
        .drop()
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_documents_from_bson_events_decode_or_dead_letter() {
    mixed("bson").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_documents_from_json_events_decode_or_dead_letter() {
    mixed("json").await;
}

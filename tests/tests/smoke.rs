//! Smoke tests proving each shared server is real, with the raw drivers (no unireader code):
//! a Redis stream round trip, a Kafka topic with 3 partitions produced to and fetched, and a
//! MongoDB change stream that sees an insert and resumes from its token after `kill -9`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::time::Duration;

use fred::prelude::*;
use futures::StreamExt;
use mongodb::bson::doc;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record;
use testkit::{shared, MongoOpts, Server};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), fastrand::u64(..))
}

#[tokio::test]
async fn redis_stream_xadd_xreadgroup_round_trip() {
    let url = shared::redis_url();
    let client = Builder::from_config(Config::from_url(&url).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    let key = unique("smoke");
    let id: String = client
        .xadd(&key, false, None, "*", vec![("payload", "hello")])
        .await
        .unwrap();
    let _: () = client.xgroup_create(&key, "g", "0", true).await.unwrap();
    let reply: Value = client
        .xreadgroup("g", "c", Some(10), None, false, &key, ">")
        .await
        .unwrap();
    let text = format!("{reply:?}");
    assert!(text.contains(&id) && text.contains("hello"), "{text}");
    let acked: i64 = client.xack(&key, "g", &id).await.unwrap();
    assert_eq!(acked, 1);
    let _: i64 = client.del(&key).await.unwrap();
    client.quit().await.unwrap();
}

#[tokio::test]
async fn kafka_topic_with_three_partitions_produce_and_fetch() {
    let addr = shared::kafka_addr();
    let client = ClientBuilder::new(vec![addr]).build().await.unwrap();
    let topic = unique("smoke");
    client
        .controller_client()
        .unwrap()
        .create_topic(&topic, 3, 1, 5_000)
        .await
        .unwrap();
    let mut fetched = BTreeMap::new();
    for partition in 0..3 {
        let pc = client
            .partition_client(&topic, partition, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let record = Record {
            key: Some(format!("k{partition}").into_bytes()),
            value: Some(format!("v{partition}").into_bytes()),
            headers: BTreeMap::new(),
            timestamp: rskafka::chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
        };
        let offsets = pc
            .produce(vec![record], Compression::NoCompression)
            .await
            .unwrap();
        assert_eq!(offsets, vec![0]);
        let (records, high_watermark) = pc.fetch_records(0, 1..1_000_000, 1_000).await.unwrap();
        assert_eq!(high_watermark, 1);
        fetched.insert(partition, records[0].record.value.clone().unwrap());
    }
    assert_eq!(fetched[&0], b"v0");
    assert_eq!(fetched[&2], b"v2");
}

#[tokio::test]
async fn mongo_change_stream_sees_an_insert_and_resumes_after_kill_9() {
    // The shared replica set answers…
    let shared_client = mongodb::Client::with_uri_str(shared::mongo_url())
        .await
        .unwrap();
    let hello = shared_client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .unwrap();
    assert_eq!(hello.get_str("setName").unwrap(), "rs0");

    // …and a private one is killed and restarted under an open change stream.
    let mut server = Server::mongod(MongoOpts::default()).await.unwrap();
    let uri = format!("{}&serverSelectionTimeoutMS=20000", server.url());
    let coll = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database("smoke")
        .collection::<mongodb::bson::Document>("events");
    coll.insert_one(doc! { "_id": 0 }).await.unwrap();
    let mut stream = coll.watch().await.unwrap();
    coll.insert_one(doc! { "_id": 1 }).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.document_key.unwrap().get_i32("_id").unwrap(), 1);
    let token = stream.resume_token().unwrap();
    drop(stream);

    server.kill();
    server.restart().await.unwrap();

    let coll = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database("smoke")
        .collection::<mongodb::bson::Document>("events");
    coll.insert_one(doc! { "_id": 2 }).await.unwrap();
    let mut resumed = coll.watch().resume_after(token).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(20), resumed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        next.document_key.unwrap().get_i32("_id").unwrap(),
        2,
        "resumed right after _id 1"
    );
}

//! `cargo xtask demo`: the README's first command. Brings the servers up, writes sample
//! data into a Redis stream, a Kafka topic and a MongoDB collection, tails all three through
//! ONE merged reader, kills and restarts the Kafka broker mid-way (so the states Disconnected →
//! Reconnecting → Recovering → Ready go by), writes more, and checks nothing was lost.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mongodb::bson::doc;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use testkit::Kind;
use unireader::{CancellationToken, ConnState};

use crate::run::Fail;
use crate::servers;

const PER_SOURCE: usize = 2_000;

fn fail(what: &str) -> impl Fn(String) -> Fail + '_ {
    move |e| Fail::new(format!("demo: {what}: {e}"))
}

struct Writers {
    redis: fred::clients::Client,
    redis_key: String,
    kafka: rskafka::client::partition::PartitionClient,
    mongo: mongodb::Collection<mongodb::bson::Document>,
}

impl Writers {
    async fn write(&self, from: usize, to: usize) -> Result<(), Fail> {
        use fred::interfaces::StreamsInterface;
        for i in from..to {
            let _: String = self
                .redis
                .xadd(
                    &self.redis_key,
                    false,
                    None,
                    "*",
                    vec![("payload", format!("{{\"order\":{i}}}"))],
                )
                .await
                .map_err(|e| fail("redis XADD")(e.to_string()))?;
        }
        let records = (from..to)
            .map(|i| Record {
                key: Some(i.to_string().into_bytes()),
                value: Some(format!("{{\"order\":{i}}}").into_bytes()),
                headers: BTreeMap::new(),
                timestamp: rskafka::chrono::DateTime::from_timestamp_millis(1_700_000_000_000)
                    .unwrap_or_default(),
            })
            .collect();
        self.kafka
            .produce(records, Compression::NoCompression)
            .await
            .map_err(|e| fail("kafka produce")(e.to_string()))?;
        let docs: Vec<_> = (from..to)
            .map(|i| doc! { "_id": i64::try_from(i).unwrap_or_default(), "order": i64::try_from(i).unwrap_or_default() })
            .collect();
        self.mongo
            .insert_many(docs)
            .await
            .map_err(|e| fail("mongo insert")(e.to_string()))?;
        Ok(())
    }
}

fn order_of(payload: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(payload).ok()?;
    let at = text.find("\"order\"")?;
    let rest = &text[at + 7..];
    let digits: String = rest
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Run the demo.
pub async fn demo() -> Result<(), Fail> {
    let t0 = Instant::now();
    eprintln!("demo: installing what is missing and starting redis-server, mongod (replica set) and tansu (Kafka) on loopback…");
    eprintln!("demo: (the first run on a machine builds tansu from crates.io: about 25 minutes; later runs start in seconds)");
    crate::install::ensure_all()?;
    servers::up(&servers::ALL).await?;
    let env: BTreeMap<_, _> = servers::env_vars().into_iter().collect();
    let run = format!("{}", std::process::id());
    let redis_url = env["UNIREADER_REDIS_URL"].clone();
    let kafka_addr = env["UNIREADER_KAFKA_ADDR"].clone();
    let mongo_url = env["UNIREADER_MONGO_URL"].clone();

    // Writers (the raw drivers, as an application's producers would be).
    let redis = fred::types::Builder::from_config(
        fred::types::config::Config::from_url(&redis_url)
            .map_err(|e| fail("redis url")(e.to_string()))?,
    )
    .build()
    .map_err(|e| fail("redis client")(e.to_string()))?;
    fred::interfaces::ClientLike::init(&redis)
        .await
        .map_err(|e| fail("redis connect")(e.to_string()))?;
    let topic = format!("demo-orders-{run}");
    let kclient = rskafka::client::ClientBuilder::new(vec![kafka_addr.clone()])
        .build()
        .await
        .map_err(|e| fail("kafka connect")(e.to_string()))?;
    kclient
        .controller_client()
        .map_err(|e| fail("kafka controller")(e.to_string()))?
        .create_topic(&topic, 1, 1, 5_000)
        .await
        .map_err(|e| fail("kafka create topic")(e.to_string()))?;
    let kafka = kclient
        .partition_client(&topic, 0, UnknownTopicHandling::Retry)
        .await
        .map_err(|e| fail("kafka partition")(e.to_string()))?;
    let db = format!("demo{run}");
    let mongo =
        mongodb::Client::with_uri_str(format!("{mongo_url}&serverSelectionTimeoutMS=30000"))
            .await
            .map_err(|e| fail("mongo connect")(e.to_string()))?
            .database(&db)
            .collection::<mongodb::bson::Document>("orders");
    let w = Writers {
        redis,
        redis_key: format!("demo:orders:{run}"),
        kafka,
        mongo,
    };
    let start_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_sub(2);
    eprintln!("demo: writing {} orders into each source…", PER_SOURCE / 2);
    w.write(0, PER_SOURCE / 2).await?;

    // ONE reader over all three.
    let metrics = reader_obs::install_prometheus().map_err(|e| Fail::new(e.to_string()))?;
    let urls = [
        (
            "redis",
            format!("{redis_url}?stream={}&group=demo&start=0", w.redis_key),
        ),
        (
            "kafka",
            format!("kafka://{kafka_addr}/{topic}?group=demo-{run}"),
        ),
        (
            "mongo",
            format!("{mongo_url}&database={db}&collection=orders&start=time:{start_secs}"),
        ),
    ];
    let mut readers = Vec::new();
    let health = reader_obs::HealthRegistry::new();
    for (name, url) in &urls {
        let r = unireader::from_url(url)
            .and_then(|b| b.name(*name).build())
            .map_err(|e| fail("build reader")(e.to_string()))?;
        health.register(r.health_handle());
        readers.push(r);
    }
    let token = CancellationToken::new();
    let server = reader_obs::serve(
        "127.0.0.1:0".parse().map_err(|_| Fail::new("addr"))?,
        Some(metrics),
        health,
        token.child_token(),
    )
    .await?;
    let endpoint = format!("http://{}", server.local_addr());
    eprintln!("demo: metrics on {endpoint}/metrics, health on {endpoint}/health/ready");
    let mut watchers = Vec::new();
    for r in &readers {
        let mut t = r.transitions();
        let name = r.source().to_owned();
        watchers.push(tokio::spawn(async move {
            let mut readies = 0_u32;
            while let Ok(tr) = t.recv().await {
                eprintln!("demo: [{name}] {} -> {}", tr.from, tr.to);
                if tr.to == ConnState::Ready {
                    readies += 1;
                }
                if tr.to.is_terminal() {
                    break;
                }
            }
            readies.saturating_sub(1) // the first Ready is the first connect
        }));
    }
    let mut all = unireader::merge(
        readers
            .iter()
            .map(|r| (r.source().to_owned(), r.read(token.child_token())))
            .collect::<Vec<_>>(),
    );
    let mut seen: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut deliveries: BTreeMap<String, u64> = BTreeMap::new();
    let total = PER_SOURCE * 3;
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(180);
    while seen.values().map(BTreeSet::len).sum::<usize>() < total {
        let next = tokio::time::timeout_at(deadline.into(), all.next()).await;
        let Ok(Some(t)) = next else {
            return Err(Fail::new(format!(
                "demo: timed out with {seen_n} of {total} orders read",
                seen_n = seen.values().map(BTreeSet::len).sum::<usize>()
            )));
        };
        let d = t.item.map_err(|e| fail("read")(e.to_string()))?;
        if let Some(o) = order_of(d.payload()) {
            seen.entry(t.source.to_string()).or_default().insert(o);
        }
        *deliveries.entry(t.source.to_string()).or_default() += 1;
        d.ack();
        let done: usize = seen.values().map(BTreeSet::len).sum();
        if !killed && done >= total / 4 {
            killed = true;
            eprintln!("demo: --- kill -9 the Kafka broker, mid-stream ---");
            servers::kill_one(Kind::Kafka)?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            eprintln!("demo: --- restarting it on the same port and data ---");
            servers::restart_one(Kind::Kafka).await?;
            eprintln!(
                "demo: writing {} more orders into each source…",
                PER_SOURCE / 2
            );
            w.write(PER_SOURCE / 2, PER_SOURCE).await?;
        }
    }
    token.cancel();
    drop(all);
    let mut reports = Vec::new();
    for r in &readers {
        reports.push((r.source().to_owned(), r.close().await));
    }
    let mut reconnects = Vec::new();
    for wtch in watchers {
        reconnects.push(wtch.await.unwrap_or(0));
    }
    println!("\n| source | orders written | distinct read | deliveries | reconnects | lost |");
    println!("|---|---|---|---|---|---|");
    let mut lost_total = 0;
    for (i, (name, report)) in reports.iter().enumerate() {
        let distinct = seen.get(name).map_or(0, BTreeSet::len);
        let lost = PER_SOURCE - distinct;
        lost_total += lost;
        println!(
            "| {name} | {PER_SOURCE} | {distinct} | {} | {} | {lost} |",
            deliveries.get(name).copied().unwrap_or(0),
            reconnects.get(i).copied().unwrap_or(0),
        );
        let _ = report;
    }
    println!(
        "\ndemo: lost = {lost_total}; finished in {:.1} s; metrics were on {endpoint}/metrics",
        t0.elapsed().as_secs_f64()
    );
    server.shutdown().await;
    if lost_total == 0 {
        Ok(())
    } else {
        Err(Fail::new(format!("demo: {lost_total} orders lost")))
    }
}

//! Dead letters for Kafka: [`Delivery::dead_letter`](reader_core::Delivery::dead_letter)
//! produces the record to `<topic>.dlq`, partition 0 (the topic is created with one
//! partition and the broker's default replication factor when it does not exist yet).
//!
//! The dead letter keeps the original key, value and headers, and adds:
//!
//! | header | value |
//! | --- | --- |
//! | `dlq.topic`, `dlq.partition`, `dlq.offset` | where the record was |
//! | `dlq.error` | the reason given to `dead_letter` (e.g. the decode error) |
//! | `dlq.source` | the reader's name |
//! | `dlq.deliveries` | how many times it was delivered, when the source counted |

use std::collections::BTreeMap;

use reader_core::{ErrorKind, Message, Position, ReadError};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::Client;
use rskafka::record::Record;

use crate::classify::classify_rskafka;

/// The dead-letter topic of `topic`.
#[must_use]
pub(crate) fn dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Now, as the record timestamp.
fn now() -> rskafka::chrono::DateTime<rskafka::chrono::Utc> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    rskafka::chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The record of the dead letter of `message`.
fn record(message: &Message, topic: &str, partition: i32, offset: i64, reason: &str) -> Record {
    let mut headers: BTreeMap<String, Vec<u8>> = message
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.to_vec()))
        .collect();
    headers.insert("dlq.topic".into(), topic.as_bytes().to_vec());
    headers.insert("dlq.partition".into(), partition.to_string().into_bytes());
    headers.insert("dlq.offset".into(), offset.to_string().into_bytes());
    headers.insert("dlq.error".into(), reason.as_bytes().to_vec());
    headers.insert("dlq.source".into(), message.source.as_bytes().to_vec());
    if let Some(n) = message.deliveries {
        headers.insert("dlq.deliveries".into(), n.to_string().into_bytes());
    }
    Record {
        key: message.key.as_ref().map(|k| k.to_vec()),
        value: Some(message.payload.to_vec()),
        headers,
        timestamp: now(),
    }
}

/// Produce the dead letter of `message` (a record of `topic`) with `reason`.
pub(crate) async fn write(
    client: &Client,
    message: &Message,
    reason: &str,
) -> Result<(), ReadError> {
    let Position::Partition {
        topic,
        partition,
        offset,
    } = &message.position
    else {
        return Err(ReadError::permanent(
            ErrorKind::Config,
            format!(
                "kafka: cannot dead-letter a message at {} (not a record)",
                message.position
            ),
        ));
    };
    let dlq = dlq_topic(topic);
    let pc = match client
        .partition_client(dlq.as_str(), 0, UnknownTopicHandling::Error)
        .await
    {
        Ok(pc) => pc,
        Err(_) => {
            // Most likely missing: create it (another reader may race us: fine).
            let created = client
                .controller_client()
                .map_err(|e| classify_rskafka(&e, &format!("create topic {dlq}"), false))?
                .create_topic(dlq.as_str(), 1, -1, 5_000)
                .await;
            if let Err(e) = created {
                let text = e.to_string();
                if !text.contains("TopicAlreadyExists") {
                    return Err(classify_rskafka(&e, &format!("create topic {dlq}"), false));
                }
            }
            client
                .partition_client(dlq.as_str(), 0, UnknownTopicHandling::Retry)
                .await
                .map_err(|e| classify_rskafka(&e, &format!("dead letter to {dlq}"), false))?
        }
    };
    pc.produce(
        vec![record(message, topic, *partition, *offset, reason)],
        Compression::NoCompression,
    )
    .await
    .map_err(|e| classify_rskafka(&e, &format!("produce to {dlq}/0 (dead letter)"), false))?;
    Ok(())
}

//! # reader-kafka
//!
//! The Kafka backend of unireader: topic partitions read in a **consumer group** (offsets
//! committed to the group coordinator) or from **explicitly assigned partitions** (progress
//! in the reader's `CheckpointStore`).
//!
//! * Data plane: [rskafka](https://docs.rs/rskafka) — one `PartitionClient` per assigned
//!   partition, at most one fetch in flight per partition, its internal retries bounded
//!   (1 s) so the core's Reconnector is the one retry loop.
//! * Group membership: rskafka has none, so this crate speaks the classic group protocol
//!   itself on [`kafka-protocol`](https://docs.rs/kafka-protocol) message types over its
//!   own framed connection: FindCoordinator, JoinGroup (protocol type `consumer`, standard
//!   `ConsumerProtocolSubscription`), the `range`/`roundrobin` assignors with the standard
//!   `ConsumerProtocolAssignment` (Java and librdkafka members understand it), SyncGroup,
//!   Heartbeat, OffsetFetch, OffsetCommit, LeaveGroup. Every response is checked for a
//!   sound layout before it is decoded, so a broken broker cannot crash the reader.
//! * Positions hold the offset of the delivered record; the committed offset is the next one
//!   to read (acknowledged + 1), as in every Kafka client.
//! * A rebalance ends the session with a transient `rebalance` error after a short grace in
//!   which acknowledged offsets are still committed; the core reconnects and `recover()`
//!   rejoins (keeping the member id). Deliveries of the old session that were not committed
//!   are delivered again (at-least-once).
//! * A rejoin after a rebalance carries changed subscription metadata (a rejoin counter in
//!   `user_data`) and the leader checks the coordinator took its plan: any coordinator then
//!   starts a new generation. tansu 0.6.0 needs this — it expires a dead member without
//!   starting one, and the dead member's partitions would otherwise be read by nobody.
//! * A session starts each partition at the larger of the group's committed offset and the
//!   offset after what this reader acknowledged (its last commit may have died with the
//!   previous session), so a fault re-delivers only what was unacknowledged.
//! * [`SeekHandle`]: earliest / latest / offset / timestamp, per partition, while running.
//!   A timestamp answer is checked against the record it points at (tansu 0.6.0 answers
//!   offset 0 instead of "none" for a timestamp after the newest record).
//! * Gauge `unireader_kafka_lag_records` (per-partition labels with `lag_per_partition`).
//!
//! ```no_run
//! use std::time::Duration;
//! use futures::StreamExt;
//! use reader_kafka::KafkaConnector;
//! use reader_core::CancellationToken;
//!
//! # async fn demo(policy: std::sync::Arc<dyn reader_core::RetryPolicy>) -> Result<(), reader_core::ReadError> {
//! let connector = KafkaConnector::from_url(
//!     "kafka://127.0.0.1:9092/orders?group=billing&session_timeout_ms=6000&heartbeat_ms=1000",
//! )?;
//! let seek = connector.seek_handle();
//! let reader = connector.reader_builder().retry(policy).build()?;
//! let token = CancellationToken::new();
//! let mut deliveries = reader.read(token.child_token());
//! while let Some(d) = deliveries.next().await {
//!     let d = d?;
//!     println!("{} {:?}", d.position(), d.payload());
//!     d.ack();
//! #   break;
//! }
//! seek.seek("orders", 0, reader_kafka::StartAt::Earliest); // applied at the next fetch
//! let report = reader.close().await;
//! println!("committed: {:?}", report.committed);
//! # Ok(()) }
//! ```
//!
//! ## Typed records and dead letters
//! `typed::<T>()` decodes each value as JSON (or `typed_with` another codec); a record that
//! does not decode arrives as a `DecodeError` (raw bytes, `topic/partition@offset`, serde's
//! message) without ending the stream. `dead_letter` produces it to `<topic>.dlq` with the
//! original topic, partition, offset and the reason in `dlq.*` headers, then acknowledges it.
//! `delivery_count()` is counted by the reader (Kafka keeps no counter).
//!
//! ```no_run
//! # use futures::StreamExt;
//! # async fn demo(reader: reader_core::DataReader<reader_kafka::KafkaConnector>) -> Result<(), reader_core::ReadError> {
//! #[derive(serde::Deserialize)]
//! struct Order { id: u64, amount: f64 }
//! let mut orders = reader.read(reader_core::CancellationToken::new()).typed::<Order>();
//! while let Some(d) = orders.next().await {
//!     let d = d?;
//!     match d.value() {
//!         Ok(order) => { println!("{} {}", order.id, order.amount); d.ack(); }
//!         Err(e) => d.dead_letter(e).await?, // to orders.dlq, then acked
//!     }
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod apis;
mod assignor;
mod classify;
mod config;
mod connection;
mod connector;
mod dlq;
mod fetcher;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod group;
mod offsets;
mod seek;
mod shape;

pub use assignor::{
    assign, decode_assignment, decode_subscription, encode_assignment, encode_subscription,
    MemberSubscription, TopicPartitions,
};
pub use classify::{classify_code, classify_rskafka, error_name, unknown_topic};
pub use config::{AssignorKind, KafkaConfig, OffsetReset, SaslMechanism, SaslSettings, StartAt};
pub use connector::{KafkaConnector, KafkaReader};
pub use seek::SeekHandle;

//! # unireader
//!
//! One async abstraction for reading Redis Streams (consumer groups) and Pub/Sub, MongoDB
//! change streams and Kafka consumer groups — so an application writes its consume loop,
//! its retry policy and its shutdown once. Around every backend the same machinery (in
//! [`reader_core`]): a reconnect state machine (`Disconnected → Reconnecting → Recovering →
//! Ready`), classified errors, pluggable retry ([`Retry`]), bounded buffering with
//! backpressure, at-least-once acknowledgement with in-order background commits, health,
//! metrics and traces.
//!
//! ```no_run
//! use futures::StreamExt;
//! use unireader::CancellationToken;
//!
//! # async fn handle(_: &[u8]) -> Result<(), unireader::ReadError> { Ok(()) }
//! # async fn demo() -> Result<(), unireader::ReadError> {
//! let reader = unireader::from_url("kafka://127.0.0.1:9092/orders?group=billing")?.build()?;
//! let token = CancellationToken::new();
//! let mut deliveries = reader.read(token.child_token());
//! while let Some(d) = deliveries.next().await {
//!     let d = d?;              // only permanent errors (or an exhausted retry budget) arrive here
//!     handle(d.payload()).await?;
//!     d.ack();                 // at-least-once: committed in the background, in order
//! }
//! let report = reader.close().await; // what was committed, what was left unacked
//! println!("{report:?}");
//! # Ok(()) }
//! ```
//!
//! ## URLs
//!
//! | scheme | backend | grammar |
//! |---|---|---|
//! | `redis://`, `rediss://` | Redis Streams or Pub/Sub (feature `redis`) | `reader_redis` config docs |
//! | `mongodb://`, `mongodb+srv://` | MongoDB change streams (feature `mongo`) | [`mongo::MongoConfig::from_url`] |
//! | `kafka://`, `kafka+ssl://` | Kafka consumer groups (feature `kafka`) | `reader_kafka` config docs |
//!
//! A backend whose feature is off is not compiled at all: a Kafka-only application
//! depends on `unireader` with `default-features = false, features = ["kafka"]`.
//!
//! ## Typed messages and poison
//! `typed::<T>()` decodes each payload as JSON into your struct ([`Json`]; `typed_with` takes
//! [`MessagePack`], [`Utf8`], [`Raw`], `mongo::FullDocument` or your own [`Codec`]). A payload
//! that does not decode is neither dropped nor a stream-ending error: it arrives as a
//! [`TypedDelivery`] whose value is a [`DecodeError`] (raw bytes, position, source, serde's
//! message naming the field), and you decide: `ack` to skip, leave it to be delivered again,
//! or `dead_letter` it — to `<key>:dlq` (Redis), `<topic>.dlq` (Kafka) or
//! `<collection>_dlq` (MongoDB). `delivery_count()` works on every backend.
//!
//! ```no_run
//! # use futures::StreamExt;
//! # async fn demo() -> Result<(), unireader::ReadError> {
//! #[derive(serde::Deserialize)]
//! struct Order { id: u64, amount: f64 }
//! let reader = unireader::from_url("kafka://127.0.0.1:9092/orders?group=billing")?.build()?;
//! let mut orders = reader.read(unireader::CancellationToken::new()).typed::<Order>();
//! while let Some(d) = orders.next().await {
//!     let d = d?;
//!     match d.value() {
//!         Ok(order) => { println!("{} {}", order.id, order.amount); d.ack(); }
//!         Err(e) if d.delivery_count() < 3 => eprintln!("will retry: {e}"),
//!         Err(e) => d.dead_letter(e).await?, // then acknowledged
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! ## Retry
//! By default a reader keeps reconnecting while its source is away, for up to five minutes
//! per outage, with exponential backoff (100 ms doubling to 5 s, equal jitter): see
//! [`default_retry`]. Permanent errors (bad credentials, unknown topic, missing replica
//! set…) are never retried. Give your own with [`SourceBuilder::retry`].
#![forbid(unsafe_code)]

mod builder;
#[cfg(feature = "cli")]
pub mod cli;
mod merge;

pub use builder::{connector_from_url, default_retry, from_url, Source, SourceBuilder};
pub use merge::{merge, Tagged};

pub use reader_core::{
    AckMode, BoxConnector, CancellationToken, Checkpoint, CheckpointStore, Codec, CodecError,
    ConnState, DataReader, DecodeError, Delivery, ErrorClass, ErrorKind, EventKind,
    FileCheckpointStore, Health, Json, MemoryCheckpointStore, Message, MessagePack, Position, Raw,
    ReadError, ReadStream, ReaderConfig, ReaderEvent, ShutdownReport, TypedDelivery, TypedStream,
    Utf8,
};
pub use reader_retry::{Jitter, Retry};

/// The core contract (traits, state machine, machinery), for backend authors and tests.
pub use reader_core as core;

/// The Kafka backend.
#[cfg(feature = "kafka")]
pub use reader_kafka as kafka;
/// The MongoDB backend.
#[cfg(feature = "mongo")]
pub use reader_mongo as mongo;
/// Metrics export, the health endpoint and tracing set-up.
#[cfg(feature = "obs")]
pub use reader_obs as obs;
/// The Redis backend.
#[cfg(feature = "redis")]
pub use reader_redis as redis;

//! # reader-mongo
//!
//! MongoDB change streams for unireader, on the official `mongodb` driver: every event's
//! resume token is its [`Position`](reader_core::Position), so a reader that acknowledges
//! what it handled and saves checkpoints to a [`CheckpointStore`](reader_core::CheckpointStore)
//! (in memory, a file, or [`MongoCheckpointStore`]) resumes exactly after the last
//! acknowledged event — in a new session after a fault, or in a new process.
//!
//! * [`MongoConfig`] / [`MongoConnector::from_url`]: what to watch (a collection, a
//!   database, or the whole deployment), an aggregation pipeline, `fullDocument` options,
//!   batch size, max await time, where to start, and what to do when the position is older
//!   than the oplog ([`OnHistoryLost`]). URL grammar: [`MongoConfig::from_url`].
//! * [`MongoReader`]: one session. Payloads are the change events as relaxed Extended JSON
//!   (or raw BSON with `payload=bson`), keys the `documentKey._id` as JSON, headers
//!   `operationType` and `ns`.
//! * [`classify_mongo_error`]: driver errors → transient / permanent / unknown.
//!
//! ## Retries
//! The reader never reconnects by itself: the core's Reconnector does. The driver's retryable
//! reads and writes are switched off; what it still does is resume a change stream **once**
//! by itself after a resumable error (a network error, `CursorNotFound`, or an error labelled
//! `ResumableChangeStreamError`), as the change-streams spec demands. When that one resume
//! fails too, the error reaches the Reconnector, which opens a new session from the last
//! committed token. A cut TCP connection is therefore often healed inside the driver without
//! the reader noticing; a dead server is the Reconnector's. (That one resume waits for a
//! server at most `server_selection_timeout`: a wait, not a second retry loop.)
//!
//! The driver's own resume is not cancellation safe, so no fetch ever cuts it short: each
//! session's change stream is driven by a task of its own (aborted on close and drop) that
//! reads at most 512 events ahead, and a fetch only waits on that task's channel.
//!
//! Every network call is bounded: server selection and connecting by
//! [`MongoConfig::server_selection_timeout`] / [`MongoConfig::connect_timeout`], each command
//! by [`MongoConfig::op_timeout`], each fetch by the reader's `fetch_wait`.
//!
//! ## Checkpoint age
//! After each commit and each health ping the core sets
//! `unireader_mongo_checkpoint_age_seconds{source,backend}`: now minus the cluster time of
//! the last saved resume token. Alert on it well before it nears the oplog window; a quiet
//! stream keeps it low through the post-batch resume token.
//!
//! ## History loss
//! A token older than the oplog (`ChangeStreamHistoryLost`) is never retried in a loop: by
//! default it is a permanent error that says what happened and what to do; with
//! `on_history_lost=restart_now` or `restart_at:<secs>` the reader reports a `gap` event and
//! goes on from there.
//!
//! ## Invalidation
//! Dropping or renaming the watched collection (or dropping the watched database) ends the
//! stream cleanly: the events before it are delivered, then the reader reports an
//! `invalidated` event and its stream of deliveries ends without an error.
//!
//! ```no_run
//! use std::sync::Arc;
//! use futures::StreamExt;
//! use reader_core::{CancellationToken, DataReader, FileCheckpointStore};
//! use reader_mongo::MongoConnector;
//!
//! # #[derive(Debug)]
//! # struct Every100ms;
//! # impl reader_core::RetryPolicy for Every100ms {
//! #     fn schedule(&self) -> Box<dyn reader_core::RetrySchedule> { Box::new(Every100ms) }
//! # }
//! # impl reader_core::RetrySchedule for Every100ms {
//! #     fn next(&mut self, _: &reader_core::RetryContext<'_>) -> reader_core::RetryDecision {
//! #         reader_core::RetryDecision::RetryAfter(std::time::Duration::from_millis(100))
//! #     }
//! # }
//! # async fn demo() -> Result<(), reader_core::ReadError> {
//! let connector = MongoConnector::from_url(
//!     "mongodb://127.0.0.1:27017/shop?replicaSet=rs0&collection=orders&full_document=updateLookup",
//! )?;
//! let reader = DataReader::builder(connector)
//!     .retry(Arc::new(Every100ms)) // reader_retry::Retry::persistent(..) in real code
//!     .checkpoint_store(Arc::new(FileCheckpointStore::new("/var/lib/app/checkpoints")))
//!     .configure(|c| c.name = Some("orders-feed".into()))
//!     .build()?;
//! let token = CancellationToken::new();
//! let mut deliveries = reader.read(token.child_token());
//! while let Some(d) = deliveries.next().await {
//!     let d = d?;
//!     println!("{}", String::from_utf8_lossy(d.payload())); // {"operationType":"insert",…}
//!     d.ack();
//! }
//! reader.close().await;
//! # Ok(()) }
//! ```
//!
//! ## Typed documents and dead letters
//! [`FullDocument`] decodes each event's `fullDocument` into `T` (from BSON directly with
//! `payload=bson`, no JSON round trip); a document that does not fit arrives as a
//! `DecodeError` (the raw event, its resume token, serde's message naming the field) and the
//! stream goes on. `dead_letter` inserts the event and the reason into
//! `<collection>_dlq`, then acknowledges it. `delivery_count()` is counted by the reader.
//!
//! ```no_run
//! # use futures::StreamExt;
//! # async fn demo(reader: reader_core::DataReader<reader_mongo::MongoConnector>) -> Result<(), reader_core::ReadError> {
//! #[derive(serde::Deserialize)]
//! struct Order { #[serde(rename = "_id")] id: i64, amount: f64 }
//! let mut orders = reader
//!     .read(reader_core::CancellationToken::new())
//!     .typed_with::<Order, _>(reader_mongo::FullDocument);
//! while let Some(d) = orders.next().await {
//!     let d = d?;
//!     match d.value() {
//!         Ok(order) => { println!("{} {}", order.id, order.amount); d.ack(); }
//!         Err(e) if d.delivery_count() < 3 => eprintln!("{e}"), // left for re-delivery
//!         Err(e) => d.dead_letter(e).await?, // to orders_dlq, then acked
//!     }
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod classify;
mod config;
mod connector;
mod dlq;
mod event;
mod extjson;
mod reader;
mod redact;
mod store;
pub mod token;

pub use classify::{classify_mongo_error, is_history_lost, RESUMABLE_CHANGE_STREAM_ERROR};
pub use config::{
    MongoConfig, MongoCredentials, OnHistoryLost, PayloadFormat, StartAt, WatchTarget,
};
pub use connector::MongoConnector;
pub use dlq::FullDocument;
pub use reader::MongoReader;
pub use redact::{redact_url, Redactor};
pub use store::MongoCheckpointStore;

/// Re-exported so users can build pipelines and options without naming the driver.
pub use mongodb;

//! # reader-core
//!
//! The contract every unireader backend implements, and the machinery around it that exists
//! once for all of them: the reconnect state machine, the [`Reconnector`] (the only place
//! that retries), error classification, flakiness detection, at-least-once
//! acknowledgement tracking, bounded buffering with backpressure, checkpoint stores, health
//! and metrics.
//!
//! * A [`Connector`] opens a session from the last durable position.
//! * A [`Reader`] is one session: fetch, commit, ping, close. It never reconnects.
//! * The [`Reconnector`] runs `Disconnected → Reconnecting → Recovering → Ready` with a
//!   [`RetryPolicy`], and surfaces only permanent errors or an exhausted budget.
//! * A [`DataReader`] is what applications use: a stream of [`Delivery`]s to acknowledge.
//!
//! ```
//! use std::sync::Arc;
//! use futures::StreamExt;
//! use reader_core::testing::ScriptedConnector;
//! use reader_core::{DataReader, RetryContext, RetryDecision, RetryPolicy, RetrySchedule};
//! use tokio_util::sync::CancellationToken;
//!
//! // reader-retry has real policies; this one retries every 10 ms, 3 times.
//! #[derive(Debug)]
//! struct Every10ms;
//! impl RetryPolicy for Every10ms {
//!     fn schedule(&self) -> Box<dyn RetrySchedule> { Box::new(Every10ms) }
//! }
//! impl RetrySchedule for Every10ms {
//!     fn next(&mut self, ctx: &RetryContext<'_>) -> RetryDecision {
//!         if ctx.attempt <= 3 { RetryDecision::RetryAfter(std::time::Duration::from_millis(10)) }
//!         else { RetryDecision::Exhausted }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), reader_core::ReadError> {
//! let source = ScriptedConnector::new();
//! source.push_messages(3);
//! let reader = DataReader::builder(source.clone()).retry(Arc::new(Every10ms)).build()?;
//! let token = CancellationToken::new();
//! let mut deliveries = reader.read(token.child_token());
//! for _ in 0..3 {
//!     let d = deliveries.next().await.expect("open")?;
//!     println!("{}", String::from_utf8_lossy(d.payload()));
//!     d.ack(); // at-least-once: committed in the background, in order
//! }
//! let report = reader.close().await;
//! assert_eq!(report.unacked, 0);
//! assert_eq!(reader.live_tasks(), 0);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod ack;
mod checkpoint;
mod codec;
mod config;
mod connector;
mod error;
mod events;
mod flaky;
mod health;
mod message;
pub mod metrics;
mod position;
mod reader;
mod reconnector;
mod retry;
mod secret;
mod state;
mod stream;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "tls")]
pub mod tls;
mod tls_problem;
mod typed;
pub mod urltext;

pub use ack::CommitOrder;
pub use checkpoint::{CheckpointStore, FileCheckpointStore, MemoryCheckpointStore};
pub use codec::{Codec, CodecError, Json, MessagePack, Raw, Utf8};
pub use config::{AckMode, ReaderConfig};
pub use connector::{BoxConnector, BoxReader, Connector, Reader, SessionContext};
pub use error::{Classify, ErrorClass, ErrorKind, Exhausted, ReadError};
pub use events::{EventKind, EventSink, ReaderEvent};
pub use flaky::{FlakyConfig, FlakyDetector};
pub use health::{Health, HealthHandle, LastError};
pub use message::{Delivery, Message};
pub use position::{Checkpoint, Lane, Position, StreamId};
pub use reader::{DataReader, DataReaderBuilder, ShutdownReport};
pub use reconnector::Reconnector;
pub use retry::{RetryContext, RetryDecision, RetryPolicy, RetrySchedule};
pub use secret::Secret;
pub use state::{ConnState, IllegalTransition, StateMachine, Transition};
pub use stream::ReadStream;
pub use tls_problem::{tls_problem, TlsProblem};
pub use typed::{DecodeError, TypedDelivery, TypedStream};

/// Re-exported so users need not depend on tokio-util for the token.
pub use tokio_util::sync::CancellationToken;

//! # reader-redis
//!
//! Redis for unireader, on [`fred`] 10: **Streams consumer groups** (at-least-once) and
//! **Pub/Sub** (at-most-once), behind reader-core's [`Connector`](reader_core::Connector) /
//! [`Reader`](reader_core::Reader) contract. Which one a [`RedisConnector`] reads is decided
//! by its configuration: `stream=` in the URL makes a consumer-group reader,
//! `channel=`/`pattern=` a Pub/Sub one. URL grammar: [`config`] (also in the crate's
//! README).
//!
//! ## Streams (at-least-once)
//! * Each session runs `XGROUP CREATE … MKSTREAM` for every key (`BUSYGROUP` is fine), then
//!   re-delivers this consumer's own pending entries (`XREADGROUP … 0`, key by key) before
//!   reading new ones (`XREADGROUP … >` with `BLOCK`).
//! * Every message's [`Position`](reader_core::Position) is `Position::Stream { stream, id }`.
//!   Acknowledged entries are committed with batched `XACK`s (the reader's `close` flushes
//!   them); Redis tracks each entry on its own, so commits are
//!   [`CommitOrder::Individual`](reader_core::CommitOrder): an entry acknowledged out of
//!   order is committed at once, one left unacknowledged is delivered again after a
//!   reconnect or a restart.
//! * The payload is the value of the entry's **first field** and the key its name; the other
//!   fields are headers. Bytes pass through unchanged (`bytes::Bytes`, binary-safe).
//! * Every `claim_interval_ms`, entries pending for longer than `claim_idle_ms` in any
//!   consumer of the group (a dead one's, or a handler that never acknowledges) are taken
//!   over with `XAUTOCLAIM` and delivered again ([`Claimed`](reader_core::EventKind::Claimed)
//!   event). Entries deleted from the stream while pending are acknowledged away
//!   ([`PendingDropped`](reader_core::EventKind::PendingDropped)), never retried forever.
//! * An entry delivered more than `max_deliveries` times (default 10) is added to the
//!   dead-letter stream (`<key>:dlq` unless `dlq=` says otherwise) with fields
//!   `original_id`, `stream`, `group`, `consumer`, `reason`, `deliveries`, followed by its
//!   original fields, and then `XACK`ed ([`DeadLettered`](reader_core::EventKind::DeadLettered)).
//! * A `NOGROUP` while reading (the group or the key was deleted underneath) is healed
//!   once: the group is re-created from the last delivered entry and a
//!   [`GroupRecreated`](reader_core::EventKind::GroupRecreated) event is reported (counted in
//!   `unireader_events_total{kind="group_recreated"}`). Another `NOGROUP` within
//!   `group_heal_window_ms` is a permanent error: no hot loop of errors.
//! * `unireader_redis_pending_entries` (gauge) follows `XPENDING` every 5 s.
//!
//! ## Pub/Sub (at-most-once)
//! `SUBSCRIBE` / `PSUBSCRIBE` on every new session. Redis keeps nothing for a subscriber that
//! is away: **messages published while the reader is disconnected are lost**. Each session
//! after the first therefore reports a [`Gap`](reader_core::EventKind::Gap) event (and so
//! does a reader so slow that the driver's buffer of 8192 messages overflowed). Positions
//! are `Position::None`; acknowledging does nothing. The key of a message is its channel.
//!
//! ## One retry loop
//! fred is built without a `ReconnectPolicy`, so it never reconnects by itself, and with one
//! attempt per command: when a connection dies, the session fails with a classified error and
//! the core's [`Reconnector`](reader_core::Reconnector) decides, opening a fresh session (new
//! clients) when it retries. Every wait is bounded: connecting by `connect_timeout_ms`,
//! every command by `command_timeout_ms`, the blocking read by its `BLOCK` plus
//! `command_timeout_ms`. A Streams session uses two connections — one only for the blocking
//! `XREADGROUP`, one for `XACK`, `XAUTOCLAIM`, `XADD` to the dead-letter stream and `PING` —
//! so acknowledgements and health pings never queue behind a `BLOCK`.
//!
//! Errors are classified by [`classify_fred_error`]: connection loss, timeouts, `LOADING`,
//! `BUSY`, `CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`, `READONLY` are transient; `NOAUTH`,
//! `WRONGPASS`, `NOPERM`, `WRONGTYPE`, bad configuration and unknown commands are permanent.
//!
//! ```no_run
//! use std::time::Duration;
//! use futures::StreamExt;
//! use reader_core::CancellationToken;
//! use reader_redis::RedisConnector;
//! use reader_retry::Retry;
//!
//! # async fn demo() -> Result<(), reader_core::ReadError> {
//! let connector = RedisConnector::from_url(
//!     "redis://:secret@127.0.0.1:6379/0?stream=orders&group=billing&consumer=billing-1&max_deliveries=5",
//! )?;
//! let reader = connector
//!     .reader_builder()
//!     .retry(Retry::persistent(Duration::from_secs(300)).into_policy())
//!     .configure(|c| c.name = Some("orders".into()))
//!     .build()?;
//! let token = CancellationToken::new();
//! let mut deliveries = reader.read(token.child_token());
//! while let Some(d) = deliveries.next().await {
//!     let d = d?; // only permanent errors (or an exhausted retry budget) arrive here
//!     println!("{} {:?}", d.position(), d.payload());
//!     d.ack(); // XACKed in the background, batched
//! }
//! let report = reader.close().await; // flushes the acks
//! println!("left unacknowledged: {}", report.unacked);
//! # Ok(()) }
//! ```
//!
//! ## Typed entries and dead letters
//! `typed::<T>()` decodes each entry's first field value as JSON (or `typed_with` another
//! codec: `MessagePack`, `Utf8`, `Raw`, your own); an entry that does not decode arrives as a
//! `DecodeError` (raw bytes, `key@id`, serde's message naming the field) and the stream goes
//! on. `dead_letter` moves it to the same dead-letter stream `max_deliveries` uses
//! (`<key>:dlq`, with `original_id`, `stream`, `group`, `consumer`, `reason` and its fields)
//! and `XACK`s it. `delivery_count()` is Redis's own counter of the pending entry.
//!
//! ```no_run
//! # use futures::StreamExt;
//! # async fn demo(reader: reader_core::DataReader<reader_redis::RedisConnector>) -> Result<(), reader_core::ReadError> {
//! #[derive(serde::Deserialize)]
//! struct Order { id: u64, amount: f64 }
//! let mut orders = reader.read(reader_core::CancellationToken::new()).typed::<Order>();
//! while let Some(d) = orders.next().await {
//!     let d = d?;
//!     match d.value() {
//!         Ok(order) => { println!("{} {}", order.id, order.amount); d.ack(); }
//!         Err(e) => d.dead_letter(e).await?, // XADD orders:dlq, XACK
//!     }
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod classify;
mod client;
pub mod config;
mod connector;
mod entry;
mod pubsub;
mod streams;

pub use classify::{classify_fred_error, is_busygroup, is_nogroup, server_code};
pub use config::{
    redact_url, Mode, PubSubConfig, RedisConfig, RedisConfigBuilder, Secret, StartId, StreamsConfig,
};
pub use connector::{RedisConnector, RedisReader};
pub use pubsub::PubSubReader;
pub use streams::StreamsReader;

/// Re-exported so users can name the driver's types without depending on it.
pub use fred;

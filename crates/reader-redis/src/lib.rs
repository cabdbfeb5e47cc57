//! # reader-redis
//!
//! (docs below)
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

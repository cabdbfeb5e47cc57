//! # unireader-testkit
//!
//! Real servers for tests, the demo and the bench — `redis-server`, a `mongod` replica set
//! and the `tansu` Kafka-protocol broker — started on free loopback ports with their own
//! data directories, killable with `kill -9` and restartable on the same port and data;
//! plus a TCP [`FaultProxy`] that cuts, refuses, delays or black-holes connections.
//!
//! Where the binaries are: see [`paths`]. `cargo xtask servers up` installs them.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use testkit::{FaultProxy, RedisOpts, Server};
//! let mut redis = Server::redis(RedisOpts { aof: true, ..Default::default() }).await?;
//! let proxy = FaultProxy::start(redis.host_port()).await?;
//! // point a reader at proxy.addr(), then:
//! proxy.cut_all();
//! redis.kill();
//! redis.restart().await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![allow(clippy::missing_errors_doc, clippy::missing_panics_doc)]

pub mod paths;
mod proxy;
pub mod readers;
mod server;
pub mod shared;
mod tls;

pub use proxy::FaultProxy;
pub use server::{free_port, KafkaOpts, Kind, MongoOpts, RedisOpts, ScramUser, Server, ServerSpec};
pub use server::{MongoAccess, MongoTls, MongoUser};
pub use tls::{TestPki, TlsTerminator, SERVER_NAMES};

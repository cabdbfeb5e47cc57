//! # reader-obs
//!
//! What an operator sees of unireader readers:
//!
//! * [`install_prometheus`]: the `metrics` recorder (Prometheus text format) with help text
//!   for every metric name in [`reader_core::metrics`]. Install it **before** building
//!   readers.
//! * [`serve`]: one small HTTP server with `/metrics`, `/health` (JSON, every source),
//!   `/health/live` (200 while the process serves) and `/health/ready` (200 only when every
//!   registered reader is `Ready`, else 503 — the same JSON body).
//! * [`init_tracing`]: a `tracing` subscriber (`RUST_LOG`-style filter) on stderr; the core
//!   emits spans `fetch`, `commit`, `reconnect` and `recover` with `source`/`backend` fields.
//!   With feature `otlp`, `init_tracing_otlp` also exports them over OTLP/gRPC through
//!   `tracing-opentelemetry`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use reader_obs::{install_prometheus, serve, HealthRegistry};
//! use reader_core::CancellationToken;
//!
//! let metrics = install_prometheus()?;
//! let health = HealthRegistry::new();
//! # let reader: reader_core::DataReader<reader_core::BoxConnector> = todo!();
//! // build readers after the recorder, then:
//! health.register(reader.health_handle());
//! let token = CancellationToken::new();
//! let server = serve("127.0.0.1:9464".parse()?, Some(metrics), health, token.child_token()).await?;
//! println!("metrics on http://{}/metrics", server.local_addr());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod health;
mod http;
mod prometheus;
mod tracing_setup;

pub use health::{health_json, HealthRegistry};
pub use http::{serve, ObsServer};
pub use prometheus::{describe_metrics, install_prometheus, ObsError, PrometheusHandle};
pub use tracing_setup::init_tracing;
#[cfg(feature = "otlp")]
pub use tracing_setup::{init_tracing_otlp, OtlpGuard};

//! Logging and traces.

use tracing_subscriber::EnvFilter;

/// Log to stderr through `tracing`, filtered by `RUST_LOG` or, when it is unset, by
/// `default_filter` (e.g. `"info,fred=warn"`). Safe to call twice (the second does nothing).
pub fn init_tracing(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

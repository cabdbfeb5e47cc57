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

/// Flushes and shuts the OTLP exporter down when dropped (keep it alive in `main`).
#[cfg(feature = "otlp")]
pub struct OtlpGuard {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

#[cfg(feature = "otlp")]
impl std::fmt::Debug for OtlpGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtlpGuard")
    }
}

#[cfg(feature = "otlp")]
impl Drop for OtlpGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Log to stderr like [`init_tracing`] **and** export every span (the core's `fetch`,
/// `commit`, `reconnect`, `recover`, with `source`/`backend` fields) over OTLP/gRPC to
/// `endpoint` (e.g. `http://127.0.0.1:4317`), as service `service_name`. Feature `otlp`.
/// Call it inside a tokio runtime.
///
/// # Errors
/// When the exporter cannot be built or a global subscriber is already installed.
#[cfg(feature = "otlp")]
pub fn init_tracing_otlp(
    endpoint: &str,
    service_name: &str,
    default_filter: &str,
) -> Result<OtlpGuard, crate::ObsError> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| crate::ObsError(format!("OTLP exporter for {endpoint}: {e}")))?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer("unireader");
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init()
        .map_err(|e| crate::ObsError(format!("a tracing subscriber is already installed: {e}")))?;
    Ok(OtlpGuard { provider })
}

#[cfg(all(test, feature = "otlp"))]
mod tests {
    #[tokio::test]
    async fn otlp_setup_builds_and_shuts_down_without_a_collector() {
        let guard = super::init_tracing_otlp("http://127.0.0.1:9", "unireader-test", "info");
        let guard = guard.unwrap_or_else(|e| panic!("{e}"));
        tracing::info_span!("fetch", source = "s", backend = "test").in_scope(|| {});
        drop(guard); // flushing to a closed port fails quietly, never hangs
    }
}

//! The Prometheus recorder.

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::PrometheusBuilder;
pub use metrics_exporter_prometheus::PrometheusHandle;
use reader_core::metrics as m;

/// Setting up observability failed.
#[derive(Debug)]
pub struct ObsError(pub String);

impl std::fmt::Display for ObsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ObsError {}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the Prometheus recorder as the global `metrics` recorder (once per process; a
/// second call returns the same handle) and describe every unireader metric.
///
/// # Errors
/// When another `metrics` recorder was installed first.
pub fn install_prometheus() -> Result<PrometheusHandle, ObsError> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let buckets = [
        0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        30.0, 60.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets(&buckets)
        .map_err(|e| ObsError(format!("histogram buckets: {e}")))?
        .install_recorder()
        .map_err(|e| ObsError(format!("cannot install the Prometheus recorder: {e}")))?;
    describe_metrics();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Help text and units of every metric the core and the backends emit.
pub fn describe_metrics() {
    describe_counter!(m::MESSAGES_TOTAL, "Messages delivered to the consumer.");
    describe_histogram!(
        m::READ_LATENCY_SECONDS,
        Unit::Seconds,
        "Duration of one fetch from the source."
    );
    describe_counter!(m::RETRIES_TOTAL, "Retries scheduled by the Reconnector.");
    describe_histogram!(
        m::RECONNECT_DURATION_SECONDS,
        Unit::Seconds,
        "From leaving Ready to Ready again."
    );
    describe_counter!(m::ERRORS_TOTAL, "Errors seen, by class.");
    describe_gauge!(
        m::CONNECTION_STATE,
        "Connection state: 0 disconnected, 1 reconnecting, 2 recovering, 3 ready, 4 closed, 5 failed."
    );
    describe_counter!(m::STATE_TRANSITIONS_TOTAL, "Connection state transitions.");
    describe_histogram!(
        m::COMMIT_LATENCY_SECONDS,
        Unit::Seconds,
        "Duration of one commit of acknowledged positions."
    );
    describe_counter!(m::COMMITS_TOTAL, "Positions committed.");
    describe_gauge!(m::UNACKED, "Deliveries not acknowledged yet.");
    describe_counter!(
        m::EVENTS_TOTAL,
        "Reader events (gap, dead_lettered, rebalanced…), by kind."
    );
    describe_gauge!(
        m::REDIS_PENDING_ENTRIES,
        "Redis: entries pending in the consumer group."
    );
    describe_gauge!(
        m::KAFKA_LAG,
        "Kafka: high watermark minus the next offset to read."
    );
    describe_gauge!(
        m::MONGO_CHECKPOINT_AGE_SECONDS,
        Unit::Seconds,
        "MongoDB: now minus the cluster time of the last saved resume token."
    );
}

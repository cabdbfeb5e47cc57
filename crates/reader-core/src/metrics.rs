//! Metric names and the handles the core updates. Emitted through the `metrics` facade:
//! without an installed recorder every update is a no-op on a handle. Install the recorder
//! (for example `reader_obs::install_prometheus`) **before** building readers, since handles
//! are resolved once, when a reader is built.
//!
//! Labels are bounded by construction: `source` (a name the user gives), `backend`, and
//! `class` / `state` / `kind` from closed enums.

use metrics::{Counter, Gauge, Histogram};

use crate::error::ErrorClass;
use crate::events::EventKind;
use crate::state::ConnState;

/// Messages delivered to the consumer (counter).
pub const MESSAGES_TOTAL: &str = "unireader_messages_total";
/// Duration of one fetch from the source (histogram, seconds).
pub const READ_LATENCY_SECONDS: &str = "unireader_read_latency_seconds";
/// Retries scheduled by the Reconnector (counter).
pub const RETRIES_TOTAL: &str = "unireader_retries_total";
/// From leaving `Ready` to `Ready` again (histogram, seconds).
pub const RECONNECT_DURATION_SECONDS: &str = "unireader_reconnect_duration_seconds";
/// Errors seen, by class (counter; label `class`).
pub const ERRORS_TOTAL: &str = "unireader_errors_total";
/// Current state (gauge: 0 disconnected, 1 reconnecting, 2 recovering, 3 ready, 4 closed, 5 failed).
pub const CONNECTION_STATE: &str = "unireader_connection_state";
/// State transitions (counter; labels `from`, `to`).
pub const STATE_TRANSITIONS_TOTAL: &str = "unireader_state_transitions_total";
/// Duration of one commit of acknowledged positions (histogram, seconds).
pub const COMMIT_LATENCY_SECONDS: &str = "unireader_commit_latency_seconds";
/// Positions committed (counter).
pub const COMMITS_TOTAL: &str = "unireader_commits_total";
/// Deliveries not acknowledged yet (gauge).
pub const UNACKED: &str = "unireader_unacked_messages";
/// Events by kind (counter; label `kind`).
pub const EVENTS_TOTAL: &str = "unireader_events_total";
/// Redis: entries pending in the group for this consumer group (gauge).
pub const REDIS_PENDING_ENTRIES: &str = "unireader_redis_pending_entries";
/// Kafka: high watermark minus the next offset to read, summed over assigned partitions
/// (gauge; `topic`/`partition` labels only when opted in).
pub const KAFKA_LAG: &str = "unireader_kafka_lag_records";
/// MongoDB: now minus the cluster time of the last saved resume token (gauge, seconds).
pub const MONGO_CHECKPOINT_AGE_SECONDS: &str = "unireader_mongo_checkpoint_age_seconds";

/// Every metric name above, for exporters and dashboards to check against.
pub const ALL: &[&str] = &[
    MESSAGES_TOTAL,
    READ_LATENCY_SECONDS,
    RETRIES_TOTAL,
    RECONNECT_DURATION_SECONDS,
    ERRORS_TOTAL,
    CONNECTION_STATE,
    STATE_TRANSITIONS_TOTAL,
    COMMIT_LATENCY_SECONDS,
    COMMITS_TOTAL,
    UNACKED,
    EVENTS_TOTAL,
    REDIS_PENDING_ENTRIES,
    KAFKA_LAG,
    MONGO_CHECKPOINT_AGE_SECONDS,
];

/// The `source` and `backend` labels of a reader, for backends' own gauges.
#[must_use]
pub fn labels(source: &str, backend: &'static str) -> [(&'static str, String); 2] {
    [
        ("source", source.to_owned()),
        ("backend", backend.to_owned()),
    ]
}

/// Handles resolved once per reader.
#[derive(Clone)]
pub(crate) struct ReaderMetrics {
    source: String,
    backend: &'static str,
    pub(crate) messages: Counter,
    pub(crate) read_latency: Histogram,
    pub(crate) retries: Counter,
    pub(crate) reconnect: Histogram,
    pub(crate) state: Gauge,
    pub(crate) commit_latency: Histogram,
    pub(crate) commits: Counter,
    pub(crate) unacked: Gauge,
}

impl ReaderMetrics {
    pub(crate) fn new(source: &str, backend: &'static str) -> Self {
        let l = labels(source, backend);
        Self {
            source: source.to_owned(),
            backend,
            messages: metrics::counter!(MESSAGES_TOTAL, &l),
            read_latency: metrics::histogram!(READ_LATENCY_SECONDS, &l),
            retries: metrics::counter!(RETRIES_TOTAL, &l),
            reconnect: metrics::histogram!(RECONNECT_DURATION_SECONDS, &l),
            state: metrics::gauge!(CONNECTION_STATE, &l),
            commit_latency: metrics::histogram!(COMMIT_LATENCY_SECONDS, &l),
            commits: metrics::counter!(COMMITS_TOTAL, &l),
            unacked: metrics::gauge!(UNACKED, &l),
        }
    }

    pub(crate) fn error(&self, class: ErrorClass) {
        metrics::counter!(ERRORS_TOTAL, "source" => self.source.clone(), "backend" => self.backend, "class" => class.as_str()).increment(1);
    }

    pub(crate) fn transition(&self, from: ConnState, to: ConnState) {
        self.state.set(to.as_gauge());
        metrics::counter!(STATE_TRANSITIONS_TOTAL, "source" => self.source.clone(), "backend" => self.backend, "from" => from.as_str(), "to" => to.as_str()).increment(1);
    }
}

pub(crate) fn event(source: &str, backend: &'static str, kind: EventKind) {
    metrics::counter!(EVENTS_TOTAL, "source" => source.to_owned(), "backend" => backend, "kind" => kind.as_str()).increment(1);
}

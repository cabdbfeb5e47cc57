//! What a health endpoint shows about one reader.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::ErrorClass;
use crate::state::ConnState;

/// The last error seen.
#[derive(Clone, Debug, Serialize)]
pub struct LastError {
    /// Its class.
    pub class: ErrorClass,
    /// Its message (no secrets).
    pub message: String,
    /// When.
    pub at: SystemTime,
}

/// A snapshot of a reader's health.
#[derive(Clone, Debug, Serialize)]
pub struct Health {
    /// The source's name.
    pub source: String,
    /// The backend.
    pub backend: &'static str,
    /// The connection state.
    pub state: ConnState,
    /// When a fetch last succeeded.
    pub last_success: Option<SystemTime>,
    /// The last error.
    pub last_error: Option<LastError>,
    /// The last ping's round trip.
    pub last_ping: Option<Duration>,
    /// Deliveries not acknowledged yet.
    pub unacked: usize,
    /// Sessions opened so far.
    pub sessions: u64,
}

impl Health {
    /// Whether the reader is reading.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.state == ConnState::Ready
    }
}

/// Something that can tell a reader's health (implemented by the reader's shared state).
pub(crate) trait HealthView: Send + Sync + 'static {
    fn snapshot(&self) -> Health;
}

/// A cloneable handle to one reader's health; see
/// [`DataReader::health_handle`](crate::DataReader::health_handle).
#[derive(Clone)]
pub struct HealthHandle(std::sync::Arc<dyn HealthView>);

impl HealthHandle {
    pub(crate) fn new(view: std::sync::Arc<dyn HealthView>) -> Self {
        Self(view)
    }

    /// The reader's health now.
    #[must_use]
    pub fn snapshot(&self) -> Health {
        self.0.snapshot()
    }
}

impl std::fmt::Debug for HealthHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = self.snapshot();
        f.debug_struct("HealthHandle")
            .field("source", &h.source)
            .field("state", &h.state)
            .finish()
    }
}

#[derive(Debug, Default)]
pub(crate) struct HealthInner {
    pub(crate) last_success: Option<SystemTime>,
    pub(crate) last_error: Option<LastError>,
    pub(crate) last_ping: Option<Duration>,
    pub(crate) sessions: u64,
}

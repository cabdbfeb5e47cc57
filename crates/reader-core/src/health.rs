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

#[derive(Debug, Default)]
pub(crate) struct HealthInner {
    pub(crate) last_success: Option<SystemTime>,
    pub(crate) last_error: Option<LastError>,
    pub(crate) last_ping: Option<Duration>,
    pub(crate) sessions: u64,
}

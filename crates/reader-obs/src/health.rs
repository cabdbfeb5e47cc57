//! The readers a health endpoint reports on.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use reader_core::{Health, HealthHandle};
use serde_json::{json, Value};

/// The readers to report on. Cloneable; register readers as they are built.
#[derive(Clone, Debug, Default)]
pub struct HealthRegistry {
    readers: Arc<Mutex<Vec<HealthHandle>>>,
}

impl HealthRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Report on this reader too.
    pub fn register(&self, handle: HealthHandle) {
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(handle);
    }

    /// Every registered reader's health now.
    #[must_use]
    pub fn snapshot(&self) -> Vec<Health> {
        let handles = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        handles.iter().map(HealthHandle::snapshot).collect()
    }

    /// Ready when at least one reader is registered and every one is `Ready`.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        let all = self.snapshot();
        !all.is_empty() && all.iter().all(Health::is_ready)
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The JSON body of `/health`: `{"ready": bool, "sources": [{source, backend, state,
/// last_success, last_error: {class, message, at}, last_ping_ms, unacked, sessions}]}`
/// (times as Unix seconds).
#[must_use]
pub fn health_json(all: &[Health]) -> Value {
    let sources: Vec<Value> = all
        .iter()
        .map(|h| {
            json!({
                "source": h.source,
                "backend": h.backend,
                "state": h.state.as_str(),
                "ready": h.is_ready(),
                "last_success": h.last_success.map(unix),
                "last_error": h.last_error.as_ref().map(|e| json!({
                    "class": e.class.as_str(),
                    "message": e.message,
                    "at": unix(e.at),
                })),
                "last_ping_ms": h.last_ping.map(|d| d.as_secs_f64() * 1000.0),
                "unacked": h.unacked,
                "sessions": h.sessions,
            })
        })
        .collect();
    json!({
        "ready": !all.is_empty() && all.iter().all(Health::is_ready),
        "sources": sources,
    })
}

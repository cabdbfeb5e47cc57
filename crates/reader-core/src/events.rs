//! Events a reader reports besides messages: gaps, healed groups, dead letters, rebalances.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::position::Position;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// Messages may have been missed (Pub/Sub reconnect, change stream restarted from now).
    Gap,
    /// A consumer group was missing and was created again.
    GroupRecreated,
    /// A message was moved to the dead-letter destination.
    DeadLettered,
    /// Pending entries of another consumer were claimed.
    Claimed,
    /// Pending entries that no longer exist in the source were acknowledged away.
    PendingDropped,
    /// The watched thing went away; the stream ends.
    Invalidated,
    /// Partitions were assigned or revoked.
    Rebalanced,
    /// A commit failed (the positions stay uncommitted and will be retried or re-delivered).
    CommitFailed,
    /// A transient error keeps alternating with success.
    Flaky,
}

impl EventKind {
    /// The lower-case name used in metric labels and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Gap => "gap",
            EventKind::GroupRecreated => "group_recreated",
            EventKind::DeadLettered => "dead_lettered",
            EventKind::Claimed => "claimed",
            EventKind::PendingDropped => "pending_dropped",
            EventKind::Invalidated => "invalidated",
            EventKind::Rebalanced => "rebalanced",
            EventKind::CommitFailed => "commit_failed",
            EventKind::Flaky => "flaky",
        }
    }
}

/// An event of one source.
#[derive(Clone, Debug, Serialize)]
pub struct ReaderEvent {
    /// The source's name.
    pub source: Arc<str>,
    /// What happened.
    pub kind: EventKind,
    /// The position concerned, if one.
    pub position: Option<Position>,
    /// A human description (never secrets).
    pub detail: String,
}

/// Where backends and the core send events; counted in `unireader_events_total{kind}`.
#[derive(Clone, Debug)]
pub struct EventSink {
    source: Arc<str>,
    backend: &'static str,
    tx: broadcast::Sender<ReaderEvent>,
}

impl EventSink {
    /// A sink for one source (the Reconnector makes one per reader; tools that open a
    /// session by hand, like `unireader check`, make their own).
    #[must_use]
    pub fn new(source: Arc<str>, backend: &'static str) -> Self {
        let (tx, _) = broadcast::channel(256);
        Self {
            source,
            backend,
            tx,
        }
    }

    /// Report an event.
    pub fn emit(&self, kind: EventKind, position: Option<Position>, detail: impl Into<String>) {
        let detail = detail.into();
        tracing::info!(source = %self.source, event = kind.as_str(), %detail, "reader event");
        crate::metrics::event(&self.source, self.backend, kind);
        // No subscriber is fine: events are also logged and counted.
        let _ = self.tx.send(ReaderEvent {
            source: self.source.clone(),
            kind,
            position,
            detail,
        });
    }

    /// Receive events from now on.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<ReaderEvent> {
        self.tx.subscribe()
    }
}

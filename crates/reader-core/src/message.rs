//! Messages and deliveries.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::ack::{AckState, AckToken};
use crate::position::Position;

/// One message read from a source. The payload is shared, never copied on the way through.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The payload bytes, exactly as the source stored them.
    pub payload: Bytes,
    /// The key (Kafka record key, Redis field name of a single-field entry, MongoDB `_id`).
    pub key: Option<Bytes>,
    /// Headers (Kafka headers, other Redis stream fields, change-event metadata).
    pub headers: Vec<(String, Bytes)>,
    /// Where the message sits in its source.
    pub position: Position,
    /// The name of the source that read it (set by the reader).
    pub source: Arc<str>,
    /// When the source says the message was written, when it says so.
    pub timestamp: Option<SystemTime>,
}

impl Message {
    /// A message with a payload and a position; the rest empty.
    #[must_use]
    pub fn new(payload: impl Into<Bytes>, position: Position) -> Self {
        Self {
            payload: payload.into(),
            key: None,
            headers: Vec::new(),
            position,
            source: Arc::from(""),
            timestamp: None,
        }
    }

    /// The first header of that name.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("source", &self.source)
            .field("position", &self.position)
            .field("payload_len", &self.payload.len())
            .field("key", &self.key)
            .field("headers", &self.headers.len())
            .field("timestamp", &self.timestamp)
            .finish()
    }
}

/// A message plus its acknowledgement handle.
///
/// Acknowledge with [`Delivery::ack`] once the message was handled: its position then
/// becomes durable (in order, batched, in the background). A delivery dropped without an ack
/// stays unacknowledged and is delivered again after a reconnect or a restart
/// (at-least-once).
pub struct Delivery {
    message: Message,
    ack: AckHandle,
}

pub(crate) struct AckHandle {
    state: Option<Arc<AckState>>,
    token: Option<AckToken>,
    done: AtomicBool,
}

impl Delivery {
    pub(crate) fn new(message: Message, state: Arc<AckState>, token: Option<AckToken>) -> Self {
        Self {
            message,
            ack: AckHandle {
                state: Some(state),
                token,
                done: AtomicBool::new(false),
            },
        }
    }

    /// A delivery whose ack does nothing (for tests and adapters).
    #[must_use]
    pub fn detached(message: Message) -> Self {
        Self {
            message,
            ack: AckHandle {
                state: None,
                token: None,
                done: AtomicBool::new(false),
            },
        }
    }

    /// The payload.
    #[must_use]
    pub fn payload(&self) -> &Bytes {
        &self.message.payload
    }

    /// The whole message.
    #[must_use]
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The position.
    #[must_use]
    pub fn position(&self) -> &Position {
        &self.message.position
    }

    /// Acknowledge: the message was handled and its position may become durable.
    /// Acknowledging twice is harmless.
    pub fn ack(&self) {
        if self.ack.done.swap(true, Ordering::AcqRel) {
            return;
        }
        if let (Some(state), Some(token)) = (&self.ack.state, self.ack.token) {
            state.ack(token);
        }
    }

    /// Whether [`Delivery::ack`] was called.
    #[must_use]
    pub fn is_acked(&self) -> bool {
        self.ack.done.load(Ordering::Acquire)
    }

    /// Take the message out. The acknowledgement handle is dropped: use this only once
    /// acknowledged, or when the message should be delivered again later.
    #[must_use]
    pub fn into_message(self) -> Message {
        self.message
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("acked", &self.is_acked())
            .finish()
    }
}

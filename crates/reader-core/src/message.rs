//! Messages and deliveries.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::ack::{AckState, AckToken};
use crate::error::{ErrorKind, ReadError};
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
    /// How many times the source itself says it delivered this message, counting this one
    /// (Redis: the pending entry's delivery counter), when it keeps such a count. `None`:
    /// the reader counts deliveries itself (see [`Delivery::delivery_count`]).
    pub deliveries: Option<u32>,
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
            deliveries: None,
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
            .field("deliveries", &self.deliveries)
            .finish()
    }
}

/// Where a [`Delivery`] can be dead-lettered: the reader's current session.
#[async_trait::async_trait]
pub(crate) trait DeadLetterSink: Send + Sync {
    async fn dead_letter(&self, message: &Message, reason: &str) -> Result<(), ReadError>;
}

/// A message plus its acknowledgement handle.
///
/// Acknowledge with [`Delivery::ack`] once the message was handled: its position then
/// becomes durable (in order, batched, in the background). A delivery dropped without an ack
/// stays unacknowledged and is delivered again after a reconnect or a restart
/// (at-least-once). A message that can never be handled (a poison message) goes to the
/// source's dead-letter destination with [`Delivery::dead_letter`], which then acknowledges
/// it.
pub struct Delivery {
    message: Message,
    ack: AckHandle,
    attempt: u32,
    dlq: Option<Arc<dyn DeadLetterSink>>,
}

pub(crate) struct AckHandle {
    state: Option<Arc<AckState>>,
    token: Option<AckToken>,
    done: AtomicBool,
}

impl Delivery {
    pub(crate) fn new(
        message: Message,
        state: Arc<AckState>,
        token: Option<AckToken>,
        attempt: u32,
        dlq: Arc<dyn DeadLetterSink>,
    ) -> Self {
        Self {
            message,
            ack: AckHandle {
                state: Some(state),
                token,
                done: AtomicBool::new(false),
            },
            attempt,
            dlq: Some(dlq),
        }
    }

    /// A delivery whose ack does nothing (for tests and adapters). It cannot be
    /// dead-lettered and counts as a first delivery (unless the message says otherwise).
    #[must_use]
    pub fn detached(message: Message) -> Self {
        let attempt = message.deliveries.unwrap_or(1);
        Self {
            message,
            ack: AckHandle {
                state: None,
                token: None,
                done: AtomicBool::new(false),
            },
            attempt,
            dlq: None,
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

    /// How many times this message was delivered, counting this delivery (1 the first
    /// time). The source's own counter where it keeps one ([`Message::deliveries`]: Redis);
    /// otherwise (Kafka, MongoDB) the reader counts the deliveries of each position that was
    /// not acknowledged, across sessions, for as long as the reader lives. Use it for
    /// "after N failed attempts, dead-letter" on every backend alike.
    #[must_use]
    pub fn delivery_count(&self) -> u32 {
        self.attempt
    }

    /// Acknowledge: the message was handled and its position may become durable.
    /// Acknowledging twice is harmless.
    pub fn ack(&self) {
        if self.ack.done.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(state) = &self.ack.state {
            state.forget_attempts(&self.message.position);
            if let Some(token) = self.ack.token {
                state.ack(token);
            }
        }
    }

    /// Whether [`Delivery::ack`] was called.
    #[must_use]
    pub fn is_acked(&self) -> bool {
        self.ack.done.load(Ordering::Acquire)
    }

    /// Move the message to the source's dead-letter destination with `reason`, then
    /// acknowledge it. Where it goes depends on the backend: Redis `XADD`s it to the
    /// dead-letter stream (`<key>:dlq`), Kafka produces it to `<topic>.dlq` (original
    /// topic, partition, offset and the reason in headers), MongoDB inserts the change
    /// event into `<collection>_dlq`. The write goes through the reader's current session.
    ///
    /// # Errors
    /// When the backend has no dead-letter destination (Redis Pub/Sub, a detached
    /// delivery; a permanent `Config` error), when there is no session right now, or when
    /// the write failed (a transient error: the message stays unacknowledged, try again or
    /// leave it to be delivered again).
    pub async fn dead_letter(&self, reason: impl std::fmt::Display) -> Result<(), ReadError> {
        let Some(sink) = &self.dlq else {
            return Err(ReadError::permanent(
                ErrorKind::Config,
                "a detached delivery has no dead-letter destination",
            ));
        };
        // The dead letter records how often it was delivered, whoever counted.
        if self.message.deliveries.is_some() {
            sink.dead_letter(&self.message, &reason.to_string()).await?;
        } else {
            let mut m = self.message.clone();
            m.deliveries = Some(self.attempt);
            sink.dead_letter(&m, &reason.to_string()).await?;
        }
        self.ack();
        Ok(())
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
            .field("delivery_count", &self.attempt)
            .finish()
    }
}

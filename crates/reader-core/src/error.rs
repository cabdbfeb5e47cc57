//! Errors, classified once by the backend that understands them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How an error should be treated by the [`Reconnector`](crate::Reconnector).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Likely to go away by itself (network, timeout, failover, broker loading): retry.
    Transient,
    /// Will not go away by retrying (bad credentials, missing group, unknown topic, invalid
    /// resume token): surface at once, never retry.
    Permanent,
    /// A transient error that keeps alternating with success inside the flakiness window
    /// (see [`FlakyDetector`](crate::FlakyDetector)). Retried, but the retry budget is not
    /// renewed by the short successes in between.
    Flaky,
    /// The backend could not tell. Not retried by the default policy.
    Unknown,
}

impl ErrorClass {
    /// The lower-case name used in metric labels and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Flaky => "flaky",
            ErrorClass::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong, independent of the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad configuration or URL.
    Config,
    /// The connection could not be opened or was lost.
    Connection,
    /// An operation took longer than allowed.
    Timeout,
    /// Authentication or authorization failed.
    Auth,
    /// TLS handshake or certificate verification failed.
    Tls,
    /// A named thing (group, topic, stream, collection) does not exist.
    NotFound,
    /// The server answered something that breaks the protocol or our expectations.
    Protocol,
    /// The server refused the operation (busy, loading, rebalancing, not leader…).
    Server,
    /// The saved position can no longer be resumed from (oplog rolled over, offset out of range).
    PositionLost,
    /// The watched thing went away for good (collection dropped: change stream invalidated).
    Invalidated,
    /// A checkpoint store failed.
    Checkpoint,
    /// A payload could not be decoded.
    Decode,
    /// The reader was closed or cancelled.
    Closed,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// The lower-case name used in logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Connection => "connection",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Auth => "auth",
            ErrorKind::Tls => "tls",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Server => "server",
            ErrorKind::PositionLost => "position_lost",
            ErrorKind::Invalidated => "invalidated",
            ErrorKind::Checkpoint => "checkpoint",
            ErrorKind::Decode => "decode",
            ErrorKind::Closed => "closed",
            ErrorKind::Other => "other",
        }
    }
}

/// Why the retry loop stopped, attached to an error surfaced after retries ran out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exhausted {
    /// How many attempts were made (the first try included).
    pub attempts: u32,
    /// Time from the first failure to giving up.
    pub elapsed: Duration,
}

/// An error of a reader, with its [`ErrorClass`] decided by the backend.
///
/// The message never contains secrets: backends redact URLs before building one.
#[derive(Clone)]
pub struct ReadError {
    class: ErrorClass,
    kind: ErrorKind,
    message: String,
    source_name: Option<Arc<str>>,
    retry_after: Option<Duration>,
    exhausted: Option<Exhausted>,
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl ReadError {
    /// A new error of the given class and kind.
    pub fn new(class: ErrorClass, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            class,
            kind,
            message: message.into(),
            source_name: None,
            retry_after: None,
            exhausted: None,
            cause: None,
        }
    }

    /// A transient error.
    pub fn transient(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Transient, kind, message)
    }

    /// A permanent error.
    pub fn permanent(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Permanent, kind, message)
    }

    /// A configuration error (always permanent): `what` names the offending URL part or option.
    pub fn config(message: impl Into<String>) -> Self {
        Self::permanent(ErrorKind::Config, message)
    }

    /// The reader was closed.
    #[must_use]
    pub fn closed() -> Self {
        Self::permanent(ErrorKind::Closed, "the reader was closed")
    }

    /// Attach the underlying error (it must not carry secrets in its `Display`).
    #[must_use]
    pub fn with_cause(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }

    /// A delay the server asked for; a policy may use it instead of its own.
    #[must_use]
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// Name the source (set by the reader; backends need not).
    #[must_use]
    pub fn with_source_name(mut self, name: Arc<str>) -> Self {
        self.source_name = Some(name);
        self
    }

    /// Change the class (the flakiness detector does this).
    #[must_use]
    pub fn reclassified(mut self, class: ErrorClass) -> Self {
        self.class = class;
        self
    }

    /// Mark as surfaced after the retry budget ran out. The class of the last cause is
    /// kept; [`ReadError::exhausted`] says that retries ran out.
    #[must_use]
    pub fn with_exhausted(mut self, exhausted: Exhausted) -> Self {
        self.exhausted = Some(exhausted);
        self
    }

    /// The class.
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// The kind.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human message (without the source name or the cause).
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The source's name, when known.
    #[must_use]
    pub fn source_name(&self) -> Option<&str> {
        self.source_name.as_deref()
    }

    /// The server's delay hint, if any.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Set when this error was surfaced because the retry budget ran out.
    #[must_use]
    pub fn exhausted(&self) -> Option<&Exhausted> {
        self.exhausted.as_ref()
    }

    /// Whether the error is permanent.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        self.class == ErrorClass::Permanent
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.source_name {
            write!(f, "[{name}] ")?;
        }
        write!(
            f,
            "{} {} error: {}",
            self.class,
            self.kind.as_str(),
            self.message
        )?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        if let Some(ex) = &self.exhausted {
            write!(
                f,
                " (gave up after {} attempts in {:.1?})",
                ex.attempts, ex.elapsed
            )?;
        }
        Ok(())
    }
}

impl fmt::Debug for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadError")
            .field("class", &self.class)
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source_name", &self.source_name)
            .field("retry_after", &self.retry_after)
            .field("exhausted", &self.exhausted)
            .field("cause", &self.cause.as_ref().map(ToString::to_string))
            .finish()
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_ref()
            .map(|c| c.as_ref() as &(dyn std::error::Error + 'static))
    }
}

/// Implemented by each backend for its driver's errors: the one place a driver error is
/// turned into an [`ErrorClass`].
pub trait Classify {
    /// The class of this error.
    fn classify(&self) -> ErrorClass;
}

impl Classify for ReadError {
    fn classify(&self) -> ErrorClass {
        self.class
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_source_class_kind_and_budget() {
        let e = ReadError::transient(ErrorKind::Connection, "connection refused")
            .with_source_name("orders".into())
            .with_exhausted(Exhausted {
                attempts: 6,
                elapsed: Duration::from_secs(3),
            });
        let s = e.to_string();
        assert!(s.starts_with("[orders] transient connection error"), "{s}");
        assert!(s.contains("gave up after 6 attempts"), "{s}");
        assert_eq!(e.classify(), ErrorClass::Transient);
    }
}

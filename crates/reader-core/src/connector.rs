//! The three-way split: a [`Connector`] opens sessions, a [`Reader`] is one session, and
//! the [`Reconnector`](crate::Reconnector) is the only thing that retries.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::ack::CommitOrder;
use crate::error::ReadError;
use crate::events::EventSink;
use crate::message::Message;
use crate::position::{Checkpoint, Position};

/// What a connector gets for each session it opens.
#[derive(Clone, Debug)]
pub struct SessionContext {
    /// The source's name (for logs and labels).
    pub source: Arc<str>,
    /// Where to report events (gaps, healed groups, dead letters…).
    pub events: EventSink,
    /// A number that grows with each session of this reader (1 for the first).
    pub session: u64,
}

/// Knows how to open a session on a source. Implemented once per backend.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The session type.
    type Reader: Reader;

    /// The backend's name, a metric label: `redis`, `mongo`, `kafka`…
    fn backend(&self) -> &'static str;

    /// How acknowledged positions are handed to [`Reader::commit`] (default: the contiguous
    /// prefix per lane).
    fn commit_order(&self) -> CommitOrder {
        CommitOrder::Contiguous
    }

    /// A description for logs, with secrets redacted (e.g. `redis://127.0.0.1:6379 stream orders`).
    fn describe(&self) -> String;

    /// Adjust the reader's defaults to this source (e.g. Redis: `fetch_max` follows `COUNT`;
    /// Kafka: the commit interval). Called by [`DataReader::builder`](crate::DataReader::builder)
    /// before the user's own settings, which therefore win.
    fn tune(&self, _config: &mut crate::config::ReaderConfig) {}

    /// Open a session. `from` is the last progress the reader knows of: its committed
    /// checkpoint (from its checkpoint store and its own commits), advanced by positions
    /// acknowledged but not yet committed — the application handled those, so starting
    /// after them is still at-least-once. Backends whose progress lives in the server
    /// (Redis pending entries, Kafka committed offsets) may ignore it, or use it as a floor.
    ///
    /// Must not retry: return a classified error and let the Reconnector decide.
    async fn connect(
        &self,
        ctx: &SessionContext,
        from: &Checkpoint,
    ) -> Result<Self::Reader, ReadError>;
}

/// One live session. Never reconnects by itself. All methods take `&self` so the reader
/// can commit and ping while a fetch is waiting.
#[async_trait]
pub trait Reader: Send + Sync + 'static {
    /// Re-subscribe from the last durable position (create the group and read pending
    /// entries; join the group and seek; open the change stream). Runs while the state is
    /// `Recovering`.
    async fn recover(&self) -> Result<(), ReadError> {
        Ok(())
    }

    /// Up to `max` messages, waiting at most about `wait` when none is there.
    /// Returning an empty batch is fine.
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Message>, ReadError>;

    /// Make the given acknowledged positions durable. In [`CommitOrder::Contiguous`] mode
    /// they are the newest contiguous position per lane; in `Individual` mode every
    /// acknowledged position.
    async fn commit(&self, positions: &[Position]) -> Result<(), ReadError>;

    /// A position the source reached without delivering anything (MongoDB's post-batch
    /// resume token), asked after an empty fetch.
    fn idle_position(&self) -> Option<Position> {
        None
    }

    /// One round trip to the server; returns its duration.
    async fn ping(&self) -> Result<Duration, ReadError>;

    /// The server's version, when the protocol tells it (best effort, for `unireader
    /// check` and logs; `None` when unknown).
    async fn server_version(&self) -> Option<String> {
        None
    }

    /// Write `message` to this source's dead-letter destination with `reason` (what
    /// [`Delivery::dead_letter`](crate::Delivery::dead_letter) calls; the reader then
    /// acknowledges the message and reports [`EventKind::DeadLettered`](crate::EventKind)).
    /// Must not acknowledge or commit anything itself, except where the backend's own
    /// bookkeeping needs it (Redis `XACK`s the entry it moved).
    ///
    /// The default: a permanent `Config` error saying this backend has no dead-letter
    /// destination.
    async fn dead_letter(&self, message: &Message, reason: &str) -> Result<(), ReadError> {
        let _ = (message, reason);
        Err(ReadError::permanent(
            crate::error::ErrorKind::Config,
            "this source has no dead-letter destination",
        ))
    }

    /// Close the session (leave the group, close the cursor, drop connections).
    async fn close(&self);
}

/// A type-erased session.
pub type BoxReader = Box<dyn Reader>;

#[async_trait]
impl Reader for BoxReader {
    async fn recover(&self) -> Result<(), ReadError> {
        (**self).recover().await
    }
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Message>, ReadError> {
        (**self).fetch(max, wait).await
    }
    async fn commit(&self, positions: &[Position]) -> Result<(), ReadError> {
        (**self).commit(positions).await
    }
    fn idle_position(&self) -> Option<Position> {
        (**self).idle_position()
    }
    async fn ping(&self) -> Result<Duration, ReadError> {
        (**self).ping().await
    }
    async fn server_version(&self) -> Option<String> {
        (**self).server_version().await
    }
    async fn dead_letter(&self, message: &Message, reason: &str) -> Result<(), ReadError> {
        (**self).dead_letter(message, reason).await
    }
    async fn close(&self) {
        (**self).close().await;
    }
}

#[async_trait]
trait DynConnector: Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    fn commit_order(&self) -> CommitOrder;
    fn describe(&self) -> String;
    fn tune(&self, config: &mut crate::config::ReaderConfig);
    async fn connect_boxed(
        &self,
        ctx: &SessionContext,
        from: &Checkpoint,
    ) -> Result<BoxReader, ReadError>;
}

#[async_trait]
impl<C: Connector> DynConnector for C {
    fn backend(&self) -> &'static str {
        Connector::backend(self)
    }
    fn commit_order(&self) -> CommitOrder {
        Connector::commit_order(self)
    }
    fn describe(&self) -> String {
        Connector::describe(self)
    }
    fn tune(&self, config: &mut crate::config::ReaderConfig) {
        Connector::tune(self, config);
    }
    async fn connect_boxed(
        &self,
        ctx: &SessionContext,
        from: &Checkpoint,
    ) -> Result<BoxReader, ReadError> {
        let r = self.connect(ctx, from).await?;
        Ok(Box::new(r))
    }
}

/// A type-erased connector, so readers of different backends have one type.
pub struct BoxConnector(Box<dyn DynConnector>);

impl BoxConnector {
    /// Erase the type of `connector`.
    pub fn new<C: Connector>(connector: C) -> Self {
        Self(Box::new(connector))
    }
}

impl std::fmt::Debug for BoxConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BoxConnector")
            .field(&self.0.describe())
            .finish()
    }
}

#[async_trait]
impl Connector for BoxConnector {
    type Reader = BoxReader;
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
    fn commit_order(&self) -> CommitOrder {
        self.0.commit_order()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn tune(&self, config: &mut crate::config::ReaderConfig) {
        self.0.tune(config);
    }
    async fn connect(
        &self,
        ctx: &SessionContext,
        from: &Checkpoint,
    ) -> Result<BoxReader, ReadError> {
        self.0.connect_boxed(ctx, from).await
    }
}

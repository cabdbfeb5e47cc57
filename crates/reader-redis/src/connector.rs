//! [`RedisConnector`]: opens Streams or Pub/Sub sessions, decided by the configuration.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reader_core::{
    Checkpoint, CommitOrder, Connector, DataReader, DataReaderBuilder, Message, Position,
    ReadError, Reader, SessionContext,
};

use crate::config::{Mode, PubSubConfig, RedisConfig, StreamsConfig};
use crate::pubsub::{PubSubMemory, PubSubReader};
use crate::streams::{StreamsMemory, StreamsReader};

enum Kind {
    Streams(Arc<StreamsConfig>, Arc<StreamsMemory>),
    PubSub(Arc<PubSubConfig>, Arc<PubSubMemory>),
}

/// Opens Redis sessions: Streams consumer groups (at-least-once) or Pub/Sub (at-most-once).
/// See the crate docs.
pub struct RedisConnector {
    cfg: Arc<RedisConfig>,
    kind: Kind,
}

impl std::fmt::Debug for RedisConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RedisConnector")
            .field(&self.cfg.describe())
            .finish()
    }
}

impl RedisConnector {
    /// A connector for `config`.
    ///
    /// # Errors
    /// A configuration error when the settings do not fit together.
    pub fn new(config: RedisConfig) -> Result<Self, ReadError> {
        config.validate()?;
        let kind = match &config.mode {
            Mode::Streams(s) => Kind::Streams(Arc::new(s.clone()), Arc::default()),
            Mode::PubSub(p) => Kind::PubSub(Arc::new(p.clone()), Arc::default()),
        };
        Ok(Self {
            cfg: Arc::new(config),
            kind,
        })
    }

    /// Parse a URL (grammar: [`crate::config`]) into a connector; `stream=` makes a Streams
    /// reader, `channel=`/`pattern=` a Pub/Sub one.
    ///
    /// # Errors
    /// A configuration error naming the wrong URL part; never containing the password.
    pub fn from_url(url: &str) -> Result<Self, ReadError> {
        Self::new(RedisConfig::from_url(url)?)
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }

    /// Whether this reads Pub/Sub (at-most-once) rather than Streams.
    #[must_use]
    pub fn is_pubsub(&self) -> bool {
        matches!(self.kind, Kind::PubSub(..))
    }

    /// A [`DataReader`] builder with this connector's settings applied: the most entries per
    /// fetch follows `count`, and the fetch wait stays within `block_ms` (a retry policy must
    /// still be given).
    #[must_use]
    pub fn reader_builder(self) -> DataReaderBuilder<Self> {
        DataReader::builder(self)
    }
}

/// A session of either kind.
#[derive(Debug)]
pub enum RedisReader {
    /// A consumer-group session.
    Streams(StreamsReader),
    /// A Pub/Sub session.
    PubSub(PubSubReader),
}

#[async_trait]
impl Reader for RedisReader {
    async fn recover(&self) -> Result<(), ReadError> {
        match self {
            Self::Streams(r) => r.recover().await,
            Self::PubSub(r) => r.recover().await,
        }
    }
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Message>, ReadError> {
        match self {
            Self::Streams(r) => r.fetch(max, wait).await,
            Self::PubSub(r) => r.fetch(max, wait).await,
        }
    }
    async fn commit(&self, positions: &[Position]) -> Result<(), ReadError> {
        match self {
            Self::Streams(r) => r.commit(positions).await,
            Self::PubSub(r) => r.commit(positions).await,
        }
    }
    async fn ping(&self) -> Result<Duration, ReadError> {
        match self {
            Self::Streams(r) => r.ping().await,
            Self::PubSub(r) => r.ping().await,
        }
    }
    async fn server_version(&self) -> Option<String> {
        match self {
            Self::Streams(r) => r.server_version().await,
            // A subscribed connection accepts no INFO.
            Self::PubSub(_) => None,
        }
    }
    async fn dead_letter(&self, message: &Message, reason: &str) -> Result<(), ReadError> {
        match self {
            Self::Streams(r) => r.dead_letter(message, reason).await,
            Self::PubSub(r) => r.dead_letter(message, reason).await,
        }
    }
    async fn close(&self) {
        match self {
            Self::Streams(r) => r.close().await,
            Self::PubSub(r) => r.close().await,
        }
    }
}

#[async_trait]
impl Connector for RedisConnector {
    type Reader = RedisReader;

    fn backend(&self) -> &'static str {
        "redis"
    }

    /// Redis keeps every delivered entry pending on its own until XACK: each acknowledged
    /// entry is committed as soon as it is acknowledged, in any order.
    fn commit_order(&self) -> CommitOrder {
        CommitOrder::Individual
    }

    fn describe(&self) -> String {
        self.cfg.describe()
    }

    fn tune(&self, c: &mut reader_core::ReaderConfig) {
        if let Some(s) = self.cfg.streams() {
            c.fetch_max = usize::try_from(s.count).unwrap_or(usize::MAX).max(1);
            c.fetch_min = c.fetch_min.min(c.fetch_max);
            c.fetch_wait = c.fetch_wait.min(s.block);
        }
    }

    async fn connect(
        &self,
        ctx: &SessionContext,
        _from: &Checkpoint,
    ) -> Result<RedisReader, ReadError> {
        // Progress lives in the server (the group's pending entries list), not in the
        // checkpoint.
        match &self.kind {
            Kind::Streams(s, mem) => Ok(RedisReader::Streams(
                StreamsReader::open(self.cfg.clone(), s.clone(), mem.clone(), ctx).await?,
            )),
            Kind::PubSub(p, mem) => Ok(RedisReader::PubSub(
                PubSubReader::open(self.cfg.clone(), p.clone(), mem.clone(), ctx).await?,
            )),
        }
    }
}

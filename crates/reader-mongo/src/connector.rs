//! [`MongoConnector`]: opens change-stream sessions from the last durable position, and
//! applies the `on_history_lost` policy.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use mongodb::bson::{Document, RawDocumentBuf, Timestamp};
use mongodb::change_stream::ChangeStream;
use mongodb::options::{ChangeStreamOptions, ClientOptions};
use mongodb::Client;
use reader_core::{
    Checkpoint, Connector, ErrorKind, EventKind, Lane, Position, ReadError, SessionContext,
};

use crate::classify::{classify_mongo_error, history_lost_message, Facts};
use crate::config::{MongoConfig, OnHistoryLost, StartAt, WatchTarget};
use crate::reader::MongoReader;
use crate::redact::Redactor;
use crate::token;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where one session opens its change stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// No start option: from now.
    Now,
    /// `resumeAfter` this raw token.
    Resume(Bytes),
    /// `startAfter` this raw token (also valid for an invalidate event's token).
    After(Bytes),
    /// `startAtOperationTime`.
    AtTime(Timestamp),
}

impl Start {
    fn describe(&self) -> String {
        match self {
            Start::Now => "now".into(),
            Start::Resume(t) | Start::After(t) => {
                let when = token::cluster_time(t).map_or_else(String::new, |ts| {
                    format!(" (cluster time {}, {})", ts.time, age_of(ts.time))
                });
                format!(
                    "resume token {}{when}",
                    token::data_hex(t).unwrap_or_else(|| "<not a _data token>".into())
                )
            }
            Start::AtTime(ts) => format!(
                "cluster time {}.{} ({})",
                ts.time,
                ts.increment,
                age_of(ts.time)
            ),
        }
    }

    fn position(&self) -> Option<Position> {
        match self {
            Start::Resume(t) | Start::After(t) => Some(Position::ResumeToken {
                token: t.clone(),
                cluster_time: token::cluster_time(t).map(|ts| ts.time),
            }),
            _ => None,
        }
    }
}

fn age_of(secs: u32) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let age = now.saturating_sub(u64::from(secs));
    format!("{age} s ago")
}

/// What the connector remembers across the sessions of one reader.
#[derive(Debug, Default)]
struct Memory {
    /// With `start=now`: the token of the first session's starting point, used by later
    /// sessions while nothing is committed yet (so a reconnect does not skip to a new "now").
    origin: Option<Bytes>,
    /// A start that was found older than the oplog, and where the policy restarted instead
    /// (so a reconnect before the next commit does not report the same gap again).
    replaced: Option<(Start, Start)>,
}

/// Opens MongoDB change-stream sessions. See the crate docs.
pub struct MongoConnector {
    cfg: Arc<MongoConfig>,
    redactor: Arc<Redactor>,
    memory: Mutex<Memory>,
}

impl std::fmt::Debug for MongoConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoConnector")
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Why opening a change stream failed.
enum OpenError {
    Driver(mongodb::error::Error),
    TimedOut(Duration),
    BadToken(String),
}

impl MongoConnector {
    /// A connector for `config`.
    ///
    /// # Errors
    /// A configuration error when the settings do not fit together.
    pub fn new(config: MongoConfig) -> Result<Self, ReadError> {
        config.validate()?;
        let mut redactor = Redactor::for_url(&config.url);
        if let Some(c) = &config.credentials {
            redactor = redactor.with_secret(c.password.expose());
        }
        let redactor = Arc::new(redactor);
        Ok(Self {
            cfg: Arc::new(config),
            redactor,
            memory: Mutex::new(Memory::default()),
        })
    }

    /// Parse a URL (grammar: [`MongoConfig::from_url`]) into a connector.
    ///
    /// # Errors
    /// A configuration error naming the wrong URL part or option.
    pub fn from_url(url: &str) -> Result<Self, ReadError> {
        Self::new(MongoConfig::from_url(url)?)
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &MongoConfig {
        &self.cfg
    }

    /// A redacted copy of a classified error.
    fn redact(&self, e: ReadError) -> ReadError {
        redact_error(&self.redactor, e)
    }

    /// A new driver client, with every wait bounded and the driver's read/write retries off.
    async fn client(&self) -> Result<Client, ReadError> {
        let c = &self.cfg;
        let bound = c.server_selection_timeout + c.op_timeout;
        let parsed = tokio::time::timeout(bound, ClientOptions::parse(&c.url)).await;
        let mut opts = match parsed {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return Err(self.redact(classify_mongo_error(&e))),
            Err(_) => {
                return Err(ReadError::transient(
                    ErrorKind::Timeout,
                    format!("resolving the connection string took longer than {bound:?}"),
                ))
            }
        };
        if let Some(cr) = &c.credentials {
            let source = cr.auth_source.clone().or_else(|| {
                opts.credential
                    .as_ref()
                    .and_then(|existing| existing.source.clone())
            });
            opts.credential = Some(
                mongodb::options::Credential::builder()
                    .username(cr.username.clone())
                    .password(cr.password.expose().to_owned())
                    .source(source)
                    .build(),
            );
        }
        opts.server_selection_timeout
            .get_or_insert(c.server_selection_timeout);
        opts.connect_timeout.get_or_insert(c.connect_timeout);
        // One retry loop per source: the Reconnector's. (The driver still resumes a change
        // stream once by itself after a resumable error; that cannot be switched off.)
        opts.retry_reads = Some(false);
        opts.retry_writes = Some(false);
        opts.app_name.get_or_insert_with(|| "unireader".to_owned());
        Client::with_options(opts).map_err(|e| self.redact(classify_mongo_error(&e)))
    }

    /// Where this session should start, before any history-loss replacement.
    fn natural_start(&self, from: &Checkpoint) -> Start {
        if let Some(Position::ResumeToken { token, .. }) = from.get(&Lane::ChangeStream) {
            return match &self.cfg.start {
                // Still at the configured token (nothing read since): it may be an
                // invalidate event's, which only startAfter accepts.
                StartAt::Token(t) if t == token => Start::After(token.clone()),
                _ => Start::Resume(token.clone()),
            };
        }
        match &self.cfg.start {
            StartAt::Now => lock(&self.memory)
                .origin
                .clone()
                .map_or(Start::Now, Start::Resume),
            StartAt::Token(t) => Start::After(t.clone()),
            StartAt::Time(ts) => Start::AtTime(*ts),
        }
    }

    fn start_for(&self, from: &Checkpoint) -> Start {
        let natural = self.natural_start(from);
        match &lock(&self.memory).replaced {
            Some((lost, instead)) if *lost == natural => instead.clone(),
            _ => natural,
        }
    }

    async fn open(
        &self,
        client: &Client,
        start: &Start,
    ) -> Result<ChangeStream<RawDocumentBuf>, OpenError> {
        let c = &self.cfg;
        let mut opts = ChangeStreamOptions::builder()
            .full_document(c.full_document.clone())
            .full_document_before_change(c.full_document_before_change.clone())
            .batch_size(c.batch_size)
            .max_await_time(Some(c.max_await))
            .build();
        match start {
            Start::Now => {}
            Start::Resume(t) => opts.resume_after = Some(driver_token(t)?),
            Start::After(t) => opts.start_after = Some(driver_token(t)?),
            Start::AtTime(ts) => opts.start_at_operation_time = Some(*ts),
        }
        let pipeline = c.pipeline.clone();
        let bound = c.server_selection_timeout + c.op_timeout;
        let fut = async {
            match c.target() {
                WatchTarget::Deployment => {
                    client.watch().pipeline(pipeline).with_options(opts).await
                }
                WatchTarget::Database(db) => {
                    client
                        .database(db)
                        .watch()
                        .pipeline(pipeline)
                        .with_options(opts)
                        .await
                }
                WatchTarget::Collection {
                    database,
                    collection,
                } => {
                    client
                        .database(database)
                        .collection::<Document>(collection)
                        .watch()
                        .pipeline(pipeline)
                        .with_options(opts)
                        .await
                }
            }
        };
        match tokio::time::timeout(bound, fut).await {
            Ok(Ok(cs)) => Ok(cs.with_type::<RawDocumentBuf>()),
            Ok(Err(e)) => Err(OpenError::Driver(e)),
            Err(_) => Err(OpenError::TimedOut(bound)),
        }
    }

    fn open_error(&self, e: OpenError) -> ReadError {
        match e {
            OpenError::Driver(e) => self.redact(classify_mongo_error(&e)),
            OpenError::TimedOut(bound) => ReadError::transient(
                ErrorKind::Timeout,
                format!("opening the change stream took longer than {bound:?}"),
            ),
            // A saved token that is not a document cannot be resumed from, ever.
            OpenError::BadToken(m) => ReadError::permanent(ErrorKind::Checkpoint, m),
        }
    }

    /// Open with `start`; on history loss apply the policy.
    async fn open_with_policy(
        &self,
        ctx: &SessionContext,
        client: &Client,
        start: Start,
    ) -> Result<ChangeStream<RawDocumentBuf>, ReadError> {
        let lost = match self.open(client, &start).await {
            Ok(cs) => {
                if start == Start::Now {
                    if let Some(t) = cs.resume_token().as_ref().and_then(token::from_driver) {
                        lock(&self.memory).origin.get_or_insert(t);
                    }
                }
                return Ok(cs);
            }
            Err(OpenError::Driver(e)) if Facts::of(&e).is_history_lost() => e,
            Err(e) => return Err(self.open_error(e)),
        };
        let server_text = self.redactor.apply(&Facts::of(&lost).server_text());
        let what = start.describe();
        let (instead, label) = match self.cfg.on_history_lost {
            OnHistoryLost::Fail => {
                return Err(ReadError::permanent(
                    ErrorKind::PositionLost,
                    format!(
                        "cannot resume {} from {what}: {}",
                        self.cfg.target(),
                        history_lost_message(&server_text)
                    ),
                ))
            }
            OnHistoryLost::RestartNow => (Start::Now, "now".to_owned()),
            OnHistoryLost::RestartAt(secs) => (
                Start::AtTime(Timestamp {
                    time: secs,
                    increment: 0,
                }),
                format!("cluster time {secs}"),
            ),
        };
        let cs = match self.open(client, &instead).await {
            Ok(cs) => cs,
            Err(OpenError::Driver(e)) if Facts::of(&e).is_history_lost() => {
                return Err(ReadError::permanent(
                    ErrorKind::PositionLost,
                    format!(
                        "{what} is older than the oplog, and so is the restart point of \
                         on_history_lost=restart_at ({label}): choose a later time or \
                         restart_now ({})",
                        self.redactor.apply(&Facts::of(&e).server_text())
                    ),
                ))
            }
            Err(e) => return Err(self.open_error(e)),
        };
        let detail = format!(
            "{what} is older than the oplog ({server_text}); events after it were lost; \
             the change stream restarted from {label} (on_history_lost)"
        );
        tracing::warn!(source = %ctx.source, %detail, "change stream history lost");
        ctx.events.emit(EventKind::Gap, start.position(), detail);
        let remembered = match instead {
            Start::Now => cs
                .resume_token()
                .as_ref()
                .and_then(token::from_driver)
                .map(Start::Resume),
            other => Some(other),
        };
        if let Some(r) = remembered {
            lock(&self.memory).replaced = Some((start, r));
        }
        Ok(cs)
    }
}

fn driver_token(raw: &Bytes) -> Result<mongodb::change_stream::event::ResumeToken, OpenError> {
    token::to_driver(raw).map_err(OpenError::BadToken)
}

pub(crate) fn redact_error(r: &Redactor, e: ReadError) -> ReadError {
    let msg = r.apply(e.message());
    if msg == e.message() {
        return e;
    }
    let mut out = ReadError::new(e.class(), e.kind(), msg);
    if let Some(d) = e.retry_after() {
        out = out.with_retry_after(d);
    }
    out
}

#[async_trait]
impl Connector for MongoConnector {
    type Reader = MongoReader;

    fn backend(&self) -> &'static str {
        "mongo"
    }

    fn describe(&self) -> String {
        format!("mongo {}", self.cfg.describe())
    }

    async fn connect(
        &self,
        ctx: &SessionContext,
        from: &Checkpoint,
    ) -> Result<MongoReader, ReadError> {
        let client = self.client().await?;
        let start = self.start_for(from);
        tracing::debug!(source = %ctx.source, session = ctx.session, start = %start.describe(), "opening change stream");
        let opened = match self.open_with_policy(ctx, &client, start).await {
            Ok(cs) => cs,
            Err(e) => {
                shutdown_client(client).await;
                return Err(e);
            }
        };
        Ok(MongoReader::new(
            client,
            opened,
            self.cfg.clone(),
            self.redactor.clone(),
        ))
    }
}

/// Close a client's connections and monitors, within a second.
pub(crate) async fn shutdown_client(client: Client) {
    let _ = tokio::time::timeout(Duration::from_secs(1), client.shutdown().immediate(true)).await;
}

//! [`MongoCheckpointStore`]: checkpoints kept in a MongoDB collection.

use std::time::Duration;

use async_trait::async_trait;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::{Acknowledgment, ClientOptions, ReadConcern, WriteConcern};
use mongodb::{Client, Collection};
use reader_core::{Checkpoint, CheckpointStore, ErrorKind, Lane, Position, ReadError};

use crate::classify::classify_mongo_error;
use crate::connector::redact_error;
use crate::redact::{redact_url, Redactor};
use crate::token;

/// Keeps one document per source in a collection:
///
/// ```text
/// { _id: <source name>,
///   checkpoint: "<the Checkpoint as JSON, exactly as the file store writes it>",
///   token_data: "<the resume token's _data, for humans>",   (when there is one)
///   cluster_time: <seconds of the token's cluster time>,     (when known)
///   updated_at: <date> }
/// ```
///
/// Saves are upserts with write concern `majority` and journaling, so a saved checkpoint
/// survives a failover; loads read with read concern `majority`. Every call is bounded by
/// `op_timeout`, and the driver's own retries are off: a failed save is retried by the
/// reader with the next commit.
#[derive(Clone)]
pub struct MongoCheckpointStore {
    coll: Collection<Document>,
    op_timeout: Duration,
    redactor: Redactor,
    describe: String,
}

impl std::fmt::Debug for MongoCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MongoCheckpointStore")
            .field(&self.describe)
            .finish()
    }
}

impl MongoCheckpointStore {
    /// The default collection name.
    pub const DEFAULT_COLLECTION: &'static str = "unireader_checkpoints";

    /// A store in `database.collection` of an existing client.
    #[must_use]
    pub fn with_client(client: &Client, database: &str, collection: &str) -> Self {
        let coll = client.database(database).collection::<Document>(collection);
        Self {
            coll,
            op_timeout: Duration::from_secs(10),
            redactor: Redactor::default(),
            describe: format!("{database}.{collection}"),
        }
    }

    /// Connect to `url` (any MongoDB connection string; credentials are redacted everywhere)
    /// and keep checkpoints in `database.collection`. Server selection and connecting are
    /// bounded by 5 s unless the URL says otherwise; the driver's retries are off.
    ///
    /// # Errors
    /// When the URL is invalid (configuration error) or an `mongodb+srv` lookup fails.
    pub async fn connect(url: &str, database: &str, collection: &str) -> Result<Self, ReadError> {
        let redactor = Redactor::for_url(url);
        crate::config::check_userinfo_escapes(url)?;
        let parsed = tokio::time::timeout(Duration::from_secs(15), ClientOptions::parse(url)).await;
        let mut opts = match parsed {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                return Err(redact_error(&redactor, classify_mongo_error(&e)));
            }
            Err(_) => {
                return Err(ReadError::transient(
                    ErrorKind::Timeout,
                    "resolving the checkpoint store's connection string took longer than 15 s",
                ))
            }
        };
        opts.server_selection_timeout
            .get_or_insert(Duration::from_secs(5));
        opts.connect_timeout.get_or_insert(Duration::from_secs(5));
        opts.retry_reads = Some(false);
        opts.retry_writes = Some(false);
        opts.app_name
            .get_or_insert_with(|| "unireader-checkpoints".to_owned());
        let client = Client::with_options(opts)
            .map_err(|e| redact_error(&redactor, classify_mongo_error(&e)))?;
        let mut store = Self::with_client(&client, database, collection);
        store.describe = format!("{} {database}.{collection}", redact_url(url));
        store.redactor = redactor;
        Ok(store)
    }

    /// Bound every call by `d` (default 10 s).
    #[must_use]
    pub fn op_timeout(mut self, d: Duration) -> Self {
        self.op_timeout = d;
        self
    }

    fn error(&self, what: &str, e: &mongodb::error::Error) -> ReadError {
        let c = redact_error(&self.redactor, classify_mongo_error(e));
        ReadError::new(
            c.class(),
            ErrorKind::Checkpoint,
            format!(
                "checkpoint store {}: {what}: {}",
                self.describe,
                c.message()
            ),
        )
    }

    fn timeout(&self, what: &str) -> ReadError {
        ReadError::transient(
            ErrorKind::Checkpoint,
            format!(
                "checkpoint store {}: {what} took longer than {:?}",
                self.describe, self.op_timeout
            ),
        )
    }
}

#[async_trait]
impl CheckpointStore for MongoCheckpointStore {
    async fn load(&self, source: &str) -> Result<Option<Checkpoint>, ReadError> {
        let find = self
            .coll
            .find_one(doc! { "_id": source })
            .read_concern(ReadConcern::majority());
        let found = match tokio::time::timeout(self.op_timeout, find).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return Err(self.error("load", &e)),
            Err(_) => return Err(self.timeout("load")),
        };
        let Some(d) = found else {
            return Ok(None);
        };
        let bad = |why: String| {
            ReadError::permanent(
                ErrorKind::Checkpoint,
                format!(
                    "checkpoint store {}: the document of source {source:?} is not a valid \
                     checkpoint ({why}); refusing to restart from scratch — fix or delete it",
                    self.describe
                ),
            )
        };
        let json = d
            .get_str("checkpoint")
            .map_err(|e| bad(format!("field `checkpoint`: {e}")))?;
        serde_json::from_str(json)
            .map(Some)
            .map_err(|e| bad(e.to_string()))
    }

    async fn save(&self, source: &str, checkpoint: &Checkpoint) -> Result<(), ReadError> {
        let json = serde_json::to_string(checkpoint).map_err(|e| {
            ReadError::permanent(
                ErrorKind::Checkpoint,
                format!("cannot encode checkpoint: {e}"),
            )
        })?;
        let mut set = doc! { "checkpoint": json, "updated_at": DateTime::now() };
        if let Some(Position::ResumeToken { token: t, .. }) = checkpoint.get(&Lane::ChangeStream) {
            if let Some(hex) = token::data_hex(t) {
                set.insert("token_data", hex);
            }
            if let Some(ts) = token::cluster_time(t) {
                set.insert("cluster_time", i64::from(ts.time));
            }
        }
        let update = self
            .coll
            .update_one(doc! { "_id": source }, doc! { "$set": set })
            .upsert(true)
            .write_concern(
                WriteConcern::builder()
                    .w(Acknowledgment::Majority)
                    .journal(true)
                    .build(),
            );
        match tokio::time::timeout(self.op_timeout, update).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.error("save", &e)),
            Err(_) => Err(self.timeout("save")),
        }
    }
}

//! [`MongoConfig`]: what to watch, from where, and how; parsed from a URL or built in code.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use mongodb::bson::{Document, Timestamp};
use mongodb::options::{ConnectionString, FullDocumentBeforeChangeType, FullDocumentType};
use reader_core::{ReadError, Secret};

use crate::redact::{redact_url, Redactor};
use crate::token;

/// Where a reader starts when its checkpoint store holds nothing for it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum StartAt {
    /// The events that happen from the first connect on (default). Later sessions of the same
    /// reader that still have nothing committed resume from that first point, not from a new
    /// "now", so nothing is skipped across a reconnect.
    #[default]
    Now,
    /// After the event whose resume token this is (raw BSON bytes of the token document,
    /// e.g. `{"_data": "8263…"}`), opened with `startAfter`, which also accepts the token of
    /// an `invalidate` event.
    Token(Bytes),
    /// The events at or after this cluster time (`startAtOperationTime`).
    Time(Timestamp),
}

/// What to do when the position to resume from is older than the oldest oplog entry
/// (`ChangeStreamHistoryLost`): the events in between are gone for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnHistoryLost {
    /// Surface a permanent error explaining what happened and what to do (default): losing
    /// events silently is never the default.
    #[default]
    Fail,
    /// Report a [`Gap`](reader_core::EventKind::Gap) event and continue from now.
    RestartNow,
    /// Report a `Gap` event and continue from this cluster time (seconds since the epoch). If
    /// that time is itself older than the oplog, fail.
    RestartAt(u32),
}

/// How a change event becomes a [`Message`](reader_core::Message) payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PayloadFormat {
    /// The whole change event as relaxed Extended JSON (UTF-8), e.g.
    /// `{"_id":{"_data":"82…"},"operationType":"insert","fullDocument":{"_id":1,"n":2},…}`
    /// (default). Readable everywhere, lossy only for BSON types JSON cannot say exactly
    /// (relaxed mode prints `Int64` and `Double` as JSON numbers, dates as `{"$date": "…"}`).
    #[default]
    RelaxedJson,
    /// The raw BSON bytes of the change event, unchanged (no conversion cost); decode with
    /// `bson::RawDocument::from_bytes`.
    Bson,
}

/// What a change stream watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchTarget<'a> {
    /// Every database and collection of the deployment.
    Deployment,
    /// One database.
    Database(&'a str),
    /// One collection.
    Collection {
        /// The database.
        database: &'a str,
        /// The collection.
        collection: &'a str,
    },
}

impl fmt::Display for WatchTarget<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchTarget::Deployment => f.write_str("the whole deployment"),
            WatchTarget::Database(db) => write!(f, "database {db}"),
            WatchTarget::Collection {
                database,
                collection,
            } => write!(f, "collection {database}.{collection}"),
        }
    }
}

/// SCRAM credentials given apart from the URL (from a secret store, a mounted file), so the
/// connection string can be logged and shared. The driver negotiates the mechanism
/// (SCRAM-SHA-256 where the server has it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MongoCredentials {
    /// The user name.
    pub username: String,
    /// The password (prints as `***`).
    pub password: Secret,
    /// The database that holds the user (`authSource`; default: the driver's, `admin` for
    /// SCRAM, unless the URL sets `authSource`).
    pub auth_source: Option<String>,
}

/// Settings of a MongoDB change-stream reader. Build one with [`MongoConfig::new`] or
/// [`MongoConfig::from_url`]; every field has a documented default.
///
/// `Debug` never shows the password.
#[derive(Clone)]
pub struct MongoConfig {
    /// The connection string handed to the driver (`mongodb://` or `mongodb+srv://`), without
    /// this crate's own query parameters. May hold credentials: it is redacted in every
    /// description, log and error.
    pub url: String,
    /// The database to watch, or that holds the watched collection. `None` with no
    /// collection: watch the whole deployment.
    pub database: Option<String>,
    /// The collection to watch (needs `database`). `None`: watch the whole database.
    pub collection: Option<String>,
    /// Aggregation stages appended after `$changeStream` (e.g. a `$match` filter). They must
    /// not remove or change `_id`: it is the resume token. Default: none.
    pub pipeline: Vec<Document>,
    /// `fullDocument` (default: not set: the server's default, no post-image for updates).
    pub full_document: Option<FullDocumentType>,
    /// `fullDocumentBeforeChange` (default: not set).
    pub full_document_before_change: Option<FullDocumentBeforeChangeType>,
    /// `batchSize` of the `aggregate` and each `getMore` (default: the server's).
    pub batch_size: Option<u32>,
    /// `maxAwaitTimeMS`: how long the server holds a `getMore` open when nothing happens
    /// (default 1 s, the reader's default `fetch_wait`; keep them about equal).
    pub max_await: Duration,
    /// Where to start when nothing was committed yet (default [`StartAt::Now`]).
    pub start: StartAt,
    /// What to do when the position is older than the oplog (default [`OnHistoryLost::Fail`]).
    pub on_history_lost: OnHistoryLost,
    /// How events become payloads (default [`PayloadFormat::RelaxedJson`]).
    pub payload: PayloadFormat,
    /// The driver's server selection timeout, unless the URL sets `serverSelectionTimeoutMS`
    /// (default 5 s). Bounds every operation while no server is reachable.
    pub server_selection_timeout: Duration,
    /// The driver's connect timeout, unless the URL sets `connectTimeoutMS` (default 5 s).
    pub connect_timeout: Duration,
    /// The most any single command of this crate may take once a server was selected:
    /// opening the change stream, a ping, a checkpoint load or save (default 10 s).
    pub op_timeout: Duration,
    /// Credentials given apart from the URL (default none: the URL's, if any). A URL with
    /// user information and these together is a configuration error.
    pub credentials: Option<MongoCredentials>,
}

impl fmt::Debug for MongoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoConfig")
            .field("url", &redact_url(&self.url))
            .field("database", &self.database)
            .field("collection", &self.collection)
            .field("pipeline", &self.pipeline)
            .field("full_document", &self.full_document)
            .field(
                "full_document_before_change",
                &self.full_document_before_change,
            )
            .field("batch_size", &self.batch_size)
            .field("max_await", &self.max_await)
            .field("start", &self.start)
            .field("on_history_lost", &self.on_history_lost)
            .field("payload", &self.payload)
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("op_timeout", &self.op_timeout)
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// Every `%` in the user name and password must start a `%XX` escape. The driver (3.9)
/// checks this by slicing the string two bytes after each `%`, which panics when a
/// multi-byte character follows (found by the `source_urls` fuzzer): refuse it here first.
pub(crate) fn check_userinfo_escapes(url: &str) -> Result<(), ReadError> {
    let Some((_, rest)) = url.split_once("://") else {
        return Ok(());
    };
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return Ok(());
    };
    let b = userinfo.as_bytes();
    for (i, _) in userinfo.match_indices('%') {
        let ok = b.len() >= i + 3 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
        if !ok {
            return Err(ReadError::config(
                "URL credentials: a `%` in the user name or password must start a %XX escape \
                 (percent-encode special characters)",
            ));
        }
    }
    Ok(())
}

/// Query parameters of this crate (the rest go to the driver).
const OWN_PARAMS: &[&str] = &[
    "database",
    "collection",
    "full_document",
    "full_document_before_change",
    "batch_size",
    "max_await_ms",
    "start",
    "on_history_lost",
    "payload",
];

impl MongoConfig {
    /// Defaults for `url` (used as given: call [`MongoConfig::from_url`] to parse this crate's
    /// query parameters out of a URL).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            database: None,
            collection: None,
            pipeline: Vec::new(),
            full_document: None,
            full_document_before_change: None,
            batch_size: None,
            max_await: Duration::from_secs(1),
            start: StartAt::Now,
            on_history_lost: OnHistoryLost::Fail,
            payload: PayloadFormat::RelaxedJson,
            server_selection_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            op_timeout: Duration::from_secs(10),
            credentials: None,
        }
    }

    /// Log in as `username` with `password` (see [`MongoCredentials`]), keeping the secret
    /// out of the URL.
    ///
    /// ```
    /// let cfg = reader_mongo::MongoConfig::from_url("mongodb://db.internal/shop?collection=orders")
    ///     .unwrap()
    ///     .with_credentials("reader", "from-a-secret-store");
    /// assert!(!format!("{cfg:?}").contains("from-a-secret-store"));
    /// ```
    #[must_use]
    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some(MongoCredentials {
            username: username.into(),
            password: Secret::new(password.into()),
            auth_source: None,
        });
        self
    }

    /// Parse a URL: a normal MongoDB connection string plus this crate's query parameters,
    /// which are taken out before the rest is checked by the driver's parser:
    ///
    /// ```text
    /// mongodb[+srv]://[user:pass@]host[:port][,host…][/DB][?driver options][&own options]
    ///   database=DB                    the database (default: the URL path's DB)
    ///   collection=C                   one collection (needs a database)
    ///                                  neither: watch the whole deployment
    ///   full_document=updateLookup|whenAvailable|required
    ///   full_document_before_change=whenAvailable|required|off
    ///   batch_size=N                   N ≥ 1
    ///   max_await_ms=N                 N ≥ 1 (default 1000)
    ///   start=now|token:<_data hex>|time:<unix secs>[.<increment>]
    ///   on_history_lost=fail|restart_now|restart_at:<unix secs>
    ///   payload=json|bson              (default json: relaxed Extended JSON)
    /// ```
    ///
    /// # Errors
    /// A configuration error naming the URL part or option that is wrong (an unknown query
    /// parameter included, as the driver rejects those), never showing the password.
    pub fn from_url(url: &str) -> Result<Self, ReadError> {
        let redactor = Redactor::for_url(url);
        let fail = |msg: String| ReadError::config(redactor.apply(&msg));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            fail(format!(
                "URL {}: expected mongodb:// or mongodb+srv://",
                redact_url(url)
            ))
        })?;
        if scheme != "mongodb" && scheme != "mongodb+srv" {
            return Err(fail(format!(
                "URL scheme {scheme:?}: expected mongodb or mongodb+srv"
            )));
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        // The path (a default database) follows the first '/' after the hosts; user info may
        // contain neither '/' nor '?' unescaped.
        let path_db = match before_query.split_once('/') {
            Some((_, p)) if !p.is_empty() => {
                Some(percent_decode(p).map_err(|e| fail(format!("URL path {p:?}: {e}")))?)
            }
            _ => None,
        };
        let mut cfg = Self::new(String::new());
        let mut driver_params: Vec<&str> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !OWN_PARAMS.contains(&k) {
                driver_params.push(pair);
                continue;
            }
            if seen.iter().any(|s| s == k) {
                return Err(fail(format!("query parameter `{k}` is given twice")));
            }
            seen.push(k.to_owned());
            let v = percent_decode(v).map_err(|e| fail(format!("query parameter `{k}`: {e}")))?;
            cfg.set_param(k, &v)
                .map_err(|e| fail(format!("query parameter `{k}`: {e}")))?;
        }
        cfg.url = if driver_params.is_empty() {
            format!("{scheme}://{before_query}")
        } else {
            format!("{scheme}://{before_query}?{}", driver_params.join("&"))
        };
        match (&cfg.database, path_db) {
            (Some(q), Some(p)) if *q != p => {
                return Err(fail(format!(
                    "the URL path names database {p:?} but `database={q}` names another; give one"
                )))
            }
            (None, Some(p)) => cfg.database = Some(p),
            _ => {}
        }
        // The driver's rustls TLS has no host-name-only override; its own message would
        // point at tlsAllowInvalidCertificates, which switches off all verification.
        if let Some(p) = driver_params.iter().find(|p| {
            p.split_once('=')
                .map_or(**p, |(k, _)| k)
                .eq_ignore_ascii_case("tlsAllowInvalidHostnames")
        }) {
            let key = p.split_once('=').map_or(*p, |(k, _)| k);
            return Err(fail(format!(
                "query parameter `{key}`: not available: the MongoDB driver's TLS (rustls) \
                 cannot skip only the host-name check. Connect by a host name (or IP address) \
                 the server's certificate lists; tlsAllowInvalidCertificates=true would switch \
                 off all verification of the server's certificate, letting anyone on the \
                 network path impersonate the server"
            )));
        }
        // The driver's own parse (no DNS): rejects unknown options, naming them.
        check_userinfo_escapes(&cfg.url)?;
        ConnectionString::parse(&cfg.url)
            .map_err(|e| fail(format!("URL {}: {}", redact_url(&cfg.url), e.kind)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn set_param(&mut self, key: &str, v: &str) -> Result<(), String> {
        match key {
            "database" => self.database = Some(non_empty(v)?.to_owned()),
            "collection" => self.collection = Some(non_empty(v)?.to_owned()),
            "full_document" => {
                self.full_document = Some(match v {
                    "updateLookup" => FullDocumentType::UpdateLookup,
                    "whenAvailable" => FullDocumentType::WhenAvailable,
                    "required" => FullDocumentType::Required,
                    _ => {
                        return Err(format!(
                            "{v:?} is not one of updateLookup, whenAvailable, required"
                        ))
                    }
                });
            }
            "full_document_before_change" => {
                self.full_document_before_change = Some(match v {
                    "whenAvailable" => FullDocumentBeforeChangeType::WhenAvailable,
                    "required" => FullDocumentBeforeChangeType::Required,
                    "off" => FullDocumentBeforeChangeType::Off,
                    _ => return Err(format!("{v:?} is not one of whenAvailable, required, off")),
                });
            }
            "batch_size" => {
                let n: u32 = v
                    .parse()
                    .map_err(|_| format!("{v:?} is not a whole number"))?;
                if n == 0 {
                    return Err("must be at least 1".into());
                }
                self.batch_size = Some(n);
            }
            "max_await_ms" => {
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("{v:?} is not a whole number of milliseconds"))?;
                if n == 0 {
                    return Err("must be at least 1".into());
                }
                self.max_await = Duration::from_millis(n);
            }
            "start" => self.start = parse_start(v)?,
            "on_history_lost" => self.on_history_lost = parse_on_history_lost(v)?,
            "payload" => {
                self.payload = match v {
                    "json" => PayloadFormat::RelaxedJson,
                    "bson" => PayloadFormat::Bson,
                    _ => return Err(format!("{v:?} is not one of json, bson")),
                };
            }
            _ => return Err("unknown".into()),
        }
        Ok(())
    }

    /// Check the combination of settings.
    ///
    /// # Errors
    /// A configuration error naming the offending option.
    pub fn validate(&self) -> Result<(), ReadError> {
        check_userinfo_escapes(&self.url)?;
        if let Some(c) = &self.credentials {
            if c.username.is_empty() {
                return Err(ReadError::config("credentials: the user name is empty"));
            }
            let authority = self.url.split_once("://").map_or("", |(_, rest)| {
                &rest[..rest.find(['/', '?']).unwrap_or(rest.len())]
            });
            if authority.contains('@') {
                return Err(ReadError::config(
                    "credentials are given both in the URL and separately: keep one",
                ));
            }
        }
        if self.collection.is_some() && self.database.is_none() {
            return Err(ReadError::config(
                "option `collection` needs a database: give `database=DB` or put it in the URL path",
            ));
        }
        if self.max_await.is_zero() {
            return Err(ReadError::config(
                "option `max_await` must be more than zero",
            ));
        }
        for (name, d) in [
            ("server_selection_timeout", self.server_selection_timeout),
            ("connect_timeout", self.connect_timeout),
            ("op_timeout", self.op_timeout),
        ] {
            if d.is_zero() {
                return Err(ReadError::config(format!(
                    "option `{name}` must be more than zero: every call must be bounded"
                )));
            }
        }
        if self.batch_size == Some(0) {
            return Err(ReadError::config("option `batch_size` must be at least 1"));
        }
        Ok(())
    }

    /// What the change stream watches.
    #[must_use]
    pub fn target(&self) -> WatchTarget<'_> {
        match (&self.database, &self.collection) {
            (Some(db), Some(c)) => WatchTarget::Collection {
                database: db,
                collection: c,
            },
            (Some(db), None) => WatchTarget::Database(db),
            _ => WatchTarget::Deployment,
        }
    }

    /// `mongo <url, password redacted> watching <target>`.
    #[must_use]
    pub fn describe(&self) -> String {
        format!("{} watching {}", redact_url(&self.url), self.target())
    }
}

fn non_empty(v: &str) -> Result<&str, String> {
    if v.is_empty() {
        Err("is empty".into())
    } else {
        Ok(v)
    }
}

fn parse_start(v: &str) -> Result<StartAt, String> {
    if v == "now" {
        return Ok(StartAt::Now);
    }
    if let Some(hex) = v.strip_prefix("token:") {
        return token::from_data_hex(hex)
            .map(StartAt::Token)
            .map_err(|e| format!("token: {e}"));
    }
    if let Some(t) = v.strip_prefix("time:") {
        let (secs, inc) = match t.split_once('.') {
            Some((s, i)) => (s, Some(i)),
            None => (t, None),
        };
        let time: u32 = secs
            .parse()
            .map_err(|_| format!("time: {secs:?} is not whole seconds since the epoch"))?;
        let increment: u32 = match inc {
            Some(i) => i
                .parse()
                .map_err(|_| format!("time: increment {i:?} is not a whole number"))?,
            None => 0,
        };
        return Ok(StartAt::Time(Timestamp { time, increment }));
    }
    Err(format!(
        "{v:?} is not one of now, token:<hex of the token's _data>, time:<unix secs>[.<increment>]"
    ))
}

fn parse_on_history_lost(v: &str) -> Result<OnHistoryLost, String> {
    match v {
        "fail" => Ok(OnHistoryLost::Fail),
        "restart_now" => Ok(OnHistoryLost::RestartNow),
        _ => {
            if let Some(s) = v.strip_prefix("restart_at:") {
                let secs: u32 = s.parse().map_err(|_| {
                    format!("restart_at: {s:?} is not whole seconds since the epoch")
                })?;
                Ok(OnHistoryLost::RestartAt(secs))
            } else {
                Err(format!(
                    "{v:?} is not one of fail, restart_now, restart_at:<unix secs>"
                ))
            }
        }
    }
}

pub(crate) use reader_core::urltext::percent_decode;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_params_are_stripped_before_the_driver_sees_the_url() {
        let c = MongoConfig::from_url(
            "mongodb://u:s3cret@h1:27017,h2/shop?replicaSet=rs0&collection=orders&full_document=updateLookup&batch_size=100&max_await_ms=250&start=time:1700000000.3&on_history_lost=restart_at:1699990000&payload=bson&full_document_before_change=whenAvailable",
        )
        .unwrap();
        assert_eq!(c.url, "mongodb://u:s3cret@h1:27017,h2/shop?replicaSet=rs0");
        assert_eq!(c.database.as_deref(), Some("shop"));
        assert_eq!(c.collection.as_deref(), Some("orders"));
        assert!(matches!(
            c.full_document,
            Some(FullDocumentType::UpdateLookup)
        ));
        assert!(matches!(
            c.full_document_before_change,
            Some(FullDocumentBeforeChangeType::WhenAvailable)
        ));
        assert_eq!(c.batch_size, Some(100));
        assert_eq!(c.max_await, Duration::from_millis(250));
        assert_eq!(
            c.start,
            StartAt::Time(Timestamp {
                time: 1_700_000_000,
                increment: 3
            })
        );
        assert_eq!(c.on_history_lost, OnHistoryLost::RestartAt(1_699_990_000));
        assert_eq!(c.payload, PayloadFormat::Bson);
        assert_eq!(
            c.target(),
            WatchTarget::Collection {
                database: "shop",
                collection: "orders"
            }
        );
        let shown = format!("{c:?} {}", c.describe());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("u:***@"), "{shown}");
    }

    #[test]
    fn targets_and_defaults() {
        let c = MongoConfig::from_url("mongodb://127.0.0.1:1/?directConnection=true").unwrap();
        assert_eq!(c.target(), WatchTarget::Deployment);
        assert_eq!(c.url, "mongodb://127.0.0.1:1/?directConnection=true");
        assert_eq!(c.start, StartAt::Now);
        assert_eq!(c.on_history_lost, OnHistoryLost::Fail);
        assert_eq!(c.payload, PayloadFormat::RelaxedJson);
        let c = MongoConfig::from_url("mongodb://127.0.0.1:1/?database=a%2Fb").unwrap();
        assert_eq!(c.target(), WatchTarget::Database("a/b"));
        assert_eq!(c.url, "mongodb://127.0.0.1:1/");
        let c = MongoConfig::from_url("mongodb+srv://cluster.example.com/db?collection=c").unwrap();
        assert_eq!(
            c.target(),
            WatchTarget::Collection {
                database: "db",
                collection: "c"
            }
        );
        assert_eq!(c.url, "mongodb+srv://cluster.example.com/db");
    }

    #[test]
    fn start_token_takes_the_data_hex() {
        let c = MongoConfig::from_url("mongodb://h/?start=token:8263A1B2C3000000012B0229296E04")
            .unwrap();
        let StartAt::Token(t) = &c.start else {
            panic!("{:?}", c.start)
        };
        assert_eq!(
            token::data_hex(t).as_deref(),
            Some("8263A1B2C3000000012B0229296E04")
        );
    }

    #[test]
    fn errors_name_the_part_and_never_the_password() {
        let cases = [
            ("http://h/", "scheme"),
            ("mongodb://u:pw9@h/?collection=c", "collection"),
            ("mongodb://u:pw9@h/?bogus=1", "bogus"),
            ("mongodb://u:pw9@h/?batch_size=0", "batch_size"),
            ("mongodb://u:pw9@h/?batch_size=x", "batch_size"),
            ("mongodb://u:pw9@h/?max_await_ms=-1", "max_await_ms"),
            ("mongodb://u:pw9@h/?full_document=all", "full_document"),
            ("mongodb://u:pw9@h/?start=yesterday", "start"),
            ("mongodb://u:pw9@h/?start=token:zz", "start"),
            ("mongodb://u:pw9@h/?start=time:x", "start"),
            (
                "mongodb://u:pw9@h/?on_history_lost=ignore",
                "on_history_lost",
            ),
            ("mongodb://u:pw9@h/?payload=xml", "payload"),
            ("mongodb://u:pw9@h/a?database=b", "database"),
            ("mongodb://u:pw9@h/?database=a&database=b", "twice"),
            ("mongodb://u:pw9@h:notaport/", "URL"),
            (
                "mongodb://u:pw9@h/?tls=true&tlsCertificateKeyFilePassword=pw9",
                "tlsCertificateKeyFilePassword",
            ),
            (
                "mongodb://u:pw9@h/?tls=true&tlsAllowInvalidHostnames=true",
                "`tlsAllowInvalidHostnames`: not available",
            ),
        ];
        for (url, part) in cases {
            let e = MongoConfig::from_url(url).unwrap_err();
            let s = e.to_string();
            assert!(e.is_permanent(), "{url}: {s}");
            assert_eq!(e.kind(), reader_core::ErrorKind::Config, "{url}: {s}");
            assert!(s.contains(part), "{url}: {s} should name {part}");
            assert!(!s.contains("pw9"), "{url}: {s} shows the password");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c").unwrap(), "a b+c");
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%2").is_err());
    }

    #[test]
    fn a_bad_escape_in_the_credentials_is_an_error_not_a_driver_panic() {
        // The fuzzer's input: `%` followed by a two-byte character.
        for url in [
            "mongodb://0:%1\u{570}zre@h/db?collection=c",
            "mongodb://u:pw%@h/db?collection=c",
            "mongodb://u%zz:pw@h/db?collection=c",
        ] {
            let e = MongoConfig::from_url(url).unwrap_err().to_string();
            assert!(e.contains("%XX escape"), "{url}: {e}");
            assert!(!e.contains("zre") && !e.contains("pw"), "{e}");
            let e = MongoConfig::new(url).validate().unwrap_err().to_string();
            assert!(e.contains("%XX escape"), "{e}");
        }
        MongoConfig::from_url("mongodb://u:p%40ss@h/db?collection=c").unwrap();
    }
}

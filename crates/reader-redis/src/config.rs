//! [`RedisConfig`]: where the server is and what to read (stream keys in a consumer group,
//! or Pub/Sub channels and patterns); parsed from a URL or built in code.
//!
//! # URL grammar
//!
//! ```text
//! redis[s]://[user[:password]@]host[:port][/db]?QUERY
//!
//! Streams (at-least-once):
//!   stream=KEY[,KEY2…]     stream keys to read (required for Streams)
//!   group=G                consumer group (required with stream)
//!   consumer=C             consumer name (default: <host>-<pid>-<random>)
//!   start=$|0|ID           where a newly created group starts (default $: new entries only)
//!   count=N                most entries per XREADGROUP (default 512; the reader may ask fewer)
//!   block_ms=N             longest BLOCK of one XREADGROUP (default 1000; the reader's
//!                          fetch_wait is used when shorter)
//!   claim_idle_ms=N        XAUTOCLAIM entries pending longer than this (default 60000; 0 = never claim)
//!   claim_interval_ms=N    how often to look for such entries (default: claim_idle_ms / 2, at most 30000)
//!   max_deliveries=N       dead-letter an entry delivered more than N times (default 10; 0 = never)
//!   dlq=KEY                dead-letter stream (default <stream key>:dlq)
//!   group_heal_window_ms=N a NOGROUP within this time after a re-created group is permanent
//!                          (default 60000)
//!
//! Pub/Sub (at-most-once):
//!   channel=a[,b…]         SUBSCRIBE to these channels
//!   pattern=p*[,q*…]       PSUBSCRIBE to these patterns
//!
//! Both:
//!   connect_timeout_ms=N   TCP connect + TLS + AUTH/SELECT (default 5000)
//!   command_timeout_ms=N   every command except the blocking read (default 5000)
//!   tls_ca=PATH            rediss:// only: trust the CA certificates of this PEM file
//!                          instead of the system's roots
//!   tls_cert=PATH&tls_key=PATH   rediss:// only: a client certificate (mutual TLS,
//!                          `tls-auth-clients yes`)
//!   tls_server_name=NAME   rediss:// only: verify the certificate for NAME, not the host
//! ```
//!
//! `rediss://` uses TLS (rustls with the system's root certificates). A URL has either
//! `stream` or `channel`/`pattern`, never both. Query values are percent-decoded (`+` is a
//! space). Errors name the wrong part and never contain the password.

use std::time::Duration;

use reader_core::{ReadError, StreamId};

/// The default port of Redis.
pub const DEFAULT_PORT: u16 = 6379;

pub use reader_core::Secret;

/// Where a consumer group starts when this reader creates it (`XGROUP CREATE … <id>`).
/// Ignored when the group exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StartId {
    /// `$`: only entries added after the group was created (default).
    #[default]
    New,
    /// `0`: the whole stream.
    Beginning,
    /// After this entry ID.
    After(StreamId),
}

impl StartId {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "$" => Ok(Self::New),
            "0" | "0-0" => Ok(Self::Beginning),
            id => StreamId::parse(id).map(Self::After),
        }
    }

    /// The ID argument of `XGROUP CREATE`.
    #[must_use]
    pub fn as_arg(&self) -> String {
        match self {
            Self::New => "$".into(),
            Self::Beginning => "0".into(),
            Self::After(id) => id.to_string(),
        }
    }
}

/// Settings of a Streams (consumer group) reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamsConfig {
    /// The stream keys.
    pub keys: Vec<String>,
    /// The consumer group.
    pub group: String,
    /// This consumer's name in the group.
    pub consumer: String,
    /// Where a group this reader creates starts.
    pub start: StartId,
    /// Most entries asked for by one `XREADGROUP`.
    pub count: u64,
    /// Longest `BLOCK` of one `XREADGROUP`.
    pub block: Duration,
    /// Entries pending (in any consumer of the group, this one included) for longer than
    /// this are claimed with `XAUTOCLAIM` and delivered again. `None`: never claim.
    pub claim_idle: Option<Duration>,
    /// How often to look for idle pending entries.
    pub claim_interval: Duration,
    /// An entry delivered more than this many times is moved to the dead-letter stream.
    /// `None`: never.
    pub max_deliveries: Option<u64>,
    /// The dead-letter stream for all keys; `None`: `<key>:dlq` per key.
    pub dlq: Option<String>,
    /// A `NOGROUP` within this time of the last re-creation of the group is permanent.
    pub heal_window: Duration,
}

impl StreamsConfig {
    /// The dead-letter stream of `key`.
    #[must_use]
    pub fn dlq_for(&self, key: &str) -> String {
        self.dlq.clone().unwrap_or_else(|| format!("{key}:dlq"))
    }
}

/// Settings of a Pub/Sub reader.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PubSubConfig {
    /// `SUBSCRIBE` channels.
    pub channels: Vec<String>,
    /// `PSUBSCRIBE` patterns.
    pub patterns: Vec<String>,
}

/// What is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Streams in a consumer group (at-least-once).
    Streams(StreamsConfig),
    /// Pub/Sub channels and patterns (at-most-once).
    PubSub(PubSubConfig),
}

/// Everything a [`RedisConnector`](crate::RedisConnector) needs. Build with
/// [`RedisConfig::from_url`] or [`RedisConfig::builder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// TLS (`rediss://`).
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// ACL user name.
    pub username: Option<String>,
    /// Password (never printed).
    pub password: Option<Secret>,
    /// Database number (`SELECT`).
    pub db: Option<u8>,
    /// Bound of connecting (TCP, TLS, AUTH, SELECT).
    pub connect_timeout: Duration,
    /// Bound of every command but the blocking read.
    pub command_timeout: Duration,
    /// With TLS: what to trust and how to identify (CA file, client certificate, server
    /// name override); see [`reader_core::tls`].
    pub tls_options: reader_core::tls::TlsOptions,
    /// What is read.
    pub mode: Mode,
}

use reader_core::urltext::percent_decode;

/// The URL with the password replaced by `***` (for messages and logs).
#[must_use]
pub fn redact_url(url: &str) -> String {
    reader_core::urltext::redact_url(
        url,
        reader_core::urltext::RedactRules {
            bare_userinfo_is_secret: true,
            secret_params: &[],
        },
    )
}

fn default_consumer() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "host".to_owned());
    format!("{host}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn number(name: &str, value: &str) -> Result<u64, ReadError> {
    value.parse::<u64>().map_err(|_| {
        ReadError::config(format!(
            "redis URL: query parameter `{name}`: {value:?} is not a non-negative integer"
        ))
    })
}

impl RedisConfig {
    /// Start building a configuration for `host:port` in code.
    pub fn builder(host: impl Into<String>, port: u16) -> RedisConfigBuilder {
        RedisConfigBuilder {
            cfg: RedisConfig {
                tls: false,
                host: host.into(),
                port,
                username: None,
                password: None,
                db: None,
                connect_timeout: Duration::from_secs(5),
                command_timeout: Duration::from_secs(5),
                tls_options: reader_core::tls::TlsOptions::default(),
                mode: Mode::PubSub(PubSubConfig::default()),
            },
            streams: None,
            pubsub: PubSubConfig::default(),
        }
    }

    /// Parse a URL; see the [module docs](self) for the grammar.
    ///
    /// # Errors
    /// A configuration error naming the wrong part; never containing the password.
    pub fn from_url(url: &str) -> Result<Self, ReadError> {
        let shown = redact_url(url);
        let parsed = url::Url::parse(url)
            .map_err(|e| ReadError::config(format!("redis URL {shown}: not a URL ({e})")))?;
        let tls = match parsed.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                return Err(ReadError::config(format!(
                    "redis URL {shown}: scheme `{other}` is not redis:// or rediss://"
                )))
            }
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| ReadError::config(format!("redis URL {shown}: no host")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = parsed.port().unwrap_or(DEFAULT_PORT);
        let mut b = Self::builder(host, port).tls(tls);
        if !parsed.username().is_empty() {
            let user = percent_decode(parsed.username()).map_err(|e| {
                ReadError::config(format!("redis URL {shown}: the user name has {e}"))
            })?;
            b = b.username(user);
        }
        if let Some(pw) = parsed.password() {
            let pw = percent_decode(pw).map_err(|e| {
                ReadError::config(format!("redis URL {shown}: the password has {e}"))
            })?;
            b = b.password(pw);
        }
        let path = parsed.path().trim_matches('/');
        if !path.is_empty() {
            let db = path.parse::<u8>().map_err(|_| {
                ReadError::config(format!(
                    "redis URL {shown}: path `/{path}` is not a database number (0-255)"
                ))
            })?;
            b = b.db(db);
        }
        let mut streams: Option<(Vec<String>, Option<String>)> = None;
        let mut group = None;
        let mut pubsub = PubSubConfig::default();
        let mut s = StreamOptions::default();
        for (k, v) in parsed.query_pairs() {
            let (k, v) = (k.as_ref(), v.as_ref());
            match k {
                "stream" => {
                    let keys = list(v);
                    if keys.is_empty() {
                        return Err(ReadError::config(format!(
                            "redis URL {shown}: query parameter `stream` names no key"
                        )));
                    }
                    streams
                        .get_or_insert_with(|| (Vec::new(), None))
                        .0
                        .extend(keys);
                }
                "group" => group = Some(v.to_owned()),
                "consumer" => s.consumer = Some(v.to_owned()),
                "start" => {
                    s.start = Some(StartId::parse(v).map_err(|e| {
                        ReadError::config(format!(
                            "redis URL {shown}: query parameter `start` must be $, 0 or an entry ID: {e}"
                        ))
                    })?);
                }
                "count" => s.count = Some(number(k, v)?),
                "block_ms" => s.block = Some(Duration::from_millis(number(k, v)?)),
                "claim_idle_ms" => s.claim_idle = Some(number(k, v)?),
                "claim_interval_ms" => {
                    s.claim_interval = Some(Duration::from_millis(number(k, v)?));
                }
                "max_deliveries" => s.max_deliveries = Some(number(k, v)?),
                "dlq" => s.dlq = Some(v.to_owned()),
                "group_heal_window_ms" => {
                    s.heal_window = Some(Duration::from_millis(number(k, v)?));
                }
                "channel" => pubsub.channels.extend(list(v)),
                "pattern" => pubsub.patterns.extend(list(v)),
                "connect_timeout_ms" => {
                    b = b.connect_timeout(Duration::from_millis(number(k, v)?));
                }
                "command_timeout_ms" => {
                    b = b.command_timeout(Duration::from_millis(number(k, v)?));
                }
                "tls_ca" | "tls_cert" | "tls_key" | "tls_server_name" => {
                    b.cfg.tls_options.set_url_option(k, v).map_err(|e| {
                        ReadError::config(format!("redis URL {shown}: {}", e.message()))
                    })?;
                }
                other => {
                    return Err(ReadError::config(format!(
                        "redis URL {shown}: unknown query parameter `{other}`"
                    )))
                }
            }
        }
        match (
            streams,
            pubsub.channels.is_empty() && pubsub.patterns.is_empty(),
        ) {
            (Some(_), false) => Err(ReadError::config(format!(
                "redis URL {shown}: `stream` and `channel`/`pattern` cannot be combined: \
                 read Streams or Pub/Sub, not both"
            ))),
            (None, true) => Err(ReadError::config(format!(
                "redis URL {shown}: nothing to read: give `stream=KEY&group=G` (Streams) or \
                 `channel=NAME` / `pattern=P*` (Pub/Sub)"
            ))),
            (None, false) => {
                if let Some(k) = s.any_set() {
                    return Err(ReadError::config(format!(
                        "redis URL {shown}: query parameter `{k}` applies to Streams, \
                         but this URL reads Pub/Sub"
                    )));
                }
                if group.is_some() {
                    return Err(ReadError::config(format!(
                        "redis URL {shown}: query parameter `group` applies to Streams, \
                         but this URL reads Pub/Sub"
                    )));
                }
                let mut b = b;
                for c in pubsub.channels {
                    b = b.channel(c);
                }
                for p in pubsub.patterns {
                    b = b.pattern(p);
                }
                b.build()
            }
            (Some((keys, _)), true) => {
                let group = group.ok_or_else(|| {
                    ReadError::config(format!(
                        "redis URL {shown}: `stream` needs a consumer group: add `group=NAME`"
                    ))
                })?;
                let mut b = b.streams(keys, group);
                if let Some(c) = s.consumer {
                    b = b.consumer(c);
                }
                if let Some(v) = s.start {
                    b = b.start(v);
                }
                if let Some(v) = s.count {
                    b = b.count(v);
                }
                if let Some(v) = s.block {
                    b = b.block(v);
                }
                if let Some(v) = s.claim_idle {
                    b = b.claim_idle((v > 0).then(|| Duration::from_millis(v)));
                }
                if let Some(v) = s.claim_interval {
                    b = b.claim_interval(v);
                }
                if let Some(v) = s.max_deliveries {
                    b = b.max_deliveries((v > 0).then_some(v));
                }
                if let Some(v) = s.dlq {
                    b = b.dlq(v);
                }
                if let Some(v) = s.heal_window {
                    b = b.group_heal_window(v);
                }
                b.build()
            }
        }
    }

    /// A description with the password redacted, e.g.
    /// `redis://127.0.0.1:6379/0 streams [orders] group billing consumer c1`.
    #[must_use]
    pub fn describe(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (Some(u), None) => format!("{u}@"),
            (None, Some(_)) => ":***@".to_owned(),
            (None, None) => String::new(),
        };
        let db = self.db.map_or_else(String::new, |d| format!("/{d}"));
        let what = match &self.mode {
            Mode::Streams(s) => format!(
                "streams [{}] group {} consumer {}",
                s.keys.join(","),
                s.group,
                s.consumer
            ),
            Mode::PubSub(p) => format!(
                "pubsub channels [{}] patterns [{}]",
                p.channels.join(","),
                p.patterns.join(",")
            ),
        };
        format!("{scheme}://{auth}{}:{}{db} {what}", self.host, self.port)
    }

    /// Check that the settings fit together.
    ///
    /// # Errors
    /// A configuration error naming the offending option.
    pub fn validate(&self) -> Result<(), ReadError> {
        if self.host.is_empty() {
            return Err(ReadError::config("redis: option `host` is empty"));
        }
        if self.port == 0 {
            return Err(ReadError::config("redis: option `port` must not be 0"));
        }
        if self.connect_timeout.is_zero() {
            return Err(ReadError::config(
                "redis: option `connect_timeout` must be more than 0 (a dead server would hang)",
            ));
        }
        if self.tls_options.is_set() && !self.tls {
            return Err(ReadError::config(
                "redis: options `tls_ca`/`tls_cert`/`tls_key`/`tls_server_name` need TLS (rediss://); `tls_ca` needs TLS",
            ));
        }
        self.tls_options.validate("redis")?;
        if self.command_timeout.is_zero() {
            return Err(ReadError::config(
                "redis: option `command_timeout` must be more than 0 (a dead server would hang)",
            ));
        }
        match &self.mode {
            Mode::Streams(s) => {
                if s.keys.is_empty() {
                    return Err(ReadError::config("redis: option `stream` names no key"));
                }
                if s.keys.iter().any(String::is_empty) {
                    return Err(ReadError::config("redis: option `stream` has an empty key"));
                }
                if s.group.is_empty() {
                    return Err(ReadError::config("redis: option `group` is empty"));
                }
                if s.consumer.is_empty() {
                    return Err(ReadError::config("redis: option `consumer` is empty"));
                }
                if s.count == 0 {
                    return Err(ReadError::config(
                        "redis: option `count` must be at least 1",
                    ));
                }
                if s.block.is_zero() {
                    return Err(ReadError::config(
                        "redis: option `block_ms` must be at least 1 (0 would block forever)",
                    ));
                }
                if s.claim_idle.is_some() && s.claim_interval.is_zero() {
                    return Err(ReadError::config(
                        "redis: option `claim_interval_ms` must be at least 1",
                    ));
                }
                if s.dlq.as_deref() == Some("") {
                    return Err(ReadError::config("redis: option `dlq` is empty"));
                }
                if let Some(dlq) = &s.dlq {
                    if s.keys.contains(dlq) {
                        return Err(ReadError::config(format!(
                            "redis: option `dlq`: {dlq:?} is also a stream being read"
                        )));
                    }
                }
            }
            Mode::PubSub(p) => {
                if p.channels.is_empty() && p.patterns.is_empty() {
                    return Err(ReadError::config(
                        "redis: Pub/Sub needs at least one `channel` or `pattern`",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The Streams settings, when this reads Streams.
    #[must_use]
    pub fn streams(&self) -> Option<&StreamsConfig> {
        match &self.mode {
            Mode::Streams(s) => Some(s),
            Mode::PubSub(_) => None,
        }
    }
}

#[derive(Default)]
struct StreamOptions {
    consumer: Option<String>,
    start: Option<StartId>,
    count: Option<u64>,
    block: Option<Duration>,
    claim_idle: Option<u64>,
    claim_interval: Option<Duration>,
    max_deliveries: Option<u64>,
    dlq: Option<String>,
    heal_window: Option<Duration>,
}

impl StreamOptions {
    fn any_set(&self) -> Option<&'static str> {
        [
            (self.consumer.is_some(), "consumer"),
            (self.start.is_some(), "start"),
            (self.count.is_some(), "count"),
            (self.block.is_some(), "block_ms"),
            (self.claim_idle.is_some(), "claim_idle_ms"),
            (self.claim_interval.is_some(), "claim_interval_ms"),
            (self.max_deliveries.is_some(), "max_deliveries"),
            (self.dlq.is_some(), "dlq"),
            (self.heal_window.is_some(), "group_heal_window_ms"),
        ]
        .into_iter()
        .find_map(|(set, name)| set.then_some(name))
    }
}

/// Builds a [`RedisConfig`] in code: `RedisConfig::builder(host, port)`, then either
/// [`streams`](Self::streams) or [`channel`](Self::channel)/[`pattern`](Self::pattern).
#[derive(Clone, Debug)]
#[must_use]
pub struct RedisConfigBuilder {
    cfg: RedisConfig,
    streams: Option<StreamsConfig>,
    pubsub: PubSubConfig,
}

impl RedisConfigBuilder {
    /// Use TLS.
    pub fn tls(mut self, on: bool) -> Self {
        self.cfg.tls = on;
        self
    }
    /// ACL user name.
    pub fn username(mut self, user: impl Into<String>) -> Self {
        self.cfg.username = Some(user.into());
        self
    }
    /// Password.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.cfg.password = Some(Secret::new(password));
        self
    }
    /// Database number.
    pub fn db(mut self, db: u8) -> Self {
        self.cfg.db = Some(db);
        self
    }
    /// Bound of connecting.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.cfg.connect_timeout = d;
        self
    }
    /// Bound of every command but the blocking read.
    pub fn command_timeout(mut self, d: Duration) -> Self {
        self.cfg.command_timeout = d;
        self
    }
    /// Trust the CA certificates of this PEM file (TLS) instead of the system's roots.
    pub fn tls_ca(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.cfg.tls_options.ca_file = Some(path.into());
        self
    }
    /// All TLS options at once (CA file, client certificate and key, server name).
    pub fn tls_options(mut self, options: reader_core::tls::TlsOptions) -> Self {
        self.cfg.tls_options = options;
        self
    }
    /// Read these stream keys in consumer group `group` (at-least-once).
    pub fn streams<I, S>(mut self, keys: I, group: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let claim_idle = Duration::from_secs(60);
        self.streams = Some(StreamsConfig {
            keys: keys.into_iter().map(Into::into).collect(),
            group: group.into(),
            consumer: default_consumer(),
            start: StartId::New,
            count: 512,
            block: Duration::from_secs(1),
            claim_idle: Some(claim_idle),
            claim_interval: Duration::from_secs(30),
            max_deliveries: Some(10),
            dlq: None,
            heal_window: Duration::from_secs(60),
        });
        self
    }
    fn s(&mut self) -> Option<&mut StreamsConfig> {
        self.streams.as_mut()
    }
    /// Consumer name (Streams).
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        if let Some(s) = self.s() {
            s.consumer = name.into();
        }
        self
    }
    /// Where a created group starts (Streams).
    pub fn start(mut self, start: StartId) -> Self {
        if let Some(s) = self.s() {
            s.start = start;
        }
        self
    }
    /// Most entries per read (Streams).
    pub fn count(mut self, n: u64) -> Self {
        if let Some(s) = self.s() {
            s.count = n;
        }
        self
    }
    /// Longest BLOCK (Streams).
    pub fn block(mut self, d: Duration) -> Self {
        if let Some(s) = self.s() {
            s.block = d;
        }
        self
    }
    /// Claim entries idle this long, `None` never (Streams). Also sets the claim interval to
    /// half of it (at most 30 s) unless [`claim_interval`](Self::claim_interval) follows.
    pub fn claim_idle(mut self, d: Option<Duration>) -> Self {
        if let Some(s) = self.s() {
            s.claim_idle = d;
            if let Some(d) = d {
                s.claim_interval = (d / 2).clamp(Duration::from_millis(1), Duration::from_secs(30));
            }
        }
        self
    }
    /// How often to look for idle entries (Streams).
    pub fn claim_interval(mut self, d: Duration) -> Self {
        if let Some(s) = self.s() {
            s.claim_interval = d;
        }
        self
    }
    /// Dead-letter after more than `n` deliveries, `None` never (Streams).
    pub fn max_deliveries(mut self, n: Option<u64>) -> Self {
        if let Some(s) = self.s() {
            s.max_deliveries = n;
        }
        self
    }
    /// The dead-letter stream for every key (Streams).
    pub fn dlq(mut self, key: impl Into<String>) -> Self {
        if let Some(s) = self.s() {
            s.dlq = Some(key.into());
        }
        self
    }
    /// See [`StreamsConfig::heal_window`].
    pub fn group_heal_window(mut self, d: Duration) -> Self {
        if let Some(s) = self.s() {
            s.heal_window = d;
        }
        self
    }
    /// SUBSCRIBE to `channel` (Pub/Sub).
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.pubsub.channels.push(channel.into());
        self
    }
    /// PSUBSCRIBE to `pattern` (Pub/Sub).
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.pubsub.patterns.push(pattern.into());
        self
    }

    /// The configuration.
    ///
    /// # Errors
    /// A configuration error naming the option that does not fit.
    pub fn build(self) -> Result<RedisConfig, ReadError> {
        let mut cfg = self.cfg;
        let pubsub_set = !(self.pubsub.channels.is_empty() && self.pubsub.patterns.is_empty());
        cfg.mode = match (self.streams, pubsub_set) {
            (Some(_), true) => {
                return Err(ReadError::config(
                    "redis: streams and channels/patterns cannot be combined in one reader",
                ))
            }
            (Some(s), false) => Mode::Streams(s),
            (None, _) => Mode::PubSub(self.pubsub),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(url: &str) -> String {
        RedisConfig::from_url(url).unwrap_err().to_string()
    }

    #[test]
    fn streams_url_parses_every_option() {
        let c = RedisConfig::from_url(
            "redis://alice:s3cr%40t@10.0.0.1:6380/2?stream=a,b&group=g&consumer=c1&start=0\
             &count=50&block_ms=200&claim_idle_ms=3000&max_deliveries=4&dlq=dead\
             &connect_timeout_ms=700&command_timeout_ms=900&group_heal_window_ms=5",
        )
        .unwrap();
        assert!(!c.tls);
        assert_eq!((c.host.as_str(), c.port, c.db), ("10.0.0.1", 6380, Some(2)));
        assert_eq!(c.username.as_deref(), Some("alice"));
        assert_eq!(c.password.as_ref().unwrap().expose(), "s3cr@t");
        assert_eq!(c.connect_timeout, Duration::from_millis(700));
        assert_eq!(c.command_timeout, Duration::from_millis(900));
        let s = c.streams().unwrap();
        assert_eq!(s.keys, ["a", "b"]);
        assert_eq!((s.group.as_str(), s.consumer.as_str()), ("g", "c1"));
        assert_eq!(s.start, StartId::Beginning);
        assert_eq!(s.count, 50);
        assert_eq!(s.block, Duration::from_millis(200));
        assert_eq!(s.claim_idle, Some(Duration::from_secs(3)));
        assert_eq!(s.claim_interval, Duration::from_millis(1500));
        assert_eq!(s.max_deliveries, Some(4));
        assert_eq!(s.dlq_for("a"), "dead");
        assert_eq!(s.heal_window, Duration::from_millis(5));
    }

    #[test]
    fn defaults_and_start_ids() {
        let c = RedisConfig::from_url("rediss://cache.example?stream=orders&group=g").unwrap();
        assert!(c.tls);
        assert_eq!(c.port, DEFAULT_PORT);
        let s = c.streams().unwrap();
        assert_eq!(s.start, StartId::New);
        assert_eq!(s.dlq_for("orders"), "orders:dlq");
        assert_eq!(s.max_deliveries, Some(10));
        assert_eq!(s.claim_idle, Some(Duration::from_secs(60)));
        assert!(s.consumer.contains(&std::process::id().to_string()));
        let c = RedisConfig::from_url(
            "redis://h?stream=k&group=g&start=17-3&claim_idle_ms=0&max_deliveries=0",
        )
        .unwrap();
        let s = c.streams().unwrap();
        assert_eq!(s.start, StartId::After(StreamId { ms: 17, seq: 3 }));
        assert_eq!(s.start.as_arg(), "17-3");
        assert_eq!(s.claim_idle, None);
        assert_eq!(s.max_deliveries, None);
    }

    #[test]
    fn pubsub_url() {
        let c = RedisConfig::from_url("redis://h:1/?channel=a,b&pattern=news.*").unwrap();
        match &c.mode {
            Mode::PubSub(p) => {
                assert_eq!(p.channels, ["a", "b"]);
                assert_eq!(p.patterns, ["news.*"]);
            }
            Mode::Streams(_) => panic!("not pubsub"),
        }
        assert!(c
            .describe()
            .contains("pubsub channels [a,b] patterns [news.*]"));
    }

    #[test]
    fn errors_name_the_wrong_part_and_never_the_password() {
        let cases = [
            ("http://u:hunter22@h?stream=k&group=g", "scheme `http`"),
            ("redis://u:hunter22@h/x?stream=k&group=g", "path `/x`"),
            ("redis://u:hunter22@h?stream=k", "group=NAME"),
            (
                "redis://u:hunter22@h?stream=k&group=g&count=many",
                "`count`",
            ),
            (
                "redis://u:hunter22@h?stream=k&group=g&count=0",
                "`count` must be at least 1",
            ),
            ("redis://u:hunter22@h?stream=k&group=g&start=x-1", "`start`"),
            (
                "redis://u:hunter22@h?stream=k&group=g&bogus=1",
                "unknown query parameter `bogus`",
            ),
            (
                "redis://u:hunter22@h?stream=k&group=g&channel=c",
                "cannot be combined",
            ),
            ("redis://u:hunter22@h", "nothing to read"),
            (
                "redis://u:hunter22@h?channel=c&count=3",
                "`count` applies to Streams",
            ),
            (
                "redis://u:hunter22@h?stream=k&group=g&block_ms=0",
                "`block_ms`",
            ),
            ("redis://u:hunter22@h?stream=k&group=g&dlq=k", "`dlq`"),
            (
                "redis://u:hunter22@h?stream=k&group=g&command_timeout_ms=0",
                "`command_timeout`",
            ),
            ("redis://u:hunter22@h?stream=,&group=g", "names no key"),
            (
                "redis://u:hunter22@h?stream=k&group=g&tls_ca=/x.pem",
                "`tls_ca` needs TLS",
            ),
        ];
        for (url, want) in cases {
            let e = err(url);
            assert!(e.contains(want), "{url}: {e:?} should mention {want:?}");
            assert!(!e.contains("hunter22"), "{url}: password leaked in {e:?}");
            assert!(
                RedisConfig::from_url(url).unwrap_err().is_permanent(),
                "{url}: config errors are permanent"
            );
        }
    }

    #[test]
    fn debug_and_describe_redact_the_password() {
        let c =
            RedisConfig::from_url("redis://bob:hunter22@h?stream=k&group=g&consumer=me").unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter22"), "{dbg}");
        assert!(dbg.contains("***"), "{dbg}");
        assert_eq!(
            c.describe(),
            "redis://bob:***@h:6379 streams [k] group g consumer me"
        );
        assert_eq!(
            redact_url("redis://bob:hunter22@h:1/0?x=1"),
            "redis://bob:***@h:1/0?x=1"
        );
        assert_eq!(redact_url("redis://:hunter22@h"), "redis://:***@h");
    }

    #[test]
    fn builder_api() {
        let c = RedisConfig::builder("127.0.0.1", 7000)
            .password("pw")
            .streams(["s1"], "grp")
            .consumer("me")
            .count(10)
            .claim_idle(Some(Duration::from_millis(500)))
            .max_deliveries(Some(3))
            .build()
            .unwrap();
        let s = c.streams().unwrap();
        assert_eq!(s.claim_interval, Duration::from_millis(250));
        assert_eq!((s.count, s.max_deliveries), (10, Some(3)));
        let p = RedisConfig::builder("h", 1)
            .channel("c")
            .pattern("p*")
            .build()
            .unwrap();
        assert!(p.streams().is_none());
        let e = RedisConfig::builder("h", 1).build().unwrap_err();
        assert!(e.to_string().contains("at least one `channel`"), "{e}");
        let e = RedisConfig::builder("h", 1)
            .streams(["s"], "g")
            .channel("c")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("cannot be combined"), "{e}");
    }
}

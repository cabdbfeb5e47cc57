//! [`KafkaConfig`]: every setting of a Kafka reader, and the `kafka://` URL grammar.
//!
//! ```text
//! kafka://host:port[,host2:port]/topic[,topic2]?group=G
//!     [&auto_offset_reset=earliest|latest]      group: where to start without a committed offset
//!     [&assignor=range|roundrobin]              group: the assignor this member prefers
//!     [&session_timeout_ms=N][&rebalance_timeout_ms=N][&heartbeat_ms=N]
//!     [&commit_interval_ms=N]                   how long acks gather before one commit
//!     [&partitions=0,1,2]                       no group: explicit assignment (default: all)
//!     [&start=earliest|latest|offset:N|time:<unix ms>]  no group: start without a checkpoint
//!     [&client_id=..][&max_wait_ms=N][&fetch_max_bytes=N]
//!     [&request_timeout_ms=N][&topic_wait_ms=N][&revoke_grace_ms=N][&lag_per_partition=true]
//!     [&tls=true][&tls_ca=PEM][&tls_cert=PEM&tls_key=PEM][&tls_server_name=NAME]   TLS (rustls)
//!
//! kafka://USER:PASSWORD@host:port/topic?sasl=plain|scram-sha-256|scram-sha-512&…   SASL
//! ```
//!
//! TLS: `tls=true` (or the scheme `kafka+ssl://`) encrypts every connection (bootstrap, data, group coordinator), verifying
//! the brokers against the system's roots or `tls_ca`; `tls_cert`/`tls_key` add a client
//! certificate (mutual TLS); see [`reader_core::tls`]. SASL: user and password come from the
//! URL's user information (percent-encoded), the mechanism from `sasl`; both are needed.
//! `PLAIN` sends the password as it is: use it only with `tls=true`.

use std::fmt;
use std::time::Duration;

use reader_core::tls::TlsOptions;
use reader_core::{ReadError, Secret};

/// Where a group member starts reading a partition that has no committed offset (and where
/// any reader goes when its offset fell out of the log: `OFFSET_OUT_OF_RANGE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The oldest record still kept (the default here — unlike Kafka's `latest` — so that a
    /// new at-least-once reader does not skip what was written before its first join).
    #[default]
    Earliest,
    /// The next record written after the reset.
    Latest,
}

impl OffsetReset {
    /// The URL spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

/// A partition assignor: how the group leader splits partitions among members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AssignorKind {
    /// Kafka's `range`: per topic, consecutive partition ranges to members sorted by id.
    #[default]
    Range,
    /// Kafka's `roundrobin`: all partitions of all topics dealt to members in turn.
    RoundRobin,
}

impl AssignorKind {
    /// The protocol name in JoinGroup (the same as Java and librdkafka use).
    #[must_use]
    pub fn protocol_name(self) -> &'static str {
        match self {
            AssignorKind::Range => "range",
            AssignorKind::RoundRobin => "roundrobin",
        }
    }

    /// The assignor of a protocol name.
    #[must_use]
    pub fn from_protocol_name(name: &str) -> Option<Self> {
        match name {
            "range" => Some(AssignorKind::Range),
            "roundrobin" => Some(AssignorKind::RoundRobin),
            _ => None,
        }
    }
}

/// Where a reader without a group starts a partition it has no checkpoint for. Also the
/// target of a [`SeekHandle`](crate::SeekHandle) seek.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record still kept.
    Earliest,
    /// The next record written.
    Latest,
    /// This offset (the next record read has this offset).
    Offset(i64),
    /// The first record whose timestamp is at or after this many milliseconds since the Unix
    /// epoch (ListOffsets by timestamp); the end of the log when there is none.
    Timestamp(i64),
}

impl fmt::Display for StartAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartAt::Earliest => f.write_str("earliest"),
            StartAt::Latest => f.write_str("latest"),
            StartAt::Offset(o) => write!(f, "offset:{o}"),
            StartAt::Timestamp(t) => write!(f, "time:{t}"),
        }
    }
}

impl StartAt {
    /// Parse `earliest`, `latest`, `offset:N` or `time:<unix ms>`.
    ///
    /// # Errors
    /// A configuration error naming the `start` option.
    pub fn parse(s: &str) -> Result<Self, ReadError> {
        match s {
            "earliest" => return Ok(StartAt::Earliest),
            "latest" => return Ok(StartAt::Latest),
            _ => {}
        }
        let bad = || {
            ReadError::config(format!(
                "option `start`: {s:?} is not earliest, latest, offset:N or time:<unix ms>"
            ))
        };
        if let Some(n) = s.strip_prefix("offset:") {
            let n: i64 = n.parse().map_err(|_| bad())?;
            if n < 0 {
                return Err(bad());
            }
            return Ok(StartAt::Offset(n));
        }
        if let Some(n) = s.strip_prefix("time:") {
            let n: i64 = n.parse().map_err(|_| bad())?;
            if n < 0 {
                return Err(bad());
            }
            return Ok(StartAt::Timestamp(n));
        }
        Err(bad())
    }
}

/// A SASL mechanism (KIP-43 handshake, KIP-152 authenticate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN` (RFC 4616): the password travels as it is — only over TLS.
    Plain,
    /// `SCRAM-SHA-256` (RFC 7677).
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl SaslMechanism {
    /// The mechanism's name in the SASL handshake.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// Parse the URL spelling: `plain`, `scram-sha-256`, `scram-sha-512` (any case).
    ///
    /// # Errors
    /// A configuration error naming the `sasl` option.
    pub fn parse(s: &str) -> Result<Self, ReadError> {
        match s.to_ascii_lowercase().as_str() {
            "plain" => Ok(SaslMechanism::Plain),
            "scram-sha-256" => Ok(SaslMechanism::ScramSha256),
            "scram-sha-512" => Ok(SaslMechanism::ScramSha512),
            _ => Err(ReadError::config(format!(
                "option `sasl`: {s:?} is not plain, scram-sha-256 or scram-sha-512"
            ))),
        }
    }
}

/// SASL credentials. The password is a [`Secret`]: never printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslSettings {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: Secret,
}

/// Settings of a Kafka reader. Build one with [`KafkaConfig::new`] and set the public fields,
/// or parse a URL with [`KafkaConfig::from_url`]. Defaults are given per field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` (at least one).
    pub brokers: Vec<String>,
    /// Topics to read (at least one).
    pub topics: Vec<String>,
    /// The consumer group. `None`: no group — the partitions are assigned explicitly
    /// ([`KafkaConfig::partitions`]) and progress lives in the reader's `CheckpointStore`.
    pub group: Option<String>,
    /// Group: where to start without a committed offset, and (any mode) where to go on
    /// `OFFSET_OUT_OF_RANGE`. Default [`OffsetReset::Earliest`].
    pub auto_offset_reset: OffsetReset,
    /// Group: the assignor this member prefers (it offers both; the group picks one all
    /// members support). Default [`AssignorKind::Range`].
    pub assignor: AssignorKind,
    /// Group session timeout: a member silent this long is removed (default 10 s).
    pub session_timeout: Duration,
    /// How long the coordinator waits for all members to rejoin during a rebalance
    /// (default 30 s).
    pub rebalance_timeout: Duration,
    /// Time between heartbeats (default 3 s; must be below the session timeout).
    pub heartbeat_interval: Duration,
    /// How long acknowledgements gather before one offset commit (default 100 ms). Applied
    /// to the reader by [`KafkaConnector::reader_builder`](crate::KafkaConnector::reader_builder).
    pub commit_interval: Duration,
    /// No group: the partitions to read of every topic (default `None`: all of them).
    pub partitions: Option<Vec<i32>>,
    /// No group: where to start a partition without a checkpoint (default
    /// [`StartAt::Earliest`]).
    pub start: StartAt,
    /// The client id sent to the brokers (default `unireader`).
    pub client_id: String,
    /// Longest time a broker may hold a fetch waiting for records (default 500 ms; a fetch
    /// never waits longer than the reader asks).
    pub max_wait: Duration,
    /// Most bytes asked for per partition per fetch (default 1 MiB). Also bounds the
    /// records buffered per partition.
    pub fetch_max_bytes: i32,
    /// Bound of every request to a broker (default 5 s; JoinGroup gets the rebalance timeout
    /// on top). A broker that does not answer within it is presumed gone.
    pub request_timeout: Duration,
    /// How long a missing topic is treated as "maybe being created" (transient) before it
    /// becomes a permanent error (default 5 s).
    pub topic_wait: Duration,
    /// When the group starts rebalancing, how long the session keeps serving commits (and
    /// stops fetching) before it leaves to rejoin, so acknowledged offsets of partitions
    /// about to be revoked are committed by this member (default 500 ms).
    pub revoke_grace: Duration,
    /// Label the lag gauge per topic and partition (default false: one series per reader).
    pub lag_per_partition: bool,
    /// TLS to every broker (`tls=true`), with these options; `None`: plaintext (default).
    pub tls: Option<TlsOptions>,
    /// SASL authentication on every connection; `None`: none (default).
    pub sasl: Option<SaslSettings>,
}

impl KafkaConfig {
    /// A configuration with the defaults, reading `topics` through `brokers`.
    #[must_use]
    pub fn new(brokers: Vec<String>, topics: Vec<String>) -> Self {
        Self {
            brokers,
            topics,
            group: None,
            auto_offset_reset: OffsetReset::Earliest,
            assignor: AssignorKind::Range,
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(3),
            commit_interval: Duration::from_millis(100),
            partitions: None,
            start: StartAt::Earliest,
            client_id: "unireader".to_owned(),
            max_wait: Duration::from_millis(500),
            fetch_max_bytes: 1 << 20,
            request_timeout: Duration::from_secs(5),
            topic_wait: Duration::from_secs(5),
            revoke_grace: Duration::from_millis(500),
            lag_per_partition: false,
            tls: None,
            sasl: None,
        }
    }

    /// Set the consumer group.
    #[must_use]
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Parse a `kafka://` URL (see the module docs for the grammar) and validate it.
    ///
    /// # Errors
    /// A configuration error naming the offending URL part or option.
    pub fn from_url(url: &str) -> Result<Self, ReadError> {
        let (rest, tls_scheme) = if let Some(r) = url.strip_prefix("kafka://") {
            (r, false)
        } else if let Some(r) = url
            .strip_prefix("kafka+ssl://")
            .or_else(|| url.strip_prefix("kafka+tls://"))
        {
            (r, true)
        } else {
            return Err(ReadError::config(format!(
                "URL scheme: expected kafka://host:port/topic (or kafka+ssl:// for TLS), got {:?}",
                redact(url)
            )));
        };
        let (before_query, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = before_query.split_once('/').ok_or_else(|| {
            ReadError::config("URL path: no topic given (kafka://host:port/topic)")
        })?;
        let (userinfo, authority) = match authority.rsplit_once('@') {
            Some((u, a)) => (Some(u), a),
            None => (None, authority),
        };
        let mut brokers = Vec::new();
        for b in authority.split(',') {
            brokers.push(parse_broker(b)?);
        }
        let mut topics = Vec::new();
        for t in path.split(',') {
            validate_topic(t)?;
            topics.push(t.to_owned());
        }
        let mut cfg = KafkaConfig::new(brokers, topics);
        let mut start_given = false;
        let mut tls_on = None;
        let mut tls = TlsOptions::default();
        let mut sasl = None;
        let mut seen = std::collections::HashSet::new();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let key = k.as_ref();
            if !seen.insert(key.to_owned()) {
                return Err(ReadError::config(format!(
                    "option `{key}` is given more than once"
                )));
            }
            let v = v.as_ref();
            if tls.set_url_option(key, v)? {
                continue;
            }
            match key {
                "tls" => {
                    tls_on = Some(match v {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => {
                            return Err(ReadError::config(format!(
                                "option `tls`: {v:?} is not true or false"
                            )))
                        }
                    });
                }
                "sasl" => sasl = Some(SaslMechanism::parse(v)?),
                "group" => {
                    if v.is_empty() {
                        return Err(ReadError::config("option `group` is empty"));
                    }
                    cfg.group = Some(v.to_owned());
                }
                "auto_offset_reset" => {
                    cfg.auto_offset_reset = match v {
                        "earliest" => OffsetReset::Earliest,
                        "latest" => OffsetReset::Latest,
                        _ => {
                            return Err(ReadError::config(format!(
                                "option `auto_offset_reset`: {v:?} is not earliest or latest"
                            )))
                        }
                    }
                }
                "assignor" => {
                    cfg.assignor = AssignorKind::from_protocol_name(v).ok_or_else(|| {
                        ReadError::config(format!(
                            "option `assignor`: {v:?} is not range or roundrobin"
                        ))
                    })?;
                }
                "session_timeout_ms" => cfg.session_timeout = millis(key, v, 1)?,
                "rebalance_timeout_ms" => cfg.rebalance_timeout = millis(key, v, 1)?,
                "heartbeat_ms" => cfg.heartbeat_interval = millis(key, v, 1)?,
                "commit_interval_ms" => cfg.commit_interval = millis(key, v, 0)?,
                "max_wait_ms" => cfg.max_wait = millis(key, v, 0)?,
                "request_timeout_ms" => cfg.request_timeout = millis(key, v, 1)?,
                "topic_wait_ms" => cfg.topic_wait = millis(key, v, 0)?,
                "revoke_grace_ms" => cfg.revoke_grace = millis(key, v, 0)?,
                "fetch_max_bytes" => {
                    cfg.fetch_max_bytes = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        ReadError::config(format!(
                            "option `fetch_max_bytes`: {v:?} is not a number from 1 to {}",
                            i32::MAX
                        ))
                    })?;
                }
                "partitions" => {
                    let mut ps = Vec::new();
                    for p in v.split(',') {
                        let n: i32 = p.trim().parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
                            ReadError::config(format!(
                                "option `partitions`: {p:?} is not a partition number"
                            ))
                        })?;
                        if !ps.contains(&n) {
                            ps.push(n);
                        }
                    }
                    cfg.partitions = Some(ps);
                }
                "start" => {
                    cfg.start = StartAt::parse(v)?;
                    start_given = true;
                }
                "client_id" => {
                    if v.is_empty() {
                        return Err(ReadError::config("option `client_id` is empty"));
                    }
                    cfg.client_id = v.to_owned();
                }
                "lag_per_partition" => {
                    cfg.lag_per_partition = match v {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => {
                            return Err(ReadError::config(format!(
                                "option `lag_per_partition`: {v:?} is not true or false"
                            )))
                        }
                    }
                }
                other => {
                    return Err(ReadError::config(format!(
                        "unknown option `{other}` in the kafka:// URL (known: group, auto_offset_reset, assignor, session_timeout_ms, rebalance_timeout_ms, heartbeat_ms, commit_interval_ms, partitions, start, client_id, max_wait_ms, fetch_max_bytes, request_timeout_ms, topic_wait_ms, revoke_grace_ms, lag_per_partition, tls, tls_ca, tls_cert, tls_key, tls_server_name, sasl)"
                    )))
                }
            }
        }
        if tls_scheme {
            if tls_on == Some(false) {
                return Err(ReadError::config(
                    "option `tls=false` contradicts the kafka+ssl:// scheme",
                ));
            }
            tls_on = Some(true);
        }
        match (tls_on, tls.is_set()) {
            (Some(true), _) => cfg.tls = Some(tls),
            (_, true) => {
                return Err(ReadError::config(
                    "options `tls_ca`/`tls_cert`/`tls_key`/`tls_server_name` need `tls=true`",
                ))
            }
            _ => {}
        }
        cfg.sasl = match (userinfo, sasl) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ReadError::config(
                    "URL credentials: a user and password need the SASL mechanism: add `sasl=scram-sha-512` (or scram-sha-256, plain)",
                ))
            }
            (None, Some(_)) => {
                return Err(ReadError::config(
                    "option `sasl` needs a user and password in the URL: kafka://USER:PASSWORD@host:port/topic",
                ))
            }
            (Some(u), Some(mechanism)) => {
                let (user, pass) = u.split_once(':').ok_or_else(|| {
                    ReadError::config(
                        "URL credentials: expected USER:PASSWORD before the @ (the password is missing)",
                    )
                })?;
                let username = reader_core::urltext::percent_decode(user).map_err(|e| {
                    ReadError::config(format!("URL credentials: the user name: {e}"))
                })?;
                let password = reader_core::urltext::percent_decode(pass).map_err(|_| {
                    ReadError::config("URL credentials: the password is not valid percent-encoding")
                })?;
                Some(SaslSettings {
                    mechanism,
                    username,
                    password: Secret::new(password),
                })
            }
        };
        if cfg.group.is_some() && start_given {
            return Err(ReadError::config(
                "option `start` applies only without `group`; a group starts from its committed offsets, else from `auto_offset_reset`",
            ));
        }
        if cfg.group.is_none() {
            for key in [
                "auto_offset_reset",
                "assignor",
                "session_timeout_ms",
                "rebalance_timeout_ms",
                "heartbeat_ms",
                "revoke_grace_ms",
            ] {
                if key != "auto_offset_reset" && seen.contains(key) {
                    return Err(ReadError::config(format!(
                        "option `{key}` applies only with `group`"
                    )));
                }
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check the settings fit together.
    ///
    /// # Errors
    /// A configuration error naming the offending option.
    pub fn validate(&self) -> Result<(), ReadError> {
        if self.brokers.is_empty() {
            return Err(ReadError::config("no broker given"));
        }
        for b in &self.brokers {
            parse_broker(b)?;
        }
        if self.topics.is_empty() {
            return Err(ReadError::config("no topic given"));
        }
        for t in &self.topics {
            validate_topic(t)?;
        }
        if self.group.is_some() {
            if self.partitions.is_some() {
                return Err(ReadError::config(
                    "option `partitions` applies only without `group` (a group assigns partitions itself)",
                ));
            }
            if self.heartbeat_interval >= self.session_timeout {
                return Err(ReadError::config(format!(
                    "option `heartbeat_ms` ({} ms) must be below `session_timeout_ms` ({} ms)",
                    self.heartbeat_interval.as_millis(),
                    self.session_timeout.as_millis()
                )));
            }
            for (name, d) in [
                ("session_timeout_ms", self.session_timeout),
                ("rebalance_timeout_ms", self.rebalance_timeout),
            ] {
                if d.as_millis() > i32::MAX as u128 || d.is_zero() {
                    return Err(ReadError::config(format!(
                        "option `{name}` must be from 1 to {} ms",
                        i32::MAX
                    )));
                }
            }
        }
        if let Some(ps) = &self.partitions {
            if ps.is_empty() {
                return Err(ReadError::config("option `partitions` is empty"));
            }
        }
        if self.max_wait.as_millis() > i32::MAX as u128 {
            return Err(ReadError::config("option `max_wait_ms` is too large"));
        }
        if self.fetch_max_bytes < 1 {
            return Err(ReadError::config(
                "option `fetch_max_bytes` must be at least 1",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(ReadError::config(
                "option `request_timeout_ms` must be at least 1",
            ));
        }
        if self.client_id.is_empty() {
            return Err(ReadError::config("option `client_id` is empty"));
        }
        if let Some(t) = &self.tls {
            t.validate("kafka")?;
        }
        if let Some(s) = &self.sasl {
            if s.username.is_empty() {
                return Err(ReadError::config("URL credentials: the user name is empty"));
            }
            if s.password.expose().is_empty() {
                return Err(ReadError::config("URL credentials: the password is empty"));
            }
        }
        Ok(())
    }

    /// `kafka://brokers/topics?group=…` with the settings that identify the reader (never
    /// the SASL password).
    #[must_use]
    pub fn describe(&self) -> String {
        let mut s = format!(
            "kafka://{}/{}",
            self.brokers.join(","),
            self.topics.join(",")
        );
        match &self.group {
            Some(g) => s.push_str(&format!("?group={g}")),
            None => {
                s.push_str(&format!("?start={}", self.start));
                if let Some(ps) = &self.partitions {
                    let ps: Vec<String> = ps.iter().map(ToString::to_string).collect();
                    s.push_str(&format!("&partitions={}", ps.join(",")));
                }
            }
        }
        if self.tls.is_some() {
            s.push_str("&tls=true");
        }
        if let Some(sasl) = &self.sasl {
            s.push_str(&format!(
                "&sasl={}",
                sasl.mechanism.name().to_ascii_lowercase()
            ));
        }
        s
    }
}

fn millis(key: &str, v: &str, min: u64) -> Result<Duration, ReadError> {
    let n: u64 = v.parse().ok().filter(|n| *n >= min).ok_or_else(|| {
        ReadError::config(format!(
            "option `{key}`: {v:?} is not a number of milliseconds (at least {min})"
        ))
    })?;
    if n > i32::MAX as u64 {
        return Err(ReadError::config(format!(
            "option `{key}`: {n} is too large (at most {} ms)",
            i32::MAX
        )));
    }
    Ok(Duration::from_millis(n))
}

fn parse_broker(b: &str) -> Result<String, ReadError> {
    let b = b.trim();
    let bad = |why: &str| ReadError::config(format!("URL host list: broker {b:?} {why}"));
    if b.is_empty() {
        return Err(bad("is empty"));
    }
    let (host, port) = b.rsplit_once(':').ok_or_else(|| bad("has no :port"))?;
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    let port: u16 = port.parse().map_err(|_| bad("has an invalid port"))?;
    if port == 0 {
        return Err(bad("has port 0"));
    }
    Ok(b.to_owned())
}

fn validate_topic(t: &str) -> Result<(), ReadError> {
    if t.is_empty() {
        return Err(ReadError::config("URL path: empty topic name"));
    }
    if t.len() > 249
        || t == "."
        || t == ".."
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(ReadError::config(format!(
            "URL path: {t:?} is not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-])"
        )));
    }
    Ok(())
}

/// Strip anything that looks like user information from a URL before it goes in a message.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_group_url_parses() {
        let c = KafkaConfig::from_url(
            "kafka://127.0.0.1:9092,b2:9093/orders,payments?group=billing&auto_offset_reset=latest&assignor=roundrobin&session_timeout_ms=6000&rebalance_timeout_ms=20000&heartbeat_ms=1000&commit_interval_ms=50&client_id=me&max_wait_ms=100&fetch_max_bytes=65536&lag_per_partition=true",
        )
        .unwrap();
        assert_eq!(c.brokers, vec!["127.0.0.1:9092", "b2:9093"]);
        assert_eq!(c.topics, vec!["orders", "payments"]);
        assert_eq!(c.group.as_deref(), Some("billing"));
        assert_eq!(c.auto_offset_reset, OffsetReset::Latest);
        assert_eq!(c.assignor, AssignorKind::RoundRobin);
        assert_eq!(c.session_timeout, Duration::from_secs(6));
        assert_eq!(c.rebalance_timeout, Duration::from_secs(20));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(c.commit_interval, Duration::from_millis(50));
        assert_eq!(c.client_id, "me");
        assert_eq!(c.max_wait, Duration::from_millis(100));
        assert_eq!(c.fetch_max_bytes, 65536);
        assert!(c.lag_per_partition);
        assert_eq!(
            c.describe(),
            "kafka://127.0.0.1:9092,b2:9093/orders,payments?group=billing"
        );
    }

    #[test]
    fn groupless_url_with_partitions_and_start() {
        let c = KafkaConfig::from_url("kafka://h:1/t?partitions=0,2,2&start=offset:42").unwrap();
        assert_eq!(c.group, None);
        assert_eq!(c.partitions, Some(vec![0, 2]));
        assert_eq!(c.start, StartAt::Offset(42));
        let c = KafkaConfig::from_url("kafka://h:1/t?start=time:1700000000000").unwrap();
        assert_eq!(c.start, StartAt::Timestamp(1_700_000_000_000));
        let c = KafkaConfig::from_url("kafka://h:1/t").unwrap();
        assert_eq!(c.start, StartAt::Earliest);
        assert_eq!(c.auto_offset_reset, OffsetReset::Earliest);
    }

    fn err(url: &str) -> String {
        KafkaConfig::from_url(url).unwrap_err().to_string()
    }

    #[test]
    fn bad_urls_name_the_offending_part() {
        assert!(err("redis://h:1/t").contains("URL scheme"));
        assert!(err("kafka://h:1").contains("no topic"));
        assert!(err("kafka://h/t").contains("no :port"));
        assert!(err("kafka://h:x/t").contains("invalid port"));
        assert!(err("kafka://h:1/bad topic").contains("not a valid Kafka topic"));
        assert!(err("kafka://h:1/t?grop=x").contains("unknown option `grop`"));
        assert!(err("kafka://h:1/t?group=g&partitions=1").contains("`partitions`"));
        assert!(err("kafka://h:1/t?group=g&start=earliest").contains("`start`"));
        assert!(err("kafka://h:1/t?assignor=range").contains("only with `group`"));
        assert!(err("kafka://h:1/t?group=g&assignor=sticky").contains("`assignor`"));
        assert!(err("kafka://h:1/t?start=offset:-1").contains("`start`"));
        assert!(err("kafka://h:1/t?partitions=a").contains("`partitions`"));
        assert!(
            err("kafka://h:1/t?group=g&heartbeat_ms=9000&session_timeout_ms=6000")
                .contains("below `session_timeout_ms`")
        );
        assert!(err("kafka://h:1/t?group=g&group=h").contains("more than once"));
        assert!(err("kafka://h:1/t?max_wait_ms=99999999999").contains("`max_wait_ms`"));
    }

    #[test]
    fn credentials_without_a_mechanism_are_rejected_and_never_echoed() {
        let e = err("kafka://user:s3cret@h:1/t");
        assert!(e.contains("`sasl=scram-sha-512`"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let c = KafkaConfig::from_url("kafka://user:s3cret@h:1/t?sasl=scram-sha-256").unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(
            c.describe(),
            "kafka://h:1/t?start=earliest&sasl=scram-sha-256"
        );
        let e = err("kafkas://user:s3cret@h:1/t");
        assert!(!e.contains("s3cret"), "{e}");
    }
}

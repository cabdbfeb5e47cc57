//! [`KafkaConnector`] (opens sessions) and [`KafkaReader`] (one session).
//!
//! * `connect` — an rskafka client (bootstrap + metadata), the topics checked, and (with a
//!   group) the group coordinator found and connected.
//! * `recover` — join the group and get this member's partitions (or take the explicit
//!   assignment), open one `PartitionClient` per partition, start each at its committed
//!   offset / checkpoint / reset policy, apply queued seeks.
//! * `fetch` — records of all assigned partitions (see [`crate::fetcher`]).
//! * `commit` — OffsetCommit (next offset = acknowledged + 1) for partitions this member
//!   owns, with its generation and member id. Without a group it does nothing: the core
//!   saves the positions in its `CheckpointStore`.
//! * A rebalance ends the session (after a short commit grace) with a transient
//!   `rebalance` error; the next session's `recover` rejoins with the same member id.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use reader_core::{
    Checkpoint, Connector, DataReader, DataReaderBuilder, ErrorKind, EventKind, EventSink, Lane,
    Message, Position, ReadError, Reader, SessionContext,
};
use rskafka::client::partition::UnknownTopicHandling;
use rskafka::client::{Client, ClientBuilder};
use rskafka::BackoffConfig;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::assignor::TopicPartitions;
use crate::classify::{classify_rskafka, code, unknown_topic};
use crate::config::{KafkaConfig, OffsetReset, SaslMechanism, StartAt};
use crate::connection::{Connection, Security};
use crate::fetcher::{resolve, FetchSettings, Fetcher, Part};
use crate::group::{self, GroupSignal, Signal};
use crate::offsets;
use crate::seek::{SeekHandle, SeekQueue};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// State that outlives sessions.
#[derive(Debug, Default)]
struct Shared {
    /// The member id the coordinator knows this reader by ("" before the first join).
    member_id: Mutex<String>,
    /// Rejoins after rebalances so far (see `group::join`: it goes in the subscription's
    /// user data so a rejoin's metadata differs from the previous join's).
    rejoins: Mutex<u64>,
    /// When a configured topic was first found missing (the creation wait).
    missing_since: Mutex<Option<Instant>>,
    seeks: Arc<SeekQueue>,
}

/// Reads Kafka topics, in a consumer group or from explicitly assigned partitions.
///
/// ```no_run
/// # async fn demo() -> Result<(), reader_core::ReadError> {
/// let connector = reader_kafka::KafkaConnector::from_url("kafka://127.0.0.1:9092/orders?group=billing")?;
/// let seek = connector.seek_handle();
/// # let _ = seek;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct KafkaConnector {
    cfg: Arc<KafkaConfig>,
    shared: Arc<Shared>,
    security: Security,
}

impl KafkaConnector {
    /// A connector for `cfg` (validated).
    ///
    /// # Errors
    /// A configuration error naming the offending setting.
    pub fn new(cfg: KafkaConfig) -> Result<Self, ReadError> {
        cfg.validate()?;
        // The certificate files are read once, here: a missing or broken file is a clear
        // configuration error before any connection is tried.
        let tls = match &cfg.tls {
            Some(t) => Some(t.client_config("kafka")?),
            None => None,
        };
        let security = Security {
            tls,
            sasl: cfg.sasl.clone(),
        };
        Ok(Self {
            cfg: Arc::new(cfg),
            shared: Arc::default(),
            security,
        })
    }

    /// Parse a `kafka://` URL (grammar: [`KafkaConfig::from_url`]).
    ///
    /// # Errors
    /// A configuration error naming the offending URL part or option.
    pub fn from_url(url: &str) -> Result<Self, ReadError> {
        Self::new(KafkaConfig::from_url(url)?)
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &KafkaConfig {
        &self.cfg
    }

    /// A handle to seek partitions, also while reading (see [`SeekHandle`]).
    #[must_use]
    pub fn seek_handle(&self) -> SeekHandle {
        SeekHandle {
            queue: self.shared.seeks.clone(),
        }
    }

    /// The member id this reader has in its group (empty before the first join or after
    /// leaving).
    #[must_use]
    pub fn member_id(&self) -> String {
        lock(&self.shared.member_id).clone()
    }

    /// A [`DataReader`] builder with this connector's commit interval applied (a retry
    /// policy must still be given).
    #[must_use]
    pub fn reader_builder(self) -> DataReaderBuilder<Self> {
        DataReader::builder(self)
    }

    /// Whether a missing `topic` is permanent by now; starts the creation wait.
    fn missing(&self, _topic: &str) -> bool {
        let mut g = lock(&self.shared.missing_since);
        let since = *g.get_or_insert_with(Instant::now);
        since.elapsed() >= self.cfg.topic_wait
    }

    async fn build_client(&self) -> Result<Client, ReadError> {
        let cfg = &self.cfg;
        // rskafka retries internally (leader moves, broken connections). Bound it well
        // inside one request timeout so the core's Reconnector stays the retry loop.
        let backoff = BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(250),
            base: 2.0,
            deadline: Some(cfg.request_timeout.min(Duration::from_secs(1))),
        };
        let mut builder = ClientBuilder::new(cfg.brokers.clone())
            .client_id(cfg.client_id.as_str())
            .backoff_config(backoff);
        if let Some(tls) = &self.security.tls {
            builder = builder.tls_config(tls.clone());
        }
        if let Some(s) = &self.security.sasl {
            use rskafka::client::{Credentials, SaslConfig};
            let c = Credentials::new(s.username.clone(), s.password.expose().to_owned());
            builder = builder.sasl_config(match s.mechanism {
                SaslMechanism::Plain => SaslConfig::Plain(c),
                SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(c),
                SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(c),
            });
        }
        let what = format!("bootstrap of {}", cfg.brokers.join(","));
        match tokio::time::timeout(cfg.request_timeout * 2, builder.build()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => {
                let e = classify_rskafka(&e, &what, false);
                // A SASL listener closes the connection on the first request that is not
                // ApiVersions or a login: say so, the cause is more often this than a crash.
                if self.security.sasl.is_none()
                    && !e.is_permanent()
                    && e.message().contains("early eof")
                {
                    return Err(ReadError::new(
                        e.class(),
                        e.kind(),
                        format!(
                            "{}; if the broker requires SASL, give USER:PASSWORD@ in the URL and option `sasl`",
                            e.message()
                        ),
                    ));
                }
                Err(e)
            }
            Err(_) => Err(ReadError::transient(
                ErrorKind::Timeout,
                format!(
                    "{what}: no answer within {:?}{}",
                    cfg.request_timeout * 2,
                    if self.security.tls.is_some() {
                        " (a plaintext listener never answers a TLS handshake: check the port and `tls=true`)"
                    } else {
                        ""
                    }
                ),
            )),
        }
    }

    async fn connect_any(&self) -> Result<Connection, ReadError> {
        let mut last = None;
        for b in &self.cfg.brokers {
            match Connection::connect(
                b,
                &self.security,
                &self.cfg.client_id,
                self.cfg.request_timeout,
            )
            .await
            {
                Ok(c) => return Ok(c),
                Err(e) if e.is_permanent() => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ReadError::config("no broker given")))
    }
}

/// The topics and their partitions, from a metadata request.
async fn list_topics(
    client: &Client,
    timeout: Duration,
) -> Result<BTreeMap<String, BTreeSet<i32>>, ReadError> {
    match tokio::time::timeout(timeout, client.list_topics()).await {
        Ok(Ok(ts)) => Ok(ts.into_iter().map(|t| (t.name, t.partitions)).collect()),
        Ok(Err(e)) => Err(classify_rskafka(&e, "Metadata request", false)),
        Err(_) => Err(ReadError::transient(
            ErrorKind::Timeout,
            format!("Metadata request got no answer within {timeout:?}"),
        )),
    }
}

#[async_trait]
impl Connector for KafkaConnector {
    type Reader = KafkaReader;

    fn backend(&self) -> &'static str {
        "kafka"
    }

    fn describe(&self) -> String {
        self.cfg.describe()
    }

    fn tune(&self, c: &mut reader_core::ReaderConfig) {
        c.commit_interval = self.cfg.commit_interval;
    }

    async fn connect(
        &self,
        ctx: &SessionContext,
        from: &Checkpoint,
    ) -> Result<KafkaReader, ReadError> {
        let cfg = &self.cfg;
        let client = self.build_client().await?;
        let metadata = list_topics(&client, cfg.request_timeout).await?;
        for t in &cfg.topics {
            if !metadata.contains_key(t) {
                return Err(unknown_topic(&format!("topic {t:?}"), self.missing(t)));
            }
        }
        if let Some(ps) = &cfg.partitions {
            for t in &cfg.topics {
                for p in ps {
                    if metadata.get(t).is_some_and(|have| !have.contains(p)) {
                        return Err(unknown_topic(
                            &format!("partition {p} of topic {t:?}"),
                            self.missing(t),
                        ));
                    }
                }
            }
        }
        *lock(&self.shared.missing_since) = None;
        let conn = match &cfg.group {
            Some(g) => {
                let bootstrap = self.connect_any().await?;
                let addr = group::find_coordinator(&bootstrap, g).await?;
                if addr == bootstrap.addr() {
                    bootstrap
                } else {
                    tracing::debug!(group = %g, coordinator = %addr, "group coordinator found");
                    Connection::connect(&addr, &self.security, &cfg.client_id, cfg.request_timeout)
                        .await?
                }
            }
            None => self.connect_any().await?,
        };
        Ok(KafkaReader {
            connector: self.clone(),
            source: ctx.source.clone(),
            events: ctx.events.clone(),
            session: ctx.session,
            client: Arc::new(client),
            conn: Arc::new(conn),
            metadata,
            from: from.clone(),
            membership: Mutex::new(None),
            signal: Arc::new(GroupSignal::default()),
            fetcher: tokio::sync::Mutex::new(Fetcher::new(Vec::new(), self.fetch_settings())),
            heartbeat: Mutex::new(None),
        })
    }
}

impl KafkaConnector {
    fn fetch_settings(&self) -> FetchSettings {
        FetchSettings {
            max_wait: self.cfg.max_wait,
            fetch_max_bytes: self.cfg.fetch_max_bytes,
            request_timeout: self.cfg.request_timeout,
            reset: self.cfg.auto_offset_reset,
        }
    }
}

/// This session's place in the group.
#[derive(Clone, Debug)]
struct Owned {
    generation: i32,
    member_id: String,
    parts: Vec<(Arc<str>, i32)>,
}

/// One session of a [`KafkaConnector`]. Created by the core; applications use
/// [`DataReader`].
pub struct KafkaReader {
    connector: KafkaConnector,
    source: Arc<str>,
    events: EventSink,
    session: u64,
    client: Arc<Client>,
    /// The group coordinator (with a group) or a bootstrap broker (without): pings, and the
    /// group APIs.
    conn: Arc<Connection>,
    metadata: BTreeMap<String, BTreeSet<i32>>,
    from: Checkpoint,
    membership: Mutex<Option<Owned>>,
    signal: Arc<GroupSignal>,
    fetcher: tokio::sync::Mutex<Fetcher>,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader")
            .field("source", &self.source)
            .field("session", &self.session)
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl Drop for KafkaReader {
    fn drop(&mut self) {
        if let Some(h) = lock(&self.heartbeat).take() {
            h.abort();
        }
    }
}

impl KafkaReader {
    fn cfg(&self) -> &KafkaConfig {
        &self.connector.cfg
    }

    /// Join the group; returns the assignment and the committed next offsets.
    async fn join_group(
        &self,
        group: &str,
    ) -> Result<(TopicPartitions, HashMap<(String, i32), i64>), ReadError> {
        let t0 = Instant::now();
        let mut member_id = lock(&self.connector.shared.member_id).clone();
        let client = self.client.clone();
        let timeout = self.cfg().request_timeout;
        let counts = |topics: Vec<String>| {
            let client = client.clone();
            async move {
                let all = list_topics(&client, timeout).await?;
                Ok(topics
                    .into_iter()
                    .filter_map(|t| {
                        let n = i32::try_from(all.get(&t)?.len()).ok()?;
                        Some((t, n))
                    })
                    .collect::<BTreeMap<String, i32>>())
            }
        };
        let mut rejoins = *lock(&self.connector.shared.rejoins);
        let joined = group::join(
            &self.conn,
            self.cfg(),
            group,
            &mut member_id,
            &mut rejoins,
            counts,
        )
        .await;
        *lock(&self.connector.shared.member_id) = member_id;
        *lock(&self.connector.shared.rejoins) = rejoins;
        let m = joined?;
        // Heartbeats start at once: the rest of recovery must not cost the membership.
        let hb = tokio::spawn(group::heartbeat_loop(
            self.conn.clone(),
            group.to_owned(),
            m.generation,
            m.member_id.clone(),
            self.cfg().heartbeat_interval,
            self.signal.clone(),
        ));
        if let Some(old) = lock(&self.heartbeat).replace(hb) {
            old.abort();
        }
        let mut assignment = m.assignment.clone();
        assignment.retain(|t, _| {
            let ours = self.cfg().topics.contains(t);
            if !ours {
                tracing::warn!(group, topic = %t, "the leader assigned a topic this member did not subscribe to; ignored");
            }
            ours
        });
        *lock(&self.membership) = Some(Owned {
            generation: m.generation,
            member_id: m.member_id.clone(),
            parts: group::flatten(&assignment)
                .into_iter()
                .map(|(t, p)| (Arc::from(t.as_str()), p))
                .collect(),
        });
        let committed = offsets::fetch_committed(&self.conn, group, &assignment).await?;
        let detail = format!(
            "group {group:?} generation {}: member {} ({}, assignor {}) owns {} — joined in {:?}",
            m.generation,
            m.member_id,
            if m.leader {
                format!("leader of {} members", m.members)
            } else {
                "follower".to_owned()
            },
            m.protocol.protocol_name(),
            group::describe_assignment(&assignment),
            t0.elapsed()
        );
        tracing::info!(source = %self.source, "{detail}");
        self.events.emit(EventKind::Rebalanced, None, detail);
        Ok((assignment, committed))
    }

    fn missing_permanent(&self) -> impl Fn(&str) -> bool + Send + Sync + '_ {
        move |t: &str| self.connector.missing(t)
    }

    /// Apply queued seeks to the partitions of `f`.
    async fn apply_seeks(&self, f: &mut Fetcher) -> Result<(), ReadError> {
        if self.connector.shared.seeks.is_empty() {
            return Ok(());
        }
        let owned = f.owned();
        for (i, to) in self.connector.shared.seeks.take_for(&owned) {
            let client = f.parts[i].client.clone();
            let (t, p) = &owned[i];
            let offset = resolve(
                &client,
                to,
                self.cfg().request_timeout,
                self.connector.missing(t),
            )
            .await?;
            tracing::info!(source = %self.source, topic = %t, partition = p, %to, offset, "seek applied");
            f.reposition(i, offset);
        }
        Ok(())
    }

    async fn on_signal(&self, sig: Signal, wait: Duration) -> Result<Vec<Message>, ReadError> {
        match sig {
            Signal::Failed(e) => Err(e),
            Signal::Rebalance { since } => {
                let grace = self.cfg().revoke_grace;
                let left = grace.saturating_sub(since.elapsed());
                if left.is_zero() {
                    let g = self.cfg().group.clone().unwrap_or_default();
                    return Err(group::rebalance_error(&g));
                }
                // Stop fetching; commits of what was acknowledged keep flowing meanwhile.
                tokio::time::sleep(left.min(wait)).await;
                Ok(Vec::new())
            }
        }
    }

    fn update_lag(&self, f: &Fetcher) {
        let labels = reader_core::metrics::labels(&self.source, "kafka");
        let lags = f.lags();
        let total: i64 = lags.iter().filter_map(|(_, _, l)| *l).sum();
        metrics::gauge!(reader_core::metrics::KAFKA_LAG, &labels).set(total as f64);
        if self.cfg().lag_per_partition {
            for (t, p, l) in lags {
                if let Some(l) = l {
                    metrics::gauge!(
                        reader_core::metrics::KAFKA_LAG,
                        "source" => self.source.to_string(),
                        "backend" => "kafka",
                        "topic" => t.to_string(),
                        "partition" => p.to_string()
                    )
                    .set(l as f64);
                }
            }
        }
    }
}

#[async_trait]
impl Reader for KafkaReader {
    async fn recover(&self) -> Result<(), ReadError> {
        let cfg = self.cfg().clone();
        // Which partitions, and where each starts.
        let (assignment, starts): (TopicPartitions, HashMap<(String, i32), StartAt>) = match &cfg
            .group
        {
            Some(g) => {
                let (assignment, committed) = self.join_group(g).await?;
                let reset = match cfg.auto_offset_reset {
                    OffsetReset::Earliest => StartAt::Earliest,
                    OffsetReset::Latest => StartAt::Latest,
                };
                let starts = group::flatten(&assignment)
                    .into_iter()
                    .map(|tp| {
                        // What this reader acknowledged (handled) beyond the group's
                        // committed offset — its commit died with the previous session —
                        // need not be read again: the larger of the two wins.
                        let lane = Lane::Partition(Arc::from(tp.0.as_str()), tp.1);
                        let acked = match self.from.get(&lane) {
                            Some(Position::Partition { offset, .. }) => Some(offset + 1),
                            _ => None,
                        };
                        let s = match (committed.get(&tp).copied(), acked) {
                            (Some(c), Some(a)) => StartAt::Offset(c.max(a)),
                            (Some(c), None) => StartAt::Offset(c),
                            (None, Some(a)) => StartAt::Offset(a),
                            (None, None) => reset,
                        };
                        (tp, s)
                    })
                    .collect();
                (assignment, starts)
            }
            None => {
                let mut assignment = TopicPartitions::new();
                for t in &cfg.topics {
                    let ps: Vec<i32> = match &cfg.partitions {
                        Some(ps) => ps.clone(),
                        None => self
                            .metadata
                            .get(t)
                            .map(|s| s.iter().copied().collect())
                            .unwrap_or_default(),
                    };
                    assignment.insert(t.clone(), ps);
                }
                let starts = group::flatten(&assignment)
                    .into_iter()
                    .map(|(t, p)| {
                        let lane = Lane::Partition(Arc::from(t.as_str()), p);
                        let s = match self.from.get(&lane) {
                            // The checkpoint holds the last committed record: start after it.
                            Some(Position::Partition { offset, .. }) => StartAt::Offset(offset + 1),
                            _ => cfg.start,
                        };
                        ((t, p), s)
                    })
                    .collect();
                (assignment, starts)
            }
        };
        // One PartitionClient per partition (each finds its leader).
        let opened =
            futures::future::join_all(group::flatten(&assignment).into_iter().map(|(t, p)| {
                let client = self.client.clone();
                let timeout = cfg.request_timeout;
                async move {
                    let what = format!("opening partition {t}/{p}");
                    let r = tokio::time::timeout(
                        timeout,
                        client.partition_client(t.clone(), p, UnknownTopicHandling::Error),
                    )
                    .await;
                    (t, p, what, r)
                }
            }))
            .await;
        let mut parts = Vec::with_capacity(opened.len());
        for (t, p, what, r) in opened {
            let pc = match r {
                Ok(Ok(pc)) => Arc::new(pc),
                Ok(Err(e)) => return Err(classify_rskafka(&e, &what, self.connector.missing(&t))),
                Err(_) => {
                    return Err(ReadError::transient(
                        ErrorKind::Timeout,
                        format!("{what}: no answer within {:?}", cfg.request_timeout),
                    ))
                }
            };
            let start = starts
                .get(&(t.clone(), p))
                .copied()
                .unwrap_or(StartAt::Earliest);
            let offset =
                resolve(&pc, start, cfg.request_timeout, self.connector.missing(&t)).await?;
            tracing::debug!(source = %self.source, topic = %t, partition = p, %start, offset, "partition starts");
            parts.push(Part {
                topic: Arc::from(t.as_str()),
                partition: p,
                client: pc,
                next: offset,
                delivered: offset,
                high_watermark: -1,
                buf: Default::default(),
                epoch: 0,
                inflight: false,
            });
        }
        let mut f = Fetcher::new(parts, self.connector.fetch_settings());
        self.apply_seeks(&mut f).await?;
        *self.fetcher.lock().await = f;
        Ok(())
    }

    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Message>, ReadError> {
        let notified = self.signal.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(sig) = self.signal.get() {
            return self.on_signal(sig, wait).await;
        }
        let mut f = self.fetcher.lock().await;
        self.apply_seeks(&mut f).await?;
        if !f.has_buffered() {
            let deadline = Instant::now() + wait;
            let missing = self.missing_permanent();
            let polled = tokio::select! {
                biased;
                () = &mut notified => None,
                r = f.poll(deadline, wait, &self.events, &missing) => Some(r),
            };
            match polled {
                None => {
                    drop(f);
                    return match self.signal.get() {
                        Some(sig) => self.on_signal(sig, wait).await,
                        None => Ok(Vec::new()),
                    };
                }
                Some(r) => r?,
            }
        }
        let out = f.take(max);
        self.update_lag(&f);
        Ok(out)
    }

    async fn commit(&self, positions: &[Position]) -> Result<(), ReadError> {
        let Some(group) = self.cfg().group.clone() else {
            // No group: the core keeps progress in its CheckpointStore.
            return Ok(());
        };
        let Some(owned) = lock(&self.membership).clone() else {
            return Err(ReadError::transient(
                ErrorKind::Server,
                "cannot commit: this session has not joined the group yet",
            ));
        };
        let mut next = Vec::new();
        for pos in positions {
            let Position::Partition {
                topic,
                partition,
                offset,
            } = pos
            else {
                continue;
            };
            if owned
                .parts
                .iter()
                .any(|(t, p)| t == topic && p == partition)
            {
                next.push((topic.clone(), *partition, offset + 1));
            } else {
                // Committing a partition another member owns now would overwrite its
                // progress: refuse, and say so.
                let detail = format!(
                    "{topic}/{partition}@{offset} acknowledged after the partition was revoked from this member (generation {}); not committed — its new owner resumes from the group's committed offset and may deliver it again",
                    owned.generation
                );
                tracing::warn!(source = %self.source, "{detail}");
                self.events
                    .emit(EventKind::CommitFailed, Some(pos.clone()), detail);
            }
        }
        if next.is_empty() {
            return Ok(());
        }
        match offsets::commit(
            &self.conn,
            &group,
            owned.generation,
            &owned.member_id,
            &next,
        )
        .await
        {
            Ok(()) => Ok(()),
            Err(ce) => {
                match ce.code {
                    Some(code::UNKNOWN_MEMBER_ID) => {
                        lock(&self.connector.shared.member_id).clear();
                        self.signal.raise(Signal::Failed(ce.error.clone()));
                    }
                    Some(c @ (code::REBALANCE_IN_PROGRESS | code::ILLEGAL_GENERATION)) => {
                        self.signal.raise(group::signal_for(c, "OffsetCommit"));
                    }
                    // The coordinator connection broke (or timed out): no commit can succeed
                    // in this session any more. End it now rather than at the next heartbeat:
                    // while fetches keep working (rskafka reconnects its own connections),
                    // every record delivered meanwhile would be acknowledged but never
                    // committed, and delivered again by the next session.
                    None if self.conn.is_broken() => {
                        self.signal.raise(Signal::Failed(ce.error.clone()));
                    }
                    // The coordinator moved or is loading (NOT_COORDINATOR,
                    // COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS): the next
                    // session finds it again. A permanent refusal (GROUP_AUTHORIZATION_FAILED…)
                    // must surface rather than be retried commit after commit.
                    Some(
                        code::COORDINATOR_LOAD_IN_PROGRESS
                        | code::COORDINATOR_NOT_AVAILABLE
                        | code::NOT_COORDINATOR,
                    ) => {
                        self.signal.raise(Signal::Failed(ce.error.clone()));
                    }
                    Some(_) if ce.error.is_permanent() => {
                        self.signal.raise(Signal::Failed(ce.error.clone()));
                    }
                    _ => {}
                }
                Err(ce.error)
            }
        }
    }

    async fn ping(&self) -> Result<Duration, ReadError> {
        self.conn.ping().await
    }

    /// Produce to `<topic>.dlq` (see the `dlq` module).
    async fn dead_letter(&self, message: &Message, reason: &str) -> Result<(), ReadError> {
        crate::dlq::write(&self.client, message, reason).await
    }

    async fn close(&self) {
        if let Some(h) = lock(&self.heartbeat).take() {
            h.abort();
        }
        let (Some(group), Some(owned)) = (self.cfg().group.clone(), lock(&self.membership).take())
        else {
            return;
        };
        let rejoining = matches!(self.signal.get(), Some(Signal::Rebalance { .. }));
        if rejoining {
            // The next join must carry changed metadata (see `group::join`).
            *lock(&self.connector.shared.rejoins) += 1;
        }
        if rejoining || self.conn.is_broken() {
            // Keep the member id: the next session rejoins as the same member, and the
            // coordinator does not wait out a session timeout for a ghost.
            tracing::debug!(source = %self.source, member = %owned.member_id, "session ends without LeaveGroup (rejoining)");
            return;
        }
        match group::leave(&self.conn, &group, &owned.member_id).await {
            Ok(()) => {
                tracing::info!(source = %self.source, group = %group, member = %owned.member_id, "left the group");
                lock(&self.connector.shared.member_id).clear();
            }
            Err(e) => {
                tracing::warn!(source = %self.source, group = %group, error = %e, "LeaveGroup failed; the coordinator removes this member after the session timeout");
            }
        }
    }
}

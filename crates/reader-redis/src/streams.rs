//! [`StreamsReader`]: one session of a consumer-group reader.
//!
//! Two connections per session: one only for the blocking `XREADGROUP` (so acknowledgements,
//! claims and pings never queue behind a `BLOCK`), one for everything else. Neither
//! reconnects by itself; when either dies the session fails and the Reconnector opens a new
//! one, whose [`recover`](reader_core::Reader::recover) re-creates the group if needed and
//! whose first fetches re-deliver this consumer's pending entries (`XREADGROUP … 0`) before
//! new ones (`>`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::prelude::*;
use fred::types::{ClusterHash, ConnectHandle, CustomCommand};
use reader_core::{
    ErrorKind, EventKind, Message, Position, ReadError, Reader, SessionContext, StreamId,
};
use tokio::time::Instant;

use crate::classify::{classify_fred_error, is_busygroup, is_nogroup};
use crate::client;
use crate::config::{RedisConfig, StreamsConfig};
use crate::entry::{self, Entry};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the connector remembers across the sessions of one reader.
#[derive(Debug, Default)]
pub(crate) struct StreamsMemory {
    /// When the group was last re-created after a `NOGROUP`.
    last_heal: Mutex<Option<Instant>>,
    /// The newest entry ID delivered per key: where a re-created group starts.
    last_seen: Mutex<HashMap<String, StreamId>>,
}

#[derive(Debug)]
struct ReadState {
    /// Per key: the cursor of the pending re-delivery (`XREADGROUP … <id>`), `None` once done.
    pending: Vec<Option<String>>,
    /// Per key: the `XAUTOCLAIM` cursor of the current claim pass.
    claim: Vec<String>,
    /// Keys whose claim pass is done.
    claim_done: Vec<bool>,
    next_claim: Instant,
    /// When the pending-entries gauge is refreshed next.
    next_gauge: Instant,
}

/// How often the `unireader_redis_pending_entries` gauge is refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// One session of a Streams reader. See the module docs.
pub struct StreamsReader {
    read: Client,
    read_task: ConnectHandle,
    ctl: Client,
    ctl_task: ConnectHandle,
    cfg: Arc<RedisConfig>,
    s: Arc<StreamsConfig>,
    keys: Vec<Arc<str>>,
    mem: Arc<StreamsMemory>,
    ctx: SessionContext,
    state: tokio::sync::Mutex<ReadState>,
}

impl std::fmt::Debug for StreamsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsReader")
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Drop for StreamsReader {
    fn drop(&mut self) {
        // Dropped without close: end fred's connection tasks (their sockets with them).
        self.read_task.abort();
        self.ctl_task.abort();
    }
}

impl StreamsReader {
    pub(crate) async fn open(
        cfg: Arc<RedisConfig>,
        s: Arc<StreamsConfig>,
        mem: Arc<StreamsMemory>,
        ctx: &SessionContext,
    ) -> Result<Self, ReadError> {
        let b = client::builder(&cfg)?;
        let read = b
            .build()
            .map_err(|e| classify_fred_error(&e, "building the redis client"))?;
        let ctl = b
            .build()
            .map_err(|e| classify_fred_error(&e, "building the redis client"))?;
        let read_task = client::connect(&read, &cfg, "the read connection").await?;
        let ctl_task = match client::connect(&ctl, &cfg, "the control connection").await {
            Ok(h) => h,
            Err(e) => {
                client::shutdown(&read, &read_task).await;
                return Err(e);
            }
        };
        let n = s.keys.len();
        let next_claim = Instant::now();
        Ok(Self {
            read,
            read_task,
            ctl,
            ctl_task,
            keys: s.keys.iter().map(|k| Arc::from(k.as_str())).collect(),
            cfg,
            s,
            mem,
            ctx: ctx.clone(),
            state: tokio::sync::Mutex::new(ReadState {
                pending: vec![Some("0".to_owned()); n],
                claim: vec!["0-0".to_owned(); n],
                claim_done: vec![false; n],
                next_claim,
                next_gauge: next_claim,
            }),
        })
    }

    fn alive(&self) -> Result<(), ReadError> {
        if self.read_task.is_finished() || self.ctl_task.is_finished() {
            return Err(ReadError::transient(
                ErrorKind::Connection,
                format!(
                    "the connection to redis {}:{} closed",
                    self.cfg.host, self.cfg.port
                ),
            ));
        }
        Ok(())
    }

    /// A classified error; a dead connection wins over whatever the command said.
    fn fail(&self, e: &fred::error::Error, what: &str) -> ReadError {
        if let Err(dead) = self.alive() {
            return dead;
        }
        classify_fred_error(e, what)
    }

    /// `XGROUP CREATE key group id MKSTREAM`; true when created, false when it existed.
    async fn create_group(&self, key: &str, id: &str) -> Result<bool, ReadError> {
        let r: Result<Value, _> = self
            .ctl
            .xgroup_create(key, self.s.group.as_str(), id, true)
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_busygroup(&e) => Ok(false),
            Err(e) => Err(self.fail(&e, &format!("XGROUP CREATE {key} {}", self.s.group))),
        }
    }

    /// Re-create the group after a `NOGROUP` — once; again within the heal window is
    /// permanent (something keeps deleting it: no hot loop of errors).
    async fn heal(&self, st: &mut ReadState, cause: &fred::error::Error) -> Result<(), ReadError> {
        {
            let mut last = lock(&self.mem.last_heal);
            if let Some(t) = *last {
                if t.elapsed() < self.s.heal_window {
                    return Err(ReadError::permanent(
                        ErrorKind::NotFound,
                        format!(
                            "consumer group {} vanished again {:.1?} after it was re-created \
                             ({}); something keeps deleting it (XGROUP DESTROY or DEL of the \
                             stream), so it is not re-created again",
                            self.s.group,
                            t.elapsed(),
                            cause.details()
                        ),
                    ));
                }
            }
            *last = Some(Instant::now());
        }
        for (i, key) in self.keys.iter().enumerate() {
            let at = lock(&self.mem.last_seen).get(key.as_ref()).copied();
            let id = at.map_or_else(|| self.s.start.as_arg(), |id| id.to_string());
            if self.create_group(key, &id).await? {
                let detail = format!(
                    "consumer group {} of stream {key} was missing ({}); re-created from {id} \
                     (entries pending in the old group are no longer tracked)",
                    self.s.group,
                    cause.details()
                );
                tracing::warn!(source = %self.ctx.source, %detail, "group re-created");
                self.ctx.events.emit(
                    EventKind::GroupRecreated,
                    at.map(|id| Position::Stream {
                        stream: key.clone(),
                        id,
                    }),
                    detail,
                );
            }
            st.pending[i] = None;
            st.claim[i] = "0-0".to_owned();
        }
        Ok(())
    }

    /// XACK `ids` of `key` on the control connection.
    async fn xack(&self, key: &str, ids: Vec<String>) -> Result<(), ReadError> {
        for chunk in ids.chunks(1000) {
            let r: Result<Value, _> = self
                .ctl
                .xack(key, self.s.group.as_str(), chunk.to_vec())
                .await;
            match r {
                Ok(_) => {}
                // The group is gone: nothing is pending any more; the fetch path heals it.
                Err(e) if is_nogroup(&e) => return Ok(()),
                Err(e) => return Err(self.fail(&e, &format!("XACK {key}"))),
            }
        }
        Ok(())
    }

    /// Delivery counts of our pending entries among `entries`.
    async fn deliveries(
        &self,
        key: &str,
        entries: &[Entry],
    ) -> Result<HashMap<StreamId, u64>, ReadError> {
        let (Some(first), Some(last)) = (
            entries.iter().map(|e| e.id).min(),
            entries.iter().map(|e| e.id).max(),
        ) else {
            return Ok(HashMap::new());
        };
        let cmd = CustomCommand::new_static("XPENDING", ClusterHash::FirstKey, false);
        let count = entries.len() * 4 + 100;
        let args: Vec<Value> = vec![
            key.into(),
            self.s.group.as_str().into(),
            first.to_string().into(),
            last.to_string().into(),
            (count as i64).into(),
            self.s.consumer.as_str().into(),
        ];
        let v: Value = match self.ctl.custom(cmd, args).await {
            Ok(v) => v,
            Err(e) => return Err(self.fail(&e, &format!("XPENDING {key}"))),
        };
        Ok(entry::parse_pending(v)?.into_iter().collect())
    }

    /// Move an entry delivered too often to the dead-letter stream, then XACK it.
    async fn dead_letter_overdelivered(
        &self,
        key: &Arc<str>,
        id: StreamId,
        fields: Vec<(Bytes, Bytes)>,
        deliveries: u64,
        max: u64,
    ) -> Result<(), ReadError> {
        let reason = format!("delivered {deliveries} times (max_deliveries {max}) without an ack");
        let dlq = self
            .write_dead_letter(key, id, fields, &reason, Some(deliveries))
            .await?;
        tracing::warn!(source = %self.ctx.source, stream = %key, %id, %dlq, %reason, "dead-lettered");
        self.ctx.events.emit(
            EventKind::DeadLettered,
            Some(Position::Stream {
                stream: key.clone(),
                id,
            }),
            format!("{key}@{id} moved to {dlq}: {reason}"),
        );
        Ok(())
    }

    /// `XADD` an entry to the dead-letter stream of `key` (its original ID, stream, group,
    /// consumer, the reason and, when known, the delivery count, then its own fields), then
    /// `XACK` it. Returns the dead-letter stream's key. Both the `max_deliveries` screen and
    /// the application's [`Delivery::dead_letter`](reader_core::Delivery::dead_letter) use it.
    async fn write_dead_letter(
        &self,
        key: &str,
        id: StreamId,
        fields: Vec<(Bytes, Bytes)>,
        reason: &str,
        deliveries: Option<u64>,
    ) -> Result<String, ReadError> {
        let dlq = self.s.dlq_for(key);
        let mut pairs: Vec<(Key, Value)> = vec![
            ("original_id".into(), id.to_string().into()),
            ("stream".into(), key.into()),
            ("group".into(), self.s.group.as_str().into()),
            ("consumer".into(), self.s.consumer.as_str().into()),
            ("reason".into(), reason.into()),
        ];
        if let Some(n) = deliveries {
            pairs.push((
                "deliveries".into(),
                i64::try_from(n).unwrap_or(i64::MAX).into(),
            ));
        }
        pairs.extend(
            fields
                .into_iter()
                .map(|(k, v)| (Key::from(k), Value::Bytes(v))),
        );
        let r: Result<Value, _> = self.ctl.xadd(dlq.as_str(), false, None, "*", pairs).await;
        if let Err(e) = r {
            return Err(self.fail(&e, &format!("XADD {dlq} (dead letter)")));
        }
        self.xack(key, vec![id.to_string()]).await?;
        Ok(dlq)
    }

    /// The application's dead letter of a delivered message: its fields are rebuilt from
    /// the message (key and payload first, then the headers, as [`entry::message`] split
    /// them).
    pub(crate) async fn dead_letter(
        &self,
        message: &Message,
        reason: &str,
    ) -> Result<(), ReadError> {
        let Position::Stream { stream, id } = &message.position else {
            return Err(ReadError::permanent(
                ErrorKind::Config,
                format!(
                    "redis: cannot dead-letter a message at {} (not a stream entry)",
                    message.position
                ),
            ));
        };
        let mut fields = Vec::with_capacity(message.headers.len() + 1);
        if let Some(k) = &message.key {
            fields.push((k.clone(), message.payload.clone()));
        }
        fields.extend(
            message
                .headers
                .iter()
                .map(|(k, v)| (Bytes::from(k.clone()), v.clone())),
        );
        let deliveries = message.deliveries.map(u64::from);
        self.write_dead_letter(stream, *id, fields, reason, deliveries)
            .await?;
        Ok(())
    }

    /// Entries delivered again (pending or claimed): ack away the deleted ones, dead-letter
    /// those delivered too often, return the rest as messages.
    async fn screen(&self, key: &Arc<str>, entries: Vec<Entry>) -> Result<Vec<Message>, ReadError> {
        let (deleted, live): (Vec<Entry>, Vec<Entry>) =
            entries.into_iter().partition(|e| e.fields.is_none());
        if !deleted.is_empty() {
            let ids: Vec<String> = deleted.iter().map(|e| e.id.to_string()).collect();
            self.xack(key, ids.clone()).await?;
            self.ctx.events.emit(
                EventKind::PendingDropped,
                None,
                format!(
                    "{} pending entries of {key} no longer exist in the stream; acknowledged \
                     away: {}",
                    ids.len(),
                    ids.join(" ")
                ),
            );
        }
        let counts = match self.s.max_deliveries {
            Some(_) if !live.is_empty() => self.deliveries(key, &live).await?,
            _ => HashMap::new(),
        };
        let mut out = Vec::with_capacity(live.len());
        for e in live {
            let fields = e.fields.unwrap_or_default();
            let n = counts.get(&e.id).copied().unwrap_or(1);
            match self.s.max_deliveries {
                Some(max) if n > max => {
                    self.dead_letter_overdelivered(key, e.id, fields, n, max)
                        .await?;
                }
                _ => {
                    let mut m = entry::message(key, e.id, fields);
                    m.deliveries = counts
                        .get(&e.id)
                        .map(|n| u32::try_from(*n).unwrap_or(u32::MAX));
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    fn remember(&self, key: &str, msgs: &[Message]) {
        let newest = msgs
            .iter()
            .filter_map(|m| match &m.position {
                Position::Stream { id, .. } => Some(*id),
                _ => None,
            })
            .max();
        if let Some(id) = newest {
            let mut seen = lock(&self.mem.last_seen);
            let slot = seen.entry(key.to_owned()).or_insert(id);
            if id > *slot {
                *slot = id;
            }
        }
    }

    /// One step of the claim pass, when one is due.
    async fn claim(
        &self,
        st: &mut ReadState,
        max: usize,
    ) -> Result<Option<Vec<Message>>, ReadError> {
        let Some(idle) = self.s.claim_idle else {
            return Ok(None);
        };
        if Instant::now() < st.next_claim {
            return Ok(None);
        }
        let Some(i) = st.claim_done.iter().position(|d| !d) else {
            st.claim_done.iter_mut().for_each(|d| *d = false);
            st.next_claim = Instant::now() + self.s.claim_interval;
            return Ok(None);
        };
        let key = self.keys[i].clone();
        let r: Result<Value, _> = self
            .ctl
            .xautoclaim(
                key.as_ref(),
                self.s.group.as_str(),
                self.s.consumer.as_str(),
                u64::try_from(idle.as_millis()).unwrap_or(u64::MAX),
                st.claim[i].as_str(),
                Some(max as u64),
                false,
            )
            .await;
        let v = match r {
            Ok(v) => v,
            Err(e) if is_nogroup(&e) => {
                self.heal(st, &e).await?;
                return Ok(Some(Vec::new()));
            }
            Err(e) => return Err(self.fail(&e, &format!("XAUTOCLAIM {key}"))),
        };
        let (cursor, entries, deleted) = entry::parse_autoclaim(v)?;
        if cursor == "0-0" {
            st.claim_done[i] = true;
            st.claim[i] = "0-0".to_owned();
        } else {
            st.claim[i] = cursor;
        }
        if !deleted.is_empty() {
            let ids: Vec<String> = deleted.iter().map(ToString::to_string).collect();
            self.ctx.events.emit(
                EventKind::PendingDropped,
                None,
                format!(
                    "{} pending entries of {key} no longer exist in the stream; the server \
                     dropped them from the pending list: {}",
                    ids.len(),
                    ids.join(" ")
                ),
            );
        }
        if entries.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let n = entries.len();
        let msgs = self.screen(&key, entries).await?;
        self.ctx.events.emit(
            EventKind::Claimed,
            None,
            format!("claimed {n} entries of {key} pending longer than {idle:?}"),
        );
        self.remember(&key, &msgs);
        Ok(Some(msgs))
    }

    /// Refresh the pending-entries gauge (`XPENDING key group`, summed over the keys).
    async fn gauge(&self, st: &mut ReadState) -> Result<(), ReadError> {
        if Instant::now() < st.next_gauge {
            return Ok(());
        }
        st.next_gauge = Instant::now() + GAUGE_INTERVAL;
        let mut total = 0;
        for key in &self.keys {
            let r: Result<Value, _> = self
                .ctl
                .xpending(key.as_ref(), self.s.group.as_str(), ())
                .await;
            match r {
                Ok(Value::Array(v)) => total += v.first().and_then(entry::int_of).unwrap_or(0),
                Ok(_) => {}
                // Healed on the read path.
                Err(e) if is_nogroup(&e) => {}
                Err(e) => return Err(self.fail(&e, &format!("XPENDING {key}"))),
            }
        }
        let l = reader_core::metrics::labels(&self.ctx.source, "redis");
        metrics::gauge!(reader_core::metrics::REDIS_PENDING_ENTRIES, &l).set(total as f64);
        Ok(())
    }

    async fn fetch_inner(&self, max: usize, wait: Duration) -> Result<Vec<Message>, ReadError> {
        self.alive()?;
        let mut st = self.state.lock().await;
        self.gauge(&mut st).await?;
        let count = (max as u64).clamp(1, self.s.count);
        if let Some(msgs) = self.claim(&mut st, max).await? {
            if !msgs.is_empty() || !st.claim_done.iter().all(|d| *d) {
                return Ok(msgs);
            }
        }
        // This consumer's own pending entries first, key by key.
        if let Some(i) = st.pending.iter().position(Option::is_some) {
            let key = self.keys[i].clone();
            let cursor = st.pending[i].clone().unwrap_or_else(|| "0".to_owned());
            let r: Result<Value, _> = self
                .ctl
                .xreadgroup(
                    self.s.group.as_str(),
                    self.s.consumer.as_str(),
                    Some(count),
                    None,
                    false,
                    key.as_ref(),
                    cursor.as_str(),
                )
                .await;
            let v = match r {
                Ok(v) => v,
                Err(e) if is_nogroup(&e) => {
                    self.heal(&mut st, &e).await?;
                    return Ok(Vec::new());
                }
                Err(e) => return Err(self.fail(&e, &format!("XREADGROUP {key} {cursor}"))),
            };
            let entries: Vec<Entry> = entry::parse_read(v)?
                .into_iter()
                .flat_map(|(_, e)| e)
                .collect();
            match entries.last() {
                None => st.pending[i] = None,
                Some(last) => st.pending[i] = Some(last.id.to_string()),
            }
            let msgs = self.screen(&key, entries).await?;
            self.remember(&key, &msgs);
            return Ok(msgs);
        }
        // New entries, blocking on the read connection. COUNT applies per key: share `max`.
        let count = (count / self.keys.len() as u64).max(1);
        let block = wait.min(self.s.block).max(Duration::from_millis(1));
        let opts = Options {
            timeout: Some(block + self.cfg.command_timeout),
            ..Options::default()
        };
        let keys: Vec<&str> = self.keys.iter().map(AsRef::as_ref).collect();
        let ids: Vec<&str> = vec![">"; keys.len()];
        let r: Result<Value, _> = self
            .read
            .with_options(&opts)
            .xreadgroup(
                self.s.group.as_str(),
                self.s.consumer.as_str(),
                Some(count),
                Some(u64::try_from(block.as_millis()).unwrap_or(1)),
                false,
                keys,
                ids,
            )
            .await;
        let v = match r {
            Ok(v) => v,
            Err(e) if is_nogroup(&e) => {
                self.heal(&mut st, &e).await?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.fail(&e, "XREADGROUP >")),
        };
        let mut out = Vec::new();
        for (key, entries) in entry::parse_read(v)? {
            let Some(stream) = self.keys.iter().find(|k| k.as_ref() == key).cloned() else {
                continue;
            };
            let msgs: Vec<Message> = entries
                .into_iter()
                .map(|e| entry::message(&stream, e.id, e.fields.unwrap_or_default()))
                .collect();
            self.remember(&key, &msgs);
            out.extend(msgs);
        }
        Ok(out)
    }
}

#[async_trait]
impl Reader for StreamsReader {
    async fn recover(&self) -> Result<(), ReadError> {
        let start = self.s.start.as_arg();
        for key in &self.keys {
            self.create_group(key, &start).await?;
        }
        Ok(())
    }

    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Message>, ReadError> {
        self.fetch_inner(max, wait).await
    }

    async fn commit(&self, positions: &[Position]) -> Result<(), ReadError> {
        let mut by_key: HashMap<&str, Vec<String>> = HashMap::new();
        for p in positions {
            if let Position::Stream { stream, id } = p {
                by_key
                    .entry(stream.as_ref())
                    .or_default()
                    .push(id.to_string());
            }
        }
        for (key, ids) in by_key {
            self.xack(key, ids).await?;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<Duration, ReadError> {
        self.alive()?;
        let t0 = Instant::now();
        let r: Result<Value, _> = self.ctl.ping(None).await;
        match r {
            Ok(_) => Ok(t0.elapsed()),
            Err(e) => Err(self.fail(&e, "PING")),
        }
    }

    async fn dead_letter(&self, message: &Message, reason: &str) -> Result<(), ReadError> {
        StreamsReader::dead_letter(self, message, reason).await
    }

    async fn server_version(&self) -> Option<String> {
        let cmd = CustomCommand::new_static("INFO", None, false);
        let info: Value = self.ctl.custom(cmd, vec!["server"]).await.ok()?;
        let text: String = info.convert().ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(|v| format!("Redis {}", v.trim()))
    }

    async fn close(&self) {
        client::shutdown(&self.read, &self.read_task).await;
        client::shutdown(&self.ctl, &self.ctl_task).await;
    }
}

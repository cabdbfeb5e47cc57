//! [`PubSubReader`]: one Pub/Sub session. At-most-once by nature: Redis keeps no message for
//! a subscriber that is not connected, so whatever is published while the reader is
//! reconnecting is lost. Each new session after the first therefore reports a
//! [`Gap`](reader_core::EventKind::Gap) event, and so does a reader that fell so far behind
//! that fred's message buffer overflowed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::ConnectHandle;
use reader_core::{ErrorKind, EventKind, Message, Position, ReadError, Reader, SessionContext};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::classify::classify_fred_error;
use crate::client;
use crate::config::{PubSubConfig, RedisConfig};
use crate::entry::bytes_of;

/// What the connector remembers across sessions.
#[derive(Debug, Default)]
pub(crate) struct PubSubMemory {
    /// Whether a session was subscribed before (so the next one may have missed messages).
    had_session: AtomicBool,
}

struct PubState {
    rx: tokio::sync::broadcast::Receiver<fred::types::Message>,
    handle: Option<ConnectHandle>,
}

/// One Pub/Sub session. See the module docs.
pub struct PubSubReader {
    client: SubscriberClient,
    abort: AbortHandle,
    cfg: Arc<RedisConfig>,
    p: Arc<PubSubConfig>,
    mem: Arc<PubSubMemory>,
    ctx: SessionContext,
    st: tokio::sync::Mutex<PubState>,
}

impl std::fmt::Debug for PubSubReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubReader")
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Drop for PubSubReader {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

impl PubSubReader {
    pub(crate) async fn open(
        cfg: Arc<RedisConfig>,
        p: Arc<PubSubConfig>,
        mem: Arc<PubSubMemory>,
        ctx: &SessionContext,
    ) -> Result<Self, ReadError> {
        let client = client::builder(&cfg)?
            .build_subscriber_client()
            .map_err(|e| classify_fred_error(&e, "building the redis subscriber"))?;
        // Before subscribing, so no message slips between the two.
        let rx = client.message_rx();
        let handle = client::connect(&client, &cfg, "the subscriber").await?;
        Ok(Self {
            abort: handle.abort_handle(),
            client,
            cfg,
            p,
            mem,
            ctx: ctx.clone(),
            st: tokio::sync::Mutex::new(PubState {
                rx,
                handle: Some(handle),
            }),
        })
    }

    fn closed(&self) -> ReadError {
        ReadError::transient(
            ErrorKind::Connection,
            format!(
                "the subscriber connection to redis {}:{} closed",
                self.cfg.host, self.cfg.port
            ),
        )
    }

    fn to_message(m: fred::types::Message) -> Message {
        let payload = bytes_of(m.value).unwrap_or_default();
        let mut msg = Message::new(payload, Position::None);
        msg.key = Some(m.channel.into_inner());
        msg
    }

    /// Take what is buffered, up to `max`; a lag is reported as a gap.
    fn drain(
        &self,
        st: &mut PubState,
        out: &mut Vec<Message>,
        max: usize,
    ) -> Result<(), ReadError> {
        while out.len() < max {
            match st.rx.try_recv() {
                Ok(m) => out.push(Self::to_message(m)),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => self.lagged(n),
                Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
                Err(tokio::sync::broadcast::error::TryRecvError::Closed) => {
                    return Err(self.closed())
                }
            }
        }
        Ok(())
    }

    fn lagged(&self, n: u64) {
        self.ctx.events.emit(
            EventKind::Gap,
            None,
            format!("{n} Pub/Sub messages were dropped: the reader fell behind the publisher"),
        );
    }
}

#[async_trait]
impl Reader for PubSubReader {
    /// SUBSCRIBE / PSUBSCRIBE (each session subscribes afresh), and report the gap a
    /// reconnect leaves.
    async fn recover(&self) -> Result<(), ReadError> {
        if !self.p.channels.is_empty() {
            self.client
                .subscribe(self.p.channels.clone())
                .await
                .map_err(|e| classify_fred_error(&e, "SUBSCRIBE"))?;
        }
        if !self.p.patterns.is_empty() {
            self.client
                .psubscribe(self.p.patterns.clone())
                .await
                .map_err(|e| classify_fred_error(&e, "PSUBSCRIBE"))?;
        }
        if self.mem.had_session.swap(true, Ordering::SeqCst) {
            self.ctx.events.emit(
                EventKind::Gap,
                None,
                format!(
                    "re-subscribed after a reconnect (session {}): messages published while \
                     disconnected are lost (Pub/Sub is at-most-once)",
                    self.ctx.session
                ),
            );
        }
        Ok(())
    }

    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Message>, ReadError> {
        let mut st = self.st.lock().await;
        let st = &mut *st;
        let Some(handle) = st.handle.as_mut() else {
            return Err(self.closed());
        };
        let first = tokio::select! {
            biased;
            _ = handle => {
                st.handle = None;
                return Err(self.closed());
            }
            r = st.rx.recv() => r,
            () = tokio::time::sleep(wait) => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        match first {
            Ok(m) => out.push(Self::to_message(m)),
            Err(RecvError::Lagged(n)) => self.lagged(n),
            Err(RecvError::Closed) => return Err(self.closed()),
        }
        self.drain(st, &mut out, max.max(1))?;
        Ok(out)
    }

    async fn commit(&self, _positions: &[Position]) -> Result<(), ReadError> {
        // Nothing is durable in Pub/Sub.
        Ok(())
    }

    async fn ping(&self) -> Result<Duration, ReadError> {
        if self.abort.is_finished() {
            return Err(self.closed());
        }
        let t0 = Instant::now();
        let r: Result<Value, _> = self.client.ping(None).await;
        match r {
            Ok(_) => Ok(t0.elapsed()),
            Err(e) if self.abort.is_finished() => {
                let _ = e;
                Err(self.closed())
            }
            Err(e) => Err(classify_fred_error(&e, "PING")),
        }
    }

    async fn close(&self) {
        let handle = self.st.lock().await.handle.take();
        match handle {
            Some(h) => client::shutdown(&self.client, &h).await,
            None => self.abort.abort(),
        }
    }
}

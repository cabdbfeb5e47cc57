//! An in-memory, scripted [`Connector`] for testing the machinery (state machine, retry,
//! backpressure, acknowledgements, cancellation) — never a stand-in for a real server.
//!
//! The source is one log of numbered messages (`Position::Partition { topic: "scripted",
//! partition: 0, offset }`). Faults are queued and consumed in order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;

use crate::connector::{Connector, Reader, SessionContext};
use crate::error::ReadError;
use crate::message::Message;
use crate::position::{Checkpoint, Lane, Position};

/// What the next connect attempt does.
#[derive(Clone, Debug)]
pub enum ConnectStep {
    /// Fail with this error.
    Fail(ReadError),
    /// Never answer.
    Hang,
}

/// What the next fetch does instead of reading.
#[derive(Clone, Debug)]
pub enum FetchFault {
    /// Fail with this error (a transient one models a disconnect).
    Fail(ReadError),
    /// Never answer (a black-holed connection).
    Hang,
}

#[derive(Default)]
struct Script {
    log: Vec<Bytes>,
    connect: VecDeque<ConnectStep>,
    fetch: VecDeque<FetchFault>,
    recover: VecDeque<ReadError>,
    commits: Vec<Position>,
    dead_letters: Vec<(Position, Bytes, String)>,
    connect_times: Vec<tokio::time::Instant>,
    hang_close: bool,
}

struct Inner {
    script: Mutex<Script>,
    appended: Notify,
    connects: AtomicUsize,
    fetches: AtomicUsize,
    open: AtomicUsize,
}

/// See the module docs. Cheap to clone; clones share the script.
#[derive(Clone)]
pub struct ScriptedConnector {
    inner: Arc<Inner>,
}

pub(crate) const TOPIC: &str = "scripted";

/// The position of message `offset` of the scripted log.
#[must_use]
pub fn position(offset: i64) -> Position {
    Position::Partition {
        topic: TOPIC.into(),
        partition: 0,
        offset,
    }
}

impl Default for ScriptedConnector {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedConnector {
    /// An empty source.
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                script: Mutex::new(Script::default()),
                appended: Notify::new(),
                connects: AtomicUsize::new(0),
                fetches: AtomicUsize::new(0),
                open: AtomicUsize::new(0),
            }),
        }
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        self.inner
            .script
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Append `n` messages (payload = their offset as text).
    pub fn push_messages(&self, n: usize) {
        let mut s = self.script();
        for _ in 0..n {
            let i = s.log.len();
            s.log.push(Bytes::from(i.to_string()));
        }
        drop(s);
        self.inner.appended.notify_waiters();
    }

    /// Append one message with this payload.
    pub fn push_payload(&self, payload: impl Into<Bytes>) {
        self.script().log.push(payload.into());
        self.inner.appended.notify_waiters();
    }

    /// What was dead-lettered so far: position, payload, reason.
    #[must_use]
    pub fn dead_letters(&self) -> Vec<(Position, Bytes, String)> {
        self.script().dead_letters.clone()
    }

    /// Queue a connect step.
    pub fn on_connect(&self, step: ConnectStep) {
        self.script().connect.push_back(step);
    }

    /// Queue a fetch fault.
    pub fn on_fetch(&self, fault: FetchFault) {
        self.script().fetch.push_back(fault);
    }

    /// Queue a failure of the next recovery.
    pub fn on_recover(&self, e: ReadError) {
        self.script().recover.push_back(e);
    }

    /// Make every session's `close` hang.
    pub fn hang_close(&self) {
        self.script().hang_close = true;
    }

    /// Positions committed so far, in order.
    #[must_use]
    pub fn commits(&self) -> Vec<Position> {
        self.script().commits.clone()
    }

    /// When each connect attempt started.
    #[must_use]
    pub fn connect_times(&self) -> Vec<tokio::time::Instant> {
        self.script().connect_times.clone()
    }

    /// Connect attempts so far.
    #[must_use]
    pub fn connects(&self) -> usize {
        self.inner.connects.load(Ordering::SeqCst)
    }

    /// Fetch calls so far.
    #[must_use]
    pub fn fetches(&self) -> usize {
        self.inner.fetches.load(Ordering::SeqCst)
    }

    /// Sessions open right now.
    #[must_use]
    pub fn open_sessions(&self) -> usize {
        self.inner.open.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Connector for ScriptedConnector {
    type Reader = ScriptedReader;

    fn backend(&self) -> &'static str {
        "scripted"
    }

    fn describe(&self) -> String {
        "scripted".into()
    }

    async fn connect(
        &self,
        _ctx: &SessionContext,
        from: &Checkpoint,
    ) -> Result<ScriptedReader, ReadError> {
        self.inner.connects.fetch_add(1, Ordering::SeqCst);
        let step = {
            let mut s = self.script();
            s.connect_times.push(tokio::time::Instant::now());
            s.connect.pop_front()
        };
        match step {
            Some(ConnectStep::Fail(e)) => return Err(e),
            Some(ConnectStep::Hang) => std::future::pending::<()>().await,
            None => {}
        }
        let next = match from.get(&Lane::Partition(TOPIC.into(), 0)) {
            Some(Position::Partition { offset, .. }) => offset + 1,
            _ => 0,
        };
        self.inner.open.fetch_add(1, Ordering::SeqCst);
        Ok(ScriptedReader {
            conn: self.clone(),
            next: Mutex::new(usize::try_from(next).unwrap_or(0)),
        })
    }
}

/// A session of the [`ScriptedConnector`].
pub struct ScriptedReader {
    conn: ScriptedConnector,
    next: Mutex<usize>,
}

impl Drop for ScriptedReader {
    fn drop(&mut self) {
        self.conn.inner.open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Reader for ScriptedReader {
    async fn recover(&self) -> Result<(), ReadError> {
        match self.conn.script().recover.pop_front() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Message>, ReadError> {
        self.conn.inner.fetches.fetch_add(1, Ordering::SeqCst);
        let fault = self.conn.script().fetch.pop_front();
        match fault {
            Some(FetchFault::Fail(e)) => return Err(e),
            Some(FetchFault::Hang) => std::future::pending::<()>().await,
            None => {}
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.conn.inner.appended.notified();
            {
                let s = self.conn.script();
                let mut next = self
                    .next
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if *next < s.log.len() {
                    let end = (*next + max).min(s.log.len());
                    let out = (*next..end)
                        .map(|i| {
                            Message::new(
                                s.log[i].clone(),
                                position(i64::try_from(i).unwrap_or(i64::MAX)),
                            )
                        })
                        .collect();
                    *next = end;
                    return Ok(out);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn commit(&self, positions: &[Position]) -> Result<(), ReadError> {
        self.conn.script().commits.extend_from_slice(positions);
        Ok(())
    }

    async fn ping(&self) -> Result<Duration, ReadError> {
        Ok(Duration::from_millis(1))
    }

    async fn dead_letter(&self, message: &Message, reason: &str) -> Result<(), ReadError> {
        self.conn.script().dead_letters.push((
            message.position.clone(),
            message.payload.clone(),
            reason.to_owned(),
        ));
        Ok(())
    }

    async fn close(&self) {
        let hang = self.conn.script().hang_close;
        if hang {
            std::future::pending::<()>().await;
        }
    }
}

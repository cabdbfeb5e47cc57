//! The user-facing [`DataReader`]: a bounded, cancellable stream of deliveries on top of a
//! [`Reconnector`], with acknowledgements committed in the background.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::ack::AckState;
use crate::checkpoint::CheckpointStore;
use crate::config::ReaderConfig;
use crate::connector::{Connector, Reader};
use crate::error::{ErrorKind, ReadError};
use crate::events::{EventKind, ReaderEvent};
use crate::health::{Health, HealthHandle, HealthView};
use crate::message::{DeadLetterSink, Delivery, Message};
use crate::position::{Checkpoint, Position};
use crate::reconnector::{Established, Outage, Reconnector};
use crate::retry::RetryPolicy;
use crate::state::{ConnState, Transition};
use crate::stream::ReadStream;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) async fn bounded_close<R: Reader + ?Sized>(reader: &R, within: Duration) {
    if tokio::time::timeout(within, reader.close()).await.is_err() {
        tracing::warn!("closing the session took longer than {within:?}; dropping it");
    }
}

/// What `close` (or cancellation) left behind.
#[derive(Clone, Debug)]
pub struct ShutdownReport {
    /// The source's name.
    pub source: String,
    /// The last committed position of each lane.
    pub committed: Checkpoint,
    /// Deliveries handed out and never acknowledged (they will be delivered again).
    pub unacked: usize,
    /// Acknowledged positions whose commit did not happen (they will be delivered again).
    pub uncommitted: usize,
    /// Whether the deadline passed and remaining tasks were aborted.
    pub timed_out: bool,
}

/// The session currently open, with the token that retires it.
struct Current<R> {
    reader: Arc<R>,
    retire: CancellationToken,
}

pub(crate) struct Shared<C: Connector> {
    pub(crate) rc: Reconnector<C>,
    pub(crate) config: ReaderConfig,
    pub(crate) acks: Arc<AckState>,
    current: Mutex<Option<Current<C::Reader>>>,
    checkpoint: Mutex<Checkpoint>,
    store: Option<Arc<dyn CheckpointStore>>,
    commit_lock: tokio::sync::Mutex<()>,
    tasks: TaskTracker,
    aborts: Mutex<Vec<AbortHandle>>,
    stop: CancellationToken,
    started: AtomicBool,
}

impl<C: Connector> Shared<C> {
    fn health(&self) -> Health {
        let h = lock(&self.rc.health);
        Health {
            source: self.rc.source().to_string(),
            backend: self.rc.connector().backend(),
            state: self.rc.state(),
            last_success: h.last_success,
            last_error: h.last_error.clone(),
            last_ping: h.last_ping,
            unacked: self.acks.unacked(),
            sessions: self.rc.sessions(),
        }
    }
}

impl<C: Connector> HealthView for Shared<C> {
    fn snapshot(&self) -> Health {
        self.health()
    }
}

/// Builds a [`DataReader`].
pub struct DataReaderBuilder<C: Connector> {
    connector: C,
    policy: Option<Arc<dyn RetryPolicy>>,
    config: ReaderConfig,
    store: Option<Arc<dyn CheckpointStore>>,
    order: Option<crate::ack::CommitOrder>,
}

impl<C: Connector> DataReaderBuilder<C> {
    /// The retry policy of the Reconnector (required: `reader-retry` has the usual ones;
    /// the `unireader` facade fills in its default).
    #[must_use]
    pub fn retry(mut self, policy: Arc<dyn RetryPolicy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// All settings at once.
    #[must_use]
    pub fn config(mut self, config: ReaderConfig) -> Self {
        self.config = config;
        self
    }

    /// Change settings in place.
    #[must_use]
    pub fn configure(mut self, f: impl FnOnce(&mut ReaderConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Where committed positions are also saved, and loaded from at start.
    #[must_use]
    pub fn checkpoint_store(mut self, store: Arc<dyn CheckpointStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// How acknowledgements become commits. Backends declare it on their sessions; this
    /// overrides it for the whole reader (set by backend builders, rarely by users).
    #[must_use]
    pub fn commit_order(mut self, order: crate::ack::CommitOrder) -> Self {
        self.order = Some(order);
        self
    }

    /// Build the reader. Nothing connects until [`DataReader::read`].
    ///
    /// # Errors
    /// A configuration error when no retry policy was given or a setting is out of range.
    pub fn build(self) -> Result<DataReader<C>, ReadError> {
        let policy = self
            .policy
            .ok_or_else(|| ReadError::config("no retry policy given (DataReaderBuilder::retry)"))?;
        let c = &self.config;
        if c.buffer == 0 {
            return Err(ReadError::config("option `buffer` must be at least 1"));
        }
        if c.fetch_max == 0 || c.fetch_min == 0 || c.fetch_min > c.fetch_max {
            return Err(ReadError::config(
                "options `fetch_min`/`fetch_max` must satisfy 1 <= fetch_min <= fetch_max",
            ));
        }
        if c.max_unacked == 0 {
            return Err(ReadError::config("option `max_unacked` must be at least 1"));
        }
        let name: Arc<str> = c
            .name
            .clone()
            .unwrap_or_else(|| self.connector.backend().to_owned())
            .into();
        let order = self.order.unwrap_or_else(|| self.connector.commit_order());
        let rc = Reconnector::new(self.connector, policy, name, self.config.flaky.clone());
        Ok(DataReader {
            sh: Arc::new(Shared {
                rc,
                config: self.config,
                acks: AckState::new(order),
                current: Mutex::new(None),
                checkpoint: Mutex::new(Checkpoint::new()),
                store: self.store,
                commit_lock: tokio::sync::Mutex::new(()),
                tasks: TaskTracker::new(),
                aborts: Mutex::new(Vec::new()),
                stop: CancellationToken::new(),
                started: AtomicBool::new(false),
            }),
        })
    }
}

/// Reads one source: see the crate docs for the loop every application writes.
pub struct DataReader<C: Connector> {
    sh: Arc<Shared<C>>,
}

enum Exit {
    Cancelled,
    ConsumerGone,
    Invalidated(ReadError),
    Failed(ReadError),
}

impl<C: Connector> DataReader<C> {
    /// Start building a reader of `connector`.
    pub fn builder(connector: C) -> DataReaderBuilder<C> {
        let mut config = ReaderConfig::default();
        connector.tune(&mut config);
        DataReaderBuilder {
            connector,
            policy: None,
            config,
            store: None,
            order: None,
        }
    }

    /// The source's name.
    #[must_use]
    pub fn source(&self) -> &str {
        self.sh.rc.source()
    }

    /// The backend's name.
    #[must_use]
    pub fn backend(&self) -> &'static str {
        self.sh.rc.connector().backend()
    }

    /// The connector.
    #[must_use]
    pub fn connector(&self) -> &C {
        self.sh.rc.connector()
    }

    /// The current connection state.
    #[must_use]
    pub fn state(&self) -> ConnState {
        self.sh.rc.state()
    }

    /// The connection state as a watch channel.
    #[must_use]
    pub fn watch_state(&self) -> watch::Receiver<ConnState> {
        self.sh.rc.watch_state()
    }

    /// Every state transition from now on.
    #[must_use]
    pub fn transitions(&self) -> broadcast::Receiver<Transition> {
        self.sh.rc.transitions()
    }

    /// Events (gaps, dead letters, healed groups…) from now on.
    #[must_use]
    pub fn events(&self) -> broadcast::Receiver<ReaderEvent> {
        self.sh.rc.events.subscribe()
    }

    /// The last committed position of each lane.
    #[must_use]
    pub fn committed(&self) -> Checkpoint {
        lock(&self.sh.checkpoint).clone()
    }

    /// How many tasks of this reader are alive (0 after close or cancellation).
    #[must_use]
    pub fn live_tasks(&self) -> usize {
        self.sh.tasks.len()
    }

    /// A health snapshot.
    #[must_use]
    pub fn health(&self) -> Health {
        self.sh.health()
    }

    /// A cheap, cloneable handle that gives this reader's health snapshot from anywhere
    /// (a health endpoint), for as long as the handle lives, without owning the reader.
    #[must_use]
    pub fn health_handle(&self) -> HealthHandle {
        HealthHandle::new(self.sh.clone())
    }

    /// Start reading. Returns the stream of deliveries; it ends when `token` is cancelled,
    /// the reader is closed, or an error is surfaced (a permanent one, or one after the
    /// retry budget ran out — the last item is then that error).
    ///
    /// A reader reads once: a second call yields a single configuration error.
    pub fn read(&self, token: CancellationToken) -> ReadStream {
        let (tx, rx) = mpsc::channel(self.sh.config.buffer);
        let auto_ack = self.sh.config.ack_mode == crate::config::AckMode::Auto;
        if self.sh.started.swap(true, Ordering::SeqCst) {
            let _ = tx.try_send(Err(ReadError::config(
                "read() was already called on this reader; build another reader to read again",
            )));
            return ReadStream::new(rx, auto_ack);
        }
        let run = CancellationToken::new();
        let sh = &self.sh;
        let mut aborts = lock(&sh.aborts);
        {
            let (user, stop, run) = (token, sh.stop.clone(), run.clone());
            aborts.push(
                sh.tasks
                    .spawn(async move {
                        tokio::select! {
                            () = user.cancelled() => {}
                            () = stop.cancelled() => {}
                            () = run.cancelled() => {}
                        }
                        run.cancel();
                    })
                    .abort_handle(),
            );
        }
        aborts.push(
            sh.tasks
                .spawn(run_reader(sh.clone(), tx, run.clone()))
                .abort_handle(),
        );
        aborts.push(
            sh.tasks
                .spawn(run_committer(sh.clone(), run.clone()))
                .abort_handle(),
        );
        aborts.push(sh.tasks.spawn(run_pinger(sh.clone(), run)).abort_handle());
        drop(aborts);
        ReadStream::new(rx, auto_ack)
    }

    /// Commit what was acknowledged now, without waiting for the commit interval.
    ///
    /// # Errors
    /// When the commit failed (the positions stay queued and are retried).
    pub async fn commit_now(&self) -> Result<(), ReadError> {
        commit_ready(&self.sh).await
    }

    /// Close within the configured `close_timeout`. See [`DataReader::close_within`].
    pub async fn close(&self) -> ShutdownReport {
        self.close_within(self.sh.config.close_timeout).await
    }

    /// Stop fetching, commit what was acknowledged, close the session, end every task —
    /// within `deadline`; tasks still running then are aborted (their sockets dropped).
    pub async fn close_within(&self, deadline: Duration) -> ShutdownReport {
        let sh = &self.sh;
        sh.stop.cancel();
        sh.tasks.close();
        let timed_out = tokio::time::timeout(deadline, sh.tasks.wait())
            .await
            .is_err();
        if timed_out {
            tracing::warn!(source = %sh.rc.source(), "close deadline of {deadline:?} passed; aborting the reader's tasks");
            for a in lock(&sh.aborts).drain(..) {
                a.abort();
            }
            // Aborted tasks end at their next poll; give the runtime that one turn.
            let _ = tokio::time::timeout(Duration::from_millis(100), sh.tasks.wait()).await;
        }
        drop(lock(&sh.current).take());
        if !sh.rc.state().is_terminal() {
            sh.rc.set(ConnState::Closed);
        }
        ShutdownReport {
            source: sh.rc.source().to_string(),
            committed: lock(&sh.checkpoint).clone(),
            unacked: sh.acks.unacked(),
            uncommitted: usize::from(sh.acks.has_ready()),
            timed_out,
        }
    }
}

impl<C: Connector> Drop for DataReader<C> {
    fn drop(&mut self) {
        // Dropping without close still ends every task (their sockets with them).
        self.sh.stop.cancel();
    }
}

/// What a [`Delivery`] dead-letters through: the current session of its reader (weakly, so a
/// kept delivery does not keep a closed reader alive).
struct SessionDeadLetter<C: Connector>(std::sync::Weak<Shared<C>>);

#[async_trait::async_trait]
impl<C: Connector> DeadLetterSink for SessionDeadLetter<C> {
    async fn dead_letter(&self, message: &Message, reason: &str) -> Result<(), ReadError> {
        let Some(sh) = self.0.upgrade() else {
            return Err(ReadError::closed());
        };
        let Some((reader, _)) = current(&sh) else {
            return Err(ReadError::transient(
                ErrorKind::Connection,
                "no session to dead-letter through right now",
            ));
        };
        let span = tracing::debug_span!("dead_letter", source = %sh.rc.source(), position = %message.position);
        match tokio::time::timeout(
            sh.config.ping_timeout,
            reader.dead_letter(message, reason).instrument(span),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.with_source_name(sh.rc.source().clone())),
            Err(_) => {
                return Err(ReadError::transient(
                    ErrorKind::Timeout,
                    "writing the dead letter timed out",
                ))
            }
        }
        tracing::warn!(source = %sh.rc.source(), position = %message.position, %reason, "dead-lettered");
        sh.rc.events.emit(
            EventKind::DeadLettered,
            Some(message.position.clone()),
            format!("{} dead-lettered: {reason}", message.position),
        );
        Ok(())
    }
}

fn current<C: Connector>(sh: &Shared<C>) -> Option<(Arc<C::Reader>, CancellationToken)> {
    lock(&sh.current)
        .as_ref()
        .map(|c| (c.reader.clone(), c.retire.clone()))
}

/// Commit what is ready through the current session, then save the checkpoint.
async fn commit_ready<C: Connector>(sh: &Shared<C>) -> Result<(), ReadError> {
    let _guard = sh.commit_lock.lock().await;
    let positions = sh.acks.take_ready();
    if positions.is_empty() {
        return Ok(());
    }
    let Some((reader, _)) = current(sh) else {
        sh.acks.requeue(positions);
        return Err(ReadError::transient(
            ErrorKind::Connection,
            "no session to commit through",
        ));
    };
    let span =
        tracing::debug_span!("commit", source = %sh.rc.source(), positions = positions.len());
    let t0 = Instant::now();
    let result = match tokio::time::timeout(
        sh.config.ping_timeout,
        reader.commit(&positions).instrument(span),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(ReadError::transient(ErrorKind::Timeout, "commit timed out")),
    };
    if let Err(e) = result {
        sh.rc.events.emit(
            EventKind::CommitFailed,
            positions.last().cloned(),
            e.to_string(),
        );
        sh.acks.requeue(positions);
        return Err(e);
    }
    sh.acks.committed(positions.len());
    sh.rc
        .metrics
        .commit_latency
        .record(t0.elapsed().as_secs_f64());
    sh.rc.metrics.commits.increment(positions.len() as u64);
    let snapshot = {
        let mut cp = lock(&sh.checkpoint);
        for p in &positions {
            cp.advance(p);
        }
        cp.clone()
    };
    if let Some(store) = &sh.store {
        if let Err(e) = store.save(sh.rc.source(), &snapshot).await {
            sh.rc.events.emit(
                EventKind::CommitFailed,
                positions.last().cloned(),
                e.to_string(),
            );
            sh.acks.requeue(positions);
            return Err(e);
        }
    }
    update_checkpoint_age(sh, &snapshot);
    Ok(())
}

fn update_checkpoint_age<C: Connector>(sh: &Shared<C>, cp: &Checkpoint) {
    for p in &cp.positions {
        if let Position::ResumeToken {
            cluster_time: Some(t),
            ..
        } = p
        {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let age = now.saturating_sub(u64::from(*t));
            let l = crate::metrics::labels(sh.rc.source(), sh.rc.connector().backend());
            metrics::gauge!(crate::metrics::MONGO_CHECKPOINT_AGE_SECONDS, &l).set(age as f64);
        }
    }
}

async fn run_committer<C: Connector>(sh: Arc<Shared<C>>, run: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            () = run.cancelled() => return,
            () = sh.acks.ready_notify.notified() => {}
        }
        // Let acknowledgements gather into one commit, unless they already fill half of
        // the fetch window (Individual mode: see `AckState::nudge_commit`).
        tokio::select! {
            biased;
            () = run.cancelled() => return,
            () = sh.acks.flush_notify.notified() => {}
            () = tokio::time::sleep(sh.config.commit_interval) => {}
        }
        if commit_ready(&sh).await.is_err() && sh.acks.has_ready() {
            // Try again on the next ack or after the next interval.
            sh.acks.ready_notify.notify_one();
        }
    }
}

async fn run_pinger<C: Connector>(sh: Arc<Shared<C>>, run: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            () = run.cancelled() => return,
            () = tokio::time::sleep(sh.config.ping_interval) => {}
        }
        let cp = lock(&sh.checkpoint).clone();
        update_checkpoint_age(&sh, &cp);
        let Some((reader, retire)) = current(&sh) else {
            continue;
        };
        let result = tokio::select! {
            biased;
            () = run.cancelled() => return,
            r = tokio::time::timeout(sh.config.ping_timeout, reader.ping()) => r,
        };
        match result {
            Ok(Ok(rtt)) => lock(&sh.rc.health).last_ping = Some(rtt),
            Ok(Err(e)) => {
                tracing::warn!(source = %sh.rc.source(), error = %e, "ping failed; replacing the session");
                retire.cancel();
            }
            Err(_) => {
                tracing::warn!(source = %sh.rc.source(), "ping timed out after {:?}; replacing the session", sh.config.ping_timeout);
                retire.cancel();
            }
        }
    }
}

async fn send_error(
    tx: &mpsc::Sender<Result<Delivery, ReadError>>,
    e: ReadError,
    run: &CancellationToken,
) {
    tokio::select! {
        biased;
        () = run.cancelled() => {}
        _ = tx.send(Err(e)) => {}
    }
}

async fn run_reader<C: Connector>(
    sh: Arc<Shared<C>>,
    tx: mpsc::Sender<Result<Delivery, ReadError>>,
    run: CancellationToken,
) {
    let end = reader_loop(&sh, &tx, &run).await;
    sh.rc.set(end);
    run.cancel();
}

async fn reader_loop<C: Connector>(
    sh: &Arc<Shared<C>>,
    tx: &mpsc::Sender<Result<Delivery, ReadError>>,
    run: &CancellationToken,
) -> ConnState {
    // The saved checkpoint is where the first session starts.
    if let Some(store) = &sh.store {
        match store.load(sh.rc.source()).await {
            Ok(Some(cp)) => *lock(&sh.checkpoint) = cp,
            Ok(None) => {}
            Err(e) => {
                let e = e.with_source_name(sh.rc.source().clone());
                send_error(tx, e, run).await;
                return ConnState::Failed;
            }
        }
    }
    let mut outage: Option<Outage> = None;
    loop {
        // Where the new session starts: the committed checkpoint, advanced by what was
        // acknowledged but not committed yet (typically because the commit died with the
        // old session). Those messages were handled, so delivering them again is needless;
        // without this, each reconnect re-delivered a whole commit interval on top of the
        // unacknowledged window. They are still committed through the new session.
        let from = {
            let mut cp = lock(&sh.checkpoint).clone();
            for p in sh.acks.ready_snapshot() {
                cp.advance(&p);
            }
            cp
        };
        let reader = match sh.rc.establish(&from, run, &mut outage).await {
            Established::Ready(r) => Arc::new(r),
            Established::Cancelled => return ConnState::Closed,
            Established::Failed(e) => {
                send_error(tx, e, run).await;
                return ConnState::Failed;
            }
        };
        sh.acks.new_epoch();
        let retire = CancellationToken::new();
        *lock(&sh.current) = Some(Current {
            reader: reader.clone(),
            retire: retire.clone(),
        });
        sh.rc.ready(&mut outage);
        let exit = fetch_loop(sh, &reader, tx, run, &retire).await;
        match exit {
            Exit::Cancelled | Exit::ConsumerGone | Exit::Invalidated(_) => {
                if let Exit::Invalidated(e) = &exit {
                    sh.rc
                        .events
                        .emit(EventKind::Invalidated, None, e.message().to_owned());
                }
                let deadline = sh.config.close_timeout;
                if tokio::time::timeout(deadline, commit_ready(sh))
                    .await
                    .is_err()
                {
                    tracing::warn!(source = %sh.rc.source(), "final commit did not finish within {deadline:?}");
                }
                drop(lock(&sh.current).take());
                bounded_close(reader.as_ref(), deadline).await;
                return ConnState::Closed;
            }
            Exit::Failed(e) => {
                drop(lock(&sh.current).take());
                // The session is presumed dead: acknowledged positions stay queued and are
                // committed through the next session.
                bounded_close(reader.as_ref(), Duration::from_secs(1)).await;
                sh.rc.left_ready(&mut outage);
                sh.rc.set(ConnState::Disconnected);
                match sh.rc.on_failure(e, &mut outage) {
                    Ok(delay) => {
                        tokio::select! {
                            biased;
                            () = run.cancelled() => return ConnState::Closed,
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                    Err(e) => {
                        send_error(tx, e, run).await;
                        return ConnState::Failed;
                    }
                }
            }
        }
    }
}

async fn fetch_loop<C: Connector>(
    sh: &Arc<Shared<C>>,
    reader: &Arc<C::Reader>,
    tx: &mpsc::Sender<Result<Delivery, ReadError>>,
    run: &CancellationToken,
    retire: &CancellationToken,
) -> Exit {
    let cfg = &sh.config;
    let mut ask_size = if cfg.adaptive {
        cfg.fetch_min
    } else {
        cfg.fetch_max
    };
    let source = sh.rc.source().clone();
    let dlq: Arc<dyn DeadLetterSink> = Arc::new(SessionDeadLetter(Arc::downgrade(sh)));
    let retired = || {
        ReadError::transient(
            ErrorKind::Connection,
            "health ping failed; the session was replaced",
        )
    };
    loop {
        // Backpressure: a slot in the buffer…
        let permit = tokio::select! {
            biased;
            () = run.cancelled() => return Exit::Cancelled,
            () = retire.cancelled() => return Exit::Failed(retired()),
            p = tx.reserve() => match p {
                Ok(p) => p,
                Err(_) => return Exit::ConsumerGone,
            },
        };
        // …and room in the unacknowledged window.
        sh.acks.nudge_commit(cfg.max_unacked);
        while sh.acks.held() >= cfg.max_unacked {
            let notified = sh.acks.window_notify.notified();
            if sh.acks.held() < cfg.max_unacked {
                break;
            }
            sh.acks.nudge_commit(cfg.max_unacked);
            tokio::select! {
                biased;
                () = run.cancelled() => return Exit::Cancelled,
                () = retire.cancelled() => return Exit::Failed(retired()),
                () = notified => {}
            }
        }
        let room = (tx.capacity() + 1)
            .min(cfg.max_unacked.saturating_sub(sh.acks.held()))
            .max(1);
        let ask = ask_size.min(room);
        let t0 = Instant::now();
        let fetched = {
            let span = tracing::trace_span!("fetch", source = %source, max = ask);
            tokio::select! {
                biased;
                () = run.cancelled() => return Exit::Cancelled,
                () = retire.cancelled() => return Exit::Failed(retired()),
                r = tokio::time::timeout(cfg.fetch_wait + cfg.fetch_grace, reader.fetch(ask, cfg.fetch_wait).instrument(span)) => r,
            }
        };
        let messages = match fetched {
            Err(_) => {
                return Exit::Failed(ReadError::transient(
                    ErrorKind::Timeout,
                    format!(
                        "a fetch did not answer within {:?}: the connection is presumed dead",
                        cfg.fetch_wait + cfg.fetch_grace
                    ),
                ))
            }
            Ok(Err(e)) if e.kind() == ErrorKind::Invalidated => return Exit::Invalidated(e),
            Ok(Err(e)) => return Exit::Failed(e),
            Ok(Ok(m)) => m,
        };
        sh.rc
            .metrics
            .read_latency
            .record(t0.elapsed().as_secs_f64());
        lock(&sh.rc.health).last_success = Some(SystemTime::now());
        let n = messages.len();
        if cfg.adaptive {
            if n >= ask && ask == ask_size {
                ask_size = (ask_size * 2).min(cfg.fetch_max);
            } else if n < ask_size / 4 {
                ask_size = (ask_size / 2).max(cfg.fetch_min);
            }
        }
        if n == 0 {
            drop(permit);
            if let Some(p) = reader.idle_position() {
                sh.acks.advance_idle(p);
            }
            continue;
        }
        sh.rc.metrics.messages.increment(n as u64);
        let tokens = {
            let positions: Vec<&Position> = messages.iter().map(|m| &m.position).collect();
            sh.acks.register(&positions)
        };
        let mut permit = Some(permit);
        for (mut msg, token) in messages.into_iter().zip(tokens) {
            msg.source = source.clone();
            let attempt = match msg.deliveries {
                Some(n) => n.max(1),
                None => sh.acks.count_delivery(&msg.position),
            };
            let d = Delivery::new(msg, sh.acks.clone(), token, attempt, dlq.clone());
            if let Some(p) = permit.take() {
                p.send(Ok(d));
            } else {
                tokio::select! {
                    biased;
                    () = run.cancelled() => return Exit::Cancelled,
                    r = tx.send(Ok(d)) => if r.is_err() { return Exit::ConsumerGone },
                }
            }
        }
        sh.rc.metrics.unacked.set(sh.acks.unacked() as f64);
    }
}

//! The Reconnector: the one place that retries. It owns a [`Connector`] and a
//! [`RetryPolicy`], runs the state machine and decides, for every error, whether to retry
//! (and after how long) or to surface it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::connector::{Connector, Reader, SessionContext};
use crate::error::{ErrorClass, Exhausted, ReadError};
use crate::events::{EventKind, EventSink};
use crate::flaky::{FlakyConfig, FlakyDetector};
use crate::health::{HealthInner, LastError};
use crate::metrics::ReaderMetrics;
use crate::position::Checkpoint;
use crate::retry::{RetryContext, RetryDecision, RetryPolicy, RetrySchedule};
use crate::state::{ConnState, StateMachine, Transition};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One outage: from the first failure to the next `Ready`.
pub(crate) struct Outage {
    started: Instant,
    attempts: u32,
    schedule: Box<dyn RetrySchedule>,
    /// When the reader left `Ready` (for the reconnect-duration histogram).
    left_ready: Option<Instant>,
}

/// Runs the state machine for one source. See the module docs.
pub struct Reconnector<C: Connector> {
    connector: C,
    policy: Arc<dyn RetryPolicy>,
    source: Arc<str>,
    state: Mutex<StateMachine>,
    transitions: broadcast::Sender<Transition>,
    pub(crate) events: EventSink,
    pub(crate) metrics: ReaderMetrics,
    detector: Mutex<FlakyDetector>,
    pub(crate) health: Mutex<HealthInner>,
    sessions: AtomicU64,
}

/// What happened while establishing a session.
pub(crate) enum Established<R> {
    Ready(R),
    Cancelled,
    Failed(ReadError),
}

impl<C: Connector> Reconnector<C> {
    /// A Reconnector for `connector`, retrying by `policy`.
    pub fn new(
        connector: C,
        policy: Arc<dyn RetryPolicy>,
        source: Arc<str>,
        flaky: FlakyConfig,
    ) -> Self {
        let backend = connector.backend();
        let metrics = ReaderMetrics::new(&source, backend);
        metrics.state.set(ConnState::Disconnected.as_gauge());
        let (transitions, _) = broadcast::channel(256);
        Self {
            events: EventSink::new(source.clone(), backend),
            metrics,
            connector,
            policy,
            source,
            state: Mutex::new(StateMachine::new()),
            transitions,
            detector: Mutex::new(FlakyDetector::new(flaky)),
            health: Mutex::new(HealthInner::default()),
            sessions: AtomicU64::new(0),
        }
    }

    /// The connector.
    pub fn connector(&self) -> &C {
        &self.connector
    }

    /// The source's name.
    pub fn source(&self) -> &Arc<str> {
        &self.source
    }

    /// The current state.
    pub fn state(&self) -> ConnState {
        lock(&self.state).current()
    }

    /// The current state, as a watch channel (may skip states under load; use
    /// [`Reconnector::transitions`] to see each one).
    pub fn watch_state(&self) -> watch::Receiver<ConnState> {
        lock(&self.state).subscribe()
    }

    /// Every transition from now on (lossless up to 256 buffered).
    pub fn transitions(&self) -> broadcast::Receiver<Transition> {
        self.transitions.subscribe()
    }

    pub(crate) fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Move the state machine; a transition the table forbids is a bug: logged loudly and
    /// refused (tests assert none happens).
    pub(crate) fn set(&self, to: ConnState) -> bool {
        let result = lock(&self.state).transition(to);
        match result {
            Ok(t) => {
                tracing::info!(source = %self.source, from = %t.from, to = %t.to, after_ms = t.after.as_millis() as u64, "connection state");
                self.metrics.transition(t.from, t.to);
                let _ = self.transitions.send(t);
                true
            }
            Err(e) => {
                if !e.from.is_terminal() {
                    tracing::error!(source = %self.source, error = %e, "BUG: illegal state transition refused");
                    debug_assert!(false, "{e}");
                }
                false
            }
        }
    }

    fn record_error(&self, e: &ReadError) {
        self.metrics.error(e.class());
        lock(&self.health).last_error = Some(LastError {
            class: e.class(),
            message: e.to_string(),
            at: SystemTime::now(),
        });
    }

    /// Decide about a failure: `Ok(delay)` to retry after `delay`, `Err(e)` to surface.
    pub(crate) fn on_failure(
        &self,
        e: ReadError,
        outage: &mut Option<Outage>,
    ) -> Result<Duration, ReadError> {
        let e = e.with_source_name(self.source.clone());
        let e = {
            let mut d = lock(&self.detector);
            d.failure();
            if e.class() == ErrorClass::Transient && d.is_flaky() {
                drop(d);
                self.events.emit(
                    EventKind::Flaky,
                    None,
                    format!("failures keep alternating with success: {}", e.message()),
                );
                e.reclassified(ErrorClass::Flaky)
            } else {
                e
            }
        };
        self.record_error(&e);
        tracing::warn!(source = %self.source, error = %e, "read error");
        if e.class() == ErrorClass::Permanent {
            // Never retried, whatever the policy says.
            return Err(e);
        }
        let o = outage.get_or_insert_with(|| Outage {
            started: Instant::now(),
            attempts: 0,
            schedule: self.policy.schedule(),
            left_ready: None,
        });
        o.attempts += 1;
        let elapsed = o.started.elapsed();
        let ctx = RetryContext {
            error: &e,
            attempt: o.attempts,
            elapsed,
        };
        match o.schedule.next(&ctx) {
            RetryDecision::RetryAfter(delay) => {
                self.metrics.retries.increment(1);
                tracing::debug!(source = %self.source, attempt = o.attempts, delay_ms = delay.as_millis() as u64, "retrying");
                Ok(delay)
            }
            RetryDecision::NotRetryable => Err(e),
            RetryDecision::Exhausted => Err(e.with_exhausted(Exhausted {
                attempts: o.attempts,
                elapsed,
            })),
        }
    }

    /// Note that the reader left `Ready` now (starts the reconnect-duration clock).
    pub(crate) fn left_ready(&self, outage: &mut Option<Outage>) {
        let now = Instant::now();
        if let Some(o) = outage {
            o.left_ready.get_or_insert(now);
        } else {
            *outage = Some(Outage {
                started: now,
                attempts: 0,
                schedule: self.policy.schedule(),
                left_ready: Some(now),
            });
        }
    }

    /// Disconnected → Reconnecting → Recovering, retrying per policy, until a session is
    /// ready to read, the token is cancelled, or an error is surfaced.
    pub(crate) async fn establish(
        &self,
        from: &Checkpoint,
        cancel: &CancellationToken,
        outage: &mut Option<Outage>,
    ) -> Established<C::Reader> {
        loop {
            if self.state() != ConnState::Reconnecting {
                self.set(ConnState::Reconnecting);
            }
            let session = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
            let ctx = SessionContext {
                source: self.source.clone(),
                events: self.events.clone(),
                session,
            };
            let span = tracing::info_span!("reconnect", source = %self.source, backend = self.connector.backend(), session);
            let connected = tokio::select! {
                biased;
                () = cancel.cancelled() => return Established::Cancelled,
                r = self.connector.connect(&ctx, from).instrument(span) => r,
            };
            let failure = match connected {
                Ok(reader) => {
                    lock(&self.health).sessions = session;
                    self.set(ConnState::Recovering);
                    let recovered = tokio::select! {
                        biased;
                        () = cancel.cancelled() => {
                            crate::reader::bounded_close(&reader, Duration::from_secs(1)).await;
                            return Established::Cancelled;
                        }
                        r = reader.recover().instrument(tracing::info_span!("recover", source = %self.source, session)) => r,
                    };
                    match recovered {
                        Ok(()) => return Established::Ready(reader),
                        Err(e) => {
                            crate::reader::bounded_close(&reader, Duration::from_secs(1)).await;
                            self.set(ConnState::Disconnected);
                            e
                        }
                    }
                }
                Err(e) => e,
            };
            match self.on_failure(failure, outage) {
                Ok(delay) => {
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => return Established::Cancelled,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(e) => return Established::Failed(e),
            }
        }
    }

    /// The session reached `Ready`: record it, and end the outage unless the source is flaky.
    pub(crate) fn ready(&self, outage: &mut Option<Outage>) {
        self.set(ConnState::Ready);
        let flaky = {
            let mut d = lock(&self.detector);
            d.success();
            d.is_flaky()
        };
        if let Some(o) = outage.as_mut() {
            if let Some(left) = o.left_ready.take() {
                self.metrics.reconnect.record(left.elapsed().as_secs_f64());
            }
        }
        if !flaky {
            *outage = None;
        }
    }
}

//! # reader-retry
//!
//! Retry policies for the unireader [`Reconnector`](reader_core::Reconnector): exponential
//! backoff, jitter (none, full, equal,
//! decorrelated), a maximum number of retries, a maximum elapsed time, the error classes
//! to retry (default: transient and flaky, never permanent), the server's delay hint, and
//! a user closure that may override any decision.
//!
//! ```
//! use std::time::Duration;
//! use reader_retry::{Jitter, Retry};
//!
//! // 100 ms, 200 ms, 400 ms … capped at 5 s, full jitter, give up after 10 retries or 1 min.
//! let policy = Retry::exponential()
//!     .initial(Duration::from_millis(100))
//!     .factor(2.0)
//!     .max_delay(Duration::from_secs(5))
//!     .jitter(Jitter::Full)
//!     .max_retries(Some(10))
//!     .max_elapsed(Some(Duration::from_secs(60)));
//! let policy: std::sync::Arc<dyn reader_core::RetryPolicy> = policy.into_policy();
//! # let _ = policy;
//! ```
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reader_core::{ErrorClass, RetryContext, RetryDecision, RetryPolicy, RetrySchedule};

/// How randomness is added to each delay (so many readers do not reconnect in lockstep).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Jitter {
    /// The computed delay exactly.
    #[default]
    None,
    /// Uniform in `[0, delay]`.
    Full,
    /// `delay/2` plus uniform in `[0, delay/2]`.
    Equal,
    /// Uniform in `[initial, previous × 3]`, capped at `max_delay` (AWS "decorrelated").
    Decorrelated,
}

/// A user hook: return `Some(decision)` to override the policy, `None` to let it decide.
pub type CustomRule = Arc<dyn Fn(&RetryContext<'_>) -> Option<RetryDecision> + Send + Sync>;

/// A composable retry policy. See the crate docs.
#[derive(Clone)]
pub struct Retry {
    initial: Duration,
    factor: f32,
    max_delay: Duration,
    jitter: Jitter,
    max_retries: Option<u32>,
    max_elapsed: Option<Duration>,
    retry_on: Vec<ErrorClass>,
    honor_server_hint: bool,
    custom: Option<CustomRule>,
    seed: Option<u64>,
}

impl fmt::Debug for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("initial", &self.initial)
            .field("factor", &self.factor)
            .field("max_delay", &self.max_delay)
            .field("jitter", &self.jitter)
            .field("max_retries", &self.max_retries)
            .field("max_elapsed", &self.max_elapsed)
            .field("retry_on", &self.retry_on)
            .field("honor_server_hint", &self.honor_server_hint)
            .field("custom", &self.custom.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Retry {
    /// 100 ms initial, ×2, 5 s cap, no jitter, 5 retries, no elapsed limit, transient and
    /// flaky errors only, server hints honoured.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            factor: 2.0,
            max_delay: Duration::from_secs(5),
            jitter: Jitter::None,
            max_retries: Some(5),
            max_elapsed: None,
            retry_on: vec![ErrorClass::Transient, ErrorClass::Flaky],
            honor_server_hint: true,
            custom: None,
            seed: None,
        }
    }
}

impl Retry {
    /// Exponential backoff with the defaults (see [`Retry::default`]).
    #[must_use]
    pub fn exponential() -> Self {
        Self::default()
    }

    /// The same delay every time.
    #[must_use]
    pub fn fixed(delay: Duration) -> Self {
        Self::default().initial(delay).factor(1.0).max_delay(delay)
    }

    /// Never retry: every error is surfaced.
    #[must_use]
    pub fn never() -> Self {
        Self::default().max_retries(Some(0))
    }

    /// Keep reconnecting for as long as the source is away, up to `max_elapsed` per outage
    /// (the default of the `unireader` facade: 5 minutes).
    #[must_use]
    pub fn persistent(max_elapsed: Duration) -> Self {
        Self::default()
            .jitter(Jitter::Equal)
            .max_retries(None)
            .max_elapsed(Some(max_elapsed))
    }

    /// The first delay.
    #[must_use]
    pub fn initial(mut self, d: Duration) -> Self {
        self.initial = d;
        self
    }

    /// The growth factor (values below 1 are taken as 1).
    #[must_use]
    pub fn factor(mut self, f: f32) -> Self {
        self.factor = if f.is_finite() { f.max(1.0) } else { 1.0 };
        self
    }

    /// The largest delay.
    #[must_use]
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// The jitter.
    #[must_use]
    pub fn jitter(mut self, j: Jitter) -> Self {
        self.jitter = j;
        self
    }

    /// Retries per outage; `None` for no limit.
    #[must_use]
    pub fn max_retries(mut self, n: Option<u32>) -> Self {
        self.max_retries = n;
        self
    }

    /// Time per outage after which no retry is scheduled; `None` for no limit.
    #[must_use]
    pub fn max_elapsed(mut self, d: Option<Duration>) -> Self {
        self.max_elapsed = d;
        self
    }

    /// Which classes are retried. `Permanent` is never retried by the Reconnector,
    /// whatever is listed here.
    #[must_use]
    pub fn retry_on(mut self, classes: &[ErrorClass]) -> Self {
        self.retry_on = classes.to_vec();
        self
    }

    /// Whether a delay the server asked for replaces the computed one (default true).
    #[must_use]
    pub fn honor_server_hint(mut self, yes: bool) -> Self {
        self.honor_server_hint = yes;
        self
    }

    /// A closure consulted first; `Some` overrides the policy.
    #[must_use]
    pub fn custom(
        mut self,
        rule: impl Fn(&RetryContext<'_>) -> Option<RetryDecision> + Send + Sync + 'static,
    ) -> Self {
        self.custom = Some(Arc::new(rule));
        self
    }

    /// A fixed random seed for the jitter (reproducible tests).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// As a shareable policy object.
    #[must_use]
    pub fn into_policy(self) -> Arc<dyn RetryPolicy> {
        Arc::new(self)
    }

    /// The delays this policy would produce for `n` consecutive failures, ignoring
    /// classes and budgets (for documentation and tests).
    #[must_use]
    pub fn preview(&self, n: usize) -> Vec<Duration> {
        let mut s = self.new_schedule();
        (0..n).map(|_| s.next_delay()).collect()
    }

    fn new_schedule(&self) -> Schedule {
        Schedule {
            policy: self.clone(),
            step: 0,
            previous: self.initial,
            rng: self
                .seed
                .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
        }
    }
}

impl RetryPolicy for Retry {
    fn schedule(&self) -> Box<dyn RetrySchedule> {
        Box::new(self.new_schedule())
    }
}

struct Schedule {
    policy: Retry,
    step: i32,
    previous: Duration,
    rng: fastrand::Rng,
}

fn uniform(rng: &mut fastrand::Rng, lo: Duration, hi: Duration) -> Duration {
    if hi <= lo {
        return lo;
    }
    let lo_ns = u64::try_from(lo.as_nanos()).unwrap_or(u64::MAX);
    let hi_ns = u64::try_from(hi.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.u64(lo_ns..=hi_ns))
}

impl Schedule {
    fn next_delay(&mut self) -> Duration {
        let p = &self.policy;
        // initial × factor^step, capped. Computed in f64 (exact for the usual factors) —
        // backon's builder multiplies in f32 and drifts (200.000003 ms), which breaks the
        // exact schedules users and tests rely on.
        let base = if self.step >= 64 {
            p.max_delay
        } else {
            let secs = p.initial.as_secs_f64() * f64::from(p.factor).powi(self.step);
            Duration::try_from_secs_f64(secs).map_or(p.max_delay, |d| d.min(p.max_delay))
        };
        self.step = self.step.saturating_add(1);
        let d = match p.jitter {
            Jitter::None => base,
            Jitter::Full => uniform(&mut self.rng, Duration::ZERO, base),
            Jitter::Equal => {
                let half = base / 2;
                half + uniform(&mut self.rng, Duration::ZERO, base - half)
            }
            Jitter::Decorrelated => {
                let hi = self.previous.saturating_mul(3).min(p.max_delay);
                uniform(&mut self.rng, p.initial.min(hi), hi)
            }
        };
        self.previous = d.max(p.initial);
        d
    }
}

impl RetrySchedule for Schedule {
    fn next(&mut self, ctx: &RetryContext<'_>) -> RetryDecision {
        let class = ctx.error.class();
        if class == ErrorClass::Permanent || !self.policy.retry_on.contains(&class) {
            return RetryDecision::NotRetryable;
        }
        if let Some(rule) = &self.policy.custom {
            if let Some(decision) = rule(ctx) {
                return decision;
            }
        }
        if let Some(max) = self.policy.max_retries {
            if ctx.attempt > max {
                return RetryDecision::Exhausted;
            }
        }
        let computed = self.next_delay();
        let delay = match ctx.error.retry_after() {
            Some(hint) if self.policy.honor_server_hint => hint,
            _ => computed,
        };
        if let Some(max) = self.policy.max_elapsed {
            if ctx.elapsed + delay > max {
                return RetryDecision::Exhausted;
            }
        }
        RetryDecision::RetryAfter(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reader_core::{ErrorKind, ReadError};

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn ctx<'a>(e: &'a ReadError, attempt: u32, elapsed: Duration) -> RetryContext<'a> {
        RetryContext {
            error: e,
            attempt,
            elapsed,
        }
    }

    #[test]
    fn default_schedule_is_exact() {
        assert_eq!(
            Retry::default().preview(8),
            vec![
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(5000),
                ms(5000)
            ]
        );
        assert_eq!(Retry::fixed(ms(250)).preview(3), vec![ms(250); 3]);
        assert_eq!(
            Retry::exponential()
                .factor(3.0)
                .initial(ms(10))
                .max_delay(ms(100))
                .preview(4),
            vec![ms(10), ms(30), ms(90), ms(100)]
        );
    }

    #[test]
    fn jitter_stays_in_bounds_over_many_draws() {
        let plain = Retry::default().preview(8);
        for (jitter, lo_of, hi_of) in [(Jitter::Full, 0.0, 1.0), (Jitter::Equal, 0.5, 1.0)] {
            for seed in 0..200 {
                let got = Retry::default().jitter(jitter).seed(seed).preview(8);
                for (d, base) in got.iter().zip(&plain) {
                    let lo = base.mul_f64(lo_of);
                    let hi = base.mul_f64(hi_of);
                    assert!(
                        *d >= lo && *d <= hi,
                        "{jitter:?}: {d:?} outside [{lo:?}, {hi:?}]"
                    );
                }
            }
        }
        // Full jitter really spreads: not all draws equal.
        let draws: std::collections::HashSet<_> = (0..50)
            .map(|s| Retry::default().jitter(Jitter::Full).seed(s).preview(1)[0])
            .collect();
        assert!(draws.len() > 40);
        // Decorrelated: within [initial, min(cap, 3 × previous)].
        for seed in 0..200 {
            let got = Retry::default()
                .jitter(Jitter::Decorrelated)
                .seed(seed)
                .preview(20);
            let mut prev = ms(100);
            for d in got {
                assert!(
                    d >= ms(100) && d <= ms(5000) && d <= prev * 3,
                    "{d:?} after {prev:?}"
                );
                prev = d.max(ms(100));
            }
        }
    }

    #[test]
    fn budget_classes_hint_and_custom_rule() {
        let t = ReadError::transient(ErrorKind::Connection, "refused");
        let p = ReadError::permanent(ErrorKind::Auth, "WRONGPASS");
        let u = ReadError::new(ErrorClass::Unknown, ErrorKind::Other, "?");
        let mut s = Retry::default().schedule();
        assert_eq!(
            s.next(&ctx(&p, 1, Duration::ZERO)),
            RetryDecision::NotRetryable
        );
        assert_eq!(
            s.next(&ctx(&u, 1, Duration::ZERO)),
            RetryDecision::NotRetryable
        );
        for attempt in 1..=5 {
            assert!(matches!(
                s.next(&ctx(&t, attempt, Duration::ZERO)),
                RetryDecision::RetryAfter(_)
            ));
        }
        assert_eq!(
            s.next(&ctx(&t, 6, Duration::ZERO)),
            RetryDecision::Exhausted
        );

        let mut s = Retry::default()
            .max_retries(None)
            .max_elapsed(Some(ms(1000)))
            .schedule();
        assert_eq!(
            s.next(&ctx(&t, 1, ms(850))),
            RetryDecision::RetryAfter(ms(100))
        );
        assert_eq!(
            s.next(&ctx(&t, 2, ms(850))),
            RetryDecision::Exhausted,
            "850 + 200 > 1000"
        );

        let hinted = t.clone().with_retry_after(ms(1234));
        let mut s = Retry::default().schedule();
        assert_eq!(
            s.next(&ctx(&hinted, 1, Duration::ZERO)),
            RetryDecision::RetryAfter(ms(1234))
        );
        let mut s = Retry::default().honor_server_hint(false).schedule();
        assert_eq!(
            s.next(&ctx(&hinted, 1, Duration::ZERO)),
            RetryDecision::RetryAfter(ms(100))
        );

        let mut s = Retry::default()
            .retry_on(&[ErrorClass::Transient, ErrorClass::Unknown])
            .custom(|c| (c.attempt == 2).then_some(RetryDecision::RetryAfter(ms(7))))
            .schedule();
        assert_eq!(
            s.next(&ctx(&u, 1, Duration::ZERO)),
            RetryDecision::RetryAfter(ms(100))
        );
        assert_eq!(
            s.next(&ctx(&u, 2, Duration::ZERO)),
            RetryDecision::RetryAfter(ms(7))
        );
        assert_eq!(
            Retry::never().schedule().next(&ctx(&t, 1, Duration::ZERO)),
            RetryDecision::Exhausted
        );
    }
}

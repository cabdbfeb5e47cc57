//! Flakiness detection: a transient error that keeps alternating with success.
//!
//! A connection that fails, comes back, fails again a second later, and so on, would renew
//! the retry budget at every short success and never give up; it also deserves a different
//! alert than one long outage. The detector keeps a sliding window of outcomes per source —
//! bounded both by count and by age — and reports the source as *flaky* when, inside the
//! window, the outcome changed between failure and success at least `min_flips` times.
//!
//! The [`Reconnector`](crate::Reconnector) records a success each time a session reaches
//! `Ready` and a failure for each error; while flaky, transient errors are reclassified as
//! [`ErrorClass::Flaky`](crate::ErrorClass::Flaky) and the retry budget is not renewed by
//! the successes in between, so a flapping source eventually surfaces an error.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Thresholds of the [`FlakyDetector`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlakyConfig {
    /// How many outcomes the window holds at most (default 12).
    pub window_len: usize,
    /// How old an outcome may be before it leaves the window (default 60 s).
    pub window_age: Duration,
    /// How many failure/success alternations inside the window make the source flaky (default 4).
    pub min_flips: usize,
}

impl Default for FlakyConfig {
    fn default() -> Self {
        Self {
            window_len: 12,
            window_age: Duration::from_secs(60),
            min_flips: 4,
        }
    }
}

/// A sliding window of outcomes of one source. See the module docs.
#[derive(Debug)]
pub struct FlakyDetector {
    config: FlakyConfig,
    outcomes: VecDeque<(Instant, bool)>,
}

impl FlakyDetector {
    /// A detector with the given thresholds.
    #[must_use]
    pub fn new(config: FlakyConfig) -> Self {
        Self {
            outcomes: VecDeque::with_capacity(config.window_len.max(1)),
            config,
        }
    }

    /// Record a success (a session became ready).
    pub fn success(&mut self) {
        self.push(true);
    }

    /// Record a failure.
    pub fn failure(&mut self) {
        self.push(false);
    }

    fn push(&mut self, ok: bool) {
        self.prune();
        if self.outcomes.len() >= self.config.window_len.max(1) {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back((Instant::now(), ok));
    }

    fn prune(&mut self) {
        let now = Instant::now();
        while let Some((at, _)) = self.outcomes.front() {
            if now.duration_since(*at) > self.config.window_age {
                self.outcomes.pop_front();
            } else {
                break;
            }
        }
    }

    /// Whether the source is flaky right now.
    pub fn is_flaky(&mut self) -> bool {
        self.prune();
        let flips = self
            .outcomes
            .iter()
            .zip(self.outcomes.iter().skip(1))
            .filter(|(a, b)| a.1 != b.1)
            .count();
        flips >= self.config.min_flips
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn flips_when_failures_alternate_and_recovers_with_time() {
        let mut d = FlakyDetector::new(FlakyConfig::default());
        // A long outage is not flaky: many failures, no alternation.
        for _ in 0..10 {
            d.failure();
        }
        assert!(!d.is_flaky());
        d.success();
        d.failure();
        d.success();
        assert!(!d.is_flaky(), "3 flips < 4");
        d.failure();
        assert!(d.is_flaky(), "4 flips");
        // Time heals: everything leaves the window.
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!d.is_flaky());
    }

    #[tokio::test(start_paused = true)]
    async fn window_is_bounded_by_count() {
        let mut d = FlakyDetector::new(FlakyConfig {
            window_len: 4,
            window_age: Duration::from_secs(3600),
            min_flips: 3,
        });
        for _ in 0..2 {
            d.failure();
            d.success();
        }
        assert!(d.is_flaky());
        for _ in 0..4 {
            d.success();
        }
        assert!(!d.is_flaky(), "steady successes pushed the flips out");
    }
}

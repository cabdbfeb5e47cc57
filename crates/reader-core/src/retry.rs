//! The retry contract. Policies live in `reader-retry`; the [`Reconnector`](crate::Reconnector)
//! takes any implementation, so the dependency points one way.

use std::fmt;
use std::time::Duration;

use crate::error::ReadError;

/// What the Reconnector knows when it asks a policy.
#[derive(Debug)]
pub struct RetryContext<'a> {
    /// The error that just happened (already classified).
    pub error: &'a ReadError,
    /// How many attempts failed in this outage, this one included (1 for the first failure).
    pub attempt: u32,
    /// Time since the first failure of this outage.
    pub elapsed: Duration,
}

/// What a policy answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this delay.
    RetryAfter(Duration),
    /// The budget ran out (attempts or elapsed time).
    Exhausted,
    /// This class of error is not retried by the policy.
    NotRetryable,
}

/// A retry policy: makes one [`RetrySchedule`] per outage.
pub trait RetryPolicy: Send + Sync + fmt::Debug + 'static {
    /// A fresh schedule, for a new outage.
    fn schedule(&self) -> Box<dyn RetrySchedule>;
}

/// The stateful part of a policy for one outage (jitter may depend on the previous delay).
pub trait RetrySchedule: Send {
    /// Decide about the failure described by `ctx`.
    fn next(&mut self, ctx: &RetryContext<'_>) -> RetryDecision;
}

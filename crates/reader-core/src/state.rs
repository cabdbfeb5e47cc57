//! The connection state machine, with its one transition table.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

/// The state of a reader's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnState {
    /// No session. The initial state, and the state right after a session failed.
    Disconnected,
    /// Opening a session (possibly waiting out a backoff between attempts).
    Reconnecting,
    /// A session is open; re-subscribing from the last durable position
    /// (re-create the group and read pending entries / resume from the token / join the
    /// group and seek to committed offsets).
    Recovering,
    /// Reading.
    Ready,
    /// Closed on purpose (terminal).
    Closed,
    /// Stopped by a permanent error or an exhausted retry budget (terminal).
    Failed,
}

impl ConnState {
    /// Every state, in gauge order.
    pub const ALL: [ConnState; 6] = [
        ConnState::Disconnected,
        ConnState::Reconnecting,
        ConnState::Recovering,
        ConnState::Ready,
        ConnState::Closed,
        ConnState::Failed,
    ];

    /// The lower-case name used in logs and metric labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Disconnected => "disconnected",
            ConnState::Reconnecting => "reconnecting",
            ConnState::Recovering => "recovering",
            ConnState::Ready => "ready",
            ConnState::Closed => "closed",
            ConnState::Failed => "failed",
        }
    }

    /// The numeric value of the `unireader_connection_state` gauge.
    #[must_use]
    pub fn as_gauge(self) -> f64 {
        match self {
            ConnState::Disconnected => 0.0,
            ConnState::Reconnecting => 1.0,
            ConnState::Recovering => 2.0,
            ConnState::Ready => 3.0,
            ConnState::Closed => 4.0,
            ConnState::Failed => 5.0,
        }
    }

    /// Whether no transition leaves this state.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(self, ConnState::Closed | ConnState::Failed)
    }

    /// THE transition table. Every state change of every reader goes through it.
    ///
    /// | from         | to                                                   |
    /// |--------------|------------------------------------------------------|
    /// | Disconnected | Reconnecting, Closed, Failed                         |
    /// | Reconnecting | Recovering, Closed, Failed                           |
    /// | Recovering   | Ready, Disconnected, Closed, Failed                  |
    /// | Ready        | Disconnected, Closed, Failed                         |
    /// | Closed       | —                                                    |
    /// | Failed       | —                                                    |
    #[must_use]
    pub fn can_transition_to(self, to: ConnState) -> bool {
        use ConnState::{Closed, Disconnected, Failed, Ready, Reconnecting, Recovering};
        matches!(
            (self, to),
            (Disconnected, Reconnecting | Closed | Failed)
                | (Reconnecting, Recovering | Closed | Failed)
                | (Recovering, Ready | Disconnected | Closed | Failed)
                | (Ready, Disconnected | Closed | Failed)
        )
    }
}

impl fmt::Display for ConnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transition that the table forbids: a bug in the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("illegal connection state transition {from} -> {to}")]
pub struct IllegalTransition {
    /// The state it was in.
    pub from: ConnState,
    /// The state asked for.
    pub to: ConnState,
}

/// A state change, as published on the watch channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: ConnState,
    /// The state entered.
    pub to: ConnState,
    /// How long `from` lasted.
    pub after: Duration,
}

/// Holds the current state, enforces the table, times every state and publishes it.
#[derive(Debug)]
pub struct StateMachine {
    tx: watch::Sender<ConnState>,
    entered: Instant,
}

impl StateMachine {
    /// A machine in `Disconnected`.
    #[must_use]
    pub fn new() -> Self {
        let (tx, _) = watch::channel(ConnState::Disconnected);
        Self {
            tx,
            entered: Instant::now(),
        }
    }

    /// The current state.
    #[must_use]
    pub fn current(&self) -> ConnState {
        *self.tx.borrow()
    }

    /// A receiver of state changes.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<ConnState> {
        self.tx.subscribe()
    }

    /// Move to `to`, if the table allows it.
    ///
    /// # Errors
    /// [`IllegalTransition`] when the table forbids it; the state is unchanged.
    pub fn transition(&mut self, to: ConnState) -> Result<Transition, IllegalTransition> {
        let from = self.current();
        if !from.can_transition_to(to) {
            return Err(IllegalTransition { from, to });
        }
        let now = Instant::now();
        let after = now.duration_since(self.entered);
        self.entered = now;
        self.tx.send_replace(to);
        Ok(Transition { from, to, after })
    }
}

impl Default for StateMachine {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_allows_exactly_the_documented_cycle() {
        use ConnState::*;
        let allowed = [
            (Disconnected, Reconnecting),
            (Disconnected, Closed),
            (Disconnected, Failed),
            (Reconnecting, Recovering),
            (Reconnecting, Closed),
            (Reconnecting, Failed),
            (Recovering, Ready),
            (Recovering, Disconnected),
            (Recovering, Closed),
            (Recovering, Failed),
            (Ready, Disconnected),
            (Ready, Closed),
            (Ready, Failed),
        ];
        for from in ConnState::ALL {
            for to in ConnState::ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn an_illegal_transition_is_refused_and_changes_nothing() {
        let mut m = StateMachine::new();
        let err = m.transition(ConnState::Ready).unwrap_err();
        assert_eq!(
            err,
            IllegalTransition {
                from: ConnState::Disconnected,
                to: ConnState::Ready
            }
        );
        assert_eq!(m.current(), ConnState::Disconnected);
        m.transition(ConnState::Closed).unwrap();
        assert!(m.transition(ConnState::Reconnecting).is_err(), "terminal");
    }

    #[tokio::test(start_paused = true)]
    async fn transitions_are_timed_and_published() {
        let mut m = StateMachine::new();
        let mut rx = m.subscribe();
        tokio::time::advance(Duration::from_millis(250)).await;
        let t = m.transition(ConnState::Reconnecting).unwrap();
        assert_eq!(t.after, Duration::from_millis(250));
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), ConnState::Reconnecting);
    }
}

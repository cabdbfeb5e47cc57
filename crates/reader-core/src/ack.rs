//! At-least-once bookkeeping: which delivered positions were acknowledged, and which of
//! them may be committed.
//!
//! In [`CommitOrder::Contiguous`] mode (Kafka, MongoDB) a position becomes committable only
//! when it and every position delivered before it *in the same lane* were acknowledged: the
//! committed position is the highest contiguous acknowledged one. In
//! [`CommitOrder::Individual`] mode (Redis Streams, whose pending entries list tracks each
//! entry on its own) every acknowledged position is committable at once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::position::{Lane, Position};

/// How a backend wants acknowledged positions handed to [`Reader::commit`](crate::Reader::commit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CommitOrder {
    /// Only the contiguous acknowledged prefix of each lane, in delivery order.
    #[default]
    Contiguous,
    /// Each acknowledged position, as soon as it is acknowledged.
    Individual,
}

/// Identifies one delivery inside the tracker.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AckToken {
    epoch: u64,
    lane: usize,
    seq: u64,
}

#[derive(Debug)]
struct LaneQueue {
    lane: Lane,
    /// Sequence number of `entries[0]`.
    base: u64,
    entries: VecDeque<(Position, bool)>,
}

#[derive(Debug, Default)]
struct Inner {
    epoch: u64,
    lanes: Vec<LaneQueue>,
    index: HashMap<Lane, usize>,
    /// Individual mode: delivered and not yet acknowledged, per token key.
    individual: HashMap<(usize, u64), Position>,
    next_individual: u64,
    ready: Vec<Position>,
    /// Deliveries registered and not yet acknowledged (both modes).
    unacked: usize,
    /// Entries held by the tracker (Contiguous: queued, acknowledged or not).
    held: usize,
    /// Positions taken for a commit that has not finished yet.
    committing: usize,
}

/// Shared between the reader's tasks and every [`Delivery`](crate::Delivery).
#[derive(Debug)]
pub(crate) struct AckState {
    order: CommitOrder,
    inner: Mutex<Inner>,
    /// Woken when something became committable.
    pub(crate) ready_notify: Notify,
    /// Woken when the window shrank (an ack arrived or lanes were reset).
    pub(crate) window_notify: Notify,
    /// Woken when the committer should not wait out `commit_interval` (see
    /// [`Self::nudge_commit`]).
    pub(crate) flush_notify: Notify,
    /// Deliveries so far of each position not acknowledged yet, across sessions (for
    /// backends that keep no delivery counter).
    attempts: Mutex<HashMap<Position, u32>>,
}

/// At most this many positions have their deliveries counted; past it an arbitrary one is
/// forgotten (it then counts from 1 again): a bound on memory, far above `max_unacked`.
const MAX_COUNTED: usize = 100_000;

impl AckState {
    pub(crate) fn new(order: CommitOrder) -> Arc<Self> {
        Arc::new(Self {
            order,
            inner: Mutex::new(Inner::default()),
            ready_notify: Notify::new(),
            window_notify: Notify::new(),
            flush_notify: Notify::new(),
            attempts: Mutex::new(HashMap::new()),
        })
    }

    fn attempts(&self) -> MutexGuard<'_, HashMap<Position, u32>> {
        self.attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One more delivery of `pos`: how many there were, counting this one.
    pub(crate) fn count_delivery(&self, pos: &Position) -> u32 {
        if !pos.is_durable() {
            return 1;
        }
        let mut g = self.attempts();
        if let Some(n) = g.get_mut(pos) {
            *n = n.saturating_add(1);
            return *n;
        }
        if g.len() >= MAX_COUNTED {
            if let Some(k) = g.keys().next().cloned() {
                g.remove(&k);
            }
        }
        g.insert(pos.clone(), 1);
        1
    }

    /// `pos` was acknowledged (or dead-lettered): stop counting it.
    pub(crate) fn forget_attempts(&self, pos: &Position) {
        if pos.is_durable() {
            self.attempts().remove(pos);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the bookkeeping half-written in a
        // way that matters more than losing the reader, so poisoning is ignored.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Register a batch of delivered positions, in delivery order.
    pub(crate) fn register(&self, positions: &[&Position]) -> Vec<Option<AckToken>> {
        let mut g = self.lock();
        let epoch = g.epoch;
        let mut out = Vec::with_capacity(positions.len());
        for pos in positions {
            if !pos.is_durable() {
                out.push(None);
                continue;
            }
            g.unacked += 1;
            match self.order {
                CommitOrder::Individual => {
                    let seq = g.next_individual;
                    g.next_individual += 1;
                    g.individual.insert((0, seq), (*pos).clone());
                    g.held += 1;
                    out.push(Some(AckToken {
                        epoch,
                        lane: 0,
                        seq,
                    }));
                }
                CommitOrder::Contiguous => {
                    let lane = pos.lane();
                    let idx = if let Some(i) = g.index.get(&lane) {
                        *i
                    } else {
                        let i = g.lanes.len();
                        g.lanes.push(LaneQueue {
                            lane: lane.clone(),
                            base: 0,
                            entries: VecDeque::new(),
                        });
                        g.index.insert(lane, i);
                        i
                    };
                    let q = &mut g.lanes[idx];
                    let seq = q.base + q.entries.len() as u64;
                    q.entries.push_back(((*pos).clone(), false));
                    g.held += 1;
                    out.push(Some(AckToken {
                        epoch,
                        lane: idx,
                        seq,
                    }));
                }
            }
        }
        out
    }

    /// Acknowledge one delivery. Returns whether it counted (not stale, not twice).
    pub(crate) fn ack(&self, token: AckToken) -> bool {
        let mut g = self.lock();
        let counted = match self.order {
            CommitOrder::Individual => {
                // Redis keeps each entry pending on the server until XACK, across sessions,
                // so an acknowledgement from an older session is still worth committing.
                if let Some(pos) = g.individual.remove(&(0, token.seq)) {
                    g.ready.push(pos);
                    g.held -= 1;
                    true
                } else {
                    false
                }
            }
            CommitOrder::Contiguous => {
                if token.epoch != g.epoch {
                    // The session that delivered it is gone and the new one re-delivers
                    // everything after the last commit: nothing to do.
                    return false;
                }
                let inner = &mut *g;
                let Some(q) = inner.lanes.get_mut(token.lane) else {
                    return false;
                };
                let Some(i) = token.seq.checked_sub(q.base) else {
                    return false;
                };
                let Ok(i) = usize::try_from(i) else {
                    return false;
                };
                match q.entries.get_mut(i) {
                    Some(entry) if !entry.1 => entry.1 = true,
                    _ => return false,
                }
                let mut last = None;
                while let Some((_, true)) = q.entries.front() {
                    if let Some((pos, _)) = q.entries.pop_front() {
                        last = Some(pos);
                    }
                    q.base += 1;
                    inner.held -= 1;
                }
                if let Some(pos) = last {
                    // Only the newest contiguous position of the lane matters: replace an
                    // older ready one of the same lane instead of growing the list.
                    let lane = &q.lane;
                    if let Some(slot) = inner.ready.iter_mut().find(|p| &p.lane() == lane) {
                        *slot = pos;
                    } else {
                        inner.ready.push(pos);
                    }
                }
                true
            }
        };
        if counted {
            g.unacked -= 1;
            let has_ready = !g.ready.is_empty();
            drop(g);
            if has_ready {
                self.ready_notify.notify_one();
            }
            self.window_notify.notify_waiters();
        }
        counted
    }

    /// A position reached while idle (MongoDB's post-batch resume token): committable
    /// at once when nothing of its lane is in flight.
    pub(crate) fn advance_idle(&self, pos: Position) {
        let mut g = self.lock();
        let lane = pos.lane();
        let busy = match self.order {
            CommitOrder::Individual => false,
            CommitOrder::Contiguous => g
                .index
                .get(&lane)
                .is_some_and(|i| !g.lanes[*i].entries.is_empty()),
        };
        if busy {
            return;
        }
        if let Some(slot) = g.ready.iter_mut().find(|p| p.lane() == lane) {
            *slot = pos;
        } else {
            g.ready.push(pos);
        }
        drop(g);
        self.ready_notify.notify_one();
    }

    /// Take what is committable now (they count as committing until [`Self::committed`]
    /// or [`Self::requeue`]).
    pub(crate) fn take_ready(&self) -> Vec<Position> {
        let mut g = self.lock();
        let taken = std::mem::take(&mut g.ready);
        g.committing += taken.len();
        taken
    }

    /// A commit of `n` taken positions succeeded.
    pub(crate) fn committed(&self, n: usize) {
        let mut g = self.lock();
        g.committing = g.committing.saturating_sub(n);
        drop(g);
        self.window_notify.notify_waiters();
    }

    /// Individual mode: acknowledged positions stay in the fetch window until their commit
    /// succeeds ([`Self::held`]), so a fast consumer fills the window with acknowledged
    /// entries and fetching would stall until the next `commit_interval`. Once they take
    /// half of `max_unacked`, wake the committer now.
    pub(crate) fn nudge_commit(&self, max_unacked: usize) {
        if self.order == CommitOrder::Individual
            && self.lock().ready.len() >= (max_unacked / 2).max(1)
        {
            self.flush_notify.notify_one();
        }
    }

    /// What is committable now, left in place.
    pub(crate) fn ready_snapshot(&self) -> Vec<Position> {
        self.lock().ready.clone()
    }

    /// Put back positions whose commit failed, in front of newer ones.
    pub(crate) fn requeue(&self, mut positions: Vec<Position>) {
        let mut g = self.lock();
        g.committing = g.committing.saturating_sub(positions.len());
        if self.order == CommitOrder::Contiguous {
            // A newer ready position of the same lane supersedes the failed one.
            positions.retain(|p| !g.ready.iter().any(|r| r.lane() == p.lane()));
        }
        positions.append(&mut g.ready);
        g.ready = positions;
    }

    /// Whether anything is waiting to be committed.
    pub(crate) fn has_ready(&self) -> bool {
        !self.lock().ready.is_empty()
    }

    /// A new session starts. In Contiguous mode the deliveries of the old session are
    /// forgotten (the new session re-delivers everything after the last commit).
    pub(crate) fn new_epoch(&self) {
        let mut g = self.lock();
        if self.order == CommitOrder::Contiguous {
            g.epoch += 1;
            g.lanes.clear();
            g.index.clear();
            g.unacked = 0;
            g.held = 0;
        }
        drop(g);
        self.window_notify.notify_waiters();
    }

    /// How many deliveries were not acknowledged yet.
    pub(crate) fn unacked(&self) -> usize {
        self.lock().unacked
    }

    /// The window that bounds fetching: positions delivered and not yet durable. In
    /// Contiguous mode the unacknowledged queue (a new session restarts after the newest
    /// acknowledged position, so acked-but-uncommitted ones are not re-delivered); in
    /// Individual mode (Redis) also the acknowledged ones whose commit has not succeeded —
    /// they stay pending on the server and a new session re-delivers them — so the window
    /// bounds the duplicates after a fault even when commits are slow or failing.
    pub(crate) fn held(&self) -> usize {
        let g = self.lock();
        match self.order {
            CommitOrder::Contiguous => g.held,
            CommitOrder::Individual => g.held + g.ready.len() + g.committing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(partition: i32, offset: i64) -> Position {
        Position::Partition {
            topic: "t".into(),
            partition,
            offset,
        }
    }

    #[test]
    fn out_of_order_acks_commit_only_the_contiguous_prefix() {
        let s = AckState::new(CommitOrder::Contiguous);
        let ps: Vec<Position> = (0..5).map(|o| p(0, o)).collect();
        let refs: Vec<&Position> = ps.iter().collect();
        let t: Vec<AckToken> = s.register(&refs).into_iter().flatten().collect();
        assert!(s.ack(t[2]));
        assert!(s.ack(t[1]));
        assert!(s.take_ready().is_empty(), "offset 0 is not acked yet");
        assert!(s.ack(t[0]));
        assert_eq!(s.take_ready(), vec![p(0, 2)], "highest contiguous only");
        assert!(s.ack(t[4]));
        assert!(s.take_ready().is_empty());
        assert!(!s.ack(t[4]), "a second ack does not count");
        assert_eq!(s.unacked(), 1);
        assert!(s.ack(t[3]));
        assert_eq!(s.take_ready(), vec![p(0, 4)]);
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn lanes_are_independent() {
        let s = AckState::new(CommitOrder::Contiguous);
        let ps = [p(0, 0), p(1, 0), p(0, 1)];
        let refs: Vec<&Position> = ps.iter().collect();
        let t: Vec<AckToken> = s.register(&refs).into_iter().flatten().collect();
        s.ack(t[1]);
        s.ack(t[2]);
        assert_eq!(s.take_ready(), vec![p(1, 0)]);
    }

    #[test]
    fn stale_epoch_acks_are_ignored_in_contiguous_mode() {
        let s = AckState::new(CommitOrder::Contiguous);
        let ps = [p(0, 0)];
        let t = s.register(&[&ps[0]])[0].unwrap();
        s.new_epoch();
        assert!(!s.ack(t));
        assert!(s.take_ready().is_empty());
    }

    #[test]
    fn individual_mode_holds_acked_positions_in_the_window_until_committed() {
        let a = AckState::new(CommitOrder::Individual);
        let (p1, p2) = (p(0, 1), p(0, 2));
        let t = a.register(&[&p1, &p2]);
        assert_eq!(a.held(), 2);
        a.ack(t[0].unwrap());
        assert_eq!(
            a.held(),
            2,
            "acked but not committed: still pending on the server"
        );
        let taken = a.take_ready();
        assert_eq!(a.held(), 2, "committing");
        a.requeue(taken);
        assert_eq!(a.held(), 2, "the commit failed");
        let taken = a.take_ready();
        a.committed(taken.len());
        assert_eq!(a.held(), 1, "committed: out of the window");
    }

    #[tokio::test]
    async fn a_half_full_window_of_acked_positions_wakes_the_committer_in_individual_mode() {
        for order in [CommitOrder::Individual, CommitOrder::Contiguous] {
            let a = AckState::new(order);
            let ps: Vec<Position> = (1..=4).map(|i| p(0, i)).collect();
            let t = a.register(&ps.iter().collect::<Vec<_>>());
            a.ack(t[0].unwrap());
            a.nudge_commit(8);
            let early = futures::FutureExt::now_or_never(a.flush_notify.notified());
            assert!(early.is_none(), "{order:?}: 1 acked of a window of 8");
            a.ack(t[1].unwrap());
            a.ack(t[2].unwrap());
            a.ack(t[3].unwrap());
            a.nudge_commit(8);
            let nudged = futures::FutureExt::now_or_never(a.flush_notify.notified()).is_some();
            assert_eq!(
                nudged,
                order == CommitOrder::Individual,
                "{order:?}: 4 acked of 8"
            );
        }
    }

    #[test]
    fn individual_mode_commits_each_ack_even_across_sessions() {
        let s = AckState::new(CommitOrder::Individual);
        let ps = [p(0, 0), p(0, 1)];
        let t: Vec<AckToken> = s
            .register(&[&ps[0], &ps[1]])
            .into_iter()
            .flatten()
            .collect();
        s.new_epoch();
        assert!(s.ack(t[1]));
        assert_eq!(s.take_ready(), vec![p(0, 1)]);
        assert_eq!(s.unacked(), 1);
    }

    #[test]
    fn requeue_keeps_order_and_newer_wins() {
        let s = AckState::new(CommitOrder::Contiguous);
        let ps: Vec<Position> = (0..3).map(|o| p(0, o)).collect();
        let t: Vec<AckToken> = s
            .register(&ps.iter().collect::<Vec<_>>())
            .into_iter()
            .flatten()
            .collect();
        s.ack(t[0]);
        let failed = s.take_ready();
        s.ack(t[1]);
        s.requeue(failed);
        assert_eq!(s.take_ready(), vec![p(0, 1)]);
    }

    #[test]
    fn idle_position_waits_for_in_flight_deliveries() {
        let s = AckState::new(CommitOrder::Contiguous);
        let tok = |n: u8| Position::ResumeToken {
            token: bytes::Bytes::from(vec![n]),
            cluster_time: None,
        };
        let first = tok(1);
        let t = s.register(&[&first])[0].unwrap();
        s.advance_idle(tok(2));
        assert!(s.take_ready().is_empty(), "in flight: idle token must wait");
        s.ack(t);
        assert_eq!(s.take_ready(), vec![tok(1)]);
        s.advance_idle(tok(3));
        assert_eq!(s.take_ready(), vec![tok(3)]);
    }
}

//! Seeking while running: a [`SeekHandle`] queues requests; the live session applies them
//! at the start of its next fetch (and a new session right after it resolved its start
//! offsets), so a seek needs no lock on the reader and works across reconnects.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::StartAt;

/// One queued seek.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SeekRequest {
    /// `None`: every partition the session owns.
    pub topic: Option<Arc<str>>,
    /// `None`: every owned partition of `topic`.
    pub partition: Option<i32>,
    /// Where to go.
    pub to: StartAt,
}

impl SeekRequest {
    fn matches(&self, topic: &str, partition: i32) -> bool {
        self.topic.as_deref().is_none_or(|t| t == topic)
            && self.partition.is_none_or(|p| p == partition)
    }

    fn is_specific(&self) -> bool {
        self.topic.is_some() && self.partition.is_some()
    }
}

#[derive(Debug, Default)]
pub(crate) struct SeekQueue {
    pending: Mutex<Vec<SeekRequest>>,
    applied: AtomicU64,
}

impl SeekQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SeekRequest>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether anything is queued (cheap check on the fetch path).
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Take the seeks that apply to `owned` partitions: for each owned partition, the target
    /// of the newest matching request. Requests naming one partition stay queued until that
    /// partition is owned; topic-wide and reader-wide requests apply to what is owned now
    /// and are then done.
    pub(crate) fn take_for(&self, owned: &[(Arc<str>, i32)]) -> Vec<(usize, StartAt)> {
        let mut q = self.lock();
        if q.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, (t, p)) in owned.iter().enumerate() {
            if let Some(r) = q.iter().rev().find(|r| r.matches(t, *p)) {
                out.push((i, r.to));
            }
        }
        q.retain(|r| r.is_specific() && !owned.iter().any(|(t, p)| r.matches(t, *p)));
        drop(q);
        self.applied.fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }
}

/// Moves a running (or not yet running) Kafka reader to another offset, per partition.
/// Get one from [`KafkaConnector::seek_handle`](crate::KafkaConnector::seek_handle); it is
/// cheap to clone and can be used from any task.
///
/// A seek is applied by the session that owns the partition, at the start of its next fetch:
/// records already fetched for that partition but not yet delivered are dropped, and
/// reading continues at the target. Deliveries handed out before the seek are unaffected
/// (acknowledge them as usual). Acknowledging after a seek commits the new positions — so a
/// seek backwards moves the committed offset backwards once those records are acknowledged,
/// as in any Kafka consumer.
///
/// A seek of one partition this reader does not own (yet) stays queued until the group
/// assigns it; a topic-wide or reader-wide seek applies to the partitions owned when the
/// session next fetches.
#[derive(Clone, Debug)]
pub struct SeekHandle {
    pub(crate) queue: Arc<SeekQueue>,
}

impl SeekHandle {
    fn push(&self, r: SeekRequest) {
        tracing::info!(topic = ?r.topic, partition = ?r.partition, to = %r.to, "seek queued");
        self.queue.lock().push(r);
    }

    /// Seek one partition.
    pub fn seek(&self, topic: &str, partition: i32, to: StartAt) {
        self.push(SeekRequest {
            topic: Some(topic.into()),
            partition: Some(partition),
            to,
        });
    }

    /// Seek every owned partition of `topic`.
    pub fn seek_topic(&self, topic: &str, to: StartAt) {
        self.push(SeekRequest {
            topic: Some(topic.into()),
            partition: None,
            to,
        });
    }

    /// Seek every owned partition.
    pub fn seek_all(&self, to: StartAt) {
        self.push(SeekRequest {
            topic: None,
            partition: None,
            to,
        });
    }

    /// How many seek requests wait to be applied.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.queue.lock().len()
    }

    /// How many partition seeks were applied so far.
    #[must_use]
    pub fn applied(&self) -> u64 {
        self.queue.applied.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(x: &[(&str, i32)]) -> Vec<(Arc<str>, i32)> {
        x.iter().map(|(t, p)| (Arc::from(*t), *p)).collect()
    }

    #[test]
    fn specific_seeks_wait_for_their_partition_wildcards_apply_once() {
        let h = SeekHandle {
            queue: Arc::default(),
        };
        h.seek("t", 5, StartAt::Offset(10));
        h.seek_topic("t", StartAt::Earliest);
        let got = h.queue.take_for(&owned(&[("t", 0), ("t", 1), ("u", 0)]));
        assert_eq!(got, vec![(0, StartAt::Earliest), (1, StartAt::Earliest)]);
        assert_eq!(h.pending(), 1, "t/5 is not owned yet");
        h.seek("t", 5, StartAt::Latest);
        let got = h.queue.take_for(&owned(&[("t", 5)]));
        assert_eq!(got, vec![(0, StartAt::Latest)], "the newest request wins");
        assert_eq!(h.pending(), 0);
        h.seek_all(StartAt::Timestamp(7));
        let got = h.queue.take_for(&owned(&[("x", 3)]));
        assert_eq!(got, vec![(0, StartAt::Timestamp(7))]);
        assert_eq!(h.applied(), 4);
        assert!(h.queue.is_empty());
    }
}

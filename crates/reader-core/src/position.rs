//! Where a message sits in its source, and what makes a reader resumable.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A Redis stream entry ID (`<milliseconds>-<sequence>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl StreamId {
    /// Parse `"1700000000000-3"` (a bare `"1700000000000"` means sequence 0).
    ///
    /// # Errors
    /// A message naming the malformed part.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (ms, seq) = match s.split_once('-') {
            Some((ms, seq)) => (ms, seq),
            None => (s, "0"),
        };
        let ms = ms
            .parse()
            .map_err(|_| format!("stream ID {s:?}: milliseconds part {ms:?} is not a number"))?;
        let seq = seq
            .parse()
            .map_err(|_| format!("stream ID {s:?}: sequence part {seq:?} is not a number"))?;
        Ok(Self { ms, seq })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// The position of a message in its source: what a checkpoint stores and what a
/// reconnect resumes from.
///
/// Positions are grouped in *lanes* ([`Position::lane`]): one Redis stream key, one Kafka
/// partition, one MongoDB change stream. Progress is committed per lane, in delivery order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Position {
    /// A Redis stream entry.
    Stream {
        /// The stream key.
        stream: Arc<str>,
        /// The entry ID.
        id: StreamId,
    },
    /// A Kafka record (also used for any offset-addressed log).
    Partition {
        /// The topic.
        topic: Arc<str>,
        /// The partition number.
        partition: i32,
        /// The record's offset.
        offset: i64,
    },
    /// A MongoDB change stream resume token, as the raw BSON bytes of the `_id` document.
    ResumeToken {
        /// Raw BSON document bytes.
        token: Bytes,
        /// The cluster time (seconds since the epoch) of the event, when known; used for the
        /// checkpoint-age gauge.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cluster_time: Option<u32>,
    },
    /// No position: the source is not resumable (Redis Pub/Sub). Acknowledging it does nothing.
    None,
}

impl Position {
    /// The lane this position belongs to: progress is ordered within a lane only.
    #[must_use]
    pub fn lane(&self) -> Lane {
        match self {
            Position::Stream { stream, .. } => Lane::Stream(stream.clone()),
            Position::Partition {
                topic, partition, ..
            } => Lane::Partition(topic.clone(), *partition),
            Position::ResumeToken { .. } => Lane::ChangeStream,
            Position::None => Lane::None,
        }
    }

    /// Whether this position can be committed at all.
    #[must_use]
    pub fn is_durable(&self) -> bool {
        !matches!(self, Position::None)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Stream { stream, id } => write!(f, "{stream}@{id}"),
            Position::Partition {
                topic,
                partition,
                offset,
            } => write!(f, "{topic}/{partition}@{offset}"),
            Position::ResumeToken { token, .. } => {
                write!(f, "token:")?;
                for b in token.iter().take(16) {
                    write!(f, "{b:02x}")?;
                }
                if token.len() > 16 {
                    write!(f, "…")?;
                }
                Ok(())
            }
            Position::None => write!(f, "-"),
        }
    }
}

/// A unit of ordered progress: one stream key, one partition, one change stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Lane {
    /// One Redis stream key.
    Stream(Arc<str>),
    /// One Kafka partition.
    Partition(Arc<str>, i32),
    /// The (single) change stream of a MongoDB reader.
    ChangeStream,
    /// Not resumable.
    None,
}

/// The durable progress of one source: the last committed position of each lane.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last committed position per lane, at most one per lane.
    pub positions: Vec<Position>,
}

impl Checkpoint {
    /// An empty checkpoint.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Record `pos` as the newest committed position of its lane.
    pub fn advance(&mut self, pos: &Position) {
        if !pos.is_durable() {
            return;
        }
        let lane = pos.lane();
        if let Some(slot) = self.positions.iter_mut().find(|p| p.lane() == lane) {
            *slot = pos.clone();
        } else {
            self.positions.push(pos.clone());
        }
    }

    /// The committed position of `lane`, if any.
    #[must_use]
    pub fn get(&self, lane: &Lane) -> Option<&Position> {
        self.positions.iter().find(|p| &p.lane() == lane)
    }

    /// Whether nothing was committed yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_parses_and_orders() {
        let a = StreamId::parse("5-1").unwrap();
        let b = StreamId::parse("5-10").unwrap();
        assert!(a < b);
        assert_eq!(StreamId::parse("7").unwrap(), StreamId { ms: 7, seq: 0 });
        assert!(StreamId::parse("x-1").unwrap_err().contains("milliseconds"));
        assert!(StreamId::parse("1-y").unwrap_err().contains("sequence"));
        assert_eq!(a.to_string(), "5-1");
    }

    #[test]
    fn checkpoint_keeps_one_position_per_lane_and_round_trips() {
        let t: Arc<str> = "t".into();
        let mut cp = Checkpoint::new();
        for offset in [1, 2, 3] {
            cp.advance(&Position::Partition {
                topic: t.clone(),
                partition: 0,
                offset,
            });
        }
        cp.advance(&Position::Partition {
            topic: t.clone(),
            partition: 1,
            offset: 9,
        });
        cp.advance(&Position::None);
        assert_eq!(cp.positions.len(), 2);
        let json = serde_json::to_string(&cp).unwrap();
        let back: Checkpoint = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cp);
        assert_eq!(
            back.get(&Lane::Partition(t, 0)),
            Some(&Position::Partition {
                topic: "t".into(),
                partition: 0,
                offset: 3
            })
        );
    }
}

//! Committed offsets in the group coordinator: OffsetFetch and OffsetCommit.
//!
//! Kafka's convention, kept everywhere in this crate: a [`Position`](reader_core::Position)
//! holds the offset *of the record* delivered; the committed offset is the *next* offset to
//! read, i.e. last acknowledged + 1. OffsetFetch answers that next offset (or -1: nothing
//! committed).

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use reader_core::ReadError;

use crate::assignor::TopicPartitions;
use crate::classify::classify_code;
use crate::connection::Connection;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

/// The committed next offset of each partition of `parts` that has one.
pub(crate) async fn fetch_committed(
    conn: &Connection,
    group: &str,
    parts: &TopicPartitions,
) -> Result<HashMap<(String, i32), i64>, ReadError> {
    let mut out = HashMap::new();
    if parts.is_empty() {
        return Ok(out);
    }
    let what = format!("OffsetFetch of group {group:?}");
    let topics = parts
        .iter()
        .map(|(t, ps)| {
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(t)))
                .with_partition_indexes(ps.clone())
        })
        .collect();
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(topics))
        // Wait for pending transactional commits where the broker can (v7+).
        .with_require_stable(conn.version::<OffsetFetchRequest>()? >= 7);
    let (resp, _) = conn.send(&req).await?;
    if resp.error_code != 0 {
        return Err(classify_code(resp.error_code, &what));
    }
    for t in resp.topics {
        for p in t.partitions {
            if p.error_code != 0 {
                return Err(classify_code(
                    p.error_code,
                    &format!("{what} for {}/{}", t.name.0.as_str(), p.partition_index),
                ));
            }
            if p.committed_offset >= 0 {
                out.insert(
                    (t.name.0.as_str().to_owned(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(out)
}

/// A commit that failed, with the first failing error code when the broker sent one.
#[derive(Debug)]
pub(crate) struct CommitError {
    /// The first per-partition or request error code.
    pub code: Option<i16>,
    /// The classified error.
    pub error: ReadError,
}

/// Commit `next_offsets` (`(topic, partition, next offset to read)`) for this member of
/// this generation. Any partition the broker refuses fails the whole call (the core keeps
/// the positions and tries again); nothing is dropped silently.
pub(crate) async fn commit(
    conn: &Connection,
    group: &str,
    generation: i32,
    member_id: &str,
    next_offsets: &[(Arc<str>, i32, i64)],
) -> Result<(), CommitError> {
    let what = format!("OffsetCommit of group {group:?} (generation {generation})");
    let mut by_topic: std::collections::BTreeMap<&str, Vec<OffsetCommitRequestPartition>> =
        std::collections::BTreeMap::new();
    for (t, p, o) in next_offsets {
        by_topic.entry(t).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(StrBytes::new())),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(t, ps)| {
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(t)))
                .with_partitions(ps)
        })
        .collect();
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_retention_time_ms(-1)
        .with_topics(topics);
    let (resp, _) = conn
        .send(&req)
        .await
        .map_err(|error| CommitError { code: None, error })?;
    let mut failed = 0usize;
    let mut first: Option<(i16, String)> = None;
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                failed += 1;
                first.get_or_insert((
                    p.error_code,
                    format!("{}/{}", t.name.0.as_str(), p.partition_index),
                ));
            }
        }
    }
    match first {
        None => Ok(()),
        Some((code, at)) => Err(CommitError {
            code: Some(code),
            error: classify_code(
                code,
                &format!(
                    "{what} of {failed} of {} partitions (first: {at})",
                    next_offsets.len()
                ),
            ),
        }),
    }
}

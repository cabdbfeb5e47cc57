//! The consumer protocol: the standard `ConsumerProtocolSubscription` /
//! `ConsumerProtocolAssignment` encodings (so Java and librdkafka members of the same group
//! understand ours and we theirs), and the `range` and `roundrobin` assignors the group
//! leader runs.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::config::AssignorKind;
use crate::shape;

/// The newest consumer-protocol version we know; newer ones decode as this one (the
/// schema only ever appends fields, which is how Kafka itself reads them).
const MAX_KNOWN: i16 = 3;

/// Partitions per topic: `topic → sorted partition numbers`.
pub type TopicPartitions = BTreeMap<String, Vec<i32>>;

/// Encode a subscription to `topics` (version 0: what every client understands).
#[must_use]
pub fn encode_subscription(topics: &[String]) -> Bytes {
    encode_subscription_with(topics, None)
}

/// [`encode_subscription`] with opaque `user_data` (assignors ignore it; this crate puts a
/// rejoin counter there so a rejoin after a rebalance carries changed metadata, which makes
/// every coordinator start a new generation — see `group::join`).
#[must_use]
pub fn encode_subscription_with(topics: &[String], user_data: Option<Bytes>) -> Bytes {
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_user_data(user_data);
    versioned(&sub, 0)
}

/// Decode a member's subscription: the topics it wants.
///
/// # Errors
/// A message saying what is malformed (never a panic, whatever the bytes).
pub fn decode_subscription(data: &Bytes) -> Result<Vec<String>, String> {
    let (version, body) = split_version(data)?;
    shape::check(&body, &crate::apis::subscription_shape(version), false)
        .map_err(|e| format!("subscription v{version}: {e}"))?;
    let mut b = body;
    let sub = ConsumerProtocolSubscription::decode(&mut b, version)
        .map_err(|e| format!("subscription v{version}: {e}"))?;
    Ok(sub.topics.iter().map(|t| t.as_str().to_owned()).collect())
}

/// Encode an assignment (version 0).
#[must_use]
pub fn encode_assignment(parts: &TopicPartitions) -> Bytes {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        parts
            .iter()
            .map(|(t, ps)| {
                AssignedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(t.clone())))
                    .with_partitions(ps.clone())
            })
            .collect(),
    );
    versioned(&a, 0)
}

/// Decode this member's assignment. An empty byte string is an empty assignment (what the
/// coordinator hands out when the leader assigned nothing to a member).
///
/// # Errors
/// A message saying what is malformed.
pub fn decode_assignment(data: &Bytes) -> Result<TopicPartitions, String> {
    if data.is_empty() {
        return Ok(TopicPartitions::new());
    }
    let (version, body) = split_version(data)?;
    shape::check(&body, &crate::apis::assignment_shape(version), false)
        .map_err(|e| format!("assignment v{version}: {e}"))?;
    let mut b = body;
    let a = ConsumerProtocolAssignment::decode(&mut b, version)
        .map_err(|e| format!("assignment v{version}: {e}"))?;
    let mut out = TopicPartitions::new();
    for tp in a.assigned_partitions {
        let e = out.entry(tp.topic.0.as_str().to_owned()).or_default();
        e.extend(tp.partitions);
    }
    for ps in out.values_mut() {
        ps.sort_unstable();
        ps.dedup();
    }
    Ok(out)
}

fn versioned<T: Encodable>(msg: &T, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    // Encoding our own well-formed message at a supported version cannot fail; if it ever
    // did, the other members would see an empty (undecodable) blob and say so.
    if let Err(e) = msg.encode(&mut buf, version) {
        tracing::error!(error = %e, "BUG: could not encode a consumer-protocol message");
    }
    buf.freeze()
}

fn split_version(data: &Bytes) -> Result<(i16, Bytes), String> {
    if data.len() < 2 {
        return Err(format!("{} bytes is too short for a version", data.len()));
    }
    let mut b = data.clone();
    let v = b.get_i16();
    if v < 0 {
        return Err(format!("negative version {v}"));
    }
    Ok((v.min(MAX_KNOWN), b))
}

/// One member as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The member id.
    pub member_id: String,
    /// The topics it subscribed to.
    pub topics: Vec<String>,
}

/// Run `assignor` over `members`, given the partition count of each topic. Topics nobody
/// subscribed to, or that do not exist, are not assigned. Every member gets an entry (maybe
/// empty).
#[must_use]
pub fn assign(
    assignor: AssignorKind,
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, TopicPartitions> {
    let mut out: BTreeMap<String, TopicPartitions> = members
        .iter()
        .map(|m| (m.member_id.clone(), TopicPartitions::new()))
        .collect();
    match assignor {
        AssignorKind::Range => range(members, partitions, &mut out),
        AssignorKind::RoundRobin => round_robin(members, partitions, &mut out),
    }
    out
}

/// Kafka's RangeAssignor: per topic, the members subscribed to it sorted by id; with `n`
/// partitions and `m` members each gets `n / m`, the first `n % m` one more, in ranges.
fn range(
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
    out: &mut BTreeMap<String, TopicPartitions>,
) {
    let mut by_topic: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for m in members {
        for t in &m.topics {
            by_topic
                .entry(t.as_str())
                .or_default()
                .insert(m.member_id.as_str());
        }
    }
    for (topic, subs) in by_topic {
        let Some(&count) = partitions.get(topic) else {
            continue;
        };
        let count = count.max(0);
        let m = subs.len() as i32;
        if m == 0 {
            continue;
        }
        let per = count / m;
        let extra = count % m;
        for (i, member) in subs.into_iter().enumerate() {
            let i = i as i32;
            let start = per * i + i.min(extra);
            let len = per + i32::from(i < extra);
            if len == 0 {
                continue;
            }
            if let Some(a) = out.get_mut(member) {
                a.insert(topic.to_owned(), (start..start + len).collect());
            }
        }
    }
}

/// Kafka's RoundRobinAssignor: every (topic, partition) sorted, dealt in turn to the
/// members (sorted by id), skipping members not subscribed to the partition's topic.
fn round_robin(
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
    out: &mut BTreeMap<String, TopicPartitions>,
) {
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    sorted.dedup_by(|a, b| a.member_id == b.member_id);
    if sorted.is_empty() {
        return;
    }
    let topics: BTreeSet<&str> = members
        .iter()
        .flat_map(|m| m.topics.iter().map(String::as_str))
        .collect();
    let mut next = 0usize;
    for topic in topics {
        let Some(&count) = partitions.get(topic) else {
            continue;
        };
        for p in 0..count.max(0) {
            // Find the next member (circularly) subscribed to this topic.
            for step in 0..sorted.len() {
                let idx = (next + step) % sorted.len();
                let m = sorted[idx];
                if m.topics.iter().any(|t| t == topic) {
                    if let Some(a) = out.get_mut(&m.member_id) {
                        a.entry(topic.to_owned()).or_default().push(p);
                    }
                    next = idx + 1;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    fn counts(x: &[(&str, i32)]) -> BTreeMap<String, i32> {
        x.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
    }

    fn tp(x: &[(&str, &[i32])]) -> TopicPartitions {
        x.iter()
            .map(|(t, p)| ((*t).to_owned(), p.to_vec()))
            .collect()
    }

    #[test]
    fn range_splits_in_ranges_first_members_get_the_extra() {
        let members = [m("b", &["t"]), m("a", &["t"])];
        let a = assign(AssignorKind::Range, &members, &counts(&[("t", 6)]));
        assert_eq!(a["a"], tp(&[("t", &[0, 1, 2])]));
        assert_eq!(a["b"], tp(&[("t", &[3, 4, 5])]));
        let a = assign(AssignorKind::Range, &members, &counts(&[("t", 3)]));
        assert_eq!(a["a"], tp(&[("t", &[0, 1])]));
        assert_eq!(a["b"], tp(&[("t", &[2])]));
        // More members than partitions: the last ones get nothing.
        let three = [m("a", &["t"]), m("b", &["t"]), m("c", &["t"])];
        let a = assign(AssignorKind::Range, &three, &counts(&[("t", 2)]));
        assert_eq!(a["a"], tp(&[("t", &[0])]));
        assert_eq!(a["b"], tp(&[("t", &[1])]));
        assert!(a["c"].is_empty());
    }

    #[test]
    fn range_is_per_topic_and_respects_subscriptions() {
        let members = [m("a", &["x", "y"]), m("b", &["x"])];
        let a = assign(
            AssignorKind::Range,
            &members,
            &counts(&[("x", 4), ("y", 2)]),
        );
        assert_eq!(a["a"], tp(&[("x", &[0, 1]), ("y", &[0, 1])]));
        assert_eq!(a["b"], tp(&[("x", &[2, 3])]));
    }

    #[test]
    fn roundrobin_deals_in_turn_across_topics() {
        let members = [m("b", &["x", "y"]), m("a", &["x", "y"])];
        let a = assign(
            AssignorKind::RoundRobin,
            &members,
            &counts(&[("x", 3), ("y", 2)]),
        );
        // Sorted: x0 x1 x2 y0 y1 → a b a b a
        assert_eq!(a["a"], tp(&[("x", &[0, 2]), ("y", &[1])]));
        assert_eq!(a["b"], tp(&[("x", &[1]), ("y", &[0])]));
    }

    #[test]
    fn roundrobin_skips_members_not_subscribed() {
        let members = [m("a", &["x"]), m("b", &["x", "y"])];
        let a = assign(
            AssignorKind::RoundRobin,
            &members,
            &counts(&[("x", 2), ("y", 2)]),
        );
        assert_eq!(a["a"], tp(&[("x", &[0])]));
        assert_eq!(a["b"], tp(&[("x", &[1]), ("y", &[0, 1])]));
    }

    #[test]
    fn every_partition_is_assigned_exactly_once() {
        for kind in [AssignorKind::Range, AssignorKind::RoundRobin] {
            for n_members in 1..6 {
                let members: Vec<_> = (0..n_members)
                    .map(|i| m(&format!("m{i}"), &["x", "y"]))
                    .collect();
                let parts = counts(&[("x", 7), ("y", 3)]);
                let a = assign(kind, &members, &parts);
                let mut seen = BTreeSet::new();
                for tps in a.values() {
                    for (t, ps) in tps {
                        for p in ps {
                            assert!(seen.insert((t.clone(), *p)), "{kind:?} twice: {t}/{p}");
                        }
                    }
                }
                assert_eq!(seen.len(), 10, "{kind:?} with {n_members} members");
            }
        }
    }

    #[test]
    fn unknown_topics_are_not_assigned() {
        let a = assign(AssignorKind::Range, &[m("a", &["nope"])], &counts(&[]));
        assert!(a["a"].is_empty());
    }

    #[test]
    fn encodings_round_trip() {
        let topics = vec!["orders".to_owned(), "payments".to_owned()];
        let sub = encode_subscription(&topics);
        assert_eq!(&sub[..2], &[0, 0], "version 0 prefix");
        assert_eq!(decode_subscription(&sub).unwrap(), topics);
        let a = tp(&[("orders", &[0, 2, 4]), ("payments", &[1])]);
        let enc = encode_assignment(&a);
        assert_eq!(decode_assignment(&enc).unwrap(), a);
        assert!(decode_assignment(&Bytes::new()).unwrap().is_empty());
    }

    #[test]
    fn known_byte_layout_matches_the_kafka_spec() {
        // Version 0 assignment of t=[1]: version, array(1){ string "t", array(1){1} },
        // null user data.
        let enc = encode_assignment(&tp(&[("t", &[1])]));
        let expected: &[u8] = &[
            0, 0, // version
            0, 0, 0, 1, // one topic
            0, 1, b't', // "t"
            0, 0, 0, 1, // one partition
            0, 0, 0, 1, // partition 1
            0xff, 0xff, 0xff, 0xff, // null user data
        ];
        assert_eq!(&enc[..], expected);
        let sub = encode_subscription(&["t".to_owned()]);
        let expected: &[u8] = &[0, 0, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff];
        assert_eq!(&sub[..], expected);
    }

    #[test]
    fn newer_versions_decode_as_the_newest_known() {
        // A v3 subscription as a Java client sends it, with a v9 prefix: decoded as v3.
        let v3 = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .with_generation_id(4)
            .with_rack_id(Some(StrBytes::from_static_str("r1")));
        let mut buf = BytesMut::new();
        buf.put_i16(9);
        v3.encode(&mut buf, 3).unwrap();
        buf.put_slice(b"future fields");
        assert_eq!(decode_subscription(&buf.freeze()).unwrap(), vec!["t"]);
    }

    #[test]
    fn malformed_consumer_protocol_never_panics() {
        let samples: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0xff, 0xff],
            vec![0, 0, 0x7f, 0xff, 0xff, 0xff],
            vec![0, 1, 0, 0, 0, 1, 0, 5, b'a'],
            vec![0, 0, 0, 0, 0, 1, 0xff, 0xfe],
        ];
        for s in samples {
            let b = Bytes::from(s);
            let _ = decode_subscription(&b);
            let _ = decode_assignment(&b);
        }
    }
}

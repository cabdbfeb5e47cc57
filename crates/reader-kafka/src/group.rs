//! Group membership, the classic broker-coordinated protocol: FindCoordinator → JoinGroup →
//! (leader assigns) → SyncGroup → Heartbeat → LeaveGroup.
//!
//! The join is one *protocol exchange* with a bounded number of rounds: the coordinator may
//! ask for another JoinGroup as part of the protocol (MEMBER_ID_REQUIRED hands out the id to
//! use; UNKNOWN_MEMBER_ID means "join as a new member"; REBALANCE_IN_PROGRESS on SyncGroup
//! means "the group moved on, join again"). These are protocol steps, not retries of a
//! failure; every other error ends the exchange with a classified error and the core's
//! Reconnector decides.
//!
//! While the session runs, a heartbeat task reports the group's state. When the group
//! starts rebalancing the task records it in [`GroupSignal`]; the session then stops
//! fetching, keeps committing for a short grace, and fails with a transient "rebalance"
//! error, so the Reconnector opens a new session whose `recover()` rejoins — one code path
//! for the first join and every rejoin.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use reader_core::{ErrorKind, ReadError};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::assignor::{self, MemberSubscription, TopicPartitions};
use crate::classify::{classify_code, code, error_name};
use crate::config::{AssignorKind, KafkaConfig};
use crate::connection::Connection;

/// How many JoinGroup/SyncGroup rounds one join may take before giving up (transiently).
const MAX_ROUNDS: usize = 8;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

fn ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// Ask `conn` which broker coordinates `group`; returns its `host:port`.
pub(crate) async fn find_coordinator(conn: &Connection, group: &str) -> Result<String, ReadError> {
    let req = FindCoordinatorRequest::default()
        .with_key(s(group))
        .with_key_type(0);
    let (resp, _) = conn.send(&req).await?;
    if resp.error_code != 0 {
        let mut e = classify_code(
            resp.error_code,
            &format!("FindCoordinator for group {group:?}"),
        );
        if let Some(m) = resp.error_message.as_ref().filter(|m| !m.is_empty()) {
            e = ReadError::new(
                e.class(),
                e.kind(),
                format!("{} (broker says: {m})", e.message()),
            );
        }
        return Err(e);
    }
    if resp.host.is_empty() || resp.port <= 0 || resp.port > i32::from(u16::MAX) {
        return Err(ReadError::transient(
            ErrorKind::Protocol,
            format!(
                "FindCoordinator for group {group:?} answered an unusable address {:?}:{}",
                resp.host.as_str(),
                resp.port
            ),
        ));
    }
    Ok(format!("{}:{}", resp.host.as_str(), resp.port))
}

/// What a completed join gives this member.
#[derive(Clone, Debug)]
pub(crate) struct Membership {
    /// The group generation.
    pub generation: i32,
    /// This member's id.
    pub member_id: String,
    /// Whether this member led the assignment.
    pub leader: bool,
    /// The assignor the group chose.
    pub protocol: AssignorKind,
    /// How many members the group has (known to the leader only; 0 otherwise).
    pub members: usize,
    /// The partitions assigned to this member.
    pub assignment: TopicPartitions,
}

/// Join `group` (see the module docs). `member_id` is the id to join with (empty for a new
/// member) and is updated to the id the coordinator knows us by, also when the join fails.
/// `partition_counts` gives the partition count of topics (called by the leader only).
///
/// `rejoins` counts this member's rejoins after rebalances; when non-zero it goes in the
/// subscription's `user_data`, so the metadata of a rejoin differs from the last join. Kafka
/// treats changed metadata as a reason to rebalance (harmless while one is under way), and
/// tansu 0.6.0 *needs* it: when it expires a dead member it keeps the group "formed" with the
/// old generation and the old assignments, and a rejoin with unchanged metadata just gets the
/// old assignment back — the dead member's partitions would be read by nobody. The leader
/// also checks that SyncGroup hands back the assignment it computed for itself; when it
/// does not (the coordinator ignored the plan), it bumps `rejoins` and joins again.
pub(crate) async fn join<F, Fut>(
    conn: &Connection,
    cfg: &KafkaConfig,
    group: &str,
    member_id: &mut String,
    rejoins: &mut u64,
    partition_counts: F,
) -> Result<Membership, ReadError>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Result<BTreeMap<String, i32>, ReadError>>,
{
    let what_join = format!("JoinGroup of group {group:?}");
    let what_sync = format!("SyncGroup of group {group:?}");
    let mut last = String::new();
    for _round in 0..MAX_ROUNDS {
        let user_data = (*rejoins > 0).then(|| bytes::Bytes::from(rejoins.to_be_bytes().to_vec()));
        let subscription = assignor::encode_subscription_with(&cfg.topics, user_data);
        // Offer the preferred assignor first, then the other: the group picks one every
        // member supports.
        let protocols: Vec<JoinGroupRequestProtocol> = [cfg.assignor, other(cfg.assignor)]
            .into_iter()
            .map(|a| {
                JoinGroupRequestProtocol::default()
                    .with_name(s(a.protocol_name()))
                    .with_metadata(subscription.clone())
            })
            .collect();
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(ms(cfg.session_timeout))
            .with_rebalance_timeout_ms(ms(cfg.rebalance_timeout))
            .with_member_id(s(member_id))
            .with_protocol_type(s("consumer"))
            .with_protocols(protocols.clone());
        let (resp, _v) = conn
            .send_within(&req, cfg.rebalance_timeout + cfg.request_timeout)
            .await?;
        match resp.error_code {
            0 => {}
            code::MEMBER_ID_REQUIRED => {
                // KIP-394: join again with the id the coordinator just gave us.
                *member_id = resp.member_id.as_str().to_owned();
                last = error_name(resp.error_code);
                continue;
            }
            code::UNKNOWN_MEMBER_ID => {
                member_id.clear();
                last = error_name(resp.error_code);
                continue;
            }
            code::REBALANCE_IN_PROGRESS => {
                last = error_name(resp.error_code);
                continue;
            }
            c => return Err(classify_code(c, &what_join)),
        }
        *member_id = resp.member_id.as_str().to_owned();
        let protocol_name = resp
            .protocol_name
            .as_ref()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let Some(protocol) = AssignorKind::from_protocol_name(&protocol_name) else {
            return Err(ReadError::permanent(
                ErrorKind::Protocol,
                format!("{what_join}: the coordinator chose assignor {protocol_name:?}, which this member did not offer"),
            ));
        };
        let leader = resp.leader.as_str() == member_id.as_str();
        let generation = resp.generation_id;
        let mut members = 0;
        let mut planned_for_me = None;
        let assignments = if leader {
            let subs: Vec<MemberSubscription> = resp
                .members
                .iter()
                .map(|m| {
                    let topics = match assignor::decode_subscription(&m.metadata) {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::warn!(group, member = %m.member_id.as_str(), error = %e, "a member's subscription cannot be decoded; it gets no partitions");
                            Vec::new()
                        }
                    };
                    MemberSubscription {
                        member_id: m.member_id.as_str().to_owned(),
                        topics,
                    }
                })
                .collect();
            members = subs.len();
            let mut wanted: Vec<String> = subs.iter().flat_map(|m| m.topics.clone()).collect();
            wanted.sort();
            wanted.dedup();
            let counts = partition_counts(wanted).await?;
            let plan = assignor::assign(protocol, &subs, &counts);
            planned_for_me = Some(plan.get(member_id.as_str()).cloned().unwrap_or_default());
            tracing::info!(
                group,
                generation,
                members,
                assignor = protocol.protocol_name(),
                "this member leads the group: assigning"
            );
            plan.into_iter()
                .map(|(m, parts)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(&m))
                        .with_assignment(assignor::encode_assignment(&parts))
                })
                .collect()
        } else {
            Vec::new()
        };
        let req = SyncGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id(generation)
            .with_member_id(s(member_id))
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s(protocol.protocol_name())))
            .with_assignments(assignments);
        let (sync, _) = conn
            .send_within(&req, cfg.rebalance_timeout + cfg.request_timeout)
            .await?;
        match sync.error_code {
            0 => {}
            code::REBALANCE_IN_PROGRESS | code::ILLEGAL_GENERATION => {
                last = error_name(sync.error_code);
                continue;
            }
            code::UNKNOWN_MEMBER_ID => {
                member_id.clear();
                last = error_name(sync.error_code);
                continue;
            }
            c => return Err(classify_code(c, &what_sync)),
        }
        let assignment = assignor::decode_assignment(&sync.assignment).map_err(|e| {
            ReadError::transient(
                ErrorKind::Protocol,
                format!("{what_sync}: the leader's assignment cannot be decoded: {e}"),
            )
        })?;
        if let Some(planned) = planned_for_me {
            if planned != assignment {
                tracing::warn!(
                    group,
                    generation,
                    planned = %describe_assignment(&planned),
                    got = %describe_assignment(&assignment),
                    "the coordinator did not take this leader's assignment; joining again with new metadata to force a new generation"
                );
                *rejoins += 1;
                last = "assignment not taken by the coordinator".to_owned();
                continue;
            }
        }
        return Ok(Membership {
            generation,
            member_id: member_id.clone(),
            leader,
            protocol,
            members,
            assignment,
        });
    }
    Err(ReadError::transient(
        ErrorKind::Server,
        format!("{what_join}: the group kept rebalancing through {MAX_ROUNDS} join rounds (last: {last})"),
    )
    .with_retry_after(Duration::from_millis(200)))
}

fn other(a: AssignorKind) -> AssignorKind {
    match a {
        AssignorKind::Range => AssignorKind::RoundRobin,
        AssignorKind::RoundRobin => AssignorKind::Range,
    }
}

/// Leave the group (best effort: the caller bounds it).
pub(crate) async fn leave(
    conn: &Connection,
    group: &str,
    member_id: &str,
) -> Result<(), ReadError> {
    let v = conn.version::<LeaveGroupRequest>()?;
    let mut req = LeaveGroupRequest::default().with_group_id(GroupId(s(group)));
    if v >= 3 {
        let mut m = MemberIdentity::default().with_member_id(s(member_id));
        if v >= 5 {
            m = m.with_reason(Some(s("the reader is closing")));
        }
        req = req.with_members(vec![m]);
    } else {
        req = req.with_member_id(s(member_id));
    }
    let (resp, _) = conn.send(&req).await?;
    let code = if resp.error_code != 0 {
        resp.error_code
    } else {
        resp.members
            .iter()
            .map(|m| m.error_code)
            .find(|c| *c != 0)
            .unwrap_or(0)
    };
    match code {
        0 | code::UNKNOWN_MEMBER_ID => Ok(()),
        c => Err(classify_code(c, &format!("LeaveGroup of group {group:?}"))),
    }
}

/// Why the session must end, as seen by the heartbeat task or a commit.
#[derive(Clone, Debug)]
pub(crate) enum Signal {
    /// The group is rebalancing: commit what can be committed, then rejoin (keeping the
    /// member id).
    Rebalance {
        /// When it was noticed.
        since: Instant,
    },
    /// Anything else (fenced, coordinator gone, connection lost, permanent errors).
    Failed(ReadError),
}

/// Shared between the heartbeat task, commits and fetches of one session.
#[derive(Debug, Default)]
pub(crate) struct GroupSignal {
    state: Mutex<Option<Signal>>,
    /// Woken when a signal is raised (a waiting fetch ends early).
    pub(crate) notify: Notify,
}

impl GroupSignal {
    /// Raise a signal (the first one wins; a failure replaces a rebalance).
    pub(crate) fn raise(&self, sig: Signal) {
        let mut g = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let replace = matches!(
            (&*g, &sig),
            (None, _) | (Some(Signal::Rebalance { .. }), Signal::Failed(_))
        );
        if replace {
            *g = Some(sig);
        }
        drop(g);
        self.notify.notify_waiters();
    }

    /// The current signal.
    pub(crate) fn get(&self) -> Option<Signal> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The error a session ends with when the group rebalances.
pub(crate) fn rebalance_error(group: &str) -> ReadError {
    ReadError::transient(
        ErrorKind::Server,
        format!("rebalance: group {group:?} is rebalancing; this member rejoins"),
    )
    .with_retry_after(Duration::from_millis(10))
}

/// Turn an error code from a heartbeat or commit into a signal, when it is one.
pub(crate) fn signal_for(code: i16, what: &str) -> Signal {
    match code {
        code::REBALANCE_IN_PROGRESS | code::ILLEGAL_GENERATION => Signal::Rebalance {
            since: Instant::now(),
        },
        c => Signal::Failed(classify_code(c, what)),
    }
}

/// The heartbeat loop of one generation: runs until an error, then raises a signal and ends.
pub(crate) async fn heartbeat_loop(
    conn: Arc<Connection>,
    group: String,
    generation: i32,
    member_id: String,
    interval: Duration,
    signal: Arc<GroupSignal>,
) {
    let what = format!("Heartbeat of group {group:?}");
    loop {
        tokio::time::sleep(interval).await;
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(generation)
            .with_member_id(s(&member_id));
        match conn.send(&req).await {
            Ok((resp, _)) if resp.error_code == 0 => {}
            Ok((resp, _)) => {
                tracing::info!(group, generation, error = %error_name(resp.error_code), "heartbeat: leaving the generation");
                signal.raise(signal_for(resp.error_code, &what));
                return;
            }
            Err(e) => {
                tracing::warn!(group, generation, error = %e, "heartbeat failed");
                signal.raise(Signal::Failed(e));
                return;
            }
        }
    }
}

/// An owned list of `(topic, partition)`.
pub(crate) fn flatten(a: &TopicPartitions) -> Vec<(String, i32)> {
    a.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
        .collect()
}

/// A short human form of an assignment: `orders/0,1,2 payments/4`.
pub(crate) fn describe_assignment(a: &TopicPartitions) -> String {
    if a.is_empty() {
        return "nothing".to_owned();
    }
    a.iter()
        .map(|(t, ps)| {
            let ps: Vec<String> = ps.iter().map(ToString::to_string).collect();
            format!("{t}/{}", ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_rebalance_then_failure_wins() {
        let s = GroupSignal::default();
        assert!(s.get().is_none());
        s.raise(signal_for(code::REBALANCE_IN_PROGRESS, "hb"));
        assert!(matches!(s.get(), Some(Signal::Rebalance { .. })));
        s.raise(signal_for(code::REBALANCE_IN_PROGRESS, "hb"));
        s.raise(signal_for(30, "hb"));
        match s.get() {
            Some(Signal::Failed(e)) => assert!(e.is_permanent()),
            other => panic!("{other:?}"),
        }
        // A later rebalance does not hide the failure.
        s.raise(signal_for(code::REBALANCE_IN_PROGRESS, "hb"));
        assert!(matches!(s.get(), Some(Signal::Failed(_))));
    }

    #[test]
    fn assignment_description() {
        let mut a = TopicPartitions::new();
        assert_eq!(describe_assignment(&a), "nothing");
        a.insert("t".into(), vec![0, 2]);
        a.insert("u".into(), vec![1]);
        assert_eq!(describe_assignment(&a), "t/0,2 u/1");
        assert_eq!(flatten(&a).len(), 3);
    }
}

//! The Kafka APIs this crate speaks itself (the group-coordinator side), with the versions we
//! support and the layout of each response for the [`shape`](crate::shape) check.

use kafka_protocol::messages::{
    ApiVersionsRequest, FindCoordinatorRequest, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest, SaslAuthenticateRequest,
    SaslHandshakeRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::Request;

use crate::shape::Node::{self, ArrayOf, Bytes, Str, Structs, I16, I32, I64};

/// A request we send, with what we need to know to send it safely.
pub(crate) trait Call: Request {
    /// The API's name, for messages.
    const NAME: &'static str;
    /// The lowest version we can speak.
    const MIN: i16;
    /// The highest version we speak (newer ones are not needed for what we do).
    const MAX: i16;
    /// Whether `version` uses the flexible (compact, tagged-field) encoding.
    fn flexible(version: i16) -> bool;
    /// The layout of the response body at `version`.
    fn response_shape(version: i16) -> Vec<Node>;
}

fn throttle_from(version: i16, from: i16, mut rest: Vec<Node>) -> Vec<Node> {
    if version >= from {
        rest.insert(0, I32);
    }
    rest
}

impl Call for ApiVersionsRequest {
    const NAME: &'static str = "ApiVersions";
    const MIN: i16 = 0;
    const MAX: i16 = 2;
    fn flexible(version: i16) -> bool {
        version >= 3
    }
    fn response_shape(version: i16) -> Vec<Node> {
        let mut v = vec![I16, Structs(vec![I16, I16, I16])];
        if version >= 1 {
            v.push(I32);
        }
        v
    }
}

impl Call for SaslHandshakeRequest {
    const NAME: &'static str = "SaslHandshake";
    // v1: the SASL tokens then travel in SaslAuthenticate requests (v0 sent them raw).
    const MIN: i16 = 1;
    const MAX: i16 = 1;
    fn flexible(_version: i16) -> bool {
        false
    }
    fn response_shape(_version: i16) -> Vec<Node> {
        vec![I16, ArrayOf(Box::new(Str))]
    }
}

impl Call for SaslAuthenticateRequest {
    const NAME: &'static str = "SaslAuthenticate";
    const MIN: i16 = 0;
    const MAX: i16 = 2;
    fn flexible(version: i16) -> bool {
        version >= 2
    }
    fn response_shape(version: i16) -> Vec<Node> {
        let mut v = vec![I16, Str, Bytes];
        if version >= 1 {
            v.push(I64); // session_lifetime_ms
        }
        v
    }
}

impl Call for FindCoordinatorRequest {
    const NAME: &'static str = "FindCoordinator";
    const MIN: i16 = 0;
    const MAX: i16 = 3;
    fn flexible(version: i16) -> bool {
        version >= 3
    }
    fn response_shape(version: i16) -> Vec<Node> {
        if version == 0 {
            vec![I16, I32, Str, I32]
        } else {
            vec![I32, I16, Str, I32, Str, I32]
        }
    }
}

impl Call for JoinGroupRequest {
    const NAME: &'static str = "JoinGroup";
    const MIN: i16 = 0;
    const MAX: i16 = 7;
    fn flexible(version: i16) -> bool {
        version >= 6
    }
    fn response_shape(version: i16) -> Vec<Node> {
        let mut v = vec![I16, I32];
        if version >= 7 {
            v.push(Str); // protocol_type
        }
        v.extend([Str, Str]); // protocol_name, leader
        if version >= 9 {
            v.push(Node::I8); // skip_assignment
        }
        v.push(Str); // member_id
        let mut member = vec![Str];
        if version >= 5 {
            member.push(Str); // group_instance_id
        }
        member.push(Bytes);
        v.push(Structs(member));
        throttle_from(version, 2, v)
    }
}

impl Call for SyncGroupRequest {
    const NAME: &'static str = "SyncGroup";
    const MIN: i16 = 0;
    const MAX: i16 = 5;
    fn flexible(version: i16) -> bool {
        version >= 4
    }
    fn response_shape(version: i16) -> Vec<Node> {
        let mut v = vec![I16];
        if version >= 5 {
            v.extend([Str, Str]);
        }
        v.push(Bytes);
        throttle_from(version, 1, v)
    }
}

impl Call for HeartbeatRequest {
    const NAME: &'static str = "Heartbeat";
    const MIN: i16 = 0;
    const MAX: i16 = 4;
    fn flexible(version: i16) -> bool {
        version >= 4
    }
    fn response_shape(version: i16) -> Vec<Node> {
        throttle_from(version, 1, vec![I16])
    }
}

impl Call for LeaveGroupRequest {
    const NAME: &'static str = "LeaveGroup";
    const MIN: i16 = 0;
    const MAX: i16 = 5;
    fn flexible(version: i16) -> bool {
        version >= 4
    }
    fn response_shape(version: i16) -> Vec<Node> {
        let mut v = vec![I16];
        if version >= 3 {
            v.push(Structs(vec![Str, Str, I16]));
        }
        throttle_from(version, 1, v)
    }
}

impl Call for OffsetCommitRequest {
    const NAME: &'static str = "OffsetCommit";
    const MIN: i16 = 2;
    const MAX: i16 = 8;
    fn flexible(version: i16) -> bool {
        version >= 8
    }
    fn response_shape(version: i16) -> Vec<Node> {
        let v = vec![Structs(vec![Str, Structs(vec![I32, I16])])];
        throttle_from(version, 3, v)
    }
}

impl Call for OffsetFetchRequest {
    const NAME: &'static str = "OffsetFetch";
    const MIN: i16 = 1;
    const MAX: i16 = 7;
    fn flexible(version: i16) -> bool {
        version >= 6
    }
    fn response_shape(version: i16) -> Vec<Node> {
        let mut partition = vec![I32, I64];
        if version >= 5 {
            partition.push(I32); // committed_leader_epoch
        }
        partition.extend([Str, I16]);
        let mut v = vec![Structs(vec![Str, Structs(partition)])];
        if version >= 2 {
            v.push(I16);
        }
        throttle_from(version, 3, v)
    }
}

/// `ConsumerProtocolSubscription` at `version` (0..=3; never flexible).
pub(crate) fn subscription_shape(version: i16) -> Vec<Node> {
    let mut v = vec![ArrayOf(Box::new(Str)), Bytes];
    if version >= 1 {
        v.push(Structs(vec![Str, ArrayOf(Box::new(I32))]));
    }
    if version >= 2 {
        v.push(I32);
    }
    if version >= 3 {
        v.push(Str);
    }
    v
}

/// `ConsumerProtocolAssignment` at `version` (0..=3; never flexible).
pub(crate) fn assignment_shape(_version: i16) -> Vec<Node> {
    vec![Structs(vec![Str, ArrayOf(Box::new(I32))]), Bytes]
}

#[cfg(test)]
mod tests {
    //! Each layout is checked against `kafka-protocol`'s own encoding of a populated
    //! response at every version we speak: the walk must take exactly all bytes.
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
    use kafka_protocol::messages::leave_group_response::MemberResponse;
    use kafka_protocol::messages::offset_commit_response::{
        OffsetCommitResponsePartition, OffsetCommitResponseTopic,
    };
    use kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponsePartition, OffsetFetchResponseTopic,
    };
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn s(x: &'static str) -> StrBytes {
        StrBytes::from_static_str(x)
    }

    fn round<R: Call>(resp: &R::Response) {
        for v in R::MIN..=R::MAX {
            let mut buf = BytesMut::new();
            resp.encode(&mut buf, v).unwrap();
            let n = crate::shape::check(&buf, &R::response_shape(v), R::flexible(v))
                .unwrap_or_else(|e| panic!("{} v{v}: {e}", R::NAME));
            assert_eq!(
                n,
                buf.len(),
                "{} v{v}: layout took {n} of {}",
                R::NAME,
                buf.len()
            );
            let mut b = buf.clone().freeze();
            R::Response::decode(&mut b, v).unwrap();
            // Every truncation must fail the walk (never panic).
            for cut in 0..buf.len() {
                let _ = crate::shape::check(&buf[..cut], &R::response_shape(v), R::flexible(v));
            }
        }
    }

    #[test]
    fn layouts_match_kafka_protocol_encodings() {
        round::<ApiVersionsRequest>(&ApiVersionsResponse::default().with_api_keys(
            vec![ApiVersion::default()
                .with_api_key(11)
                .with_min_version(0)
                .with_max_version(9)],
        ));
        round::<FindCoordinatorRequest>(
            &FindCoordinatorResponse::default()
                .with_host(s("localhost"))
                .with_port(9092),
        );
        round::<JoinGroupRequest>(
            &JoinGroupResponse::default()
                .with_protocol_name(Some(s("range")))
                .with_leader(s("m-1"))
                .with_member_id(s("m-1"))
                .with_members(vec![JoinGroupResponseMember::default()
                    .with_member_id(s("m-1"))
                    .with_metadata(bytes::Bytes::from_static(b"abc"))]),
        );
        round::<SyncGroupRequest>(
            &SyncGroupResponse::default().with_assignment(bytes::Bytes::from_static(b"xyz")),
        );
        round::<HeartbeatRequest>(&HeartbeatResponse::default().with_error_code(27));
        for v in 0..=5 {
            let mut r = LeaveGroupResponse::default();
            if v >= 3 {
                r = r.with_members(vec![MemberResponse::default().with_member_id(s("m"))]);
            }
            let mut buf = BytesMut::new();
            r.encode(&mut buf, v).unwrap();
            let n = crate::shape::check(
                &buf,
                &LeaveGroupRequest::response_shape(v),
                LeaveGroupRequest::flexible(v),
            )
            .unwrap();
            assert_eq!(n, buf.len(), "LeaveGroup v{v}");
        }
        round::<OffsetCommitRequest>(&OffsetCommitResponse::default().with_topics(
            vec![OffsetCommitResponseTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![OffsetCommitResponsePartition::default()
                    .with_partition_index(3)])],
        ));
        round::<OffsetFetchRequest>(&OffsetFetchResponse::default().with_topics(
            vec![OffsetFetchResponseTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![OffsetFetchResponsePartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(42)
                    .with_metadata(Some(s("")))])],
        ));
    }
}

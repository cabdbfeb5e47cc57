//! Entry points for `cargo fuzz` (feature `fuzzing`): the decoding of broker responses and
//! consumer-protocol blobs exactly as the group protocol does it. A broken or malicious
//! broker must get an error, never a panic or an unbounded allocation.

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiVersionsRequest, FindCoordinatorRequest, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest, SaslAuthenticateRequest,
    SaslHandshakeRequest, SyncGroupRequest,
};

use crate::apis::Call;
use crate::connection::decode_for_test;

fn each_version<R: Call>(body: &Bytes) {
    for v in R::MIN..=R::MAX {
        let _ = decode_for_test::<R>(body.clone(), v, 7);
    }
}

/// Decode `body` (a response frame without its size prefix; correlation id 7 expected) as
/// the response of the API `selector` picks, at every version we speak.
pub fn decode_response(selector: u8, body: &[u8]) {
    let body = Bytes::copy_from_slice(body);
    match selector % 10 {
        0 => each_version::<ApiVersionsRequest>(&body),
        1 => each_version::<FindCoordinatorRequest>(&body),
        2 => each_version::<JoinGroupRequest>(&body),
        3 => each_version::<SyncGroupRequest>(&body),
        4 => each_version::<HeartbeatRequest>(&body),
        5 => each_version::<LeaveGroupRequest>(&body),
        6 => each_version::<OffsetFetchRequest>(&body),
        7 => each_version::<SaslHandshakeRequest>(&body),
        8 => each_version::<SaslAuthenticateRequest>(&body),
        _ => each_version::<OffsetCommitRequest>(&body),
    }
}

/// Decode `data` as another member's subscription and as a leader's assignment.
pub fn decode_consumer_protocol(data: &[u8]) {
    let data = Bytes::copy_from_slice(data);
    let _ = crate::decode_subscription(&data);
    let _ = crate::decode_assignment(&data);
}

//! The one place Kafka errors — protocol error codes and rskafka errors — become classified
//! [`ReadError`]s.
//!
//! | what | class | kind |
//! |---|---|---|
//! | network errors, timeouts, broken connections | Transient | Connection / Timeout |
//! | NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, REQUEST_TIMED_OUT, REPLICA_NOT_AVAILABLE, leader epochs, storage errors | Transient | Server / Timeout |
//! | NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS | Transient (re-find the coordinator) | Server |
//! | REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION | Transient (rejoin) | Server |
//! | UNKNOWN_TOPIC_OR_PARTITION | Transient while the topic may be being created, then Permanent | NotFound |
//! | TOPIC/GROUP/CLUSTER_AUTHORIZATION_FAILED, SASL failures | Permanent | Auth |
//! | INVALID_GROUP_ID, INVALID_SESSION_TIMEOUT, INCONSISTENT_GROUP_PROTOCOL, INVALID_TOPIC | Permanent | Config |
//! | UNSUPPORTED_VERSION | Permanent | Protocol |
//! | OFFSET_OUT_OF_RANGE | Permanent PositionLost (the reader applies `auto_offset_reset` before it gets here) | PositionLost |
//! | other codes the protocol marks retriable | Transient | Server |
//! | UNKNOWN_SERVER_ERROR and other unknown codes | Unknown | Server |

use kafka_protocol::error::ResponseError;
use reader_core::{ErrorClass, ErrorKind, ReadError};
use rskafka::client::error::{Error as RsError, ProtocolError, RequestContext};

/// Error codes used by name in this crate.
pub(crate) mod code {
    pub(crate) const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub(crate) const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub(crate) const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub(crate) const NOT_COORDINATOR: i16 = 16;
    pub(crate) const ILLEGAL_GENERATION: i16 = 22;
    pub(crate) const UNKNOWN_MEMBER_ID: i16 = 25;
    pub(crate) const REBALANCE_IN_PROGRESS: i16 = 27;
    pub(crate) const MEMBER_ID_REQUIRED: i16 = 79;
}

/// The error's protocol name (`NOT_COORDINATOR`) for messages.
#[must_use]
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(ResponseError::Unknown(c)) => format!("error code {c}"),
        Some(e) => {
            // `NotCoordinator` → `NOT_COORDINATOR`.
            let camel = format!("{e}");
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

/// Classify a Kafka protocol error code returned for `what` (e.g. `JoinGroup of group "g"`).
/// A code of 0 is not an error; it yields an `Unknown` error saying so.
#[must_use]
pub fn classify_code(code: i16, what: &str) -> ReadError {
    use ErrorClass::{Permanent, Transient, Unknown};
    use ErrorKind::{Auth, Config, NotFound, PositionLost, Protocol, Server, Timeout};
    let name = error_name(code);
    let (class, kind, hint) = match code {
        0 => (Unknown, Protocol, "classified a success code as an error"),
        // Partition leadership and broker availability.
        5 | 6 | 9 | 74 | 75 | 8 | 56 | 78 => (Transient, Server, "leadership or broker availability is changing"),
        7 => (Transient, Timeout, "the broker timed the request out"),
        13 => (Transient, ErrorKind::Connection, "the broker lost a connection"),
        // The coordinator moved or is loading: find it again.
        14..=16 => (Transient, Server, "the group coordinator moved or is loading; it is looked up again"),
        // Membership: rejoin.
        22 | 25 | 27 | 79 => (Transient, Server, "the group is rebalancing; this member rejoins"),
        3 => (Transient, NotFound, "the topic or partition does not exist (yet)"),
        1 => (Permanent, PositionLost, "the offset is outside the partition's log"),
        29 => (Permanent, Auth, "not authorized for the topic"),
        30 => (Permanent, Auth, "not authorized for the group"),
        31 => (Permanent, Auth, "not authorized for the cluster"),
        33 | 34 | 58 => (Permanent, Auth, "SASL authentication failed"),
        17 => (Permanent, Config, "invalid topic name"),
        23 => (Permanent, Config, "other members of the group use another protocol type or assignors this member does not offer"),
        24 => (Permanent, Config, "invalid group id"),
        26 => (Permanent, Config, "the session timeout is outside what the broker allows (group.min/max.session.timeout.ms)"),
        81 => (Permanent, Config, "the group reached its maximum size"),
        82 => (Permanent, Config, "another member uses the same group instance id"),
        35 => (Permanent, Protocol, "the broker does not support this request version"),
        88 | 89 => (Transient, Server, "the broker asks to try again later"),
        -1 => (Unknown, Server, "the broker reported an unexpected server error"),
        c => match ResponseError::try_from_code(c) {
            Some(e) if e.is_retriable() => (Transient, Server, "the protocol marks this error retriable"),
            _ => (Unknown, Server, "an error this client does not know how to handle"),
        },
    };
    ReadError::new(class, kind, format!("{what} failed with {name}: {hint}"))
}

/// The numeric code of an rskafka protocol error.
fn rskafka_code(e: ProtocolError) -> Option<i16> {
    if let ProtocolError::Unknown(c) = e {
        return Some(c);
    }
    (-1..=200).find(|c| ProtocolError::new(*c) == Some(e))
}

/// Classify an rskafka error from an operation on `what` (e.g. `fetch of orders/3`).
///
/// `topic_missing_is_permanent` turns UNKNOWN_TOPIC_OR_PARTITION into a Permanent error
/// naming the topic (the caller decides when the creation wait is over).
#[must_use]
pub fn classify_rskafka(e: &RsError, what: &str, topic_missing_is_permanent: bool) -> ReadError {
    match e {
        RsError::Connection(c) => classify_connection(c, what),
        RsError::Request(r) => ReadError::transient(
            ErrorKind::Connection,
            format!("{what}: request to the broker failed: {r}"),
        ),
        RsError::InvalidResponse(m) => ReadError::transient(
            ErrorKind::Protocol,
            format!("{what}: invalid response from the broker: {m}"),
        ),
        RsError::ServerError {
            protocol_error,
            error_message,
            request,
            ..
        } => {
            let code = rskafka_code(*protocol_error).unwrap_or(-1);
            let mut ctx = what.to_owned();
            if let Some(m) = error_message {
                ctx.push_str(&format!(" (broker says: {m})"));
            }
            if code == code::UNKNOWN_TOPIC_OR_PARTITION {
                let target = match request {
                    RequestContext::Topic(t) => format!("topic {t:?}"),
                    RequestContext::Partition(t, p) => format!("partition {p} of topic {t:?}"),
                    RequestContext::Fetch {
                        topic_name,
                        partition_id,
                        ..
                    } => format!("partition {partition_id} of topic {topic_name:?}"),
                    _ => "the topic".to_owned(),
                };
                return unknown_topic(&target, topic_missing_is_permanent);
            }
            classify_code(code, &ctx)
        }
        RsError::RetryFailed(b) => classify_backoff(b, what, topic_missing_is_permanent),
        RsError::Timeout => ReadError::transient(
            ErrorKind::Timeout,
            format!("{what}: the broker did not answer in time"),
        ),
        other => ReadError::new(
            ErrorClass::Unknown,
            ErrorKind::Other,
            format!("{what}: {other}"),
        ),
    }
}

/// The error for a topic (or partition) that does not exist.
#[must_use]
pub fn unknown_topic(target: &str, permanent: bool) -> ReadError {
    if permanent {
        ReadError::permanent(
            ErrorKind::NotFound,
            format!(
                "{target} does not exist (UNKNOWN_TOPIC_OR_PARTITION); create it before reading"
            ),
        )
    } else {
        ReadError::transient(
            ErrorKind::NotFound,
            format!("{target} does not exist yet (UNKNOWN_TOPIC_OR_PARTITION); waiting for it to be created"),
        )
    }
}

fn classify_backoff(b: &rskafka::BackoffError, what: &str, missing_permanent: bool) -> ReadError {
    let rskafka::BackoffError::DeadlineExceded { source, .. } = b;
    if let Some(inner) = source.downcast_ref::<RsError>() {
        return classify_rskafka(inner, what, missing_permanent);
    }
    // Connecting retries inside rskafka too: its last failure (a refused SASL login, a
    // certificate that did not verify) decides.
    if let Some(inner) = source.downcast_ref::<rskafka::ConnectionError>() {
        return classify_connection(inner, what);
    }
    let text = crate::connection::chain_text(source.as_ref());
    if let Some(e) = reader_core::tls::failure(what, &text) {
        return e;
    }
    // rskafka gathers the failures of every bootstrap broker into one opaque error: only its
    // text says that the login itself was refused (not the connection lost during it).
    if let Some(e) = sasl_refusal(what, &text) {
        return e;
    }
    ReadError::transient(
        ErrorKind::Timeout,
        format!("{what}: gave up within the client's retry deadline: {text}"),
    )
}

/// A SASL login the broker refused, recognised in rskafka's error text: the messages of
/// its `SaslError` variants other than a lost connection.
fn sasl_refusal(what: &str, text: &str) -> Option<ReadError> {
    let (_, after) = text.split_once("Sasl handshake failed: ")?;
    const REFUSED: &[&str] = &[
        "API error",
        "Sasl session error",
        "Invalid sasl mechanism",
        "Invalid SASL config",
        "unsupported sasl mechanism",
    ];
    REFUSED.iter().any(|r| after.starts_with(r)).then(|| {
        ReadError::permanent(
            ErrorKind::Auth,
            format!("{what}: SASL authentication failed (check the user, password and mechanism): {after}"),
        )
    })
}

fn classify_connection(c: &rskafka::ConnectionError, what: &str) -> ReadError {
    match c {
        rskafka::ConnectionError::SaslFailed(e) => ReadError::permanent(
            ErrorKind::Auth,
            format!("{what}: SASL authentication failed: {e}"),
        ),
        rskafka::ConnectionError::RetryFailed(b) => classify_backoff(b, what, false),
        other => {
            let text = crate::connection::chain_text(other);
            if let Some(e) = reader_core::tls::failure(what, &text) {
                return e;
            }
            ReadError::transient(
                ErrorKind::Connection,
                format!("{what}: cannot reach the Kafka cluster: {text}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        let t = |c| classify_code(c, "op").class();
        assert_eq!(t(6), ErrorClass::Transient, "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(t(5), ErrorClass::Transient, "LEADER_NOT_AVAILABLE");
        assert_eq!(t(7), ErrorClass::Transient, "REQUEST_TIMED_OUT");
        assert_eq!(t(14), ErrorClass::Transient);
        assert_eq!(t(15), ErrorClass::Transient);
        assert_eq!(t(16), ErrorClass::Transient);
        assert_eq!(t(27), ErrorClass::Transient, "REBALANCE_IN_PROGRESS");
        assert_eq!(t(25), ErrorClass::Transient, "UNKNOWN_MEMBER_ID");
        assert_eq!(t(29), ErrorClass::Permanent, "TOPIC_AUTHORIZATION_FAILED");
        assert_eq!(t(30), ErrorClass::Permanent, "GROUP_AUTHORIZATION_FAILED");
        assert_eq!(t(58), ErrorClass::Permanent, "SASL_AUTHENTICATION_FAILED");
        assert_eq!(t(35), ErrorClass::Permanent, "UNSUPPORTED_VERSION");
        assert_eq!(t(-1), ErrorClass::Unknown);
        assert_eq!(t(999), ErrorClass::Unknown);
        let e = classify_code(30, "JoinGroup of group \"g\"");
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(e.message().contains("GROUP_AUTHORIZATION_FAILED"), "{e}");
        assert!(e.message().contains("group \"g\""), "{e}");
        assert_eq!(error_name(16), "NOT_COORDINATOR");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
    }

    #[test]
    fn rskafka_errors_are_classified() {
        let e = RsError::ServerError {
            protocol_error: ProtocolError::NotLeaderOrFollower,
            error_message: None,
            request: RequestContext::Partition("t".into(), 1),
            response: None,
            is_virtual: false,
        };
        assert_eq!(
            classify_rskafka(&e, "fetch", false).class(),
            ErrorClass::Transient
        );
        let e = RsError::ServerError {
            protocol_error: ProtocolError::UnknownTopicOrPartition,
            error_message: None,
            request: RequestContext::Topic("orders".into()),
            response: None,
            is_virtual: false,
        };
        let early = classify_rskafka(&e, "fetch", false);
        assert_eq!(early.class(), ErrorClass::Transient);
        let late = classify_rskafka(&e, "fetch", true);
        assert_eq!(late.class(), ErrorClass::Permanent);
        assert_eq!(late.kind(), ErrorKind::NotFound);
        assert!(late.message().contains("topic \"orders\""), "{late}");
        let e = RsError::ServerError {
            protocol_error: ProtocolError::TopicAuthorizationFailed,
            error_message: Some("denied".into()),
            request: RequestContext::Topic("orders".into()),
            response: None,
            is_virtual: false,
        };
        let c = classify_rskafka(&e, "fetch", false);
        assert_eq!(c.class(), ErrorClass::Permanent);
        assert!(c.message().contains("denied"));
        assert_eq!(
            classify_rskafka(&RsError::Timeout, "fetch", false).class(),
            ErrorClass::Transient
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let e = RsError::Request(rskafka::client::error::RequestError::IO(io));
        assert_eq!(
            classify_rskafka(&e, "fetch", false).kind(),
            ErrorKind::Connection
        );
        let wrapped = RsError::RetryFailed(rskafka::BackoffError::DeadlineExceded {
            deadline: std::time::Duration::from_secs(1),
            source: Box::new(RsError::ServerError {
                protocol_error: ProtocolError::GroupAuthorizationFailed,
                error_message: None,
                request: RequestContext::Topic("t".into()),
                response: None,
                is_virtual: false,
            }),
        });
        assert_eq!(
            classify_rskafka(&wrapped, "fetch", false).class(),
            ErrorClass::Permanent
        );
    }
}

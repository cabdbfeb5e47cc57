//! fred / Redis errors → [`ErrorClass`]: the one place a driver error is judged.
//!
//! fred maps only a few server error prefixes to its own kinds (`NOAUTH`/`WRONGPASS` →
//! `Auth`, `WRONGTYPE` → `InvalidArgument`, `MOVED`/`ASK`/`CLUSTERDOWN` → `Cluster`); the rest
//! (`BUSYGROUP`, `NOGROUP`, `LOADING`, `BUSY`, …) arrive as `ErrorKind::Unknown` with the
//! server's text in `details()`. So the server's error code (the first word of its reply) is
//! looked at first, then fred's kind.

use fred::error::{Error as FredError, ErrorKind as FredKind};
use reader_core::{ErrorClass, ErrorKind, ReadError};

/// The server error code of `e` (`NOGROUP`, `LOADING`, …) when it is a server reply.
#[must_use]
pub fn server_code(e: &FredError) -> Option<&str> {
    let first = e.details().split_whitespace().next()?;
    (first.len() >= 2 && first.bytes().all(|b| b.is_ascii_uppercase())).then_some(first)
}

/// Whether `e` is the server's `NOGROUP` (the group or the key does not exist).
#[must_use]
pub fn is_nogroup(e: &FredError) -> bool {
    server_code(e) == Some("NOGROUP")
}

/// Whether `e` is the server's `BUSYGROUP` (the group exists already: fine when creating it).
#[must_use]
pub fn is_busygroup(e: &FredError) -> bool {
    server_code(e) == Some("BUSYGROUP")
}

/// Classify a fred error. `what` says what was being done (`XREADGROUP orders`), for the
/// message; fred's messages carry no password (the URL never reaches fred).
#[must_use]
pub fn classify_fred_error(e: &FredError, what: &str) -> ReadError {
    let (class, kind) = facts(e);
    if kind == ErrorKind::Tls {
        if let Some(err) = reader_core::tls::failure(what, &e.to_string()) {
            return err;
        }
    }
    ReadError::new(class, kind, format!("{what}: {e}"))
}

fn facts(e: &FredError) -> (ErrorClass, ErrorKind) {
    use ErrorClass::{Permanent, Transient, Unknown};
    let details = e.details();
    if let Some(code) = server_code(e) {
        match code {
            "LOADING" | "BUSY" | "CLUSTERDOWN" | "TRYAGAIN" | "MASTERDOWN" | "READONLY"
            | "NOREPLICAS" | "OOM" => return (Transient, ErrorKind::Server),
            "NOAUTH" | "WRONGPASS" | "NOPERM" => return (Permanent, ErrorKind::Auth),
            "WRONGTYPE" => return (Permanent, ErrorKind::Protocol),
            "NOGROUP" => return (Permanent, ErrorKind::NotFound),
            "ERR" => {
                let lower = details.to_ascii_lowercase();
                if lower.contains("max number of clients") {
                    return (Transient, ErrorKind::Server);
                }
                if lower.contains("password") || lower.contains("auth") {
                    return (Permanent, ErrorKind::Auth);
                }
                if lower.contains("unknown command")
                    || lower.contains("db index is out of range")
                    || lower.contains("invalid stream id")
                    || lower.contains("syntax error")
                    || lower.contains("wrong number of arguments")
                {
                    return (Permanent, ErrorKind::Config);
                }
                return (Unknown, ErrorKind::Server);
            }
            _ => {}
        }
    }
    // rustls reports a failed handshake as an io::Error (InvalidData) carrying its own error:
    // an untrusted or mismatched certificate, or TLS spoken to a plaintext port, will not go
    // away by retrying.
    if matches!(e.kind(), FredKind::IO | FredKind::Tls) && is_tls_failure(details) {
        return (Permanent, ErrorKind::Tls);
    }
    match e.kind() {
        FredKind::IO | FredKind::Canceled | FredKind::Routing | FredKind::Backpressure => {
            (Transient, ErrorKind::Connection)
        }
        FredKind::Timeout => (Transient, ErrorKind::Timeout),
        FredKind::Cluster => (Transient, ErrorKind::Server),
        FredKind::Auth => (Permanent, ErrorKind::Auth),
        FredKind::Tls => (Permanent, ErrorKind::Tls),
        FredKind::Config | FredKind::Url | FredKind::InvalidCommand | FredKind::InvalidArgument => {
            (Permanent, ErrorKind::Config)
        }
        FredKind::NotFound => (Permanent, ErrorKind::NotFound),
        FredKind::Protocol | FredKind::Parse => (Unknown, ErrorKind::Protocol),
        FredKind::Sentinel => (Transient, ErrorKind::Server),
        FredKind::Unknown => {
            // fred reports a closed socket as Unknown in a few places.
            let lower = details.to_ascii_lowercase();
            if lower.contains("connection")
                || lower.contains("closed")
                || lower.contains("broken pipe")
            {
                (Transient, ErrorKind::Connection)
            } else {
                (Unknown, ErrorKind::Other)
            }
        }
        #[allow(unreachable_patterns)]
        _ => (Unknown, ErrorKind::Other),
    }
}

fn is_tls_failure(details: &str) -> bool {
    reader_core::tls::explain_failure(details).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(text: &str) -> FredError {
        // What fred builds from a server error reply.
        let kind = match text.split_whitespace().next() {
            Some("NOAUTH" | "WRONGPASS") => FredKind::Auth,
            Some("WRONGTYPE") => FredKind::InvalidArgument,
            Some("CLUSTERDOWN") => FredKind::Cluster,
            _ => FredKind::Unknown,
        };
        FredError::new(kind, text.to_owned())
    }

    #[test]
    fn server_replies() {
        let cases = [
            (
                "LOADING Redis is loading the dataset in memory",
                ErrorClass::Transient,
            ),
            ("BUSY Redis is busy running a script", ErrorClass::Transient),
            ("CLUSTERDOWN The cluster is down", ErrorClass::Transient),
            (
                "TRYAGAIN Multiple keys request during rehashing",
                ErrorClass::Transient,
            ),
            ("MASTERDOWN Link with MASTER is down", ErrorClass::Transient),
            ("ERR max number of clients reached", ErrorClass::Transient),
            ("NOAUTH Authentication required.", ErrorClass::Permanent),
            (
                "WRONGPASS invalid username-password pair or user is disabled.",
                ErrorClass::Permanent,
            ),
            (
                "NOPERM this user has no permissions to run the 'xreadgroup' command",
                ErrorClass::Permanent,
            ),
            (
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                ErrorClass::Permanent,
            ),
            (
                "NOGROUP No such key 'k' or consumer group 'g' in XREADGROUP with GROUP option",
                ErrorClass::Permanent,
            ),
            ("ERR unknown command 'XAUTOCLAIM'", ErrorClass::Permanent),
            ("ERR DB index is out of range", ErrorClass::Permanent),
            ("ERR something new", ErrorClass::Unknown),
        ];
        for (text, want) in cases {
            let e = classify_fred_error(&server(text), "XREADGROUP k");
            assert_eq!(e.class(), want, "{text}");
            assert!(e.message().starts_with("XREADGROUP k: "), "{}", e.message());
        }
        assert_eq!(
            classify_fred_error(&server("NOAUTH Authentication required."), "x").kind(),
            ErrorKind::Auth
        );
        assert_eq!(
            classify_fred_error(&server("NOGROUP No such key"), "x").kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn group_codes() {
        assert!(is_nogroup(&server(
            "NOGROUP No such key 'k' or consumer group 'g'"
        )));
        assert!(is_busygroup(&server(
            "BUSYGROUP Consumer Group name already exists"
        )));
        assert!(!is_nogroup(&server("ERR no such key")));
        assert!(!is_busygroup(&FredError::new(
            FredKind::IO,
            "BUSYGROUP? no"
        )));
    }

    #[test]
    fn driver_kinds() {
        let cases = [
            (
                FredKind::IO,
                "Connection reset by peer",
                ErrorClass::Transient,
                ErrorKind::Connection,
            ),
            (
                FredKind::Timeout,
                "Request timed out.",
                ErrorClass::Transient,
                ErrorKind::Timeout,
            ),
            (
                FredKind::Canceled,
                "Canceled.",
                ErrorClass::Transient,
                ErrorKind::Connection,
            ),
            (
                FredKind::Auth,
                "bad creds",
                ErrorClass::Permanent,
                ErrorKind::Auth,
            ),
            (
                FredKind::Tls,
                "invalid peer certificate",
                ErrorClass::Permanent,
                ErrorKind::Tls,
            ),
            (
                FredKind::Config,
                "bad",
                ErrorClass::Permanent,
                ErrorKind::Config,
            ),
            (
                FredKind::Parse,
                "Could not convert",
                ErrorClass::Unknown,
                ErrorKind::Protocol,
            ),
        ];
        for (kind, text, class, k) in cases {
            let e = classify_fred_error(&FredError::new(kind.clone(), text), "PING");
            assert_eq!((e.class(), e.kind()), (class, k), "{kind:?} {text}");
        }
    }
}

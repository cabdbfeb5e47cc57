//! Turning driver errors into classified [`ReadError`]s: the one place this crate decides
//! what is worth retrying.
//!
//! The driver's own `is_network_error`/`is_resumable` are crate-private, so this works from
//! the public surface: the error's `kind`, the server's code and code name, and the labels
//! (`ResumableChangeStreamError`, `RetryableWriteError`, …).

use std::time::Duration;

use mongodb::error::{Error, ErrorKind as DriverKind, WriteFailure};
use reader_core::{ErrorClass, ErrorKind, ReadError};

/// The server codes of a node that is failing over, recovering, shutting down or briefly
/// unable to answer (the change-streams spec's resumable set, the SDAM "not primary" and
/// "recovering" sets, and the retryable-reads set).
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    43,    // CursorNotFound (resumable by the change-streams spec)
    63,    // StaleShardVersion
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict
    133,   // FailedToSatisfyReadPreference
    134,   // ReadConcernMajorityNotAvailableYet
    150,   // StaleEpoch
    189,   // PrimarySteppedDown
    202,   // NetworkInterfaceExceededTimeLimit
    234,   // RetryChangeStream
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10058, // LegacyNotPrimary
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    50738, // a getMore in another session than its cursor's: the driver lost the cursor's
    // implicit session (e.g. a resume cut short); a new session heals it
    13388, // StaleConfig
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Codes of a request the server will never accept as it is: bad pipeline, bad option.
const CONFIG_CODES: &[i32] = &[
    2,     // BadValue
    9,     // FailedToParse
    14,    // TypeMismatch
    40324, // unrecognized pipeline stage
    40415, // unknown field
    40573, // $changeStream only on replica sets (handled with its own message)
];

/// `$changeStream` on a standalone server.
const NOT_A_REPLICA_SET: i32 = 40573;
/// The saved position is older than the oplog.
const HISTORY_LOST: i32 = 286;
/// Older servers' "cannot resume" (also: the pipeline modified `_id`).
const CHANGE_STREAM_FATAL: i32 = 280;
/// A capped collection (the oplog) rolled past a cursor.
const CAPPED_POSITION_LOST: i32 = 136;

/// The label of errors after which a change stream may be resumed.
pub use mongodb::error::RESUMABLE_CHANGE_STREAM_ERROR;

/// What classification needs to know about an error, taken from its public surface.
#[derive(Clone, Debug, Default)]
pub(crate) struct Facts {
    pub(crate) kind: Kind,
    pub(crate) code: Option<i32>,
    pub(crate) code_name: String,
    pub(crate) message: String,
    pub(crate) labels: Vec<String>,
    pub(crate) backoff: Option<Duration>,
    pub(crate) io_kind: Option<std::io::ErrorKind>,
}

/// The driver error kind, reduced to what matters here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Kind {
    Io,
    PoolCleared,
    ServerSelection,
    Dns,
    Auth,
    InvalidArgument,
    Tls,
    Command,
    WriteConcern,
    Write,
    InvalidResponse,
    Decode,
    Incompatible,
    SessionsNotSupported,
    MissingResumeToken,
    Shutdown,
    #[default]
    Other,
}

impl Facts {
    pub(crate) fn of(e: &Error) -> Self {
        let mut f = Facts {
            message: e.kind.to_string(),
            labels: e.labels().iter().cloned().collect(),
            ..Facts::default()
        };
        f.kind = match e.kind.as_ref() {
            DriverKind::Io(io) => {
                f.io_kind = Some(io.kind());
                Kind::Io
            }
            DriverKind::ConnectionPoolCleared { .. } => Kind::PoolCleared,
            DriverKind::ServerSelection { .. } => Kind::ServerSelection,
            DriverKind::DnsResolve { .. } => Kind::Dns,
            DriverKind::Authentication { .. } => Kind::Auth,
            DriverKind::InvalidArgument { .. } => Kind::InvalidArgument,
            DriverKind::InvalidTlsConfig { .. } => Kind::Tls,
            DriverKind::Command(c) => {
                f.code = Some(c.code);
                f.code_name.clone_from(&c.code_name);
                f.message.clone_from(&c.message);
                f.backoff = c.base_backoff;
                Kind::Command
            }
            DriverKind::Write(WriteFailure::WriteConcernError(w)) => {
                f.code = Some(w.code);
                f.code_name.clone_from(&w.code_name);
                f.message.clone_from(&w.message);
                Kind::WriteConcern
            }
            DriverKind::Write(WriteFailure::WriteError(w)) => {
                f.code = Some(w.code);
                f.code_name = w.code_name.clone().unwrap_or_default();
                f.message.clone_from(&w.message);
                Kind::Write
            }
            DriverKind::InvalidResponse { .. } => Kind::InvalidResponse,
            DriverKind::BsonDeserialization(_) | DriverKind::BsonSerialization(_) => Kind::Decode,
            DriverKind::IncompatibleServer { .. } => Kind::Incompatible,
            DriverKind::SessionsNotSupported => Kind::SessionsNotSupported,
            DriverKind::MissingResumeToken => Kind::MissingResumeToken,
            DriverKind::Shutdown => Kind::Shutdown,
            _ => Kind::Other,
        };
        f
    }

    fn has_label(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l == label)
    }

    pub(crate) fn server_text(&self) -> String {
        match self.code {
            Some(code) if self.code_name.is_empty() => format!("{} (code {code})", self.message),
            Some(code) => format!("{} ({} {code})", self.message, self.code_name),
            None => self.message.clone(),
        }
    }

    pub(crate) fn is_history_lost(&self) -> bool {
        let Some(code) = self.code else {
            return false;
        };
        // A cursor on the oplog (a capped collection) whose position was truncated away: a
        // change stream's getMore that fell off the oplog mid-stream says this, not 286
        // ("CollectionScan died due to failure to restore tailable cursor position").
        if code == HISTORY_LOST
            || code == CAPPED_POSITION_LOST
            || self.code_name == "ChangeStreamHistoryLost"
            || self.code_name == "CappedPositionLost"
        {
            return true;
        }
        let m = self.message.to_ascii_lowercase();
        code == CHANGE_STREAM_FATAL
            && (m.contains("no longer be in the oplog")
                || m.contains("resume token was not found")
                || m.contains("resume point may no longer"))
    }
}

/// Whether `e` says the position to resume from is older than the oplog
/// (`ChangeStreamHistoryLost`, 286; `CappedPositionLost`, 136, when a stream falls off the
/// oplog mid-stream; or 280 with "resume point may no longer be in the oplog" / "the resume
/// token was not found").
#[must_use]
pub fn is_history_lost(e: &Error) -> bool {
    Facts::of(e).is_history_lost()
}

/// Classify a driver error. See the module docs; in short:
///
/// * a TLS handshake that cannot succeed as configured — the server's certificate did not
///   verify (not trusted, wrong host name, expired…), the server refused the client's
///   certificate, no TLS version or cipher in common, a server that does not speak TLS —
///   whether the driver reports it as an I/O error or inside a server-selection timeout →
///   Permanent `Tls`, saying what did not verify; a missing file of the TLS options →
///   Permanent `Tls`;
/// * network and I/O errors, a cleared connection pool, no server selectable, DNS failures,
///   `CursorNotFound` (43), errors labelled `ResumableChangeStreamError` or
///   `RetryableWriteError`, and the failover codes (`NotWritablePrimary`,
///   `InterruptedAtShutdown`, `ShutdownInProgress`, `PrimarySteppedDown`, …) → Transient;
/// * authentication (and codes 13 `Unauthorized`, 18 `AuthenticationFailed`) → Permanent,
///   never showing the password;
/// * `$changeStream` on a standalone server (40573) → Permanent, telling the user that change
///   streams need a replica set;
/// * history lost (286) → Permanent `PositionLost` (the connector applies the
///   `on_history_lost` policy before it gets here);
/// * bad options or pipeline, a pipeline that removed `_id`, TLS configuration → Permanent;
/// * a connection the server closed during or right after the handshake stays Transient (a
///   server going away looks the same), with a hint of the TLS mismatch it may be: a
///   plaintext client to a TLS-only server, TLS to a plaintext port, or no (trusted) client
///   certificate for a server that requires one;
/// * anything else → Unknown (not retried by the default policy).
#[must_use]
pub fn classify_mongo_error(e: &Error) -> ReadError {
    classify_facts(&Facts::of(e))
}

#[allow(clippy::too_many_lines)]
pub(crate) fn classify_facts(f: &Facts) -> ReadError {
    let text = f.server_text();
    if matches!(f.kind, Kind::Io | Kind::PoolCleared | Kind::ServerSelection) {
        if let Some((what, detail)) = tls_refusal(&text) {
            return ReadError::permanent(
                ErrorKind::Tls,
                format!("the TLS handshake with MongoDB failed: {what} ({detail}); {text}"),
            );
        }
    }
    let mut err = match f.kind {
        Kind::Io if f.io_kind == Some(std::io::ErrorKind::NotFound) => ReadError::permanent(
            ErrorKind::Tls,
            format!(
                "a file named by the connection options does not exist (the driver does not \
                 say which; the CA file of tlsCAFile is named when it is missing, so it is \
                 likely the certificate and key file of tlsCertificateKeyFile): {text}"
            ),
        ),
        Kind::Io => {
            let timed_out = matches!(f.io_kind, Some(std::io::ErrorKind::TimedOut));
            ReadError::transient(
                if timed_out {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Connection
                },
                format!(
                    "network error talking to MongoDB: {text}{}",
                    closed_hint(&text)
                ),
            )
        }
        Kind::PoolCleared => ReadError::transient(
            ErrorKind::Connection,
            format!(
                "the connection pool was cleared (the server went away): {text}{}",
                closed_hint(&text)
            ),
        ),
        Kind::ServerSelection => ReadError::transient(
            ErrorKind::Connection,
            format!(
                "no MongoDB server could be selected: {text}{}",
                closed_hint(&text)
            ),
        ),
        Kind::Dns => ReadError::transient(
            ErrorKind::Connection,
            format!("DNS resolution failed: {text}"),
        ),
        Kind::Auth => ReadError::permanent(
            ErrorKind::Auth,
            format!("MongoDB authentication failed (check user, password and authSource): {text}"),
        ),
        Kind::InvalidArgument => ReadError::permanent(
            ErrorKind::Config,
            format!("the driver rejected an option: {text}"),
        ),
        Kind::Tls => ReadError::permanent(
            ErrorKind::Tls,
            format!("the TLS configuration is invalid: {text}"),
        ),
        Kind::InvalidResponse => ReadError::transient(
            ErrorKind::Protocol,
            format!("the server sent an invalid reply: {text}"),
        ),
        Kind::Decode => ReadError::permanent(
            ErrorKind::Decode,
            format!("a document could not be decoded: {text}"),
        ),
        Kind::Incompatible => ReadError::permanent(
            ErrorKind::Server,
            format!("this MongoDB server version is not supported by the driver: {text}"),
        ),
        Kind::SessionsNotSupported => ReadError::permanent(
            ErrorKind::Server,
            format!("the deployment does not support sessions: {text}"),
        ),
        Kind::MissingResumeToken => ReadError::permanent(
            ErrorKind::Config,
            "a change event had no `_id` (its resume token): the pipeline must not remove or \
             change `_id`",
        ),
        Kind::Shutdown => {
            ReadError::permanent(ErrorKind::Closed, "the MongoDB client was shut down")
        }
        Kind::Command | Kind::WriteConcern | Kind::Write => classify_server(f, &text),
        Kind::Other => ReadError::new(
            ErrorClass::Unknown,
            ErrorKind::Other,
            format!("MongoDB error: {text}"),
        ),
    };
    if let Some(b) = f.backoff {
        err = err.with_retry_after(b);
    }
    err
}

/// What the driver's text (rustls's words, inside an I/O, pool-cleared or server-selection
/// error) says about a TLS handshake that can never succeed as configured: `(what it means,
/// the driver's words)`. `None` for anything else. Recognition is core's
/// ([`reader_core::tls_problem`]); the words here name the driver's `tls*` options.
fn tls_refusal(text: &str) -> Option<(String, String)> {
    use reader_core::TlsProblem::*;
    let what = match reader_core::tls_problem(text)? {
        Untrusted => {
            "the server's certificate is not trusted: no CA of tlsCAFile signed it (without \
             tlsCAFile, the driver trusts only its built-in Mozilla root list, not the system's \
             trust store)"
        }
        WrongName => {
            "the server's certificate is not valid for the host name this client connected to: \
             connect by a name (or IP address) the certificate lists; the driver has no \
             server-name override, and its TLS (rustls) has no tlsAllowInvalidHostnames"
        }
        Expired => "the server's certificate has expired",
        NotValidYet => "the server's certificate is not valid yet (is a clock wrong?)",
        Revoked => "the server's certificate was revoked",
        WrongPurpose => "the server's certificate is not for TLS servers (its extended key usage)",
        BadSignature => "the server's certificate has a signature that does not verify",
        CertificateOther => "the server's certificate did not verify",
        ClientCertificateRequired | ClientCertificateRefused => {
            "the server refused this client's certificate (or its absence): give \
             tlsCertificateKeyFile=<certificate and key PEM> with a certificate signed by \
             a CA the server trusts"
        }
        NoCommonProtocol => {
            "the server and this client have no TLS version, cipher suite or signature \
             scheme in common (this client speaks TLS 1.2 and 1.3)"
        }
        NotTls => {
            "the server did not answer in TLS: is this port serving TLS? (without TLS on the \
             server, remove tls=true)"
        }
        // Another fatal alert: not known to be one that retrying cannot mend.
        Handshake => return None,
    };
    // The driver's words: rustls's, up to where the driver's topology description goes on.
    let from = [
        "invalid peer certificate: ",
        "received fatal alert: ",
        "peer is incompatible",
        "received corrupt message",
    ]
    .iter()
    .filter_map(|n| text.find(n))
    .min()
    .unwrap_or(0);
    let rest = &text[from..];
    let detail = rest[..rest.find(", labels:").unwrap_or(rest.len())].to_owned();
    Some((what.to_owned(), detail))
}

/// A hint for a connection the server closed during or right after the handshake: what a
/// TLS or mutual-TLS mismatch looks like from this side, though a server going away looks
/// the same (so these stay transient).
fn closed_hint(text: &str) -> &'static str {
    if text.contains("tls handshake eof") {
        " (the server closed the connection during the TLS handshake: a server that does \
         not serve TLS on this port does that; if so, remove tls=true)"
    } else if text.contains("peer closed connection without sending TLS close_notify") {
        " (the server closed the TLS connection before answering: mongod does that when it \
         requires a client certificate and none, or one signed by a CA it does not trust, was \
         presented; if so, give tlsCertificateKeyFile=<certificate and key PEM>)"
    } else if text.contains("unexpected end of file") {
        " (the server closed the connection before answering: a server that requires TLS \
         does that to a plaintext client; if so, add tls=true and tlsCAFile=<CA PEM>)"
    } else {
        ""
    }
}

fn classify_server(f: &Facts, text: &str) -> ReadError {
    let code = f.code.unwrap_or(0);
    let lower = f.message.to_ascii_lowercase();
    if code == NOT_A_REPLICA_SET || lower.contains("only supported on replica sets") {
        return ReadError::permanent(
            ErrorKind::Config,
            format!(
                "change streams need a replica set (or a sharded cluster), and this MongoDB \
                 server is a standalone: start mongod with --replSet NAME and run \
                 rs.initiate() — a single-node replica set is enough ({text})"
            ),
        );
    }
    if f.is_history_lost() {
        return ReadError::permanent(ErrorKind::PositionLost, history_lost_message(text));
    }
    if code == 13 && lower.contains("requires authentication") {
        return ReadError::permanent(
            ErrorKind::Auth,
            format!(
                "MongoDB requires authentication and this client gave no credentials: put \
                 user:password@ in the URL (with authSource= the user's database, usually \
                 admin): {text}"
            ),
        );
    }
    if code == 13 || code == 18 {
        return ReadError::permanent(
            ErrorKind::Auth,
            format!(
                "MongoDB refused the operation (check the user's roles: reading a change \
                 stream needs `find` and `changeStream` on the watched namespace): {text}"
            ),
        );
    }
    if code == CHANGE_STREAM_FATAL {
        return ReadError::permanent(
            ErrorKind::Config,
            format!("the change stream cannot continue (does the pipeline change `_id`?): {text}"),
        );
    }
    if f.has_label(RESUMABLE_CHANGE_STREAM_ERROR)
        || f.has_label(mongodb::error::RETRYABLE_WRITE_ERROR)
        || f.has_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR)
        || f.has_label(mongodb::error::SYSTEM_OVERLOADED_ERROR)
        || f.has_label(mongodb::error::RETRYABLE_ERROR)
        || TRANSIENT_CODES.contains(&code)
    {
        return ReadError::transient(ErrorKind::Server, format!("MongoDB server error: {text}"));
    }
    if code == 50 {
        return ReadError::transient(ErrorKind::Timeout, format!("the server timed out: {text}"));
    }
    if code == 64 && f.kind == Kind::WriteConcern {
        return ReadError::transient(
            ErrorKind::Timeout,
            format!("the write concern was not satisfied in time: {text}"),
        );
    }
    if CONFIG_CODES.contains(&code) {
        return ReadError::permanent(
            ErrorKind::Config,
            format!("MongoDB rejected the change stream's options or pipeline: {text}"),
        );
    }
    if code == 26 || code == 73 {
        return ReadError::permanent(
            ErrorKind::NotFound,
            format!("the namespace does not exist or is invalid: {text}"),
        );
    }
    if code == 11000 {
        return ReadError::permanent(ErrorKind::Server, format!("duplicate key: {text}"));
    }
    ReadError::new(
        ErrorClass::Unknown,
        ErrorKind::Server,
        format!("MongoDB server error: {text}"),
    )
}

/// The explanation given when the saved position is older than the oplog.
pub(crate) fn history_lost_message(server_text: &str) -> String {
    format!(
        "the resume token is older than the oldest entry of the oplog, so the events after \
         it are gone for good ({server_text}). Choose what to do: restart from now \
         (on_history_lost=restart_now, reported as a gap), restart from a time \
         (on_history_lost=restart_at:<unix secs>), or clear this reader's checkpoint; and to \
         keep it from happening again, make the oplog larger (replSetResizeOplog) or alert on \
         unireader_mongo_checkpoint_age_seconds before it nears the oplog window"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;
    use mongodb::error::CommandError;

    fn command(code: i32, name: &str, msg: &str) -> Error {
        let c: CommandError =
            mongodb::bson::from_document(doc! { "code": code, "codeName": name, "errmsg": msg })
                .unwrap();
        Error::from(DriverKind::Command(c))
    }

    fn facts(kind: Kind, message: &str) -> Facts {
        Facts {
            kind,
            message: message.into(),
            ..Facts::default()
        }
    }

    #[test]
    fn network_errors_are_transient() {
        let e = classify_mongo_error(&Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(e.class(), ErrorClass::Transient);
        assert_eq!(e.kind(), ErrorKind::Connection);
        let e = classify_mongo_error(&Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(
            (e.class(), e.kind()),
            (ErrorClass::Transient, ErrorKind::Timeout)
        );
        for k in [
            Kind::PoolCleared,
            Kind::ServerSelection,
            Kind::Dns,
            Kind::InvalidResponse,
        ] {
            let e = classify_facts(&facts(k, "x"));
            assert_eq!(e.class(), ErrorClass::Transient, "{k:?}");
        }
    }

    #[test]
    fn failover_codes_and_cursor_not_found_are_transient() {
        for (code, name) in [
            (43, "CursorNotFound"),
            (10107, "NotWritablePrimary"),
            (11600, "InterruptedAtShutdown"),
            (91, "ShutdownInProgress"),
            (189, "PrimarySteppedDown"),
            (13436, "NotPrimaryOrSecondary"),
            (11602, "InterruptedDueToReplStateChange"),
            (50738, "Location50738"),
        ] {
            let e = classify_mongo_error(&command(code, name, "node is going away"));
            assert_eq!(e.class(), ErrorClass::Transient, "{code}");
            assert!(e.message().contains(name), "{}", e.message());
        }
    }

    #[test]
    fn the_resumable_label_makes_an_unknown_code_transient() {
        let mut f = facts(Kind::Command, "something odd");
        f.code = Some(999_999);
        assert_eq!(classify_facts(&f).class(), ErrorClass::Unknown);
        f.labels.push(RESUMABLE_CHANGE_STREAM_ERROR.to_owned());
        assert_eq!(classify_facts(&f).class(), ErrorClass::Transient);
    }

    #[test]
    fn auth_is_permanent_and_keeps_the_driver_text() {
        let e = classify_facts(&facts(Kind::Auth, "SCRAM failure: bad auth for user bob"));
        assert!(e.is_permanent());
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(e.message().contains("authentication failed"));
        let e = classify_mongo_error(&command(
            18,
            "AuthenticationFailed",
            "Authentication failed.",
        ));
        assert!(e.is_permanent());
        assert_eq!(e.kind(), ErrorKind::Auth);
        let e = classify_mongo_error(&command(
            13,
            "Unauthorized",
            "command aggregate requires authentication",
        ));
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(e.message().contains("gave no credentials"), "{e}");
        let e = classify_mongo_error(&command(13, "Unauthorized", "not authorized on db"));
        assert!(e.message().contains("check the user's roles"), "{e}");
        assert_eq!(
            (e.class(), e.kind()),
            (ErrorClass::Permanent, ErrorKind::Auth)
        );
    }

    #[test]
    fn a_standalone_server_is_permanent_and_explained() {
        let e = classify_mongo_error(&command(
            40573,
            "Location40573",
            "The $changeStream stage is only supported on replica sets",
        ));
        assert!(e.is_permanent());
        assert!(
            e.message().contains("change streams need a replica set"),
            "{e}"
        );
        assert!(e.message().contains("rs.initiate()"), "{e}");
    }

    #[test]
    fn history_lost_is_recognised_by_code_and_by_message() {
        let lost = command(
            286,
            "ChangeStreamHistoryLost",
            "Resume of change stream was not possible, as the resume point may no longer be in the oplog.",
        );
        assert!(is_history_lost(&lost));
        let e = classify_mongo_error(&lost);
        assert_eq!(
            (e.class(), e.kind()),
            (ErrorClass::Permanent, ErrorKind::PositionLost)
        );
        assert!(
            e.message()
                .contains("older than the oldest entry of the oplog"),
            "{e}"
        );
        assert!(e.message().contains("on_history_lost=restart_now"), "{e}");
        let old = command(
            280,
            "ChangeStreamFatalError",
            "cannot resume stream; the resume token was not found.",
        );
        assert!(is_history_lost(&old));
        let modified = command(
            280,
            "ChangeStreamFatalError",
            "Encountered an event whose _id field, which contains the resume token, was modified by the pipeline.",
        );
        assert!(!is_history_lost(&modified));
        let e = classify_mongo_error(&modified);
        assert_eq!(
            (e.class(), e.kind()),
            (ErrorClass::Permanent, ErrorKind::Config)
        );
        let mid_stream = command(
            136,
            "CappedPositionLost",
            "Executor error during getMore :: caused by :: CollectionScan died due to failure to restore tailable cursor position. Last seen record id: RecordId(7715232092346385402)",
        );
        assert!(is_history_lost(&mid_stream));
        assert_eq!(
            classify_mongo_error(&mid_stream).kind(),
            ErrorKind::PositionLost
        );
        assert!(!is_history_lost(&command(
            43,
            "CursorNotFound",
            "cursor id 1 not found"
        )));
    }

    #[test]
    fn bad_pipelines_and_options_are_permanent() {
        let e = classify_mongo_error(&command(
            40324,
            "Location40324",
            "Unrecognized pipeline stage name: '$bogus'",
        ));
        assert_eq!(
            (e.class(), e.kind()),
            (ErrorClass::Permanent, ErrorKind::Config)
        );
        let e = classify_facts(&facts(Kind::MissingResumeToken, ""));
        assert!(e.is_permanent());
        assert!(e.message().contains("`_id`"));
        for k in [
            Kind::InvalidArgument,
            Kind::Tls,
            Kind::Decode,
            Kind::Incompatible,
            Kind::Shutdown,
        ] {
            assert!(classify_facts(&facts(k, "x")).is_permanent(), "{k:?}");
        }
    }

    #[test]
    fn unknown_things_stay_unknown_and_backoff_hints_pass_through() {
        let e = classify_mongo_error(&command(12345, "Whatever", "hm"));
        assert_eq!(e.class(), ErrorClass::Unknown);
        let mut f = facts(Kind::Command, "overloaded");
        f.code = Some(462);
        f.labels
            .push(mongodb::error::SYSTEM_OVERLOADED_ERROR.to_owned());
        f.backoff = Some(Duration::from_millis(250));
        let e = classify_facts(&f);
        assert_eq!(e.class(), ErrorClass::Transient);
        assert_eq!(e.retry_after(), Some(Duration::from_millis(250)));
    }

    /// The words of real failures (mongodb 3.9 with rustls 0.23 against mongod 6.0),
    /// inside the server-selection timeout the driver reports.
    fn selection(io_words: &str) -> Facts {
        facts(
            Kind::ServerSelection,
            &format!(
                "Server selection timeout: No available servers. Topology: {{ Type: Single, \
                 Servers: [ {{ Address: localhost:1, Type: Unknown, Error: Kind: I/O error: \
                 {io_words}, labels: {{\"RetryableError\"}}, source: None, server response: \
                 None }} ] }}"
            ),
        )
    }

    #[test]
    fn certificates_that_do_not_verify_are_permanent_and_say_why() {
        for (words, says) in [
            ("invalid peer certificate: UnknownIssuer", "is not trusted"),
            (
                "invalid peer certificate: certificate not valid for name \"127.0.0.2\"; \
                 certificate is only valid for DnsName(\"localhost\"), IpAddress(127.0.0.1)",
                "not valid for the host name",
            ),
            (
                "invalid peer certificate: certificate expired: verification time 2 (UNIX), \
                 but certificate is not valid after 1 (1 seconds ago)",
                "has expired",
            ),
            ("invalid peer certificate: BadSignature", "does not verify"),
            (
                "received fatal alert: BadCertificate",
                "refused this client's certificate",
            ),
            ("received fatal alert: HandshakeFailure", "no TLS version"),
            (
                "received corrupt message of type InvalidContentType",
                "did not answer in TLS",
            ),
        ] {
            let e = classify_facts(&selection(words));
            assert_eq!(
                (e.class(), e.kind()),
                (ErrorClass::Permanent, ErrorKind::Tls),
                "{words}: {e}"
            );
            assert!(e.message().contains(says), "{words}: {e}");
            // The driver's words, without the topology's labels, are quoted.
            assert!(e.message().contains(&format!("({words})")), "{e}");
            // …the same words straight from an I/O error.
            let e = classify_facts(&facts(Kind::Io, words));
            assert_eq!(
                (e.class(), e.kind()),
                (ErrorClass::Permanent, ErrorKind::Tls)
            );
        }
        // An alert that says nothing about the configuration keeps its class.
        let e = classify_facts(&selection("received fatal alert: InternalError"));
        assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    }

    #[test]
    fn connections_closed_in_the_handshake_stay_transient_with_a_tls_hint() {
        for (words, hint) in [
            ("unexpected end of file", "add tls=true"),
            ("tls handshake eof", "remove tls=true"),
            (
                "peer closed connection without sending TLS close_notify: https://docs.rs/rustls",
                "give tlsCertificateKeyFile=",
            ),
        ] {
            let e = classify_facts(&selection(words));
            assert_eq!(
                (e.class(), e.kind()),
                (ErrorClass::Transient, ErrorKind::Connection),
                "{words}: {e}"
            );
            assert!(e.message().contains(hint), "{words}: {e}");
        }
        let e = classify_mongo_error(&Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(!e.message().contains("tls"), "{e}");
    }

    #[test]
    fn a_missing_file_is_permanent_not_a_network_error() {
        let e = classify_mongo_error(&Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(
            (e.class(), e.kind()),
            (ErrorClass::Permanent, ErrorKind::Tls),
            "{e}"
        );
        assert!(e.message().contains("tlsCertificateKeyFile"), "{e}");
    }
}

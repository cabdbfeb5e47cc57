//! Recognising a failed TLS handshake in an error's text, once for every backend: rustls's
//! words arrive inside the drivers' I/O, connection and server-selection errors. Each
//! backend then says which of *its* options to change (`reader_core::tls` for Redis and
//! Kafka, reader-mongo's classifier for the driver's `tls*` options).

/// What made a TLS handshake fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsProblem {
    /// The server's certificate is not signed by a trusted CA.
    Untrusted,
    /// The server's certificate does not name the host connected to.
    WrongName,
    /// The server's certificate has expired.
    Expired,
    /// The server's certificate is not valid yet.
    NotValidYet,
    /// The server's certificate is revoked.
    Revoked,
    /// The server's certificate has a signature that does not verify.
    BadSignature,
    /// The server's certificate is not for TLS servers (extended key usage).
    WrongPurpose,
    /// Another reason the server's certificate did not verify.
    CertificateOther,
    /// The server requires a client certificate and got none.
    ClientCertificateRequired,
    /// The server refused the client certificate.
    ClientCertificateRefused,
    /// The peer did not answer in TLS (a plaintext port).
    NotTls,
    /// No TLS version or cipher suite both sides accept.
    NoCommonProtocol,
    /// The handshake failed for another reason (a fatal alert, a misbehaving peer).
    Handshake,
}

/// The problem `text` (an error's message chain) reports, if it is a failed TLS handshake.
#[must_use]
pub fn tls_problem(text: &str) -> Option<TlsProblem> {
    use TlsProblem::*;
    const RULES: &[(&[&str], TlsProblem)] = &[
        (&["UnknownIssuer", "unknown issuer"], Untrusted),
        (&["NotValidForName", "not valid for name"], WrongName),
        (&["NotValidYet", "not valid yet"], NotValidYet),
        (&["Expired", "expired"], Expired),
        (&["Revoked"], Revoked),
        (
            &[
                "BadSignature",
                "InvalidSignatureForPublicKey",
                "UnsupportedSignature",
            ],
            BadSignature,
        ),
        (&["InvalidPurpose", "extended key usage"], WrongPurpose),
        (
            &["CertificateRequired", "NoCertificatesPresented"],
            ClientCertificateRequired,
        ),
        (
            &[
                "UnknownCA",
                "BadCertificate",
                "UnsupportedCertificate",
                "CertificateUnknown",
                "AccessDenied",
            ],
            ClientCertificateRefused,
        ),
        (
            &[
                "InvalidContentType",
                "CorruptMessage",
                "InvalidMessage",
                "received corrupt message",
            ],
            NotTls,
        ),
        (
            &[
                "HandshakeFailure",
                "PeerIncompatible",
                "peer is incompatible",
                "ProtocolVersion",
                "InsufficientSecurity",
            ],
            NoCommonProtocol,
        ),
        (
            &["InvalidCertificate", "invalid peer certificate"],
            CertificateOther,
        ),
        (
            &["PeerMisbehaved", "AlertReceived", "received fatal alert"],
            Handshake,
        ),
    ];
    RULES
        .iter()
        .find(|(needles, _)| needles.iter().any(|n| text.contains(n)))
        .map(|(_, p)| *p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_words_are_recognised() {
        for (text, want) in [
            ("invalid peer certificate: UnknownIssuer", TlsProblem::Untrusted),
            (
                "invalid peer certificate: certificate not valid for name \"x\"; certificate is only valid for …",
                TlsProblem::WrongName,
            ),
            ("invalid peer certificate: certificate expired: verification time 2", TlsProblem::Expired),
            ("received fatal alert: CertificateRequired", TlsProblem::ClientCertificateRequired),
            ("received fatal alert: UnknownCA", TlsProblem::ClientCertificateRefused),
            ("received corrupt message of type InvalidContentType", TlsProblem::NotTls),
            ("received fatal alert: DecodeError", TlsProblem::Handshake),
        ] {
            assert_eq!(tls_problem(text), Some(want), "{text}");
        }
        assert_eq!(tls_problem("connection refused"), None);
    }
}

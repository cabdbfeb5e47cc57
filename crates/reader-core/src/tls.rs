//! TLS client settings shared by every backend that builds its own rustls configuration
//! (Redis, Kafka): one URL grammar, one loader with errors naming the option and file, one
//! server-name override, and one explanation of certificate failures.
//!
//! URL options (the same names on every backend):
//!
//! ```text
//! tls_ca=PATH            trust only the CA certificates of this PEM file (default: the system's roots)
//! tls_cert=PATH          present this client certificate chain (PEM) — mutual TLS; needs tls_key
//! tls_key=PATH           the client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1)
//! tls_server_name=NAME   verify the server's certificate for NAME instead of the host connected to
//! ```
//!
//! ```
//! use reader_core::tls::TlsOptions;
//! let mut o = TlsOptions::default();
//! assert!(o.set_url_option("tls_server_name", "broker.internal").unwrap());
//! assert!(!o.set_url_option("group", "g").unwrap()); // not a TLS option
//! // A certificate without its key is refused, naming both options:
//! o.set_url_option("tls_cert", "/etc/certs/client.crt").unwrap();
//! let err = o.validate("kafka").unwrap_err();
//! assert!(err.to_string().contains("`tls_key`"));
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::{ErrorKind, ReadError};

pub use rustls;

/// The URL option names [`TlsOptions::set_url_option`] understands.
pub const URL_OPTIONS: &[&str] = &["tls_ca", "tls_cert", "tls_key", "tls_server_name"];

/// How a TLS client verifies the server and identifies itself. Paths, never key material:
/// `Debug` shows nothing secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// A PEM file of CA certificates to trust instead of the system's roots (`tls_ca`).
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate chain, for mutual TLS (`tls_cert`; needs `key_file`).
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key, PEM (`tls_key`).
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must be valid for, instead of the host connected
    /// to (`tls_server_name`): for servers reached through an address their certificate
    /// does not name (an IP, a tunnel, a proxy).
    pub server_name: Option<String>,
}

impl TlsOptions {
    /// Whether any option is set.
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.server_name.is_some()
    }

    /// Apply one URL option. `Ok(false)`: `key` is not a TLS option (the caller goes on
    /// with its own); `Ok(true)`: applied.
    ///
    /// # Errors
    /// An empty value, naming the option.
    pub fn set_url_option(&mut self, key: &str, value: &str) -> Result<bool, ReadError> {
        if !URL_OPTIONS.contains(&key) {
            return Ok(false);
        }
        if value.is_empty() {
            return Err(ReadError::config(format!("option `{key}` is empty")));
        }
        match key {
            "tls_ca" => self.ca_file = Some(value.into()),
            "tls_cert" => self.cert_file = Some(value.into()),
            "tls_key" => self.key_file = Some(value.into()),
            _ => self.server_name = Some(value.to_owned()),
        }
        Ok(true)
    }

    /// Check the options fit together (no files are read).
    ///
    /// # Errors
    /// A configuration error naming `backend` and the options.
    pub fn validate(&self, backend: &str) -> Result<(), ReadError> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => {
                return Err(ReadError::config(format!(
                    "{backend}: option `tls_cert` needs `tls_key` (the certificate's private key)"
                )))
            }
            (None, Some(_)) => {
                return Err(ReadError::config(format!(
                    "{backend}: option `tls_key` needs `tls_cert` (the client certificate)"
                )))
            }
            _ => {}
        }
        if let Some(n) = &self.server_name {
            ServerName::try_from(n.as_str()).map_err(|_| {
                ReadError::config(format!(
                    "{backend}: option `tls_server_name`: {n:?} is not a DNS name or IP address"
                ))
            })?;
        }
        Ok(())
    }

    /// Build the rustls client configuration: roots (the `tls_ca` file or the system's),
    /// the client certificate if any, the server-name override if any. Reads the files.
    ///
    /// # Errors
    /// Permanent configuration errors naming `backend`, the option and the file (never the
    /// key's content).
    pub fn client_config(&self, backend: &str) -> Result<Arc<rustls::ClientConfig>, ReadError> {
        self.validate(backend)?;
        let roots = match &self.ca_file {
            Some(path) => roots_from_file(backend, path)?,
            None => system_roots(backend)?,
        };
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ReadError::config(format!("{backend}: TLS set-up: {e}")))?;
        let builder = match &self.server_name {
            None => builder.with_root_certificates(roots),
            Some(name) => {
                let name = ServerName::try_from(name.clone()).map_err(|_| {
                    ReadError::config(format!(
                        "{backend}: option `tls_server_name`: {name:?} is not a DNS name or IP address"
                    ))
                })?;
                let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| ReadError::config(format!("{backend}: TLS set-up: {e}")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NameOverride { inner, name }))
            }
        };
        let config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = certs_from_file(backend, "tls_cert", cert)?;
                let key = key_from_file(backend, key)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    ReadError::config(format!(
                        "{backend}: options `tls_cert`/`tls_key`: the key of {} does not fit the certificate of {}: {e}",
                        show(key_path(self)),
                        cert.display()
                    ))
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

fn key_path(o: &TlsOptions) -> &Path {
    o.key_file.as_deref().unwrap_or(Path::new(""))
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

fn certs_from_file(
    backend: &str,
    option: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ReadError> {
    let shown = path.display();
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| {
        ReadError::config(format!(
            "{backend}: option `{option}`: cannot read {shown}: {e}"
        ))
    })?;
    let mut out = Vec::new();
    for c in iter {
        out.push(c.map_err(|e| {
            ReadError::config(format!(
                "{backend}: option `{option}`: {shown} is not valid PEM: {e}"
            ))
        })?);
    }
    if out.is_empty() {
        return Err(ReadError::config(format!(
            "{backend}: option `{option}`: {shown} holds no certificate"
        )));
    }
    Ok(out)
}

fn roots_from_file(backend: &str, path: &Path) -> Result<rustls::RootCertStore, ReadError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_from_file(backend, "tls_ca", path)? {
        roots.add(c).map_err(|e| {
            ReadError::config(format!(
                "{backend}: option `tls_ca`: a certificate of {} was refused: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

fn system_roots(backend: &str) -> Result<rustls::RootCertStore, ReadError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(ReadError::config(format!(
            "{backend}: TLS: no system root certificates found{why}; give the CA with option `tls_ca`"
        )));
    }
    Ok(roots)
}

fn key_from_file(backend: &str, path: &Path) -> Result<PrivateKeyDer<'static>, ReadError> {
    // The error texts of rustls-pki-types never include the file's content.
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        ReadError::config(format!(
            "{backend}: option `tls_key`: no usable private key in {}: {e}",
            path.display()
        ))
    })
}

/// Verifies the server's certificate for a fixed name (`tls_server_name`) instead of the
/// one connected to; everything else (chain, expiry, signatures) as webpki does.
#[derive(Debug)]
struct NameOverride {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NameOverride {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// If `text` (an error's message chain) reports a failed TLS handshake, what failed, in
/// words that point at the option to change (recognised by [`crate::tls_problem`]).
/// `None`: not a TLS failure.
#[must_use]
pub fn explain_failure(text: &str) -> Option<&'static str> {
    use crate::TlsProblem::*;
    crate::tls_problem(text).map(|p| match p {
        Untrusted => "the server's certificate is not signed by a CA this reader trusts (give its CA with `tls_ca`)",
        WrongName => "the server's certificate is not valid for the name connected to (connect by a name it names, or set `tls_server_name`)",
        Expired => "the server's certificate has expired",
        NotValidYet => "the server's certificate is not valid yet",
        Revoked => "the server's certificate is revoked",
        BadSignature => "the server's certificate has a bad signature",
        WrongPurpose => "the server's certificate is not for TLS servers (its extended key usage)",
        CertificateOther => "the server's certificate did not verify",
        ClientCertificateRequired => "the server requires a client certificate (set `tls_cert` and `tls_key`)",
        ClientCertificateRefused => "the server refused the client certificate",
        NotTls => "the server did not answer in TLS (is this a plaintext port?)",
        NoCommonProtocol => "the TLS handshake failed: no protocol version or cipher suite both sides accept",
        Handshake => "the TLS handshake failed",
    })
}

/// A Permanent [`ErrorKind::Tls`] error for `context` when `text` reports a TLS failure
/// (see [`explain_failure`]); the driver's own text is kept after the explanation.
#[must_use]
pub fn failure(context: &str, text: &str) -> Option<ReadError> {
    explain_failure(text)
        .map(|why| ReadError::permanent(ErrorKind::Tls, format!("{context}: TLS: {why} ({text})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_validate() {
        let mut o = TlsOptions::default();
        assert!(!o.is_set());
        for (k, v) in [
            ("tls_ca", "/ca.pem"),
            ("tls_cert", "/c.pem"),
            ("tls_key", "/k.pem"),
            ("tls_server_name", "10.0.0.1"),
        ] {
            assert!(o.set_url_option(k, v).unwrap());
        }
        assert!(o.is_set());
        o.validate("x").unwrap();
        assert!(o
            .set_url_option("tls_ca", "")
            .unwrap_err()
            .to_string()
            .contains("`tls_ca` is empty"));
        o.server_name = Some("not a name!".into());
        let e = o.validate("redis").unwrap_err().to_string();
        assert!(e.contains("redis") && e.contains("tls_server_name"), "{e}");
        let o = TlsOptions {
            key_file: Some("/k".into()),
            ..TlsOptions::default()
        };
        assert!(o
            .validate("x")
            .unwrap_err()
            .to_string()
            .contains("needs `tls_cert`"));
    }

    #[test]
    fn missing_and_bad_files_name_the_option_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let o = TlsOptions {
            ca_file: Some(dir.path().join("nope.pem")),
            ..TlsOptions::default()
        };
        let e = o.client_config("kafka").unwrap_err();
        assert!(e.is_permanent());
        let s = e.to_string();
        assert!(s.contains("`tls_ca`") && s.contains("nope.pem"), "{s}");

        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem at all").unwrap();
        let o = TlsOptions {
            ca_file: Some(junk.clone()),
            ..TlsOptions::default()
        };
        assert!(o
            .client_config("kafka")
            .unwrap_err()
            .to_string()
            .contains("holds no certificate"));

        let secret =
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n";
        let key = dir.path().join("key.pem");
        std::fs::write(&key, secret).unwrap();
        let o = TlsOptions {
            ca_file: Some(junk),
            cert_file: Some(key.clone()),
            key_file: Some(key),
            ..TlsOptions::default()
        };
        let s = format!("{:?}", o.client_config("kafka").unwrap_err());
        assert!(!s.contains("c2VjcmV0"), "key material leaked: {s}");
    }

    #[test]
    fn failures_are_explained() {
        let e = failure(
            "connecting to b:9093",
            "invalid peer certificate: UnknownIssuer",
        )
        .unwrap();
        assert!(e.is_permanent());
        assert_eq!(e.kind(), ErrorKind::Tls);
        assert!(e.to_string().contains("not signed by a CA"), "{e}");
        assert!(explain_failure("received fatal alert: CertificateRequired")
            .unwrap()
            .contains("client certificate"));
        assert!(explain_failure("connection refused").is_none());
    }
}

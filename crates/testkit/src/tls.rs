//! Throwaway TLS material made at test time (never committed): a CA, a server certificate
//! for `localhost`/`127.0.0.1`, a client certificate for mutual TLS, and a second CA that
//! signed nothing (for "untrusted" tests). Plus [`TlsTerminator`], a TLS server in front of
//! a plaintext one, for brokers that cannot serve TLS themselves.
//!
//! ```no_run
//! # fn demo() -> std::io::Result<()> {
//! let pki = testkit::TestPki::generate()?;
//! // redis-server --tls-cert-file pki.server_cert --tls-key-file pki.server_key
//! //              --tls-ca-cert-file pki.ca …
//! // reader: rediss://localhost:PORT/?…&tls_ca=<pki.ca>&tls_cert=<pki.client_cert>&tls_key=<pki.client_key>
//! # Ok(()) }
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// PEM files in a fresh directory; see the module docs. Dropping it removes the directory
/// (unless `UNIREADER_KEEP_TEST_DATA` is set): keep it alive as long as a server uses it.
#[derive(Debug)]
pub struct TestPki {
    /// The directory holding every file.
    pub dir: PathBuf,
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// The server certificate (valid for `localhost`, `127.0.0.1` and `unireader.test`).
    pub server_cert: PathBuf,
    /// Its private key (PKCS#8).
    pub server_key: PathBuf,
    /// Certificate then key in one file (what mongod's `--tlsCertificateKeyFile` takes).
    pub server_pem: PathBuf,
    /// A client certificate (CN `unireader-client`), for mutual TLS.
    pub client_cert: PathBuf,
    /// Its private key.
    pub client_key: PathBuf,
    /// Client certificate then key in one file (MongoDB's `tlsCertificateKeyFile`).
    pub client_pem: PathBuf,
    /// A CA that signed nothing here: trusting only it must fail verification.
    pub other_ca: PathBuf,
}

/// The names the server certificate is valid for.
pub const SERVER_NAMES: &[&str] = &["localhost", "127.0.0.1", "unireader.test"];

fn ca(name: &str) -> io::Result<(String, Issuer<'static, KeyPair>)> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(other)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().map_err(other)?;
    let cert = params.self_signed(&key).map_err(other)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    cn: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> io::Result<(String, String)> {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(names).map_err(other)?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().map_err(other)?;
    let cert = params.signed_by(&key, issuer).map_err(other)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl TestPki {
    /// Make a fresh CA, server and client certificates in a new temporary directory.
    pub fn generate() -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "unireader-pki-{}-{}",
            std::process::id(),
            fastrand_suffix()
        ));
        Self::generate_in(&dir)
    }

    /// As [`generate`](Self::generate), in `dir` (created).
    pub fn generate_in(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (ca_pem, issuer) = ca("unireader test CA")?;
        let (other_pem, _) = ca("unireader unrelated CA")?;
        let (srv_cert, srv_key) = leaf(
            &issuer,
            "localhost",
            SERVER_NAMES,
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (cli_cert, cli_key) = leaf(
            &issuer,
            "unireader-client",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let write = |name: &str, text: &str| -> io::Result<PathBuf> {
            let p = dir.join(name);
            std::fs::write(&p, text)?;
            Ok(p)
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            ca: write("ca.pem", &ca_pem)?,
            server_cert: write("server.crt", &srv_cert)?,
            server_key: write("server.key", &srv_key)?,
            server_pem: write("server.pem", &format!("{srv_cert}{srv_key}"))?,
            client_cert: write("client.crt", &cli_cert)?,
            client_key: write("client.key", &cli_key)?,
            client_pem: write("client.pem", &format!("{cli_cert}{cli_key}"))?,
            other_ca: write("other-ca.pem", &other_pem)?,
        })
    }

    /// A rustls server configuration presenting the server certificate; with
    /// `require_client_cert`, clients must present a certificate signed by the CA.
    pub fn server_config(
        &self,
        require_client_cert: bool,
    ) -> io::Result<Arc<rustls::ServerConfig>> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(&self.server_cert)
            .map_err(other)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(other)?;
        let key = PrivateKeyDer::from_pem_file(&self.server_key).map_err(other)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(other)?;
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(&self.ca).map_err(other)? {
                roots.add(c.map_err(other)?).map_err(other)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(other)?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        Ok(Arc::new(
            builder.with_single_cert(certs, key).map_err(other)?,
        ))
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        if std::env::var_os("UNIREADER_KEEP_TEST_DATA").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn fastrand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) << 48)
}

/// A TLS server that forwards each connection's plaintext to `upstream`: TLS in front of a
/// server that cannot serve it (tansu 0.6.0 takes `--cert/--key` but never wraps its
/// connections). Counts completed and failed handshakes. Dropping it stops it.
pub struct TlsTerminator {
    addr: String,
    stop: CancellationToken,
    handshakes: Arc<std::sync::atomic::AtomicUsize>,
    failed: Arc<std::sync::atomic::AtomicUsize>,
}

impl TlsTerminator {
    /// Listen on `listen` (e.g. `127.0.0.1:0`), terminate TLS with `config`, forward to
    /// `upstream` (`host:port`).
    pub async fn start(
        listen: &str,
        upstream: impl Into<String>,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?.to_string();
        let upstream = upstream.into();
        let stop = CancellationToken::new();
        let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (s, h, f) = (stop.clone(), handshakes.clone(), failed.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = s.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((sock, _)) = accepted else { continue };
                let (acceptor, upstream, s) = (acceptor.clone(), upstream.clone(), s.clone());
                let (h, f) = (h.clone(), f.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(sock).await else {
                        f.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        return;
                    };
                    h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Ok(mut up) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = up.set_nodelay(true);
                    tokio::select! {
                        () = s.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut tls, &mut up) => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            stop,
            handshakes,
            failed,
        })
    }

    /// `127.0.0.1:PORT`.
    #[must_use]
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// TLS handshakes completed so far.
    #[must_use]
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// TLS handshakes that failed so far (e.g. a client that did not trust us).
    #[must_use]
    pub fn failed_handshakes(&self) -> usize {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

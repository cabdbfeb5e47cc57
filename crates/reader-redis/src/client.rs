//! Opening fred clients the way the Reconnector needs them: no reconnect policy (fred never
//! reconnects by itself), one attempt per command, every wait bounded.

use std::time::Duration;

use fred::prelude::*;
use fred::types::config::{TlsConfig, TlsConnector, TlsHostMapping};
use fred::types::ConnectHandle;
use reader_core::{ErrorKind, ReadError};

use crate::classify::classify_fred_error;
use crate::config::RedisConfig;

/// A fred builder for `cfg`: no `ReconnectPolicy`, timeouts everywhere.
pub(crate) fn builder(cfg: &RedisConfig) -> Result<Builder, ReadError> {
    let mut c = Config {
        server: ServerConfig::new_centralized(cfg.host.clone(), cfg.port),
        username: cfg.username.clone(),
        password: cfg.password.as_ref().map(|p| p.expose().to_owned()),
        database: cfg.db,
        fail_fast: true,
        ..Config::default()
    };
    if cfg.tls {
        let connector = match &cfg.tls_ca {
            Some(path) => custom_ca(path)?,
            None => TlsConnector::default_rustls()
                .map_err(|e| classify_fred_error(&e, "loading the system's root certificates"))?,
        };
        c.tls = Some(TlsConfig {
            connector,
            hostnames: TlsHostMapping::DefaultHost,
        });
    }
    let mut b = Builder::from_config(c);
    // No set_policy(): without a ReconnectPolicy fred never reconnects by itself; the
    // core's Reconnector owns reconnection.
    b.with_connection_config(|cc| {
        cc.connection_timeout = cfg.connect_timeout;
        cc.internal_command_timeout = cfg.connect_timeout;
        cc.max_command_attempts = 1;
        cc.tcp.nodelay = Some(true);
    });
    b.with_performance_config(|p| {
        p.default_command_timeout = cfg.command_timeout;
        // Pub/Sub messages wait here between fetches; a lagging receiver is reported as a gap.
        p.broadcast_channel_capacity = 8192;
    });
    Ok(b)
}

/// A rustls connector trusting only the CA certificates of the PEM file at `path`.
fn custom_ca(path: &std::path::Path) -> Result<TlsConnector, ReadError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let shown = path.display();
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
        ReadError::config(format!("redis: option `tls_ca`: cannot read {shown}: {e}"))
    })?;
    for cert in certs {
        let cert = cert.map_err(|e| {
            ReadError::config(format!(
                "redis: option `tls_ca`: {shown} is not valid PEM: {e}"
            ))
        })?;
        roots.add(cert).map_err(|e| {
            ReadError::config(format!(
                "redis: option `tls_ca`: a certificate of {shown} was refused: {e}"
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(ReadError::config(format!(
            "redis: option `tls_ca`: {shown} holds no certificate"
        )));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ReadError::config(format!("redis: TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(config))
}

/// Connect `client`, bounded; the handle ends when the connection does.
pub(crate) async fn connect<C: ClientLike>(
    client: &C,
    cfg: &RedisConfig,
    what: &str,
) -> Result<ConnectHandle, ReadError> {
    let bound = cfg.connect_timeout * 2 + Duration::from_secs(1);
    match tokio::time::timeout(bound, client.init()).await {
        Ok(Ok(handle)) => Ok(handle),
        Ok(Err(e)) => Err(classify_fred_error(
            &e,
            &format!("connecting {what} to {}:{}", cfg.host, cfg.port),
        )),
        Err(_) => Err(ReadError::transient(
            ErrorKind::Timeout,
            format!(
                "connecting {what} to {}:{} took longer than {bound:?}",
                cfg.host, cfg.port
            ),
        )),
    }
}

/// Quit within a second, then make sure the connection task is gone.
pub(crate) async fn shutdown<C: ClientLike>(client: &C, handle: &ConnectHandle) {
    if !handle.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(1), client.quit()).await;
    }
    handle.abort();
}

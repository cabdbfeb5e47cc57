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
        let config = cfg.tls_options.client_config("redis")?;
        c.tls = Some(TlsConfig {
            connector: TlsConnector::from((*config).clone()),
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

/// Connect `client`, bounded; the handle ends when the connection does.
pub(crate) async fn connect<C: ClientLike>(
    client: &C,
    cfg: &RedisConfig,
    what: &str,
) -> Result<ConnectHandle, ReadError> {
    let bound = cfg.connect_timeout * 2 + Duration::from_secs(1);
    let e = match tokio::time::timeout(bound, client.init()).await {
        Ok(Ok(handle)) => return Ok(handle),
        Ok(Err(e)) => classify_fred_error(
            &e,
            &format!("connecting {what} to {}:{}", cfg.host, cfg.port),
        ),
        Err(_) => ReadError::transient(
            ErrorKind::Timeout,
            format!(
                "connecting {what} to {}:{} took longer than {bound:?}",
                cfg.host, cfg.port
            ),
        ),
    };
    // A plaintext port reads the TLS ClientHello as an unfinished inline command and
    // never answers: the likely cause of a TLS connect timeout, worth saying.
    if cfg.tls && e.kind() == ErrorKind::Timeout {
        return Err(ReadError::new(
            e.class(),
            e.kind(),
            format!(
                "{} (a plaintext port never answers a TLS handshake: check the port and rediss://)",
                e.message()
            ),
        ));
    }
    Err(e)
}

/// Quit within a second, then make sure the connection task is gone.
pub(crate) async fn shutdown<C: ClientLike>(client: &C, handle: &ConnectHandle) {
    if !handle.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(1), client.quit()).await;
    }
    handle.abort();
}

//! One small HTTP/1.1 server for `/metrics` and `/health/*`. GET only, one request per
//! connection, bounded request size and time: it serves scrapers and probes, nothing else.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::health::{health_json, HealthRegistry};

const MAX_REQUEST: usize = 8 * 1024;

/// A running endpoint; ends when its token is cancelled (or it is dropped).
#[derive(Debug)]
pub struct ObsServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl ObsServer {
    /// Where it listens (useful with port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving and wait for the accept loop to end.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for ObsServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serve `/metrics` (when `metrics` is given), `/health`, `/health/live`, `/health/ready`
/// on `addr` until `token` is cancelled.
///
/// # Errors
/// When `addr` cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    metrics: Option<PrometheusHandle>,
    health: HealthRegistry,
    token: CancellationToken,
) -> io::Result<ObsServer> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let addr = listener.local_addr()?;
    let stop = token;
    let task = tokio::spawn(accept_loop(listener, metrics, health, stop.clone()));
    Ok(ObsServer {
        addr,
        stop,
        task: Some(task),
    })
}

async fn accept_loop(
    listener: TcpListener,
    metrics: Option<PrometheusHandle>,
    health: HealthRegistry,
    stop: CancellationToken,
) {
    loop {
        let conn = tokio::select! {
            () = stop.cancelled() => return,
            c = listener.accept() => c,
        };
        let Ok((stream, _)) = conn else { continue };
        let (metrics, health, stop) = (metrics.clone(), health.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                _ = tokio::time::timeout(Duration::from_secs(10), handle(stream, metrics.as_ref(), &health)) => {}
            }
        });
    }
}

async fn read_request_line(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if buf.len() > MAX_REQUEST {
            return None;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.lines().next().map(str::to_owned)
}

/// Route one request: `(status, content type, body)`.
fn route(
    method: &str,
    path: &str,
    metrics: Option<&PrometheusHandle>,
    health: &HealthRegistry,
) -> (u16, &'static str, String) {
    if method != "GET" && method != "HEAD" {
        return (405, "text/plain", "only GET\n".into());
    }
    let path = path.split('?').next().unwrap_or(path);
    match path {
        "/metrics" => match metrics {
            Some(h) => (200, "text/plain; version=0.0.4", h.render()),
            None => (404, "text/plain", "metrics are not enabled\n".into()),
        },
        "/health/live" => (200, "application/json", "{\"live\":true}\n".into()),
        "/health" | "/health/ready" => {
            let all = health.snapshot();
            let body = health_json(&all);
            let ready = body
                .get("ready")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            let status = if path == "/health" || ready { 200 } else { 503 };
            (status, "application/json", format!("{body}\n"))
        }
        _ => (
            404,
            "text/plain",
            "not found: try /metrics, /health, /health/live, /health/ready\n".into(),
        ),
    }
}

async fn handle(
    mut stream: TcpStream,
    metrics: Option<&PrometheusHandle>,
    health: &HealthRegistry,
) {
    let Some(line) = read_request_line(&mut stream).await else {
        return;
    };
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = route(method, path, metrics, health);
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    if method != "HEAD" {
        let _ = stream.write_all(body.as_bytes()).await;
    }
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_answer_as_documented() {
        let reg = HealthRegistry::new();
        assert_eq!(route("GET", "/health/live", None, &reg).0, 200);
        assert_eq!(
            route("GET", "/health/ready", None, &reg).0,
            503,
            "no reader is not ready"
        );
        assert_eq!(route("GET", "/health", None, &reg).0, 200);
        assert_eq!(route("GET", "/metrics", None, &reg).0, 404);
        assert_eq!(route("POST", "/metrics", None, &reg).0, 405);
        assert_eq!(route("GET", "/nope", None, &reg).0, 404);
    }
}

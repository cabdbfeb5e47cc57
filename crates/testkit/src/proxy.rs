//! A TCP fault proxy: sits between a reader and a server and can cut every connection,
//! refuse new ones, add latency, or black-hole (accept and never answer — the half-open
//! peer a heartbeat must detect).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

struct State {
    upstream: Mutex<String>,
    refuse: AtomicBool,
    blackhole: AtomicBool,
    latency_ms: AtomicU64,
    generation: Mutex<CancellationToken>,
    accepted: AtomicUsize,
    cuts: AtomicUsize,
}

/// See the module docs. Dropping it stops the proxy and closes every connection.
pub struct FaultProxy {
    addr: String,
    state: Arc<State>,
    stop: CancellationToken,
}

impl FaultProxy {
    /// Listen on a free loopback port, forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: impl Into<String>) -> io::Result<Self> {
        Self::start_on("127.0.0.1:0", upstream).await
    }

    /// Listen on `listen` (e.g. a fixed port a broker advertises), forwarding to `upstream`.
    pub async fn start_on(listen: &str, upstream: impl Into<String>) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?.to_string();
        let state = Arc::new(State {
            upstream: Mutex::new(upstream.into()),
            refuse: AtomicBool::new(false),
            blackhole: AtomicBool::new(false),
            latency_ms: AtomicU64::new(0),
            generation: Mutex::new(CancellationToken::new()),
            accepted: AtomicUsize::new(0),
            cuts: AtomicUsize::new(0),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, state.clone(), stop.clone()));
        Ok(Self { addr, state, stop })
    }

    /// `127.0.0.1:PORT` to point clients at.
    #[must_use]
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// Forward new connections somewhere else.
    pub fn set_upstream(&self, upstream: impl Into<String>) {
        *lock(&self.state.upstream) = upstream.into();
    }

    /// Close every open connection now (new ones are accepted as usual).
    pub fn cut_all(&self) {
        let old = std::mem::replace(&mut *lock(&self.state.generation), CancellationToken::new());
        old.cancel();
        self.state.cuts.fetch_add(1, Ordering::SeqCst);
    }

    /// Refuse (accept and close at once) new connections while `true`.
    pub fn set_refuse(&self, refuse: bool) {
        self.state.refuse.store(refuse, Ordering::SeqCst);
    }

    /// Delay every chunk forwarded, both ways.
    pub fn set_latency(&self, latency: Duration) {
        self.state.latency_ms.store(
            u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    /// While `true`, new connections are accepted and never answered, and open ones stop
    /// forwarding (both ways) — a half-open peer.
    pub fn set_blackhole(&self, on: bool) {
        self.state.blackhole.store(on, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    #[must_use]
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        lock(&self.state.generation).cancel();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((client, _)) = accepted else {
            continue;
        };
        state.accepted.fetch_add(1, Ordering::SeqCst);
        if state.refuse.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let token = lock(&state.generation).clone();
        let state = state.clone();
        tokio::spawn(async move {
            if state.blackhole.load(Ordering::SeqCst) {
                // Hold the socket open, answer nothing, until cut.
                token.cancelled().await;
                return;
            }
            let upstream = lock(&state.upstream).clone();
            let server = tokio::select! {
                () = token.cancelled() => return,
                s = TcpStream::connect(&upstream) => s,
            };
            let Ok(server) = server else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::select! {
                () = token.cancelled() => {}
                () = pipe(cr, sw, state.clone()) => {}
                () = pipe(sr, cw, state.clone()) => {}
            }
        });
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<State>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while state.blackhole.load(Ordering::SeqCst) {
            // Swallow: a peer that stopped answering. Re-check periodically.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ms = state.latency_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

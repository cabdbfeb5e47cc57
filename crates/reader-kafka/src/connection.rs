//! A framed Kafka request/response client over one tokio `TcpStream`: size-prefixed frames,
//! correlation ids, a client id, and ApiVersions negotiation. Used for the group-coordinator
//! APIs that rskafka does not have.
//!
//! One request at a time (a mutex serialises them; Kafka answers in order anyway). Every
//! round trip is bounded by a timeout. A timeout, an I/O error or a frame that breaks the
//! framing marks the connection broken: every later request fails at once, and the session
//! that owns it is replaced by the core's Reconnector.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use reader_core::{ErrorKind, ReadError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::apis::Call;
use crate::config::SaslSettings;
use crate::shape;

/// A byte stream to a broker: TCP, or TLS over TCP.
trait Wire: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Wire for T {}

/// How connections to the brokers are secured: TLS (a rustls configuration built once per
/// connector) and SASL credentials. Shared by our own connections and rskafka's.
#[derive(Clone, Default)]
pub(crate) struct Security {
    pub(crate) tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    pub(crate) sasl: Option<SaslSettings>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|s| s.mechanism))
            .finish()
    }
}

/// The text of an error and its sources, for recognising TLS failures inside I/O errors.
pub(crate) fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The largest response frame accepted (group responses are small; this bounds memory).
const MAX_FRAME: usize = 64 << 20;

struct Io {
    stream: Option<Box<dyn Wire>>,
    next_id: i32,
}

/// One connection to one broker.
pub(crate) struct Connection {
    addr: String,
    client_id: StrBytes,
    timeout: Duration,
    /// Broker version ranges per API key.
    versions: HashMap<i16, (i16, i16)>,
    io: tokio::sync::Mutex<Io>,
    broken: AtomicBool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("broken", &self.is_broken())
            .finish_non_exhaustive()
    }
}

fn transient(kind: ErrorKind, msg: String) -> ReadError {
    ReadError::transient(kind, msg)
}

impl Connection {
    /// Connect to `addr` (TLS and SASL as `security` says) and learn the broker's API
    /// versions, each step within `timeout`.
    pub(crate) async fn connect(
        addr: &str,
        security: &Security,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Self, ReadError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(transient(
                    ErrorKind::Connection,
                    format!("cannot connect to Kafka broker {addr}"),
                )
                .with_cause(e))
            }
            Err(_) => {
                return Err(transient(
                    ErrorKind::Timeout,
                    format!("connecting to Kafka broker {addr} took longer than {timeout:?}"),
                ))
            }
        };
        let _ = stream.set_nodelay(true);
        let stream: Box<dyn Wire> = match &security.tls {
            None => Box::new(stream),
            Some(config) => Box::new(tls_handshake(addr, stream, config, timeout).await?),
        };
        let mut conn = Self {
            addr: addr.to_owned(),
            client_id: StrBytes::from_string(client_id.to_owned()),
            timeout,
            versions: HashMap::new(),
            io: tokio::sync::Mutex::new(Io {
                stream: Some(stream),
                next_id: 1,
            }),
            broken: AtomicBool::new(false),
        };
        // ApiVersions v0 is understood by every broker (and needs no negotiation).
        let resp = conn
            .send_at::<ApiVersionsRequest>(&ApiVersionsRequest::default(), 0, timeout)
            .await?;
        if resp.error_code != 0 {
            return Err(crate::classify::classify_code(
                resp.error_code,
                &format!("ApiVersions on broker {addr}"),
            ));
        }
        for k in resp.api_keys {
            conn.versions
                .insert(k.api_key, (k.min_version, k.max_version));
        }
        if let Some(sasl) = &security.sasl {
            conn.authenticate(sasl).await?;
        }
        Ok(conn)
    }

    /// SASL: SaslHandshake v1 naming the mechanism, then SaslAuthenticate round trips until
    /// the mechanism (rsasl's client) is done. A refusal is Permanent `Auth` at once, naming
    /// the user and broker, never the password.
    async fn authenticate(&self, sasl: &SaslSettings) -> Result<(), ReadError> {
        use rsasl::prelude::{Mechname, SASLClient, SASLConfig};
        let mech = sasl.mechanism.name();
        let who = format!(
            "SASL {mech} login of user {:?} to Kafka broker {}",
            sasl.username, self.addr
        );
        let (hs, _) = self
            .send(&SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mech)))
            .await?;
        if hs.error_code != 0 {
            let offered: Vec<&str> = hs.mechanisms.iter().map(|m| m.as_str()).collect();
            if hs.error_code == 33 {
                return Err(ReadError::permanent(
                    ErrorKind::Config,
                    format!(
                        "{who}: the broker does not offer {mech} (it offers: {}); change option `sasl`",
                        offered.join(", ")
                    ),
                ));
            }
            return Err(crate::classify::classify_code(hs.error_code, &who));
        }
        let auth_err = |why: String| ReadError::permanent(ErrorKind::Auth, format!("{who}: {why}"));
        let config = SASLConfig::with_credentials(
            None,
            sasl.username.clone(),
            sasl.password.expose().to_owned(),
        )
        .map_err(|e| auth_err(format!("cannot set up the mechanism: {e}")))?;
        let name = Mechname::parse(mech.as_bytes())
            .map_err(|e| auth_err(format!("bad mechanism name: {e}")))?;
        let mut session = SASLClient::new(config)
            .start_suggested(&[name])
            .map_err(|e| auth_err(format!("cannot start the mechanism: {e}")))?;
        let mut received: Option<Vec<u8>> = None;
        // SCRAM takes two round trips, PLAIN one; a server that never finishes is refused.
        for _ in 0..8 {
            let mut out = Vec::new();
            let state = session
                .step(received.as_deref(), &mut out)
                .map_err(|e| auth_err(format!("the broker's answer did not verify: {e}")))?;
            if state.has_sent_message() {
                let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(out));
                let (r, _) = self.send(&req).await?;
                if r.error_code != 0 {
                    let msg = r.error_message.as_ref().map_or("", |m| m.as_str());
                    return Err(auth_err(format!(
                        "refused ({} {msg}); check the user, password and mechanism",
                        crate::classify::error_name(r.error_code)
                    )));
                }
                received = Some(r.auth_bytes.to_vec());
            }
            if state.is_finished() {
                return Ok(());
            }
        }
        Err(auth_err("the exchange did not finish".to_owned()))
    }

    /// The broker address.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether an earlier failure broke the connection.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// The version of `R` both sides speak (the highest).
    pub(crate) fn version<R: Call>(&self) -> Result<i16, ReadError> {
        let Some(&(bmin, bmax)) = self.versions.get(&R::KEY) else {
            return Err(ReadError::permanent(
                ErrorKind::Protocol,
                format!(
                    "Kafka broker {} does not support the {} API",
                    self.addr,
                    R::NAME
                ),
            ));
        };
        let v = bmax.min(R::MAX);
        if v < bmin.max(R::MIN) {
            return Err(ReadError::permanent(
                ErrorKind::Protocol,
                format!(
                    "Kafka broker {} speaks {} versions {bmin}..={bmax}, this client {}..={}",
                    self.addr,
                    R::NAME,
                    R::MIN,
                    R::MAX
                ),
            ));
        }
        Ok(v)
    }

    /// Send `req` at the negotiated version and wait for its response (at most the
    /// connection's request timeout).
    pub(crate) async fn send<R: Call>(&self, req: &R) -> Result<(R::Response, i16), ReadError> {
        self.send_within(req, self.timeout).await
    }

    /// [`Connection::send`] with its own timeout (JoinGroup waits for the whole group).
    pub(crate) async fn send_within<R: Call>(
        &self,
        req: &R,
        timeout: Duration,
    ) -> Result<(R::Response, i16), ReadError> {
        let v = self.version::<R>()?;
        let r = self.send_at(req, v, timeout).await?;
        Ok((r, v))
    }

    /// One ApiVersions round trip: the health ping.
    pub(crate) async fn ping(&self) -> Result<Duration, ReadError> {
        let t0 = Instant::now();
        let r = self
            .send_at::<ApiVersionsRequest>(&ApiVersionsRequest::default(), 0, self.timeout)
            .await?;
        if r.error_code != 0 {
            return Err(crate::classify::classify_code(
                r.error_code,
                &format!("ApiVersions ping of broker {}", self.addr),
            ));
        }
        Ok(t0.elapsed())
    }

    fn broken_error(&self) -> ReadError {
        transient(
            ErrorKind::Connection,
            format!(
                "the connection to Kafka broker {} broke earlier in this session",
                self.addr
            ),
        )
    }

    async fn send_at<R: Call>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, ReadError> {
        if self.is_broken() {
            return Err(self.broken_error());
        }
        let frame = self.encode(req, version)?;
        let deadline = Instant::now() + timeout;
        let mut io = tokio::time::timeout_at(deadline, self.io.lock())
            .await
            .map_err(|_| {
                transient(
                    ErrorKind::Timeout,
                    format!(
                        "{} to Kafka broker {} waited {timeout:?} behind another request",
                        R::NAME,
                        self.addr
                    ),
                )
            })?;
        let id = io.next_id;
        io.next_id = io.next_id.wrapping_add(1).max(1);
        let frame = patch_correlation(frame, id);
        let Some(stream) = io.stream.as_mut() else {
            return Err(self.broken_error());
        };
        let result = tokio::time::timeout_at(deadline, roundtrip(stream.as_mut(), frame)).await;
        let body = match result {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                io.stream = None;
                self.broken.store(true, Ordering::Release);
                return Err(e.context(R::NAME, &self.addr));
            }
            Err(_) => {
                io.stream = None;
                self.broken.store(true, Ordering::Release);
                return Err(transient(
                    ErrorKind::Timeout,
                    format!(
                        "{} to Kafka broker {} got no answer within {timeout:?}",
                        R::NAME,
                        self.addr
                    ),
                ));
            }
        };
        drop(io);
        match decode::<R>(body, version, id) {
            Ok(r) => Ok(r),
            Err(Decode::Desync(msg)) => {
                self.broken.store(true, Ordering::Release);
                let mut io = self.io.lock().await;
                io.stream = None;
                Err(transient(
                    ErrorKind::Protocol,
                    format!("{} from Kafka broker {}: {msg}", R::NAME, self.addr),
                ))
            }
            Err(Decode::Body(msg)) => Err(transient(
                ErrorKind::Protocol,
                format!(
                    "{} v{version} from Kafka broker {} could not be decoded: {msg}",
                    R::NAME,
                    self.addr
                ),
            )),
        }
    }

    fn encode<R: Call>(&self, req: &R, version: i16) -> Result<BytesMut, ReadError> {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(0)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(128);
        buf.put_i32(0);
        let enc = header
            .encode(&mut buf, R::header_version(version))
            .and_then(|()| req.encode(&mut buf, version));
        if let Err(e) = enc {
            return Err(ReadError::permanent(
                ErrorKind::Protocol,
                format!("could not encode {} v{version}: {e}", R::NAME),
            ));
        }
        let len = buf.len() - 4;
        let Ok(len) = i32::try_from(len) else {
            return Err(ReadError::permanent(
                ErrorKind::Protocol,
                format!("{} request of {len} bytes is too large", R::NAME),
            ));
        };
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        Ok(buf)
    }
}

/// The correlation id sits right after the size, api key and api version.
fn patch_correlation(mut frame: BytesMut, id: i32) -> BytesMut {
    frame[8..12].copy_from_slice(&id.to_be_bytes());
    frame
}

enum IoFailure {
    Io(std::io::Error),
    Frame(String),
}

impl IoFailure {
    fn context(self, api: &str, addr: &str) -> ReadError {
        match self {
            IoFailure::Io(e) => transient(
                ErrorKind::Connection,
                format!("{api} to Kafka broker {addr}: connection lost"),
            )
            .with_cause(e),
            IoFailure::Frame(msg) => transient(
                ErrorKind::Protocol,
                format!("{api} from Kafka broker {addr}: {msg}"),
            ),
        }
    }
}

/// The TLS handshake over `tcp`, verifying the broker as `config` says, within `timeout`.
async fn tls_handshake(
    addr: &str,
    tcp: TcpStream,
    config: &Arc<tokio_rustls::rustls::ClientConfig>,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ReadError> {
    use tokio_rustls::rustls::pki_types::ServerName;
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned()).map_err(|_| {
        ReadError::config(format!(
            "kafka: broker host {host:?} is not a DNS name or IP address TLS can verify"
        ))
    })?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let what = format!("TLS handshake with Kafka broker {addr}");
    match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            let text = chain_text(&e);
            Err(reader_core::tls::failure(&what, &text)
                .unwrap_or_else(|| transient(ErrorKind::Connection, format!("{what}: {text}"))))
        }
        Err(_) => Err(transient(
            ErrorKind::Timeout,
            format!("{what} took longer than {timeout:?}"),
        )),
    }
}

async fn roundtrip(stream: &mut dyn Wire, frame: BytesMut) -> Result<Bytes, IoFailure> {
    stream.write_all(&frame).await.map_err(IoFailure::Io)?;
    stream.flush().await.map_err(IoFailure::Io)?;
    let size = stream.read_i32().await.map_err(IoFailure::Io)?;
    let size = usize::try_from(size)
        .ok()
        .filter(|s| *s >= 4 && *s <= MAX_FRAME)
        .ok_or_else(|| {
            IoFailure::Frame(format!(
                "response frame size {size} is outside 4..={MAX_FRAME}"
            ))
        })?;
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body).await.map_err(IoFailure::Io)?;
    Ok(Bytes::from(body))
}

enum Decode {
    /// The frame does not belong to our request: framing can no longer be trusted.
    Desync(String),
    /// The frame is ours but its body is malformed.
    Body(String),
}

/// Decode a response frame (without its size prefix) of `R` at `version`.
fn decode<R: Call>(mut body: Bytes, version: i16, id: i32) -> Result<R::Response, Decode> {
    let hv = <R::Response as HeaderVersion>::header_version(version);
    let hn = shape::check(&body, &[shape::Node::I32], hv >= 1)
        .map_err(|e| Decode::Desync(format!("bad response header: {e}")))?;
    let header = ResponseHeader::decode(&mut body, hv)
        .map_err(|e| Decode::Desync(format!("bad response header: {e}")))?;
    debug_assert!(hn >= 4);
    if header.correlation_id != id {
        return Err(Decode::Desync(format!(
            "response correlation id {} does not match request {id}",
            header.correlation_id
        )));
    }
    let used = shape::check(&body, &R::response_shape(version), R::flexible(version))
        .map_err(Decode::Body)?;
    if used != body.len() {
        tracing::debug!(
            api = R::NAME,
            version,
            extra = body.len() - used,
            "response has trailing bytes; ignored"
        );
    }
    R::Response::decode(&mut body, version).map_err(|e| Decode::Body(e.to_string()))
}

/// Decode a response body given as raw bytes (tests and fuzzing use this).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn decode_for_test<R: Call>(
    body: Bytes,
    version: i16,
    id: i32,
) -> Result<R::Response, String> {
    decode::<R>(body, version, id).map_err(|e| match e {
        Decode::Desync(m) | Decode::Body(m) => m,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{
        FindCoordinatorRequest, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
        OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest,
    };

    /// A tiny deterministic generator (no dependency needed).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u8 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) as u8
        }
    }

    fn fuzz<R: Call>(rng: &mut Lcg) {
        for v in R::MIN..=R::MAX {
            for len in 0..200 {
                let mut b = vec![0u8, 0, 0, 7];
                for _ in 0..len {
                    // Bias towards 0xff so lengths come out huge or negative.
                    let x = rng.next();
                    b.push(if x < 64 {
                        0xff
                    } else if x < 128 {
                        0x7f
                    } else {
                        x
                    });
                }
                let _ = decode_for_test::<R>(Bytes::from(b), v, 7);
            }
        }
    }

    #[test]
    fn garbage_responses_never_panic() {
        let mut rng = Lcg(42);
        for _ in 0..20 {
            fuzz::<ApiVersionsRequest>(&mut rng);
            fuzz::<FindCoordinatorRequest>(&mut rng);
            fuzz::<JoinGroupRequest>(&mut rng);
            fuzz::<SyncGroupRequest>(&mut rng);
            fuzz::<HeartbeatRequest>(&mut rng);
            fuzz::<LeaveGroupRequest>(&mut rng);
            fuzz::<OffsetCommitRequest>(&mut rng);
            fuzz::<OffsetFetchRequest>(&mut rng);
        }
    }

    #[test]
    fn wrong_correlation_id_is_a_desync() {
        let body = Bytes::from_static(&[0, 0, 0, 9, 0, 0]);
        let e = decode_for_test::<HeartbeatRequest>(body, 0, 7).unwrap_err();
        assert!(e.contains("correlation id 9"), "{e}");
    }

    #[test]
    fn huge_member_array_is_refused() {
        // JoinGroup v0: error, generation, protocol_name "", leader "", member_id "",
        // members: 2^31-1 elements.
        let mut b = vec![0, 0, 0, 7, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
        let e = decode_for_test::<JoinGroupRequest>(Bytes::from(b), 0, 7).unwrap_err();
        assert!(e.contains("announces"), "{e}");
    }
}

//! Starting, killing and restarting real servers.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::paths;

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// redis-server.
    Redis,
    /// mongod.
    Mongo,
    /// tansu (Kafka protocol).
    Kafka,
}

impl Kind {
    /// Short name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Mongo => "mongo",
            Kind::Kafka => "kafka",
        }
    }
}

/// Options of a Redis instance.
#[derive(Clone, Debug, Default)]
pub struct RedisOpts {
    /// `--appendonly yes --appendfsync always` (no acknowledged write lost under `kill -9`).
    pub aof: bool,
    /// `--requirepass`.
    pub requirepass: Option<String>,
    /// A fixed port (default: a free one).
    pub port: Option<u16>,
    /// More arguments.
    pub extra_args: Vec<String>,
}

/// Options of a mongod instance.
#[derive(Clone, Debug)]
pub struct MongoOpts {
    /// A single-node replica set `rs0`, initiated (default true). Change streams need one.
    pub replica_set: bool,
    /// `--oplogSize` in MB (default 128; the minimum mongod accepts is 990 MB for
    /// production, but it takes any value ≥ 1 here).
    pub oplog_size_mb: u32,
    /// A fixed port (default: a free one).
    pub port: Option<u16>,
    /// More arguments.
    pub extra_args: Vec<String>,
    /// Serve TLS only (`--tlsMode requireTLS`); default: plaintext.
    pub tls: Option<MongoTls>,
    /// Access control (`--auth`, plus `--keyFile` for a replica set) with this root user,
    /// created through the localhost exception once the replica set has a primary; default:
    /// no access control.
    pub auth: Option<MongoUser>,
}

impl Default for MongoOpts {
    fn default() -> Self {
        Self {
            replica_set: true,
            oplog_size_mb: 128,
            port: None,
            extra_args: Vec::new(),
            tls: None,
            auth: None,
        }
    }
}

/// TLS of a mongod: `--tlsMode requireTLS --tlsCertificateKeyFile server_pem --tlsCAFile ca`.
#[derive(Clone, Debug)]
pub struct MongoTls {
    /// The server's certificate and key in one PEM file ([`TestPki::server_pem`]).
    ///
    /// [`TestPki::server_pem`]: crate::TestPki::server_pem
    pub server_pem: PathBuf,
    /// The CA clients' certificates must be signed by, and that clients trust.
    pub ca: PathBuf,
    /// `--tlsAllowConnectionsWithoutCertificates`: clients need not present a certificate
    /// (but one they present must verify). Without it, mutual TLS is required.
    pub allow_no_client_cert: bool,
    /// The client certificate and key (one PEM file) the readiness probe, the writer URL of
    /// [`ServerSpec::url`] and other testkit clients present. Needed when
    /// `allow_no_client_cert` is false.
    pub client_pem: Option<PathBuf>,
}

impl MongoTls {
    /// TLS with the certificates of `pki`; clients present [`TestPki::client_pem`] (so the
    /// probe works either way); `require_client_cert` makes mongod insist on one.
    ///
    /// [`TestPki::client_pem`]: crate::TestPki::client_pem
    #[must_use]
    pub fn from_pki(pki: &crate::TestPki, require_client_cert: bool) -> Self {
        Self {
            server_pem: pki.server_pem.clone(),
            ca: pki.ca.clone(),
            allow_no_client_cert: !require_client_cert,
            client_pem: Some(pki.client_pem.clone()),
        }
    }
}

/// A MongoDB user (SCRAM-SHA-256, in `admin`). `Debug` hides the password.
#[derive(Clone)]
pub struct MongoUser {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl MongoUser {
    /// A user named `user` with `password`.
    #[must_use]
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
        }
    }
}

impl std::fmt::Debug for MongoUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoUser")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

/// How testkit's own clients reach a mongod (TLS files, the root user).
#[derive(Clone, Debug, Default)]
pub struct MongoAccess {
    /// Its TLS settings, when it serves TLS only.
    pub tls: Option<MongoTls>,
    /// Its root user, when it runs with `--auth`.
    pub auth: Option<MongoUser>,
}

/// Options of a tansu broker.
#[derive(Clone, Debug, Default)]
pub struct KafkaOpts {
    /// The address the broker advertises in metadata (default: its own listener). Set it to
    /// a [`FaultProxy`](crate::FaultProxy) address so clients reconnect through the proxy.
    pub advertised: Option<String>,
    /// A fixed port (default: a free one).
    pub port: Option<u16>,
    /// More arguments to `tansu broker`.
    pub extra_args: Vec<String>,
    /// `--authentication`: every request but ApiVersions and the SASL ones needs a SASL
    /// login first (tansu 0.6.0: PLAIN accepts any password; SCRAM checks the users below).
    pub authentication: bool,
    /// SCRAM users created (through `tansu user create`) before the broker starts.
    pub scram_users: Vec<ScramUser>,
}

/// A SCRAM user of a tansu broker.
#[derive(Clone, Debug)]
pub struct ScramUser {
    /// User name.
    pub name: String,
    /// Password.
    pub password: String,
    /// `scram256` or `scram512` (tansu's spelling).
    pub mechanism: &'static str,
}

/// A free loopback port (bound and released; a tiny race remains, acceptable in tests).
pub fn free_port() -> io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Everything needed to (re)start one server process.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// Which server.
    pub kind: Kind,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its data directory (also its working directory).
    pub dir: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// The program.
    pub program: PathBuf,
    /// The arguments.
    pub args: Vec<String>,
    /// Whether it is a replica set that must be initiated (mongod).
    pub replica_set: bool,
    /// How to reach a mongod with TLS or access control (default for other servers).
    pub mongo: MongoAccess,
}

impl ServerSpec {
    /// A Redis instance in `dir`.
    #[must_use]
    pub fn redis(opts: &RedisOpts, port: u16, dir: &Path) -> Self {
        let mut args = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--save".into(),
            String::new(),
            "--daemonize".into(),
            "no".into(),
            "--protected-mode".into(),
            "no".into(),
        ];
        if opts.aof {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from));
        } else {
            args.extend(["--appendonly", "no"].map(String::from));
        }
        if let Some(p) = &opts.requirepass {
            args.extend(["--requirepass".to_owned(), p.clone()]);
        }
        args.extend(opts.extra_args.iter().cloned());
        Self {
            kind: Kind::Redis,
            port,
            dir: dir.to_path_buf(),
            log: dir.join("server.log"),
            program: paths::redis_server(),
            args,
            replica_set: false,
            mongo: MongoAccess::default(),
        }
    }

    /// A mongod instance in `dir`.
    #[must_use]
    pub fn mongod(opts: &MongoOpts, port: u16, dir: &Path) -> Self {
        let data = dir.join("db");
        let mut args = vec![
            "--bind_ip".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--dbpath".into(),
            data.display().to_string(),
            "--wiredTigerCacheSizeGB".into(),
            "0.25".into(),
            "--setParameter".into(),
            "diagnosticDataCollectionEnabled=false".into(),
            "--nounixsocket".into(),
        ];
        if opts.replica_set {
            args.extend([
                "--replSet".to_owned(),
                "rs0".to_owned(),
                "--oplogSize".to_owned(),
                opts.oplog_size_mb.to_string(),
            ]);
        }
        if let Some(tls) = &opts.tls {
            args.extend([
                "--tlsMode".to_owned(),
                "requireTLS".to_owned(),
                "--tlsCertificateKeyFile".to_owned(),
                tls.server_pem.display().to_string(),
                "--tlsCAFile".to_owned(),
                tls.ca.display().to_string(),
            ]);
            if tls.allow_no_client_cert {
                args.push("--tlsAllowConnectionsWithoutCertificates".to_owned());
            }
        }
        if opts.auth.is_some() {
            args.push("--auth".to_owned());
            if opts.replica_set {
                // Members of a replica set with access control authenticate to each other;
                // the file is written at spawn (see `command`).
                args.extend([
                    "--keyFile".to_owned(),
                    dir.join(MONGO_KEY_FILE).display().to_string(),
                ]);
            }
        }
        args.extend(opts.extra_args.iter().cloned());
        Self {
            kind: Kind::Mongo,
            port,
            dir: dir.to_path_buf(),
            log: dir.join("server.log"),
            program: paths::mongod(),
            args,
            replica_set: opts.replica_set,
            mongo: MongoAccess {
                tls: opts.tls.clone(),
                auth: opts.auth.clone(),
            },
        }
    }

    /// A tansu broker in `dir` (SQLite storage `tansu.db` in that directory).
    #[must_use]
    pub fn kafka(opts: &KafkaOpts, port: u16, dir: &Path) -> Self {
        let advertised = opts
            .advertised
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{port}"));
        let mut args = vec![
            "broker".into(),
            "--listener-url".into(),
            format!("tcp://127.0.0.1:{port}"),
            "--advertised-listener-url".into(),
            format!("tcp://{advertised}"),
            // tansu 0.6.0 mangles absolute sqlite:/// paths: relative to the working dir.
            "--storage-engine".into(),
            "sqlite://tansu.db".into(),
        ];
        if opts.authentication {
            args.push("--authentication".into());
        }
        args.extend(opts.extra_args.iter().cloned());
        Self {
            kind: Kind::Kafka,
            port,
            dir: dir.to_path_buf(),
            log: dir.join("server.log"),
            program: paths::tansu(),
            args,
            replica_set: false,
            mongo: MongoAccess::default(),
        }
    }

    /// `127.0.0.1:PORT`.
    #[must_use]
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The URL clients use: `redis://…`, `mongodb://…/?directConnection=true`, or the
    /// bare `host:port` for Kafka. A mongod with TLS gets `&tls=true&tlsCAFile=…` (and
    /// `&tlsCertificateKeyFile=…` when a client certificate is set), one with access control
    /// its root user's credentials and `&authSource=admin`.
    #[must_use]
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Redis => format!("redis://127.0.0.1:{}", self.port),
            Kind::Mongo => self.mongo_url(),
            Kind::Kafka => self.host_port(),
        }
    }

    fn mongo_url(&self) -> String {
        let userinfo = self.mongo.auth.as_ref().map_or_else(String::new, |u| {
            format!(
                "{}:{}@",
                percent_encode(&u.user),
                percent_encode(&u.password)
            )
        });
        let mut url = format!(
            "mongodb://{userinfo}127.0.0.1:{}/?directConnection=true",
            self.port
        );
        if let Some(tls) = &self.mongo.tls {
            url.push_str("&tls=true&tlsCAFile=");
            url.push_str(&percent_encode(&tls.ca.display().to_string()));
            if let Some(c) = &tls.client_pem {
                url.push_str("&tlsCertificateKeyFile=");
                url.push_str(&percent_encode(&c.display().to_string()));
            }
        }
        if self.mongo.auth.is_some() {
            url.push_str("&authSource=admin");
        }
        url
    }

    /// Start the process (not waiting for readiness). Output goes to the log file.
    pub fn spawn(&self) -> io::Result<Child> {
        let mut cmd = self.command()?;
        self.spawn_cmd(&mut cmd)
    }

    /// Start the process in a process group of its own, so it outlives the caller (used by
    /// `cargo xtask servers up` for the shared servers).
    pub fn spawn_detached(&self) -> io::Result<Child> {
        use std::os::unix::process::CommandExt;
        let mut cmd = self.command()?;
        cmd.process_group(0);
        self.spawn_cmd(&mut cmd)
    }

    fn command(&self) -> io::Result<Command> {
        if !self.program.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} binary not found at {} — run `cargo xtask servers up` (it installs it)",
                    self.kind.name(),
                    self.program.display()
                ),
            ));
        }
        std::fs::create_dir_all(&self.dir)?;
        if self.kind == Kind::Mongo {
            std::fs::create_dir_all(self.dir.join("db"))?;
            if self.mongo.auth.is_some() && self.replica_set {
                write_key_file(&self.dir.join(MONGO_KEY_FILE))?;
            }
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let log2 = log.try_clone()?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        if self.kind == Kind::Kafka && std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        Ok(cmd)
    }

    fn spawn_cmd(&self, cmd: &mut Command) -> io::Result<Child> {
        cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot start {} ({}): {e}",
                    self.kind.name(),
                    self.program.display()
                ),
            )
        })
    }

    /// Whether the server answers now (one readiness probe, no waiting).
    pub async fn is_ready(&self) -> bool {
        match self.kind {
            Kind::Redis => redis_ping(self.port).await,
            Kind::Kafka => kafka_api_versions(self.port).await,
            Kind::Mongo => mongo_ready(self.port, self.replica_set, &self.mongo).await,
        }
    }

    fn failure(&self, what: &str) -> io::Error {
        let tail = std::fs::read_to_string(&self.log)
            .map(|s| {
                let lines: Vec<&str> = s.lines().collect();
                lines[lines.len().saturating_sub(15)..].join("\n")
            })
            .unwrap_or_default();
        io::Error::other(format!(
            "{} on port {} {what}; log: {}\n--- last lines ---\n{tail}",
            self.kind.name(),
            self.port,
            self.log.display()
        ))
    }

    /// Wait until the server answers (Redis PING, Kafka ApiVersions, mongod `hello` as
    /// writable primary after initiating the replica set). `child`, when given, is checked
    /// for an early exit so a crash is reported at once with the log's tail.
    pub async fn wait_ready(
        &self,
        mut child: Option<&mut Child>,
        within: Duration,
    ) -> io::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(c) = child.as_deref_mut() {
                if let Some(status) = c.try_wait()? {
                    return Err(self.failure(&format!("exited during start-up ({status})")));
                }
            }
            if self.is_ready().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.failure(&format!("not ready after {within:?}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn redis_ping(port: u16) -> bool {
    let fut = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.ok()?;
        let reply = String::from_utf8_lossy(&buf[..n]).to_string();
        Some(
            reply.starts_with("+PONG")
                || reply.starts_with("-NOAUTH")
                || reply.starts_with("-ERR AUTH"),
        )
    };
    tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

async fn kafka_api_versions(port: u16) -> bool {
    let fut = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let client = b"testkit";
        let mut body = Vec::new();
        body.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
        body.extend_from_slice(&0i16.to_be_bytes()); // v0
        body.extend_from_slice(&7i32.to_be_bytes()); // correlation id
        body.extend_from_slice(&i16::try_from(client.len()).ok()?.to_be_bytes());
        body.extend_from_slice(client);
        let mut frame = i32::try_from(body.len()).ok()?.to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        s.write_all(&frame).await.ok()?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.ok()?;
        let len = usize::try_from(i32::from_be_bytes(len)).ok()?;
        if !(6..=1_000_000).contains(&len) {
            return Some(false);
        }
        let mut resp = vec![0u8; len];
        s.read_exact(&mut resp).await.ok()?;
        let corr = i32::from_be_bytes([resp[0], resp[1], resp[2], resp[3]]);
        let err = i16::from_be_bytes([resp[4], resp[5]]);
        Some(corr == 7 && err == 0)
    };
    tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// The replica-set key file's name in a mongod's directory.
const MONGO_KEY_FILE: &str = "keyfile";

/// A fresh key file (48 random hex characters, a subset of base64; mode 600, as mongod
/// insists), unless one exists (a restart keeps it).
fn write_key_file(path: &Path) -> io::Result<()> {
    use std::hash::{BuildHasher, Hasher};
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    let mut key = String::new();
    for i in 0..3_u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        key.push_str(&format!("{:016x}", h.finish()));
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(key.as_bytes())
}

/// Percent-encode everything but unreserved characters (for URL user info and values).
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A probe client of the mongod on `port`, with its TLS settings and, when given, a user.
async fn mongo_client(
    port: u16,
    access: &MongoAccess,
    user: Option<&MongoUser>,
) -> Option<mongodb::Client> {
    use mongodb::options::{ClientOptions, Credential, Tls, TlsOptions};
    let uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=1500&connectTimeoutMS=1500");
    let mut opts = ClientOptions::parse(&uri).await.ok()?;
    if let Some(tls) = &access.tls {
        opts.tls = Some(Tls::Enabled(
            TlsOptions::builder()
                .ca_file_path(tls.ca.clone())
                .cert_key_file_path(tls.client_pem.clone())
                .build(),
        ));
    }
    if let Some(u) = user {
        opts.credential = Some(
            Credential::builder()
                .username(u.user.clone())
                .password(u.password.clone())
                .source("admin".to_owned())
                .build(),
        );
    }
    mongodb::Client::with_options(opts).ok()
}

/// Ready when the root user (if any) can log in: create it through the localhost exception
/// when it cannot because it does not exist yet.
async fn mongo_user_ready(
    anonymous: &mongodb::Client,
    port: u16,
    access: &MongoAccess,
) -> Option<bool> {
    use mongodb::bson::doc;
    let Some(user) = &access.auth else {
        return Some(true);
    };
    let authed = mongo_client(port, access, Some(user)).await?;
    let login = authed
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await;
    authed.shutdown().immediate(true).await;
    match login {
        Ok(_) => Some(true),
        Err(e) if matches!(*e.kind, mongodb::error::ErrorKind::Authentication { .. }) => {
            // No user yet: the localhost exception lets the first one be created.
            let _ = anonymous
                .database("admin")
                .run_command(doc! {
                    "createUser": &user.user,
                    "pwd": &user.password,
                    "roles": [ { "role": "root", "db": "admin" } ],
                    "mechanisms": ["SCRAM-SHA-256"],
                })
                .await;
            Some(false)
        }
        Err(_) => Some(false),
    }
}

async fn mongo_ready(port: u16, replica_set: bool, access: &MongoAccess) -> bool {
    use mongodb::bson::doc;
    let fut = async {
        let client = mongo_client(port, access, None).await?;
        let admin = client.database("admin");
        // `hello` needs no login, even with access control.
        let hello = admin.run_command(doc! { "hello": 1 }).await.ok()?;
        if !replica_set || hello.get_bool("isWritablePrimary").unwrap_or(false) {
            return mongo_user_ready(&client, port, access).await;
        }
        if hello.get_str("setName").is_err() {
            let cfg = doc! {
                "_id": "rs0",
                "members": [ { "_id": 0, "host": format!("127.0.0.1:{port}") } ],
            };
            // Code 23 (AlreadyInitialized) is fine: a restart of an initiated member.
            let _ = admin.run_command(doc! { "replSetInitiate": cfg }).await;
        }
        Some(false)
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn scratch_dir(kind: Kind, port: u16) -> PathBuf {
    let base = std::env::var_os("UNIREADER_TEST_DATA").map_or_else(
        || std::env::temp_dir().join("unireader-testkit"),
        PathBuf::from,
    );
    base.join(format!(
        "{}-{}-{}-{}",
        kind.name(),
        port,
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A server process owned by a test: killed (and its data removed) when dropped.
#[derive(Debug)]
pub struct Server {
    spec: ServerSpec,
    child: Option<Child>,
}

impl Server {
    /// Start from a spec and wait until ready.
    pub async fn start(spec: ServerSpec) -> io::Result<Self> {
        let mut child = spec.spawn()?;
        let within = match spec.kind {
            Kind::Mongo => Duration::from_secs(60),
            _ => Duration::from_secs(30),
        };
        if let Err(e) = spec.wait_ready(Some(&mut child), within).await {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(Self {
            spec,
            child: Some(child),
        })
    }

    /// A Redis of this test's own.
    pub async fn redis(opts: RedisOpts) -> io::Result<Self> {
        let port = match opts.port {
            Some(p) => p,
            None => free_port()?,
        };
        let dir = scratch_dir(Kind::Redis, port);
        Self::start(ServerSpec::redis(&opts, port, &dir)).await
    }

    /// A mongod of this test's own (a replica set `rs0` unless told otherwise).
    pub async fn mongod(opts: MongoOpts) -> io::Result<Self> {
        let port = match opts.port {
            Some(p) => p,
            None => free_port()?,
        };
        let dir = scratch_dir(Kind::Mongo, port);
        Self::start(ServerSpec::mongod(&opts, port, &dir)).await
    }

    /// A tansu broker of this test's own.
    pub async fn kafka(opts: KafkaOpts) -> io::Result<Self> {
        let port = match opts.port {
            Some(p) => p,
            None => free_port()?,
        };
        let dir = scratch_dir(Kind::Kafka, port);
        if opts.scram_users.is_empty() {
            return Self::start(ServerSpec::kafka(&opts, port, &dir)).await;
        }
        // Users are made through the broker itself, which refuses unauthenticated requests
        // once `--authentication` is on: create them on an open broker, then restart it
        // with authentication on the same storage.
        let open = KafkaOpts {
            authentication: false,
            scram_users: Vec::new(),
            ..opts.clone()
        };
        let mut server = Self::start(ServerSpec::kafka(&open, port, &dir)).await?;
        for u in &opts.scram_users {
            let out = Command::new(paths::tansu())
                .args(["user", "create", "--broker"])
                .arg(format!("tcp://127.0.0.1:{port}"))
                .args(["--mechanism", u.mechanism, &u.name, &u.password])
                .output()?;
            if !out.status.success() {
                return Err(io::Error::other(format!(
                    "tansu user create {}: {}",
                    u.name,
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
        server.spec = ServerSpec::kafka(&opts, port, &dir);
        server.restart().await?;
        Ok(server)
    }

    /// The spec it runs with.
    #[must_use]
    pub fn spec(&self) -> &ServerSpec {
        &self.spec
    }

    /// Its port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.spec.port
    }

    /// `127.0.0.1:PORT`.
    #[must_use]
    pub fn host_port(&self) -> String {
        self.spec.host_port()
    }

    /// The URL clients use (see [`ServerSpec::url`]).
    #[must_use]
    pub fn url(&self) -> String {
        self.spec.url()
    }

    /// The process id, while running.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`, at once.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port and data directory; waits until ready.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        // The port can stay busy for a moment after a kill: retry the start.
        loop {
            let mut child = self.spec.spawn()?;
            match self
                .spec
                .wait_ready(Some(&mut child), Duration::from_secs(60))
                .await
            {
                Ok(()) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if Instant::now() >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::env::var_os("UNIREADER_KEEP_TEST_DATA").is_none() {
            let _ = std::fs::remove_dir_all(&self.spec.dir);
        }
    }
}

//! MongoDB over TLS with authentication, against private mongods started with
//! `--tlsMode requireTLS --auth --keyFile` (throwaway certificates from
//! [`testkit::TestPki`]): change events read over TLS with SCRAM-SHA-256, with mutual
//! TLS, and with the client certificate as the login (MONGODB-X509); an untrusted server certificate and a host name the certificate does not list are
//! Permanent `Tls` errors on the first attempt, saying what did not verify; a wrong
//! password is a Permanent `Auth` error at once that never shows the password; a plaintext
//! client to the TLS-only server, and a client without a certificate for a server that
//! requires one, are Transient with a hint (the driver sees only a closed connection); and
//! a `kill -9` and restart of the mutual-TLS server is healed by a new session (handshake
//! and login again) with nothing lost.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use reader_core::{
    CancellationToken, Checkpoint, ConnState, Connector, ErrorClass, ErrorKind,
    MemoryCheckpointStore, ReadError, Reader, SessionContext,
};
use reader_mongo::MongoConnector;
use testkit::{FaultProxy, MongoOpts, MongoTls, MongoUser, Server, TestPki};
use tokio::time::Instant;

const USER: &str = "reader";
/// Distinctive, and with characters that need percent-encoding in a URL.
const PASSWORD: &str = "Pa55:w@rd/never-shown%";
/// The server-selection timeout of the readers here: a TLS failure surfaces after it.
const SELECTION_MS: u64 = 2000;

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A TLS-only mongod with access control and the root user `USER`/`PASSWORD`.
async fn tls_mongod(pki: &TestPki, require_client_cert: bool) -> Server {
    let t0 = Instant::now();
    let srv = Server::mongod(MongoOpts {
        tls: Some(MongoTls::from_pki(pki, require_client_cert)),
        auth: Some(MongoUser::new(USER, PASSWORD)),
        ..MongoOpts::default()
    })
    .await
    .expect("mongod with requireTLS --auth --keyFile");
    println!(
        "mongod requireTLS --auth (client certs {}) ready in {:?}",
        if require_client_cert {
            "required"
        } else {
            "optional"
        },
        t0.elapsed()
    );
    srv
}

/// A reader URL: `userinfo` (`user:pass@` or empty) at `host`, plus `params`.
fn url(userinfo: &str, host: &str, db: &str, coll: &str, params: &str) -> String {
    format!(
        "mongodb://{userinfo}{host}/?directConnection=true&serverSelectionTimeoutMS={SELECTION_MS}\
         &database={db}&collection={coll}{params}"
    )
}

fn good_user() -> String {
    format!("{USER}:{}@", encode(PASSWORD))
}

fn path(p: &std::path::Path) -> String {
    encode(&p.display().to_string())
}

/// One session opened by hand (no Reconnector): the classified error of a single attempt.
async fn connect_once(url: &str) -> (Result<(), ReadError>, Duration) {
    let c = MongoConnector::from_url(url).expect("url");
    let ctx = SessionContext {
        source: "tls-test".into(),
        events: reader_core::EventSink::new("tls-test".into(), "mongo"),
        session: 1,
    };
    let t0 = Instant::now();
    let r = c.connect(&ctx, &Checkpoint::new()).await;
    let took = t0.elapsed();
    match r {
        Ok(reader) => {
            reader.close().await;
            (Ok(()), took)
        }
        Err(e) => (Err(e), took),
    }
}

/// Read `n` inserts through a reader of `reader_url`, in order, writing with `writer_url`.
async fn read_inserts(reader_url: &str, writer_url: &str, db: &str, coll: &str, n: i64) {
    let w = writer(writer_url).await;
    let r = reader(
        reader_url,
        &unique("tls_src"),
        Arc::new(MemoryCheckpointStore::new()),
        |_| {},
    );
    let mut s = r.read(CancellationToken::new());
    until_ready(&r).await;
    insert_ids(&w, db, coll, 0..n).await;
    for want in 0..n {
        let d = next(&mut s).await.expect("stream ended").expect("delivery");
        assert_eq!(id_of(&d), want);
        d.ack();
    }
    let report = r.close().await;
    println!("read {n} change events over TLS: {report:?}");
}

/// The first stream item of a reader of `url` must be a permanent error, and the stream
/// must end after it (no retry loop): the error, and how long it took.
async fn fails_for_good(url: &str) -> (ReadError, Duration) {
    let r = reader(
        url,
        &unique("tls_fail"),
        Arc::new(MemoryCheckpointStore::new()),
        |_| {},
    );
    let t0 = Instant::now();
    let mut s = r.read(CancellationToken::new());
    let e = next(&mut s)
        .await
        .expect("an error item")
        .expect_err("must fail");
    let took = t0.elapsed();
    assert!(e.is_permanent(), "{e}");
    assert!(next(&mut s).await.is_none(), "the stream must end: {e}");
    assert_eq!(r.health().state, ConnState::Failed);
    assert_eq!(r.health().sessions, 1, "one attempt, no retry: {e}");
    let _ = r.close().await;
    (e, took)
}

/// The server's log, once it contains `what` (bounded: mongod writes it as it happens).
async fn server_log_with(srv: &Server, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&srv.spec().log).unwrap_or_default();
        if log.contains(what) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "the server log never said {what:?}; its end:\n{}",
            &log[log.len().saturating_sub(3000)..]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_256_over_tls_reads_change_events() {
    let pki = TestPki::generate().unwrap();
    let srv = tls_mongod(&pki, false).await;
    let (db, coll) = ("unireader_test", unique("tls_scram"));
    let host = format!("localhost:{}", srv.port());
    let tls = format!("&tls=true&tlsCAFile={}", path(&pki.ca));
    let good = url(
        &good_user(),
        &host,
        db,
        &coll,
        &format!("{tls}&authSource=admin&authMechanism=SCRAM-SHA-256"),
    );
    read_inserts(&good, &srv.url(), db, &coll, 50).await;

    // A least-privilege user of its own, with SCRAM-SHA-256 credentials only: the built-in
    // `read` role (find + changeStream) on the watched database is all a reader needs.
    let events_pw = "ev3nts-0nly:pw";
    writer(&srv.url())
        .await
        .database("admin")
        .run_command(mongodb::bson::doc! {
            "createUser": "events",
            "pwd": events_pw,
            "roles": [ { "role": "read", "db": db } ],
            "mechanisms": ["SCRAM-SHA-256"],
        })
        .await
        .unwrap();
    let coll2 = unique("tls_least");
    let least = url(
        &format!("events:{}@", encode(events_pw)),
        &host,
        db,
        &coll2,
        &format!("{tls}&authSource=admin"),
    );
    read_inserts(&least, &srv.url(), db, &coll2, 10).await;
    // The server says how that reader logged in.
    let log = server_log_with(&srv, "\"principalName\":\"events\"").await;
    assert!(
        log.lines().any(|l| l.contains("Authentication succeeded")
            && l.contains("\"principalName\":\"events\"")
            && l.contains("\"mechanism\":\"SCRAM-SHA-256\"")),
        "no SCRAM-SHA-256 login of `events` in the server log"
    );
    // …and it may not read elsewhere: Permanent Auth, not retried.
    let elsewhere = url(
        &format!("events:{}@", encode(events_pw)),
        &host,
        "other_db",
        "c",
        &format!("{tls}&authSource=admin"),
    );
    let (e, _) = fails_for_good(&elsewhere).await;
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(e.to_string().contains("not authorized"), "{e}");
    assert!(!e.to_string().contains(events_pw), "{e}");
    println!("least privilege elsewhere: {e}");

    // The same deployment without credentials: access control refuses the change stream.
    let anonymous = url("", &host, db, &coll, &tls);
    let (e, took) = fails_for_good(&anonymous).await;
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(e.to_string().contains("gave no credentials"), "{e}");
    println!("no credentials: {e} (after {took:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_and_an_x509_login_read_change_events_and_a_missing_client_certificate_is_explained(
) {
    let pki = TestPki::generate().unwrap();
    let srv = tls_mongod(&pki, true).await;
    let (db, coll) = ("unireader_test", unique("tls_mutual"));
    let host = format!("localhost:{}", srv.port());
    let tls = format!("&tls=true&tlsCAFile={}&authSource=admin", path(&pki.ca));
    let mutual = url(
        &good_user(),
        &host,
        db,
        &coll,
        &format!("{tls}&tlsCertificateKeyFile={}", path(&pki.client_pem)),
    );
    read_inserts(&mutual, &srv.url(), db, &coll, 20).await;

    // The client certificate can be the login too (MONGODB-X509, no password): a user of
    // `$external` named by the certificate's subject.
    writer(&srv.url())
        .await
        .database("$external")
        .run_command(mongodb::bson::doc! {
            "createUser": "CN=unireader-client",
            "roles": [ { "role": "read", "db": db } ],
        })
        .await
        .unwrap();
    let coll_x509 = unique("tls_x509");
    let x509 = url(
        "",
        &host,
        db,
        &coll_x509,
        &format!(
            "&tls=true&tlsCAFile={}&tlsCertificateKeyFile={}&authMechanism=MONGODB-X509\
             &authSource=%24external",
            path(&pki.ca),
            path(&pki.client_pem)
        ),
    );
    read_inserts(&x509, &srv.url(), db, &coll_x509, 10).await;
    let log = server_log_with(&srv, "\"mechanism\":\"MONGODB-X509\"").await;
    assert!(
        log.lines().any(|l| l.contains("Successfully authenticated")
            && l.contains("MONGODB-X509")
            && l.contains("CN=unireader-client")),
        "no MONGODB-X509 login in the server log"
    );

    // Without a client certificate, mongod ends the connection after the handshake; the
    // driver sees only that (a server going away looks the same): transient, with a hint.
    let (r, took) = connect_once(&url(&good_user(), &host, db, &coll, &tls)).await;
    let e = r.expect_err("no client certificate");
    assert_eq!(
        (e.class(), e.kind()),
        (ErrorClass::Transient, ErrorKind::Connection),
        "{e}"
    );
    assert!(e.message().contains("give tlsCertificateKeyFile="), "{e}");
    assert!(
        took < Duration::from_millis(SELECTION_MS + 3000),
        "{took:?}"
    );
    server_log_with(&srv, "no SSL certificate provided by peer").await;
    println!("no client certificate: {e} (after {took:?})");

    // A client certificate from a CA the server does not trust: the same, for the same
    // reason, as the server's log says.
    let stranger = TestPki::generate().unwrap();
    let (r, _) = connect_once(&url(
        &good_user(),
        &host,
        db,
        &coll,
        &format!("{tls}&tlsCertificateKeyFile={}", path(&stranger.client_pem)),
    ))
    .await;
    let e = r.expect_err("untrusted client certificate");
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    assert!(e.message().contains("give tlsCertificateKeyFile="), "{e}");
    server_log_with(&srv, "SSL peer certificate validation failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_an_untrusted_ca_is_permanent_at_once() {
    let pki = TestPki::generate().unwrap();
    let srv = tls_mongod(&pki, false).await;
    let host = format!("localhost:{}", srv.port());
    let untrusted = url(
        &good_user(),
        &host,
        "unireader_test",
        "c",
        &format!(
            "&tls=true&tlsCAFile={}&authSource=admin",
            path(&pki.other_ca)
        ),
    );
    let (e, took) = fails_for_good(&untrusted).await;
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("the server's certificate is not trusted"),
        "{msg}"
    );
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    assert!(msg.contains(&host), "names the server: {msg}");
    // One attempt: the driver gives up after its server-selection timeout.
    assert!(
        took < Duration::from_millis(SELECTION_MS + 3000),
        "{took:?}: {msg}"
    );
    println!("untrusted CA: {msg} (after {took:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_the_certificate_does_not_list_is_permanent_and_the_only_override_is_all_or_nothing(
) {
    let pki = TestPki::generate().unwrap();
    let srv = tls_mongod(&pki, false).await;
    let (db, coll) = ("unireader_test", unique("tls_host"));
    let tls = format!("&tls=true&tlsCAFile={}&authSource=admin", path(&pki.ca));
    // Every name the certificate lists works.
    for name in testkit::SERVER_NAMES
        .iter()
        .filter(|n| **n != "unireader.test")
    {
        let (r, _) = connect_once(&url(
            &good_user(),
            &format!("{name}:{}", srv.port()),
            db,
            &coll,
            &tls,
        ))
        .await;
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // The same server at an address the certificate does not list: 127.0.0.2, through a
    // TCP proxy (the loopback network is all of 127/8).
    let proxy = FaultProxy::start_on("127.0.0.2:0", srv.host_port())
        .await
        .unwrap();
    let (e, took) = fails_for_good(&url(&good_user(), proxy.addr(), db, &coll, &tls)).await;
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("not valid for the host name this client connected to"),
        "{msg}"
    );
    assert!(msg.contains("\"127.0.0.2\""), "{msg}");
    assert!(
        took < Duration::from_millis(SELECTION_MS + 3000),
        "{took:?}"
    );
    println!("wrong host name: {msg} (after {took:?})");

    // The driver's rustls TLS cannot skip only the name check: the option is refused, and
    // the message warns about the one that exists.
    let e = MongoConnector::from_url(&url(
        &good_user(),
        proxy.addr(),
        db,
        &coll,
        &format!("{tls}&tlsAllowInvalidHostnames=true"),
    ))
    .unwrap_err();
    assert_eq!(
        (e.class(), e.kind()),
        (ErrorClass::Permanent, ErrorKind::Config)
    );
    assert!(
        e.message().contains("cannot skip only the host-name check"),
        "{e}"
    );
    assert!(!e.to_string().contains(PASSWORD) && !e.to_string().contains(&encode(PASSWORD)));

    // tlsAllowInvalidCertificates=true switches off all verification: the wrong name
    // passes — and so does a certificate no trusted CA signed. Hence: never in production.
    let insecure = format!(
        "&tls=true&tlsCAFile={}&authSource=admin&tlsAllowInvalidCertificates=true",
        path(&pki.other_ca)
    );
    read_inserts(
        &url(&good_user(), proxy.addr(), db, &coll, &insecure),
        &srv.url(),
        db,
        &coll,
        5,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_permanent_at_once_and_never_shown() {
    let pki = TestPki::generate().unwrap();
    let srv = tls_mongod(&pki, false).await;
    let host = format!("localhost:{}", srv.port());
    let wrong = "wr0ng:p@ss/word%";
    let bad = url(
        &format!("{USER}:{}@", encode(wrong)),
        &host,
        "unireader_test",
        "c",
        &format!("&tls=true&tlsCAFile={}&authSource=admin", path(&pki.ca)),
    );
    let connector = MongoConnector::from_url(&bad).unwrap();
    let source = unique("tls_badpw");
    let r = reader_of(
        connector,
        &source,
        Arc::new(MemoryCheckpointStore::new()),
        |_| {},
    );
    let t0 = Instant::now();
    let mut s = r.read(CancellationToken::new());
    let e = next(&mut s)
        .await
        .expect("an error item")
        .expect_err("must fail");
    let took = t0.elapsed();
    assert_eq!(
        (e.class(), e.kind()),
        (ErrorClass::Permanent, ErrorKind::Auth),
        "{e}"
    );
    assert!(next(&mut s).await.is_none(), "no retry loop: {e}");
    // Authentication follows server selection at once: no selection timeout waited out.
    assert!(took < Duration::from_millis(SELECTION_MS), "{took:?}: {e}");
    let shown = format!(
        "{e}\n{e:?}\n{:?}\n{}\n{:?}",
        r.health(),
        MongoConnector::from_url(&bad).unwrap().describe(),
        MongoConnector::from_url(&bad).unwrap()
    );
    assert!(shown.contains("authentication failed"), "{shown}");
    assert!(shown.contains(&source), "names the source: {shown}");
    for secret in [wrong, &encode(wrong), PASSWORD, &encode(PASSWORD)] {
        assert!(!shown.contains(secret), "{secret:?} shown in:\n{shown}");
    }
    let _ = r.close().await;
    println!("wrong password: {e} (after {took:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_to_a_tls_only_server_is_transient_with_a_hint() {
    let pki = TestPki::generate().unwrap();
    let srv = tls_mongod(&pki, false).await;
    let plain = url(
        &good_user(),
        &format!("localhost:{}", srv.port()),
        "unireader_test",
        "c",
        "&authSource=admin",
    );
    let (r, took) = connect_once(&plain).await;
    let e = r.expect_err("plaintext to requireTLS");
    // mongod just closes a connection that does not start with a TLS handshake: to the
    // driver that is a server going away, so it stays retryable — with the likely cause.
    assert_eq!(
        (e.class(), e.kind()),
        (ErrorClass::Transient, ErrorKind::Connection),
        "{e}"
    );
    assert!(e.message().contains("unexpected end of file"), "{e}");
    assert!(e.message().contains("add tls=true"), "{e}");
    assert!(!e.to_string().contains(&encode(PASSWORD)), "{e}");
    assert!(
        took < Duration::from_millis(SELECTION_MS + 3000),
        "{took:?}"
    );
    server_log_with(&srv, "SSLHandshakeFailed").await;
    println!("plaintext to requireTLS: {e} (after {took:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_tls_server_is_healed_with_a_new_handshake_and_login() {
    let pki = TestPki::generate().unwrap();
    // The strictest server: client certificates required, access control on.
    let mut srv = tls_mongod(&pki, true).await;
    let (db, coll) = ("unireader_test", unique("tls_restart"));
    let mutual = url(
        &good_user(),
        &format!("localhost:{}", srv.port()),
        db,
        &coll,
        &format!(
            "&tls=true&tlsCAFile={}&authSource=admin&tlsCertificateKeyFile={}",
            path(&pki.ca),
            path(&pki.client_pem)
        ),
    );
    let r = reader(
        &mutual,
        &unique("tls_restart_src"),
        Arc::new(MemoryCheckpointStore::new()),
        |_| {},
    );
    let mut s = r.read(CancellationToken::new());
    until_ready(&r).await;
    insert_ids(&writer(&srv.url()).await, db, &coll, 0..20).await;
    let mut seen = std::collections::BTreeMap::<i64, u32>::new();
    while seen.len() < 20 {
        let d = next(&mut s).await.expect("stream ended").expect("delivery");
        *seen.entry(id_of(&d)).or_default() += 1;
        d.ack();
    }

    srv.kill();
    let t0 = Instant::now();
    srv.restart()
        .await
        .expect("restart on the same port and data");
    let restarted = t0.elapsed();
    insert_ids(&writer(&srv.url()).await, db, &coll, 20..40).await;
    while !seen.contains_key(&39) {
        let d = next(&mut s)
            .await
            .expect("stream ended")
            .unwrap_or_else(|e| panic!("the reader gave up: {e}"));
        *seen.entry(id_of(&d)).or_default() += 1;
        d.ack();
    }
    let healed = t0.elapsed();
    let lost: Vec<i64> = (0..40).filter(|i| !seen.contains_key(i)).collect();
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    assert!(lost.is_empty(), "lost {lost:?}");
    // Not asserted: whether a second session was needed. The driver resumes a change
    // stream once by itself, so when mongod is back quickly enough it heals the outage
    // inside the first session (seen on a quiet machine; under load the Reconnector opens a
    // second one). What must hold either way: nothing lost, the stream never gave up.
    let sessions = r.health().sessions;
    let _ = r.close().await;
    println!(
        "mutual TLS + SCRAM across kill -9: 40 events, 0 lost, {duplicates} duplicates, \
         {sessions} session attempts, server back in {restarted:?}, all read {healed:?} after the kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_given_apart_from_the_url_log_in_and_a_wrong_one_is_refused() {
    let pki = TestPki::generate().unwrap();
    let srv = tls_mongod(&pki, false).await;
    let host = format!("localhost:{}", srv.port());
    let db = "unireader_test";
    let coll = unique("sep_creds");
    let bare = url(
        "",
        &host,
        db,
        &coll,
        &format!("&tls=true&tlsCAFile={}&authSource=admin", path(&pki.ca)),
    );
    let w = writer(&srv.url()).await;
    let connector = MongoConnector::new(
        reader_mongo::MongoConfig::from_url(&bare)
            .unwrap()
            .with_credentials(USER, PASSWORD),
    )
    .unwrap();
    assert!(!format!("{connector:?}").contains(PASSWORD));
    let r = reader_of(
        connector,
        &unique("sep_ok"),
        Arc::new(MemoryCheckpointStore::new()),
        |_| {},
    );
    let mut s = r.read(CancellationToken::new());
    until_ready(&r).await;
    insert_ids(&w, db, &coll, 0..5).await;
    for want in 0..5 {
        let d = next(&mut s).await.expect("stream ended").expect("delivery");
        assert_eq!(id_of(&d), want);
        d.ack();
    }
    let _ = r.close().await;

    let wrong = "separately-wr0ng-pw";
    let connector = MongoConnector::new(
        reader_mongo::MongoConfig::from_url(&bare)
            .unwrap()
            .with_credentials(USER, wrong),
    )
    .unwrap();
    let r = reader_of(
        connector,
        &unique("sep_bad"),
        Arc::new(MemoryCheckpointStore::new()),
        |_| {},
    );
    let mut s = r.read(CancellationToken::new());
    let e = next(&mut s)
        .await
        .expect("an error item")
        .expect_err("must fail");
    assert_eq!(
        (e.class(), e.kind()),
        (ErrorClass::Permanent, ErrorKind::Auth),
        "{e}"
    );
    let shown = format!("{e} {e:?} {:?}", r.health());
    assert!(!shown.contains(wrong), "{shown}");
    let _ = r.close().await;

    // Both in the URL and apart: refused before connecting.
    let both = reader_mongo::MongoConfig::from_url(&url(&good_user(), &host, db, &coll, ""))
        .unwrap()
        .with_credentials(USER, PASSWORD);
    let e = MongoConnector::new(both).unwrap_err();
    assert!(
        e.to_string().contains("both in the URL and separately"),
        "{e}"
    );
}

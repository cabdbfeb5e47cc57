//! rediss:// against a redis-server that requires TLS with client certificates
//! (`--tls-auth-clients yes`) and has ACL users, with throwaway certificates made at test
//! time (testkit::TestPki).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use fred::prelude::*;
use reader_core::{CancellationToken, ConnState, ErrorClass, ErrorKind, ReadError};
use testkit::{RedisOpts, Server, TestPki};

const READER_PW: &str = "reader-Pa55-word";
const LIMITED_PW: &str = "limited-Pa55-word";

struct TlsRedis {
    srv: Server,
    tls_port: u16,
    pki: TestPki,
}

/// redis-server with a plaintext port (for the test's own writer and readiness) and a TLS
/// port that requires a client certificate; ACL users `reader` (everything) and `limited`
/// (may not read streams).
async fn tls_redis() -> TlsRedis {
    let pki = TestPki::generate().unwrap();
    let tls_port = testkit::free_port().unwrap();
    let p = |f: &std::path::Path| f.display().to_string();
    let mut args: Vec<String> = vec![
        "--tls-port".into(),
        tls_port.to_string(),
        "--tls-cert-file".into(),
        p(&pki.server_cert),
        "--tls-key-file".into(),
        p(&pki.server_key),
        "--tls-ca-cert-file".into(),
        p(&pki.ca),
        "--tls-auth-clients".into(),
        "yes".into(),
    ];
    for user in [
        format!("reader on >{READER_PW} ~* &* +@all"),
        format!("limited on >{LIMITED_PW} ~* &* +@all -xreadgroup"),
    ] {
        args.push("--user".into());
        args.extend(user.split(' ').map(str::to_owned));
    }
    let srv = Server::redis(RedisOpts {
        extra_args: args,
        ..Default::default()
    })
    .await
    .expect("redis-server with TLS, client certificates and ACL users");
    TlsRedis { srv, tls_port, pki }
}

impl TlsRedis {
    /// A rediss:// URL as user `user`, with the client certificate unless `cert` is false.
    fn url(&self, host: &str, user: &str, pw: &str, key: &str, extra: &str, cert: bool) -> String {
        let mut u = format!(
            "rediss://{user}:{pw}@{host}:{}?stream={key}&group=g&consumer=c&start=0&tls_ca={}",
            self.tls_port,
            self.pki.ca.display()
        );
        if cert {
            u.push_str(&format!(
                "&tls_cert={}&tls_key={}",
                self.pki.client_cert.display(),
                self.pki.client_key.display()
            ));
        }
        u.push_str(extra);
        u
    }
}

async fn read_one(url: &str, name: &str) -> Vec<u8> {
    let r = reader(url, name, |_| {});
    let mut s = r.read(CancellationToken::new());
    let d = next(&mut s)
        .await
        .unwrap_or_else(|| panic!("{name}: stream ended"))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    d.ack();
    let payload = d.payload().to_vec();
    r.close().await;
    payload
}

/// The first item is a Permanent error, not retried; the reader ends `Failed`.
async fn refused(url: &str, name: &str) -> ReadError {
    let r = reader(url, name, |_| {});
    let mut s = r.read(CancellationToken::new());
    let e = next(&mut s)
        .await
        .unwrap_or_else(|| panic!("{name}: stream ended without an error"))
        .expect_err("must fail");
    assert_eq!(e.class(), ErrorClass::Permanent, "{name}: {e}");
    assert!(e.exhausted().is_none(), "{name}: not retried: {e}");
    assert!(next(&mut s).await.is_none(), "{name}: the stream ends");
    assert_eq!(r.state(), ConnState::Failed, "{name}");
    for secret in [READER_PW, LIMITED_PW, "wrong-Pa55"] {
        assert!(!format!("{e} {e:?}").contains(secret), "{name}: {e:?}");
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_acl_users_reads_and_every_refusal_is_permanent_and_explained() {
    let t = tls_redis().await;
    let key = unique("tls");
    let w = raw(&t.srv.host_port()).await;
    xadd(&w, &key, 1, vec![("body", Value::from("over tls"))]).await;

    // An ACL user over mutual TLS.
    let url = t.url("localhost", "reader", READER_PW, &key, "", true);
    assert_eq!(read_one(&url, "mtls").await, b"over tls");

    // The server name override: connect to 127.0.0.1, verify for another name the
    // certificate lists; a name it does not list is refused.
    let url = t.url(
        "127.0.0.1",
        "reader",
        READER_PW,
        &unique("tls"),
        "&tls_server_name=unireader.test",
        true,
    );
    let r = reader(&url, "server-name", |_| {});
    let _s = r.read(CancellationToken::new());
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        let mut t = r.transitions();
        while r.state() != ConnState::Ready {
            let _ = t.recv().await;
        }
    })
    .await;
    assert!(ready.is_ok(), "server-name: not ready: {:?}", r.health());
    r.close().await;
    let url = t.url(
        "127.0.0.1",
        "reader",
        READER_PW,
        &key,
        "&tls_server_name=elsewhere.example",
        true,
    );
    let e = refused(&url, "wrong-name").await;
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(e.to_string().contains("not valid for the name"), "{e}");

    // The system's roots (no tls_ca) and an unrelated CA do not know the test CA.
    let url = t
        .url("localhost", "reader", READER_PW, &key, "", true)
        .replace(
            &format!("tls_ca={}", t.pki.ca.display()),
            &format!("tls_ca={}", t.pki.other_ca.display()),
        );
    let e = refused(&url, "untrusted").await;
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(e.to_string().contains("not signed by a CA"), "{e}");

    // No client certificate: the server refuses the handshake.
    let url = t.url("localhost", "reader", READER_PW, &key, "", false);
    let e = refused(&url, "no-client-cert").await;
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(e.to_string().contains("client certificate"), "{e}");

    // A wrong password, and a user the ACL forbids XREADGROUP.
    let url = t.url("localhost", "reader", "wrong-Pa55", &key, "", true);
    let e = refused(&url, "wrong-password").await;
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    let url = t.url("localhost", "limited", LIMITED_PW, &key, "", true);
    let e = refused(&url, "acl-denied").await;
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(e.to_string().contains("NOPERM"), "{e}");

    // A plaintext client on the TLS port, and TLS on the plaintext port.
    let url = format!(
        "redis://reader:{READER_PW}@localhost:{}?stream={key}&group=g&consumer=c",
        t.tls_port
    );
    let r = reader(&url, "plaintext-to-tls", |c| {
        c.name = Some("plaintext-to-tls".into());
    });
    let mut s = r.read(CancellationToken::new());
    let item = tokio::time::timeout(Duration::from_secs(10), s.recv()).await;
    assert!(
        !matches!(item, Ok(Some(Ok(_)))),
        "a plaintext client must not read from the TLS port: {item:?}"
    );
    drop(s);
    r.close().await;
    let url = t
        .url("localhost", "reader", READER_PW, &key, "", true)
        .replace(&format!(":{}?", t.tls_port), &format!(":{}?", t.srv.port()));
    // The plaintext port reads the ClientHello as an unfinished inline command and never
    // answers: a (transient) timeout whose message names the likely cause.
    let url = format!("{url}&connect_timeout_ms=300");
    let r = reader(&url, "tls-to-plaintext", |_| {});
    let s = r.read(CancellationToken::new());
    let last = testkit::readers::first_error(&r, Duration::from_secs(20)).await;
    assert_eq!(last.class, ErrorClass::Transient, "{}", last.message);
    assert!(last.message.contains("plaintext port"), "{}", last.message);
    drop(s);
    r.close().await;
}

#[test]
fn tls_options_need_rediss_and_fit_together() {
    let err = |u: &str| {
        reader_redis::RedisConfig::from_url(u)
            .unwrap_err()
            .to_string()
    };
    assert!(err("redis://h?stream=k&group=g&tls_cert=/c.pem&tls_key=/k.pem").contains("rediss://"));
    assert!(err("rediss://h?stream=k&group=g&tls_cert=/c.pem").contains("`tls_key`"));
    assert!(err("rediss://h?stream=k&group=g&tls_server_name=a%20b").contains("tls_server_name"));
    let c = reader_redis::RedisConfig::from_url(
        "rediss://h?stream=k&group=g&tls_ca=/ca.pem&tls_cert=/c.pem&tls_key=/k.pem&tls_server_name=r.internal",
    )
    .unwrap();
    assert_eq!(c.tls_options.server_name.as_deref(), Some("r.internal"));
    assert_eq!(
        c.tls_options.key_file.as_deref(),
        Some(std::path::Path::new("/k.pem"))
    );
}

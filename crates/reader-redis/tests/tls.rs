//! rediss:// against a TLS redis-server with a CA made for the test.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use fred::prelude::*;
use reader_core::{CancellationToken, ErrorClass, ErrorKind};
use testkit::{RedisOpts, Server};
use tokio::time::Instant;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for localhost/127.0.0.1, in a fresh directory.
fn certificates() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("reader-redis-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=unireader-test-ca",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_reads_with_a_custom_ca_and_an_untrusted_certificate_is_permanent() {
    let certs = certificates();
    let tls_port = testkit::free_port().unwrap();
    let p = |f: &str| certs.join(f).display().to_string();
    let srv = Server::redis(RedisOpts {
        extra_args: vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            p("srv.crt"),
            "--tls-key-file".into(),
            p("srv.key"),
            "--tls-ca-cert-file".into(),
            p("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ],
        ..Default::default()
    })
    .await
    .expect("redis-server with TLS");
    let key = unique("tls");
    let w = raw(&srv.host_port()).await;
    xadd(&w, &key, 1, vec![("body", Value::from("over tls"))]).await;

    let url = format!(
        "rediss://localhost:{tls_port}?stream={key}&group=g&consumer=c&start=0&tls_ca={}",
        p("ca.crt")
    );
    let r = reader(&url, "tls", |_| {});
    let mut s = r.read(CancellationToken::new());
    let first = tokio::time::timeout(Duration::from_secs(5), s.recv()).await;
    let Ok(Some(Ok(d))) = first else {
        panic!("no entry over TLS: {first:?}; health {:?}", r.health());
    };
    assert_eq!(&d.payload()[..], b"over tls");
    d.ack();
    r.close().await;

    // The system's roots do not know the test CA: a permanent TLS error, not a retry loop.
    let url = format!("rediss://localhost:{tls_port}?stream={key}&group=g&consumer=c");
    let r = reader(&url, "tls-untrusted", |_| {});
    let t0 = Instant::now();
    let mut s = r.read(CancellationToken::new());
    let item = tokio::time::timeout(Duration::from_secs(5), s.recv()).await;
    let Ok(Some(Err(e))) = item else {
        panic!(
            "no error for an untrusted certificate: {item:?}; health {:?}",
            r.health()
        );
    };
    println!("untrusted certificate: {e} after {:?}", t0.elapsed());
    assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&certs);
}

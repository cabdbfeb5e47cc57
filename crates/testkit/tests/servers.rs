//! The testkit starts real servers and the proxy really cuts connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use testkit::{FaultProxy, MongoOpts, RedisOpts, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn ping(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"PING\r\n").await?;
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test]
async fn redis_starts_dies_and_comes_back_on_the_same_port() {
    let mut r = Server::redis(RedisOpts {
        aof: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(ping(&r.host_port()).await.unwrap(), "+PONG\r\n");
    r.kill();
    assert!(ping(&r.host_port()).await.is_err(), "killed");
    r.restart().await.unwrap();
    assert_eq!(ping(&r.host_port()).await.unwrap(), "+PONG\r\n");
}

#[tokio::test]
async fn the_proxy_forwards_cuts_refuses_and_blackholes() {
    let r = Server::redis(RedisOpts::default()).await.unwrap();
    let p = FaultProxy::start(r.host_port()).await.unwrap();
    assert_eq!(ping(p.addr()).await.unwrap(), "+PONG\r\n");

    let mut open = TcpStream::connect(p.addr()).await.unwrap();
    open.write_all(b"PING\r\n").await.unwrap();
    let mut buf = [0u8; 16];
    let n = open.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"+PONG\r\n");
    p.cut_all();
    let n = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the cut connection is closed");

    p.set_refuse(true);
    assert!(ping(p.addr()).await.map_or(true, |s| s.is_empty()));
    p.set_refuse(false);

    p.set_blackhole(true);
    let silent = tokio::time::timeout(Duration::from_millis(500), ping(p.addr())).await;
    assert!(silent.is_err(), "a black hole never answers");
    p.set_blackhole(false);
    p.cut_all();
    assert_eq!(ping(p.addr()).await.unwrap(), "+PONG\r\n");
}

#[tokio::test]
async fn mongod_replica_set_becomes_primary_and_survives_kill() {
    let mut m = Server::mongod(MongoOpts::default()).await.unwrap();
    assert!(m.url().contains("directConnection=true"));
    m.kill();
    m.restart().await.unwrap();
}

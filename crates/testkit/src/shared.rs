//! The shared servers started by `cargo xtask servers up`, passed to tests by environment.
//! A test that needs one and cannot reach it panics with a message saying how to start it:
//! it never passes by skipping.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

fn required(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: this test needs the shared servers. Run it through \
             `cargo xtask integ` (which starts them), or start them with `cargo xtask servers up` \
             and export the variables it prints."
        ),
    }
}

fn check_reachable(var: &str, host_port: &str) {
    let ok = host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    assert!(
        ok,
        "{var} points at {host_port}, which does not accept connections: is the server up? \
         (`cargo xtask servers status`)"
    );
}

fn host_port_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_owned()
}

/// `redis://127.0.0.1:P` of the shared Redis (`UNIREADER_REDIS_URL`).
#[must_use]
pub fn redis_url() -> String {
    let url = required("UNIREADER_REDIS_URL");
    check_reachable("UNIREADER_REDIS_URL", &host_port_of(&url));
    url
}

/// `mongodb://127.0.0.1:P/?directConnection=true` of the shared replica set (`UNIREADER_MONGO_URL`).
#[must_use]
pub fn mongo_url() -> String {
    let url = required("UNIREADER_MONGO_URL");
    check_reachable("UNIREADER_MONGO_URL", &host_port_of(&url));
    url
}

/// `127.0.0.1:P` of the shared Kafka-protocol broker (`UNIREADER_KAFKA_ADDR`).
#[must_use]
pub fn kafka_addr() -> String {
    let addr = required("UNIREADER_KAFKA_ADDR");
    check_reachable("UNIREADER_KAFKA_ADDR", &addr);
    addr
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_port_is_found_in_urls() {
        assert_eq!(
            super::host_port_of("redis://u:p@127.0.0.1:1/0"),
            "127.0.0.1:1"
        );
        assert_eq!(
            super::host_port_of("mongodb://127.0.0.1:2/?x=1"),
            "127.0.0.1:2"
        );
        assert_eq!(super::host_port_of("127.0.0.1:3"), "127.0.0.1:3");
    }
}

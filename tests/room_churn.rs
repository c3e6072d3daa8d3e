//! After 100,000 connections have joined rooms and left, every room is gone
//! and the server's memory is back near where it started.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::*;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Opens `n` connections at once, each pipelining its upgrade and two
/// subscribes (one shared room, one of its own), reads the acks, and leaves.
fn churn(addr: std::net::SocketAddr, start: usize, n: usize) {
    let mut conns: Vec<TcpStream> = Vec::with_capacity(n);
    for i in start..start + n {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut bytes = upgrade_request("/ws").into_bytes();
        let shared = format!(r#"{{"type":"subscribe","room":"shared-{}","id":1}}"#, i % 500);
        let own = format!(r#"{{"type":"subscribe","room":"own-{i}","id":2}}"#);
        bytes.extend(frame(true, 1, shared.as_bytes()));
        bytes.extend(frame(true, 1, own.as_bytes()));
        s.write_all(&bytes).unwrap();
        conns.push(s);
    }
    for s in conns {
        let mut raw = Raw::from_stream(s);
        assert!(raw.read_http_head().starts_with("HTTP/1.1 101"));
        for _ in 0..3 {
            // welcome, ack, ack
            let f = raw.read_frame().expect("reply");
            assert!(!String::from_utf8_lossy(&f.payload).contains("error"));
        }
    }
}

#[test]
fn memory_returns_after_a_hundred_thousand_connections_join_and_leave_rooms() {
    let server = start(&config(2, |_| {}));
    let addr = server.local_addr();
    churn(addr, 0, 2_000);
    assert!(eventually(|| server.stats().open == 0));
    let baseline = rss_kib();
    for batch in 0..98 {
        churn(addr, 2_000 + batch * 1_000, 1_000);
    }
    assert!(eventually(|| server.stats().open == 0));
    let stats = server.stats();
    assert_eq!(stats.upgraded, 100_000);
    assert_eq!(stats.rooms, 0, "empty rooms are dropped");
    assert_eq!(stats.subscriptions, 0);
    let after = rss_kib();
    let grown = after.saturating_sub(baseline);
    // 100k connections x 2 rooms each passed through; a leak of even 100
    // bytes per membership would be 20 MB.
    assert!(grown < 8 * 1024, "RSS grew {grown} KiB ({baseline} -> {after})");
}

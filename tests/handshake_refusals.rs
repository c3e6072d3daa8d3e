//! Refused upgrades over a real socket: a complete HTTP response with the
//! right status and a one-line reason, then the connection closes; an
//! unfinished request is dropped at its deadline.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn refused(request: &[u8]) -> (u16, String, String) {
    let server = start(&config(1, |_| {}));
    let mut raw = Raw::connect(server.local_addr());
    raw.send(request);
    let all = String::from_utf8(raw.read_to_end()).expect("utf-8 response");
    let (head, body) = all.split_once("\r\n\r\n").expect("complete head");
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(len, body.len(), "the whole body arrived");
    (status, head.to_string(), body.to_string())
}

fn upgrade_with(path: &str, version: &str, key: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn unknown_path_is_404() {
    let (status, _, body) = refused(&upgrade_with("/nowhere", "13", UPGRADE_KEY));
    assert_eq!(status, 404);
    assert_eq!(body.lines().count(), 1);
}

#[test]
fn post_is_405_with_allow() {
    let (status, head, _) = refused(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, 405);
    assert!(head.contains("Allow: GET"), "{head}");
}

#[test]
fn wrong_version_is_426_naming_13() {
    let (status, head, _) = refused(&upgrade_with("/echo", "8", UPGRADE_KEY));
    assert_eq!(status, 426);
    assert!(head.contains("Sec-WebSocket-Version: 13"), "{head}");
}

#[test]
fn bad_key_is_400() {
    let (status, _, body) = refused(&upgrade_with("/echo", "13", "c2hvcnQ="));
    assert_eq!(status, 400);
    assert!(body.contains("Sec-WebSocket-Key"), "{body}");
}

#[test]
fn plain_get_without_upgrade_is_400() {
    let (status, _, body) = refused(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 400);
    assert!(body.contains("Upgrade"), "{body}");
}

#[test]
fn oversized_head_is_431() {
    let mut req = b"GET /echo HTTP/1.1\r\nHost: x\r\n".to_vec();
    while req.len() < 9000 {
        req.extend_from_slice(
            b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    let (status, _, _) = refused(&req);
    assert_eq!(status, 431);
}

#[test]
fn garbage_is_400() {
    let (status, _, _) = refused(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n");
    assert_eq!(status, 400);
}

#[test]
fn unfinished_handshake_is_closed_at_its_deadline() {
    let server = start(&config(1, |c| c.handshake.timeout_ms = 300));
    let mut raw = Raw::connect(server.local_addr());
    raw.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n");
    let started = Instant::now();
    assert!(raw.expect_eof(), "closed by the server");
    // Not a timing assertion on speed: only that it was the deadline (not
    // the 10 s test read timeout) that ended it.
    assert!(started.elapsed() < Duration::from_secs(8));
    let stats = server.stats();
    assert_eq!(stats.closes(wsedge::metrics::CloseCause::HandshakeTimeout), 1);
}

fn with_origin(origin: Option<&str>) -> Vec<u8> {
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    format!(
        "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{origin}\
         Sec-WebSocket-Key: {UPGRADE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn origin_allow_list_refuses_other_sites_with_403() {
    let server = start(&config(1, |c| {
        c.security.allowed_origins = vec!["https://app.example.com".into()];
        c.security.allow_missing_origin = false;
    }));
    let status_of = |req: Vec<u8>| {
        let mut raw = Raw::connect(server.local_addr());
        raw.send(&req);
        raw.read_http_head()[9..12].to_string()
    };
    assert_eq!(status_of(with_origin(Some("https://app.example.com"))), "101");
    assert_eq!(status_of(with_origin(Some("https://evil.example.net"))), "403");
    assert_eq!(status_of(with_origin(None)), "403");
    assert_eq!(server.stats().refusals(403), 2);
}

//! A client whose last bytes and FIN arrive together (one write, then
//! `shutdown(SHUT_WR)`): the server must see the end of stream at once, not
//! when the dead-client timer (60 s by default) fires. Edge-triggered epoll
//! reports the data and the FIN in one event and never again.

mod common;

use std::io::Write;
use std::net::Shutdown;

use common::*;

/// Upgrade request and a masked text frame in one write, then FIN.
fn send_and_half_close(addr: std::net::SocketAddr, path: &str, text: &[u8]) -> Raw {
    let mut raw = Raw::connect(addr);
    let mut bytes = upgrade_request(path).into_bytes();
    bytes.extend_from_slice(&frame(true, 1, text));
    raw.sock.write_all(&bytes).expect("send");
    raw.sock.shutdown(Shutdown::Write).expect("shutdown");
    raw
}

#[test]
fn data_and_fin_in_one_event_end_the_echo_connection_at_once() {
    // The race needs the FIN to land before the server reads: try often.
    let server = start(&config(1, |_| {}));
    for i in 0..10 {
        let mut raw = send_and_half_close(server.local_addr(), "/echo", b"last words");
        let head = raw.read_http_head();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let echo = raw.read_frame().expect("the echo before the end");
        assert_eq!((echo.opcode, echo.payload.as_slice()), (1, &b"last words"[..]));
        // expect_eof waits 10 s; the dead-client deadline is 60 s.
        assert!(raw.expect_eof(), "try {i}: the server did not close after the client's FIN");
    }
}

#[test]
fn a_pubsub_client_that_leaves_with_its_last_request_leaves_its_rooms() {
    let server = start(&config(1, |_| {}));
    let mut watcher = Ps::connect(server.local_addr());
    for i in 0..10 {
        let subscribe = br#"{"type":"subscribe","room":"lobby","id":1}"#;
        let mut raw = send_and_half_close(server.local_addr(), "/ws", subscribe);
        assert!(raw.read_http_head().starts_with("HTTP/1.1 101"));
        assert!(raw.expect_eof(), "try {i}: the server did not close after the client's FIN");
        let p = watcher.request(serde_json::json!({"type": "presence", "room": "lobby"}), 2);
        assert_eq!(p["count"], 0, "try {i}: a gone client is still in the room: {p}");
    }
}

/// A client that publishes and closes in one write (`echo msg | client
/// --publish`): the publish reaches the room even though the connection is
/// gone by the time its turn ends.
#[test]
fn a_publish_followed_by_a_close_frame_in_the_same_read_is_delivered() {
    let server = start(&config(1, |_| {}));
    let mut sub = Ps::connect(server.local_addr());
    sub.subscribe("news");
    for i in 0..10 {
        let mut raw = Raw::connect(server.local_addr());
        let mut bytes = upgrade_request("/ws").into_bytes();
        let publish = format!(r#"{{"type":"publish","room":"news","data":{i}}}"#);
        bytes.extend_from_slice(&frame(true, 1, publish.as_bytes()));
        bytes.extend_from_slice(&frame(true, 8, &1000u16.to_be_bytes()));
        raw.sock.write_all(&bytes).expect("send");
        assert!(raw.read_http_head().starts_with("HTTP/1.1 101"));
        let got = sub.recv();
        assert_eq!(
            (got["type"].as_str(), got["data"].as_i64()),
            (Some("message"), Some(i)),
            "{got}"
        );
    }
}

//! Protocol violations over a real socket get the right close code, then the
//! server closes the TCP connection.

mod common;

use common::*;

fn violation(bytes: &[u8], expect: u16) {
    let server = start(&config(1, |c| {
        c.websocket.max_message_bytes = 64 * 1024;
        c.websocket.max_frame_bytes = 64 * 1024;
    }));
    let mut raw = Raw::upgrade(server.local_addr(), "/echo");
    raw.send(bytes);
    let close = raw.read_until_close().expect("a close frame");
    assert_eq!(close.close_code(), Some(expect));
    assert!(raw.expect_eof(), "the server closes TCP after failing the connection");
}

#[test]
fn invalid_utf8_text_is_1007() {
    violation(&frame(true, 1, b"ok so far \xc3\x28"), 1007);
}

#[test]
fn message_over_the_limit_is_1009() {
    violation(&frame(true, 2, &vec![0u8; 64 * 1024 + 1]), 1009);
}

#[test]
fn fragmented_message_over_the_limit_is_1009() {
    let mut bytes = frame(false, 2, &vec![0u8; 40 * 1024]);
    bytes.extend(frame(true, 0, &vec![0u8; 40 * 1024]));
    violation(&bytes, 1009);
}

#[test]
fn unmasked_frame_is_1002() {
    violation(&[0x81, 0x02, b'h', b'i'], 1002);
}

#[test]
fn reserved_bits_without_extension_are_1002() {
    let mut f = frame(true, 1, b"compressed?");
    f[0] |= 0x40;
    violation(&f, 1002);
}

#[test]
fn ping_over_125_bytes_is_1002() {
    violation(&frame(true, 9, &[0u8; 126]), 1002);
}

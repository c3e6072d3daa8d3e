//! permessage-deflate (RFC 7692) over real sockets: negotiation, compressed
//! messages both ways (whole and fragmented), the cap on inflated size, the
//! close codes for RSV1 where it does not belong, and a room message
//! compressed once per worker for every compressing subscriber. The client
//! side compresses with flate2 directly, not with the server's codec.

mod common;

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const CHROMIUM: &str = "permessage-deflate; client_max_window_bits";

fn server_with(tweak: impl FnOnce(&mut wsedge::Config)) -> wsedge::Server {
    start(&config(1, |c| {
        c.compression.enabled = true;
        c.compression.threshold_bytes = 64;
        tweak(c);
    }))
}

struct Client {
    sock: TcpStream,
    buf: Vec<u8>,
    /// The response head.
    head: String,
}

struct Frame {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr, path: &str, extensions: Option<&str>) -> Client {
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = upgrade_request(path);
        if let Some(e) = extensions {
            req = req.replace("\r\n\r\n", &format!("\r\nSec-WebSocket-Extensions: {e}\r\n\r\n"));
        }
        let mut c = Client { sock, buf: Vec::new(), head: String::new() };
        c.sock.write_all(req.as_bytes()).unwrap();
        loop {
            if let Some(i) = c.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                c.head = String::from_utf8_lossy(&c.buf[..i + 4]).into_owned();
                c.buf.drain(..i + 4);
                break;
            }
            assert!(c.fill() > 0, "EOF before the response head");
        }
        c
    }

    fn extensions(&self) -> Option<String> {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: ").map(str::to_string))
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        match self.sock.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(_) => 0,
        }
    }

    fn send_frame(&mut self, fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) {
        let mut out = Vec::new();
        frame_into(&mut out, fin, opcode, payload, [0x37, 0xfa, 0x21, 0x3d]);
        if rsv1 {
            out[0] |= 0x40;
        }
        self.sock.write_all(&out).unwrap();
    }

    fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1]);
                let (h, len) = match b1 & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (4, u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize)
                    }
                    127 if self.buf.len() >= 10 => {
                        (10, u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (2, n as usize),
                };
                if h != usize::MAX && self.buf.len() >= h + len {
                    let payload = self.buf[h..h + len].to_vec();
                    self.buf.drain(..h + len);
                    return Some(Frame {
                        fin: b0 & 0x80 != 0,
                        rsv1: b0 & 0x40 != 0,
                        opcode: b0 & 0x0f,
                        payload,
                    });
                }
            }
            if self.fill() == 0 {
                return None;
            }
        }
    }

    fn close_code(&mut self) -> Option<u16> {
        while let Some(f) = self.read_frame() {
            if f.opcode == 8 {
                return f.payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            }
        }
        None
    }
}

/// Raw deflate of one message with a sync flush, tail removed (RFC 7692 7.2.1).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new_with_window_bits(Compression::default(), false, 15);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    while c.total_in() < data.len() as u64 || out.capacity() == out.len() {
        out.reserve(data.len() + 64);
        c.compress_vec(&data[c.total_in() as usize..], &mut out, FlushCompress::Sync).unwrap();
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new_with_window_bits(false, 15);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
    out
}

fn json_text(n: usize) -> String {
    let item = r#"{"type":"tick","symbol":"ACME","price":101.25,"volume":1200},"#;
    format!("[{}]", item.repeat(n).trim_end_matches(','))
}

#[test]
fn chromium_offer_is_agreed_and_echo_is_compressed_both_ways() {
    let server = server_with(|_| {});
    let mut c = Client::connect(server.local_addr(), "/echo", Some(CHROMIUM));
    assert!(c.head.starts_with("HTTP/1.1 101"), "{}", c.head);
    assert_eq!(
        c.extensions().as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=12")
    );
    let msg = json_text(40);
    let z = deflate(msg.as_bytes());
    c.send_frame(true, true, 1, &z);
    let f = c.read_frame().expect("echo");
    assert!(f.rsv1 && f.fin && f.opcode == 1, "a large echo comes back compressed");
    assert!(f.payload.len() < msg.len() / 4, "{} bytes for {}", f.payload.len(), msg.len());
    assert_eq!(inflate(&f.payload), msg.as_bytes());
    // A small message goes as it is, compressed or not on the way in.
    c.send_frame(true, true, 1, &deflate(b"hi"));
    let f = c.read_frame().unwrap();
    assert!(!f.rsv1 && f.payload == b"hi");
    c.send_frame(true, false, 1, b"plain");
    let f = c.read_frame().unwrap();
    assert!(!f.rsv1 && f.payload == b"plain");
}

#[test]
fn a_fragmented_compressed_message_with_a_ping_inside() {
    let server = server_with(|_| {});
    let mut c = Client::connect(server.local_addr(), "/echo", Some("permessage-deflate"));
    let msg = json_text(30);
    let z = deflate(msg.as_bytes());
    let (a, rest) = z.split_at(z.len() / 3);
    let (b, d) = rest.split_at(rest.len() / 2);
    c.send_frame(false, true, 2, a);
    c.send_frame(true, false, 9, b"are you there");
    c.send_frame(false, false, 0, b);
    c.send_frame(true, false, 0, d);
    let pong = c.read_frame().unwrap();
    assert_eq!((pong.opcode, pong.payload.as_slice()), (10, &b"are you there"[..]));
    let f = c.read_frame().unwrap();
    assert_eq!(f.opcode, 2);
    assert_eq!(inflate(&f.payload), msg.as_bytes());
}

#[test]
fn clients_that_do_not_offer_it_or_servers_that_disable_it_are_unaffected() {
    let server = server_with(|_| {});
    let mut c = Client::connect(server.local_addr(), "/echo", None);
    assert_eq!(c.extensions(), None);
    let msg = json_text(40);
    c.send_frame(true, false, 1, msg.as_bytes());
    let f = c.read_frame().unwrap();
    assert!(!f.rsv1 && f.payload == msg.as_bytes());

    let off = start(&config(1, |_| {}));
    let c = Client::connect(off.local_addr(), "/echo", Some(CHROMIUM));
    assert!(c.head.starts_with("HTTP/1.1 101"));
    assert_eq!(c.extensions(), None, "off by default");
}

#[test]
fn rsv1_where_it_does_not_belong_is_1002() {
    let server = server_with(|_| {});
    // On a control frame.
    let mut c = Client::connect(server.local_addr(), "/echo", Some(CHROMIUM));
    c.send_frame(true, true, 9, b"x");
    assert_eq!(c.close_code(), Some(1002));
    // On a continuation frame.
    let mut c = Client::connect(server.local_addr(), "/echo", Some(CHROMIUM));
    c.send_frame(false, true, 1, &deflate(b"abc")[..2]);
    c.send_frame(true, true, 0, b"x");
    assert_eq!(c.close_code(), Some(1002));
    // Without the extension agreed.
    let mut c = Client::connect(server.local_addr(), "/echo", None);
    c.send_frame(true, true, 1, &deflate(b"hello"));
    assert_eq!(c.close_code(), Some(1002));
    // A new data frame inside a compressed fragmented message.
    let mut c = Client::connect(server.local_addr(), "/echo", Some(CHROMIUM));
    c.send_frame(false, true, 1, &deflate(b"abc"));
    c.send_frame(true, false, 1, b"x");
    assert_eq!(c.close_code(), Some(1002));
}

#[test]
fn a_decompression_bomb_is_stopped_at_the_limit_with_1009() {
    let server = server_with(|c| c.websocket.max_message_bytes = 1 << 20);
    let mut c = Client::connect(server.local_addr(), "/echo", Some(CHROMIUM));
    let zeros = vec![b'a'; 64 << 20];
    let z = deflate(&zeros);
    assert!(z.len() < 1 << 20, "64 MiB compresses to {} bytes", z.len());
    c.send_frame(true, true, 1, &z);
    assert_eq!(c.close_code(), Some(1009));
    // Others are not hurt.
    let mut other = Client::connect(server.local_addr(), "/echo", Some(CHROMIUM));
    other.send_frame(true, false, 1, b"still here");
    assert_eq!(other.read_frame().unwrap().payload, b"still here");
}

#[test]
fn corrupt_data_and_bad_utf8_are_1007() {
    let server = server_with(|_| {});
    let mut c = Client::connect(server.local_addr(), "/echo", Some(CHROMIUM));
    c.send_frame(true, true, 1, &[0xff; 32]);
    assert_eq!(c.close_code(), Some(1007));
    let mut c = Client::connect(server.local_addr(), "/echo", Some(CHROMIUM));
    c.send_frame(true, true, 1, &deflate(&[b'a', 0xff, 0xfe, b'b']));
    assert_eq!(c.close_code(), Some(1007));
}

#[test]
fn malformed_extension_header_is_400_and_bad_offers_are_declined() {
    let server = server_with(|_| {});
    let c = Client::connect(server.local_addr(), "/echo", Some("permessage-deflate; ;"));
    assert!(c.head.starts_with("HTTP/1.1 400"), "{}", c.head);
    let c = Client::connect(
        server.local_addr(),
        "/echo",
        Some("permessage-deflate; server_max_window_bits=99, permessage-deflate; client_no_context_takeover"),
    );
    assert_eq!(
        c.extensions().as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let c = Client::connect(server.local_addr(), "/echo", Some("permessage-deflate; x=1"));
    assert!(c.head.starts_with("HTTP/1.1 101"));
    assert_eq!(c.extensions(), None, "the only offer was declined");
}

#[test]
fn kept_contexts_are_budgeted() {
    let server = server_with(|c| c.compression.context_takeover_connections = 1);
    let a = Client::connect(server.local_addr(), "/echo", Some(CHROMIUM));
    assert!(a.extensions().is_some());
    let b = Client::connect(server.local_addr(), "/echo", Some(CHROMIUM));
    assert_eq!(b.extensions(), None, "the budget of one kept context is used");
    let nct = Client::connect(
        server.local_addr(),
        "/echo",
        Some("permessage-deflate; client_no_context_takeover"),
    );
    assert!(nct.extensions().is_some(), "no context kept: not counted");
    drop(a);
    assert!(eventually(|| {
        Client::connect(server.local_addr(), "/echo", Some(CHROMIUM)).extensions().is_some()
    }));
}

#[test]
fn a_room_message_is_compressed_once_for_all_compressing_subscribers() {
    let server = server_with(|_| {});
    let addr = server.local_addr();
    let mut subs: Vec<Client> =
        (0..3).map(|_| Client::connect(addr, "/ws", Some(CHROMIUM))).collect();
    let mut plain = Client::connect(addr, "/ws", None);
    for c in subs.iter_mut().chain(std::iter::once(&mut plain)) {
        let _welcome = c.read_frame().unwrap();
        c.send_frame(true, false, 1, br#"{"type":"subscribe","room":"z","id":1}"#);
        let ack = c.read_frame().unwrap();
        assert!(String::from_utf8_lossy(&ack.payload).contains("ack"));
    }
    let data = json_text(40);
    let publish = format!(r#"{{"type":"publish","room":"z","data":{data}}}"#);
    plain.send_frame(true, false, 1, publish.as_bytes());
    let got: Vec<Frame> = subs.iter_mut().map(|c| c.read_frame().unwrap()).collect();
    for f in &got {
        assert!(f.rsv1, "compressed for a subscriber that agreed");
        assert_eq!(f.payload, got[0].payload, "the same compressed bytes");
        let text = String::from_utf8(inflate(&f.payload)).unwrap();
        assert!(text.contains(r#""room":"z""#) && text.contains("ACME"), "{text}");
    }
    let f = plain.read_frame().unwrap();
    assert!(!f.rsv1 && String::from_utf8_lossy(&f.payload).contains("ACME"));
    let (_, metrics) = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(metrics.contains("wsedge_compressed_messages_total 1\n"), "{metrics}");
    assert!(metrics.contains("wsedge_compressed_reused_total 2\n"), "{metrics}");
}

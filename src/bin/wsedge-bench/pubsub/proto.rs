//! The pub/sub wire as the load tester speaks it (pure: bytes in, bytes
//! out): subscribe and publish requests in three dialects, and the reading
//! of what a server sends back into [`Incoming`].
//!
//! - `Json`: wsedge's `/ws` JSON (PROTOCOL.md): `subscribe` and `publish`
//!   with an `id` (so every request is acked), deliveries
//!   `{"type":"message",...,"seq":N,"data":"<ts hex16>..."}`. The sequence
//!   field may also be called `offset` (the history form; `epoch` is then
//!   ignored).
//! - `Binary`: JSON subscribe, binary publish `0x01|len|room|payload` (not
//!   acked), binary deliveries `0x02|len|room|u64 seq|u64 from|payload`.
//! - `Tcp`: the raw-TCP fan-out ceiling (`serve-tcp-fanout`): unmasked
//!   frames with a WebSocket-style 2-byte head; subscribe `'S' u32 room`,
//!   publish `'P' u32 room payload`, each answered by the text frame `A`;
//!   a delivery is the binary frame `u64 seq | payload` (74 bytes for a
//!   64-byte payload).
//!
//! Payloads start with the publish timestamp (ns since the run started):
//! 16 lowercase hex characters in JSON `data` strings, 8 bytes little
//! endian in binary payloads.

use crate::wire::{hex16, load_u64_le, push_frame, unhex16, OP_BINARY, OP_TEXT};

/// Which requests a run sends and which deliveries it expects.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dialect {
    Json,
    Binary,
    Tcp,
}

/// Request kinds of the raw-TCP ceiling protocol (first body byte).
pub const TCP_SUBSCRIBE: u8 = b'S';
pub const TCP_PUBLISH: u8 = b'P';
/// The ceiling's answer to a subscribe or publish: a text frame holding `A`.
pub const TCP_ACK: &[u8] = b"A";

/// What one server message means to the load tester.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A room delivery: its sequence number and the publish timestamp.
    Delivery { seq: u64, ts: u64 },
    /// An ack; `id` when the dialect carries one.
    Ack { id: Option<u64> },
    /// A refusal (`{"type":"error"}`), with its code and the request's id.
    Error { code: &'a str, id: Option<u64> },
    /// Anything else (welcome, presence, ...).
    Other,
    /// A message the load tester cannot read.
    Bad(&'static str),
}

/// Appends the subscribe request for `room` (`room_name` in the WebSocket
/// dialects, the index in the TCP one), acked with id 0.
pub fn push_subscribe(w: &mut Vec<u8>, d: Dialect, room: u32, room_name: &str, mask: u32) {
    match d {
        Dialect::Json | Dialect::Binary => {
            let body = format!(r#"{{"type":"subscribe","room":"{room_name}","id":0}}"#);
            push_frame(w, OP_TEXT, body.as_bytes(), mask);
        }
        Dialect::Tcp => {
            let mut b = [0u8; 5];
            b[0] = TCP_SUBSCRIBE;
            b[1..].copy_from_slice(&room.to_be_bytes());
            push_raw_frame(w, OP_BINARY, &b);
        }
    }
}

/// Builds the publish body template for `size`-byte payloads; `stamp` then
/// writes a timestamp and an id into a copy.
pub struct Publish {
    d: Dialect,
    body: Vec<u8>,
    /// Where the timestamp goes in `body`.
    ts_at: usize,
    /// Where the id digits go (JSON): 20 characters, right-aligned.
    id_at: usize,
}

/// Width of the id field in a JSON publish (u64::MAX has 20 digits).
const ID_WIDTH: usize = 20;

impl Publish {
    /// `size`: payload bytes (JSON: characters of the `data` string, at
    /// least 16; binary and TCP: at least 8).
    pub fn new(d: Dialect, room: u32, room_name: &str, size: usize) -> Publish {
        match d {
            Dialect::Json => {
                let head = format!(r#"{{"type":"publish","room":"{room_name}","data":""#);
                let mut body = head.into_bytes();
                let ts_at = body.len();
                body.extend(std::iter::repeat_n(b'x', size));
                body.extend_from_slice(br#"","id":"#);
                let id_at = body.len();
                body.extend(std::iter::repeat_n(b' ', ID_WIDTH));
                body.push(b'}');
                Publish { d, body, ts_at, id_at }
            }
            Dialect::Binary => {
                let mut body = vec![0x01, room_name.len() as u8];
                body.extend_from_slice(room_name.as_bytes());
                let ts_at = body.len();
                body.extend(std::iter::repeat_n(b'x', size));
                Publish { d, body, ts_at, id_at: 0 }
            }
            Dialect::Tcp => {
                let mut body = vec![TCP_PUBLISH];
                body.extend_from_slice(&room.to_be_bytes());
                let ts_at = body.len();
                body.extend(std::iter::repeat_n(b'x', size));
                Publish { d, body, ts_at, id_at: 0 }
            }
        }
    }

    /// Appends one publish frame stamped with `ts` and `id` (JSON only).
    pub fn push(&mut self, w: &mut Vec<u8>, ts: u64, id: u64, mask: u32) {
        match self.d {
            Dialect::Json => {
                hex16(ts, &mut self.body[self.ts_at..]);
                let field = &mut self.body[self.id_at..self.id_at + ID_WIDTH];
                // JSON allows whitespace before the closing brace.
                let digits = id.to_string();
                field.fill(b' ');
                field[..digits.len()].copy_from_slice(digits.as_bytes());
                push_frame(w, OP_TEXT, &self.body, mask);
            }
            Dialect::Binary => {
                self.body[self.ts_at..self.ts_at + 8].copy_from_slice(&ts.to_le_bytes());
                push_frame(w, OP_BINARY, &self.body, mask);
            }
            Dialect::Tcp => {
                self.body[self.ts_at..self.ts_at + 8].copy_from_slice(&ts.to_le_bytes());
                push_raw_frame(w, OP_BINARY, &self.body);
            }
        }
    }
}

/// An unmasked frame (the raw-TCP dialect, both directions).
pub fn push_raw_frame(w: &mut Vec<u8>, op: u8, body: &[u8]) {
    w.push(0x80 | op);
    if body.len() < 126 {
        w.push(body.len() as u8);
    } else if body.len() <= 0xffff {
        w.push(126);
        w.extend_from_slice(&(body.len() as u16).to_be_bytes());
    } else {
        w.push(127);
        w.extend_from_slice(&(body.len() as u64).to_be_bytes());
    }
    w.extend_from_slice(body);
}

/// Reads one complete data message (`op` text or binary).
pub fn read(d: Dialect, op: u8, msg: &[u8]) -> Incoming<'_> {
    match (d, op) {
        (Dialect::Tcp, OP_TEXT) if msg == TCP_ACK => Incoming::Ack { id: None },
        (Dialect::Tcp, OP_BINARY) => {
            if msg.len() < 16 {
                return Incoming::Bad("ceiling delivery shorter than seq + timestamp");
            }
            Incoming::Delivery { seq: be64(&msg[..8]), ts: load_u64_le(&msg[8..]) }
        }
        (Dialect::Tcp, _) => Incoming::Bad("unexpected frame from the ceiling server"),
        (_, OP_BINARY) => read_binary(msg),
        (_, _) => read_json(msg),
    }
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// `0x02 | len | room | u64 seq | u64 from | payload`.
fn read_binary(msg: &[u8]) -> Incoming<'_> {
    if msg.first() != Some(&0x02) || msg.len() < 2 {
        return Incoming::Bad("binary message that is not a delivery (0x02)");
    }
    let p = 2 + usize::from(msg[1]);
    if msg.len() < p + 16 + 8 {
        return Incoming::Bad("binary delivery shorter than its head and timestamp");
    }
    Incoming::Delivery { seq: be64(&msg[p..]), ts: load_u64_le(&msg[p + 16..]) }
}

/// The value after `"key":` at the top level of a flat object, as raw bytes
/// up to the next `,` or `}` (strings keep their quotes). The load tester's
/// own payloads hold no quotes, so a plain search cannot match inside them.
fn field<'a>(msg: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut at = 0;
    while let Some(i) = find(&msg[at..], key) {
        let k = at + i;
        at = k + key.len();
        // `"key"` followed by optional spaces and a colon.
        if k == 0 || msg[k - 1] != b'"' || msg.get(at) != Some(&b'"') {
            continue;
        }
        let mut v = at + 1;
        while msg.get(v) == Some(&b' ') {
            v += 1;
        }
        if msg.get(v) != Some(&b':') {
            continue;
        }
        v += 1;
        while msg.get(v) == Some(&b' ') {
            v += 1;
        }
        let rest = &msg[v..];
        let end = if rest.first() == Some(&b'"') {
            1 + rest[1..].iter().position(|&c| c == b'"')? + 1
        } else {
            rest.iter().position(|&c| c == b',' || c == b'}').unwrap_or(rest.len())
        };
        return Some(rest[..end].trim_ascii());
    }
    None
}

/// `memchr`'s substring search: the naive `windows().position()` (one
/// `memcmp` call per byte) was 78% of the load tester's CPU in a 1 x 1,000
/// JSON fan-out, enough to make it the limit.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn number(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn string(v: &[u8]) -> Option<&[u8]> {
    v.strip_prefix(b"\"")?.strip_suffix(b"\"")
}

fn read_json(msg: &[u8]) -> Incoming<'_> {
    let Some(kind) = field(msg, b"type").and_then(string) else {
        return Incoming::Bad("text message without a \"type\" string");
    };
    match kind {
        b"message" => {
            let seq = field(msg, b"offset").or_else(|| field(msg, b"seq")).and_then(number);
            let Some(seq) = seq else {
                return Incoming::Bad("message without a numeric \"offset\" or \"seq\"");
            };
            let ts = field(msg, b"data").and_then(string).and_then(unhex16);
            match ts {
                Some(ts) => Incoming::Delivery { seq, ts },
                None => Incoming::Bad("message whose data is not the load tester's payload"),
            }
        }
        b"ack" => Incoming::Ack { id: field(msg, b"id").and_then(number) },
        b"error" => {
            let code = field(msg, b"code").and_then(string).unwrap_or(b"?");
            let id = field(msg, b"id").and_then(number);
            Incoming::Error { code: std::str::from_utf8(code).unwrap_or("?"), id }
        }
        _ => Incoming::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{apply_mask, parse_frame, FrameHead};

    /// The payload of the one masked frame in `w`, unmasked.
    fn unmask(w: &[u8]) -> Vec<u8> {
        let mut server = w.to_vec();
        server[1] &= 0x7f;
        let hlen = match server[1] {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let mask = [w[hlen], w[hlen + 1], w[hlen + 2], w[hlen + 3]];
        let mut p = w[hlen + 4..].to_vec();
        apply_mask(&mut p, mask);
        p
    }

    #[test]
    fn json_publish_is_valid_json_with_timestamp_and_id() {
        let mut p = Publish::new(Dialect::Json, 3, "run-3", 64);
        for (ts, id) in [(0xabc, 1), (u64::MAX, u64::MAX), (7, 42)] {
            let mut w = Vec::new();
            p.push(&mut w, ts, id, 0x1234_5678);
            let body = unmask(&w);
            let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
            assert_eq!(v["type"], "publish");
            assert_eq!(v["room"], "run-3");
            assert_eq!(v["id"].as_u64(), Some(id));
            let data = v["data"].as_str().expect("data string");
            assert_eq!(data.len(), 64);
            assert_eq!(unhex16(data.as_bytes()), Some(ts));
        }
    }

    #[test]
    fn subscribe_requests() {
        let mut w = Vec::new();
        push_subscribe(&mut w, Dialect::Json, 1, "a-1", 9);
        let v: serde_json::Value = serde_json::from_slice(&unmask(&w)).expect("json");
        assert_eq!(
            (v["type"].as_str(), v["room"].as_str(), v["id"].as_u64()),
            (Some("subscribe"), Some("a-1"), Some(0))
        );
        let mut w = Vec::new();
        push_subscribe(&mut w, Dialect::Tcp, 258, "", 0);
        assert_eq!(w, [0x82, 5, b'S', 0, 0, 1, 2]);
    }

    #[test]
    fn deliveries_in_every_dialect() {
        let mut data = [b'x'; 64];
        hex16(12345, &mut data);
        let data = std::str::from_utf8(&data).expect("ascii");
        let wsedge = format!(
            r#"{{"type":"message","room":"r","from":"4000000400003","seq":42,"data":"{data}"}}"#
        );
        assert_eq!(
            read(Dialect::Json, OP_TEXT, wsedge.as_bytes()),
            Incoming::Delivery { seq: 42, ts: 12345 }
        );
        // The history form: `offset` (and `epoch`) instead of `seq`, any order.
        let hist = format!(
            r#"{{"data":"{data}","epoch":7,"offset": 43,"type":"message","room":"r","from":null}}"#
        );
        assert_eq!(
            read(Dialect::Json, OP_TEXT, hist.as_bytes()),
            Incoming::Delivery { seq: 43, ts: 12345 }
        );
        let no_seq = format!(r#"{{"type":"message","room":"r","data":"{data}"}}"#);
        assert!(matches!(read(Dialect::Json, OP_TEXT, no_seq.as_bytes()), Incoming::Bad(_)));

        let mut bin = vec![0x02, 2, b'r', b'1'];
        bin.extend_from_slice(&9u64.to_be_bytes());
        bin.extend_from_slice(&77u64.to_be_bytes());
        bin.extend_from_slice(&555u64.to_le_bytes());
        bin.extend_from_slice(&[0; 56]);
        assert_eq!(read(Dialect::Binary, OP_BINARY, &bin), Incoming::Delivery { seq: 9, ts: 555 });
        assert!(matches!(read(Dialect::Binary, OP_BINARY, &bin[..20]), Incoming::Bad(_)));

        let mut tcp = Vec::new();
        tcp.extend_from_slice(&5u64.to_be_bytes());
        tcp.extend_from_slice(&66u64.to_le_bytes());
        tcp.extend_from_slice(&[0; 56]);
        assert_eq!(tcp.len() + 2, 74, "the ceiling's 74-byte frame");
        assert_eq!(read(Dialect::Tcp, OP_BINARY, &tcp), Incoming::Delivery { seq: 5, ts: 66 });
        assert_eq!(read(Dialect::Tcp, OP_TEXT, TCP_ACK), Incoming::Ack { id: None });
    }

    #[test]
    fn acks_errors_and_others() {
        assert_eq!(
            read(Dialect::Json, OP_TEXT, br#"{"type":"ack","id":17}"#),
            Incoming::Ack { id: Some(17) }
        );
        assert_eq!(
            read(
                Dialect::Json,
                OP_TEXT,
                br#"{"type":"error","id":3,"code":"rate_limited","message":"x"}"#
            ),
            Incoming::Error { code: "rate_limited", id: Some(3) }
        );
        assert_eq!(
            read(Dialect::Json, OP_TEXT, br#"{"type":"welcome","conn_id":"3"}"#),
            Incoming::Other
        );
        assert!(matches!(read(Dialect::Json, OP_TEXT, b"not json"), Incoming::Bad(_)));
    }

    #[test]
    fn tcp_publish_frames_parse_as_frames() {
        let mut p = Publish::new(Dialect::Tcp, 7, "", 64);
        let mut w = Vec::new();
        p.push(&mut w, 99, 0, 0);
        match parse_frame(&w) {
            FrameHead::Ok { op, hlen, plen, .. } => {
                assert_eq!((op, hlen, plen), (OP_BINARY, 2, 69));
                assert_eq!(&w[2..7], &[b'P', 0, 0, 0, 7]);
                assert_eq!(load_u64_le(&w[7..]), 99);
            }
            other => panic!("{other:?}"),
        }
    }
}

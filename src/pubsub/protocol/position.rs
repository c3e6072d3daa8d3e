//! Room positions on the wire: the [`Epoch`] and the `since` a client sends
//! to recover, the `limit` of a `history` request, and the frames that carry
//! a position (the `ack` of a `subscribe`, the `history` reply).
//!
//! A position is `(offset, epoch)`: `offset` is the last offset published in
//! the room (each message gets the next one, starting at 1) and `epoch` names
//! the room's current run of offsets. Offsets from two epochs are unrelated.

use std::fmt;
use std::fmt::Write as _;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{format_conn_id, safe_integer, text_frame, ErrorCode, ProtoError};

/// Largest `limit` of a `history` request.
pub const MAX_HISTORY_LIMIT: usize = 10_000;

/// The name of one run of a room's offsets: 32 random bits, written as 8
/// lowercase hex digits. A room gets a new epoch whenever its offsets start
/// again (its state was new, lost or expired).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Epoch(pub u32);

impl Epoch {
    /// Parses exactly 8 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Epoch> {
        let ok = s.len() == 8 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !ok {
            return None;
        }
        u32::from_str_radix(s, 16).ok().map(Epoch)
    }

    /// The 8 lowercase hex digits, without `fmt`.
    pub fn hex(self) -> [u8; 8] {
        let mut out = [0u8; 8];
        for (i, b) in out.iter_mut().enumerate() {
            *b = b"0123456789abcdef"[((self.0 >> (28 - 4 * i)) & 15) as usize];
        }
        out
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.hex()).unwrap_or("00000000"))
    }
}

/// Where a client was: the last offset it saw, in `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Since {
    /// Last offset seen (0: none).
    pub offset: u64,
    /// The epoch of that offset.
    pub epoch: Epoch,
}

#[derive(Deserialize)]
struct SinceFields<'a> {
    #[serde(borrow)]
    offset: Option<&'a RawValue>,
    #[serde(borrow)]
    epoch: Option<&'a RawValue>,
}

/// A non-negative integer within 2^53 - 1, written plainly.
fn count(raw: &RawValue) -> Option<u64> {
    let text = raw.get();
    (!text.starts_with('-') && safe_integer(text)).then(|| text.parse().ok()).flatten()
}

/// `since`: absent or `null` is `None`; otherwise an object with `offset`
/// (an integer 0..=2^53-1) and `epoch` (8 lowercase hex digits), else
/// `bad_field`.
pub(super) fn since_field(
    id: Option<&RawValue>,
    raw: Option<&RawValue>,
) -> Result<Option<Since>, ProtoError> {
    let Some(raw) = raw.filter(|r| r.get() != "null") else { return Ok(None) };
    let bad = |what: &str| {
        let m = format!("`since` must be {{\"offset\":N,\"epoch\":\"E\"}}: {what}");
        ProtoError::new(id, ErrorCode::BadField, m)
    };
    let fields: SinceFields = serde_json::from_str(raw.get()).map_err(|_| bad("not an object"))?;
    let offset = fields
        .offset
        .and_then(count)
        .ok_or_else(|| bad("`offset` must be an integer from 0 to 9007199254740991"))?;
    let epoch = fields
        .epoch
        .and_then(|e| serde_json::from_str::<&str>(e.get()).ok())
        .and_then(Epoch::parse)
        .ok_or_else(|| bad("`epoch` must be 8 lowercase hex digits"))?;
    Ok(Some(Since { offset, epoch }))
}

/// `limit` of a `history` request: required, an integer 0..=10000.
pub(super) fn limit_field(
    id: Option<&RawValue>,
    raw: Option<&RawValue>,
) -> Result<usize, ProtoError> {
    let raw =
        raw.ok_or_else(|| ProtoError::new(id, ErrorCode::MissingField, "missing field `limit`"))?;
    count(raw).filter(|&n| n <= MAX_HISTORY_LIMIT as u64).map(|n| n as usize).ok_or_else(|| {
        let m = format!("`limit` must be an integer from 0 to {MAX_HISTORY_LIMIT}");
        ProtoError::new(id, ErrorCode::BadField, m)
    })
}

/// The `ack` of a subscribe, with the room's position:
/// `{"type":"ack","id":...,"room":"...","offset":N,"epoch":"...","recovered":bool}`.
/// `id` (raw JSON) is left out when `None`, `recovered` when the subscribe
/// had no `since`. `room` must be valid (no escaping needed).
pub fn subscribed(
    id: Option<&str>,
    room: &str,
    offset: u64,
    epoch: Epoch,
    recovered: Option<bool>,
) -> bytes::Bytes {
    let mut s = String::with_capacity(96 + room.len());
    s.push_str(r#"{"type":"ack""#);
    if let Some(id) = id {
        let _ = write!(s, r#","id":{id}"#);
    }
    let _ = write!(s, r#","room":"{room}","offset":{offset},"epoch":"{epoch}""#);
    if let Some(r) = recovered {
        let _ = write!(s, r#","recovered":{r}"#);
    }
    s.push('}');
    text_frame(s)
}

/// What a stored message holds, for a `history` reply.
#[derive(Clone, Copy, Debug)]
pub enum Body<'a> {
    /// Raw JSON `data`.
    Json(&'a str),
    /// A binary payload (base64 in the reply).
    Binary(&'a [u8]),
}

/// Appends one entry of a `history` reply's `messages` to `out`:
/// `{"offset":N,"from":"..."|null,"data":...}` or, for a binary message,
/// `{"offset":N,"from":...,"binary":"<base64>"}`.
pub fn history_item(out: &mut String, offset: u64, from: Option<u64>, body: Body<'_>) {
    let _ = write!(out, r#"{{"offset":{offset},"from":"#);
    match from {
        Some(id) => {
            let _ = write!(out, "\"{}\"", format_conn_id(id));
        }
        None => out.push_str("null"),
    }
    match body {
        Body::Json(data) => {
            let _ = write!(out, r#","data":{data}}}"#);
        }
        Body::Binary(payload) => {
            out.push_str(r#","binary":""#);
            base64::engine::general_purpose::STANDARD.encode_string(payload, out);
            out.push_str("\"}");
        }
    }
}

/// The reply to `history`:
/// `{"type":"history","id":...,"room":"...","offset":N,"epoch":"...","messages":[...],"truncated":bool}`,
/// `items` written by [`history_item`], oldest first.
pub fn history(
    id: Option<&str>,
    room: &str,
    offset: u64,
    epoch: Epoch,
    items: &[String],
    truncated: bool,
) -> bytes::Bytes {
    let len: usize = items.iter().map(|i| i.len() + 1).sum();
    let mut s = String::with_capacity(128 + room.len() + len);
    s.push_str(r#"{"type":"history""#);
    if let Some(id) = id {
        let _ = write!(s, r#","id":{id}"#);
    }
    let _ = write!(s, r#","room":"{room}","offset":{offset},"epoch":"{epoch}","messages":["#);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(item);
    }
    let _ = write!(s, r#"],"truncated":{truncated}}}"#);
    text_frame(s)
}

/// A room's position changed under a live subscription and messages may have
/// been missed (the cluster's backplane lost them, or the room's position was
/// lost): `{"type":"gap","room":"...","offset":N,"epoch":"..."}`. Live
/// messages go on from `offset + 1` in `epoch`.
pub fn gap(room: &str, offset: u64, epoch: Epoch) -> bytes::Bytes {
    let mut s = String::with_capacity(64 + room.len());
    let _ = write!(s, r#"{{"type":"gap","room":"{room}","offset":{offset},"epoch":"{epoch}"}}"#);
    text_frame(s)
}

#[cfg(test)]
mod tests {
    use super::super::{format_conn_id, frame, message, parse_text, OpData, Request};
    use super::*;

    fn json(frame: &[u8]) -> serde_json::Value {
        let (at, len) = match frame[1] {
            126 => (4, u16::from_be_bytes([frame[2], frame[3]]) as usize),
            n => (2, n as usize),
        };
        serde_json::from_slice(&frame[at..at + len]).expect("valid JSON")
    }

    #[test]
    fn a_gap_names_the_room_and_the_new_position() {
        let v = json(&gap("chat", 7, Epoch(0xab)));
        assert_eq!(
            v,
            serde_json::json!({"type":"gap","room":"chat","offset":7,"epoch":"000000ab"})
        );
    }

    #[test]
    fn epochs_are_8_lowercase_hex_digits() {
        assert_eq!(Epoch::parse("9f1c2a7b"), Some(Epoch(0x9f1c_2a7b)));
        assert_eq!(Epoch(0xab).to_string(), "000000ab");
        for bad in ["", "9f1c2a7", "9f1c2a7b0", "9F1C2A7B", "9f1c2a7g", "+f1c2a7b", " f1c2a7b"] {
            assert_eq!(Epoch::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn subscribe_with_since_and_history_parse() {
        let r = parse_text(
            r#"{"type":"subscribe","room":"a","since":{"offset":41,"epoch":"9f1c2a7b"},"id":1}"#,
            10,
        )
        .unwrap();
        let want = Some(Since { offset: 41, epoch: Epoch(0x9f1c_2a7b) });
        assert!(matches!(r, Request::Subscribe { since, .. } if since == want));
        let r = parse_text(r#"{"type":"subscribe","room":"a","since":null}"#, 10).unwrap();
        assert!(matches!(r, Request::Subscribe { since: None, .. }));
        let r = parse_text(r#"{"type":"history","room":"a","limit":10000}"#, 10).unwrap();
        assert!(matches!(r, Request::History { limit: 10000, since: None, .. }));
    }

    #[test]
    fn malformed_since_and_limit_are_bad_fields_with_the_id() {
        for (req, code) in [
            (r#"{"type":"subscribe","room":"a","since":5}"#, ErrorCode::BadField),
            (
                r#"{"type":"subscribe","room":"a","since":{"epoch":"9f1c2a7b"}}"#,
                ErrorCode::BadField,
            ),
            (
                r#"{"type":"subscribe","room":"a","since":{"offset":-1,"epoch":"9f1c2a7b"}}"#,
                ErrorCode::BadField,
            ),
            (
                r#"{"type":"subscribe","room":"a","since":{"offset":1.5,"epoch":"9f1c2a7b"}}"#,
                ErrorCode::BadField,
            ),
            (
                r#"{"type":"subscribe","room":"a","since":{"offset":9007199254740992,"epoch":"9f1c2a7b"}}"#,
                ErrorCode::BadField,
            ),
            (
                r#"{"type":"subscribe","room":"a","since":{"offset":1,"epoch":"XYZ"}}"#,
                ErrorCode::BadField,
            ),
            (
                r#"{"type":"subscribe","room":"a","since":{"offset":1,"epoch":12345678}}"#,
                ErrorCode::BadField,
            ),
            (r#"{"type":"history","room":"a"}"#, ErrorCode::MissingField),
            (r#"{"type":"history","room":"a","limit":-1}"#, ErrorCode::BadField),
            (r#"{"type":"history","room":"a","limit":1000000000}"#, ErrorCode::BadField),
            (r#"{"type":"history","room":"a","limit":10001}"#, ErrorCode::BadField),
            (r#"{"type":"history","room":"a","limit":"5"}"#, ErrorCode::BadField),
            (r#"{"type":"history","room":"a","limit":2e3}"#, ErrorCode::BadField),
        ] {
            let with_id = req.replacen('{', r#"{"id":"q","#, 1);
            let e = parse_text(&with_id, 10).expect_err(req);
            assert_eq!(e.code, code, "{req}: {}", e.message);
            assert_eq!(e.id.as_deref(), Some("\"q\""), "{req}");
        }
    }

    #[test]
    fn position_frames_are_the_documented_json() {
        let v = json(&subscribed(Some("1"), "chat:lobby", 41, Epoch(0x9f1c_2a7b), None));
        assert_eq!(
            v,
            serde_json::json!({"type":"ack","id":1,"room":"chat:lobby","offset":41,"epoch":"9f1c2a7b"})
        );
        let v = json(&subscribed(None, "r", 0, Epoch(1), Some(true)));
        assert_eq!(
            v,
            serde_json::json!({"type":"ack","room":"r","offset":0,"epoch":"00000001","recovered":true})
        );
        let mut a = String::new();
        history_item(&mut a, 7, Some(0xab), Body::Json(r#"{"x":1}"#));
        let mut b = String::new();
        history_item(&mut b, 8, None, Body::Binary(&[0, 255, 7]));
        let v = json(&history(Some("\"h\""), "r", 8, Epoch(2), &[a, b], true));
        assert_eq!(
            v,
            serde_json::json!({"type":"history","id":"h","room":"r","offset":8,"epoch":"00000002",
                "messages":[{"offset":7,"from":"ab","data":{"x":1}},
                            {"offset":8,"from":null,"binary":"AP8H"}],
                "truncated":true})
        );
    }

    #[test]
    fn a_message_is_the_documented_json_whatever_its_numbers() {
        for (from, offset) in
            [(None, 0), (Some(0), 1), (Some(0x4000000400003), 42), (Some(u64::MAX), u64::MAX)]
        {
            let data = "x".repeat(offset as usize % 300);
            let data = format!("\"{data}\"");
            let f = message("chat:lobby", from, offset, Epoch(0x9f1c_2a7b), &data);
            let want = format!(
                r#"{{"type":"message","room":"chat:lobby","from":{},"offset":{offset},"epoch":"9f1c2a7b","data":{data}}}"#,
                from.map_or("null".to_string(), |f| format!("\"{}\"", format_conn_id(f)))
            );
            assert_eq!(f, frame(OpData::Text, want.as_bytes()), "{want}");
        }
        let long = format!("\"{}\"", "y".repeat(70_000));
        let f = message("r", Some(1), 7, Epoch(1), &long);
        assert_eq!(f[1], 127, "a 64-bit length header");
        let want = format!(
            r#"{{"type":"message","room":"r","from":"1","offset":7,"epoch":"00000001","data":{long}}}"#
        );
        assert_eq!(f, frame(OpData::Text, want.as_bytes()));
    }
}

//! The application protocol on `/ws`, sans-IO: parsing client requests (JSON
//! text and the compact binary form) into [`Request`]s or [`ProtoError`]s with
//! stable codes, and encoding server messages as complete, unmasked WebSocket
//! frames ready to be queued (once) to any number of subscribers.
//!
//! See PROTOCOL.md for the wire format with an example of every message.
//! This module must not touch sockets, rooms or connections.

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tungstenite::protocol::frame::FrameHeader;

mod numbers;
mod position;

pub use position::{gap, history, history_item, subscribed, Body, Epoch, Since, MAX_HISTORY_LIMIT};

/// Longest room name, bytes.
pub const MAX_ROOM_BYTES: usize = 128;

/// Longest string request `id`, bytes of UTF-8 after unescaping.
pub const MAX_ID_BYTES: usize = 64;

/// Largest magnitude of an integer request `id`: 2^53 - 1, the largest
/// integer every JSON parser reads back exactly (JavaScript's
/// `Number.MAX_SAFE_INTEGER`).
pub const MAX_ID_INT: u64 = (1 << 53) - 1;

/// Binary client message: publish to a room.
pub const BIN_PUBLISH: u8 = 0x01;
/// Binary server message: a delivery from a room.
pub const BIN_MESSAGE: u8 = 0x02;

/// Stable error codes sent in `error` messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not JSON, or not a JSON object.
    BadJson,
    /// `type` names no known request.
    UnknownType,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong JSON type or an invalid value.
    BadField,
    /// A room name is empty, too long or has characters outside the set.
    BadRoom,
    /// `data` (or a binary payload) is over the size limit.
    TooLarge,
    /// The connection is in the maximum number of rooms.
    TooManyRooms,
    /// The room has the maximum number of subscribers.
    RoomFull,
    /// `unsubscribe` of a room the connection is not in.
    NotSubscribed,
    /// `send` to a connection id that does not exist.
    NotFound,
    /// A binary message that is not a valid publish.
    BadBinary,
    /// The credential does not allow this action.
    Forbidden,
    /// Over a rate limit; the message was dropped.
    RateLimited,
    /// Another worker did not answer a query in time.
    Timeout,
    /// The cluster's backplane has too much waiting; the publish was
    /// dropped (try again later).
    Overloaded,
    /// The cluster's backplane (Redis) cannot be reached; the request needs
    /// it.
    Unavailable,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::BadField => "bad_field",
            ErrorCode::BadRoom => "bad_room",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::NotFound => "not_found",
            ErrorCode::BadBinary => "bad_binary",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

/// A refused request: the `error` reply to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtoError {
    /// The request's `id`, raw JSON, when it could be read.
    pub id: Option<String>,
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable, one line.
    pub message: Cow<'static, str>,
}

impl ProtoError {
    /// An error for request `id`.
    pub fn new(
        id: Option<&RawValue>,
        code: ErrorCode,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        ProtoError { id: id.map(|v| v.get().to_string()), code, message: message.into() }
    }
}

/// A valid client request. Borrowed from the message bytes.
#[derive(Debug)]
pub enum Request<'a> {
    /// Join a room, recovering what was missed after `since`.
    Subscribe {
        /// Request id (raw JSON).
        id: Option<&'a RawValue>,
        /// Room name (validated).
        room: Cow<'a, str>,
        /// The position the client had, to recover from.
        since: Option<Since>,
    },
    /// Ask for a room's stored messages and position.
    History {
        /// Request id (raw JSON).
        id: Option<&'a RawValue>,
        /// Room name (validated).
        room: Cow<'a, str>,
        /// Most messages in the reply (0..=[`MAX_HISTORY_LIMIT`]).
        limit: usize,
        /// Only messages after this position.
        since: Option<Since>,
    },
    /// Leave a room.
    Unsubscribe {
        /// Request id (raw JSON).
        id: Option<&'a RawValue>,
        /// Room name (validated).
        room: Cow<'a, str>,
    },
    /// Publish JSON `data` to a room.
    Publish {
        /// Request id (raw JSON).
        id: Option<&'a RawValue>,
        /// Room name (validated).
        room: Cow<'a, str>,
        /// Any JSON value, raw.
        data: &'a str,
    },
    /// Send JSON `data` to one connection.
    Send {
        /// Request id (raw JSON).
        id: Option<&'a RawValue>,
        /// Target connection id.
        to: u64,
        /// Any JSON value, raw.
        data: &'a str,
    },
    /// Ask for a room's members.
    Presence {
        /// Request id (raw JSON).
        id: Option<&'a RawValue>,
        /// Room name (validated).
        room: Cow<'a, str>,
    },
    /// Publish raw bytes to a room (binary form).
    PublishBinary {
        /// Room name (validated).
        room: &'a str,
        /// The payload.
        payload: &'a [u8],
    },
}

impl Request<'_> {
    /// The request id, raw JSON.
    pub fn id(&self) -> Option<&RawValue> {
        match self {
            Request::Subscribe { id, .. }
            | Request::Unsubscribe { id, .. }
            | Request::Publish { id, .. }
            | Request::Send { id, .. }
            | Request::Presence { id, .. }
            | Request::History { id, .. } => *id,
            Request::PublishBinary { .. } => None,
        }
    }
}

/// Checks a room name: 1..=128 bytes of `A-Z a-z 0-9 _ - . : @ /`.
pub fn valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= MAX_ROOM_BYTES
        && room.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:@/".contains(&b))
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    room: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    to: Option<&'a RawValue>,
    #[serde(borrow)]
    since: Option<&'a RawValue>,
    #[serde(borrow)]
    limit: Option<&'a RawValue>,
}

fn string_field<'a>(
    id: Option<&RawValue>,
    name: &'static str,
    raw: Option<&'a RawValue>,
) -> Result<Cow<'a, str>, ProtoError> {
    let raw = raw.ok_or_else(|| {
        ProtoError::new(id, ErrorCode::MissingField, format!("missing field `{name}`"))
    })?;
    serde_json::from_str::<Cow<'a, str>>(raw.get())
        .map_err(|_| ProtoError::new(id, ErrorCode::BadField, format!("`{name}` must be a string")))
}

fn room_field<'a>(
    id: Option<&RawValue>,
    raw: Option<&'a RawValue>,
) -> Result<Cow<'a, str>, ProtoError> {
    let room = string_field(id, "room", raw)?;
    if !valid_room(&room) {
        return Err(ProtoError::new(
            id,
            ErrorCode::BadRoom,
            "room must be 1-128 bytes of A-Z a-z 0-9 _ - . : @ /",
        ));
    }
    Ok(room)
}

fn data_field<'a>(
    id: Option<&RawValue>,
    raw: Option<&'a RawValue>,
    max_data: usize,
) -> Result<&'a str, ProtoError> {
    let data = raw.map_or("null", |r| r.get());
    if data.len() > max_data {
        return Err(ProtoError::new(
            id,
            ErrorCode::TooLarge,
            format!("data is {} bytes, over the limit of {max_data}", data.len()),
        ));
    }
    if let Some(number) = numbers::out_of_range_number(data) {
        let shown: String = number.chars().take(32).collect();
        let more = if shown.len() < number.len() { "..." } else { "" };
        return Err(ProtoError::new(
            id,
            ErrorCode::BadField,
            format!("`data` has a number out of the range of a 64-bit float: {shown}{more}"),
        ));
    }
    Ok(data)
}

/// Parses a JSON text request. `max_data` bounds the raw `data` value, which
/// is refused (`bad_field`) if it has a number that is not finite as an f64.
pub fn parse_text(text: &str, max_data: usize) -> Result<Request<'_>, ProtoError> {
    let env: Envelope = serde_json::from_str(text).map_err(|e| {
        ProtoError::new(
            None,
            ErrorCode::BadJson,
            format!("not a JSON object: {}", e.classify_str()),
        )
    })?;
    let id = checked_id(env.id)?;
    let ty = string_field(id, "type", env.ty)?;
    match ty.as_ref() {
        "subscribe" => {
            let room = room_field(id, env.room)?;
            let since = position::since_field(id, env.since)?;
            Ok(Request::Subscribe { id, room, since })
        }
        "history" => {
            let room = room_field(id, env.room)?;
            let limit = position::limit_field(id, env.limit)?;
            let since = position::since_field(id, env.since)?;
            Ok(Request::History { id, room, limit, since })
        }
        "unsubscribe" => Ok(Request::Unsubscribe { id, room: room_field(id, env.room)? }),
        "presence" => Ok(Request::Presence { id, room: room_field(id, env.room)? }),
        "publish" => {
            let room = room_field(id, env.room)?;
            let data = data_field(id, env.data, max_data)?;
            Ok(Request::Publish { id, room, data })
        }
        "send" => {
            let to = string_field(id, "to", env.to)?;
            let to = parse_conn_id(&to).ok_or_else(|| {
                ProtoError::new(id, ErrorCode::BadField, "`to` must be a connection id")
            })?;
            let data = data_field(id, env.data, max_data)?;
            Ok(Request::Send { id, to, data })
        }
        other => {
            let shown: String = other.chars().take(32).collect();
            Err(ProtoError::new(id, ErrorCode::UnknownType, format!("unknown type `{shown}`")))
        }
    }
}

/// Accepts a request `id` only if every client can parse it back when it is
/// echoed raw: a JSON string of at most [`MAX_ID_BYTES`] bytes (its escapes
/// valid, so no lone surrogate), or an integer within +-[`MAX_ID_INT`] with
/// no fraction, exponent or negative zero. Anything else (`1e3`, `1.5`,
/// `1550e5555555555555555555555`, `true`, objects, arrays, long strings) is
/// refused with `bad_field`, and that error carries no `id`: echoing it is
/// what would make the reply unreadable.
fn checked_id(id: Option<&RawValue>) -> Result<Option<&RawValue>, ProtoError> {
    let Some(raw) = id else { return Ok(None) };
    let text = raw.get();
    let ok = if text.starts_with('"') {
        serde_json::from_str::<Cow<str>>(text).is_ok_and(|s| s.len() <= MAX_ID_BYTES)
    } else {
        safe_integer(text)
    };
    if ok {
        Ok(Some(raw))
    } else {
        Err(ProtoError::new(
            None,
            ErrorCode::BadField,
            "`id` must be a string of at most 64 bytes or an integer within +-(2^53-1)",
        ))
    }
}

/// True for `-?(0|[1-9][0-9]*)` with a magnitude of at most [`MAX_ID_INT`],
/// except `-0`.
pub(super) fn safe_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && !(digits == "0" && text.starts_with('-'));
    // At most 16 digits fit u64 without overflow; 2^53 - 1 has 16.
    canonical && digits.len() <= 16 && digits.parse::<u64>().is_ok_and(|v| v <= MAX_ID_INT)
}

trait Classify {
    fn classify_str(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Eof => "unexpected end",
            serde_json::error::Category::Data => "expected an object",
            serde_json::error::Category::Io => "read error",
        }
    }
}

/// Parses a binary request: `0x01, room length (1 byte), room, payload`.
pub fn parse_binary(bytes: &[u8], max_data: usize) -> Result<Request<'_>, ProtoError> {
    let bad = |m: &'static str| ProtoError::new(None, ErrorCode::BadBinary, m);
    let (&kind, rest) = bytes.split_first().ok_or_else(|| bad("empty binary message"))?;
    if kind != BIN_PUBLISH {
        return Err(bad("unknown binary message kind (expected 0x01 publish)"));
    }
    let (&len, rest) = rest.split_first().ok_or_else(|| bad("missing room length"))?;
    let len = len as usize;
    if rest.len() < len {
        return Err(bad("room length past the end of the message"));
    }
    let room = std::str::from_utf8(&rest[..len]).map_err(|_| bad("room is not UTF-8"))?;
    if !valid_room(room) {
        return Err(ProtoError::new(
            None,
            ErrorCode::BadRoom,
            "room must be 1-128 bytes of A-Z a-z 0-9 _ - . : @ /",
        ));
    }
    let payload = &rest[len..];
    if payload.len() > max_data {
        return Err(ProtoError::new(
            None,
            ErrorCode::TooLarge,
            format!("payload is {} bytes, over the limit of {max_data}", payload.len()),
        ));
    }
    Ok(Request::PublishBinary { room, payload })
}

/// A connection id as clients see it: lowercase hex.
pub fn format_conn_id(id: u64) -> String {
    format!("{id:x}")
}

/// Parses a connection id written by [`format_conn_id`].
pub fn parse_conn_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Wraps `payload` in one unmasked server frame.
pub fn frame(op: OpData, payload: &[u8]) -> Bytes {
    let header = FrameHeader { opcode: OpCode::Data(op), ..FrameHeader::default() };
    let len = payload.len() as u64;
    let mut out = Vec::with_capacity(header.len(len) + payload.len());
    header.format(len, &mut out).expect("bug: formatting into a Vec cannot fail");
    out.extend_from_slice(payload);
    Bytes::from(out)
}

pub(super) fn text_frame(json: String) -> Bytes {
    frame(OpData::Text, json.as_bytes())
}

/// `{"type":"welcome","conn_id":"..."}`
pub fn welcome(conn_id: u64) -> Bytes {
    text_frame(format!(r#"{{"type":"welcome","conn_id":"{}"}}"#, format_conn_id(conn_id)))
}

/// `{"type":"ack","id":...}`
pub fn ack(id: &RawValue) -> Bytes {
    text_frame(format!(r#"{{"type":"ack","id":{}}}"#, id.get()))
}

/// `{"type":"error","id":...,"code":"...","message":"..."}`
pub fn error(e: &ProtoError) -> Bytes {
    let mut s = String::from(r#"{"type":"error""#);
    if let Some(id) = &e.id {
        let _ = write!(s, r#","id":{id}"#);
    }
    let message = serde_json::to_string(e.message.as_ref()).unwrap_or_else(|_| "\"\"".into());
    let _ = write!(s, r#","code":"{}","message":{message}}}"#, e.code.as_str());
    text_frame(s)
}

fn from_json(from: Option<u64>) -> String {
    match from {
        Some(id) => format!("\"{}\"", format_conn_id(id)),
        None => "null".into(),
    }
}

/// A room delivery, encoded once for every subscriber:
/// `{"type":"message","room":"...","from":"..."|null,"offset":N,"epoch":"...","data":...}`.
/// `room` must be valid (no escaping needed); `data` is raw JSON and ends
/// the frame but for its closing `}` (the history relies on that).
///
/// This runs once per publish: it writes the frame header and the JSON into
/// one buffer of the exact size, without `fmt`.
pub fn message(room: &str, from: Option<u64>, offset: u64, epoch: Epoch, data: &str) -> Bytes {
    const HEAD: &[u8] = br#"{"type":"message","room":""#;
    const FROM: &[u8] = br#"","from":"#;
    const OFFSET: &[u8] = br#","offset":"#;
    const EPOCH: &[u8] = br#","epoch":""#;
    const DATA: &[u8] = br#"","data":"#;
    let mut digits = [0u8; 20];
    let offset = decimal(offset, &mut digits);
    let mut hex = [0u8; 18];
    let from: &[u8] = match from {
        Some(id) => quoted_hex(id, &mut hex),
        None => b"null",
    };
    let len = HEAD.len()
        + room.len()
        + FROM.len()
        + from.len()
        + OFFSET.len()
        + offset.len()
        + EPOCH.len()
        + 8
        + DATA.len()
        + data.len()
        + 1;
    let header = FrameHeader { opcode: OpCode::Data(OpData::Text), ..FrameHeader::default() };
    let mut out = Vec::with_capacity(header.len(len as u64) + len);
    header.format(len as u64, &mut out).expect("bug: formatting into a Vec cannot fail");
    for part in [HEAD, room.as_bytes(), FROM, from, OFFSET, offset, EPOCH, &epoch.hex(), DATA] {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(data.as_bytes());
    out.push(b'}');
    Bytes::from(out)
}

/// `n` in decimal, in the tail of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// `"<id in lowercase hex>"` (as [`format_conn_id`]), in the tail of `buf`.
fn quoted_hex(mut id: u64, buf: &mut [u8; 18]) -> &[u8] {
    let mut i = buf.len() - 1;
    buf[i] = b'"';
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[(id & 15) as usize];
        id >>= 4;
        if id == 0 {
            break;
        }
    }
    i -= 1;
    buf[i] = b'"';
    &buf[i..]
}

/// A binary room delivery: `0x02, room length, room, offset (u64 BE),
/// from (u64 BE, 0 = the server), payload` (the payload ends the frame).
/// The epoch is not in it: the client has it from its subscribe's `ack`.
pub fn message_binary(room: &str, from: Option<u64>, offset: u64, payload: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(2 + room.len() + 16 + payload.len());
    body.put_u8(BIN_MESSAGE);
    body.put_u8(room.len() as u8);
    body.put_slice(room.as_bytes());
    body.put_u64(offset);
    body.put_u64(from.unwrap_or(0));
    body.put_slice(payload);
    frame(OpData::Binary, &body)
}

/// A direct message: `{"type":"direct","from":"...","data":...}`.
pub fn direct(from: Option<u64>, data: &str) -> Bytes {
    text_frame(format!(r#"{{"type":"direct","from":{},"data":{data}}}"#, from_json(from)))
}

/// `{"type":"presence","id":...,"room":"...","count":N,"members":[...],"truncated":bool}`
pub fn presence(
    id: Option<&str>,
    room: &str,
    count: usize,
    members: &[u64],
    truncated: bool,
) -> Bytes {
    let mut s = String::from(r#"{"type":"presence""#);
    if let Some(id) = id {
        let _ = write!(s, r#","id":{id}"#);
    }
    let _ = write!(s, r#","room":"{room}","count":{count},"members":["#);
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "\"{}\"", format_conn_id(*m));
    }
    let _ = write!(s, r#"],"truncated":{truncated}}}"#);
    text_frame(s)
}

/// A `POST /api/publish` body: `{"room": "...", "data": ...}`.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpPublish {
    /// Room name (validated).
    pub room: String,
    /// Raw JSON data.
    pub data: String,
}

/// Parses a publish API body; on failure the HTTP status and a reason (413
/// for `data` over `max_data`, 400 for anything else, including `data` with
/// a number that is not finite as an f64).
pub fn parse_http_publish(body: &[u8], max_data: usize) -> Result<HttpPublish, (u16, String)> {
    let text = std::str::from_utf8(body).map_err(|_| (400, "body is not UTF-8".to_string()))?;
    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        room: Option<&'a RawValue>,
        #[serde(borrow)]
        data: Option<&'a RawValue>,
    }
    let b: Body = serde_json::from_str(text)
        .map_err(|e| (400, format!("body must be a JSON object: {}", e.classify_str())))?;
    let room = room_field(None, b.room).map_err(|e| (400, e.message.into_owned()))?;
    let data = data_field(None, b.data, max_data).map_err(|e| {
        let status = if e.code == ErrorCode::TooLarge { 413 } else { 400 };
        (status, e.message.into_owned())
    })?;
    Ok(HttpPublish { room: room.into_owned(), data: data.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        parse_text(text, 1024).unwrap_err().code
    }

    #[test]
    fn parses_every_request_type() {
        let r = parse_text(r#"{"type":"subscribe","room":"chat:1","id":7}"#, 1024).unwrap();
        assert!(matches!(r, Request::Subscribe { ref room, .. } if room == "chat:1"));
        assert_eq!(r.id().unwrap().get(), "7");
        let r = parse_text(r#"{"type":"publish","room":"a","data":{"x":[1,2]}}"#, 1024).unwrap();
        assert!(matches!(r, Request::Publish { data, .. } if data == r#"{"x":[1,2]}"#));
        let r = parse_text(r#"{"type":"send","to":"ff","data":"hi","id":"q"}"#, 1024).unwrap();
        assert!(matches!(r, Request::Send { to: 255, data: "\"hi\"", .. }));
        assert!(matches!(
            parse_text(r#"{"type":"presence","room":"a"}"#, 1024).unwrap(),
            Request::Presence { .. }
        ));
        assert!(matches!(
            parse_text(r#"{"type":"unsubscribe","room":"a"}"#, 1024).unwrap(),
            Request::Unsubscribe { .. }
        ));
    }

    #[test]
    fn every_malformed_request_gets_its_stable_code() {
        assert_eq!(code("not json"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"room":"a"}"#), ErrorCode::MissingField);
        assert_eq!(code(r#"{"type":5}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"subscribe"}"#), ErrorCode::MissingField);
        assert_eq!(code(r#"{"type":"subscribe","room":3}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"type":"subscribe","room":"has space"}"#), ErrorCode::BadRoom);
        assert_eq!(code(r#"{"type":"subscribe","room":""}"#), ErrorCode::BadRoom);
        let long = "r".repeat(129);
        assert_eq!(code(&format!(r#"{{"type":"subscribe","room":"{long}"}}"#)), ErrorCode::BadRoom);
        let big = "x".repeat(2000);
        assert_eq!(
            code(&format!(r#"{{"type":"publish","room":"a","data":"{big}"}}"#)),
            ErrorCode::TooLarge
        );
        assert_eq!(code(r#"{"type":"send","to":"zz","data":1}"#), ErrorCode::BadField);
    }

    #[test]
    fn errors_echo_the_request_id() {
        let e = parse_text(r#"{"type":"subscribe","id":"abc"}"#, 10).unwrap_err();
        assert_eq!(e.id.as_deref(), Some("\"abc\""));
        let f = error(&e);
        let json: serde_json::Value = serde_json::from_slice(&f[2..]).unwrap();
        assert_eq!(json["id"], "abc");
        assert_eq!(json["code"], "missing_field");
    }

    #[test]
    fn ids_are_strings_up_to_64_bytes_or_safe_integers() {
        let id_of = |id: &str| {
            let text = format!(r#"{{"type":"subscribe","room":"a","id":{id}}}"#);
            parse_text(&text, 10).map(|r| r.id().map(|v| v.get().to_string()))
        };
        let max = MAX_ID_INT.to_string();
        let long = format!("\"{}\"", "x".repeat(MAX_ID_BYTES));
        // Two bytes of UTF-8 per character, written as escapes: 64 bytes.
        let escaped = format!("\"{}\"", "\\u00e9".repeat(MAX_ID_BYTES / 2));
        for ok in ["0", "7", "-7", &max, &format!("-{max}"), "\"\"", "\"q\"", &long, &escaped] {
            assert_eq!(id_of(ok), Ok(Some(ok.to_string())), "{ok}");
        }
        assert_eq!(id_of("null"), Ok(None));
        let over = (MAX_ID_INT + 1).to_string();
        let too_long = format!("\"{}\"", "x".repeat(MAX_ID_BYTES + 1));
        let escaped_over = format!("\"{}\"", "\\u00e9".repeat(MAX_ID_BYTES / 2 + 1));
        for bad in [
            &over as &str,
            &format!("-{over}"),
            "18446744073709551616",
            "1550e5555555555555555555555",
            "1e3",
            "1.0",
            "1.5",
            "-0",
            "true",
            "false",
            "[]",
            "[1]",
            "{}",
            r#"{"a":1}"#,
            &too_long,
            &escaped_over,
            r#""\ud800""#,
        ] {
            let e = id_of(bad).expect_err(bad);
            assert_eq!(e.code, ErrorCode::BadField, "{bad}");
            assert_eq!(e.id, None, "{bad}: a refused id is not echoed");
        }
    }

    #[test]
    fn a_refused_id_gets_a_reply_every_json_parser_reads() {
        // Found by the `protocol` fuzz target (../shared/fuzz-findings/
        // protocol-id-out-of-range): the id was echoed raw, and serde_json
        // refused the reply ("number out of range").
        let input = r#"{"te":"+sen\"yb","id":1550e5555555555555555555555}"#;
        let e = parse_text(input, 1024).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadField);
        let f = error(&e);
        let json: serde_json::Value = serde_json::from_slice(&f[2..]).expect("a readable reply");
        assert_eq!(json["code"], "bad_field");
        assert!(json.get("id").is_none(), "{json}");
    }

    #[test]
    fn binary_publish_roundtrip() {
        let mut msg = vec![BIN_PUBLISH, 4];
        msg.extend_from_slice(b"room");
        msg.extend_from_slice(&[0, 1, 2, 255]);
        let r = parse_binary(&msg, 100).unwrap();
        assert!(matches!(r, Request::PublishBinary { room: "room", payload: &[0, 1, 2, 255] }));
        assert_eq!(parse_binary(&[], 10).unwrap_err().code, ErrorCode::BadBinary);
        assert_eq!(parse_binary(&[9, 1, b'a'], 10).unwrap_err().code, ErrorCode::BadBinary);
        assert_eq!(parse_binary(&[1, 5, b'a'], 10).unwrap_err().code, ErrorCode::BadBinary);
        assert_eq!(parse_binary(&[1, 1, b' '], 10).unwrap_err().code, ErrorCode::BadRoom);
        let f = message_binary("room", Some(9), 3, &[7, 7]);
        assert_eq!(
            &f[2..],
            &[2, 4, b'r', b'o', b'o', b'm', 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 9, 7, 7]
        );
    }

    #[test]
    fn messages_are_valid_json_frames() {
        for f in [
            welcome(0xabc),
            message("r", Some(1), 5, Epoch(9), r#"{"a":1}"#),
            message("r", None, 6, Epoch(9), "null"),
            presence(Some("1"), "r", 2, &[1, 2], false),
            direct(Some(3), "[1]"),
        ] {
            assert_eq!(f[0], 0x81);
            let len = f[1] as usize;
            let v: serde_json::Value = serde_json::from_slice(&f[2..2 + len]).unwrap();
            assert!(v["type"].is_string());
        }
    }

    #[test]
    fn http_publish_body() {
        let p = parse_http_publish(br#"{"room":"news","data":{"h":1}}"#, 100).unwrap();
        assert_eq!(p, HttpPublish { room: "news".into(), data: r#"{"h":1}"#.into() });
        assert_eq!(parse_http_publish(b"{", 100).unwrap_err().0, 400);
        assert_eq!(parse_http_publish(br#"{"data":1}"#, 100).unwrap_err().0, 400);
        assert_eq!(
            parse_http_publish(br#"{"room":"a","data":"0123456789"}"#, 5).unwrap_err().0,
            413
        );
    }

    #[test]
    fn data_with_a_number_strict_parsers_refuse_is_refused() {
        let publish = r#"{"type":"publish","room":"a","id":9,"data":{"h":[1,-1e309]}}"#;
        let e = parse_text(publish, 1024).unwrap_err();
        assert_eq!((e.code, e.id.as_deref()), (ErrorCode::BadField, Some("9")));
        assert!(e.message.contains("-1e309"), "{}", e.message);
        let send = r#"{"type":"send","to":"ff","data":1e309}"#;
        assert_eq!(code(send), ErrorCode::BadField);
        let body = br#"{"room":"a","data":{"h":555555555555555555E55555555555555555555550}}"#;
        let (status, reason) = parse_http_publish(body, 1024).unwrap_err();
        assert_eq!(status, 400);
        assert!(reason.contains("out of the range"), "{reason}");
        // A long token is cut in the message.
        let long = format!(r#"{{"type":"publish","room":"a","data":{}}}"#, "9".repeat(400));
        assert!(parse_text(&long, 1024).unwrap_err().message.ends_with("9..."));
        // Finite numbers, and out-of-range ones inside strings, pass raw.
        let ok = r#"{"type":"publish","room":"a","data":[1e308,123456789012345678901234567890,"1e309"]}"#;
        let r = parse_text(ok, 1024).unwrap();
        assert!(
            matches!(r, Request::Publish { data, .. } if data == r#"[1e308,123456789012345678901234567890,"1e309"]"#)
        );
    }
}

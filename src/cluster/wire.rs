//! What wsedge keeps in Redis and how, sans-IO: key and channel names, the
//! Lua scripts, the text of a published message and the parsing of the
//! replies. The threads in `command.rs` and `subscriber.rs` do the I/O.
//!
//! Per room `R` (prefix `P`):
//! - `P:r:R:m`, a hash: `e` the room's epoch (8 hex digits), `o` its last
//!   offset. Created by the first publish or subscribe (epoch from the node
//!   that creates it); expires after the room's position TTL without a
//!   publish or a refresh by a node with subscribers.
//! - `P:r:R:s`, a stream bounded by the history size (`MAXLEN`), entry id
//!   `<offset>-0`, fields `h` (header: publisher id in hex or `-`, then `j`
//!   for JSON or `b` for binary) and `d` (the payload). Only rooms with
//!   history have one.
//! - `P:r:R:z`, a sorted set: connection ids (hex) of the room's members on
//!   every node, scored with the Redis time (ms) at which each expires unless
//!   its node refreshes it.
//! - channel `P:c:R`: every message as `<epoch> <offset> <header> <payload>`.

use bytes::Bytes;
use redis::Value;

use crate::pubsub::protocol::{format_conn_id, Epoch};
use crate::pubsub::{Payload, RemoteEntry};

/// The publish script. KEYS: meta, stream. ARGV: channel, epoch for a new
/// position, history size (0: none), stream TTL ms, position TTL ms, header,
/// payload. Returns the offset.
pub const PUBLISH: &str = r"
local e = redis.call('hget', KEYS[1], 'e')
if not e then
  e = ARGV[2]
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[1], 'e', e, 'o', 0)
end
local o = redis.call('hincrby', KEYS[1], 'o', 1)
if tonumber(ARGV[3]) > 0 then
  redis.call('xadd', KEYS[2], 'MAXLEN', ARGV[3], o .. '-0', 'h', ARGV[6], 'd', ARGV[7])
  redis.call('pexpire', KEYS[2], ARGV[4])
end
redis.call('pexpire', KEYS[1], ARGV[5])
redis.call('publish', ARGV[1], e .. ' ' .. o .. ' ' .. ARGV[6] .. ' ' .. ARGV[7])
return o
";

/// The snapshot script, run right after subscribing. KEYS: meta, stream.
/// ARGV: epoch for a new position, position TTL ms, most entries. Returns
/// `{epoch, offset, entries newest first}`.
pub const SNAPSHOT: &str = r"
local e = redis.call('hget', KEYS[1], 'e')
if not e then
  e = ARGV[1]
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[1], 'e', e, 'o', 0)
end
redis.call('pexpire', KEYS[1], ARGV[2])
local o = redis.call('hget', KEYS[1], 'o')
local items = {}
if tonumber(ARGV[3]) > 0 then
  items = redis.call('xrevrange', KEYS[2], '+', '-', 'COUNT', ARGV[3])
end
return {e, o, items}
";

/// The history read. KEYS: meta, stream. ARGV: most entries, since offset
/// (`-`: none), since epoch. Returns `{epoch or '', offset, entries}`:
/// with a since in the room's epoch the first entries after it (oldest
/// first), without one the newest (newest first).
pub const HISTORY: &str = r"
local e = redis.call('hget', KEYS[1], 'e')
if not e then return {'', 0, {}} end
local o = redis.call('hget', KEYS[1], 'o')
local n = tonumber(ARGV[1])
if n == 0 then return {e, o, {}} end
if ARGV[2] == '-' then
  return {e, o, redis.call('xrevrange', KEYS[2], '+', '-', 'COUNT', n)}
end
if ARGV[3] ~= e then return {e, o, {}} end
return {e, o, redis.call('xrange', KEYS[2], (tonumber(ARGV[2]) + 1) .. '-0', '+', 'COUNT', n)}
";

/// Members join or are refreshed. KEYS: the room's member set. ARGV: TTL
/// ms, member ids... (scored with Redis' own clock, so nodes' clocks do not
/// matter).
pub const MEMBERS: &str = r"
local t = redis.call('time')
local exp = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('zadd', KEYS[1], exp, ARGV[i])
end
redis.call('pexpire', KEYS[1], ARGV[1])
return #ARGV - 1
";

/// The presence read. KEYS: the member set. ARGV: most ids. Drops expired
/// members first. Returns `{count, ids}`.
pub const PRESENCE: &str = r"
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
local n = tonumber(ARGV[1])
local ids = {}
if n > 0 then ids = redis.call('zrange', KEYS[1], 0, n - 1) end
return {redis.call('zcard', KEYS[1]), ids}
";

/// Key and channel names under one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_string() }
    }

    /// The room's position hash.
    pub fn meta(&self, room: &str) -> String {
        format!("{}:r:{room}:m", self.prefix)
    }

    /// The room's stream.
    pub fn stream(&self, room: &str) -> String {
        format!("{}:r:{room}:s", self.prefix)
    }

    /// The room's member set.
    pub fn members(&self, room: &str) -> String {
        format!("{}:r:{room}:z", self.prefix)
    }

    /// The room's channel.
    pub fn channel(&self, room: &str) -> String {
        format!("{}:c:{room}", self.prefix)
    }

    /// The room of a channel name, if it is one of ours.
    pub fn room_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(self.prefix.as_str())?.strip_prefix(":c:")
    }
}

/// The header of a message: publisher and kind, e.g. `4a0000400003 j`.
pub fn header(from: Option<u64>, payload: &Payload) -> String {
    let kind = match payload {
        Payload::Json(_) => 'j',
        Payload::Binary(_) => 'b',
    };
    match from {
        Some(id) => format!("{} {kind}", format_conn_id(id)),
        None => format!("- {kind}"),
    }
}

/// Splits `n` space-separated fields off `bytes`, then the rest.
fn fields<const N: usize>(bytes: &[u8]) -> Option<([&str; N], &[u8])> {
    let mut out = [""; N];
    let mut rest = bytes;
    for slot in &mut out {
        let at = rest.iter().position(|&b| b == b' ')?;
        *slot = std::str::from_utf8(&rest[..at]).ok()?;
        rest = &rest[at + 1..];
    }
    Some((out, rest))
}

/// Publisher and payload from a header (`from kind`) and the payload bytes.
fn entry_body(from: &str, kind: &str, payload: &[u8]) -> Option<(Option<u64>, Payload)> {
    let from = match from {
        "-" => None,
        hex => Some(u64::from_str_radix(hex, 16).ok()?),
    };
    let payload = Bytes::copy_from_slice(payload);
    let payload = match kind {
        "j" if std::str::from_utf8(&payload).is_ok() => Payload::Json(payload),
        "b" => Payload::Binary(payload),
        _ => return None,
    };
    Some((from, payload))
}

/// Parses a published message: `<epoch> <offset> <from> <kind> <payload>`.
pub fn parse_message(bytes: &[u8]) -> Option<(Epoch, RemoteEntry)> {
    let ([epoch, offset, from, kind], payload) = fields::<4>(bytes)?;
    let epoch = Epoch::parse(epoch)?;
    let offset = offset.parse().ok()?;
    let (from, payload) = entry_body(from, kind, payload)?;
    Some((epoch, RemoteEntry { offset, from, payload }))
}

fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// An integer reply, or a number sent as a string.
pub fn int_of(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => std::str::from_utf8(bytes_of(other)?).ok()?.parse().ok(),
    }
}

fn array(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        _ => None,
    }
}

/// One stream entry: `[id, [field, value, ...]]` with id `<offset>-0`.
fn stream_entry(v: &Value) -> Option<RemoteEntry> {
    let [id, fields] = array(v)? else { return None };
    let id = std::str::from_utf8(bytes_of(id)?).ok()?;
    let offset = id.split_once('-')?.0.parse().ok()?;
    let fields = array(fields)?;
    let mut header = None;
    let mut data = None;
    for pair in fields.chunks(2) {
        if let [k, v] = pair {
            match bytes_of(k)? {
                b"h" => header = Some(std::str::from_utf8(bytes_of(v)?).ok()?),
                b"d" => data = Some(bytes_of(v)?),
                _ => {}
            }
        }
    }
    let (from, kind) = header?.split_once(' ')?;
    let (from, payload) = entry_body(from, kind, data?)?;
    Some(RemoteEntry { offset, from, payload })
}

/// A position and entries, as the snapshot and history scripts return them:
/// `(epoch, offset, entries in the order given)`; epoch `None` when the room
/// has no position.
pub fn parse_position(v: &Value) -> Option<(Option<Epoch>, u64, Vec<RemoteEntry>)> {
    let [epoch, offset, items] = array(v)? else { return None };
    let epoch = std::str::from_utf8(bytes_of(epoch)?).ok()?;
    let epoch = if epoch.is_empty() { None } else { Some(Epoch::parse(epoch)?) };
    let entries = array(items)?.iter().filter_map(stream_entry).collect();
    Some((epoch, int_of(offset)?, entries))
}

/// The presence script's `{count, ids}`.
pub fn parse_presence(v: &Value) -> Option<(usize, Vec<u64>)> {
    let [count, ids] = array(v)? else { return None };
    let ids = array(ids)?
        .iter()
        .filter_map(|id| u64::from_str_radix(std::str::from_utf8(bytes_of(id)?).ok()?, 16).ok())
        .collect();
    Some((int_of(count)? as usize, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_published_message_round_trips() {
        let h = header(Some(0x4a_0000_0400_0003), &Payload::Json(Bytes::from_static(b"{}")));
        let text = format!("0000abcd 42 {h} {{\"a\": 1}}");
        let (epoch, e) = parse_message(text.as_bytes()).unwrap();
        assert_eq!((epoch, e.offset, e.from), (Epoch(0xabcd), 42, Some(0x4a_0000_0400_0003)));
        assert!(matches!(e.payload, Payload::Json(ref d) if &d[..] == b"{\"a\": 1}"));
        // Binary payloads may hold spaces and any byte.
        let mut bin = b"0000abcd 7 - b ".to_vec();
        bin.extend_from_slice(&[0, 32, 255]);
        let (_, e) = parse_message(&bin).unwrap();
        assert_eq!((e.offset, e.from), (7, None));
        assert!(matches!(e.payload, Payload::Binary(ref d) if d[..] == [0, 32, 255]));
        for bad in [&b"0000abcd 7 - x {}"[..], b"zz 7 - j 1", b"0000abcd x - j 1", b"0000abcd"] {
            assert!(parse_message(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn snapshot_replies_parse_into_entries() {
        let entry = |id: &str, h: &str, d: &str| {
            Value::Array(vec![bulk(id), Value::Array(vec![bulk("h"), bulk(h), bulk("d"), bulk(d)])])
        };
        let v = Value::Array(vec![
            bulk("0000abcd"),
            bulk("9"),
            Value::Array(vec![entry("9-0", "3 j", "9"), entry("8-0", "- b", "x y")]),
        ]);
        let (epoch, offset, entries) = parse_position(&v).unwrap();
        assert_eq!((epoch, offset), (Some(Epoch(0xabcd)), 9));
        let offsets: Vec<_> = entries.iter().map(|e| (e.offset, e.from)).collect();
        assert_eq!(offsets, vec![(9, Some(3)), (8, None)]);
        let none = Value::Array(vec![bulk(""), Value::Int(0), Value::Array(vec![])]);
        assert_eq!(parse_position(&none).map(|p| (p.0, p.1)), Some((None, 0)));
    }

    #[test]
    fn channels_map_back_to_rooms() {
        let k = Keys::new("ws");
        assert_eq!(k.channel("chat:1"), "ws:c:chat:1");
        assert_eq!(k.room_of("ws:c:chat:1"), Some("chat:1"));
        assert_eq!(k.room_of("other:c:chat:1"), None);
        assert_eq!(k.meta("a"), "ws:r:a:m");
        let p = Value::Array(vec![Value::Int(2), Value::Array(vec![bulk("1f"), bulk("a")])]);
        assert_eq!(parse_presence(&p), Some((2, vec![0x1f, 0xa])));
    }
}

//! `protocol`: arbitrary bytes as a pub/sub application message, in both
//! forms (JSON text and binary), and as a `POST /api/publish` body. That
//! includes `subscribe` with `since` and `history` with `limit` / `since`,
//! whose replies (the positioned ack, the history page) must parse too.
//!
//! Never panics; every outcome is a parsed request or an `error` reply, and
//! every reply the server would send for it is a single valid JSON text frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsedge::pubsub::protocol::{self as proto, Body, Epoch, Request, MAX_HISTORY_LIMIT, MAX_ROOM_BYTES};

const MAX_DATA: usize = 4096;

/// The JSON object inside one unmasked server text frame.
fn frame_json(frame: &[u8]) -> serde_json::Value {
    assert_eq!(frame[0], 0x81, "one final text frame");
    let (hdr, len) = match frame[1] {
        126 => (4, u16::from_be_bytes([frame[2], frame[3]]) as usize),
        127 => (10, u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize),
        n => (2, n as usize),
    };
    assert_eq!(frame.len(), hdr + len, "frame length matches its header");
    serde_json::from_slice(&frame[hdr..]).expect("a reply is valid JSON")
}

fn check(req: Result<Request<'_>, proto::ProtoError>) {
    match req {
        Ok(Request::Subscribe { room, since, id }) => {
            assert!(proto::valid_room(&room) && room.len() <= MAX_ROOM_BYTES);
            let (offset, epoch) = since.map_or((0, Epoch(0)), |s| (s.offset, s.epoch));
            assert!(offset <= (1 << 53) - 1);
            let recovered = since.map(|s| s.offset % 2 == 0);
            let ack = proto::subscribed(id.map(|i| i.get()), &room, offset, epoch, recovered);
            let v = frame_json(&ack);
            assert_eq!((v["type"].as_str(), v["offset"].as_u64()), (Some("ack"), Some(offset)));
            assert_eq!(v["epoch"].as_str().and_then(Epoch::parse), Some(epoch));
        }
        Ok(Request::History { room, limit, since, id }) => {
            assert!(proto::valid_room(&room) && limit <= MAX_HISTORY_LIMIT);
            let mut item = String::new();
            proto::history_item(&mut item, 1, Some(7), Body::Binary(room.as_bytes()));
            let epoch = since.map_or(Epoch(u32::MAX), |s| s.epoch);
            let v = frame_json(&proto::history(id.map(|i| i.get()), &room, 1, epoch, &[item], false));
            assert_eq!(v["messages"][0]["offset"], 1);
        }
        Ok(Request::Unsubscribe { room, .. }) | Ok(Request::Presence { room, .. }) => {
            assert!(proto::valid_room(&room) && room.len() <= MAX_ROOM_BYTES);
        }
        Ok(Request::Publish { room, data, id }) => {
            assert!(proto::valid_room(&room));
            assert!(data.len() <= MAX_DATA);
            // The delivery embeds data raw: it must stay valid JSON.
            let v = frame_json(&proto::message(&room, Some(7), 1, Epoch(7), data));
            assert_eq!(v["type"], "message");
            if let Some(id) = id {
                assert_eq!(frame_json(&proto::ack(id))["type"], "ack");
            }
        }
        Ok(Request::Send { data, .. }) => {
            assert_eq!(frame_json(&proto::direct(Some(1), data))["type"], "direct");
        }
        Ok(Request::PublishBinary { room, payload }) => {
            assert!(proto::valid_room(room));
            assert!(payload.len() <= MAX_DATA);
        }
        Err(e) => {
            let v = frame_json(&proto::error(&e));
            assert_eq!(v["type"], "error");
            assert_eq!(v["code"], e.code.as_str());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(proto::parse_text(text, MAX_DATA));
    }
    check(proto::parse_binary(data, MAX_DATA));
    match proto::parse_http_publish(data, MAX_DATA) {
        Ok(p) => {
            assert!(proto::valid_room(&p.room));
            let v = frame_json(&proto::message(&p.room, None, 1, Epoch(7), &p.data));
            assert!(v["from"].is_null());
        }
        Err((status, reason)) => {
            assert!(status == 400 || status == 413, "{status}");
            assert!(!reason.contains('\n'));
        }
    }
});

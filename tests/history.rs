//! Room history and recovery against a real server on loopback: a client
//! that reconnects gets what it missed, in order, then the live messages,
//! while others keep publishing; or it is told it cannot (`recovered:
//! false`) with the current position. Eviction by size, TTL and the byte
//! cap; bad `since` / `limit` get `bad_field` and the connection stays.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use serde_json::{json, Value};

fn with_history(size: usize, ttl_ms: u64) -> impl FnOnce(&mut wsedge::Config) {
    move |c| {
        c.pubsub.history_size = size;
        c.pubsub.history_ttl_ms = ttl_ms;
    }
}

fn publish_n(p: &mut Ps, room: &str, from: u64, to: u64) {
    for i in from..to {
        p.send(json!({"type":"publish","room":room,"data":{"i":i}}));
    }
}

/// Reads until a message of `room` with offset `last`; returns the offsets
/// of the room's messages, in arrival order.
fn offsets_until(c: &mut Ps, room: &str, last: u64) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        let m = c.recv();
        if m["type"] == "message" && m["room"] == room {
            let o = m["offset"].as_u64().expect("offset");
            got.push(o);
            if o >= last {
                return got;
            }
        }
    }
}

/// The scenario of the issue, with the recovering client on worker `w` (one
/// of the two is the room's owner, the other gets its replay over the bus).
fn reconnect_after_500_missed(w: usize) {
    let server = start(&config(2, with_history(1000, 600_000)));
    let addr = server.local_addr();
    let room = "chat:lobby";
    let mut clients = one_per_worker(addr, 2);
    let mut publisher = clients.remove(1 - w);
    let mut first = clients.remove(0);
    let ack = first.request(json!({"type":"subscribe","room":room}), 1);
    let epoch = ack["epoch"].as_str().expect("epoch").to_string();
    assert_eq!(ack["offset"], 0, "{ack}");
    publish_n(&mut publisher, room, 0, 20);
    assert_eq!(offsets_until(&mut first, room, 20), (1..=20).collect::<Vec<_>>());
    drop(first);
    // 500 messages while away.
    publish_n(&mut publisher, room, 20, 520);
    let r = publisher.request(json!({"type":"history","room":room,"limit":0}), 2);
    assert_eq!(r["offset"], 520, "all 500 sequenced: {r}");
    // Another client keeps publishing during the reconnect and the replay.
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let stop = stop.clone();
        let mut p = Ps::connect(addr);
        std::thread::spawn(move || {
            let mut i = 520;
            while !stop.load(Ordering::Relaxed) || i < 620 {
                p.send(json!({"type":"publish","room":room,"data":{"i":i}}));
                i += 1;
                if i % 50 == 0 {
                    // Paced by a round trip, so the subscriber keeps up.
                    p.request(json!({"type":"history","room":room,"limit":0}), i);
                }
            }
            let r = p.request(json!({"type":"history","room":room,"limit":0}), 9);
            r["offset"].as_u64().expect("offset")
        })
    };
    let mut back = Ps::connect(addr);
    while back.worker() != w as u64 {
        back = Ps::connect(addr);
    }
    let ack = back
        .request(json!({"type":"subscribe","room":room,"since":{"offset":20,"epoch":epoch}}), 3);
    assert_eq!((ack["type"].as_str(), ack["recovered"].as_bool()), (Some("ack"), Some(true)));
    assert_eq!(ack["epoch"], epoch.as_str());
    let position = ack["offset"].as_u64().expect("offset");
    assert!(position >= 520, "{ack}");
    // Let the live messages run past the position for a while.
    let mut got = offsets_until(&mut back, room, position);
    got.extend(offsets_until(&mut back, room, position + 50));
    stop.store(true, Ordering::Relaxed);
    let last = background.join().expect("publisher");
    got.extend(offsets_until(&mut back, room, last));
    assert_eq!(
        got,
        (21..=last).collect::<Vec<_>>(),
        "the missed ones, then live: no gap, no duplicate"
    );
    assert!(server.stats().history_messages > 0);
}

#[test]
fn a_reconnect_on_the_owner_worker_or_the_other_gets_what_it_missed_then_live() {
    reconnect_after_500_missed(0);
    reconnect_after_500_missed(1);
}

#[test]
fn a_new_epoch_is_not_recovered_and_gives_the_current_position() {
    // A restart (a deploy) loses history: the room starts a new epoch.
    let room = "news";
    let old = {
        let server = start(&config(2, with_history(100, 60_000)));
        let mut c = Ps::connect(server.local_addr());
        let ack = c.request(json!({"type":"subscribe","room":room}), 1);
        publish_n(&mut c, room, 0, 3);
        assert_eq!(offsets_until(&mut c, room, 3), vec![1, 2, 3]);
        ack["epoch"].as_str().expect("epoch").to_string()
    };
    let server = start(&config(2, with_history(100, 60_000)));
    let mut p = Ps::connect(server.local_addr());
    publish_n(&mut p, room, 0, 1);
    let mut c = Ps::connect(server.local_addr());
    let ack =
        c.request(json!({"type":"subscribe","room":room,"since":{"offset":3,"epoch":old}}), 2);
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_ne!(ack["epoch"], old.as_str());
    assert_eq!(ack["offset"], 1, "the current position");
    c.expect_silence();
    // From there, it follows the new epoch.
    publish_n(&mut p, room, 1, 2);
    let m = c.recv();
    assert_eq!((m["offset"].as_u64(), &m["epoch"]), (Some(2), &ack["epoch"]));
}

#[test]
fn history_is_evicted_by_size_and_by_ttl() {
    let server = start(&config(2, |c| {
        c.pubsub.history_size = 5;
        c.pubsub.history_ttl_ms = 600_000;
        c.pubsub.history_rooms = vec![wsedge::config::HistoryRoomConfig {
            pattern: "brief:*".into(),
            size: 100,
            ttl_ms: 300,
        }];
    }));
    let mut c = Ps::connect(server.local_addr());
    publish_n(&mut c, "long", 0, 8);
    let h = c.request(json!({"type":"history","room":"long","limit":100}), 1);
    let offsets: Vec<u64> = h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![4, 5, 6, 7, 8], "the last 5: {h}");
    assert_eq!(h["messages"][4]["data"], json!({"i":7}));
    assert_eq!(h["truncated"], false);
    assert_eq!(server.stats().history_evictions[0], 3, "3 evicted by size");
    // `brief:*` keeps 100 messages for 300 ms.
    publish_n(&mut c, "brief:x", 0, 4);
    assert!(eventually(|| server.stats().history_evictions[1] == 4), "4 evicted by TTL");
    let h = c.request(json!({"type":"history","room":"brief:x","limit":100}), 3);
    assert_eq!((h["messages"].as_array().map(Vec::len), h["offset"].as_u64()), (Some(0), Some(4)));
    // The other room is untouched.
    let h = c.request(json!({"type":"history","room":"long","limit":100}), 4);
    assert_eq!(h["messages"].as_array().map(Vec::len), Some(5));
}

#[test]
fn the_byte_cap_holds_under_many_rooms() {
    let cap = 256 * 1024;
    let server = start(&config(2, |c| {
        with_history(1000, 600_000)(c);
        c.pubsub.history_max_bytes = cap;
    }));
    let mut c = Ps::connect(server.local_addr());
    let data = "y".repeat(200);
    for r in 0..500 {
        for _ in 0..5 {
            c.send(json!({"type":"publish","room":format!("room-{r}"),"data":data}));
        }
    }
    // The last room's last message is there, so everything was handled.
    let h = c.request(json!({"type":"history","room":"room-499","limit":1}), 1);
    assert_eq!(h["offset"], 5, "{h}");
    assert!(eventually(|| {
        let s = server.stats();
        s.history_evictions[2] > 0 && s.history_bytes > 0
    }));
    let s = server.stats();
    assert!(s.history_bytes <= cap as u64, "{} bytes over the cap of {cap}", s.history_bytes);
    // The newest are kept, the oldest went.
    assert_eq!(h["messages"][0]["offset"], 5);
    let h = c.request(json!({"type":"history","room":"room-0","limit":10}), 2);
    assert_eq!(h["messages"].as_array().map(Vec::len), Some(0), "{h}");
    // /metrics shows them.
    let (status, body) = http(server.local_addr(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200);
    let line = |name: &str| body.lines().find(|l| l.starts_with(name)).map(str::to_string);
    let bytes = line("wsedge_history_bytes ").expect("gauge");
    let n: u64 = bytes.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a number");
    assert!(n > 0 && n <= cap as u64, "{bytes}");
    assert!(line("wsedge_history_evictions_total{reason=\"bytes\"}").is_some(), "{body}");
}

#[test]
fn bad_since_and_limit_are_refused_and_the_connection_stays() {
    let server = start(&config(2, with_history(10, 60_000)));
    let mut c = Ps::connect(server.local_addr());
    for (i, bad) in [
        json!({"type":"subscribe","room":"r","since":{"offset":-1,"epoch":"00000000"}}),
        json!({"type":"subscribe","room":"r","since":{"offset":1,"epoch":"not-hex!"}}),
        json!({"type":"subscribe","room":"r","since":{"offset":1.5,"epoch":"00000000"}}),
        json!({"type":"subscribe","room":"r","since":{"offset":u64::MAX,"epoch":"00000000"}}),
        json!({"type":"subscribe","room":"r","since":"yesterday"}),
        json!({"type":"history","room":"r","limit":1_000_000_000}),
        json!({"type":"history","room":"r","limit":-5}),
        json!({"type":"history","room":"r","limit":10,"since":{"offset":1}}),
    ]
    .into_iter()
    .enumerate()
    {
        let r = c.request(bad.clone(), i as u64);
        assert_eq!(
            (r["type"].as_str(), r["code"].as_str()),
            (Some("error"), Some("bad_field")),
            "{bad}: {r}"
        );
    }
    let r = c.request(json!({"type":"history","room":"r"}), 20);
    assert_eq!(r["code"], "missing_field");
    // Still usable, and not subscribed by any of that.
    let ack = c.request(json!({"type":"subscribe","room":"r"}), 21);
    assert_eq!(ack["offset"], 0);
    let r = c.request(json!({"type":"history","room":"r","limit":10000}), 22);
    assert_eq!(r["type"], "history");
}

#[test]
fn a_room_without_history_still_gives_positions() {
    let server = start(&config(2, |_| {}));
    let mut c = one_per_worker(server.local_addr(), 2);
    let ack = c[0].request(json!({"type":"subscribe","room":"plain"}), 1);
    let epoch = ack["epoch"].clone();
    publish_n(&mut c[1], "plain", 0, 2);
    let got: Vec<Value> = (0..2).map(|_| c[0].recv()).collect();
    assert_eq!(got[1]["offset"], 2);
    assert_eq!(got[1]["epoch"], epoch);
    // Nothing missed: recovered, even without history.
    let ack = c[1]
        .request(json!({"type":"subscribe","room":"plain","since":{"offset":2,"epoch":epoch}}), 2);
    assert_eq!((ack["recovered"].as_bool(), ack["offset"].as_u64()), (Some(true), Some(2)));
    let ack = c[1]
        .request(json!({"type":"subscribe","room":"q","since":{"offset":0,"epoch":"00000000"}}), 3);
    assert_eq!(ack["recovered"], false);
}

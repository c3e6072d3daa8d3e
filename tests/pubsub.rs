//! Rooms and pub/sub across workers: delivery, unsubscribe, direct messages,
//! presence, ordering at scale, a stalled subscriber, malformed requests, and
//! the HTTP publish API.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use serde_json::json;
use wsedge::metrics::CloseCause;

#[test]
fn publish_reaches_a_subscriber_on_another_worker_and_unsubscribe_stops_it() {
    let server = start(&config(2, |_| {}));
    let mut c = one_per_worker(server.local_addr(), 2);
    let (a, b) = c.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    assert_ne!(a.worker(), b.worker());
    b.subscribe("chat:lobby");
    let ack = a.request(json!({"type":"publish","room":"chat:lobby","data":{"text":"hi"}}), 9);
    assert_eq!(ack["type"], "ack");
    let m = b.recv();
    assert_eq!(m["type"], "message");
    assert_eq!(m["room"], "chat:lobby");
    assert_eq!(m["from"], a.id.as_str());
    assert_eq!(m["data"], json!({"text":"hi"}));
    assert_eq!(m["offset"], 1);

    let r = b.request(json!({"type":"unsubscribe","room":"chat:lobby"}), 2);
    assert_eq!(r["type"], "ack");
    a.request(json!({"type":"publish","room":"chat:lobby","data":"gone"}), 10);
    // B gets nothing more from the room, and the next thing it gets is the
    // reply to its own request.
    b.expect_silence();
    let r = b.request(json!({"type":"presence","room":"chat:lobby"}), 3);
    assert_eq!(r["type"], "presence", "{r}");
    assert_eq!(r["count"], 0);
    let r = b.request(json!({"type":"unsubscribe","room":"chat:lobby"}), 4);
    assert_eq!(r["code"], "not_subscribed");
}

#[test]
fn direct_send_reaches_only_its_target_across_workers() {
    let server = start(&config(2, |_| {}));
    let mut c = one_per_worker(server.local_addr(), 2);
    let mut third = Ps::connect(server.local_addr());
    let target = c[1].id.clone();
    let r = c[0].request(json!({"type":"send","to":target,"data":[1,2,3]}), 5);
    assert_eq!(r["type"], "ack", "{r}");
    let m = c[1].recv();
    assert_eq!(m["type"], "direct");
    assert_eq!(m["from"], c[0].id.as_str());
    assert_eq!(m["data"], json!([1, 2, 3]));
    // Neither the sender nor a third client got it.
    c[0].expect_silence();
    third.expect_silence();
    let r = third.request(json!({"type":"presence","room":"x"}), 7);
    assert_eq!(r["type"], "presence");
    // Unknown ids, on this worker and on the other, are not_found.
    for bogus in ["ffff", "40000000000fffff"] {
        let r = c[0].request(json!({"type":"send","to":bogus,"data":1}), 6);
        assert_eq!(r["code"], "not_found", "{bogus}: {r}");
    }
}

#[test]
fn presence_counts_members_on_every_worker() {
    let server = start(&config(2, |_| {}));
    let mut c = one_per_worker(server.local_addr(), 2);
    let mut more: Vec<Ps> = (0..6).map(|_| Ps::connect(server.local_addr())).collect();
    for p in c.iter_mut().chain(more.iter_mut()) {
        p.subscribe("game:7");
    }
    let r = c[0].request(json!({"type":"presence","room":"game:7"}), 8);
    assert_eq!(r["count"], 8, "{r}");
    let mut members: Vec<String> =
        r["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect();
    members.sort();
    let mut expect: Vec<String> = c.iter().chain(more.iter()).map(|p| p.id.clone()).collect();
    expect.sort();
    assert_eq!(members, expect);
    drop(more);
    assert!(eventually(|| {
        let r = c[1].request(json!({"type":"presence","room":"game:7"}), 9);
        r["count"] == 2
    }));
}

/// Reads frames from a raw socket, returning each text payload (a ping
/// from the server's heartbeat is skipped, as a client's library would).
fn read_texts(raw: &mut Raw, n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|_| loop {
            let f = raw.read_frame().expect("frame");
            if f.opcode != 9 {
                assert_eq!(f.opcode, 1, "a text frame");
                break serde_json::from_slice(&f.payload).expect("JSON");
            }
        })
        .collect()
}

fn raw_subscriber(addr: std::net::SocketAddr, room: &str) -> Raw {
    let mut raw = Raw::upgrade(addr, "/ws");
    let welcome = read_texts(&mut raw, 1);
    assert_eq!(welcome[0]["type"], "welcome");
    let req = json!({"type":"subscribe","room":room,"id":1}).to_string();
    raw.send(&frame(true, 1, req.as_bytes()));
    assert_eq!(read_texts(&mut raw, 1)[0]["type"], "ack");
    raw
}

/// Reads `n` messages on every subscriber (four threads) and checks that
/// message `i` carries `data` i and room offset i + 1: all of them, in
/// publish order.
fn every_subscriber_gets_in_order(mut subs: Vec<Raw>, n: usize) {
    let per_thread = subs.len().div_ceil(4).max(1);
    let mut threads = Vec::new();
    while !subs.is_empty() {
        let chunk: Vec<Raw> = subs.drain(..subs.len().min(per_thread)).collect();
        threads.push(std::thread::spawn(move || {
            for mut sub in chunk {
                for (i, m) in read_texts(&mut sub, n).iter().enumerate() {
                    assert_eq!(m["data"], i, "in publish order");
                    assert_eq!(m["offset"], i + 1, "offset increases per room");
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_thousand_subscribers_over_all_workers_get_all_of_a_thousand_messages_in_order() {
    let server = start(&config(2, |_| {}));
    let addr = server.local_addr();
    let subs: Vec<Raw> = (0..1000).map(|_| raw_subscriber(addr, "feed")).collect();
    assert!(server.worker_stats().iter().all(|w| w.upgraded > 100), "spread over workers");
    let mut publisher = Raw::upgrade(addr, "/ws");
    read_texts(&mut publisher, 1);
    let mut batch = Vec::new();
    for i in 0..1000 {
        batch.extend(frame(
            true,
            1,
            json!({"type":"publish","room":"feed","data":i}).to_string().as_bytes(),
        ));
    }
    publisher.send(&batch);
    every_subscriber_gets_in_order(subs, 1000);
    assert_eq!(server.stats().deliveries, 1_000_000);
}

/// One worker holds more dirty subscribers than it flushes per loop
/// iteration (1,024), so the fan-out spans iterations while the publisher
/// (a member of the room too) keeps publishing and gets its acks: nothing is
/// lost, duplicated or reordered, and the publisher sees its own messages in
/// order between its acks.
#[test]
fn a_room_bigger_than_one_iterations_flush_gets_every_message_in_order() {
    let server = start(&config(1, |_| {}));
    let addr = server.local_addr();
    let subs: Vec<Raw> = (0..1500).map(|_| raw_subscriber(addr, "big")).collect();
    let mut publisher = raw_subscriber(addr, "big");
    const N: usize = 300;
    for i in 0..N {
        let req = json!({"type":"publish","room":"big","data":i,"id":i + 10});
        publisher.send(&frame(true, 1, req.to_string().as_bytes()));
    }
    // The publisher: each ack, and its own copy of every message in order.
    let mut acks = 0;
    let mut seen = 0;
    while acks < N || seen < N {
        let m = &read_texts(&mut publisher, 1)[0];
        match m["type"].as_str() {
            Some("ack") => {
                assert_eq!(m["id"], acks + 10, "acks in request order");
                acks += 1;
            }
            Some("message") => {
                assert_eq!(m["data"], seen, "own messages in publish order");
                seen += 1;
            }
            other => panic!("unexpected {other:?}: {m}"),
        }
    }
    every_subscriber_gets_in_order(subs, N);
    assert_eq!(server.stats().deliveries, (N * 1501) as u64);
}

#[test]
fn a_stalled_subscriber_in_a_room_of_a_thousand_does_not_delay_the_others() {
    let server = start(&config(2, |c| {
        c.write_queue.max_bytes = 64 * 1024;
        c.write_queue.high_water_bytes = 32 * 1024;
        // Small kernel buffers, so the stalled client's backlog reaches the
        // server's queue instead of sitting in 4 MiB of autotuned buffer.
        c.server.socket_send_buffer_bytes = 16 * 1024;
        // 1.5 GB of deliveries take a while in a debug build on a busy
        // machine: the readers never send, so keep the server from pinging
        // them (25 s by default) or taking them for dead (60 s).
        c.health.ping_interval_ms = 600_000;
        c.health.dead_client_ms = 1_200_000;
    }));
    let addr = server.local_addr();
    // The stalled one has a tiny receive window so the kernel absorbs little.
    let stalled = {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&addr.into()).unwrap();
        let mut raw = Raw::from_stream(sock.into());
        raw.send(upgrade_request("/ws").as_bytes());
        assert!(raw.read_http_head().starts_with("HTTP/1.1 101"));
        read_texts(&mut raw, 1);
        raw.send(&frame(
            true,
            1,
            json!({"type":"subscribe","room":"r","id":1}).to_string().as_bytes(),
        ));
        assert_eq!(read_texts(&mut raw, 1)[0]["type"], "ack");
        raw
    };
    let subs: Vec<Raw> = (0..999).map(|_| raw_subscriber(addr, "r")).collect();
    let mut publisher = Raw::upgrade(addr, "/ws");
    read_texts(&mut publisher, 1);
    let filler = "x".repeat(1000);
    let count = 1500;
    // Readers take one message from each of their subscribers in turn and
    // report progress; the publisher stays at most 50 messages ahead of the
    // slowest *reading* subscriber (never of the stalled one).
    let progress: Vec<Arc<AtomicUsize>> = (0..4).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let mut threads = Vec::new();
    let mut subs = subs;
    for p in &progress {
        let mut chunk: Vec<Raw> = subs.drain(..subs.len().min(250)).collect();
        let p = p.clone();
        threads.push(std::thread::spawn(move || {
            for i in 0..count {
                for sub in chunk.iter_mut() {
                    let m = &read_texts(sub, 1)[0];
                    assert_eq!(m["offset"], i + 1, "every message, in order");
                }
                p.store(i + 1, Ordering::Release);
            }
        }));
    }
    for k in 0..count {
        while progress.iter().map(|p| p.load(Ordering::Acquire)).min().unwrap_or(0) + 50 < k {
            // A reader that stopped early failed: report it (join below)
            // instead of waiting for its progress forever.
            if threads.iter().any(|t| t.is_finished()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if threads.iter().any(|t| t.is_finished()) {
            break;
        }
        let req = json!({"type":"publish","room":"r","data":filler}).to_string();
        publisher.send(&frame(true, 1, req.as_bytes()));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(eventually(|| server.stats().closes(CloseCause::SlowConsumer) == 1));
    drop(stalled);
}

#[test]
fn malformed_requests_get_their_error_code_and_the_connection_stays_usable() {
    let server = start(&config(1, |c| c.pubsub.max_rooms_per_connection = 2));
    let mut c = Ps::connect(server.local_addr());
    let long_room = "r".repeat(129);
    let big = "x".repeat(70 * 1024);
    let cases = [
        (json!({"type":"fly"}), "unknown_type"),
        (json!({"room":"a"}), "missing_field"),
        (json!({"type":"subscribe"}), "missing_field"),
        (json!({"type":"subscribe","room":42}), "bad_field"),
        (json!({"type":"subscribe","room":"no spaces"}), "bad_room"),
        (json!({"type":"subscribe","room":long_room}), "bad_room"),
        (json!({"type":"publish","room":"a","data":big}), "too_large"),
        (json!({"type":"send","to":"not-hex","data":1}), "bad_field"),
    ];
    for (i, (req, code)) in cases.into_iter().enumerate() {
        let r = c.request(req, i as u64);
        assert_eq!(r["type"], "error");
        assert_eq!(r["code"], code, "{r}");
    }
    c.ws.send(tungstenite::Message::text("{not json")).unwrap();
    assert_eq!(c.recv()["code"], "bad_json");
    c.ws.send(tungstenite::Message::binary(vec![9u8, 1, 2])).unwrap();
    assert_eq!(c.recv()["code"], "bad_binary");
    // An id strict parsers could not read back is refused, not echoed.
    c.ws.send(tungstenite::Message::text(r#"{"type":"subscribe","room":"a","id":1550e5555555}"#))
        .unwrap();
    let r = c.recv();
    assert_eq!(r["code"], "bad_field", "{r}");
    assert!(r.get("id").is_none(), "{r}");
    c.subscribe("one");
    c.subscribe("two");
    let r = c.request(json!({"type":"subscribe","room":"three"}), 99);
    assert_eq!(r["code"], "too_many_rooms");
    // Still usable: its own publish comes back (it is subscribed), then the ack.
    c.send(json!({"type":"publish","room":"one","data":"ok","id":100}));
    let m = c.recv();
    assert_eq!((m["type"].as_str(), m["data"].as_str()), (Some("message"), Some("ok")));
    assert_eq!(c.recv(), json!({"type":"ack","id":100}));
}

#[test]
fn binary_publish_is_delivered_in_binary_form() {
    let server = start(&config(2, |_| {}));
    let mut c = one_per_worker(server.local_addr(), 2);
    c[1].subscribe("bin");
    let mut msg = vec![1u8, 3];
    msg.extend_from_slice(b"bin");
    msg.extend_from_slice(&[0, 255, 7]);
    c[0].ws.send(tungstenite::Message::binary(msg)).unwrap();
    let got = c[1].recv();
    let bytes: Vec<u8> =
        got["binary"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
    let from = u64::from_str_radix(&c[0].id, 16).unwrap();
    let mut expect = vec![2u8, 3];
    expect.extend_from_slice(b"bin");
    expect.extend_from_slice(&1u64.to_be_bytes());
    expect.extend_from_slice(&from.to_be_bytes());
    expect.extend_from_slice(&[0, 255, 7]);
    assert_eq!(bytes, expect);
}

fn http_post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    let len = body.len();
    http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {len}\r\n\r\n{body}"
        ),
    )
}

#[test]
fn http_publish_api_reaches_websocket_subscribers() {
    let server = start(&config(2, |c| c.pubsub.http_publish = true));
    let addr = server.local_addr();
    let mut subs = one_per_worker(addr, 2);
    for s in subs.iter_mut() {
        s.subscribe("alerts");
    }
    let (status, body) =
        http_post(addr, "/api/publish", r#"{"room":"alerts","data":{"level":"high"}}"#);
    assert_eq!(status, 202, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"], "accepted");
    for s in subs.iter_mut() {
        let m = s.recv();
        assert_eq!(m["data"], json!({"level":"high"}));
        assert_eq!(m["from"], serde_json::Value::Null);
    }
    let (status, body) = http_post(addr, "/api/publish", r#"{"data":1}"#);
    assert_eq!(status, 400);
    assert!(body.contains("room"), "{body}");
    let (status, _) = http_post(addr, "/api/publish", "not json");
    assert_eq!(status, 400);
    let big = format!(r#"{{"room":"alerts","data":"{}"}}"#, "x".repeat(200 * 1024));
    let (status, _) = http_post(addr, "/api/publish", &big);
    assert_eq!(status, 413);
}

#[test]
fn http_publish_api_is_off_unless_enabled() {
    let server = start(&config(1, |_| {}));
    let (status, _) = http_post(server.local_addr(), "/api/publish", r#"{"room":"a","data":1}"#);
    assert_eq!(status, 404);
}

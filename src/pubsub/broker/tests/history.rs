//! Positions, recovery and `history` across brokers, the owner's channel
//! played out by hand.

use super::*;
use crate::pubsub::history::{HistorySettings, Retention};

fn with_history(size: usize, ttl_ms: u64) -> impl Fn(&mut BrokerSettings) {
    move |s| s.history = HistorySettings::new(Retention { size, ttl_ms }, 64 << 20)
}

fn publish(net: &mut Net, p: ConnId, room: &str, i: usize) {
    net.request(p, &format!(r#"{{"type":"publish","room":"{room}","data":{{"i":{i}}}}}"#));
}

fn subscribe_since(net: &mut Net, c: ConnId, room: &str, offset: u64, epoch: &str) {
    net.request(
        c,
        &format!(
            r#"{{"type":"subscribe","room":"{room}","id":"s","since":{{"offset":{offset},"epoch":"{epoch}"}}}}"#
        ),
    );
}

/// Subscribes `c` (with id 1) and settles; returns the ack.
fn subscribe(net: &mut Net, c: ConnId, room: &str) -> Value {
    net.request(c, &format!(r#"{{"type":"subscribe","room":"{room}","id":1}}"#));
    net.settle();
    let got = net.take(c);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], "ack");
    got[0].clone()
}

#[test]
fn a_reconnect_gets_exactly_what_it_missed_then_live_while_others_publish() {
    let mut net = Net::with(3, with_history(1000, 60_000));
    let room = room_owned_by(&net, 2);
    // Another subscriber on the reconnecting client's worker: deliveries for
    // the room keep reaching that worker while the recovery is in flight.
    let keeper = net.connect(0);
    subscribe(&mut net, keeper, &room);
    let first = net.connect(0);
    let ack = subscribe(&mut net, first, &room);
    let epoch = ack["epoch"].as_str().expect("epoch").to_string();
    assert_eq!(epoch.len(), 8);
    let publisher = net.connect(1);
    for i in 0..20 {
        publish(&mut net, publisher, &room, i);
    }
    net.settle();
    let seen = offsets(&net.take(first), &room);
    assert_eq!(seen, (1..=20).collect::<Vec<_>>());
    assert!(net.take(first).is_empty());
    net.disconnect(first);
    // 500 messages missed.
    for i in 20..520 {
        publish(&mut net, publisher, &room, i);
        if i % 7 == 0 {
            net.settle();
        }
    }
    net.settle();
    let back = net.connect(0);
    subscribe_since(&mut net, back, &room, 20, &epoch);
    // Publishes race it: five reach the owner before it, more after.
    for i in 520..525 {
        publish(&mut net, publisher, &room, i);
    }
    net.send(1);
    net.send(0); // the subscribe is on its way to the owner
    for i in 525..530 {
        publish(&mut net, publisher, &room, i);
    }
    net.send(1);
    net.receive(2); // the owner answers: 525 is its position
    for i in 530..540 {
        publish(&mut net, publisher, &room, i);
        net.send(1);
        if i % 3 == 0 {
            net.receive(2);
            net.receive(0);
        }
    }
    net.settle();
    let got = net.take(back);
    assert_eq!(got[0]["type"], "ack", "the ack first: {}", got[0]);
    assert_eq!(got[0]["id"], "s");
    assert_eq!(got[0]["recovered"], true);
    assert_eq!(got[0]["epoch"], epoch.as_str());
    let position = got[0]["offset"].as_u64().expect("offset");
    assert_eq!(position, 525, "the owner saw five racing publishes first");
    assert_eq!(offsets(&got[1..], &room), (21..=540).collect::<Vec<_>>(), "no gap, no duplicate");
    assert_eq!(got.len(), 1 + 520);
    let data: Vec<u64> = got[1..].iter().map(|m| m["data"]["i"].as_u64().expect("i")).collect();
    assert_eq!(data, (20..540).collect::<Vec<_>>());
    assert_eq!(offsets(&net.take(keeper), &room), (1..=540).collect::<Vec<_>>(), "keeper");
    assert_eq!(net.brokers[0].stats().replayed, 505);
}

#[test]
fn the_same_on_the_owners_worker() {
    let mut net = Net::with(2, with_history(100, 60_000));
    let room = room_owned_by(&net, 0);
    let p = net.connect(1);
    let a = net.connect(0);
    let epoch = subscribe(&mut net, a, &room)["epoch"].as_str().expect("epoch").to_string();
    for i in 0..10 {
        publish(&mut net, p, &room, i);
    }
    net.settle();
    assert_eq!(offsets(&net.take(a), &room).len(), 10);
    net.disconnect(a);
    for i in 10..15 {
        publish(&mut net, p, &room, i);
    }
    net.settle();
    let b = net.connect(0);
    subscribe_since(&mut net, b, &room, 10, &epoch);
    publish(&mut net, p, &room, 15);
    net.settle();
    let got = net.take(b);
    assert_eq!((got[0]["recovered"].as_bool(), got[0]["offset"].as_u64()), (Some(true), Some(15)));
    assert_eq!(offsets(&got[1..], &room), (11..=16).collect::<Vec<_>>());
}

#[test]
fn a_lost_position_says_not_recovered_with_the_new_one() {
    let mut net = Net::with(2, with_history(10, 1_000));
    let room = room_owned_by(&net, 1);
    let p = net.connect(1);
    let a = net.connect(0);
    let old = subscribe(&mut net, a, &room)["epoch"].as_str().expect("epoch").to_string();
    for i in 0..3 {
        publish(&mut net, p, &room, i);
    }
    net.settle();
    net.disconnect(a);
    net.settle();
    // Messages expire at 1 s, the idle room is forgotten 1 s later.
    net.brokers[1].handle_timeout(1_000, &mut net.sinks[1]);
    net.brokers[1].handle_timeout(2_000, &mut net.sinks[1]);
    publish(&mut net, p, &room, 3);
    let b = net.connect(0);
    subscribe_since(&mut net, b, &room, 3, &old);
    net.settle();
    let got = net.take(b);
    assert_eq!(got.len(), 1, "nothing replayed: {got:?}");
    assert_eq!(got[0]["recovered"], false);
    assert_ne!(got[0]["epoch"], old.as_str(), "a new epoch");
    assert_eq!(got[0]["offset"], 1, "the new run has one message");
    // Offsets older than the history, or in the future: not recovered.
    let epoch = got[0]["epoch"].as_str().expect("epoch").to_string();
    let c = net.connect(0);
    subscribe_since(&mut net, c, &room, 7, &epoch);
    net.settle();
    assert_eq!(net.take(c)[0]["recovered"], false, "in the future");
}

#[test]
fn a_subscriber_that_leaves_before_the_answer_is_never_a_member() {
    let mut net = Net::with(2, with_history(10, 60_000));
    let room = room_owned_by(&net, 1);
    let a = net.connect(0);
    net.request(a, &format!(r#"{{"type":"subscribe","room":"{room}","id":1}}"#));
    net.request(a, &format!(r#"{{"type":"unsubscribe","room":"{room}","id":2}}"#));
    assert_eq!(net.take(a)[0]["id"], 2, "the unsubscribe is acked at once");
    let b = net.connect(0);
    net.request(b, &format!(r#"{{"type":"subscribe","room":"{room}","id":3}}"#));
    net.disconnect(b);
    net.settle();
    let got = net.take(a);
    assert_eq!(
        (got.len(), got[0]["id"].as_i64(), got[0]["offset"].as_u64()),
        (1, Some(1), Some(0))
    );
    assert_eq!(net.brokers[0].subscriptions(), 0);
    assert_eq!(net.brokers[0].rooms(), 0);
    // The owner heard that worker 0 has nobody: a publish goes nowhere.
    let p = net.connect(1);
    publish(&mut net, p, &room, 0);
    assert!(!net.brokers[1].has_bus_output(), "nothing sent to worker 0");
}

#[test]
fn subscribing_again_acks_the_position_and_changes_nothing() {
    let mut net = Net::with(2, with_history(10, 60_000));
    let room = room_owned_by(&net, 1);
    let a = net.connect(0);
    subscribe(&mut net, a, &room);
    let p = net.connect(1);
    publish(&mut net, p, &room, 0);
    net.settle();
    net.take(a);
    let ack = subscribe(&mut net, a, &room);
    assert_eq!(ack["offset"], 1);
    publish(&mut net, p, &room, 1);
    net.settle();
    assert_eq!(offsets(&net.take(a), &room), vec![2], "one membership, one delivery");
    assert_eq!(net.brokers[0].subscriptions(), 1);
}

#[test]
fn waiting_subscribes_count_against_the_room_limit() {
    let mut net = Net::with(2, |s| s.max_rooms = 2);
    let a = net.connect(0);
    for (i, room) in ["r1", "r2", "r3"].iter().enumerate() {
        net.request(a, &format!(r#"{{"type":"subscribe","room":"{room}","id":{i}}}"#));
    }
    let early = net.take(a);
    net.settle();
    let mut got = early;
    got.extend(net.take(a));
    let refused: Vec<_> = got.iter().filter(|m| m["type"] == "error").collect();
    assert_eq!(refused.len(), 1, "{got:?}");
    assert_eq!(
        (refused[0]["code"].as_str(), refused[0]["id"].as_i64()),
        (Some("too_many_rooms"), Some(2))
    );
    assert_eq!(net.brokers[0].subscriptions(), 2);
}

#[test]
fn history_requests_are_answered_by_the_owner() {
    let mut net = Net::with(3, with_history(100, 60_000));
    let room = room_owned_by(&net, 2);
    let p = net.connect(1);
    for i in 0..30 {
        publish(&mut net, p, &room, i);
    }
    net.settle();
    let asker = net.connect(0);
    net.request(asker, &format!(r#"{{"type":"history","room":"{room}","limit":5,"id":"h"}}"#));
    assert!(net.take(asker).is_empty(), "asked of the owner");
    net.settle();
    let got = net.take(asker);
    assert_eq!(got.len(), 1);
    let h = &got[0];
    assert_eq!(
        (h["type"].as_str(), h["id"].as_str(), h["offset"].as_u64()),
        (Some("history"), Some("h"), Some(30))
    );
    assert_eq!(h["truncated"], true);
    let msgs = h["messages"].as_array().expect("messages");
    let offs: Vec<u64> = msgs.iter().map(|m| m["offset"].as_u64().expect("offset")).collect();
    assert_eq!(offs, vec![26, 27, 28, 29, 30]);
    assert_eq!(msgs[4]["data"]["i"], 29);
    assert_eq!(msgs[4]["from"], proto::format_conn_id(p.get()));
    // Paging with since.
    let epoch = h["epoch"].as_str().expect("epoch");
    net.request(
        asker,
        &format!(r#"{{"type":"history","room":"{room}","limit":100,"since":{{"offset":25,"epoch":"{epoch}"}}}}"#),
    );
    net.settle();
    let h = &net.take(asker)[0];
    assert_eq!(h["messages"].as_array().map(Vec::len), Some(5));
    assert_eq!(h["truncated"], false);
    // A publish to a room without history and subscribers is not kept.
    let mut plain = Net::new(2);
    let q = plain.connect(0);
    plain.request(q, r#"{"type":"publish","room":"x","data":1}"#);
    plain.request(q, r#"{"type":"history","room":"x","limit":5}"#);
    plain.settle();
    let h = &plain.take(q)[0];
    assert_eq!((h["offset"].as_u64(), h["messages"].as_array().map(Vec::len)), (Some(0), Some(0)));
}

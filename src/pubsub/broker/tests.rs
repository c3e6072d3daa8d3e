//! Several brokers wired in memory: no sockets, no threads. The test decides
//! when each worker's bus batches arrive, so races and a slow owner are
//! played out exactly.

use std::collections::{HashSet, VecDeque};

use serde_json::Value;

use super::*;
use crate::id::ConnId;

/// What one worker's connections received.
#[derive(Default)]
struct Sink {
    live: HashSet<ConnId>,
    got: Vec<(ConnId, Bytes)>,
}

impl Deliver for Sink {
    fn deliver(&mut self, to: ConnId, frame: &Bytes) -> bool {
        if !self.live.contains(&to) {
            return false;
        }
        self.got.push((to, frame.clone()));
        true
    }

    fn deliver_direct(&mut self, to: ConnId, frame: &Bytes) -> bool {
        self.deliver(to, frame)
    }
}

/// `n` brokers and the batches in flight to each, in channel order.
struct Net {
    brokers: Vec<Broker>,
    sinks: Vec<Sink>,
    inbox: Vec<VecDeque<Vec<BusMsg>>>,
    next_key: usize,
    now_ms: u64,
}

impl Net {
    fn new(n: usize) -> Net {
        Net::with(n, |_| {})
    }

    /// `n` brokers whose settings `tweak` adjusts.
    fn with(n: usize, tweak: impl Fn(&mut BrokerSettings)) -> Net {
        let hasher = RoomHasher::new();
        Net {
            brokers: (0..n)
                .map(|i| {
                    let mut settings = BrokerSettings::new(i, n, hasher.clone());
                    tweak(&mut settings);
                    Broker::new(settings)
                })
                .collect(),
            sinks: (0..n).map(|_| Sink::default()).collect(),
            inbox: (0..n).map(|_| VecDeque::new()).collect(),
            next_key: 0,
            now_ms: 0,
        }
    }

    fn owner(&self, room: &str) -> usize {
        self.brokers[0].settings().hasher.owner_of(room, self.brokers.len())
    }

    /// A new `/ws` connection on worker `w` (its welcome is dropped).
    fn connect(&mut self, w: usize) -> ConnId {
        self.next_key += 1;
        let id = ConnId::from_parts(w, self.next_key, 1);
        self.sinks[w].live.insert(id);
        self.brokers[w].handle_open(id, &mut self.sinks[w]);
        let welcome = self.take(id);
        assert_eq!(welcome.len(), 1);
        assert_eq!(welcome[0]["type"], "welcome");
        id
    }

    fn disconnect(&mut self, c: ConnId) {
        self.sinks[c.worker()].live.remove(&c);
        self.brokers[c.worker()].handle_close(c);
    }

    fn request(&mut self, c: ConnId, json: &str) {
        let w = c.worker();
        let payload = Bytes::copy_from_slice(json.as_bytes());
        let anyone = Identity::anonymous_all();
        let now = self.now_ms;
        self.brokers[w].handle_request(
            c,
            Some(&anyone),
            OpData::Text,
            &payload,
            now,
            &mut self.sinks[w],
        );
    }

    /// Moves what worker `from` has for others into their inboxes (what the
    /// worker does at the end of each poll iteration).
    fn send(&mut self, from: usize) {
        for dest in 0..self.brokers.len() {
            let (batch, _) = self.brokers[from].poll_bus(dest);
            if !batch.is_empty() {
                self.inbox[dest].push_back(batch);
            }
        }
    }

    /// Worker `w` handles everything in its inbox, then sends its output.
    fn receive(&mut self, w: usize) {
        while let Some(batch) = self.inbox[w].pop_front() {
            for msg in batch {
                self.brokers[w].handle_bus(msg, &mut self.sinks[w]);
            }
        }
        self.send(w);
    }

    /// Everyone sends and receives until nothing is in flight.
    fn settle(&mut self) {
        for w in 0..self.brokers.len() {
            self.send(w);
        }
        while self.inbox.iter().any(|i| !i.is_empty()) {
            for w in 0..self.brokers.len() {
                self.receive(w);
            }
        }
    }

    /// The JSON frames connection `c` got so far (and forgets them).
    fn take(&mut self, c: ConnId) -> Vec<Value> {
        let sink = &mut self.sinks[c.worker()];
        let mut mine = Vec::new();
        sink.got.retain(|(to, frame)| {
            if *to == c {
                mine.push(json_of(frame));
                false
            } else {
                true
            }
        });
        mine
    }
}

/// Decodes an unmasked server text frame.
fn json_of(frame: &Bytes) -> Value {
    assert_eq!(frame[0], 0x81, "a final text frame");
    let (len, at) = match frame[1] {
        126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
        127 => panic!("test frames are small"),
        n => (n as usize, 2),
    };
    serde_json::from_slice(&frame[at..at + len]).expect("valid JSON")
}

fn offsets(msgs: &[Value], room: &str) -> Vec<u64> {
    msgs.iter()
        .filter(|m| m["type"] == "message" && m["room"] == room)
        .map(|m| m["offset"].as_u64().expect("offset"))
        .collect()
}

/// A room name owned by worker `owner` of the net.
fn room_owned_by(net: &Net, owner: usize) -> String {
    (0..).map(|i| format!("room-{i}")).find(|r| net.owner(r) == owner).expect("some name")
}

#[test]
fn every_subscriber_on_every_broker_sees_a_room_in_one_order() {
    let mut net = Net::new(3);
    let room = "chat:lobby";
    let subs: Vec<ConnId> = (0..6).map(|i| net.connect(i % 3)).collect();
    for &s in &subs {
        net.request(s, &format!(r#"{{"type":"subscribe","room":"{room}","id":1}}"#));
    }
    net.settle();
    let pubs: Vec<ConnId> = (0..3).map(|w| net.connect(w)).collect();
    // Interleave publishers and delivery rounds unevenly.
    for i in 0..30 {
        let p = pubs[i % 3];
        net.request(
            p,
            &format!(r#"{{"type":"publish","room":"{room}","data":{{"p":{},"n":{i}}}}}"#, i % 3),
        );
        if i % 4 == 0 {
            net.send(i % 3);
            net.receive((i + 1) % 3);
        }
    }
    net.settle();
    let mut orders = Vec::new();
    for &s in &subs {
        let got = net.take(s);
        assert_eq!(got[0]["type"], "ack");
        let msgs = &got[1..];
        assert_eq!(offsets(msgs, room), (1..=30).collect::<Vec<_>>(), "gapless, in order");
        // Each publisher's own messages keep their order.
        for p in 0..3 {
            let ns: Vec<u64> = msgs
                .iter()
                .filter(|m| m["data"]["p"] == p)
                .map(|m| m["data"]["n"].as_u64().expect("n"))
                .collect();
            assert!(ns.windows(2).all(|w| w[0] < w[1]), "publisher {p} reordered: {ns:?}");
        }
        orders.push(msgs.iter().map(|m| m["data"]["n"].clone()).collect::<Vec<_>>());
    }
    assert!(orders.windows(2).all(|w| w[0] == w[1]), "every subscriber sees one order");
}

#[test]
fn presence_counts_members_on_every_broker() {
    let mut net = Net::new(3);
    let members: Vec<ConnId> = (0..5).map(|i| net.connect(i % 3)).collect();
    for &m in &members {
        net.request(m, r#"{"type":"subscribe","room":"r"}"#);
    }
    let asker = net.connect(1);
    net.settle();
    net.request(asker, r#"{"type":"presence","room":"r","id":"p1"}"#);
    assert!(net.take(asker).is_empty(), "the answer waits for the other workers");
    net.settle();
    let got = net.take(asker);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["id"], "p1");
    assert_eq!(got[0]["count"], 5);
    let listed: HashSet<String> =
        got[0]["members"].as_array().expect("members").iter().map(|v| v.to_string()).collect();
    let want: HashSet<String> =
        members.iter().map(|m| format!("\"{}\"", proto::format_conn_id(m.get()))).collect();
    assert_eq!(listed, want);
    // A member that leaves is no longer counted.
    net.disconnect(members[0]);
    net.settle();
    net.request(asker, r#"{"type":"presence","room":"r"}"#);
    net.settle();
    assert_eq!(net.take(asker)[0]["count"], 4);
}

#[test]
fn a_publish_made_after_the_subscribe_was_sent_on_is_delivered() {
    let mut net = Net::new(3);
    let room = room_owned_by(&net, 2);
    let sub = net.connect(0);
    let publisher = net.connect(1);
    net.request(sub, &format!(r#"{{"type":"subscribe","room":"{room}","id":7}}"#));
    // The ack comes from the owner, which counted the subscriber's worker
    // as interested before answering: anything published after is sent on.
    net.send(0);
    assert!(net.take(sub).is_empty(), "the ack waits for the owner");
    net.receive(2);
    net.receive(0);
    let ack = net.take(sub);
    assert_eq!((ack[0]["type"].as_str(), ack[0]["offset"].as_u64()), (Some("ack"), Some(0)));
    net.request(publisher, &format!(r#"{{"type":"publish","room":"{room}","data":1}}"#));
    net.settle();
    assert_eq!(offsets(&net.take(sub), &room), vec![1]);
}

#[test]
fn a_subscribe_racing_a_publish_gets_a_gapless_suffix() {
    // The publish and the interest reach the owner in either order: the
    // subscriber gets the message or not, and every later one without gap.
    for interest_first in [true, false] {
        let mut net = Net::new(3);
        let room = room_owned_by(&net, 2);
        let keeper = net.connect(2); // keeps the room alive at the owner
        net.request(keeper, &format!(r#"{{"type":"subscribe","room":"{room}"}}"#));
        let sub = net.connect(0);
        let publisher = net.connect(1);
        net.settle();
        net.request(sub, &format!(r#"{{"type":"subscribe","room":"{room}"}}"#));
        net.request(publisher, &format!(r#"{{"type":"publish","room":"{room}","data":1}}"#));
        if interest_first {
            net.send(0);
            net.send(1);
        } else {
            net.send(1);
            net.send(0);
        }
        net.receive(2);
        for i in 2..=5 {
            net.request(publisher, &format!(r#"{{"type":"publish","room":"{room}","data":{i}}}"#));
        }
        net.settle();
        let want: Vec<u64> = if interest_first { (1..=5).collect() } else { (2..=5).collect() };
        assert_eq!(offsets(&net.take(sub), &room), want, "interest first: {interest_first}");
        assert_eq!(offsets(&net.take(keeper), &room), (1..=5).collect::<Vec<_>>());
    }
}

#[test]
fn an_owner_that_falls_behind_loses_nothing_and_keeps_order() {
    let mut net = Net::new(3);
    let room = room_owned_by(&net, 2);
    let subs = [net.connect(0), net.connect(1), net.connect(2)];
    for s in subs {
        net.request(s, &format!(r#"{{"type":"subscribe","room":"{room}"}}"#));
    }
    net.settle();
    let p0 = net.connect(0);
    let p1 = net.connect(1);
    // The owner handles nothing for 100 rounds while both publishers go on.
    for i in 0..100 {
        let p = if i % 2 == 0 { p0 } else { p1 };
        net.request(p, &format!(r#"{{"type":"publish","room":"{room}","data":{i}}}"#));
        net.send(0);
        net.send(1);
        net.receive(0);
        net.receive(1);
    }
    assert!(net.inbox[2].len() >= 100, "the owner's channel holds the backlog");
    for s in subs {
        assert!(
            offsets(&net.take(s), &room).is_empty(),
            "nothing sequenced while the owner is behind"
        );
    }
    net.settle();
    for s in subs {
        let msgs = net.take(s);
        assert_eq!(offsets(&msgs, &room), (1..=100).collect::<Vec<_>>());
        let evens: Vec<i64> =
            msgs.iter().filter_map(|m| m["data"].as_i64()).filter(|d| d % 2 == 0).collect();
        assert!(evens.windows(2).all(|w| w[0] < w[1]), "one publisher's order kept");
    }
}

#[test]
fn a_presence_query_to_a_stalled_worker_times_out_with_an_error() {
    let mut net = Net::new(2);
    let asker = net.connect(0);
    net.request(asker, r#"{"type":"presence","room":"r","id":9}"#);
    net.send(0); // worker 1 never answers
    let deadline = net.brokers[0].poll_timeout().expect("a query in flight");
    assert_eq!(deadline, net.brokers[0].settings().query_timeout_ms);
    net.brokers[0].handle_timeout(deadline - 1, &mut net.sinks[0]);
    assert!(net.take(asker).is_empty(), "not yet");
    net.brokers[0].handle_timeout(deadline, &mut net.sinks[0]);
    let got = net.take(asker);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0]["type"].as_str(), got[0]["code"].as_str()),
        (Some("error"), Some("timeout"))
    );
    assert_eq!(got[0]["id"], 9);
    assert_eq!(net.brokers[0].stats().query_timeouts, 1, "counted for /metrics");
    assert!(net.brokers[0].poll_timeout().is_none());
    // A late reply finds nothing and sends nothing.
    net.receive(1);
    net.receive(0);
    assert!(net.take(asker).is_empty());
}

#[test]
fn direct_messages_cross_brokers_and_report_missing_targets() {
    let mut net = Net::new(3);
    let a = net.connect(0);
    let b = net.connect(2);
    let to = proto::format_conn_id(b.get());
    net.request(a, &format!(r#"{{"type":"send","to":"{to}","data":"hi","id":1}}"#));
    net.settle();
    assert_eq!(net.take(b)[0]["data"], "hi");
    assert_eq!(net.take(a)[0]["type"], "ack");
    net.disconnect(b);
    net.request(a, &format!(r#"{{"type":"send","to":"{to}","data":"hi","id":2}}"#));
    net.settle();
    let got = net.take(a);
    assert_eq!((got[0]["code"].as_str(), got[0]["id"].as_i64()), (Some("not_found"), Some(2)));
}

#[test]
fn a_room_that_empties_everywhere_stops_costing_the_owner() {
    let mut net = Net::new(2);
    let room = room_owned_by(&net, 1);
    let s = net.connect(0);
    net.request(s, &format!(r#"{{"type":"subscribe","room":"{room}"}}"#));
    net.settle();
    assert_eq!(net.brokers[0].rooms(), 1);
    net.request(s, &format!(r#"{{"type":"unsubscribe","room":"{room}"}}"#));
    net.settle();
    assert_eq!((net.brokers[0].rooms(), net.brokers[0].subscriptions()), (0, 0));
    // A publish to the empty room is sequenced by nobody and sent nowhere.
    let p = net.connect(1);
    net.request(p, &format!(r#"{{"type":"publish","room":"{room}","data":0}}"#));
    assert!(!net.brokers[1].has_bus_output());
    assert_eq!(net.brokers[1].stats().deliveries, 0);
}

#[test]
fn forbidden_actions_are_refused_counted_and_reported() {
    let mut net = Net::new(1);
    let c = net.connect(0);
    let payload = Bytes::from_static(br#"{"type":"subscribe","room":"r","id":3}"#);
    net.brokers[0].handle_request(c, None, OpData::Text, &payload, 0, &mut net.sinks[0]);
    let got = net.take(c);
    assert_eq!((got[0]["code"].as_str(), got[0]["id"].as_i64()), (Some("forbidden"), Some(3)));
    assert_eq!(net.brokers[0].stats().forbidden, 1);
    match net.brokers[0].poll_event() {
        Some(BrokerEvent::Forbidden { conn, publish: false, room, .. }) => {
            assert_eq!((conn, &*room), (c, "r"));
        }
        other => panic!("expected a Forbidden event, got {other:?}"),
    }
    assert_eq!(net.brokers[0].subscriptions(), 0);
}

#[test]
fn room_owners_are_salted_per_process_and_agree_within_one() {
    let a = RoomHasher::new();
    let b = RoomHasher::new();
    let names: Vec<String> = (0..64).map(|i| format!("room-{i}")).collect();
    let owners = |h: &RoomHasher| names.iter().map(|n| h.owner_of(n, 8)).collect::<Vec<_>>();
    assert_eq!(owners(&a), owners(&a.clone()), "clones agree");
    // Two salts agreeing on 64 names by chance: (1/8)^64.
    assert_ne!(owners(&a), owners(&b), "a different salt moves rooms");
    assert!(owners(&a).iter().all(|&o| o < 8));
}

mod history;

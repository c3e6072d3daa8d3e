//! Several wsedge nodes (separate processes) sharing rooms, presence and
//! history through one Redis (`redis-server` started per test on a free
//! loopback port, without persistence). See `src/cluster/`.

mod common;
#[path = "common/redis.rs"]
mod harness;

use common::*;
use harness::{prefix, Node, Redis};
use serde_json::json;

const HISTORY: &str = "[pubsub]\nhistory_size = 1000\nhistory_ttl_ms = 60000\n";

fn publish(c: &mut Ps, room: &str, n: u64, id: u64) {
    let r = c.request(json!({"type":"publish","room":room,"data":n}), id);
    assert_eq!(r["type"], "ack", "{r}");
}

/// Reads `n` messages of `room`; returns (offset, data, from) per message.
fn take(c: &mut Ps, room: &str, n: usize) -> Vec<(u64, u64, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let m = c.recv();
        assert_eq!(m["type"], "message", "{m}");
        assert_eq!(m["room"], room);
        let from = m["from"].as_str().unwrap_or("").to_string();
        got.push((m["offset"].as_u64().unwrap(), m["data"].as_u64().unwrap(), from));
    }
    got
}

fn node_of(id: &str) -> u16 {
    wsedge::id::ConnId::new(u64::from_str_radix(id, 16).unwrap()).node()
}

#[test]
fn publishes_on_two_nodes_reach_every_subscriber_once_in_one_order() {
    let redis = Redis::start();
    let p = prefix("order");
    let a = Node::start(&redis.url(), 1, &p, "", "");
    let b = Node::start(&redis.url(), 2, &p, "", "");
    assert!(a.ready_becomes(200) && b.ready_becomes(200));
    // Two subscribers per node (likely on different workers).
    let mut subs: Vec<Ps> =
        (0..4).map(|i| Ps::connect(if i % 2 == 0 { a.addr } else { b.addr })).collect();
    for s in &mut subs {
        s.subscribe("chat");
    }
    let mut pa = Ps::connect(a.addr);
    let mut pb = Ps::connect(b.addr);
    assert_eq!((node_of(&pa.id), node_of(&pb.id)), (1, 2), "the node is in every id");
    for i in 0..100 {
        publish(&mut pa, "chat", i, 1);
        publish(&mut pb, "chat", 1000 + i, 1);
    }
    let first = take(&mut subs[0], "chat", 200);
    let offsets: Vec<u64> = first.iter().map(|m| m.0).collect();
    assert!(
        offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "one sequence for the cluster: {offsets:?}"
    );
    // Each publisher's messages in its own order, from its own id.
    let from_a: Vec<u64> = first.iter().filter(|m| m.2 == pa.id).map(|m| m.1).collect();
    let from_b: Vec<u64> = first.iter().filter(|m| m.2 == pb.id).map(|m| m.1).collect();
    assert_eq!(from_a, (0..100).collect::<Vec<_>>());
    assert_eq!(from_b, (1000..1100).collect::<Vec<_>>());
    for s in &mut subs[1..] {
        assert_eq!(
            take(s, "chat", 200),
            first,
            "every subscriber, every node: same order and offsets"
        );
    }
    // Node A's own subscribers got each message once: nothing more comes.
    subs[0].expect_silence();
    subs[2].expect_silence();
}

#[test]
fn presence_lists_members_of_every_node() {
    let redis = Redis::start();
    let p = prefix("presence");
    let a = Node::start(&redis.url(), 1, &p, "", "");
    let b = Node::start(&redis.url(), 2, &p, "", "");
    assert!(a.ready_becomes(200) && b.ready_becomes(200));
    let mut ma = Ps::connect(a.addr);
    let mut mb = Ps::connect(b.addr);
    ma.subscribe("game");
    mb.subscribe("game");
    let mut asker = Ps::connect(a.addr);
    let mut want = vec![ma.id.clone(), mb.id.clone()];
    want.sort();
    let ok = eventually(|| {
        let r = asker.request(json!({"type":"presence","room":"game"}), 5);
        let mut got: Vec<String> = r["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        got.sort();
        r["count"] == 2 && got == want
    });
    assert!(ok, "presence from node A lists the members of A and B");
    // One leaves: the other node sees it.
    let r = mb.request(json!({"type":"unsubscribe","room":"game"}), 2);
    assert_eq!(r["type"], "ack");
    let mut from_b = Ps::connect(b.addr);
    assert!(eventually(|| {
        let r = from_b.request(json!({"type":"presence","room":"game"}), 6);
        r["count"] == 1 && r["members"][0] == ma.id.as_str()
    }));
}

#[test]
fn a_client_recovers_on_another_node_from_the_redis_stream() {
    let redis = Redis::start();
    let p = prefix("recover");
    let a = Node::start(&redis.url(), 1, &p, "", HISTORY);
    let b = Node::start(&redis.url(), 2, &p, "", HISTORY);
    assert!(a.ready_becomes(200) && b.ready_becomes(200));
    let mut publisher = Ps::connect(b.addr);
    let mut client = Ps::connect(a.addr);
    let ack = client.request(json!({"type":"subscribe","room":"news"}), 1);
    let epoch = ack["epoch"].as_str().unwrap().to_string();
    for i in 1..=5 {
        publish(&mut publisher, "news", i, 2);
    }
    let seen = take(&mut client, "news", 5);
    let last = seen[4].0;
    drop(client);
    for i in 6..=30 {
        publish(&mut publisher, "news", i, 2);
    }
    // Back on the other node, with its position.
    let mut again = Ps::connect(b.addr);
    let since = json!({"offset": last, "epoch": epoch});
    let ack = again.request(json!({"type":"subscribe","room":"news","since":since}), 3);
    assert_eq!(ack["recovered"], true, "{ack}");
    assert_eq!(ack["epoch"], epoch.as_str());
    let replay = take(&mut again, "news", 25);
    assert_eq!(replay.iter().map(|m| m.1).collect::<Vec<_>>(), (6..=30).collect::<Vec<_>>());
    assert_eq!(replay[0].0, last + 1);
    publish(&mut publisher, "news", 31, 4);
    assert_eq!(take(&mut again, "news", 1)[0].1, 31, "then live");
    // A history request on a node where nobody is subscribed reads Redis.
    let mut other = Ps::connect(a.addr);
    let h = other.request(json!({"type":"history","room":"news","limit":3}), 9);
    let data: Vec<u64> =
        h["messages"].as_array().unwrap().iter().map(|m| m["data"].as_u64().unwrap()).collect();
    assert_eq!(data, vec![29, 30, 31], "{h}");
}

#[test]
fn a_bad_redis_url_is_named_by_check_config() {
    let dir = harness::TempDir::new("badurl");
    let path = dir.0.join("c.toml");
    std::fs::write(&path, "[cluster]\nredis_url = \"localhost:6379\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsedge"))
        .arg("--check-config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cluster.redis_url") && err.contains("not a URL"), "{err}");
    // Start-up refuses it the same way.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsedge"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster.redis_url"));
}

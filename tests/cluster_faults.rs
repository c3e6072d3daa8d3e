//! Faults of the cluster backplane, each with wsedge nodes (processes) and
//! a throwaway `redis-server`: Redis unreachable at start, restarted
//! mid-stream, a node cut off while others publish, a Redis that stops
//! answering, a node killed with SIGKILL.

mod common;
#[path = "common/redis.rs"]
mod harness;

use std::collections::HashMap;

use common::*;
use harness::{free_port, prefix, Node, Redis};
use serde_json::{json, Value};

const HISTORY: &str = "[pubsub]\nhistory_size = 1000\nhistory_ttl_ms = 60000\n";

fn metric(node: &Node, name: &str) -> Option<u64> {
    let (_, body) = node.get("/metrics");
    let map: HashMap<&str, &str> =
        body.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once(' ')).collect();
    map.get(name).and_then(|v| v.parse().ok())
}

fn publish(c: &mut Ps, room: &str, n: u64) -> Value {
    c.request(json!({"type":"publish","room":room,"data":n}), 77)
}

/// The next frame, which must be a message of `room`: (offset, data).
fn message(c: &mut Ps, room: &str) -> (u64, u64) {
    let m = c.recv();
    assert_eq!((m["type"].as_str(), m["room"].as_str()), (Some("message"), Some(room)), "{m}");
    (m["offset"].as_u64().unwrap(), m["data"].as_u64().unwrap())
}

/// The next frame, which must be a `gap` of `room`.
fn gap(c: &mut Ps, room: &str) -> Value {
    let m = c.recv();
    assert_eq!((m["type"].as_str(), m["room"].as_str()), (Some("gap"), Some(room)), "{m}");
    m
}

#[test]
fn unreachable_redis_at_start_serves_locally_then_joins_the_cluster() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let p = prefix("late");
    let a = Node::start(&url, 1, &p, "", "");
    // Local delivery works without Redis.
    let mut sub = Ps::connect(a.addr);
    sub.subscribe("room");
    let mut publisher = Ps::connect(a.addr);
    assert_eq!(publish(&mut publisher, "room", 1)["type"], "ack");
    assert_eq!(message(&mut sub, "room").1, 1);
    // Readiness and the metric say the backplane is down; one log line.
    assert_eq!(a.get("/readyz"), (503, "backplane down\n".to_string()));
    assert_eq!(metric(&a, "wsedge_backplane_up"), Some(0));
    std::thread::sleep(std::time::Duration::from_millis(800));
    let log = a.log();
    assert_eq!(log.matches("cannot reach Redis").count(), 1, "one clear line:\n{log}");
    // Redis comes up: the node joins by itself.
    let redis = Redis::start_on(port);
    assert!(a.ready_becomes(200), "{}", a.log());
    assert_eq!(metric(&a, "wsedge_backplane_up"), Some(1));
    // The room's local position gives way to the cluster's: the subscriber
    // is told, then gets messages published on another node.
    gap(&mut sub, "room");
    let b = Node::start(&redis.url(), 2, &p, "", "");
    assert!(b.ready_becomes(200));
    let mut other = Ps::connect(b.addr);
    assert_eq!(publish(&mut other, "room", 2)["type"], "ack");
    assert_eq!(message(&mut sub, "room").1, 2);
}

#[test]
fn a_redis_restart_keeps_local_delivery_and_tells_subscribers_of_the_gap() {
    let mut redis = Redis::start();
    let p = prefix("restart");
    let a = Node::start(&redis.url(), 1, &p, "", HISTORY);
    let b = Node::start(&redis.url(), 2, &p, "", HISTORY);
    assert!(a.ready_becomes(200) && b.ready_becomes(200));
    let (mut sa, mut sb) = (Ps::connect(a.addr), Ps::connect(b.addr));
    sa.subscribe("live");
    sb.subscribe("live");
    let (mut pa, mut pb) = (Ps::connect(a.addr), Ps::connect(b.addr));
    for i in 1..=3 {
        publish(&mut pb, "live", i);
    }
    for s in [&mut sa, &mut sb] {
        assert_eq!((1..=3).map(|_| message(s, "live").1).collect::<Vec<_>>(), vec![1, 2, 3]);
    }
    redis.kill();
    assert!(a.ready_becomes(503));
    // Local delivery never stops: A's publish reaches A's subscriber, in an
    // epoch of A's own (the subscriber is told first).
    assert_eq!(publish(&mut pa, "live", 4)["type"], "ack");
    gap(&mut sa, "live");
    assert_eq!(message(&mut sa, "live"), (1, 4));
    redis.restart();
    assert!(a.ready_becomes(200) && b.ready_becomes(200), "{}", a.log());
    // Redis lost everything: both rooms' subscribers are told.
    let ga = gap(&mut sa, "live");
    let gb = gap(&mut sb, "live");
    assert_eq!(
        (&ga["epoch"], &ga["offset"]),
        (&gb["epoch"], &gb["offset"]),
        "one cluster position"
    );
    // And the cluster works again, across nodes.
    assert_eq!(publish(&mut pb, "live", 5)["type"], "ack");
    assert_eq!(message(&mut sa, "live").1, 5);
    assert_eq!(message(&mut sb, "live").1, 5);
    assert!(metric(&a, "wsedge_backplane_reconnects_total").unwrap() >= 1);
    assert!(metric(&a, "wsedge_backplane_gaps_total").unwrap() >= 2);
}

#[test]
fn messages_published_while_a_node_was_cut_off_are_recovered_from_the_stream() {
    let redis = Redis::start();
    let p = prefix("cutoff");
    let a = Node::start(&redis.url(), 1, &p, "", HISTORY);
    let b = Node::start(&redis.url(), 2, &p, "", HISTORY);
    assert!(a.ready_becomes(200) && b.ready_becomes(200));
    let mut sa = Ps::connect(a.addr);
    sa.subscribe("feed");
    let mut pb = Ps::connect(b.addr);
    for i in 1..=3 {
        publish(&mut pb, "feed", i);
        assert_eq!(message(&mut sa, "feed").1, i);
    }
    // Cut node A off: a password keeps it from reconnecting (B's open,
    // authenticated connections go on), then its connections are killed.
    redis.command("CONFIG SET requirepass cut-off").unwrap();
    let list = redis.commands(&["AUTH cut-off", "CLIENT LIST"]).pop().unwrap();
    let ids: Vec<&str> = list
        .lines()
        .filter(|l| l.contains("name=wsedge-1-"))
        .filter_map(|l| l.split_whitespace().next()?.strip_prefix("id="))
        .collect();
    assert!(!ids.is_empty(), "{list}");
    let mut kill = vec!["AUTH cut-off".to_string()];
    kill.extend(ids.iter().map(|id| format!("CLIENT KILL ID {id}")));
    redis.commands(&kill.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(a.ready_becomes(503));
    for i in 4..=10 {
        assert_eq!(publish(&mut pb, "feed", i)["type"], "ack");
    }
    redis.commands(&["AUTH cut-off", "CONFIG SET requirepass \"\""]);
    assert!(a.ready_becomes(200), "{}", a.log());
    // What A missed comes from the stream, in order, with no gap.
    let got: Vec<(u64, u64)> = (4..=10).map(|_| message(&mut sa, "feed")).collect();
    assert_eq!(got, (4..=10).map(|i| (i, i)).collect::<Vec<_>>());
    publish(&mut pb, "feed", 11);
    assert_eq!(message(&mut sa, "feed"), (11, 11));
}

#[test]
fn a_stalled_redis_blocks_no_worker_and_publishes_past_the_budget_are_refused() {
    let redis = Redis::start();
    let p = prefix("slow");
    let extra = "channel_budget_bytes = 65536\ncommand_timeout_ms = 30000";
    let a = Node::start(&redis.url(), 1, &p, extra, "");
    assert!(a.ready_becomes(200));
    let mut sub = Ps::connect(a.addr);
    sub.subscribe("big");
    let mut publisher = Ps::connect(a.addr);
    redis.pause(true);
    let blob = "x".repeat(1000);
    let (mut acked, mut refused) = (Vec::new(), 0);
    for i in 0..200u64 {
        let r = publisher.request(json!({"type":"publish","room":"big","data":[i, blob]}), i + 1);
        match r["type"].as_str() {
            Some("ack") => acked.push(i),
            _ => {
                assert_eq!(r["code"], "overloaded", "{r}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0 && acked.len() < 100, "the budget bounds what waits: {refused} refused");
    // The workers still answer while Redis says nothing.
    assert_eq!(a.get("/healthz").0, 200);
    assert!(metric(&a, "wsedge_backplane_overloaded_total").unwrap() >= refused);
    redis.pause(false);
    // Every acknowledged publish is delivered, in order; nothing else.
    for &i in &acked {
        let m = sub.recv();
        assert_eq!(m["data"][0], i, "{m}");
    }
    sub.expect_silence();
}

#[test]
fn a_killed_node_leaves_no_member_behind_after_the_ttl() {
    let redis = Redis::start();
    let p = prefix("sigkill");
    let ttl = "presence_ttl_ms = 1000";
    let a = Node::start(&redis.url(), 1, &p, ttl, "");
    let mut b = Node::start(&redis.url(), 2, &p, ttl, "");
    assert!(a.ready_becomes(200) && b.ready_becomes(200));
    let mut ma = Ps::connect(a.addr);
    ma.subscribe("lobby");
    let mut mb = Ps::connect(b.addr);
    mb.subscribe("lobby");
    let mut asker = Ps::connect(a.addr);
    let mut count = || asker.request(json!({"type":"presence","room":"lobby"}), 3);
    assert!(eventually(|| count()["count"] == 2));
    b.kill9();
    assert!(eventually(|| {
        let r = count();
        r["count"] == 1 && r["members"] == json!([ma.id])
    }));
}

//! Room history on the sans-IO broker (BENCHMARKS.md, "History"):
//!
//! - `history/publish_64B_to_100/{off,on}`: one publish (64-byte JSON
//!   `data`) parsed, sequenced, encoded once and handed to 100 local
//!   subscribers, with history off, and on (size 100, TTL 5 min);
//! - `history/recover_1000`: a subscribe with `since` that recovers 1,000
//!   stored messages (ack plus 1,000 frames handed to the connection);
//! - the bytes one stored message costs, printed at start.
//!
//! `BENCH_PUBLISHES=N` runs N publishes with history off (or on with
//! `BENCH_HISTORY=1`) and exits, without criterion: for instruction counts
//! under `valgrind --tool=callgrind`, which are repeatable on a shared
//! machine where times are not.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use tungstenite::protocol::frame::coding::Data as OpData;

use wsedge::auth::Identity;
use wsedge::id::ConnId;
use wsedge::pubsub::broker::{Broker, BrokerSettings, Deliver, RoomHasher};

const PUBLISH: &[u8] =
    br#"{"type":"publish","room":"r","data":{"text":"0123456789012345678901234567890123456789ab"}}"#;

/// Takes frames as the worker does (a clone of the shared `Bytes` each).
#[derive(Default)]
struct Sink {
    bytes: u64,
    last: Option<Bytes>,
}

impl Deliver for Sink {
    fn deliver(&mut self, _to: ConnId, frame: &Bytes) -> bool {
        self.bytes += frame.len() as u64;
        self.last = Some(black_box(frame.clone()));
        true
    }

    fn deliver_direct(&mut self, to: ConnId, frame: &Bytes) -> bool {
        self.deliver(to, frame)
    }
}

fn request(b: &mut Broker, sink: &mut Sink, conn: ConnId, json: &[u8]) {
    let payload = Bytes::copy_from_slice(json);
    b.handle_request(conn, Some(&Identity::anonymous_all()), OpData::Text, &payload, 0, sink);
}

/// One broker, room `r` with `subscribers` local subscribers; the publisher
/// is connection 0.
fn room(settings: BrokerSettings, subscribers: usize) -> (Broker, Sink) {
    let mut b = Broker::new(settings);
    let mut sink = Sink::default();
    for k in 1..=subscribers {
        request(
            &mut b,
            &mut sink,
            ConnId::from_parts(0, k, 1),
            br#"{"type":"subscribe","room":"r"}"#,
        );
    }
    (b, sink)
}

fn plain() -> BrokerSettings {
    BrokerSettings::new(0, 1, RoomHasher::new())
}

// HISTORY-ONLY-BEGIN (the base build of an A/B has no history API)
mod on {
    use super::*;
    use wsedge::pubsub::history::{HistorySettings, Retention};

    pub fn settings(size: usize) -> BrokerSettings {
        let mut s = plain();
        s.history = HistorySettings::new(Retention { size, ttl_ms: 300_000 }, 64 << 20);
        s.max_replay_bytes = 16 << 20;
        s
    }

    pub fn recover_1000(c: &mut Criterion) {
        let (mut b, mut sink) = room(settings(1000), 0);
        let first = ConnId::from_parts(0, 1, 1);
        request(&mut b, &mut sink, first, br#"{"type":"subscribe","room":"r","id":1}"#);
        let ack: serde_json::Value =
            serde_json::from_slice(&sink.last.clone().expect("ack")[2..]).expect("json");
        let epoch = ack["epoch"].as_str().expect("epoch").to_string();
        request(&mut b, &mut sink, first, br#"{"type":"unsubscribe","room":"r"}"#);
        for _ in 0..1000 {
            request(&mut b, &mut sink, ConnId::from_parts(0, 2, 1), PUBLISH);
        }
        let stats = b.stats();
        let per = stats.history_bytes / stats.history_messages.max(1);
        eprintln!(
            "history: {} messages of 64-byte data hold {} bytes: {per} bytes per message \
             (its frame, shared with the fan-out, and {} of bookkeeping)",
            stats.history_messages,
            stats.history_bytes,
            wsedge::pubsub::history::ENTRY_OVERHEAD,
        );
        let since = format!(
            r#"{{"type":"subscribe","room":"r","id":2,"since":{{"offset":0,"epoch":"{epoch}"}}}}"#
        );
        let mut g = c.benchmark_group("history");
        g.throughput(Throughput::Elements(1000));
        let mut key = 10;
        g.bench_function("recover_1000", |bench| {
            bench.iter(|| {
                key += 1;
                let conn = ConnId::from_parts(0, key, 1);
                let before = b.stats().replayed;
                request(&mut b, &mut sink, conn, since.as_bytes());
                assert_eq!(b.stats().replayed - before, 1000, "recovered");
                b.handle_close(conn);
            })
        });
        g.finish();
    }
}
// HISTORY-ONLY-END

fn publish(c: &mut Criterion) {
    let mut g = c.benchmark_group("history/publish_64B_to_100");
    g.throughput(Throughput::Elements(1));
    let publisher = ConnId::from_parts(0, 0, 1);
    let mut variants = vec![("off", plain())];
    // HISTORY-ONLY-BEGIN
    variants.push(("on", on::settings(100)));
    // HISTORY-ONLY-END
    for (name, settings) in variants {
        let (mut b, mut sink) = room(settings, 100);
        g.bench_function(name, |bench| {
            bench.iter(|| request(&mut b, &mut sink, publisher, black_box(PUBLISH)))
        });
        black_box(sink.bytes);
    }
    g.finish();
}

fn main() {
    if let Some(n) = std::env::var("BENCH_PUBLISHES").ok().and_then(|v| v.parse::<u64>().ok()) {
        #[allow(unused_mut)]
        let mut settings = plain();
        // HISTORY-ONLY-BEGIN
        if std::env::var("BENCH_HISTORY").is_ok() {
            settings = on::settings(100);
        }
        // HISTORY-ONLY-END
        let (mut b, mut sink) = room(settings, 100);
        for _ in 0..n {
            request(&mut b, &mut sink, ConnId::from_parts(0, 0, 1), PUBLISH);
        }
        println!("{} bytes delivered", sink.bytes);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    publish(&mut c);
    // HISTORY-ONLY-BEGIN
    on::recover_1000(&mut c);
    // HISTORY-ONLY-END
    c.final_summary();
}

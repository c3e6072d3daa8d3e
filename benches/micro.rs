//! Criterion micro-benchmarks of wsedge's sans-IO hot paths (`make bench`):
//!
//! - `handshake/parse_validate_chrome`: `handshake::parse_request` plus
//!   `validate_upgrade` on the upgrade request Chrome sends;
//! - `conn/decode_32B_masked/{echo,pubsub}`: one 32-byte masked text frame fed
//!   to an open `Conn` (on `/echo` this includes encoding the echo into the
//!   cork; on `/ws` the message goes to the worker as an event);
//! - `conn/turn_32B_masked/{echo,pubsub}`: the same frame, then the end of
//!   the connection's turn through the worker's driver (`Host::end_turn`:
//!   the cork written to a transport that takes everything, backpressure,
//!   the next deadline), as the worker does per readable event minus the
//!   syscalls;
//! - `pubsub/encode_message_32B`: one room delivery encoded once for all
//!   subscribers (`pubsub::protocol::message`);
//! - `timer/tick_100k/*`: one `TimerWheel::advance` by one tick with 100,000
//!   timers pending, either spread over 250 ticks and re-armed when they fire
//!   (steady state of a 25 s ping interval at 100 ms ticks) or none due.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use wsedge::config::Config;
use wsedge::conn::{Conn, EndTurn, Host, Phase, Settings};
use wsedge::handshake::{self, Limits};
use wsedge::outbox::Cork;
use wsedge::pubsub::protocol;
use wsedge::timer::TimerWheel;

/// What Chrome sends for `new WebSocket("ws://127.0.0.1:8080/echo")`.
const CHROME_REQUEST: &[u8] = b"GET /echo HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://127.0.0.1:8080\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

fn handshake(c: &mut Criterion) {
    let limits = Limits::default();
    let protocols: Vec<String> = Vec::new();
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_validate_chrome", |b| {
        b.iter(|| {
            let req = handshake::parse_request(black_box(CHROME_REQUEST), &limits)
                .expect("valid")
                .expect("complete");
            black_box(handshake::validate_upgrade(&req, &protocols).expect("upgrade"))
        })
    });
    g.finish();
}

/// An open connection's worker side, as in `src/conn/tests.rs`.
fn open(host: &mut Host, path: &str) -> Conn {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut conn = Conn::new(0, &host.settings);
    conn.handle_input(request.as_bytes(), &mut host.env());
    assert_eq!(conn.phase(), Phase::Open, "upgrade on {path}");
    host.cork.clear();
    host.events.clear();
    conn
}

/// One masked client frame, FIN set.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn conn_decode(c: &mut Criterion) {
    let frame = masked(1, br#"{"type":"ping","id":12345678901}"#);
    assert_eq!(frame.len(), 6 + 32);
    let mut g = c.benchmark_group("conn/decode_32B_masked");
    g.throughput(Throughput::Elements(1));
    for (name, path) in [("echo", "/echo"), ("pubsub", "/ws")] {
        let mut rig = Host::new(Settings::from_config(&Config::default(), 100));
        rig.cork = Cork::with_capacity(64 * 1024);
        rig.set_tick(1, 100, 1_800_000_000);
        let mut conn = open(&mut rig, path);
        g.bench_function(name, |b| {
            b.iter(|| {
                conn.handle_input(black_box(&frame), &mut rig.env());
                rig.cork.clear();
                rig.events.clear();
            })
        });
        assert_eq!(conn.phase(), Phase::Open);
    }
    g.finish();
}

fn conn_turn(c: &mut Criterion) {
    let frame = masked(1, br#"{"type":"ping","id":12345678901}"#);
    let mut g = c.benchmark_group("conn/turn_32B_masked");
    g.throughput(Throughput::Elements(1));
    for (name, path) in [("echo", "/echo"), ("pubsub", "/ws")] {
        let mut rig = Host::new(Settings::from_config(&Config::default(), 100));
        rig.cork = Cork::with_capacity(64 * 1024);
        rig.set_tick(1, 100, 1_800_000_000);
        let mut conn = open(&mut rig, path);
        let mut kernel = std::io::sink();
        let turn = EndTurn { writable: true, hold_queue: false };
        g.bench_function(name, |b| {
            b.iter(|| {
                conn.handle_input(black_box(&frame), &mut rig.env());
                let done = rig.end_turn(&mut conn, &mut kernel, turn);
                rig.events.clear();
                black_box(done)
            })
        });
        assert_eq!(conn.phase(), Phase::Open);
        assert!(!conn.has_queued());
    }
    g.finish();
}

fn pubsub_encode(c: &mut Criterion) {
    let data = r#""0123456789abcdef0123456789abcd""#; // 32 bytes of JSON
    assert_eq!(data.len(), 32);
    let mut g = c.benchmark_group("pubsub");
    g.throughput(Throughput::Elements(1));
    let mut seq = 0u64;
    g.bench_function("encode_message_32B", |b| {
        b.iter(|| {
            seq += 1;
            black_box(protocol::message(
                black_box("room-42"),
                Some(0x1234_5678),
                seq,
                protocol::Epoch(7),
                data,
            ))
        })
    });
    g.finish();
}

const TIMERS: u64 = 100_000;
/// 25 s ping interval at 100 ms ticks.
const SPREAD: u64 = 250;

fn timer_tick(c: &mut Criterion) {
    let mut g = c.benchmark_group("timer/tick_100k");
    g.throughput(Throughput::Elements(1));

    // Steady state: deadlines spread evenly over the next SPREAD ticks; every
    // timer that fires is re-armed SPREAD ticks later, as a ping would be.
    let mut wheel = TimerWheel::new(1024, 0);
    for i in 0..TIMERS {
        wheel.insert(1 + i % SPREAD, i as usize);
    }
    let mut now = 0u64;
    let mut fired = Vec::with_capacity(1024);
    g.bench_function("steady_400_due", |b| {
        b.iter(|| {
            now += 1;
            wheel.advance(now, |_, v| fired.push(v));
            for v in fired.drain(..) {
                wheel.insert(now + SPREAD, v);
            }
        })
    });
    assert_eq!(wheel.len() as u64, TIMERS);

    // Nothing due: 100k timers several turns ahead, ~98 per slot to skip.
    let mut wheel = TimerWheel::new(1024, 0);
    for i in 0..TIMERS {
        wheel.insert(1_000_000_000 + i, i as usize);
    }
    let mut now = 0u64;
    g.bench_function("none_due", |b| {
        b.iter(|| {
            now += 1;
            black_box(wheel.advance(now, |_, _| unreachable!("none due")))
        })
    });
    g.finish();
}

criterion_group!(benches, handshake, conn_decode, conn_turn, pubsub_encode, timer_tick);
criterion_main!(benches);

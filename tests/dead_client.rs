//! Heartbeats: a silent client gets pings, then a 1001 close, then the TCP
//! connection ends; a client that answers pings stays.

mod common;

use std::time::{Duration, Instant};

use common::*;
use wsedge::metrics::CloseCause;

fn quick_health(c: &mut wsedge::Config) {
    c.health.ping_interval_ms = 200;
    c.health.dead_client_ms = 800;
}

#[test]
fn a_silent_client_is_pinged_then_closed_as_timeout() {
    let server = start(&config(1, quick_health));
    let mut raw = Raw::upgrade(server.local_addr(), "/echo");
    let mut pings = 0;
    let close = loop {
        let f = raw.read_frame().expect("a frame before the connection ends");
        match f.opcode {
            9 => pings += 1,
            8 => break f,
            other => panic!("unexpected opcode {other}"),
        }
    };
    assert!(pings >= 1, "pinged before being given up on");
    assert_eq!(close.close_code(), Some(1001));
    assert!(raw.expect_eof());
    drop(raw);
    assert!(eventually(|| server.stats().closes(CloseCause::Timeout) == 1));
}

#[test]
fn a_client_answering_pings_outlives_the_dead_client_deadline() {
    let server = start(&config(1, quick_health));
    let mut raw = Raw::upgrade(server.local_addr(), "/echo");
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(2000) {
        let f = raw.read_frame().expect("still connected");
        assert_eq!(f.opcode, 9, "only pings, never a close");
        pings += 1;
        raw.send(&frame(true, 10, &f.payload));
    }
    assert!(pings >= 3);
    raw.send(&frame(true, 1, b"still here"));
    assert_eq!(raw.read_frame().unwrap().payload, b"still here");
}

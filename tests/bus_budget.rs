//! The bus between workers is bounded: four clients flooding a room of 300
//! subscribers with 60 KB publishes cannot grow the traffic in flight
//! between workers past its budget; the publishers are slowed down (their
//! sockets stop being read) instead.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const BUDGET: usize = 256 << 10;
const PAYLOAD: usize = 60_000;

/// Upgrades to /ws and subscribes (the ack is left unread).
fn subscriber(addr: SocketAddr) -> Raw {
    let mut raw = Raw::upgrade(addr, "/ws");
    raw.send(&frame(true, 1, br#"{"type":"subscribe","room":"flood","id":1}"#));
    raw
}

#[test]
fn a_publish_flood_keeps_the_bus_within_its_budget() {
    let server = start(&config(2, |c| {
        c.pubsub.bus_budget_bytes = BUDGET;
        c.pubsub.max_data_bytes = 64 << 10;
    }));
    let addr = server.local_addr();
    let subs: Vec<Raw> = (0..300).map(|_| subscriber(addr)).collect();
    // Let both workers announce their interest to the room's owner.
    assert!(eventually(|| server.stats().subscriptions == 300));

    let stop = Arc::new(AtomicBool::new(false));
    // One thread reads and discards everything the subscribers get.
    let reader = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut socks: Vec<_> = subs.into_iter().map(|r| r.sock).collect();
            for s in &socks {
                s.set_nonblocking(true).expect("nonblocking");
            }
            let mut buf = vec![0u8; 256 << 10];
            let mut got = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let mut idle = true;
                for s in &mut socks {
                    match s.read(&mut buf) {
                        Ok(n) if n > 0 => {
                            got += n;
                            idle = false;
                        }
                        _ => {}
                    }
                }
                if idle {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            got
        })
    };
    // Four publishers write as fast as their sockets take it for 3 s.
    let data = format!(r#"{{"type":"publish","room":"flood","data":"{}"}}"#, "x".repeat(PAYLOAD));
    let publish = frame(true, 1, data.as_bytes());
    let publishers: Vec<_> = (0..4)
        .map(|_| {
            let publish = publish.clone();
            let mut raw = Raw::upgrade(addr, "/ws");
            thread::spawn(move || {
                raw.sock.set_write_timeout(Some(Duration::from_millis(50))).expect("timeout");
                let deadline = Instant::now() + Duration::from_secs(3);
                let (mut sent, mut at) = (0usize, 0usize);
                while Instant::now() < deadline {
                    match raw.sock.write(&publish[at..]) {
                        Ok(n) => {
                            at += n;
                            if at == publish.len() {
                                (sent, at) = (sent + 1, 0);
                            }
                        }
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(e) => panic!("publisher cut off: {e}"),
                    }
                }
                sent
            })
        })
        .collect();

    let mut peak = 0u64;
    let sampling = Instant::now();
    while sampling.elapsed() < Duration::from_secs(3) {
        peak = peak.max(server.stats().bus_bytes);
        thread::sleep(Duration::from_millis(20));
    }
    let published: usize = publishers.into_iter().map(|p| p.join().expect("publisher")).sum();
    stop.store(true, Ordering::Relaxed);
    let delivered = reader.join().expect("reader");

    // Each worker may overshoot its budget by what one read turn of each
    // publisher brings (4 x 256 KiB) plus the fan-out of what is in flight
    // to the owner; two workers' gauges are summed.
    let bound = 2 * (2 * BUDGET + 4 * (256 << 10) + PAYLOAD * 8) as u64;
    assert!(published > 4, "the flood ran ({published} publishes)");
    assert!(delivered > PAYLOAD, "subscribers got messages");
    assert!(peak <= bound, "bus peaked at {peak} bytes, over the bound of {bound}");
    // Once the flood is over the bus empties.
    assert!(eventually(|| server.stats().bus_bytes == 0));
}

//! A client that sends but never reads fills only its own queue: five other
//! clients on the same worker keep echoing, and the stalled one is closed as
//! a slow consumer.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use wsedge::metrics::CloseCause;

#[test]
fn a_client_that_never_reads_does_not_delay_others_and_is_closed() {
    let server = start(&config(1, |c| {
        c.write_queue.max_bytes = 1 << 20;
        c.write_queue.high_water_bytes = 256 << 10;
        c.write_queue.stall_timeout_ms = 1000;
    }));
    let addr = server.local_addr();

    let mut stalled = Raw::upgrade(addr, "/echo");
    stalled.sock.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = stalled.sock.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_writer = stop.clone();
    let flood = std::thread::spawn(move || {
        let msg = frame(true, 2, &vec![0xabu8; 64 * 1024]);
        let mut sent = 0usize;
        // Bounded: at most 256 MiB, stops at the first error (server closed).
        while sent < 4096 && !stop_writer.load(Ordering::Relaxed) {
            if writer.write_all(&msg).is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });

    let mut others: Vec<Raw> = (0..5).map(|_| Raw::upgrade(addr, "/echo")).collect();
    for round in 0..200 {
        for (i, c) in others.iter_mut().enumerate() {
            c.send(&frame(true, 2, &vec![i as u8; 1024]));
        }
        for (i, c) in others.iter_mut().enumerate() {
            let f = c.read_frame().expect("others keep getting echoes");
            assert_eq!(f.payload, vec![i as u8; 1024], "round {round}");
        }
    }

    // The stalled client is cut off (its writes fail or its stream ends).
    let sent = flood.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(sent < 4096, "the server stopped taking the flood");
    assert!(stalled.expect_eof(), "the stalled connection was closed");
    assert!(eventually(|| server.stats().closes(CloseCause::SlowConsumer) == 1));
    assert_eq!(server.stats().open, 5);
}

#[test]
fn a_ping_flood_from_a_client_that_never_reads_cannot_grow_its_queue_without_bound() {
    let server = start(&config(1, |c| {
        c.write_queue.max_bytes = 256 << 10;
        c.write_queue.high_water_bytes = 64 << 10;
        c.write_queue.stall_timeout_ms = 1000;
        c.server.socket_send_buffer_bytes = 16 * 1024;
    }));
    let addr = server.local_addr();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut flooder = Raw::from_stream(sock.into());
    flooder.send(upgrade_request("/echo").as_bytes());
    assert!(flooder.read_http_head().starts_with("HTTP/1.1 101"));
    flooder.sock.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut writer = flooder.sock.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        let ping = frame(true, 9, &[0x55u8; 125]);
        let burst: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 512).collect();
        // At most 64 MiB of pings; stops when the server stops reading or closes.
        for _ in 0..1000 {
            if writer.write_all(&burst).is_err() {
                break;
            }
        }
    });
    let mut peak = 0;
    while !flood.is_finished() {
        peak = peak.max(server.stats().queued_bytes);
        std::thread::sleep(Duration::from_millis(20));
        if server.stats().closes(CloseCause::SlowConsumer) == 1 {
            break;
        }
    }
    // Reading stops above high water; one read turn (4 x 64 KiB) of pongs may
    // land on top of it, never more.
    assert!(peak <= (64 << 10) + 4 * 64 * 1024 + 4096, "queue peaked at {peak} bytes");
    assert!(eventually(|| server.stats().closes(CloseCause::SlowConsumer) == 1));
    drop(flooder);
    let _ = flood.join();
}

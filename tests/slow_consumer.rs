//! A client that sends but never reads fills only its own queue: five other
//! clients on the same worker keep echoing, and the stalled one is closed as
//! a slow consumer.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use wsedge::metrics::CloseReason;

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
    assert!(eventually(|| server.stats().closes(CloseReason::SlowConsumer) == 1));
    assert_eq!(server.stats().open, 5);
}

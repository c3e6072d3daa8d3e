//! `connection`: one connection's state machine, sans-IO, in an emulated
//! worker: a valid upgrade request followed by arbitrary bytes, read in
//! arbitrary pieces, with timer events at increasing ticks and a kernel that
//! takes arbitrary amounts of the output (so the write queue, backpressure
//! and the slow-consumer policy are in play).
//!
//! Input: byte 0 is the schedule (bits 0-2: largest read; 3-4: how much the
//! kernel takes per write: all, 0-64 bytes, 0-4096 bytes, or nothing until
//! the paused client reads 1-16 bytes; 5-6: how often the timer fires; 7: slow-consumer
//! policy drop instead of close), byte 1 seeds the schedule (bit 0: idle
//! timeout on; bit 1: permessage-deflate on, the request offers it as
//! Chromium does, and compressed server frames must inflate to valid
//! messages), the rest is what the client sends after the upgrade request
//! (which goes first, in the same pieces, so pipelined frames are covered).
//!
//! Checks, after every event:
//! - no panic; the wire (what the kernel took) is the exact 101 response and
//!   then whole, valid, unmasked server frames (`Wire`), nothing after a
//!   close frame, no byte after the write side was shut down;
//! - a close frame carries a valid code; one the server would not send on
//!   its own (1000, 1001, 1002, 1007, 1008, 1009, 1011) only as the echo of
//!   the client's close;
//! - memory: `retained_bytes()` less the write queue stays under
//!   max_frame + 64 KiB, the write queue under its limit plus one message plus
//!   the control replies to this read, and the heap the whole turn used
//!   (counted by the global allocator) under 1 MiB;
//! - a timer that fires at or after the connection's deadline moves the
//!   deadline past now (or closes it): no timer storms;
//! - reading is never paused with nothing queued (that connection would
//!   hang); the phase is Open, Closing, Linger or Closed once upgraded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsedge::config::SlowConsumerPolicy;
use wsedge::conn::{Phase, NEVER};
use wsedge::metrics::CloseCause;
use wsedge_fuzz::{
    deflate_settings, expected_101, expected_101_deflate, small_settings, Counting, Rng, Sim, Wire,
    MAX_FRAME, MAX_MESSAGE, MAX_QUEUE, REQUEST, REQUEST_DEFLATE, SERVER_CODES,
};

#[global_allocator]
static ALLOC: Counting = Counting;

const PIECES: [u64; 8] = [1, 3, 16, 64, 700, 4096, 65536, 65536];
const MAX_INPUT: usize = 64 * 1024;
const HEAP_LIMIT: usize = 1 << 20;

struct Run {
    sim: Sim,
    wire: Wire,
    heap_base: usize,
}

impl Run {
    /// Everything checked after each event; `read` is the input of this turn.
    fn check(&mut self, read: usize) {
        let bytes = self.sim.take_wire();
        let frames = self.wire.push(&bytes);
        let phase = self.sim.phase();
        for f in &frames {
            if f.opcode != 8 {
                continue;
            }
            assert!(
                matches!(phase, Phase::Closing | Phase::Linger | Phase::Closed),
                "a close frame sent in phase {phase:?}"
            );
            if let Some(code) = f.close_code() {
                if !SERVER_CODES.contains(&code) {
                    assert_eq!(
                        self.sim.conn.close_reason(),
                        Some(CloseCause::ClientClose),
                        "close code {code} not echoing the client"
                    );
                }
            }
        }
        if self.wire.upgraded() {
            assert_ne!(phase, Phase::Handshake);
        }
        let queued = self.sim.conn.queued_bytes();
        let retained = self.sim.conn.retained_bytes();
        assert!(
            retained - queued <= MAX_FRAME + 64 * 1024,
            "retains {} bytes besides its queue",
            retained - queued
        );
        assert!(queued <= MAX_QUEUE + MAX_MESSAGE + 1024 + read, "write queue of {queued} bytes");
        let heap = Counting::peak().saturating_sub(self.heap_base);
        assert!(heap <= HEAP_LIMIT, "a turn used {heap} bytes of heap");
        if self.sim.alive() && !self.sim.conn.wants_read() {
            assert!(queued > 0, "reading paused with nothing queued");
        }
    }

    /// The timer fires at `now`.
    fn timer(&mut self, now: u64, budget: usize) {
        let due = self.sim.conn.deadline(&self.sim.host.settings);
        Counting::reset_peak();
        self.sim.timer(now, budget);
        self.check(0);
        if now >= due && self.sim.alive() {
            let next = self.sim.conn.deadline(&self.sim.host.settings);
            assert!(next > now, "deadline {next} not past {now} after firing");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 || data.len() > MAX_INPUT {
        return;
    }
    let (ctl, seed) = (data[0], data[1]);
    let policy = if ctl & 0x80 != 0 { SlowConsumerPolicy::Drop } else { SlowConsumerPolicy::Close };
    let max_piece = PIECES[(ctl & 7) as usize];
    let budget_mode = (ctl >> 3) & 3;
    let timer_odds = [0u64, 8, 2, 1][((ctl >> 5) & 3) as usize];
    let mut rng = Rng::new(u64::from(ctl) << 8 | u64::from(seed));

    let deflate = seed & 2 != 0;
    let mut stream = if deflate { REQUEST_DEFLATE.to_vec() } else { REQUEST.to_vec() };
    stream.extend_from_slice(&data[2..]);

    let idle = seed & 1 != 0;
    let mut run = if deflate {
        Run {
            sim: Sim::with_settings(deflate_settings(policy, idle)),
            wire: Wire::with_deflate(expected_101_deflate()),
            heap_base: 0,
        }
    } else {
        Run {
            sim: Sim::with_settings(small_settings(policy, idle)),
            wire: Wire::new(expected_101()),
            heap_base: 0,
        }
    };
    run.heap_base = Counting::live();

    let budget = |rng: &mut Rng| match budget_mode {
        0 => usize::MAX,
        1 => rng.below(65) as usize,
        2 => rng.below(4097) as usize,
        _ => 0,
    };

    let min_piece = stream.len() / 1024;
    let mut pos = 0;
    for _ in 0..20_000 {
        if !run.sim.alive() {
            break;
        }
        Counting::reset_peak();
        if pos < stream.len() && run.sim.conn.wants_read() {
            // At most ~1024 reads per input, so large inputs stay fast.
            let n = (1 + rng.below(max_piece) as usize).max(min_piece).min(stream.len() - pos);
            let b = budget(&mut rng);
            run.sim.input(&stream[pos..pos + n], b);
            pos += n;
            run.check(n);
        } else if run.sim.conn.has_queued() {
            // Paused (or done reading): the client reads some (1-16 bytes
            // when the kernel otherwise takes nothing: byte-exact splits
            // are the 0-64 mode's job, and draining a 4 KiB queue one byte
            // per event made such inputs cost thousands of events).
            let b =
                if budget_mode == 3 { 1 + rng.below(16) as usize } else { budget(&mut rng).max(1) };
            run.sim.writable(b);
            run.check(0);
        } else if pos >= stream.len() {
            break;
        }
        if timer_odds > 0 && rng.below(timer_odds) == 0 && run.sim.alive() {
            let deadline = run.sim.conn.deadline(&run.sim.host.settings);
            let now = if rng.below(2) == 0 && deadline != NEVER {
                deadline.max(run.sim.host.now)
            } else {
                run.sim.host.now + 1 + rng.below(12)
            };
            let b = budget(&mut rng);
            run.timer(now, b);
        }
        if rng.below(4) == 0 && run.sim.alive() && run.sim.conn.has_queued() {
            let b = budget(&mut rng);
            run.sim.writable(b);
            run.check(0);
        }
    }
    assert_ne!(run.sim.phase(), Phase::Handshake, "the request was complete");
    if run.sim.host.stats.upgraded == 0 {
        // Read slowly enough, the request may miss its deadline: then the
        // connection is dropped without a word.
        assert_eq!(run.sim.conn.close_reason(), Some(CloseCause::HandshakeTimeout));
        assert!(run.wire.frames == 0 && !run.wire.upgraded() && run.wire.partial() == 0);
        return;
    }
    assert_eq!(run.sim.host.stats.upgraded, 1);

    // The end: the client reads everything from now on; it may hang up; time
    // passes until the connection is gone (ping, dead client, close timeout).
    if rng.below(4) == 0 && run.sim.alive() {
        Counting::reset_peak();
        run.sim.eof(usize::MAX);
        run.check(0);
    }
    for _ in 0..16 {
        if !run.sim.alive() {
            break;
        }
        Counting::reset_peak();
        run.sim.writable(usize::MAX);
        run.check(0);
        if run.sim.alive() {
            assert!(!run.sim.conn.has_queued());
            assert_eq!(run.wire.partial(), 0, "a frame cut short on the wire");
        }
        let deadline = run.sim.conn.deadline(&run.sim.host.settings);
        if deadline == NEVER {
            break;
        }
        run.timer(deadline.max(run.sim.host.now), usize::MAX);
    }
    assert!(!run.sim.alive(), "still open after every deadline passed");
});

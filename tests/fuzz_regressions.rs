//! Regression tests for inputs the fuzzers (`fuzz/`, see FUZZING.md) found.
//!
//! Each test replays one finding sans-IO, with the input bytes inline, through
//! the same worker emulation the `connection` fuzz target uses: the connection
//! handles input, its cork is written to a "kernel" that takes at most a
//! budget of bytes, the rest spills into the connection's outbox exactly as
//! `worker::finish` does it. The check is the fuzzer's: everything that
//! reached the wire parses as a sequence of whole, valid server frames.

mod common;

use bytes::Bytes;
use common::frame;
use wsedge::config::{Config, SlowConsumerPolicy};
use wsedge::conn::{Conn, Host, Phase, Settings};
use wsedge::stream::KernelSink;

const REQUEST: &[u8] = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// One connection driven the way `worker.rs` drives it.
struct Sim {
    host: Host,
    conn: Conn,
    kernel: KernelSink,
}

impl Sim {
    fn new(tweak: impl FnOnce(&mut Config)) -> Sim {
        let mut config = Config::default();
        tweak(&mut config);
        let host = Host::new(Settings::from_config(&config, 100));
        let conn = Conn::new(0, &host.settings);
        let mut sim =
            Sim { host, conn, kernel: KernelSink { wire: Vec::new(), budget: usize::MAX } };
        sim.input(REQUEST, usize::MAX);
        assert_eq!(sim.conn.phase(), Phase::Open);
        let head = sim.kernel.wire.windows(4).position(|w| w == b"\r\n\r\n");
        sim.kernel.wire.drain(..head.expect("101 response") + 4);
        sim
    }

    /// One read of `bytes`, then `finish` with a kernel that takes `budget`.
    fn input(&mut self, bytes: &[u8], budget: usize) {
        self.conn.handle_input(bytes, &mut self.host.env());
        self.finish(budget);
    }

    /// `worker::finish`: write the cork as the worker does, then backpressure.
    fn finish(&mut self, budget: usize) {
        self.kernel.budget = budget;
        self.host.write_cork(&mut self.conn, &mut self.kernel, true);
        self.conn.update_backpressure(&self.host.settings);
    }

    /// The socket became writable with room for `budget` bytes.
    fn drain(&mut self, budget: usize) {
        self.kernel.budget = budget;
        let n = self.conn.outbox.write_to(&mut self.kernel).unwrap();
        self.conn.handle_written(n, self.host.now, &self.host.settings);
    }
}

/// Parses server frames: (opcode, payload) each; panics on anything that is
/// not a whole, unmasked, final frame.
fn server_frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !wire.is_empty() {
        assert!(wire.len() >= 2, "truncated header: {wire:?}");
        let (b0, b1) = (wire[0], wire[1]);
        assert_eq!(b0 & 0xf0, 0x80, "FIN, no RSV: {b0:#x}");
        assert_eq!(b1 & 0x80, 0, "server frames are unmasked");
        let (hdr, len) = match b1 & 0x7f {
            126 => (4, u16::from_be_bytes([wire[2], wire[3]]) as usize),
            127 => (10, u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize),
            n => (2, n as usize),
        };
        let opcode = b0 & 0x0f;
        assert!(matches!(opcode, 1 | 2 | 8 | 9 | 10), "opcode {opcode} in {frames:?}");
        assert!(
            wire.len() >= hdr + len,
            "frame of {len} bytes cut after {} (stream corrupted after {} frames)",
            wire.len() - hdr,
            frames.len()
        );
        if opcode == 1 {
            assert!(std::str::from_utf8(&wire[hdr..hdr + len]).is_ok());
        }
        frames.push((opcode, wire[hdr..hdr + len].to_vec()));
        wire = &wire[hdr + len..];
    }
    frames
}

fn slow_consumer_config(c: &mut Config) {
    c.write_queue.max_bytes = 4096;
    c.write_queue.high_water_bytes = 1 << 20;
    c.write_queue.slow_consumer = SlowConsumerPolicy::Close;
}

/// Found by `connection` (partial writes + slow-consumer close). The echo of a
/// 2000-byte message is a 4-byte header in the cork's own buffer followed by
/// the payload as a shared chunk. The kernel takes exactly the header; the
/// payload waits in the outbox. The next message overflows the queue, the
/// close policy discards "unstarted" chunks, and the payload went with them
/// although its header is already on the wire: the client then reads the
/// 1008 close frame as payload bytes and never sees the close.
#[test]
fn slow_consumer_discard_keeps_payload_whose_header_was_sent() {
    let mut sim = Sim::new(slow_consumer_config);
    sim.input(&frame(true, 2, &[0xa5; 2000]), 4);
    assert_eq!(sim.conn.outbox.len(), 2000);
    sim.input(&frame(true, 2, &[0x5a; 3000]), 0);
    assert_eq!(sim.conn.phase(), Phase::Closing);
    sim.drain(usize::MAX);
    let frames = server_frames(&sim.kernel.wire);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0], (2, vec![0xa5; 2000]));
    assert_eq!(frames[1].0, 8);
    assert_eq!(&frames[1].1[..2], &1008u16.to_be_bytes());
}

/// Found by `connection`: the kernel took half of a small echoed frame; the
/// unwritten half moved to the outbox as a fresh chunk whose "already
/// started" mark was lost, so the slow-consumer discard dropped it and the
/// stream was cut mid-frame.
#[test]
fn slow_consumer_discard_keeps_tail_of_half_written_frame() {
    let mut sim = Sim::new(slow_consumer_config);
    sim.input(&frame(true, 1, &[b'a'; 100]), 50);
    assert_eq!(sim.conn.outbox.len(), 52);
    sim.input(&frame(true, 2, &[0u8; 4090]), 0);
    assert_eq!(sim.conn.phase(), Phase::Closing);
    sim.drain(usize::MAX);
    let frames = server_frames(&sim.kernel.wire);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0], (1, vec![b'a'; 100]));
    assert_eq!(&frames[1].1[..2], &1008u16.to_be_bytes());
}

/// What the discard is for still holds: whole frames nobody started are
/// dropped, only the close frame follows what was sent.
#[test]
fn slow_consumer_discard_still_drops_unstarted_frames() {
    let mut sim = Sim::new(slow_consumer_config);
    sim.input(&frame(true, 2, &[1u8; 1500]), 0);
    sim.input(&frame(true, 2, &[2u8; 1500]), 0);
    assert_eq!(sim.conn.outbox.len(), 2 * 1504);
    sim.input(&frame(true, 2, &[3u8; 1500]), 0);
    assert_eq!(sim.conn.phase(), Phase::Closing);
    sim.drain(usize::MAX);
    let frames = server_frames(&sim.kernel.wire);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(&frames[0].1[..2], &1008u16.to_be_bytes());
    let _ = Bytes::new();
}

/// Found by `connection` (the `half_written_then_overflow` seed, after the
/// stream-cut fixes above). The slow-consumer close is started from inside
/// the read loop (echo -> `send_data` -> `admit` -> `start_close`), while the
/// read loop has the connection's tungstenite context checked out: the close
/// frame is written by a second context borrowed from the pool, and the
/// read loop then puts the original, still `Active`, context back. The close
/// handshake state is lost: the client's close reply is answered with a
/// second close frame, later pings get pongs after our close, and a later
/// violation sends yet another close frame (1002 after 1008 in the finding).
#[test]
fn slow_consumer_close_from_the_read_loop_is_the_only_close_frame() {
    let mut sim = Sim::new(slow_consumer_config);
    // The kernel takes nothing; the second echo overflows the 4 KiB queue.
    sim.input(&frame(true, 2, &[1u8; 3000]), 0);
    sim.input(&frame(true, 2, &[2u8; 3000]), 0);
    assert_eq!(sim.conn.phase(), Phase::Closing);
    sim.drain(usize::MAX);
    let frames = server_frames(&sim.kernel.wire);
    let closes: Vec<_> = frames.iter().filter(|f| f.0 == 8).collect();
    assert_eq!(closes.len(), 1, "{frames:?}");
    assert_eq!(&closes[0].1[..2], &1008u16.to_be_bytes());
    sim.kernel.wire.clear();

    // After our close: a ping gets no pong, the client's close reply ends
    // the handshake without another close frame.
    sim.input(&frame(true, 9, b"still there?"), usize::MAX);
    sim.input(&frame(true, 8, &1008u16.to_be_bytes()), usize::MAX);
    assert_eq!(server_frames(&sim.kernel.wire), vec![], "nothing after our close");
    assert_eq!(sim.conn.phase(), Phase::Linger);
}

/// Same root cause, the variant the fuzzer reported: a protocol violation
/// after our 1008 close makes the connection send a second close (1002).
#[test]
fn violation_after_slow_consumer_close_sends_no_second_close() {
    let mut sim = Sim::new(slow_consumer_config);
    sim.input(&frame(true, 2, &[1u8; 3000]), 0);
    sim.input(&frame(true, 2, &[2u8; 3000]), 0);
    assert_eq!(sim.conn.phase(), Phase::Closing);
    sim.drain(usize::MAX);
    sim.kernel.wire.clear();
    // A reserved opcode: fail the connection, but our close was already sent.
    sim.input(&frame(true, 3, b"x"), usize::MAX);
    assert_eq!(server_frames(&sim.kernel.wire), vec![], "a second close frame");
}

/// Found by `frames` in its first seconds: a ping whose (<= 125-byte) length
/// is written in the 16-bit form. tungstenite accepts it (and answers), but
/// the connection's frame scanner judged it by the 7-bit length field
/// (`len7 > 125` => "tungstenite will reject this"), switched to passthrough
/// for good, and from then on kept its tungstenite context (and its read
/// buffer) for the rest of the connection's life, although it is idle.
#[test]
fn ping_with_a_16_bit_length_leaves_the_connection_holding_nothing() {
    let mut sim = Sim::new(|_| {});
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut ping = vec![0x89, 0x80 | 126, 0, 5];
    ping.extend_from_slice(&mask);
    ping.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    sim.input(&ping, usize::MAX);
    sim.input(&frame(true, 1, b"after"), usize::MAX);
    let frames = server_frames(&sim.kernel.wire);
    assert_eq!(frames, vec![(10, b"hello".to_vec()), (1, b"after".to_vec())]);
    assert_eq!(sim.conn.phase(), Phase::Open);
    assert_eq!(sim.conn.retained_bytes(), 0, "an idle connection holds its context");
}

/// Found by `protocol` (../shared/fuzz-findings/protocol-id-out-of-range,
/// after ~15 min on one core): the request `id` was echoed raw into the
/// `error` reply, and `1550e5555555555555555555555` is valid JSON syntax that
/// strict parsers refuse ("number out of range"), so the client could not
/// read the answer to its own request. Now such an id is refused with
/// `bad_field` and the reply carries no id.
#[test]
fn an_out_of_range_request_id_gets_a_reply_strict_parsers_read() {
    use wsedge::pubsub::protocol::{error, parse_text};
    let input = br#"{"te":"+sen\"yb","id":1550e5555555555555555555555}"#;
    let text = std::str::from_utf8(input).unwrap();
    let e = parse_text(text, 64 * 1024).expect_err("the id is refused");
    let reply = error(&e);
    let frames = server_frames(&reply);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, 1, "a text frame");
    let json: serde_json::Value =
        serde_json::from_slice(&frames[0].1).expect("serde_json reads the reply");
    assert_eq!(json["type"], "error");
    assert_eq!(json["code"], "bad_field");
    assert!(json.get("id").is_none(), "the refused id is not echoed: {json}");
}

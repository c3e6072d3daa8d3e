//! Regression tests for inputs the fuzzers (`fuzz/`, see FUZZING.md) found.
//!
//! Each test replays one finding sans-IO, with the input bytes inline, the
//! way the `connection` fuzz target drives a connection: it handles input,
//! then its turn ends through the connection driver the worker uses
//! (`Host::end_turn`), writing to a "kernel" that takes at most a budget of
//! bytes; the rest waits in the connection's queue until the kernel is
//! writable again (`Host::handle_writable`). The check is the fuzzer's:
//! everything that reached the wire parses as a sequence of whole, valid
//! server frames.

mod common;

use bytes::Bytes;
use common::frame;
use wsedge::config::{Config, SlowConsumerPolicy};
use wsedge::conn::{Conn, EndTurn, Host, Phase, Settings};
use wsedge::handshake::{accept_key, upgrade_response, Upgrade};
use wsedge::stream::KernelSink;

const REQUEST: &[u8] = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// One connection, driven through the same driver as the worker's.
struct Sim {
    host: Host,
    conn: Conn,
    kernel: KernelSink,
    /// No write was cut short since the kernel was last writable.
    writable: bool,
}

impl Sim {
    fn new(tweak: impl FnOnce(&mut Config)) -> Sim {
        let mut config = Config::default();
        tweak(&mut config);
        let host = Host::new(Settings::from_config(&config, 100));
        let conn = Conn::new(0, &host.settings);
        let kernel = KernelSink { wire: Vec::new(), budget: usize::MAX };
        let mut sim = Sim { host, conn, kernel, writable: true };
        sim.input(REQUEST, usize::MAX);
        assert_eq!(sim.conn.phase(), Phase::Open);
        let head = sim.kernel.wire.windows(4).position(|w| w == b"\r\n\r\n");
        sim.kernel.wire.drain(..head.expect("101 response") + 4);
        sim
    }

    /// A connection just accepted on the configured server, nothing read yet.
    fn accepted(tweak: impl FnOnce(&mut Config)) -> Sim {
        let mut config = Config::default();
        tweak(&mut config);
        let host = Host::new(Settings::from_config(&config, 100));
        let conn = Conn::new(0, &host.settings);
        Sim { host, conn, kernel: KernelSink { wire: Vec::new(), budget: 0 }, writable: true }
    }

    /// One read of `bytes`, then the end of the turn with a kernel that
    /// takes `budget`.
    fn input(&mut self, bytes: &[u8], budget: usize) {
        self.conn.handle_input(bytes, &mut self.host.env());
        let _ = self.end_turn(budget, false);
    }

    /// The end of a turn, as the worker's `finish`; `hold_queue` as for a
    /// connection on the worker's dirty list.
    fn end_turn(&mut self, budget: usize, hold_queue: bool) -> wsedge::conn::TurnResult {
        self.kernel.budget = budget;
        let turn = EndTurn { writable: self.writable, hold_queue };
        let done = self.host.end_turn(&mut self.conn, &mut self.kernel, turn);
        self.writable = done.writable;
        done
    }

    /// The socket became writable with room for `budget` bytes.
    fn drain(&mut self, budget: usize) {
        self.kernel.budget = budget;
        self.writable = self.host.handle_writable(&mut self.conn, &mut self.kernel).writable;
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
    assert_eq!(sim.conn.queued_bytes(), 2000);
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
    assert_eq!(sim.conn.queued_bytes(), 52);
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
    assert_eq!(sim.conn.queued_bytes(), 2 * 1504);
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
    // Both closes are out and everything is flushed: the socket is closed.
    assert_eq!(sim.conn.phase(), Phase::Closed);
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

/// The exact 101 response to [`REQUEST`] (and to the same request on `/ws`).
fn expected_101() -> Vec<u8> {
    upgrade_response(&Upgrade { accept: accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), protocol: None })
}

/// Checks `wire` the way the `connection` fuzz target's client does: the
/// exact 101 response first, then whole server frames, the last one a close
/// with `code`. Returns the frames.
fn upgraded_then_closed(wire: &[u8], code: u16) -> Vec<(u8, Vec<u8>)> {
    let head = expected_101();
    let n = wire.len().min(head.len());
    assert_eq!(
        String::from_utf8_lossy(&wire[..n]),
        String::from_utf8_lossy(&head[..n]),
        "the first bytes on the wire are not the 101 response"
    );
    assert!(wire.len() >= head.len(), "the 101 response is cut short");
    let frames = server_frames(&wire[head.len()..]);
    let last = frames.last().expect("a close frame");
    assert_eq!(last.0, 8, "{frames:?}");
    assert_eq!(&last.1[..2], &code.to_be_bytes());
    assert_eq!(frames.iter().filter(|f| f.0 == 8).count(), 1, "{frames:?}");
    frames
}

/// The `connection` target's configuration (fuzz/src/lib.rs `small_config`):
/// 4 KiB frames, 8 KiB messages, a 4 KiB write queue, 2 KiB high water,
/// slow-consumer policy `close`.
fn fuzz_small_config(c: &mut Config) {
    c.websocket.max_frame_bytes = 4096;
    c.websocket.max_message_bytes = 8192;
    c.write_queue.max_bytes = 4096;
    c.write_queue.high_water_bytes = 2048;
    c.write_queue.slow_consumer = SlowConsumerPolicy::Close;
}

/// Found by `connection` after ~530k executions (../shared/fuzz-findings/
/// connection-close-before-101): the first byte the client received was a
/// close frame's 0x88, not the `H` of `HTTP/1.1 101`. Schedule byte 0x1a:
/// reads of at most 16 bytes, a kernel that takes nothing while the client
/// is not reading. The input's frames, pipelined right behind the upgrade
/// request: a masked pong, five 1-byte texts, two 2-byte binaries, a
/// 100-byte text, a 4090-byte binary.
///
/// The read that completes the request writes the 101 and the first echoes
/// into the cork; the kernel takes none of it, so all of it moves to the
/// outbox as chunks nobody has started to send. The echo of the 4090-byte
/// frame overflows the 4 KiB queue, and the slow-consumer close discarded
/// every unstarted chunk, the 101 with them, then queued the 1008 close.
#[test]
fn the_101_reaches_the_client_before_a_slow_consumer_close() {
    let mut stream = REQUEST.to_vec();
    stream.extend(frame(true, 10, b"0123456789"));
    for _ in 0..5 {
        stream.extend(frame(true, 1, b"a"));
    }
    stream.extend(frame(true, 2, b"bb"));
    stream.extend(frame(true, 2, b"bb"));
    stream.extend(frame(true, 1, &[b'c'; 100]));
    stream.extend(frame(true, 2, &[0xd5; 4090]));
    for piece in [16, 13, 7, 3, 1] {
        let mut sim = Sim::accepted(fuzz_small_config);
        for chunk in stream.chunks(piece) {
            if sim.conn.phase() != Phase::Open && sim.conn.phase() != Phase::Handshake {
                break;
            }
            // Reading is paused above high water: the client reads a byte.
            while !sim.conn.wants_read() {
                sim.drain(1);
            }
            sim.input(chunk, 0);
        }
        assert_eq!(sim.conn.phase(), Phase::Closing, "reads of {piece}");
        sim.drain(usize::MAX);
        upgraded_then_closed(&sim.kernel.wire, 1008);
    }
}

/// The same discard reached from the worker's side: on `/ws` the worker
/// queues fan-out deliveries with `Conn::enqueue` behind a 101 that the
/// kernel has not taken yet (or only part of); the delivery that overflows
/// the queue must not take the 101 with it, whatever part of it was
/// written.
#[test]
fn the_101_survives_a_fan_out_overflow_under_every_write_split() {
    let request = String::from_utf8(REQUEST.to_vec()).unwrap().replace("/echo", "/ws");
    let head = expected_101().len();
    for budget in (0..=head + 2).chain([head + 40]) {
        let mut sim = Sim::accepted(fuzz_small_config);
        sim.input(request.as_bytes(), budget);
        assert_eq!(sim.conn.phase(), Phase::Open);
        let delivery = frame_unmasked(&[b'm'; 1500]);
        while sim.conn.phase() == Phase::Open {
            sim.host.enqueue(&mut sim.conn, delivery.clone());
        }
        sim.drain(usize::MAX);
        let frames = upgraded_then_closed(&sim.kernel.wire, 1008);
        assert!(frames[..frames.len() - 1].iter().all(|f| f.1.len() == 1500), "budget {budget}");
    }
}

/// An unmasked server text frame holding `payload` (< 64 KiB).
fn frame_unmasked(payload: &[u8]) -> Bytes {
    let mut out = vec![0x81];
    if payload.len() < 126 {
        out.push(payload.len() as u8);
    } else {
        out.push(126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// Found by `protocol` (3-minute run at 29e39d8, after ~2.8 million
/// executions): `data` is forwarded raw into every delivery, and a number
/// out of the range of an f64 (`555555555555555555E555...`) is valid JSON
/// syntax that strict parsers (serde_json, and JavaScript reads `Infinity`)
/// refuse: no subscriber can read the message. The same holds for `data`
/// over WebSocket (`publish`, `send`). Fixed: such `data` is refused with
/// `bad_field` / 400 (a scan of the raw value parses only numbers that could
/// overflow an f64).
#[test]
fn published_data_with_an_out_of_range_number_never_reaches_subscribers_unreadable() {
    use wsedge::pubsub::protocol::{message, parse_http_publish, parse_text, Epoch, Request};
    let data = "{\"h\":555555555555555555E55555555555555555555550}";
    let readable = |frame: &[u8]| {
        let frames = server_frames(frame);
        serde_json::from_slice::<serde_json::Value>(&frames[0].1).is_ok()
    };
    let body = format!("{{\"room\":\"ne\",\"data\":{data}}}");
    match parse_http_publish(body.as_bytes(), 64 * 1024) {
        Err((status, _)) => assert_eq!(status, 400),
        Ok(p) => assert!(readable(&message(&p.room, None, 1, Epoch(1), &p.data)), "HTTP publish"),
    }
    let text = format!("{{\"type\":\"publish\",\"room\":\"ne\",\"data\":{data}}}");
    match parse_text(&text, 64 * 1024) {
        Err(e) => assert_eq!(e.code.as_str(), "bad_field"),
        Ok(Request::Publish { room, data, .. }) => {
            assert!(readable(&message(&room, Some(1), 1, Epoch(1), data)), "WebSocket publish")
        }
        Ok(other) => panic!("{other:?}"),
    }
}

/// Found by the shutdown test under load: a frame the application queued
/// (a room delivery) and a close in the cork in the same turn, while the
/// connection is on the worker's dirty list (its queue held). The cork went
/// behind the queue without any write, yet the socket was marked full, so
/// nothing was written until the close deadline and the client lost both the
/// message and the close.
#[test]
fn a_cork_behind_a_queue_does_not_mark_the_socket_full() {
    let mut sim = Sim::new(|_| {});
    let message = frame_unmasked(b"bye");
    assert!(sim.host.enqueue(&mut sim.conn, message));
    sim.conn.start_close(wsedge::metrics::CloseCause::Shutdown, &mut sim.host.env());
    let held = sim.end_turn(usize::MAX, true);
    assert!(held.writable, "nothing was written, so the socket is not known to be full");
    assert!(sim.kernel.wire.is_empty(), "a held queue is not written");
    // The dirty list's turn: the message, then the close, with no writable
    // event in between.
    assert!(sim.end_turn(usize::MAX, false).writable);
    let frames = server_frames(&sim.kernel.wire);
    assert_eq!(frames.first().map(|f| (f.0, f.1.as_slice())), Some((1, &b"bye"[..])));
    assert_eq!(frames.get(1).map(|f| f.0), Some(8), "the close follows the message");
}

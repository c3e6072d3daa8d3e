//! Sans-IO tests of the connection state machine: bytes in, bytes out, no
//! sockets, time as a parameter.

use std::io;

use super::frames::unmask_into;
use super::*;
use crate::config::Config;

/// A [`Host`] whose clock follows `now` (100 ms ticks), as a worker's does.
struct Harness(Host);

impl std::ops::Deref for Harness {
    type Target = Host;
    fn deref(&self) -> &Host {
        &self.0
    }
}

impl std::ops::DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut Host {
        &mut self.0
    }
}

impl Harness {
    fn new(tweak: impl FnOnce(&mut Config)) -> Harness {
        let mut config = Config::default();
        tweak(&mut config);
        Harness(Host::new(Settings::from_config(&config, 100)))
    }

    fn env(&mut self) -> Env<'_> {
        let now = self.now;
        self.0.set_tick(now, 100, 1_800_000_000);
        self.0.env()
    }

    /// Feeds `bytes` and returns what the connection sent (as if fully written).
    fn input(&mut self, conn: &mut Conn, bytes: &[u8]) -> Vec<u8> {
        conn.handle_input(bytes, &mut self.env());
        self.take_output()
    }

    fn timer(&mut self, conn: &mut Conn) -> Vec<u8> {
        conn.handle_timer(&mut self.env());
        self.take_output()
    }

    fn open(&mut self) -> Conn {
        let mut conn = Conn::new(self.now, &self.settings);
        let out = self.input(&mut conn, REQUEST);
        assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
        assert_eq!(conn.phase(), Phase::Open);
        conn
    }
}

const REQUEST: &[u8] = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Server frame bytes (unmasked).
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    FrameHeader { opcode: OpCode::from(opcode), ..FrameHeader::default() }
        .format(payload.len() as u64, &mut out)
        .unwrap();
    out.extend_from_slice(payload);
    out
}

/// The code of the close frame in `out`, which must be whole server frames
/// from its first byte: each frame is parsed in turn, so a 0x88 byte inside
/// a payload is never taken for a close. None without a close frame; 1005
/// ("no status") for a close without a code. Panics on a truncated or
/// masked frame and on any frame after the close.
fn close_code(out: &[u8]) -> Option<u16> {
    let mut rest = out;
    let mut code = None;
    while !rest.is_empty() {
        assert!(code.is_none(), "a frame after the close frame: {rest:?} in {out:?}");
        assert!(rest.len() >= 2, "a truncated frame header in {out:?}");
        let (b0, b1) = (rest[0], rest[1]);
        assert_eq!(b1 & 0x80, 0, "a masked server frame in {out:?}");
        let (header, len) = match b1 & 0x7f {
            126 if rest.len() >= 4 => (4, u16::from_be_bytes([rest[2], rest[3]]) as usize),
            127 if rest.len() >= 10 => {
                (10, u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize)
            }
            126 | 127 => panic!("a truncated frame header in {out:?}"),
            n => (2, n as usize),
        };
        assert!(rest.len() >= header + len, "a truncated frame in {out:?}");
        let payload = &rest[header..header + len];
        if b0 & 0x0f == 8 {
            code = Some(match payload {
                [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
                _ => 1005,
            });
        }
        rest = &rest[header + len..];
    }
    code
}

#[test]
fn close_code_reads_frames_not_stray_bytes() {
    // An echo whose payload holds 0x88 0x02 0x03 0xe9 (what the old helper
    // took for a 1001 close), then the real close.
    let mut out = server_frame(2, &[0x88, 0x02, 0x03, 0xe9]);
    assert_eq!(close_code(&out), None, "no close frame yet");
    out.extend(server_frame(8, &1002u16.to_be_bytes()));
    assert_eq!(close_code(&out), Some(1002));
    let cut = std::panic::catch_unwind(|| close_code(&out[..out.len() - 1]));
    assert!(cut.is_err(), "a truncated close frame is not a close");
}

#[test]
fn echo_survives_any_split_of_the_input() {
    let mut h = Harness::new(|_| {});
    let mut stream = masked(true, 1, b"split me anywhere");
    stream.extend(masked(true, 2, &[7u8; 300]));
    let expect = [server_frame(1, b"split me anywhere"), server_frame(2, &[7u8; 300])].concat();
    for step in [1, 2, 3, 7, 64, stream.len()] {
        let mut conn = h.open();
        let mut out = Vec::new();
        for chunk in stream.chunks(step) {
            out.extend(h.input(&mut conn, chunk));
        }
        assert_eq!(out, expect, "step {step}");
    }
}

#[test]
fn an_idle_connection_holds_no_buffers_or_tungstenite_state() {
    let mut h = Harness::new(|_| {});
    let mut conn = h.open();
    assert_eq!(conn.retained_bytes(), 0);
    h.input(&mut conn, &masked(true, 1, b"hello"));
    assert_eq!(conn.retained_bytes(), 0, "after a small message");
    // A partial frame is kept by the connection until it completes.
    let frame = masked(true, 2, &[1u8; 1000]);
    h.input(&mut conn, &frame[..500]);
    assert!(conn.retained_bytes() >= 500);
    h.input(&mut conn, &frame[500..]);
    assert_eq!(conn.retained_bytes(), 0, "after the partial frame completed");
    assert!(std::mem::size_of::<Conn>() <= 256, "Conn is {} bytes", std::mem::size_of::<Conn>());
}

#[test]
fn memory_comes_back_after_a_one_mebibyte_message() {
    let mut h = Harness::new(|_| {});
    let mut conn = h.open();
    let big = vec![0x5au8; 1 << 20];
    let frame = masked(true, 2, &big);
    let mut out = Vec::new();
    // Arrives in 64 KiB reads, as from the socket.
    for chunk in frame.chunks(64 * 1024) {
        out.extend(h.input(&mut conn, chunk));
    }
    assert_eq!(out.len(), 10 + (1 << 20));
    assert_eq!(conn.retained_bytes(), 0);
    // The big context was not pooled either: pooled contexts stay small.
    assert!(h.pool.free.is_empty());
}

#[test]
fn fragmented_message_keeps_state_between_reads_then_releases_it() {
    let mut h = Harness::new(|_| {});
    let mut conn = h.open();
    assert!(h.input(&mut conn, &masked(false, 1, b"part one, ")).is_empty());
    assert!(conn.retained_bytes() > 0, "tungstenite holds the first fragment");
    let out = h.input(&mut conn, &masked(true, 0, b"part two"));
    assert_eq!(out, server_frame(1, b"part one, part two"));
    assert_eq!(conn.retained_bytes(), 0);
}

#[test]
fn violations_close_with_the_right_code() {
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("invalid utf-8", masked(true, 1, &[0xff, 0xfe]), 1007),
        (
            "reserved bits",
            {
                let mut f = masked(true, 1, b"x");
                f[0] |= 0x40;
                f
            },
            1002,
        ),
        ("reserved opcode", masked(true, 3, b"x"), 1002),
        ("unmasked", vec![0x81, 0x01, b'x'], 1002),
        ("continuation first", masked(true, 0, b"x"), 1002),
        ("fragmented ping", masked(false, 9, b"x"), 1002),
        ("bad close code", masked(true, 8, &999u16.to_be_bytes()), 1002),
        ("too big", masked(true, 2, &[0u8; 2048]), 1009),
    ];
    for (name, bytes, code) in cases {
        let mut h = Harness::new(|c| {
            c.websocket.max_frame_bytes = 1024;
            c.websocket.max_message_bytes = 1024;
        });
        let mut conn = h.open();
        let out = h.input(&mut conn, &bytes);
        assert_eq!(close_code(&out), Some(code), "{name}: {out:?}");
        assert!(matches!(conn.phase(), Phase::Linger | Phase::Closed), "{name}");
    }
}

#[test]
fn oversized_message_over_fragments_is_1009() {
    let mut h = Harness::new(|c| c.websocket.max_message_bytes = 1000);
    let mut conn = h.open();
    h.input(&mut conn, &masked(false, 2, &[0u8; 600]));
    let out = h.input(&mut conn, &masked(true, 0, &[0u8; 600]));
    assert_eq!(close_code(&out), Some(1009));
    assert_eq!(conn.close_reason(), Some(CloseCause::MessageTooBig));
}

#[test]
fn oversized_frame_is_refused_from_its_header_alone() {
    let mut h = Harness::new(|c| c.websocket.max_frame_bytes = 1000);
    let mut conn = h.open();
    let frame = masked(true, 2, &[0u8; 5000]);
    let out = h.input(&mut conn, &frame[..14]);
    assert_eq!(close_code(&out), Some(1009));
}

#[test]
fn silent_client_gets_pings_then_is_closed_as_timeout() {
    let mut h = Harness::new(|c| {
        c.health.ping_interval_ms = 1000;
        c.health.dead_client_ms = 3000;
    });
    let mut conn = h.open();
    assert_eq!(conn.deadline(&h.settings), 10);
    h.now = 10;
    let out = h.timer(&mut conn);
    assert_eq!(out, server_frame(9, b""), "a ping after 1 s of silence");
    assert_eq!(conn.deadline(&h.settings), 20);
    // A pong (any input) pushes the dead-client deadline.
    h.now = 15;
    h.input(&mut conn, &masked(true, 10, b""));
    h.now = 30;
    h.timer(&mut conn);
    assert_eq!(conn.phase(), Phase::Open, "pong at 1.5 s keeps it alive at 3 s");
    h.now = 45;
    let out = h.timer(&mut conn);
    assert_eq!(close_code(&out), Some(1001));
    assert_eq!(conn.close_reason(), Some(CloseCause::Timeout));
}

#[test]
fn handshake_deadline_closes_an_unfinished_request() {
    let mut h = Harness::new(|c| c.handshake.timeout_ms = 500);
    let mut conn = Conn::new(0, &h.settings);
    h.input(&mut conn, b"GET /echo HTTP/1.1\r\nHost: x\r\n");
    assert_eq!(conn.deadline(&h.settings), 5);
    h.now = 5;
    h.timer(&mut conn);
    assert!(conn.is_closed());
    assert_eq!(conn.close_reason(), Some(CloseCause::HandshakeTimeout));
}

#[test]
fn refusals_are_http_responses_then_linger() {
    for (req, status) in [
        (&b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"[..], "404"),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\n\r\n", "405"),
        (b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 8\r\n\r\n", "426"),
    ] {
        let mut h = Harness::new(|_| {});
        let mut conn = Conn::new(0, &h.settings);
        let out = h.input(&mut conn, req);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
        assert_eq!(conn.phase(), Phase::Linger);
        assert!(conn.wants_shutdown());
    }
}

#[test]
fn peer_close_is_echoed_and_the_connection_lingers() {
    let mut h = Harness::new(|_| {});
    let mut conn = h.open();
    let out = h.input(&mut conn, &masked(true, 8, &[0x0f, 0xa0, b'b', b'y', b'e']));
    assert_eq!(out, server_frame(8, &[0x0f, 0xa0, b'b', b'y', b'e']));
    assert_eq!(conn.phase(), Phase::Linger);
    assert_eq!(conn.close_reason(), Some(CloseCause::ClientClose));
}

#[test]
fn server_close_waits_for_the_reply_then_drops_at_deadline() {
    let mut h = Harness::new(|c| c.health.close_timeout_ms = 1000);
    let mut conn = h.open();
    conn.start_close(CloseCause::Shutdown, &mut h.env());
    assert_eq!(close_code(&h.take_output()), Some(1001));
    assert_eq!(conn.phase(), Phase::Closing);
    // Data sent before the client saw our close is read and ignored.
    assert!(h.input(&mut conn, &masked(true, 1, b"late")).is_empty());
    h.now = 10;
    h.timer(&mut conn);
    assert!(conn.is_closed());
    assert_eq!(conn.close_reason(), Some(CloseCause::Shutdown));
}

#[test]
fn server_close_completes_on_the_reply() {
    let mut h = Harness::new(|_| {});
    let mut conn = h.open();
    conn.start_close(CloseCause::Shutdown, &mut h.env());
    h.take_output();
    h.input(&mut conn, &masked(true, 8, &1001u16.to_be_bytes()));
    assert_eq!(conn.phase(), Phase::Linger);
}

#[test]
fn overflowing_queue_closes_as_slow_consumer_or_drops() {
    for policy in [SlowConsumerPolicy::Close, SlowConsumerPolicy::Drop] {
        let mut h = Harness::new(|c| {
            c.write_queue.max_bytes = 4096;
            c.write_queue.high_water_bytes = 2048;
            c.write_queue.slow_consumer = policy;
        });
        let mut conn = h.open();
        // The kernel took nothing: everything queues.
        conn.outbox.push(Bytes::from(vec![0u8; 4000]));
        let out = h.input(&mut conn, &masked(true, 2, &[1u8; 200]));
        match policy {
            SlowConsumerPolicy::Close => {
                assert_eq!(close_code(&out), Some(1008));
                assert_eq!(conn.close_reason(), Some(CloseCause::SlowConsumer));
                assert_eq!(conn.outbox.len(), 0, "queued data discarded");
            }
            SlowConsumerPolicy::Drop => {
                assert!(out.is_empty());
                assert_eq!(h.stats.dropped, 1);
                assert_eq!(conn.phase(), Phase::Open);
            }
        }
    }
}

#[test]
fn backpressure_pauses_reading_above_high_water_and_resumes_below_half() {
    let mut h = Harness::new(|c| c.write_queue.high_water_bytes = 1000);
    let mut conn = h.open();
    let mut kernel = Recorder::taking(0);
    conn.outbox.push(Bytes::from(vec![0u8; 1500]));
    let done = h.end_turn(&mut conn, &mut kernel, EndTurn { writable: true, hold_queue: false });
    assert!(!done.writable, "the kernel took nothing");
    assert!(!conn.wants_read());
    kernel.budget = usize::MAX;
    let done = h.handle_writable(&mut conn, &mut kernel);
    assert!(done.resume_reading, "resumes: caller must read again");
    assert!(conn.wants_read());
    assert_eq!(kernel.wire.len(), 1500);
}

/// Frames split one byte at a time or delivered in one read give the same
/// output, whichever path (the fast path for whole data frames, or
/// tungstenite for control frames and fragments) handles each frame, and a
/// fragmented message keeps its state across fast frames' neighbours.
#[test]
fn mixed_fast_and_tungstenite_frames_echo_in_order_under_any_split() {
    let long = vec![b'x'; 300]; // 16-bit length form
    let mut stream = masked(true, 1, b"first");
    stream.extend(masked(true, 2, &[0, 159, 255, 7]));
    stream.extend(masked(true, 9, b"p1"));
    stream.extend(masked(false, 1, b"frag "));
    stream.extend(masked(true, 9, b"p2"));
    stream.extend(masked(false, 0, "é ".as_bytes()));
    stream.extend(masked(true, 0, b"end"));
    stream.extend(masked(true, 1, "h\u{e9}llo \u{1f600}".as_bytes()));
    stream.extend(masked(true, 1, &long));
    stream.extend(masked(true, 1, b""));
    let expect = [
        server_frame(1, b"first"),
        server_frame(2, &[0, 159, 255, 7]),
        server_frame(10, b"p1"),
        server_frame(10, b"p2"),
        server_frame(1, "frag é end".as_bytes()),
        server_frame(1, "h\u{e9}llo \u{1f600}".as_bytes()),
        server_frame(1, &long),
        server_frame(1, b""),
    ]
    .concat();
    let mut h = Harness::new(|_| {});
    for step in [1, 2, 5, 13, stream.len()] {
        let mut conn = h.open();
        let mut out = Vec::new();
        for chunk in stream.chunks(step) {
            out.extend(h.input(&mut conn, chunk));
        }
        assert_eq!(out, expect, "step {step}");
        assert_eq!(conn.phase(), Phase::Open);
        assert_eq!(conn.retained_bytes(), 0, "step {step}: idle again");
    }
}

#[test]
fn protocol_errors_after_fast_frames_in_the_same_read_still_close_correctly() {
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("new message inside a fragmented one", masked(false, 1, b"a"), 1002),
        ("invalid UTF-8 in a whole text frame", masked(true, 1, &[b'o', b'k', 0xc3]), 1007),
        ("overlong UTF-8", masked(true, 1, &[0xc0, 0xaf]), 1007),
    ];
    for (name, bad, code) in cases {
        let mut h = Harness::new(|_| {});
        let mut conn = h.open();
        let mut stream = masked(true, 1, b"fine");
        stream.extend(&bad);
        if name.starts_with("new message") {
            stream.extend(masked(true, 1, b"not a continuation"));
        }
        stream.extend(masked(true, 1, b"never echoed"));
        let out = h.input(&mut conn, &stream);
        let echo = server_frame(1, b"fine");
        assert!(out.starts_with(&echo), "{name}: {out:?}");
        assert_eq!(close_code(&out[echo.len()..]), Some(code), "{name}: {out:?}");
        assert!(!out.windows(12).any(|w| w == b"never echoed"), "{name}");
        assert!(matches!(conn.phase(), Phase::Linger | Phase::Closed), "{name}");
    }
}

#[test]
fn a_whole_text_frame_over_the_message_limit_is_1009() {
    let mut h = Harness::new(|c| c.websocket.max_message_bytes = 100);
    let mut conn = h.open();
    let out = h.input(&mut conn, &masked(true, 1, &[b'a'; 101]));
    assert_eq!(close_code(&out), Some(1009));
    assert_eq!(conn.close_reason(), Some(CloseCause::MessageTooBig));
}

#[test]
fn a_burst_past_the_queue_limit_drops_whole_frames_only() {
    let mut h = Harness::new(|c| {
        c.write_queue.max_bytes = 4096;
        c.write_queue.high_water_bytes = 4096;
        c.write_queue.slow_consumer = SlowConsumerPolicy::Drop;
    });
    let mut conn = h.open();
    let payload = [7u8; 200];
    let burst: Vec<u8> = (0..30).flat_map(|_| masked(true, 2, &payload)).collect();
    let out = h.input(&mut conn, &burst);
    let frame = server_frame(2, &payload);
    let fitted = 4096 / frame.len();
    assert_eq!(out, frame.repeat(fitted), "whole echo frames up to the limit, nothing cut");
    assert_eq!(h.stats.dropped, (30 - fitted) as u64);
    assert_eq!(conn.phase(), Phase::Open);
}

#[test]
fn the_message_rate_limit_drops_echoes_then_closes_with_1008() {
    let mut h = Harness::new(|c| {
        c.rate_limits.messages_per_sec = 5;
        c.rate_limits.max_violations = 3;
    });
    let mut conn = h.open();
    let burst: Vec<u8> = (0..7).flat_map(|i| masked(true, 1, format!("m{i}").as_bytes())).collect();
    let out = h.input(&mut conn, &burst);
    let echoes: Vec<u8> =
        (0..5).flat_map(|i| server_frame(1, format!("m{i}").as_bytes())).collect();
    assert_eq!(out, echoes, "five within the burst, two dropped");
    assert_eq!(h.stats.rate_limited, 2);
    let out = h.input(&mut conn, &masked(true, 1, b"third violation"));
    assert_eq!(close_code(&out), Some(1008));
    assert_eq!(conn.close_reason(), Some(CloseCause::RateLimited));
}

#[test]
fn unmasking_matches_the_rfc_definition_and_spots_non_ascii() {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    for len in 0..70 {
        for high in [None, Some(len / 2)] {
            let mut plain: Vec<u8> = (0..len).map(|i| (i * 7 % 128) as u8).collect();
            if let Some(at) = high.filter(|_| len > 0) {
                plain[at] = 0xe9;
            }
            let wire: Vec<u8> = plain.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
            let mut out = vec![0xaa]; // appends after what is there
            let ascii = unmask_into(&mut out, &wire, mask);
            assert_eq!(&out[1..], &plain[..], "len {len}");
            assert_eq!(ascii, plain.is_ascii(), "len {len}");
        }
    }
}

/// A socket stand-in for the driver: takes at most `budget` bytes, may hold
/// TLS-like records back or fail, and logs the transport calls with how many
/// bytes were on the wire at the time.
#[derive(Default)]
struct Recorder {
    wire: Vec<u8>,
    budget: usize,
    /// `flush_records` reports records still waiting for the socket.
    records_held: bool,
    /// Every write fails (a reset connection).
    broken: bool,
    log: Vec<(&'static str, usize)>,
}

impl Recorder {
    fn taking(budget: usize) -> Recorder {
        Recorder { budget, ..Recorder::default() }
    }
}

impl io::Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.broken {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if self.budget == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        self.wire.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Recorder {
    fn flush_records(&mut self) -> io::Result<bool> {
        Ok(!self.records_held)
    }

    fn close_notify(&mut self) {
        self.log.push(("close_notify", self.wire.len()));
    }
}

const TURN: EndTurn = EndTurn { writable: true, hold_queue: false };

#[test]
fn a_refusal_is_written_whole_then_close_notify_then_the_half_close() {
    let mut h = Harness::new(|_| {});
    let mut conn = Conn::new(0, &h.settings);
    conn.handle_input(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", &mut h.env());
    // The kernel takes only part of the 404 at first.
    let mut kernel = Recorder::taking(10);
    let done = h.end_turn(&mut conn, &mut kernel, TURN);
    assert!(!done.writable && !done.half_close && !done.closed, "{done:?}");
    assert!(kernel.log.is_empty(), "no close_notify before the response is out");
    kernel.budget = usize::MAX;
    let writable = h.handle_writable(&mut conn, &mut kernel).writable;
    let done = h.end_turn(&mut conn, &mut kernel, EndTurn { writable, hold_queue: false });
    assert!(done.half_close && !done.closed, "{done:?}");
    assert!(kernel.wire.starts_with(b"HTTP/1.1 404 "));
    assert_eq!(kernel.log, [("close_notify", kernel.wire.len())], "after the last byte");
    // Once only; then the socket stays open until the client's EOF.
    let done = h.end_turn(&mut conn, &mut kernel, TURN);
    assert!(!done.half_close && !done.closed && done.deadline > h.now, "{done:?}");
    assert_eq!(kernel.log.len(), 1);
    conn.handle_eof();
    let done = h.end_turn(&mut conn, &mut kernel, TURN);
    assert!(done.closed && !done.half_close, "{done:?}");
    assert_eq!(done.deadline, NEVER);
}

/// A socket that takes only part of the close_notify record gets no FIN
/// (and is not closed) until the rest is written: a FIN behind a cut
/// record is a truncated stream to the client.
#[test]
fn the_half_close_waits_for_the_whole_close_notify_record() {
    let mut h = Harness::new(|_| {});
    let mut conn = Conn::new(0, &h.settings);
    conn.handle_input(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", &mut h.env());
    let mut kernel = Recorder { records_held: true, ..Recorder::taking(usize::MAX) };
    let done = h.end_turn(&mut conn, &mut kernel, TURN);
    assert!(!done.writable && !done.half_close && !done.closed, "{done:?}");
    assert_eq!(kernel.log.len(), 1, "close_notify sealed behind the response");
    kernel.records_held = false;
    let writable = h.handle_writable(&mut conn, &mut kernel).writable;
    let done = h.end_turn(&mut conn, &mut kernel, EndTurn { writable, hold_queue: false });
    assert!(done.half_close && !done.closed, "{done:?}");
    let done = h.end_turn(&mut conn, &mut kernel, TURN);
    assert!(!done.half_close, "once: {done:?}");
}

#[test]
fn a_completed_close_handshake_closes_the_socket_without_a_half_close() {
    let mut h = Harness::new(|_| {});
    let mut conn = h.open();
    conn.handle_input(&masked(true, 8, &1000u16.to_be_bytes()), &mut h.env());
    let mut kernel = Recorder::taking(usize::MAX);
    let done = h.end_turn(&mut conn, &mut kernel, TURN);
    assert!(done.closed && !done.half_close, "{done:?}");
    assert_eq!(close_code(&kernel.wire), Some(1000), "the close is echoed first");
    assert_eq!(kernel.log, [("close_notify", kernel.wire.len())]);
}

/// The worker's dirty list: output the application queued this iteration
/// (an ack) waits for the end of the iteration, and what the connection
/// wrote in its own turn meanwhile stays behind it.
#[test]
fn a_held_queue_is_written_on_the_next_turn_with_the_cork_behind_it() {
    let mut h = Harness::new(|_| {});
    let mut conn = h.open();
    let ack = Bytes::from(server_frame(1, b"ack"));
    assert!(h.enqueue(&mut conn, ack));
    conn.handle_input(&masked(true, 1, b"echo"), &mut h.env());
    let mut kernel = Recorder::taking(usize::MAX);
    let done = h.end_turn(&mut conn, &mut kernel, EndTurn { writable: true, hold_queue: true });
    assert!(kernel.wire.is_empty(), "nothing before the held ack");
    assert!(done.writable, "nothing was tried, so the socket is not full");
    let done =
        h.end_turn(&mut conn, &mut kernel, EndTurn { writable: done.writable, hold_queue: false });
    let mut expected = server_frame(1, b"ack");
    expected.extend(server_frame(1, b"echo"));
    assert_eq!(kernel.wire, expected);
    assert!(done.writable && !conn.has_queued());
    assert_eq!(done.deadline, conn.deadline(&h.settings));
}

#[test]
fn records_the_transport_holds_keep_the_socket_waiting_for_writable() {
    let mut h = Harness::new(|_| {});
    let mut conn = h.open();
    conn.handle_input(&masked(true, 1, b"hi"), &mut h.env());
    let mut kernel = Recorder { records_held: true, ..Recorder::taking(usize::MAX) };
    let done = h.end_turn(&mut conn, &mut kernel, TURN);
    assert!(!done.writable, "records wait: the next output queues");
    conn.handle_input(&masked(true, 1, b"again"), &mut h.env());
    let _ = h.end_turn(&mut conn, &mut kernel, EndTurn { writable: false, hold_queue: false });
    assert_eq!(kernel.wire, server_frame(1, b"hi"));
    assert!(conn.has_queued());
    kernel.records_held = false;
    let done = h.handle_writable(&mut conn, &mut kernel);
    assert!(done.writable && !conn.has_queued());
    assert!(kernel.wire.ends_with(&server_frame(1, b"again")));
}

#[test]
fn a_write_error_drops_the_connection() {
    let mut h = Harness::new(|_| {});
    let mut conn = h.open();
    conn.handle_input(&masked(true, 1, b"hi"), &mut h.env());
    let mut kernel = Recorder { broken: true, ..Recorder::taking(usize::MAX) };
    let done = h.end_turn(&mut conn, &mut kernel, TURN);
    assert!(done.closed, "{done:?}");
    assert_eq!(conn.close_reason(), Some(CloseCause::IoError));
}

//! Shared harness for the wsedge fuzz targets (see ../FUZZING.md).
//!
//! - [`Sim`]: one sans-IO [`Conn`] in an emulated worker: input, timer and
//!   writable events, each turn ended through the connection driver the
//!   worker itself calls (`Host::end_turn`, `Host::handle_writable`: cork,
//!   queue, backpressure, half-close, deadline), writing to a [`KernelSink`]
//!   that takes only as many bytes per write as the fuzzer allows. The Sim
//!   holds no end-of-turn logic of its own, only checks on what the driver
//!   asked for.
//! - [`Wire`]: everything the kernel took, checked incrementally as a client
//!   would read it: the exact 101 response, then whole, valid, unmasked
//!   server frames, nothing after a close frame.
//! - [`Counting`]: a global allocator that tracks live and peak heap bytes, so
//!   a target can bound what one connection allocates.
//! - [`Rng`]: a tiny deterministic generator for chunk sizes and schedules.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use wsedge::config::{Config, SlowConsumerPolicy};
use wsedge::conn::{Conn, EndTurn, Env, Host, Phase, Settings, TurnResult};
use wsedge::handshake::{accept_key, upgrade_response, Upgrade};
use wsedge::stream::KernelSink;

/// Milliseconds per tick, as in the worker.
pub const TICK_MS: u64 = 100;
/// Frame limit the targets configure.
pub const MAX_FRAME: usize = 4096;
/// Message limit the targets configure.
pub const MAX_MESSAGE: usize = 8192;
/// Write queue limit the targets configure (half of it is the high-water
/// mark): smaller than one message, so the slow-consumer policy is easy to
/// reach.
pub const MAX_QUEUE: usize = 4096;

/// The client key every target upgrades with.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A valid upgrade request for `/echo`.
pub const REQUEST: &[u8] = b"GET /echo HTTP/1.1\r\nHost: edge.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// [`REQUEST`] with Chromium's permessage-deflate offer.
pub const REQUEST_DEFLATE: &[u8] =
    b"GET /echo HTTP/1.1\r\nHost: edge.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

/// The exact 101 response to [`REQUEST_DEFLATE`] with compression on.
pub fn expected_101_deflate() -> Vec<u8> {
    let mut out = Vec::new();
    wsedge::handshake::write_upgrade_response_with(
        &Upgrade { accept: accept_key(KEY.as_bytes()), protocol: None },
        Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=12"),
        &mut out,
    );
    out
}

/// [`small_settings`] with permessage-deflate on (threshold 16 bytes, so
/// most echoes are compressed).
pub fn deflate_settings(policy: SlowConsumerPolicy, idle: bool) -> Settings {
    static ALL: OnceLock<Vec<Settings>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        [SlowConsumerPolicy::Close, SlowConsumerPolicy::Drop]
            .into_iter()
            .flat_map(|p| {
                [false, true].map(|i| {
                    let mut c = small_config(p, i);
                    c.compression.enabled = true;
                    c.compression.threshold_bytes = 16;
                    Settings::from_config(&c, TICK_MS)
                })
            })
            .collect()
    });
    let index = usize::from(policy == SlowConsumerPolicy::Drop) * 2 + usize::from(idle);
    all[index].clone()
}

/// The exact 101 response to [`REQUEST`] (computed once per process).
pub fn expected_101() -> Vec<u8> {
    static RESPONSE: OnceLock<Vec<u8>> = OnceLock::new();
    RESPONSE
        .get_or_init(|| {
            upgrade_response(&Upgrade { accept: accept_key(KEY.as_bytes()), protocol: None })
        })
        .clone()
}

/// `Settings::from_config(&small_config(policy, idle), TICK_MS)`, built once
/// per process for each of the four combinations and cloned per input:
/// deriving settings builds a `Config`, an `Authenticator` and their
/// strings, which is per-input work that finds nothing.
pub fn small_settings(policy: SlowConsumerPolicy, idle: bool) -> Settings {
    static ALL: OnceLock<Vec<Settings>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        [SlowConsumerPolicy::Close, SlowConsumerPolicy::Drop]
            .into_iter()
            .flat_map(|p| {
                [false, true].map(|i| Settings::from_config(&small_config(p, i), TICK_MS))
            })
            .collect()
    });
    let index = usize::from(policy == SlowConsumerPolicy::Drop) * 2 + usize::from(idle);
    all[index].clone()
}

/// Small limits so every limit is reachable from a small input: 4 KiB
/// frames, 8 KiB messages, a 4 KiB write queue (2 KiB high water), and
/// timers of a few ticks (ping 10, dead 30, idle 50, close 10, stall 20).
pub fn small_config(policy: SlowConsumerPolicy, idle: bool) -> Config {
    let mut c = Config::default();
    c.websocket.max_frame_bytes = MAX_FRAME;
    c.websocket.max_message_bytes = MAX_MESSAGE;
    c.write_queue.max_bytes = MAX_QUEUE;
    c.write_queue.high_water_bytes = MAX_QUEUE / 2;
    c.write_queue.slow_consumer = policy;
    c.write_queue.stall_timeout_ms = 2000;
    c.handshake.timeout_ms = 1000;
    c.health.ping_interval_ms = 1000;
    c.health.dead_client_ms = 3000;
    c.health.idle_timeout_ms = if idle { 5000 } else { 0 };
    c.health.close_timeout_ms = 1000;
    c
}

/// One connection in an emulated worker.
pub struct Sim {
    /// What the worker lends the connection (clock, cork, pool, counters).
    pub host: Host,
    pub conn: Conn,
    pub kernel: KernelSink,
    /// The driver asked for the half-close (`shutdown(Write)`).
    pub shut: bool,
    /// The socket is writable (the last write was not cut short).
    pub writable: bool,
    /// The deadline the driver returned at the end of the last turn.
    pub deadline: u64,
}

impl Sim {
    /// A freshly accepted connection at tick 0.
    pub fn new(config: &Config) -> Sim {
        Sim::with_settings(Settings::from_config(config, TICK_MS))
    }

    /// A freshly accepted connection at tick 0 under `settings` (see
    /// [`small_settings`]).
    pub fn with_settings(settings: Settings) -> Sim {
        let host = Host::new(settings);
        let conn = Conn::new(0, &host.settings);
        Sim {
            host,
            conn,
            kernel: KernelSink { wire: Vec::new(), budget: 0 },
            shut: false,
            writable: true,
            deadline: 0,
        }
    }

    /// False once the worker would have dropped the connection.
    pub fn alive(&self) -> bool {
        !self.conn.is_closed()
    }

    /// Runs `f` on the connection with the worker's environment.
    fn with_env(&mut self, f: impl FnOnce(&mut Conn, &mut Env)) {
        let now = self.host.now;
        self.host.set_tick(now, TICK_MS, 1_700_000_000);
        f(&mut self.conn, &mut self.host.env());
    }

    /// One read returned `bytes`; the kernel then takes up to `budget`.
    pub fn input(&mut self, bytes: &[u8], budget: usize) {
        assert!(self.alive() && self.conn.wants_read(), "worker would not read");
        self.with_env(|conn, env| conn.handle_input(bytes, env));
        self.finish(budget);
    }

    /// The client closed its side (read returned 0).
    pub fn eof(&mut self, budget: usize) {
        self.conn.handle_eof();
        self.finish(budget);
    }

    /// The connection's timer fired at tick `now` (monotonic).
    pub fn timer(&mut self, now: u64, budget: usize) {
        assert!(now >= self.host.now, "time goes forward");
        self.host.now = now;
        self.with_env(|conn, env| conn.handle_timer(env));
        self.finish(budget);
    }

    /// The socket became writable with room for `budget` bytes; then the
    /// turn ends (a worker's writable event with nothing to read).
    pub fn writable(&mut self, budget: usize) {
        self.kernel.budget = budget;
        let done = self.drive(|host, conn, kernel| host.handle_writable(conn, kernel));
        self.writable = done.writable;
        self.finish(budget);
    }

    /// The end of a turn through the driver, as the worker's `finish` (a
    /// connection on the dirty list holds its queue only until the same
    /// iteration's end; one connection alone has no bus to wait for).
    fn finish(&mut self, budget: usize) {
        self.kernel.budget = budget;
        let turn = EndTurn { writable: self.writable, hold_queue: false };
        let done = self.drive(|host, conn, kernel| host.end_turn(conn, kernel, turn));
        self.writable = done.writable;
        assert!(!(done.half_close && self.shut), "a second half-close");
        self.shut |= done.half_close;
        assert_eq!(done.closed, self.conn.is_closed());
        if !done.closed {
            assert!(done.deadline > self.host.now, "deadline {} not after now", done.deadline);
        }
        self.deadline = done.deadline;
    }

    /// Runs one driver call, checking that nothing is written after the
    /// write side was shut down.
    fn drive(
        &mut self,
        f: impl FnOnce(&mut Host, &mut Conn, &mut KernelSink) -> TurnResult,
    ) -> TurnResult {
        let (shut, before) = (self.shut, self.kernel.wire.len());
        let done = f(&mut self.host, &mut self.conn, &mut self.kernel);
        assert!(
            !shut || self.kernel.wire.len() == before,
            "{} bytes written after the write side was shut down",
            self.kernel.wire.len() - before
        );
        done
    }

    /// Takes what reached the client so far.
    pub fn take_wire(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.kernel.wire)
    }

    /// The phase, for convenience.
    pub fn phase(&self) -> Phase {
        self.conn.phase()
    }
}

/// A frame as the client reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The close code, for a close frame with one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Close codes a server may put on the wire (RFC 6455 section 7.4, plus the
/// IANA-registered 1012/1013 that tungstenite echoes): never 1004-1006, 1015,
/// 1014 (not accepted by tungstenite), below 1000, 1016-2999 or above 4999.
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999)
}

/// Codes the server sends on its own initiative (not echoing the client).
pub const SERVER_CODES: [u16; 7] = [1000, 1001, 1002, 1007, 1008, 1009, 1011];

/// The client's view of the byte stream: the 101 response, then frames.
pub struct Wire {
    /// Bytes of the 101 response still expected.
    head: Vec<u8>,
    /// Received bytes not yet forming a whole frame.
    buf: Vec<u8>,
    /// The close frame, once seen.
    pub close: Option<ServerFrame>,
    /// Frames parsed so far.
    pub frames: usize,
    /// permessage-deflate was agreed: data frames may carry RSV1, and then
    /// must inflate (a fresh raw inflater each: the server agreed
    /// `server_no_context_takeover`) to a valid message.
    deflate: bool,
}

impl Wire {
    /// Expects `head` (e.g. the 101 response) before the first frame.
    pub fn new(head: Vec<u8>) -> Wire {
        Wire { head, buf: Vec::new(), close: None, frames: 0, deflate: false }
    }

    /// Like [`Wire::new`], with permessage-deflate agreed.
    pub fn with_deflate(head: Vec<u8>) -> Wire {
        Wire { deflate: true, ..Wire::new(head) }
    }

    /// True once the head was received in full.
    pub fn upgraded(&self) -> bool {
        self.head.is_empty()
    }

    /// Bytes of a frame received only in part.
    pub fn partial(&self) -> usize {
        self.buf.len()
    }

    /// Reads `bytes`; returns the frames they completed. Panics on anything
    /// a client must reject.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<ServerFrame> {
        if !self.head.is_empty() {
            let n = bytes.len().min(self.head.len());
            assert_eq!(
                &bytes[..n],
                &self.head[..n],
                "the upgrade response is not the expected 101"
            );
            self.head.drain(..n);
            bytes = &bytes[n..];
        }
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some((frame, len)) = parse_frame(&self.buf[pos..], self.deflate) {
            assert!(self.close.is_none(), "a frame after the close frame: {frame:?}");
            pos += len;
            self.frames += 1;
            if frame.opcode == 8 {
                self.close = Some(frame.clone());
            }
            out.push(frame);
        }
        self.buf.drain(..pos);
        out
    }
}

/// Parses one whole server frame from the front of `buf`, checking it as a
/// strict client would: FIN set (the server never fragments), RSV clear,
/// known opcode, unmasked, minimal length encoding, control payloads at most
/// 125 bytes, data at most [`MAX_MESSAGE`], text and close reasons UTF-8,
/// close codes valid. `None` if the frame is incomplete.
pub fn parse_server_frame(buf: &[u8]) -> Option<(ServerFrame, usize)> {
    parse_frame(buf, false)
}

fn parse_frame(buf: &[u8], deflate: bool) -> Option<(ServerFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (b0, b1) = (buf[0], buf[1]);
    assert_eq!(b0 & 0x80, 0x80, "server frames are never fragmented: {b0:#04x}");
    let opcode = b0 & 0x0f;
    let compressed = b0 & 0x40 != 0;
    if compressed {
        assert!(deflate, "RSV1 without permessage-deflate: {b0:#04x}");
        assert!(matches!(opcode, 1 | 2), "RSV1 on a control frame: {b0:#04x}");
    }
    assert_eq!(b0 & 0x30, 0, "RSV2/3 set: {b0:#04x}");
    assert!(matches!(opcode, 1 | 2 | 8 | 9 | 10), "opcode {opcode}");
    assert_eq!(b1 & 0x80, 0, "a server frame is masked");
    let (hdr, len) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            let len = u16::from_be_bytes([buf[2], buf[3]]) as u64;
            assert!(len >= 126, "non-minimal 16-bit length {len}");
            (4, len)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let len = u64::from_be_bytes(buf[2..10].try_into().unwrap());
            assert!(len > 0xffff, "non-minimal 64-bit length {len}");
            (10, len)
        }
        n => (2, n as u64),
    };
    if opcode >= 8 {
        assert!(len <= 125, "control frame of {len} bytes");
    } else {
        assert!(len <= MAX_MESSAGE as u64, "data frame of {len} bytes");
    }
    let len = len as usize;
    if buf.len() < hdr + len {
        return None;
    }
    let mut payload = buf[hdr..hdr + len].to_vec();
    if compressed {
        payload = inflate(&payload);
        assert!(payload.len() <= MAX_MESSAGE, "inflates to {} bytes", payload.len());
    }
    if opcode == 1 {
        assert!(std::str::from_utf8(&payload).is_ok(), "text is not UTF-8");
    }
    if opcode == 8 {
        assert_ne!(payload.len(), 1, "a close payload of one byte");
        if payload.len() >= 2 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            assert!(valid_close_code(code), "close code {code}");
            assert!(std::str::from_utf8(&payload[2..]).is_ok(), "close reason is not UTF-8");
        }
    }
    Some((ServerFrame { opcode, payload }, hdr + len))
}

/// A masked client frame: `b0` is FIN/RSV/opcode; `wide` forces a longer
/// length encoding than needed (0 minimal, 1 16-bit, 2+ 64-bit).
pub fn client_frame(out: &mut Vec<u8>, b0: u8, mask: Option<[u8; 4]>, wide: u8, payload: &[u8]) {
    client_header(out, b0, mask, wide, payload.len() as u64);
    match mask {
        Some(m) => out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4])),
        None => out.extend_from_slice(payload),
    }
}

/// Just the header of a client frame declaring `len` payload bytes.
pub fn client_header(out: &mut Vec<u8>, b0: u8, mask: Option<[u8; 4]>, wide: u8, len: u64) {
    out.push(b0);
    let m = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 && wide == 0 {
        out.push(m | len as u8);
    } else if len <= 0xffff && wide <= 1 {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
}

/// xorshift64*: deterministic, cheap, good enough for schedules.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live heap bytes and their peak.
pub struct Counting;

impl Counting {
    /// Heap bytes allocated and not yet freed.
    pub fn live() -> usize {
        LIVE.load(Ordering::Relaxed)
    }

    /// Highest `live()` since the last [`Counting::reset_peak`].
    pub fn peak() -> usize {
        PEAK.load(Ordering::Relaxed)
    }

    /// Starts a new peak measurement at the current live bytes.
    pub fn reset_peak() {
        PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn grew(by: usize) {
        let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are
// updated on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            Counting::grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            Counting::grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                Counting::grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// Inflates one compressed server message (RFC 7692 7.2.2: append the
/// `00 00 ff ff` tail), independently of the server's codec.
fn inflate(compressed: &[u8]) -> Vec<u8> {
    let mut d = flate2::Decompress::new_with_window_bits(false, 15);
    let mut input = compressed.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(MAX_MESSAGE * 2 + 64);
    d.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
        .expect("a compressed server message that does not inflate");
    assert_eq!(d.total_in() as usize, input.len(), "bytes left after the compressed message");
    out
}

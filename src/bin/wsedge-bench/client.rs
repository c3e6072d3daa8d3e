//! One client connection: its state, buffers and socket I/O, and the
//! per-worker context ([`Ctx`]) the connection handlers share. What the
//! server sends back is parsed in [`crate::recv`]; the loop that owns the
//! connections is [`crate::worker`].

use std::io::{self, ErrorKind, Read};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;

use crate::config::{Config, Mode};
use crate::net::write_pending;
use crate::recv::{fail_body, process};
use crate::stats::{micros, ErrKind, Stats};
use crate::wire::{
    first_line_lossy, load_u64_le, push_close, push_msg, unhex16, Rng, OP_BINARY, OP_TEXT,
};

/// Time allowed for the TCP connect, and then for the handshake response.
pub const HANDSHAKE_TIMEOUT_NS: u64 = 10 * crate::NS_PER_SEC;
/// idle --echo-first: time allowed for the first echo to come back.
pub const ECHO_FIRST_TIMEOUT_NS: u64 = 30 * crate::NS_PER_SEC;
/// Read chunk of connect/idle runs (buffers are returned while idle).
pub const SMALL_CHUNK: usize = 4 << 10;
/// Read chunk of echo runs; also the largest buffer kept in the pool.
pub const BIG_CHUNK: usize = 64 << 10;

/// Where a connection is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum St {
    Connecting,
    Handshake,
    /// Non-101 response: waiting (briefly) for the first line of the body.
    HsFailBody,
    /// idle --echo-first: upgraded, waiting for the echo of the first message.
    EchoFirst,
    Open,
    /// Close frame sent, waiting for the server's close reply (or EOF).
    Closing,
    /// Close handshake done, waiting for the server to close TCP (or EOF).
    AwaitEof,
}

/// State to its counting bucket: 0 = not yet established, 1 = open, 2 = closing.
pub fn bucket(s: St) -> usize {
    match s {
        St::Connecting | St::Handshake | St::HsFailBody | St::EchoFirst => 0,
        St::Open => 1,
        St::Closing | St::AwaitEof => 2,
    }
}

/// What the worker does with a connection after a handler ran.
#[derive(PartialEq, Eq, Debug)]
pub enum Act {
    Keep,
    Drop,
}

/// One client connection: socket, state, read and write buffers.
pub struct Conn {
    pub sock: TcpStream,
    /// `wss://`: rustls over `sock`.
    pub tls: Option<Box<rustls::ClientConnection>>,
    pub st: St,
    /// Read buffer: `r` is fully initialized; live bytes are `r[rs..re]`.
    pub r: Vec<u8>,
    pub rs: usize,
    pub re: usize,
    /// Bytes the next frame needs (from `rs`), 0 when unknown.
    pub need: usize,
    /// Write buffer: `w[wp..]` is still to be written.
    pub w: Vec<u8>,
    pub wp: usize,
    pub frag: Vec<u8>,
    pub frag_op: u8,
    pub key: [u8; 24],
    pub accept: [u8; 28],
    /// ns since start: connect started.
    pub t0: u64,
    /// ns since start: deadline of the current state, 0 = none.
    pub deadline: u64,
    pub inflight: u32,
    pub dirty: bool,
    pub fail_status: String,
    pub body_need: usize,
}

/// What a worker's connection handlers share: configuration, clock,
/// statistics, the dirty list, the buffer pool and the run's phase flags.
pub struct Ctx {
    pub cfg: Arc<Config>,
    pub start: Instant,
    pub rng: Rng,
    pub st: Stats,
    pub dirty: Vec<usize>,
    pub pool: Vec<Vec<u8>>,
    pub template: Vec<u8>,
    pub data_op: u8,
    pub ws: bool,
    pub small_bufs: bool,
    pub read_chunk: usize,
    pub sending: bool,
    pub closing_all: bool,
    pub close_wait_ns: u64,
    pub win_start: u64,
    pub win_end: u64,
    pub n: [u64; 3],
    pub resolved: u64,
}

impl Ctx {
    #[inline]
    /// ns since the run started.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Counts an error; the first of each kind is printed and kept.
    pub fn err(&mut self, kind: ErrKind, msg: impl FnOnce() -> String) {
        let k = kind as usize;
        self.st.errs[k] += 1;
        if self.st.first[k].is_none() {
            let m = msg();
            eprintln!("wsedge-bench: error [{}]: {m}", kind.name());
            self.st.first[k] = Some(m);
        }
    }

    /// [`Ctx::err`] for an error that ends `c` (counted as lost when it was open).
    pub fn conn_err(&mut self, c: &Conn, kind: ErrKind, msg: impl FnOnce() -> String) {
        if c.st == St::Open {
            self.st.lost += 1;
        }
        self.err(kind, msg);
    }

    /// Counts a failed connect, refused or otherwise.
    pub fn connect_error(&mut self, e: &io::Error) {
        let addr = self.cfg.target.addr;
        if e.kind() == ErrorKind::ConnectionRefused {
            self.err(ErrKind::ConnectRefused, || {
                format!("connection refused by {addr} (is the server running?)")
            });
        } else {
            self.err(ErrKind::ConnectFailed, || format!("connect to {addr} failed: {e}"));
        }
    }

    /// Moves `c` to `s`, keeping the per-bucket counts.
    pub fn set_state(&mut self, c: &mut Conn, s: St) {
        self.n[bucket(c.st)] = self.n[bucket(c.st)].saturating_sub(1);
        self.n[bucket(s)] += 1;
        c.st = s;
    }

    #[inline]
    /// Queues `c` for the end-of-pass flush (once).
    pub fn mark_dirty(&mut self, c: &mut Conn, idx: usize) {
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(idx);
        }
    }

    fn take_buf(&mut self, min: usize) -> Vec<u8> {
        let mut v = self.pool.pop().unwrap_or_default();
        v.clear();
        v.reserve(min);
        v
    }

    /// Gives `c` a write buffer from the pool if it has none.
    #[inline]
    pub fn ensure_wbuf(&mut self, c: &mut Conn, min: usize) {
        if c.w.capacity() == 0 {
            c.w = self.take_buf(min);
        }
    }

    /// Returns a buffer to the pool (small ones only, up to 4096 of them).
    pub fn give_buf(&mut self, v: Vec<u8>) {
        if v.capacity() > 0 && v.capacity() <= BIG_CHUNK && self.pool.len() < 4096 {
            self.pool.push(v);
        }
    }

    /// The attempt resolved as established.
    pub fn established(&mut self, c: &mut Conn, now: u64) {
        if c.tls.as_deref().is_some_and(crate::tls::resumed) {
            self.st.resumed += 1;
        }
        self.set_state(c, St::Open);
        self.resolved += 1;
        self.st.handshakes += 1;
        self.st.hs_lat.saturating_record(micros(now.saturating_sub(c.t0)));
        self.st.last_resolved_ns = now;
    }

    /// One echo (text/binary message) arrived; returns true when it answers
    /// one of our in-flight messages.
    #[inline]
    pub fn on_data(&mut self, st: St, op: u8, payload: &[u8], now: u64) -> bool {
        if st != St::Open {
            return false;
        }
        if self.cfg.mode != Mode::Echo {
            self.st.other_msgs += 1;
            return false;
        }
        self.st.recv_all += 1;
        let size = self.cfg.size;
        if op != self.data_op {
            let (got, want) = (op_name(op), op_name(self.data_op));
            self.err(ErrKind::BadPayload, || {
                format!("echo came back as a {got} message, sent {want}")
            });
        } else if payload.len() != size {
            let got = payload.len();
            self.err(ErrKind::SizeMismatch, || format!("echo of {got} bytes, sent {size} bytes"));
        } else {
            let ts = if op == OP_TEXT { unhex16(payload) } else { Some(load_u64_le(payload)) };
            match ts {
                Some(ts) if ts <= now => self.count_echo(ts, size, now),
                _ => self.err(ErrKind::BadPayload, || {
                    "echo payload does not carry the timestamp that was sent".to_string()
                }),
            }
        }
        true
    }

    #[inline]
    /// Counts one echo with its send timestamp if inside the measurement window.
    pub fn count_echo(&mut self, ts: u64, size: usize, now: u64) {
        if now >= self.win_start && now < self.win_end {
            self.st.msgs += 1;
            self.st.bytes += size as u64;
            self.st.lat.saturating_record(micros(now - ts));
        }
    }
}

/// `text`, `binary` or `other`, for messages.
pub fn op_name(op: u8) -> &'static str {
    match op {
        OP_TEXT => "text",
        OP_BINARY => "binary",
        _ => "other",
    }
}

/// Write `w[wp..]` until done or WouldBlock (over TLS: all of it becomes
/// records, written until done or WouldBlock).
pub fn flush(c: &mut Conn, writes: &mut u64) -> io::Result<()> {
    if let Some(tls) = c.tls.as_deref_mut() {
        crate::tls::write_plain(tls, &mut c.sock, &c.w[c.wp..], writes)?;
        c.wp = c.w.len();
    } else {
        write_pending(&mut c.sock, &c.w, &mut c.wp, writes)?;
    }
    if c.wp < c.w.len() {
        // Would block: keep the rest, dropping what is written once it is large.
        if c.wp > BIG_CHUNK {
            c.w.drain(..c.wp);
            c.wp = 0;
        }
        return Ok(());
    }
    c.w.clear();
    c.wp = 0;
    Ok(())
}

/// Make sure `r[re..]` has at least `spare` bytes.
fn ensure_spare(ctx: &mut Ctx, c: &mut Conn, spare: usize) {
    if c.r.len() - c.re >= spare {
        return;
    }
    if c.r.capacity() == 0 {
        c.r = ctx.take_buf(spare.max(ctx.read_chunk));
    }
    if c.rs > 0 {
        c.r.copy_within(c.rs..c.re, 0);
        c.re -= c.rs;
        c.rs = 0;
    }
    if c.r.len() - c.re < spare {
        let want = (c.re + spare).max(c.r.capacity()).max(c.r.len() * 2);
        c.r.resize(want, 0);
    }
}

/// Handle one readiness event of a connection.
pub fn on_event(ctx: &mut Ctx, c: &mut Conn, idx: usize, ev: &mio::event::Event) -> Act {
    let now = ctx.now();
    if c.st == St::Connecting {
        // epoll reports a connecting socket writable once connected, and
        // with an error or hang-up once failed: no syscall needed to tell.
        if ev.is_error() || ev.is_read_closed() || ev.is_write_closed() {
            let e = match c.sock.take_error() {
                Ok(Some(e)) | Err(e) => e,
                Ok(None) => io::Error::new(ErrorKind::ConnectionRefused, "connection failed"),
            };
            ctx.connect_error(&e);
            return Act::Drop;
        }
        if !ev.is_writable() {
            return Act::Keep;
        }
        connected(ctx, c, idx, now);
    }
    if ev.is_writable() && (c.wp < c.w.len() || c.tls.as_ref().is_some_and(|t| t.wants_write())) {
        ctx.mark_dirty(c, idx);
    }
    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
        // A short read means the socket is drained (Linux epoll raises a new
        // edge for any data arriving later), unless the peer already closed:
        // then read on until EOF, for no new edge would come. Over TLS a
        // short read of plaintext says nothing about the socket.
        let drain_all = ev.is_read_closed() || ev.is_error() || c.tls.is_some();
        return read_loop(ctx, c, idx, now, drain_all);
    }
    Act::Keep
}

fn connected(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64) {
    ctx.ensure_wbuf(c, 256);
    if ctx.ws {
        let t = &ctx.cfg.target;
        c.w.extend_from_slice(b"GET ");
        c.w.extend_from_slice(t.path.as_bytes());
        c.w.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        c.w.extend_from_slice(t.host.as_bytes());
        c.w.extend_from_slice(
            b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ",
        );
        c.w.extend_from_slice(&c.key);
        c.w.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\n\r\n");
        ctx.set_state(c, St::Handshake);
        ctx.mark_dirty(c, idx);
    } else {
        ctx.established(c, now);
        on_open(ctx, c, idx, now);
    }
}

/// A connection just became established.
pub fn on_open(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64) {
    c.deadline = 0;
    if ctx.closing_all || ctx.cfg.mode == Mode::Connect {
        start_close(ctx, c, idx, now);
        return;
    }
    if ctx.sending && matches!(ctx.cfg.mode, Mode::Echo | Mode::TcpEcho) {
        send_msgs(ctx, c, idx, ctx.cfg.inflight, now);
    }
}

/// Queues a close frame (1000) and waits for the server's reply.
pub fn start_close(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64) {
    ctx.ensure_wbuf(c, 16);
    let mask = ctx.rng.next() as u32;
    push_close(&mut c.w, Some(1000), mask);
    ctx.set_state(c, St::Closing);
    c.deadline = now + ctx.close_wait_ns;
    ctx.mark_dirty(c, idx);
}

#[inline]
/// Queues `n` timestamped messages (or records) on `c`.
pub fn send_msgs(ctx: &mut Ctx, c: &mut Conn, idx: usize, n: u32, now: u64) {
    if n == 0 {
        return;
    }
    c.w.reserve(n as usize * (ctx.template.len() + 14));
    if ctx.ws {
        for _ in 0..n {
            let mask = ctx.rng.next() as u32;
            push_msg(&mut c.w, ctx.data_op, &ctx.template, now, mask);
        }
    } else {
        for _ in 0..n {
            let p0 = c.w.len();
            c.w.extend_from_slice(&ctx.template);
            c.w[p0..p0 + 8].copy_from_slice(&now.to_le_bytes());
        }
    }
    c.inflight += n;
    ctx.st.sent += u64::from(n);
    ctx.mark_dirty(c, idx);
}

fn read_loop(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64, drain_all: bool) -> Act {
    loop {
        let buffered = c.re - c.rs;
        let spare = ctx.read_chunk.max(c.need.saturating_sub(buffered));
        ensure_spare(ctx, c, spare);
        let avail = c.r.len() - c.re;
        let got = match c.tls.as_deref_mut() {
            Some(tls) => {
                let (reads, writes) = (&mut ctx.st.reads, &mut ctx.st.writes);
                crate::tls::read_plain(tls, &mut c.sock, &mut c.r[c.re..], reads, writes)
            }
            None => {
                ctx.st.reads += 1;
                c.sock.read(&mut c.r[c.re..])
            }
        };
        match got {
            Ok(0) => return on_eof(ctx, c, now),
            Ok(n) => {
                c.re += n;
                if process(ctx, c, idx, now) == Act::Drop {
                    return Act::Drop;
                }
                if n < avail && !drain_all {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return on_io_error(ctx, c, &e),
        }
    }
    if c.rs == c.re {
        c.rs = 0;
        c.re = 0;
        if ctx.small_bufs && c.r.capacity() > 0 {
            let r = std::mem::take(&mut c.r);
            ctx.give_buf(r);
        }
    }
    Act::Keep
}

fn on_eof(ctx: &mut Ctx, c: &mut Conn, now: u64) -> Act {
    let addr = ctx.cfg.target.addr;
    match c.st {
        St::Connecting | St::Handshake => {
            let got = c.re - c.rs;
            let line = first_line_lossy(&c.r[c.rs..c.re], 200);
            ctx.err(ErrKind::HandshakeInvalid, || {
                if got == 0 {
                    format!("{addr} closed the connection during the handshake (no response)")
                } else {
                    format!(
                        "{addr} closed the connection during the handshake after {got} bytes: {line:?}"
                    )
                }
            });
        }
        St::HsFailBody => {
            fail_body(ctx, c, now, true);
        }
        St::EchoFirst => ctx.err(ErrKind::Disconnected, || {
            format!("{addr} closed the TCP connection before echoing the first message")
        }),
        St::Open => {
            let what = if ctx.ws { "without a close frame" } else { "(EOF)" };
            ctx.conn_err(c, ErrKind::Disconnected, || {
                format!("{addr} closed the TCP connection {what}")
            });
        }
        St::Closing => ctx.st.close_eof += 1,
        St::AwaitEof => {}
    }
    Act::Drop
}

/// Counts a socket error by what `c` was doing; the connection goes.
pub fn on_io_error(ctx: &mut Ctx, c: &mut Conn, e: &io::Error) -> Act {
    let addr = ctx.cfg.target.addr;
    match c.st {
        St::Connecting => ctx.connect_error(e),
        St::Handshake | St::HsFailBody => ctx.err(ErrKind::HandshakeInvalid, || {
            format!("{addr}: connection failed during the handshake: {e}")
        }),
        St::EchoFirst => ctx.err(ErrKind::Disconnected, || {
            format!("{addr}: connection error before the first echo: {e}")
        }),
        St::Open => {
            let kind = match e.kind() {
                ErrorKind::ConnectionReset
                | ErrorKind::BrokenPipe
                | ErrorKind::ConnectionAborted => ErrKind::Disconnected,
                _ => ErrKind::Io,
            };
            ctx.conn_err(c, kind, || format!("{addr}: connection error: {e}"));
        }
        // The server may reset after its close reply; that ends the close.
        St::Closing => ctx.st.close_eof += 1,
        St::AwaitEof => {}
    }
    Act::Drop
}

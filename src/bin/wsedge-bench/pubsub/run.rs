//! One pub/sub load thread: a single-threaded, edge-triggered mio loop that
//! opens its share of the subscribers (and, on thread 0, every publisher),
//! subscribes them, publishes once every subscription is acked, counts what
//! arrives, and walks the phases: setup, run (warm-up then the measured
//! window), drain (publishing stopped, waiting for every delivery owed),
//! close.
//!
//! Read buffers: one 64 KiB scratch buffer per thread; a connection keeps
//! only the tail of a frame that a read cut in two. Writes are batched per
//! connection and flushed once per loop pass.

use std::io::{self, ErrorKind, Read, Write};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::proto::{push_subscribe, read, Dialect, Incoming, Publish};
use super::tally::SubTally;
use super::{PubsubCfg, Shared, ABORT};
use crate::net::connect_socket;
use crate::stats::{micros, ErrKind, Stats};
use crate::wire::{
    first_line_lossy, parse_frame, push_close, push_frame, ws_key, FrameHead, Rng, OP_BINARY,
    OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
};
use crate::NS_PER_SEC;

/// Time for every connection to be up and subscribed.
pub const SETUP_NS: u64 = 60 * NS_PER_SEC;
/// After the window: time allowed for every delivery owed to arrive.
pub const DRAIN_NS: u64 = 5 * NS_PER_SEC;
/// Handshakes in progress at most per thread.
const SETUP_IN_FLIGHT: usize = 200;
/// Publishes one loop pass sends at most (so reads are not starved).
const MAX_PUBLISH_BATCH: u64 = 4096;
const SCRATCH: usize = 64 << 10;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Connecting,
    Handshake,
    /// Subscriber: subscribe sent, waiting for its ack.
    Subscribing,
    Ready,
}

enum Role {
    Sub(SubTally),
    Pub(Pubr),
}

/// A publisher's state.
struct Pubr {
    /// Rooms it publishes to, in turn.
    rooms: Vec<u32>,
    /// Publishes sent; the next one's id is `sent + 1`.
    sent: u64,
    unacked: u32,
}

struct PConn {
    sock: TcpStream,
    st: St,
    role: Role,
    /// The unparsed tail of what was read.
    r: Vec<u8>,
    w: Vec<u8>,
    wp: usize,
    accept: [u8; 28],
    dirty: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Setup,
    Run,
    Drain,
    Done,
}

/// What a thread hands back at the end.
pub struct Outcome {
    pub st: Stats,
    /// Deliveries received: in the measured window / in all.
    pub delivered_win: u64,
    pub delivered_all: u64,
    /// Thread 0: publishes sent in the window / in all, publishes refused
    /// by the server, acks still owed at the end, per-room publishes the
    /// server accepted.
    pub published_win: u64,
    pub published_all: u64,
    pub publish_errors: u64,
    pub unacked_end: u64,
    pub published: Vec<u64>,
    pub tallies: Vec<SubTally>,
    /// ns since start: all subscribed (publishing began); 0 = never.
    pub go_ns: u64,
    pub win_secs: f64,
    /// Thread 0: the drain ended with deliveries still owed.
    pub owed_end: u64,
}

/// What the connection handlers share (everything but the connections).
struct Ctx {
    cfg: Arc<PubsubCfg>,
    shared: Arc<Shared>,
    id: usize,
    start: Instant,
    rng: Rng,
    st: Stats,
    dirty: Vec<usize>,
    win_start: u64,
    win_end: u64,
    delivered_win: u64,
    delivered_all: u64,
    /// Thread 0's publishing state.
    published: Vec<u64>,
    subs_in_room: Vec<u64>,
    expected: u64,
    publish_errors: u64,
    tallies_done: Vec<SubTally>,
}

impl Ctx {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn err(&mut self, kind: ErrKind, msg: impl FnOnce() -> String) {
        let k = kind as usize;
        self.st.errs[k] += 1;
        if self.st.first[k].is_none() {
            let m = msg();
            eprintln!("wsedge-bench: error [{}]: {m}", kind.name());
            self.st.first[k] = Some(m);
        }
    }

    fn mark_dirty(&mut self, c: &mut PConn, idx: usize) {
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(idx);
        }
    }

    /// Deliveries owed: published x subscribers, less those received.
    fn owed(&self) -> u64 {
        let mut got = self.delivered_all;
        for (i, p) in self.shared.pubs.iter().enumerate() {
            if i != self.id {
                got += p.delivered.load(Ordering::Relaxed);
            }
        }
        self.expected.saturating_sub(got)
    }

    /// A publish the server refused: it was not sequenced, owes nothing.
    fn unpublish(&mut self, room: u32) {
        let r = room as usize;
        self.published[r] = self.published[r].saturating_sub(1);
        self.expected = self.expected.saturating_sub(self.subs_in_room[r]);
        self.publish_errors += 1;
    }
}

pub struct Runner {
    poll: Poll,
    conns: Vec<Option<PConn>>,
    /// Connections this thread still has to open (roles in order).
    plan: Vec<Role>,
    opened: usize,
    in_setup: usize,
    src_ctr: u32,
    scratch: Vec<u8>,
    templates: Vec<Publish>,
    publishers: Vec<usize>,
    rr: usize,
    published_all: u64,
    published_win: u64,
    go_ns: u64,
    phase: Phase,
    drain_end: u64,
    ctx: Ctx,
}

impl Runner {
    pub fn new(
        cfg: Arc<PubsubCfg>,
        id: usize,
        shared: Arc<Shared>,
        start: Instant,
    ) -> Result<Runner, String> {
        let poll = Poll::new().map_err(|e| format!("cannot create poll: {e}"))?;
        let threads = cfg.threads as u64;
        let rooms = cfg.rooms as u64;
        let mut plan = Vec::new();
        if id == 0 {
            for p in 0..cfg.pubs {
                // Each room has one publisher when P <= R; else P / R per room.
                let rooms = if cfg.pubs <= cfg.rooms {
                    (0..cfg.rooms).filter(|r| r % cfg.pubs == p).collect()
                } else {
                    vec![p % cfg.rooms]
                };
                plan.push(Role::Pub(Pubr { rooms, sent: 0, unacked: 0 }));
            }
        }
        // Subscriber i is in room i % R, on thread i % T.
        let mut i = id as u64;
        while i < cfg.subs {
            plan.push(Role::Sub(SubTally::new((i % rooms) as u32)));
            i += threads;
        }
        plan.reverse();
        let subs_in_room =
            (0..rooms).map(|r| cfg.subs / rooms + u64::from(r < cfg.subs % rooms)).collect();
        let templates = if id == 0 {
            (0..cfg.rooms)
                .map(|r| Publish::new(cfg.dialect, r, &cfg.room_name(r), cfg.size))
                .collect()
        } else {
            Vec::new()
        };
        let ctx = Ctx {
            rng: Rng::seeded(id as u64 + 1),
            st: Stats::new()?,
            dirty: Vec::with_capacity(1024),
            win_start: u64::MAX,
            win_end: u64::MAX,
            delivered_win: 0,
            delivered_all: 0,
            published: vec![0; cfg.rooms as usize],
            subs_in_room,
            expected: 0,
            publish_errors: 0,
            tallies_done: Vec::new(),
            cfg,
            shared,
            id,
            start,
        };
        Ok(Runner {
            poll,
            conns: Vec::new(),
            plan,
            opened: 0,
            in_setup: 0,
            src_ctr: id as u32,
            scratch: vec![0; SCRATCH],
            templates,
            publishers: Vec::new(),
            rr: 0,
            published_all: 0,
            published_win: 0,
            go_ns: 0,
            phase: Phase::Setup,
            drain_end: u64::MAX,
            ctx,
        })
    }

    pub fn run(mut self) -> Result<Outcome, String> {
        let mut events = Events::with_capacity(1024);
        while self.phase != Phase::Done {
            let now = self.ctx.now();
            self.open_more(now);
            if self.phase == Phase::Run && self.ctx.id == 0 {
                self.publish(now);
            }
            self.flush_dirty();
            let busy = self.ctx.id == 0
                && self.phase == Phase::Run
                && (self.ctx.cfg.rate > 0.0 || self.ctx.cfg.threads > 1);
            let timeout = Duration::from_millis(if busy { 0 } else { 1 });
            self.ctx.st.polls += 1;
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll failed: {e}"));
            }
            for ev in events.iter() {
                let idx = ev.token().0;
                let Some(Some(c)) = self.conns.get_mut(idx) else {
                    continue;
                };
                if on_event(&mut self.ctx, c, idx, ev, &mut self.scratch).is_err() {
                    self.drop_conn(idx);
                }
            }
            self.flush_dirty();
            let p = &self.ctx.shared.pubs[self.ctx.id];
            p.delivered.store(self.ctx.delivered_all, Ordering::Relaxed);
            self.tick(self.ctx.now());
        }
        self.close_all();
        let cpu = crate::sys::thread_cpu_secs();
        let wall = self.ctx.now() as f64 / 1e9;
        self.ctx.st.cpu_s = cpu;
        self.ctx.st.busy_max = if wall > 0.0 { cpu / wall } else { 0.0 };
        let owed_end = if self.ctx.id == 0 { self.ctx.owed() } else { 0 };
        let mut tallies = std::mem::take(&mut self.ctx.tallies_done);
        let mut unacked_end = 0;
        for c in self.conns.iter().flatten() {
            match &c.role {
                Role::Sub(t) => tallies.push(*t),
                Role::Pub(p) => unacked_end += u64::from(p.unacked),
            }
        }
        let win_secs = if self.ctx.win_start == u64::MAX {
            0.0
        } else {
            let end = self.ctx.win_end.min(self.ctx.now());
            end.saturating_sub(self.ctx.win_start) as f64 / 1e9
        };
        Ok(Outcome {
            delivered_win: self.ctx.delivered_win,
            delivered_all: self.ctx.delivered_all,
            published_win: self.published_win,
            published_all: self.published_all,
            publish_errors: self.ctx.publish_errors,
            unacked_end,
            published: std::mem::take(&mut self.ctx.published),
            tallies,
            go_ns: self.go_ns,
            win_secs,
            owed_end,
            st: self.ctx.st,
        })
    }

    fn open_more(&mut self, now: u64) {
        if self.phase != Phase::Setup || now >= SETUP_NS {
            return;
        }
        while self.in_setup < SETUP_IN_FLIGHT {
            let Some(role) = self.plan.pop() else {
                return;
            };
            self.opened += 1;
            self.open(role);
        }
    }

    fn open(&mut self, role: Role) {
        let cfg = &self.ctx.cfg;
        let src = (cfg.sources > 0).then(|| {
            let i = self.src_ctr % cfg.sources;
            self.src_ctr = self.src_ctr.wrapping_add(1);
            Ipv4Addr::new(127, 0, 0, 1 + i as u8)
        });
        let addr = cfg.target.addr;
        let mut sock = match connect_socket(addr, src) {
            Ok(s) => s,
            Err(e) => {
                self.setup_failed(ErrKind::ConnectFailed, format!("connect to {addr}: {e}"));
                return;
            }
        };
        let idx = self.conns.len();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.poll.registry().register(&mut sock, Token(idx), interest) {
            self.setup_failed(ErrKind::Io, format!("cannot register a socket: {e}"));
            return;
        }
        let mut c = PConn {
            sock,
            st: St::Connecting,
            role,
            r: Vec::new(),
            w: Vec::new(),
            wp: 0,
            accept: [0; 28],
            dirty: false,
        };
        if self.ctx.cfg.dialect != Dialect::Tcp {
            let (key, accept) = ws_key(&mut self.ctx.rng);
            c.accept = accept;
            let t = &self.ctx.cfg.target;
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
                t.path,
                t.host,
                String::from_utf8_lossy(&key)
            );
            c.w.extend_from_slice(req.as_bytes());
        }
        self.in_setup += 1;
        self.conns.push(Some(c));
    }

    fn setup_failed(&mut self, kind: ErrKind, msg: String) {
        self.ctx.err(kind, || msg);
        self.ctx.shared.setup_failed.fetch_add(1, Ordering::Relaxed);
    }

    fn drop_conn(&mut self, idx: usize) {
        let Some(c) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        if c.st != St::Ready && self.phase == Phase::Setup {
            self.ctx.shared.setup_failed.fetch_add(1, Ordering::Relaxed);
        }
        match c.role {
            Role::Sub(t) => self.ctx.tallies_done.push(t),
            Role::Pub(_) => self.publishers.retain(|&i| i != idx),
        }
    }

    fn flush_dirty(&mut self) {
        let mut list = std::mem::take(&mut self.ctx.dirty);
        for &idx in &list {
            let Some(Some(c)) = self.conns.get_mut(idx) else {
                continue;
            };
            c.dirty = false;
            if c.st == St::Connecting {
                continue;
            }
            if let Err(e) = flush(c, &mut self.ctx.st.writes) {
                self.ctx.err(ErrKind::Io, || format!("write failed: {e}"));
                self.drop_conn(idx);
            }
        }
        list.clear();
        self.ctx.dirty = list;
    }

    fn tick(&mut self, now: u64) {
        let sh = self.ctx.shared.clone();
        // Connections that finished their setup this pass.
        if self.in_setup > 0 {
            let mut still = 0;
            for (i, c) in self.conns.iter().enumerate() {
                let Some(c) = c else { continue };
                if c.st != St::Ready {
                    still += 1;
                } else if matches!(c.role, Role::Pub(_)) && !self.publishers.contains(&i) {
                    self.publishers.push(i);
                }
            }
            self.in_setup = still;
        }
        match self.phase {
            Phase::Setup => {
                let cfg = self.ctx.cfg.clone();
                if self.ctx.id == 0 && sh.go_ns.load(Ordering::Acquire) == 0 {
                    let subs = sh.subscribed.load(Ordering::Relaxed);
                    let pubs = sh.pubs_ready.load(Ordering::Relaxed);
                    if sh.setup_failed.load(Ordering::Relaxed) > 0 || now >= SETUP_NS {
                        if now >= SETUP_NS {
                            let (n, p) = (cfg.subs, cfg.pubs);
                            self.ctx.err(ErrKind::HandshakeTimeout, || {
                                format!("setup deadline: {subs}/{n} subscribed, {pubs}/{p} publishers up")
                            });
                        }
                        sh.go_ns.store(ABORT, Ordering::Release);
                    } else if subs == cfg.subs && pubs == u64::from(cfg.pubs) {
                        sh.go_ns.store(now.max(1), Ordering::Release);
                    }
                }
                match sh.go_ns.load(Ordering::Acquire) {
                    0 => {}
                    ABORT => self.phase = Phase::Done,
                    go => {
                        self.go_ns = go;
                        self.ctx.win_start = go + (cfg.warmup * 1e9) as u64;
                        self.ctx.win_end = self.ctx.win_start + (cfg.secs * 1e9) as u64;
                        self.phase = Phase::Run;
                    }
                }
            }
            Phase::Run => {
                if now >= self.ctx.win_end {
                    self.phase = Phase::Drain;
                    self.drain_end = now + DRAIN_NS;
                }
            }
            Phase::Drain => {
                if self.ctx.id == 0 {
                    let unacked = self.publishers.iter().any(|&i| {
                        matches!(&self.conns[i], Some(PConn { role: Role::Pub(p), .. }) if p.unacked > 0)
                    });
                    let acks_wanted = self.ctx.cfg.dialect != Dialect::Binary;
                    if (self.ctx.owed() == 0 && !(acks_wanted && unacked)) || now >= self.drain_end
                    {
                        sh.stop.store(true, Ordering::Release);
                    }
                }
                if sh.stop.load(Ordering::Acquire) {
                    self.phase = Phase::Done;
                }
            }
            Phase::Done => {}
        }
    }

    /// Thread 0: sends what the rate, the ack window and the owed window allow.
    fn publish(&mut self, now: u64) {
        let cfg = self.ctx.cfg.clone();
        let mut budget = MAX_PUBLISH_BATCH;
        if cfg.rate > 0.0 {
            let due = ((now - self.go_ns) as f64 * cfg.rate / 1e9) as u64 + 1;
            budget = budget.min(due.saturating_sub(self.published_all));
        }
        let acked = cfg.dialect != Dialect::Binary;
        let mut owed = self.ctx.owed();
        let n = self.publishers.len();
        while budget > 0 && owed < cfg.owed {
            let mut progress = false;
            for k in 0..n {
                if budget == 0 || owed >= cfg.owed {
                    break;
                }
                let idx = self.publishers[(self.rr + k) % n];
                let Some(Some(c)) = self.conns.get_mut(idx) else { continue };
                let Role::Pub(p) = &mut c.role else { continue };
                if acked && p.unacked >= cfg.window {
                    continue;
                }
                let room = p.rooms[(p.sent % p.rooms.len() as u64) as usize];
                let ts = if cfg.rate > 0.0 {
                    self.go_ns + (self.published_all as f64 * 1e9 / cfg.rate) as u64
                } else {
                    now
                };
                p.sent += 1;
                if acked {
                    p.unacked += 1;
                }
                let mask = self.ctx.rng.next() as u32;
                self.templates[room as usize].push(&mut c.w, ts.max(1), p.sent, mask);
                let r = room as usize;
                self.ctx.published[r] += 1;
                self.ctx.expected += self.ctx.subs_in_room[r];
                owed += self.ctx.subs_in_room[r];
                self.published_all += 1;
                if now >= self.ctx.win_start && now < self.ctx.win_end {
                    self.published_win += 1;
                }
                budget -= 1;
                progress = true;
                if !c.dirty {
                    c.dirty = true;
                    self.ctx.dirty.push(idx);
                }
            }
            self.rr = self.rr.wrapping_add(1);
            if !progress {
                break;
            }
        }
    }

    /// Sends a close frame where the protocol has one, then drops every
    /// connection (the server's reply is not awaited).
    fn close_all(&mut self) {
        let ws = self.ctx.cfg.dialect != Dialect::Tcp;
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_mut() else { continue };
            if ws && c.st != St::Connecting && c.st != St::Handshake {
                let mask = self.ctx.rng.next() as u32;
                push_close(&mut c.w, Some(1000), mask);
                let _ = flush(c, &mut self.ctx.st.writes);
            }
        }
    }
}

/// Writes `w[wp..]` until done or WouldBlock.
fn flush(c: &mut PConn, writes: &mut u64) -> io::Result<()> {
    while c.wp < c.w.len() {
        *writes += 1;
        match c.sock.write(&c.w[c.wp..]) {
            Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => c.wp += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    c.w.clear();
    c.wp = 0;
    Ok(())
}

/// One readiness event; `Err` drops the connection.
fn on_event(
    ctx: &mut Ctx,
    c: &mut PConn,
    idx: usize,
    ev: &mio::event::Event,
    scratch: &mut [u8],
) -> Result<(), ()> {
    let addr = ctx.cfg.target.addr;
    if c.st == St::Connecting {
        if ev.is_error() || ev.is_read_closed() || ev.is_write_closed() {
            let e = match c.sock.take_error() {
                Ok(Some(e)) | Err(e) => e,
                Ok(None) => io::Error::new(ErrorKind::ConnectionRefused, "connection failed"),
            };
            let kind = if e.kind() == ErrorKind::ConnectionRefused {
                ErrKind::ConnectRefused
            } else {
                ErrKind::ConnectFailed
            };
            ctx.err(kind, || format!("connect to {addr}: {e}"));
            return Err(());
        }
        if !ev.is_writable() {
            return Ok(());
        }
        if ctx.cfg.dialect == Dialect::Tcp {
            ready(ctx, c, idx);
        } else {
            c.st = St::Handshake;
        }
        ctx.mark_dirty(c, idx);
    }
    if ev.is_writable() && c.wp < c.w.len() {
        ctx.mark_dirty(c, idx);
    }
    if !(ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
        return Ok(());
    }
    let drain_all = ev.is_read_closed() || ev.is_error();
    loop {
        ctx.st.reads += 1;
        let n = match c.sock.read(scratch) {
            Ok(0) => {
                ctx.err(ErrKind::Disconnected, || format!("{addr} closed a connection (EOF)"));
                return Err(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                ctx.err(ErrKind::Disconnected, || format!("read from {addr}: {e}"));
                return Err(());
            }
        };
        let now = ctx.now();
        let mut buf = std::mem::take(&mut c.r);
        if buf.is_empty() {
            let used = process(ctx, c, idx, &scratch[..n], now)?;
            buf.extend_from_slice(&scratch[used..n]);
        } else {
            buf.extend_from_slice(&scratch[..n]);
            let used = process(ctx, c, idx, &buf, now)?;
            buf.drain(..used);
        }
        c.r = buf;
        if n < scratch.len() && !drain_all {
            return Ok(());
        }
    }
}

/// The connection is usable: subscribers subscribe, publishers count.
fn ready(ctx: &mut Ctx, c: &mut PConn, idx: usize) {
    match &c.role {
        Role::Sub(t) => {
            let mask = ctx.rng.next() as u32;
            let name = ctx.cfg.room_name(t.room);
            push_subscribe(&mut c.w, ctx.cfg.dialect, t.room, &name, mask);
            c.st = St::Subscribing;
            ctx.mark_dirty(c, idx);
        }
        Role::Pub(_) => {
            c.st = St::Ready;
            ctx.shared.pubs_ready.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Parses what `buf` holds; returns the bytes used (a cut frame stays).
fn process(ctx: &mut Ctx, c: &mut PConn, idx: usize, buf: &[u8], now: u64) -> Result<usize, ()> {
    let addr = ctx.cfg.target.addr;
    let mut at = 0;
    if c.st == St::Handshake {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(buf) {
            Ok(httparse::Status::Partial) if buf.len() < 16 << 10 => return Ok(0),
            Ok(httparse::Status::Complete(n)) => n,
            _ => {
                let line = first_line_lossy(buf, 200);
                ctx.err(ErrKind::HandshakeInvalid, || format!("{addr}: bad response {line:?}"));
                return Err(());
            }
        };
        if resp.code != Some(101) {
            let line = first_line_lossy(buf, 200);
            ctx.err(ErrKind::HandshakeStatus, || format!("{addr}: upgrade refused: {line:?}"));
            return Err(());
        }
        let ok = resp.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("sec-websocket-accept") && h.value.trim_ascii() == c.accept
        });
        if !ok {
            ctx.err(ErrKind::HandshakeAccept, || format!("{addr}: wrong Sec-WebSocket-Accept"));
            return Err(());
        }
        at = n;
        ready(ctx, c, idx);
    }
    let dialect = ctx.cfg.dialect;
    loop {
        let (fin, op, hlen, plen) = match parse_frame(&buf[at..]) {
            FrameHead::Need(_) => return Ok(at),
            FrameHead::Bad(m) => {
                ctx.err(ErrKind::Protocol, || format!("{addr}: {m}"));
                return Err(());
            }
            FrameHead::Ok { fin, op, hlen, plen } => (fin, op, hlen, plen),
        };
        let msg = &buf[at + hlen..at + hlen + plen];
        at += hlen + plen;
        match op {
            OP_TEXT | OP_BINARY if fin => on_message(ctx, c, idx, read(dialect, op, msg), now)?,
            OP_PING => {
                let mask = ctx.rng.next() as u32;
                push_frame(&mut c.w, OP_PONG, msg, mask);
                ctx.mark_dirty(c, idx);
            }
            OP_PONG => {}
            OP_CLOSE => {
                let code = if plen >= 2 { u16::from_be_bytes([msg[0], msg[1]]) } else { 1005 };
                let reason = String::from_utf8_lossy(msg.get(2..).unwrap_or(&[])).into_owned();
                ctx.err(ErrKind::EarlyClose, || {
                    format!("{addr} closed a connection: code {code}, reason {reason:?}")
                });
                return Err(());
            }
            _ => {
                ctx.err(ErrKind::Protocol, || format!("{addr}: fragmented message (not expected)"));
                return Err(());
            }
        }
    }
}

#[inline]
fn on_message(ctx: &mut Ctx, c: &mut PConn, idx: usize, m: Incoming, now: u64) -> Result<(), ()> {
    let addr = ctx.cfg.target.addr;
    match (m, &mut c.role) {
        (Incoming::Delivery { seq, ts }, Role::Sub(t)) => {
            t.on_seq(seq);
            ctx.delivered_all += 1;
            if now >= ctx.win_start && now < ctx.win_end {
                ctx.delivered_win += 1;
                ctx.st.lat.saturating_record(micros(now.saturating_sub(ts)));
            }
        }
        (Incoming::Ack { .. }, Role::Sub(_)) if c.st == St::Subscribing => {
            c.st = St::Ready;
            ctx.shared.subscribed.fetch_add(1, Ordering::Relaxed);
        }
        (Incoming::Ack { .. }, Role::Pub(p)) => p.unacked = p.unacked.saturating_sub(1),
        (Incoming::Error { code, id }, role) => {
            let code = code.to_string();
            ctx.err(ErrKind::ServerError, || format!("{addr} refused a request: {code}"));
            match role {
                Role::Pub(p) => {
                    p.unacked = p.unacked.saturating_sub(1);
                    // Publish k (id k) went to rooms[(k - 1) % len].
                    let room = id
                        .filter(|&i| i > 0)
                        .map(|i| p.rooms[((i - 1) % p.rooms.len() as u64) as usize]);
                    match room {
                        Some(r) => ctx.unpublish(r),
                        None => ctx.publish_errors += 1,
                    }
                }
                Role::Sub(_) if c.st == St::Subscribing => return Err(()),
                Role::Sub(_) => {}
            }
        }
        (Incoming::Bad(why), _) => {
            ctx.err(ErrKind::BadPayload, || format!("{addr}: {why}"));
        }
        (Incoming::Delivery { .. }, Role::Pub(_)) => {
            ctx.err(ErrKind::BadPayload, || format!("{addr}: a delivery to a publisher"));
        }
        (Incoming::Ack { .. } | Incoming::Other, _) => {}
    }
    let _ = idx;
    Ok(())
}

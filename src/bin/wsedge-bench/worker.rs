//! One load-generating thread: a single-threaded, edge-triggered mio loop
//! that opens its share of the connections, dispatches readiness events to
//! the connection handlers, flushes what they queued once per pass, and walks
//! the run's phases (establish, run or hold, close) on a 1 ms tick.

use std::io::{self, ErrorKind};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::client::{
    bucket, flush, on_event, on_io_error, start_close, Act, Conn, Ctx, St, BIG_CHUNK,
    ECHO_FIRST_TIMEOUT_NS, HANDSHAKE_TIMEOUT_NS, SMALL_CHUNK,
};
use crate::config::{Config, Mode};
use crate::driver::{Plan, Shared};
use crate::net::connect_socket;
use crate::recv::fail_body;
use crate::stats::{ErrKind, Stats};
use crate::sys::thread_cpu_secs;
use crate::wire::{ws_key, Rng, OP_BINARY, OP_TEXT};
use crate::{NS_PER_MS, NS_PER_SEC};

/// Time for echo runs to get every connection up.
const ECHO_ESTABLISH_NS: u64 = 20 * NS_PER_SEC;
/// Time for idle runs to get every connection up.
const IDLE_ESTABLISH_NS: u64 = 60 * NS_PER_SEC;
/// Same with --echo-first (every connection echoes a message first).
const ECHO_FIRST_ESTABLISH_NS: u64 = 300 * NS_PER_SEC;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Establish,
    Run,
    Hold,
    Close,
    Done,
}

/// One load thread: its poll, its connections and where its run stands.
pub struct Worker {
    poll: Poll,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    ctx: Ctx,
    plan: Plan,
    shared: Arc<Shared>,
    phase: Phase,
    started: u64,
    src_ctr: u32,
    est_deadline: u64,
    close_deadline: u64,
    next_tick: u64,
    next_scan: u64,
    scratch: Vec<usize>,
}

impl Worker {
    /// A worker for its `plan` share of `cfg`; times count from `start`.
    pub fn new(
        cfg: Arc<Config>,
        plan: Plan,
        shared: Arc<Shared>,
        start: Instant,
    ) -> Result<Worker, String> {
        let poll = Poll::new().map_err(|e| format!("cannot create poll: {e}"))?;
        let ws = cfg.is_ws();
        let data_op = if cfg.binary { OP_BINARY } else { OP_TEXT };
        let template = if matches!(cfg.mode, Mode::Echo | Mode::TcpEcho) {
            vec![b'x'; cfg.size]
        } else if cfg.echo_first > 0 {
            vec![b'x'; cfg.echo_first]
        } else {
            Vec::new()
        };
        let small_bufs = matches!(cfg.mode, Mode::Connect | Mode::Idle);
        let read_chunk = if small_bufs { SMALL_CHUNK } else { BIG_CHUNK };
        let close_wait_ns = match cfg.mode {
            Mode::Idle => 2 * NS_PER_SEC,
            _ => NS_PER_SEC,
        };
        let est_deadline = match cfg.mode {
            Mode::Echo | Mode::TcpEcho => ECHO_ESTABLISH_NS,
            Mode::Connect => (cfg.secs * 1e9) as u64,
            Mode::Idle if cfg.echo_first > 0 => ECHO_FIRST_ESTABLISH_NS,
            Mode::Idle => IDLE_ESTABLISH_NS,
        };
        let ctx = Ctx {
            rng: Rng::seeded(plan.id as u64 + 1),
            st: Stats::new()?,
            dirty: Vec::with_capacity(1024),
            pool: Vec::new(),
            template,
            data_op,
            ws,
            small_bufs,
            read_chunk,
            sending: true,
            closing_all: false,
            close_wait_ns,
            win_start: u64::MAX,
            win_end: u64::MAX,
            n: [0; 3],
            resolved: 0,
            start,
            cfg,
        };
        Ok(Worker {
            poll,
            conns: Vec::new(),
            free: Vec::new(),
            ctx,
            plan,
            shared,
            phase: Phase::Establish,
            started: 0,
            src_ctr: plan.id as u32,
            est_deadline,
            close_deadline: u64::MAX,
            next_tick: 0,
            next_scan: 0,
            scratch: Vec::new(),
        })
    }

    /// Runs to the end of the run; its statistics.
    pub fn run(mut self) -> Result<Stats, String> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = self.ctx.now();
            self.open_attempts(now);
            self.flush_dirty();
            let timeout = Duration::from_millis(if self.phase == Phase::Done { 0 } else { 5 });
            self.ctx.st.polls += 1;
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll failed: {e}"));
            }
            for ev in events.iter() {
                let idx = ev.token().0;
                let act = match self.conns.get_mut(idx) {
                    Some(Some(c)) => on_event(&mut self.ctx, c, idx, ev),
                    _ => continue,
                };
                if act == Act::Drop {
                    self.drop_conn(idx);
                }
            }
            self.flush_dirty();
            let now = self.ctx.now();
            if now >= self.next_tick {
                self.next_tick = now + NS_PER_MS;
                self.tick(now);
                if self.phase == Phase::Done {
                    break;
                }
            }
        }
        self.publish();
        let wall = self.ctx.now() as f64 / 1e9;
        let cpu = thread_cpu_secs();
        self.ctx.st.cpu_s = cpu;
        self.ctx.st.busy_max = if wall > 0.0 { cpu / wall } else { 0.0 };
        let p = &self.shared.pubs[self.plan.id];
        p.done.store(true, Ordering::Release);
        Ok(self.ctx.st)
    }

    fn publish(&self) {
        let p = &self.shared.pubs[self.plan.id];
        let prog = match self.ctx.cfg.mode {
            Mode::Echo | Mode::TcpEcho => self.ctx.st.recv_all,
            Mode::Connect | Mode::Idle => self.ctx.st.handshakes,
        };
        p.progress.store(prog, Ordering::Relaxed);
        p.open.store(self.ctx.n[1], Ordering::Relaxed);
        p.errors.store(self.ctx.st.errors(), Ordering::Relaxed);
        p.established.store(self.ctx.st.handshakes, Ordering::Relaxed);
    }

    fn open_attempts(&mut self, now: u64) {
        if self.phase != Phase::Establish || now >= self.est_deadline {
            return;
        }
        while self.ctx.n[0] < self.plan.concurrency && self.started < self.plan.conns {
            if self.plan.rate > 0.0 {
                let allowed = (self.plan.rate * now as f64 / 1e9) as u64 + 1;
                if self.started >= allowed {
                    break;
                }
            }
            self.started += 1;
            self.open_conn(now);
        }
    }

    fn open_conn(&mut self, now: u64) {
        let cfg = &self.ctx.cfg;
        let dst = cfg.target.addr;
        let src = if cfg.sources > 0 {
            let i = self.src_ctr % cfg.sources;
            self.src_ctr = self.src_ctr.wrapping_add(1);
            Some(Ipv4Addr::new(127, 0, 0, 1 + i as u8))
        } else {
            None
        };
        let mut sock = match connect_socket(dst, src) {
            Ok(s) => s,
            Err(e) => {
                let e = match src {
                    Some(ip) if e.kind() == ErrorKind::AddrNotAvailable => io::Error::new(
                        e.kind(),
                        format!("{e} (source {ip}: ephemeral ports exhausted? raise --sources)"),
                    ),
                    _ => e,
                };
                self.ctx.connect_error(&e);
                self.ctx.resolved += 1;
                self.ctx.st.failed += 1;
                self.ctx.st.last_resolved_ns = now;
                return;
            }
        };
        let tls = match &cfg.tls {
            Some(t) => match crate::tls::connect(&t.client, &cfg.target.name) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.ctx.err(ErrKind::HandshakeInvalid, || e);
                    self.ctx.resolved += 1;
                    self.ctx.st.failed += 1;
                    return;
                }
            },
            None => None,
        };
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        if let Err(e) = self.poll.registry().register(
            &mut sock,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.ctx.err(ErrKind::Io, || format!("cannot register socket: {e}"));
            self.free.push(idx);
            self.ctx.resolved += 1;
            self.ctx.st.failed += 1;
            return;
        }
        let (key, accept) =
            if self.ctx.ws { ws_key(&mut self.ctx.rng) } else { ([0; 24], [0; 28]) };
        let (r, w) = if self.ctx.small_bufs {
            (Vec::new(), Vec::new())
        } else {
            let chunk = self.ctx.read_chunk;
            let frame = self.ctx.cfg.size + 14;
            let r = vec![0; (2 * chunk).max(2 * frame)];
            let w = Vec::with_capacity(frame * self.ctx.cfg.inflight as usize + 4096);
            (r, w)
        };
        let c = Conn {
            sock,
            tls,
            st: St::Connecting,
            r,
            rs: 0,
            re: 0,
            need: 0,
            w,
            wp: 0,
            frag: Vec::new(),
            frag_op: 0,
            key,
            accept,
            t0: now,
            deadline: now + HANDSHAKE_TIMEOUT_NS,
            inflight: 0,
            dirty: false,
            fail_status: String::new(),
            body_need: 0,
        };
        self.ctx.n[0] += 1;
        self.conns[idx] = Some(c);
    }

    fn drop_conn(&mut self, idx: usize) {
        let Some(slot) = self.conns.get_mut(idx) else {
            return;
        };
        let Some(mut c) = slot.take() else {
            return;
        };
        if c.wp < c.w.len() {
            // Best effort: a final close frame or pong.
            let _ = flush(&mut c, &mut self.ctx.st.writes);
        }
        let b = bucket(c.st);
        self.ctx.n[b] = self.ctx.n[b].saturating_sub(1);
        if b == 0 {
            self.ctx.resolved += 1;
            self.ctx.st.failed += 1;
            self.ctx.st.last_resolved_ns = self.ctx.now();
        }
        let Conn { r, w, .. } = c;
        self.ctx.give_buf(r);
        self.ctx.give_buf(w);
        self.free.push(idx);
    }

    fn flush_dirty(&mut self) {
        if self.ctx.dirty.is_empty() {
            return;
        }
        let mut list = std::mem::take(&mut self.ctx.dirty);
        for &idx in &list {
            let res = match self.conns.get_mut(idx) {
                Some(Some(c)) => {
                    c.dirty = false;
                    let r = flush(c, &mut self.ctx.st.writes);
                    if r.is_ok() && self.ctx.small_bufs && c.w.is_empty() && c.w.capacity() > 0 {
                        let w = std::mem::take(&mut c.w);
                        self.ctx.give_buf(w);
                    }
                    r
                }
                _ => continue,
            };
            if let Err(e) = res {
                if let Some(Some(c)) = self.conns.get_mut(idx) {
                    let _ = on_io_error(&mut self.ctx, c, &e);
                }
                self.drop_conn(idx);
            }
        }
        list.clear();
        self.ctx.dirty = list;
    }

    fn tick(&mut self, now: u64) {
        match self.phase {
            Phase::Establish => {
                let all = self.ctx.resolved >= self.plan.conns;
                if all || now >= self.est_deadline {
                    self.end_establish(now);
                }
            }
            Phase::Run => {
                if now >= self.ctx.win_end || self.ctx.n[1] == 0 {
                    let end = now.min(self.ctx.win_end);
                    self.ctx.st.win_secs = end.saturating_sub(self.ctx.win_start) as f64 / 1e9;
                    self.begin_close(now);
                }
            }
            Phase::Hold => {
                let he = self.shared.hold_end_ns.load(Ordering::Acquire);
                if he != 0 && now >= he {
                    self.begin_close(now);
                }
            }
            Phase::Close => {
                if self.ctx.n.iter().sum::<u64>() == 0 {
                    self.phase = Phase::Done;
                } else if now >= self.close_deadline {
                    self.scan_timeouts(u64::MAX);
                    self.drop_all();
                    self.phase = Phase::Done;
                }
            }
            Phase::Done => {}
        }
        if self.ctx.n[0] + self.ctx.n[2] > 0 && now >= self.next_scan {
            self.next_scan = now + 50 * NS_PER_MS;
            self.scan_timeouts(now);
        }
        self.publish();
    }

    fn end_establish(&mut self, now: u64) {
        // Attempts still pending at the establishment deadline time out.
        let pending = self.ctx.n[0];
        if pending > 0 {
            let addr = self.ctx.cfg.target.addr;
            let secs = self.est_deadline / NS_PER_SEC;
            let mode = self.ctx.cfg.mode;
            for i in 0..self.conns.len() {
                if let Some(c) = &self.conns[i] {
                    if bucket(c.st) == 0 {
                        if mode == Mode::Connect {
                            self.ctx.st.incomplete += 1;
                            self.ctx.resolved += 1;
                            self.ctx.n[0] = self.ctx.n[0].saturating_sub(1);
                            self.conns[i] = None;
                            self.free.push(i);
                        } else {
                            self.ctx.err(ErrKind::HandshakeTimeout, || {
                                format!("{addr}: not established within the {secs} s deadline")
                            });
                            self.drop_conn(i);
                        }
                    }
                }
            }
        }
        if self.ctx.cfg.mode == Mode::Connect {
            self.ctx.st.incomplete += self.plan.conns.saturating_sub(self.started);
        }
        self.ctx.st.ready_ns = now;
        let p = &self.shared.pubs[self.plan.id];
        p.established.store(self.ctx.st.handshakes, Ordering::Relaxed);
        p.ready.store(true, Ordering::Release);
        match self.ctx.cfg.mode {
            Mode::Echo | Mode::TcpEcho => {
                if self.ctx.n[1] == 0 {
                    self.begin_close(now);
                } else {
                    let cfg = &self.ctx.cfg;
                    self.ctx.win_start = now + (cfg.warmup * 1e9) as u64;
                    self.ctx.win_end = self.ctx.win_start + (cfg.secs * 1e9) as u64;
                    self.phase = Phase::Run;
                }
            }
            Mode::Connect => {
                self.phase = Phase::Close;
                self.close_deadline = now + self.ctx.close_wait_ns + 100 * NS_PER_MS;
            }
            Mode::Idle => self.phase = Phase::Hold,
        }
    }

    fn begin_close(&mut self, now: u64) {
        self.ctx.sending = false;
        self.ctx.closing_all = true;
        self.close_deadline = now + self.ctx.close_wait_ns;
        self.phase = Phase::Close;
        let ws = self.ctx.ws;
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_mut() else {
                continue;
            };
            match c.st {
                St::Open if ws => start_close(&mut self.ctx, c, idx, now),
                St::Closing | St::AwaitEof => {}
                _ => self.scratch.push(idx),
            }
        }
        self.drop_scratch();
        self.flush_dirty();
    }

    /// Drops the connections listed in `scratch` and empties it.
    fn drop_scratch(&mut self) {
        let list = std::mem::take(&mut self.scratch);
        for &idx in &list {
            self.drop_conn(idx);
        }
        self.scratch = list;
        self.scratch.clear();
    }

    fn drop_all(&mut self) {
        for idx in 0..self.conns.len() {
            if self.conns[idx].is_some() {
                self.drop_conn(idx);
            }
        }
    }

    fn scan_timeouts(&mut self, now: u64) {
        let addr = self.ctx.cfg.target.addr;
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_mut() else {
                continue;
            };
            if c.deadline == 0 || now < c.deadline {
                continue;
            }
            match c.st {
                St::Connecting | St::Handshake | St::EchoFirst => {
                    let what = match c.st {
                        St::Connecting => "TCP connect",
                        St::Handshake => "handshake response",
                        _ => "echo of the first message",
                    };
                    let secs = if c.st == St::EchoFirst {
                        ECHO_FIRST_TIMEOUT_NS / NS_PER_SEC
                    } else {
                        HANDSHAKE_TIMEOUT_NS / NS_PER_SEC
                    };
                    self.ctx.err(ErrKind::HandshakeTimeout, || {
                        format!("{addr}: no {what} within {secs} s")
                    });
                }
                St::HsFailBody => {
                    fail_body(&mut self.ctx, c, now, true);
                }
                St::Closing => self.ctx.err(ErrKind::CloseTimeout, || {
                    format!("{addr}: no close reply within the close wait")
                }),
                St::Open | St::AwaitEof => {}
            }
            self.scratch.push(idx);
        }
        self.drop_scratch();
    }
}

//! One connection's state machine, sans-IO: bytes and the current tick go in;
//! output goes into the worker's [`Cork`], and the connection reports its next
//! deadline and whether it wants to read, write or be dropped.
//!
//! Phases: `Handshake` (collecting the HTTP upgrade request) -> `Open`
//! (tungstenite drives frames) -> `Closing` (we sent a close frame and wait for
//! the reply) -> `Linger` (output flushes, then the write side shuts down and
//! input is discarded until EOF) -> `Closed` (the worker drops the socket).
//!
//! Memory: an idle open connection holds no tungstenite state and no buffers.
//! The connection only ever hands tungstenite *whole* frames, one at a time
//! (it scans frame headers itself and keeps a partial frame in its own
//! `inbuf`), so after a burst tungstenite's buffers are empty and the context
//! can be returned to the worker's pool, unless a fragmented message is half
//! received.
//!
//! Speed: the one frame shape that dominates real traffic (a whole, final,
//! unfragmented, masked text or binary frame under 1 KiB, while open and not
//! inside a fragmented message) takes a fast path that unmasks the payload straight
//! into its destination, checks UTF-8, and applies the same rate limits,
//! counters and queue policy. Everything else (control frames, fragments,
//! the close handshake, and every error, including invalid UTF-8, which the
//! fast path hands back) is decoded by tungstenite. The profile that led to
//! this is in BENCHMARKS.md: without it, tungstenite's per-frame decoding was
//! the largest user-space cost of a pipelined echo.
//!
//! This module must not touch sockets, `mio` or the clock.
//!
//! Files: this one holds the state machine ([`Conn`]: phases, timers, the
//! close handshake, tungstenite decoding, rate limits, the write-queue
//! policy); `settings.rs` the per-worker [`Settings`]; `host.rs` the
//! [`Host`]/[`Env`] a worker lends and the context pool; `driver.rs` the
//! end of a turn ([`Host::end_turn`]: cork, queue, backpressure, TLS
//! records, half-close, next deadline), the one way every caller (worker,
//! tests, fuzzers, benches) drives a connection's output; `accept.rs` the
//! decisions on the HTTP request (route, Origin, auth, publish body);
//! `frames.rs` frame scanning and the fast path; `tests.rs` the sans-IO tests.

mod accept;
mod close;
mod compress;
mod driver;
mod frames;
mod host;
mod settings;

pub use accept::HttpRoute;
pub use close::{CloseCause, CloseRow};
pub use driver::{EndTurn, Transport, TurnResult};
pub use host::{CtxPool, Env, Host};
pub use settings::Settings;

use bytes::Bytes;
use tungstenite::error::Error as WsError;
use tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::{Message, WebSocketContext};

use crate::config::SlowConsumerPolicy;
use crate::outbox::Outbox;
use crate::pubsub::protocol::{self as proto, ErrorCode, HttpPublish, ProtoError};
use crate::ratelimit::TokenBucket;
use crate::stream::MemStream;

/// A deadline that never comes.
pub const NEVER: u64 = u64::MAX;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Collecting the upgrade request.
    Handshake,
    /// Upgraded; messages flow.
    Open,
    /// We sent a close frame and wait for the reply.
    Closing,
    /// Flushing the last bytes, then half-closing and discarding input.
    Linger,
    /// Done: the worker drops the socket.
    Closed,
}

/// A [`Phase`] with the state that means something only in that phase.
#[derive(Clone, Copy, Debug)]
enum State {
    /// Collecting the upgrade request until `deadline` (tick).
    Handshake { deadline: u64 },
    /// Upgraded; messages flow (deadlines come from the activity ticks).
    /// `last_ping` is the tick of the last ping sent (or of the upgrade):
    /// only this phase sends pings.
    Open { last_ping: u64 },
    /// Our close frame is out; the reply is due by `deadline` (tick).
    Closing { deadline: u64 },
    /// Flushing, then half-closing and discarding input.
    Linger(Linger),
    /// Done.
    Closed,
}

/// What only the `Linger` phase tracks.
#[derive(Clone, Copy, Debug)]
struct Linger {
    /// Tick at which the connection is dropped whatever is left.
    deadline: u64,
    /// A plain HTTP request waits for the worker's answer.
    awaiting_app: bool,
    /// The write side is shut down.
    shutdown_sent: bool,
    /// Drop the socket once the output is flushed (no half-close + drain).
    close_when_flushed: bool,
}

/// What a connection serves once upgraded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Echo every data message back.
    Echo,
    /// The pub/sub application protocol (messages go to the worker).
    PubSub,
    /// The node dashboard's live feed (`/dashboard/ws`): the worker sends a
    /// snapshot a second; what the browser sends is ignored.
    Dashboard,
}

/// What a connection hands its worker to act on after its turn.
#[derive(Debug)]
pub enum AppEvent {
    /// The upgrade completed on this route.
    Opened(Route),
    /// A whole message on the pub/sub route.
    Message(OpData, Bytes),
    /// A valid `POST` to the publish API (already answered `202`).
    HttpPublish(HttpPublish),
    /// A plain HTTP request the worker answers (the connection waits for
    /// [`Conn::respond`]).
    Http(HttpRoute),
}

/// One connection's protocol state. See the module docs.
///
/// Flags that mean something in one phase live in that phase's [`State`];
/// the booleans left here span phases: the frame scanner's (`passthrough`,
/// `in_fragment`, `large_frame`) and `read_paused` hold through `Open` and
/// `Closing`, `admin_only` for the whole life.
pub struct Conn {
    state: State,
    route: Option<Route>,
    /// Handshake bytes, or the partial frame after the last whole one.
    inbuf: Vec<u8>,
    ctx: Option<Box<WebSocketContext>>,
    /// Set once a frame header looked invalid: from then on every byte goes
    /// to tungstenite as it arrives, so it reports the exact error.
    passthrough: bool,
    /// The frame scanner is inside a fragmented message.
    in_fragment: bool,
    /// The current context decoded a frame larger than its read buffer.
    large_frame: bool,
    /// Bytes the kernel has not taken yet ([`Conn::write_queued`]).
    outbox: Outbox,
    read_paused: bool,
    close_reason: Option<CloseCause>,
    last_recv: u64,
    last_msg: u64,
    last_write_progress: u64,
    /// When the outstanding ping was sent (ms), 0 when none is.
    ping_sent_ms: u64,
    /// Accepted on the admin listener: only the plain HTTP routes.
    admin_only: bool,
    /// Who the client authenticated as (set at the upgrade).
    identity: Option<crate::auth::Identity>,
    msg_bucket: TokenBucket,
    byte_bucket: TokenBucket,
    violations: u32,
    /// permessage-deflate, when agreed at the upgrade.
    pmd: Option<Box<compress::Pmd>>,
}

impl Conn {
    /// A freshly accepted connection at tick `now`.
    pub fn new(now: u64, settings: &Settings) -> Conn {
        Conn::accepted(now, settings, false)
    }

    /// A freshly accepted connection; `admin_only` for the metrics listener.
    pub fn accepted(now: u64, settings: &Settings, admin_only: bool) -> Conn {
        Conn {
            state: State::Handshake { deadline: now + settings.handshake_ticks },
            route: None,
            inbuf: Vec::new(),
            ctx: None,
            passthrough: false,
            in_fragment: false,
            large_frame: false,
            outbox: Outbox::default(),
            read_paused: false,
            close_reason: None,
            last_recv: now,
            last_msg: now,
            last_write_progress: now,
            ping_sent_ms: 0,
            admin_only,
            identity: None,
            msg_bucket: TokenBucket::new(settings.msg_rate.0, settings.msg_rate.1, 0),
            byte_bucket: TokenBucket::new(settings.byte_rate.0, settings.byte_rate.1, 0),
            violations: 0,
            pmd: None,
        }
    }

    /// Accepted on the metrics listener (plain HTTP routes only).
    pub fn is_admin_only(&self) -> bool {
        self.admin_only
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Handshake { .. } => Phase::Handshake,
            State::Open { .. } => Phase::Open,
            State::Closing { .. } => Phase::Closing,
            State::Linger(_) => Phase::Linger,
            State::Closed => Phase::Closed,
        }
    }

    /// Why the connection ended (or is ending), once known.
    pub fn close_reason(&self) -> Option<CloseCause> {
        self.close_reason
    }

    /// True once the worker should drop the socket.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// True while the worker should read from the socket.
    pub fn wants_read(&self) -> bool {
        !matches!(self.state, State::Closed) && !self.read_paused
    }

    /// True when the write side should be shut down now (everything flushed
    /// in `Linger`). The driver ([`Host::end_turn`]) then calls
    /// [`Conn::shutdown_done`].
    pub(crate) fn wants_shutdown(&self) -> bool {
        match self.state {
            State::Linger(l) => !l.shutdown_sent && !l.awaiting_app && self.outbox.is_empty(),
            _ => false,
        }
    }

    /// The worker's answer to an [`AppEvent::Http`] request.
    pub fn respond(&mut self, response: Bytes) {
        if let State::Linger(l) = &mut self.state {
            if l.awaiting_app {
                l.awaiting_app = false;
                self.outbox.push(response);
            }
        }
    }

    /// The write side is being shut down (or, when nothing more can come
    /// from the peer, the socket is about to be closed).
    pub(crate) fn shutdown_done(&mut self) {
        if let State::Linger(l) = &mut self.state {
            l.shutdown_sent = true;
            if l.close_when_flushed {
                self.state = State::Closed;
            }
        }
    }

    /// True when the socket can be closed outright once flushed (the peer
    /// already finished its side of the close handshake).
    pub(crate) fn close_when_flushed(&self) -> bool {
        matches!(self.state, State::Linger(Linger { close_when_flushed: true, .. }))
    }

    /// True when output waits in the connection's write queue.
    #[inline]
    pub fn has_queued(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Bytes in the connection's write queue.
    #[inline]
    pub fn queued_bytes(&self) -> usize {
        self.outbox.len()
    }

    /// Writes the queue to `w` until it is empty or `w` would block; returns
    /// the bytes written (report them with [`Conn::handle_written`]).
    /// `WouldBlock` is not an error here: it ends the write.
    #[inline]
    pub(crate) fn write_queued<W: std::io::Write + ?Sized>(
        &mut self,
        w: &mut W,
    ) -> std::io::Result<usize> {
        self.outbox.write_to(w)
    }

    /// Puts what `cork` holds after its first `skip` bytes at the end of the
    /// write queue (what the socket did not take this turn).
    #[inline]
    pub(crate) fn queue_cork(&mut self, cork: &crate::outbox::Cork, skip: usize) {
        cork.spill_into(skip, &mut self.outbox);
    }

    /// Bytes retained by this connection beyond its own struct (buffers and
    /// tungstenite state), for memory accounting.
    pub fn retained_bytes(&self) -> usize {
        self.inbuf.capacity()
            + self.outbox.len()
            + self.ctx.as_ref().map_or(0, |_| std::mem::size_of::<WebSocketContext>())
            + self.pmd.as_ref().map_or(0, |p| p.retained_bytes())
    }

    /// Handles bytes read from the socket.
    pub fn handle_input(&mut self, data: &[u8], env: &mut Env) {
        if data.is_empty() {
            return;
        }
        self.last_recv = env.now;
        match self.state {
            State::Handshake { .. } => self.handshake_input(data, env),
            State::Open { .. } | State::Closing { .. } => self.ws_input(data, env),
            State::Linger(_) | State::Closed => {}
        }
    }

    /// The peer closed its side (read returned 0).
    pub fn handle_eof(&mut self) {
        match self.state {
            State::Handshake { .. } | State::Open { .. } | State::Closing { .. } => {
                self.set_closed(CloseCause::ClientVanished)
            }
            State::Linger(_) | State::Closed => self.state = State::Closed,
        }
    }

    /// The socket failed.
    pub fn handle_io_error(&mut self) {
        if self.close_reason.is_none() {
            self.close_reason = Some(CloseCause::IoError);
        }
        self.state = State::Closed;
    }

    /// `written` bytes of the outbox (or cork) reached the kernel.
    pub(crate) fn handle_written(&mut self, written: usize, now: u64, settings: &Settings) -> bool {
        if written > 0 {
            self.last_write_progress = now;
        }
        // Resume reading once the queue is below half the high-water mark.
        if self.read_paused && self.outbox.len() <= settings.high_water_bytes / 2 {
            self.read_paused = false;
            return true;
        }
        false
    }

    /// After the driver wrote what it could: pause reading above high water.
    pub(crate) fn update_backpressure(&mut self, settings: &Settings) {
        if self.outbox.len() > settings.high_water_bytes {
            self.read_paused = true;
        }
    }

    /// The next tick at which [`Conn::handle_timer`] has work to do.
    pub fn deadline(&self, s: &Settings) -> u64 {
        match self.state {
            State::Handshake { deadline }
            | State::Closing { deadline }
            | State::Linger(Linger { deadline, .. }) => deadline,
            State::Open { last_ping } => {
                let mut d = (self.last_recv + s.dead_ticks)
                    .min(self.last_recv.max(last_ping) + s.ping_ticks);
                if let Some(idle) = s.idle_ticks {
                    d = d.min(self.last_msg + idle);
                }
                if !self.outbox.is_empty() {
                    d = d.min(self.last_write_progress + s.stall_ticks);
                }
                d
            }
            State::Closed => NEVER,
        }
    }

    /// The timer fired: enforce deadlines, send a ping when due.
    pub fn handle_timer(&mut self, env: &mut Env) {
        let now = env.now;
        let s = env.settings;
        match self.state {
            State::Handshake { deadline } => {
                if now >= deadline {
                    self.set_closed(CloseCause::HandshakeTimeout);
                }
            }
            State::Open { last_ping } => {
                if now >= self.last_recv + s.dead_ticks {
                    self.fail(CloseCause::Timeout, env);
                } else if !self.outbox.is_empty() && now >= self.last_write_progress + s.stall_ticks
                {
                    // The client stopped reading: nothing we queue can reach
                    // it, a close frame included.
                    self.outbox.discard_unstarted();
                    self.set_closed(CloseCause::SlowConsumer);
                } else if s.idle_ticks.is_some_and(|idle| now >= self.last_msg + idle) {
                    self.start_close(CloseCause::IdleTimeout, env);
                } else if now >= self.last_recv.max(last_ping) + s.ping_ticks {
                    self.state = State::Open { last_ping: now };
                    self.ping_sent_ms = env.now_ms.max(1);
                    self.with_ctx(env, |ctx, io| ctx.write(io, Message::Ping(Bytes::new())));
                }
            }
            State::Closing { deadline } | State::Linger(Linger { deadline, .. }) => {
                if now >= deadline {
                    self.state = State::Closed;
                }
            }
            State::Closed => {}
        }
    }

    /// Starts the close handshake from the server side (shutdown, idle
    /// timeout): sends the close frame of `why` (see [`CloseCause::row`])
    /// and waits for the reply.
    pub fn start_close(&mut self, why: CloseCause, env: &mut Env) {
        match self.state {
            State::Open { .. } => {
                self.close_reason.get_or_insert(why);
                self.send_close(why, env);
                self.state = State::Closing { deadline: env.now + env.settings.close_ticks };
            }
            State::Handshake { .. } => self.set_closed(why),
            _ => {}
        }
    }

    fn set_closed(&mut self, why: CloseCause) {
        self.close_reason.get_or_insert(why);
        self.state = State::Closed;
    }

    /// Enters `Linger`: flush, half-close, discard input until EOF or
    /// deadline. Returns the new phase's flags for the caller to set.
    fn linger(&mut self, why: CloseCause, env: &Env) -> &mut Linger {
        self.close_reason.get_or_insert(why);
        self.read_paused = false;
        self.inbuf = Vec::new();
        // The context may hold a half-read frame; it is not reusable.
        self.ctx = None;
        self.state = State::Linger(Linger {
            deadline: env.now + env.settings.close_ticks,
            awaiting_app: false,
            shutdown_sent: false,
            close_when_flushed: false,
        });
        match &mut self.state {
            State::Linger(l) => l,
            _ => unreachable!("the state was just set to Linger"),
        }
    }

    /// _Fail the WebSocket Connection_: send the close frame of `why` and
    /// stop, without waiting for the reply (RFC 6455 section 7.1.7).
    fn fail(&mut self, why: CloseCause, env: &mut Env) {
        self.send_close(why, env);
        self.linger(why, env);
    }

    /// Sends the close frame the table gives `why` (an empty close frame if
    /// it gives none).
    fn send_close(&mut self, why: CloseCause, env: &mut Env) {
        let frame = why.close_frame();
        self.with_ctx(env, |ctx, io| ctx.close(io, frame));
    }

    /// Runs `f` with the connection's tungstenite context (borrowing one from
    /// the pool if idle) over an empty input. Errors here mean the context is
    /// already closed; the phase logic has handled that.
    fn with_ctx(
        &mut self,
        env: &mut Env,
        f: impl FnOnce(&mut WebSocketContext, &mut MemStream) -> tungstenite::Result<()>,
    ) {
        let mut ctx = match self.ctx.take() {
            Some(ctx) => ctx,
            None => env.pool.take(&env.settings.ws_config),
        };
        let mut io = MemStream::new(&[], env.cork);
        let _ = f(&mut ctx, &mut io);
        if matches!(self.state, State::Open { .. })
            && ctx.can_write()
            && !self.in_fragment
            && !self.passthrough
        {
            env.pool.give(ctx);
        } else {
            self.ctx = Some(ctx);
        }
    }

    /// Hands frames (or, in passthrough, raw bytes) to tungstenite and acts
    /// on every message. Returns the bytes tungstenite took.
    fn feed_ctx(&mut self, input: &[u8], env: &mut Env) -> usize {
        let mut ctx = match self.ctx.take() {
            Some(ctx) => ctx,
            None => env.pool.take(&env.settings.ws_config),
        };
        let mut pos: usize = 0;
        loop {
            let mut io = MemStream::new(&input[pos..], env.cork);
            let result = ctx.read(&mut io);
            pos += io.consumed();
            match result {
                Ok(msg) => {
                    // The context goes back while the message is handled, so
                    // a close started from there (slow consumer, rate limit)
                    // is sent by this same context and its state is kept.
                    self.ctx = Some(ctx);
                    self.on_message(msg, env);
                    ctx = match self.ctx.take() {
                        Some(ctx) => ctx,
                        None => return pos, // failed: the connection lingers
                    };
                }
                Err(WsError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(WsError::ConnectionClosed) | Err(WsError::AlreadyClosed) => {
                    // Close handshake complete: the server closes TCP first,
                    // as soon as its close frame is flushed. The client sent
                    // its close, so nothing more is coming: no need to wait
                    // for its EOF.
                    self.linger(CloseCause::ClientClose, env).close_when_flushed = true;
                    return pos;
                }
                Err(e) => {
                    self.ctx = Some(ctx);
                    self.fail(CloseCause::from(&e), env);
                    return pos;
                }
            }
            if matches!(self.state, State::Closed | State::Linger(_)) {
                return pos;
            }
        }
        let idle = matches!(self.state, State::Open { .. }) && ctx.can_write() && !self.in_fragment;
        if idle && !self.passthrough {
            if !std::mem::take(&mut self.large_frame) {
                env.pool.give(ctx);
            }
        } else {
            self.ctx = Some(ctx);
        }
        pos
    }

    fn on_message(&mut self, msg: Message, env: &mut Env) {
        match msg {
            Message::Text(text) => {
                self.count_in(text.len(), env);
                if self.within_rate(text.len(), true, env) {
                    self.deliver(OpData::Text, Bytes::from(text), env);
                }
            }
            Message::Binary(data) => {
                self.count_in(data.len(), env);
                if self.within_rate(data.len(), true, env) {
                    self.deliver(OpData::Binary, data, env);
                }
            }
            Message::Close(_) => {
                // tungstenite queued the reply; the next read flushes it and
                // reports ConnectionClosed.
                if matches!(self.state, State::Closing { .. }) {
                    self.close_reason.get_or_insert(CloseCause::ClientClose);
                } else {
                    self.close_reason = Some(CloseCause::ClientClose);
                }
            }
            Message::Pong(_) => {
                if self.ping_sent_ms != 0 {
                    let rtt = env.now_ms.saturating_sub(self.ping_sent_ms);
                    env.stats.observe_ping_rtt(rtt);
                    self.ping_sent_ms = 0;
                }
            }
            Message::Ping(data) => {
                // Pings count against the message rate: a ping flood is a flood.
                self.within_rate(data.len(), false, env);
            }
            Message::Frame(_) => {}
        }
    }

    /// Takes `len` bytes and one message from the connection's buckets.
    /// Over the limit: the message is dropped (a pub/sub client is told
    /// `rate_limited`), and with action `close` the connection is closed
    /// with 1008 after `max_violations` drops.
    #[inline]
    fn within_rate(&mut self, len: usize, data: bool, env: &mut Env) -> bool {
        if self.take_tokens(len, env) {
            return true;
        }
        self.rate_violation(data, env);
        false
    }

    /// Takes one message and `len` bytes from the buckets; false when over.
    #[inline]
    fn take_tokens(&mut self, len: usize, env: &Env) -> bool {
        let s = env.settings;
        let now = env.now_ms;
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        self.msg_bucket.try_take(1, now, s.msg_rate.0, s.msg_rate.1)
            && self.byte_bucket.try_take(len, now, s.byte_rate.0, s.byte_rate.1)
    }

    /// A message over the rate limit was dropped: count it, tell a pub/sub
    /// client, and close once there were too many.
    fn rate_violation(&mut self, data: bool, env: &mut Env) {
        let s = env.settings;
        self.violations += 1;
        env.stats.rate_limited += 1;
        if s.max_violations.is_some_and(|max| self.violations >= max) {
            self.fail(CloseCause::RateLimited, env);
            return;
        }
        if data && self.route == Some(Route::PubSub) {
            let e = ProtoError::new(None, ErrorCode::RateLimited, "over the rate limit; dropped");
            let frame = proto::error(&e);
            if self.admit(frame.len(), env) {
                env.cork.push_shared(frame);
            }
        }
    }

    #[inline]
    fn count_in(&mut self, len: usize, env: &mut Env) {
        self.last_msg = env.now;
        env.stats.msgs_in += 1;
        env.stats.bytes_in += len as u64;
    }

    #[inline]
    fn deliver(&mut self, op: OpData, payload: Bytes, env: &mut Env) {
        match self.route {
            Some(Route::Echo) => {
                self.send_data(op, payload, env);
            }
            Some(Route::PubSub) => env.events.push(AppEvent::Message(op, payload)),
            Some(Route::Dashboard) | None => {}
        }
    }

    /// Queues one unfragmented data frame into the cork (this connection's
    /// turn), applying the slow-consumer policy. Returns false if it was not
    /// queued.
    pub fn send_data(&mut self, op: OpData, payload: Bytes, env: &mut Env) -> bool {
        if let Some(frame) = self.compress_payload(op, &payload, env) {
            if !self.admit(frame.len(), env) {
                return false;
            }
            env.stats.msgs_out += 1;
            env.stats.bytes_out += payload.len() as u64;
            env.cork.push_shared(frame);
            return true;
        }
        let header = FrameHeader { opcode: OpCode::Data(op), ..FrameHeader::default() };
        let frame_len = header.len(payload.len() as u64) + payload.len();
        if !self.admit(frame_len, env) {
            return false;
        }
        header
            .format(payload.len() as u64, env.cork.buf_mut())
            .expect("bug: formatting into a Vec cannot fail");
        env.stats.msgs_out += 1;
        env.stats.bytes_out += payload.len() as u64;
        env.cork.push_shared(payload);
        true
    }

    /// Queues a complete, already encoded frame (a fan-out delivery or a
    /// reply) behind everything else, applying the slow-consumer policy. A
    /// close frame this causes goes into `env.cork`, which the caller must
    /// append to the outbox ([`Host::enqueue`] does both). Returns false if it
    /// was not queued.
    pub(crate) fn enqueue(&mut self, frame: Bytes, env: &mut Env) -> bool {
        let frame = self.outgoing_frame(frame, env);
        if !self.admit(frame.len(), env) {
            return false;
        }
        env.stats.msgs_out += 1;
        env.stats.bytes_out += frame.len() as u64;
        self.outbox.push(frame);
        true
    }

    /// Whether a frame of `frame_len` bytes may be queued now; applies the
    /// slow-consumer policy when it may not.
    #[inline]
    fn admit(&mut self, frame_len: usize, env: &mut Env) -> bool {
        if !matches!(self.state, State::Open { .. }) {
            return false;
        }
        if queue_fits(self.outbox.len() + env.cork.len(), frame_len, env.settings) {
            return true;
        }
        match env.settings.policy {
            SlowConsumerPolicy::Drop => env.stats.dropped += 1,
            SlowConsumerPolicy::Close => {
                self.outbox.discard_unstarted();
                self.start_close(CloseCause::SlowConsumer, env);
            }
        }
        false
    }

    /// The route this connection was upgraded on.
    pub fn route(&self) -> Option<Route> {
        self.route
    }
}

/// Whether a frame of `frame_len` bytes fits a write queue holding `queued`.
/// One message larger than the whole queue may still go through an empty
/// queue; otherwise the queue limit holds.
#[inline]
fn queue_fits(queued: usize, frame_len: usize, s: &Settings) -> bool {
    queued == 0 || queued + frame_len <= s.max_queue_bytes
}

#[cfg(test)]
mod tests;

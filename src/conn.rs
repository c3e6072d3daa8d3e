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

use bytes::Bytes;
use tungstenite::error::Error as WsError;
use tungstenite::protocol::frame::coding::{CloseCode, Data as OpData, OpCode};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::{CloseFrame, Message, Role, WebSocketConfig, WebSocketContext};

use crate::config::{Config, SlowConsumerPolicy};
use crate::handshake::{self, Limits, Reject, Request};
use crate::metrics::{CloseReason, Stats};
use crate::outbox::{Cork, Outbox, SHARE_THRESHOLD};
use crate::pubsub::protocol::{self as proto, ErrorCode, HttpPublish, ProtoError};
use crate::ratelimit::TokenBucket;
use crate::stream::MemStream;

/// A deadline that never comes.
pub const NEVER: u64 = u64::MAX;

/// tungstenite's per-context read chunk. Contexts exist only while a
/// connection is busy, so this costs nothing per idle connection.
const CTX_READ_BUFFER: usize = 4096;

/// Data frames below this size take the fast path ([`Conn::fast_data`]).
/// Larger ones go to tungstenite, which decodes them into a buffer it
/// reuses and hands them over by reference: measured faster from a few KiB
/// up (16 KiB echo: 2.54 vs 2.22 GB/s), while small frames gain most from
/// skipping it. Below this size payloads are copied into the cork anyway.
const FAST_PATH_MAX: usize = SHARE_THRESHOLD;

/// Contexts kept per worker for reuse.
const CTX_POOL_MAX: usize = 64;

/// Settings a worker derives once from [`Config`], in ticks where timed.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Handshake parsing limits.
    pub limits: Limits,
    /// Path of the echo route, if enabled.
    pub echo_path: Option<String>,
    /// Path of the pub/sub route, if enabled.
    pub pubsub_path: Option<String>,
    /// Path of the HTTP publish API, if enabled.
    pub publish_api_path: Option<String>,
    /// Largest publish payload, bytes.
    pub max_data_bytes: usize,
    /// Rooms per connection.
    pub max_rooms: usize,
    /// Subscribers per room per worker.
    pub max_room_members: Option<usize>,
    /// Member ids listed in a presence reply.
    pub presence_max_members: usize,
    /// Serve /metrics, /healthz, /readyz on the main listener.
    pub admin_on_main: bool,
    /// Authentication, built once from `[auth]`.
    pub auth: std::sync::Arc<crate::auth::Authenticator>,
    /// Messages per second per connection (0 = off) and burst.
    pub msg_rate: (u32, u32),
    /// Payload bytes per second per connection (0 = off) and burst.
    pub byte_rate: (u32, u32),
    /// Close after this many rate-limit violations (None = never).
    pub max_violations: Option<u32>,
    /// Per-IP connection and handshake-rate limits, shared by all workers.
    pub ip_limiter: Option<std::sync::Arc<crate::ratelimit::IpLimiter>>,
    /// Allowed browser origins (None = any).
    pub allowed_origins: Option<Vec<String>>,
    /// Allow upgrades without an Origin header.
    pub allow_missing_origin: bool,
    /// Subprotocols the server may select.
    pub subprotocols: Vec<String>,
    /// tungstenite configuration for every context.
    pub ws_config: WebSocketConfig,
    /// Largest frame accepted, bytes.
    pub max_frame_bytes: usize,
    /// Handshake deadline, ticks.
    pub handshake_ticks: u64,
    /// Ping after this many quiet ticks.
    pub ping_ticks: u64,
    /// Close after this many quiet ticks.
    pub dead_ticks: u64,
    /// Close after this many ticks without a message (None = off).
    pub idle_ticks: Option<u64>,
    /// Wait for a close reply (or a flush) this many ticks.
    pub close_ticks: u64,
    /// Close a write queue that made no progress for this many ticks.
    pub stall_ticks: u64,
    /// Write queue limit, bytes.
    pub max_queue_bytes: usize,
    /// Stop reading above this many queued bytes.
    pub high_water_bytes: usize,
    /// Overflow policy.
    pub policy: SlowConsumerPolicy,
    /// SO_SNDBUF for client sockets (0 = autotune).
    pub socket_send_buffer: usize,
    /// SO_RCVBUF for client sockets (0 = autotune).
    pub socket_recv_buffer: usize,
}

impl Settings {
    /// Derives settings from `config` for a wheel ticking every `tick_ms`.
    pub fn from_config(config: &Config, tick_ms: u64) -> Settings {
        let ticks = |ms: u64| ms.div_ceil(tick_ms).max(1);
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(CTX_READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(config.websocket.max_message_bytes))
            .max_frame_size(Some(config.websocket.max_frame_bytes));
        Settings {
            limits: Limits {
                max_request_bytes: config.handshake.max_request_bytes,
                ..Limits::default()
            },
            echo_path: Some(config.routes.echo.clone()).filter(|p| !p.is_empty()),
            pubsub_path: Some(config.routes.pubsub.clone()).filter(|p| !p.is_empty()),
            publish_api_path: Some(config.routes.publish_api.clone())
                .filter(|p| !p.is_empty() && config.pubsub.http_publish),
            max_data_bytes: config.pubsub.max_data_bytes,
            max_rooms: config.pubsub.max_rooms_per_connection,
            max_room_members: (config.pubsub.max_subscribers_per_room > 0)
                .then_some(config.pubsub.max_subscribers_per_room),
            presence_max_members: config.pubsub.presence_max_members,
            admin_on_main: config.metrics.enabled && config.metrics.listen.is_empty(),
            auth: std::sync::Arc::new(
                crate::auth::Authenticator::new(&config.auth)
                    .expect("bug: the config is validated before settings are built"),
            ),
            ip_limiter: (config.rate_limits.connections_per_ip > 0
                || config.rate_limits.handshakes_per_sec_per_ip > 0)
                .then(|| {
                    std::sync::Arc::new(crate::ratelimit::IpLimiter::new(
                        65_536,
                        config.rate_limits.connections_per_ip,
                        config.rate_limits.handshakes_per_sec_per_ip,
                    ))
                }),
            msg_rate: rate_pair(
                config.rate_limits.messages_per_sec,
                config.rate_limits.messages_burst,
            ),
            byte_rate: rate_pair(config.rate_limits.bytes_per_sec, config.rate_limits.bytes_burst),
            max_violations: (config.rate_limits.action == crate::config::RateLimitAction::Close)
                .then_some(config.rate_limits.max_violations.max(1)),
            allowed_origins: (!config.security.allowed_origins.iter().any(|o| o == "*"))
                .then(|| config.security.allowed_origins.clone()),
            allow_missing_origin: config.security.allow_missing_origin,
            subprotocols: config.websocket.subprotocols.clone(),
            ws_config,
            max_frame_bytes: config.websocket.max_frame_bytes,
            handshake_ticks: ticks(config.handshake.timeout_ms),
            ping_ticks: ticks(config.health.ping_interval_ms),
            dead_ticks: ticks(config.health.dead_client_ms),
            idle_ticks: (config.health.idle_timeout_ms > 0)
                .then(|| ticks(config.health.idle_timeout_ms)),
            close_ticks: ticks(config.health.close_timeout_ms),
            stall_ticks: ticks(config.write_queue.stall_timeout_ms),
            max_queue_bytes: config.write_queue.max_bytes,
            high_water_bytes: config.write_queue.high_water_bytes,
            policy: config.write_queue.slow_consumer,
            socket_send_buffer: config.server.socket_send_buffer_bytes,
            socket_recv_buffer: config.server.socket_recv_buffer_bytes,
        }
    }
}

fn rate_pair(rate: u32, burst: u32) -> (u32, u32) {
    (rate, if burst == 0 { rate } else { burst })
}

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

/// What a connection serves once upgraded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Echo every data message back.
    Echo,
    /// The pub/sub application protocol (messages go to the worker).
    PubSub,
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

/// Plain HTTP routes answered by the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpRoute {
    /// `GET /metrics`
    Metrics,
    /// `GET /healthz`
    Health,
    /// `GET /readyz`
    Ready,
}

impl HttpRoute {
    fn from_path(path: &str) -> Option<HttpRoute> {
        match path {
            "/metrics" => Some(HttpRoute::Metrics),
            "/healthz" => Some(HttpRoute::Health),
            "/readyz" => Some(HttpRoute::Ready),
            _ => None,
        }
    }
}

/// Reusable tungstenite contexts, owned by a worker.
#[derive(Default)]
pub struct CtxPool {
    // Boxed on purpose: contexts move between the pool and connections'
    // `Option<Box<_>>` as one pointer, and a connection holds 8 bytes, not ~300.
    #[allow(clippy::vec_box)]
    free: Vec<Box<WebSocketContext>>,
}

impl CtxPool {
    fn take(&mut self, config: &WebSocketConfig) -> Box<WebSocketContext> {
        self.free
            .pop()
            .unwrap_or_else(|| Box::new(WebSocketContext::new(Role::Server, Some(*config))))
    }

    fn give(&mut self, ctx: Box<WebSocketContext>) {
        if self.free.len() < CTX_POOL_MAX {
            self.free.push(ctx);
        }
    }
}

/// Everything a worker lends its connections, owned in one place: the clock,
/// the output cork, the context pool, the counters, the settings and the
/// application events. The worker holds one; so does every sans-IO driver
/// (tests, fuzzers, benches), which then build an [`Env`] the same way the
/// worker does.
pub struct Host {
    /// The current tick.
    pub now: u64,
    /// Milliseconds since start (for round-trip times).
    pub now_ms: u64,
    /// Wall-clock seconds since the Unix epoch (token expiry).
    pub now_unix: u64,
    /// Output for the connection whose turn it is.
    pub cork: Cork,
    /// Contexts to lend.
    pub pool: CtxPool,
    /// Counters.
    pub stats: Stats,
    /// Settings.
    pub settings: Settings,
    /// Events for the application layer.
    pub events: Vec<AppEvent>,
}

impl Host {
    /// A host at tick 0 with an empty cork, pool, counters and events.
    pub fn new(settings: Settings) -> Host {
        Host {
            now: 0,
            now_ms: 0,
            now_unix: 0,
            cork: Cork::default(),
            pool: CtxPool::default(),
            stats: Stats::default(),
            settings,
            events: Vec::new(),
        }
    }

    /// Sets the clock for a simulation where a tick is `tick_ms` and the
    /// wall clock started at `unix0`.
    pub fn set_tick(&mut self, now: u64, tick_ms: u64, unix0: u64) {
        self.now = now;
        self.now_ms = now * tick_ms;
        self.now_unix = unix0 + now * tick_ms / 1000;
    }

    /// The environment for one connection's turn.
    pub fn env(&mut self) -> Env<'_> {
        Env {
            now: self.now,
            now_ms: self.now_ms,
            now_unix: self.now_unix,
            cork: &mut self.cork,
            pool: &mut self.pool,
            stats: &mut self.stats,
            settings: &self.settings,
            events: &mut self.events,
        }
    }

    /// Ends a connection's turn the way a worker does: writes the cork to
    /// `w` (the socket) unless output is already queued ahead of it or the
    /// socket is not `writable`, moves what the kernel did not take into the
    /// connection's outbox, and empties the cork. A write error closes the
    /// connection. Does nothing when the cork is empty.
    pub fn write_cork<W: std::io::Write + ?Sized>(
        &mut self,
        conn: &mut Conn,
        w: &mut W,
        writable: bool,
    ) -> CorkWrite {
        let mut done = CorkWrite { writable, resume_reading: false };
        if self.cork.is_empty() {
            return done;
        }
        let written = if conn.outbox.is_empty() && writable {
            self.cork.write_to(w).unwrap_or_else(|_| {
                conn.handle_io_error();
                0
            })
        } else {
            0
        };
        if written < self.cork.len() && !conn.is_closed() {
            self.cork.spill_into(written, &mut conn.outbox);
            done.writable = false;
        }
        self.cork.clear();
        done.resume_reading = conn.handle_written(written, self.now, &self.settings);
        done
    }

    /// Everything in the cork, as if the kernel took it all; the cork is
    /// emptied.
    pub fn take_output(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.cork.len());
        self.cork.write_to(&mut out).expect("writing into a Vec cannot fail");
        self.cork.clear();
        out
    }
}

/// What [`Host::write_cork`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorkWrite {
    /// The socket can still take more (nothing was left over).
    pub writable: bool,
    /// The connection's queue drained below half the high-water mark: the
    /// worker must read from it again.
    pub resume_reading: bool,
}

/// What a connection needs from its worker while it handles input or a timer.
pub struct Env<'a> {
    /// The current tick.
    pub now: u64,
    /// Milliseconds since the worker started (for round-trip times).
    pub now_ms: u64,
    /// Wall-clock seconds since the Unix epoch (token expiry).
    pub now_unix: u64,
    /// Output for this connection (written to the socket when its turn ends).
    pub cork: &'a mut Cork,
    /// Contexts to borrow.
    pub pool: &'a mut CtxPool,
    /// The worker's counters.
    pub stats: &'a mut Stats,
    /// Settings.
    pub settings: &'a Settings,
    /// Events for the worker's application layer.
    pub events: &'a mut Vec<AppEvent>,
}

/// One connection's protocol state. See the module docs.
pub struct Conn {
    phase: Phase,
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
    /// Bytes the kernel has not taken yet.
    pub outbox: Outbox,
    read_paused: bool,
    close_reason: Option<CloseReason>,
    /// Tick of the phase deadline (handshake, close or linger).
    phase_deadline: u64,
    last_recv: u64,
    last_msg: u64,
    last_ping: u64,
    last_write_progress: u64,
    /// When the outstanding ping was sent (ms), 0 when none is.
    ping_sent_ms: u64,
    shutdown_sent: bool,
    /// Accepted on the admin listener: only the plain HTTP routes.
    admin_only: bool,
    /// A plain HTTP request waits for the worker's answer.
    awaiting_app: bool,
    /// Drop the socket once the output is flushed (no half-close + drain).
    close_when_flushed: bool,
    /// Who the client authenticated as (set at the upgrade).
    identity: Option<crate::auth::Identity>,
    msg_bucket: TokenBucket,
    byte_bucket: TokenBucket,
    violations: u32,
}

impl Conn {
    /// A freshly accepted connection at tick `now`.
    pub fn new(now: u64, settings: &Settings) -> Conn {
        Conn::accepted(now, settings, false)
    }

    /// A freshly accepted connection; `admin_only` for the metrics listener.
    pub fn accepted(now: u64, settings: &Settings, admin_only: bool) -> Conn {
        Conn {
            phase: Phase::Handshake,
            route: None,
            inbuf: Vec::new(),
            ctx: None,
            passthrough: false,
            in_fragment: false,
            large_frame: false,
            outbox: Outbox::default(),
            read_paused: false,
            close_reason: None,
            phase_deadline: now + settings.handshake_ticks,
            last_recv: now,
            last_msg: now,
            last_ping: now,
            last_write_progress: now,
            ping_sent_ms: 0,
            shutdown_sent: false,
            admin_only,
            awaiting_app: false,
            close_when_flushed: false,
            identity: None,
            msg_bucket: TokenBucket::new(settings.msg_rate.0, settings.msg_rate.1, 0),
            byte_bucket: TokenBucket::new(settings.byte_rate.0, settings.byte_rate.1, 0),
            violations: 0,
        }
    }

    /// Accepted on the metrics listener (plain HTTP routes only).
    pub fn is_admin_only(&self) -> bool {
        self.admin_only
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Why the connection ended (or is ending), once known.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    /// True once the worker should drop the socket.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// True while the worker should read from the socket.
    pub fn wants_read(&self) -> bool {
        self.phase != Phase::Closed && !self.read_paused
    }

    /// True when the write side should be shut down now (everything flushed
    /// in `Linger`). The worker calls [`Conn::shutdown_done`] after doing it.
    pub fn wants_shutdown(&self) -> bool {
        self.phase == Phase::Linger
            && !self.shutdown_sent
            && !self.awaiting_app
            && self.outbox.is_empty()
    }

    /// The worker's answer to an [`AppEvent::Http`] request.
    pub fn respond(&mut self, response: Bytes) {
        if self.awaiting_app {
            self.awaiting_app = false;
            self.outbox.push(response);
        }
    }

    /// The worker half-closed the socket (or, when nothing more can come
    /// from the peer, is about to close it).
    pub fn shutdown_done(&mut self) {
        self.shutdown_sent = true;
        if self.close_when_flushed {
            self.phase = Phase::Closed;
        }
    }

    /// True when the socket can be closed outright once flushed (the peer
    /// already finished its side of the close handshake).
    pub fn close_when_flushed(&self) -> bool {
        self.close_when_flushed
    }

    /// Bytes retained by this connection beyond its own struct (buffers and
    /// tungstenite state), for memory accounting.
    pub fn retained_bytes(&self) -> usize {
        self.inbuf.capacity()
            + self.outbox.len()
            + self.ctx.as_ref().map_or(0, |_| std::mem::size_of::<WebSocketContext>())
    }

    /// Handles bytes read from the socket.
    pub fn handle_input(&mut self, data: &[u8], env: &mut Env) {
        if data.is_empty() {
            return;
        }
        self.last_recv = env.now;
        match self.phase {
            Phase::Handshake => self.handshake_input(data, env),
            Phase::Open | Phase::Closing => self.ws_input(data, env),
            Phase::Linger | Phase::Closed => {}
        }
    }

    /// The peer closed its side (read returned 0).
    pub fn handle_eof(&mut self) {
        match self.phase {
            Phase::Handshake | Phase::Open | Phase::Closing => {
                self.set_closed(CloseReason::ClientVanished)
            }
            Phase::Linger | Phase::Closed => self.phase = Phase::Closed,
        }
    }

    /// The socket failed.
    pub fn handle_io_error(&mut self) {
        if self.close_reason.is_none() {
            self.close_reason = Some(CloseReason::IoError);
        }
        self.phase = Phase::Closed;
    }

    /// `written` bytes of the outbox (or cork) reached the kernel.
    pub fn handle_written(&mut self, written: usize, now: u64, settings: &Settings) -> bool {
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

    /// After the worker wrote what it could: pause reading above high water.
    pub fn update_backpressure(&mut self, settings: &Settings) {
        if self.outbox.len() > settings.high_water_bytes {
            self.read_paused = true;
        }
    }

    /// The next tick at which [`Conn::handle_timer`] has work to do.
    pub fn deadline(&self, s: &Settings) -> u64 {
        match self.phase {
            Phase::Handshake | Phase::Closing | Phase::Linger => self.phase_deadline,
            Phase::Open => {
                let mut d = (self.last_recv + s.dead_ticks)
                    .min(self.last_recv.max(self.last_ping) + s.ping_ticks);
                if let Some(idle) = s.idle_ticks {
                    d = d.min(self.last_msg + idle);
                }
                if !self.outbox.is_empty() {
                    d = d.min(self.last_write_progress + s.stall_ticks);
                }
                d
            }
            Phase::Closed => NEVER,
        }
    }

    /// The timer fired: enforce deadlines, send a ping when due.
    pub fn handle_timer(&mut self, env: &mut Env) {
        let now = env.now;
        let s = env.settings;
        match self.phase {
            Phase::Handshake => {
                if now >= self.phase_deadline {
                    self.set_closed(CloseReason::HandshakeTimeout);
                }
            }
            Phase::Open => {
                if now >= self.last_recv + s.dead_ticks {
                    self.fail(CloseCode::Away, "no response to ping", CloseReason::Timeout, env);
                } else if !self.outbox.is_empty() && now >= self.last_write_progress + s.stall_ticks
                {
                    // The client stopped reading: nothing we queue can reach it.
                    self.outbox.discard_unstarted();
                    self.set_closed(CloseReason::SlowConsumer);
                } else if s.idle_ticks.is_some_and(|idle| now >= self.last_msg + idle) {
                    self.start_close(
                        CloseCode::Normal,
                        "idle timeout",
                        CloseReason::IdleTimeout,
                        env,
                    );
                } else if now >= self.last_recv.max(self.last_ping) + s.ping_ticks {
                    self.last_ping = now;
                    self.ping_sent_ms = env.now_ms.max(1);
                    self.with_ctx(env, |ctx, io| ctx.write(io, Message::Ping(Bytes::new())));
                }
            }
            Phase::Closing | Phase::Linger => {
                if now >= self.phase_deadline {
                    self.phase = Phase::Closed;
                }
            }
            Phase::Closed => {}
        }
    }

    /// Starts the close handshake from the server side (shutdown, idle
    /// timeout): sends a close frame and waits for the reply.
    pub fn start_close(
        &mut self,
        code: CloseCode,
        reason: &'static str,
        why: CloseReason,
        env: &mut Env,
    ) {
        match self.phase {
            Phase::Open => {
                self.close_reason.get_or_insert(why);
                self.send_close(code, reason, env);
                self.phase = Phase::Closing;
                self.phase_deadline = env.now + env.settings.close_ticks;
            }
            Phase::Handshake => self.set_closed(why),
            _ => {}
        }
    }

    fn set_closed(&mut self, why: CloseReason) {
        self.close_reason.get_or_insert(why);
        self.phase = Phase::Closed;
    }

    /// Enters `Linger`: flush, half-close, discard input until EOF or deadline.
    fn linger(&mut self, why: CloseReason, env: &Env) {
        self.close_reason.get_or_insert(why);
        self.phase = Phase::Linger;
        self.phase_deadline = env.now + env.settings.close_ticks;
        self.read_paused = false;
        self.inbuf = Vec::new();
        // The context may hold a half-read frame; it is not reusable.
        self.ctx = None;
    }

    /// _Fail the WebSocket Connection_: send a close frame with `code` and
    /// stop, without waiting for the reply (RFC 6455 section 7.1.7).
    fn fail(&mut self, code: CloseCode, reason: &'static str, why: CloseReason, env: &mut Env) {
        self.send_close(code, reason, env);
        self.linger(why, env);
    }

    fn send_close(&mut self, code: CloseCode, reason: &'static str, env: &mut Env) {
        let frame = CloseFrame { code, reason: reason.into() };
        self.with_ctx(env, |ctx, io| ctx.close(io, Some(frame)));
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
        if self.phase == Phase::Open && ctx.can_write() && !self.in_fragment && !self.passthrough {
            env.pool.give(ctx);
        } else {
            self.ctx = Some(ctx);
        }
    }

    fn handshake_input(&mut self, data: &[u8], env: &mut Env) {
        self.inbuf.extend_from_slice(data);
        let s = env.settings;
        let req = match handshake::parse_request(&self.inbuf, &s.limits) {
            Ok(None) => return,
            Ok(Some(req)) => req,
            Err(reject) => return self.refuse(&reject, env),
        };
        if let Some(route) = HttpRoute::from_path(&req.path) {
            if (self.admin_only || s.admin_on_main) && req.method == "GET" {
                self.awaiting_app = true;
                env.events.push(AppEvent::Http(route));
                return self.linger(CloseReason::HttpServed, env);
            }
        }
        if self.admin_only {
            return self.refuse(&Reject::new(404, "no such route"), env);
        }
        let path = Some(&req.path);
        let route = if path == s.echo_path.as_ref() {
            Route::Echo
        } else if path == s.pubsub_path.as_ref() {
            Route::PubSub
        } else if path == s.publish_api_path.as_ref() {
            return self.http_publish(&req, env);
        } else {
            return self.refuse(&Reject::new(404, "no such route"), env);
        };
        let upgrade = match handshake::validate_upgrade(&req, &s.subprotocols) {
            Ok(up) => up,
            Err(reject) => return self.refuse(&reject, env),
        };
        if let Err(reject) = check_origin(&req, s) {
            return self.refuse_auth(&reject, env);
        }
        match s.auth.authenticate(&req, &req.path, env.now_unix) {
            Ok(identity) => self.identity = Some(identity),
            Err(e) => return self.refuse_auth(&unauthorized(&e), env),
        }
        handshake::write_upgrade_response(&upgrade, env.cork.buf_mut());
        // Whatever a slow-consumer policy later discards, and however the
        // kernel splits the writes, the 101 reaches the client before any
        // frame.
        env.cork.mark_preamble();
        env.stats.upgraded += 1;
        self.route = Some(route);
        self.phase = Phase::Open;
        self.last_msg = env.now;
        self.last_ping = env.now;
        if route == Route::PubSub {
            env.events.push(AppEvent::Opened(route));
        }
        // Bytes after the request head already belong to the WebSocket stream.
        let mut rest = std::mem::take(&mut self.inbuf);
        rest.drain(..req.head_len);
        if !rest.is_empty() {
            self.ws_input(&rest, env);
        }
    }

    /// `POST` to the publish API: wait for the whole body, validate it, answer.
    fn http_publish(&mut self, req: &Request, env: &mut Env) {
        if req.method != "POST" {
            let reject = Reject::new(405, "use POST").with_header("Allow", "POST");
            return self.refuse(&reject, env);
        }
        match env.settings.auth.authenticate(req, &req.path, env.now_unix) {
            Ok(identity) if identity.can_use_publish_api() => {}
            Ok(_) => {
                return self.refuse_auth(&Reject::new(403, "this credential may not publish"), env)
            }
            Err(e) => return self.refuse_auth(&unauthorized(&e), env),
        }
        let max_body = env.settings.max_data_bytes + 1024;
        let Some(len) = req.header("content-length") else {
            return self.refuse(&Reject::new(411, "Content-Length required"), env);
        };
        let Some(len) = std::str::from_utf8(len).ok().and_then(|v| v.trim().parse::<usize>().ok())
        else {
            return self.refuse(&Reject::new(400, "bad Content-Length"), env);
        };
        if len > max_body {
            return self.refuse(&Reject::new(413, "body too large"), env);
        }
        if self.inbuf.len() < req.head_len + len {
            return; // the body is still arriving, under the handshake deadline
        }
        let body = &self.inbuf[req.head_len..req.head_len + len];
        let response = match proto::parse_http_publish(body, env.settings.max_data_bytes) {
            Ok(publish) => {
                let body = format!("{{\"status\":\"accepted\",\"room\":\"{}\"}}\n", publish.room);
                env.events.push(AppEvent::HttpPublish(publish));
                handshake::http_response(202, "application/json", body.as_bytes(), &[])
            }
            Err((status, reason)) => {
                env.stats.count_refusal(status);
                let body = format!("{reason}\n");
                handshake::http_response(status, "text/plain; charset=utf-8", body.as_bytes(), &[])
            }
        };
        env.cork.extend(&response);
        self.linger(CloseReason::HttpServed, env);
    }

    /// Refused by Origin, authentication or per-IP limits (counted apart
    /// from malformed requests).
    pub fn refuse_auth(&mut self, reject: &Reject, env: &mut Env) {
        self.close_reason = Some(CloseReason::AuthRefused);
        self.refuse(reject, env);
    }

    /// Who the client authenticated as, once upgraded.
    pub fn identity(&self) -> Option<&crate::auth::Identity> {
        self.identity.as_ref()
    }

    /// A plain-text client on a TLS port: answer in plain text and close.
    pub fn refuse_plain_on_tls(&mut self, env: &mut Env) {
        self.refuse(&Reject::new(400, "this port speaks TLS: use wss:// or https://"), env);
    }

    fn refuse(&mut self, reject: &Reject, env: &mut Env) {
        env.stats.count_refusal(reject.status);
        env.cork.extend(&reject.to_response());
        self.linger(CloseReason::HandshakeRefused, env);
    }

    fn ws_input(&mut self, data: &[u8], env: &mut Env) {
        // Work on our partial frame plus the new bytes. The partial frame
        // grows in place (never copied again per read), and the new bytes
        // are not copied at all when there is no partial frame.
        let owned = if self.inbuf.is_empty() {
            None
        } else {
            let mut buf = std::mem::take(&mut self.inbuf);
            buf.extend_from_slice(data);
            Some(buf)
        };
        let work: &[u8] = owned.as_deref().unwrap_or(data);
        let (whole, need) = if self.passthrough {
            (work.len(), 0)
        } else {
            match scan_frames(work, env.settings.max_frame_bytes) {
                Scan::Whole { whole, need } => (whole, need),
                Scan::Suspect => {
                    self.passthrough = true;
                    (work.len(), 0)
                }
            }
        };
        let consumed = match whole {
            0 => 0,
            _ if self.passthrough => self.feed_ctx(&work[..whole], env),
            _ => self.feed_frames(&work[..whole], env),
        };
        if !matches!(self.phase, Phase::Open | Phase::Closing) {
            return;
        }
        let from = consumed.max(whole);
        let mut rest = match owned {
            Some(mut buf) => {
                buf.drain(..from);
                buf
            }
            None if from < data.len() => data[from..].to_vec(),
            None => Vec::new(),
        };
        if rest.is_empty() {
            return; // nothing kept: an idle connection holds no buffer
        }
        // Room for the whole incomplete frame at once (its header is known)
        // once a good part of it is here, instead of growing by doubling
        // through a large message. Not earlier: a bare header must not make
        // the server allocate the frame's full size for a client that may
        // never send it.
        if need > rest.capacity() && rest.len() >= need / 4 {
            rest.reserve_exact(need - rest.len());
        }
        self.inbuf = rest;
    }

    /// Handles `input`, which is whole frames (checked by [`scan_frames`]),
    /// one frame at a time: a whole unfragmented data frame takes the fast
    /// path ([`Conn::fast_data`]); every other frame (control frames,
    /// fragments, anything the fast path declines) goes to tungstenite alone,
    /// so its buffers never hold bytes past the frame it was given. Returns
    /// the bytes handled.
    fn feed_frames(&mut self, input: &[u8], env: &mut Env) -> usize {
        let max_message = env.settings.ws_config.max_message_size.unwrap_or(usize::MAX);
        let mut pos = 0;
        while pos < input.len() {
            let rest = &input[pos..];
            let Some(head) = FrameHead::parse(rest) else {
                break; // cannot happen: the scanner vouched for whole frames
            };
            let total = head.total().min(rest.len());
            let fast = self.phase == Phase::Open
                && !self.in_fragment
                && head.fin
                && head.masked
                && !head.reserved_bits
                && matches!(head.opcode, 1 | 2)
                && head.len < FAST_PATH_MAX as u64
                && head.len <= max_message as u64;
            if fast && self.fast_data(&head, &rest[head.header_len..total], env) {
                pos += total;
            } else {
                if head.opcode == 0 && head.fin {
                    self.in_fragment = false;
                } else if matches!(head.opcode, 1 | 2) {
                    self.in_fragment = !head.fin;
                }
                // A context that decodes a large frame grows its buffers:
                // drop it afterwards rather than pool it.
                self.large_frame |= head.len > CTX_READ_BUFFER as u64;
                let took = self.feed_ctx(&rest[..total], env);
                pos += took;
                if took < total {
                    return pos;
                }
            }
            if !matches!(self.phase, Phase::Open | Phase::Closing) {
                return pos;
            }
        }
        pos
    }

    /// The fast path for one whole, final, unfragmented, masked text or
    /// binary frame under [`FAST_PATH_MAX`] while the connection is open: unmasks the payload
    /// straight into its destination (the echo frame in the cork, or the
    /// message handed to the application) without a tungstenite context.
    /// Equivalent to tungstenite decoding the frame: same checks, same
    /// counters, same limits. Returns false, having changed nothing, when
    /// the frame must go to tungstenite instead (text that is not valid
    /// UTF-8, so that tungstenite reports the error).
    fn fast_data(&mut self, head: &FrameHead, masked: &[u8], env: &mut Env) -> bool {
        let text = head.opcode == 1;
        let op = if text { OpData::Text } else { OpData::Binary };
        let len = masked.len();
        if self.route == Some(Route::Echo) {
            // Speculatively write the echo frame into the cork: header, then
            // the payload unmasked in place of the copy.
            let header = FrameHeader { opcode: OpCode::Data(op), ..FrameHeader::default() };
            let frame_len = header.len(len as u64) + len;
            let queued_before = self.outbox.len() + env.cork.len();
            let buf = env.cork.buf_mut();
            let start = buf.len();
            header.format(len as u64, buf).expect("bug: formatting into a Vec cannot fail");
            let at = buf.len();
            let ascii = unmask_into(buf, masked, head.mask);
            if text && !valid_text(&buf[at..], ascii) {
                buf.truncate(start);
                return false;
            }
            self.count_in(len, env);
            if !self.take_tokens(len, env) {
                env.cork.buf_mut().truncate(start);
                self.rate_violation(true, env);
                return true;
            }
            if !queue_fits(queued_before, frame_len, env.settings) {
                env.cork.buf_mut().truncate(start);
                self.admit(frame_len, env); // applies the slow-consumer policy
                return true;
            }
            env.stats.msgs_out += 1;
            env.stats.bytes_out += len as u64;
            return true;
        }
        let mut payload = Vec::with_capacity(len);
        let ascii = unmask_into(&mut payload, masked, head.mask);
        if text && !valid_text(&payload, ascii) {
            return false;
        }
        self.count_in(len, env);
        if self.within_rate(len, true, env) {
            self.deliver(op, Bytes::from(payload), env);
        }
        true
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
                    self.linger(CloseReason::ClientClose, env);
                    self.close_when_flushed = true;
                    return pos;
                }
                Err(e) => {
                    let (code, reason, why) = close_for_error(&e);
                    self.ctx = Some(ctx);
                    self.fail(code, reason, why, env);
                    return pos;
                }
            }
            if self.phase == Phase::Closed || self.phase == Phase::Linger {
                return pos;
            }
        }
        let idle = self.phase == Phase::Open && ctx.can_write() && !self.in_fragment;
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
                if self.phase == Phase::Closing {
                    self.close_reason.get_or_insert(CloseReason::ClientClose);
                } else {
                    self.close_reason = Some(CloseReason::ClientClose);
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
    fn within_rate(&mut self, len: usize, data: bool, env: &mut Env) -> bool {
        if self.take_tokens(len, env) {
            return true;
        }
        self.rate_violation(data, env);
        false
    }

    /// Takes one message and `len` bytes from the buckets; false when over.
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
            self.fail(CloseCode::Policy, "rate limited", CloseReason::RateLimited, env);
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

    fn count_in(&mut self, len: usize, env: &mut Env) {
        self.last_msg = env.now;
        env.stats.msgs_in += 1;
        env.stats.bytes_in += len as u64;
    }

    fn deliver(&mut self, op: OpData, payload: Bytes, env: &mut Env) {
        match self.route {
            Some(Route::Echo) => {
                self.send_data(op, payload, env);
            }
            Some(Route::PubSub) => env.events.push(AppEvent::Message(op, payload)),
            None => {}
        }
    }

    /// Queues one unfragmented data frame into the cork (this connection's
    /// turn), applying the slow-consumer policy. Returns false if it was not
    /// queued.
    pub fn send_data(&mut self, op: OpData, payload: Bytes, env: &mut Env) -> bool {
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
    /// append to the outbox. Returns false if it was not queued.
    pub fn enqueue(&mut self, frame: Bytes, env: &mut Env) -> bool {
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
    fn admit(&mut self, frame_len: usize, env: &mut Env) -> bool {
        if self.phase != Phase::Open {
            return false;
        }
        if queue_fits(self.outbox.len() + env.cork.len(), frame_len, env.settings) {
            return true;
        }
        match env.settings.policy {
            SlowConsumerPolicy::Drop => env.stats.dropped += 1,
            SlowConsumerPolicy::Close => {
                self.outbox.discard_unstarted();
                self.start_close(
                    CloseCode::Policy,
                    "slow consumer",
                    CloseReason::SlowConsumer,
                    env,
                );
            }
        }
        false
    }

    /// The route this connection was upgraded on.
    pub fn route(&self) -> Option<Route> {
        self.route
    }
}

/// The 401 refusal for a failed authentication.
fn unauthorized(e: &crate::auth::AuthError) -> Reject {
    Reject::new(401, e.reason).with_header("WWW-Authenticate", e.www_authenticate())
}

/// Origin check against the allow-list (cross-site WebSocket hijacking).
fn check_origin(req: &Request, s: &Settings) -> Result<(), Reject> {
    match req.header("origin") {
        None if s.allow_missing_origin => Ok(()),
        None => Err(Reject::new(403, "Origin header required")),
        Some(origin) => match &s.allowed_origins {
            None => Ok(()),
            Some(list) if list.iter().any(|o| o.as_bytes() == origin) => Ok(()),
            Some(_) => Err(Reject::new(403, "origin not allowed")),
        },
    }
}

/// The close code, reason and counter for a tungstenite read error.
fn close_for_error(e: &WsError) -> (CloseCode, &'static str, CloseReason) {
    match e {
        WsError::Utf8(_) => (CloseCode::Invalid, "invalid UTF-8", CloseReason::InvalidUtf8),
        WsError::Capacity(_) => (CloseCode::Size, "message too big", CloseReason::MessageTooBig),
        WsError::Protocol(_) => (CloseCode::Protocol, "protocol error", CloseReason::ProtocolError),
        _ => (CloseCode::Error, "internal error", CloseReason::IoError),
    }
}

/// Whether a frame of `frame_len` bytes fits a write queue holding `queued`.
/// One message larger than the whole queue may still go through an empty
/// queue; otherwise the queue limit holds.
fn queue_fits(queued: usize, frame_len: usize, s: &Settings) -> bool {
    queued == 0 || queued + frame_len <= s.max_queue_bytes
}

/// Result of scanning buffered input for whole frames.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// The first `whole` bytes are whole frames; `need` is the full size of
    /// the incomplete frame that follows, when its header is already there
    /// (else 0).
    Whole {
        /// Bytes of whole frames.
        whole: usize,
        /// Size of the next, incomplete frame, if known.
        need: usize,
    },
    /// A header is invalid or over the size limit; tungstenite must see it.
    Suspect,
}

/// A client frame header, as far as the scanner and the fast path need it.
#[derive(Debug, Clone, Copy)]
struct FrameHead {
    fin: bool,
    /// RSV1-3 set.
    reserved_bits: bool,
    opcode: u8,
    masked: bool,
    mask: [u8; 4],
    /// Bytes of header (including the mask).
    header_len: usize,
    /// Payload length.
    len: u64,
}

impl FrameHead {
    /// Decodes the header at the start of `buf`; None until all of it is there.
    fn parse(buf: &[u8]) -> Option<FrameHead> {
        let (&b0, &b1) = (buf.first()?, buf.get(1)?);
        let masked = b1 & 0x80 != 0;
        let (len_bytes, len) = match b1 & 0x7f {
            126 => (2, u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as u64),
            127 => (8, u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)),
            n => (0, n as u64),
        };
        let mask_at = 2 + len_bytes;
        let mask: [u8; 4] =
            if masked { buf.get(mask_at..mask_at + 4)?.try_into().ok()? } else { [0; 4] };
        Some(FrameHead {
            fin: b0 & 0x80 != 0,
            reserved_bits: b0 & 0x70 != 0,
            opcode: b0 & 0x0f,
            masked,
            mask,
            header_len: mask_at + if masked { 4 } else { 0 },
            len,
        })
    }

    /// Header plus payload, saturating (a huge length is refused before use).
    fn total(&self) -> usize {
        usize::try_from(self.len).unwrap_or(usize::MAX).saturating_add(self.header_len)
    }
}

/// Appends `masked` to `out`, unmasked with `mask` (RFC 6455 section 5.3),
/// eight bytes at a time. Returns true when the payload is all ASCII (and
/// so valid UTF-8 without a further check).
fn unmask_into(out: &mut Vec<u8>, masked: &[u8], mask: [u8; 4]) -> bool {
    let start = out.len();
    out.extend_from_slice(masked);
    let payload = &mut out[start..];
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut high = 0u64;
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        let v = u64::from_ne_bytes(b) ^ word;
        high |= v;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    // Chunks start at multiples of 8, so the tail starts at mask byte 0.
    let mut tail = 0u8;
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
        tail |= *byte;
    }
    high & 0x8080_8080_8080_8080 == 0 && tail & 0x80 == 0
}

/// True when `text` is valid UTF-8; `ascii` says it is known to be ASCII.
fn valid_text(text: &[u8], ascii: bool) -> bool {
    ascii || std::str::from_utf8(text).is_ok()
}

/// Finds how many leading bytes of `buf` form whole client frames.
/// Validation proper is tungstenite's job; this only spots headers it will
/// reject so they reach it without waiting for a payload that may never come.
fn scan_frames(buf: &[u8], max_frame: usize) -> Scan {
    let mut pos = 0;
    let mut need = 0;
    while buf.len() - pos >= 2 {
        let (b0, b1) = (buf[pos], buf[pos + 1]);
        let (fin, opcode, masked) = (b0 & 0x80 != 0, b0 & 0x0f, b1 & 0x80 != 0);
        let is_control = opcode >= 8;
        let reserved_op = matches!(opcode, 3..=7 | 11..=15);
        // Judged from the first two bytes, before the rest of the header:
        // "The server MUST close the connection upon receiving a frame that is
        // not masked." (RFC 6455); control frames: "MUST have a payload length
        // of 125 bytes or less and MUST NOT be fragmented." (RFC 6455)
        if b0 & 0x70 != 0 || reserved_op || !masked || (is_control && !fin) {
            return Scan::Suspect;
        }
        let Some(head) = FrameHead::parse(&buf[pos..]) else {
            break;
        };
        // Control frames are judged by their real length (a short length in
        // the 16-bit form is accepted by tungstenite, so it is whole here).
        if head.len > max_frame as u64 || (is_control && head.len > 125) {
            return Scan::Suspect;
        }
        let total = head.total();
        if buf.len() - pos < total {
            need = total;
            break;
        }
        pos += total;
    }
    Scan::Whole { whole: pos, need }
}

#[cfg(test)]
mod tests;

//! Connection slots and socket I/O for one [`Worker`]: the [`Slot`] per
//! connection, its writer ([`Sink`], plain or TLS), accepting from the
//! listeners, readiness events, reading (plain and TLS) with the per-turn
//! cap, finishing a turn, removal, and holding pub/sub clients back while the
//! bus is over budget.
//!
//! What a turn's end writes, and in which order (cork, queue, backpressure,
//! TLS records, close_notify, half-close, next deadline), is decided by the
//! connection driver ([`Host::end_turn`], `conn/driver.rs`), the same one
//! tests, fuzzers and benches call; this file makes the syscalls its
//! [`TurnResult`](crate::conn::TurnResult) asks for (`shutdown(Write)`,
//! dropping the socket, the timer wheel).
//!
//! This is the only code that touches connection sockets. It must not decide
//! anything at the application layer (rooms, routes, metrics): what the
//! connections ask for goes to `app` through [`Worker::app_event`], and
//! refusals are logged there.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::{debug, warn};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Token};
use slab::Slab;

use crate::conn::{Conn, EndTurn, Host, Route, Transport, NEVER};
use crate::id::{ConnId, MAX_KEY};
use crate::metrics::CloseCause;
use crate::timer::{TimerId, TimerWheel};
use crate::tls::{looks_like_plain_http, TlsConn, TlsIo, TlsRead, TlsScratch};

use super::{Worker, READ_CHUNK};

/// Reads per connection per turn before others get a go.
const MAX_READS_PER_TURN: usize = 4;
/// Most often an accept failure for lack of descriptors is logged.
const EMFILE_LOG_INTERVAL: Duration = Duration::from_secs(10);

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The poll token of a connection: its id without the worker, so an event
/// is matched by key and generation (see [`ConnId::local`]).
fn token_of(id: ConnId) -> Token {
    Token(id.local() as usize)
}

/// One accepted connection as a worker holds it in its slab: the socket
/// (`S`: a `mio` `TcpStream` in the worker; `benches/scale.rs` builds a
/// million of these with a raw descriptor number in its place, same size),
/// the connection, its timer and the worker's per-socket flags.
pub struct Slot<S = TcpStream> {
    pub(super) sock: S,
    pub(super) conn: Conn,
    pub(super) peer: SocketAddr,
    pub(super) timer: Option<TimerId>,
    pub(super) timer_at: u64,
    pub(super) writable: bool,
    pub(super) dirty: bool,
    pub(super) id: ConnId,
    /// TLS state for connections accepted on the TLS listener (no buffers
    /// while idle: see `tls.rs`).
    pub(super) tls: Option<Box<TlsConn>>,
    /// The first byte of a TLS connection was checked for plain HTTP.
    pub(super) tls_sniffed: bool,
    /// Counted by the per-IP limiter (release on close).
    pub(super) ip_counted: bool,
    /// The peer's FIN was reported (no further readiness edge will come).
    pub(super) read_closed: bool,
}

/// `MSG_NOSIGNAL` where it exists: a write to a reset connection returns
/// `EPIPE` rather than raising SIGPIPE, whatever the embedding program does
/// with that signal (std's `write` on a TcpStream passes it too).
#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: libc::c_int = 0;

/// A connection's writer: the socket, or TLS over it.
///
/// Plain sockets write one slice with `send` (std's `write`) and several
/// with `sendmsg` (not `writev`): both enter the socket layer directly,
/// where `writev` goes through the VFS (`fdget_pos`, `vfs_writev`,
/// `sock_write_iter`), about 8% of a fan-out profile to many small rooms
/// (BENCHMARKS.md, issue 12).
enum Sink<'a> {
    Plain(&'a mut TcpStream),
    Tls(TlsIo<'a, TcpStream>),
}

fn sink<'a>(
    tls: &'a mut Option<Box<TlsConn>>,
    sock: &'a mut TcpStream,
    scratch: &'a mut TlsScratch,
) -> Sink<'a> {
    match tls.as_deref_mut() {
        Some(tls) => Sink::Tls(TlsIo { tls, sock, scratch }),
        None => Sink::Plain(sock),
    }
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(s) => s.write(buf),
            Sink::Tls(t) => t.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sink::Plain(s) => {
                socket2::SockRef::from(&**s).send_vectored_with_flags(bufs, SEND_FLAGS)
            }
            Sink::Tls(t) => t.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(s) => s.flush(),
            Sink::Tls(t) => t.flush(),
        }
    }
}

impl Transport for Sink<'_> {
    #[inline]
    fn flush_records(&mut self) -> io::Result<bool> {
        match self {
            Sink::Plain(_) => Ok(true),
            Sink::Tls(t) => t.flush_records(),
        }
    }

    fn close_notify(&mut self) {
        if let Sink::Tls(t) = self {
            t.close_notify();
        }
    }
}

impl<S> Slot<S> {
    /// A freshly accepted connection `id` from `peer`, writable, with no
    /// timer armed yet ([`Slot::arm`]).
    pub fn new(
        sock: S,
        conn: Conn,
        peer: SocketAddr,
        id: ConnId,
        tls: Option<Box<TlsConn>>,
    ) -> Slot<S> {
        Slot {
            sock,
            conn,
            peer,
            timer: None,
            timer_at: NEVER,
            writable: true,
            dirty: false,
            id,
            tls,
            tls_sniffed: false,
            ip_counted: false,
            read_closed: false,
        }
    }

    /// The connection.
    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    /// The connection, to feed it input or a timer.
    pub fn conn_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Puts the slot on the dirty list (its turn ends once more at the end
    /// of the iteration); true the first time in an iteration, when the
    /// caller must push its key on the list.
    #[inline]
    pub fn mark_dirty(&mut self) -> bool {
        !std::mem::replace(&mut self.dirty, true)
    }

    /// The timer fired: the wheel dropped its entry.
    #[inline]
    pub fn timer_fired(&mut self) {
        self.timer = None;
        self.timer_at = NEVER;
    }

    /// Keeps the slot's timer (value `key`) due no later than `deadline`
    /// (a [`TurnResult`](crate::conn::TurnResult)'s). A timer already due
    /// earlier stays: it fires, the connection finds nothing to do, and is
    /// re-armed then (moving timers later on every turn would cost more).
    #[inline]
    pub fn arm(&mut self, wheel: &mut TimerWheel<usize>, key: usize, deadline: u64) {
        if deadline < self.timer_at {
            match self.timer {
                Some(id) if wheel.reschedule(id, deadline) => {}
                _ => self.timer = Some(wheel.insert(deadline, key)),
            }
            self.timer_at = deadline;
        }
    }
}

/// Which listener a connection came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ListenerKind {
    Main,
    Admin,
    Tls,
}

/// Connections and what operating on them needs, apart from the loop.
pub(super) struct Core {
    pub(super) conns: Slab<Slot>,
    /// The clock, cork, context pool, counters, settings and events the
    /// connections borrow (as an `Env`) during their turns.
    pub(super) host: Host,
    /// Connections with queued output, in the order they got it; the end of
    /// each iteration flushes at most `FLUSH_PER_ITERATION` of them (the
    /// rest wait for the next iteration, so their queues grow and are
    /// written together).
    pub(super) dirty: VecDeque<usize>,
    /// Dirty connections whose own input produced output this iteration
    /// (acks, replies): flushed in full at the end of the iteration.
    pub(super) replies: Vec<usize>,
}

impl Core {
    /// Queues an encoded frame to connection `key` (fan-out or reply).
    pub(super) fn queue(&mut self, key: usize, frame: Bytes) -> bool {
        let Some(slot) = self.conns.get_mut(key) else {
            return false;
        };
        let queued = self.host.enqueue(&mut slot.conn, frame);
        if slot.mark_dirty() {
            self.dirty.push_back(key);
        }
        queued
    }

    /// Flush `key` at the end of this poll iteration (once).
    pub(super) fn mark_dirty(&mut self, key: usize) {
        if let Some(slot) = self.conns.get_mut(key) {
            if slot.mark_dirty() {
                self.dirty.push_back(key);
            }
        }
    }

    /// The live connection with id `id` on this worker, if any.
    pub(super) fn key_of(&self, id: ConnId) -> Option<usize> {
        let key = id.key();
        self.conns.get(key).filter(|s| s.id == id).map(|_| key)
    }
}

impl Worker {
    pub(super) fn accept_all(&mut self) {
        self.accept_from(ListenerKind::Main);
        self.accept_from(ListenerKind::Tls);
    }

    pub(super) fn accept_admin(&mut self) {
        self.accept_from(ListenerKind::Admin);
    }

    pub(super) fn accept_from(&mut self, kind: ListenerKind) {
        if self.accept_paused {
            return;
        }
        loop {
            let listener = match kind {
                ListenerKind::Main => self.listener.as_ref(),
                ListenerKind::Admin => self.admin.as_ref(),
                ListenerKind::Tls => self.tls_listener.as_ref().map(|(l, _)| l),
            };
            let Some(listener) = listener else { return };
            match listener.accept() {
                Ok((sock, peer)) => self.add_conn(sock, peer, kind),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                    // Out of descriptors: keep serving, retry on the next
                    // tick or when a connection closes (the listener is
                    // edge-triggered, so it will not spin).
                    self.core.host.stats.accept_emfile += 1;
                    self.accept_paused = true;
                    let now = Instant::now();
                    if self.last_emfile_log.is_none_or(|t| now - t >= EMFILE_LOG_INTERVAL) {
                        self.last_emfile_log = Some(now);
                        warn!(
                            "worker {}: accept failed: {e}; {} connections open, retrying",
                            self.index,
                            self.core.conns.len()
                        );
                    }
                    return;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    warn!("worker {}: accept failed: {e}", self.index);
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, mut sock: TcpStream, peer: SocketAddr, kind: ListenerKind) {
        let tls = match (kind, &self.tls_listener) {
            (ListenerKind::Tls, Some((_, cfg))) => match TlsConn::new(cfg.clone()) {
                Ok(c) => Some(Box::new(c)),
                Err(e) => {
                    warn!("worker {}: TLS setup failed for {peer}: {e}", self.index);
                    return;
                }
            },
            _ => None,
        };
        let admin = kind == ListenerKind::Admin;
        // Every listener has TCP_NODELAY, and accepted sockets normally
        // inherit it (Linux does): verified on the first accept, then trusted.
        if !self.nodelay_checked {
            self.nodelay_checked = true;
            self.nodelay_inherited = sock.nodelay().unwrap_or(false);
        }
        if !self.nodelay_inherited {
            let _ = sock.set_nodelay(true);
        }
        let settings = &self.core.host.settings;
        if settings.socket_send_buffer > 0 {
            let _ = socket2::SockRef::from(&sock).set_send_buffer_size(settings.socket_send_buffer);
        }
        if settings.socket_recv_buffer > 0 {
            let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(settings.socket_recv_buffer);
        }
        let entry = self.core.conns.vacant_entry();
        let key = entry.key();
        if key > MAX_KEY {
            warn!("worker {}: connection table full, refusing {peer}", self.index);
            return;
        }
        if self.gens.len() <= key {
            self.gens.resize(key + 1, 0);
        }
        self.gens[key] = self.gens[key].wrapping_add(1);
        let id = ConnId::from_parts(self.index, key, self.gens[key]).on_node(self.node);
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.poll.registry().register(&mut sock, token_of(id), interest) {
            warn!("worker {}: register failed: {e}", self.index);
            return;
        }
        let conn = Conn::accepted(self.core.host.now, &self.core.host.settings, admin);
        let deadline = conn.deadline(&self.core.host.settings);
        entry.insert(Slot::new(sock, conn, peer, id, tls)).arm(&mut self.wheel, key, deadline);
        self.core.host.stats.accepted += 1;
        self.core.host.stats.open += 1;
        if let Some(limiter) = self.core.host.settings.ip_limiter.clone() {
            let unix_ms = unix_now_ms();
            match limiter.admit_detailed(peer.ip(), unix_ms) {
                Ok(()) => self.core.conns[key].ip_counted = true,
                Err(refusal) => {
                    let reject = crate::handshake::Reject::new(
                        429,
                        "too many connections from this address",
                    )
                    .with_header("Retry-After", refusal.retry_after_s().to_string());
                    let core = &mut self.core;
                    core.conns[key].conn.refuse_auth(&reject, &mut core.host.env());
                    self.finish(key);
                    return;
                }
            }
        }
        debug!("worker {} conn {id}: accepted from {peer}", self.index);
    }

    pub(super) fn conn_event(&mut self, token: usize, event: &Event) {
        let id = ConnId::from_local(self.index, token as u64).on_node(self.node);
        let key = id.key();
        // A slot freed and reused since the event was queued has another
        // generation: the event was for the connection that is gone.
        let Some(slot) = self.core.conns.get_mut(key).filter(|s| s.id == id) else {
            return;
        };
        if event.is_read_closed() {
            slot.read_closed = true;
        }
        if event.is_writable() {
            let w = &mut sink(&mut slot.tls, &mut slot.sock, &mut self.tls_scratch);
            let done = self.core.host.handle_writable(&mut slot.conn, w);
            slot.writable = done.writable;
            if done.resume_reading {
                self.ready.push(key);
            }
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read_conn(key);
        }
        self.end_turn(key);
    }

    /// After a connection's input: write its output, then act on what it
    /// asked of the application layer.
    pub(super) fn end_turn(&mut self, key: usize) {
        let id = self.core.conns.get(key).map(|s| s.id);
        // A connection that closed in this turn is removed only after its
        // events: a publish followed by a close frame in the same read still
        // reaches the room (the connection's identity is needed to check it).
        let closed = self.finish_turn(key);
        if !self.core.host.events.is_empty() {
            let mut events = std::mem::take(&mut self.core.host.events);
            for event in events.drain(..) {
                self.app_event(key, id, event);
            }
            self.core.host.events = events;
            // What the client asked for goes out at the end of this
            // iteration, not behind the fan-out backlog.
            if self.core.conns.get(key).is_some_and(|s| s.dirty && Some(s.id) == id) {
                self.core.replies.push(key);
            }
        }
        if closed && self.core.conns.get(key).is_some_and(|s| Some(s.id) == id) {
            self.remove(key);
        }
    }

    pub(super) fn read_conn(&mut self, key: usize) {
        let Some(slot) = self.core.conns.get(key) else {
            return;
        };
        if slot.conn.route() == Some(Route::PubSub) && self.bus_over_budget() {
            // Backpressure: what this client sends stays in its socket (and
            // then in its own send buffer) until the bus has room.
            self.bus_deferred.push(key);
            return;
        }
        let core = &mut self.core;
        let Some(slot) = core.conns.get_mut(key) else {
            return;
        };
        if slot.tls.is_some() {
            return self.read_tls(key);
        }
        for _ in 0..MAX_READS_PER_TURN {
            if !slot.conn.wants_read() {
                return;
            }
            match slot.sock.read(&mut self.scratch) {
                Ok(0) => {
                    slot.conn.handle_eof();
                    return;
                }
                Ok(n) => {
                    let mut env = core.host.env();
                    slot.conn.handle_input(&self.scratch[..n], &mut env);
                    if n < self.scratch.len() && !slot.read_closed {
                        // A short read drained the socket; the next edge
                        // brings us back. Not so after the peer's FIN: no
                        // edge follows it, so read on to the end of stream.
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    slot.conn.handle_io_error();
                    return;
                }
            }
        }
        // Read cap hit: come back after the others had their turn.
        self.ready.push(key);
    }

    /// Reads from a TLS connection: records in, plaintext to the connection.
    fn read_tls(&mut self, key: usize) {
        let core = &mut self.core;
        let Some(slot) = core.conns.get_mut(key) else { return };
        if !slot.tls_sniffed {
            let mut first = [0u8; 1];
            match slot.sock.peek(&mut first) {
                Ok(0) => return slot.conn.handle_eof(),
                Ok(_) => {
                    slot.tls_sniffed = true;
                    if looks_like_plain_http(&first) {
                        // Answer in plain text, then close.
                        slot.tls = None;
                        return slot.conn.refuse_plain_on_tls(&mut core.host.env());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return slot.conn.handle_io_error(),
            }
        }
        if !slot.conn.wants_read() {
            return;
        }
        let Some(tls) = slot.tls.as_deref_mut() else { return };
        let mut io = TlsIo { tls, sock: &mut slot.sock, scratch: &mut self.tls_scratch };
        let conn = &mut slot.conn;
        let mut plain = 0;
        let read = io.read(slot.read_closed, |p| {
            plain += p.len();
            conn.handle_input(p, &mut core.host.env());
            conn.wants_read() && plain < MAX_READS_PER_TURN * READ_CHUNK
        });
        match read {
            Ok(TlsRead::Drained) => {}
            Ok(TlsRead::More) => {
                if slot.conn.wants_read() {
                    // Read cap hit: come back after the others had their turn.
                    self.ready.push(key);
                }
            }
            Ok(TlsRead::Eof) => slot.conn.handle_eof(),
            Err(e) => {
                debug!("worker {} conn {}: TLS error: {e}", self.index, slot.id);
                slot.conn.handle_io_error();
            }
        }
    }

    pub(super) fn on_timer(&mut self, key: usize) {
        let core = &mut self.core;
        let Some(slot) = core.conns.get_mut(key) else {
            return;
        };
        slot.timer_fired();
        let mut env = core.host.env();
        slot.conn.handle_timer(&mut env);
        self.finish(key);
    }

    /// Ends a connection's turn through the driver ([`Host::end_turn`]) and
    /// makes the syscalls it asks for: half-close, drop, timer. A dirty
    /// connection's queue waits for `flush_dirty` (see [`EndTurn`]).
    pub(super) fn finish(&mut self, key: usize) {
        if self.finish_turn(key) {
            self.remove(key);
        }
    }

    /// [`Worker::finish`] without the removal: true when the connection is
    /// closed and must be removed.
    fn finish_turn(&mut self, key: usize) -> bool {
        let core = &mut self.core;
        let Some(slot) = core.conns.get_mut(key) else {
            core.host.cork.clear();
            return false;
        };
        let turn = EndTurn { writable: slot.writable, hold_queue: slot.dirty };
        let done = core.host.end_turn(
            &mut slot.conn,
            &mut sink(&mut slot.tls, &mut slot.sock, &mut self.tls_scratch),
            turn,
        );
        slot.writable = done.writable;
        if done.resume_reading {
            self.ready.push(key);
        }
        if done.half_close {
            // Then drain until EOF so the client reads all.
            let _ = slot.sock.shutdown(Shutdown::Write);
        }
        if done.closed {
            return true;
        }
        slot.arm(&mut self.wheel, key, done.deadline);
        false
    }

    fn remove(&mut self, key: usize) {
        // `mut` for the deregister outside Linux.
        #[allow(unused_mut)]
        let mut slot = self.core.conns.remove(key);
        if let Some(id) = slot.timer {
            self.wheel.cancel(id);
        }
        if let Some(tls) = &slot.tls {
            tls.forget_keys(&mut self.tls_scratch);
        }
        // On Linux, closing the descriptor (dropping the slot) removes it
        // from epoll: an explicit EPOLL_CTL_DEL would be one more syscall per
        // connection. (An event already returned for this key in the current
        // batch is harmless either way: handlers stop at WouldBlock.)
        #[cfg(not(target_os = "linux"))]
        let _ = self.poll.registry().deregister(&mut slot.sock);
        self.broker.handle_close(slot.id);
        if slot.ip_counted {
            if let Some(limiter) = &self.core.host.settings.ip_limiter {
                limiter.release(slot.peer.ip());
            }
        }
        let reason = slot.conn.close_reason().unwrap_or(CloseCause::IoError);
        if matches!(reason, CloseCause::AuthRefused | CloseCause::RateLimited) {
            let line = format!("conn {} from {}: {}", slot.id, slot.peer, reason.as_str());
            self.log_refusal(&line);
        }
        self.core.host.stats.count_close(reason);
        self.core.host.stats.open -= 1;
        debug!(
            "worker {} conn {}: closed ({}) peer {} phase {:?}",
            self.index,
            slot.id,
            reason.as_str(),
            slot.peer,
            slot.conn.phase()
        );
        if self.accept_paused {
            // A descriptor was just freed.
            self.accept_paused = false;
            drop(slot);
            self.accept_all();
            self.accept_admin();
        }
    }

    /// True when this worker's traffic to some worker is over the budget
    /// (counting what the broker holds for it and what is in flight).
    fn bus_over_budget(&self) -> bool {
        (0..self.peers.len()).any(|w| {
            w != self.index
                && self.bus.in_flight(w) + self.broker.pending_bytes(w) > self.bus.budget_bytes
        })
    }

    /// Reads the connections held back by the bus budget once it has room.
    pub(super) fn resume_bus_deferred(&mut self) {
        if self.bus_deferred.is_empty() || self.bus_over_budget() {
            return;
        }
        self.ready.append(&mut self.bus_deferred);
    }
}

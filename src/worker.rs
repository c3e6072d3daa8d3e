//! One worker: a mio poll loop on its own thread, its own SO_REUSEPORT
//! listener, a slab of connections, a timer wheel, its rooms and a scratch
//! read buffer.
//!
//! This is the only module that touches sockets. Per event it reads until
//! `WouldBlock` (bounded per turn for fairness), feeds the bytes to the
//! connection's sans-IO state machine, then writes everything that connection
//! produced with one vectored write. Application output (acks, fan-out
//! deliveries) is queued on the target connections and flushed once per poll
//! iteration, one `writev` per connection.
//!
//! Nothing here takes a lock: other workers are reached through their
//! control channel plus `mio::Waker`, with one batch per destination per
//! iteration. The channel is drained at the start of every iteration, before
//! socket events, so a subscription announced to a room's owner is always
//! seen before a publish that was sent after the subscriber got its ack.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::{debug, info, warn};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::conn::{AppEvent, Conn, Host, HttpRoute, Route, Settings, NEVER};
use crate::handshake::http_response;
use crate::id::{ConnId, MAX_KEY};
use crate::metrics::{render_prometheus, CloseReason, ProcessInfo, Stats};
use crate::outbox::Cork;
use crate::pubsub::broker::{Broker, BrokerEvent, BrokerSettings, Deliver, RoomHasher};
use crate::pubsub::{BusMsg, Payload};
use crate::timer::{TimerId, TimerWheel};
use crate::tls::{looks_like_plain_http, TlsIo, TlsRead};

/// Milliseconds per timer-wheel tick.
pub const TICK_MS: u64 = 100;
const WHEEL_SLOTS: usize = 1024;
const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const ADMIN: Token = Token(usize::MAX - 3);
const TLS_LISTENER: Token = Token(usize::MAX - 4);
/// Scratch read buffer per worker.
const READ_CHUNK: usize = 64 * 1024;
/// Reads per connection per turn before others get a go.
const MAX_READS_PER_TURN: usize = 4;
/// Most often an accept failure for lack of descriptors is logged.
const EMFILE_LOG_INTERVAL: Duration = Duration::from_secs(10);

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A metrics or presence query that other workers have not answered within
/// this many milliseconds is answered with what arrived (or an error).
const QUERY_TIMEOUT_MS: u64 = 5_000;

/// At most this many refusal lines per second per worker reach the log.
const REFUSAL_LOGS_PER_SEC: u32 = 10;

/// Shutdown state all workers share; written when shutdown starts and as
/// workers finish draining, never on the message path.
#[derive(Clone, Debug, Default)]
pub struct ShutdownFlags {
    /// Set when shutdown starts (readiness answers 503 from then on).
    pub started: Arc<AtomicBool>,
    /// Workers that have not finished draining yet.
    pub draining: Arc<AtomicUsize>,
}

/// The poll token of a connection: its id without the worker, so an event
/// is matched by key and generation (see [`ConnId::local`]).
fn token_of(id: ConnId) -> Token {
    Token(id.local() as usize)
}

/// Messages other threads send a worker.
#[derive(Debug)]
pub enum Control {
    /// Stop accepting, close every client with 1001, exit once all are gone
    /// or the drain deadline passes.
    Shutdown {
        /// Longest wait for clients to finish closing.
        drain: Duration,
    },
    /// Reply with a snapshot of the counters.
    Stats(Sender<Stats>),
    /// Pub/sub traffic from another worker's broker, for ours.
    Bus {
        /// The messages, in order.
        msgs: Vec<BusMsg>,
        /// Their cost, counted in the receiver's [`Bus`] slot until handled.
        cost: usize,
    },
    /// Graceful shutdown: the sender has processed everything it received
    /// before its shutdown order, and sent everything that caused.
    Barrier,
    /// Asks for a snapshot of the counters (for /metrics).
    StatsQuery {
        /// Query id at the origin worker.
        query: u64,
        /// Worker to answer.
        origin_worker: usize,
    },
    /// A worker's counters, in answer to [`Control::StatsQuery`].
    StatsReply {
        /// Query id at the origin worker.
        query: u64,
        /// The answering worker.
        worker: usize,
        /// Its snapshot.
        stats: Box<Stats>,
    },
}

/// What a worker shares with the rest of the process.
pub struct Process {
    /// A way to reach every worker (this one at its own index).
    pub peers: Vec<Peer>,
    /// Room owners; the same salt in every worker.
    pub hasher: RoomHasher,
    /// Shutdown state.
    pub shutdown: ShutdownFlags,
    /// The bus budget and what is in flight to each worker.
    pub bus: Bus,
}

/// The byte budget of the bus between workers. Each worker has a counter of
/// the bytes sent to it and not yet handled: senders add a batch's cost when
/// they send it, the receiver subtracts it once handled (one atomic add per
/// batch, not per message). A worker whose traffic to some worker is over
/// the budget stops reading from its pub/sub clients until it is not.
#[derive(Clone, Debug)]
pub struct Bus {
    in_flight: Arc<[AtomicUsize]>,
    budget_bytes: usize,
}

impl Bus {
    /// Counters for `workers` workers, each allowed `budget_bytes` in flight.
    pub fn new(workers: usize, budget_bytes: usize) -> Bus {
        Bus { in_flight: (0..workers).map(|_| AtomicUsize::new(0)).collect(), budget_bytes }
    }

    /// Bytes sent to `worker` and not yet handled.
    pub fn in_flight(&self, worker: usize) -> usize {
        self.in_flight.get(worker).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn sent(&self, worker: usize, cost: usize) {
        self.in_flight[worker].fetch_add(cost, Ordering::Relaxed);
    }

    fn handled(&self, worker: usize, cost: usize) {
        self.in_flight[worker].fetch_sub(cost, Ordering::Relaxed);
    }
}

/// A way to reach one worker.
#[derive(Clone)]
pub struct Peer {
    /// Its control channel.
    pub tx: Sender<Control>,
    /// Its waker.
    pub waker: Arc<Waker>,
}

struct Slot {
    sock: TcpStream,
    conn: Conn,
    peer: SocketAddr,
    timer: Option<TimerId>,
    timer_at: u64,
    writable: bool,
    dirty: bool,
    id: ConnId,
    /// rustls state for connections accepted on the TLS listener.
    tls: Option<Box<rustls::ServerConnection>>,
    /// The first byte of a TLS connection was checked for plain HTTP.
    tls_sniffed: bool,
    /// Counted by the per-IP limiter (release on close).
    ip_counted: bool,
    /// The peer's FIN was reported (no further readiness edge will come).
    read_closed: bool,
}

/// A connection's writer: the socket, or TLS over it.
enum Sink<'a> {
    Plain(&'a mut TcpStream),
    Tls(TlsIo<'a, TcpStream>),
}

fn sink<'a>(
    tls: &'a mut Option<Box<rustls::ServerConnection>>,
    sock: &'a mut TcpStream,
) -> Sink<'a> {
    match tls.as_deref_mut() {
        Some(tls) => Sink::Tls(TlsIo { tls, sock }),
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
            Sink::Plain(s) => s.write_vectored(bufs),
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

impl Slot {
    /// Pushes out TLS records rustls holds; false if the socket is full.
    fn flush_tls(&mut self) -> io::Result<bool> {
        match self.tls.as_deref_mut() {
            Some(tls) => TlsIo { tls, sock: &mut self.sock }.flush_records(),
            None => Ok(true),
        }
    }
}

/// Where a worker's listeners are and what they serve.
pub struct Listeners {
    /// The main listener (WebSocket and HTTP routes).
    pub main: std::net::TcpListener,
    /// The separate metrics/health listener, on one worker only.
    pub admin: Option<std::net::TcpListener>,
    /// The TLS listener and its configuration.
    pub tls: Option<(std::net::TcpListener, Arc<rustls::ServerConfig>)>,
}

/// Which listener a connection came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListenerKind {
    Main,
    Admin,
    Tls,
}

/// Connections and what operating on them needs, apart from the loop.
struct Core {
    conns: Slab<Slot>,
    /// The clock, cork, context pool, counters, settings and events the
    /// connections borrow (as an `Env`) during their turns.
    host: Host,
    /// Connections with queued output to flush at the end of the iteration.
    dirty: Vec<usize>,
}

impl Core {
    /// Queues an encoded frame to connection `key` (fan-out or reply).
    fn queue(&mut self, key: usize, frame: Bytes) -> bool {
        let Some(slot) = self.conns.get_mut(key) else {
            return false;
        };
        let mut env = self.host.env();
        let queued = slot.conn.enqueue(frame, &mut env);
        if !self.host.cork.is_empty() {
            // A slow-consumer close frame: it goes behind the queue.
            self.host.cork.spill_into(0, &mut slot.conn.outbox);
            self.host.cork.clear();
        }
        self.mark_dirty(key);
        queued
    }

    /// Flush `key` at the end of this poll iteration (once).
    fn mark_dirty(&mut self, key: usize) {
        if let Some(slot) = self.conns.get_mut(key) {
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// The live connection with id `id` on this worker, if any.
    fn key_of(&self, id: ConnId) -> Option<usize> {
        let key = id.key();
        self.conns.get(key).filter(|s| s.id == id).map(|_| key)
    }
}

impl Deliver for Core {
    fn deliver(&mut self, to: ConnId, frame: &Bytes) -> bool {
        match self.key_of(to) {
            Some(key) => self.queue(key, frame.clone()),
            None => false,
        }
    }

    fn deliver_direct(&mut self, to: ConnId, frame: &Bytes) -> bool {
        match self.key_of(to) {
            Some(key) if self.conns[key].conn.route() == Some(Route::PubSub) => {
                self.queue(key, frame.clone())
            }
            _ => false,
        }
    }
}

/// One worker's state. Create with [`Worker::new`], run with [`Worker::run`].
pub struct Worker {
    index: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    control: Receiver<Control>,
    core: Core,
    wheel: TimerWheel<usize>,
    scratch: Box<[u8]>,
    /// Connections that may have more input (read cap hit, or reading resumed).
    ready: Vec<usize>,
    start: Instant,
    accept_paused: bool,
    /// Accepted sockets come with TCP_NODELAY from their listener (all
    /// listeners set it; checked on the first accept).
    nodelay_inherited: bool,
    nodelay_checked: bool,
    last_emfile_log: Option<Instant>,
    gens: Vec<u32>,
    draining_until: Option<u64>,
    /// Rooms, subscriptions, sequencing and fan-out (sans-IO).
    broker: Broker,
    /// The bus budget (shared with every worker).
    bus: Bus,
    /// Pub/sub connections not read while the bus was over budget.
    bus_deferred: Vec<usize>,
    peers: Vec<Peer>,
    /// The worker's own messages for each other worker (barriers, stats
    /// queries); sent after the broker's batch for the same worker.
    outgoing: Vec<Vec<Control>>,
    metrics_queries: HashMap<u64, PendingMetrics>,
    next_query: u64,
    admin: Option<TcpListener>,
    tls_listener: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    /// Shared with the other workers: shutdown started, and how many are
    /// still draining (the one holding the metrics listener stays until the
    /// others are done, so health, readiness and metrics answer for the
    /// whole drain).
    shutdown: ShutdownFlags,
    /// This worker counted itself out of `shutdown.draining`.
    drained: bool,
    /// Drain deadline asked for, once a shutdown order arrived.
    shutdown_requested: Option<Duration>,
    /// Shutdown barriers received from other workers.
    barriers: usize,
    /// Refusal log lines: (second, lines this second, suppressed).
    refusal_log: (u64, u32, u64),
}

struct PendingMetrics {
    origin: ConnId,
    remaining: usize,
    stats: Vec<Stats>,
    deadline_ms: u64,
}

impl Worker {
    /// A worker owning `listener`, with its `poll` (whose waker is in
    /// `peers[index]`), its control channel and a way to reach every worker.
    pub fn new(
        index: usize,
        poll: Poll,
        listeners: Listeners,
        control: Receiver<Control>,
        settings: Settings,
        process: Process,
    ) -> io::Result<Worker> {
        let Process { peers, hasher, shutdown, bus } = process;
        let mut listener = TcpListener::from_std(listeners.main);
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let admin = match listeners.admin {
            Some(l) => {
                let mut l = TcpListener::from_std(l);
                poll.registry().register(&mut l, ADMIN, Interest::READABLE)?;
                Some(l)
            }
            None => None,
        };
        let tls_listener = match listeners.tls {
            Some((l, cfg)) => {
                let mut l = TcpListener::from_std(l);
                poll.registry().register(&mut l, TLS_LISTENER, Interest::READABLE)?;
                Some((l, cfg))
            }
            None => None,
        };
        let workers = peers.len();
        let broker = Broker::new(BrokerSettings {
            max_rooms: settings.max_rooms,
            max_room_members: settings.max_room_members,
            presence_max_members: settings.presence_max_members,
            max_data_bytes: settings.max_data_bytes,
            query_timeout_ms: QUERY_TIMEOUT_MS,
            ..BrokerSettings::new(index, workers, hasher)
        });
        Ok(Worker {
            index,
            poll,
            listener: Some(listener),
            control,
            core: Core {
                conns: Slab::new(),
                host: {
                    let mut host = Host::new(settings);
                    host.cork = Cork::with_capacity(READ_CHUNK);
                    host.now_unix = unix_now();
                    host
                },
                dirty: Vec::new(),
            },
            wheel: TimerWheel::new(WHEEL_SLOTS, 0),
            scratch: vec![0u8; READ_CHUNK].into_boxed_slice(),
            ready: Vec::new(),
            start: Instant::now(),
            accept_paused: false,
            nodelay_inherited: false,
            nodelay_checked: false,
            last_emfile_log: None,
            gens: Vec::new(),
            draining_until: None,
            broker,
            bus,
            bus_deferred: Vec::new(),
            peers,
            outgoing: (0..workers).map(|_| Vec::new()).collect(),
            metrics_queries: HashMap::new(),
            next_query: 0,
            admin,
            tls_listener,
            shutdown,
            drained: false,
            shutdown_requested: None,
            barriers: 0,
            refusal_log: (0, 0, 0),
        })
    }

    /// A waker for `poll`, for other threads to wake this worker.
    pub fn waker(poll: &Poll) -> io::Result<Arc<Waker>> {
        Ok(Arc::new(Waker::new(poll.registry(), WAKER)?))
    }

    /// Runs the loop until shutdown completes.
    pub fn run(mut self) -> io::Result<Stats> {
        let mut events = Events::with_capacity(1024);
        let mut fired = Vec::new();
        loop {
            self.resume_bus_deferred();
            let timeout = if !self.bus_deferred.is_empty() {
                // Held back by the bus budget: look again soon.
                Some(Duration::from_millis(1))
            } else if self.ready.is_empty() {
                let elapsed_ms = self.start.elapsed().as_millis() as u64;
                Some(Duration::from_millis(TICK_MS - elapsed_ms % TICK_MS))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            self.core.host.now_ms = self.start.elapsed().as_millis() as u64;
            self.core.host.now = self.core.host.now_ms / TICK_MS;
            self.core.host.now_unix = unix_now();
            if self.handle_control() {
                return Ok(self.core.host.stats);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    ADMIN => self.accept_admin(),
                    TLS_LISTENER => self.accept_from(ListenerKind::Tls),
                    WAKER => {}
                    Token(token) => self.conn_event(token, event),
                }
            }
            let ready = std::mem::take(&mut self.ready);
            for &key in &ready {
                if self.core.conns.contains(key) {
                    self.read_conn(key);
                    self.end_turn(key);
                }
            }
            if self.ready.is_empty() {
                self.ready = ready;
                self.ready.clear();
            }
            if self.core.host.now > self.wheel.current_tick() {
                self.wheel.advance(self.core.host.now, |_, key| fired.push(key));
                for key in fired.drain(..) {
                    self.on_timer(key);
                }
                if self.accept_paused {
                    self.accept_paused = false;
                    self.accept_all();
                    self.accept_admin();
                }
                self.expire_queries();
            }
            // Other workers first: a subscription announced to an owner must
            // be in its channel before the subscriber can see its ack.
            self.send_outgoing();
            self.flush_dirty();
            if let Some(until) = self.draining_until {
                if self.core.conns.is_empty() && !self.drained {
                    self.drained = true;
                    self.shutdown.draining.fetch_sub(1, Ordering::AcqRel);
                }
                // The worker with the metrics listener serves /readyz (503)
                // and /metrics until every worker is done.
                let others_done =
                    self.admin.is_none() || self.shutdown.draining.load(Ordering::Acquire) == 0;
                if (self.drained && others_done) || self.core.host.now >= until {
                    info!(
                        "worker {}: drained, {} connections dropped",
                        self.index,
                        self.core.conns.len()
                    );
                    return Ok(self.core.host.stats);
                }
            }
        }
    }

    /// Drains the control channel. Returns true when the worker should exit.
    fn handle_control(&mut self) -> bool {
        loop {
            match self.control.try_recv() {
                Ok(Control::Shutdown { drain }) => self.shutdown_ordered(drain),
                Ok(Control::Stats(reply)) => {
                    let _ = reply.send(self.snapshot());
                }
                Ok(Control::Bus { msgs, cost }) => {
                    for msg in msgs {
                        self.broker.handle_bus(msg, &mut self.core);
                    }
                    self.bus.handled(self.index, cost);
                }
                Ok(Control::Barrier) => {
                    self.barriers += 1;
                    self.maybe_begin_drain();
                }
                Ok(Control::StatsQuery { query, origin_worker }) => {
                    if origin_worker < self.outgoing.len() {
                        let stats = Box::new(self.snapshot());
                        let reply = Control::StatsReply { query, worker: self.index, stats };
                        self.outgoing[origin_worker].push(reply);
                    }
                }
                Ok(Control::StatsReply { query, worker, stats }) => {
                    self.handle_stats_reply(query, worker, *stats)
                }
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
    }

    /// Counters plus the gauges computed now.
    fn snapshot(&self) -> Stats {
        let mut s = self.core.host.stats.clone();
        s.rooms = self.broker.rooms() as u64;
        s.subscriptions = self.broker.subscriptions() as u64;
        let b = self.broker.stats();
        s.deliveries = b.deliveries;
        s.requests_refused = b.requests_refused;
        s.forbidden = b.forbidden;
        s.bus_bytes = self.bus.in_flight(self.index) as u64;
        s.queued_bytes = self.core.conns.iter().map(|(_, c)| c.conn.outbox.len() as u64).sum();
        s
    }

    /// Sends what the broker and the worker have for other workers: the
    /// broker's batch first, then the worker's own messages (a shutdown
    /// barrier must follow every bus message sent before it).
    fn send_outgoing(&mut self) {
        for (w, own) in self.outgoing.iter_mut().enumerate() {
            let (msgs, cost) = self.broker.poll_bus(w);
            if msgs.is_empty() && own.is_empty() {
                continue;
            }
            let peer = &self.peers[w];
            let mut sent = true;
            if !msgs.is_empty() {
                self.bus.sent(w, cost);
                let ok = peer.tx.send(Control::Bus { msgs, cost }).is_ok();
                if !ok {
                    self.bus.handled(w, cost);
                }
                sent &= ok;
            }
            for msg in own.drain(..) {
                sent &= peer.tx.send(msg).is_ok();
            }
            if sent {
                let _ = peer.waker.wake();
            }
        }
    }

    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.core.dirty);
        for &key in &dirty {
            if let Some(slot) = self.core.conns.get_mut(key) {
                slot.dirty = false;
                self.finish(key);
            }
        }
        if self.core.dirty.is_empty() {
            self.core.dirty = dirty;
            self.core.dirty.clear();
        }
    }

    /// A shutdown order: stop accepting, tell every other worker we are past
    /// everything sent before the order, then close clients once every other
    /// worker said the same (so no message acknowledged before the signal is
    /// still on its way to one of our subscribers).
    fn shutdown_ordered(&mut self, drain: Duration) {
        if self.shutdown_requested.is_some() {
            return;
        }
        self.shutdown_requested = Some(drain);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        if let Some((mut listener, _)) = self.tls_listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        for (w, out) in self.outgoing.iter_mut().enumerate() {
            if w != self.index {
                out.push(Control::Barrier);
            }
        }
        self.maybe_begin_drain();
    }

    fn maybe_begin_drain(&mut self) {
        if let Some(drain) = self.shutdown_requested {
            if self.barriers + 1 >= self.peers.len() {
                self.begin_shutdown(drain);
            }
        }
    }

    fn begin_shutdown(&mut self, drain: Duration) {
        if self.draining_until.is_some() {
            return;
        }
        info!("worker {}: closing {} connections", self.index, self.core.conns.len());
        let drain_ticks = (drain.as_millis() as u64).div_ceil(TICK_MS);
        self.draining_until = Some(self.core.host.now + drain_ticks);
        let keys: Vec<usize> = self.core.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let core = &mut self.core;
            let slot = &mut core.conns[key];
            if slot.conn.is_admin_only() {
                // A health or metrics request in flight is answered, not cut
                // (its handshake deadline still bounds it).
                continue;
            }
            let mut env = core.host.env();
            slot.conn.start_close(
                CloseCode::Away,
                "server shutting down",
                CloseReason::Shutdown,
                &mut env,
            );
            self.finish(key);
        }
    }

    fn accept_all(&mut self) {
        self.accept_from(ListenerKind::Main);
        self.accept_from(ListenerKind::Tls);
    }

    fn accept_admin(&mut self) {
        self.accept_from(ListenerKind::Admin);
    }

    fn accept_from(&mut self, kind: ListenerKind) {
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
            (ListenerKind::Tls, Some((_, cfg))) => match rustls::ServerConnection::new(cfg.clone())
            {
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
        let id = ConnId::from_parts(self.index, key, self.gens[key]);
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.poll.registry().register(&mut sock, token_of(id), interest) {
            warn!("worker {}: register failed: {e}", self.index);
            return;
        }
        let conn = Conn::accepted(self.core.host.now, &self.core.host.settings, admin);
        let deadline = conn.deadline(&self.core.host.settings);
        let timer = self.wheel.insert(deadline, key);
        entry.insert(Slot {
            sock,
            conn,
            peer,
            timer: Some(timer),
            timer_at: deadline,
            writable: true,
            dirty: false,
            id,
            tls,
            tls_sniffed: false,
            ip_counted: false,
            read_closed: false,
        });
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

    fn conn_event(&mut self, token: usize, event: &Event) {
        let id = ConnId::from_local(self.index, token as u64);
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
            slot.writable = true;
            if slot.tls.is_some() {
                match slot.flush_tls() {
                    Ok(done) => slot.writable = done,
                    Err(_) => slot.conn.handle_io_error(),
                }
            }
            self.flush(key);
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read_conn(key);
        }
        self.end_turn(key);
    }

    /// After a connection's input: write its output, then act on what it
    /// asked of the application layer.
    fn end_turn(&mut self, key: usize) {
        let id = self.core.conns.get(key).map(|s| s.id);
        self.finish(key);
        if !self.core.host.events.is_empty() {
            let mut events = std::mem::take(&mut self.core.host.events);
            for event in events.drain(..) {
                self.app_event(key, id, event);
            }
            self.core.host.events = events;
        }
    }

    /// Writes queued output; resumes reading when the queue drained enough.
    fn flush(&mut self, key: usize) {
        let slot = &mut self.core.conns[key];
        if slot.conn.outbox.is_empty() || !slot.writable {
            return;
        }
        match slot.conn.outbox.write_to(&mut sink(&mut slot.tls, &mut slot.sock)) {
            Ok(n) => {
                if !slot.conn.outbox.is_empty() {
                    slot.writable = false;
                }
                if slot.conn.handle_written(n, self.core.host.now, &self.core.host.settings) {
                    self.ready.push(key);
                }
            }
            Err(_) => slot.conn.handle_io_error(),
        }
    }

    fn read_conn(&mut self, key: usize) {
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
        let mut plain = 0;
        while slot.conn.wants_read() && plain < MAX_READS_PER_TURN * READ_CHUNK {
            let Some(tls) = slot.tls.as_deref_mut() else { return };
            let mut io = TlsIo { tls, sock: &mut slot.sock };
            match io.read_plain(&mut self.scratch) {
                Ok(TlsRead::Data(n)) => {
                    plain += n;
                    slot.conn.handle_input(&self.scratch[..n], &mut core.host.env());
                }
                Ok(TlsRead::WouldBlock) => return,
                Ok(TlsRead::Eof) => return slot.conn.handle_eof(),
                Err(e) => {
                    debug!("worker {} conn {}: TLS error: {e}", self.index, slot.id);
                    return slot.conn.handle_io_error();
                }
            }
        }
        if slot.conn.wants_read() {
            self.ready.push(key);
        }
    }

    fn on_timer(&mut self, key: usize) {
        let core = &mut self.core;
        let Some(slot) = core.conns.get_mut(key) else {
            return;
        };
        slot.timer = None;
        slot.timer_at = NEVER;
        let mut env = core.host.env();
        slot.conn.handle_timer(&mut env);
        self.finish(key);
    }

    /// Ends a connection's turn: write its output, apply backpressure,
    /// half-close or drop it, and keep its timer right.
    fn finish(&mut self, key: usize) {
        let core = &mut self.core;
        let Some(slot) = core.conns.get_mut(key) else {
            core.host.cork.clear();
            return;
        };
        if !core.host.cork.is_empty() {
            let mut w = sink(&mut slot.tls, &mut slot.sock);
            let done = core.host.write_cork(&mut slot.conn, &mut w, slot.writable);
            slot.writable = done.writable;
            if done.resume_reading {
                self.ready.push(key);
            }
        } else if !slot.conn.outbox.is_empty() && slot.writable {
            self.flush(key);
        }
        let core = &mut self.core;
        let slot = &mut core.conns[key];
        slot.conn.update_backpressure(&core.host.settings);
        if slot.tls.is_some() && slot.writable {
            match slot.flush_tls() {
                Ok(done) => slot.writable = done,
                Err(_) => slot.conn.handle_io_error(),
            }
        }
        if slot.conn.wants_shutdown() {
            if let Some(tls) = slot.tls.as_deref_mut() {
                TlsIo { tls, sock: &mut slot.sock }.close_notify();
            }
            if !slot.conn.close_when_flushed() {
                // Half-close, then drain until EOF so the client reads all.
                let _ = slot.sock.shutdown(Shutdown::Write);
            }
            slot.conn.shutdown_done();
        }
        if slot.conn.is_closed() {
            self.remove(key);
            return;
        }
        let want = slot.conn.deadline(&core.host.settings).max(core.host.now + 1);
        if want < slot.timer_at {
            match slot.timer {
                Some(id) if self.wheel.reschedule(id, want) => {}
                _ => slot.timer = Some(self.wheel.insert(want, key)),
            }
            slot.timer_at = want;
        }
    }

    fn remove(&mut self, key: usize) {
        // `mut` for the deregister outside Linux.
        #[allow(unused_mut)]
        let mut slot = self.core.conns.remove(key);
        if let Some(id) = slot.timer {
            self.wheel.cancel(id);
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
        let reason = slot.conn.close_reason().unwrap_or(CloseReason::IoError);
        if matches!(reason, CloseReason::AuthRefused | CloseReason::RateLimited) {
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

    /// Logs a refusal at info, at most [`REFUSAL_LOGS_PER_SEC`] lines a
    /// second, so a flood of bad clients cannot flood the log.
    fn log_refusal(&mut self, line: &str) {
        let second = self.core.host.now_ms / 1000;
        let (at, count, suppressed) = &mut self.refusal_log;
        if *at != second {
            if *suppressed > 0 {
                info!("worker {}: {} refusal log lines suppressed", self.index, suppressed);
            }
            (*at, *count, *suppressed) = (second, 0, 0);
        }
        if *count < REFUSAL_LOGS_PER_SEC {
            *count += 1;
            info!("worker {}: refused {line}", self.index);
        } else {
            *suppressed += 1;
        }
    }

    // ---- application layer: the broker's inputs and outputs ----

    /// Logs what the broker reported (refusals, rate-limited).
    fn broker_events(&mut self) {
        while let Some(event) = self.broker.poll_event() {
            match event {
                BrokerEvent::Forbidden { conn, subject, publish, room } => {
                    let subject = subject.as_deref().unwrap_or("anonymous");
                    let action = if publish { "publish to" } else { "subscribe to" };
                    let line = format!("conn {conn} ({subject}): may not {action} {room}");
                    self.log_refusal(&line);
                }
            }
        }
    }

    fn app_event(&mut self, key: usize, id: Option<ConnId>, event: AppEvent) {
        match event {
            AppEvent::HttpPublish(p) => {
                let payload = Payload::Json(Bytes::from(p.data));
                self.broker.publish(&p.room, None, payload, &mut self.core);
            }
            AppEvent::Opened(Route::PubSub) => {
                if let Some(id) = id {
                    self.broker.handle_open(id, &mut self.core);
                }
            }
            AppEvent::Opened(_) => {}
            AppEvent::Http(route) => {
                if let Some(id) = id {
                    self.http_route(key, id, route);
                }
            }
            AppEvent::Message(op, payload) => {
                let Some(id) = id else { return };
                let Some(slot) = self.core.conns.get(key).filter(|s| s.id == id) else { return };
                let checked = self.broker.check_request(id, slot.conn.identity(), op, &payload);
                let now_ms = self.core.host.now_ms;
                self.broker.dispatch(id, checked, &payload, now_ms, &mut self.core);
                self.broker_events();
            }
        }
    }

    fn http_route(&mut self, key: usize, id: ConnId, route: HttpRoute) {
        let text = "text/plain; charset=utf-8";
        let response = match route {
            HttpRoute::Health => http_response(200, text, b"ok\n", &[]),
            HttpRoute::Ready if self.shutdown.started.load(Ordering::Relaxed) => {
                http_response(503, text, b"shutting down\n", &[])
            }
            HttpRoute::Ready => http_response(200, text, b"ready\n", &[]),
            HttpRoute::Metrics => {
                let mut pending = PendingMetrics {
                    origin: id,
                    remaining: self.peers.len() - 1,
                    stats: Vec::new(),
                    deadline_ms: self.core.host.now_ms + QUERY_TIMEOUT_MS,
                };
                pending.stats.resize(self.peers.len(), Stats::default());
                pending.stats[self.index] = self.snapshot();
                if pending.remaining == 0 {
                    return self.answer_metrics(pending);
                }
                self.next_query += 1;
                let (query, origin_worker) = (self.next_query, self.index);
                for (w, out) in self.outgoing.iter_mut().enumerate() {
                    if w != origin_worker {
                        out.push(Control::StatsQuery { query, origin_worker });
                    }
                }
                self.metrics_queries.insert(query, pending);
                return;
            }
        };
        self.respond(key, response);
    }

    fn respond(&mut self, key: usize, response: Vec<u8>) {
        let Some(slot) = self.core.conns.get_mut(key) else { return };
        slot.conn.respond(Bytes::from(response));
        self.core.mark_dirty(key);
    }

    /// Answers a metrics request with what arrived. Workers that did not
    /// answer in time are left out and named in the log.
    fn answer_metrics(&mut self, p: PendingMetrics) {
        let Some(key) = self.core.key_of(p.origin) else { return };
        let process = ProcessInfo::read(self.shutdown.started.load(Ordering::Relaxed));
        let body = render_prometheus(&p.stats, &process);
        let response = http_response(200, "text/plain; version=0.0.4", body.as_bytes(), &[]);
        self.respond(key, response);
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
    fn resume_bus_deferred(&mut self) {
        if self.bus_deferred.is_empty() || self.bus_over_budget() {
            return;
        }
        self.ready.append(&mut self.bus_deferred);
    }

    /// Metrics queries past their deadline are answered with what arrived;
    /// the broker's own queries (presence) likewise.
    fn expire_queries(&mut self) {
        let now_ms = self.core.host.now_ms;
        self.broker.handle_timeout(now_ms, &mut self.core);
        if self.metrics_queries.is_empty() {
            return;
        }
        let expired: Vec<u64> = self
            .metrics_queries
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now_ms)
            .map(|(&q, _)| q)
            .collect();
        for q in expired {
            if let Some(p) = self.metrics_queries.remove(&q) {
                warn!(
                    "worker {}: {} worker(s) did not answer a metrics query in {} ms",
                    self.index, p.remaining, QUERY_TIMEOUT_MS
                );
                self.answer_metrics(p);
            }
        }
    }

    fn handle_stats_reply(&mut self, query: u64, worker: usize, stats: Stats) {
        let Some(p) = self.metrics_queries.get_mut(&query) else { return };
        if let Some(slot) = p.stats.get_mut(worker) {
            *slot = stats;
        }
        p.remaining -= 1;
        if p.remaining == 0 {
            if let Some(p) = self.metrics_queries.remove(&query) {
                self.answer_metrics(p);
            }
        }
    }
}

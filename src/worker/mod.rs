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
//!
//! The loop and its control live here: the public types other threads use
//! ([`Control`], [`Peer`], [`Process`], [`Bus`], [`ShutdownFlags`],
//! [`Listeners`]), the [`Worker`] state, [`Worker::new`], the [`Worker::run`]
//! loop, the control channel, the bus to other workers and shutdown/drain.
//! Socket I/O and the connection slots are in `slot`; the application layer
//! (broker delivery, HTTP routes, metrics queries, refusal log) is in `app`.
//! This file must not read or write sockets of connections itself.

mod app;
mod slot;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::info;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::conn::{Host, Settings};
use crate::metrics::{CloseCause, Stats};
use crate::outbox::Cork;
use crate::pubsub::broker::{Broker, BrokerSettings, RoomHasher, Sequencer};
use crate::pubsub::BusMsg;
use crate::timer::TimerWheel;

use self::app::PendingMetrics;
pub use self::slot::Slot;
use self::slot::{Core, ListenerKind};

/// Milliseconds per timer-wheel tick.
pub const TICK_MS: u64 = 100;
const WHEEL_SLOTS: usize = 1024;
const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const ADMIN: Token = Token(usize::MAX - 3);
const TLS_LISTENER: Token = Token(usize::MAX - 4);
/// Scratch read buffer per worker.
const READ_CHUNK: usize = 64 * 1024;
/// Dirty connections flushed per loop iteration at most, besides the
/// replies to what clients asked this iteration (acks: they all go out).
/// Under load the rest wait while the loop reads new input, so a
/// subscriber's queue collects the deliveries of several publishes and one
/// write carries them all; on loopback a write costs ~7 us whatever its
/// size, so writes per delivery set the fan-out's throughput. A loop with
/// fewer dirty connections flushes them all, as before. Measured
/// (BENCHMARKS.md, "Fan-out"): 100 rooms x 100 subscribers with 4
/// publishers 0.37 -> ~1.0 M deliveries/s; 1 room x 1,000 unchanged (all
/// its subscribers in one iteration); 256 is faster on many rooms but
/// splits a room of 1,000 and costs it 50% more CPU per delivery.
const FLUSH_PER_ITERATION: usize = 1024;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A metrics or presence query that other workers have not answered within
/// this many milliseconds is answered with what arrived (or an error).
const QUERY_TIMEOUT_MS: u64 = 5_000;

/// Shutdown state all workers share; written when shutdown starts and as
/// workers finish draining, never on the message path.
#[derive(Clone, Debug, Default)]
pub struct ShutdownFlags {
    /// Set when shutdown starts (readiness answers 503 from then on).
    pub started: Arc<AtomicBool>,
    /// Workers that have not finished draining yet.
    pub draining: Arc<AtomicUsize>,
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

/// Bytes of one connection slot in a worker's slab (`benches/scale.rs`
/// checks its `Slot<RawFd>` against it).
pub fn slot_size() -> usize {
    std::mem::size_of::<Slot>()
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
    /// This node's id in the cluster (0: a single node), in every
    /// connection id.
    pub node: u16,
    /// The cluster backplane, when configured.
    pub backplane: Option<crate::cluster::Link>,
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

    /// True when more than the budget is on its way to `worker`.
    pub fn over_budget(&self, worker: usize) -> bool {
        self.in_flight(worker) > self.budget_bytes
    }

    pub(crate) fn sent(&self, worker: usize, cost: usize) {
        self.in_flight[worker].fetch_add(cost, Ordering::Relaxed);
    }

    pub(crate) fn handled(&self, worker: usize, cost: usize) {
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

/// Where a worker's listeners are and what they serve.
pub struct Listeners {
    /// The main listener (WebSocket and HTTP routes).
    pub main: std::net::TcpListener,
    /// The separate metrics/health listener, on one worker only.
    pub admin: Option<std::net::TcpListener>,
    /// The TLS listener and its configuration.
    pub tls: Option<(std::net::TcpListener, Arc<rustls::ServerConfig>)>,
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
    /// TLS buffers the worker's `wss://` connections use one turn at a time
    /// (`tls::TlsScratch`): an idle TLS connection holds none of its own.
    tls_scratch: crate::tls::TlsScratch,
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
    /// Metrics queries answered without every worker's reply.
    metrics_timeouts: u64,
    /// Dashboard feeds (`/dashboard/ws`) on this worker, and when the next
    /// snapshot is due.
    dashboards: Vec<crate::id::ConnId>,
    next_dashboard_ms: u64,
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
    /// This node's id (in every connection id).
    node: u16,
    /// The cluster backplane, when configured.
    backplane: Option<crate::cluster::Link>,
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
        let Process { peers, hasher, shutdown, bus, node, backplane } = process;
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
            history: settings.history.clone(),
            // A replay leaves room in the write queue for live messages.
            max_replay_bytes: settings.max_queue_bytes / 2,
            sequencer: if backplane.is_some() { Sequencer::Cluster } else { Sequencer::LocalOwner },
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
                dirty: VecDeque::new(),
                replies: Vec::new(),
            },
            wheel: TimerWheel::new(WHEEL_SLOTS, 0),
            scratch: vec![0u8; READ_CHUNK].into_boxed_slice(),
            tls_scratch: crate::tls::TlsScratch::new(),
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
            metrics_timeouts: 0,
            dashboards: Vec::new(),
            next_dashboard_ms: 0,
            next_query: 0,
            admin,
            tls_listener,
            shutdown,
            drained: false,
            shutdown_requested: None,
            barriers: 0,
            refusal_log: (0, 0, 0),
            node,
            backplane,
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
            let timeout = if !self.bus_deferred.is_empty() || self.broker.has_cluster_output() {
                // Held back by the bus budget or a full backplane channel:
                // look again soon.
                Some(Duration::from_millis(1))
            } else if self.ready.is_empty() && self.core.dirty.is_empty() {
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
            if let Some(link) = &self.backplane {
                self.broker.set_backplane(link.shared.up(), link.credit());
            }
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
                self.dashboard_tick();
            }
            // Other workers first: a subscription announced to an owner must
            // be in its channel before the subscriber can see its ack.
            self.send_outgoing();
            self.flush_dirty();
            // A compressed fan-out frame is reused within one iteration only.
            self.core.host.deflate.forget_last();
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
        s.query_timeouts = b.query_timeouts + self.metrics_timeouts;
        s.forbidden = b.forbidden;
        s.history_bytes = b.history_bytes;
        s.history_messages = b.history_messages;
        s.history_evictions =
            [b.history_evictions.size, b.history_evictions.ttl, b.history_evictions.bytes];
        s.bus_bytes = self.bus.in_flight(self.index) as u64;
        (s.backplane_gaps, s.backplane_overloaded) = self.broker.cluster_counts();
        s.queued_bytes = self.core.conns.iter().map(|(_, c)| c.conn.queued_bytes() as u64).sum();
        s.compressed = self.core.host.deflate.compressed;
        s.compressed_reused = self.core.host.deflate.reused;
        s
    }

    /// Sends what the broker and the worker have for other workers: the
    /// broker's batch first, then the worker's own messages (a shutdown
    /// barrier must follow every bus message sent before it).
    fn send_outgoing(&mut self) {
        self.send_backplane();
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

    /// Hands the broker's commands to the backplane threads. A command the
    /// channel cannot take is answered here (a publish goes to its owner
    /// for local delivery); room commands wait for the next iteration.
    fn send_backplane(&mut self) {
        let Some(link) = &self.backplane else { return };
        let (cmds, room_cmds) = self.broker.poll_cluster();
        for cmd in cmds {
            if let Err(cmd) = link.send(cmd) {
                self.broker.backplane_refused(cmd, &mut self.core);
            }
        }
        let mut left = room_cmds.into_iter();
        while let Some(cmd) = left.next() {
            if let Err(cmd) = link.send_room(cmd) {
                let mut rest = vec![cmd];
                rest.extend(left);
                self.broker.unsent_room_cmds(rest);
                break;
            }
        }
    }

    /// The end of an iteration: the oldest dirty connections up to
    /// [`FLUSH_PER_ITERATION`] (the loop polls again without waiting while
    /// any are left), then every reply.
    fn flush_dirty(&mut self) {
        // Only what was dirty before: a removal here may queue more.
        let mut budget = FLUSH_PER_ITERATION;
        let mut left = self.core.dirty.len();
        while budget > 0 && left > 0 {
            left -= 1;
            let Some(key) = self.core.dirty.pop_front() else { break };
            if self.flush_one(key) {
                budget -= 1;
            }
        }
        let replies = std::mem::take(&mut self.core.replies);
        for &key in &replies {
            self.flush_one(key);
        }
        if self.core.replies.is_empty() {
            self.core.replies = replies;
            self.core.replies.clear();
        }
    }

    /// Ends the turn of dirty connection `key` with its queue written; false
    /// when it is gone or no longer dirty (flushed as a reply already).
    fn flush_one(&mut self, key: usize) -> bool {
        match self.core.conns.get_mut(key) {
            Some(slot) if slot.dirty => {
                slot.dirty = false;
                self.finish(key);
                true
            }
            _ => false,
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
            slot.conn.start_close(CloseCause::Shutdown, &mut env);
            self.finish(key);
        }
    }
}

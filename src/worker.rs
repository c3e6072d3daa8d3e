//! One worker: a mio poll loop on its own thread, its own SO_REUSEPORT
//! listener, a slab of connections, a timer wheel and a scratch read buffer.
//!
//! This is the only module that touches sockets. Per event it reads until
//! `WouldBlock` (bounded per turn for fairness), feeds the bytes to the
//! connection's sans-IO state machine, then writes everything that connection
//! produced with one vectored write. Nothing here takes a lock: other threads
//! talk to a worker through its control channel plus its `mio::Waker`.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::conn::{Conn, CtxPool, Env, Settings, NEVER};
use crate::metrics::{CloseReason, Stats};
use crate::outbox::Cork;
use crate::timer::{TimerId, TimerWheel};

/// Milliseconds per timer-wheel tick.
pub const TICK_MS: u64 = 100;
const WHEEL_SLOTS: usize = 1024;
const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Scratch read buffer per worker.
const READ_CHUNK: usize = 64 * 1024;
/// Reads per connection per turn before others get a go.
const MAX_READS_PER_TURN: usize = 4;
/// Most often an accept failure for lack of descriptors is logged.
const EMFILE_LOG_INTERVAL: Duration = Duration::from_secs(10);

fn token_of(key: usize) -> Token {
    Token(key)
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
    Stats(std::sync::mpsc::Sender<Stats>),
}

struct Slot {
    sock: TcpStream,
    conn: Conn,
    peer: SocketAddr,
    timer: Option<TimerId>,
    timer_at: u64,
    writable: bool,
    id: u64,
}

/// One worker's state. Create with [`Worker::new`], run with [`Worker::run`].
pub struct Worker {
    index: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    control: Receiver<Control>,
    conns: Slab<Slot>,
    wheel: TimerWheel<usize>,
    cork: Cork,
    pool: CtxPool,
    stats: Stats,
    settings: Settings,
    scratch: Box<[u8]>,
    /// Connections that may have more input (read cap hit, or reading resumed).
    ready: Vec<usize>,
    start: Instant,
    now: u64,
    accept_paused: bool,
    last_emfile_log: Option<Instant>,
    next_id: u64,
    draining_until: Option<u64>,
}

impl Worker {
    /// A worker owning `listener`, with its `poll` (whose waker the caller
    /// keeps) and control channel.
    pub fn new(
        index: usize,
        poll: Poll,
        listener: std::net::TcpListener,
        control: Receiver<Control>,
        settings: Settings,
    ) -> io::Result<Worker> {
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Worker {
            index,
            poll,
            listener: Some(listener),
            control,
            conns: Slab::new(),
            wheel: TimerWheel::new(WHEEL_SLOTS, 0),
            cork: Cork::with_capacity(READ_CHUNK),
            pool: CtxPool::default(),
            stats: Stats::default(),
            settings,
            scratch: vec![0u8; READ_CHUNK].into_boxed_slice(),
            ready: Vec::new(),
            start: Instant::now(),
            now: 0,
            accept_paused: false,
            last_emfile_log: None,
            next_id: 0,
            draining_until: None,
        })
    }

    /// The waker token other threads use via `Waker::new(poll.registry(), ...)`.
    pub fn waker(poll: &Poll) -> io::Result<Arc<Waker>> {
        Ok(Arc::new(Waker::new(poll.registry(), WAKER)?))
    }

    fn tick_now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 / TICK_MS
    }

    /// Runs the loop until shutdown completes.
    pub fn run(mut self) -> io::Result<Stats> {
        let mut events = Events::with_capacity(1024);
        let mut fired = Vec::new();
        loop {
            let timeout = if self.ready.is_empty() {
                let elapsed_ms = self.start.elapsed().as_millis() as u64;
                Some(Duration::from_millis(TICK_MS - elapsed_ms % TICK_MS))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.now = self.tick_now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {
                        if self.handle_control() {
                            return Ok(self.stats);
                        }
                    }
                    Token(key) => self.conn_event(key, event),
                }
            }
            let ready = std::mem::take(&mut self.ready);
            for key in &ready {
                if self.conns.contains(*key) {
                    self.read_conn(*key);
                    self.finish(*key);
                }
            }
            if self.ready.is_empty() {
                self.ready = ready;
                self.ready.clear();
            }
            if self.now > self.wheel.current_tick() {
                self.wheel.advance(self.now, |_, key| fired.push(key));
                for key in fired.drain(..) {
                    self.on_timer(key);
                }
                if self.accept_paused {
                    self.accept_paused = false;
                    self.accept_all();
                }
            }
            if let Some(until) = self.draining_until {
                if self.conns.is_empty() || self.now >= until {
                    info!(
                        "worker {}: drained, {} connections dropped",
                        self.index,
                        self.conns.len()
                    );
                    return Ok(self.stats);
                }
            }
        }
    }

    /// Returns true when the worker should exit now.
    fn handle_control(&mut self) -> bool {
        loop {
            match self.control.try_recv() {
                Ok(Control::Shutdown { drain }) => self.begin_shutdown(drain),
                Ok(Control::Stats(reply)) => {
                    let _ = reply.send(self.stats.clone());
                }
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
    }

    fn begin_shutdown(&mut self, drain: Duration) {
        if self.draining_until.is_some() {
            return;
        }
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let drain_ticks = (drain.as_millis() as u64).div_ceil(TICK_MS);
        self.draining_until = Some(self.now + drain_ticks);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let slot = &mut self.conns[key];
            let mut env = Env {
                now: self.now,
                cork: &mut self.cork,
                pool: &mut self.pool,
                stats: &mut self.stats,
                settings: &self.settings,
            };
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
        if self.accept_paused {
            return;
        }
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((sock, peer)) => self.add_conn(sock, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                    // Out of descriptors: keep serving, retry on the next
                    // tick or when a connection closes (the listener is
                    // edge-triggered, so it will not spin).
                    self.stats.accept_emfile += 1;
                    self.accept_paused = true;
                    let now = Instant::now();
                    if self
                        .last_emfile_log
                        .is_none_or(|t| now - t >= EMFILE_LOG_INTERVAL)
                    {
                        self.last_emfile_log = Some(now);
                        warn!(
                            "worker {}: accept failed: {e}; {} connections open, retrying",
                            self.index,
                            self.conns.len()
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

    fn add_conn(&mut self, mut sock: TcpStream, peer: SocketAddr) {
        let _ = sock.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut sock,
            token_of(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!("worker {}: register failed: {e}", self.index);
            return;
        }
        let conn = Conn::new(self.now, &self.settings);
        let deadline = conn.deadline(&self.settings);
        let timer = self.wheel.insert(deadline, key);
        self.next_id += 1;
        let id = ((self.index as u64) << 48) | self.next_id;
        entry.insert(Slot {
            sock,
            conn,
            peer,
            timer: Some(timer),
            timer_at: deadline,
            writable: true,
            id,
        });
        self.stats.accepted += 1;
        self.stats.open += 1;
        debug!("worker {} conn {id:x}: accepted from {peer}", self.index);
    }

    fn conn_event(&mut self, key: usize, event: &Event) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        if event.is_writable() {
            slot.writable = true;
            self.flush(key);
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read_conn(key);
        }
        self.finish(key);
    }

    /// Writes queued output; resumes reading when the queue drained enough.
    fn flush(&mut self, key: usize) {
        let slot = &mut self.conns[key];
        if slot.conn.outbox.is_empty() {
            return;
        }
        match slot.conn.outbox.write_to(&mut slot.sock) {
            Ok(n) => {
                if !slot.conn.outbox.is_empty() {
                    slot.writable = false;
                }
                if slot.conn.handle_written(n, self.now, &self.settings) {
                    self.ready.push(key);
                }
            }
            Err(_) => slot.conn.handle_io_error(),
        }
    }

    fn read_conn(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
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
                    let mut env = Env {
                        now: self.now,
                        cork: &mut self.cork,
                        pool: &mut self.pool,
                        stats: &mut self.stats,
                        settings: &self.settings,
                    };
                    slot.conn.handle_input(&self.scratch[..n], &mut env);
                    if n < self.scratch.len() {
                        // A short read drained the socket; the next edge
                        // brings us back.
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

    fn on_timer(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        slot.timer = None;
        slot.timer_at = NEVER;
        let mut env = Env {
            now: self.now,
            cork: &mut self.cork,
            pool: &mut self.pool,
            stats: &mut self.stats,
            settings: &self.settings,
        };
        slot.conn.handle_timer(&mut env);
        self.finish(key);
    }

    /// Ends a connection's turn: write its output, apply backpressure,
    /// half-close or drop it, and keep its timer right.
    fn finish(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            self.cork.clear();
            return;
        };
        if !self.cork.is_empty() {
            let written = if slot.conn.outbox.is_empty() && slot.writable {
                match self.cork.write_to(&mut slot.sock) {
                    Ok(n) => n,
                    Err(_) => {
                        slot.conn.handle_io_error();
                        0
                    }
                }
            } else {
                0
            };
            if written < self.cork.len() && !slot.conn.is_closed() {
                self.cork.spill_into(written, &mut slot.conn.outbox);
                slot.writable = false;
            }
            self.cork.clear();
            if slot.conn.handle_written(written, self.now, &self.settings) {
                self.ready.push(key);
            }
        }
        slot.conn.update_backpressure(&self.settings);
        if slot.conn.wants_shutdown() {
            let _ = slot.sock.shutdown(Shutdown::Write);
            slot.conn.shutdown_done();
        }
        if slot.conn.is_closed() {
            self.remove(key);
            return;
        }
        let want = slot.conn.deadline(&self.settings).max(self.now + 1);
        if want < slot.timer_at {
            match slot.timer {
                Some(id) if self.wheel.reschedule(id, want) => {}
                _ => slot.timer = Some(self.wheel.insert(want, key)),
            }
            slot.timer_at = want;
        }
    }

    fn remove(&mut self, key: usize) {
        let mut slot = self.conns.remove(key);
        if let Some(id) = slot.timer {
            self.wheel.cancel(id);
        }
        let _ = self.poll.registry().deregister(&mut slot.sock);
        let reason = slot.conn.close_reason().unwrap_or(CloseReason::IoError);
        self.stats.count_close(reason);
        self.stats.open -= 1;
        debug!(
            "worker {} conn {:x}: closed ({}) peer {} phase {:?}",
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
        }
    }
}

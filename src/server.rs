//! Starting and stopping a set of workers: one SO_REUSEPORT listener per
//! worker on the same address, so the kernel spreads new connections over
//! the workers and accepting never serialises them.
//!
//! A worker thread that panics is caught where it is spawned: the panic is
//! logged with the worker's index and message, recorded for
//! [`Server::panicked_worker`], and [`Server::join`] stops waiting for the
//! other workers (they would wait forever for the dead one's drain). The
//! binary then exits with status 70 so a supervisor restarts the process.

use std::any::Any;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use mio::{Poll, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::conn::Settings;
use crate::metrics::Stats;
use crate::pubsub::broker::RoomHasher;
use crate::tls::TlsError;
use crate::worker::{Bus, Control, Listeners, Peer, Process, ShutdownFlags, Worker, TICK_MS};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Why [`Server::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener cannot be bound (address in use, no permission, ...).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// A worker's poll, waker or thread cannot be created.
    #[error("cannot start worker {index}: {source}")]
    Worker {
        /// The worker's index.
        index: usize,
        /// Why.
        source: io::Error,
    },
}

/// Binds one listener for `addr`, naming the address in the error.
fn bind(addr: SocketAddr) -> Result<(std::net::TcpListener, SocketAddr), StartError> {
    let bound = |source| StartError::Bind { addr, source };
    let listener = bind_reuseport(addr).map_err(bound)?;
    let local = listener.local_addr().map_err(bound)?;
    Ok((listener, local))
}

/// Listen backlog per worker listener.
const BACKLOG: i32 = 4096;

/// Test-only: makes one worker thread panic, so tests can check that a dead
/// worker stops the process instead of hanging it. `N` panics worker `N` as
/// it starts; `N@drain` makes worker `N` (which then serves nothing) panic
/// when graceful shutdown begins, before it reports its drain. Read once by
/// [`Server::start`]; nothing a client sends can reach it. Never set it in
/// production.
pub const TEST_PANIC_WORKER_ENV: &str = "WSEDGE_TEST_PANIC_WORKER";

/// A worker thread that ended in a panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerPanic {
    /// The worker's index (its thread is `wsedge-worker-INDEX`).
    pub index: usize,
    /// The panic message.
    pub message: String,
}

/// When the test-only trigger makes a worker panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TestPanic {
    /// As the thread starts.
    AtStart,
    /// When graceful shutdown begins.
    AtDrain,
}

/// Parses [`TEST_PANIC_WORKER_ENV`]: `N` or `N@drain`.
fn test_panic_trigger(value: Option<String>) -> Option<(usize, TestPanic)> {
    let value = value?;
    match value.split_once('@') {
        Some((n, "drain")) => Some((n.parse().ok()?, TestPanic::AtDrain)),
        None => Some((value.parse().ok()?, TestPanic::AtStart)),
        Some(_) => None,
    }
}

/// The text of a panic payload (`panic!` makes a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not text)".to_string()
    }
}

struct Handle {
    control: Sender<Control>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<io::Result<Stats>>>,
}

/// A running server: its address and its workers.
pub struct Server {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    workers: Vec<Handle>,
    shutting_down: Arc<AtomicBool>,
    /// Each worker thread sends its index here as it ends.
    exits: Receiver<usize>,
    /// The first worker that panicked.
    panicked: Arc<OnceLock<WorkerPanic>>,
    /// This node's id in the cluster (0: a single node).
    node: u16,
}

/// A cloneable handle that can start a graceful shutdown from any thread
/// (e.g. a signal handler thread).
#[derive(Clone)]
pub struct ShutdownHandle {
    peers: Vec<Peer>,
    shutting_down: Arc<AtomicBool>,
}

impl ShutdownHandle {
    /// Starts graceful shutdown with drain deadline `drain`. Returns false if
    /// it had already started.
    pub fn shutdown(&self, drain: Duration) -> bool {
        if self.shutting_down.swap(true, Ordering::SeqCst) {
            return false;
        }
        for p in &self.peers {
            if p.tx.send(Control::Shutdown { drain }).is_ok() {
                let _ = p.waker.wake();
            }
        }
        true
    }
}

/// Binds one non-blocking listener with SO_REUSEADDR and SO_REUSEPORT.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux, which
    // saves a setsockopt per connection (workers check it once).
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

impl Server {
    /// Binds the listeners and starts the workers. With port 0 the first
    /// listener picks a port and the others join it.
    pub fn start(config: &Config) -> Result<Server, StartError> {
        let count = config.worker_count();
        let tls = match config.tls.listen_addr() {
            Some(tls_addr) => {
                let cfg = crate::tls::load_server_config_with(
                    &config.tls.cert,
                    &config.tls.key,
                    config.tls.cipher_order,
                )?;
                Some((tls_addr, cfg))
            }
            None => None,
        };
        let (first, addr) = bind(config.server.listen)?;
        let mut listeners = vec![first];
        for _ in 1..count {
            listeners.push(bind(addr)?.0);
        }
        let settings = Settings::from_config(config, TICK_MS);
        // Every worker can reach every other: build all polls, wakers and
        // channels first, then hand each worker the full peer list.
        let mut polls = Vec::with_capacity(count);
        let mut receivers = Vec::with_capacity(count);
        let mut peers = Vec::with_capacity(count);
        for index in 0..count {
            let failed = |source| StartError::Worker { index, source };
            let poll = Poll::new().map_err(failed)?;
            let waker = Worker::waker(&poll).map_err(failed)?;
            let (tx, rx) = mpsc::channel();
            polls.push(poll);
            receivers.push(rx);
            peers.push(Peer { tx, waker });
        }
        let (mut admin, metrics_addr) =
            match config.metrics.listen_addr().filter(|_| config.metrics.enabled) {
                Some(a) => {
                    let (listener, bound) = bind(a)?;
                    (Some(listener), Some(bound))
                }
                None => (None, None),
            };
        let mut tls_addr = None;
        let mut tls_listeners = Vec::new();
        if let Some((a, cfg)) = &tls {
            let (first, bound) = bind(*a)?;
            tls_addr = Some(bound);
            tls_listeners.push(Some((first, cfg.clone())));
            for _ in 1..count {
                tls_listeners.push(Some((bind(bound)?.0, cfg.clone())));
            }
        } else {
            tls_listeners.resize_with(count, || None);
        }
        let mut tls_listeners = tls_listeners.into_iter();
        let test_panic = test_panic_trigger(std::env::var(TEST_PANIC_WORKER_ENV).ok());
        let (exit_tx, exits) = mpsc::channel();
        let panicked = Arc::new(OnceLock::new());
        let shutting_down = Arc::new(AtomicBool::new(false));
        let draining = Arc::new(AtomicUsize::new(count));
        let mut workers = Vec::with_capacity(count);
        // One salt for the process: every worker must agree on room owners.
        let hasher = RoomHasher::new();
        let bus = Bus::new(count, config.pubsub.bus_budget_bytes);
        // The cluster backplane's threads, when `[cluster] redis_url` is set.
        let (node, backplane) = if config.cluster.is_on() {
            let node = crate::cluster::node_id(config);
            let link =
                crate::cluster::start(config, node, peers.clone(), hasher.clone(), bus.clone())
                    .map_err(|source| StartError::Worker { index: 0, source })?;
            (node, Some(link))
        } else {
            (0, None)
        };
        let parts = listeners.into_iter().zip(polls).zip(receivers).enumerate();
        for (index, ((main, poll), rx)) in parts {
            let listeners =
                Listeners { main, admin: admin.take(), tls: tls_listeners.next().flatten() };
            let worker = Worker::new(
                index,
                poll,
                listeners,
                rx,
                settings.clone(),
                Process {
                    peers: peers.clone(),
                    hasher: hasher.clone(),
                    bus: bus.clone(),
                    node,
                    backplane: backplane.clone(),
                    shutdown: ShutdownFlags {
                        started: shutting_down.clone(),
                        draining: draining.clone(),
                    },
                },
            )
            .map_err(|source| StartError::Worker { index, source })?;
            let trigger = test_panic.filter(|(n, _)| *n == index).map(|(_, when)| when);
            let (exit_tx, panicked) = (exit_tx.clone(), panicked.clone());
            let started = shutting_down.clone();
            let thread = std::thread::Builder::new()
                .name(format!("wsedge-worker-{index}"))
                .spawn(move || {
                    let outcome =
                        std::panic::catch_unwind(AssertUnwindSafe(move || match trigger {
                            Some(TestPanic::AtStart) => {
                                panic!("test-only panic ({TEST_PANIC_WORKER_ENV}={index})")
                            }
                            Some(TestPanic::AtDrain) => {
                                drop(worker);
                                while !started.load(Ordering::SeqCst) {
                                    std::thread::sleep(Duration::from_millis(10));
                                }
                                panic!("test-only panic ({TEST_PANIC_WORKER_ENV}={index}@drain)")
                            }
                            None => worker.run(),
                        }));
                    let result = outcome.unwrap_or_else(|payload| {
                        let message = panic_message(&*payload);
                        log::error!("worker {index} panicked: {message}");
                        let _ = panicked.set(WorkerPanic { index, message: message.clone() });
                        Err(io::Error::other(format!("worker {index} panicked: {message}")))
                    });
                    let _ = exit_tx.send(index);
                    result
                })
                .map_err(|source| StartError::Worker { index, source })?;
            let peer = &peers[index];
            workers.push(Handle {
                control: peer.tx.clone(),
                waker: peer.waker.clone(),
                thread: Some(thread),
            });
        }
        Ok(Server { addr, metrics_addr, tls_addr, workers, shutting_down, exits, panicked, node })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The wss:// address, when a TLS listener is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The separate metrics/health address, when configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// A handle for starting graceful shutdown from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            peers: self
                .workers
                .iter()
                .map(|w| Peer { tx: w.control.clone(), waker: w.waker.clone() })
                .collect(),
            shutting_down: self.shutting_down.clone(),
        }
    }

    /// True when some worker has exited although no shutdown was asked for
    /// (a bug: the process should stop rather than serve with a hole).
    pub fn worker_died(&self) -> bool {
        !self.shutting_down.load(Ordering::Relaxed)
            && self.workers.iter().any(|w| w.thread.as_ref().is_some_and(|t| t.is_finished()))
    }

    /// The first worker thread that panicked, if any. The other workers
    /// may never finish after that (graceful shutdown waits for every
    /// worker's drain), so the process should stop.
    pub fn panicked_worker(&self) -> Option<&WorkerPanic> {
        self.panicked.get()
    }

    /// True once every worker has exited.
    pub fn is_finished(&self) -> bool {
        self.workers.iter().all(|w| w.thread.as_ref().is_none_or(|t| t.is_finished()))
    }

    /// This node's id in the cluster (in every connection id); 0 for a
    /// single node.
    pub fn node_id(&self) -> u16 {
        self.node
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Counters of each worker, in worker order (a worker that does not
    /// answer within 5 s contributes zeros).
    pub fn worker_stats(&self) -> Vec<Stats> {
        self.workers
            .iter()
            .map(|w| {
                let (tx, rx) = mpsc::channel();
                if w.control.send(Control::Stats(tx)).is_ok() && w.waker.wake().is_ok() {
                    rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default()
                } else {
                    Stats::default()
                }
            })
            .collect()
    }

    /// Counters of all workers, summed.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for s in self.worker_stats() {
            total.merge(&s);
        }
        total
    }

    /// Asks every worker to close its clients with 1001 and exit within `drain`.
    pub fn begin_shutdown(&self, drain: Duration) {
        self.shutdown_handle().shutdown(drain);
    }

    /// Shuts down (see [`Server::begin_shutdown`]) and waits for the workers.
    /// Returns the summed final counters.
    pub fn shutdown(mut self, drain: Duration) -> Stats {
        self.begin_shutdown(drain);
        self.join()
    }

    /// Waits for every worker to exit. If a worker panics, stops waiting
    /// at once and returns what the workers joined so far reported: the
    /// others may never finish (see [`Server::panicked_worker`]).
    pub fn join(&mut self) -> Stats {
        let mut total = Stats::default();
        let mut left = self.workers.iter().filter(|w| w.thread.is_some()).count();
        while left > 0 {
            if let Some(p) = self.panicked.get() {
                log::error!("not waiting for the other workers: worker {} panicked", p.index);
                break;
            }
            // Every thread sends its index as it ends, a panicking one too.
            let Ok(index) = self.exits.recv() else { break };
            if let Some(t) = self.workers.get_mut(index).and_then(|w| w.thread.take()) {
                left -= 1;
                match t.join() {
                    Ok(Ok(s)) => total.merge(&s),
                    Ok(Err(e)) => log::error!("worker {index} failed: {e}"),
                    Err(_) => log::error!("worker {index} panicked"),
                }
            }
        }
        total
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.workers.iter().any(|w| w.thread.is_some()) {
            self.begin_shutdown(Duration::from_millis(200));
            self.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_panic_trigger_is_parsed_strictly() {
        assert_eq!(test_panic_trigger(None), None);
        assert_eq!(test_panic_trigger(Some("1".into())), Some((1, TestPanic::AtStart)));
        assert_eq!(test_panic_trigger(Some("0@drain".into())), Some((0, TestPanic::AtDrain)));
        assert_eq!(test_panic_trigger(Some("x".into())), None);
        assert_eq!(test_panic_trigger(Some("1@later".into())), None);
    }

    #[test]
    fn panic_messages_are_read_from_str_and_string_payloads() {
        assert_eq!(panic_message(&"static"), "static");
        assert_eq!(panic_message(&String::from("owned")), "owned");
        assert!(panic_message(&42u8).contains("not text"));
    }

    /// Workers skip the per-connection setsockopt when accepted sockets
    /// inherit TCP_NODELAY from the listener; small frames must never wait
    /// for Nagle's algorithm either way.
    #[test]
    fn accepted_sockets_come_with_nodelay() {
        let listener = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        listener.set_nonblocking(false).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY not inherited from the listener");
    }
}

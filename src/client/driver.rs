//! [`Driver`]: a mio loop driving any number of [`Session`]s, the one part
//! of the client that touches sockets.
//!
//! Per session it holds at most one non-blocking `TcpStream`, with a rustls
//! `ClientConnection` on top for `wss://`. Readiness is edge-triggered: a
//! readable socket is read until `WouldBlock` (EOF and errors go to the
//! session), the session's output is written until `WouldBlock` and
//! `WRITABLE` interest is kept only while bytes remain. Timers are a binary
//! heap of each session's `poll_timeout`. Events are collected in order
//! and taken with [`Driver::next_event`].
//!
//! A [`mio::Waker`] ([`Driver::waker`]) lets other threads (a stdin reader,
//! a signal thread) end a [`Driver::turn`] early.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::pki_types::ServerName;
use rustls::ClientConnection;
use slab::Slab;

use super::session::Session;
use super::{ClientConfig, Event};

/// The token of the waker.
const WAKER: Token = Token(usize::MAX);
/// Bits of a token that hold the socket's generation.
const GEN_BITS: u32 = 20;
/// Bytes read per `read` call.
const SCRATCH: usize = 64 << 10;

/// A session's handle in its driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionId(pub usize);

struct Sock {
    stream: TcpStream,
    /// Addresses not tried yet, should the connect to this one fail.
    addrs: VecDeque<SocketAddr>,
    tls: Option<Box<ClientConnection>>,
    connected: bool,
    interest: Interest,
}

struct Entry {
    session: Session,
    sock: Option<Sock>,
    /// Generation of the current socket, in its token.
    gen: usize,
    /// The deadline pushed on the heap for this session, if any.
    scheduled: Option<Instant>,
}

/// Drives sessions over TCP and TLS (see the module docs).
pub struct Driver {
    poll: Poll,
    events: Events,
    entries: Slab<Entry>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    scratch: Vec<u8>,
    ready: Vec<(Token, bool, bool)>,
    out: VecDeque<(SessionId, Event)>,
    waker: Option<Arc<Waker>>,
    system_tls: Option<Arc<rustls::ClientConfig>>,
}

impl Driver {
    /// An empty driver.
    pub fn new() -> io::Result<Driver> {
        Ok(Driver {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            entries: Slab::new(),
            timers: BinaryHeap::new(),
            scratch: vec![0; SCRATCH],
            ready: Vec::new(),
            out: VecDeque::new(),
            waker: None,
            system_tls: None,
        })
    }

    /// A waker that ends the current or next [`Driver::turn`] early.
    pub fn waker(&mut self) -> io::Result<Arc<Waker>> {
        if self.waker.is_none() {
            self.waker = Some(Arc::new(Waker::new(self.poll.registry(), WAKER)?));
        }
        Ok(self.waker.clone().expect("bug: waker just made"))
    }

    /// Starts a session for `cfg` (it connects at once).
    pub fn add(&mut self, cfg: Arc<ClientConfig>) -> SessionId {
        let now = Instant::now();
        let session = Session::new(cfg, now);
        let key = self.entries.insert(Entry { session, sock: None, gen: 0, scheduled: None });
        self.settle(key, now);
        SessionId(key)
    }

    /// Drops a session and its socket at once (no close handshake).
    pub fn remove(&mut self, id: SessionId) {
        if let Some(mut e) = self.entries.try_remove(id.0) {
            if let Some(mut s) = e.sock.take() {
                let _ = self.poll.registry().deregister(&mut s.stream);
            }
        }
    }

    /// Sessions in the driver.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the driver has no session.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The session `id`.
    pub fn session(&self, id: SessionId) -> Option<&Session> {
        self.entries.get(id.0).map(|e| &e.session)
    }

    /// Runs `f` on session `id` with the current time, then writes what it
    /// queued and collects its events. `None` if there is no such session.
    pub fn with_session<R>(
        &mut self,
        id: SessionId,
        f: impl FnOnce(&mut Session, Instant) -> R,
    ) -> Option<R> {
        let now = Instant::now();
        let r = f(&mut self.entries.get_mut(id.0)?.session, now);
        self.settle(id.0, now);
        Some(r)
    }

    /// True when every session has stopped for good.
    pub fn all_stopped(&self) -> bool {
        self.entries.iter().all(|(_, e)| e.session.is_stopped())
    }

    /// The next event of any session, in the order they happened.
    pub fn next_event(&mut self) -> Option<(SessionId, Event)> {
        self.out.pop_front()
    }

    /// True if events are waiting.
    pub fn has_events(&self) -> bool {
        !self.out.is_empty()
    }

    /// Waits for socket readiness, a timer or the waker, at most `max_wait`
    /// (`None`: until something happens), and handles what happened.
    pub fn turn(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        let now = Instant::now();
        let next_timer = self.timers.peek().map(|Reverse((t, _))| t.saturating_duration_since(now));
        let wait = match (next_timer, max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match self.poll.poll(&mut self.events, wait) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        self.ready.clear();
        self.ready.extend(self.events.iter().map(|ev| {
            (ev.token(), ev.is_readable() || ev.is_read_closed() || ev.is_error(), ev.is_writable())
        }));
        let now = Instant::now();
        for i in 0..self.ready.len() {
            let (token, readable, writable) = self.ready[i];
            if token == WAKER {
                continue;
            }
            let key = token.0 >> GEN_BITS;
            let gen = token.0 & ((1 << GEN_BITS) - 1);
            match self.entries.get(key) {
                Some(e) if e.gen & ((1 << GEN_BITS) - 1) == gen && e.sock.is_some() => {}
                _ => continue,
            }
            self.on_ready(key, readable, writable, now);
        }
        self.fire_timers(now);
        Ok(())
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((t, key))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(e) = self.entries.get_mut(key) else { continue };
            if e.scheduled != Some(t) {
                continue;
            }
            e.scheduled = None;
            e.session.handle_timeout(now);
            self.settle(key, now);
        }
    }

    fn on_ready(&mut self, key: usize, readable: bool, writable: bool, now: Instant) {
        let e = &mut self.entries[key];
        let Some(sock) = &mut e.sock else { return };
        if !sock.connected {
            // mio: on a writable (or error) event, `take_error` then
            // `peer_addr` tell whether the connect succeeded.
            let failed = match sock.stream.take_error() {
                Ok(Some(err)) | Err(err) => Some(err),
                Ok(None) => match sock.stream.peer_addr() {
                    Ok(_) => None,
                    Err(err) if err.kind() == io::ErrorKind::NotConnected => return,
                    Err(err) => Some(err),
                },
            };
            match failed {
                None => sock.connected = true,
                Some(err) => {
                    // The next address of the name, if any (`localhost` may
                    // be ::1 first while the server listens on 127.0.0.1).
                    let _ = self.poll.registry().deregister(&mut sock.stream);
                    let token = Token(key << GEN_BITS | (e.gen & ((1 << GEN_BITS) - 1)));
                    match connect_next(&mut sock.addrs, &self.poll, token) {
                        Ok(stream) => sock.stream = stream,
                        Err(last) => {
                            let why = if sock.addrs.is_empty() && last.is_empty() {
                                format!("connect: {err}")
                            } else {
                                last
                            };
                            e.session.handle_io_error(why, now);
                        }
                    }
                    return self.settle(key, now);
                }
            }
        }
        if readable || writable {
            read_all(&mut self.scratch, sock, &mut e.session, now);
        }
        self.settle(key, now);
    }

    /// After anything happened to session `key`: replace or drop its
    /// socket as it asks, write its output, set interest, collect events
    /// and schedule its timer.
    fn settle(&mut self, key: usize, now: Instant) {
        let e = &mut self.entries[key];
        loop {
            if e.session.conn_finished() {
                if let Some(mut s) = e.sock.take() {
                    if s.connected {
                        // Best effort: the close frame, if any.
                        let _ = write_out(&mut s, &mut e.session);
                    }
                    let _ = self.poll.registry().deregister(&mut s.stream);
                }
                e.session.release_conn();
            }
            if e.session.take_connect() {
                if let Some(mut s) = e.sock.take() {
                    let _ = self.poll.registry().deregister(&mut s.stream);
                }
                e.gen = e.gen.wrapping_add(1);
                let token = Token(key << GEN_BITS | (e.gen & ((1 << GEN_BITS) - 1)));
                match open(e.session.config(), &mut self.system_tls, &self.poll, token) {
                    Ok(s) => e.sock = Some(s),
                    Err(err) => {
                        e.session.handle_io_error(err, now);
                        continue;
                    }
                }
            }
            if let Some(s) = &mut e.sock {
                if s.connected {
                    if let Err(err) = write_out(s, &mut e.session) {
                        e.session.handle_io_error(format!("write: {err}"), now);
                        continue;
                    }
                }
                let want = if !s.connected || wants_write(s, &e.session) {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                if want != s.interest {
                    let token = Token(key << GEN_BITS | (e.gen & ((1 << GEN_BITS) - 1)));
                    if self.poll.registry().reregister(&mut s.stream, token, want).is_ok() {
                        s.interest = want;
                    }
                }
            }
            break;
        }
        while let Some(ev) = e.session.poll_event() {
            self.out.push_back((SessionId(key), ev));
        }
        if let Some(t) = e.session.poll_timeout() {
            if e.scheduled.is_none_or(|s| t < s) {
                e.scheduled = Some(t);
                self.timers.push(Reverse((t, key)));
            }
        }
    }
}

/// Opens a non-blocking connection to the session's URL (TLS state made,
/// handshake not started), registered with `token`.
fn open(
    cfg: &ClientConfig,
    system_tls: &mut Option<Arc<rustls::ClientConfig>>,
    poll: &Poll,
    token: Token,
) -> Result<Sock, String> {
    let url = &cfg.url;
    let mut addrs: VecDeque<SocketAddr> = match cfg.connect_to {
        Some(a) => VecDeque::from([a]),
        None => (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolve {}: {e}", url.host))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(format!("resolve {}: no address", url.host));
    }
    let tls = if url.tls {
        let config = match (&cfg.tls, system_tls.as_ref()) {
            (Some(c), _) | (None, Some(c)) => c.clone(),
            (None, None) => {
                let c = super::tls::client_config(None).map_err(|e| e.to_string())?;
                *system_tls = Some(c.clone());
                c
            }
        };
        let name = ServerName::try_from(url.host.clone())
            .map_err(|e| format!("TLS server name {}: {e}", url.host))?;
        let mut conn = ClientConnection::new(config, name).map_err(|e| format!("TLS: {e}"))?;
        // The session bounds what it queues; rustls need not cut writes short.
        conn.set_buffer_limit(None);
        Some(Box::new(conn))
    } else {
        None
    };
    let stream = connect_next(&mut addrs, poll, token)?;
    let interest = Interest::READABLE | Interest::WRITABLE;
    Ok(Sock { stream, addrs, tls, connected: false, interest })
}

/// Starts a non-blocking connect to the first address of `addrs` that
/// takes one (removing the ones tried) and registers it with `token`.
/// The error names the last failure ("" if there was no address left).
fn connect_next(
    addrs: &mut VecDeque<SocketAddr>,
    poll: &Poll,
    token: Token,
) -> Result<TcpStream, String> {
    let mut last = String::new();
    while let Some(addr) = addrs.pop_front() {
        match TcpStream::connect(addr) {
            Ok(mut stream) => {
                let _ = stream.set_nodelay(true);
                let interest = Interest::READABLE | Interest::WRITABLE;
                match poll.registry().register(&mut stream, token, interest) {
                    Ok(()) => return Ok(stream),
                    Err(e) => last = format!("register: {e}"),
                }
            }
            Err(e) => last = format!("connect {addr}: {e}"),
        }
    }
    Err(last)
}

fn wants_write(s: &Sock, session: &Session) -> bool {
    match &s.tls {
        Some(tls) => tls.wants_write(),
        None => !session.pending_output().is_empty(),
    }
}

/// Writes the session's output until the socket would block.
fn write_out(s: &mut Sock, session: &mut Session) -> io::Result<()> {
    match &mut s.tls {
        None => {
            while !session.pending_output().is_empty() {
                match s.stream.write(session.pending_output()) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => session.consume_output(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Some(tls) => {
            let out = session.pending_output();
            if !out.is_empty() {
                let n = tls.writer().write(out)?;
                session.consume_output(n);
            }
            while tls.wants_write() {
                match tls.write_tls(&mut s.stream) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// Reads until the socket would block, feeding the session.
fn read_all(scratch: &mut [u8], s: &mut Sock, session: &mut Session, now: Instant) {
    match &mut s.tls {
        None => loop {
            match s.stream.read(scratch) {
                Ok(0) => return session.handle_eof(now),
                Ok(n) => session.handle_input(&scratch[..n], now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return session.handle_io_error(format!("read: {e}"), now),
            }
        },
        Some(tls) => loop {
            let eof = match tls.read_tls(&mut s.stream) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return session.handle_io_error(format!("read: {e}"), now),
            };
            if let Err(e) = tls.process_new_packets() {
                // Send the alert, then give up on the connection.
                let _ = tls.write_tls(&mut s.stream);
                return session.handle_io_error(format!("TLS: {e}"), now);
            }
            loop {
                match tls.reader().read(scratch) {
                    Ok(0) => return session.handle_eof(now),
                    Ok(n) => session.handle_input(&scratch[..n], now),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return session.handle_eof(now)
                    }
                    Err(e) => return session.handle_io_error(format!("TLS read: {e}"), now),
                }
            }
            if eof {
                return session.handle_eof(now);
            }
        },
    }
}

//! serve-tcp-fanout: the pub/sub ceiling. A single-threaded mio loop with
//! no WebSocket and no JSON: what the kernel allows when a server does the
//! least a fan-out server must do, and schedules its writes as wsedge does.
//!
//! The protocol (the `Tcp` dialect of `pubsub`): unmasked frames with a
//! WebSocket-style head. A client sends `'S' u32 room` to subscribe and
//! `'P' u32 room payload` to publish (binary frames); each is answered by
//! the text frame `A`. Per publish the server builds the delivery once,
//! `0x82 len | u64 seq (per room, from 1) | payload` (74 bytes for a 64-byte
//! payload), and appends it to every subscriber's unsent bytes. Writes
//! follow wsedge's worker loop (`FLUSH_PER_ITERATION`): at the end of each
//! poll iteration the oldest 1,024 connections with unsent bytes get one
//! `write` each, then every connection that sent a request (its acks); the
//! others wait, in order, while the loop reads more. (Writing every
//! delivery at once, one `write` per subscriber per publish, delivered
//! 180-220 k/s here: below both WebSocket servers, so not a ceiling.) A
//! socket that would block keeps the rest, written when it is writable
//! again; past 64 MiB unsent the subscriber is dropped. Slots are never
//! reused (a run is bounded), so a late event cannot reach the wrong
//! connection.

use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Token};

use crate::config::ServeCfg;
use crate::report::Json;
use crate::serve::{start_listener, LISTENER};

/// Unsent bytes over which a subscriber is dropped.
const MAX_PENDING: usize = 64 << 20;
const ACK: [u8; 3] = [0x81, 1, b'A'];
/// Connections written per poll iteration at most, as in wsedge's worker.
const FLUSH_PER_ITERATION: usize = 1024;

struct FConn {
    sock: TcpStream,
    /// A request cut by a read.
    tail: Vec<u8>,
    pend: Vec<u8>,
    pp: usize,
    rooms: Vec<u32>,
    /// On the dirty list (unsent bytes waiting for the end of an iteration).
    dirty: bool,
}

#[derive(Default)]
struct Room {
    seq: u64,
    members: Vec<usize>,
}

#[derive(Default)]
struct Counts {
    publishes: u64,
    deliveries: u64,
    writes: u64,
    dropped: u64,
}

/// Appends `buf` to what `c` has unsent; true when `c` was not dirty yet
/// (the caller puts it on the dirty list); `Err` = too slow, drop it.
fn queue(c: &mut FConn, buf: &[u8]) -> io::Result<bool> {
    if c.pend.len() - c.pp > MAX_PENDING {
        return Err(io::Error::other("subscriber too slow: over 64 MiB unsent"));
    }
    c.pend.extend_from_slice(buf);
    Ok(!std::mem::replace(&mut c.dirty, true))
}

fn flush(c: &mut FConn, writes: &mut u64) -> io::Result<()> {
    while c.pp < c.pend.len() {
        *writes += 1;
        match c.sock.write(&c.pend[c.pp..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => c.pp += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    c.pend.clear();
    c.pp = 0;
    Ok(())
}

/// One request frame at the start of `b`: (body range end, body start), or
/// None when incomplete.
fn frame(b: &[u8]) -> Option<(usize, usize)> {
    let len = *b.get(1)? as usize;
    let (h, len) = match len {
        126 => (4, usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?]))),
        127 => return Some((usize::MAX, 0)),
        n => (2, n),
    };
    (b.len() >= h + len).then_some((h + len, h))
}

struct Server {
    conns: Vec<Option<FConn>>,
    /// Connections with unsent bytes, oldest first.
    dirty: VecDeque<usize>,
    /// Connections that sent requests this iteration (their acks go out).
    replies: Vec<usize>,
    rooms: HashMap<u32, Room>,
    msg: Vec<u8>,
    n: Counts,
}

impl Server {
    /// Handles the complete requests in `buf` from connection `idx` (taken
    /// out of `conns` as `c`); returns the bytes used, `Err` = drop `c`.
    fn requests(&mut self, idx: usize, c: &mut FConn, buf: &[u8]) -> io::Result<usize> {
        let mut at = 0;
        while let Some((end, h)) = frame(&buf[at..]) {
            if end == usize::MAX {
                return Err(io::Error::other("request too large"));
            }
            let body = &buf[at + h..at + end];
            at += end;
            if body.len() < 5 {
                return Err(io::Error::other("request shorter than kind + room"));
            }
            let room = u32::from_be_bytes([body[1], body[2], body[3], body[4]]);
            match body[0] {
                b'S' => {
                    let r = self.rooms.entry(room).or_default();
                    if !c.rooms.contains(&room) {
                        r.members.push(idx);
                        c.rooms.push(room);
                    }
                }
                b'P' => self.publish(idx, c, room, &body[5..]),
                _ => return Err(io::Error::other("unknown request")),
            }
            if queue(c, &ACK)? {
                self.dirty.push_back(idx);
            }
        }
        Ok(at)
    }

    fn publish(&mut self, idx: usize, c: &mut FConn, room: u32, payload: &[u8]) {
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        r.seq += 1;
        self.n.publishes += 1;
        self.msg.clear();
        let len = 8 + payload.len();
        self.msg.push(0x82);
        if len < 126 {
            self.msg.push(len as u8);
        } else {
            self.msg.push(126);
            self.msg.extend_from_slice(&(len as u16).to_be_bytes());
        }
        self.msg.extend_from_slice(&r.seq.to_be_bytes());
        self.msg.extend_from_slice(payload);
        let mut dead = Vec::new();
        for &m in &r.members {
            self.n.deliveries += 1;
            let target = if m == idx { Some(&mut *c) } else { self.conns[m].as_mut() };
            let Some(t) = target else { continue };
            match queue(t, &self.msg) {
                Ok(true) => self.dirty.push_back(m),
                Ok(false) => {}
                Err(_) => dead.push(m),
            }
        }
        for m in dead {
            if m != idx {
                self.drop_conn(m);
            }
        }
    }

    fn drop_conn(&mut self, idx: usize) {
        let Some(c) = self.conns[idx].take() else { return };
        self.n.dropped += 1;
        for room in c.rooms {
            if let Some(r) = self.rooms.get_mut(&room) {
                r.members.retain(|&m| m != idx);
            }
        }
    }

    /// Reads everything `conns[idx]` has; `Err`: drop it.
    fn readable(&mut self, idx: usize, scratch: &mut [u8]) -> io::Result<()> {
        let Some(mut c) = self.conns[idx].take() else { return Ok(()) };
        let res = self.read_all(idx, &mut c, scratch);
        if c.dirty {
            self.replies.push(idx);
        }
        self.conns[idx] = Some(c);
        res
    }

    /// Writes what `conns[idx]` has unsent if it is dirty; true when it was.
    fn flush_dirty_conn(&mut self, idx: usize) -> bool {
        let Some(Some(c)) = self.conns.get_mut(idx) else { return false };
        if !std::mem::replace(&mut c.dirty, false) {
            return false;
        }
        if flush(c, &mut self.n.writes).is_err() {
            self.drop_conn(idx);
        }
        true
    }

    /// The end of an iteration: the oldest dirty connections up to
    /// `FLUSH_PER_ITERATION`, then the ones that sent requests.
    fn end_iteration(&mut self) {
        let (mut budget, mut left) = (FLUSH_PER_ITERATION, self.dirty.len());
        while budget > 0 && left > 0 {
            left -= 1;
            let Some(idx) = self.dirty.pop_front() else { break };
            if self.flush_dirty_conn(idx) {
                budget -= 1;
            }
        }
        for idx in std::mem::take(&mut self.replies) {
            self.flush_dirty_conn(idx);
        }
    }

    fn read_all(&mut self, idx: usize, c: &mut FConn, scratch: &mut [u8]) -> io::Result<()> {
        loop {
            let n = match c.sock.read(scratch) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut tail = std::mem::take(&mut c.tail);
            if tail.is_empty() {
                let used = self.requests(idx, c, &scratch[..n])?;
                tail.extend_from_slice(&scratch[used..n]);
            } else {
                tail.extend_from_slice(&scratch[..n]);
                let used = self.requests(idx, c, &tail)?;
                tail.drain(..used);
            }
            c.tail = tail;
        }
    }
}

/// Serves until `cfg.secs` have passed, then prints a summary and a JSON line.
pub fn serve_tcp_fanout(cfg: &ServeCfg) -> ExitCode {
    let (listener, mut poll, local) = match start_listener(cfg, "tcp fan-out") {
        Ok(started) => started,
        Err(code) => return code,
    };
    let start = Instant::now();
    let deadline = Duration::from_secs_f64(cfg.secs);
    let mut s = Server {
        conns: Vec::new(),
        dirty: VecDeque::new(),
        replies: Vec::new(),
        rooms: HashMap::new(),
        msg: Vec::with_capacity(256),
        n: Counts::default(),
    };
    let mut scratch = vec![0u8; 64 << 10];
    let mut events = Events::with_capacity(1024);
    let mut accepted = 0u64;
    while start.elapsed() < deadline {
        let wait = if s.dirty.is_empty() { 100 } else { 0 };
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(wait))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            eprintln!("wsedge-bench: poll failed: {e}");
            return ExitCode::FAILURE;
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut sock, _)) => {
                            let _ = sock.set_nodelay(true);
                            let idx = s.conns.len();
                            let interest = Interest::READABLE | Interest::WRITABLE;
                            if poll.registry().register(&mut sock, Token(idx), interest).is_err() {
                                continue;
                            }
                            s.conns.push(Some(FConn {
                                sock,
                                tail: Vec::new(),
                                pend: Vec::new(),
                                pp: 0,
                                rooms: Vec::new(),
                                dirty: false,
                            }));
                            accepted += 1;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            eprintln!("wsedge-bench: accept failed: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            let idx = ev.token().0;
            let mut alive = true;
            if ev.is_writable() {
                if let Some(Some(c)) = s.conns.get_mut(idx) {
                    alive = flush(c, &mut s.n.writes).is_ok();
                }
            }
            if alive && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                alive = s.readable(idx, &mut scratch).is_ok();
            }
            if !alive {
                s.drop_conn(idx);
            }
        }
        s.end_iteration();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = &s.n;
    println!("== wsedge-bench serve-tcp-fanout {local} ==");
    println!(
        "served        {secs:.1} s, {accepted} connections, {} publishes, {} deliveries, {} writes, {} connections closed",
        n.publishes, n.deliveries, n.writes, n.dropped
    );
    let mut j = Json::new("serve-tcp-fanout");
    j.s("listen", &local)
        .f("secs", secs, 3)
        .u("accepted", accepted)
        .u("publishes", n.publishes)
        .u("deliveries", n.deliveries)
        .u("writes", n.writes);
    println!("{}", j.finish());
    ExitCode::SUCCESS
}

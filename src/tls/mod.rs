//! TLS (`wss://`) with rustls on the same non-blocking mio workers.
//!
//! [`load_server_config`] builds the shared rustls `ServerConfig` (TLS 1.2 and
//! 1.3, ALPN `http/1.1`) from PEM files, naming the file in every error.
//!
//! A connection's TLS state is a [`TlsConn`]: its record layer plus three
//! byte queues that are empty, and hold no allocation, while the connection
//! is idle: TLS bytes that are not yet a whole record, sealed records the
//! socket did not take, and plaintext written before the handshake
//! finished. The record layer is rustls's *unbuffered*
//! `UnbufferedServerConnection` (the state machine and the record keys, no
//! buffers of its own) through the handshake, and for TLS 1.2 throughout; a
//! TLS 1.3 connection then keeps only its traffic keys ([`traffic`]), and
//! the AEAD contexts live in the worker's cache. The buffers a turn works in
//! belong to the worker ([`TlsScratch`], one per worker), so an idle
//! `wss://` connection costs its keys and little more (BENCHMARKS.md,
//! "TLS").
//!
//! [`TlsIo`] pumps one connection over its socket (or any `Read + Write`,
//! as in the fuzz harness): [`TlsIo::read`] reads records, decrypts them in
//! the worker's buffer and hands each record's plaintext to the caller;
//! writing plaintext seals it into records (small slices gathered into one
//! record, at most 64 KiB of plaintext per call) and writes them at once; the
//! records the socket does not take wait in the connection ([`TlsIo::flush_records`]),
//! and while they wait a write reports `WouldBlock`, so the connection's own
//! queue and slow-consumer policy apply as for plain TCP.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::ServerConfig;

mod config;
mod traffic;
pub use crate::config::CipherOrder;
pub use config::{load_server_config, load_server_config_with, TlsError};
use traffic::{KeyCache, Opened, Traffic, TurnKeys, APPLICATION_DATA, HEADER, MAX_FRAGMENT};

/// What [`TlsIo::read`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum TlsRead {
    /// The socket is drained (it would block, or a short read said so);
    /// the next readiness edge brings the connection back.
    Drained,
    /// Stopped with more to read: the caller's `deliver` said stop, or the
    /// turn's read cap was hit. Read again when the connection wants to.
    More,
    /// The peer closed (close_notify or TCP EOF), after everything before it
    /// was delivered.
    Eof,
}

/// Plaintext accepted by one write at most (sealed into records of up to
/// 16 KiB each), and plaintext held before the handshake finishes at most.
const MAX_PLAIN_PER_WRITE: usize = 64 << 10;
/// Slices at least this long are sealed in place; shorter ones are gathered
/// with their neighbours into one record.
const GATHER_BELOW: usize = 4 << 10;
/// Room for one record's header, content type, padding and tag, generously.
const RECORD_OVERHEAD: usize = 64;
/// Socket reads per turn at most (then others get a go).
const MAX_READS_PER_TURN: usize = 4;
/// Bytes read from the socket per read.
const READ_SIZE: usize = 64 << 10;
/// Largest TLS record on the wire: 2^14 plaintext plus 2048 (RFC 8446 5.2
/// allows 2^14 + 256; TLS 1.2's RFC 5246 6.2.3, 2^14 + 2048).
const MAX_RECORD: usize = MAX_FRAGMENT + 2048 + HEADER;

/// One connection's TLS state: rustls's state machine and keys, and the
/// bytes that wait between turns (none while idle).
pub struct TlsConn {
    engine: Engine,
    /// TLS bytes read and not yet processed: part of a record, or records
    /// left while the connection did not want to read.
    rx: Vec<u8>,
    /// Sealed records the socket has not taken yet.
    tx: Vec<u8>,
    /// Plaintext written before the handshake finished (a refusal made at
    /// accept), sealed once it has.
    early: Vec<u8>,
    /// The handshake is done: application data can be sealed.
    ready: bool,
    /// close_notify was sealed: nothing more is written.
    closed: bool,
    /// A handshake record was sent: the record layer may be encrypted, so
    /// no plaintext alert of ours can follow.
    spoke: bool,
    /// rustls saw records past the handshake before it ended (see
    /// [`rustls_limit`]): it may owe the peer a KeyUpdate we cannot send, so
    /// the connection stays with rustls.
    keep_rustls: bool,
}

/// Who runs a connection's record layer.
enum Engine {
    /// rustls: the handshake, and TLS 1.2 throughout.
    Rustls(Box<UnbufferedServerConnection>),
    /// TLS 1.3 after the handshake: raw keys only (`traffic.rs`).
    Traffic(Box<Traffic>),
    /// The hand-over failed: the connection can only be closed.
    Gone,
}

fn gone() -> io::Error {
    io::Error::other("TLS keys lost in the hand-over")
}

impl TlsConn {
    /// A connection about to receive a ClientHello.
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsConn, rustls::Error> {
        Ok(TlsConn {
            engine: Engine::Rustls(Box::new(UnbufferedServerConnection::new(config)?)),
            rx: Vec::new(),
            tx: Vec::new(),
            early: Vec::new(),
            ready: false,
            closed: false,
            spoke: false,
            keep_rustls: false,
        })
    }

    /// Bytes this connection holds in its queues (capacity), for memory
    /// accounting: 0 while idle.
    pub fn buffered_bytes(&self) -> usize {
        self.rx.capacity() + self.tx.capacity() + self.early.capacity()
    }

    /// The handshake is done.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Drops the worker's cached AEAD contexts of this connection (it is
    /// going away).
    pub fn forget_keys(&self, scratch: &mut TlsScratch) {
        if let Engine::Traffic(t) = &self.engine {
            scratch.keys.forget(t);
        }
    }

    /// The record layer runs without rustls's connection state (a TLS 1.3
    /// connection after its handshake).
    pub fn is_compact(&self) -> bool {
        matches!(self.engine, Engine::Traffic(_))
    }

    /// After a TLS 1.3 handshake (rustls in WriteTraffic, every record it
    /// produced taken): keep only the keys. TLS 1.2 stays with rustls.
    fn hand_over(&mut self) -> io::Result<()> {
        let tls13 = matches!(&self.engine, Engine::Rustls(c)
            if c.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
                && !c.is_handshaking()
                && c.negotiated_cipher_suite().is_some_and(|s| traffic::supports(s.suite())));
        if !tls13 || self.keep_rustls {
            return Ok(());
        }
        let Engine::Rustls(conn) = std::mem::replace(&mut self.engine, Engine::Gone) else {
            return Ok(());
        };
        let (secrets, kernel) = conn.dangerous_into_kernel_connection().map_err(tls_error)?;
        let traffic = Traffic::new(secrets, kernel).ok_or_else(gone)?;
        self.engine = Engine::Traffic(Box::new(traffic));
        Ok(())
    }
}

/// A worker's TLS buffers, shared by its connections one turn at a time.
#[derive(Default)]
pub struct TlsScratch {
    /// Incoming TLS bytes (whole length initialised; `rx_end` used).
    rx: Vec<u8>,
    /// Outgoing records being sealed (whole length initialised).
    tx: Vec<u8>,
    /// Small plaintext slices gathered into one record.
    plain: Vec<u8>,
    /// The AEAD contexts of the TLS 1.3 connections active lately.
    keys: KeyCache,
}

impl TlsScratch {
    /// Empty buffers; they grow on first use and stay.
    pub fn new() -> TlsScratch {
        TlsScratch::default()
    }
}

/// Maps a rustls error to the I/O error that closes the connection.
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Writes `buf[*pos..]` to `sock` until done or it would block.
fn write_out<S: Write>(sock: &mut S, buf: &[u8], pos: &mut usize) -> io::Result<()> {
    while *pos < buf.len() {
        match sock.write(&buf[*pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Appends one handshake record rustls asks to send to `tx`.
fn encode_into(
    e: &mut rustls::unbuffered::EncodeTlsData<'_, rustls::server::ServerConnectionData>,
    tx: &mut Vec<u8>,
) -> io::Result<()> {
    let at = tx.len();
    let need = match e.encode(&mut []) {
        Err(EncodeError::InsufficientSize(s)) => s.required_size,
        Ok(_) => return Ok(()),
        Err(e) => return Err(io::Error::other(e.to_string())),
    };
    tx.resize(at + need, 0);
    match e.encode(&mut tx[at..]) {
        Ok(n) => {
            tx.truncate(at + n);
            Ok(())
        }
        Err(e) => {
            tx.truncate(at);
            Err(io::Error::other(e.to_string()))
        }
    }
}

/// Seals `plain` into records at `out[*end..]`, growing `out` if needed.
fn seal(
    wt: &mut rustls::unbuffered::WriteTraffic<'_, rustls::server::ServerConnectionData>,
    plain: &[u8],
    out: &mut Vec<u8>,
    end: &mut usize,
) -> io::Result<()> {
    if plain.is_empty() {
        return Ok(());
    }
    let bound = plain.len() + plain.len().div_ceil(MAX_FRAGMENT) * RECORD_OVERHEAD;
    if out.len() < *end + bound {
        out.resize(*end + bound, 0);
    }
    loop {
        match wt.encrypt(plain, &mut out[*end..]) {
            Ok(n) => {
                *end += n;
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(s)) => out.resize(*end + s.required_size, 0),
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
    }
}

/// After a protocol error: moves the alert rustls queued into `tls.tx`
/// (the caller writes it) and marks the connection closed. `buf` must be
/// the bytes the failing call was given: rustls's handshake reassembly
/// points into them, so any other buffer could send it out of bounds.
///
/// Some errors rustls ends the stream on without an alert of its own (a
/// handshake message over its size limit, one interleaved with other
/// records, too many empty records). While the server's record layer is
/// still plaintext the alert is written here, as a plaintext record: a
/// client that sends garbage during the handshake reads why (found by the
/// `tls` fuzz target). Once it encrypts, only rustls can seal one.
fn alert(tls: &mut TlsConn, buf: &mut [u8], err: &rustls::Error) {
    tls.closed = true;
    let Engine::Rustls(conn) = &mut tls.engine else { return };
    let before = tls.tx.len();
    // Records queued before the error (a ServerHello) come out first, then
    // the alert, one per call. Only while rustls holds some: a call past
    // them would process `buf` again, and a record that failed to decrypt
    // would fail again and queue a second fatal alert. (Taking only the
    // first record lost the alert when the ALPN check failed behind a
    // ServerHello: found by the `tls` fuzz target.)
    while conn.wants_write() {
        let UnbufferedStatus { state, .. } = conn.process_tls_records(buf);
        let Ok(ConnectionState::EncodeTlsData(mut e)) = state else { break };
        if encode_into(&mut e, &mut tls.tx).is_err() {
            break;
        }
    }
    // The server's records are plaintext until it has sent a hello (TLS
    // 1.3 encrypts right after it) or, in TLS 1.2, until its
    // ChangeCipherSpec, the last thing a full handshake sends (a resumed
    // 1.2 handshake sends it first: that client reads a record it cannot
    // decrypt, and closes all the same).
    let plaintext = !tls.spoke
        || (conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_2)
            && conn.is_handshaking());
    if tls.tx.len() == before && plaintext {
        let desc = match err {
            rustls::Error::InvalidMessage(m) => rustls::AlertDescription::from(*m),
            _ => rustls::AlertDescription::UnexpectedMessage,
        };
        // RFC 8446 5.1 / 6: TLSPlaintext { alert(21), legacy 0x0303, length 2,
        // level fatal(2), description }.
        tls.tx.extend_from_slice(&[21, 3, 3, 0, 2, 2, u8::from(desc)]);
    }
}

/// Seals one write's plaintext: rustls's, or the compact TLS 1.3 layer's.
enum Sealer<'a> {
    Rustls(rustls::unbuffered::WriteTraffic<'a, rustls::server::ServerConnectionData>),
    Traffic(&'a mut Traffic, &'a mut TurnKeys),
}

impl Sealer<'_> {
    /// Seals `plain` into records at `out[*end..]`.
    fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>, end: &mut usize) -> io::Result<()> {
        match self {
            Sealer::Rustls(wt) => seal(wt, plain, out, end),
            Sealer::Traffic(t, keys) => {
                if plain.is_empty() {
                    return Ok(());
                }
                out.truncate(*end);
                let res = t.seal_data(keys, plain, out);
                *end = out.len();
                res.map_err(|f| io::Error::other(f.why))
            }
        }
    }
}

/// How much of `buf` rustls may see before the hand-over. A TLS 1.3
/// client's last handshake record (its Finished) is its first record of
/// type application_data (23): while the handshake runs, the bytes up to the
/// end of that record; once it is done, the bytes before the next one. So
/// rustls never processes a record past the handshake: had it processed a
/// KeyUpdate asking for ours, it would hold that reply sealed under a key
/// the hand-over cannot give us (found by the `tls` fuzz target). In TLS
/// 1.2 the Finished is type 22, so this only holds back the first
/// application data until rustls reports the handshake done.
fn rustls_limit(buf: &[u8], handshaking: bool) -> usize {
    let mut at = 0;
    while at + HEADER <= buf.len() {
        let end = at + HEADER + usize::from(u16::from_be_bytes([buf[at + 3], buf[at + 4]]));
        if buf[at] == APPLICATION_DATA {
            return if handshaking { end.min(buf.len()) } else { at };
        }
        at = end;
    }
    buf.len()
}

/// What one pass over the received bytes ended with.
enum Step {
    /// Every whole record is processed; more bytes are needed.
    NeedMore,
    /// The peer's close_notify was processed.
    PeerClosed,
}

/// One connection's TLS over its socket, with its worker's buffers, for
/// one turn.
pub struct TlsIo<'a, S: Read + Write> {
    /// The connection's TLS state.
    pub tls: &'a mut TlsConn,
    /// The socket.
    pub sock: &'a mut S,
    /// The worker's buffers.
    pub scratch: &'a mut TlsScratch,
}

impl<S: Read + Write> TlsIo<'_, S> {
    /// Writes the sealed records waiting in the connection until none is
    /// left (`Ok(true)`) or the socket would block (`Ok(false)`).
    pub fn flush_records(&mut self) -> io::Result<bool> {
        if self.tls.tx.is_empty() {
            return Ok(true);
        }
        let mut pos = 0;
        let res = write_out(self.sock, &self.tls.tx, &mut pos);
        self.tls.tx.drain(..pos);
        res?;
        if self.tls.tx.is_empty() {
            // Idle connections hold no buffer.
            self.tls.tx = Vec::new();
            return Ok(true);
        }
        Ok(false)
    }

    /// Reads records from the socket and hands the plaintext of each to
    /// `deliver`, until the socket is drained, `deliver` returned false (no
    /// more socket reads this turn; the whole records already read are still
    /// delivered, at most one read's worth, so only part of a record ever
    /// waits in the connection), the read cap is hit, or the peer closed. `drain_all`: the peer's FIN was seen, so read on to the
    /// end of the stream (no readiness edge follows it). Handshake records
    /// rustls answers go out on the way. A protocol error sends the alert
    /// and fails.
    pub fn read(
        &mut self,
        drain_all: bool,
        mut deliver: impl FnMut(&[u8]) -> bool,
    ) -> io::Result<TlsRead> {
        if self.tls.closed {
            return self.read_after_close(drain_all);
        }
        let scratch = &mut *self.scratch;
        if scratch.rx.len() < READ_SIZE + MAX_RECORD {
            scratch.rx.resize(READ_SIZE + MAX_RECORD, 0);
        }
        // Bytes carried from an earlier turn go first.
        let mut end = self.tls.rx.len();
        scratch.rx[..end].copy_from_slice(&self.tls.rx);
        self.tls.rx = Vec::new();
        let mut start = 0;
        let mut reads = 0;
        let mut eof = false;
        // A short read drained the socket: process what came, then stop.
        let mut drained = false;
        // `deliver` has not asked to stop.
        let want_more = std::cell::Cell::new(true);
        let mut deliver = |p: &[u8]| {
            if !deliver(p) {
                want_more.set(false);
            }
        };
        let outcome = loop {
            let (used, step) = match self.process(start, end, &mut deliver) {
                Ok(r) => r,
                Err(e) => {
                    let _ = self.flush_records();
                    return Err(e);
                }
            };
            start += used;
            match step {
                Step::PeerClosed => break TlsRead::Eof,
                Step::NeedMore if eof => break TlsRead::Eof,
                Step::NeedMore if !want_more.get() => break TlsRead::More,
                Step::NeedMore if drained => break TlsRead::Drained,
                Step::NeedMore => {}
            }
            if reads == MAX_READS_PER_TURN {
                break TlsRead::More;
            }
            // What is left is part of one record: move it to the front.
            let scratch = &mut *self.scratch;
            scratch.rx.copy_within(start..end, 0);
            end -= start;
            start = 0;
            reads += 1;
            let room = scratch.rx.len() - end;
            match self.sock.read(&mut scratch.rx[end..]) {
                Ok(0) => eof = true,
                Ok(n) => {
                    end += n;
                    drained = n < room && !drain_all;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break TlsRead::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if outcome != TlsRead::Eof && start < end {
            self.tls.rx = self.scratch.rx[start..end].to_vec();
        }
        // Handshake records and tickets rustls produced on the way.
        self.flush_records()?;
        Ok(outcome)
    }

    /// After our close_notify or fatal alert: the peer's records mean
    /// nothing more (the connection only waits for its end of stream), so
    /// they are read and dropped, not handed to rustls. Asked again, rustls
    /// would queue a fatal alert behind its close_notify, or a second one
    /// behind its first, for a bad record (a debug assertion in rustls
    /// 0.23; found by the `tls` fuzz target).
    fn read_after_close(&mut self, drain_all: bool) -> io::Result<TlsRead> {
        self.tls.rx = Vec::new();
        let scratch = &mut *self.scratch;
        if scratch.rx.len() < READ_SIZE {
            scratch.rx.resize(READ_SIZE, 0);
        }
        for _ in 0..MAX_READS_PER_TURN {
            match self.sock.read(&mut scratch.rx) {
                Ok(0) => return Ok(TlsRead::Eof),
                Ok(n) if n < scratch.rx.len() && !drain_all => return Ok(TlsRead::Drained),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(TlsRead::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(TlsRead::More)
    }

    /// Processes the records in `scratch.rx[start..end]`: returns how many
    /// bytes were used and why it stopped.
    fn process(
        &mut self,
        start: usize,
        end: usize,
        deliver: &mut impl FnMut(&[u8]),
    ) -> io::Result<(usize, Step)> {
        if self.tls.is_compact() {
            return self.process_traffic(start, end, deliver);
        }
        let was_ready = self.tls.ready;
        let (used, step) = self.process_rustls(start, end, deliver)?;
        // The handshake just ended: what `rustls_limit` held back is
        // processed now, by the compact layer or by rustls.
        if matches!(step, Step::NeedMore) && self.tls.ready && !was_ready && start + used < end {
            let (more, step) = if self.tls.is_compact() {
                self.process_traffic(start + used, end, deliver)?
            } else {
                self.process_rustls(start + used, end, deliver)?
            };
            return Ok((used + more, step));
        }
        Ok((used, step))
    }

    /// [`TlsIo::process`] while rustls runs the record layer.
    fn process_rustls(
        &mut self,
        start: usize,
        end: usize,
        deliver: &mut impl FnMut(&[u8]),
    ) -> io::Result<(usize, Step)> {
        let tls = &mut *self.tls;
        let mut used = 0;
        loop {
            let buf = &mut self.scratch.rx[start + used..end];
            let Engine::Rustls(conn) = &mut tls.engine else { return Err(gone()) };
            // Until the hand-over rustls sees no record past the handshake.
            let limit = if tls.ready || tls.keep_rustls {
                buf.len()
            } else {
                rustls_limit(buf, conn.is_handshaking())
            };
            let withheld = limit < buf.len();
            let UnbufferedStatus { mut discard, state } =
                conn.process_tls_records(&mut buf[..limit]);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    alert(tls, &mut self.scratch.rx[start + used..start + used + limit], &e);
                    return Err(tls_error(e));
                }
            };
            let step = match state {
                ConnectionState::ReadTraffic(mut rt) => {
                    let mut failed = None;
                    while let Some(rec) = rt.next_record() {
                        match rec {
                            Ok(rec) => {
                                discard += rec.discard;
                                deliver(rec.payload);
                            }
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    if let Some(e) = failed {
                        alert(tls, &mut self.scratch.rx[start + used..start + used + limit], &e);
                        return Err(tls_error(e));
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    tls.spoke = true;
                    encode_into(&mut e, &mut tls.tx)?;
                    None
                }
                ConnectionState::TransmitTlsData(t) => {
                    // The records wait in `tx`; flushed when this turn's read ends.
                    t.done();
                    None
                }
                ConnectionState::BlockedHandshake if withheld => {
                    // The handshake wants more than one application_data
                    // record (client certificates, say): rustls gets
                    // everything from now on, and keeps the connection.
                    tls.keep_rustls = true;
                    None
                }
                ConnectionState::BlockedHandshake => Some(Step::NeedMore),
                ConnectionState::WriteTraffic(mut wt) => {
                    if !tls.ready {
                        tls.ready = true;
                        if !tls.early.is_empty() {
                            let mut out = std::mem::take(&mut tls.tx);
                            let mut n = out.len();
                            seal(&mut wt, &tls.early, &mut out, &mut n)?;
                            out.truncate(n);
                            tls.tx = out;
                            tls.early = Vec::new();
                        }
                        // Every whole record is processed: what follows in
                        // the buffer is for the keys alone.
                        used += discard;
                        tls.hand_over()?;
                        return Ok((used, Step::NeedMore));
                    }
                    Some(Step::NeedMore)
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => Some(Step::PeerClosed),
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "unexpected TLS early data",
                    ))
                }
            };
            used += discard;
            if let Some(step) = step {
                return Ok((used, step));
            }
        }
    }

    /// [`TlsIo::process`] for a connection past its TLS 1.3 handshake: the
    /// whole records in `scratch.rx[start..end]`, opened in place.
    fn process_traffic(
        &mut self,
        start: usize,
        end: usize,
        deliver: &mut impl FnMut(&[u8]),
    ) -> io::Result<(usize, Step)> {
        let TlsConn { engine, tx, closed, .. } = &mut *self.tls;
        let Engine::Traffic(t) = engine else { return Err(gone()) };
        let TlsScratch { rx, keys, .. } = &mut *self.scratch;
        let keys = keys.of(t);
        let mut used = 0;
        loop {
            let buf = &mut rx[start + used..end];
            match t.open(keys, buf) {
                Ok(None) => return Ok((used, Step::NeedMore)),
                Ok(Some((n, opened))) => {
                    used += n;
                    match opened {
                        Opened::Data(r) => deliver(&buf[r]),
                        Opened::Closed => return Ok((used, Step::PeerClosed)),
                        Opened::Nothing => {}
                    }
                }
                Err(f) => {
                    *closed = true;
                    if let Some(desc) = f.alert {
                        t.seal_alert(keys, desc, tx);
                    }
                    return Err(io::Error::new(io::ErrorKind::InvalidData, f.why));
                }
            }
        }
    }

    /// Seals close_notify behind what was written and writes what it can.
    pub fn close_notify(&mut self) {
        if self.tls.closed || !self.tls.ready {
            return;
        }
        self.tls.closed = true;
        let tls = &mut *self.tls;
        let conn = match &mut tls.engine {
            Engine::Rustls(conn) => conn,
            Engine::Traffic(t) => {
                let keys = self.scratch.keys.of(t);
                t.seal_alert(keys, rustls::AlertDescription::CloseNotify, &mut tls.tx);
                let _ = self.flush_records();
                return;
            }
            Engine::Gone => return,
        };
        let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut tls.rx);
        if let Ok(ConnectionState::WriteTraffic(mut wt)) = state {
            let at = tls.tx.len();
            tls.tx.resize(at + RECORD_OVERHEAD, 0);
            match wt.queue_close_notify(&mut tls.tx[at..]) {
                Ok(n) => tls.tx.truncate(at + n),
                Err(_) => tls.tx.truncate(at),
            }
        }
        tls.rx.drain(..discard.min(tls.rx.len()));
        let _ = self.flush_records();
    }

    /// Before the handshake is done: keeps plaintext (bounded) to seal later.
    fn write_early(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut taken = 0;
        for b in bufs {
            let room = MAX_PLAIN_PER_WRITE.saturating_sub(self.tls.early.len());
            let n = b.len().min(room);
            self.tls.early.extend_from_slice(&b[..n]);
            taken += n;
            if n < b.len() {
                break;
            }
        }
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }
}

impl<S: Read + Write> Write for TlsIo<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // Records already sealed go out before new ones.
        if !self.flush_records()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.tls.closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if !self.tls.ready {
            return self.write_early(bufs);
        }
        let tls = &mut *self.tls;
        let scratch = &mut *self.scratch;
        let mut sealer = match &mut tls.engine {
            Engine::Traffic(t) => {
                let keys = scratch.keys.of(t);
                Sealer::Traffic(t, keys)
            }
            Engine::Gone => return Err(gone()),
            Engine::Rustls(conn) => {
                // The bytes carried from the last read go in, not an empty
                // slice: rustls's reassembly of a handshake message split
                // over records points into them. They hold no whole record
                // (`read` delivers those), so rustls answers WriteTraffic
                // without consuming any.
                let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut tls.rx);
                debug_assert_eq!(discard, 0, "bug: a whole record was left unread");
                match state.map_err(tls_error)? {
                    ConnectionState::WriteTraffic(wt) => Sealer::Rustls(wt),
                    _ => return Err(io::ErrorKind::BrokenPipe.into()),
                }
            }
        };
        let mut end = 0;
        let mut taken = 0;
        scratch.plain.clear();
        for b in bufs {
            let n = b.len().min(MAX_PLAIN_PER_WRITE - taken);
            let part = &b[..n];
            if n >= GATHER_BELOW {
                sealer.seal(&scratch.plain, &mut scratch.tx, &mut end)?;
                scratch.plain.clear();
                sealer.seal(part, &mut scratch.tx, &mut end)?;
            } else {
                scratch.plain.extend_from_slice(part);
                if scratch.plain.len() >= MAX_FRAGMENT {
                    sealer.seal(&scratch.plain, &mut scratch.tx, &mut end)?;
                    scratch.plain.clear();
                }
            }
            taken += n;
            if taken == MAX_PLAIN_PER_WRITE {
                break;
            }
        }
        sealer.seal(&scratch.plain, &mut scratch.tx, &mut end)?;
        scratch.plain.clear();
        let mut pos = 0;
        let res = write_out(self.sock, &scratch.tx[..end], &mut pos);
        if pos < end {
            // The records are sealed: what the socket did not take waits.
            tls.tx.extend_from_slice(&scratch.tx[pos..end]);
        }
        match res {
            Ok(()) => Ok(taken),
            Err(e) => Err(e),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_records().map(|_| ())
    }
}

/// True when the first bytes on a TLS port look like plain HTTP (a client
/// that forgot `wss://`), so it can get a readable refusal.
pub fn looks_like_plain_http(first: &[u8]) -> bool {
    first.first().is_some_and(|b| b.is_ascii_uppercase())
}

//! `tls`: the TLS-to-WebSocket path, records in, frames out. A rustls
//! client, in memory, against the server's `TlsConn` + `TlsIo` pump and one
//! sans-IO `Conn` driven as the worker drives it (`TlsIo::read` delivering
//! each record's plaintext to `Conn::handle_input`, the turn ended through
//! `Host::end_turn` / `Host::handle_writable` with `TlsIo` as the transport).
//! After the handshake the client sends the upgrade request and then the
//! input's bytes (frames, or whatever the bytes say).
//!
//! Input: byte 0 is the schedule (bits 0-2: largest piece of the client's
//! TLS stream per socket read, 1 byte to 64 KiB; bits 3-4: how much the
//! kernel takes per write: all, 0-64 bytes, 0-4096 bytes, or nothing on read
//! turns and 1-16 bytes on writable events; bit 5: TLS 1.2 instead of 1.3;
//! bits 6-7: corruption of the client's TLS stream: none, one byte, two
//! bytes or four in a row); byte 1 seeds the schedule (bit 0:
//! idle timeout on; bit 1: the client sends close_notify at the end; bit 2:
//! and its FIN, in the same read as its last record; bit 3: slow-consumer
//! policy drop; bit 4: once the handshake is done the client sends a
//! KeyUpdate asking for the server's, and the second half of its bytes
//! under the new keys); bytes 2-3 are where the corruption lands (offset into the
//! stream, big-endian), byte 4 what it XORs in (0 counts as 1); the rest is
//! what the client sends after the upgrade request, the same format as the
//! `connection` target's tail (its seeds are reused).
//!
//! Checks:
//! - never panics, whatever the bytes;
//! - without corruption: the handshake completes (or the handshake timer
//!   ends it, with nothing on the wire), the client accepts every record
//!   the server writes, and the plaintext is the exact 101 and then valid
//!   server frames (`Wire`); the server never fails a clean stream;
//! - with corruption: a server that fails the stream has sent an alert (the
//!   client sees an error) whenever the kernel took all it was given, and
//!   closes; the plaintext the client did decrypt is still valid (`Wire`).
//!   The server's stream is never corrupted: that tests the rustls client,
//!   not wsedge (and a bad record after the client's own close_notify trips
//!   a debug assertion in rustls: FUZZING.md #10, on the client's side);
//! - no byte after the write side was shut down; every deadline the driver
//!   returns is after now; once the stream is delivered and written the
//!   connection's TLS queues hold no buffer (the worker's `TlsScratch` does);
//! - the connection ends once every deadline has passed.
//!
//! Cost: one full handshake per input (ECDHE + ECDSA signature and the
//! client's certificate verification): rustls connections cannot be cloned,
//! so a finished handshake cannot be cached. This target runs at a few
//! hundred executions per second where the others run thousands (FUZZING.md).
#![no_main]

use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use rustls::client::Resumption;
use rustls::ClientConnection;
use wsedge::config::SlowConsumerPolicy;
use wsedge::conn::{Conn, EndTurn, Host, TurnResult, NEVER};
use wsedge::metrics::CloseCause;
use wsedge::tls::{load_server_config, TlsConn, TlsIo, TlsRead, TlsScratch};
use wsedge_fuzz::{expected_101, small_settings, Rng, Wire, REQUEST, TICK_MS};

const PIECES: [u64; 8] = [1, 5, 64, 300, 1500, 4096, 17_000, 65536];
const MAX_INPUT: usize = 64 * 1024;
/// Plaintext per read turn at most, as the worker (`MAX_READS_PER_TURN *
/// READ_CHUNK`).
const TURN_PLAIN: usize = 4 * 64 * 1024;

/// The server config (a self-signed ECDSA P-256 certificate for
/// `localhost`, made once per process and loaded through
/// `load_server_config` as the server loads its files) and the client
/// configs trusting it, TLS 1.3 and 1.2, without resumption so every input
/// runs the same full handshake.
struct Configs {
    server: Arc<rustls::ServerConfig>,
    client13: Arc<rustls::ClientConfig>,
    client12: Arc<rustls::ClientConfig>,
}

fn configs() -> &'static Configs {
    static C: OnceLock<Configs> = OnceLock::new();
    C.get_or_init(|| {
        let key = rcgen::KeyPair::generate().expect("keygen");
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("cert params");
        let cert = params.self_signed(&key).expect("self-signed cert");
        let dir = std::env::temp_dir().join(format!("wsedge-fuzz-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (cp, kp) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cp, cert.pem()).expect("write cert");
        std::fs::write(&kp, key.serialize_pem()).expect("write key");
        let server =
            load_server_config(cp.to_str().unwrap(), kp.to_str().unwrap()).expect("server config");
        let _ = std::fs::remove_dir_all(&dir);
        let client = |version: &'static rustls::SupportedProtocolVersion| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert.der().clone()).expect("root");
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[version])
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            cfg.resumption = Resumption::disabled();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(cfg)
        };
        Configs {
            server,
            client13: client(&rustls::version::TLS13),
            client12: client(&rustls::version::TLS12),
        }
    })
}

/// The server's socket: reads what the client's side put in `inbound`
/// (then `WouldBlock`, or end of stream after `fin`), takes `room` bytes
/// more into `outbound` at most (then `WouldBlock`).
struct Pipe {
    inbound: Vec<u8>,
    fin: bool,
    outbound: Vec<u8>,
    room: usize,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inbound.is_empty() {
            return if self.fin { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = buf.len().min(self.inbound.len());
        buf[..n].copy_from_slice(&self.inbound[..n]);
        self.inbound.drain(..n);
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.room);
        self.outbound.extend_from_slice(&buf[..n]);
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `len` bytes of a stream XORed with `mask` from offset `at`, once.
struct Corrupt {
    at: Option<usize>,
    len: usize,
    mask: u8,
    /// Bytes of the stream seen so far.
    seen: usize,
}

impl Corrupt {
    fn apply(&mut self, bytes: &mut [u8]) {
        if let Some(at) = self.at {
            for (i, b) in bytes.iter_mut().enumerate() {
                if (at..at + self.len).contains(&(self.seen + i)) {
                    *b ^= self.mask;
                }
            }
            if self.seen + bytes.len() >= at + self.len {
                self.at = None;
            }
        }
        self.seen += bytes.len();
    }
}

struct Run {
    host: Host,
    conn: Conn,
    tls: TlsConn,
    scratch: TlsScratch,
    pipe: Pipe,
    writable: bool,
    shut: bool,
    /// The client's TLS bytes not yet in the socket.
    to_server: Vec<u8>,
    client: ClientConnection,
    /// The client failed (it read an alert, or records it cannot accept).
    client_error: Option<rustls::Error>,
    /// The client read the server's close_notify.
    client_eof: bool,
    wire: Wire,
    c2s: Corrupt,
    corrupted: bool,
    /// The server failed the TLS stream, and had all the room it asked for.
    server_failed_with_room: bool,
    server_failed: Option<String>,
}

impl Run {
    fn alive(&self) -> bool {
        !self.conn.is_closed()
    }

    /// The client's pending records go towards the server.
    fn pump_client(&mut self) {
        let at = self.to_server.len();
        // After an error the client still sends its alert.
        while self.client.wants_write() {
            if self.client.write_tls(&mut self.to_server).is_err() {
                break;
            }
        }
        self.c2s.apply(&mut self.to_server[at..]);
    }

    /// What the kernel took reaches the client, which decrypts it.
    fn client_read(&mut self) {
        let bytes = std::mem::take(&mut self.pipe.outbound);
        if self.client_error.is_some() {
            return;
        }
        let mut r = &bytes[..];
        while !r.is_empty() {
            if self.client.read_tls(&mut r).is_err() {
                break;
            }
            if let Err(e) = self.client.process_new_packets() {
                assert!(self.corrupted, "the client rejected the server's records: {e}");
                self.client_error = Some(e);
                return;
            }
            let mut buf = [0u8; 16 << 10];
            loop {
                match self.client.reader().read(&mut buf) {
                    Ok(0) => {
                        // close_notify comes behind the last whole frame.
                        assert!(
                            self.corrupted || self.wire.partial() == 0,
                            "close_notify cut a frame short"
                        );
                        self.client_eof = true;
                        break;
                    }
                    Ok(n) => {
                        self.wire.push(&buf[..n]);
                    }
                    Err(_) => break,
                }
            }
        }
    }

    /// Runs one driver call, checking nothing is written after the
    /// half-close.
    fn drive(&mut self, f: impl FnOnce(&mut Run) -> TurnResult) -> TurnResult {
        let (shut, before) = (self.shut, self.pipe.outbound.len());
        let done = f(self);
        assert!(
            !shut || self.pipe.outbound.len() == before,
            "{} bytes written after the write side was shut down",
            self.pipe.outbound.len() - before
        );
        done
    }

    /// The end of a turn, as the worker's `finish`.
    fn finish(&mut self) {
        let turn = EndTurn { writable: self.writable, hold_queue: false };
        let done = self.drive(|r| {
            let mut io = TlsIo { tls: &mut r.tls, sock: &mut r.pipe, scratch: &mut r.scratch };
            r.host.end_turn(&mut r.conn, &mut io, turn)
        });
        self.writable = done.writable;
        assert!(!(done.half_close && self.shut), "a second half-close");
        self.shut |= done.half_close;
        assert_eq!(done.closed, self.conn.is_closed());
        if !done.closed {
            assert!(done.deadline > self.host.now, "deadline {} not after now", done.deadline);
        }
        self.client_read();
    }

    /// A read turn: up to `piece` more bytes reach the socket (the FIN with
    /// the last of them when `fin`), the server reads as the worker's
    /// `read_tls` does, then the turn ends with `room` for the kernel.
    fn read_turn(&mut self, piece: usize, fin: bool, room: usize) {
        let n = piece.min(self.to_server.len());
        self.pipe.inbound.extend(self.to_server.drain(..n));
        if fin && self.to_server.is_empty() {
            self.pipe.fin = true;
        }
        self.pipe.room = room;
        let now = self.host.now;
        self.host.set_tick(now, TICK_MS, 1_700_000_000);
        let drain_all = self.pipe.fin;
        let mut io = TlsIo { tls: &mut self.tls, sock: &mut self.pipe, scratch: &mut self.scratch };
        let conn = &mut self.conn;
        let host = &mut self.host;
        let mut plain = 0;
        let read = io.read(drain_all, |p| {
            plain += p.len();
            conn.handle_input(p, &mut host.env());
            conn.wants_read() && plain < TURN_PLAIN
        });
        match read {
            Ok(TlsRead::Drained | TlsRead::More) => {}
            Ok(TlsRead::Eof) => self.conn.handle_eof(),
            Err(e) => {
                assert!(self.corrupted, "the server failed a clean TLS stream: {e}");
                if room == usize::MAX && self.client_error.is_none() {
                    self.server_failed_with_room = true;
                }
                self.server_failed = Some(e.to_string());
                self.conn.handle_io_error();
            }
        }
        self.finish();
        if self.server_failed_with_room {
            // The alert went out with everything before it.
            assert!(self.client_error.is_some(), "no alert after {:?}", self.server_failed);
            self.server_failed_with_room = false;
        }
    }

    /// The socket became writable with `room` bytes of space.
    fn writable_turn(&mut self, room: usize) {
        self.pipe.room = room;
        let done = self.drive(|r| {
            let mut io = TlsIo { tls: &mut r.tls, sock: &mut r.pipe, scratch: &mut r.scratch };
            r.host.handle_writable(&mut r.conn, &mut io)
        });
        self.writable = done.writable;
        self.finish();
    }

    /// The connection's timer fires at tick `now`.
    fn timer(&mut self, now: u64, room: usize) {
        assert!(now >= self.host.now);
        self.host.set_tick(now, TICK_MS, 1_700_000_000);
        self.pipe.room = room;
        self.conn.handle_timer(&mut self.host.env());
        self.finish();
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 || data.len() > MAX_INPUT {
        return;
    }
    let (ctl, seed) = (data[0], data[1]);
    let max_piece = PIECES[(ctl & 7) as usize];
    let budget_mode = (ctl >> 3) & 3;
    let tls12 = ctl & 0x20 != 0;
    let corrupt = usize::from(ctl >> 6);
    let idle = seed & 1 != 0;
    let close_notify = seed & 2 != 0;
    let fin = seed & 4 != 0;
    let policy = if seed & 8 != 0 { SlowConsumerPolicy::Drop } else { SlowConsumerPolicy::Close };
    let key_update = seed & 16 != 0;
    let at = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let mask = data[4].max(1);
    let mut rng = Rng::new(u64::from(ctl) << 8 | u64::from(seed));

    let cfg = configs();
    let client_cfg = if tls12 { &cfg.client12 } else { &cfg.client13 };
    let mut client =
        ClientConnection::new(client_cfg.clone(), "localhost".try_into().unwrap()).unwrap();
    client.set_buffer_limit(None);
    // Written now, sealed and sent once the handshake is done.
    client.writer().write_all(REQUEST).unwrap();
    // With a key update, the rest goes after it.
    let split = if key_update { 5 + (data.len() - 5) / 2 } else { data.len() };
    client.writer().write_all(&data[5..split]).unwrap();
    let mut after_update = key_update.then(|| &data[split..]);

    let settings = small_settings(policy, idle);
    let host = Host::new(settings);
    let conn = Conn::new(0, &host.settings);
    let mut run = Run {
        host,
        conn,
        tls: TlsConn::new(cfg.server.clone()).unwrap(),
        scratch: TlsScratch::new(),
        pipe: Pipe { inbound: Vec::new(), fin: false, outbound: Vec::new(), room: 0 },
        writable: true,
        shut: false,
        to_server: Vec::new(),
        client,
        client_error: None,
        client_eof: false,
        wire: Wire::new(expected_101()),
        c2s: Corrupt {
            at: (corrupt != 0).then_some(at),
            len: [0, 1, 2, 4][corrupt],
            mask,
            seen: 0,
        },
        corrupted: corrupt != 0,
        server_failed_with_room: false,
        server_failed: None,
    };

    let budget = |rng: &mut Rng, writable_event: bool| match budget_mode {
        0 => usize::MAX,
        1 => rng.below(65) as usize,
        2 => rng.below(4097) as usize,
        _ if writable_event => 1 + rng.below(16) as usize,
        _ => 0,
    };

    let mut ended = false;
    for _ in 0..20_000 {
        if !run.alive() {
            break;
        }
        run.pump_client();
        if !run.client.is_handshaking() && run.client_error.is_none() {
            if let Some(rest) = after_update.take() {
                // TLS 1.2 has no KeyUpdate: the bytes just follow.
                let _ = run.client.refresh_traffic_keys();
                run.client.writer().write_all(rest).unwrap();
                run.pump_client();
            }
        }
        if !ended && run.to_server.is_empty() && !run.client.is_handshaking() {
            // Everything the client had to say is on its way: it may end
            // its stream.
            ended = true;
            if close_notify && run.client_error.is_none() {
                run.client.send_close_notify();
                run.pump_client();
            }
        }
        let pending = !run.to_server.is_empty() || !run.pipe.inbound.is_empty();
        if run.conn.wants_read() && (pending || (ended && fin && !run.pipe.fin)) {
            let piece = 1 + rng.below(max_piece) as usize;
            let b = budget(&mut rng, false);
            run.read_turn(piece, ended && fin, b);
        } else if !run.writable || run.conn.has_queued() {
            let b = budget(&mut rng, true).max(1);
            run.writable_turn(b);
        } else {
            // Nothing moves (all said, or a corrupted stream stalled): the
            // end below lets time pass.
            break;
        }
        if run.alive() && rng.below(8) == 0 {
            let now = run.host.now + 1 + rng.below(12);
            let b = budget(&mut rng, false);
            run.timer(now, b);
        }
    }

    if !run.corrupted && run.alive() && !run.client.is_handshaking() {
        assert!(run.tls.is_ready());
        if run.conn.wants_read()
            && run.writable
            && !run.conn.has_queued()
            && run.to_server.is_empty()
            && run.pipe.inbound.is_empty()
        {
            assert_eq!(run.tls.buffered_bytes(), 0, "an idle TLS connection holds buffers");
        }
    }

    // The end: the client reads everything; time runs through every
    // deadline until the connection is gone.
    for _ in 0..32 {
        if !run.alive() {
            break;
        }
        run.writable_turn(usize::MAX);
        if !run.alive() {
            break;
        }
        let deadline = run.conn.deadline(&run.host.settings);
        if deadline == NEVER {
            break;
        }
        run.timer(deadline.max(run.host.now), usize::MAX);
    }
    assert!(!run.alive(), "still open after every deadline passed");
    if !run.corrupted {
        assert!(run.server_failed.is_none());
        if run.host.stats.upgraded == 0 {
            // Read slowly enough, the handshake may miss its deadline: then
            // the connection is dropped without a word.
            let reason = run.conn.close_reason();
            assert!(
                matches!(reason, Some(CloseCause::HandshakeTimeout)),
                "not upgraded, closed for {reason:?}"
            );
            assert!(run.wire.frames == 0 && !run.wire.upgraded() && !run.client_eof);
        }
    }
});

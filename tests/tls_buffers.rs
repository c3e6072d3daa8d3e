//! The TLS pump (`wsedge::tls`) sans-IO, against a rustls client over an
//! in-memory socket that hands over a few bytes at a time: records split
//! anywhere are reassembled, large messages go both ways, and once the
//! traffic stops the connection holds no buffer of its own (the worker's
//! `TlsScratch` does the work), whatever it carried before.

use std::io::{self, Read, Write};
use std::sync::Arc;

use wsedge::tls::{load_server_config, TlsConn, TlsIo, TlsRead, TlsScratch};

/// An in-memory socket: reads at most `chunk` bytes of `inbound` at a time
/// (then `WouldBlock`), takes `room` bytes more into `outbound` at most
/// (then `WouldBlock`).
struct Pipe {
    inbound: Vec<u8>,
    outbound: Vec<u8>,
    chunk: usize,
    room: usize,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inbound.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.inbound.len()).min(self.chunk);
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

fn configs(tag: &str) -> (Arc<rustls::ServerConfig>, rcgen::Certificate) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let dir = std::env::temp_dir().join(format!("wsedge-tlsbuf-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    let cfg = load_server_config(
        dir.join("cert.pem").to_str().unwrap(),
        dir.join("key.pem").to_str().unwrap(),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (cfg, cert)
}

fn client(
    cert: &rcgen::Certificate,
    version: &'static rustls::SupportedProtocolVersion,
) -> rustls::ClientConnection {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut c =
        rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
    c.set_buffer_limit(None);
    c
}

/// Moves the client's records into the pipe, lets the server read them
/// (delivering plaintext into `got`), and the server's records to the
/// client; returns the plaintext the client read.
fn exchange(
    c: &mut rustls::ClientConnection,
    s: &mut TlsConn,
    pipe: &mut Pipe,
    scratch: &mut TlsScratch,
    got: &mut Vec<u8>,
) -> Vec<u8> {
    while c.wants_write() {
        c.write_tls(&mut pipe.inbound).unwrap();
    }
    loop {
        let mut io = TlsIo { tls: s, sock: pipe, scratch };
        let read = io.read(false, |p| {
            got.extend_from_slice(p);
            true
        });
        match read.unwrap() {
            TlsRead::Drained if io.sock.inbound.is_empty() => break,
            TlsRead::Eof => panic!("unexpected end of stream"),
            _ => {}
        }
    }
    let mut plain = Vec::new();
    let out = std::mem::take(&mut pipe.outbound);
    let mut r = &out[..];
    while !r.is_empty() {
        c.read_tls(&mut r).unwrap();
        c.process_new_packets().unwrap();
        let mut buf = [0u8; 16 << 10];
        while let Ok(n @ 1..) = c.reader().read(&mut buf) {
            plain.extend_from_slice(&buf[..n]);
        }
    }
    plain
}

/// A rustls client and the server's TLS state over one in-memory socket
/// (whole reads, room without limit unless a test changes `pipe`).
struct Session {
    c: rustls::ClientConnection,
    s: TlsConn,
    scratch: TlsScratch,
    pipe: Pipe,
}

impl Session {
    fn with_client(cfg: &Arc<rustls::ServerConfig>, c: rustls::ClientConnection) -> Session {
        Session {
            c,
            s: TlsConn::new(cfg.clone()).unwrap(),
            scratch: TlsScratch::new(),
            pipe: Pipe { inbound: Vec::new(), outbound: Vec::new(), chunk: 1 << 20, room: 1 << 30 },
        }
    }

    fn new(
        cfg: &Arc<rustls::ServerConfig>,
        cert: &rcgen::Certificate,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> Session {
        Session::with_client(cfg, client(cert, version))
    }

    /// A session whose handshake is done on both sides.
    fn handshaken(
        cfg: &Arc<rustls::ServerConfig>,
        cert: &rcgen::Certificate,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> Session {
        let mut t = Session::new(cfg, cert, version);
        for _ in 0..4 {
            t.exchange(&mut Vec::new());
        }
        assert!(!t.c.is_handshaking() && t.s.is_ready());
        t
    }

    /// [`exchange`] on this session.
    fn exchange(&mut self, got: &mut Vec<u8>) -> Vec<u8> {
        exchange(&mut self.c, &mut self.s, &mut self.pipe, &mut self.scratch, got)
    }

    /// The server's pump for one turn.
    fn io(&mut self) -> TlsIo<'_, Pipe> {
        TlsIo { tls: &mut self.s, sock: &mut self.pipe, scratch: &mut self.scratch }
    }

    /// The client's records so far, as they are (for a test to alter).
    fn client_records(&mut self) -> Vec<u8> {
        let mut records = Vec::new();
        while self.c.wants_write() {
            self.c.write_tls(&mut records).unwrap();
        }
        records
    }

    /// The client reads what the server wrote and fails with this.
    fn client_error(&mut self) -> rustls::Error {
        let mut r = &self.pipe.outbound[..];
        self.c.read_tls(&mut r).unwrap();
        self.c.process_new_packets().unwrap_err()
    }
}

#[test]
fn records_split_anywhere_large_messages_and_no_buffer_held_when_idle() {
    let (cfg, cert) = configs("idle");
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        for chunk in [1, 7, 1000, 1 << 20] {
            let mut c = client(&cert, version);
            let mut s = TlsConn::new(cfg.clone()).unwrap();
            let mut scratch = TlsScratch::new();
            let mut pipe = Pipe { inbound: Vec::new(), outbound: Vec::new(), chunk, room: 1 << 30 };
            let mut got = Vec::new();
            for _ in 0..4 {
                exchange(&mut c, &mut s, &mut pipe, &mut scratch, &mut got);
            }
            assert!(!c.is_handshaking() && s.is_ready(), "{version:?} chunk {chunk}");
            // TLS 1.3 keeps only its keys after the handshake; 1.2 stays with rustls.
            assert_eq!(s.is_compact(), version == &rustls::version::TLS13);
            for size in [5usize, 16_384, 100_000] {
                let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                c.writer().write_all(&data).unwrap();
                got.clear();
                exchange(&mut c, &mut s, &mut pipe, &mut scratch, &mut got);
                assert_eq!(got, data, "{version:?} chunk {chunk} size {size}");
                // The reply: several slices, small ones gathered.
                let mut io = TlsIo { tls: &mut s, sock: &mut pipe, scratch: &mut scratch };
                let mid = size / 2;
                let mut sent = 0;
                while sent < size {
                    let bufs: Vec<io::IoSlice<'_>> = if sent < mid {
                        vec![io::IoSlice::new(&data[sent..mid]), io::IoSlice::new(&data[mid..])]
                    } else {
                        vec![io::IoSlice::new(&data[sent..])]
                    };
                    sent += io.write_vectored(&bufs).unwrap();
                }
                let back = exchange(&mut c, &mut s, &mut pipe, &mut scratch, &mut Vec::new());
                assert_eq!(back, data, "{version:?} chunk {chunk} size {size}");
                assert_eq!(s.buffered_bytes(), 0, "idle after {size} bytes each way");
            }
        }
    }
}

/// TLS 1.3 KeyUpdate after the hand-over to the compact record layer: the
/// client asks for an update (update_requested) several times, with data
/// before and after each; every byte arrives both ways, the server answers
/// each request with its own KeyUpdate (the client would fail to decrypt
/// the echo otherwise), and the client's close_notify ends the stream.
#[test]
fn key_updates_both_ways_keep_the_stream_whole_then_close_notify_ends_it() {
    let (cfg, cert) = configs("keyupdate");
    let mut t = Session::handshaken(&cfg, &cert, &rustls::version::TLS13);
    assert!(t.s.is_compact());
    for round in 0..5u8 {
        t.c.writer().write_all(&[round; 100]).unwrap();
        t.c.refresh_traffic_keys().unwrap();
        t.c.writer().write_all(&[round + 100; 20_000]).unwrap();
        let records = t.client_records();
        t.pipe.inbound.extend_from_slice(&records);
        let mut got = Vec::new();
        let read = t.io().read(false, |p| {
            got.extend_from_slice(p);
            true
        });
        assert_eq!(read.unwrap(), TlsRead::Drained);
        // Our KeyUpdate waits for our next data record.
        assert!(t.pipe.outbound.is_empty(), "round {round}");
        let mut want = vec![round; 100];
        want.extend_from_slice(&[round + 100; 20_000]);
        assert_eq!(got, want, "round {round}");
        t.io().write_all(&want).unwrap();
        // First our KeyUpdate(update_not_requested) alone: a 5-byte header
        // whose length is 22 (the 5-byte message, its content type, the
        // 16-byte tag), then the data under the new key.
        assert_eq!(t.pipe.outbound[..5], [23, 3, 3, 0, 22], "round {round}");
        let back = t.exchange(&mut Vec::new());
        assert_eq!(back, want, "round {round}: the echo decrypts under the new keys");
    }
    t.c.send_close_notify();
    let records = t.client_records();
    t.pipe.inbound.extend_from_slice(&records);
    assert_eq!(t.io().read(false, |_| panic!("no data")).unwrap(), TlsRead::Eof);
}

/// Found by the `tls` fuzz target: the client's Finished, its first data,
/// a KeyUpdate asking for ours and more data, all in one read. Had rustls
/// processed the KeyUpdate before the hand-over, it would have kept our
/// reply (sealed under the old key) and the hand-over the new key: the
/// client could not decrypt anything after. rustls now stops at the
/// Finished and the compact layer takes the rest.
#[test]
fn a_key_update_in_the_same_read_as_the_clients_finished_is_answered() {
    let (cfg, cert) = configs("kuhandover");
    let mut t = Session::new(&cfg, &cert, &rustls::version::TLS13);
    let mut got = Vec::new();
    // ClientHello in, the server's flight out: the client is done, its
    // Finished not yet sent.
    t.exchange(&mut got);
    assert!(!t.c.is_handshaking() && !t.s.is_ready());
    t.c.writer().write_all(b"before").unwrap();
    t.c.refresh_traffic_keys().unwrap();
    t.c.writer().write_all(b"after").unwrap();
    t.exchange(&mut got);
    assert_eq!(got, b"beforeafter");
    assert!(t.s.is_compact());
    t.io().write_all(b"echo").unwrap();
    assert_eq!(t.exchange(&mut Vec::new()), b"echo");
}

/// A client that only sends KeyUpdates (each costs a key derivation and
/// returns nothing) is cut off after 32 in a row with unexpected_message,
/// as rustls does; 32 are fine, and data in between resets the count.
#[test]
fn thirty_three_key_updates_in_a_row_get_unexpected_message() {
    let (cfg, cert) = configs("kuflood");
    let mut t = Session::handshaken(&cfg, &cert, &rustls::version::TLS13);
    for _ in 0..32 {
        t.c.refresh_traffic_keys().unwrap();
    }
    t.c.writer().write_all(b"x").unwrap();
    for _ in 0..32 {
        t.c.refresh_traffic_keys().unwrap();
    }
    let mut got = Vec::new();
    t.exchange(&mut got);
    assert_eq!(got, b"x", "32 in a row, data, 32 more: still fine");
    t.c.refresh_traffic_keys().unwrap();
    let records = t.client_records();
    t.pipe.inbound.extend_from_slice(&records);
    assert!(t.io().read(false, |_| panic!("no data")).is_err(), "the 33rd");
    assert_eq!(
        t.client_error(),
        rustls::Error::AlertReceived(rustls::AlertDescription::UnexpectedMessage)
    );
}

#[test]
fn a_socket_that_takes_little_keeps_sealed_records_until_writable() {
    let (cfg, cert) = configs("slow");
    let Session { mut c, mut s, mut scratch, mut pipe } =
        Session::handshaken(&cfg, &cert, &rustls::version::TLS13);
    let mut got = Vec::new();
    // Part of a record waits in the connection while the server writes.
    c.writer().write_all(b"abc").unwrap();
    let mut record = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut record).unwrap();
    }
    pipe.inbound.extend_from_slice(&record[..3]);
    let mut io = TlsIo { tls: &mut s, sock: &mut pipe, scratch: &mut scratch };
    assert_eq!(io.read(false, |_| panic!("no whole record yet")).unwrap(), TlsRead::Drained);
    assert!(s.buffered_bytes() > 0);
    let mut io = TlsIo { tls: &mut s, sock: &mut pipe, scratch: &mut scratch };
    assert_eq!(io.write(b"meanwhile").unwrap(), 9);
    pipe.inbound.extend_from_slice(&record[3..]);
    let back = exchange(&mut c, &mut s, &mut pipe, &mut scratch, &mut got);
    assert_eq!(back, b"meanwhile");
    assert!(got.ends_with(b"abc"), "{got:?}");

    let data = vec![0x5au8; 200_000];
    pipe.room = 1000;
    let mut io = TlsIo { tls: &mut s, sock: &mut pipe, scratch: &mut scratch };
    // One call takes at most 64 KiB of plaintext; the socket took 1000
    // bytes of it, the rest is sealed and waits: the next write would block.
    let n = io.write(&data).unwrap();
    assert_eq!(n, 64 << 10);
    assert_eq!(io.write(&data[n..]).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    assert!(!io.flush_records().unwrap());
    io.sock.room = 1 << 30;
    assert!(io.flush_records().unwrap());
    let mut sent = n;
    while sent < data.len() {
        sent += io.write(&data[sent..]).unwrap();
    }
    io.close_notify();
    let back = exchange(&mut c, &mut s, &mut pipe, &mut scratch, &mut Vec::new());
    assert_eq!(back.len(), data.len());
    assert_eq!(s.buffered_bytes(), 0);
    // close_notify came last: the client's stream ended cleanly.
    let mut rest = Vec::new();
    assert_eq!(c.reader().read_to_end(&mut rest).unwrap(), 0);
}

/// Found by the `tls` fuzz target: a ClientHello whose handshake length is
/// over rustls's limit ends the stream in rustls without an alert of its
/// own; the client must still read one (a plaintext decode_error, as
/// nothing was sent yet), and the read fails so the connection closes.
#[test]
fn a_hello_too_large_to_reassemble_gets_a_decode_error_alert() {
    let (cfg, cert) = configs("toolarge");
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut t = Session::new(&cfg, &cert, version);
        let mut hello = t.client_records();
        // Record header (5 bytes), handshake type, then the 24-bit length:
        // its top bit set says 8 MiB.
        assert_eq!(hello[5], 1, "a ClientHello");
        hello[6] ^= 0x80;
        t.pipe.inbound.extend_from_slice(&hello);
        let err = t.io().read(false, |_| panic!("no plaintext")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_eq!(
            t.client_error(),
            rustls::Error::AlertReceived(rustls::AlertDescription::DecodeError),
            "{version:?}"
        );
        // Nothing more: the connection is over.
        assert_eq!(t.io().write(b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}

/// Found by the `tls` fuzz target: in TLS 1.3 the ALPN check fails after
/// the ServerHello is queued; the no_application_protocol alert must follow
/// it, not be lost behind it.
#[test]
fn an_alert_behind_a_server_hello_reaches_the_client() {
    let (cfg, cert) = configs("alpn");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut ccfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    ccfg.alpn_protocols = vec![b"h2".to_vec()];
    let c = rustls::ClientConnection::new(Arc::new(ccfg), "localhost".try_into().unwrap()).unwrap();
    let mut t = Session::with_client(&cfg, c);
    let hello = t.client_records();
    t.pipe.inbound.extend_from_slice(&hello);
    assert!(t.io().read(false, |_| panic!("no plaintext")).is_err());
    assert_eq!(
        t.client_error(),
        rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
    );
}

/// A record that fails to decrypt gets one bad_record_mac alert and ends
/// the stream (asking rustls for more records past its alert would decrypt
/// the record again and queue a second fatal alert, a debug assertion in
/// rustls: found by the `tls` fuzz target).
#[test]
fn a_corrupted_record_gets_bad_record_mac_once() {
    let (cfg, cert) = configs("badmac");
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut t = Session::handshaken(&cfg, &cert, version);
        t.c.writer().write_all(b"hello").unwrap();
        let mut record = t.client_records();
        let last = record.len() - 1;
        record[last] ^= 1;
        t.pipe.inbound.extend_from_slice(&record);
        assert!(t.io().read(false, |_| panic!("nothing decrypts")).is_err());
        assert_eq!(
            t.client_error(),
            rustls::Error::AlertReceived(rustls::AlertDescription::BadRecordMac),
            "{version:?}"
        );
    }
}

/// Found by the `tls` fuzz target: in TLS 1.2 a ClientKeyExchange whose
/// length runs past its record, followed by the ChangeCipherSpec record,
/// ends the stream in rustls without an alert; the server's records are
/// still plaintext then, so the client reads an unexpected_message alert.
#[test]
fn a_tls12_client_flight_with_a_bad_length_gets_an_alert() {
    let (cfg, cert) = configs("tls12len");
    let mut t = Session::new(&cfg, &cert, &rustls::version::TLS12);
    // ClientHello in, the server's flight out to the client.
    t.exchange(&mut Vec::new());
    let mut flight = t.client_records();
    assert_eq!((flight[0], flight[5]), (22, 16), "a ClientKeyExchange record");
    flight[8] ^= 0x40;
    t.pipe.inbound.extend_from_slice(&flight);
    assert!(t.io().read(false, |_| panic!("no plaintext")).is_err());
    assert_eq!(
        t.client_error(),
        rustls::Error::AlertReceived(rustls::AlertDescription::UnexpectedMessage)
    );
}

/// After the server's close_notify, the client's records are read and
/// dropped until its end of stream: a bad one is not handed to rustls
/// (which would queue a fatal alert behind its close_notify, a debug
/// assertion in rustls: found by the `tls` fuzz target).
#[test]
fn records_after_our_close_notify_are_dropped_until_the_end_of_stream() {
    let (cfg, cert) = configs("afterclose");
    let mut t = Session::handshaken(&cfg, &cert, &rustls::version::TLS13);
    t.io().close_notify();
    t.c.writer().write_all(b"late").unwrap();
    let mut record = t.client_records();
    let last = record.len() - 1;
    record[last] ^= 1;
    t.pipe.inbound.extend_from_slice(&record);
    assert_eq!(t.io().read(false, |_| panic!("nothing after close")).unwrap(), TlsRead::Drained);
    assert!(t.pipe.inbound.is_empty(), "read and dropped");
    assert_eq!(t.s.buffered_bytes(), 0);
}

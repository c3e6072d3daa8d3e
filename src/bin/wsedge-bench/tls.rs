//! `wss://` for the client modes: the rustls client configuration built from
//! `--ca`, `--tls` and `--resume`, and one connection's TLS I/O over its
//! non-blocking socket (rustls's buffered `ClientConnection`: plaintext in
//! with `writer()`, records out with `write_tls`, records in with
//! `read_tls` / `process_new_packets`, plaintext out with `reader()`).
//!
//! The load tester verifies the server's certificate against `--ca`, so a
//! run measures what a real client costs the server; that verification
//! costs the client more CPU per handshake than the server spends (judge
//! handshakes by the server's CPU, not by the client's rate).

use std::io::{self, ErrorKind, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// TLS versions a run offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Versions {
    Tls12,
    Tls13,
    /// Both; the server picks (1.3 when it can).
    Any,
}

impl Versions {
    /// `1.2`, `1.3` or `any`.
    pub fn parse(s: &str) -> Result<Versions, String> {
        match s {
            "1.2" => Ok(Versions::Tls12),
            "1.3" => Ok(Versions::Tls13),
            "any" => Ok(Versions::Any),
            _ => Err(format!("--tls must be 1.2, 1.3 or any (got {s:?})")),
        }
    }
}

/// The client configuration of a `wss://` run: trusts the certificates in
/// `ca` (PEM), offers `versions`, and resumes sessions (tickets / TLS 1.3
/// PSK, TLS 1.2 session ids) only when `resume` is set.
pub fn client_config(
    ca: &str,
    versions: Versions,
    resume: bool,
) -> Result<Arc<ClientConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("--ca {ca}: cannot read certificates: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--ca {ca}: bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("--ca {ca}: no certificate found"));
    }
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| format!("--ca {ca}: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let protocols: &[&'static rustls::SupportedProtocolVersion] = match versions {
        Versions::Tls12 => &[&rustls::version::TLS12],
        Versions::Tls13 => &[&rustls::version::TLS13],
        Versions::Any => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(protocols)
        .map_err(|e| format!("--tls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.resumption = if resume {
        rustls::client::Resumption::in_memory_sessions(4096)
    } else {
        rustls::client::Resumption::disabled()
    };
    Ok(Arc::new(cfg))
}

/// A new client connection to `name` (the URL's host).
pub fn connect(cfg: &Arc<ClientConfig>, name: &str) -> Result<Box<ClientConnection>, String> {
    let name = ServerName::try_from(name.to_string())
        .map_err(|e| format!("{name:?} is not a TLS server name: {e}"))?;
    let mut c = ClientConnection::new(cfg.clone(), name).map_err(|e| format!("TLS: {e}"))?;
    // The load tester bounds what it queues itself (messages in flight).
    c.set_buffer_limit(None);
    Ok(Box::new(c))
}

/// Writes rustls's pending records to `sock` until none is left or the
/// socket would block (`Ok(false)`); `writes` counts the calls.
pub fn flush_records(
    tls: &mut ClientConnection,
    sock: &mut TcpStream,
    writes: &mut u64,
) -> io::Result<bool> {
    while tls.wants_write() {
        *writes += 1;
        match tls.write_tls(sock) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Hands `buf` to rustls as plaintext (all of it: no buffer limit) and
/// writes out what records the socket takes.
pub fn write_plain(
    tls: &mut ClientConnection,
    sock: &mut TcpStream,
    buf: &[u8],
    writes: &mut u64,
) -> io::Result<()> {
    tls.writer().write_all(buf)?;
    flush_records(tls, sock, writes).map(|_| ())
}

/// Reads plaintext into `buf`: `Ok(0)` at the end of the stream (the
/// server's close_notify or TCP EOF), `WouldBlock` when the socket is
/// drained. Handshake records rustls answers with go out on the way.
pub fn read_plain(
    tls: &mut ClientConnection,
    sock: &mut TcpStream,
    buf: &mut [u8],
    reads: &mut u64,
    writes: &mut u64,
) -> io::Result<usize> {
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        *reads += 1;
        match tls.read_tls(sock) {
            Ok(0) => return Ok(0),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if let Err(e) = tls.process_new_packets() {
            let _ = flush_records(tls, sock, writes);
            return Err(io::Error::new(ErrorKind::InvalidData, e));
        }
        flush_records(tls, sock, writes)?;
    }
}

/// True when the handshake of `tls` resumed an earlier session.
pub fn resumed(tls: &ClientConnection) -> bool {
    tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

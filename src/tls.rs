//! TLS (`wss://`) with rustls on the same non-blocking mio workers.
//!
//! [`load_server_config`] builds the shared rustls `ServerConfig` (TLS 1.2 and
//! 1.3, ALPN `http/1.1`) from PEM files, naming the file in every error.
//! [`TlsIo`] pumps one connection: encrypted bytes in with `read_tls` /
//! `process_new_packets`, plaintext out through rustls's writer, records out
//! with `write_tls` until the socket would block. rustls's plaintext buffer is
//! bounded (64 KiB); when it is full the writer reports `WouldBlock`, so the
//! connection's own queue and slow-consumer policy apply as for plain TCP.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

/// Loads the certificate chain and private key and builds the server config.
/// Errors name the file and say what is wrong with it.
pub fn load_server_config(cert_path: &str, key_path: &str) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| format!("tls.cert {cert_path}: cannot read certificates: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert {cert_path}: bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("tls.cert {cert_path}: no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("tls.key {key_path}: cannot read a private key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls.key {key_path}: does not fit tls.cert {cert_path}: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Outcome of reading from a TLS connection.
#[derive(Debug, PartialEq, Eq)]
pub enum TlsRead {
    /// Plaintext bytes were placed in the buffer.
    Data(usize),
    /// Nothing more now.
    WouldBlock,
    /// The peer closed (close_notify or TCP EOF).
    Eof,
}

/// One connection's TLS state over its socket.
pub struct TlsIo<'a, S: Read + Write> {
    /// The rustls connection.
    pub tls: &'a mut ServerConnection,
    /// The socket.
    pub sock: &'a mut S,
}

impl<S: Read + Write> TlsIo<'_, S> {
    /// Writes pending TLS records to the socket until it would block.
    /// Returns false if records remain (wait for writable).
    pub fn flush_records(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Reads plaintext into `buf`: pulls records off the socket and
    /// decrypts. A protocol error sends the alert and fails.
    pub fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<TlsRead> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(0) => return Ok(TlsRead::Eof),
                Ok(n) => return Ok(TlsRead::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(TlsRead::Eof),
                Err(e) => return Err(e),
            }
            match self.tls.read_tls(self.sock) {
                Ok(0) => return Ok(TlsRead::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Handshake messages may be waiting to go out.
                    self.flush_records()?;
                    return Ok(TlsRead::WouldBlock);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.tls.process_new_packets() {
                // Tell the peer why (the alert), then fail.
                let _ = self.flush_records();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            self.flush_records()?;
        }
    }

    /// Sends close_notify and flushes what it can.
    pub fn close_notify(&mut self) {
        self.tls.send_close_notify();
        let _ = self.flush_records();
    }
}

impl<S: Read + Write> Write for TlsIo<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // Make room first: records rustls already holds go out before new ones.
        self.flush_records()?;
        let mut taken = 0;
        for b in bufs {
            let n = self.tls.writer().write(b)?;
            taken += n;
            if n < b.len() {
                break;
            }
        }
        self.flush_records()?;
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
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

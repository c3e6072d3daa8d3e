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

/// Why the TLS listener's certificate and key cannot be used. Each error
/// names the config field and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file cannot be opened or read.
    #[error("tls.cert {path}: cannot read certificates: {source}")]
    CertUnreadable {
        /// The file.
        path: String,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM section in the certificate file does not decode.
    #[error("tls.cert {path}: bad PEM: {source}")]
    CertBadPem {
        /// The file.
        path: String,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("tls.cert {path}: no certificate found")]
    NoCertificate {
        /// The file.
        path: String,
    },
    /// The key file cannot be read or holds no private key.
    #[error("tls.key {path}: cannot read a private key: {source}")]
    KeyUnreadable {
        /// The file.
        path: String,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// The crypto provider does not support TLS 1.2 and 1.3.
    #[error("tls: {0}")]
    Protocols(#[source] rustls::Error),
    /// The private key does not belong to the certificate, or is of a kind
    /// rustls cannot sign with.
    #[error("tls.key {key}: does not fit tls.cert {cert}: {source}")]
    KeyMismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// What rustls said.
        source: rustls::Error,
    },
}

/// Loads the certificate chain and private key and builds the server config.
/// Errors name the file and say what is wrong with it.
pub fn load_server_config(cert_path: &str, key_path: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let path = || cert_path.to_owned();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|source| TlsError::CertUnreadable { path: path(), source })?
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::CertBadPem { path: path(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path() });
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|source| TlsError::KeyUnreadable { path: key_path.to_owned(), source })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Protocols)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::KeyMismatch {
            cert: path(),
            key: key_path.to_owned(),
            source,
        })?;
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

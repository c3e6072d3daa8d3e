//! The TLS listener's rustls `ServerConfig`, from the PEM files the config
//! names: TLS 1.3 and 1.2, ALPN `http/1.1`, the cipher suite order of
//! `[tls] cipher_order`, secret extraction for the TLS 1.3 hand-over
//! (`traffic.rs`). Every error names the field and the file.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::config::CipherOrder;

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
    load_server_config_with(cert_path, key_path, CipherOrder::Server)
}

/// Where a suite comes in the server's order: AES-128-GCM, whose SHA-256
/// key schedule and transcript hash run on the CPU's SHA extensions (SHA-384
/// has none on x86: it was 19% of a TLS 1.3 handshake's CPU), then
/// AES-256-GCM, then ChaCha20-Poly1305.
fn server_rank(suite: &rustls::SupportedCipherSuite) -> u8 {
    use rustls::CipherSuite as S;
    match suite.suite() {
        S::TLS13_AES_128_GCM_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        S::TLS13_CHACHA20_POLY1305_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => 2,
        _ => 1,
    }
}

/// [`load_server_config`] with the cipher suite order of `[tls] cipher_order`.
pub fn load_server_config_with(
    cert_path: &str,
    key_path: &str,
    order: CipherOrder,
) -> Result<Arc<ServerConfig>, TlsError> {
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
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if order == CipherOrder::Server {
        // Stable: TLS 1.3 suites stay ahead of TLS 1.2 ones of equal rank.
        provider.cipher_suites.sort_by_key(server_rank);
    }
    let provider = Arc::new(provider);
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
    config.ignore_client_order = order == CipherOrder::Server;
    // TLS 1.3 connections hand their keys to `traffic.rs` after the handshake.
    config.enable_secret_extraction = true;
    Ok(Arc::new(config))
}

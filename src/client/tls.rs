//! The client's rustls configuration for `wss://`: the system's trust store
//! (via `rustls-native-certs`, so the roots an administrator installed,
//! `SSL_CERT_FILE` and `SSL_CERT_DIR` count, as they do for curl), or only
//! the CA certificates of one PEM file (`--ca FILE`). aws-lc-rs, as the
//! server uses; TLS 1.2 and 1.3; ALPN `http/1.1`. SNI is the URL's host
//! (rustls sends none for an IP address).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// Why no client TLS configuration could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    /// The CA file cannot be read or has a bad PEM section.
    #[error("--ca {path}: {source}")]
    CaUnreadable {
        /// The file.
        path: String,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("--ca {path}: no CA certificate found")]
    NoCa {
        /// The file.
        path: String,
    },
    /// The system trust store has no certificate.
    #[error("no system root certificates found ({0}); install ca-certificates or pass --ca FILE")]
    NoSystemRoots(String),
    /// The crypto provider refused the protocol versions.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A client config trusting the CAs in `ca_file`, or the system's roots.
pub fn client_config(ca_file: Option<&str>) -> Result<Arc<rustls::ClientConfig>, ClientTlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|source| ClientTlsError::CaUnreadable { path: path.into(), source })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(ClientTlsError::NoCa { path: path.into() });
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why =
                    found.errors.first().map_or("none in the store".into(), |e| e.to_string());
                return Err(ClientTlsError::NoSystemRoots(why));
            }
        }
    }
    with_roots(roots)
}

/// A client config trusting exactly `roots`.
pub fn with_roots(roots: RootCertStore) -> Result<Arc<rustls::ClientConfig>, ClientTlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

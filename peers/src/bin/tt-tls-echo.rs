//! tokio-tungstenite + tokio-rustls `wss://` echo server, the idiomatic way:
//! `tt-echo` (a multi-threaded tokio runtime, one task per connection,
//! `accept_async`, the stream forwarded into the sink) behind
//! `tokio_rustls::TlsAcceptor`. rustls 0.23 with aws-lc-rs, as wsedge; TLS
//! 1.2 and 1.3, ALPN `http/1.1`, rustls's default session cache and tickets
//! off (its defaults), as wsedge's `load_server_config`. TCP_NODELAY on.
//!
//!   tt-tls-echo --listen ADDR --threads N --cert CERT.pem --key KEY.pem
//!
//! With `TT_SERVER_CIPHER_ORDER=1` in its environment it uses wsedge's
//! default suite order instead of the client's (AES-128-GCM first,
//! `ignore_client_order`), for a like-for-like comparison.

use std::sync::Arc;

use futures_util::{future, StreamExt, TryStreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

async fn serve(acceptor: TlsAcceptor, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(tls) = acceptor.accept(stream).await else {
        return;
    };
    let Ok(ws) = tokio_tungstenite::accept_async(tls).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ =
        read.try_filter(|msg| future::ready(msg.is_text() || msg.is_binary())).forward(write).await;
}

fn main() {
    let (args, rest) = wsedge_peers::args_with("tt-tls-echo", &["--cert", "--key"]);
    let (cert, key) = (&rest[0], &rest[1]);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("read --cert")
        .collect::<Result<_, _>>()
        .expect("parse --cert");
    let key = PrivateKeyDer::from_pem_file(key).expect("read --key");
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let server_order = std::env::var_os("TT_SERVER_CIPHER_ORDER").is_some_and(|v| v == "1");
    if server_order {
        // The ranking of wsedge's `server_rank` (src/tls.rs), copied: the
        // peers do not depend on wsedge.
        use rustls::CipherSuite as S;
        provider.cipher_suites.sort_by_key(|s| match s.suite() {
            S::TLS13_AES_128_GCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
            S::TLS13_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => 2,
            _ => 1,
        });
    }
    let provider = Arc::new(provider);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = server_order;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(args.listen).await.expect("bind");
        eprintln!(
            "tt-tls-echo: wss://{}/ ({} worker threads)",
            listener.local_addr().expect("local addr"),
            args.threads
        );
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(acceptor.clone(), stream));
                }
                Err(e) => {
                    eprintln!("tt-tls-echo: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
}

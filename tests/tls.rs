//! wss:// over rustls: echo and pub/sub through a real TLS client trusting a
//! test CA made in the test (TLS 1.3 and 1.2, messages up to 1 MiB); a
//! plain-text client on the TLS port is refused in plain text; garbage on
//! the TLS port gets an alert and a close; a last record arriving with the
//! FIN is delivered and the connection seen as closed; the server's
//! close_notify ends the stream after its close frame; `openssl s_client`
//! negotiates TLS 1.3; a client stalled in the TLS handshake is dropped at
//! the handshake deadline; bad certificate or key files stop start-up
//! naming the file.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tungstenite::Message;

struct Pki {
    dir: PathBuf,
    ca: CertificateDer<'static>,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("wsedge-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        let other = KeyPair::generate().unwrap();
        std::fs::write(dir.join("other-key.pem"), other.serialize_pem()).unwrap();
        Pki { dir, ca: ca.der().clone() }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    fn server(&self) -> wsedge::Server {
        start(&config(2, |c| {
            c.tls.listen = "127.0.0.1:0".into();
            c.tls.cert = self.path("cert.pem");
            c.tls.key = self.path("key.pem");
        }))
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.client_config_with(&[&rustls::version::TLS13, &rustls::version::TLS12])
    }

    fn client_config_with(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(cfg)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type TlsWs = tungstenite::WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

fn wss(pki: &Pki, addr: SocketAddr, path: &str) -> TlsWs {
    wss_with(pki.client_config(), addr, path)
}

fn wss_with(cfg: Arc<rustls::ClientConfig>, addr: SocketAddr, path: &str) -> TlsWs {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let stream = rustls::StreamOwned::new(conn, sock);
    let (ws, resp) =
        tungstenite::client::client(format!("wss://localhost:{}{path}", addr.port()), stream)
            .expect("wss handshake");
    assert_eq!(resp.status(), 101);
    ws
}

fn json_of(msg: Message) -> serde_json::Value {
    serde_json::from_str(msg.to_text().unwrap()).unwrap()
}

#[test]
fn echo_and_pubsub_over_wss() {
    let pki = Pki::new("echo");
    let server = pki.server();
    let tls = server.tls_addr().expect("TLS listener");
    let mut ws = wss(&pki, tls, "/echo");
    for size in [0, 125, 70_000, 300_000] {
        let data = vec![0x42u8; size];
        ws.send(Message::binary(data.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::binary(data));
    }
    ws.close(None).unwrap();

    let mut sub = wss(&pki, tls, "/ws");
    assert_eq!(json_of(sub.read().unwrap())["type"], "welcome");
    sub.send(Message::text(json!({"type":"subscribe","room":"secure","id":1}).to_string()))
        .unwrap();
    assert_eq!(json_of(sub.read().unwrap())["type"], "ack");
    // The publisher is on the plain listener: rooms are shared.
    let mut publisher = Ps::connect(server.local_addr());
    publisher.request(json!({"type":"publish","room":"secure","data":"over tls"}), 2);
    let m = json_of(sub.read().unwrap());
    assert_eq!(m["data"], "over tls");
}

#[test]
fn tls12_and_tls13_echo_large_messages_and_close_with_close_notify() {
    let pki = Pki::new("versions");
    let server = pki.server();
    let tls = server.tls_addr().expect("TLS listener");
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut ws = wss_with(pki.client_config_with(&[version]), tls, "/echo");
        assert_eq!(ws.get_ref().conn.protocol_version(), Some(version.version));
        // Small messages, several records, and one of 1 MiB (64 records).
        for size in [1, 16_000, 16_385, 1 << 20] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            ws.send(Message::binary(data.clone())).unwrap();
            assert_eq!(ws.read().unwrap(), Message::binary(data));
        }
        ws.close(None).unwrap();
        loop {
            match ws.read() {
                Ok(Message::Close(_)) => {}
                Ok(other) => panic!("{other:?}"),
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        // After its close frame the server sends close_notify: the TLS stream
        // ends cleanly (a FIN without it reads as UnexpectedEof).
        let mut rest = Vec::new();
        let end = std::io::Read::read_to_end(ws.get_mut(), &mut rest);
        assert!(end.is_ok(), "no close_notify: {end:?}");
        assert!(rest.is_empty(), "{rest:?}");
    }
}

/// `[tls] cipher_order`: by default the server's order picks AES-128-GCM
/// even from a client that lists AES-256-GCM first (rustls's own default
/// order), in TLS 1.3 and 1.2; with "client" the client's first choice wins.
#[test]
fn the_server_picks_aes_128_gcm_unless_the_config_says_client_order() {
    use rustls::CipherSuite as S;
    let pki = Pki::new("suites");
    let suite_of = |server: &wsedge::Server, version| {
        let tls = server.tls_addr().expect("TLS listener");
        let mut ws = wss_with(pki.client_config_with(&[version]), tls, "/echo");
        ws.send(Message::text("x")).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text("x"));
        ws.get_ref().conn.negotiated_cipher_suite().expect("a suite").suite()
    };
    let server = pki.server();
    assert_eq!(suite_of(&server, &rustls::version::TLS13), S::TLS13_AES_128_GCM_SHA256);
    assert_eq!(
        suite_of(&server, &rustls::version::TLS12),
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    );
    drop(server);
    let server = start(&config(1, |c| {
        c.tls.listen = "127.0.0.1:0".into();
        c.tls.cert = pki.path("cert.pem");
        c.tls.key = pki.path("key.pem");
        c.tls.cipher_order = wsedge::config::CipherOrder::Client;
    }));
    assert_eq!(suite_of(&server, &rustls::version::TLS13), S::TLS13_AES_256_GCM_SHA384);
    assert_eq!(
        suite_of(&server, &rustls::version::TLS12),
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    );
}

#[test]
fn garbage_on_the_tls_port_gets_an_alert_and_a_close() {
    let pki = Pki::new("garbage");
    let server = pki.server();
    // An empty ClientHello, then bytes that are no TLS record at all: each
    // gets a fatal decode_error alert (RFC 8446 6.2), then the close.
    for garbage in [&[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00][..], &[0x00; 64]] {
        let mut raw = Raw::connect(server.tls_addr().unwrap());
        raw.send(garbage);
        let reply = raw.read_to_end();
        assert_eq!(reply, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32], "{garbage:?}");
    }
    assert!(eventually(|| server.stats().open == 0));
    assert_eq!(server.stats().closes(wsedge::metrics::CloseCause::IoError), 2);
}

#[test]
fn a_last_record_arriving_with_the_fin_is_delivered_and_the_connection_closed() {
    let pki = Pki::new("fin");
    let server = pki.server();
    let mut ws = wss(&pki, server.tls_addr().unwrap(), "/echo");
    assert_eq!(server.stats().open, 1);
    ws.send(Message::text("last words")).unwrap();
    // The record and the FIN leave together.
    ws.get_mut().sock.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("last words"));
    assert!(ws.read().is_err(), "the server ends the connection after the peer's FIN");
    assert!(eventually(|| server.stats().open == 0));
    assert!(server.stats().closes(wsedge::metrics::CloseCause::ClientVanished) == 1);
}

#[test]
fn plain_text_on_the_tls_port_is_refused_in_plain_text() {
    let pki = Pki::new("plain");
    let server = pki.server();
    let mut raw = Raw::connect(server.tls_addr().unwrap());
    raw.send(upgrade_request("/echo").as_bytes());
    let text = String::from_utf8(raw.read_to_end()).unwrap();
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(text.contains("TLS"), "{text}");
}

#[test]
fn a_client_stalled_in_the_tls_handshake_is_dropped_at_the_deadline() {
    let pki = Pki::new("stall");
    let server = start(&config(1, |c| {
        c.tls.listen = "127.0.0.1:0".into();
        c.tls.cert = pki.path("cert.pem");
        c.tls.key = pki.path("key.pem");
        c.handshake.timeout_ms = 300;
    }));
    let mut raw = Raw::connect(server.tls_addr().unwrap());
    // The first bytes of a ClientHello record, then nothing.
    raw.send(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    assert!(raw.expect_eof());
    assert!(eventually(|| {
        server.stats().closes(wsedge::metrics::CloseCause::HandshakeTimeout) == 1
    }));
}

#[test]
fn openssl_s_client_negotiates_tls13() {
    let pki = Pki::new("openssl");
    let server = pki.server();
    let addr = server.tls_addr().unwrap();
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-tls1_3", "-alpn", "http/1.1"])
        .arg("-CAfile")
        .arg(pki.path("cert.pem"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("New, TLSv1.3"), "{text}");
    assert!(text.contains("ALPN protocol: http/1.1"), "{text}");
}

#[test]
fn bad_certificate_or_key_files_stop_start_up_naming_the_file() {
    let pki = Pki::new("bad");
    use wsedge::server::StartError;
    use wsedge::tls::TlsError;
    let unreadable = |e: &TlsError| matches!(e, TlsError::CertUnreadable { .. });
    let no_key = |e: &TlsError| matches!(e, TlsError::KeyUnreadable { .. });
    let no_cert = |e: &TlsError| matches!(e, TlsError::NoCertificate { .. });
    let mismatch = |e: &TlsError| matches!(e, TlsError::KeyMismatch { .. });
    type Expected = fn(&TlsError) -> bool;
    let cases: [(String, String, &str, Expected); 4] = [
        (pki.path("missing.pem"), pki.path("key.pem"), "missing.pem", unreadable),
        (pki.path("cert.pem"), pki.path("missing-key.pem"), "missing-key.pem", no_key),
        (pki.path("key.pem"), pki.path("key.pem"), "key.pem", no_cert),
        (pki.path("cert.pem"), pki.path("other-key.pem"), "other-key.pem", mismatch),
    ];
    for (cert, key, named, expected) in cases {
        let c = config(1, |c| {
            c.tls.listen = "127.0.0.1:0".into();
            c.tls.cert = cert.clone();
            c.tls.key = key.clone();
        });
        let err = match wsedge::Server::start(&c) {
            Ok(_) => panic!("started with cert {cert} key {key}"),
            Err(e) => e,
        };
        assert!(matches!(&err, StartError::Tls(e) if expected(e)), "{err:?}");
        let err = err.to_string();
        assert!(err.contains(named), "{err}");
    }
}

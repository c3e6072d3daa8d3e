//! The client library against an in-process wsedge: echo (text, binary,
//! large), pub/sub through the typed events, credentials by header, query
//! and cookie, Origin, an auth refusal that stops reconnecting, and wss://
//! with a test CA.

mod common;

use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use wsedge::auth::ApiKeyConfig;
use wsedge::client::{
    Backoff, Client, ClientConfig, CredentialIn, Ending, Event, Incoming, Next, Stop, WsUrl,
};

const WAIT: Duration = Duration::from_secs(10);
const KEY: &str = "backend-key-0123456789";

fn cfg(url: &str) -> ClientConfig {
    ClientConfig::new(WsUrl::parse(url).unwrap())
}

/// The next event that is not a `welcome` text.
fn next(c: &mut Client) -> Event {
    loop {
        match c.next_event(WAIT).expect("an event in time") {
            Event::Message(Incoming::Text(t)) if t.contains(r#""type":"welcome""#) => {}
            ev => return ev,
        }
    }
}

#[test]
fn echo_text_binary_and_a_large_message() {
    let server = start(&config(1, |_| {}));
    let url = format!("ws://{}/echo", server.local_addr());
    let mut c = Client::connect(cfg(&url), WAIT).expect("connects");
    c.send_text("héllo").unwrap();
    assert!(matches!(next(&mut c), Event::Message(Incoming::Text(t)) if t == "héllo"));
    c.send_binary(vec![0u8, 1, 255]).unwrap();
    assert!(matches!(next(&mut c), Event::Message(Incoming::Binary(b)) if b[..] == [0, 1, 255]));
    let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    c.send_binary(big.clone()).unwrap();
    assert!(matches!(next(&mut c), Event::Message(Incoming::Binary(b)) if b[..] == big[..]));
    assert_eq!(c.close(1000, WAIT), Some(Ending::ClientClosed { code: 1000 }));
    assert!(c.session().is_stopped());
}

#[test]
fn pubsub_deliveries_are_typed_events() {
    let server = start(&config(2, |_| {}));
    let url = format!("ws://{}/ws", server.local_addr());
    let mut sub = Client::connect(cfg(&url), WAIT).unwrap();
    sub.subscribe("news");
    assert!(matches!(next(&mut sub), Event::Subscribed { room } if room == "news"));
    let mut publisher = Client::connect(cfg(&url), WAIT).unwrap();
    for i in 0..3 {
        publisher.publish("news", &format!(r#"{{"n":{i}}}"#)).unwrap();
    }
    for i in 0..3 {
        match next(&mut sub) {
            Event::Delivery(d) => {
                assert_eq!(
                    (d.room.as_str(), d.data.get()),
                    ("news", format!(r#"{{"n":{i}}}"#).as_str())
                );
                assert_eq!(d.offset, i + 1, "seq read as the offset");
                assert!(d.from.is_some());
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(publisher.publish("news", "not json").is_err(), "bad JSON is refused before sending");
    // A refused subscribe is an error event, not a dead connection.
    sub.subscribe("bad room!");
    assert!(matches!(next(&mut sub), Event::Error(e) if e.contains("bad_room")));
}

fn secured() -> wsedge::Server {
    start(&config(1, |c| {
        c.auth.required = true;
        c.auth.api_keys = vec![ApiKeyConfig {
            name: "backend".into(),
            key: KEY.into(),
            subscribe: vec!["*".into()],
            publish: vec!["*".into()],
            publish_api: false,
            admin: false,
        }];
        c.security.allowed_origins = vec!["https://app.example.com".into()];
    }))
}

#[test]
fn credentials_by_header_query_and_cookie_and_the_origin() {
    let server = secured();
    let url = format!("ws://{}/ws", server.local_addr());
    for place in [
        CredentialIn::Header,
        CredentialIn::Query("token".into()),
        CredentialIn::Cookie("wsedge_token".into()),
    ] {
        let mut c = cfg(&url);
        c.credential = Some((KEY.into(), place.clone()));
        c.origin = Some("https://app.example.com".into());
        let mut client = Client::connect(c, WAIT).unwrap_or_else(|e| panic!("{place:?}: {e}"));
        client.subscribe("private");
        assert!(matches!(next(&mut client), Event::Subscribed { .. }), "{place:?}");
    }
    // A wrong Origin is refused with 403.
    let mut c = cfg(&url);
    c.credential = Some((KEY.into(), CredentialIn::Header));
    c.origin = Some("https://evil.example.com".into());
    let err = Client::connect(c, WAIT).err().expect("refused");
    assert!(err.to_string().contains("403"), "{err}");
}

#[test]
fn an_auth_refusal_stops_reconnecting_with_a_clear_reason() {
    let server = secured();
    let mut c = cfg(&format!("ws://{}/ws", server.local_addr()));
    c.credential = Some(("wrong-key-0123456789".into(), CredentialIn::Header));
    c.reconnect = Some(Backoff { min_delay: Duration::from_millis(10), ..Backoff::default() });
    let mut client = Client::start(c).unwrap();
    match client.next_event(WAIT) {
        Some(Event::Disconnected { reason, next: Next::Stop(Stop::Refused(why)) }) => {
            assert!(why.contains("401"), "{why}");
            assert!(reason.to_string().contains("401 Unauthorized"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(client.session().is_stopped());
    assert_eq!(server.stats().refusals(401), 1, "exactly one attempt");
}

#[test]
fn wss_with_a_test_ca_and_sni() {
    let dir = std::env::temp_dir().join(format!("wsedge-client-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let path = |n: &str| dir.join(n).to_str().unwrap().to_string();
    std::fs::write(path("cert.pem"), cert.pem()).unwrap();
    std::fs::write(path("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    let server = start(&config(1, |c| {
        c.tls.listen = "127.0.0.1:0".into();
        c.tls.cert = path("cert.pem");
        c.tls.key = path("key.pem");
    }));
    let tls_addr = server.tls_addr().unwrap();
    let tls = wsedge::client::tls::client_config(Some(&path("ca.pem"))).unwrap();

    // The certificate names localhost: SNI and verification use the URL's host.
    let mut c = cfg(&format!("wss://localhost:{}/echo", tls_addr.port()));
    c.tls = Some(tls.clone());
    let mut client = Client::connect(c, WAIT).expect("wss connects");
    let big = vec![7u8; 200_000];
    client.send_binary(big.clone()).unwrap();
    assert!(matches!(next(&mut client), Event::Message(Incoming::Binary(b)) if b[..] == big[..]));
    assert_eq!(client.close(1000, WAIT), Some(Ending::ClientClosed { code: 1000 }));

    // By IP the name does not match the certificate: a TLS error.
    let mut c = cfg(&format!("wss://{tls_addr}/echo"));
    c.tls = Some(tls);
    let err = Client::connect(c, WAIT).err().expect("name mismatch");
    assert!(err.to_string().contains("TLS"), "{err}");
    // A CA file without a certificate is refused up front.
    assert!(wsedge::client::tls::client_config(Some(&path("key.pem"))).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

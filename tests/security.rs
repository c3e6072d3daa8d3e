//! Authentication at the handshake, authorization per channel action, rate
//! limits per connection and per IP, over real sockets.

mod common;

use std::net::SocketAddr;

use common::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use wsedge::auth::ApiKeyConfig;

const SECRET: &str = "test-secret-test-secret-test-secret-0123";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn token(claims: serde_json::Value) -> String {
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

fn secured(tweak: impl FnOnce(&mut wsedge::Config)) -> wsedge::Server {
    start(&config(1, |c| {
        c.auth.required = true;
        c.auth.jwt_hs256_secret = SECRET.into();
        c.auth.jwt_issuer = "https://auth.example.com".into();
        c.auth.api_keys = vec![ApiKeyConfig {
            name: "backend".into(),
            key: "backend-key-0123456789".into(),
            subscribe: vec!["*".into()],
            publish: vec!["news:*".into()],
            publish_api: true,
            admin: false,
        }];
        tweak(c);
    }))
}

/// Sends an upgrade to /ws with extra header lines and returns the response head.
fn upgrade_head(addr: SocketAddr, target: &str, extra: &str) -> String {
    let mut raw = Raw::connect(addr);
    raw.send(
        format!(
            "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\
             Sec-WebSocket-Key: {UPGRADE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    );
    raw.read_http_head()
}

fn bearer(t: &str) -> String {
    format!("Authorization: Bearer {t}\r\n")
}

#[test]
fn every_bad_credential_is_refused_with_401_before_the_upgrade() {
    let server = secured(|_| {});
    let addr = server.local_addr();
    let iss = "https://auth.example.com";
    let good = json!({"sub":"alice","exp":now() + 600,"iss":iss});
    assert!(upgrade_head(addr, "/ws", &bearer(&token(good))).starts_with("HTTP/1.1 101"));
    let alg_none = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let h = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let p = b64.encode(json!({"sub":"mallory","exp":now() + 600,"iss":iss}).to_string());
        format!("{h}.{p}.")
    };
    let bad_sig = {
        let t = token(json!({"sub":"alice","exp":now() + 600,"iss":iss}));
        let (head, _) = t.rsplit_once('.').unwrap();
        format!("{head}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    };
    let cases = [
        ("expired", bearer(&token(json!({"sub":"a","exp":now() - 3600,"iss":iss})))),
        (
            "not yet valid",
            bearer(&token(json!({"sub":"a","exp":now() + 7200,"nbf":now() + 3600,"iss":iss}))),
        ),
        ("bad signature", bearer(&bad_sig)),
        ("alg none", bearer(&alg_none)),
        ("wrong issuer", bearer(&token(json!({"sub":"a","exp":now() + 600,"iss":"https://evil"})))),
        ("missing", String::new()),
        ("unknown api key", bearer("not-a-key-at-all")),
    ];
    for (name, header) in cases {
        let head = upgrade_head(addr, "/ws", &header);
        assert!(head.starts_with("HTTP/1.1 401 "), "{name}: {head}");
        assert!(head.contains("WWW-Authenticate: Bearer realm=\"wsedge\""), "{name}: {head}");
    }
    assert_eq!(server.stats().refusals(401), 7);
    // Anonymous routes stay open.
    assert!(upgrade_head(addr, "/echo", "").starts_with("HTTP/1.1 101"));
}

#[test]
fn credentials_from_query_and_cookie_work() {
    let server = secured(|_| {});
    let addr = server.local_addr();
    assert!(upgrade_head(addr, "/ws?token=backend-key-0123456789", "").starts_with("HTTP/1.1 101"));
    let t = token(json!({"sub":"bob","exp":now() + 600,"iss":"https://auth.example.com"}));
    let head = upgrade_head(addr, "/ws", &format!("Cookie: theme=dark; wsedge_token={t}\r\n"));
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

/// A pub/sub client authenticated with a bearer token.
fn ps_with(addr: SocketAddr, t: &str) -> Raw {
    let mut raw = Raw::connect(addr);
    raw.send(
        format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{}\
             Sec-WebSocket-Key: {UPGRADE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            bearer(t)
        )
        .as_bytes(),
    );
    assert!(raw.read_http_head().starts_with("HTTP/1.1 101"));
    raw.read_frame().expect("welcome");
    raw
}

fn ask(raw: &mut Raw, req: serde_json::Value) -> serde_json::Value {
    raw.send(&frame(true, 1, req.to_string().as_bytes()));
    loop {
        let f = raw.read_frame().expect("reply");
        let v: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
        if v["id"] == req["id"] {
            return v;
        }
    }
}

#[test]
fn channel_permissions_from_token_claims_allow_and_deny_each_action() {
    let server = secured(|_| {});
    let t = token(json!({
        "sub":"alice","exp":now() + 600,"iss":"https://auth.example.com",
        "channels":{"subscribe":["chat:*","user:{sub}"],"publish":["chat:*"]}
    }));
    let mut c = ps_with(server.local_addr(), &t);
    assert_eq!(ask(&mut c, json!({"type":"subscribe","room":"chat:1","id":1}))["type"], "ack");
    assert_eq!(ask(&mut c, json!({"type":"subscribe","room":"user:alice","id":2}))["type"], "ack");
    let r = ask(&mut c, json!({"type":"subscribe","room":"user:bob","id":3}));
    assert_eq!(r["code"], "forbidden");
    let r = ask(&mut c, json!({"type":"publish","room":"news:x","data":1,"id":4}));
    assert_eq!(r["code"], "forbidden");
    // Still open and usable.
    c.send(&frame(
        true,
        1,
        json!({"type":"publish","room":"chat:1","data":"hi","id":5}).to_string().as_bytes(),
    ));
    let m: serde_json::Value = serde_json::from_slice(&c.read_frame().unwrap().payload).unwrap();
    assert_eq!(m["data"], "hi");
    assert_eq!(server.stats().forbidden, 2);
}

fn http_publish(addr: SocketAddr, auth: &str) -> u16 {
    let body = r#"{"room":"news:today","data":1}"#;
    let len = body.len();
    let request = format!(
        "POST /api/publish HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {len}\r\n\r\n{body}"
    );
    http(addr, &request).0
}

#[test]
fn the_publish_api_needs_an_api_key_with_publish_rights() {
    let server = secured(|c| c.pubsub.http_publish = true);
    let addr = server.local_addr();
    assert_eq!(http_publish(addr, ""), 401);
    let t = token(json!({"sub":"alice","exp":now() + 600,"iss":"https://auth.example.com"}));
    assert_eq!(http_publish(addr, &bearer(&t)), 403);
    assert_eq!(http_publish(addr, &bearer("backend-key-0123456789")), 202);
}

#[test]
fn a_flooding_client_is_limited_and_closed_while_its_neighbour_is_unaffected() {
    let server = start(&config(1, |c| {
        c.rate_limits.messages_per_sec = 50;
        c.rate_limits.messages_burst = 50;
        c.rate_limits.max_violations = 100;
    }));
    let addr = server.local_addr();
    let mut neighbour = Ps::connect(addr);
    neighbour.subscribe("calm");
    let mut flood = Raw::upgrade(addr, "/ws");
    flood.read_frame().unwrap();
    let mut burst = Vec::new();
    for _ in 0..1000 {
        burst.extend(frame(true, 1, br#"{"type":"publish","room":"noise","data":0}"#));
    }
    flood.send(&burst);
    let mut limited = 0;
    let close = loop {
        let f = flood.read_frame().expect("frames until the close");
        if f.opcode == 8 {
            break f;
        }
        let v: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
        if v["code"] == "rate_limited" {
            limited += 1;
        }
    };
    assert_eq!(close.close_code(), Some(1008));
    assert!(limited >= 50, "told it was limited ({limited})");
    // The neighbour on the same worker still publishes and receives: each
    // publish is acked, and its own messages come back, all of them, in order.
    let mut got = Vec::new();
    for i in 0..20 {
        let (ack, others) =
            neighbour.request_among(json!({"type":"publish","room":"calm","data":i}), 100 + i);
        assert_eq!(ack["type"], "ack", "{ack}");
        got.extend(others);
    }
    while got.len() < 20 {
        got.push(neighbour.recv());
    }
    for (i, m) in got.iter().enumerate() {
        assert_eq!((m["type"].as_str(), m["data"].as_u64()), (Some("message"), Some(i as u64)));
    }
    assert!(eventually(|| server.stats().closes(wsedge::metrics::CloseCause::RateLimited) == 1));
}

#[test]
fn per_ip_connection_cap_answers_429_with_retry_after() {
    let server = start(&config(2, |c| c.rate_limits.connections_per_ip = 3));
    let addr = server.local_addr();
    let held: Vec<Raw> = (0..3).map(|_| Raw::upgrade(addr, "/echo")).collect();
    let mut fourth = Raw::connect(addr);
    fourth.send(upgrade_request("/echo").as_bytes());
    let head = fourth.read_http_head();
    assert!(head.starts_with("HTTP/1.1 429 "), "{head}");
    assert!(head.contains("Retry-After: "), "{head}");
    drop(held);
    assert!(eventually(|| {
        let mut again = Raw::connect(addr);
        again.send(upgrade_request("/echo").as_bytes());
        again.read_http_head().starts_with("HTTP/1.1 101")
    }));
}

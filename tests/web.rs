//! The browser pages and the dashboard feed, over real sockets: who serves
//! what where, and who may open the dashboard. (The pages themselves run in
//! headless Chromium: tests/e2e, `make e2e`.)

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use wsedge::auth::ApiKeyConfig;

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
}

#[test]
fn the_demo_chat_is_served_at_the_root_with_the_pub_sub_path_filled_in() {
    let server = start(&config(1, |c| c.routes.pubsub = "/live".into()));
    let (status, page) = get(server.local_addr(), "/");
    assert_eq!(status, 200);
    assert!(page.contains(r#"<meta name="wsedge-ws" content="/live">"#), "{page}");
    assert_eq!(get(server.local_addr(), "/demo/chat.js").0, 200);
    assert_eq!(get(server.local_addr(), "/vendor/uPlot.iife.min.js").0, 200);
    assert_eq!(get(server.local_addr(), "/demo/nope.js").0, 404);
    // Only GET: a POST to / is not a page.
    let (status, _) =
        http(server.local_addr(), "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, 404);
}

#[test]
fn with_the_demo_off_the_root_is_not_found() {
    let server = start(&config(1, |c| c.demo.enabled = false));
    assert_eq!(get(server.local_addr(), "/").0, 404);
    assert_eq!(get(server.local_addr(), "/demo/chat.js").0, 404);
    // The dashboard is not part of the demo: still there with the metrics.
    assert_eq!(get(server.local_addr(), "/dashboard").0, 200);
}

#[test]
fn the_dashboard_lives_where_the_metrics_live() {
    let server = start(&config(2, |c| c.metrics.listen = "127.0.0.1:0".into()));
    let admin = server.metrics_addr().expect("metrics address");
    assert_eq!(get(admin, "/dashboard").0, 200);
    assert_eq!(get(admin, "/dashboard/dashboard.js").0, 200);
    assert_eq!(get(server.local_addr(), "/dashboard").0, 404);
    // The chat is not on the metrics address.
    assert_eq!(get(admin, "/").0, 404);
    // Nor is the feed on the main listener.
    let (status, _) = upgrade_status(server.local_addr(), "/dashboard/ws");
    assert_eq!(status, 404);
    // On the metrics address it streams snapshots.
    let mut ws = client(admin, "/dashboard/ws");
    let snap = read_json(&mut ws);
    assert_eq!(snap["workers"].as_array().map(Vec::len), Some(2), "{snap}");
    assert!(snap["rss_bytes"].as_u64().unwrap_or(0) > 0, "{snap}");
    assert!(snap["closes"]["http_served"].is_u64(), "{snap}");
}

#[test]
fn snapshots_keep_coming_and_count_new_connections() {
    let server = start(&config(2, |_| {}));
    let mut ws = client(server.local_addr(), "/dashboard/ws");
    let open = |v: &serde_json::Value| -> u64 {
        v["workers"].as_array().unwrap().iter().map(|w| w["open"].as_u64().unwrap()).sum()
    };
    let first = read_json(&mut ws);
    let clients: Vec<_> = (0..10).map(|_| client(server.local_addr(), "/echo")).collect();
    // Snapshots keep coming; one of the next few counts the ten clients.
    let mut seen = Vec::new();
    for _ in 0..5 {
        let snap = read_json(&mut ws);
        assert!(snap["unix_ms"].as_u64() > first["unix_ms"].as_u64());
        seen.push(open(&snap));
        if open(&snap) >= open(&first) + 10 {
            break;
        }
    }
    assert!(seen.iter().any(|&n| n >= open(&first) + 10), "{seen:?} from {}", open(&first));
    drop(clients);
}

/// Sends an upgrade request for `path`; (status, head).
fn upgrade_status(addr: SocketAddr, path: &str) -> (u16, String) {
    upgrade_with(addr, path, "")
}

fn upgrade_with(addr: SocketAddr, path: &str, extra: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = upgrade_request(path).replace("\r\n\r\n", &format!("\r\n{extra}\r\n"));
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    (head[9..12].parse().unwrap(), head)
}

#[test]
fn with_auth_required_the_feed_takes_an_admin_api_key() {
    let key = |name: &str, admin| ApiKeyConfig {
        name: name.into(),
        key: format!("{name}-key-0123456789"),
        subscribe: vec!["*".into()],
        publish: vec!["*".into()],
        publish_api: false,
        admin,
    };
    let server = start(&config(1, |c| {
        c.auth.required = true;
        c.auth.api_keys = vec![key("ops", true), key("bot", false)];
    }));
    let addr = server.local_addr();
    assert_eq!(upgrade_status(addr, "/dashboard/ws").0, 401);
    let (status, head) = upgrade_with(addr, "/dashboard/ws?token=bot-key-0123456789", "");
    assert_eq!(status, 403, "{head}");
    assert!(head.contains("admin"), "the refusal says why: {head}");
    let (status, _) =
        upgrade_with(addr, "/dashboard/ws", "Authorization: Bearer ops-key-0123456789\r\n");
    assert_eq!(status, 101);
    // The page itself is static and needs no key.
    assert_eq!(get(addr, "/dashboard").0, 200);
}

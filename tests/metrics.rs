//! /metrics after a scripted scenario: every counter has the value the
//! scenario implies. Plus /healthz and /readyz, on a separate metrics address.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
}

fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
        .parse::<f64>()
        .unwrap() as u64
}

#[test]
fn metrics_count_a_scripted_scenario() {
    let server = start(&config(2, |c| {
        c.write_queue.max_bytes = 64 * 1024;
        c.write_queue.high_water_bytes = 32 * 1024;
        c.server.socket_send_buffer_bytes = 16 * 1024;
    }));
    let addr = server.local_addr();

    // 10 echo clients x 5 messages of 100 bytes.
    let mut echo: Vec<Raw> = (0..10).map(|_| Raw::upgrade(addr, "/echo")).collect();
    for c in echo.iter_mut() {
        for _ in 0..5 {
            c.send(&frame(true, 2, &[7u8; 100]));
        }
        for _ in 0..5 {
            c.read_frame().unwrap();
        }
    }
    // One refusal of each kind.
    for req in [
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"POST /echo HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n\r\n".to_vec(),
        b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        [b"GET /echo HTTP/1.1\r\n".to_vec(), vec![b'a'; 9000]].concat(),
    ] {
        let mut raw = Raw::connect(addr);
        raw.send(&req);
        raw.read_to_end();
    }
    // One protocol violation (1002).
    let mut bad = Raw::upgrade(addr, "/echo");
    bad.send(&[0x81, 0x01, b'x']);
    bad.read_until_close();
    drop(bad);
    // One slow consumer: a subscriber that never reads, flooded.
    let stalled = {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&addr.into()).unwrap();
        let mut raw = Raw::from_stream(sock.into());
        let mut bytes = upgrade_request("/ws").into_bytes();
        bytes.extend(frame(true, 1, br#"{"type":"subscribe","room":"flood"}"#));
        raw.send(&bytes);
        raw
    };
    let mut publisher = Ps::connect(addr);
    publisher.request(serde_json::json!({"type":"presence","room":"flood"}), 1);
    let filler = "x".repeat(4000);
    for _ in 0..400 {
        publisher.send(serde_json::json!({"type":"publish","room":"flood","data":filler}));
    }
    assert!(eventually(|| server.stats().closes(wsedge::metrics::CloseCause::SlowConsumer) == 1));
    drop(stalled);
    drop(echo);
    assert!(eventually(|| server.stats().open == 1), "only the publisher is left");

    let (status, text) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(sample(&text, "wsedge_upgrades_total"), 10 + 1 + 1 + 1);
    // 50 echo messages + 1 presence + 400 publishes + the subscribe.
    assert_eq!(sample(&text, "wsedge_messages_in_total"), 50 + 1 + 400 + 1);
    assert!(sample(&text, "wsedge_bytes_in_total") >= 50 * 100);
    for status in ["404", "405", "426", "400", "431"] {
        assert_eq!(
            sample(&text, &format!("wsedge_handshakes_refused_total{{status=\"{status}\"}}")),
            1,
            "status {status}"
        );
    }
    assert_eq!(sample(&text, "wsedge_connections_closed_total{reason=\"protocol_error\"}"), 1);
    assert_eq!(sample(&text, "wsedge_connections_closed_total{reason=\"slow_consumer\"}"), 1);
    assert_eq!(sample(&text, "wsedge_connections_closed_total{reason=\"handshake_refused\"}"), 5);
    assert_eq!(sample(&text, "wsedge_connections_closed_total{reason=\"client_vanished\"}"), 10);
    let open: u64 =
        (0..2).map(|w| sample(&text, &format!("wsedge_connections_open{{worker=\"{w}\"}}"))).sum();
    // The publisher plus this scrape's own connection.
    assert_eq!(open, 2);
    assert!(sample(&text, "wsedge_process_resident_memory_bytes") > 1 << 20);
    assert!(sample(&text, "wsedge_process_open_fds") > 3);
    assert!(sample(&text, "wsedge_fanout_deliveries_total") >= 1);
    // Every worker answered; the bus is idle once the scenario is over.
    assert_eq!(sample(&text, "wsedge_query_timeouts_total"), 0);
    let bus: u64 =
        (0..2).map(|w| sample(&text, &format!("wsedge_bus_queued_bytes{{worker=\"{w}\"}}"))).sum();
    assert_eq!(bus, 0);
}

#[test]
fn health_and_readiness_on_a_separate_metrics_address() {
    let server = start(&config(2, |c| c.metrics.listen = "127.0.0.1:0".into()));
    let admin = server.metrics_addr().expect("metrics address");
    assert_eq!(http_get(admin, "/healthz"), (200, "ok\n".into()));
    assert_eq!(http_get(admin, "/readyz"), (200, "ready\n".into()));
    let (status, text) = http_get(admin, "/metrics");
    assert_eq!(status, 200);
    assert!(text.contains("wsedge_connections_open{worker=\"1\"}"));
    // Not served on the main listener when a separate address is set.
    assert_eq!(http_get(server.local_addr(), "/metrics").0, 404);
    // WebSocket routes are not served on the metrics address.
    assert_eq!(http_get(admin, "/echo").0, 404);
    // Once shutdown starts, readiness fails while the drain runs.
    let _client = Raw::upgrade(server.local_addr(), "/echo");
    server.begin_shutdown(Duration::from_secs(5));
    assert!(eventually(|| http_get(admin, "/readyz").0 == 503));
}

/// The metrics listener belongs to one worker. During a graceful shutdown
/// that worker must keep answering health, readiness (503) and metrics until
/// every worker has drained, even when its own clients are gone first.
#[test]
fn readiness_answers_503_until_the_last_worker_has_drained() {
    let server = start(&config(2, |c| c.metrics.listen = "127.0.0.1:0".into()));
    let admin = server.metrics_addr().expect("metrics address");
    let mut clients = one_per_worker(server.local_addr(), 2);
    server.begin_shutdown(Duration::from_secs(3));
    // The client on worker 0 (which holds the metrics listener) completes the
    // close handshake at once; the one on worker 1 never answers, so worker 1
    // drains until the deadline.
    let first = &mut clients[0].ws;
    loop {
        match first.read() {
            Ok(tungstenite::Message::Close(frame)) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001));
                let _ = first.flush();
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    // Worker 0 has nothing of its own left; probes are still answered.
    let until = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < until {
        assert_eq!(http_get(admin, "/readyz"), (503, "shutting down\n".into()));
        assert_eq!(http_get(admin, "/metrics").0, 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(clients);
}

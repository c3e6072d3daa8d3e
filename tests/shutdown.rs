//! Graceful shutdown of the real binary: on SIGTERM every client receives a
//! 1001 close before its TCP connection ends, a message acknowledged before
//! the signal reaches every subscriber first, and the process exits 0 within
//! the drain deadline. Also: a bad config file stops start-up with file, line
//! and field.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn spawn(args: &[&str]) -> (Child, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsedge"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split_whitespace().nth(3).expect("listening on ADDR").parse().unwrap();
    (child, addr)
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn sigterm_closes_every_client_with_1001_and_exits_within_the_drain_deadline() {
    let dir = std::env::temp_dir().join(format!("wsedge-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, "[shutdown]\ndrain_timeout_ms = 5000\n").unwrap();
    let (mut child, addr) =
        spawn(&["--listen", "127.0.0.1:0", "--workers", "2", "--config", cfg.to_str().unwrap()]);

    // Subscribers on both workers, and a publisher whose message is acked
    // right before the signal.
    let mut subs: Vec<Ps> = one_per_worker(addr, 2);
    for s in subs.iter_mut() {
        s.subscribe("last-words");
    }
    let mut clients: Vec<Raw> = (0..1000).map(|_| Raw::upgrade(addr, "/echo")).collect();
    let mut publisher = Ps::connect(addr);
    let ack = publisher.request(json!({"type":"publish","room":"last-words","data":"bye"}), 1);
    assert_eq!(ack["type"], "ack");

    let started = Instant::now();
    // SAFETY: kill(2) takes plain integers and touches no memory; the pid is
    // our child's, not yet waited for, so it cannot name another process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };

    for s in subs.iter_mut() {
        let m = s.recv();
        assert_eq!((m["type"].as_str(), m["data"].as_str()), (Some("message"), Some("bye")));
        match s.ws.read() {
            Ok(tungstenite::Message::Close(Some(cf))) => assert_eq!(u16::from(cf.code), 1001),
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
    for c in clients.iter_mut() {
        let close = c.read_until_close().expect("a close frame before the TCP connection ends");
        assert_eq!(close.close_code(), Some(1001));
        // Answer it, as a well-behaved client does.
        c.send(&frame(true, 8, &1001u16.to_be_bytes()));
    }
    drop(clients);
    drop(subs);
    drop(publisher);
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5 + 2), "within the drain deadline");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn clients_that_never_answer_are_dropped_at_the_drain_deadline() {
    let dir = std::env::temp_dir().join(format!("wsedge-drain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "[shutdown]\ndrain_timeout_ms = 1000\n[health]\nclose_timeout_ms = 60000\n",
    )
    .unwrap();
    let (mut child, addr) =
        spawn(&["--listen", "127.0.0.1:0", "--workers", "1", "--config", cfg.to_str().unwrap()]);
    let mut silent = Raw::upgrade(addr, "/echo");
    // SAFETY: kill(2) takes plain integers and touches no memory; the pid is
    // our child's, not yet waited for, so it cannot name another process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(silent.read_until_close().and_then(|f| f.close_code()), Some(1001));
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("exited at the deadline");
    assert!(status.success());
    assert!(silent.expect_eof());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_config_file_names_the_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("wsedge-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("[server]\nlisten = \"127.0.0.1:1\"\nworkerz = 2\n", ":3", "workerz"),
        ("[health]\n\nping_interval_ms = \"soon\"\n", ":3", "health.ping_interval_ms"),
        ("[write_queue]\nmax_bytes = 100\n", ":2", "write_queue.max_bytes"),
    ];
    for (text, line, field) in cases {
        let path = dir.join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_wsedge"))
            .args(["--check-config", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("bad.toml{line}")), "{err}");
        assert!(err.contains(field), "{err}");
        // The server refuses to start with it too.
        let out = Command::new(env!("CARGO_BIN_EXE_wsedge"))
            .args(["--config", path.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
    }
    let out =
        Command::new(env!("CARGO_BIN_EXE_wsedge")).arg("--print-default-config").output().unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    let path = dir.join("default.toml");
    std::fs::write(&path, &printed).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wsedge"))
        .args(["--check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "the printed default is itself valid");
    let _ = std::fs::remove_dir_all(&dir);
}

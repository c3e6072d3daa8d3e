//! Under a lowered descriptor limit the server keeps serving its existing
//! clients, does not spin on the listener, and accepts the waiting ones as
//! soon as descriptors are free.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn emfile_keeps_existing_clients_and_recovers() {
    let bin = env!("CARGO_BIN_EXE_wsedge");
    let mut child = Command::new("bash")
        .args(["-c", &format!("ulimit -n 40 && exec {bin} --listen 127.0.0.1:0 --workers 1")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while stdout.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let addr: std::net::SocketAddr =
        line.split_whitespace().nth(3).expect("listening on ADDR").parse().unwrap();

    // Up to ~34 descriptors are free: open 60 connections.
    let mut conns: Vec<Raw> = (0..60).map(|_| Raw::connect(addr)).collect();
    for c in conns.iter_mut() {
        c.sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        c.send(upgrade_request("/echo").as_bytes());
    }
    let mut upgraded = Vec::new();
    let mut waiting = Vec::new();
    for mut c in conns.drain(..) {
        let mut buf = [0u8; 256];
        match c.sock.read(&mut buf) {
            Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 101") => upgraded.push(c),
            _ => waiting.push(c),
        }
    }
    assert!(
        !upgraded.is_empty() && !waiting.is_empty(),
        "{} up, {} waiting",
        upgraded.len(),
        waiting.len()
    );

    // Not spinning while out of descriptors: under half a core over one second.
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - before;
    assert!(used < 50, "server used {used} clock ticks in 1 s while out of descriptors");

    // Existing clients are still served.
    for c in upgraded.iter_mut().take(5) {
        c.sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.send(&frame(true, 1, b"still served"));
        assert_eq!(c.read_frame().unwrap().payload, b"still served");
    }

    // Free descriptors: every waiting client gets its upgrade.
    let freed = upgraded.len();
    drop(upgraded);
    let _ = freed;
    let deadline = Instant::now() + Duration::from_secs(10);
    for c in waiting.iter_mut().take(20) {
        c.sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = c.read_http_head();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(Instant::now() < deadline);
    }
    let _ = child.kill();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let _ = child.wait();
    assert!(err.matches("accept failed").count() >= 1, "logged: {err}");
    assert!(err.matches("accept failed").count() <= 2, "rate-limited log: {err}");
}

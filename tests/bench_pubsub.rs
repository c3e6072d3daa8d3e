//! `wsedge-bench pubsub` against a real server: it subscribes every client,
//! publishes, and reports every delivery accounted for, in both wsedge
//! dialects and against the raw-TCP fan-out ceiling (`serve-tcp-fanout`).
//! Loopback only, bounded in time (about a second each).

mod common;

use std::process::{Command, Stdio};

use common::*;

/// Runs the load tester; its JSON line.
fn pubsub(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_wsedge-bench"))
        .arg("pubsub")
        .args(["--secs", "0.5", "--warmup", "0.1"])
        .args(args)
        .output()
        .expect("wsedge-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("SUMMARY pubsub ")), "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("{\"mode\"")).expect("JSON line");
    serde_json::from_str(line).expect("valid JSON")
}

fn assert_clean(v: &serde_json::Value) {
    assert!(v["deliveries"].as_u64().unwrap() > 0, "{v}");
    assert!(v["published_all"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["expected"], v["received"], "{v}");
    for k in ["missing", "duplicates", "out_of_order", "unexpected", "errors", "owed_end"] {
        assert_eq!(v[k], 0, "{k}: {v}");
    }
}

#[test]
fn every_delivery_from_wsedge_is_accounted_for_json_and_binary() {
    let server = start(&config(2, |_| {}));
    let url = format!("ws://{}/ws", server.local_addr());
    let args = ["--url", &url, "--subs", "40", "--rooms", "8", "--pubs", "3"];
    let v = pubsub(&args);
    assert_eq!(v["dialect"], "json");
    assert_clean(&v);
    // Every room got publishes, so every subscriber was owed some.
    assert_eq!(v["expected"].as_u64().unwrap() % 5, 0, "5 subscribers per room: {v}");
    let v = pubsub(&[&args[..], &["--binary", "--rate", "2000"]].concat());
    assert_eq!(v["dialect"], "binary");
    assert_clean(&v);
}

#[test]
fn the_ceiling_server_is_driven_by_the_same_mode() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let mut ceiling = Command::new(env!("CARGO_BIN_EXE_wsedge-bench"))
        .args(["serve-tcp-fanout", "--listen", &listen, "--secs", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ceiling starts");
    assert!(eventually(|| std::net::TcpStream::connect(&listen).is_ok()));
    let url = format!("tcp://{listen}");
    let v = pubsub(&["--url", &url, "--subs", "30", "--rooms", "3", "--pubs", "2"]);
    let _ = ceiling.kill();
    let _ = ceiling.wait();
    assert_eq!(v["dialect"], "tcp");
    assert_clean(&v);
}

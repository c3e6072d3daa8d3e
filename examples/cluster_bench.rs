//! Publish -> delivery through wsedge nodes, for BENCHMARKS.md ("Clustering";
//! `scripts/cluster_bench.sh` starts Redis and the nodes and runs this):
//!
//! - `latency PUB_ADDR SUB_ADDR N`: one publisher on PUB_ADDR, one subscriber
//!   on SUB_ADDR, one message in flight; prints p50/p99/p999 publish ->
//!   delivery in microseconds.
//! - `rate PUB_ADDR SUB_ADDR SECS SUBS WINDOW`: one publisher as fast as a
//!   window of WINDOW messages not yet delivered allows, SUBS subscribers on
//!   SUB_ADDR; prints publishes/s and deliveries/s.
//!
//! Blocking tungstenite clients; loopback only. Prints one JSON line.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

fn connect(addr: &str) -> Ws {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    let (ws, _) = tungstenite::client::client(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(s))
        .expect("handshake");
    ws
}

fn text(ws: &mut Ws) -> serde_json::Value {
    loop {
        if let Message::Text(t) = ws.read().expect("read") {
            return serde_json::from_str(&t).expect("json");
        }
    }
}

fn subscribe(ws: &mut Ws, room: &str) {
    let _welcome = text(ws);
    let req = serde_json::json!({"type":"subscribe","room":room,"id":1});
    ws.send(Message::text(req.to_string())).unwrap();
    loop {
        let m = text(ws);
        if m["type"] == "ack" {
            return;
        }
    }
}

fn publish(ws: &mut Ws, room: &str, data: u64) {
    let req = format!(r#"{{"type":"publish","room":"{room}","data":{data}}}"#);
    ws.write(Message::text(req)).unwrap();
}

fn latency(pub_addr: &str, sub_addr: &str, n: usize) {
    let room = format!("lat{}", std::process::id());
    let mut sub = connect(sub_addr);
    subscribe(&mut sub, &room);
    let mut publ = connect(pub_addr);
    let _ = text(&mut publ);
    let start = Instant::now();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 1000 {
        let t0 = start.elapsed().as_nanos() as u64;
        publish(&mut publ, &room, t0);
        publ.flush().unwrap();
        let m = text(&mut sub);
        let sent = m["data"].as_u64().expect("data");
        let us = (start.elapsed().as_nanos() as u64 - sent) / 1000;
        if i >= 1000 {
            samples.push(us);
        }
    }
    samples.sort_unstable();
    let q = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        r#"{{"mode":"latency","n":{n},"p50_us":{},"p99_us":{},"p999_us":{}}}"#,
        q(0.5),
        q(0.99),
        q(0.999)
    );
}

fn rate(pub_addr: &str, sub_addr: &str, secs: u64, subs: usize, window: u64) {
    let room = format!("rate{}", std::process::id());
    let delivered = Arc::new(AtomicU64::new(0));
    let first = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for i in 0..subs {
        let mut ws = connect(sub_addr);
        subscribe(&mut ws, &room);
        let (d, f, stop) = (delivered.clone(), first.clone(), stop.clone());
        if let MaybeTlsStream::Plain(s) = ws.get_mut() {
            s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        }
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match ws.read() {
                    Ok(Message::Text(_)) => {
                        d.fetch_add(1, Ordering::Relaxed);
                        if i == 0 {
                            f.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => continue,
                }
            }
        }));
    }
    let mut publ = connect(pub_addr);
    let _ = text(&mut publ);
    let start = Instant::now();
    let mut sent = 0u64;
    let (mut d0, mut s0, mut t0) = (0, 0, None);
    while start.elapsed() < Duration::from_secs(secs + 1) {
        if t0.is_none() && start.elapsed() >= Duration::from_secs(1) {
            t0 = Some(Instant::now());
            d0 = delivered.load(Ordering::Relaxed);
            s0 = first.load(Ordering::Relaxed);
        }
        if sent - first.load(Ordering::Relaxed) < window {
            publish(&mut publ, &room, sent);
            sent += 1;
            if sent.is_multiple_of(64) {
                publ.flush().unwrap();
            }
        } else {
            publ.flush().unwrap();
            std::thread::yield_now();
        }
    }
    let elapsed = t0.map_or(1.0, |t| t.elapsed().as_secs_f64());
    let pubs = (first.load(Ordering::Relaxed) - s0) as f64 / elapsed;
    let dels = (delivered.load(Ordering::Relaxed) - d0) as f64 / elapsed;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    println!(
        r#"{{"mode":"rate","subs":{subs},"window":{window},"publishes_per_s":{pubs:.0},"deliveries_per_s":{dels:.0}}}"#
    );
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: cluster_bench latency PUB SUB N | rate PUB SUB SECS SUBS WINDOW";
    match a.first().map(String::as_str) {
        Some("latency") if a.len() == 4 => latency(&a[1], &a[2], a[3].parse().expect(usage)),
        Some("rate") if a.len() == 6 => rate(
            &a[1],
            &a[2],
            a[3].parse().expect(usage),
            a[4].parse().expect(usage),
            a[5].parse().expect(usage),
        ),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}

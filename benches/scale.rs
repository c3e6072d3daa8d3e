//! The million-connection simulation (`make bench`, `cargo bench --bench scale`).
//!
//! Builds 1,000,000 connection state machines in one process without sockets:
//! each `Conn` is upgraded by feeding it the handshake bytes, then left idle,
//! in a `Slab` of the worker's own slots (`wsedge::worker::Slot`, with a
//! descriptor number in place of the socket), with one deadline per
//! connection in a `TimerWheel` (as the worker keeps them). Turns end through
//! the worker's connection driver (`Host::end_turn`) into an in-memory
//! transport that takes everything. Reports:
//!
//! - bytes per connection state: the RSS delta (from `/proc/self/statm`)
//!   divided by the connection count, next to `size_of::<Conn>()`;
//! - the cost of one wheel tick with 1M timers (each tick fires ~1/250 of
//!   them: the ping timers of a 25 s interval at 100 ms ticks), both the wheel
//!   alone and with every fired connection handling its timer (a ping into the
//!   cork), ending its turn (`Host::end_turn`) and being re-armed
//!   (`Slot::arm`);
//! - one fan-out of one encoded frame to every connection (`Host::enqueue` of
//!   the same `Bytes`, then the dirty list): time, and memory per queued
//!   frame.
//!
//! Kernel socket memory is not part of this: `make bench` measures server RSS
//! per idle connection at 19,000 real connections for that side.
//!
//! Knobs: `SCALE_CONNS` (default 1000000). Prints a markdown table and one
//! JSON line starting with `{"bench":"scale"`.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use slab::Slab;
use wsedge::config::Config;
use wsedge::conn::{Conn, EndTurn, Env, Host, Phase, Settings};
use wsedge::id::ConnId;
use wsedge::outbox::Cork;
use wsedge::pubsub::protocol;
use wsedge::timer::TimerWheel;
use wsedge::worker::Slot;

/// The worker's slot with the socket's 4-byte descriptor in place of the
/// `mio::net::TcpStream` that wraps one (a million sockets cannot be opened
/// here); `main` checks it is exactly the size of the worker's
/// (`wsedge::worker::slot_size`).
type SimSlot = Slot<RawFd>;

/// Ticks of 100 ms over which the connections were accepted (so their ping
/// deadlines are spread like a steady state of a 25 s ping interval).
const SPREAD: u64 = 250;
const WHEEL_SLOTS: usize = 1024;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let resident: u64 =
        statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("statm resident field");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    resident * page
}

fn request(i: usize) -> Vec<u8> {
    // A distinct key per connection (16 bytes, base64), as real clients send.
    use base64::Engine as _;
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&(i as u64).to_le_bytes());
    key[8..].copy_from_slice(&(!(i as u64)).to_le_bytes());
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         Origin: http://127.0.0.1:8080\r\n\r\n"
    )
    .into_bytes()
}

/// The environment at tick `now` (100 ms ticks), as the worker builds it.
fn env_at(host: &mut Host, now: u64) -> Env<'_> {
    host.set_tick(now, 100, 1_800_000_000);
    host.env()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mib(b: f64) -> f64 {
    b / (1024.0 * 1024.0)
}

fn main() {
    // `cargo bench` passes --bench; under `cargo test` (make test) this runs
    // as a quick smoke test with 10,000 connections instead of a million.
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("SCALE_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 1_000_000 } else { 10_000 });
    let mut rig = Host::new(Settings::from_config(&Config::default(), 100));
    rig.cork = Cork::with_capacity(64 * 1024);
    // Requests are built before the baseline so they are not counted; they
    // are freed afterwards (not counted against the connections either way).
    let requests: Vec<Vec<u8>> = (0..1024).map(request).collect();
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");

    let rss0 = rss_bytes();
    let t = Instant::now();
    // Release builds only: in debug builds mio's sockets carry a selector id
    // for its own checks, so the real slot is larger there.
    #[cfg(not(debug_assertions))]
    assert_eq!(
        std::mem::size_of::<SimSlot>(),
        wsedge::worker::slot_size(),
        "the simulated slot must be the worker's slot, byte for byte"
    );
    let mut conns: Slab<SimSlot> = Slab::new();
    for i in 0..n {
        let now = i as u64 % SPREAD;
        let mut conn = Conn::new(now, &rig.settings);
        // Distinct keys would cost a base64 encode each; 1024 rotate.
        conn.handle_input(&requests[i % requests.len()], &mut env_at(&mut rig, now));
        assert_eq!(conn.phase(), Phase::Open, "connection {i} did not upgrade");
        rig.cork.clear();
        rig.events.clear();
        let key = conns.vacant_key();
        conns.insert(Slot::new(-1, conn, peer, ConnId::from_parts(0, key, 1), None));
    }
    let build = t.elapsed();
    let rss_conns = rss_bytes();

    let t = Instant::now();
    let mut wheel: TimerWheel<usize> = TimerWheel::new(WHEEL_SLOTS, 0);
    for (key, slot) in conns.iter_mut() {
        let at = slot.conn().deadline(&rig.settings);
        slot.arm(&mut wheel, key, at);
    }
    let arm = t.elapsed();
    let rss_timers = rss_bytes();
    let retained: usize = conns.iter().map(|(_, s)| s.conn().retained_bytes()).sum();

    // Nothing is due before SPREAD: move there (walks empty slots).
    assert_eq!(wheel.advance(SPREAD - 1, |_, _| unreachable!()), 0);
    let mut now = SPREAD - 1;
    let ticks = 40;

    // 1. The wheel alone: fire one tick's timers and re-arm them.
    let mut wheel_only = Vec::with_capacity(ticks);
    let mut fired_total = 0usize;
    let mut due = Vec::with_capacity(8192);
    for _ in 0..ticks {
        now += 1;
        let t = Instant::now();
        wheel.advance(now, |_, key| due.push(key));
        for &key in &due {
            let slot = &mut conns[key];
            slot.timer_fired();
            slot.arm(&mut wheel, key, now + SPREAD);
        }
        wheel_only.push(t.elapsed());
        fired_total += due.len();
        due.clear();
    }
    let per_tick_wheel = fired_total / ticks;

    // 2. A worker's tick (`Worker::on_timer`): each fired connection handles
    //    its timer (a ping goes into the cork), its turn ends through the
    //    driver (the cork written to a transport that takes it all), and it
    //    is re-armed at the deadline the driver returns.
    let mut kernel = std::io::sink();
    let mut with_conn = Vec::with_capacity(ticks);
    let mut fired_total = 0usize;
    let mut pings = 0usize;
    for _ in 0..ticks {
        now += 1;
        let t = Instant::now();
        wheel.advance(now, |_, key| due.push(key));
        for &key in &due {
            let slot = &mut conns[key];
            slot.timer_fired();
            slot.conn_mut().handle_timer(&mut env_at(&mut rig, now));
            pings += usize::from(!rig.cork.is_empty());
            let turn = EndTurn { writable: true, hold_queue: false };
            let done = rig.end_turn(slot.conn_mut(), &mut kernel, turn);
            assert!(done.writable && !done.closed);
            slot.arm(&mut wheel, key, done.deadline);
        }
        with_conn.push(t.elapsed());
        fired_total += due.len();
        due.clear();
    }
    let per_tick_conn = fired_total / ticks;
    assert!(pings > 0, "fired connections should have sent pings");
    let rss_ticked = rss_bytes();

    // 3. Fan-out: one encoded room delivery queued to every connection, as
    //    `worker::Core::queue` does (`Host::enqueue`, then the key goes on
    //    the dirty list). Twice: the first push allocates each queue.
    rig.set_tick(now, 100, 1_800_000_000);
    let data = r#""0123456789abcdef0123456789abcd""#;
    let mut fanout = Vec::new();
    let mut dirty: Vec<usize> = Vec::new();
    for seq in 1..=2u64 {
        let frame = protocol::message("lobby", Some(1), seq, protocol::Epoch(7), data);
        let frame_len = frame.len();
        let rss_before = rss_bytes();
        let t = Instant::now();
        let mut queued = 0usize;
        for (key, slot) in conns.iter_mut() {
            if rig.enqueue(slot.conn_mut(), frame.clone()) {
                queued += 1;
            }
            if slot.mark_dirty() {
                dirty.push(key);
            }
        }
        let took = t.elapsed();
        let rss_after = rss_bytes();
        assert_eq!(queued, n, "every connection takes the frame");
        fanout.push((frame_len, took, rss_after.saturating_sub(rss_before)));
    }

    let nf = n as f64;
    let conn_bytes = (rss_conns - rss0) as f64 / nf;
    let state_bytes = (rss_timers - rss0) as f64 / nf;
    let wheel_bytes = (rss_timers - rss_conns) as f64 / nf;
    let tick_wheel = median(&mut wheel_only);
    let tick_conn = median(&mut with_conn);
    let max_conn = *with_conn.iter().max().expect("ticks");

    println!();
    println!("## Scale simulation: {n} sans-IO connections in one process");
    println!();
    println!("| what | value |");
    println!("|---|---:|");
    println!("| size_of::<Conn>() | {} B |", std::mem::size_of::<Conn>());
    println!(
        "| size_of slot (the worker's `Slot`, checked equal in release builds) | {} B |",
        std::mem::size_of::<SimSlot>()
    );
    println!(
        "| timer entry (TimerWheel::<usize>::entry_size) | {} B |",
        TimerWheel::<usize>::entry_size()
    );
    println!("| heap retained by idle conns (sum of retained_bytes) | {retained} B |");
    println!(
        "| build + upgrade {n} conns | {:.2} s ({:.2} us/conn) |",
        build.as_secs_f64(),
        build.as_secs_f64() * 1e6 / nf
    );
    println!(
        "| arm {n} timers | {:.1} ms ({:.0} ns/timer) |",
        arm.as_secs_f64() * 1e3,
        arm.as_secs_f64() * 1e9 / nf
    );
    println!("| RSS: connection slots, per conn | {conn_bytes:.1} B |");
    println!("| RSS: timer wheel, per conn | {wheel_bytes:.1} B |");
    println!(
        "| **RSS per connection state (slots + timers)** | **{state_bytes:.1} B ({:.3} KiB)** |",
        state_bytes / 1024.0
    );
    println!(
        "| RSS total after build | {:.1} MiB (baseline {:.1} MiB) |",
        mib(rss_timers as f64),
        mib(rss0 as f64)
    );
    println!(
        "| wheel tick, {n} timers, wheel only (median of {ticks}) | {:.1} us, {per_tick_wheel} fired + re-armed ({:.0} ns/timer) |",
        tick_wheel.as_secs_f64() * 1e6,
        tick_wheel.as_secs_f64() * 1e9 / per_tick_wheel.max(1) as f64
    );
    println!(
        "| wheel tick, {n} timers, with Conn::handle_timer (ping) + Host::end_turn + re-arm (median of {ticks}; max) | {:.1} us; {:.1} us, {per_tick_conn} fired ({:.0} ns/timer) |",
        tick_conn.as_secs_f64() * 1e6,
        max_conn.as_secs_f64() * 1e6,
        tick_conn.as_secs_f64() * 1e9 / per_tick_conn.max(1) as f64
    );
    for (i, (len, took, rss)) in fanout.iter().enumerate() {
        println!(
            "| fan-out #{} of one {len}-byte frame to {n} conns | {:.1} ms ({:.1} ns/subscriber), +{:.1} B RSS per queued frame |",
            i + 1,
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e9 / nf,
            *rss as f64 / nf
        );
    }
    let _ = rss_ticked;
    let verdict = if state_bytes <= 1024.0 { "met" } else { "MISSED" };
    println!();
    println!(
        "Target: <= 1 KiB per connection state: {verdict} ({state_bytes:.1} B = {:.2} x the budget)",
        state_bytes / 1024.0
    );
    println!(
        "{{\"bench\":\"scale\",\"conns\":{n},\"size_of_conn\":{},\"size_of_slot\":{},\"bytes_per_conn_state\":{state_bytes:.1},\"bytes_per_conn_slot\":{conn_bytes:.1},\"bytes_per_timer\":{wheel_bytes:.1},\"tick_wheel_us\":{:.1},\"tick_conn_us\":{:.1},\"fired_per_tick\":{per_tick_conn},\"fanout1_ms\":{:.1},\"fanout1_bytes_per_frame\":{:.1},\"fanout2_ms\":{:.1},\"fanout2_bytes_per_frame\":{:.1}}}",
        std::mem::size_of::<Conn>(),
        std::mem::size_of::<SimSlot>(),
        tick_wheel.as_secs_f64() * 1e6,
        tick_conn.as_secs_f64() * 1e6,
        fanout[0].1.as_secs_f64() * 1e3,
        fanout[0].2 as f64 / nf,
        fanout[1].1.as_secs_f64() * 1e3,
        fanout[1].2 as f64 / nf,
    );
    drop(requests);
}

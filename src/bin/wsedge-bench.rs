//! `wsedge-bench`: a self-contained WebSocket / raw-TCP load tester for wsedge.
//!
//! Design goals: never be the bottleneck. Each worker is one single-threaded,
//! edge-triggered mio loop; reads are drained into per-connection buffers that
//! are reused, frames are parsed in place, outgoing frames are batched in a
//! per-connection write buffer and flushed with one `write` per connection per
//! loop pass. No allocation happens per message on the hot path.
//!
//! It only ever talks to loopback addresses (127.0.0.0/8); every mode is
//! bounded in time and in count and stops by itself.
//!
//! This binary intentionally does not use the `wsedge` library crate.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hdrhistogram::Histogram;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use sha1::{Digest, Sha1};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const USAGE: &str = "\
wsedge-bench: load tester for WebSocket servers (loopback targets only)

USAGE:
  wsedge-bench echo     --url ws://127.0.0.1:PORT/PATH [--conns C] [--inflight P] [--size S]
                        [--secs T] [--warmup W] [--binary] [--threads N] [--sources M]
  wsedge-bench connect  --url ws://127.0.0.1:PORT/PATH [--total N] [--concurrency K]
                        [--secs T] [--sources M] [--threads N]
  wsedge-bench idle     --url ws://127.0.0.1:PORT/PATH [--conns N] [--hold SECS] [--sources M]
                        [--rate R] [--ready-file PATH] [--threads N] [--echo-first BYTES]
  wsedge-bench tcp-echo --url tcp://127.0.0.1:PORT [--conns C] [--inflight P] [--size S]
                        [--secs T] [--warmup W] [--threads N] [--sources M]
  wsedge-bench serve-tcp-echo --listen 127.0.0.1:PORT [--secs T]
  wsedge-bench --help

MODES:
  echo            C connections each keep P messages of S bytes in flight (send P, send one
                  more per echo received). Payload starts with the send timestamp (text: 16
                  lowercase hex chars, S >= 16; --binary: 8 bytes little endian, S >= 8).
                  Reports echoes/s, MB/s (echoed payload received, MB = 1e6 bytes) and
                  latency percentiles, measured over --secs after --warmup.
  connect         Keep K WebSocket handshakes in progress until N have completed; each
                  completed connection sends close 1000 and waits for the server's close
                  reply (or EOF). Reports handshakes/s and handshake latency.
  idle            Open N connections (at most 200 handshakes in flight, optional --rate cap),
                  answer pings, hold for --hold seconds once all are up (or after a 60 s
                  establishment deadline), then close all. Prints \"established N\" on stderr
                  (and writes N into --ready-file) when all are up. With --echo-first B,
                  each connection first sends one B-byte binary message and counts as up
                  only once its echo is back (at most 200 such echoes in flight; the
                  establishment deadline becomes 300 s).
  tcp-echo        Like echo over raw TCP: S-byte records (timestamp in the first 8 bytes)
                  that the server echoes back. The ceiling measurement.
  serve-tcp-echo  Single-threaded raw TCP echo server (the ceiling server).

FLAGS (defaults in brackets):
  --url URL          target: ws://HOST:PORT/path (tcp://HOST:PORT for tcp-echo); HOST must be
                     an IPv4 literal in 127.0.0.0/8 or localhost
  --conns N          connections [echo/tcp-echo: 100, idle: 1000]
  --inflight P       messages in flight per connection [16]
  --size S           payload / record size in bytes [32]
  --secs T           echo/tcp-echo: measured seconds [10]; connect: time bound [60];
                     serve-tcp-echo: run time [600]. At most 600.
  --warmup W         seconds after all connections are up before measuring [0]
  --binary           echo binary messages instead of text
  --total N          connect: handshakes to complete [1000]
  --concurrency K    connect: handshakes kept in progress [64]
  --hold SECS        idle: seconds to hold the connections once established [10] (<= 600)
  --rate R           idle: cap on new connections per second [0 = no cap]
  --ready-file PATH  idle: write the established count into PATH when all are up
  --echo-first B     idle: echo one B-byte binary message per connection before holding [0]
  --sources M        spread source addresses over 127.0.0.1..127.0.0.M
                     [connect: 16, idle: ceil(N/20000)+1, echo/tcp-echo: kernel's choice]
  --threads N        independent event loops, connections split between them [1]
  --listen ADDR      serve-tcp-echo: 127.0.0.1:PORT to listen on

OUTPUT:
  Progress (runs longer than 3 s): one status line per second on stderr.
  Errors are counted by kind; the first of each kind is printed on stderr.
  At the end: a human summary on stdout, then exactly one JSON line starting with
  {\"mode\":...}. Exit status 0 on success, 1 when nothing could be measured (setup
  failure), 2 on bad arguments.
";

const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_SECS: f64 = 600.0;
const HIST_MAX_US: u64 = 60_000_000;
const NS_PER_SEC: u64 = 1_000_000_000;
const NS_PER_MS: u64 = 1_000_000;
const HANDSHAKE_TIMEOUT_NS: u64 = 10 * NS_PER_SEC;
const ECHO_FIRST_TIMEOUT_NS: u64 = 30 * NS_PER_SEC;
const FAIL_BODY_WAIT_NS: u64 = 500 * NS_PER_MS;
const MAX_FRAME: usize = 64 << 20;
const MAX_MSG_SIZE: usize = 16 << 20;
const MAX_HEAD: usize = 16 << 10;
const SMALL_CHUNK: usize = 4 << 10;
const BIG_CHUNK: usize = 64 << 10;
const IDLE_HANDSHAKES_IN_FLIGHT: u64 = 200;
const IDLE_ESTABLISH_NS: u64 = 60 * NS_PER_SEC;
const ECHO_FIRST_ESTABLISH_NS: u64 = 300 * NS_PER_SEC;
const ECHO_ESTABLISH_NS: u64 = 20 * NS_PER_SEC;

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match Args::parse(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("wsedge-bench: {e}\n(run `wsedge-bench --help` for usage)");
            return ExitCode::from(2);
        }
    };
    if args.mode == "serve-tcp-echo" {
        return match ServeCfg::from_args(args) {
            Ok(cfg) => serve_tcp_echo(&cfg),
            Err(e) => {
                eprintln!("wsedge-bench: {e}\n(run `wsedge-bench --help` for usage)");
                ExitCode::from(2)
            }
        };
    }
    let cfg = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wsedge-bench: {e}\n(run `wsedge-bench --help` for usage)");
            return ExitCode::from(2);
        }
    };
    run_client(Arc::new(cfg))
}

// ---------------------------------------------------------------------------
// Argument parsing (hand written)
// ---------------------------------------------------------------------------

const SWITCHES: &[&str] = &["binary"];
const MODES: &[&str] = &["echo", "connect", "idle", "tcp-echo", "serve-tcp-echo"];

struct Args {
    mode: String,
    vals: Vec<(String, String)>,
    switches: Vec<String>,
}

impl Args {
    /// `Ok(None)` means help was requested.
    fn parse(argv: &[String]) -> Result<Option<Args>, String> {
        if argv.is_empty() || argv.iter().any(|a| a == "--help" || a == "-h") || argv[0] == "help" {
            return Ok(None);
        }
        let mode = argv[0].clone();
        if !MODES.contains(&mode.as_str()) {
            return Err(format!("unknown mode {mode:?} (expected one of: {})", MODES.join(", ")));
        }
        let mut args = Args { mode, vals: Vec::new(), switches: Vec::new() };
        let mut i = 1;
        while i < argv.len() {
            let a = &argv[i];
            let Some(flag) = a.strip_prefix("--") else {
                return Err(format!("unexpected argument {a:?} (flags start with --)"));
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (flag.to_string(), None),
            };
            if args.vals.iter().any(|(k, _)| *k == name) || args.switches.contains(&name) {
                return Err(format!("flag --{name} given twice"));
            }
            if SWITCHES.contains(&name.as_str()) {
                if inline.is_some() {
                    return Err(format!("flag --{name} takes no value"));
                }
                args.switches.push(name);
                i += 1;
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    match argv.get(i) {
                        Some(v) => v.clone(),
                        None => return Err(format!("flag --{name} needs a value")),
                    }
                }
            };
            args.vals.push((name, value));
            i += 1;
        }
        Ok(Some(args))
    }

    fn take(&mut self, key: &str) -> Option<String> {
        let pos = self.vals.iter().position(|(k, _)| k == key)?;
        Some(self.vals.remove(pos).1)
    }

    fn num<T: std::str::FromStr>(&mut self, key: &str, default: T) -> Result<T, String> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| format!("--{key}: invalid number {v:?}")),
        }
    }

    fn switch(&mut self, key: &str) -> bool {
        match self.switches.iter().position(|k| k == key) {
            Some(p) => {
                self.switches.remove(p);
                true
            }
            None => false,
        }
    }

    fn finish(&self) -> Result<(), String> {
        if let Some((k, _)) = self.vals.first() {
            return Err(format!("unknown flag --{k} for mode {}", self.mode));
        }
        if let Some(k) = self.switches.first() {
            return Err(format!("unknown flag --{k} for mode {}", self.mode));
        }
        Ok(())
    }
}

fn check_range<T: PartialOrd + std::fmt::Display>(
    name: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, String> {
    if v < lo || v > hi {
        return Err(format!("--{name} must be between {lo} and {hi} (got {v})"));
    }
    Ok(v)
}

fn check_secs(name: &str, v: f64, allow_zero: bool) -> Result<f64, String> {
    if !v.is_finite() || v < 0.0 || (!allow_zero && v == 0.0) || v > MAX_SECS {
        let lo = if allow_zero { "0" } else { "more than 0" };
        return Err(format!("--{name} must be {lo} and at most {MAX_SECS} (got {v})"));
    }
    Ok(v)
}

// ---------------------------------------------------------------------------
// Targets (loopback only)
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Target {
    url: String,
    addr: SocketAddrV4,
    host: String,
    path: String,
}

fn loopback_ip(host: &str) -> Result<Ipv4Addr, String> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(Ipv4Addr::LOCALHOST);
    }
    if host.starts_with('[') || host.contains(':') {
        return Err(format!("IPv6 address {host:?} not supported: use an address in 127.0.0.0/8"));
    }
    let ip: Ipv4Addr = host.parse().map_err(|_| {
        format!("host {host:?} is not an IPv4 literal or localhost (names are not resolved)")
    })?;
    if !ip.is_loopback() {
        return Err(format!(
            "refusing to target {ip}: wsedge-bench only talks to loopback addresses (127.0.0.0/8)"
        ));
    }
    Ok(ip)
}

fn parse_host_port(auth: &str, default_port: Option<u16>) -> Result<SocketAddrV4, String> {
    if auth.is_empty() {
        return Err("missing host".into());
    }
    if auth.starts_with('[') {
        return Err(format!("IPv6 address {auth:?} not supported: use an address in 127.0.0.0/8"));
    }
    let (host, port) = match auth.rsplit_once(':') {
        Some((h, p)) => {
            let port: u16 = p.parse().map_err(|_| format!("invalid port {p:?}"))?;
            (h, port)
        }
        None => match default_port {
            Some(p) => (auth, p),
            None => return Err(format!("{auth:?}: a port is required")),
        },
    };
    let ip = loopback_ip(host)?;
    Ok(SocketAddrV4::new(ip, port))
}

fn parse_target(url: &str, scheme: &str) -> Result<Target, String> {
    let Some((sch, rest)) = url.split_once("://") else {
        return Err(format!("URL {url:?} must look like {scheme}://127.0.0.1:PORT/"));
    };
    if sch.eq_ignore_ascii_case("wss") {
        return Err(format!("URL {url:?}: wss:// (TLS) is not supported"));
    }
    if !sch.eq_ignore_ascii_case(scheme) {
        return Err(format!("URL {url:?}: scheme must be {scheme}:// for this mode"));
    }
    let (auth, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if auth.contains('@') {
        return Err(format!("URL {url:?}: user info is not supported"));
    }
    if let Some(p) = path.find('#') {
        return Err(format!("URL {url:?}: fragment at byte {p} is not allowed"));
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("URL {url:?}: path contains spaces or control characters"));
    }
    let default = if scheme == "ws" { Some(80) } else { None };
    let addr = parse_host_port(auth, default).map_err(|e| format!("URL {url:?}: {e}"))?;
    if addr.port() == 0 {
        return Err(format!("URL {url:?}: port 0 is not a valid target"));
    }
    let host = if auth.rsplit_once(':').is_some() {
        auth.to_string()
    } else {
        format!("{auth}:{}", addr.port())
    };
    Ok(Target { url: url.to_string(), addr, host, path })
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Echo,
    TcpEcho,
    Connect,
    Idle,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::TcpEcho => "tcp-echo",
            Mode::Connect => "connect",
            Mode::Idle => "idle",
        }
    }
}

#[derive(Debug)]
struct Config {
    mode: Mode,
    target: Target,
    /// echo/tcp-echo/idle: connections; connect: handshakes to complete.
    conns: u64,
    /// Handshakes in progress at most (all threads together).
    concurrency: u64,
    inflight: u32,
    size: usize,
    binary: bool,
    /// echo/tcp-echo: measured seconds; connect: time bound; idle: hold time.
    secs: f64,
    warmup: f64,
    threads: usize,
    /// 0: let the kernel choose the source address.
    sources: u32,
    /// idle: new connections per second, 0 = no cap.
    rate: f64,
    ready_file: Option<String>,
    /// idle: bytes of one binary message each connection echoes before it
    /// counts as established; 0 = none.
    echo_first: usize,
}

impl Config {
    fn from_args(mut a: Args) -> Result<Config, String> {
        let mode = match a.mode.as_str() {
            "echo" => Mode::Echo,
            "tcp-echo" => Mode::TcpEcho,
            "connect" => Mode::Connect,
            "idle" => Mode::Idle,
            m => return Err(format!("unknown mode {m:?}")),
        };
        let url = a.take("url").ok_or_else(|| format!("mode {} needs --url", mode.name()))?;
        let scheme = if mode == Mode::TcpEcho { "tcp" } else { "ws" };
        let target = parse_target(&url, scheme)?;
        let threads = check_range("threads", a.num("threads", 1usize)?, 1, 64)?;
        let mut cfg = Config {
            mode,
            target,
            conns: 0,
            concurrency: 0,
            inflight: 1,
            size: 0,
            binary: false,
            secs: 0.0,
            warmup: 0.0,
            threads,
            sources: 0,
            rate: 0.0,
            ready_file: None,
            echo_first: 0,
        };
        match mode {
            Mode::Echo | Mode::TcpEcho => {
                cfg.conns = check_range("conns", a.num("conns", 100u64)?, 1, 1_000_000)?;
                cfg.inflight = check_range("inflight", a.num("inflight", 16u32)?, 1, 1_000_000)?;
                cfg.binary = mode == Mode::TcpEcho || a.switch("binary");
                let min = if cfg.binary { 8 } else { 16 };
                let size = a.num("size", 32usize)?;
                if size < min {
                    let what = if mode == Mode::TcpEcho {
                        "records carry an 8-byte timestamp"
                    } else if cfg.binary {
                        "binary payloads carry an 8-byte timestamp"
                    } else {
                        "text payloads carry a 16-hex-char timestamp; use --binary for smaller"
                    };
                    return Err(format!("--size must be at least {min} ({what})"));
                }
                cfg.size = check_range("size", size, min, MAX_MSG_SIZE)?;
                cfg.secs = check_secs("secs", a.num("secs", 10.0)?, false)?;
                cfg.warmup = check_secs("warmup", a.num("warmup", 0.0)?, true)?;
                cfg.sources = check_range("sources", a.num("sources", 0u32)?, 0, 254)?;
                cfg.concurrency = IDLE_HANDSHAKES_IN_FLIGHT;
            }
            Mode::Connect => {
                cfg.conns = check_range("total", a.num("total", 1000u64)?, 1, 100_000_000)?;
                cfg.concurrency =
                    check_range("concurrency", a.num("concurrency", 64u64)?, 1, 100_000)?;
                cfg.secs = check_secs("secs", a.num("secs", 60.0)?, false)?;
                cfg.sources = check_range("sources", a.num("sources", 16u32)?, 1, 254)?;
            }
            Mode::Idle => {
                cfg.conns = check_range("conns", a.num("conns", 1000u64)?, 1, 5_000_000)?;
                cfg.secs = check_secs("hold", a.num("hold", 10.0)?, true)?;
                let default_sources = cfg.conns.div_ceil(20_000) + 1;
                let default_sources = default_sources.min(254) as u32;
                cfg.sources = check_range("sources", a.num("sources", default_sources)?, 1, 254)?;
                let rate: f64 = a.num("rate", 0.0)?;
                if !rate.is_finite() || rate < 0.0 {
                    return Err(format!("--rate must be >= 0 (got {rate})"));
                }
                cfg.rate = rate;
                cfg.ready_file = a.take("ready-file");
                let echo_first = a.num("echo-first", 0usize)?;
                if echo_first > 0 {
                    cfg.echo_first = check_range("echo-first", echo_first, 8, MAX_MSG_SIZE)?;
                }
                cfg.concurrency = IDLE_HANDSHAKES_IN_FLIGHT;
            }
        }
        a.finish()?;
        if (cfg.threads as u64) > cfg.conns {
            cfg.threads = cfg.conns as usize;
        }
        Ok(cfg)
    }

    fn is_ws(&self) -> bool {
        self.mode != Mode::TcpEcho
    }
}

/// What one worker thread does: its share of the configuration.
#[derive(Clone, Copy, Debug)]
struct Plan {
    id: usize,
    conns: u64,
    concurrency: u64,
    rate: f64,
}

fn split(total: u64, n: usize, i: usize) -> u64 {
    let n = n as u64;
    let i = i as u64;
    total / n + u64::from(i < total % n)
}

// ---------------------------------------------------------------------------
// Small helpers: random numbers, masking, hex, frames
// ---------------------------------------------------------------------------

/// xorshift64* seeded from the clock, the pid and a salt.
struct Rng(u64);

impl Rng {
    fn seeded(salt: u64) -> Rng {
        let t =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        let pid = u64::from(std::process::id());
        // splitmix64 of the mixed inputs, so nearby seeds diverge at once.
        let mut z = t ^ pid.rotate_left(32) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    #[inline]
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[inline]
fn load_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_ne_bytes(a)
}

/// XOR `buf` with the 4-byte mask, 8 bytes at a time.
#[inline]
fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let m = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = load_u64(c) ^ m;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Byte -> its two lowercase hex digits.
const HEX2: [[u8; 2]; 256] = {
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 15]];
        i += 1;
    }
    t
};

/// ASCII -> hex digit value, 0xff for anything but [0-9a-f].
const UNHEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Write `v` as 16 lowercase hex digits into `out[..16]`.
#[inline]
fn hex16(v: u64, out: &mut [u8]) {
    for (pair, b) in out[..16].chunks_exact_mut(2).zip(v.to_be_bytes()) {
        pair.copy_from_slice(&HEX2[usize::from(b)]);
    }
}

#[inline]
fn unhex16(b: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    let mut bad = 0u8;
    for &c in b.get(..16)? {
        let d = UNHEX[usize::from(c)];
        bad |= d;
        v = (v << 4) | u64::from(d & 0x0f);
    }
    if bad & 0xf0 != 0 {
        return None;
    }
    Some(v)
}

/// Append a client frame header (FIN set, MASK set) with its mask key.
#[inline]
fn push_header(w: &mut Vec<u8>, op: u8, len: usize, mask: [u8; 4]) {
    let mut h = [0u8; 14];
    h[0] = 0x80 | op;
    let n = if len < 126 {
        h[1] = 0x80 | len as u8;
        2
    } else if len <= 0xffff {
        h[1] = 0x80 | 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        h[1] = 0x80 | 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    h[n..n + 4].copy_from_slice(&mask);
    w.extend_from_slice(&h[..n + 4]);
}

/// Append a masked frame carrying `payload`.
fn push_frame(w: &mut Vec<u8>, op: u8, payload: &[u8], mask: u32) {
    let mask = mask.to_ne_bytes();
    push_header(w, op, payload.len(), mask);
    let p0 = w.len();
    w.extend_from_slice(payload);
    apply_mask(&mut w[p0..], mask);
}

/// Append a masked data frame: `template` with the timestamp written in front.
#[inline]
fn push_msg(w: &mut Vec<u8>, op: u8, template: &[u8], ts: u64, mask: u32) {
    let mask = mask.to_ne_bytes();
    push_header(w, op, template.len(), mask);
    let p0 = w.len();
    w.extend_from_slice(template);
    if op == OP_TEXT {
        hex16(ts, &mut w[p0..p0 + 16]);
    } else {
        w[p0..p0 + 8].copy_from_slice(&ts.to_le_bytes());
    }
    apply_mask(&mut w[p0..], mask);
}

fn push_close(w: &mut Vec<u8>, code: Option<u16>, mask: u32) {
    match code {
        Some(c) => push_frame(w, OP_CLOSE, &c.to_be_bytes(), mask),
        None => push_frame(w, OP_CLOSE, &[], mask),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum FrameHead {
    /// Need at least this many bytes (counted from the frame start).
    Need(usize),
    Ok {
        fin: bool,
        op: u8,
        hlen: usize,
        plen: usize,
    },
    Bad(&'static str),
}

/// Parse the head of a server (unmasked) frame.
fn parse_frame(b: &[u8]) -> FrameHead {
    if b.len() < 2 {
        return FrameHead::Need(2);
    }
    let b0 = b[0];
    let b1 = b[1];
    if b0 & 0x70 != 0 {
        return FrameHead::Bad("reserved bits set (no extension was negotiated)");
    }
    if b1 & 0x80 != 0 {
        return FrameHead::Bad("server frame is masked");
    }
    let fin = b0 & 0x80 != 0;
    let op = b0 & 0x0f;
    let (hlen, plen) = match b1 & 0x7f {
        126 => {
            if b.len() < 4 {
                return FrameHead::Need(4);
            }
            (4, usize::from(u16::from_be_bytes([b[2], b[3]])))
        }
        127 => {
            if b.len() < 10 {
                return FrameHead::Need(10);
            }
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[2..10]);
            let l = u64::from_be_bytes(a);
            if l > MAX_FRAME as u64 {
                return FrameHead::Bad("frame larger than 64 MiB");
            }
            (10, l as usize)
        }
        n => (2, usize::from(n)),
    };
    match op {
        OP_CONT | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin {
                return FrameHead::Bad("fragmented control frame");
            }
            if plen > 125 {
                return FrameHead::Bad("control frame payload over 125 bytes");
            }
        }
        _ => return FrameHead::Bad("unknown opcode"),
    }
    if b.len() < hlen + plen {
        return FrameHead::Need(hlen + plen);
    }
    FrameHead::Ok { fin, op, hlen, plen }
}

fn ws_key(rng: &mut Rng) -> ([u8; 24], [u8; 28]) {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&rng.next().to_ne_bytes());
    raw[8..].copy_from_slice(&rng.next().to_ne_bytes());
    let mut key = [0u8; 24];
    let n = base64::engine::general_purpose::STANDARD.encode_slice(raw, &mut key).unwrap_or(0);
    debug_assert_eq!(n, 24);
    (key, accept_for(&key))
}

fn accept_for(key: &[u8]) -> [u8; 28] {
    let mut h = Sha1::new();
    h.update(key);
    h.update(WS_GUID);
    let digest = h.finalize();
    let mut out = [0u8; 28];
    let n = base64::engine::general_purpose::STANDARD.encode_slice(digest, &mut out).unwrap_or(0);
    debug_assert_eq!(n, 28);
    out
}

fn first_line_lossy(b: &[u8], max: usize) -> String {
    let end = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
    let line = &b[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut s = String::from_utf8_lossy(&line[..line.len().min(max)]).into_owned();
    if line.len() > max {
        s.push_str("...");
    }
    s
}

fn micros(ns: u64) -> u64 {
    (ns / 1000).clamp(1, HIST_MAX_US)
}

fn new_hist() -> Result<Histogram<u64>, String> {
    Histogram::<u64>::new_with_bounds(1, HIST_MAX_US, 3)
        .map_err(|e| format!("cannot create histogram: {e:?}"))
}

// ---------------------------------------------------------------------------
// Errors and statistics
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrKind {
    ConnectRefused,
    ConnectFailed,
    HandshakeStatus,
    HandshakeAccept,
    HandshakeInvalid,
    HandshakeTimeout,
    EarlyClose,
    Disconnected,
    Protocol,
    SizeMismatch,
    BadPayload,
    CloseTimeout,
    Io,
}

const NKINDS: usize = 13;

impl ErrKind {
    const ALL: [ErrKind; NKINDS] = [
        ErrKind::ConnectRefused,
        ErrKind::ConnectFailed,
        ErrKind::HandshakeStatus,
        ErrKind::HandshakeAccept,
        ErrKind::HandshakeInvalid,
        ErrKind::HandshakeTimeout,
        ErrKind::EarlyClose,
        ErrKind::Disconnected,
        ErrKind::Protocol,
        ErrKind::SizeMismatch,
        ErrKind::BadPayload,
        ErrKind::CloseTimeout,
        ErrKind::Io,
    ];

    fn name(self) -> &'static str {
        match self {
            ErrKind::ConnectRefused => "connect_refused",
            ErrKind::ConnectFailed => "connect_failed",
            ErrKind::HandshakeStatus => "handshake_status",
            ErrKind::HandshakeAccept => "handshake_accept",
            ErrKind::HandshakeInvalid => "handshake_invalid",
            ErrKind::HandshakeTimeout => "handshake_timeout",
            ErrKind::EarlyClose => "early_close",
            ErrKind::Disconnected => "disconnected",
            ErrKind::Protocol => "protocol",
            ErrKind::SizeMismatch => "size_mismatch",
            ErrKind::BadPayload => "bad_payload",
            ErrKind::CloseTimeout => "close_timeout",
            ErrKind::Io => "io",
        }
    }
}

struct Stats {
    errs: [u64; NKINDS],
    first: [Option<String>; NKINDS],
    /// Completed handshakes (TCP: established connections).
    handshakes: u64,
    /// Attempts that failed before being established.
    failed: u64,
    /// Attempts that never resolved because the run ended first.
    incomplete: u64,
    /// Echoes counted inside the measurement window, and their payload bytes.
    msgs: u64,
    bytes: u64,
    /// All echoes received (progress), messages sent.
    recv_all: u64,
    sent: u64,
    /// Data messages received in idle/connect mode.
    other_msgs: u64,
    pongs: u64,
    close_ok: u64,
    close_eof: u64,
    /// Established connections lost to an error before the client closed them.
    lost: u64,
    lat: Histogram<u64>,
    hs_lat: Histogram<u64>,
    /// ns since run start: all attempts resolved / last resolution.
    ready_ns: u64,
    last_resolved_ns: u64,
    /// Length of the measurement window actually run, seconds.
    win_secs: f64,
    /// CPU seconds used by the worker threads, and the busiest thread's
    /// CPU time / wall time.
    cpu_s: f64,
    busy_max: f64,
    /// Syscall counts: read, write and poll calls.
    reads: u64,
    writes: u64,
    polls: u64,
}

impl Stats {
    fn new() -> Result<Stats, String> {
        Ok(Stats {
            errs: [0; NKINDS],
            first: std::array::from_fn(|_| None),
            handshakes: 0,
            failed: 0,
            incomplete: 0,
            msgs: 0,
            bytes: 0,
            recv_all: 0,
            sent: 0,
            other_msgs: 0,
            pongs: 0,
            close_ok: 0,
            close_eof: 0,
            lost: 0,
            lat: new_hist()?,
            hs_lat: new_hist()?,
            ready_ns: 0,
            last_resolved_ns: 0,
            win_secs: 0.0,
            cpu_s: 0.0,
            busy_max: 0.0,
            reads: 0,
            writes: 0,
            polls: 0,
        })
    }

    fn errors(&self) -> u64 {
        self.errs.iter().sum()
    }

    fn merge(&mut self, o: Stats) {
        for i in 0..NKINDS {
            self.errs[i] += o.errs[i];
        }
        for (mine, theirs) in self.first.iter_mut().zip(o.first) {
            if mine.is_none() {
                *mine = theirs;
            }
        }
        self.handshakes += o.handshakes;
        self.failed += o.failed;
        self.incomplete += o.incomplete;
        self.msgs += o.msgs;
        self.bytes += o.bytes;
        self.recv_all += o.recv_all;
        self.sent += o.sent;
        self.other_msgs += o.other_msgs;
        self.pongs += o.pongs;
        self.close_ok += o.close_ok;
        self.close_eof += o.close_eof;
        self.lost += o.lost;
        // Same bounds on both sides: addition cannot fail.
        let _ = self.lat.add(&o.lat);
        let _ = self.hs_lat.add(&o.hs_lat);
        self.ready_ns = self.ready_ns.max(o.ready_ns);
        self.last_resolved_ns = self.last_resolved_ns.max(o.last_resolved_ns);
        self.win_secs = self.win_secs.max(o.win_secs);
        self.cpu_s += o.cpu_s;
        self.busy_max = self.busy_max.max(o.busy_max);
        self.reads += o.reads;
        self.writes += o.writes;
        self.polls += o.polls;
    }
}

// ---------------------------------------------------------------------------
// Shared progress (workers publish, the main thread reports)
// ---------------------------------------------------------------------------

#[derive(Default)]
#[repr(align(128))]
struct Pub {
    progress: AtomicU64,
    open: AtomicU64,
    errors: AtomicU64,
    established: AtomicU64,
    /// All attempts resolved (idle: the hold may start).
    ready: AtomicBool,
    done: AtomicBool,
}

struct Shared {
    pubs: Vec<Pub>,
    /// idle: ns since start at which the hold ends; 0 = not known yet.
    hold_end_ns: AtomicU64,
}

// ---------------------------------------------------------------------------
// Connections and the worker loop
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Connecting,
    Handshake,
    /// Non-101 response: waiting (briefly) for the first line of the body.
    HsFailBody,
    /// idle --echo-first: upgraded, waiting for the echo of the first message.
    EchoFirst,
    Open,
    /// Close frame sent, waiting for the server's close reply (or EOF).
    Closing,
    /// Close handshake done, waiting for the server to close TCP (or EOF).
    AwaitEof,
}

fn bucket(s: St) -> usize {
    match s {
        St::Connecting | St::Handshake | St::HsFailBody | St::EchoFirst => 0,
        St::Open => 1,
        St::Closing | St::AwaitEof => 2,
    }
}

#[derive(PartialEq, Eq, Debug)]
enum Act {
    Keep,
    Drop,
}

struct Conn {
    sock: TcpStream,
    st: St,
    /// Read buffer: `r` is fully initialized; live bytes are `r[rs..re]`.
    r: Vec<u8>,
    rs: usize,
    re: usize,
    /// Bytes the next frame needs (from `rs`), 0 when unknown.
    need: usize,
    /// Write buffer: `w[wp..]` is still to be written.
    w: Vec<u8>,
    wp: usize,
    frag: Vec<u8>,
    frag_op: u8,
    key: [u8; 24],
    accept: [u8; 28],
    /// ns since start: connect started.
    t0: u64,
    /// ns since start: deadline of the current state, 0 = none.
    deadline: u64,
    inflight: u32,
    dirty: bool,
    fail_status: String,
    body_need: usize,
}

struct Ctx {
    cfg: Arc<Config>,
    start: Instant,
    rng: Rng,
    st: Stats,
    dirty: Vec<usize>,
    pool: Vec<Vec<u8>>,
    template: Vec<u8>,
    data_op: u8,
    ws: bool,
    small_bufs: bool,
    read_chunk: usize,
    sending: bool,
    closing_all: bool,
    close_wait_ns: u64,
    win_start: u64,
    win_end: u64,
    n: [u64; 3],
    resolved: u64,
}

impl Ctx {
    #[inline]
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn err(&mut self, kind: ErrKind, msg: impl FnOnce() -> String) {
        let k = kind as usize;
        self.st.errs[k] += 1;
        if self.st.first[k].is_none() {
            let m = msg();
            eprintln!("wsedge-bench: error [{}]: {m}", kind.name());
            self.st.first[k] = Some(m);
        }
    }

    fn conn_err(&mut self, c: &Conn, kind: ErrKind, msg: impl FnOnce() -> String) {
        if c.st == St::Open {
            self.st.lost += 1;
        }
        self.err(kind, msg);
    }

    fn connect_error(&mut self, e: &io::Error) {
        let addr = self.cfg.target.addr;
        if e.kind() == ErrorKind::ConnectionRefused {
            self.err(ErrKind::ConnectRefused, || {
                format!("connection refused by {addr} (is the server running?)")
            });
        } else {
            self.err(ErrKind::ConnectFailed, || format!("connect to {addr} failed: {e}"));
        }
    }

    fn set_state(&mut self, c: &mut Conn, s: St) {
        self.n[bucket(c.st)] = self.n[bucket(c.st)].saturating_sub(1);
        self.n[bucket(s)] += 1;
        c.st = s;
    }

    #[inline]
    fn mark_dirty(&mut self, c: &mut Conn, idx: usize) {
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(idx);
        }
    }

    fn take_buf(&mut self, min: usize) -> Vec<u8> {
        let mut v = self.pool.pop().unwrap_or_default();
        v.clear();
        v.reserve(min);
        v
    }

    fn give_buf(&mut self, v: Vec<u8>) {
        if v.capacity() > 0 && v.capacity() <= BIG_CHUNK && self.pool.len() < 4096 {
            self.pool.push(v);
        }
    }

    /// The attempt resolved as established.
    fn established(&mut self, c: &mut Conn, now: u64) {
        self.set_state(c, St::Open);
        self.resolved += 1;
        self.st.handshakes += 1;
        self.st.hs_lat.saturating_record(micros(now.saturating_sub(c.t0)));
        self.st.last_resolved_ns = now;
    }

    /// One echo (text/binary message) arrived; returns true when it answers
    /// one of our in-flight messages.
    #[inline]
    fn on_data(&mut self, st: St, op: u8, payload: &[u8], now: u64) -> bool {
        if st != St::Open {
            return false;
        }
        if self.cfg.mode != Mode::Echo {
            self.st.other_msgs += 1;
            return false;
        }
        self.st.recv_all += 1;
        let size = self.cfg.size;
        if op != self.data_op {
            let (got, want) = (op_name(op), op_name(self.data_op));
            self.err(ErrKind::BadPayload, || {
                format!("echo came back as a {got} message, sent {want}")
            });
        } else if payload.len() != size {
            let got = payload.len();
            self.err(ErrKind::SizeMismatch, || format!("echo of {got} bytes, sent {size} bytes"));
        } else {
            let ts = if op == OP_TEXT { unhex16(payload) } else { Some(load_u64_le(payload)) };
            match ts {
                Some(ts) if ts <= now => self.count_echo(ts, size, now),
                _ => self.err(ErrKind::BadPayload, || {
                    "echo payload does not carry the timestamp that was sent".to_string()
                }),
            }
        }
        true
    }

    #[inline]
    fn count_echo(&mut self, ts: u64, size: usize, now: u64) {
        if now >= self.win_start && now < self.win_end {
            self.st.msgs += 1;
            self.st.bytes += size as u64;
            self.st.lat.saturating_record(micros(now - ts));
        }
    }
}

fn op_name(op: u8) -> &'static str {
    match op {
        OP_TEXT => "text",
        OP_BINARY => "binary",
        _ => "other",
    }
}

#[inline]
fn load_u64_le(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Write `w[wp..]` until done or WouldBlock.
fn flush(c: &mut Conn, writes: &mut u64) -> io::Result<()> {
    while c.wp < c.w.len() {
        *writes += 1;
        match c.sock.write(&c.w[c.wp..]) {
            Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => c.wp += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if c.wp > BIG_CHUNK {
                    c.w.drain(..c.wp);
                    c.wp = 0;
                }
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    c.w.clear();
    c.wp = 0;
    Ok(())
}

/// Make sure `r[re..]` has at least `spare` bytes.
fn ensure_spare(ctx: &mut Ctx, c: &mut Conn, spare: usize) {
    if c.r.len() - c.re >= spare {
        return;
    }
    if c.r.capacity() == 0 {
        c.r = ctx.take_buf(spare.max(ctx.read_chunk));
    }
    if c.rs > 0 {
        c.r.copy_within(c.rs..c.re, 0);
        c.re -= c.rs;
        c.rs = 0;
    }
    if c.r.len() - c.re < spare {
        let want = (c.re + spare).max(c.r.capacity()).max(c.r.len() * 2);
        c.r.resize(want, 0);
    }
}

/// Handle one readiness event of a connection.
fn on_event(ctx: &mut Ctx, c: &mut Conn, idx: usize, ev: &mio::event::Event) -> Act {
    let now = ctx.now();
    if c.st == St::Connecting {
        // epoll reports a connecting socket writable once connected, and
        // with an error or hang-up once failed: no syscall needed to tell.
        if ev.is_error() || ev.is_read_closed() || ev.is_write_closed() {
            let e = match c.sock.take_error() {
                Ok(Some(e)) | Err(e) => e,
                Ok(None) => io::Error::new(ErrorKind::ConnectionRefused, "connection failed"),
            };
            ctx.connect_error(&e);
            return Act::Drop;
        }
        if !ev.is_writable() {
            return Act::Keep;
        }
        connected(ctx, c, idx, now);
    }
    if ev.is_writable() && c.wp < c.w.len() {
        ctx.mark_dirty(c, idx);
    }
    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
        // A short read means the socket is drained (Linux epoll raises a new
        // edge for any data arriving later), unless the peer already closed:
        // then read on until EOF, for no new edge would come.
        let drain_all = ev.is_read_closed() || ev.is_error();
        return read_loop(ctx, c, idx, now, drain_all);
    }
    Act::Keep
}

fn connected(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64) {
    if c.w.capacity() == 0 {
        c.w = ctx.take_buf(256);
    }
    if ctx.ws {
        let t = &ctx.cfg.target;
        c.w.extend_from_slice(b"GET ");
        c.w.extend_from_slice(t.path.as_bytes());
        c.w.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        c.w.extend_from_slice(t.host.as_bytes());
        c.w.extend_from_slice(
            b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ",
        );
        c.w.extend_from_slice(&c.key);
        c.w.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\n\r\n");
        ctx.set_state(c, St::Handshake);
        ctx.mark_dirty(c, idx);
    } else {
        ctx.established(c, now);
        on_open(ctx, c, idx, now);
    }
}

/// A connection just became established.
fn on_open(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64) {
    c.deadline = 0;
    if ctx.closing_all || ctx.cfg.mode == Mode::Connect {
        start_close(ctx, c, idx, now);
        return;
    }
    if ctx.sending && matches!(ctx.cfg.mode, Mode::Echo | Mode::TcpEcho) {
        send_msgs(ctx, c, idx, ctx.cfg.inflight, now);
    }
}

fn start_close(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64) {
    if c.w.capacity() == 0 {
        c.w = ctx.take_buf(16);
    }
    let mask = ctx.rng.next() as u32;
    push_close(&mut c.w, Some(1000), mask);
    ctx.set_state(c, St::Closing);
    c.deadline = now + ctx.close_wait_ns;
    ctx.mark_dirty(c, idx);
}

#[inline]
fn send_msgs(ctx: &mut Ctx, c: &mut Conn, idx: usize, n: u32, now: u64) {
    if n == 0 {
        return;
    }
    c.w.reserve(n as usize * (ctx.template.len() + 14));
    if ctx.ws {
        for _ in 0..n {
            let mask = ctx.rng.next() as u32;
            push_msg(&mut c.w, ctx.data_op, &ctx.template, now, mask);
        }
    } else {
        for _ in 0..n {
            let p0 = c.w.len();
            c.w.extend_from_slice(&ctx.template);
            c.w[p0..p0 + 8].copy_from_slice(&now.to_le_bytes());
        }
    }
    c.inflight += n;
    ctx.st.sent += u64::from(n);
    ctx.mark_dirty(c, idx);
}

fn read_loop(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64, drain_all: bool) -> Act {
    loop {
        let buffered = c.re - c.rs;
        let spare = ctx.read_chunk.max(c.need.saturating_sub(buffered));
        ensure_spare(ctx, c, spare);
        let avail = c.r.len() - c.re;
        ctx.st.reads += 1;
        match c.sock.read(&mut c.r[c.re..]) {
            Ok(0) => return on_eof(ctx, c, now),
            Ok(n) => {
                c.re += n;
                if process(ctx, c, idx, now) == Act::Drop {
                    return Act::Drop;
                }
                if n < avail && !drain_all {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return on_io_error(ctx, c, &e),
        }
    }
    if c.rs == c.re {
        c.rs = 0;
        c.re = 0;
        if ctx.small_bufs && c.r.capacity() > 0 {
            let r = std::mem::take(&mut c.r);
            ctx.give_buf(r);
        }
    }
    Act::Keep
}

fn on_eof(ctx: &mut Ctx, c: &mut Conn, now: u64) -> Act {
    let addr = ctx.cfg.target.addr;
    match c.st {
        St::Connecting | St::Handshake => {
            let got = c.re - c.rs;
            let line = first_line_lossy(&c.r[c.rs..c.re], 200);
            ctx.err(ErrKind::HandshakeInvalid, || {
                if got == 0 {
                    format!("{addr} closed the connection during the handshake (no response)")
                } else {
                    format!(
                        "{addr} closed the connection during the handshake after {got} bytes: {line:?}"
                    )
                }
            });
        }
        St::HsFailBody => {
            fail_body(ctx, c, now, true);
        }
        St::EchoFirst => ctx.err(ErrKind::Disconnected, || {
            format!("{addr} closed the TCP connection before echoing the first message")
        }),
        St::Open => {
            let what = if ctx.ws { "without a close frame" } else { "(EOF)" };
            ctx.conn_err(c, ErrKind::Disconnected, || {
                format!("{addr} closed the TCP connection {what}")
            });
        }
        St::Closing => ctx.st.close_eof += 1,
        St::AwaitEof => {}
    }
    Act::Drop
}

fn on_io_error(ctx: &mut Ctx, c: &mut Conn, e: &io::Error) -> Act {
    let addr = ctx.cfg.target.addr;
    match c.st {
        St::Connecting => ctx.connect_error(e),
        St::Handshake | St::HsFailBody => ctx.err(ErrKind::HandshakeInvalid, || {
            format!("{addr}: connection failed during the handshake: {e}")
        }),
        St::EchoFirst => ctx.err(ErrKind::Disconnected, || {
            format!("{addr}: connection error before the first echo: {e}")
        }),
        St::Open => {
            let kind = match e.kind() {
                ErrorKind::ConnectionReset
                | ErrorKind::BrokenPipe
                | ErrorKind::ConnectionAborted => ErrKind::Disconnected,
                _ => ErrKind::Io,
            };
            ctx.conn_err(c, kind, || format!("{addr}: connection error: {e}"));
        }
        // The server may reset after its close reply; that ends the close.
        St::Closing => ctx.st.close_eof += 1,
        St::AwaitEof => {}
    }
    Act::Drop
}

fn process(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64) -> Act {
    loop {
        match c.st {
            St::Connecting => return Act::Keep,
            St::Handshake => {
                if let Some(a) = handshake_response(ctx, c, idx, now) {
                    return a;
                }
            }
            St::HsFailBody => return fail_body(ctx, c, now, false),
            St::AwaitEof => {
                c.rs = c.re;
                return Act::Keep;
            }
            St::Open | St::Closing | St::EchoFirst => {
                return if ctx.ws { frames(ctx, c, idx, now) } else { records(ctx, c, idx, now) }
            }
        }
    }
}

/// Parse the handshake response. `None`: the state changed, keep processing.
fn handshake_response(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64) -> Option<Act> {
    let addr = ctx.cfg.target.addr;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let buf = &c.r[c.rs..c.re];
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD {
                ctx.err(ErrKind::HandshakeInvalid, || {
                    format!("{addr}: handshake response head larger than 16 KiB")
                });
                return Some(Act::Drop);
            }
            return Some(Act::Keep);
        }
        Ok(httparse::Status::Complete(n)) => n,
        Err(e) => {
            let line = first_line_lossy(buf, 200);
            ctx.err(ErrKind::HandshakeInvalid, || {
                format!("{addr}: malformed handshake response ({e}): {line:?}")
            });
            return Some(Act::Drop);
        }
    };
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        let status =
            format!("HTTP/1.{} {} {}", resp.version.unwrap_or(1), code, resp.reason.unwrap_or(""));
        let clen = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        c.fail_status = status;
        c.body_need = clen.unwrap_or(usize::MAX).min(256);
        c.rs += n;
        ctx.set_state(c, St::HsFailBody);
        c.deadline = now + FAIL_BODY_WAIT_NS;
        return None;
    }
    let accept = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|h| h.value.trim_ascii());
    match accept {
        Some(v) if v == c.accept => {}
        Some(v) => {
            let got = String::from_utf8_lossy(v).into_owned();
            let want = String::from_utf8_lossy(&c.accept).into_owned();
            ctx.err(ErrKind::HandshakeAccept, || {
                format!("{addr}: wrong Sec-WebSocket-Accept {got:?} (expected {want:?})")
            });
            return Some(Act::Drop);
        }
        None => {
            ctx.err(ErrKind::HandshakeAccept, || {
                format!("{addr}: 101 response without Sec-WebSocket-Accept")
            });
            return Some(Act::Drop);
        }
    }
    // Bytes after the head are frame bytes: they stay in the buffer.
    c.rs += n;
    if ctx.cfg.echo_first > 0 && !ctx.closing_all {
        let len = ctx.cfg.echo_first;
        if c.w.capacity() == 0 {
            c.w = ctx.take_buf(len + 14);
        }
        let mask = ctx.rng.next() as u32;
        let template = std::mem::take(&mut ctx.template);
        push_msg(&mut c.w, OP_BINARY, &template, now, mask);
        ctx.template = template;
        ctx.st.sent += 1;
        ctx.set_state(c, St::EchoFirst);
        c.deadline = now + ECHO_FIRST_TIMEOUT_NS;
        ctx.mark_dirty(c, idx);
        return None;
    }
    ctx.established(c, now);
    on_open(ctx, c, idx, now);
    None
}

/// Report a non-101 handshake once the first body line (or EOF/timeout) is in.
fn fail_body(ctx: &mut Ctx, c: &mut Conn, now: u64, force: bool) -> Act {
    let body = &c.r[c.rs..c.re];
    let has_line = body.contains(&b'\n');
    if !(force || has_line || body.len() >= c.body_need || now >= c.deadline) {
        return Act::Keep;
    }
    let addr = ctx.cfg.target.addr;
    let line = first_line_lossy(body, 200);
    let status = std::mem::take(&mut c.fail_status);
    ctx.err(ErrKind::HandshakeStatus, || {
        format!("handshake with {addr} failed: {status}; body: {line:?}")
    });
    Act::Drop
}

fn protocol_error(ctx: &mut Ctx, c: &mut Conn, msg: &'static str) -> Act {
    let addr = ctx.cfg.target.addr;
    ctx.conn_err(c, ErrKind::Protocol, || format!("{addr}: protocol error: {msg}"));
    let mask = ctx.rng.next() as u32;
    push_close(&mut c.w, Some(1002), mask);
    Act::Drop
}

fn frames(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64) -> Act {
    loop {
        let (fin, op, hlen, plen) = match parse_frame(&c.r[c.rs..c.re]) {
            FrameHead::Need(n) => {
                c.need = n;
                break;
            }
            FrameHead::Bad(m) => return protocol_error(ctx, c, m),
            FrameHead::Ok { fin, op, hlen, plen } => (fin, op, hlen, plen),
        };
        c.need = 0;
        let p0 = c.rs + hlen;
        let p1 = p0 + plen;
        c.rs = p1;
        match op {
            OP_TEXT | OP_BINARY => {
                if c.frag_op != 0 {
                    return protocol_error(ctx, c, "new data frame inside a fragmented message");
                }
                if fin {
                    if c.st == St::EchoFirst {
                        if let Some(a) = first_echo(ctx, c, idx, op, plen, now) {
                            return a;
                        }
                    } else if ctx.on_data(c.st, op, &c.r[p0..p1], now) {
                        after_echo(ctx, c, idx, now);
                    }
                } else {
                    c.frag_op = op;
                    c.frag.clear();
                    c.frag.extend_from_slice(&c.r[p0..p1]);
                }
            }
            OP_CONT => {
                if c.frag_op == 0 {
                    return protocol_error(ctx, c, "continuation frame without a message");
                }
                c.frag.extend_from_slice(&c.r[p0..p1]);
                if c.frag.len() > MAX_FRAME {
                    return protocol_error(ctx, c, "fragmented message larger than 64 MiB");
                }
                if fin {
                    let op = c.frag_op;
                    c.frag_op = 0;
                    if c.st == St::EchoFirst {
                        let len = c.frag.len();
                        c.frag = Vec::new();
                        if let Some(a) = first_echo(ctx, c, idx, op, len, now) {
                            return a;
                        }
                    } else if ctx.on_data(c.st, op, &c.frag, now) {
                        after_echo(ctx, c, idx, now);
                    }
                    if ctx.small_bufs {
                        c.frag = Vec::new();
                    }
                }
            }
            OP_PING => {
                if c.st == St::Open {
                    if c.w.capacity() == 0 {
                        c.w = ctx.take_buf(plen + 16);
                    }
                    let mask = ctx.rng.next() as u32;
                    push_frame(&mut c.w, OP_PONG, &c.r[p0..p1], mask);
                    ctx.st.pongs += 1;
                    ctx.mark_dirty(c, idx);
                }
            }
            OP_PONG => {}
            OP_CLOSE => {
                if plen == 1 {
                    return protocol_error(ctx, c, "close frame with a 1-byte payload");
                }
                let code =
                    if plen >= 2 { Some(u16::from_be_bytes([c.r[p0], c.r[p0 + 1]])) } else { None };
                match c.st {
                    St::Open | St::EchoFirst => {
                        let addr = ctx.cfg.target.addr;
                        let reason = if plen > 2 {
                            String::from_utf8_lossy(&c.r[p0 + 2..p1]).into_owned()
                        } else {
                            String::new()
                        };
                        let code_s = code.map_or("none (1005)".to_string(), |c| c.to_string());
                        ctx.conn_err(c, ErrKind::EarlyClose, || {
                            format!(
                                "{addr} closed the connection: code {code_s}, reason {reason:?}"
                            )
                        });
                        if c.w.capacity() == 0 {
                            c.w = ctx.take_buf(16);
                        }
                        let mask = ctx.rng.next() as u32;
                        push_close(&mut c.w, code, mask);
                        return Act::Drop;
                    }
                    St::Closing => {
                        ctx.st.close_ok += 1;
                        ctx.set_state(c, St::AwaitEof);
                        c.rs = c.re;
                        break;
                    }
                    _ => {
                        c.rs = c.re;
                        break;
                    }
                }
            }
            _ => return protocol_error(ctx, c, "unknown opcode"),
        }
    }
    if c.rs == c.re {
        c.rs = 0;
        c.re = 0;
    }
    Act::Keep
}

/// idle --echo-first: the echo of the first message arrived; the connection
/// now counts as established. `Some` when the connection must go.
fn first_echo(
    ctx: &mut Ctx,
    c: &mut Conn,
    idx: usize,
    op: u8,
    len: usize,
    now: u64,
) -> Option<Act> {
    if op != OP_BINARY || len != ctx.cfg.echo_first {
        let (addr, want) = (ctx.cfg.target.addr, ctx.cfg.echo_first);
        ctx.err(ErrKind::SizeMismatch, || {
            format!(
                "{addr}: first echo was a {} message of {len} bytes, sent binary {want}",
                op_name(op)
            )
        });
        return Some(Act::Drop);
    }
    ctx.st.recv_all += 1;
    ctx.established(c, now);
    on_open(ctx, c, idx, now);
    // Give the large buffers back now rather than hold them while idle.
    if c.wp >= c.w.len() {
        c.w = Vec::new();
        c.wp = 0;
    }
    None
}

#[inline]
fn after_echo(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64) {
    c.inflight = c.inflight.saturating_sub(1);
    if ctx.sending && c.st == St::Open {
        send_msgs(ctx, c, idx, 1, now);
    }
}

fn records(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64) -> Act {
    let size = ctx.cfg.size;
    let mut n = 0u32;
    while c.re - c.rs >= size {
        let ts = load_u64_le(&c.r[c.rs..]);
        ctx.st.recv_all += 1;
        if ts <= now {
            ctx.count_echo(ts, size, now);
        } else {
            ctx.err(ErrKind::BadPayload, || {
                "record does not carry the timestamp that was sent".to_string()
            });
        }
        c.rs += size;
        n += 1;
    }
    c.need = size - (c.re - c.rs);
    if c.rs == c.re {
        c.rs = 0;
        c.re = 0;
    }
    c.inflight = c.inflight.saturating_sub(n);
    if ctx.sending && c.st == St::Open {
        send_msgs(ctx, c, idx, n, now);
    }
    Act::Keep
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Establish,
    Run,
    Hold,
    Close,
    Done,
}

struct Worker {
    poll: Poll,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    ctx: Ctx,
    plan: Plan,
    shared: Arc<Shared>,
    phase: Phase,
    started: u64,
    src_ctr: u32,
    est_deadline: u64,
    close_deadline: u64,
    next_tick: u64,
    next_scan: u64,
    scratch: Vec<usize>,
}

#[cfg(target_os = "linux")]
fn bind_no_port(s: &Socket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: `s` owns a valid socket; the option value is a c_int of the given size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn bind_no_port(_s: &Socket) {}

fn connect_socket(dst: SocketAddrV4, src: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    // Non-blocking from creation (SOCK_NONBLOCK): no fcntl calls.
    let s = Socket::new(Domain::IPV4, Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
    s.set_nodelay(true)?;
    if let Some(ip) = src {
        // Defer the port choice to connect(), so ports are unique per 4-tuple.
        bind_no_port(&s);
        s.bind(&SockAddr::from(SocketAddrV4::new(ip, 0)))?;
    }
    match s.connect(&SockAddr::from(dst)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(s)))
}

impl Worker {
    fn new(
        cfg: Arc<Config>,
        plan: Plan,
        shared: Arc<Shared>,
        start: Instant,
    ) -> Result<Worker, String> {
        let poll = Poll::new().map_err(|e| format!("cannot create poll: {e}"))?;
        let ws = cfg.is_ws();
        let data_op = if cfg.binary { OP_BINARY } else { OP_TEXT };
        let template = if matches!(cfg.mode, Mode::Echo | Mode::TcpEcho) {
            vec![b'x'; cfg.size]
        } else if cfg.echo_first > 0 {
            vec![b'x'; cfg.echo_first]
        } else {
            Vec::new()
        };
        let small_bufs = matches!(cfg.mode, Mode::Connect | Mode::Idle);
        let read_chunk = if small_bufs { SMALL_CHUNK } else { BIG_CHUNK };
        let close_wait_ns = match cfg.mode {
            Mode::Idle => 2 * NS_PER_SEC,
            _ => NS_PER_SEC,
        };
        let est_deadline = match cfg.mode {
            Mode::Echo | Mode::TcpEcho => ECHO_ESTABLISH_NS,
            Mode::Connect => (cfg.secs * 1e9) as u64,
            Mode::Idle if cfg.echo_first > 0 => ECHO_FIRST_ESTABLISH_NS,
            Mode::Idle => IDLE_ESTABLISH_NS,
        };
        let ctx = Ctx {
            rng: Rng::seeded(plan.id as u64 + 1),
            st: Stats::new()?,
            dirty: Vec::with_capacity(1024),
            pool: Vec::new(),
            template,
            data_op,
            ws,
            small_bufs,
            read_chunk,
            sending: true,
            closing_all: false,
            close_wait_ns,
            win_start: u64::MAX,
            win_end: u64::MAX,
            n: [0; 3],
            resolved: 0,
            start,
            cfg,
        };
        Ok(Worker {
            poll,
            conns: Vec::new(),
            free: Vec::new(),
            ctx,
            plan,
            shared,
            phase: Phase::Establish,
            started: 0,
            src_ctr: plan.id as u32,
            est_deadline,
            close_deadline: u64::MAX,
            next_tick: 0,
            next_scan: 0,
            scratch: Vec::new(),
        })
    }

    fn run(mut self) -> Result<Stats, String> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = self.ctx.now();
            self.open_attempts(now);
            self.flush_dirty();
            let timeout = Duration::from_millis(if self.phase == Phase::Done { 0 } else { 5 });
            self.ctx.st.polls += 1;
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll failed: {e}"));
            }
            for ev in events.iter() {
                let idx = ev.token().0;
                let act = match self.conns.get_mut(idx) {
                    Some(Some(c)) => on_event(&mut self.ctx, c, idx, ev),
                    _ => continue,
                };
                if act == Act::Drop {
                    self.drop_conn(idx);
                }
            }
            self.flush_dirty();
            let now = self.ctx.now();
            if now >= self.next_tick {
                self.next_tick = now + NS_PER_MS;
                self.tick(now);
                if self.phase == Phase::Done {
                    break;
                }
            }
        }
        self.publish();
        let wall = self.ctx.now() as f64 / 1e9;
        let cpu = thread_cpu_secs();
        self.ctx.st.cpu_s = cpu;
        self.ctx.st.busy_max = if wall > 0.0 { cpu / wall } else { 0.0 };
        let p = &self.shared.pubs[self.plan.id];
        p.done.store(true, Ordering::Release);
        Ok(self.ctx.st)
    }

    fn publish(&self) {
        let p = &self.shared.pubs[self.plan.id];
        let prog = match self.ctx.cfg.mode {
            Mode::Echo | Mode::TcpEcho => self.ctx.st.recv_all,
            Mode::Connect | Mode::Idle => self.ctx.st.handshakes,
        };
        p.progress.store(prog, Ordering::Relaxed);
        p.open.store(self.ctx.n[1], Ordering::Relaxed);
        p.errors.store(self.ctx.st.errors(), Ordering::Relaxed);
        p.established.store(self.ctx.st.handshakes, Ordering::Relaxed);
    }

    fn open_attempts(&mut self, now: u64) {
        if self.phase != Phase::Establish || now >= self.est_deadline {
            return;
        }
        while self.ctx.n[0] < self.plan.concurrency && self.started < self.plan.conns {
            if self.plan.rate > 0.0 {
                let allowed = (self.plan.rate * now as f64 / 1e9) as u64 + 1;
                if self.started >= allowed {
                    break;
                }
            }
            self.started += 1;
            self.open_conn(now);
        }
    }

    fn open_conn(&mut self, now: u64) {
        let cfg = &self.ctx.cfg;
        let dst = cfg.target.addr;
        let src = if cfg.sources > 0 {
            let i = self.src_ctr % cfg.sources;
            self.src_ctr = self.src_ctr.wrapping_add(1);
            Some(Ipv4Addr::new(127, 0, 0, 1 + i as u8))
        } else {
            None
        };
        let mut sock = match connect_socket(dst, src) {
            Ok(s) => s,
            Err(e) => {
                let e = match src {
                    Some(ip) if e.kind() == ErrorKind::AddrNotAvailable => io::Error::new(
                        e.kind(),
                        format!("{e} (source {ip}: ephemeral ports exhausted? raise --sources)"),
                    ),
                    _ => e,
                };
                self.ctx.connect_error(&e);
                self.ctx.resolved += 1;
                self.ctx.st.failed += 1;
                self.ctx.st.last_resolved_ns = now;
                return;
            }
        };
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        if let Err(e) = self.poll.registry().register(
            &mut sock,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.ctx.err(ErrKind::Io, || format!("cannot register socket: {e}"));
            self.free.push(idx);
            self.ctx.resolved += 1;
            self.ctx.st.failed += 1;
            return;
        }
        let (key, accept) =
            if self.ctx.ws { ws_key(&mut self.ctx.rng) } else { ([0; 24], [0; 28]) };
        let (r, w) = if self.ctx.small_bufs {
            (Vec::new(), Vec::new())
        } else {
            let chunk = self.ctx.read_chunk;
            let frame = self.ctx.cfg.size + 14;
            let r = vec![0; (2 * chunk).max(2 * frame)];
            let w = Vec::with_capacity(frame * self.ctx.cfg.inflight as usize + 4096);
            (r, w)
        };
        let c = Conn {
            sock,
            st: St::Connecting,
            r,
            rs: 0,
            re: 0,
            need: 0,
            w,
            wp: 0,
            frag: Vec::new(),
            frag_op: 0,
            key,
            accept,
            t0: now,
            deadline: now + HANDSHAKE_TIMEOUT_NS,
            inflight: 0,
            dirty: false,
            fail_status: String::new(),
            body_need: 0,
        };
        self.ctx.n[0] += 1;
        self.conns[idx] = Some(c);
    }

    fn drop_conn(&mut self, idx: usize) {
        let Some(slot) = self.conns.get_mut(idx) else {
            return;
        };
        let Some(mut c) = slot.take() else {
            return;
        };
        if c.wp < c.w.len() {
            // Best effort: a final close frame or pong.
            let _ = flush(&mut c, &mut self.ctx.st.writes);
        }
        let b = bucket(c.st);
        self.ctx.n[b] = self.ctx.n[b].saturating_sub(1);
        if b == 0 {
            self.ctx.resolved += 1;
            self.ctx.st.failed += 1;
            self.ctx.st.last_resolved_ns = self.ctx.now();
        }
        let Conn { r, w, .. } = c;
        self.ctx.give_buf(r);
        self.ctx.give_buf(w);
        self.free.push(idx);
    }

    fn flush_dirty(&mut self) {
        if self.ctx.dirty.is_empty() {
            return;
        }
        let mut list = std::mem::take(&mut self.ctx.dirty);
        for &idx in &list {
            let res = match self.conns.get_mut(idx) {
                Some(Some(c)) => {
                    c.dirty = false;
                    let r = flush(c, &mut self.ctx.st.writes);
                    if r.is_ok() && self.ctx.small_bufs && c.w.is_empty() && c.w.capacity() > 0 {
                        let w = std::mem::take(&mut c.w);
                        self.ctx.give_buf(w);
                    }
                    r
                }
                _ => continue,
            };
            if let Err(e) = res {
                if let Some(Some(c)) = self.conns.get_mut(idx) {
                    let _ = on_io_error(&mut self.ctx, c, &e);
                }
                self.drop_conn(idx);
            }
        }
        list.clear();
        self.ctx.dirty = list;
    }

    fn tick(&mut self, now: u64) {
        match self.phase {
            Phase::Establish => {
                let all = self.ctx.resolved >= self.plan.conns;
                if all || now >= self.est_deadline {
                    self.end_establish(now);
                }
            }
            Phase::Run => {
                if now >= self.ctx.win_end || self.ctx.n[1] == 0 {
                    let end = now.min(self.ctx.win_end);
                    self.ctx.st.win_secs = end.saturating_sub(self.ctx.win_start) as f64 / 1e9;
                    self.begin_close(now);
                }
            }
            Phase::Hold => {
                let he = self.shared.hold_end_ns.load(Ordering::Acquire);
                if he != 0 && now >= he {
                    self.begin_close(now);
                }
            }
            Phase::Close => {
                if self.ctx.n.iter().sum::<u64>() == 0 {
                    self.phase = Phase::Done;
                } else if now >= self.close_deadline {
                    self.scan_timeouts(u64::MAX);
                    self.drop_all();
                    self.phase = Phase::Done;
                }
            }
            Phase::Done => {}
        }
        if self.ctx.n[0] + self.ctx.n[2] > 0 && now >= self.next_scan {
            self.next_scan = now + 50 * NS_PER_MS;
            self.scan_timeouts(now);
        }
        self.publish();
    }

    fn end_establish(&mut self, now: u64) {
        // Attempts still pending at the establishment deadline time out.
        let pending = self.ctx.n[0];
        if pending > 0 {
            let addr = self.ctx.cfg.target.addr;
            let secs = self.est_deadline / NS_PER_SEC;
            let mode = self.ctx.cfg.mode;
            for i in 0..self.conns.len() {
                if let Some(c) = &self.conns[i] {
                    if bucket(c.st) == 0 {
                        if mode == Mode::Connect {
                            self.ctx.st.incomplete += 1;
                            self.ctx.resolved += 1;
                            self.ctx.n[0] = self.ctx.n[0].saturating_sub(1);
                            self.conns[i] = None;
                            self.free.push(i);
                        } else {
                            self.ctx.err(ErrKind::HandshakeTimeout, || {
                                format!("{addr}: not established within the {secs} s deadline")
                            });
                            self.drop_conn(i);
                        }
                    }
                }
            }
        }
        if self.ctx.cfg.mode == Mode::Connect {
            self.ctx.st.incomplete += self.plan.conns.saturating_sub(self.started);
        }
        self.ctx.st.ready_ns = now;
        let p = &self.shared.pubs[self.plan.id];
        p.established.store(self.ctx.st.handshakes, Ordering::Relaxed);
        p.ready.store(true, Ordering::Release);
        match self.ctx.cfg.mode {
            Mode::Echo | Mode::TcpEcho => {
                if self.ctx.n[1] == 0 {
                    self.begin_close(now);
                } else {
                    let cfg = &self.ctx.cfg;
                    self.ctx.win_start = now + (cfg.warmup * 1e9) as u64;
                    self.ctx.win_end = self.ctx.win_start + (cfg.secs * 1e9) as u64;
                    self.phase = Phase::Run;
                }
            }
            Mode::Connect => {
                self.phase = Phase::Close;
                self.close_deadline = now + self.ctx.close_wait_ns + 100 * NS_PER_MS;
            }
            Mode::Idle => self.phase = Phase::Hold,
        }
    }

    fn begin_close(&mut self, now: u64) {
        self.ctx.sending = false;
        self.ctx.closing_all = true;
        self.close_deadline = now + self.ctx.close_wait_ns;
        self.phase = Phase::Close;
        let ws = self.ctx.ws;
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_mut() else {
                continue;
            };
            match c.st {
                St::Open if ws => start_close(&mut self.ctx, c, idx, now),
                St::Closing | St::AwaitEof => {}
                _ => self.scratch.push(idx),
            }
        }
        let list = std::mem::take(&mut self.scratch);
        for &idx in &list {
            self.drop_conn(idx);
        }
        self.scratch = list;
        self.scratch.clear();
        self.flush_dirty();
    }

    fn drop_all(&mut self) {
        for idx in 0..self.conns.len() {
            if self.conns[idx].is_some() {
                self.drop_conn(idx);
            }
        }
    }

    fn scan_timeouts(&mut self, now: u64) {
        let addr = self.ctx.cfg.target.addr;
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_mut() else {
                continue;
            };
            if c.deadline == 0 || now < c.deadline {
                continue;
            }
            match c.st {
                St::Connecting | St::Handshake | St::EchoFirst => {
                    let what = match c.st {
                        St::Connecting => "TCP connect",
                        St::Handshake => "handshake response",
                        _ => "echo of the first message",
                    };
                    let secs = if c.st == St::EchoFirst {
                        ECHO_FIRST_TIMEOUT_NS / NS_PER_SEC
                    } else {
                        HANDSHAKE_TIMEOUT_NS / NS_PER_SEC
                    };
                    self.ctx.err(ErrKind::HandshakeTimeout, || {
                        format!("{addr}: no {what} within {secs} s")
                    });
                }
                St::HsFailBody => {
                    fail_body(&mut self.ctx, c, now, true);
                }
                St::Closing => self.ctx.err(ErrKind::CloseTimeout, || {
                    format!("{addr}: no close reply within the close wait")
                }),
                St::Open | St::AwaitEof => {}
            }
            self.scratch.push(idx);
        }
        let list = std::mem::take(&mut self.scratch);
        for &idx in &list {
            self.drop_conn(idx);
        }
        self.scratch = list;
        self.scratch.clear();
    }
}

// ---------------------------------------------------------------------------
// Client driver: threads, progress, summary
// ---------------------------------------------------------------------------

fn raise_nofile() -> u64 {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 0;
    }
    let target = if rl.rlim_max == libc::RLIM_INFINITY { 1 << 20 } else { rl.rlim_max };
    if rl.rlim_cur < target {
        let new = libc::rlimit { rlim_cur: target, rlim_max: rl.rlim_max };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            rl.rlim_cur = target;
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    let cur = rl.rlim_cur as u64;
    cur
}

/// CPU time (user + system) of the calling thread, seconds.
fn thread_cpu_secs() -> f64 {
    #[cfg(target_os = "linux")]
    let who = libc::RUSAGE_THREAD;
    #[cfg(not(target_os = "linux"))]
    let who = libc::RUSAGE_SELF;
    // SAFETY: rusage is plain old data; getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage we own.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Tell the user when the load generator itself may have been the limit.
fn print_cpu(st: &Stats, threads: usize) {
    println!(
        "bench cpu     {:.2} s over {threads} thread(s), busiest thread {:.0}% of a core; {} reads, {} writes, {} polls",
        st.cpu_s,
        st.busy_max * 100.0,
        st.reads,
        st.writes,
        st.polls
    );
    if st.busy_max > 0.9 {
        eprintln!(
            "wsedge-bench: warning: a load generator thread was {:.0}% busy: results may be limited by the load generator (or CPU contention); try --threads",
            st.busy_max * 100.0
        );
    }
}

/// Host-wide count of TCP listen-queue overflows (`TcpExt: ListenOverflows`
/// in /proc/net/netstat); None where unavailable.
fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

fn write_ready_file(path: &str, n: u64) -> io::Result<()> {
    let tmp = format!("{path}.tmp{}", std::process::id());
    std::fs::write(&tmp, format!("{n}\n"))?;
    std::fs::rename(&tmp, path)
}

fn run_client(cfg: Arc<Config>) -> ExitCode {
    let limit = raise_nofile();
    let need_fds = match cfg.mode {
        Mode::Connect => cfg.concurrency * 4,
        _ => cfg.conns,
    };
    if limit > 0 && need_fds + 64 > limit {
        eprintln!(
            "wsedge-bench: warning: open-file limit is {limit}, this run may need {need_fds} sockets"
        );
    }
    let threads = cfg.threads;
    let shared = Arc::new(Shared {
        pubs: (0..threads).map(|_| Pub::default()).collect(),
        hold_end_ns: AtomicU64::new(0),
    });
    let overflows_before = listen_overflows();
    let start = Instant::now();
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let plan = Plan {
            id: i,
            conns: split(cfg.conns, threads, i),
            concurrency: split(cfg.concurrency, threads, i).max(1),
            rate: cfg.rate / threads as f64,
        };
        let worker = match Worker::new(cfg.clone(), plan, shared.clone(), start) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("wsedge-bench: {e}");
                return ExitCode::FAILURE;
            }
        };
        let h = std::thread::Builder::new().name(format!("bench-{i}")).spawn(move || worker.run());
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("wsedge-bench: cannot start thread: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    monitor(&cfg, &shared, start);

    let mut total: Option<Stats> = None;
    for h in handles {
        match h.join() {
            Ok(Ok(st)) => match total.as_mut() {
                Some(t) => t.merge(st),
                None => total = Some(st),
            },
            Ok(Err(e)) => {
                eprintln!("wsedge-bench: worker failed: {e}");
                return ExitCode::FAILURE;
            }
            Err(_) => {
                eprintln!("wsedge-bench: worker thread panicked");
                return ExitCode::FAILURE;
            }
        }
    }
    let Some(st) = total else {
        return ExitCode::FAILURE;
    };
    let elapsed = start.elapsed().as_secs_f64();
    let overflows = match (overflows_before, listen_overflows()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    report(&cfg, &st, elapsed, overflows)
}

fn monitor(cfg: &Config, shared: &Shared, start: Instant) {
    let unit = match cfg.mode {
        Mode::Echo => "msgs/s",
        Mode::TcpEcho => "records/s",
        Mode::Connect | Mode::Idle => "handshakes/s",
    };
    let mut held: Vec<String> = Vec::new();
    let mut printing = false;
    let mut next_sec = 1u64;
    let mut last = 0u64;
    let mut announced = false;
    loop {
        if shared.pubs.iter().all(|p| p.done.load(Ordering::Acquire)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        let el = start.elapsed();
        if cfg.mode == Mode::Idle
            && !announced
            && shared.pubs.iter().all(|p| p.ready.load(Ordering::Acquire))
        {
            announced = true;
            let est: u64 = shared.pubs.iter().map(|p| p.established.load(Ordering::Relaxed)).sum();
            eprintln!("established {est}");
            if let Some(path) = &cfg.ready_file {
                if let Err(e) = write_ready_file(path, est) {
                    eprintln!("wsedge-bench: cannot write --ready-file {path}: {e}");
                }
            }
            let hold = if est == 0 { 0.0 } else { cfg.secs };
            let end = el.as_nanos() as u64 + (hold * 1e9) as u64;
            shared.hold_end_ns.store(end.max(1), Ordering::Release);
        }
        if el.as_secs() >= next_sec {
            let prog: u64 = shared.pubs.iter().map(|p| p.progress.load(Ordering::Relaxed)).sum();
            let open: u64 = shared.pubs.iter().map(|p| p.open.load(Ordering::Relaxed)).sum();
            let errs: u64 = shared.pubs.iter().map(|p| p.errors.load(Ordering::Relaxed)).sum();
            let line = format!(
                "[{next_sec:>4}s] conns {open:>7} established | {:>9} {unit} (last 1 s) | errors {errs}",
                prog - last.min(prog)
            );
            last = prog;
            if printing {
                eprintln!("{line}");
            } else {
                held.push(line);
            }
            next_sec += 1;
        }
        if !printing && el > Duration::from_secs(3) {
            printing = true;
            for l in held.drain(..) {
                eprintln!("{l}");
            }
        }
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Hand-written JSON object on one line.
struct Json(String);

impl Json {
    fn new(mode: &str) -> Json {
        Json(format!("{{\"mode\":{}", json_str(mode)))
    }
    fn s(&mut self, k: &str, v: &str) -> &mut Json {
        self.0.push_str(&format!(",\"{k}\":{}", json_str(v)));
        self
    }
    fn u(&mut self, k: &str, v: u64) -> &mut Json {
        self.0.push_str(&format!(",\"{k}\":{v}"));
        self
    }
    fn f(&mut self, k: &str, v: f64, prec: usize) -> &mut Json {
        let v = if v.is_finite() { v } else { 0.0 };
        self.0.push_str(&format!(",\"{k}\":{v:.prec$}"));
        self
    }
    fn b(&mut self, k: &str, v: bool) -> &mut Json {
        self.0.push_str(&format!(",\"{k}\":{v}"));
        self
    }
    fn raw(&mut self, k: &str, v: &str) -> &mut Json {
        self.0.push_str(&format!(",\"{k}\":{v}"));
        self
    }
    fn finish(&mut self) -> String {
        let mut s = std::mem::take(&mut self.0);
        s.push('}');
        s
    }
}

fn error_kinds_json(st: &Stats) -> String {
    let mut o = String::from("{");
    for k in ErrKind::ALL {
        let n = st.errs[k as usize];
        if n > 0 {
            if o.len() > 1 {
                o.push(',');
            }
            o.push_str(&format!("\"{}\":{n}", k.name()));
        }
    }
    o.push('}');
    o
}

fn first_error_json(st: &Stats) -> String {
    for k in ErrKind::ALL {
        if let Some(m) = &st.first[k as usize] {
            return json_str(&format!("{}: {m}", k.name()));
        }
    }
    "null".to_string()
}

fn print_errors(st: &Stats) {
    let total = st.errors();
    if total == 0 {
        println!("errors        0");
        return;
    }
    let kinds: Vec<String> = ErrKind::ALL
        .iter()
        .filter(|k| st.errs[**k as usize] > 0)
        .map(|k| format!("{} {}", k.name(), st.errs[*k as usize]))
        .collect();
    println!("errors        {total} ({})", kinds.join(", "));
    for k in ErrKind::ALL {
        if let Some(m) = &st.first[k as usize] {
            println!("  {:<18} e.g. {m}", k.name());
        }
    }
}

struct Lat {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
}

fn lat(h: &Histogram<u64>) -> Lat {
    if h.is_empty() {
        return Lat { p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0.0 };
    }
    Lat {
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        mean: h.mean(),
    }
}

fn add_lat(j: &mut Json, l: &Lat) {
    j.u("p50_us", l.p50)
        .u("p90_us", l.p90)
        .u("p99_us", l.p99)
        .u("p999_us", l.p999)
        .u("max_us", l.max)
        .f("mean_us", l.mean, 1);
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

fn report(cfg: &Config, st: &Stats, elapsed: f64, overflows: Option<u64>) -> ExitCode {
    let url = &cfg.target.url;
    let mode = cfg.mode.name();
    let errors = st.errors();
    let mut j = Json::new(mode);
    j.s("url", url);
    let ok = match cfg.mode {
        Mode::Echo | Mode::TcpEcho => {
            let secs = st.win_secs;
            let rate = per_sec(st.msgs, secs);
            let mbs = per_sec(st.bytes, secs) / 1e6;
            let l = lat(&st.lat);
            let est_secs = st.ready_ns as f64 / 1e9;
            let hs_rate = per_sec(st.handshakes, est_secs);
            let kind = if cfg.mode == Mode::TcpEcho {
                "records"
            } else if cfg.binary {
                "binary"
            } else {
                "text"
            };
            println!("== wsedge-bench {mode} {url} ==");
            println!(
                "connections   {} established / {} ({} in {:.3} s, {:.0}/s), threads {}",
                st.handshakes,
                cfg.conns,
                if cfg.mode == Mode::TcpEcho { "connects" } else { "handshakes" },
                est_secs,
                hs_rate,
                cfg.threads
            );
            println!(
                "load          inflight {} per connection, {} B {kind}, warmup {:.1} s",
                cfg.inflight, cfg.size, cfg.warmup
            );
            println!("measured      {secs:.3} s");
            println!(
                "messages      {} echoes ({rate:.0} msgs/s); {} received in all, {} sent",
                st.msgs, st.recv_all, st.sent
            );
            println!("throughput    {mbs:.2} MB/s echoed payload received (MB = 1e6 bytes)");
            println!(
                "latency us    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}",
                l.p50, l.p90, l.p99, l.p999, l.max, l.mean
            );
            print_errors(st);
            if cfg.mode == Mode::Echo {
                println!("close         {} close replies, {} EOF", st.close_ok, st.close_eof);
            }
            j.u("conns", cfg.conns)
                .u("threads", cfg.threads as u64)
                .u("inflight", u64::from(cfg.inflight))
                .u("size", cfg.size as u64);
            if cfg.mode == Mode::Echo {
                j.b("binary", cfg.binary);
            }
            j.f("warmup", cfg.warmup, 3)
                .f("secs", secs, 3)
                .u("messages", st.msgs)
                .u("received", st.recv_all)
                .u("sent", st.sent)
                .f("msgs_per_sec", rate, 1)
                .f("mb_per_sec", mbs, 3);
            add_lat(&mut j, &l);
            j.u("errors", errors)
                .raw("error_kinds", &error_kinds_json(st))
                .u("handshakes", st.handshakes)
                .f("handshakes_per_sec", hs_rate, 1)
                .u("established", st.handshakes)
                .u("lost", st.lost);
            if cfg.mode == Mode::Echo {
                j.u("close_ok", st.close_ok);
            }
            st.handshakes > 0 && st.msgs > 0
        }
        Mode::Connect => {
            let secs = st.last_resolved_ns as f64 / 1e9;
            let rate = per_sec(st.handshakes, secs);
            let l = lat(&st.hs_lat);
            println!("== wsedge-bench connect {url} ==");
            println!(
                "attempts      {} total, concurrency {}, sources {}, threads {}",
                cfg.conns, cfg.concurrency, cfg.sources, cfg.threads
            );
            println!(
                "handshakes    {} completed in {secs:.3} s ({rate:.0}/s), {} failed, {} not attempted/finished in time",
                st.handshakes, st.failed, st.incomplete
            );
            println!(
                "handshake us  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}",
                l.p50, l.p90, l.p99, l.p999, l.max, l.mean
            );
            println!("close         {} close replies, {} EOF", st.close_ok, st.close_eof);
            print_errors(st);
            j.u("total", cfg.conns)
                .u("concurrency", cfg.concurrency)
                .u("sources", u64::from(cfg.sources))
                .u("threads", cfg.threads as u64)
                .f("secs", secs, 3)
                .u("handshakes", st.handshakes)
                .f("handshakes_per_sec", rate, 1)
                .u("established", st.handshakes)
                .u("failed", st.failed)
                .u("incomplete", st.incomplete);
            add_lat(&mut j, &l);
            j.u("errors", errors)
                .raw("error_kinds", &error_kinds_json(st))
                .u("close_ok", st.close_ok)
                .u("close_eof", st.close_eof);
            st.handshakes > 0
        }
        Mode::Idle => {
            let est_secs = st.ready_ns as f64 / 1e9;
            let rate = per_sec(st.handshakes, est_secs);
            let l = lat(&st.hs_lat);
            println!("== wsedge-bench idle {url} ==");
            println!(
                "established   {} / {} in {est_secs:.3} s ({rate:.0} handshakes/s), {} failed; sources {}, threads {}",
                st.handshakes, cfg.conns, st.failed, cfg.sources, cfg.threads
            );
            println!(
                "handshake us  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                l.p50, l.p90, l.p99, l.p999, l.max
            );
            println!(
                "hold          {:.1} s; {} lost during the run; {} pings answered; {} messages received",
                cfg.secs, st.lost, st.pongs, st.other_msgs
            );
            println!("close         {} close replies, {} EOF", st.close_ok, st.close_eof);
            print_errors(st);
            j.u("conns", cfg.conns)
                .u("established", st.handshakes)
                .u("failed", st.failed)
                .f("establish_secs", est_secs, 3)
                .f("hold", cfg.secs, 3)
                .f("secs", elapsed, 3)
                .u("sources", u64::from(cfg.sources))
                .u("threads", cfg.threads as u64)
                .f("rate", cfg.rate, 1)
                .u("echo_first", cfg.echo_first as u64)
                .u("handshakes", st.handshakes)
                .f("handshakes_per_sec", rate, 1);
            add_lat(&mut j, &l);
            j.u("lost", st.lost)
                .u("pongs", st.pongs)
                .u("messages", st.other_msgs)
                .u("errors", errors)
                .raw("error_kinds", &error_kinds_json(st))
                .u("close_ok", st.close_ok);
            st.handshakes > 0
        }
    };
    print_cpu(st, cfg.threads);
    match overflows {
        Some(n) => {
            if n > 0 {
                println!(
                    "kernel        {n} listen-queue overflows during the run (host-wide): an accept backlog was full; expect ~1 s SYN-retransmit handshake tails"
                );
            }
            j.u("listen_overflows", n);
        }
        None => {
            j.raw("listen_overflows", "null");
        }
    }
    j.f("cpu_s", st.cpu_s, 3)
        .f("busy_max_pct", st.busy_max * 100.0, 1)
        .u("reads", st.reads)
        .u("writes", st.writes)
        .u("polls", st.polls)
        .raw("first_error", &first_error_json(st));
    println!("{}", j.finish());
    if ok {
        ExitCode::SUCCESS
    } else {
        let why = if st.handshakes == 0 {
            "no connection could be established"
        } else {
            "no echo was received in the measurement window"
        };
        eprintln!("wsedge-bench: nothing measured: {why}");
        ExitCode::FAILURE
    }
}

// ---------------------------------------------------------------------------
// serve-tcp-echo: the ceiling server
// ---------------------------------------------------------------------------

struct ServeCfg {
    listen: SocketAddrV4,
    secs: f64,
}

impl ServeCfg {
    fn from_args(mut a: Args) -> Result<ServeCfg, String> {
        let l = a.take("listen").ok_or("mode serve-tcp-echo needs --listen 127.0.0.1:PORT")?;
        let listen = parse_host_port(&l, None).map_err(|e| format!("--listen {l:?}: {e}"))?;
        let secs = check_secs("secs", a.num("secs", 600.0)?, false)?;
        a.finish()?;
        Ok(ServeCfg { listen, secs })
    }
}

struct EchoConn {
    sock: TcpStream,
    pend: Vec<u8>,
    pp: usize,
    paused: bool,
}

const PAUSE_OVER: usize = 1 << 20;

/// Write pending bytes; Err means the connection is gone.
fn echo_flush(c: &mut EchoConn) -> io::Result<()> {
    while c.pp < c.pend.len() {
        match c.sock.write(&c.pend[c.pp..]) {
            Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => c.pp += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    c.pend.clear();
    c.pp = 0;
    Ok(())
}

/// Read to WouldBlock and echo; Ok(false) = peer closed.
fn echo_read(
    c: &mut EchoConn,
    scratch: &mut [u8],
    drain_all: bool,
    bytes: &mut u64,
) -> io::Result<bool> {
    loop {
        if c.pend.len() - c.pp > PAUSE_OVER {
            c.paused = true;
            return Ok(true);
        }
        let n = match c.sock.read(scratch) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        *bytes += n as u64;
        if c.pp == c.pend.len() {
            // Nothing queued: write straight from the scratch buffer.
            let mut off = 0;
            while off < n {
                match c.sock.write(&scratch[off..n]) {
                    Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "write returned 0")),
                    Ok(k) => off += k,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if off < n {
                c.pend.clear();
                c.pp = 0;
                c.pend.extend_from_slice(&scratch[off..n]);
            }
        } else {
            c.pend.extend_from_slice(&scratch[..n]);
            echo_flush(c)?;
        }
        if n < scratch.len() && !drain_all {
            return Ok(true);
        }
    }
}

fn serve_tcp_echo(cfg: &ServeCfg) -> ExitCode {
    raise_nofile();
    let listener = match bind_listener(cfg.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wsedge-bench: cannot listen on {}: {e}", cfg.listen);
            return ExitCode::FAILURE;
        }
    };
    let mut listener = listener;
    let local =
        listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| cfg.listen.to_string());
    let poll = Poll::new();
    let mut poll = match poll {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wsedge-bench: cannot create poll: {e}");
            return ExitCode::FAILURE;
        }
    };
    const LISTENER: Token = Token(usize::MAX);
    if let Err(e) = poll.registry().register(&mut listener, LISTENER, Interest::READABLE) {
        eprintln!("wsedge-bench: cannot register listener: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!("listening on {local} (tcp echo, {} s)", cfg.secs);
    let start = Instant::now();
    let deadline = Duration::from_secs_f64(cfg.secs);
    let mut conns: Vec<Option<EchoConn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut scratch = vec![0u8; 256 << 10];
    let mut events = Events::with_capacity(1024);
    let (mut accepted, mut bytes, mut open) = (0u64, 0u64, 0u64);
    while start.elapsed() < deadline {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(100))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            eprintln!("wsedge-bench: poll failed: {e}");
            return ExitCode::FAILURE;
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut sock, _)) => {
                            let _ = sock.set_nodelay(true);
                            let idx = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            if poll
                                .registry()
                                .register(
                                    &mut sock,
                                    Token(idx),
                                    Interest::READABLE | Interest::WRITABLE,
                                )
                                .is_err()
                            {
                                free.push(idx);
                                continue;
                            }
                            conns[idx] =
                                Some(EchoConn { sock, pend: Vec::new(), pp: 0, paused: false });
                            accepted += 1;
                            open += 1;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            // e.g. EMFILE: back off until the next event.
                            eprintln!("wsedge-bench: accept failed: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            let idx = ev.token().0;
            let Some(Some(c)) = conns.get_mut(idx) else {
                continue;
            };
            let mut alive = true;
            let drain_all = ev.is_read_closed() || ev.is_error();
            if ev.is_writable() && c.pp < c.pend.len() {
                alive = echo_flush(c).is_ok();
                if alive && c.paused && c.pend.len() - c.pp <= PAUSE_OVER {
                    c.paused = false;
                    alive = matches!(echo_read(c, &mut scratch, true, &mut bytes), Ok(true));
                }
            }
            if alive && !c.paused && (ev.is_readable() || drain_all) {
                alive = matches!(echo_read(c, &mut scratch, drain_all, &mut bytes), Ok(true));
            }
            if !alive {
                conns[idx] = None;
                free.push(idx);
                open -= 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("== wsedge-bench serve-tcp-echo {local} ==");
    println!(
        "served        {secs:.1} s, {accepted} connections accepted ({open} still open), {bytes} bytes echoed"
    );
    let mut j = Json::new("serve-tcp-echo");
    j.s("listen", &local).f("secs", secs, 3).u("accepted", accepted).u("bytes", bytes);
    println!("{}", j.finish());
    ExitCode::SUCCESS
}

fn bind_listener(addr: SocketAddrV4) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SockAddr::from(SocketAddr::V4(addr)))?;
    s.listen(4096)?;
    Ok(TcpListener::from_std(std::net::TcpListener::from(s)))
}

// ---------------------------------------------------------------------------
// Unit tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Option<Args>, String> {
        let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        Args::parse(&v)
    }

    #[test]
    fn accept_matches_rfc_example() {
        let a = accept_for(b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(&a, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn mask_roundtrip_all_lengths() {
        let mut rng = Rng::seeded(7);
        for len in 0..40 {
            let orig: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
            let mut b = orig.clone();
            let m = (rng.next() as u32).to_ne_bytes();
            apply_mask(&mut b, m);
            for (i, (x, y)) in b.iter().zip(&orig).enumerate() {
                assert_eq!(*x, y ^ m[i % 4]);
            }
            apply_mask(&mut b, m);
            assert_eq!(b, orig);
        }
    }

    #[test]
    fn hex_roundtrip() {
        for v in [0u64, 1, 0xdead_beef, u64::MAX, 1_234_567_890_123] {
            let mut b = [0u8; 16];
            hex16(v, &mut b);
            assert_eq!(unhex16(&b), Some(v));
        }
        assert_eq!(unhex16(b"xyz"), None);
        assert_eq!(unhex16(b"000000000000000G"), None);
    }

    #[test]
    fn frame_building_and_parsing() {
        for len in [0usize, 5, 125, 126, 65535, 65536] {
            let payload = vec![b'a'; len];
            let mut w = Vec::new();
            push_frame(&mut w, OP_BINARY, &payload, 0x0102_0304);
            // Unmask to look like a server frame.
            let mask_at = w.len() - len - 4;
            let mut m = [0u8; 4];
            m.copy_from_slice(&w[mask_at..mask_at + 4]);
            let mut server = w[..mask_at].to_vec();
            server[1] &= 0x7f;
            let mut p = w[mask_at + 4..].to_vec();
            apply_mask(&mut p, m);
            assert_eq!(p, payload);
            server.extend_from_slice(&p);
            match parse_frame(&server) {
                FrameHead::Ok { fin, op, hlen, plen } => {
                    assert!(fin);
                    assert_eq!(op, OP_BINARY);
                    assert_eq!(plen, len);
                    assert_eq!(hlen + plen, server.len());
                }
                other => panic!("unexpected {other:?}"),
            }
            assert!(
                matches!(parse_frame(&server[..server.len() - 1]), FrameHead::Need(_)) || len == 0
            );
        }
        assert_eq!(parse_frame(&[0x81]), FrameHead::Need(2));
        assert!(matches!(parse_frame(&[0x81, 0x85]), FrameHead::Bad(_)));
        assert!(matches!(parse_frame(&[0x09, 0x00]), FrameHead::Bad(_)));
        assert!(matches!(parse_frame(&[0x83, 0x00]), FrameHead::Bad(_)));
        assert!(matches!(parse_frame(&[0xC1, 0x00]), FrameHead::Bad(_)));
    }

    #[test]
    fn text_message_is_valid_utf8_with_timestamp() {
        let template = vec![b'x'; 20];
        let mut w = Vec::new();
        push_msg(&mut w, OP_TEXT, &template, 0xabc, 0);
        let p = &w[w.len() - 20..];
        assert!(std::str::from_utf8(p).is_ok());
        assert_eq!(unhex16(p), Some(0xabc));
    }

    #[test]
    fn urls_are_loopback_only() {
        let t = parse_target("ws://127.0.0.1:9001/chat?x=1", "ws").expect("valid");
        assert_eq!(t.addr, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9001));
        assert_eq!(t.path, "/chat?x=1");
        assert_eq!(t.host, "127.0.0.1:9001");
        let t = parse_target("ws://localhost:80", "ws").expect("valid");
        assert_eq!(t.path, "/");
        let t = parse_target("ws://127.9.8.7", "ws").expect("valid");
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.host, "127.9.8.7:80");
        for bad in [
            "ws://10.0.0.1:80/",
            "ws://192.168.1.1:9001/",
            "ws://8.8.8.8:80/",
            "ws://example.com:80/",
            "ws://[::1]:80/",
            "wss://127.0.0.1:443/",
            "http://127.0.0.1:80/",
            "ws://127.0.0.1:0/",
        ] {
            assert!(parse_target(bad, "ws").is_err(), "{bad} accepted");
        }
        let e = parse_target("ws://10.1.2.3:9000/", "ws").expect_err("refused");
        assert!(e.contains("loopback"), "{e}");
        assert!(parse_target("tcp://127.0.0.1:5000", "tcp").is_ok());
        assert!(parse_target("tcp://127.0.0.1", "tcp").is_err());
    }

    #[test]
    fn args_parse_and_validate() {
        assert!(args(&["--help"]).expect("ok").is_none());
        let a = args(&["echo", "--url", "ws://127.0.0.1:1/", "--conns=5", "--binary"])
            .expect("ok")
            .expect("some");
        let c = Config::from_args(a).expect("valid");
        assert_eq!(c.conns, 5);
        assert!(c.binary);
        let a = args(&["echo", "--url", "ws://127.0.0.1:1/", "--size", "8"])
            .expect("ok")
            .expect("some");
        assert!(Config::from_args(a).is_err(), "text needs 16 bytes");
        let a = args(&["echo", "--url", "ws://127.0.0.1:1/", "--secs", "601"])
            .expect("ok")
            .expect("some");
        assert!(Config::from_args(a).is_err());
        let a = args(&["echo", "--url", "ws://127.0.0.1:1/", "--bogus", "1"])
            .expect("ok")
            .expect("some");
        assert!(Config::from_args(a).is_err());
        assert!(args(&["nope"]).is_err());
        assert!(args(&["echo", "--url"]).is_err());
        let a = args(&["idle", "--url", "ws://127.0.0.1:1/", "--conns", "50000"])
            .expect("ok")
            .expect("some");
        assert_eq!(Config::from_args(a).expect("valid").sources, 4);
        let a = args(&["idle", "--url", "ws://127.0.0.1:1/", "--echo-first", "1048576"])
            .expect("ok")
            .expect("some");
        assert_eq!(Config::from_args(a).expect("valid").echo_first, 1 << 20);
        let a = args(&["idle", "--url", "ws://127.0.0.1:1/", "--echo-first", "4"])
            .expect("ok")
            .expect("some");
        assert!(Config::from_args(a).is_err(), "the message carries an 8-byte timestamp");
        let a = args(&["echo", "--url", "ws://127.0.0.1:1/", "--echo-first", "64"])
            .expect("ok")
            .expect("some");
        assert!(Config::from_args(a).is_err(), "--echo-first is an idle flag");
    }

    #[test]
    fn split_is_exact() {
        for total in [1u64, 7, 100, 1001] {
            for n in 1..6 {
                let s: u64 = (0..n).map(|i| split(total, n, i)).sum();
                assert_eq!(s, total);
            }
        }
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        let mut j = Json::new("echo");
        j.s("url", "ws://x").u("n", 3).f("r", 1.5, 2).b("t", true);
        assert_eq!(
            j.finish(),
            "{\"mode\":\"echo\",\"url\":\"ws://x\",\"n\":3,\"r\":1.50,\"t\":true}"
        );
    }
}

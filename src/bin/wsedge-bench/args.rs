//! Command line: modes, options and their validation into a [`Config`].

use crate::target::{parse_host_port, parse_target, Target};
use std::net::SocketAddrV4;

/// Longest run, hold or serve time accepted, seconds.
const MAX_SECS: f64 = 600.0;
/// Largest echo payload / record / first-echo message, bytes.
const MAX_MSG_SIZE: usize = 16 << 20;
/// Handshakes kept in flight at most by echo and idle runs.
const IDLE_HANDSHAKES_IN_FLIGHT: u64 = 200;

pub const USAGE: &str = "\
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

const SWITCHES: &[&str] = &["binary"];
const MODES: &[&str] = &["echo", "connect", "idle", "tcp-echo", "serve-tcp-echo"];

pub struct Args {
    pub mode: String,
    vals: Vec<(String, String)>,
    switches: Vec<String>,
}

impl Args {
    /// `Ok(None)` means help was requested.
    pub fn parse(argv: &[String]) -> Result<Option<Args>, String> {
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Echo,
    TcpEcho,
    Connect,
    Idle,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::TcpEcho => "tcp-echo",
            Mode::Connect => "connect",
            Mode::Idle => "idle",
        }
    }
}

#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    pub target: Target,
    /// echo/tcp-echo/idle: connections; connect: handshakes to complete.
    pub conns: u64,
    /// Handshakes in progress at most (all threads together).
    pub concurrency: u64,
    pub inflight: u32,
    pub size: usize,
    pub binary: bool,
    /// echo/tcp-echo: measured seconds; connect: time bound; idle: hold time.
    pub secs: f64,
    pub warmup: f64,
    pub threads: usize,
    /// 0: let the kernel choose the source address.
    pub sources: u32,
    /// idle: new connections per second, 0 = no cap.
    pub rate: f64,
    pub ready_file: Option<String>,
    /// idle: bytes of one binary message each connection echoes before it
    /// counts as established; 0 = none.
    pub echo_first: usize,
}

impl Config {
    pub fn from_args(mut a: Args) -> Result<Config, String> {
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

    pub fn is_ws(&self) -> bool {
        self.mode != Mode::TcpEcho
    }
}

/// serve-tcp-echo: where to listen and for how long.
pub struct ServeCfg {
    pub listen: SocketAddrV4,
    pub secs: f64,
}

impl ServeCfg {
    pub fn from_args(mut a: Args) -> Result<ServeCfg, String> {
        let l = a.take("listen").ok_or("mode serve-tcp-echo needs --listen 127.0.0.1:PORT")?;
        let listen = parse_host_port(&l, None).map_err(|e| format!("--listen {l:?}: {e}"))?;
        let secs = check_secs("secs", a.num("secs", 600.0)?, false)?;
        a.finish()?;
        Ok(ServeCfg { listen, secs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Option<Args>, String> {
        let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        Args::parse(&v)
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
}

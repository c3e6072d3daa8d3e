//! A client run's configuration ([`Config`]) and serve-tcp-echo's
//! ([`ServeCfg`]), validated from the options the command line gave
//! ([`crate::args`]): ranges, the timestamp room in a payload, the loopback
//! target, the defaults that depend on other options.

use std::net::SocketAddrV4;

use crate::args::{Cmd, Given};
use crate::target::{parse_host_port, parse_target, Target};
use crate::tls::Versions;

/// Longest run, hold or serve time accepted, seconds.
const MAX_SECS: f64 = 600.0;
/// Largest echo payload / record / first-echo message, bytes.
const MAX_MSG_SIZE: usize = 16 << 20;
/// Handshakes kept in flight at most by echo and idle runs.
const IDLE_HANDSHAKES_IN_FLIGHT: u64 = 200;

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

pub fn check_secs(name: &str, v: f64, allow_zero: bool) -> Result<f64, String> {
    if !v.is_finite() || v < 0.0 || (!allow_zero && v == 0.0) || v > MAX_SECS {
        let lo = if allow_zero { "0" } else { "more than 0" };
        return Err(format!("--{name} must be {lo} and at most {MAX_SECS} (got {v})"));
    }
    Ok(v)
}

/// A client mode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Echo,
    TcpEcho,
    Connect,
    Idle,
}

impl Mode {
    /// The name in the JSON line and the summary.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::TcpEcho => "tcp-echo",
            Mode::Connect => "connect",
            Mode::Idle => "idle",
        }
    }
}

/// What a client run does, validated.
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
    /// `wss://`: the TLS client configuration.
    pub tls: Option<TlsCfg>,
}

/// A `wss://` run's TLS settings.
#[derive(Debug)]
pub struct TlsCfg {
    pub client: std::sync::Arc<rustls::ClientConfig>,
    pub versions: Versions,
    pub resume: bool,
}

impl TlsCfg {
    /// `1.2`, `1.3` or `any`, as given to `--tls`.
    pub fn versions_name(&self) -> &'static str {
        match self.versions {
            Versions::Tls12 => "1.2",
            Versions::Tls13 => "1.3",
            Versions::Any => "any",
        }
    }
}

impl Config {
    /// Validates a client mode's options.
    pub fn from_given(a: &Given) -> Result<Config, String> {
        let mode = match a.cmd {
            Cmd::Echo => Mode::Echo,
            Cmd::TcpEcho => Mode::TcpEcho,
            Cmd::Connect => Mode::Connect,
            Cmd::Idle => Mode::Idle,
            Cmd::Serve | Cmd::ServeFanout | Cmd::Pubsub => {
                return Err(format!("{} is not handled here", a.cmd.name()))
            }
        };
        let url = a.required("url")?;
        let scheme = if mode == Mode::TcpEcho { "tcp" } else { "ws" };
        let target = parse_target(&url, scheme)?;
        let threads = check_range("threads", a.num("threads")?, 1, 64)?;
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
            tls: None,
        };
        if cfg.target.tls {
            let ca = a.text("ca").ok_or_else(|| {
                format!("{url}: wss:// needs --ca FILE (the PEM certificate to trust)")
            })?;
            let versions = Versions::parse(a.text("tls").as_deref().unwrap_or("any"))?;
            let resume = a.switch("resume");
            let client = crate::tls::client_config(&ca, versions, resume)?;
            cfg.tls = Some(TlsCfg { client, versions, resume });
        } else if mode != Mode::TcpEcho {
            for name in ["ca", "resume"] {
                if a.text(name).is_some() {
                    return Err(format!("--{name} is for wss:// URLs"));
                }
            }
        }
        match mode {
            Mode::Echo | Mode::TcpEcho => {
                cfg.conns = check_range("conns", a.num("conns")?, 1, 1_000_000)?;
                cfg.inflight = check_range("inflight", a.num("inflight")?, 1, 1_000_000)?;
                cfg.binary = mode == Mode::TcpEcho || a.switch("binary");
                let min = if cfg.binary { 8 } else { 16 };
                let size = a.num("size")?;
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
                cfg.secs = check_secs("secs", a.num("secs")?, false)?;
                cfg.warmup = check_secs("warmup", a.num("warmup")?, true)?;
                cfg.sources = check_range("sources", a.num("sources")?, 0, 254)?;
                cfg.concurrency = IDLE_HANDSHAKES_IN_FLIGHT;
            }
            Mode::Connect => {
                cfg.conns = check_range("total", a.num("total")?, 1, 100_000_000)?;
                cfg.concurrency = check_range("concurrency", a.num("concurrency")?, 1, 100_000)?;
                cfg.secs = check_secs("secs", a.num("secs")?, false)?;
                cfg.sources = check_range("sources", a.num("sources")?, 1, 254)?;
            }
            Mode::Idle => {
                cfg.conns = check_range("conns", a.num("conns")?, 1, 5_000_000)?;
                cfg.secs = check_secs("hold", a.num("hold")?, true)?;
                let default_sources = cfg.conns.div_ceil(20_000) + 1;
                let default_sources = default_sources.min(254) as u32;
                cfg.sources =
                    check_range("sources", a.num_or("sources", default_sources)?, 1, 254)?;
                let rate: f64 = a.num("rate")?;
                if !rate.is_finite() || rate < 0.0 {
                    return Err(format!("--rate must be >= 0 (got {rate})"));
                }
                cfg.rate = rate;
                cfg.ready_file = a.text("ready-file");
                let echo_first = a.num("echo-first")?;
                if echo_first > 0 {
                    cfg.echo_first = check_range("echo-first", echo_first, 8, MAX_MSG_SIZE)?;
                }
                cfg.concurrency = IDLE_HANDSHAKES_IN_FLIGHT;
            }
        }
        if (cfg.threads as u64) > cfg.conns {
            cfg.threads = cfg.conns as usize;
        }
        Ok(cfg)
    }

    /// WebSocket (every mode but tcp-echo).
    pub fn is_ws(&self) -> bool {
        self.mode != Mode::TcpEcho
    }
}

/// serve-tcp-echo: where to listen and for how long.
#[derive(Debug)]
pub struct ServeCfg {
    pub listen: SocketAddrV4,
    pub secs: f64,
}

impl ServeCfg {
    /// Validates serve-tcp-echo's options.
    pub fn from_given(a: &Given) -> Result<ServeCfg, String> {
        let l = a.required("listen")?;
        let listen = parse_host_port(&l, None).map_err(|e| format!("--listen {l:?}: {e}"))?;
        let secs = check_secs("secs", a.num("secs")?, false)?;
        Ok(ServeCfg { listen, secs })
    }
}

//! The command line: `wsedge-bench MODE [OPTIONS]`, tokenized by `lexopt`.
//!
//! Each mode's options are one table ([`Cmd::opts`]): the parser accepts
//! exactly those, the help text is printed from it, and a default written
//! there is the value used when the option is absent, so the help cannot
//! drift from the code. What the values mean and which are valid is
//! [`crate::config`]'s business; this module only collects them.

use std::ffi::OsString;
use std::fmt;

use lexopt::prelude::*;

use crate::config::{Config, ServeCfg};
use crate::pubsub::PubsubCfg;

/// A mode: the first word of the command line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cmd {
    Echo,
    Connect,
    Idle,
    TcpEcho,
    Pubsub,
    Serve,
    ServeFanout,
}

/// How an option that is not given gets its value.
#[derive(Clone, Copy, Debug)]
enum Default {
    /// The mode cannot run without it.
    Required,
    /// Parsed exactly like a value given on the command line.
    Value(&'static str),
    /// Worked out from other options; the text says how.
    Computed(&'static str),
    /// Absent means off (a switch) or not wanted (a path).
    None,
}

/// One option of one mode.
#[derive(Debug)]
struct Opt {
    name: &'static str,
    /// Placeholder of the value in the help; `None` for a switch.
    arg: Option<&'static str>,
    default: Default,
    help: &'static str,
}

const fn val(name: &'static str, arg: &'static str, default: Default, help: &'static str) -> Opt {
    Opt { name, arg: Some(arg), default, help }
}

const fn switch(name: &'static str, help: &'static str) -> Opt {
    Opt { name, arg: None, default: Default::None, help }
}

const WS_URL: Opt = val(
    "url",
    "URL",
    Default::Required,
    "target ws://HOST:PORT/PATH or wss://HOST:PORT/PATH (TLS); HOST: an IPv4 literal in 127.0.0.0/8, or localhost",
);
const THREADS: Opt = val(
    "threads",
    "N",
    Default::Value("1"),
    "event loops (threads), connections split between them; 1-64",
);
const WARMUP: Opt = val(
    "warmup",
    "W",
    Default::Value("0"),
    "seconds after all connections are up before measuring",
);
const SOURCES_HELP: &str = "spread source addresses over 127.0.0.1..127.0.0.M";
const SOURCES_OR_KERNEL: &str =
    "spread source addresses over 127.0.0.1..127.0.0.M; 0 = the kernel's choice";

const CA: Opt = val(
    "ca",
    "FILE",
    Default::None,
    "wss://: PEM certificate(s) to trust (the server's, or its CA); required for wss://",
);
const TLS_VERSIONS: Opt = val(
    "tls",
    "V",
    Default::Computed("any: both, the server picks"),
    "wss://: TLS versions offered: 1.2, 1.3 or any",
);
const RESUME: Opt = switch(
    "resume",
    "wss://: resume TLS sessions (1.3 tickets / PSK, 1.2 session ids); off: every handshake is full",
);

const ECHO_OPTS: &[Opt] = &[
    WS_URL,
    val("conns", "C", Default::Value("100"), "connections"),
    val("inflight", "P", Default::Value("16"), "messages in flight per connection"),
    val("size", "S", Default::Value("32"), "payload bytes; text: at least 16, binary: at least 8"),
    val("secs", "T", Default::Value("10"), "measured seconds; at most 600"),
    WARMUP,
    switch("binary", "echo binary messages instead of text"),
    THREADS,
    val("sources", "M", Default::Value("0"), SOURCES_OR_KERNEL),
    CA,
    TLS_VERSIONS,
    RESUME,
];

const TCP_ECHO_OPTS: &[Opt] = &[
    val(
        "url",
        "URL",
        Default::Required,
        "target tcp://HOST:PORT; HOST: an IPv4 literal in 127.0.0.0/8, or localhost",
    ),
    val("conns", "C", Default::Value("100"), "connections"),
    val("inflight", "P", Default::Value("16"), "records in flight per connection"),
    val("size", "S", Default::Value("32"), "record bytes; at least 8"),
    val("secs", "T", Default::Value("10"), "measured seconds; at most 600"),
    WARMUP,
    THREADS,
    val("sources", "M", Default::Value("0"), SOURCES_OR_KERNEL),
];

const CONNECT_OPTS: &[Opt] = &[
    WS_URL,
    val("total", "N", Default::Value("1000"), "handshakes to complete"),
    val("concurrency", "K", Default::Value("64"), "handshakes kept in progress"),
    val("secs", "T", Default::Value("60"), "time bound, seconds; at most 600"),
    val("sources", "M", Default::Value("16"), SOURCES_HELP),
    THREADS,
    CA,
    TLS_VERSIONS,
    RESUME,
];

const IDLE_OPTS: &[Opt] = &[
    WS_URL,
    val("conns", "N", Default::Value("1000"), "connections"),
    val(
        "hold",
        "SECS",
        Default::Value("10"),
        "seconds to hold the connections once up; at most 600",
    ),
    val("sources", "M", Default::Computed("ceil(N/20000)+1"), SOURCES_HELP),
    val("rate", "R", Default::Value("0"), "cap on new connections per second; 0 = no cap"),
    val(
        "ready-file",
        "PATH",
        Default::None,
        "write the established count into PATH when all are up",
    ),
    val(
        "echo-first",
        "B",
        Default::Value("0"),
        "echo one B-byte binary message per connection before holding; 0 = none, else >= 8",
    ),
    THREADS,
    CA,
    TLS_VERSIONS,
    RESUME,
];

const PUBSUB_OPTS: &[Opt] = &[
    val(
        "url",
        "URL",
        Default::Required,
        "ws://HOST:PORT/PATH (wsedge's /ws protocol) or tcp://HOST:PORT (serve-tcp-fanout); HOST in 127.0.0.0/8",
    ),
    val("subs", "N", Default::Value("1000"), "subscribers (one connection each)"),
    val("rooms", "R", Default::Value("1"), "rooms; subscriber i joins room i mod R"),
    val("pubs", "P", Default::Value("1"), "publishers (connections of their own, not subscribed)"),
    val("size", "S", Default::Value("64"), "payload bytes; JSON: at least 16, binary/tcp: at least 8"),
    val("rate", "X", Default::Value("0"), "publishes per second in all; 0 = as fast as the windows allow"),
    val("window", "W", Default::Value("64"), "unacked publishes per publisher, at most (JSON, tcp)"),
    val("owed", "D", Default::Computed("max(16*N, 65536)"), "deliveries owed (published x room audience, less received), at most"),
    val("secs", "T", Default::Value("5"), "measured seconds; at most 600"),
    WARMUP,
    switch("binary", "binary publishes and deliveries (subscribe stays JSON)"),
    THREADS,
    val("sources", "M", Default::Computed("ceil((N+P)/20000)+1"), SOURCES_OR_KERNEL),
];

const SERVE_FANOUT_OPTS: &[Opt] = &[
    val("listen", "ADDR", Default::Required, "127.0.0.1:PORT to listen on"),
    val("secs", "T", Default::Value("600"), "run time, seconds; at most 600"),
];

const SERVE_OPTS: &[Opt] = &[
    val("listen", "ADDR", Default::Required, "127.0.0.1:PORT to listen on"),
    val("secs", "T", Default::Value("600"), "run time, seconds; at most 600"),
];

impl Cmd {
    /// Every mode, in the order the help lists them.
    const ALL: [Cmd; 7] = [
        Cmd::Echo,
        Cmd::Connect,
        Cmd::Idle,
        Cmd::TcpEcho,
        Cmd::Pubsub,
        Cmd::Serve,
        Cmd::ServeFanout,
    ];

    /// The word on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Cmd::Echo => "echo",
            Cmd::Connect => "connect",
            Cmd::Idle => "idle",
            Cmd::TcpEcho => "tcp-echo",
            Cmd::Pubsub => "pubsub",
            Cmd::Serve => "serve-tcp-echo",
            Cmd::ServeFanout => "serve-tcp-fanout",
        }
    }

    fn from_name(s: &str) -> Option<Cmd> {
        Cmd::ALL.into_iter().find(|c| c.name() == s)
    }

    fn opts(self) -> &'static [Opt] {
        match self {
            Cmd::Echo => ECHO_OPTS,
            Cmd::Connect => CONNECT_OPTS,
            Cmd::Idle => IDLE_OPTS,
            Cmd::TcpEcho => TCP_ECHO_OPTS,
            Cmd::Pubsub => PUBSUB_OPTS,
            Cmd::Serve => SERVE_OPTS,
            Cmd::ServeFanout => SERVE_FANOUT_OPTS,
        }
    }

    /// What the mode does, one paragraph, wrapped.
    fn about(self) -> &'static str {
        match self {
            Cmd::Echo => {
                "C connections each keep P messages of S bytes in flight (send P, send one
more per echo received). Payload starts with the send timestamp (text: 16
lowercase hex chars, S >= 16; --binary: 8 bytes little endian, S >= 8).
Reports echoes/s, MB/s (echoed payload received, MB = 1e6 bytes) and
latency percentiles, measured over --secs after --warmup."
            }
            Cmd::Connect => {
                "Keep K WebSocket handshakes in progress until N have completed; each
completed connection sends close 1000 and waits for the server's close
reply (or EOF). Reports handshakes/s and handshake latency."
            }
            Cmd::Idle => {
                "Open N connections (at most 200 handshakes in flight, optional --rate cap),
answer pings, hold for --hold seconds once all are up (or after a 60 s
establishment deadline), then close all. Prints \"established N\" on stderr
(and writes N into --ready-file) when all are up. With --echo-first B,
each connection first sends one B-byte binary message and counts as up
only once its echo is back (at most 200 such echoes in flight; the
establishment deadline becomes 300 s)."
            }
            Cmd::TcpEcho => {
                "Like echo over raw TCP: S-byte records (timestamp in the first 8 bytes)
that the server echoes back. The ceiling measurement."
            }
            Cmd::Pubsub => {
                "N subscribers spread over R rooms (each waits for its subscribe ack), then P
publishers publish S-byte payloads round-robin over the rooms, at --rate or
as fast as two windows allow: --window unacked publishes per publisher and
--owed deliveries owed in all. Payloads carry the publish time (at a fixed
rate: the scheduled time, so queueing delays count). Reports deliveries/s,
publishes/s, publish->delivery latency percentiles, and per-room accounting
from the delivery seq (\"offset\" also read): missing, duplicated, out of
order. After the window, publishing stops and the run waits (at most 5 s)
for every delivery owed. Prints a SUMMARY line before the JSON line."
            }
            Cmd::Serve => "Single-threaded raw TCP echo server (the ceiling server).",
            Cmd::ServeFanout => {
                "Single-threaded raw TCP fan-out server (the pub/sub ceiling): per publish,
writes one pre-framed message (2-byte head, u64 seq, payload: 74 bytes for a
64-byte payload) to every subscriber socket of the room, one write each.
Drive it with `pubsub --url tcp://...`."
            }
        }
    }

    /// The mode's line in the usage synopsis.
    fn synopsis(self) -> String {
        let required: Vec<String> = self
            .opts()
            .iter()
            .filter(|o| matches!(o.default, Default::Required))
            .map(|o| format!("--{} {}", o.name, o.arg.unwrap_or("")))
            .collect();
        format!("wsedge-bench {} {} [OPTIONS]", self.name(), required.join(" "))
    }

    /// `wsedge-bench MODE --help`: what the mode does and every option with
    /// its default.
    pub fn help(self) -> String {
        let mut o = format!("wsedge-bench {} (loopback targets only)\n\n", self.name());
        o.push_str(&indent(self.about(), "  "));
        o.push_str("\nUSAGE:\n  ");
        o.push_str(&self.synopsis());
        o.push_str("\n\nOPTIONS (defaults in brackets):\n");
        for opt in self.opts() {
            let flag = match opt.arg {
                Some(a) => format!("--{} {a}", opt.name),
                None => format!("--{}", opt.name),
            };
            let default = match opt.default {
                Default::Required => " (required)".to_string(),
                Default::Value(v) => format!(" [{v}]"),
                Default::Computed(how) => format!(" [{how}]"),
                Default::None if opt.arg.is_none() => " [off]".to_string(),
                Default::None => " [none]".to_string(),
            };
            o.push_str(&option_line(&flag, &format!("{}{default}", opt.help)));
        }
        o.push_str(&option_line("-h, --help", "print this help"));
        o.push('\n');
        o.push_str(OUTPUT);
        o
    }
}

const OUTPUT: &str = "\
OUTPUT:
  Progress (runs longer than 3 s): one status line per second on stderr.
  Errors are counted by kind; the first of each kind is printed on stderr.
  At the end: a human summary on stdout, then exactly one JSON line starting with
  {\"mode\":...}. Exit status 0 on success, 1 when nothing could be measured (setup
  failure), 2 on bad arguments.
";

/// Width the help is wrapped to, and where an option's text starts.
const HELP_WIDTH: usize = 88;
const HELP_COLUMN: usize = 22;

/// `  --flag ARG         text`, the text wrapped under itself.
fn option_line(flag: &str, text: &str) -> String {
    let mut out = String::new();
    let mut line = format!("  {flag:<w$} ", w = HELP_COLUMN - 3);
    for word in text.split(' ') {
        if line.len() + word.len() > HELP_WIDTH && line.len() > HELP_COLUMN {
            out.push_str(line.trim_end());
            out.push('\n');
            line = " ".repeat(HELP_COLUMN);
        }
        line.push_str(word);
        line.push(' ');
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

fn indent(text: &str, pad: &str) -> String {
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// `wsedge-bench --help`: every mode, what it does, where its options are.
pub fn overview() -> String {
    let mut o = String::from(
        "wsedge-bench: load tester for WebSocket servers (loopback targets only)\n\nUSAGE:\n",
    );
    for cmd in Cmd::ALL {
        o.push_str(&format!("  {}\n", cmd.synopsis()));
    }
    o.push_str("  wsedge-bench MODE --help    (the options of MODE, with their defaults)\n");
    o.push_str("\nMODES:\n");
    for cmd in Cmd::ALL {
        o.push_str(&format!("  {}\n{}", cmd.name(), indent(cmd.about(), "      ")));
    }
    o.push('\n');
    o.push_str(OUTPUT);
    o
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Print this text on stdout and exit 0.
    Help(String),
    /// Run a client mode (echo, connect, idle, tcp-echo).
    Client(Config),
    /// Run pubsub.
    Pubsub(PubsubCfg),
    /// Run serve-tcp-echo.
    Serve(ServeCfg),
    /// Run serve-tcp-fanout.
    ServeFanout(ServeCfg),
}

/// A command line that cannot run: the message, and the mode it was for.
#[derive(Debug)]
pub struct ArgError {
    pub cmd: Option<Cmd>,
    pub msg: String,
}

impl ArgError {
    fn new(cmd: Option<Cmd>, msg: impl fmt::Display) -> ArgError {
        ArgError { cmd, msg: msg.to_string() }
    }

    /// Where to look for the right usage.
    pub fn hint(&self) -> String {
        match self.cmd {
            Some(c) => format!("run `wsedge-bench {} --help` for its options", c.name()),
            None => "run `wsedge-bench --help` for usage".to_string(),
        }
    }
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

/// The options given for one mode, checked against its table.
#[derive(Debug)]
pub struct Given {
    pub cmd: Cmd,
    /// (option, value); a switch has an empty value.
    vals: Vec<(&'static str, String)>,
}

impl Given {
    fn opt(&self, name: &str) -> &'static Opt {
        self.cmd
            .opts()
            .iter()
            .find(|o| o.name == name)
            .expect("bug: option looked up that is not in the mode's table")
    }

    fn given(&self, name: &str) -> Option<&str> {
        self.vals.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// The value of `name`, if given (for options whose absence means "none").
    pub fn text(&self, name: &str) -> Option<String> {
        self.given(name).map(str::to_string)
    }

    /// The value of a required option.
    pub fn required(&self, name: &str) -> Result<String, String> {
        let opt = self.opt(name);
        self.text(name).ok_or_else(|| {
            format!("mode {} needs --{name} {}", self.cmd.name(), opt.arg.unwrap_or(""))
        })
    }

    /// Whether a switch was given.
    pub fn switch(&self, name: &str) -> bool {
        debug_assert!(self.opt(name).arg.is_none());
        self.given(name).is_some()
    }

    /// The value of `name` as a number, or its default from the table.
    pub fn num<T: std::str::FromStr>(&self, name: &str) -> Result<T, String> {
        let raw = match (self.given(name), self.opt(name).default) {
            (Some(v), _) => v,
            (None, Default::Value(d)) => d,
            (None, d) => panic!("bug: --{name} has no default value to parse ({d:?})"),
        };
        raw.trim().parse().map_err(|_| format!("--{name}: invalid number {raw:?}"))
    }

    /// The value of `name` as a number, or `fallback` (for a computed default).
    pub fn num_or<T: std::str::FromStr>(&self, name: &str, fallback: T) -> Result<T, String> {
        match self.given(name) {
            Some(v) => v.trim().parse().map_err(|_| format!("--{name}: invalid number {v:?}")),
            None => Ok(fallback),
        }
    }
}

/// Parses the arguments after the program name.
pub fn parse<I>(args: I) -> Result<Command, ArgError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut p = lexopt::Parser::from_args(args);
    let lex = |cmd: Option<Cmd>| move |e: lexopt::Error| ArgError::new(cmd, e);
    let modes = || Cmd::ALL.map(Cmd::name).join(", ");
    let cmd = match p.next().map_err(lex(None))? {
        None | Some(Short('h') | Long("help")) => return Ok(Command::Help(overview())),
        Some(Value(v)) => {
            let v = v.string().map_err(lex(None))?;
            if v == "help" {
                // `wsedge-bench help [MODE]`
                return match p.next().map_err(lex(None))? {
                    None => Ok(Command::Help(overview())),
                    Some(Value(m)) => {
                        let m = m.string().map_err(lex(None))?;
                        match Cmd::from_name(&m) {
                            Some(c) => Ok(Command::Help(c.help())),
                            None => Err(ArgError::new(
                                None,
                                format!("unknown mode {m:?} (expected one of: {})", modes()),
                            )),
                        }
                    }
                    Some(a) => Err(ArgError::new(None, a.unexpected())),
                };
            }
            Cmd::from_name(&v).ok_or_else(|| {
                ArgError::new(None, format!("unknown mode {v:?} (expected one of: {})", modes()))
            })?
        }
        Some(a) => {
            let what = a.unexpected();
            return Err(ArgError::new(
                None,
                format!("{what}: the mode comes first (one of: {})", modes()),
            ));
        }
    };
    let mut given = Given { cmd, vals: Vec::new() };
    while let Some(arg) = p.next().map_err(lex(Some(cmd)))? {
        let opt = match arg {
            Short('h') | Long("help") => return Ok(Command::Help(cmd.help())),
            Long(name) => match cmd.opts().iter().find(|o| o.name == name) {
                Some(o) => o,
                None => {
                    return Err(ArgError::new(
                        Some(cmd),
                        format!("unknown option --{name} for mode {}", cmd.name()),
                    ))
                }
            },
            Short(c) => {
                let msg = format!("unknown option -{c} for mode {}", cmd.name());
                return Err(ArgError::new(Some(cmd), msg));
            }
            Value(v) => {
                let msg = format!("unexpected argument {v:?} (options start with --)");
                return Err(ArgError::new(Some(cmd), msg));
            }
        };
        if given.given(opt.name).is_some() {
            return Err(ArgError::new(Some(cmd), format!("option --{} given twice", opt.name)));
        }
        let value = match opt.arg {
            Some(_) => p.value().and_then(|v| v.string()).map_err(lex(Some(cmd)))?,
            None => String::new(),
        };
        given.vals.push((opt.name, value));
    }
    let bad = |msg: String| ArgError::new(Some(cmd), msg);
    match cmd {
        Cmd::Serve => ServeCfg::from_given(&given).map(Command::Serve).map_err(bad),
        Cmd::ServeFanout => ServeCfg::from_given(&given).map(Command::ServeFanout).map_err(bad),
        Cmd::Pubsub => PubsubCfg::from_given(&given).map(Command::Pubsub).map_err(bad),
        _ => Config::from_given(&given).map(Command::Client).map_err(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;

    fn run(v: &[&str]) -> Result<Command, ArgError> {
        parse(v.iter().copied())
    }

    fn client(v: &[&str]) -> Result<Config, String> {
        match run(v) {
            Ok(Command::Client(c)) => Ok(c),
            Ok(other) => panic!("{v:?}: not a client run: {other:?}"),
            Err(e) => Err(e.msg),
        }
    }

    fn help_of(v: &[&str]) -> String {
        match run(v) {
            Ok(Command::Help(h)) => h,
            other => panic!("{v:?}: expected help, got {other:?}"),
        }
    }

    const URL: &str = "ws://127.0.0.1:1/";

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = client(&["echo", "--url", URL]).expect("valid");
        assert_eq!(c.mode, Mode::Echo);
        assert_eq!((c.conns, c.inflight, c.size, c.threads, c.sources), (100, 16, 32, 1, 0));
        assert_eq!((c.secs, c.warmup, c.binary), (10.0, 0.0, false));
        let c = client(&["tcp-echo", "--url", "tcp://127.0.0.1:5/"]).expect("valid");
        assert_eq!((c.conns, c.inflight, c.size, c.secs, c.binary), (100, 16, 32, 10.0, true));
        let c = client(&["connect", "--url", URL]).expect("valid");
        assert_eq!((c.conns, c.concurrency, c.secs, c.sources), (1000, 64, 60.0, 16));
        let c = client(&["idle", "--url", URL]).expect("valid");
        assert_eq!((c.conns, c.secs, c.sources, c.rate, c.echo_first), (1000, 10.0, 2, 0.0, 0));
        assert_eq!(c.ready_file, None);
        match run(&["serve-tcp-echo", "--listen", "127.0.0.1:9"]) {
            Ok(Command::Serve(s)) => assert_eq!((s.listen.port(), s.secs), (9, 600.0)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_bench_sh_passes_still_parses() {
        let c = client(&[
            "echo",
            "--url",
            URL,
            "--conns",
            "10",
            "--inflight",
            "4",
            "--size",
            "16384",
            "--binary",
            "--secs",
            "5",
            "--warmup",
            "1",
            "--threads",
            "2",
        ])
        .expect("valid");
        assert_eq!((c.conns, c.inflight, c.size, c.threads, c.binary), (10, 4, 16384, 2, true));
        assert_eq!((c.secs, c.warmup), (5.0, 1.0));
        let c = client(&[
            "connect",
            "--url",
            URL,
            "--total",
            "20000",
            "--concurrency",
            "50",
            "--secs",
            "60",
            "--threads",
            "1",
        ])
        .expect("valid");
        assert_eq!((c.conns, c.concurrency), (20000, 50));
        let c = client(&[
            "idle",
            "--url",
            URL,
            "--conns",
            "50000",
            "--hold",
            "3",
            "--ready-file",
            "/tmp/r",
            "--echo-first",
            "1048576",
        ])
        .expect("valid");
        assert_eq!(c.sources, 4, "ceil(50000/20000)+1");
        assert_eq!(c.ready_file.as_deref(), Some("/tmp/r"));
        assert_eq!(c.echo_first, 1 << 20);
        let c = client(&["echo", "--url=ws://127.0.0.1:2/x", "--conns=5"]).expect("valid");
        assert_eq!((c.conns, c.target.path.as_str()), (5, "/x"));
    }

    #[test]
    fn bad_command_lines_are_refused_with_the_reason() {
        let err = |v: &[&str]| client(v).expect_err("must be refused");
        assert!(err(&["echo", "--url", URL, "--conns", "x"]).contains("invalid number \"x\""));
        assert!(err(&["echo", "--url", URL, "--size", "8"]).contains("at least 16"));
        assert!(err(&["echo", "--url", URL, "--secs", "601"]).contains("at most 600"));
        assert!(err(&["echo", "--url", URL, "--bogus", "1"]).contains("unknown option --bogus"));
        assert!(err(&["echo", "--url", URL, "--echo-first", "64"]).contains("--echo-first"));
        assert!(err(&["tcp-echo", "--url", "tcp://127.0.0.1:5", "--binary"]).contains("--binary"));
        assert!(err(&["echo", "--url"]).contains("missing argument"));
        assert!(err(&["echo"]).contains("needs --url"));
        assert!(err(&["echo", "--url", URL, "--conns", "1", "--conns", "2"]).contains("twice"));
        assert!(err(&["echo", "--url", URL, "--binary=yes"]).contains("--binary"));
        assert!(err(&["echo", "--url", URL, "stray"]).contains("stray"));
        assert!(err(&["echo", "--url", URL, "-x"]).contains("-x"));
        assert!(err(&["idle", "--url", URL, "--echo-first", "4"]).contains("8"));
        assert!(err(&["idle", "--url", URL, "--rate", "-1"]).contains("--rate"));
        assert!(err(&["echo", "--url", "ws://10.0.0.1:1/"]).contains("loopback"));
        let e = run(&["nope"]).expect_err("unknown mode");
        assert!(e.msg.contains("unknown mode") && e.cmd.is_none(), "{e}");
        let e = run(&["--conns", "5"]).expect_err("mode first");
        assert!(e.msg.contains("mode comes first"), "{e}");
        let e = run(&["idle", "--bogus"]).expect_err("unknown option");
        assert_eq!(e.cmd, Some(Cmd::Idle));
        assert!(e.hint().contains("wsedge-bench idle --help"), "{}", e.hint());
    }

    #[test]
    fn every_mode_has_a_help_listing_its_options_and_defaults() {
        for v in [&[][..], &["--help"], &["-h"], &["help"]] {
            let h = help_of(v);
            for cmd in Cmd::ALL {
                assert!(h.contains(&format!("wsedge-bench {} ", cmd.name())), "{cmd:?} in {h}");
            }
        }
        for cmd in Cmd::ALL {
            let h = help_of(&[cmd.name(), "--help"]);
            assert_eq!(h, help_of(&["help", cmd.name()]));
            let first = format!("--{}", cmd.opts()[0].name);
            assert_eq!(h, help_of(&[cmd.name(), &first, "x", "-h"]), "help after an option");
            for opt in cmd.opts() {
                let lines: Vec<&str> = h.lines().collect();
                let at = lines
                    .iter()
                    .position(|l| l.trim_start().starts_with(&format!("--{} ", opt.name)))
                    .unwrap_or_else(|| panic!("--{} missing from {h}", opt.name));
                // The option's text, with its wrapped continuation lines.
                let more = lines[at + 1..].iter().take_while(|l| l.starts_with("        "));
                let line = more.fold(lines[at].to_string(), |a, l| a + " " + l.trim());
                if let Default::Value(d) = opt.default {
                    assert!(line.ends_with(&format!("[{d}]")), "{line}");
                }
            }
        }
        let h = help_of(&["echo", "--help"]);
        assert!(h.contains("--inflight P") && h.contains("[16]"), "{h}");
        assert!(h.contains("--url URL") && h.contains("(required)"), "{h}");
    }

    #[test]
    fn pubsub_defaults_and_refusals() {
        let p = |v: &[&str]| match run(v) {
            Ok(Command::Pubsub(c)) => Ok(c),
            Ok(other) => panic!("{v:?}: {other:?}"),
            Err(e) => Err(e.msg),
        };
        let c = p(&["pubsub", "--url", "ws://127.0.0.1:1/ws"]).expect("valid");
        assert_eq!((c.subs, c.rooms, c.pubs, c.size, c.window), (1000, 1, 1, 64, 64));
        assert_eq!((c.owed, c.rate, c.secs, c.sources), (65_536, 0.0, 5.0, 2));
        assert_eq!(c.dialect, crate::pubsub::Dialect::Json);
        let c = p(&["pubsub", "--url", "tcp://127.0.0.1:1", "--subs", "10000"]).expect("valid");
        assert_eq!((c.dialect, c.owed), (crate::pubsub::Dialect::Tcp, 160_000));
        let url = "ws://127.0.0.1:1/ws";
        assert!(p(&["pubsub", "--url", url, "--subs", "5", "--rooms", "6"]).is_err());
        assert!(p(&["pubsub", "--url", "tcp://127.0.0.1:1", "--binary"]).is_err());
        assert!(p(&["pubsub", "--url", url, "--size", "8"]).expect_err("json").contains("16"));
        assert!(p(&["pubsub", "--url", url, "--size", "8", "--binary"]).is_ok());
        assert!(p(&["pubsub", "--url", url, "--rate", "-1"]).is_err());
        assert!(p(&["pubsub", "--url", "ws://10.0.0.1:1/ws"])
            .expect_err("far")
            .contains("loopback"));
        match run(&["serve-tcp-fanout", "--listen", "127.0.0.1:9"]) {
            Ok(Command::ServeFanout(s)) => assert_eq!(s.listen.port(), 9),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_table_default_parses() {
        for cmd in Cmd::ALL {
            for opt in cmd.opts() {
                if let Default::Value(d) = opt.default {
                    assert!(d.parse::<f64>().is_ok(), "{cmd:?} --{} default {d:?}", opt.name);
                }
            }
        }
    }
}

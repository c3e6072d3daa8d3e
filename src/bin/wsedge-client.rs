//! `wsedge-client`: a WebSocket client for the command line, websocat-style,
//! on the `wsedge::client` library (one session on a mio driver). Threads:
//! main (the driver), one reading stdin, one waiting for SIGINT/SIGTERM;
//! the two helpers hand over through a channel and the driver's waker.
//!
//! A little over 800 lines: ~110 are the `--help` text and ~100 the
//! argument tests, kept next to the parser they document and check.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::value::RawValue;
use wsedge::client::driver::{Driver, SessionId};
use wsedge::client::handshake::valid_header;
use wsedge::client::{
    Backoff, ClientConfig, CredentialIn, Ending, Event, Incoming, Next, Stop, WsUrl,
};

const USAGE: &str = "\
wsedge-client: a WebSocket client (echo, pub/sub, scripts)

USAGE:
    wsedge-client [OPTIONS] URL

    wsedge-client ws://127.0.0.1:8080/echo                 # stdin lines out, messages in
    wsedge-client --subscribe news ws://127.0.0.1:8080/ws   # print what is published to news
    echo '{\"hi\":1}' | wsedge-client --publish news ws://127.0.0.1:8080/ws

MODES:
    (default)              each stdin line is sent as a message; each message
                           received is printed on a line
    --subscribe ROOM       join ROOM (repeatable); print each delivery's data.
                           Runs until Ctrl+C, --max-messages or the server
                           ends it (stdin is ignored unless --publish is given)
    --publish ROOM         each stdin line is published to ROOM (as JSON if it
                           parses as JSON, else as a JSON string)

OPTIONS:
    --binary               send stdin lines as binary messages
    -H, --header 'NAME: VALUE'
                           extra request header (repeatable)
    --token TOKEN          credential (JWT or API key), sent as
                           Authorization: Bearer TOKEN
    --token-in WHERE       header (default), query[=NAME] (default name token)
                           or cookie[=NAME] (default name wsedge_token)
    --origin ORIGIN        Origin header
    --ca FILE              trust only the CA certificates in FILE for wss://
                           (default: the system's trust store)
    --connect-to ADDR:PORT connect here instead of resolving the URL's host
                           (Host header and TLS name still from the URL)
    --json                 one JSON event per line on stdout: connected,
                           message, delivery, subscribed, recovered,
                           not_recovered, disconnected, error
    --reconnect            reconnect when the connection ends; rooms are
                           resubscribed with their last position
    --backoff-min DUR      first retry window (default 500ms); attempt n
                           waits random(0, min(max, min * 2^n))
    --backoff-max DUR      largest retry window (default 20s)
    --max-attempts N       give up after N failed attempts in a row (default:
                           never)
    --ping-interval DUR    ping after DUR without receiving anything; drop
                           the connection (and reconnect) after 1.5 * DUR of
                           silence (default 30s; 0 turns both off)
    --once                 exit after the first message received
    --max-messages N       exit after N messages received. Without it (and
                           without --subscribe) the end of stdin closes the
                           connection once every line is sent (and, with
                           --publish, acked): replies still on their way
                           then may be cut off by the close
    --close-code CODE      close code sent when the client ends because stdin
                           ended or the message limit was reached (default 1000)
    -h, --help             this help

DURATIONS: 250ms, 2s, 1m, or a plain number of seconds (0.5).

Ctrl+C (or SIGTERM) sends close 1000 and waits up to 2 s for the reply;
a second one exits at once.
Messages: text as is; binary raw (then a newline). Status lines go to stderr.

EXIT STATUS:
    0    done: stdin ended or the message limit was reached and the close
         handshake finished, or the server closed with 1000
    1    the connection ended otherwise (lost, liveness timeout, closed with
         another code, protocol error), or --max-attempts was reached after
         having connected
    2    bad arguments
    3    could not connect (connection refused, DNS, TLS, HTTP refusal other
         than 401/403, bad upgrade answer) and no retry left
    4    refused for good: HTTP 401/403, or close code 1008 or 4000-4999
         (never retried, even with --reconnect)
    5    with --publish: the connection ended as for 0, but the server
         refused some publish (its error is printed)
    130  interrupted by Ctrl+C or SIGTERM";

/// Exit statuses (see USAGE).
const EXIT_LOST: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_CONNECT: u8 = 3;
const EXIT_REFUSED: u8 = 4;
const EXIT_PUBLISH_REFUSED: u8 = 5;
/// Id prefix of the CLI's publishes (their acks are waited for before
/// closing, so an exit status 0 means every publish was taken).
const PUB_ID: &str = "wsedge-client:pub:";
const EXIT_INTERRUPTED: u8 = 130;

/// How long Ctrl+C waits for the close reply.
const INTERRUPT_WAIT: Duration = Duration::from_secs(2);
/// Lines held while no connection is open.
const MAX_PENDING_LINES: usize = 10_000;

#[derive(Debug, Clone, PartialEq)]
struct Args {
    url: String,
    binary: bool,
    headers: Vec<(String, String)>,
    token: Option<String>,
    token_in: CredentialIn,
    origin: Option<String>,
    ca: Option<String>,
    connect_to: Option<SocketAddr>,
    subscribe: Vec<String>,
    publish: Option<String>,
    json: bool,
    reconnect: bool,
    backoff_min: Duration,
    backoff_max: Duration,
    max_attempts: Option<u32>,
    ping_interval: Duration,
    max_messages: Option<u64>,
    close_code: u16,
}

#[derive(Debug, PartialEq)]
enum Command {
    Run(Box<Args>),
    Help,
}

/// `250ms`, `2s`, `1m`, or seconds (`0.5`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s or m)")),
    };
    if !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(format!("duration out of range: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The value of the current option, as UTF-8.
fn value(p: &mut lexopt::Parser) -> Result<String, String> {
    p.value().map_err(|e| e.to_string())?.into_string().map_err(|v| format!("not UTF-8: {v:?}"))
}

fn parse_args(argv: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(argv);
    let defaults = Backoff::default();
    let mut a = Args {
        url: String::new(),
        binary: false,
        headers: Vec::new(),
        token: None,
        token_in: CredentialIn::Header,
        origin: None,
        ca: None,
        connect_to: None,
        subscribe: Vec::new(),
        publish: None,
        json: false,
        reconnect: false,
        backoff_min: defaults.min_delay,
        backoff_max: defaults.max_delay,
        max_attempts: None,
        ping_interval: Duration::from_secs(30),
        max_messages: None,
        close_code: 1000,
    };
    let mut url = None;
    let e = |e: lexopt::Error| e.to_string();
    while let Some(arg) = p.next().map_err(e)? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("binary") => a.binary = true,
            Short('H') | Long("header") => {
                let v = value(&mut p)?;
                let (n, val) = v.split_once(':').ok_or(format!("--header {v:?}: NAME: VALUE"))?;
                let (n, val) = (n.trim(), val.trim());
                if !valid_header(n, val) {
                    return Err(format!("--header {v:?}: not a valid header line"));
                }
                a.headers.push((n.to_owned(), val.to_owned()));
            }
            Long("token") => a.token = Some(value(&mut p)?),
            Long("token-in") => {
                let v = value(&mut p)?;
                let (kind, name) =
                    v.split_once('=').map_or((v.as_str(), None), |(k, n)| (k, Some(n)));
                a.token_in = match kind {
                    "header" if name.is_none() => CredentialIn::Header,
                    "query" => CredentialIn::Query(name.unwrap_or("token").to_owned()),
                    "cookie" => CredentialIn::Cookie(name.unwrap_or("wsedge_token").to_owned()),
                    _ => {
                        return Err(format!(
                            "--token-in {v:?}: header, query[=NAME] or cookie[=NAME]"
                        ))
                    }
                };
            }
            Long("origin") => a.origin = Some(value(&mut p)?),
            Long("ca") => a.ca = Some(value(&mut p)?),
            Long("connect-to") => {
                let v = value(&mut p)?;
                a.connect_to =
                    Some(v.parse().map_err(|_| format!("--connect-to {v:?}: ADDR:PORT"))?);
            }
            Long("subscribe") => a.subscribe.push(value(&mut p)?),
            Long("publish") => a.publish = Some(value(&mut p)?),
            Long("json") => a.json = true,
            Long("reconnect") => a.reconnect = true,
            Long("backoff-min") => a.backoff_min = parse_duration(&value(&mut p)?)?,
            Long("backoff-max") => a.backoff_max = parse_duration(&value(&mut p)?)?,
            Long("max-attempts") => {
                let v = value(&mut p)?;
                a.max_attempts = Some(v.parse().map_err(|_| format!("--max-attempts {v:?}"))?);
            }
            Long("ping-interval") => a.ping_interval = parse_duration(&value(&mut p)?)?,
            Long("once") => a.max_messages = Some(1),
            Long("max-messages") => {
                let v = value(&mut p)?;
                match v.parse::<u64>() {
                    Ok(n) if n > 0 => a.max_messages = Some(n),
                    _ => return Err(format!("--max-messages {v:?}: a positive number")),
                }
            }
            Long("close-code") => {
                let v = value(&mut p)?;
                // Codes a client may send (RFC 6455 section 7.4).
                match v.parse::<u16>() {
                    Ok(c @ (1000..=1003 | 1007..=1011 | 3000..=4999)) => a.close_code = c,
                    _ => {
                        return Err(format!(
                            "--close-code {v:?}: 1000-1003, 1007-1011 or 3000-4999"
                        ))
                    }
                }
            }
            Value(v) if url.is_none() => {
                url = Some(v.into_string().map_err(|v| format!("URL not UTF-8: {v:?}"))?)
            }
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    a.url = url.ok_or("a URL is required (ws://HOST:PORT/PATH or wss://...)")?;
    if a.backoff_min > a.backoff_max {
        return Err("--backoff-min is above --backoff-max".into());
    }
    Ok(Command::Run(Box::new(a)))
}

/// Builds the client's configuration; errors are usage errors.
fn client_config(a: &Args) -> Result<ClientConfig, String> {
    let url = WsUrl::parse(&a.url).map_err(|e| e.to_string())?;
    let tls = match (&a.ca, url.tls) {
        (Some(ca), _) => {
            Some(wsedge::client::tls::client_config(Some(ca)).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    let mut cfg = ClientConfig::new(url);
    cfg.headers = a.headers.clone();
    cfg.credential = a.token.clone().map(|t| (t, a.token_in.clone()));
    cfg.origin = a.origin.clone();
    cfg.tls = tls;
    cfg.connect_to = a.connect_to;
    cfg.conn.ping_interval = a.ping_interval;
    cfg.conn.liveness_margin = a.ping_interval / 2;
    cfg.pubsub = !a.subscribe.is_empty() || a.publish.is_some();
    if a.reconnect {
        cfg.reconnect = Some(Backoff {
            min_delay: a.backoff_min,
            max_delay: a.backoff_max,
            max_attempts: a.max_attempts,
            ..Backoff::default()
        });
    }
    Ok(cfg)
}

enum Input {
    Line(Vec<u8>),
    Eof,
    Interrupt,
}

fn main() -> ExitCode {
    match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Command::Run(args)) => match client_config(&args) {
            Ok(cfg) => ExitCode::from(run(&args, cfg)),
            Err(e) => {
                eprintln!("wsedge-client: {e}");
                ExitCode::from(EXIT_USAGE)
            }
        },
        Err(e) => {
            eprintln!("wsedge-client: {e}\n(see wsedge-client --help)");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Starts the stdin and signal threads.
fn spawn_inputs(tx: mpsc::Sender<Input>, waker: Arc<mio::Waker>, read_stdin: bool) {
    if read_stdin {
        let (tx, waker) = (tx.clone(), waker.clone());
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            let mut lock = stdin.lock();
            loop {
                let mut line = Vec::new();
                match lock.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if line.ends_with(b"\n") {
                            line.pop();
                            if line.ends_with(b"\r") {
                                line.pop();
                            }
                        }
                        if tx.send(Input::Line(line)).is_err() {
                            return;
                        }
                        let _ = waker.wake();
                    }
                }
            }
            let _ = tx.send(Input::Eof);
            let _ = waker.wake();
        });
    }
    let signals = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];
    match signal_hook::iterator::Signals::new(signals) {
        Ok(mut s) => {
            std::thread::spawn(move || {
                let mut seen = 0;
                for _ in s.forever() {
                    seen += 1;
                    if seen > 1 {
                        std::process::exit(EXIT_INTERRUPTED.into());
                    }
                    let _ = tx.send(Input::Interrupt);
                    let _ = waker.wake();
                }
            });
        }
        Err(e) => {
            eprintln!("wsedge-client: cannot watch signals ({e}); Ctrl+C will not close cleanly")
        }
    }
}

/// The client's state between events.
struct Run<'a> {
    args: &'a Args,
    driver: Driver,
    id: SessionId,
    pending: VecDeque<Vec<u8>>,
    stdin_done: bool,
    closing: bool,
    interrupted_at: Option<Instant>,
    received: u64,
    ever_connected: bool,
    /// Publishes sent and not yet acked on this connection.
    unacked: u64,
    published: u64,
    publish_refused: u64,
    out: std::io::StdoutLock<'static>,
}

fn run(args: &Args, cfg: ClientConfig) -> u8 {
    let mut driver = match Driver::new() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("wsedge-client: {e}");
            return EXIT_LOST;
        }
    };
    let waker = match driver.waker() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("wsedge-client: {e}");
            return EXIT_LOST;
        }
    };
    let (tx, rx) = mpsc::channel();
    // Subscribe-only runs until stopped: stdin is not theirs.
    let read_stdin = args.subscribe.is_empty() || args.publish.is_some();
    spawn_inputs(tx, waker, read_stdin);
    let id = driver.add(Arc::new(cfg));
    for room in &args.subscribe {
        driver.with_session(id, |s, _| s.subscribe(room));
    }
    let mut r = Run {
        args,
        driver,
        id,
        pending: VecDeque::new(),
        stdin_done: !read_stdin,
        closing: false,
        interrupted_at: None,
        received: 0,
        ever_connected: false,
        unacked: 0,
        published: 0,
        publish_refused: 0,
        out: std::io::stdout().lock(),
    };
    loop {
        while let Ok(input) = rx.try_recv() {
            r.input(input);
        }
        r.flush_pending();
        while let Some((_, ev)) = r.driver.next_event() {
            if let Some(status) = r.event(ev) {
                let _ = r.out.flush();
                return status;
            }
        }
        let _ = r.out.flush();
        if let Some(at) = r.interrupted_at {
            if at.elapsed() >= INTERRUPT_WAIT {
                return EXIT_INTERRUPTED;
            }
        }
        if let Err(e) = r.driver.turn(Some(Duration::from_millis(250))) {
            eprintln!("wsedge-client: poll: {e}");
            return EXIT_LOST;
        }
    }
}

impl Run<'_> {
    fn is_open(&self) -> bool {
        self.driver.session(self.id).is_some_and(|s| s.is_open())
    }

    fn close(&mut self, code: u16) {
        if !self.closing {
            self.closing = true;
            self.driver.with_session(self.id, |s, now| s.close(code, "", now));
        }
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Line(line) => {
                if self.pending.len() >= MAX_PENDING_LINES {
                    eprintln!("wsedge-client: not connected; dropping a line ({MAX_PENDING_LINES} waiting)");
                } else {
                    self.pending.push_back(line);
                }
            }
            Input::Eof => self.stdin_done = true,
            Input::Interrupt => {
                self.interrupted_at = Some(Instant::now());
                self.close(1000);
            }
        }
    }

    /// Sends waiting lines while a connection is open; closes after the
    /// last one once stdin has ended (not in subscribe mode).
    fn flush_pending(&mut self) {
        if self.closing || !self.is_open() {
            return;
        }
        while let Some(line) = self.pending.pop_front() {
            let publish = self.args.publish.clone();
            let id = format!("{PUB_ID}{}", self.published + 1);
            let binary = self.args.binary;
            let sent = self.driver.with_session(self.id, |s, _| match &publish {
                Some(room) => {
                    let data = match std::str::from_utf8(&line)
                        .ok()
                        .and_then(|t| serde_json::from_str::<Box<RawValue>>(t).ok())
                    {
                        Some(raw) => raw,
                        None => {
                            let text = String::from_utf8_lossy(&line);
                            let json = serde_json::Value::from(text.as_ref()).to_string();
                            RawValue::from_string(json).expect("bug: a JSON string is JSON")
                        }
                    };
                    s.publish_with_id(room, &data, &id)
                }
                None if binary => s.send_binary(line.clone()),
                None => s.send_text(&String::from_utf8_lossy(&line)),
            });
            if sent != Some(Ok(())) {
                self.pending.push_front(line);
                return;
            }
            if self.args.publish.is_some() {
                self.published += 1;
                self.unacked += 1;
            }
        }
        // With a message limit (or rooms), the limit (or the user) ends the
        // run: closing at the end of stdin would race the replies.
        let stdin_ends_it = self.args.subscribe.is_empty() && self.args.max_messages.is_none();
        if self.stdin_done && stdin_ends_it && self.unacked == 0 {
            self.close(self.args.close_code);
        }
    }

    fn json_line(&mut self, v: serde_json::Value) {
        let _ = writeln!(self.out, "{v}");
    }

    fn counted(&mut self) {
        self.received += 1;
        if self.args.max_messages.is_some_and(|m| self.received >= m) {
            self.close(self.args.close_code);
        }
    }

    /// Handles one event; `Some(status)` ends the program.
    fn event(&mut self, ev: Event) -> Option<u8> {
        use serde_json::json;
        let json = self.args.json;
        let url = self.args.url.clone();
        match ev {
            Event::Connected { count } => {
                self.ever_connected = true;
                if json {
                    self.json_line(json!({"event": "connected", "count": count, "url": url}));
                } else if count > 1 {
                    eprintln!("wsedge-client: reconnected to {url}");
                }
            }
            Event::Message(m) => {
                if self.closing && self.args.max_messages.is_some_and(|n| self.received >= n) {
                    return None;
                }
                match m {
                    Incoming::Text(t) => {
                        if self.publish_reply(&t) && !json {
                            return None;
                        }
                        if self.is_pubsub() && !json {
                            // Protocol chatter (welcome, errors) is not data.
                            if !t.contains(r#""type":"welcome""#) {
                                eprintln!("wsedge-client: {t}");
                            }
                            return None;
                        }
                        if json {
                            self.json_line(json!({"event": "message", "text": t}));
                        } else {
                            let _ = writeln!(self.out, "{t}");
                        }
                    }
                    Incoming::Binary(b) => {
                        if json {
                            let b64 = base64::engine::general_purpose::STANDARD.encode(&b);
                            self.json_line(json!({"event": "message", "binary": b64}));
                        } else {
                            let _ = self.out.write_all(&b);
                            let _ = self.out.write_all(b"\n");
                        }
                    }
                }
                if !self.is_pubsub() {
                    self.counted();
                }
            }
            Event::Delivery(d) => {
                if self.closing && self.args.max_messages.is_some_and(|n| self.received >= n) {
                    return None;
                }
                if json {
                    let data: serde_json::Value =
                        serde_json::from_str(d.data.get()).unwrap_or(serde_json::Value::Null);
                    self.json_line(json!({
                        "event": "delivery", "room": d.room, "from": d.from,
                        "offset": d.offset, "epoch": d.epoch, "data": data,
                    }));
                } else {
                    let _ = writeln!(self.out, "{}", d.data.get());
                }
                self.counted();
            }
            Event::Subscribed { room } => {
                if json {
                    self.json_line(json!({"event": "subscribed", "room": room}));
                }
            }
            Event::Recovered { room } => {
                if json {
                    self.json_line(json!({"event": "recovered", "room": room}));
                } else {
                    eprintln!("wsedge-client: {room}: recovered the messages missed");
                }
            }
            Event::NotRecovered { room, offset, epoch } => {
                if json {
                    let ev = json!({"event": "not_recovered", "room": room, "offset": offset, "epoch": epoch});
                    self.json_line(ev);
                } else {
                    eprintln!("wsedge-client: {room}: messages may have been missed while away");
                }
            }
            Event::Error(e) => {
                if json {
                    self.json_line(json!({"event": "error", "message": e}));
                } else {
                    eprintln!("wsedge-client: {e}");
                }
            }
            Event::Disconnected { reason, next } => {
                // Publishes in flight on that connection: their fate is unknown.
                self.unacked = 0;
                let status = self.exit_status(&reason, &next);
                if json {
                    let mut v = json!({"event": "disconnected", "reason": reason.to_string()});
                    match &next {
                        Next::Retry(d) => v["retry_in_ms"] = (d.as_millis() as u64).into(),
                        Next::Stop(s) => v["stop"] = stop_text(s).into(),
                    }
                    self.json_line(v);
                }
                match next {
                    Next::Retry(d) => {
                        if !json {
                            eprintln!("wsedge-client: {reason}; retrying in {d:.1?}");
                        }
                    }
                    Next::Stop(s) => {
                        if !json && status != 0 && status != EXIT_INTERRUPTED {
                            eprintln!("wsedge-client: {reason} ({})", stop_text(&s));
                        }
                        return Some(status);
                    }
                }
            }
        }
        None
    }

    /// Counts the ack or error of one of our publishes; true if it was one.
    fn publish_reply(&mut self, text: &str) -> bool {
        if self.args.publish.is_none() || !text.contains(PUB_ID) {
            return false;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else { return false };
        if !v["id"].as_str().is_some_and(|id| id.starts_with(PUB_ID)) {
            return false;
        }
        self.unacked = self.unacked.saturating_sub(1);
        if v["type"] == "error" {
            self.publish_refused += 1;
            eprintln!(
                "wsedge-client: publish refused: {}: {}",
                v["code"].as_str().unwrap_or("?"),
                v["message"].as_str().unwrap_or("")
            );
        }
        // Every line sent and acked: close now if stdin is done.
        self.flush_pending();
        true
    }

    fn is_pubsub(&self) -> bool {
        !self.args.subscribe.is_empty() || self.args.publish.is_some()
    }

    fn exit_status(&self, reason: &Ending, next: &Next) -> u8 {
        if self.interrupted_at.is_some() {
            return EXIT_INTERRUPTED;
        }
        let Next::Stop(stop) = next else { return 0 };
        let ok = if self.publish_refused > 0 { EXIT_PUBLISH_REFUSED } else { 0 };
        match (stop, reason) {
            (Stop::Refused(_), _) => EXIT_REFUSED,
            (_, Ending::ClientClosed { .. }) => ok,
            (_, Ending::ServerClosed { code: 1000, .. }) => ok,
            _ if !self.ever_connected => EXIT_CONNECT,
            _ => EXIT_LOST,
        }
    }
}

fn stop_text(s: &Stop) -> String {
    match s {
        Stop::ByUser => "closed".into(),
        Stop::NoReconnect => "not reconnecting (use --reconnect)".into(),
        Stop::GaveUp { attempts } => format!("gave up after {attempts} attempts"),
        Stop::Refused(why) => why.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(OsString::from))
    }

    fn run_args(args: &[&str]) -> Args {
        match parse(args) {
            Ok(Command::Run(a)) => *a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_option_parses() {
        let a = run_args(&[
            "--binary",
            "-H",
            "X-A: 1",
            "--header=X-B:two",
            "--token",
            "t",
            "--token-in",
            "cookie=c",
            "--origin",
            "https://o",
            "--ca",
            "ca.pem",
            "--connect-to",
            "127.0.0.1:9",
            "--subscribe",
            "a",
            "--subscribe",
            "b",
            "--publish",
            "p",
            "--json",
            "--reconnect",
            "--backoff-min",
            "100ms",
            "--backoff-max",
            "2s",
            "--max-attempts",
            "5",
            "--ping-interval",
            "0.5",
            "--max-messages",
            "3",
            "--close-code",
            "4000",
            "ws://h/ws",
        ]);
        assert!(a.binary && a.json && a.reconnect);
        assert_eq!(a.headers, [("X-A".into(), "1".into()), ("X-B".into(), "two".into())]);
        assert_eq!(a.token_in, CredentialIn::Cookie("c".into()));
        assert_eq!(a.subscribe, ["a", "b"]);
        assert_eq!(a.publish.as_deref(), Some("p"));
        assert_eq!(
            (a.backoff_min, a.backoff_max),
            (Duration::from_millis(100), Duration::from_secs(2))
        );
        assert_eq!((a.max_attempts, a.max_messages, a.close_code), (Some(5), Some(3), 4000));
        assert_eq!(a.ping_interval, Duration::from_millis(500));
        assert_eq!(run_args(&["--once", "ws://h/"]).max_messages, Some(1));
        assert_eq!(
            run_args(&["--token-in", "query", "ws://h/"]).token_in,
            CredentialIn::Query("token".into())
        );
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        for (args, says) in [
            (&["--close-code", "1005", "ws://h/"][..], "close-code"),
            (&["-H", "no colon", "ws://h/"], "header"),
            (&["-H", "Bad Name: v", "ws://h/"], "header"),
            (&["--ping-interval", "3h", "ws://h/"], "unit"),
            (&["--max-messages", "0", "ws://h/"], "max-messages"),
            (&["--backoff-min", "5s", "--backoff-max", "1s", "ws://h/"], "backoff"),
            (&["--token-in", "body", "ws://h/"], "token-in"),
            (&[], "URL"),
            (&["ws://a/", "ws://b/"], "unexpected"),
        ] {
            let e = parse(args).expect_err(says);
            assert!(e.contains(says), "{args:?}: {e}");
        }
        let a = run_args(&["http://h/"]);
        assert!(client_config(&a).unwrap_err().contains("ws://"));
    }
}

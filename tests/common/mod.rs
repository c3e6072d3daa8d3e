//! Shared helpers for the integration tests: an in-process server on an
//! ephemeral port, a raw WebSocket client that sends exact frame bytes, and a
//! tungstenite client for everything else.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::WebSocket;
use wsedge::{Config, Server};

/// A config on 127.0.0.1:0 with `workers` workers; `tweak` adjusts it.
pub fn config(workers: usize, tweak: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.workers = workers;
    tweak(&mut c);
    c
}

/// Starts an in-process server; it shuts down when dropped.
pub fn start(config: &Config) -> Server {
    let _ = env_logger::builder().is_test(true).try_init();
    Server::start(config).expect("server starts")
}

/// A tungstenite client with no message size limits of its own.
pub fn client(addr: SocketAddr, path: &str) -> WebSocket<MaybeTlsStream<TcpStream>> {
    let url = format!("ws://{addr}{path}");
    let cfg = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (ws, resp) =
        tungstenite::client::client_with_config(url, MaybeTlsStream::Plain(stream), Some(cfg))
            .expect("handshake");
    assert_eq!(resp.status(), 101);
    ws
}

/// A raw client: exact bytes out, frames parsed by hand on the way in.
pub struct Raw {
    pub sock: TcpStream,
    buf: Vec<u8>,
}

/// A frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The close code of a close frame, if any.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

pub const UPGRADE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {UPGRADE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Encodes a masked client frame.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    frame_into(&mut out, fin, opcode, payload, [0x37, 0xfa, 0x21, 0x3d]);
    out
}

/// Appends a client frame masked with `mask` to `out`.
pub fn frame_into(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push((if fin { 0x80 } else { 0 }) | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len < 65536 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

impl Raw {
    /// Connects without upgrading.
    pub fn connect(addr: SocketAddr) -> Raw {
        let sock = TcpStream::connect(addr).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Raw { sock, buf: Vec::new() }
    }

    /// Wraps an already connected stream.
    pub fn from_stream(sock: TcpStream) -> Raw {
        sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Raw { sock, buf: Vec::new() }
    }

    /// Connects and upgrades on `path`, asserting the 101.
    pub fn upgrade(addr: SocketAddr, path: &str) -> Raw {
        let mut raw = Raw::connect(addr);
        raw.send(upgrade_request(path).as_bytes());
        let head = raw.read_http_head();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        raw
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("send");
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 65536];
        let n = self.sock.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads an HTTP response head (leaves later bytes buffered).
    pub fn read_http_head(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..i + 4]).into_owned();
                self.buf.drain(..i + 4);
                return head;
            }
            if self.fill().expect("read head") == 0 {
                panic!("EOF before a complete HTTP head: {:?}", String::from_utf8_lossy(&self.buf));
            }
        }
    }

    /// Reads everything until EOF (for HTTP refusals).
    pub fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill().map(|n| n > 0).unwrap_or(false) {}
        std::mem::take(&mut self.buf)
    }

    /// Reads one frame; None on EOF or reset.
    pub fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1]);
                assert_eq!(b1 & 0x80, 0, "server frames must not be masked");
                let (hlen, len) = match b1 & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (4, u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&self.buf[2..10]);
                        (10, u64::from_be_bytes(b) as usize)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (2, n as usize),
                };
                if hlen != usize::MAX && self.buf.len() >= hlen + len {
                    let payload = self.buf[hlen..hlen + len].to_vec();
                    self.buf.drain(..hlen + len);
                    return Some(Frame { fin: b0 & 0x80 != 0, opcode: b0 & 0x0f, payload });
                }
            }
            match self.fill() {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Asserts that the server sends nothing for [`SILENCE`]: no frame, no
    /// byte, no EOF (buffered bytes count too).
    pub fn expect_silence(&mut self) {
        assert!(self.buf.is_empty(), "expected silence, {} bytes are buffered", self.buf.len());
        self.sock.set_read_timeout(Some(SILENCE)).unwrap();
        let mut chunk = [0u8; 4096];
        let got = self.sock.read(&mut chunk);
        self.sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        match got {
            Ok(0) => panic!("expected silence, the server closed the connection"),
            Ok(n) => panic!("expected silence, got {n} bytes: {:?}", &chunk[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("expected silence, got {e}"),
        }
    }

    /// Reads frames until a close frame; returns it (None if EOF came first).
    pub fn read_until_close(&mut self) -> Option<Frame> {
        while let Some(f) = self.read_frame() {
            if f.opcode == 8 {
                return Some(f);
            }
        }
        None
    }

    /// True if the server closed the TCP connection (EOF or reset) in time.
    pub fn expect_eof(&mut self) -> bool {
        self.sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut chunk = [0u8; 4096];
        loop {
            match self.sock.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }
}

/// How long [`Ps::expect_silence`] and [`Raw::expect_silence`] listen. On
/// loopback a message already on its way arrives well within it; a slower
/// machine can only make such a check pass when it should not, never fail
/// when it should pass.
pub const SILENCE: Duration = Duration::from_millis(300);

/// Polls `cond` every 20 ms for up to 10 s; true once it holds.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A pub/sub client over tungstenite, speaking JSON.
pub struct Ps {
    pub ws: WebSocket<MaybeTlsStream<TcpStream>>,
    pub id: String,
}

impl Ps {
    /// Connects to `/ws` and reads the welcome.
    pub fn connect(addr: SocketAddr) -> Ps {
        let mut ws = client(addr, "/ws");
        let welcome = read_json(&mut ws);
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        let id = welcome["conn_id"].as_str().expect("conn_id").to_string();
        Ps { ws, id }
    }

    /// The worker this connection landed on (from its id).
    pub fn worker(&self) -> u64 {
        let id = u64::from_str_radix(&self.id, 16).expect("hex conn_id");
        wsedge::id::ConnId::new(id).worker() as u64
    }

    pub fn send(&mut self, v: serde_json::Value) {
        self.ws.send(tungstenite::Message::text(v.to_string())).expect("send");
    }

    pub fn recv(&mut self) -> serde_json::Value {
        read_json(&mut self.ws)
    }

    /// Sends a request with `id` and returns its reply, which must be the
    /// next message: anything else arriving first (a delivery, another
    /// reply) fails the test. Use [`Ps::request_among`] where other traffic
    /// is expected.
    pub fn request(&mut self, v: serde_json::Value, id: u64) -> serde_json::Value {
        let (reply, others) = self.request_among(v, id);
        assert!(others.is_empty(), "unexpected messages before the reply {reply}: {others:?}");
        reply
    }

    /// Sends a request with `id`; returns its reply and every message that
    /// arrived before it, in order, for the caller to check.
    pub fn request_among(
        &mut self,
        mut v: serde_json::Value,
        id: u64,
    ) -> (serde_json::Value, Vec<serde_json::Value>) {
        v["id"] = id.into();
        self.send(v);
        let mut others = Vec::new();
        loop {
            let r = self.recv();
            if r["id"] == id {
                return (r, others);
            }
            others.push(r);
        }
    }

    /// Asserts that the server sends nothing for [`SILENCE`]: not a frame of
    /// any kind (a message the client should not get fails here, where
    /// [`Ps::request`] alone would read past it).
    pub fn expect_silence(&mut self) {
        let set = |ws: &mut WebSocket<MaybeTlsStream<TcpStream>>, t: Duration| match ws.get_mut() {
            MaybeTlsStream::Plain(s) => s.set_read_timeout(Some(t)).unwrap(),
            _ => panic!("expect_silence needs a plain TCP client"),
        };
        set(&mut self.ws, SILENCE);
        let got = self.ws.read();
        set(&mut self.ws, Duration::from_secs(20));
        match got {
            Ok(m) => panic!("expected silence, got {m:?}"),
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("expected silence, got {e}"),
        }
    }

    pub fn subscribe(&mut self, room: &str) {
        let r = self.request(serde_json::json!({"type": "subscribe", "room": room}), 1);
        assert_eq!(r["type"], "ack", "{r}");
    }
}

pub fn read_json(ws: &mut WebSocket<MaybeTlsStream<TcpStream>>) -> serde_json::Value {
    loop {
        match ws.read().expect("read") {
            tungstenite::Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            tungstenite::Message::Binary(b) => {
                return serde_json::json!({"binary": b.to_vec()});
            }
            _ => {}
        }
    }
}

/// Connects pub/sub clients until one lands on each of `workers` workers.
pub fn one_per_worker(addr: SocketAddr, workers: u64) -> Vec<Ps> {
    let mut found: Vec<Option<Ps>> = (0..workers).map(|_| None).collect();
    for _ in 0..200 {
        let c = Ps::connect(addr);
        let w = c.worker() as usize;
        if found[w].is_none() {
            found[w] = Some(c);
        }
        if found.iter().all(|f| f.is_some()) {
            return found.into_iter().map(|f| f.unwrap()).collect();
        }
    }
    panic!("connections did not spread over {workers} workers");
}

/// Sends one raw HTTP request and reads the response to EOF: (status, body).
pub fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default())
}

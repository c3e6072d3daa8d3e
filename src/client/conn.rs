//! [`ClientConn`]: one WebSocket connection in the client role, sans-IO.
//!
//! It writes its own upgrade request, checks the 101 ([`super::handshake`]),
//! then runs tungstenite's `WebSocketContext` in the client role over an
//! in-memory stream (frames out are masked; pings are answered; the close
//! handshake is completed). Bytes and `now` go in (`handle_input`,
//! `handle_eof`, `handle_timeout`); bytes (`pending_output`), events
//! (`poll_event`) and the next deadline (`poll_timeout`) come out. It never
//! touches a socket or reads the clock.
//!
//! Liveness: a connection that has received nothing (no data, no ping, no
//! pong) for `ping_interval` sends a ping; one silent for `ping_interval +
//! liveness_margin` ends with [`Ending::Timeout`].

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

use super::handshake::{parse_response, write_request, ResponseError};
use super::url::WsUrl;

/// Timers and limits of one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnSettings {
    /// From the first byte sent to the 101 (default 10 s).
    pub handshake_timeout: Duration,
    /// Silence after which the client pings (default 30 s; zero: never ping
    /// and never time out for silence).
    pub ping_interval: Duration,
    /// Further silence after `ping_interval` before the connection is
    /// declared dead (default 10 s).
    pub liveness_margin: Duration,
    /// How long the close handshake may take (default 2 s).
    pub close_timeout: Duration,
    /// Largest message accepted from the server, bytes (default 64 MiB).
    pub max_message_bytes: usize,
}

impl Default for ConnSettings {
    fn default() -> Self {
        ConnSettings {
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            liveness_margin: Duration::from_secs(10),
            close_timeout: Duration::from_secs(2),
            max_message_bytes: 64 << 20,
        }
    }
}

/// A data message from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

/// How a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The server's answer to the upgrade was not a WebSocket upgrade.
    Handshake(ResponseError),
    /// No complete answer to the upgrade in `handshake_timeout`.
    HandshakeTimeout,
    /// The server started the close handshake (`code` 1005 when its close
    /// frame had no code).
    ServerClosed {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// We closed with `code`.
    ClientClosed {
        /// Close code sent.
        code: u16,
    },
    /// The TCP connection ended without a close frame (1006).
    Lost,
    /// Nothing received for `ping_interval + liveness_margin`.
    Timeout,
    /// The server broke the protocol; we sent a close with `code`.
    Protocol {
        /// Close code sent (1002, 1007 or 1009).
        code: u16,
        /// What was wrong.
        detail: String,
    },
    /// The socket or TLS layer failed (reported by the driver).
    Io(String),
}

/// What a connection reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    /// The server accepted the upgrade.
    Open,
    /// A data message.
    Message(Incoming),
    /// The connection is over; the socket can be dropped once the pending
    /// output is written (or at once).
    Closed(Ending),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Handshaking,
    Open,
    Closing,
    Closed,
}

/// One client connection (see the module docs).
pub struct ClientConn {
    settings: ConnSettings,
    key: String,
    phase: Phase,
    ws: WebSocketContext,
    /// The response head while handshaking.
    head: Vec<u8>,
    out: Vec<u8>,
    events: VecDeque<ConnEvent>,
    last_rx: Instant,
    ping_sent: bool,
    /// Deadline of the handshake or of the close handshake.
    deadline: Instant,
    /// Why the connection is closing.
    ending: Option<Ending>,
}

/// tungstenite's view: input from a slice (`WouldBlock` when it runs out),
/// output appended to the connection's buffer.
struct Mem<'a> {
    input: &'a [u8],
    out: &'a mut Vec<u8>,
}

impl Read for Mem<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.input.len().min(buf.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Mem<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why a message cannot be sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The connection is not open (handshaking, closing or closed).
    #[error("the connection is not open")]
    NotOpen,
}

impl ClientConn {
    /// A connection that starts by sending the upgrade request for `url`
    /// with `key` (see [`super::handshake::new_key`]) and `headers`.
    pub fn new(
        url: &WsUrl,
        key: String,
        headers: &[(String, String)],
        settings: ConnSettings,
        now: Instant,
    ) -> ClientConn {
        let mut out = Vec::with_capacity(256);
        write_request(url, &key, headers, &mut out);
        // Small buffers: a client process may hold thousands of these (the
        // default 128 KiB read buffer would cost 640 MB for 5,000), and
        // frames are written out at once (`write_buffer_size` 0).
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(settings.max_message_bytes))
            .max_frame_size(Some(settings.max_message_bytes));
        ClientConn {
            deadline: now + settings.handshake_timeout,
            settings,
            key,
            phase: Phase::Handshaking,
            ws: WebSocketContext::new(Role::Client, Some(config)),
            head: Vec::new(),
            out,
            events: VecDeque::new(),
            last_rx: now,
            ping_sent: false,
            ending: None,
        }
    }

    /// True once the upgrade is accepted and no close has started.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// True once [`ConnEvent::Closed`] has been reported.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Bytes to write to the socket.
    pub fn pending_output(&self) -> &[u8] {
        &self.out
    }

    /// `n` bytes of [`ClientConn::pending_output`] were written.
    pub fn consume_output(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ConnEvent> {
        self.events.pop_front()
    }

    /// When [`ClientConn::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Handshaking | Phase::Closing => Some(self.deadline),
            Phase::Open if self.settings.ping_interval.is_zero() => None,
            Phase::Open if self.ping_sent => {
                Some(self.last_rx + self.settings.ping_interval + self.settings.liveness_margin)
            }
            Phase::Open => Some(self.last_rx + self.settings.ping_interval),
            Phase::Closed => None,
        }
    }

    /// Bytes read from the socket.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        match self.phase {
            Phase::Closed => {}
            Phase::Handshaking => {
                self.head.extend_from_slice(bytes);
                match parse_response(&self.head, &self.key, false) {
                    Ok(None) => {}
                    Err(e) => self.finish(Ending::Handshake(e)),
                    Ok(Some(accepted)) => {
                        self.phase = Phase::Open;
                        self.last_rx = now;
                        self.events.push_back(ConnEvent::Open);
                        let rest = self.head.split_off(accepted.head_len);
                        self.head = Vec::new();
                        self.feed(&rest, now);
                    }
                }
            }
            Phase::Open | Phase::Closing => self.feed(bytes, now),
        }
    }

    /// The socket reached EOF.
    pub fn handle_eof(&mut self, _now: Instant) {
        match self.phase {
            Phase::Closed => {}
            Phase::Handshaking => {
                let ending = match parse_response(&self.head, &self.key, true) {
                    Err(e) => Ending::Handshake(e),
                    Ok(_) => Ending::Lost,
                };
                self.finish(ending);
            }
            Phase::Open => self.finish(Ending::Lost),
            Phase::Closing => {
                let ending = self.ending.take().unwrap_or(Ending::Lost);
                self.finish(ending);
            }
        }
    }

    /// The socket failed (reset, TLS error): the connection is over.
    pub fn handle_io_error(&mut self, error: String) {
        if self.phase == Phase::Closing {
            // A reset after the close handshake is how many servers end.
            if let Some(ending) = self.ending.take() {
                return self.finish(ending);
            }
        }
        if self.phase != Phase::Closed {
            self.finish(Ending::Io(error));
        }
    }

    /// Timers: handshake and close deadlines, pings and liveness.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Handshaking if now >= self.deadline => self.finish(Ending::HandshakeTimeout),
            Phase::Closing if now >= self.deadline => {
                let ending = self.ending.take().unwrap_or(Ending::Lost);
                self.finish(ending);
            }
            Phase::Open if !self.settings.ping_interval.is_zero() => {
                let silent = now.saturating_duration_since(self.last_rx);
                if silent >= self.settings.ping_interval + self.settings.liveness_margin {
                    self.finish(Ending::Timeout);
                } else if silent >= self.settings.ping_interval && !self.ping_sent {
                    self.ping_sent = true;
                    let _ = self.write(Message::Ping(Bytes::new()));
                }
            }
            _ => {}
        }
    }

    /// Queues a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send(Message::text(text))
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<(), SendError> {
        self.send(Message::Binary(data.into()))
    }

    fn send(&mut self, msg: Message) -> Result<(), SendError> {
        if self.phase != Phase::Open {
            return Err(SendError::NotOpen);
        }
        self.write(msg)
    }

    fn write(&mut self, msg: Message) -> Result<(), SendError> {
        let mut s = Mem { input: &[], out: &mut self.out };
        // Our stream never blocks and the buffer is unbounded, so a failure
        // means the context is already closing.
        self.ws
            .write(&mut s, msg)
            .and_then(|_| self.ws.flush(&mut s))
            .map_err(|_| SendError::NotOpen)
    }

    /// Starts the close handshake with `code` and `reason` (at most 123
    /// bytes; longer is cut at a character boundary). Before the upgrade
    /// completes, the connection just ends.
    pub fn close(&mut self, code: u16, reason: &str, now: Instant) {
        match self.phase {
            Phase::Handshaking => self.finish(Ending::ClientClosed { code }),
            Phase::Open => {
                let mut end = reason.len().min(123);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                let frame =
                    CloseFrame { code: CloseCode::from(code), reason: reason[..end].into() };
                let mut s = Mem { input: &[], out: &mut self.out };
                let _ = self.ws.close(&mut s, Some(frame));
                self.ending = Some(Ending::ClientClosed { code });
                self.closing(now);
            }
            Phase::Closing | Phase::Closed => {}
        }
    }

    fn closing(&mut self, now: Instant) {
        self.phase = Phase::Closing;
        self.deadline = now + self.settings.close_timeout;
    }

    fn finish(&mut self, ending: Ending) {
        self.phase = Phase::Closed;
        self.events.push_back(ConnEvent::Closed(ending));
    }

    /// Frames from the server.
    fn feed(&mut self, input: &[u8], now: Instant) {
        if input.is_empty() {
            return;
        }
        self.last_rx = now;
        self.ping_sent = false;
        let mut s = Mem { input, out: &mut self.out };
        loop {
            match self.ws.read(&mut s) {
                Ok(Message::Text(t)) => {
                    self.events.push_back(ConnEvent::Message(Incoming::Text(t.as_str().to_owned())))
                }
                Ok(Message::Binary(b)) => {
                    self.events.push_back(ConnEvent::Message(Incoming::Binary(b)))
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Ok(Message::Close(frame)) => {
                    if self.phase == Phase::Open {
                        let (code, reason) = match frame {
                            Some(f) => (u16::from(f.code), f.reason.as_str().to_owned()),
                            None => (1005, String::new()),
                        };
                        self.ending = Some(Ending::ServerClosed { code, reason });
                        self.phase = Phase::Closing;
                        self.deadline = now + self.settings.close_timeout;
                    }
                    // Our close's reply: wait for the server to close TCP.
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    break
                }
                Err(e) => {
                    // "the endpoint MUST _Fail the WebSocket Connection_"
                    // (RFC 6455): send a close with the matching code.
                    let code = match &e {
                        tungstenite::Error::Capacity(_) => 1009,
                        tungstenite::Error::Utf8(_) => 1007,
                        _ => 1002,
                    };
                    let detail = e.to_string();
                    if self.phase == Phase::Open {
                        let frame = CloseFrame { code: CloseCode::from(code), reason: "".into() };
                        let _ = self.ws.close(&mut s, Some(frame));
                    }
                    self.phase = Phase::Closed;
                    self.events.push_back(ConnEvent::Closed(Ending::Protocol { code, detail }));
                    return;
                }
            }
        }
        // Pong and close replies tungstenite queued while reading.
        let _ = self.ws.flush(&mut s);
    }
}

#[cfg(test)]
mod tests;

//! [`Session`]: one logical client across connections, sans-IO.
//!
//! It owns at most one [`ClientConn`] at a time and decides when the next
//! one starts: at once the first time, then after a [`Backoff`] delay (full
//! jitter) when a connection ends or an attempt fails, unless the ending
//! says not to come back ([`Ending::refusal`]), the user closed, reconnecting
//! is off or `max_attempts` is reached. In pub/sub mode it resubscribes
//! every room on each new connection and sorts what arrives with
//! [`Rooms`].
//!
//! The driver's side: when [`Session::take_connect`] is true it opens a
//! socket to the session's URL and feeds what happens on it
//! (`handle_input`, `handle_eof`, `handle_io_error`); it writes
//! `pending_output`; when [`Session::conn_finished`] it drops the socket and
//! calls [`Session::release_conn`]; it calls `handle_timeout` at
//! `poll_timeout`. No socket, no clock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::backoff::Rng;
use super::conn::{ClientConn, ConnEvent, Ending, Incoming, SendError};
use super::handshake::new_key;
use super::pubsub::{AckOutcome, Rooms, Sorted};
use super::{ClientConfig, Event, Next, Stop};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A connection exists (handshaking, open or closing).
    Connected,
    /// Waiting for the next attempt.
    Waiting(Instant),
    /// No more connections.
    Stopped,
}

/// A logical client (see the module docs).
pub struct Session {
    cfg: Arc<ClientConfig>,
    state: State,
    conn: Option<ClientConn>,
    /// The driver has yet to open a socket for `conn`.
    connect_pending: bool,
    /// Consecutive failed attempts (reset by a connection that stayed up).
    attempt: u32,
    opened_at: Option<Instant>,
    connections: u32,
    user_closed: bool,
    rooms: Rooms,
    pubsub: bool,
    rng: Rng,
    events: VecDeque<Event>,
}

impl Session {
    /// A session that connects at once.
    pub fn new(cfg: Arc<ClientConfig>, now: Instant) -> Session {
        Session::with_rng(cfg, now, Rng::from_entropy())
    }

    /// As [`Session::new`], with a given generator (tests).
    pub fn with_rng(cfg: Arc<ClientConfig>, now: Instant, rng: Rng) -> Session {
        let mut s = Session {
            pubsub: cfg.pubsub,
            cfg,
            state: State::Waiting(now),
            conn: None,
            connect_pending: false,
            attempt: 0,
            opened_at: None,
            connections: 0,
            user_closed: false,
            rooms: Rooms::default(),
            rng,
            events: VecDeque::new(),
        };
        s.handle_timeout(now);
        s
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// True while a connection is open (messages can be sent).
    pub fn is_open(&self) -> bool {
        self.conn.as_ref().is_some_and(ClientConn::is_open)
    }

    /// True once the session will never connect again and its last
    /// connection is gone.
    pub fn is_stopped(&self) -> bool {
        self.state == State::Stopped && self.conn.is_none()
    }

    /// The rooms and their positions.
    pub fn rooms(&self) -> &Rooms {
        &self.rooms
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// True once per connection: the driver must open a socket now.
    pub fn take_connect(&mut self) -> bool {
        std::mem::take(&mut self.connect_pending)
    }

    /// True when the current connection is over: the driver writes what it
    /// can of `pending_output`, drops the socket and calls
    /// [`Session::release_conn`].
    pub fn conn_finished(&self) -> bool {
        self.conn.as_ref().is_some_and(ClientConn::is_closed)
    }

    /// The driver dropped the socket of a finished connection.
    pub fn release_conn(&mut self) {
        if self.conn_finished() {
            self.conn = None;
            self.connect_pending = false;
        }
    }

    /// Bytes for the socket.
    pub fn pending_output(&self) -> &[u8] {
        self.conn.as_ref().map_or(&[], ClientConn::pending_output)
    }

    /// `n` bytes of the output were written.
    pub fn consume_output(&mut self, n: usize) {
        if let Some(c) = &mut self.conn {
            c.consume_output(n);
        }
    }

    /// When `handle_timeout` is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.state, self.conn.as_ref().filter(|c| !c.is_closed())) {
            (_, Some(c)) => c.poll_timeout(),
            (State::Waiting(at), None) => Some(at),
            _ => None,
        }
    }

    /// Bytes from the socket.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if let Some(c) = &mut self.conn {
            c.handle_input(bytes, now);
        }
        self.drain(now);
    }

    /// The socket reached EOF.
    pub fn handle_eof(&mut self, now: Instant) {
        if let Some(c) = &mut self.conn {
            c.handle_eof(now);
        }
        self.drain(now);
    }

    /// Connecting, reading or writing failed.
    pub fn handle_io_error(&mut self, error: String, now: Instant) {
        if let Some(c) = &mut self.conn {
            c.handle_io_error(error);
        }
        self.drain(now);
    }

    /// Timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(c) = self.conn.as_mut().filter(|c| !c.is_closed()) {
            c.handle_timeout(now);
            self.drain(now);
            return;
        }
        if let State::Waiting(at) = self.state {
            if now >= at {
                self.start_connection(now);
            }
        }
    }

    fn start_connection(&mut self, now: Instant) {
        let (url, headers) = self.cfg.request_parts();
        let key = new_key(self.rng.bytes16());
        self.conn = Some(ClientConn::new(&url, key, &headers, self.cfg.conn.clone(), now));
        self.connect_pending = true;
        self.state = State::Connected;
    }

    /// Sends a text message (not pub/sub-aware).
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.conn.as_mut().ok_or(SendError::NotOpen)?.send_text(text)
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<(), SendError> {
        self.conn.as_mut().ok_or(SendError::NotOpen)?.send_binary(data)
    }

    /// Joins `room` (turns pub/sub mode on): subscribed now if a connection
    /// is open, and on every later connection, with its last position.
    pub fn subscribe(&mut self, room: &str) {
        self.pubsub = true;
        if self.rooms.add(room) && self.is_open() {
            if let Some(req) = self.rooms.subscribe_request(room) {
                let _ = self.send_text(&req);
            }
        }
    }

    /// Leaves `room`.
    pub fn unsubscribe(&mut self, room: &str) {
        if let Some(req) = self.rooms.remove(room) {
            if self.is_open() {
                let _ = self.send_text(&req);
            }
        }
    }

    /// Publishes `data` (JSON) to `room`, fire-and-forget (only a refusal
    /// is answered, with an `error` message).
    pub fn publish(&mut self, room: &str, data: &RawValue) -> Result<(), SendError> {
        self.send_text(&Rooms::publish_request(room, data, None))
    }

    /// Publishes with request `id`: the server answers with an `ack` (or an
    /// `error`) carrying it, passed on as an [`Event::Message`].
    pub fn publish_with_id(
        &mut self,
        room: &str,
        data: &RawValue,
        id: &str,
    ) -> Result<(), SendError> {
        self.send_text(&Rooms::publish_request(room, data, Some(id)))
    }

    /// Drops the connection at once, without a close frame, as if the
    /// network failed; the reconnect policy then applies (a way to test
    /// recovery, or to move to a fresh connection).
    pub fn abort(&mut self, now: Instant) {
        if let Some(c) = self.conn.as_mut().filter(|c| !c.is_closed()) {
            c.handle_io_error("aborted by the application".into());
            self.drain(now);
        }
    }

    /// Closes with `code` and `reason` and stops reconnecting.
    pub fn close(&mut self, code: u16, reason: &str, now: Instant) {
        self.user_closed = true;
        if let Some(c) = self.conn.as_mut().filter(|c| !c.is_closed()) {
            c.close(code, reason, now);
            self.drain(now);
        } else if self.state != State::Stopped {
            self.state = State::Stopped;
            self.events.push_back(Event::Disconnected {
                reason: Ending::ClientClosed { code },
                next: Next::Stop(Stop::ByUser),
            });
        }
    }

    /// Turns the connection's events into session events.
    fn drain(&mut self, now: Instant) {
        while let Some(ev) = self.conn.as_mut().and_then(ClientConn::poll_event) {
            match ev {
                ConnEvent::Open => {
                    self.connections += 1;
                    self.opened_at = Some(now);
                    self.events.push_back(Event::Connected { count: self.connections });
                    if self.pubsub {
                        for req in self.rooms.resubscribe_all() {
                            let _ = self.send_text(&req);
                        }
                    }
                }
                ConnEvent::Message(Incoming::Text(t)) if self.pubsub => self.sort(t),
                ConnEvent::Message(m) => self.events.push_back(Event::Message(m)),
                ConnEvent::Closed(ending) => self.ended(ending, now),
            }
        }
    }

    fn sort(&mut self, text: String) {
        match self.rooms.handle_text(&text) {
            Sorted::Delivery(d) => self.events.push_back(Event::Delivery(d)),
            Sorted::Duplicate => {}
            Sorted::Other => self.events.push_back(Event::Message(Incoming::Text(text))),
            Sorted::Ack { room, outcome } => self.events.push_back(match outcome {
                AckOutcome::Subscribed { .. } => Event::Subscribed { room },
                AckOutcome::Recovered => Event::Recovered { room },
                AckOutcome::NotRecovered { offset, epoch } => {
                    Event::NotRecovered { room, offset, epoch }
                }
                AckOutcome::Refused { code, message } => {
                    Event::Error(format!("subscribe to {room} refused: {code}: {message}"))
                }
            }),
        }
    }

    fn ended(&mut self, ending: Ending, now: Instant) {
        self.rooms.disconnected();
        if let Some(opened) = self.opened_at.take() {
            let reset = self.cfg.reconnect.as_ref().is_none_or(|b| now - opened >= b.reset_after);
            if reset {
                self.attempt = 0;
            }
        }
        let next = self.next_after(&ending, now);
        if let Next::Stop(_) = next {
            self.state = State::Stopped;
        }
        self.events.push_back(Event::Disconnected { reason: ending, next });
    }

    fn next_after(&mut self, ending: &Ending, now: Instant) -> Next {
        if self.user_closed {
            return Next::Stop(Stop::ByUser);
        }
        if let Some(why) = ending.refusal() {
            return Next::Stop(Stop::Refused(why));
        }
        let Some(backoff) = self.cfg.reconnect.clone() else {
            return Next::Stop(Stop::NoReconnect);
        };
        if backoff.max_attempts.is_some_and(|max| self.attempt >= max) {
            return Next::Stop(Stop::GaveUp { attempts: self.attempt });
        }
        let delay = backoff.delay(self.attempt, &mut self.rng);
        self.attempt = self.attempt.saturating_add(1);
        self.state = State::Waiting(now + delay);
        Next::Retry(delay)
    }
}

#[cfg(test)]
mod tests;

//! [`Client`]: one [`Session`] on its own [`Driver`], with blocking calls,
//! for scripts and tests. No background thread: the loop runs inside
//! [`Client::next_event`] and the other calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::value::RawValue;

use super::conn::SendError;
use super::driver::{Driver, SessionId};
use super::session::Session;
use super::{ClientConfig, Ending, Event, Next};

/// Why a blocking call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The poll loop failed.
    #[error("poll: {0}")]
    Io(#[from] std::io::Error),
    /// The first connection could not be made, and no retry follows.
    #[error("{0}")]
    Connect(Ending),
    /// Nothing happened in time.
    #[error("timed out")]
    Timeout,
    /// No open connection.
    #[error(transparent)]
    NotOpen(#[from] SendError),
    /// Publish data that is not JSON.
    #[error("data is not JSON: {0}")]
    BadJson(serde_json::Error),
}

/// A blocking client (see the module docs).
pub struct Client {
    driver: Driver,
    id: SessionId,
}

impl Client {
    /// Starts connecting and returns at once; events come from
    /// [`Client::next_event`].
    pub fn start(cfg: ClientConfig) -> Result<Client, ClientError> {
        let mut driver = Driver::new()?;
        let id = driver.add(Arc::new(cfg));
        Ok(Client { driver, id })
    }

    /// Connects and waits up to `timeout` for the first connection to open
    /// (events before it, such as failed attempts while reconnecting, are
    /// dropped). Fails if the session stops first.
    pub fn connect(cfg: ClientConfig, timeout: Duration) -> Result<Client, ClientError> {
        let mut c = Client::start(cfg)?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match c.next_event(left) {
                Some(Event::Connected { .. }) => return Ok(c),
                Some(Event::Disconnected { reason, next: Next::Stop(_) }) => {
                    return Err(ClientError::Connect(reason))
                }
                Some(_) => {}
                None => return Err(ClientError::Timeout),
            }
        }
    }

    /// The next event, waiting up to `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((_, ev)) = self.driver.next_event() {
                return Some(ev);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            if self.session().is_stopped() {
                return None;
            }
            if self.driver.turn(Some(left)).is_err() {
                return None;
            }
        }
    }

    /// The session (state, rooms and positions).
    pub fn session(&self) -> &Session {
        self.driver.session(self.id).expect("bug: the client's session is gone")
    }

    fn with<R>(&mut self, f: impl FnOnce(&mut Session, Instant) -> R) -> R {
        self.driver.with_session(self.id, f).expect("bug: the client's session is gone")
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), ClientError> {
        Ok(self.with(|s, _| s.send_text(text))?)
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<(), ClientError> {
        let data = data.into();
        Ok(self.with(|s, _| s.send_binary(data))?)
    }

    /// Joins `room` (now and after every reconnect).
    pub fn subscribe(&mut self, room: &str) {
        self.with(|s, _| s.subscribe(room))
    }

    /// Leaves `room`.
    pub fn unsubscribe(&mut self, room: &str) {
        self.with(|s, _| s.unsubscribe(room))
    }

    /// Publishes `data`, a JSON text, to `room`.
    pub fn publish(&mut self, room: &str, data: &str) -> Result<(), ClientError> {
        let data: Box<RawValue> = serde_json::from_str(data).map_err(ClientError::BadJson)?;
        Ok(self.with(|s, _| s.publish(room, &data))?)
    }

    /// Closes with `code` and waits up to `timeout` for the close handshake;
    /// returns how the connection ended if it did in time.
    pub fn close(&mut self, code: u16, timeout: Duration) -> Option<Ending> {
        self.with(|s, now| s.close(code, "", now));
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.next_event(left)? {
                Event::Disconnected { reason, next: Next::Stop(_) } => return Some(reason),
                _ => continue,
            }
        }
    }

    /// Drops the connection without a close frame (see [`Session::abort`]).
    pub fn abort(&mut self) {
        self.with(|s, now| s.abort(now))
    }

    /// The driver, to reach its waker.
    pub fn driver_mut(&mut self) -> &mut Driver {
        &mut self.driver
    }
}

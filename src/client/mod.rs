//! A WebSocket client for wsedge and any RFC 6455 server: bots, CLI tools
//! (`wsedge-client`), services and load tests.
//!
//! Layers, each usable on its own:
//! - [`url`], [`handshake`]: the upgrade request the client writes and the
//!   101 it checks (pure).
//! - [`conn::ClientConn`]: one connection in the client role, sans-IO
//!   (bytes and `now` in; bytes, events and deadlines out): tungstenite
//!   frames over an in-memory stream, masking, ping/pong, liveness, the
//!   close handshake.
//! - [`session::Session`]: a logical client that outlives connections:
//!   reconnect with [`backoff::Backoff`] (full jitter), "do not come back"
//!   close codes, resubscribe and recovery of pub/sub rooms
//!   ([`pubsub::Rooms`]), typed [`Event`]s. Also sans-IO.
//! - [`driver::Driver`]: a mio loop that drives any number of sessions over
//!   TCP or TLS (rustls), the only part that touches sockets.
//! - [`blocking::Client`]: one session on its own driver, with blocking
//!   calls, for scripts and tests.
//!
//! Nothing here touches the server's modules; the server's
//! [`crate::handshake::accept_key`] is the one shared function.

pub mod backoff;
pub mod blocking;
pub mod conn;
pub mod driver;
pub mod handshake;
pub mod pubsub;
pub mod session;
pub mod tls;
pub mod url;

use std::sync::Arc;
use std::time::Duration;

pub use backoff::Backoff;
pub use blocking::Client;
pub use conn::{ConnSettings, Ending, Incoming};
pub use pubsub::Delivery;
pub use session::Session;
pub use url::WsUrl;

/// Where a credential travels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialIn {
    /// `Authorization: Bearer TOKEN`.
    Header,
    /// A query parameter with this name (wsedge's default: `token`).
    Query(String),
    /// A cookie with this name (wsedge's default: `wsedge_token`).
    Cookie(String),
}

/// Everything a client needs to connect, reconnect and subscribe.
#[derive(Clone)]
pub struct ClientConfig {
    /// Where to connect.
    pub url: WsUrl,
    /// Extra request headers (name, value), sent as given.
    pub headers: Vec<(String, String)>,
    /// A credential (JWT or API key) and where to put it.
    pub credential: Option<(String, CredentialIn)>,
    /// The `Origin` header, if any.
    pub origin: Option<String>,
    /// TLS for `wss://`; `None` builds one trusting the system's roots
    /// ([`tls::client_config`]) when the first `wss://` connection starts.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Connect to this address instead of resolving the URL's host (the
    /// `Host` header and TLS name still come from the URL), like curl's
    /// `--connect-to`.
    pub connect_to: Option<std::net::SocketAddr>,
    /// Timers and limits of each connection.
    pub conn: ConnSettings,
    /// Reconnect policy; `None` (the default): one connection only.
    pub reconnect: Option<Backoff>,
    /// Speak wsedge pub/sub: sort deliveries and our subscribe acks out of
    /// text messages (dropping duplicates) and resubscribe after a
    /// reconnect. Set by [`Session::subscribe`] too.
    pub pubsub: bool,
}

/// Never prints the credential.
impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url.to_string())
            .field("headers", &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .field("credential", &self.credential.as_ref().map(|(_, place)| place))
            .field("origin", &self.origin)
            .field("tls", &self.tls.is_some())
            .field("connect_to", &self.connect_to)
            .field("conn", &self.conn)
            .field("reconnect", &self.reconnect)
            .field("pubsub", &self.pubsub)
            .finish()
    }
}

impl ClientConfig {
    /// Defaults for `url`: no extra headers or credential, no reconnect.
    pub fn new(url: WsUrl) -> ClientConfig {
        ClientConfig {
            url,
            headers: Vec::new(),
            credential: None,
            origin: None,
            tls: None,
            connect_to: None,
            conn: ConnSettings::default(),
            reconnect: None,
            pubsub: false,
        }
    }

    /// The request target and header lines for a connection.
    pub(crate) fn request_parts(&self) -> (WsUrl, Vec<(String, String)>) {
        let mut url = self.url.clone();
        let mut headers = self.headers.clone();
        if let Some(origin) = &self.origin {
            headers.push(("Origin".into(), origin.clone()));
        }
        match &self.credential {
            None => {}
            Some((token, CredentialIn::Header)) => {
                headers.push(("Authorization".into(), format!("Bearer {token}")))
            }
            Some((token, CredentialIn::Query(name))) => url = url.with_query_param(name, token),
            Some((token, CredentialIn::Cookie(name))) => {
                headers.push(("Cookie".into(), format!("{name}={token}")))
            }
        }
        (url, headers)
    }
}

/// Why a session will not connect again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The user closed it.
    ByUser,
    /// Reconnecting is off.
    NoReconnect,
    /// `max_attempts` consecutive attempts failed.
    GaveUp {
        /// Attempts made.
        attempts: u32,
    },
    /// The server said not to come back: close code 1008 (policy) or
    /// 4000-4999 (application, e.g. auth), or an HTTP 401/403 refusal.
    Refused(String),
}

/// What happens after a disconnect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// The next attempt starts after this delay.
    Retry(Duration),
    /// No more attempts.
    Stop(Stop),
}

/// What a session reports to the application.
#[derive(Clone, Debug)]
pub enum Event {
    /// A connection is open (`count`: 1 for the first, then one more per
    /// reconnect).
    Connected {
        /// Connections opened so far, this one included.
        count: u32,
    },
    /// A connection ended, or an attempt failed.
    Disconnected {
        /// Why.
        reason: Ending,
        /// What happens next.
        next: Next,
    },
    /// A data message (text that is not pub/sub traffic, or binary).
    Message(Incoming),
    /// A pub/sub delivery, never a duplicate.
    Delivery(Delivery),
    /// A room's first subscribe was acked.
    Subscribed {
        /// The room.
        room: String,
    },
    /// After a reconnect, a room resumed where it left off: the messages
    /// missed follow in order.
    Recovered {
        /// The room.
        room: String,
    },
    /// After a reconnect, a room could not resume (no history, or not
    /// enough of it): messages may have been missed; refetch.
    NotRecovered {
        /// The room.
        room: String,
        /// Where the room continues: its offset when the subscription took
        /// effect (deliveries follow from `offset + 1`); `None` from a
        /// server without history.
        offset: Option<u64>,
        /// The room's epoch (`None` without history).
        epoch: Option<String>,
    },
    /// Something failed that does not end the connection (a subscribe the
    /// server refused).
    Error(String),
}

impl Ending {
    /// Whether this ending tells the client not to reconnect, and why.
    pub fn refusal(&self) -> Option<String> {
        match self {
            Ending::ServerClosed { code, reason }
                if *code == 1008 || (4000..=4999).contains(code) =>
            {
                Some(format!("server closed with {code} {reason:?}: not reconnecting"))
            }
            Ending::Handshake(handshake::ResponseError::Refused { status: 401 | 403, .. }) => {
                Some(format!("{self}: not reconnecting"))
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Handshake(e) => write!(f, "{e}"),
            Ending::HandshakeTimeout => write!(f, "no answer to the upgrade in time"),
            Ending::ServerClosed { code, reason } if reason.is_empty() => {
                write!(f, "closed by the server ({code})")
            }
            Ending::ServerClosed { code, reason } => {
                write!(f, "closed by the server ({code} {reason})")
            }
            Ending::ClientClosed { code } => write!(f, "closed by us ({code})"),
            Ending::Lost => write!(f, "connection lost (no close frame)"),
            Ending::Timeout => write!(f, "nothing received for too long (liveness timeout)"),
            Ending::Protocol { code, detail } => write!(f, "protocol error ({code}): {detail}"),
            Ending::Io(e) => write!(f, "{e}"),
        }
    }
}

//! Every way a connection ends, in one table: [`CloseCause`] names the
//! cause, and [`CloseCause::row`] maps it to the metric label and to the
//! close frame (code and reason text) the server sends for it, the way
//! rustls maps each error to its alert. Tungstenite's read errors map to a
//! cause in one place too (`From<&tungstenite::Error>`), with no unnamed
//! catch-all. Must not touch sockets or the clock.

use tungstenite::error::Error as WsError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;

/// Why a connection ended. Every close is counted under exactly one cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseCause {
    /// The client started the close handshake.
    ClientClose,
    /// The TCP connection ended without a close handshake.
    ClientVanished,
    /// No bytes from the client within the dead-client deadline (close 1001).
    Timeout,
    /// No message within the idle timeout (close 1000).
    IdleTimeout,
    /// The upgrade request did not complete within its deadline.
    HandshakeTimeout,
    /// The upgrade request was refused with an HTTP status.
    HandshakeRefused,
    /// A plain HTTP request was answered (not an upgrade).
    HttpServed,
    /// The write queue overflowed (close 1008) or stalled (no close frame:
    /// the client is not reading).
    SlowConsumer,
    /// The client broke RFC 6455 (close 1002).
    ProtocolError,
    /// Invalid UTF-8 in a text message or close reason (close 1007).
    InvalidUtf8,
    /// A compressed message that is not valid DEFLATE data (close 1007).
    BadCompressedData,
    /// A frame or message over the configured limit (close 1009).
    MessageTooBig,
    /// Over the per-connection rate limits too often (close 1008).
    RateLimited,
    /// Refused at the handshake by authentication, Origin or per-IP limits.
    AuthRefused,
    /// The server is shutting down (close 1001).
    Shutdown,
    /// A socket error other than a clean end of stream.
    IoError,
    /// Tungstenite reported an error the in-memory stream cannot cause (a
    /// bug, not the client's doing): close 1011.
    Internal,
}

/// One row of the close-cause table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseRow {
    /// The label in logs and metrics (`reason="..."`).
    pub label: &'static str,
    /// The close frame the server sends for this cause (code and reason
    /// text), or `None` when the server chooses no close frame: the peer
    /// already closed or vanished, the connection never upgraded, or the
    /// socket failed.
    pub frame: Option<(CloseCode, &'static str)>,
}

impl CloseCause {
    /// Every cause, in a stable order (the metrics label order).
    pub const ALL: [CloseCause; 17] = [
        CloseCause::ClientClose,
        CloseCause::ClientVanished,
        CloseCause::Timeout,
        CloseCause::IdleTimeout,
        CloseCause::HandshakeTimeout,
        CloseCause::HandshakeRefused,
        CloseCause::HttpServed,
        CloseCause::SlowConsumer,
        CloseCause::ProtocolError,
        CloseCause::InvalidUtf8,
        CloseCause::BadCompressedData,
        CloseCause::MessageTooBig,
        CloseCause::RateLimited,
        CloseCause::AuthRefused,
        CloseCause::Shutdown,
        CloseCause::IoError,
        CloseCause::Internal,
    ];

    /// The table: this cause's metric label and close frame.
    pub const fn row(self) -> CloseRow {
        use CloseCause::*;
        let (label, frame) = match self {
            ClientClose => ("client_close", None),
            ClientVanished => ("client_vanished", None),
            Timeout => ("timeout", Some((CloseCode::Away, "no response to ping"))),
            IdleTimeout => ("idle_timeout", Some((CloseCode::Normal, "idle timeout"))),
            HandshakeTimeout => ("handshake_timeout", None),
            HandshakeRefused => ("handshake_refused", None),
            HttpServed => ("http_served", None),
            SlowConsumer => ("slow_consumer", Some((CloseCode::Policy, "slow consumer"))),
            ProtocolError => ("protocol_error", Some((CloseCode::Protocol, "protocol error"))),
            InvalidUtf8 => ("invalid_utf8", Some((CloseCode::Invalid, "invalid UTF-8"))),
            BadCompressedData => {
                ("bad_compressed_data", Some((CloseCode::Invalid, "invalid compressed data")))
            }
            MessageTooBig => ("message_too_big", Some((CloseCode::Size, "message too big"))),
            RateLimited => ("rate_limited", Some((CloseCode::Policy, "rate limited"))),
            AuthRefused => ("auth_refused", None),
            Shutdown => ("shutdown", Some((CloseCode::Away, "server shutting down"))),
            IoError => ("io_error", None),
            Internal => ("internal_error", Some((CloseCode::Error, "internal error"))),
        };
        CloseRow { label, frame }
    }

    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        self.row().label
    }

    /// The close frame the server sends for this cause, if it chooses one.
    pub fn close_frame(self) -> Option<CloseFrame> {
        self.row().frame.map(|(code, reason)| CloseFrame { code, reason: reason.into() })
    }

    /// Position in [`CloseCause::ALL`] (the metrics slot).
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl From<&WsError> for CloseCause {
    /// The cause for an error from tungstenite's `read` over the in-memory
    /// stream. `ConnectionClosed`, `AlreadyClosed` and `WouldBlock` are the
    /// normal ends of a read and handled before this; they map here only
    /// so that no error is left without a name.
    fn from(e: &WsError) -> CloseCause {
        match e {
            WsError::Utf8(_) => CloseCause::InvalidUtf8,
            WsError::Capacity(_) => CloseCause::MessageTooBig,
            WsError::Protocol(_) => CloseCause::ProtocolError,
            WsError::ConnectionClosed | WsError::AlreadyClosed => CloseCause::ClientClose,
            // The stream only ever fails a read with `WouldBlock` and never
            // fails a write, so tungstenite's write buffer never fills.
            WsError::Io(_) | WsError::WriteBufferFull(_) => CloseCause::Internal,
            // TLS, URL and attack errors come from tungstenite's client and
            // handshake code, which never runs here.
            WsError::Tls(_) | WsError::Url(_) | WsError::AttackAttempt => CloseCause::Internal,
            // `Http` and `HttpFormat` exist only with tungstenite's
            // `handshake` feature (on in dev builds); they too come from the
            // handshake code. Without the feature this arm is unreachable.
            #[allow(unreachable_patterns)]
            _ => CloseCause::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Codes an endpoint may put in a close frame (RFC 6455 section 7.4):
    /// 1004, 1005, 1006 and 1015 are reserved, 1012-1014 are IANA-registered
    /// later and fine, 3000-4999 are for libraries and applications.
    fn sendable(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    #[test]
    fn every_cause_has_a_unique_label_a_valid_code_and_its_slot() {
        let mut labels = HashSet::new();
        for (i, cause) in CloseCause::ALL.into_iter().enumerate() {
            assert_eq!(cause.index(), i, "{cause:?} is out of place in ALL");
            let row = cause.row();
            assert!(labels.insert(row.label), "label {} used twice", row.label);
            assert!(
                !row.label.is_empty()
                    && row
                        .label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "label {:?} is not a plain metric label",
                row.label
            );
            if let Some((code, reason)) = row.frame {
                assert!(sendable(u16::from(code)), "{cause:?} sends reserved code {code}");
                // A control frame carries at most 125 bytes: 2 of code, the rest text.
                assert!(!reason.is_empty() && reason.len() <= 123, "{cause:?}: reason {reason:?}");
            }
        }
    }

    #[test]
    fn clients_see_the_same_codes_and_labels_as_before() {
        let frame = |c: CloseCause| c.row().frame.map(|(code, r)| (u16::from(code), r));
        assert_eq!(frame(CloseCause::Timeout), Some((1001, "no response to ping")));
        assert_eq!(frame(CloseCause::IdleTimeout), Some((1000, "idle timeout")));
        assert_eq!(frame(CloseCause::SlowConsumer), Some((1008, "slow consumer")));
        assert_eq!(frame(CloseCause::ProtocolError), Some((1002, "protocol error")));
        assert_eq!(frame(CloseCause::InvalidUtf8), Some((1007, "invalid UTF-8")));
        assert_eq!(frame(CloseCause::MessageTooBig), Some((1009, "message too big")));
        assert_eq!(frame(CloseCause::RateLimited), Some((1008, "rate limited")));
        assert_eq!(frame(CloseCause::Shutdown), Some((1001, "server shutting down")));
        assert_eq!(frame(CloseCause::Internal), Some((1011, "internal error")));
        assert_eq!(frame(CloseCause::ClientClose), None, "the reply echoes the client's frame");
        assert_eq!(CloseCause::IoError.as_str(), "io_error");
        assert_eq!(CloseCause::ClientVanished.as_str(), "client_vanished");
    }

    #[test]
    fn tungstenite_errors_map_to_named_causes() {
        use tungstenite::error::{CapacityError, ProtocolError};
        let cause = |e: WsError| CloseCause::from(&e);
        assert_eq!(cause(WsError::Utf8("x".into())), CloseCause::InvalidUtf8);
        let too_big = CapacityError::MessageTooLong { size: 2, max_size: 1 };
        assert_eq!(cause(WsError::Capacity(too_big)), CloseCause::MessageTooBig);
        let bad = ProtocolError::NonZeroReservedBits;
        assert_eq!(cause(WsError::Protocol(bad)), CloseCause::ProtocolError);
        assert_eq!(cause(WsError::AttackAttempt), CloseCause::Internal);
        assert_eq!(cause(std::io::Error::other("x").into()), CloseCause::Internal);
    }
}

//! Per-worker counters. Each worker owns one [`Stats`] and writes it without
//! atomics or locks; readers merge snapshots (see the metrics endpoint).

/// Why a connection ended. Every close is counted under exactly one reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The client started the close handshake.
    ClientClose,
    /// The TCP connection ended without a close handshake.
    ClientVanished,
    /// No bytes from the client within the dead-client deadline.
    Timeout,
    /// No message within the idle timeout.
    IdleTimeout,
    /// The upgrade request did not complete within its deadline.
    HandshakeTimeout,
    /// The upgrade request was refused with an HTTP status.
    HandshakeRefused,
    /// A plain HTTP request was answered (not an upgrade).
    HttpServed,
    /// The write queue overflowed or stalled.
    SlowConsumer,
    /// The client broke RFC 6455 (close 1002).
    ProtocolError,
    /// Invalid UTF-8 in a text message or close reason (close 1007).
    InvalidUtf8,
    /// A frame or message over the configured limit (close 1009).
    MessageTooBig,
    /// The server is shutting down.
    Shutdown,
    /// A socket error other than a clean end of stream.
    IoError,
}

impl CloseReason {
    /// Every reason, in a stable order (the metrics label order).
    pub const ALL: [CloseReason; 13] = [
        CloseReason::ClientClose,
        CloseReason::ClientVanished,
        CloseReason::Timeout,
        CloseReason::IdleTimeout,
        CloseReason::HandshakeTimeout,
        CloseReason::HandshakeRefused,
        CloseReason::HttpServed,
        CloseReason::SlowConsumer,
        CloseReason::ProtocolError,
        CloseReason::InvalidUtf8,
        CloseReason::MessageTooBig,
        CloseReason::Shutdown,
        CloseReason::IoError,
    ];

    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClose => "client_close",
            CloseReason::ClientVanished => "client_vanished",
            CloseReason::Timeout => "timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::HandshakeRefused => "handshake_refused",
            CloseReason::HttpServed => "http_served",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::InvalidUtf8 => "invalid_utf8",
            CloseReason::MessageTooBig => "message_too_big",
            CloseReason::Shutdown => "shutdown",
            CloseReason::IoError => "io_error",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// One worker's counters.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// Upgrades completed.
    pub upgraded: u64,
    /// Connections currently held.
    pub open: u64,
    /// Messages received (whole, after reassembly).
    pub msgs_in: u64,
    /// Messages queued for sending.
    pub msgs_out: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes queued for sending.
    pub bytes_out: u64,
    /// Messages dropped by the slow-consumer policy `drop`.
    pub dropped: u64,
    /// Accepts that failed for lack of descriptors.
    pub accept_emfile: u64,
    /// Frames queued to subscribers by room fan-out.
    pub deliveries: u64,
    /// Application requests answered with an `error`.
    pub requests_refused: u64,
    /// Gauge, filled in snapshots: rooms with members on this worker.
    pub rooms: u64,
    /// Gauge, filled in snapshots: room memberships on this worker.
    pub subscriptions: u64,
    /// Gauge, filled in snapshots: bytes queued for clients, not yet written.
    pub queued_bytes: u64,
    closes: [u64; CloseReason::ALL.len()],
}

impl Stats {
    /// Counts one close.
    pub fn count_close(&mut self, reason: CloseReason) {
        self.closes[reason.index()] += 1;
    }

    /// Closes counted under `reason`.
    pub fn closes(&self, reason: CloseReason) -> u64 {
        self.closes[reason.index()]
    }

    /// Adds `other` into `self` (for merging worker snapshots).
    pub fn merge(&mut self, other: &Stats) {
        self.accepted += other.accepted;
        self.upgraded += other.upgraded;
        self.open += other.open;
        self.msgs_in += other.msgs_in;
        self.msgs_out += other.msgs_out;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.dropped += other.dropped;
        self.accept_emfile += other.accept_emfile;
        self.deliveries += other.deliveries;
        self.requests_refused += other.requests_refused;
        self.rooms += other.rooms;
        self.subscriptions += other.subscriptions;
        self.queued_bytes += other.queued_bytes;
        for (a, b) in self.closes.iter_mut().zip(other.closes.iter()) {
            *a += b;
        }
    }
}

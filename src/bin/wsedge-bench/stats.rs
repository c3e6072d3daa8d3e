//! What a worker counts: errors by kind (with the first message of each),
//! handshakes, echoes, latency histograms and syscalls; merged across
//! workers at the end of a run.

use hdrhistogram::Histogram;

/// Highest latency a histogram records, microseconds (60 s).
const HIST_MAX_US: u64 = 60_000_000;

/// Nanoseconds to histogram microseconds, clamped to the histogram range.
pub fn micros(ns: u64) -> u64 {
    (ns / 1000).clamp(1, HIST_MAX_US)
}

fn new_hist() -> Result<Histogram<u64>, String> {
    Histogram::<u64>::new_with_bounds(1, HIST_MAX_US, 3)
        .map_err(|e| format!("cannot create histogram: {e:?}"))
}

/// Kinds of error, each counted apart and named in the JSON `error_kinds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrKind {
    ConnectRefused,
    ConnectFailed,
    HandshakeStatus,
    HandshakeAccept,
    HandshakeInvalid,
    HandshakeTimeout,
    EarlyClose,
    Disconnected,
    Protocol,
    SizeMismatch,
    BadPayload,
    CloseTimeout,
    Io,
    /// The server answered a request with an error (pub/sub).
    ServerError,
}

/// Number of [`ErrKind`]s.
pub const NKINDS: usize = 14;

impl ErrKind {
    /// Every kind, in report order.
    pub const ALL: [ErrKind; NKINDS] = [
        ErrKind::ConnectRefused,
        ErrKind::ConnectFailed,
        ErrKind::HandshakeStatus,
        ErrKind::HandshakeAccept,
        ErrKind::HandshakeInvalid,
        ErrKind::HandshakeTimeout,
        ErrKind::EarlyClose,
        ErrKind::Disconnected,
        ErrKind::Protocol,
        ErrKind::SizeMismatch,
        ErrKind::BadPayload,
        ErrKind::CloseTimeout,
        ErrKind::Io,
        ErrKind::ServerError,
    ];

    /// The kind's name in the summary and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            ErrKind::ConnectRefused => "connect_refused",
            ErrKind::ConnectFailed => "connect_failed",
            ErrKind::HandshakeStatus => "handshake_status",
            ErrKind::HandshakeAccept => "handshake_accept",
            ErrKind::HandshakeInvalid => "handshake_invalid",
            ErrKind::HandshakeTimeout => "handshake_timeout",
            ErrKind::EarlyClose => "early_close",
            ErrKind::Disconnected => "disconnected",
            ErrKind::Protocol => "protocol",
            ErrKind::SizeMismatch => "size_mismatch",
            ErrKind::BadPayload => "bad_payload",
            ErrKind::CloseTimeout => "close_timeout",
            ErrKind::Io => "io",
            ErrKind::ServerError => "server_error",
        }
    }
}

/// One worker's counts, then the run's once merged.
pub struct Stats {
    pub errs: [u64; NKINDS],
    pub first: [Option<String>; NKINDS],
    /// Completed handshakes (TCP: established connections).
    pub handshakes: u64,
    /// Handshakes that resumed a TLS session (`--resume`).
    pub resumed: u64,
    /// Attempts that failed before being established.
    pub failed: u64,
    /// Attempts that never resolved because the run ended first.
    pub incomplete: u64,
    /// Echoes counted inside the measurement window, and their payload bytes.
    pub msgs: u64,
    pub bytes: u64,
    /// All echoes received (progress), messages sent.
    pub recv_all: u64,
    pub sent: u64,
    /// Data messages received in idle/connect mode.
    pub other_msgs: u64,
    pub pongs: u64,
    pub close_ok: u64,
    pub close_eof: u64,
    /// Established connections lost to an error before the client closed them.
    pub lost: u64,
    pub lat: Histogram<u64>,
    pub hs_lat: Histogram<u64>,
    /// ns since run start: all attempts resolved / last resolution.
    pub ready_ns: u64,
    pub last_resolved_ns: u64,
    /// Length of the measurement window actually run, seconds.
    pub win_secs: f64,
    /// CPU seconds used by the worker threads, and the busiest thread's
    /// CPU time / wall time.
    pub cpu_s: f64,
    pub busy_max: f64,
    /// Syscall counts: read, write and poll calls.
    pub reads: u64,
    pub writes: u64,
    pub polls: u64,
}

impl Stats {
    pub fn new() -> Result<Stats, String> {
        Ok(Stats {
            errs: [0; NKINDS],
            first: std::array::from_fn(|_| None),
            handshakes: 0,
            resumed: 0,
            failed: 0,
            incomplete: 0,
            msgs: 0,
            bytes: 0,
            recv_all: 0,
            sent: 0,
            other_msgs: 0,
            pongs: 0,
            close_ok: 0,
            close_eof: 0,
            lost: 0,
            lat: new_hist()?,
            hs_lat: new_hist()?,
            ready_ns: 0,
            last_resolved_ns: 0,
            win_secs: 0.0,
            cpu_s: 0.0,
            busy_max: 0.0,
            reads: 0,
            writes: 0,
            polls: 0,
        })
    }

    /// Errors of every kind.
    pub fn errors(&self) -> u64 {
        self.errs.iter().sum()
    }

    /// Adds another worker's counts (maxima for times, first errors kept).
    pub fn merge(&mut self, o: Stats) {
        for i in 0..NKINDS {
            self.errs[i] += o.errs[i];
        }
        for (mine, theirs) in self.first.iter_mut().zip(o.first) {
            if mine.is_none() {
                *mine = theirs;
            }
        }
        self.handshakes += o.handshakes;
        self.resumed += o.resumed;
        self.failed += o.failed;
        self.incomplete += o.incomplete;
        self.msgs += o.msgs;
        self.bytes += o.bytes;
        self.recv_all += o.recv_all;
        self.sent += o.sent;
        self.other_msgs += o.other_msgs;
        self.pongs += o.pongs;
        self.close_ok += o.close_ok;
        self.close_eof += o.close_eof;
        self.lost += o.lost;
        // Same bounds on both sides: addition cannot fail.
        let _ = self.lat.add(&o.lat);
        let _ = self.hs_lat.add(&o.hs_lat);
        self.ready_ns = self.ready_ns.max(o.ready_ns);
        self.last_resolved_ns = self.last_resolved_ns.max(o.last_resolved_ns);
        self.win_secs = self.win_secs.max(o.win_secs);
        self.cpu_s += o.cpu_s;
        self.busy_max = self.busy_max.max(o.busy_max);
        self.reads += o.reads;
        self.writes += o.writes;
        self.polls += o.polls;
    }
}

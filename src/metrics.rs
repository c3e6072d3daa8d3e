//! Per-worker counters. Each worker owns one [`Stats`] and writes it without
//! atomics or locks; readers merge snapshots (see the metrics endpoint).

pub use crate::conn::CloseCause;

/// Upper bounds (milliseconds) of the ping round-trip histogram buckets.
pub const PING_RTT_BOUNDS_MS: [u64; 11] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000];

/// HTTP statuses counted when a request is refused before the upgrade.
pub const REFUSAL_STATUSES: [u16; 12] =
    [400, 401, 403, 404, 405, 408, 411, 413, 426, 429, 431, 503];

/// Why a message left history, in the order of `Stats::history_evictions`.
pub const HISTORY_EVICTION_REASONS: [&str; 3] = ["size", "ttl", "bytes"];

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
    /// Cross-worker queries (presence, metrics) that other workers did not
    /// answer in time.
    pub query_timeouts: u64,
    /// Messages dropped by the per-connection rate limits.
    pub rate_limited: u64,
    /// Channel actions refused by authorization.
    pub forbidden: u64,
    /// Messages compressed for sending (permessage-deflate; a fan-out
    /// frame counts once per worker), filled in snapshots.
    pub compressed: u64,
    /// Deliveries that reused a frame already compressed for the same
    /// fan-out, filled in snapshots.
    pub compressed_reused: u64,
    /// Gauge, filled in snapshots: rooms with members on this worker.
    pub rooms: u64,
    /// Gauge, filled in snapshots: room memberships on this worker.
    pub subscriptions: u64,
    /// Gauge, filled in snapshots: bytes queued for clients, not yet written.
    pub queued_bytes: u64,
    /// Bytes of pub/sub traffic sent to this worker and not yet handled
    /// (gauge).
    pub bus_bytes: u64,
    /// Gauge, filled in snapshots: bytes held by room history.
    pub history_bytes: u64,
    /// Gauge, filled in snapshots: messages held by room history.
    pub history_messages: u64,
    /// Messages evicted from history, by [`HISTORY_EVICTION_REASONS`].
    pub history_evictions: [u64; 3],
    /// Ping round trips: counts per bucket of [`PING_RTT_BOUNDS_MS`] (+Inf last).
    pub ping_rtt_buckets: [u64; PING_RTT_BOUNDS_MS.len() + 1],
    /// Sum of ping round trips, milliseconds.
    pub ping_rtt_sum_ms: u64,
    /// Requests refused before the upgrade, by [`REFUSAL_STATUSES`] (other last).
    pub refused: [u64; REFUSAL_STATUSES.len() + 1],
    /// Cluster: `gap` frames sent to rooms (lost or unrecoverable messages).
    pub backplane_gaps: u64,
    /// Cluster: publishes refused with `overloaded`.
    pub backplane_overloaded: u64,
    closes: [u64; CloseCause::ALL.len()],
}

impl Stats {
    /// Counts one close.
    pub fn count_close(&mut self, reason: CloseCause) {
        self.closes[reason.index()] += 1;
    }

    /// Records one ping round trip.
    pub fn observe_ping_rtt(&mut self, ms: u64) {
        let i =
            PING_RTT_BOUNDS_MS.iter().position(|&b| ms <= b).unwrap_or(PING_RTT_BOUNDS_MS.len());
        self.ping_rtt_buckets[i] += 1;
        self.ping_rtt_sum_ms += ms;
    }

    /// Counts one refusal with HTTP `status`.
    pub fn count_refusal(&mut self, status: u16) {
        let i =
            REFUSAL_STATUSES.iter().position(|&s| s == status).unwrap_or(REFUSAL_STATUSES.len());
        self.refused[i] += 1;
    }

    /// Refusals counted with `status` (statuses outside the list: any other).
    pub fn refusals(&self, status: u16) -> u64 {
        let i =
            REFUSAL_STATUSES.iter().position(|&s| s == status).unwrap_or(REFUSAL_STATUSES.len());
        self.refused[i]
    }

    /// Closes counted under `reason`.
    pub fn closes(&self, reason: CloseCause) -> u64 {
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
        self.compressed += other.compressed;
        self.compressed_reused += other.compressed_reused;
        self.requests_refused += other.requests_refused;
        self.query_timeouts += other.query_timeouts;
        self.rate_limited += other.rate_limited;
        self.forbidden += other.forbidden;
        self.rooms += other.rooms;
        self.subscriptions += other.subscriptions;
        self.queued_bytes += other.queued_bytes;
        self.bus_bytes += other.bus_bytes;
        self.history_bytes += other.history_bytes;
        self.history_messages += other.history_messages;
        for (a, b) in self.history_evictions.iter_mut().zip(other.history_evictions.iter()) {
            *a += b;
        }
        for (a, b) in self.closes.iter_mut().zip(other.closes.iter()) {
            *a += b;
        }
        for (a, b) in self.ping_rtt_buckets.iter_mut().zip(other.ping_rtt_buckets.iter()) {
            *a += b;
        }
        self.ping_rtt_sum_ms += other.ping_rtt_sum_ms;
        self.backplane_gaps += other.backplane_gaps;
        self.backplane_overloaded += other.backplane_overloaded;
        for (a, b) in self.refused.iter_mut().zip(other.refused.iter()) {
            *a += b;
        }
    }
}

/// Process-wide facts read at scrape time.
#[derive(Clone, Debug, Default)]
pub struct ProcessInfo {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Open file descriptors; `None` where the kernel cannot count them
    /// cheaply (see [`open_fds`]), and then the metric is left out.
    pub open_fds: Option<u64>,
    /// True once graceful shutdown has started.
    pub shutting_down: bool,
    /// The cluster backplane, when configured.
    pub backplane: Option<BackplaneInfo>,
}

/// The cluster backplane's state at scrape time.
#[derive(Clone, Copy, Debug, Default)]
pub struct BackplaneInfo {
    /// Both Redis connections are up.
    pub up: bool,
    /// Bytes of commands waiting for Redis.
    pub queued_bytes: u64,
    /// Publishes Redis sequenced for this node.
    pub published: u64,
    /// Messages received from Redis.
    pub received: u64,
    /// Connections made again after a loss.
    pub reconnects: u64,
    /// Publishes Redis did not take, delivered on this node alone.
    pub sent_back: u64,
}

impl ProcessInfo {
    /// Reads this process's RSS and descriptor count from /proc.
    pub fn read(shutting_down: bool) -> ProcessInfo {
        let rss_kib = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        ProcessInfo {
            rss_bytes: rss_kib * 1024,
            open_fds: open_fds(),
            shutting_down,
            backplane: None,
        }
    }
}

/// This process's open descriptors, in O(1): since Linux 6.2 the size that
/// `stat` reports for `/proc/self/fd` is the number of open descriptors.
/// This runs on a worker thread at every scrape, so it must not scan the
/// directory (one entry per descriptor: at a million connections that
/// stalls the loop). Older kernels report size 0; then the count is
/// unavailable (`None`) rather than scanned, and `/metrics` leaves
/// `wsedge_process_open_fds` out.
pub fn open_fds() -> Option<u64> {
    std::fs::metadata("/proc/self/fd").ok().map(|m| m.len()).filter(|&n| n > 0)
}

/// The node dashboard's snapshot (`/dashboard/ws`, one a second): every
/// worker's counters and gauges, closes by reason, the ping round-trip
/// histogram and the process's RSS and descriptors, as one JSON object. The
/// page computes rates from two snapshots.
pub fn dashboard_json(stats: &[Stats], process: &ProcessInfo, unix_ms: u64) -> String {
    use serde_json::{json, Map, Value};
    let mut total = Stats::default();
    for s in stats {
        total.merge(s);
    }
    let workers: Vec<Value> = stats
        .iter()
        .map(|s| {
            json!({
                "open": s.open, "msgs_in": s.msgs_in, "msgs_out": s.msgs_out,
                "bytes_in": s.bytes_in, "bytes_out": s.bytes_out, "deliveries": s.deliveries,
                "queued_bytes": s.queued_bytes, "bus_bytes": s.bus_bytes, "rooms": s.rooms,
                "subscriptions": s.subscriptions, "dropped": s.dropped,
                "rate_limited": s.rate_limited,
            })
        })
        .collect();
    let closes: Map<String, Value> =
        CloseCause::ALL.iter().map(|&r| (r.as_str().to_string(), total.closes(r).into())).collect();
    json!({
        "unix_ms": unix_ms,
        "workers": workers,
        "closes": closes,
        "ping_rtt": {
            "bounds_ms": PING_RTT_BOUNDS_MS,
            "counts": total.ping_rtt_buckets,
            "sum_ms": total.ping_rtt_sum_ms,
        },
        "rss_bytes": process.rss_bytes,
        "open_fds": process.open_fds,
        "shutting_down": process.shutting_down,
    })
    .to_string()
}

/// Renders every worker's counters in the Prometheus text format (0.0.4).
/// Counters are summed over workers; the open-connections gauge is per worker.
pub fn render_prometheus(workers: &[Stats], process: &ProcessInfo) -> String {
    use std::fmt::Write;
    let mut total = Stats::default();
    for w in workers {
        total.merge(w);
    }
    let mut out = String::with_capacity(4096);
    fn metric(out: &mut String, name: &str, kind: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    metric(&mut out, "wsedge_connections_open", "gauge", "Connections held, per worker.");
    let mut body = String::new();
    for (i, w) in workers.iter().enumerate() {
        let _ = writeln!(body, "wsedge_connections_open{{worker=\"{i}\"}} {}", w.open);
    }
    out.push_str(&body);
    metric(
        &mut out,
        "wsedge_bus_queued_bytes",
        "gauge",
        "Pub/sub bytes sent to a worker by the others and not yet handled, per worker.",
    );
    for (i, w) in workers.iter().enumerate() {
        let _ = writeln!(out, "wsedge_bus_queued_bytes{{worker=\"{i}\"}} {}", w.bus_bytes);
    }
    let simple: [(&str, &str, &str, u64); 15] = [
        (
            "wsedge_query_timeouts_total",
            "counter",
            "Cross-worker presence and metrics queries not answered in time.",
            total.query_timeouts,
        ),
        (
            "wsedge_rate_limited_total",
            "counter",
            "Messages dropped by rate limits.",
            total.rate_limited,
        ),
        (
            "wsedge_forbidden_total",
            "counter",
            "Channel actions refused by authorization.",
            total.forbidden,
        ),
        ("wsedge_connections_opened_total", "counter", "TCP connections accepted.", total.accepted),
        ("wsedge_upgrades_total", "counter", "WebSocket upgrades completed.", total.upgraded),
        ("wsedge_messages_in_total", "counter", "Messages received.", total.msgs_in),
        ("wsedge_messages_out_total", "counter", "Messages queued to clients.", total.msgs_out),
        ("wsedge_bytes_in_total", "counter", "Payload bytes received.", total.bytes_in),
        ("wsedge_bytes_out_total", "counter", "Bytes queued to clients.", total.bytes_out),
        ("wsedge_fanout_deliveries_total", "counter", "Room deliveries queued.", total.deliveries),
        (
            "wsedge_dropped_messages_total",
            "counter",
            "Messages dropped by the slow-consumer policy.",
            total.dropped,
        ),
        (
            "wsedge_requests_refused_total",
            "counter",
            "Application requests answered with an error.",
            total.requests_refused,
        ),
        (
            "wsedge_accept_emfile_total",
            "counter",
            "Accepts that failed for lack of descriptors.",
            total.accept_emfile,
        ),
        (
            "wsedge_write_queue_bytes",
            "gauge",
            "Bytes queued for clients, not yet written.",
            total.queued_bytes,
        ),
        ("wsedge_rooms", "gauge", "Rooms with members (summed over workers).", total.rooms),
    ];
    for (name, kind, help, v) in simple {
        metric(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
    metric(
        &mut out,
        "wsedge_compressed_messages_total",
        "counter",
        "Messages compressed for sending (permessage-deflate; once per worker per fan-out).",
    );
    let _ = writeln!(out, "wsedge_compressed_messages_total {}", total.compressed);
    metric(
        &mut out,
        "wsedge_compressed_reused_total",
        "counter",
        "Deliveries that reused a frame already compressed for the same fan-out.",
    );
    let _ = writeln!(out, "wsedge_compressed_reused_total {}", total.compressed_reused);
    metric(&mut out, "wsedge_subscriptions", "gauge", "Room memberships.");
    let _ = writeln!(out, "wsedge_subscriptions {}", total.subscriptions);
    metric(&mut out, "wsedge_history_bytes", "gauge", "Bytes held by room history.");
    let _ = writeln!(out, "wsedge_history_bytes {}", total.history_bytes);
    metric(&mut out, "wsedge_history_messages", "gauge", "Messages held by room history.");
    let _ = writeln!(out, "wsedge_history_messages {}", total.history_messages);
    metric(
        &mut out,
        "wsedge_history_evictions_total",
        "counter",
        "Messages evicted from room history, by reason (size, ttl, bytes: the byte cap).",
    );
    for (reason, n) in HISTORY_EVICTION_REASONS.iter().zip(total.history_evictions) {
        let _ = writeln!(out, "wsedge_history_evictions_total{{reason=\"{reason}\"}} {n}");
    }
    metric(
        &mut out,
        "wsedge_connections_closed_total",
        "counter",
        "Connections closed, by reason.",
    );
    for r in CloseCause::ALL {
        let _ = writeln!(
            out,
            "wsedge_connections_closed_total{{reason=\"{}\"}} {}",
            r.as_str(),
            total.closes(r)
        );
    }
    metric(
        &mut out,
        "wsedge_handshakes_refused_total",
        "counter",
        "Requests refused before the upgrade, by HTTP status.",
    );
    for (i, s) in REFUSAL_STATUSES.iter().enumerate() {
        let _ =
            writeln!(out, "wsedge_handshakes_refused_total{{status=\"{s}\"}} {}", total.refused[i]);
    }
    let _ = writeln!(
        out,
        "wsedge_handshakes_refused_total{{status=\"other\"}} {}",
        total.refused[REFUSAL_STATUSES.len()]
    );
    metric(&mut out, "wsedge_ping_rtt_seconds", "histogram", "Ping to pong round trip.");
    let mut cumulative = 0;
    for (i, b) in PING_RTT_BOUNDS_MS.iter().enumerate() {
        cumulative += total.ping_rtt_buckets[i];
        let _ = writeln!(
            out,
            "wsedge_ping_rtt_seconds_bucket{{le=\"{}\"}} {cumulative}",
            *b as f64 / 1000.0
        );
    }
    cumulative += total.ping_rtt_buckets[PING_RTT_BOUNDS_MS.len()];
    let _ = writeln!(out, "wsedge_ping_rtt_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "wsedge_ping_rtt_seconds_sum {}", total.ping_rtt_sum_ms as f64 / 1000.0);
    let _ = writeln!(out, "wsedge_ping_rtt_seconds_count {cumulative}");
    metric(&mut out, "wsedge_process_resident_memory_bytes", "gauge", "Resident set size.");
    let _ = writeln!(out, "wsedge_process_resident_memory_bytes {}", process.rss_bytes);
    if let Some(fds) = process.open_fds {
        metric(&mut out, "wsedge_process_open_fds", "gauge", "Open file descriptors.");
        let _ = writeln!(out, "wsedge_process_open_fds {fds}");
    }
    metric(&mut out, "wsedge_shutting_down", "gauge", "1 once graceful shutdown has started.");
    let _ = writeln!(out, "wsedge_shutting_down {}", u8::from(process.shutting_down));
    if let Some(b) = process.backplane {
        let rows: [(&str, &str, &str, u64); 8] = [
            ("wsedge_backplane_up", "gauge", "1 while Redis is reachable.", u64::from(b.up)),
            (
                "wsedge_backplane_queued_bytes",
                "gauge",
                "Bytes of publishes and requests waiting for Redis.",
                b.queued_bytes,
            ),
            (
                "wsedge_backplane_published_total",
                "counter",
                "Publishes Redis sequenced for this node.",
                b.published,
            ),
            (
                "wsedge_backplane_received_total",
                "counter",
                "Messages received from Redis.",
                b.received,
            ),
            (
                "wsedge_backplane_reconnects_total",
                "counter",
                "Redis connections made again after a loss.",
                b.reconnects,
            ),
            (
                "wsedge_backplane_sent_back_total",
                "counter",
                "Publishes Redis did not take, delivered on this node alone.",
                b.sent_back,
            ),
            (
                "wsedge_backplane_overloaded_total",
                "counter",
                "Publishes refused with `overloaded` (channel budget).",
                total.backplane_overloaded,
            ),
            (
                "wsedge_backplane_gaps_total",
                "counter",
                "`gap` frames: rooms whose position jumped (messages lost to this node).",
                total.backplane_gaps,
            ),
        ];
        for (name, kind, help, v) in rows {
            metric(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {v}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_sums_workers_and_keeps_per_worker_open() {
        let mut a = Stats { open: 3, msgs_in: 10, ..Stats::default() };
        a.count_close(CloseCause::SlowConsumer);
        a.count_refusal(404);
        a.observe_ping_rtt(3);
        let mut b = Stats { open: 4, msgs_in: 5, ..Stats::default() };
        b.count_close(CloseCause::SlowConsumer);
        b.observe_ping_rtt(2000);
        let text = render_prometheus(&[a, b], &ProcessInfo::default());
        for line in [
            "wsedge_connections_open{worker=\"0\"} 3",
            "wsedge_connections_open{worker=\"1\"} 4",
            "wsedge_messages_in_total 15",
            "wsedge_connections_closed_total{reason=\"slow_consumer\"} 2",
            "wsedge_handshakes_refused_total{status=\"404\"} 1",
            "wsedge_ping_rtt_seconds_bucket{le=\"0.005\"} 1",
            "wsedge_ping_rtt_seconds_bucket{le=\"+Inf\"} 2",
            "wsedge_ping_rtt_seconds_count 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        // Every sample line is `name{labels} value` with a numeric value.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let v = l.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn open_fds_is_left_out_when_unavailable() {
        let text = render_prometheus(&[Stats::default()], &ProcessInfo::default());
        assert!(!text.contains("wsedge_process_open_fds"), "{text}");
        let info = ProcessInfo { open_fds: Some(17), ..ProcessInfo::default() };
        let text = render_prometheus(&[Stats::default()], &info);
        assert!(text.lines().any(|l| l == "wsedge_process_open_fds 17"), "{text}");
    }
}

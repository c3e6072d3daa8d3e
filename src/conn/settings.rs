//! [`Settings`]: what a worker derives once from [`Config`] for all its
//! connections (limits, routes, timers in ticks, rate limits, the
//! authenticator and tungstenite's configuration). Plain data, built once per
//! worker; it owns no state and touches no connection.

use tungstenite::protocol::WebSocketConfig;

use crate::config::{Config, SlowConsumerPolicy};
use crate::handshake::Limits;

/// tungstenite's per-context read chunk. Contexts exist only while a
/// connection is busy, so this costs nothing per idle connection.
pub(super) const CTX_READ_BUFFER: usize = 4096;

/// Settings a worker derives once from [`Config`], in ticks where timed.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Handshake parsing limits.
    pub limits: Limits,
    /// Path of the echo route, if enabled.
    pub echo_path: Option<String>,
    /// Path of the pub/sub route, if enabled.
    pub pubsub_path: Option<String>,
    /// Path of the HTTP publish API, if enabled.
    pub publish_api_path: Option<String>,
    /// Largest publish payload, bytes.
    pub max_data_bytes: usize,
    /// Rooms per connection.
    pub max_rooms: usize,
    /// Subscribers per room per worker.
    pub max_room_members: Option<usize>,
    /// Member ids listed in a presence reply.
    pub presence_max_members: usize,
    /// Room history (the whole node's limits).
    pub history: crate::pubsub::history::HistorySettings,
    /// Serve /metrics, /healthz, /readyz on the main listener.
    pub admin_on_main: bool,
    /// Serve the demo chat at `/` on the main listener.
    pub demo: bool,
    /// Authentication, built once from `[auth]`.
    pub auth: std::sync::Arc<crate::auth::Authenticator>,
    /// Messages per second per connection (0 = off) and burst.
    pub msg_rate: (u32, u32),
    /// Payload bytes per second per connection (0 = off) and burst.
    pub byte_rate: (u32, u32),
    /// Close after this many rate-limit violations (None = never).
    pub max_violations: Option<u32>,
    /// Per-IP connection and handshake-rate limits, shared by all workers.
    pub ip_limiter: Option<std::sync::Arc<crate::ratelimit::IpLimiter>>,
    /// Allowed browser origins (None = any).
    pub allowed_origins: Option<Vec<String>>,
    /// Allow upgrades without an Origin header.
    pub allow_missing_origin: bool,
    /// Subprotocols the server may select.
    pub subprotocols: Vec<String>,
    /// tungstenite configuration for every context.
    pub ws_config: WebSocketConfig,
    /// Largest frame accepted, bytes.
    pub max_frame_bytes: usize,
    /// Handshake deadline, ticks.
    pub handshake_ticks: u64,
    /// Ping after this many quiet ticks.
    pub ping_ticks: u64,
    /// Close after this many quiet ticks.
    pub dead_ticks: u64,
    /// Close after this many ticks without a message (None = off).
    pub idle_ticks: Option<u64>,
    /// Wait for a close reply (or a flush) this many ticks.
    pub close_ticks: u64,
    /// Close a write queue that made no progress for this many ticks.
    pub stall_ticks: u64,
    /// Write queue limit, bytes.
    pub max_queue_bytes: usize,
    /// Stop reading above this many queued bytes.
    pub high_water_bytes: usize,
    /// Overflow policy.
    pub policy: SlowConsumerPolicy,
    /// SO_SNDBUF for client sockets (0 = autotune).
    pub socket_send_buffer: usize,
    /// SO_RCVBUF for client sockets (0 = autotune).
    pub socket_recv_buffer: usize,
    /// permessage-deflate, when enabled.
    pub deflate: Option<DeflateSettings>,
}

/// `[compression]` as connections use it.
#[derive(Clone, Debug)]
pub struct DeflateSettings {
    /// Compress what the server sends from this many payload bytes up.
    pub threshold: usize,
    /// zlib level.
    pub level: u32,
    /// Window asked of clients that offer `client_max_window_bits`.
    pub client_max_window_bits: u8,
    /// Contexts the node may keep for clients with context takeover.
    pub takeover: std::sync::Arc<crate::deflate::Budget>,
}

impl Settings {
    /// Derives settings from `config` for a wheel ticking every `tick_ms`.
    pub fn from_config(config: &Config, tick_ms: u64) -> Settings {
        let ticks = |ms: u64| ms.div_ceil(tick_ms).max(1);
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(CTX_READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(config.websocket.max_message_bytes))
            .max_frame_size(Some(config.websocket.max_frame_bytes));
        Settings {
            limits: Limits {
                max_request_bytes: config.handshake.max_request_bytes,
                ..Limits::default()
            },
            echo_path: Some(config.routes.echo.clone()).filter(|p| !p.is_empty()),
            pubsub_path: Some(config.routes.pubsub.clone()).filter(|p| !p.is_empty()),
            publish_api_path: Some(config.routes.publish_api.clone())
                .filter(|p| !p.is_empty() && config.pubsub.http_publish),
            max_data_bytes: config.pubsub.max_data_bytes,
            max_rooms: config.pubsub.max_rooms_per_connection,
            max_room_members: (config.pubsub.max_subscribers_per_room > 0)
                .then_some(config.pubsub.max_subscribers_per_room),
            presence_max_members: config.pubsub.presence_max_members,
            history: crate::pubsub::history::HistorySettings::from_config(&config.pubsub),
            admin_on_main: config.metrics.enabled && config.metrics.listen.is_empty(),
            demo: config.demo.enabled,
            auth: std::sync::Arc::new(
                crate::auth::Authenticator::new(&config.auth)
                    .expect("bug: the config is validated before settings are built"),
            ),
            ip_limiter: (config.rate_limits.connections_per_ip > 0
                || config.rate_limits.handshakes_per_sec_per_ip > 0)
                .then(|| {
                    std::sync::Arc::new(crate::ratelimit::IpLimiter::new(
                        65_536,
                        config.rate_limits.connections_per_ip,
                        config.rate_limits.handshakes_per_sec_per_ip,
                    ))
                }),
            msg_rate: rate_pair(
                config.rate_limits.messages_per_sec,
                config.rate_limits.messages_burst,
            ),
            byte_rate: rate_pair(config.rate_limits.bytes_per_sec, config.rate_limits.bytes_burst),
            max_violations: (config.rate_limits.action == crate::config::RateLimitAction::Close)
                .then_some(config.rate_limits.max_violations.max(1)),
            allowed_origins: (!config.security.allowed_origins.iter().any(|o| o == "*"))
                .then(|| config.security.allowed_origins.clone()),
            allow_missing_origin: config.security.allow_missing_origin,
            subprotocols: config.websocket.subprotocols.clone(),
            ws_config,
            max_frame_bytes: config.websocket.max_frame_bytes,
            handshake_ticks: ticks(config.handshake.timeout_ms),
            ping_ticks: ticks(config.health.ping_interval_ms),
            dead_ticks: ticks(config.health.dead_client_ms),
            idle_ticks: (config.health.idle_timeout_ms > 0)
                .then(|| ticks(config.health.idle_timeout_ms)),
            close_ticks: ticks(config.health.close_timeout_ms),
            stall_ticks: ticks(config.write_queue.stall_timeout_ms),
            max_queue_bytes: config.write_queue.max_bytes,
            high_water_bytes: config.write_queue.high_water_bytes,
            policy: config.write_queue.slow_consumer,
            socket_send_buffer: config.server.socket_send_buffer_bytes,
            socket_recv_buffer: config.server.socket_recv_buffer_bytes,
            deflate: config.compression.enabled.then(|| DeflateSettings {
                threshold: config.compression.threshold_bytes,
                level: config.compression.level,
                client_max_window_bits: config.compression.client_max_window_bits,
                takeover: crate::deflate::Budget::new(
                    config.compression.context_takeover_connections,
                ),
            }),
        }
    }
}

fn rate_pair(rate: u32, burst: u32) -> (u32, u32) {
    (rate, if burst == 0 { rate } else { burst })
}

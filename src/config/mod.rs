//! Configuration: the [`Config`] tree, its embedded commented default, and
//! validation with errors that name the file, line and field.
//!
//! Pure: this module parses text it is given. Reading files, the environment
//! and command-line flags is the binary's job.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

mod cluster;
mod features;
mod history;

pub use cluster::{redis_url_problem, ClusterConfig};
pub use features::{CompressionConfig, DemoConfig};
pub use history::{HistoryRoomConfig, MAX_HISTORY_SIZE, MAX_HISTORY_TTL_MS};

/// The embedded default configuration file, commented, every field shown.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listening and threads.
    pub server: ServerConfig,
    /// The wss:// listener.
    pub tls: TlsConfig,
    /// Which paths serve which behaviour.
    pub routes: RoutesConfig,
    /// Frame and message limits.
    pub websocket: WebSocketLimits,
    /// Rooms and pub/sub limits.
    pub pubsub: PubSubConfig,
    /// Authentication and channel permissions.
    pub auth: crate::auth::AuthConfig,
    /// Origin checks.
    pub security: SecurityConfig,
    /// Rate limits per connection and per IP.
    pub rate_limits: RateLimitConfig,
    /// Metrics and health endpoints.
    pub metrics: MetricsConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Logging.
    pub log: LogConfig,
    /// Upgrade request limits.
    pub handshake: HandshakeConfig,
    /// Heartbeats and timeouts.
    pub health: HealthConfig,
    /// Per-connection write queues and the slow-consumer policy.
    pub write_queue: WriteQueueConfig,
    /// Several nodes sharing rooms through Redis.
    pub cluster: ClusterConfig,
    /// permessage-deflate.
    pub compression: CompressionConfig,
    /// The demo chat page.
    pub demo: DemoConfig,
}

/// `[server]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the listeners bind to.
    pub listen: SocketAddr,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// SO_SNDBUF per client socket; 0 = kernel autotuning.
    pub socket_send_buffer_bytes: usize,
    /// SO_RCVBUF per client socket; 0 = kernel autotuning.
    pub socket_recv_buffer_bytes: usize,
}

/// `[tls]`
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Address of the TLS listener; empty = none.
    pub listen: String,
    /// PEM certificate chain file.
    pub cert: String,
    /// PEM private key file.
    pub key: String,
    /// Whose cipher suite preference wins.
    pub cipher_order: CipherOrder,
}

/// `[tls] cipher_order`: whose cipher suite preference picks the suite.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CipherOrder {
    /// The server's: AES-128-GCM first (SHA-256 key schedule), then
    /// AES-256-GCM, then ChaCha20-Poly1305.
    #[default]
    Server,
    /// The client's first suite the server supports.
    Client,
}

impl TlsConfig {
    /// The TLS listen address, when one is configured.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }
}

/// `[routes]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoutesConfig {
    /// Path of the echo route; empty disables it.
    pub echo: String,
    /// Path of the pub/sub route; empty disables it.
    pub pubsub: String,
    /// Path of the backend publish API.
    pub publish_api: String,
}

/// `[security]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Allowed browser origins; "*" = any.
    pub allowed_origins: Vec<String>,
    /// Allow requests without Origin.
    pub allow_missing_origin: bool,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig { allowed_origins: vec!["*".into()], allow_missing_origin: true }
    }
}

/// What happens to a client over its message rate limits.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitAction {
    /// Drop and reply `rate_limited`; never close for it.
    Error,
    /// Drop and reply; close with 1008 after `max_violations`.
    Close,
}

/// `[rate_limits]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Messages per second per connection; 0 = off.
    pub messages_per_sec: u32,
    /// Message burst; 0 = same as the rate.
    pub messages_burst: u32,
    /// Payload bytes per second per connection; 0 = off.
    pub bytes_per_sec: u32,
    /// Byte burst; 0 = same as the rate.
    pub bytes_burst: u32,
    /// Action over the limit.
    pub action: RateLimitAction,
    /// Violations before closing (action close).
    pub max_violations: u32,
    /// Concurrent connections per IP; 0 = off.
    pub connections_per_ip: u32,
    /// New connections per second per IP; 0 = off.
    pub handshakes_per_sec_per_ip: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            messages_per_sec: 0,
            messages_burst: 0,
            bytes_per_sec: 0,
            bytes_burst: 0,
            action: RateLimitAction::Close,
            max_violations: 20,
            connections_per_ip: 0,
            handshakes_per_sec_per_ip: 0,
        }
    }
}

/// `[metrics]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve /metrics, /healthz, /readyz.
    pub enabled: bool,
    /// Separate address for them; empty = the main listener.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true, listen: String::new() }
    }
}

impl MetricsConfig {
    /// The separate metrics address, if one is configured.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }
}

/// `[shutdown]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Drain deadline, milliseconds.
    pub drain_timeout_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { drain_timeout_ms: 10_000 }
    }
}

/// `[log]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Summary line interval, milliseconds; 0 = off.
    pub summary_interval_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { summary_interval_ms: 10_000 }
    }
}

/// `[pubsub]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PubSubConfig {
    /// Rooms per connection.
    pub max_rooms_per_connection: usize,
    /// Subscribers per room per worker; 0 = unlimited.
    pub max_subscribers_per_room: usize,
    /// Largest publish/send payload, bytes.
    pub max_data_bytes: usize,
    /// Member ids listed in a presence reply.
    pub presence_max_members: usize,
    /// Serve the HTTP publish API.
    pub http_publish: bool,
    /// Bytes of pub/sub traffic that may be on their way to one worker from
    /// the others. Past it, senders stop reading from their pub/sub clients
    /// until the destination catches up.
    pub bus_budget_bytes: usize,
    /// Messages of history kept per room (0 = none).
    pub history_size: usize,
    /// Longest a message stays in history, ms (0 = none).
    pub history_ttl_ms: u64,
    /// Bytes all history on the node may hold; past it, the oldest goes.
    pub history_max_bytes: usize,
    /// Per-pattern history overrides, first match wins.
    pub history_rooms: Vec<HistoryRoomConfig>,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig {
            max_rooms_per_connection: 100,
            max_subscribers_per_room: 0,
            max_data_bytes: 64 << 10,
            presence_max_members: 1000,
            http_publish: false,
            bus_budget_bytes: 8 << 20,
            history_size: 0,
            history_ttl_ms: 0,
            history_max_bytes: 64 << 20,
            history_rooms: Vec::new(),
        }
    }
}

/// `[websocket]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketLimits {
    /// Largest reassembled message, bytes.
    pub max_message_bytes: usize,
    /// Largest single frame, bytes.
    pub max_frame_bytes: usize,
    /// Subprotocols the server may select, by preference.
    pub subprotocols: Vec<String>,
}

/// `[handshake]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HandshakeConfig {
    /// Largest request head, bytes.
    pub max_request_bytes: usize,
    /// Accept-to-upgrade deadline, milliseconds.
    pub timeout_ms: u64,
}

/// `[health]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Ping after this long without input, milliseconds.
    pub ping_interval_ms: u64,
    /// Close after this long without input, milliseconds.
    pub dead_client_ms: u64,
    /// Close after this long without a message, milliseconds; 0 = off.
    pub idle_timeout_ms: u64,
    /// Wait for the close reply this long, milliseconds.
    pub close_timeout_ms: u64,
}

/// What to do when a message would overflow a client's write queue.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SlowConsumerPolicy {
    /// Close the connection with 1008 "slow consumer".
    Close,
    /// Drop the message and count it; the connection stays.
    Drop,
}

/// `[write_queue]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WriteQueueConfig {
    /// Queue limit, bytes.
    pub max_bytes: usize,
    /// Stop reading from the client above this, bytes.
    pub high_water_bytes: usize,
    /// Overflow policy.
    pub slow_consumer: SlowConsumerPolicy,
    /// Close a queue that made no progress for this long, milliseconds.
    pub stall_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 0,
            socket_send_buffer_bytes: 0,
            socket_recv_buffer_bytes: 0,
        }
    }
}

impl Default for RoutesConfig {
    fn default() -> Self {
        RoutesConfig {
            echo: "/echo".into(),
            pubsub: "/ws".into(),
            publish_api: "/api/publish".into(),
        }
    }
}

impl Default for WebSocketLimits {
    fn default() -> Self {
        WebSocketLimits {
            max_message_bytes: 1 << 20,
            max_frame_bytes: 1 << 20,
            subprotocols: Vec::new(),
        }
    }
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        HandshakeConfig { max_request_bytes: 8192, timeout_ms: 10_000 }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            ping_interval_ms: 25_000,
            dead_client_ms: 60_000,
            idle_timeout_ms: 0,
            close_timeout_ms: 5_000,
        }
    }
}

impl Default for WriteQueueConfig {
    fn default() -> Self {
        WriteQueueConfig {
            max_bytes: 1 << 20,
            high_water_bytes: 256 << 10,
            slow_consumer: SlowConsumerPolicy::Close,
            stall_timeout_ms: 30_000,
        }
    }
}

/// A configuration file that cannot be used, with where and why. Displayed
/// as one line starting with the file and line: `my.toml:3: field
/// \`server.workers\`: ...`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: cannot read: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not TOML, or a key is unknown or has the wrong type.
    #[error("{}: {message}", at(source_name, *line, field.as_deref()))]
    Syntax {
        /// The file (or `<embedded default>`).
        source_name: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// Dotted field path, e.g. `server.workers`, when known.
        field: Option<String>,
        /// What the TOML parser said.
        message: String,
    },
    /// The text parsed, but a value cannot be used.
    #[error("{}: {source}", at(source_name, *line, None))]
    Invalid {
        /// The file (or `<embedded default>`).
        source_name: String,
        /// 1-based line of the field, when it is set in the file.
        line: Option<usize>,
        /// Which value and why.
        source: InvalidConfig,
    },
}

impl ConfigError {
    /// 1-based line in the file, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Unreadable { .. } => None,
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } => *line,
        }
    }

    /// The dotted field at fault (`server.workers`, `auth.api_keys[1].key`),
    /// when known.
    pub fn field(&self) -> Option<String> {
        match self {
            ConfigError::Unreadable { .. } => None,
            ConfigError::Syntax { field, .. } => field.clone(),
            ConfigError::Invalid { source, .. } => Some(source.field()),
        }
    }
}

/// `file:line: field \`x\``, the parts that are known.
fn at(source_name: &str, line: Option<usize>, field: Option<&str>) -> String {
    let mut s = source_name.to_string();
    if let Some(line) = line {
        s += &format!(":{line}");
    }
    if let Some(field) = field {
        s += &format!(": field `{field}`");
    }
    s
}

/// A configuration that parsed but cannot be used: what
/// [`Config::validate`] finds.
#[derive(Debug, thiserror::Error)]
pub enum InvalidConfig {
    /// A value is out of its range, malformed, or does not fit another field.
    #[error("field `{field}`: {message}")]
    BadValue {
        /// Dotted field path, e.g. `write_queue.high_water_bytes`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The `[auth]` section is refused (short secret, unreadable key file,
    /// bad pattern, duplicate API key, ...).
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthConfigError),
}

impl InvalidConfig {
    /// The dotted field at fault.
    pub fn field(&self) -> String {
        match self {
            InvalidConfig::BadValue { field, .. } => field.clone(),
            InvalidConfig::Auth(e) => e.field(),
        }
    }
}

impl Config {
    /// Parses and validates TOML text; `source_name` appears in errors.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, source_name, |_| None)
    }

    /// Like [`Config::from_toml`], with secrets overridden from the
    /// environment (`env` looks a variable up): `WSEDGE_JWT_SECRET` replaces
    /// `auth.jwt_hs256_secret`, so the secret need not sit in the file.
    pub fn from_toml_with_env(
        text: &str,
        source_name: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| line_of(text, span.start));
            let message = e.message().trim().to_string();
            let field = field_from_message(&message).or_else(|| {
                e.span().map(|span| key_at(text, span.start)).filter(|k| !k.is_empty())
            });
            ConfigError::Syntax { source_name: source_name.to_string(), line, field, message }
        })?;
        if let Some(secret) = env("WSEDGE_JWT_SECRET").filter(|s| !s.is_empty()) {
            config.auth.jwt_hs256_secret = secret;
        }
        config.validate().map_err(|source| ConfigError::Invalid {
            source_name: source_name.to_string(),
            line: find_field_line(text, &source.field()),
            source,
        })?;
        Ok(config)
    }

    /// Range checks that the types alone cannot express, and the `[auth]`
    /// section as the authenticator will build it (which reads its key file).
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let err =
            |f: &str, m: String| Err(InvalidConfig::BadValue { field: f.to_string(), message: m });
        if self.server.workers > 1024 {
            return err(
                "server.workers",
                format!("{} is out of range 0..=1024", self.server.workers),
            );
        }
        for (field, path) in [
            ("routes.echo", &self.routes.echo),
            ("routes.pubsub", &self.routes.pubsub),
            ("routes.publish_api", &self.routes.publish_api),
        ] {
            if !path.is_empty() && !path.starts_with('/') {
                return err(field, "a route path must start with '/'".into());
            }
        }
        crate::auth::Authenticator::new(&self.auth)?;
        if !self.tls.listen.is_empty() {
            if self.tls.listen_addr().is_none() {
                return err("tls.listen", format!("'{}' is not ADDR:PORT", self.tls.listen));
            }
            if self.tls.cert.is_empty() {
                return err("tls.cert", "a TLS listener needs a certificate file".into());
            }
            if self.tls.key.is_empty() {
                return err("tls.key", "a TLS listener needs a private key file".into());
            }
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen_addr().is_none() {
            return err("metrics.listen", format!("'{}' is not ADDR:PORT", self.metrics.listen));
        }
        if self.pubsub.max_data_bytes == 0 || self.pubsub.max_data_bytes > ws_max(self) {
            return err(
                "pubsub.max_data_bytes",
                format!("must be between 1 and websocket.max_message_bytes ({})", ws_max(self)),
            );
        }
        if self.pubsub.bus_budget_bytes < 64 << 10 {
            return err("pubsub.bus_budget_bytes", "must be at least 65536".to_string());
        }
        history::validate(&self.pubsub)?;
        cluster::validate(&self.cluster)?;
        let ws = &self.websocket;
        if ws.max_frame_bytes == 0 || ws.max_message_bytes == 0 {
            let f = if ws.max_frame_bytes == 0 { "max_frame_bytes" } else { "max_message_bytes" };
            return err(&format!("websocket.{f}"), "must be at least 1".into());
        }
        if ws.max_message_bytes > 1 << 30 || ws.max_frame_bytes > 1 << 30 {
            let f =
                if ws.max_frame_bytes > 1 << 30 { "max_frame_bytes" } else { "max_message_bytes" };
            return err(&format!("websocket.{f}"), "must be at most 1 GiB".into());
        }
        if !(256..=1 << 20).contains(&self.handshake.max_request_bytes) {
            return err(
                "handshake.max_request_bytes",
                format!("{} is out of range 256..=1048576", self.handshake.max_request_bytes),
            );
        }
        for (field, v) in [
            ("handshake.timeout_ms", self.handshake.timeout_ms),
            ("health.ping_interval_ms", self.health.ping_interval_ms),
            ("health.dead_client_ms", self.health.dead_client_ms),
            ("health.close_timeout_ms", self.health.close_timeout_ms),
            ("write_queue.stall_timeout_ms", self.write_queue.stall_timeout_ms),
        ] {
            if v == 0 {
                return err(field, "must be at least 1".into());
            }
        }
        let c = &self.compression;
        if c.level > 9 {
            return err("compression.level", format!("{} is out of range 0..=9", c.level));
        }
        if !(9..=15).contains(&c.client_max_window_bits) {
            return err(
                "compression.client_max_window_bits",
                format!("{} is out of range 9..=15", c.client_max_window_bits),
            );
        }
        let wq = &self.write_queue;
        if wq.max_bytes < 1024 {
            return err(
                "write_queue.max_bytes",
                format!("{} is below the minimum 1024", wq.max_bytes),
            );
        }
        if wq.high_water_bytes == 0 || wq.high_water_bytes > wq.max_bytes {
            return err(
                "write_queue.high_water_bytes",
                format!(
                    "{} must be between 1 and max_bytes ({})",
                    wq.high_water_bytes, wq.max_bytes
                ),
            );
        }
        Ok(())
    }

    /// Workers to start: the configured count, or one per core.
    pub fn worker_count(&self) -> usize {
        if self.server.workers > 0 {
            self.server.workers
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        }
    }
}

fn ws_max(c: &Config) -> usize {
    c.websocket.max_message_bytes
}

/// A duration from a `_ms` field.
pub fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The `key` of the `key = value` line containing `offset`, qualified by its table.
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let mut table = String::new();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            table = name.trim().to_string();
        }
        if offset < pos + line.len() {
            return match t.split_once('=') {
                Some((k, _)) if !t.starts_with('#') => qualify(&table, k.trim()),
                _ => String::new(),
            };
        }
        pos += line.len();
    }
    String::new()
}

fn qualify(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_string()
    } else {
        format!("{table}.{key}")
    }
}

/// serde names unknown fields in its message: "unknown field `x`, expected ...".
fn field_from_message(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// Line where `table.key` is set, for range errors found after parsing. An
/// entry of an array of tables is named with its index:
/// `auth.api_keys[1].key` is `key` in the second `[[auth.api_keys]]`.
fn find_field_line(text: &str, field: &str) -> Option<usize> {
    let (table, key) = field.rsplit_once('.').unwrap_or(("", field));
    let (table, index) = match table.strip_suffix(']').and_then(|t| t.split_once('[')) {
        Some((t, i)) => (t, Some(i.parse::<usize>().ok()?)),
        None => (table, None),
    };
    let mut current = String::new();
    let mut seen = 0;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|t| t.strip_suffix("]]")) {
            current = name.trim().to_string();
            if current == table {
                seen += 1;
            }
            continue;
        }
        if let Some(name) = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            current = name.trim().to_string();
            continue;
        }
        let entry_matches = index.is_none_or(|n| seen == n + 1);
        if current == table && entry_matches {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim() == key {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;

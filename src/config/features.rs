//! `[compression]` and `[demo]`: the optional features' sections.

use serde::Deserialize;

/// `[compression]`: permessage-deflate (RFC 7692).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Negotiate permessage-deflate on /echo and /ws.
    pub enabled: bool,
    /// Messages the server sends are compressed from this many bytes up.
    pub threshold_bytes: usize,
    /// zlib level, 0..=9, for what the server sends.
    pub level: u32,
    /// Window asked of clients that offer `client_max_window_bits`, 9..=15.
    pub client_max_window_bits: u8,
    /// Connections per node whose client keeps its context between messages
    /// (each holds an inflater); beyond it such offers are declined.
    pub context_takeover_connections: usize,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: false,
            threshold_bytes: 512,
            level: 1,
            client_max_window_bits: 12,
            context_takeover_connections: 1000,
        }
    }
}

/// `[demo]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// Serve the demo chat at `GET /` on the main listener.
    pub enabled: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig { enabled: true }
    }
}

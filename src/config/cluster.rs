//! `[cluster]`: several nodes sharing rooms, presence and history through
//! Redis (see `src/cluster/`). An empty `redis_url` (the default) is a single
//! node: nothing here is used and nothing connects anywhere.

use serde::Deserialize;

use super::InvalidConfig;
use crate::id::MAX_NODE;

/// `[cluster]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]`; empty: a single node.
    pub redis_url: String,
    /// This node's id, 1..=4095, unique in the cluster (it is in every
    /// connection id). 0: derived from the host name, the listen address
    /// and the process id.
    pub node_id: u16,
    /// Prefix of every Redis key and channel, so several clusters can
    /// share one Redis.
    pub key_prefix: String,
    /// Longest wait for a TCP connection to Redis, ms.
    pub connect_timeout_ms: u64,
    /// Longest wait for a Redis reply, ms; past it the connection is
    /// dropped and made again.
    pub command_timeout_ms: u64,
    /// Bytes of publishes and requests that may wait for Redis on this
    /// node. Past it, publishes are refused with `overloaded`.
    pub channel_budget_bytes: usize,
    /// A member listed by a node that stops refreshing it (a node that
    /// died) leaves the cluster's presence after this long, ms. Room
    /// positions of rooms without history last as long after their last
    /// subscriber anywhere leaves.
    pub presence_ttl_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: String::new(),
            node_id: 0,
            key_prefix: "wsedge".into(),
            connect_timeout_ms: 1000,
            command_timeout_ms: 5000,
            channel_budget_bytes: 16 << 20,
            presence_ttl_ms: 30_000,
        }
    }
}

impl ClusterConfig {
    /// True when a Redis URL is set.
    pub fn is_on(&self) -> bool {
        !self.redis_url.is_empty()
    }
}

fn bad(field: &str, message: String) -> InvalidConfig {
    InvalidConfig::BadValue { field: field.to_string(), message }
}

/// Why a Redis URL cannot be used, or `None` when it can (no connection is
/// made).
pub fn redis_url_problem(url: &str) -> Option<String> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Some(format!("'{url}' is not a URL: redis://HOST:PORT[/DB]"));
    };
    if scheme != "redis" {
        return Some(format!("scheme '{scheme}' is not supported: use redis://HOST:PORT[/DB]"));
    }
    match redis::Client::open(url) {
        Ok(_) => None,
        Err(e) => Some(format!("'{url}' is not a usable Redis URL: {e}")),
    }
}

/// Range checks of `[cluster]`.
pub(super) fn validate(c: &ClusterConfig) -> Result<(), InvalidConfig> {
    if c.is_on() {
        if let Some(problem) = redis_url_problem(&c.redis_url) {
            return Err(bad("cluster.redis_url", problem));
        }
    }
    if c.node_id > MAX_NODE {
        return Err(bad(
            "cluster.node_id",
            format!("{} is out of range 0..={MAX_NODE}", c.node_id),
        ));
    }
    let prefix_ok = !c.key_prefix.is_empty()
        && c.key_prefix.len() <= 64
        && c.key_prefix.bytes().all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
    if !prefix_ok {
        return Err(bad(
            "cluster.key_prefix",
            "must be 1-64 printable ASCII characters without spaces or braces".into(),
        ));
    }
    for (field, v) in [
        ("cluster.connect_timeout_ms", c.connect_timeout_ms),
        ("cluster.command_timeout_ms", c.command_timeout_ms),
    ] {
        if v == 0 || v > 60_000 {
            return Err(bad(field, format!("{v} is out of range 1..=60000")));
        }
    }
    if c.presence_ttl_ms < 1000 || c.presence_ttl_ms > 3_600_000 {
        return Err(bad(
            "cluster.presence_ttl_ms",
            format!("{} is out of range 1000..=3600000", c.presence_ttl_ms),
        ));
    }
    if c.channel_budget_bytes < 64 << 10 {
        return Err(bad("cluster.channel_budget_bytes", "must be at least 65536".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_are_checked_without_connecting() {
        assert_eq!(redis_url_problem("redis://127.0.0.1:6379"), None);
        assert_eq!(redis_url_problem("redis://user:pw@10.0.0.1:7000/2"), None);
        assert!(redis_url_problem("127.0.0.1:6379").unwrap().contains("not a URL"));
        assert!(redis_url_problem("rediss://h:1").unwrap().contains("'rediss' is not supported"));
        assert!(redis_url_problem("http://h:1").unwrap().contains("not supported"));
        assert!(redis_url_problem("redis://h:notaport").is_some());
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let field = |c: ClusterConfig| validate(&c).unwrap_err().field();
        let on = ClusterConfig { redis_url: "redis://127.0.0.1:1".into(), ..Default::default() };
        assert!(validate(&on).is_ok());
        assert_eq!(
            field(ClusterConfig { redis_url: "x".into(), ..on.clone() }),
            "cluster.redis_url"
        );
        assert_eq!(field(ClusterConfig { node_id: 4096, ..on.clone() }), "cluster.node_id");
        assert_eq!(
            field(ClusterConfig { key_prefix: "a b".into(), ..on.clone() }),
            "cluster.key_prefix"
        );
        assert_eq!(
            field(ClusterConfig { presence_ttl_ms: 10, ..on.clone() }),
            "cluster.presence_ttl_ms"
        );
        assert_eq!(
            field(ClusterConfig { channel_budget_bytes: 1, ..on }),
            "cluster.channel_budget_bytes"
        );
    }
}

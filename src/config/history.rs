//! `[pubsub]` history settings: the per-room-pattern overrides
//! (`[[pubsub.history_rooms]]`) and the validation of every history field,
//! with errors that name the field (`pubsub.history_rooms[1].pattern`).

use serde::Deserialize;

use super::{InvalidConfig, PubSubConfig};

/// Longest history of one room, messages.
pub const MAX_HISTORY_SIZE: usize = 1_000_000;
/// Longest TTL of history, milliseconds (7 days).
pub const MAX_HISTORY_TTL_MS: u64 = 7 * 24 * 3600 * 1000;
/// Smallest history byte cap.
pub const MIN_HISTORY_BYTES: usize = 64 << 10;

/// `[[pubsub.history_rooms]]`: the history of rooms matching `pattern`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryRoomConfig {
    /// A room name, or a prefix followed by `*` (`chat:*`; `*` alone is
    /// every room). The first matching entry wins.
    pub pattern: String,
    /// Messages kept (0 = no history for these rooms).
    pub size: usize,
    /// Longest a message is kept, milliseconds (0 = no history).
    pub ttl_ms: u64,
}

fn bad(field: String, message: String) -> InvalidConfig {
    InvalidConfig::BadValue { field, message }
}

/// One retention: both zero (off) or both in range.
fn check_retention(prefix: &str, size: usize, ttl_ms: u64) -> Result<(), InvalidConfig> {
    let (size_f, ttl_f) = if prefix == "pubsub." {
        ("pubsub.history_size".to_string(), "pubsub.history_ttl_ms".to_string())
    } else {
        (format!("{prefix}size"), format!("{prefix}ttl_ms"))
    };
    if size > MAX_HISTORY_SIZE {
        return Err(bad(size_f, format!("{size} is out of range 0..={MAX_HISTORY_SIZE}")));
    }
    if ttl_ms > MAX_HISTORY_TTL_MS {
        return Err(bad(ttl_f, format!("{ttl_ms} is over 7 days ({MAX_HISTORY_TTL_MS})")));
    }
    if size > 0 && ttl_ms == 0 {
        return Err(bad(ttl_f, "must be at least 1 when the history size is above 0".into()));
    }
    if ttl_ms > 0 && size == 0 {
        return Err(bad(size_f, "must be at least 1 when the history TTL is above 0".into()));
    }
    Ok(())
}

/// Range checks of the history fields of `[pubsub]`.
pub(super) fn validate(p: &PubSubConfig) -> Result<(), InvalidConfig> {
    check_retention("pubsub.", p.history_size, p.history_ttl_ms)?;
    if p.history_max_bytes < MIN_HISTORY_BYTES {
        return Err(bad(
            "pubsub.history_max_bytes".into(),
            format!("{} is below the minimum {MIN_HISTORY_BYTES}", p.history_max_bytes),
        ));
    }
    for (i, r) in p.history_rooms.iter().enumerate() {
        let prefix = format!("pubsub.history_rooms[{i}].");
        let pattern = &r.pattern;
        if pattern.is_empty() {
            return Err(bad(format!("{prefix}pattern"), "must not be empty".into()));
        }
        if pattern.trim_end_matches('*').contains('*') || pattern.ends_with("**") {
            return Err(bad(
                format!("{prefix}pattern"),
                format!("'{pattern}': `*` may only end a pattern"),
            ));
        }
        let body = pattern.strip_suffix('*').unwrap_or(pattern);
        if !body.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:@/".contains(&b)) {
            return Err(bad(
                format!("{prefix}pattern"),
                format!("'{pattern}' has a character no room name has"),
            ));
        }
        if p.history_rooms[..i].iter().any(|o| o.pattern == *pattern) {
            return Err(bad(
                format!("{prefix}pattern"),
                format!("'{pattern}' is listed twice (the first one wins)"),
            ));
        }
        check_retention(&prefix, r.size, r.ttl_ms)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError};

    fn refused(text: &str) -> ConfigError {
        Config::from_toml(text, "h.toml").expect_err(text)
    }

    #[test]
    fn history_settings_parse_with_overrides() {
        let c = Config::from_toml(
            "[pubsub]\nhistory_size = 10\nhistory_ttl_ms = 1000\n\n\
             [[pubsub.history_rooms]]\npattern = \"chat:*\"\nsize = 100\nttl_ms = 300000\n\n\
             [[pubsub.history_rooms]]\npattern = \"ticks:*\"\n",
            "h.toml",
        )
        .unwrap();
        assert_eq!((c.pubsub.history_size, c.pubsub.history_ttl_ms), (10, 1000));
        assert_eq!(c.pubsub.history_rooms.len(), 2);
        assert_eq!(c.pubsub.history_rooms[0].size, 100);
        assert_eq!((c.pubsub.history_rooms[1].size, c.pubsub.history_rooms[1].ttl_ms), (0, 0));
        assert_eq!(c.pubsub.history_max_bytes, 64 << 20, "the default cap");
    }

    #[test]
    fn bad_history_values_name_their_line_and_field() {
        let e = refused("[pubsub]\nhistory_size = 10\n");
        assert_eq!(e.field().as_deref(), Some("pubsub.history_ttl_ms"));
        let e = refused("[pubsub]\nhistory_ttl_ms = 5\n\nhistory_size = 2000000\n");
        assert_eq!((e.field().as_deref(), e.line()), (Some("pubsub.history_size"), Some(4)));
        let e = refused("[pubsub]\nhistory_max_bytes = 10\n");
        assert_eq!((e.field().as_deref(), e.line()), (Some("pubsub.history_max_bytes"), Some(2)));
        let text = "[[pubsub.history_rooms]]\npattern = \"a:*\"\nsize = 1\nttl_ms = 1\n\n\
                    [[pubsub.history_rooms]]\npattern = \"b*c*\"\nsize = 1\nttl_ms = 1\n";
        let e = refused(text);
        assert_eq!(e.field().as_deref(), Some("pubsub.history_rooms[1].pattern"));
        assert_eq!(e.line(), Some(7));
        assert!(e.to_string().starts_with("h.toml:7: field `pubsub.history_rooms[1].pattern`"));
        let text = "[[pubsub.history_rooms]]\npattern = \"a:*\"\nsize = 5\n";
        let e = refused(text);
        assert_eq!(e.field().as_deref(), Some("pubsub.history_rooms[0].ttl_ms"));
        let text = "[[pubsub.history_rooms]]\npattern = \"a b\"\nsize = 5\nttl_ms = 9\n";
        assert_eq!(refused(text).field().as_deref(), Some("pubsub.history_rooms[0].pattern"));
        let text = "[[pubsub.history_rooms]]\npattern = \"a\"\n[[pubsub.history_rooms]]\npattern = \"a\"\n";
        assert_eq!(refused(text).line(), Some(4));
        let e = refused("[[pubsub.history_rooms]]\npatern = \"a\"\n");
        assert_eq!(e.line(), Some(2));
    }
}

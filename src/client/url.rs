//! `ws://` and `wss://` URLs: scheme, host, port and request target, and the
//! `Host` header they imply. Pure string handling; no name resolution.

use std::fmt;

/// A parsed WebSocket URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss://` (TLS) rather than `ws://`.
    pub tls: bool,
    /// Host name or IP literal, without the brackets of an IPv6 literal.
    pub host: String,
    /// Port (default 80 for `ws://`, 443 for `wss://`).
    pub port: u16,
    /// Request target: path and query, at least `/`.
    pub target: String,
}

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The scheme is not `ws://` or `wss://`.
    #[error("URL must start with ws:// or wss://: {0}")]
    Scheme(String),
    /// No host between the scheme and the path.
    #[error("URL has no host: {0}")]
    NoHost(String),
    /// The port is not a number from 1 to 65535.
    #[error("URL has a bad port: {0}")]
    BadPort(String),
    /// A user name or password (`user@host`), a fragment, or a character
    /// that cannot go on the request line (space, control character).
    #[error("URL has {what}: {url}")]
    Unsupported {
        /// What was found.
        what: &'static str,
        /// The URL.
        url: String,
    },
}

impl WsUrl {
    /// Parses `ws://host[:port][/path][?query]` or the `wss://` form. IPv6
    /// literals go in brackets (`ws://[::1]:8080/`).
    pub fn parse(url: &str) -> Result<WsUrl, UrlError> {
        let (tls, rest) = if let Some(r) = strip_prefix_ci(url, "ws://") {
            (false, r)
        } else if let Some(r) = strip_prefix_ci(url, "wss://") {
            (true, r)
        } else {
            return Err(UrlError::Scheme(url.to_owned()));
        };
        if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(UrlError::Unsupported {
                what: "a space or control character",
                url: url.into(),
            });
        }
        if url.contains('#') {
            return Err(UrlError::Unsupported { what: "a fragment", url: url.into() });
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(UrlError::Unsupported { what: "user info", url: url.into() });
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(|| UrlError::NoHost(url.into()))?;
            let port = &v6[end + 1..];
            let port = match port.strip_prefix(':') {
                Some(p) => Some(p),
                None if port.is_empty() => None,
                None => return Err(UrlError::BadPort(url.into())),
            };
            (&v6[..end], port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::NoHost(url.into()));
        }
        let port = match port {
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(UrlError::BadPort(url.into())),
            },
        };
        let target = if target.starts_with('?') {
            format!("/{target}")
        } else if target.is_empty() {
            "/".to_owned()
        } else {
            target.to_owned()
        };
        Ok(WsUrl { tls, host: host.to_owned(), port, target })
    }

    /// The `Host` header value: the port only when it is not the default.
    pub fn host_header(&self) -> String {
        let host =
            if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The URL with `name=value` appended to the query (percent-encoded).
    pub fn with_query_param(&self, name: &str, value: &str) -> WsUrl {
        let sep = if self.target.contains('?') { '&' } else { '?' };
        let mut url = self.clone();
        url.target =
            format!("{}{sep}{}={}", self.target, percent_encode(name), percent_encode(value));
        url
    }
}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.target)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_type() {
        let u = WsUrl::parse("ws://127.0.0.1:8080/echo").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.target.as_str()),
            (false, "127.0.0.1", 8080, "/echo")
        );
        assert_eq!(u.host_header(), "127.0.0.1:8080");
        let u = WsUrl::parse("WSS://example.com?x=1").unwrap();
        assert_eq!((u.tls, u.port, u.target.as_str()), (true, 443, "/?x=1"));
        assert_eq!(u.host_header(), "example.com");
        let u = WsUrl::parse("ws://[::1]:9000").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.target.as_str()), ("::1", 9000, "/"));
        assert_eq!(u.host_header(), "[::1]:9000");
        assert_eq!(u.to_string(), "ws://[::1]:9000/");
    }

    #[test]
    fn refuses_what_cannot_be_sent() {
        assert!(matches!(WsUrl::parse("http://x/"), Err(UrlError::Scheme(_))));
        assert!(matches!(WsUrl::parse("ws:///x"), Err(UrlError::NoHost(_))));
        assert!(matches!(WsUrl::parse("ws://x:0/"), Err(UrlError::BadPort(_))));
        assert!(matches!(WsUrl::parse("ws://x:99999/"), Err(UrlError::BadPort(_))));
        assert!(matches!(WsUrl::parse("ws://u:p@x/"), Err(UrlError::Unsupported { .. })));
        assert!(matches!(WsUrl::parse("ws://x/a b"), Err(UrlError::Unsupported { .. })));
    }

    #[test]
    fn query_parameters_are_encoded() {
        let u = WsUrl::parse("ws://h/ws?a=1").unwrap().with_query_param("token", "a b&c");
        assert_eq!(u.target, "/ws?a=1&token=a%20b%26c");
    }
}

//! Targets: `ws://` / `tcp://` URLs and `HOST:PORT` addresses, loopback only.
//!
//! Names are never resolved: a host is an IPv4 literal in 127.0.0.0/8 or
//! `localhost`, so the load tester cannot be pointed at another machine.

use std::net::{Ipv4Addr, SocketAddrV4};

/// A validated load target.
#[derive(Clone, Debug)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    pub addr: SocketAddrV4,
    /// `Host` header value: always `HOST:PORT`.
    pub host: String,
    /// Request target: path and query, starting with `/`.
    pub path: String,
    /// `wss://`: TLS over the connection.
    pub tls: bool,
    /// The host without the port: the TLS server name.
    pub name: String,
}

fn loopback_ip(host: &str) -> Result<Ipv4Addr, String> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(Ipv4Addr::LOCALHOST);
    }
    if host.starts_with('[') || host.contains(':') {
        return Err(format!("IPv6 address {host:?} not supported: use an address in 127.0.0.0/8"));
    }
    let ip: Ipv4Addr = host.parse().map_err(|_| {
        format!("host {host:?} is not an IPv4 literal or localhost (names are not resolved)")
    })?;
    if !ip.is_loopback() {
        return Err(format!(
            "refusing to target {ip}: wsedge-bench only talks to loopback addresses (127.0.0.0/8)"
        ));
    }
    Ok(ip)
}

/// `HOST:PORT` (or `HOST` with `default_port`) to a loopback address.
pub fn parse_host_port(auth: &str, default_port: Option<u16>) -> Result<SocketAddrV4, String> {
    if auth.is_empty() {
        return Err("missing host".into());
    }
    if auth.starts_with('[') {
        return Err(format!("IPv6 address {auth:?} not supported: use an address in 127.0.0.0/8"));
    }
    let (host, port) = match auth.rsplit_once(':') {
        Some((h, p)) => {
            let port: u16 = p.parse().map_err(|_| format!("invalid port {p:?}"))?;
            (h, port)
        }
        None => match default_port {
            Some(p) => (auth, p),
            None => return Err(format!("{auth:?}: a port is required")),
        },
    };
    let ip = loopback_ip(host)?;
    Ok(SocketAddrV4::new(ip, port))
}

/// Parses `SCHEME://HOST[:PORT][/PATH]`; `scheme` is `ws` (which also
/// accepts `wss`, TLS) or `tcp`.
pub fn parse_target(url: &str, scheme: &str) -> Result<Target, String> {
    let Some((sch, rest)) = url.split_once("://") else {
        return Err(format!("URL {url:?} must look like {scheme}://127.0.0.1:PORT/"));
    };
    let tls = scheme == "ws" && sch.eq_ignore_ascii_case("wss");
    if !tls && !sch.eq_ignore_ascii_case(scheme) {
        return Err(format!("URL {url:?}: scheme must be {scheme}:// for this mode"));
    }
    let (auth, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if auth.contains('@') {
        return Err(format!("URL {url:?}: user info is not supported"));
    }
    if let Some(p) = path.find('#') {
        return Err(format!("URL {url:?}: fragment at byte {p} is not allowed"));
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("URL {url:?}: path contains spaces or control characters"));
    }
    let default = match scheme {
        "ws" if tls => Some(443),
        "ws" => Some(80),
        _ => None,
    };
    let addr = parse_host_port(auth, default).map_err(|e| format!("URL {url:?}: {e}"))?;
    if addr.port() == 0 {
        return Err(format!("URL {url:?}: port 0 is not a valid target"));
    }
    let host = if auth.rsplit_once(':').is_some() {
        auth.to_string()
    } else {
        format!("{auth}:{}", addr.port())
    };
    let name = auth.rsplit_once(':').map_or(auth, |(h, _)| h).to_string();
    Ok(Target { url: url.to_string(), addr, host, path, tls, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_loopback_only() {
        let t = parse_target("ws://127.0.0.1:9001/chat?x=1", "ws").expect("valid");
        assert_eq!(t.addr, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9001));
        assert_eq!(t.path, "/chat?x=1");
        assert_eq!(t.host, "127.0.0.1:9001");
        let t = parse_target("ws://localhost:80", "ws").expect("valid");
        assert_eq!(t.path, "/");
        let t = parse_target("ws://127.9.8.7", "ws").expect("valid");
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.host, "127.9.8.7:80");
        for bad in [
            "ws://10.0.0.1:80/",
            "ws://192.168.1.1:9001/",
            "ws://8.8.8.8:80/",
            "ws://example.com:80/",
            "ws://[::1]:80/",
            "wss://10.0.0.1:443/",
            "http://127.0.0.1:80/",
            "ws://127.0.0.1:0/",
        ] {
            assert!(parse_target(bad, "ws").is_err(), "{bad} accepted");
        }
        let e = parse_target("ws://10.1.2.3:9000/", "ws").expect_err("refused");
        assert!(e.contains("loopback"), "{e}");
        let t = parse_target("wss://localhost/echo", "ws").expect("valid");
        assert!(t.tls);
        assert_eq!(t.addr.port(), 443);
        assert!(!parse_target("ws://127.0.0.1:80/", "ws").expect("valid").tls);
        assert!(parse_target("wss://127.0.0.1:443/", "tcp").is_err());
        assert!(parse_target("tcp://127.0.0.1:5000", "tcp").is_ok());
        assert!(parse_target("tcp://127.0.0.1", "tcp").is_err());
    }
}

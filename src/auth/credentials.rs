//! Where a credential is found in a request: the `Authorization: Bearer`
//! header, then the query parameter, then the cookie (see the order in
//! [`super`]), and whether it is a JWT or an API key.
//!
//! Byte-level and pure: it decodes percent-escapes and cookie quoting, and
//! never judges whether a credential is valid.

use crate::handshake::{trim, Request};

/// Exactly two dots: a JWT in compact serialization.
pub(super) fn looks_like_jwt(c: &[u8]) -> bool {
    c.iter().filter(|&&b| b == b'.').count() == 2
}

/// The token of the first `Authorization` header, if it uses the `Bearer`
/// scheme and has a non-empty token.
fn bearer(req: &Request) -> Option<&[u8]> {
    let value = trim(req.header("authorization")?);
    let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = trim(rest);
    (!token.is_empty()).then_some(token)
}

/// The percent-decoded value of the first parameter named `name` in the raw
/// query string `query`, if non-empty.
pub(super) fn query_value(query: &str, name: &str) -> Option<Vec<u8>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k.as_bytes()) != name.as_bytes() {
            return None;
        }
        let v = percent_decode(v.as_bytes());
        (!v.is_empty()).then_some(v)
    })
}

/// RFC 3986 percent-decoding; a `%` not followed by two hex digits is kept
/// as is; `+` is kept (not a space).
pub(super) fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    };
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// The value of the first cookie named `name` in any `Cookie` header, with
/// surrounding double quotes removed, if non-empty.
fn cookie_value<'a>(req: &'a Request, name: &str) -> Option<&'a [u8]> {
    req.headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .flat_map(|(_, v)| v.split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = trim(pair);
            let eq = pair.iter().position(|&b| b == b'=')?;
            if trim(&pair[..eq]) != name.as_bytes() {
                return None;
            }
            let mut v = trim(&pair[eq + 1..]);
            if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
                v = &v[1..v.len() - 1];
            }
            (!v.is_empty()).then_some(v)
        })
}

/// The first non-empty credential in `req`: bearer header, then the query
/// parameter `query_param`, then the cookie `cookie` (an empty name turns
/// that source off).
pub(super) fn find(req: &Request, query_param: &str, cookie: &str) -> Option<Vec<u8>> {
    if let Some(c) = bearer(req) {
        return Some(c.to_vec());
    }
    if !query_param.is_empty() {
        if let Some(c) = req.query.as_deref().and_then(|q| query_value(q, query_param)) {
            return Some(c);
        }
    }
    if !cookie.is_empty() {
        if let Some(c) = cookie_value(req, cookie) {
            return Some(c.to_vec());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%20b%2B%2b+"), b"a b+++");
        assert_eq!(percent_decode(b"%"), b"%");
        assert_eq!(percent_decode(b"%4"), b"%4");
        assert_eq!(percent_decode(b"%zz%41"), b"%zzA");
        assert_eq!(query_value("token=a&token=b", "token"), Some(b"a".to_vec()));
        assert_eq!(query_value("t%6Fken=a", "token"), Some(b"a".to_vec()));
        assert_eq!(query_value("token", "token"), None);
        assert_eq!(query_value("token=&token=b", "token"), Some(b"b".to_vec()));
    }
}

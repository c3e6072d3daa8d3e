//! `Sec-WebSocket-Extensions` parsing and the permessage-deflate agreement
//! (RFC 7692 section 7.1 for the parameters, RFC 6455 section 9.1 for the
//! header grammar). Pure: header bytes in, an agreement and the response
//! header out.
//!
//! What the server agrees to:
//! - `server_no_context_takeover`, always: every message the server sends is
//!   compressed on its own, so one compressed frame serves every subscriber
//!   of a room (compress once per fan-out).
//! - `client_no_context_takeover` when the client offers it: its messages
//!   are inflated by the worker's one shared inflater, nothing kept per
//!   connection. A client that does not offer it (browsers don't) keeps its
//!   context, so the server must keep an inflater for that connection:
//!   accepted only while the worker's budget of such contexts allows
//!   (`[compression] context_takeover_budget`), otherwise that offer is
//!   declined and the connection runs uncompressed.
//! - `server_max_window_bits=N` as offered (the server then compresses only
//!   when it can stay within 2^N; below 9 it sends uncompressed, which the
//!   RFC allows for any message).
//! - `client_max_window_bits`: when offered, answered with the configured
//!   window (or the client's value if smaller), which bounds the memory of a
//!   kept context.
//!
//! Offers are tried in order; an offer with an unknown parameter, a
//! duplicate, or a bad value is declined (RFC 7692 section 7.1: "MUST
//! decline") and the next one is tried. A header that is not valid
//! extension syntax refuses the handshake with 400.

use std::fmt::Write as _;

/// One extension in the header: its name and parameters as sent.
#[derive(Debug, PartialEq, Eq)]
pub struct Offer {
    /// Extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// Parameters in order, with their value (quotes removed) if any.
    pub params: Vec<(String, Option<String>)>,
}

/// The header is not valid `Sec-WebSocket-Extensions` syntax.
#[derive(Debug, PartialEq, Eq)]
pub struct SyntaxError(pub &'static str);

/// What both sides agreed for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window the server may use for what it sends (8..=15).
    pub server_max_window_bits: u8,
    /// Window the client's messages use at most (9..=15), i.e. the window
    /// an inflater kept for this connection needs.
    pub client_max_window_bits: u8,
}

impl Agreed {
    /// The connection keeps an inflate context between messages.
    pub fn keeps_context(&self) -> bool {
        !self.client_no_context_takeover
    }

    /// The `Sec-WebSocket-Extensions` response value naming exactly this.
    pub fn response(&self, client_bits_offered: ClientBits) -> String {
        let mut out = String::from("permessage-deflate; server_no_context_takeover");
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            let _ = write!(out, "; server_max_window_bits={}", self.server_max_window_bits);
        }
        if client_bits_offered != ClientBits::NotOffered {
            let _ = write!(out, "; client_max_window_bits={}", self.client_max_window_bits);
        }
        out
    }
}

/// How the client offered `client_max_window_bits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientBits {
    /// Not in the offer: the client uses 15 and the response must not name it.
    NotOffered,
    /// Offered without a value: the server may pick one.
    Any,
    /// Offered with a value: the server may answer with it or less.
    AtMost(u8),
}

/// The server's side of the negotiation.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Window the server asks clients to stay within (9..=15).
    pub client_max_window_bits: u8,
    /// A context may be kept for this connection (the worker's budget).
    pub allow_context_takeover: bool,
}

/// Parses every `Sec-WebSocket-Extensions` value (header lines joined by
/// `,`) into offers.
pub fn parse(values: &[&[u8]]) -> Result<Vec<Offer>, SyntaxError> {
    let mut offers = Vec::new();
    for value in values {
        let text = std::str::from_utf8(value).map_err(|_| SyntaxError("not ASCII"))?;
        let mut p = Parser { s: text.as_bytes(), i: 0 };
        loop {
            p.skip_ws();
            if p.eat(b',') {
                continue; // empty list elements are allowed (RFC 7230 #rule)
            }
            if p.done() {
                break;
            }
            let name = p.token().ok_or(SyntaxError("expected an extension name"))?;
            let mut params = Vec::new();
            loop {
                p.skip_ws();
                if !p.eat(b';') {
                    break;
                }
                p.skip_ws();
                let param = p.token().ok_or(SyntaxError("expected a parameter name"))?;
                p.skip_ws();
                let value = if p.eat(b'=') {
                    p.skip_ws();
                    Some(p.value().ok_or(SyntaxError("expected a parameter value"))?)
                } else {
                    None
                };
                params.push((param.to_ascii_lowercase(), value));
            }
            offers.push(Offer { name: name.to_ascii_lowercase(), params });
            p.skip_ws();
            if !p.done() && !p.eat(b',') {
                return Err(SyntaxError("expected ',' between extensions"));
            }
        }
    }
    Ok(offers)
}

/// The first permessage-deflate offer the server can accept, and how the
/// client offered `client_max_window_bits` (for the response).
pub fn agree(offers: &[Offer], policy: Policy) -> Option<(Agreed, ClientBits)> {
    offers.iter().filter(|o| o.name == "permessage-deflate").find_map(|o| accept(o, policy))
}

fn accept(offer: &Offer, policy: Policy) -> Option<(Agreed, ClientBits)> {
    let (mut server_nct, mut client_nct) = (false, false);
    let mut server_bits: Option<u8> = None;
    let mut client_bits: Option<ClientBits> = None;
    for (name, value) in &offer.params {
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) if !server_nct => server_nct = true,
            ("client_no_context_takeover", None) if !client_nct => client_nct = true,
            ("server_max_window_bits", Some(v)) if server_bits.is_none() => {
                server_bits = Some(window_bits(v)?);
            }
            ("client_max_window_bits", None) if client_bits.is_none() => {
                client_bits = Some(ClientBits::Any);
            }
            ("client_max_window_bits", Some(v)) if client_bits.is_none() => {
                client_bits = Some(ClientBits::AtMost(window_bits(v)?));
            }
            // Unknown, duplicated, or a value where none belongs (or the
            // reverse): decline this offer.
            _ => return None,
        }
    }
    let _ = server_nct; // the server always resets its context anyway
    if !client_nct && !policy.allow_context_takeover {
        return None;
    }
    let client_bits = client_bits.unwrap_or(ClientBits::NotOffered);
    let client_max_window_bits = match client_bits {
        ClientBits::NotOffered => 15,
        ClientBits::Any => policy.client_max_window_bits,
        // 8 cannot be answered: zlib's raw inflate needs 9 or more, and
        // answering 8 would promise what the server cannot read. 9 > 8
        // is not allowed either, so decline.
        ClientBits::AtMost(8) => return None,
        ClientBits::AtMost(b) => b.min(policy.client_max_window_bits),
    };
    let agreed = Agreed {
        client_no_context_takeover: client_nct,
        server_max_window_bits: server_bits.unwrap_or(15),
        client_max_window_bits,
    };
    Some((agreed, client_bits))
}

/// `8`..=`15`, digits only (RFC 7692: no leading zeros, quotes allowed).
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t') {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.i < self.s.len() && is_tchar(self.s[self.i]) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    /// A token or a quoted-string (RFC 6455 9.1: a quoted value must still
    /// be a token once unquoted).
    fn value(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return self.token();
        }
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != b'"' {
            if !is_tchar(self.s[self.i]) {
                return None;
            }
            self.i += 1;
        }
        let v = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        (self.eat(b'"') && !v.is_empty()).then_some(v)
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

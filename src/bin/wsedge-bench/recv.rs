//! What comes back from the server: the handshake response (or the failure
//! status and the first line of its body), WebSocket frames and raw TCP
//! records, parsed in place from a connection's read buffer.

use crate::client::{on_open, op_name, send_msgs, Act, Conn, Ctx, St, ECHO_FIRST_TIMEOUT_NS};
use crate::stats::ErrKind;
use crate::wire::{
    first_line_lossy, load_u64_le, parse_frame, push_close, push_frame, push_msg, FrameHead,
    MAX_FRAME, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
};
use crate::NS_PER_MS;

/// Largest handshake response head accepted, bytes.
const MAX_HEAD: usize = 16 << 10;
/// After a non-101 status: time allowed for the first line of its body.
const FAIL_BODY_WAIT_NS: u64 = 500 * NS_PER_MS;

/// Parses what `c` has buffered, by state; `Drop` when the connection must go.
pub fn process(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64) -> Act {
    loop {
        match c.st {
            St::Connecting => return Act::Keep,
            St::Handshake => {
                if let Some(a) = handshake_response(ctx, c, idx, now) {
                    return a;
                }
            }
            St::HsFailBody => return fail_body(ctx, c, now, false),
            St::AwaitEof => {
                c.rs = c.re;
                return Act::Keep;
            }
            St::Open | St::Closing | St::EchoFirst => {
                return if ctx.ws { frames(ctx, c, idx, now) } else { records(ctx, c, idx, now) }
            }
        }
    }
}

/// Parse the handshake response. `None`: the state changed, keep processing.
fn handshake_response(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64) -> Option<Act> {
    let addr = ctx.cfg.target.addr;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let buf = &c.r[c.rs..c.re];
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD {
                ctx.err(ErrKind::HandshakeInvalid, || {
                    format!("{addr}: handshake response head larger than 16 KiB")
                });
                return Some(Act::Drop);
            }
            return Some(Act::Keep);
        }
        Ok(httparse::Status::Complete(n)) => n,
        Err(e) => {
            let line = first_line_lossy(buf, 200);
            ctx.err(ErrKind::HandshakeInvalid, || {
                format!("{addr}: malformed handshake response ({e}): {line:?}")
            });
            return Some(Act::Drop);
        }
    };
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        let status =
            format!("HTTP/1.{} {} {}", resp.version.unwrap_or(1), code, resp.reason.unwrap_or(""));
        let clen = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        c.fail_status = status;
        c.body_need = clen.unwrap_or(usize::MAX).min(256);
        c.rs += n;
        ctx.set_state(c, St::HsFailBody);
        c.deadline = now + FAIL_BODY_WAIT_NS;
        return None;
    }
    let accept = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|h| h.value.trim_ascii());
    match accept {
        Some(v) if v == c.accept => {}
        Some(v) => {
            let got = String::from_utf8_lossy(v).into_owned();
            let want = String::from_utf8_lossy(&c.accept).into_owned();
            ctx.err(ErrKind::HandshakeAccept, || {
                format!("{addr}: wrong Sec-WebSocket-Accept {got:?} (expected {want:?})")
            });
            return Some(Act::Drop);
        }
        None => {
            ctx.err(ErrKind::HandshakeAccept, || {
                format!("{addr}: 101 response without Sec-WebSocket-Accept")
            });
            return Some(Act::Drop);
        }
    }
    // Bytes after the head are frame bytes: they stay in the buffer.
    c.rs += n;
    if ctx.cfg.echo_first > 0 && !ctx.closing_all {
        let len = ctx.cfg.echo_first;
        ctx.ensure_wbuf(c, len + 14);
        let mask = ctx.rng.next() as u32;
        let template = std::mem::take(&mut ctx.template);
        push_msg(&mut c.w, OP_BINARY, &template, now, mask);
        ctx.template = template;
        ctx.st.sent += 1;
        ctx.set_state(c, St::EchoFirst);
        c.deadline = now + ECHO_FIRST_TIMEOUT_NS;
        ctx.mark_dirty(c, idx);
        return None;
    }
    ctx.established(c, now);
    on_open(ctx, c, idx, now);
    None
}

/// Report a non-101 handshake once the first body line (or EOF/timeout) is in.
pub fn fail_body(ctx: &mut Ctx, c: &mut Conn, now: u64, force: bool) -> Act {
    let body = &c.r[c.rs..c.re];
    let has_line = body.contains(&b'\n');
    if !(force || has_line || body.len() >= c.body_need || now >= c.deadline) {
        return Act::Keep;
    }
    let addr = ctx.cfg.target.addr;
    let line = first_line_lossy(body, 200);
    let status = std::mem::take(&mut c.fail_status);
    ctx.err(ErrKind::HandshakeStatus, || {
        format!("handshake with {addr} failed: {status}; body: {line:?}")
    });
    Act::Drop
}

fn protocol_error(ctx: &mut Ctx, c: &mut Conn, msg: &'static str) -> Act {
    let addr = ctx.cfg.target.addr;
    ctx.conn_err(c, ErrKind::Protocol, || format!("{addr}: protocol error: {msg}"));
    let mask = ctx.rng.next() as u32;
    push_close(&mut c.w, Some(1002), mask);
    Act::Drop
}

fn frames(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64) -> Act {
    loop {
        let (fin, op, hlen, plen) = match parse_frame(&c.r[c.rs..c.re]) {
            FrameHead::Need(n) => {
                c.need = n;
                break;
            }
            FrameHead::Bad(m) => return protocol_error(ctx, c, m),
            FrameHead::Ok { fin, op, hlen, plen } => (fin, op, hlen, plen),
        };
        c.need = 0;
        let p0 = c.rs + hlen;
        let p1 = p0 + plen;
        c.rs = p1;
        match op {
            OP_TEXT | OP_BINARY => {
                if c.frag_op != 0 {
                    return protocol_error(ctx, c, "new data frame inside a fragmented message");
                }
                if fin {
                    if c.st == St::EchoFirst {
                        if let Some(a) = first_echo(ctx, c, idx, op, plen, now) {
                            return a;
                        }
                    } else if ctx.on_data(c.st, op, &c.r[p0..p1], now) {
                        after_echo(ctx, c, idx, now);
                    }
                } else {
                    c.frag_op = op;
                    c.frag.clear();
                    c.frag.extend_from_slice(&c.r[p0..p1]);
                }
            }
            OP_CONT => {
                if c.frag_op == 0 {
                    return protocol_error(ctx, c, "continuation frame without a message");
                }
                c.frag.extend_from_slice(&c.r[p0..p1]);
                if c.frag.len() > MAX_FRAME {
                    return protocol_error(ctx, c, "fragmented message larger than 64 MiB");
                }
                if fin {
                    let op = c.frag_op;
                    c.frag_op = 0;
                    if c.st == St::EchoFirst {
                        let len = c.frag.len();
                        c.frag = Vec::new();
                        if let Some(a) = first_echo(ctx, c, idx, op, len, now) {
                            return a;
                        }
                    } else if ctx.on_data(c.st, op, &c.frag, now) {
                        after_echo(ctx, c, idx, now);
                    }
                    if ctx.small_bufs {
                        c.frag = Vec::new();
                    }
                }
            }
            OP_PING => {
                if c.st == St::Open {
                    ctx.ensure_wbuf(c, plen + 16);
                    let mask = ctx.rng.next() as u32;
                    push_frame(&mut c.w, OP_PONG, &c.r[p0..p1], mask);
                    ctx.st.pongs += 1;
                    ctx.mark_dirty(c, idx);
                }
            }
            OP_PONG => {}
            OP_CLOSE => {
                if plen == 1 {
                    return protocol_error(ctx, c, "close frame with a 1-byte payload");
                }
                let code =
                    if plen >= 2 { Some(u16::from_be_bytes([c.r[p0], c.r[p0 + 1]])) } else { None };
                match c.st {
                    St::Open | St::EchoFirst => {
                        let addr = ctx.cfg.target.addr;
                        let reason = if plen > 2 {
                            String::from_utf8_lossy(&c.r[p0 + 2..p1]).into_owned()
                        } else {
                            String::new()
                        };
                        let code_s = code.map_or("none (1005)".to_string(), |c| c.to_string());
                        ctx.conn_err(c, ErrKind::EarlyClose, || {
                            format!(
                                "{addr} closed the connection: code {code_s}, reason {reason:?}"
                            )
                        });
                        ctx.ensure_wbuf(c, 16);
                        let mask = ctx.rng.next() as u32;
                        push_close(&mut c.w, code, mask);
                        return Act::Drop;
                    }
                    St::Closing => {
                        ctx.st.close_ok += 1;
                        ctx.set_state(c, St::AwaitEof);
                        c.rs = c.re;
                        break;
                    }
                    _ => {
                        c.rs = c.re;
                        break;
                    }
                }
            }
            _ => return protocol_error(ctx, c, "unknown opcode"),
        }
    }
    if c.rs == c.re {
        c.rs = 0;
        c.re = 0;
    }
    Act::Keep
}

/// idle --echo-first: the echo of the first message arrived; the connection
/// now counts as established. `Some` when the connection must go.
fn first_echo(
    ctx: &mut Ctx,
    c: &mut Conn,
    idx: usize,
    op: u8,
    len: usize,
    now: u64,
) -> Option<Act> {
    if op != OP_BINARY || len != ctx.cfg.echo_first {
        let (addr, want) = (ctx.cfg.target.addr, ctx.cfg.echo_first);
        ctx.err(ErrKind::SizeMismatch, || {
            format!(
                "{addr}: first echo was a {} message of {len} bytes, sent binary {want}",
                op_name(op)
            )
        });
        return Some(Act::Drop);
    }
    ctx.st.recv_all += 1;
    ctx.established(c, now);
    on_open(ctx, c, idx, now);
    // Give the large buffers back now rather than hold them while idle.
    if c.wp >= c.w.len() {
        c.w = Vec::new();
        c.wp = 0;
    }
    None
}

#[inline]
fn after_echo(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64) {
    c.inflight = c.inflight.saturating_sub(1);
    if ctx.sending && c.st == St::Open {
        send_msgs(ctx, c, idx, 1, now);
    }
}

fn records(ctx: &mut Ctx, c: &mut Conn, idx: usize, now: u64) -> Act {
    let size = ctx.cfg.size;
    let mut n = 0u32;
    while c.re - c.rs >= size {
        let ts = load_u64_le(&c.r[c.rs..]);
        ctx.st.recv_all += 1;
        if ts <= now {
            ctx.count_echo(ts, size, now);
        } else {
            ctx.err(ErrKind::BadPayload, || {
                "record does not carry the timestamp that was sent".to_string()
            });
        }
        c.rs += size;
        n += 1;
    }
    c.need = size - (c.re - c.rs);
    if c.rs == c.re {
        c.rs = 0;
        c.re = 0;
    }
    c.inflight = c.inflight.saturating_sub(n);
    if ctx.sending && c.st == St::Open {
        send_msgs(ctx, c, idx, n, now);
    }
    Act::Keep
}

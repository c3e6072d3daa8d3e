//! serve-tcp-echo: the ceiling server. A single-threaded mio loop that echoes
//! raw TCP bytes back, pausing reads of a connection while more than 1 MiB
//! of its echo is still unsent.

use std::io::{self, ErrorKind, Read};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::config::ServeCfg;
use crate::net::{bind_listener, write_pending};
use crate::report::Json;
use crate::sys::raise_nofile;

struct EchoConn {
    sock: TcpStream,
    pend: Vec<u8>,
    pp: usize,
    paused: bool,
}

/// Unsent echo bytes over which a connection is not read.
const PAUSE_OVER: usize = 1 << 20;

/// Write pending bytes; Err means the connection is gone.
fn echo_flush(c: &mut EchoConn) -> io::Result<()> {
    write_pending(&mut c.sock, &c.pend, &mut c.pp, &mut 0)?;
    if c.pp < c.pend.len() {
        return Ok(());
    }
    c.pend.clear();
    c.pp = 0;
    Ok(())
}

/// Read to WouldBlock and echo; Ok(false) = peer closed.
fn echo_read(
    c: &mut EchoConn,
    scratch: &mut [u8],
    drain_all: bool,
    bytes: &mut u64,
) -> io::Result<bool> {
    loop {
        if c.pend.len() - c.pp > PAUSE_OVER {
            c.paused = true;
            return Ok(true);
        }
        let n = match c.sock.read(scratch) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        *bytes += n as u64;
        if c.pp == c.pend.len() {
            // Nothing queued: write straight from the scratch buffer.
            let mut off = 0;
            write_pending(&mut c.sock, &scratch[..n], &mut off, &mut 0)?;
            if off < n {
                c.pend.clear();
                c.pp = 0;
                c.pend.extend_from_slice(&scratch[off..n]);
            }
        } else {
            c.pend.extend_from_slice(&scratch[..n]);
            echo_flush(c)?;
        }
        if n < scratch.len() && !drain_all {
            return Ok(true);
        }
    }
}

/// The poll token of a reference server's listener.
pub(crate) const LISTENER: Token = Token(usize::MAX);

/// Start-up shared by the raw-TCP reference servers: raises the descriptor
/// limit, binds `cfg.listen`, registers it as [`LISTENER`] and prints the
/// `listening on` line (`what` names the server). On failure the reason is
/// printed and the exit code returned.
pub(crate) fn start_listener(
    cfg: &ServeCfg,
    what: &str,
) -> Result<(mio::net::TcpListener, Poll, String), ExitCode> {
    raise_nofile();
    let fail = |what: &str, e: std::io::Error| {
        eprintln!("wsedge-bench: {what}: {e}");
        ExitCode::FAILURE
    };
    let mut listener = bind_listener(cfg.listen)
        .map_err(|e| fail(&format!("cannot listen on {}", cfg.listen), e))?;
    let local =
        listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| cfg.listen.to_string());
    let poll = Poll::new().map_err(|e| fail("cannot create poll", e))?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(|e| fail("cannot register listener", e))?;
    eprintln!("listening on {local} ({what}, {} s)", cfg.secs);
    Ok((listener, poll, local))
}

/// Serves until `cfg.secs` have passed, then prints a summary and a JSON line.
pub fn serve_tcp_echo(cfg: &ServeCfg) -> ExitCode {
    let (listener, mut poll, local) = match start_listener(cfg, "tcp echo") {
        Ok(started) => started,
        Err(code) => return code,
    };
    let start = Instant::now();
    let deadline = Duration::from_secs_f64(cfg.secs);
    let mut conns: Vec<Option<EchoConn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut scratch = vec![0u8; 256 << 10];
    let mut events = Events::with_capacity(1024);
    let (mut accepted, mut bytes, mut open) = (0u64, 0u64, 0u64);
    while start.elapsed() < deadline {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(100))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            eprintln!("wsedge-bench: poll failed: {e}");
            return ExitCode::FAILURE;
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut sock, _)) => {
                            let _ = sock.set_nodelay(true);
                            let idx = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            if poll
                                .registry()
                                .register(
                                    &mut sock,
                                    Token(idx),
                                    Interest::READABLE | Interest::WRITABLE,
                                )
                                .is_err()
                            {
                                free.push(idx);
                                continue;
                            }
                            conns[idx] =
                                Some(EchoConn { sock, pend: Vec::new(), pp: 0, paused: false });
                            accepted += 1;
                            open += 1;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            // e.g. EMFILE: back off until the next event.
                            eprintln!("wsedge-bench: accept failed: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            let idx = ev.token().0;
            let Some(Some(c)) = conns.get_mut(idx) else {
                continue;
            };
            let mut alive = true;
            let drain_all = ev.is_read_closed() || ev.is_error();
            if ev.is_writable() && c.pp < c.pend.len() {
                alive = echo_flush(c).is_ok();
                if alive && c.paused && c.pend.len() - c.pp <= PAUSE_OVER {
                    c.paused = false;
                    alive = matches!(echo_read(c, &mut scratch, true, &mut bytes), Ok(true));
                }
            }
            if alive && !c.paused && (ev.is_readable() || drain_all) {
                alive = matches!(echo_read(c, &mut scratch, drain_all, &mut bytes), Ok(true));
            }
            if !alive {
                conns[idx] = None;
                free.push(idx);
                open -= 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("== wsedge-bench serve-tcp-echo {local} ==");
    println!(
        "served        {secs:.1} s, {accepted} connections accepted ({open} still open), {bytes} bytes echoed"
    );
    let mut j = Json::new("serve-tcp-echo");
    j.s("listen", &local).f("secs", secs, 3).u("accepted", accepted).u("bytes", bytes);
    println!("{}", j.finish());
    ExitCode::SUCCESS
}

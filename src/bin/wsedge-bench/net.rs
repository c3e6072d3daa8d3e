//! Sockets: non-blocking client connects from a chosen loopback source
//! address, and the listener of serve-tcp-echo.

use std::io::{self, ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// `IP_BIND_ADDRESS_NO_PORT`: with a source address bound, let `connect()`
/// pick the port, so ports need only be unique per 4-tuple.
#[cfg(target_os = "linux")]
fn bind_no_port(s: &Socket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: `s` owns a valid socket; the option value is a c_int of the given size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn bind_no_port(_s: &Socket) {}

/// Starts a non-blocking connect to `dst`, from `src` when given.
pub fn connect_socket(dst: SocketAddrV4, src: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    // Non-blocking from creation (SOCK_NONBLOCK): no fcntl calls.
    let s = Socket::new(Domain::IPV4, Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
    s.set_nodelay(true)?;
    if let Some(ip) = src {
        // Defer the port choice to connect(), so ports are unique per 4-tuple.
        bind_no_port(&s);
        s.bind(&SockAddr::from(SocketAddrV4::new(ip, 0)))?;
    }
    match s.connect(&SockAddr::from(dst)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(s)))
}

/// A non-blocking listener on `addr` (SO_REUSEADDR, backlog 4096).
pub fn bind_listener(addr: SocketAddrV4) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SockAddr::from(SocketAddr::V4(addr)))?;
    s.listen(4096)?;
    Ok(TcpListener::from_std(std::net::TcpListener::from(s)))
}

/// Writes `buf[*pos..]` until all of it is written or the socket would
/// block (then `Ok` with `*pos < buf.len()`); `*pos` advances by what was
/// written, `writes` counts the `write` calls. An error leaves `*pos` at
/// what was written before it.
#[inline]
pub fn write_pending(
    sock: &mut TcpStream,
    buf: &[u8],
    pos: &mut usize,
    writes: &mut u64,
) -> io::Result<()> {
    while *pos < buf.len() {
        *writes += 1;
        match sock.write(&buf[*pos..]) {
            Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => *pos += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

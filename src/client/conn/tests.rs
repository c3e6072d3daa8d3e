//! [`ClientConn`] against a tungstenite server-role context on a fake
//! clock: no socket.

use super::*;
use crate::handshake::accept_key;

/// The server end: decodes the client's frames (refusing unmasked ones, as
/// a server must) and encodes its own.
struct Server {
    ws: WebSocketContext,
    inbox: Vec<u8>,
    /// What the server wrote while reading (pongs, close replies).
    replies: Vec<u8>,
}

struct Pipe<'a> {
    input: &'a [u8],
    out: &'a mut Vec<u8>,
}

impl Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Mem { input: self.input, out: &mut Vec::new() }
            .read(buf)
            .inspect(|&n| self.input = &self.input[n..])
    }
}

impl Write for Pipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Server {
    fn new() -> Server {
        Server {
            ws: WebSocketContext::new(Role::Server, None),
            inbox: Vec::new(),
            replies: Vec::new(),
        }
    }

    /// Reads every message in `bytes` (from the client).
    fn read(&mut self, bytes: &[u8]) -> Vec<Message> {
        self.inbox.extend_from_slice(bytes);
        let input = std::mem::take(&mut self.inbox);
        let mut p = Pipe { input: &input, out: &mut self.replies };
        let mut got = Vec::new();
        loop {
            match self.ws.read(&mut p) {
                Ok(m) => got.push(m),
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("server read: {e}"),
            }
        }
        got
    }

    /// Encodes `msg` as the server would send it.
    fn frame(&mut self, msg: Message) -> Vec<u8> {
        let mut out = Vec::new();
        let mut p = Pipe { input: &[], out: &mut out };
        self.ws.write(&mut p, msg).unwrap();
        self.ws.flush(&mut p).unwrap();
        out
    }
}

fn settings() -> ConnSettings {
    ConnSettings {
        handshake_timeout: Duration::from_secs(5),
        ping_interval: Duration::from_secs(10),
        liveness_margin: Duration::from_secs(3),
        close_timeout: Duration::from_secs(1),
        max_message_bytes: 1 << 16,
    }
}

/// A connection at `t0`, its request answered with a 101.
fn open(t0: Instant) -> (ClientConn, Server) {
    let url = WsUrl::parse("ws://127.0.0.1:1/echo").unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==".to_owned();
    let mut c = ClientConn::new(&url, key.clone(), &[], settings(), t0);
    let req = String::from_utf8(c.pending_output().to_vec()).unwrap();
    assert!(req.starts_with("GET /echo HTTP/1.1\r\n"), "{req}");
    c.consume_output(req.len());
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key.as_bytes())
    );
    c.handle_input(resp.as_bytes(), t0);
    assert_eq!(c.poll_event(), Some(ConnEvent::Open));
    (c, Server::new())
}

fn take(c: &mut ClientConn) -> Vec<u8> {
    let out = c.pending_output().to_vec();
    c.consume_output(out.len());
    out
}

#[test]
fn messages_both_ways_masked_out_and_a_frame_glued_to_the_101() {
    let t0 = Instant::now();
    let url = WsUrl::parse("ws://h/").unwrap();
    let key = "AQIDBAUGBwgJCgsMDQ4PEA==".to_owned();
    let mut c = ClientConn::new(&url, key.clone(), &[], settings(), t0);
    take(&mut c);
    let mut server = Server::new();
    let mut resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key.as_bytes())
    )
    .into_bytes();
    resp.extend(server.frame(Message::text("welcome")));
    // In two pieces, the split inside the head.
    c.handle_input(&resp[..20], t0);
    assert_eq!(c.poll_event(), None);
    c.handle_input(&resp[20..], t0);
    assert_eq!(c.poll_event(), Some(ConnEvent::Open));
    assert_eq!(c.poll_event(), Some(ConnEvent::Message(Incoming::Text("welcome".into()))));

    c.send_text("hi").unwrap();
    c.send_binary(vec![0u8, 255]).unwrap();
    let out = take(&mut c);
    assert_ne!(out[1] & 0x80, 0, "client frames are masked");
    assert_eq!(server.read(&out), [Message::text("hi"), Message::binary(vec![0u8, 255])]);
}

#[test]
fn pings_are_answered_and_silence_pings_then_times_out() {
    let t0 = Instant::now();
    let (mut c, mut server) = open(t0);
    let ping = server.frame(Message::Ping(Bytes::from_static(b"p")));
    c.handle_input(&ping, t0);
    assert_eq!(server.read(&take(&mut c)), [Message::Pong(Bytes::from_static(b"p"))]);

    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    c.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(server.read(&take(&mut c)), [Message::Ping(Bytes::new())]);
    // Data resets the silence.
    let t1 = t0 + Duration::from_secs(12);
    c.handle_input(&server.frame(Message::text("x")), t1);
    assert!(matches!(c.poll_event(), Some(ConnEvent::Message(_))));
    assert_eq!(c.poll_timeout(), Some(t1 + Duration::from_secs(10)));
    c.handle_timeout(t1 + Duration::from_secs(10));
    take(&mut c);
    assert_eq!(c.poll_timeout(), Some(t1 + Duration::from_secs(13)));
    c.handle_timeout(t1 + Duration::from_secs(13));
    assert_eq!(c.poll_event(), Some(ConnEvent::Closed(Ending::Timeout)));
}

#[test]
fn client_close_waits_for_the_reply_then_eof() {
    let t0 = Instant::now();
    let (mut c, mut server) = open(t0);
    c.close(1000, "bye", t0);
    assert!(c.send_text("late").is_err());
    let got = server.read(&take(&mut c));
    assert!(
        matches!(&got[..], [Message::Close(Some(f))] if u16::from(f.code) == 1000 && f.reason == "bye")
    );
    // The server's reply (tungstenite wrote it while reading).
    let reply = std::mem::take(&mut server.replies);
    assert!(!reply.is_empty());
    c.handle_input(&reply, t0);
    assert_eq!(c.poll_event(), None, "waits for the server to close TCP");
    c.handle_eof(t0);
    assert_eq!(c.poll_event(), Some(ConnEvent::Closed(Ending::ClientClosed { code: 1000 })));
    assert!(c.is_closed());
}

#[test]
fn server_close_is_answered_and_reported_with_its_code() {
    let t0 = Instant::now();
    let (mut c, mut server) = open(t0);
    let frame = CloseFrame { code: CloseCode::from(4001), reason: "token expired".into() };
    c.handle_input(&server.frame(Message::Close(Some(frame))), t0);
    let got = server.read(&take(&mut c));
    assert!(matches!(&got[..], [Message::Close(Some(f))] if u16::from(f.code) == 4001));
    // No EOF: the close timeout ends it.
    c.handle_timeout(t0 + Duration::from_secs(1));
    let ending = Ending::ServerClosed { code: 4001, reason: "token expired".into() };
    assert!(ending.refusal().is_some(), "4xxx means do not come back");
    assert_eq!(c.poll_event(), Some(ConnEvent::Closed(ending)));
}

#[test]
fn protocol_errors_close_with_the_right_code() {
    let t0 = Instant::now();
    // A masked frame from the server.
    let (mut c, _) = open(t0);
    c.handle_input(&[0x81, 0x81, 1, 2, 3, 4, b'a' ^ 1], t0);
    assert!(matches!(c.poll_event(), Some(ConnEvent::Closed(Ending::Protocol { code: 1002, .. }))));
    assert_eq!(&take(&mut c)[..2], &[0x88, 0x82], "a masked close frame with a code");
    // Invalid UTF-8 in a text frame.
    let (mut c, _) = open(t0);
    c.handle_input(&[0x81, 0x02, 0xff, 0xfe], t0);
    assert!(matches!(c.poll_event(), Some(ConnEvent::Closed(Ending::Protocol { code: 1007, .. }))));
    // Over the message limit.
    let (mut c, mut server) = open(t0);
    c.handle_input(&server.frame(Message::binary(vec![0u8; (1 << 16) + 1])), t0);
    assert!(matches!(c.poll_event(), Some(ConnEvent::Closed(Ending::Protocol { code: 1009, .. }))));
}

#[test]
fn handshake_refusal_timeout_and_eof() {
    let t0 = Instant::now();
    let url = WsUrl::parse("ws://h/").unwrap();
    let mut c = ClientConn::new(&url, "k".into(), &[], settings(), t0);
    c.handle_input(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 19\r\n\r\norigin not allowed\n", t0);
    match c.poll_event() {
        Some(ConnEvent::Closed(e @ Ending::Handshake(_))) => assert!(e.refusal().is_some(), "{e}"),
        other => panic!("{other:?}"),
    }
    let mut c = ClientConn::new(&url, "k".into(), &[], settings(), t0);
    c.handle_timeout(t0 + Duration::from_secs(4));
    assert_eq!(c.poll_event(), None);
    c.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(c.poll_event(), Some(ConnEvent::Closed(Ending::HandshakeTimeout)));
    let mut c = ClientConn::new(&url, "k".into(), &[], settings(), t0);
    c.handle_eof(t0);
    assert!(matches!(
        c.poll_event(),
        Some(ConnEvent::Closed(Ending::Handshake(ResponseError::Malformed(_))))
    ));
}

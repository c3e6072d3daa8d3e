//! [`Session`] on a fake clock: reconnect schedule, "do not come back",
//! resubscribe with positions.

use std::time::Duration;

use super::*;
use crate::client::conn::Ending;
use crate::client::url::WsUrl;
use crate::client::Backoff;
use crate::handshake::accept_key;

fn cfg(reconnect: Option<Backoff>) -> Arc<ClientConfig> {
    let mut c = ClientConfig::new(WsUrl::parse("ws://127.0.0.1:1/ws").unwrap());
    c.reconnect = reconnect;
    Arc::new(c)
}

fn backoff() -> Backoff {
    Backoff {
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(800),
        max_attempts: Some(5),
        reset_after: Duration::from_secs(10),
    }
}

/// Answers the pending upgrade request with a 101.
fn accept(s: &mut Session, now: Instant) -> String {
    assert!(s.take_connect(), "the session asks for a socket");
    let req = String::from_utf8(s.pending_output().to_vec()).unwrap();
    s.consume_output(req.len());
    let key = req.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key.as_bytes())
    );
    s.handle_input(resp.as_bytes(), now);
    req
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn retry_of(evs: &[Event]) -> Duration {
    match evs.last() {
        Some(Event::Disconnected { next: Next::Retry(d), .. }) => *d,
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[test]
fn failed_attempts_back_off_within_doubling_windows_then_give_up() {
    let t0 = Instant::now();
    let mut s = Session::with_rng(cfg(Some(backoff())), t0, Rng::new(1));
    let mut now = t0;
    for (attempt, window_ms) in [100u64, 200, 400, 800, 800].into_iter().enumerate() {
        assert!(s.take_connect(), "attempt {attempt}");
        s.handle_io_error("connection refused".into(), now);
        s.release_conn();
        let d = retry_of(&events(&mut s));
        assert!(d < Duration::from_millis(window_ms), "attempt {attempt}: {d:?}");
        assert_eq!(s.poll_timeout(), Some(now + d));
        s.handle_timeout(now + d - Duration::from_nanos(1).min(d));
        if !d.is_zero() {
            assert!(!s.take_connect(), "not before the delay");
        }
        now += d;
        s.handle_timeout(now);
    }
    assert!(s.take_connect());
    s.handle_io_error("connection refused".into(), now);
    s.release_conn();
    assert!(matches!(
        events(&mut s).last(),
        Some(Event::Disconnected { next: Next::Stop(Stop::GaveUp { attempts: 5 }), .. })
    ));
    assert!(s.is_stopped());
}

#[test]
fn a_connection_that_stayed_up_resets_the_backoff() {
    let t0 = Instant::now();
    let mut s = Session::with_rng(cfg(Some(backoff())), t0, Rng::new(2));
    let mut now = t0;
    // Three quick failures: the window is now 800 ms.
    for _ in 0..3 {
        s.take_connect();
        s.handle_io_error("refused".into(), now);
        s.release_conn();
        now += retry_of(&events(&mut s));
        s.handle_timeout(now);
    }
    accept(&mut s, now);
    assert!(matches!(events(&mut s)[..], [Event::Connected { count: 1 }]));
    now += Duration::from_secs(11);
    s.handle_eof(now);
    s.release_conn();
    let d = retry_of(&events(&mut s));
    assert!(d < Duration::from_millis(100), "reset to the first window: {d:?}");
}

#[test]
fn policy_close_codes_and_auth_refusals_stop_reconnecting() {
    let t0 = Instant::now();
    for (code, stops) in [(1008u16, true), (4001, true), (4999, true), (1001, false), (1011, false)]
    {
        let mut s = Session::with_rng(cfg(Some(backoff())), t0, Rng::new(3));
        accept(&mut s, t0);
        // An unmasked close frame with `code`.
        let mut frame = vec![0x88, 2];
        frame.extend_from_slice(&code.to_be_bytes());
        s.handle_input(&frame, t0);
        s.handle_eof(t0);
        let evs = events(&mut s);
        let stopped = matches!(
            evs.last(),
            Some(Event::Disconnected { next: Next::Stop(Stop::Refused(_)), .. })
        );
        assert_eq!(stopped, stops, "code {code}: {evs:?}");
    }
    let mut s = Session::with_rng(cfg(Some(backoff())), t0, Rng::new(4));
    assert!(s.take_connect());
    s.handle_input(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", t0);
    assert!(matches!(
        events(&mut s).last(),
        Some(Event::Disconnected { next: Next::Stop(Stop::Refused(_)), .. })
    ));
}

#[test]
fn without_reconnect_one_connection_only_and_user_close_stops() {
    let t0 = Instant::now();
    let mut s = Session::with_rng(cfg(None), t0, Rng::new(5));
    accept(&mut s, t0);
    s.handle_eof(t0);
    assert!(matches!(
        events(&mut s).last(),
        Some(Event::Disconnected { reason: Ending::Lost, next: Next::Stop(Stop::NoReconnect) })
    ));

    let mut s = Session::with_rng(cfg(Some(backoff())), t0, Rng::new(6));
    accept(&mut s, t0);
    s.close(1000, "", t0);
    s.handle_eof(t0);
    assert!(matches!(
        events(&mut s).last(),
        Some(Event::Disconnected { next: Next::Stop(Stop::ByUser), .. })
    ));
}

#[test]
fn rooms_are_resubscribed_on_every_connection() {
    let t0 = Instant::now();
    let mut s = Session::with_rng(cfg(Some(backoff())), t0, Rng::new(7));
    s.subscribe("a");
    s.subscribe("b");
    accept(&mut s, t0);
    let out = texts(s.pending_output()).join("\n");
    assert!(out.contains(r#""room":"a""#) && out.contains(r#""room":"b""#), "{out:?}");
    s.consume_output(s.pending_output().len());
    s.handle_eof(t0);
    s.release_conn();
    let d = retry_of(&events(&mut s));
    s.handle_timeout(t0 + d);
    accept(&mut s, t0 + d);
    assert!(matches!(events(&mut s)[..], [Event::Connected { count: 2 }]));
    let out = texts(s.pending_output()).join("\n");
    assert!(out.contains(r#""room":"a""#) && out.contains(r#""room":"b""#), "{out:?}");
    s.consume_output(s.pending_output().len());
}

/// The payloads of masked client frames (short ones).
fn texts(mut b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while b.len() >= 6 {
        let len = (b[1] & 0x7f) as usize;
        assert!(len < 126, "short frames only");
        let mask = [b[2], b[3], b[4], b[5]];
        let payload: Vec<u8> =
            b[6..6 + len].iter().enumerate().map(|(i, x)| x ^ mask[i % 4]).collect();
        out.push(String::from_utf8(payload).unwrap());
        b = &b[6 + len..];
    }
    out
}

//! Reconnecting: a server stopped and started again on the same port (the
//! client comes back and resubscribes), a silent server (liveness timeout),
//! a "do not come back" close code, and recovery after a dropped
//! connection (exact when the server has history, `NotRecovered` when not).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::*;
use wsedge::client::{
    Backoff, Client, ClientConfig, ConnSettings, Ending, Event, Incoming, Next, Stop, WsUrl,
};

const WAIT: Duration = Duration::from_secs(10);

fn fast_backoff() -> Backoff {
    Backoff {
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_attempts: None,
        reset_after: Duration::from_secs(5),
    }
}

fn cfg(url: &str) -> ClientConfig {
    let mut c = ClientConfig::new(WsUrl::parse(url).unwrap());
    c.reconnect = Some(fast_backoff());
    c
}

/// Events until `pick` returns something (other events are skipped); fails
/// after [`WAIT`].
fn until<T>(c: &mut Client, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ev = c.next_event(left).expect("the awaited event in time");
        if let Some(t) = pick(&ev) {
            return t;
        }
    }
}

#[test]
fn a_restarted_server_gets_the_client_back_resubscribed() {
    let first = start(&config(2, |_| {}));
    let addr = first.local_addr();
    let url = format!("ws://{addr}/ws");
    let mut sub = Client::connect(cfg(&url), WAIT).unwrap();
    sub.subscribe("lobby");
    until(&mut sub, |e| matches!(e, Event::Subscribed { .. }).then_some(()));

    first.shutdown(Duration::from_millis(500));
    let retry = until(&mut sub, |e| match e {
        Event::Disconnected { next, .. } => Some(next.clone()),
        _ => None,
    });
    assert!(matches!(retry, Next::Retry(_)), "{retry:?}");
    let second = start(&config(2, |c| c.server.listen = addr));
    assert_eq!(second.local_addr(), addr);
    until(&mut sub, |e| matches!(e, Event::Connected { count: 2 }).then_some(()));
    // A server without history cannot replay: the room is resubscribed and
    // the application is told it may have missed messages.
    until(&mut sub, |e| {
        matches!(e, Event::NotRecovered { room, .. } if room == "lobby").then_some(())
    });

    // The new server numbers the room from 1 again; that is not taken for
    // a duplicate of the old server's message 1.
    let mut publisher = Client::connect(cfg(&url), WAIT).unwrap();
    publisher.publish("lobby", r#""after the restart""#).unwrap();
    let d = until(&mut sub, |e| match e {
        Event::Delivery(d) => Some(d.clone()),
        _ => None,
    });
    assert_eq!((d.offset, d.data.get()), (1, r#""after the restart""#));
}

/// A TCP server that answers every upgrade with a 101, then runs `after`
/// on the socket (in a thread per connection). Returns its port.
fn fake_server(after: fn(&mut std::net::TcpStream)) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let key = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                    .unwrap_or("")
                    .to_owned();
                let resp = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    wsedge::handshake::accept_key(key.as_bytes())
                );
                let _ = s.write_all(resp.as_bytes());
                after(&mut s);
            });
        }
    });
    port
}

#[test]
fn a_silent_server_is_dropped_and_reconnected() {
    // Never answers a ping, never sends anything.
    let port = fake_server(|s| {
        let mut sink = [0u8; 256];
        while s.read(&mut sink).unwrap_or(0) > 0 {}
    });
    let mut c = cfg(&format!("ws://127.0.0.1:{port}/"));
    c.conn = ConnSettings {
        ping_interval: Duration::from_millis(100),
        liveness_margin: Duration::from_millis(100),
        ..ConnSettings::default()
    };
    let mut client = Client::connect(c, WAIT).unwrap();
    let (reason, next) = until(&mut client, |e| match e {
        Event::Disconnected { reason, next } => Some((reason.clone(), next.clone())),
        _ => None,
    });
    assert_eq!(reason, Ending::Timeout);
    assert!(matches!(next, Next::Retry(_)));
    until(&mut client, |e| matches!(e, Event::Connected { count: 2 }).then_some(()));
}

#[test]
fn close_code_4001_stops_reconnecting() {
    let port = fake_server(|s| {
        // Close 4001 "token expired", unmasked.
        let mut frame = vec![0x88, 15, 0x0f, 0xa1];
        frame.extend_from_slice(b"token expired");
        let _ = s.write_all(&frame);
        let mut sink = [0u8; 256];
        while s.read(&mut sink).unwrap_or(0) > 0 {}
    });
    let mut client = Client::start(cfg(&format!("ws://127.0.0.1:{port}/"))).unwrap();
    let (reason, next) = until(&mut client, |e| match e {
        Event::Disconnected { reason, next } => Some((reason.clone(), next.clone())),
        _ => None,
    });
    assert_eq!(reason, Ending::ServerClosed { code: 4001, reason: "token expired".into() });
    match next {
        Next::Stop(Stop::Refused(why)) => assert!(why.contains("4001"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(client.next_event(Duration::from_millis(300)).is_none(), "no further attempt");
}

/// A config with history on, when this build's server has it (the history
/// feature adds the keys; see PROTOCOL.md). `None` otherwise.
fn history_config() -> Option<wsedge::Config> {
    let toml = "[pubsub]\nhistory_size = 1000\nhistory_ttl_ms = 60000\n";
    Some(wsedge::Config::from_toml(toml, "test").expect("the history keys parse"))
}

#[test]
fn a_dropped_connection_recovers_exactly_or_says_it_did_not() {
    let mut c = history_config().unwrap_or_default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.workers = 2;
    let server = start(&c);
    let url = format!("ws://{}/ws", server.local_addr());
    let mut sub = Client::connect(cfg(&url), WAIT).unwrap();
    sub.subscribe("feed");
    until(&mut sub, |e| matches!(e, Event::Subscribed { .. }).then_some(()));
    let mut publisher = Client::connect(cfg(&url), WAIT).unwrap();
    let publish = |p: &mut Client, i: u32| {
        p.publish("feed", &i.to_string()).unwrap();
    };
    let mut seen = Vec::new();
    for i in 0..10 {
        publish(&mut publisher, i);
    }
    while seen.len() < 10 {
        if let Event::Delivery(d) =
            until(&mut sub, |e| matches!(e, Event::Delivery(_)).then(|| e.clone()))
        {
            seen.push(d.data.get().parse::<u32>().unwrap());
        }
    }
    let history = sub.session().rooms().position("feed").and_then(|(_, e)| e).is_some();

    // Away: the connection drops (no close frame); 50 messages are
    // published meanwhile.
    sub.abort();
    for i in 10..60 {
        publish(&mut publisher, i);
    }
    let outcome = until(&mut sub, |e| match e {
        Event::Recovered { .. } => Some(true),
        Event::NotRecovered { .. } => Some(false),
        _ => None,
    });
    for i in 60..70 {
        publish(&mut publisher, i);
    }
    if history {
        assert!(outcome, "a server with history recovers a short absence");
        // Exactly the missed ones in order, then the live ones: no gap, no
        // duplicate.
        while seen.len() < 70 {
            if let Event::Delivery(d) =
                until(&mut sub, |e| matches!(e, Event::Delivery(_)).then(|| e.clone()))
            {
                seen.push(d.data.get().parse::<u32>().unwrap());
            }
        }
        assert_eq!(seen, (0..70).collect::<Vec<_>>());
        sub.send_text(r#"{"type":"presence","room":"feed","id":"end"}"#).unwrap();
        until(&mut sub, |e| match e {
            Event::Delivery(d) => panic!("unexpected extra delivery {}", d.offset),
            Event::Message(Incoming::Text(t)) if t.contains(r#""id":"end""#) => Some(()),
            _ => None,
        });
    } else {
        assert!(!outcome, "without history the client is told it missed messages");
        // Live messages after the resubscribe still arrive, numbered afresh.
        let d = until(&mut sub, |e| match e {
            Event::Delivery(d) => Some(d.clone()),
            _ => None,
        });
        assert!(d.data.get().parse::<u32>().unwrap() >= 60);
    }
}

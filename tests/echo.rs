//! Echo over real sockets: sizes across every length encoding, fragments,
//! ping/pong, and many concurrent clients over all workers.

mod common;

use common::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

#[test]
fn echoes_text_and_binary_at_every_length_boundary() {
    let server = start(&config(2, |c| c.websocket.max_message_bytes = 1 << 20));
    let mut ws = client(server.local_addr(), "/echo");
    for size in [0usize, 1, 125, 126, 65535, 65536, 1 << 20] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        ws.send(Message::binary(data.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::binary(data), "binary size {size}");
        let text: String = (0..size).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(text), "text size {size}");
    }
    ws.close(None).unwrap();
}

#[test]
fn fragmented_message_with_ping_between_fragments_is_reassembled() {
    let server = start(&config(1, |_| {}));
    let mut raw = Raw::upgrade(server.local_addr(), "/echo");
    let mut bytes = frame(false, 1, b"Hello, ");
    bytes.extend(frame(true, 9, b"mid-ping"));
    bytes.extend(frame(false, 0, "wörld".as_bytes()));
    bytes.extend(frame(true, 0, b"!"));
    // Split the whole sequence into 3-byte writes to cross every boundary.
    for chunk in bytes.chunks(3) {
        raw.send(chunk);
    }
    let pong = raw.read_frame().expect("pong");
    assert_eq!((pong.opcode, pong.payload.as_slice()), (10, &b"mid-ping"[..]));
    let echo = raw.read_frame().expect("echo");
    assert_eq!(echo.opcode, 1);
    assert!(echo.fin);
    assert_eq!(echo.payload, "Hello, wörld!".as_bytes());
}

#[test]
fn ping_is_answered_with_pong_carrying_the_same_payload() {
    let server = start(&config(1, |_| {}));
    let mut raw = Raw::upgrade(server.local_addr(), "/echo");
    raw.send(&frame(true, 9, b"are you there"));
    let f = raw.read_frame().expect("pong");
    assert_eq!(f.opcode, 10);
    assert_eq!(f.payload, b"are you there");
}

#[test]
fn client_close_is_answered_with_the_same_code_then_tcp_closes() {
    let server = start(&config(1, |_| {}));
    let mut ws = client(server.local_addr(), "/echo");
    ws.send(Message::text("before close")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("before close"));
    ws.close(Some(CloseFrame { code: CloseCode::Library(4000), reason: "bye".into() })).unwrap();
    match ws.read() {
        Ok(Message::Close(Some(cf))) => assert_eq!(cf.code, CloseCode::Library(4000)),
        other => panic!("expected the close reply, got {other:?}"),
    }
    // The server then closes the TCP connection.
    assert!(matches!(ws.read(), Err(tungstenite::Error::ConnectionClosed)));
}

#[test]
fn bytes_pipelined_after_the_upgrade_request_are_not_lost() {
    let server = start(&config(1, |_| {}));
    let mut raw = Raw::connect(server.local_addr());
    let mut bytes = upgrade_request("/echo").into_bytes();
    bytes.extend(frame(true, 1, b"first"));
    bytes.extend(frame(true, 2, b"second"));
    raw.send(&bytes);
    assert!(raw.read_http_head().starts_with("HTTP/1.1 101"));
    assert_eq!(raw.read_frame().unwrap().payload, b"first");
    assert_eq!(raw.read_frame().unwrap().payload, b"second");
}

#[test]
fn a_thousand_concurrent_clients_over_all_workers_all_echo() {
    let server = start(&config(2, |_| {}));
    let addr = server.local_addr();
    let mut threads = Vec::new();
    for t in 0..10 {
        threads.push(std::thread::spawn(move || {
            let mut conns: Vec<Raw> = (0..100).map(|_| Raw::upgrade(addr, "/echo")).collect();
            for round in 0..3 {
                for (i, c) in conns.iter_mut().enumerate() {
                    c.send(&frame(true, 1, format!("t{t} c{i} r{round}").as_bytes()));
                }
                for (i, c) in conns.iter_mut().enumerate() {
                    let f = c.read_frame().expect("echo");
                    assert_eq!(f.payload, format!("t{t} c{i} r{round}").as_bytes());
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let per_worker = server.worker_stats();
    assert!(per_worker.iter().all(|w| w.upgraded > 0), "every worker took connections");
    let stats = server.stats();
    assert_eq!(stats.upgraded, 1000);
    assert_eq!(stats.msgs_in, 3000);
}

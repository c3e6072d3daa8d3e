//! tokio-tungstenite pub/sub server speaking the subset of wsedge's `/ws`
//! protocol that `wsedge-bench pubsub` uses (PROTOCOL.md): `welcome`,
//! `subscribe` and `publish` acked by `id`, deliveries
//! `{"type":"message","room","from","seq","data"}` with `seq` per room
//! starting at 1. Written the idiomatic way: a multi-threaded tokio runtime, one task per
//! connection reading, one writing (feeding every queued message, then one
//! flush), and a `tokio::sync::broadcast` channel per room with one
//! forwarding task per subscription. Each delivery is encoded once and
//! shared (`Utf8Bytes` clones are reference counts). A subscriber more than
//! `ROOM_CAPACITY` messages behind loses the oldest (broadcast's `Lagged`):
//! the load tester reports them missing. JSON only (no binary form), no
//! unsubscribe, presence or direct messages.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message;

/// Messages a room's channel keeps for its slowest subscriber.
const ROOM_CAPACITY: usize = 4096;

struct Room {
    seq: u64,
    tx: broadcast::Sender<Message>,
}

#[derive(Default)]
struct Rooms(Mutex<HashMap<String, Arc<Mutex<Room>>>>);

impl Rooms {
    fn get(&self, name: &str) -> Arc<Mutex<Room>> {
        let mut map = self.0.lock().expect("rooms lock");
        map.entry(name.to_string())
            .or_insert_with(|| {
                let (tx, _) = broadcast::channel(ROOM_CAPACITY);
                Arc::new(Mutex::new(Room { seq: 0, tx }))
            })
            .clone()
    }
}

fn text(s: String) -> Message {
    Message::Text(s.into())
}

fn error(id: Option<&Value>, code: &str, message: &str) -> Message {
    let mut v = serde_json::json!({"type": "error", "code": code, "message": message});
    if let Some(id) = id {
        v["id"] = id.clone();
    }
    text(v.to_string())
}

/// Handles one request; what to queue back on the connection.
fn request(
    rooms: &Rooms,
    me: u64,
    out: &mpsc::UnboundedSender<Message>,
    subscribed: &mut Vec<String>,
    raw: &str,
) -> Option<Message> {
    let Ok(v) = serde_json::from_str::<Value>(raw) else {
        return Some(error(None, "bad_json", "the text is not a JSON object"));
    };
    let id = v.get("id").filter(|i| !i.is_null());
    let ack = || id.map(|i| text(format!(r#"{{"type":"ack","id":{i}}}"#)));
    let Some(room) = v.get("room").and_then(Value::as_str) else {
        return Some(error(id, "missing_field", "room is required"));
    };
    match v.get("type").and_then(Value::as_str) {
        Some("subscribe") => {
            if !subscribed.iter().any(|r| r == room) {
                subscribed.push(room.to_string());
                // Subscribed before the ack is queued: every publish after
                // the client saw the ack reaches it.
                let mut rx = rooms.get(room).lock().expect("room lock").tx.subscribe();
                let out = out.clone();
                tokio::spawn(async move {
                    loop {
                        match rx.recv().await {
                            Ok(m) => {
                                if out.send(m).is_err() {
                                    return;
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => {}
                            Err(broadcast::error::RecvError::Closed) => return,
                        }
                    }
                });
            }
            ack()
        }
        Some("publish") => {
            let data = v.get("data").unwrap_or(&Value::Null);
            let room_state = rooms.get(room);
            let mut r = room_state.lock().expect("room lock");
            r.seq += 1;
            let m = format!(
                r#"{{"type":"message","room":{},"from":"{me:x}","seq":{},"data":{data}}}"#,
                Value::from(room),
                r.seq
            );
            // No receiver is not an error: nobody is subscribed.
            let _ = r.tx.send(text(m));
            drop(r);
            ack()
        }
        _ => Some(error(id, "unknown_type", "type names no request")),
    }
}

async fn serve(stream: TcpStream, rooms: Arc<Rooms>, me: u64) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut read) = ws.split();
    let (out, mut queue) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(m) = queue.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            while let Ok(m) = queue.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let _ = out.send(text(format!(r#"{{"type":"welcome","conn_id":"{me:x}"}}"#)));
    let mut subscribed = Vec::new();
    while let Some(Ok(msg)) = read.next().await {
        match msg {
            Message::Text(t) => {
                if let Some(reply) = request(&rooms, me, &out, &mut subscribed, t.as_str()) {
                    let _ = out.send(reply);
                }
            }
            Message::Binary(_) => {
                let _ = out.send(error(None, "bad_binary", "binary messages are not supported"));
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    drop(out);
    writer.abort();
}

fn main() {
    let args = wsedge_peers::args("tt-pubsub");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(args.listen).await.expect("bind");
        eprintln!(
            "tt-pubsub: ws://{}/ ({} worker threads)",
            listener.local_addr().expect("local addr"),
            args.threads
        );
        let rooms = Arc::new(Rooms::default());
        let ids = AtomicU64::new(1);
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let me = ids.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(serve(stream, rooms.clone(), me));
                }
                Err(e) => {
                    eprintln!("tt-pubsub: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
}

//! The command thread: one Redis connection, pipelined. Every command that
//! is waiting when the thread wakes (up to [`MAX_BATCH`]) goes to Redis in
//! one round trip, so under load many publishes share one. Replies to
//! `history` and `presence` are encoded here and sent to the asking
//! connection's worker; a publish Redis could not take is sent back to the
//! room's owner worker for local delivery.
//!
//! It also keeps this node's members of every room and refreshes their
//! expiry in Redis every third of `presence_ttl_ms` (and at once after a
//! reconnect), so a node that dies leaves nothing behind after the TTL.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use redis::{Connection, Value};

use super::wire::{self, Keys};
use super::{next_backoff, Cmd, Env};
use crate::pubsub::protocol::{self as proto, Epoch};
use crate::pubsub::room::RoomName;
use crate::pubsub::{BusMsg, HistoryAsk};

/// Most commands in one pipeline.
const MAX_BATCH: usize = 1024;

struct Scripts {
    publish: String,
    history: String,
    members: String,
    presence: String,
}

impl Scripts {
    fn new() -> Scripts {
        let sha = |code| redis::Script::new(code).get_hash().to_string();
        Scripts {
            publish: sha(wire::PUBLISH),
            history: sha(wire::HISTORY),
            members: sha(wire::MEMBERS),
            presence: sha(wire::PRESENCE),
        }
    }
}

/// Connects, names the connection `wsedge-<node>-<role>` (as `CLIENT
/// LIST` shows it) and loads the scripts.
pub(super) fn connect(env: &Env, role: &str, scripts: &[&str]) -> redis::RedisResult<Connection> {
    let client = redis::Client::open(env.url.as_str())?;
    let mut con = client.get_connection_with_timeout(env.connect_timeout)?;
    con.set_read_timeout(Some(env.command_timeout))?;
    con.set_write_timeout(Some(env.command_timeout))?;
    let name = format!("wsedge-{}-{role}", env.node);
    let _: () = redis::cmd("CLIENT").arg("SETNAME").arg(name).query(&mut con)?;
    for code in scripts {
        let _: String = redis::cmd("SCRIPT").arg("LOAD").arg(*code).query(&mut con)?;
    }
    Ok(con)
}

/// A fresh epoch for a position this node may create.
pub(super) fn fresh_epoch(state: &RandomState, n: &mut u64) -> Epoch {
    *n += 1;
    Epoch(state.hash_one(*n) as u32)
}

struct Thread {
    env: Env,
    keys: Keys,
    scripts: Scripts,
    con: Option<Connection>,
    next_try: Instant,
    backoff: Duration,
    members: HashMap<RoomName, HashSet<u64>>,
    refresh_at: Instant,
    epochs: RandomState,
    minted: u64,
}

/// Runs until every sender is gone.
pub(super) fn run(env: Env, rx: Receiver<Cmd>) {
    let refresh = Duration::from_millis(env.presence_ttl_ms / 3);
    let mut t = Thread {
        keys: Keys::new(&env.prefix),
        env,
        scripts: Scripts::new(),
        con: None,
        next_try: Instant::now(),
        backoff: Duration::ZERO,
        members: HashMap::new(),
        refresh_at: Instant::now() + refresh,
        epochs: RandomState::new(),
        minted: 0,
    };
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let now = Instant::now();
        let mut wake = t.refresh_at;
        if t.con.is_none() {
            wake = wake.min(t.next_try);
        }
        match rx.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(cmd) => batch.push(cmd),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let mut closed = false;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(cmd) => batch.push(cmd),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if t.con.is_none() && Instant::now() >= t.next_try {
            t.reconnect();
        }
        let cost: usize = batch.iter().map(Cmd::cost).sum();
        t.execute(&mut batch);
        t.env.shared.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
        if Instant::now() >= t.refresh_at {
            t.refresh_members(refresh);
        }
        if closed {
            return;
        }
    }
}

impl Thread {
    fn reconnect(&mut self) {
        let s = [wire::PUBLISH, wire::HISTORY, wire::MEMBERS, wire::PRESENCE];
        match connect(&self.env, "cmd", &s) {
            Ok(con) => {
                info!("backplane: command connection to Redis up");
                self.con = Some(con);
                self.backoff = Duration::ZERO;
                self.env.shared.commands_up.store(true, Ordering::Relaxed);
                // Redis may have lost the members (a restart): list them now.
                self.refresh_at = Instant::now();
            }
            Err(e) => {
                // The subscriber thread logs the outage once; this is detail.
                debug!("backplane: command connection to Redis failed: {e}");
                self.backoff = next_backoff(self.backoff);
                self.next_try = Instant::now() + self.backoff;
            }
        }
    }

    fn lost(&mut self, e: &redis::RedisError) {
        warn!("backplane: command connection to Redis lost ({e}); reconnecting");
        self.con = None;
        self.env.shared.commands_up.store(false, Ordering::Relaxed);
        self.env.shared.reconnects.fetch_add(1, Ordering::Relaxed);
        self.next_try = Instant::now();
    }

    /// Sends the batch as one pipeline and acts on the replies; without a
    /// connection (or when it fails) publishes go back to their owners for
    /// local delivery and requests are answered `unavailable`.
    fn execute(&mut self, batch: &mut Vec<Cmd>) {
        for cmd in batch.iter() {
            if let Cmd::Member { room, conn, on } = cmd {
                let set = self.members.entry(room.clone()).or_default();
                if *on {
                    set.insert(*conn);
                } else {
                    set.remove(conn);
                    if set.is_empty() {
                        self.members.remove(room);
                    }
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        let had = self.con.is_some();
        let mut replies = self.query(batch);
        if replies.is_none() && had && self.con.is_none() {
            // The connection was stale (Redis restarted while this thread
            // had nothing to send): make it again and send the batch once
            // more. A pipeline Redis ran before the connection broke may
            // thus run twice.
            self.reconnect();
            replies = self.query(batch);
        }
        let mut out: HashMap<usize, Vec<BusMsg>> = HashMap::new();
        match replies {
            Some(replies) => {
                for (cmd, reply) in batch.drain(..).zip(replies) {
                    self.answer(cmd, Some(&reply), &mut out);
                }
            }
            None => {
                for cmd in batch.drain(..) {
                    self.answer(cmd, None, &mut out);
                }
            }
        }
        for (w, msgs) in out {
            self.env.to_worker(w, msgs);
        }
    }

    /// The replies to `batch` as one pipeline, or `None` (no connection, or
    /// it failed: then it is dropped).
    fn query(&mut self, batch: &[Cmd]) -> Option<Vec<Value>> {
        self.con.as_ref()?;
        let pipe = self.pipeline(batch);
        let con = self.con.as_mut()?;
        match pipe.query::<Vec<Value>>(con) {
            Ok(r) if r.len() == batch.len() => Some(r),
            Ok(_) => None,
            Err(e) => {
                self.lost(&e);
                None
            }
        }
    }

    fn pipeline(&mut self, batch: &[Cmd]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for cmd in batch {
            match cmd {
                Cmd::Publish { room, from, payload } => {
                    let retention = self.env.history.retention_of(room);
                    let epoch = fresh_epoch(&self.epochs, &mut self.minted);
                    let body: &[u8] = match payload {
                        crate::pubsub::Payload::Json(b) | crate::pubsub::Payload::Binary(b) => b,
                    };
                    pipe.cmd("EVALSHA")
                        .arg(&self.scripts.publish)
                        .arg(2)
                        .arg(self.keys.meta(room))
                        .arg(self.keys.stream(room))
                        .arg(self.keys.channel(room))
                        .arg(epoch.to_string())
                        .arg(retention.size)
                        .arg(retention.ttl_ms.max(1))
                        .arg(self.env.position_ttl_ms(room))
                        .arg(wire::header(*from, payload))
                        .arg(body);
                }
                Cmd::History(a) => {
                    let (since, epoch) = match a.since {
                        Some(s) => (s.offset.to_string(), s.epoch.to_string()),
                        None => ("-".to_string(), String::new()),
                    };
                    pipe.cmd("EVALSHA")
                        .arg(&self.scripts.history)
                        .arg(2)
                        .arg(self.keys.meta(&a.room))
                        .arg(self.keys.stream(&a.room))
                        .arg(a.limit + 1)
                        .arg(since)
                        .arg(epoch);
                }
                Cmd::Presence { room, .. } => {
                    pipe.cmd("EVALSHA")
                        .arg(&self.scripts.presence)
                        .arg(1)
                        .arg(self.keys.members(room))
                        .arg(self.env.presence_max_members);
                }
                Cmd::Member { room, conn, on: true } => {
                    pipe.cmd("EVALSHA")
                        .arg(&self.scripts.members)
                        .arg(1)
                        .arg(self.keys.members(room))
                        .arg(self.env.presence_ttl_ms)
                        .arg(proto::format_conn_id(*conn));
                }
                Cmd::Member { room, conn, on: false } => {
                    pipe.cmd("ZREM").arg(self.keys.members(room)).arg(proto::format_conn_id(*conn));
                }
            }
        }
        pipe
    }

    /// Acts on one command's reply (`None`: Redis did not take it).
    fn answer(&mut self, cmd: Cmd, reply: Option<&Value>, out: &mut HashMap<usize, Vec<BusMsg>>) {
        let failed = reply.is_none_or(|r| matches!(r, Value::ServerError(_)));
        if let Some(Value::ServerError(e)) = reply {
            warn!("backplane: Redis refused a command: {e:?}");
        }
        match cmd {
            Cmd::Publish { room, from, payload } => {
                if failed {
                    // Local delivery never stops: the owner sequences it on
                    // this node alone (PROTOCOL.md, "Clustering").
                    self.env.shared.sent_back.fetch_add(1, Ordering::Relaxed);
                    let owner = self.env.owner_of(&room);
                    out.entry(owner).or_default().push(BusMsg::Publish { room, from, payload });
                } else {
                    self.env.shared.published.fetch_add(1, Ordering::Relaxed);
                }
            }
            Cmd::History(a) => {
                let frame = match reply.filter(|_| !failed).and_then(wire::parse_position) {
                    Some((epoch, offset, entries)) => {
                        self.history_frame(&a, epoch, offset, entries)
                    }
                    None => unavailable(a.id.as_deref()),
                };
                let to = a.conn;
                out.entry(to.worker()).or_default().push(BusMsg::Reply { to, frame });
            }
            Cmd::Presence { room, conn, id } => {
                let frame = match reply.filter(|_| !failed).and_then(wire::parse_presence) {
                    Some((count, ids)) => {
                        proto::presence(id.as_deref(), &room, count, &ids, count > ids.len())
                    }
                    None => unavailable(id.as_deref()),
                };
                out.entry(conn.worker()).or_default().push(BusMsg::Reply { to: conn, frame });
            }
            Cmd::Member { .. } => {}
        }
    }

    fn history_frame(
        &mut self,
        a: &HistoryAsk,
        epoch: Option<Epoch>,
        offset: u64,
        mut entries: Vec<crate::pubsub::RemoteEntry>,
    ) -> bytes::Bytes {
        let epoch = epoch.unwrap_or_else(|| fresh_epoch(&self.epochs, &mut self.minted));
        if a.since.is_none() {
            entries.reverse();
        }
        let mut truncated = entries.len() > a.limit;
        if truncated {
            if a.since.is_none() {
                entries.drain(..entries.len() - a.limit);
            } else {
                entries.truncate(a.limit);
            }
        }
        let mut items = Vec::with_capacity(entries.len());
        let mut total = 0;
        for e in &entries {
            let mut item = String::new();
            let body = match &e.payload {
                crate::pubsub::Payload::Json(d) => {
                    proto::Body::Json(std::str::from_utf8(d).unwrap_or("null"))
                }
                crate::pubsub::Payload::Binary(d) => proto::Body::Binary(d),
            };
            proto::history_item(&mut item, e.offset, e.from, body);
            if total + item.len() > self.env.max_data_bytes && !items.is_empty() {
                truncated = true;
                break;
            }
            total += item.len();
            items.push(item);
        }
        proto::history(a.id.as_deref(), &a.room, offset, epoch, &items, truncated)
    }

    /// Lists every member of this node again with a new expiry.
    fn refresh_members(&mut self, every: Duration) {
        self.refresh_at = Instant::now() + every;
        let Some(con) = self.con.as_mut() else { return };
        if self.members.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (room, ids) in &self.members {
            let ids: Vec<String> = ids.iter().map(|&id| proto::format_conn_id(id)).collect();
            for chunk in ids.chunks(1000) {
                pipe.cmd("EVALSHA")
                    .arg(&self.scripts.members)
                    .arg(1)
                    .arg(self.keys.members(room))
                    .arg(self.env.presence_ttl_ms)
                    .arg(chunk);
            }
        }
        if let Err(e) = pipe.query::<Vec<Value>>(con) {
            self.lost(&e);
        }
    }
}

/// The `error` a request gets while Redis cannot be reached.
fn unavailable(id: Option<&str>) -> bytes::Bytes {
    let rid = id.and_then(|s| serde_json::from_str::<&serde_json::value::RawValue>(s).ok());
    let e = proto::ProtoError::new(
        rid,
        proto::ErrorCode::Unavailable,
        "the cluster backplane (Redis) cannot be reached",
    );
    proto::error(&e)
}

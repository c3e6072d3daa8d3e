//! The subscriber thread: the Redis pub/sub connection, plus a command
//! connection for snapshots and position refreshes.
//!
//! A room is subscribed when its owner worker asks ([`RoomCmd::Subscribe`]):
//! `SUBSCRIBE` first, then (once Redis confirmed it) the snapshot script
//! reads the room's position and stored messages. Every message published
//! after that read arrives on the pub/sub connection, and the owner drops
//! the ones the snapshot already holds (by offset), so the owner misses
//! nothing and sees nothing twice. After a lost connection every wanted room
//! is subscribed again and snapshotted: the owner fills what it missed from
//! the snapshot, or tells its subscribers about the gap.
//!
//! While a worker has more than the bus budget waiting, the thread stops
//! reading from Redis (Redis buffers, up to its own pub/sub output limit;
//! past that it drops the connection, and the rooms resynchronise as
//! above).

use std::collections::HashMap;
use std::hash::RandomState;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use log::{info, warn};
use redis::{Connection, PubSub, RedisResult, Value};

use super::command::{connect, fresh_epoch};
use super::wire::{self, Keys};
use super::{next_backoff, Env, RoomCmd};
use crate::pubsub::room::RoomName;
use crate::pubsub::{BusMsg, RemoteMsg, Snapshot};

/// Longest wait for a pub/sub message before looking at room commands.
const POLL: Duration = Duration::from_millis(5);
/// Most messages read before looking at room commands again.
const MAX_READS: usize = 4096;
/// Rooms subscribed (and snapshotted) per round trip when resubscribing.
const CHUNK: usize = 256;

struct State {
    env: Env,
    keys: Keys,
    snapshot_sha: String,
    /// Rooms wanted, with the owner's subscribe generation.
    rooms: HashMap<RoomName, u64>,
    epochs: RandomState,
    minted: u64,
}

/// Runs until every sender is gone.
pub(super) fn run(env: Env, rx: Receiver<RoomCmd>) {
    let mut s = State {
        keys: Keys::new(&env.prefix),
        snapshot_sha: redis::Script::new(wire::SNAPSHOT).get_hash().to_string(),
        env,
        rooms: HashMap::new(),
        epochs: RandomState::new(),
        minted: 0,
    };
    let mut backoff = Duration::ZERO;
    let mut down_logged = false;
    let mut was_up = false;
    loop {
        let made = connect(&s.env, "sub", &[])
            .and_then(|ps| Ok((ps, connect(&s.env, "snap", &[wire::SNAPSHOT])?)));
        match made {
            Ok((mut ps_con, mut cmd)) => {
                backoff = Duration::ZERO;
                if was_up {
                    s.env.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                let result = s.session(&rx, &mut ps_con, &mut cmd);
                s.env.shared.subscriber_up.store(false, Ordering::Relaxed);
                match result {
                    Ok(()) => return,
                    Err(e) => {
                        warn!(
                            "backplane: lost Redis at {} ({e}); serving this node's clients alone, reconnecting",
                            s.env.url
                        );
                        down_logged = true;
                        was_up = true;
                        for w in 0..s.env.peers.len() {
                            s.env.to_worker(w, vec![BusMsg::ClusterDown]);
                        }
                    }
                }
            }
            Err(e) => {
                if !down_logged {
                    warn!(
                        "backplane: cannot reach Redis at {} ({e}); serving this node's clients alone, retrying with backoff",
                        s.env.url
                    );
                    down_logged = true;
                }
                backoff = next_backoff(backoff);
                let until = Instant::now() + backoff;
                // Keep the wanted rooms current while waiting.
                loop {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match rx.recv_timeout(left) {
                        Ok(cmd) => {
                            s.note(cmd);
                        }
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
        }
    }
}

impl State {
    fn note(&mut self, cmd: RoomCmd) -> Option<(RoomName, u64)> {
        match cmd {
            RoomCmd::Subscribe { room, gen } => {
                self.rooms.insert(room.clone(), gen);
                Some((room, gen))
            }
            RoomCmd::Unsubscribe { room } => {
                self.rooms.remove(&room);
                None
            }
        }
    }

    /// One connection's life; `Ok` when the workers are gone.
    fn session(
        &mut self,
        rx: &Receiver<RoomCmd>,
        ps_con: &mut Connection,
        cmd: &mut Connection,
    ) -> RedisResult<()> {
        let mut ps = ps_con.as_pubsub();
        ps.set_read_timeout(Some(POLL))?;
        let wanted: Vec<(RoomName, u64)> =
            self.rooms.iter().map(|(r, g)| (r.clone(), *g)).collect();
        for chunk in wanted.chunks(CHUNK) {
            self.subscribe(&mut ps, cmd, chunk)?;
        }
        self.env.shared.subscriber_up.store(true, Ordering::Relaxed);
        info!(
            "backplane: connected to Redis at {} as node {} ({} rooms subscribed)",
            self.env.url,
            self.env.node,
            wanted.len()
        );
        let refresh = Duration::from_millis(self.env.presence_ttl_ms / 3);
        let mut refresh_at = Instant::now() + refresh;
        let workers = self.env.peers.len();
        loop {
            let mut fresh = Vec::new();
            let mut unsubscribe = Vec::new();
            loop {
                match rx.try_recv() {
                    Ok(RoomCmd::Unsubscribe { room }) => {
                        self.rooms.remove(&room);
                        unsubscribe.push(self.keys.channel(&room));
                    }
                    Ok(c) => fresh.extend(self.note(c)),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Ok(()),
                }
            }
            if !unsubscribe.is_empty() {
                // A reply wait, not a poll: the longer timeout.
                ps.set_read_timeout(Some(self.env.command_timeout))?;
                ps.unsubscribe(&unsubscribe)?;
                ps.set_read_timeout(Some(POLL))?;
            }
            if !fresh.is_empty() {
                for chunk in fresh.chunks(CHUNK) {
                    self.subscribe(&mut ps, cmd, chunk)?;
                }
            }
            if (0..workers).any(|w| self.env.bus.over_budget(w)) {
                // A worker is behind: let Redis hold the messages a while.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            // Each message goes to its owner at once: the client hides
            // whether more are buffered, and a read timeout is at least a
            // kernel tick (4-8 ms here), far too long to wait for a batch.
            for _ in 0..MAX_READS {
                match ps.get_message() {
                    Ok(msg) => self.route(&msg),
                    Err(e) if e.is_timeout() => break,
                    Err(e) => return Err(e),
                }
            }
            if Instant::now() >= refresh_at {
                refresh_at = Instant::now() + refresh;
                self.refresh_positions(cmd)?;
            }
        }
    }

    /// Subscribes `rooms`, then reads their snapshots (one round trip for
    /// all) and hands each to its owner.
    fn subscribe(
        &mut self,
        ps: &mut PubSub<'_>,
        cmd: &mut Connection,
        rooms: &[(RoomName, u64)],
    ) -> RedisResult<()> {
        let channels: Vec<String> = rooms.iter().map(|(r, _)| self.keys.channel(r)).collect();
        // A reply wait, not a poll: the longer timeout. Redis runs the whole
        // SUBSCRIBE before it answers, so every channel is subscribed once
        // the first confirmation is in.
        ps.set_read_timeout(Some(self.env.command_timeout))?;
        ps.subscribe(&channels)?;
        ps.set_read_timeout(Some(POLL))?;
        let mut pipe = redis::pipe();
        for (room, _) in rooms {
            let epoch = fresh_epoch(&self.epochs, &mut self.minted);
            pipe.cmd("EVALSHA")
                .arg(&self.snapshot_sha)
                .arg(2)
                .arg(self.keys.meta(room))
                .arg(self.keys.stream(room))
                .arg(epoch.to_string())
                .arg(self.env.position_ttl_ms(room))
                .arg(self.env.history.retention_of(room).size);
        }
        let replies: Vec<Value> = pipe.query(cmd)?;
        for ((room, gen), reply) in rooms.iter().zip(&replies) {
            let Some((Some(epoch), offset, mut entries)) = wire::parse_position(reply) else {
                warn!("backplane: unreadable snapshot of room {room}: {reply:?}");
                continue;
            };
            entries.reverse();
            let snap = Snapshot { room: room.clone(), gen: *gen, epoch, offset, entries };
            self.env.to_worker(self.env.owner_of(room), vec![BusMsg::Live(Box::new(snap))]);
        }
        Ok(())
    }

    fn route(&self, msg: &redis::Msg) {
        let Some(room) = self.keys.room_of(msg.get_channel_name()) else { return };
        let Some((epoch, entry)) = wire::parse_message(msg.get_payload_bytes()) else {
            warn!("backplane: unreadable message on room {room}");
            return;
        };
        self.env.shared.received.fetch_add(1, Ordering::Relaxed);
        let owner = self.env.owner_of(room);
        let m = RemoteMsg { room: RoomName::from(room), epoch, entry };
        self.env.to_worker(owner, vec![BusMsg::Remote(Box::new(m))]);
    }

    /// Keeps the positions of the rooms this node watches from expiring.
    fn refresh_positions(&self, cmd: &mut Connection) -> RedisResult<()> {
        if self.rooms.is_empty() {
            let _: Value = redis::cmd("PING").query(cmd)?;
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for room in self.rooms.keys() {
            pipe.cmd("PEXPIRE").arg(self.keys.meta(room)).arg(self.env.position_ttl_ms(room));
        }
        let _: Vec<Value> = pipe.query(cmd)?;
        Ok(())
    }
}

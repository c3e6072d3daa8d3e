//! The reconnect storm: 5,000 clients in this process (one driver, one
//! thread), each subscribed to one of 50 rooms, connected to a server that
//! is then shut down and started again on the same port.
//!
//! Asserted: every client comes back and resubscribes; the attempts that
//! brought them back were spread over the backoff window by full jitter
//! (the histogram of the delays the clients drew is flat: no bucket of the
//! window holds more than 15% of them or less than 5%), not one spike;
//! a publisher keeps publishing through the storm, and every client gets
//! every message published to its room after its resubscribe, in order,
//! with no gap and no duplicate, through the last one. When the server's
//! acks carry an epoch (history), a client that reports `Recovered` must
//! also have no gap across the outage; without history every client must
//! report `NotRecovered`.
//!
//! Printed (`--nocapture`): the histogram of when the clients actually
//! reconnected, for BENCHMARKS.md. Timing is reported, never asserted.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::value::RawValue;
use wsedge::client::driver::{Driver, SessionId};
use wsedge::client::{Backoff, ClientConfig, ConnSettings, Event, Next, WsUrl};

const CLIENTS: usize = 5_000;
const ROOMS: usize = 50;
/// The first retry's window: `random(0, WINDOW)`.
const WINDOW: Duration = Duration::from_secs(2);
const BUCKETS: usize = 10;
/// Bound on each phase (not an assertion on speed: a phase that needs
/// longer means the clients did not come back).
const PHASE_LIMIT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Track {
    /// Connections opened (1 before the restart).
    connected: u32,
    /// Delays drawn since the kill.
    drawn: Duration,
    /// When the second connection opened.
    back_at: Option<Instant>,
    /// When this client saw its first connection end.
    lost_at: Option<Instant>,
    /// `Some(true)` Recovered, `Some(false)` NotRecovered.
    recovered: Option<bool>,
    subscribed: bool,
    /// Offsets delivered since the last resubscribe (or the subscribe).
    offsets: Vec<u64>,
    /// Position at the resubscribe ack (epoch servers only).
    resub_position: Option<u64>,
    /// Saw the final message of its room.
    done: bool,
}

fn run_until(
    driver: &mut Driver,
    tracks: &mut [Track],
    kill: &mut Option<Instant>,
    limit: Duration,
    publisher: Option<(SessionId, &mut Publisher)>,
    mut done: impl FnMut(&[Track]) -> bool,
) {
    let deadline = Instant::now() + limit;
    let mut publisher = publisher;
    while !done(tracks) {
        assert!(Instant::now() < deadline, "phase did not finish: {}", summary(tracks));
        driver.turn(Some(Duration::from_millis(20))).unwrap();
        if let Some((id, p)) = publisher.as_mut() {
            p.tick(driver, *id);
        }
        while let Some((SessionId(i), ev)) = driver.next_event() {
            let Some(t) = tracks.get_mut(i) else { continue };
            match ev {
                Event::Connected { count } => {
                    t.connected = count;
                    if count == 2 {
                        t.back_at = Some(Instant::now());
                    }
                }
                Event::Disconnected { next: Next::Retry(d), .. } => {
                    kill.get_or_insert_with(Instant::now);
                    t.lost_at.get_or_insert_with(Instant::now);
                    t.drawn += d;
                }
                Event::Disconnected { reason, next } => {
                    panic!("client {i} stopped: {reason} ({next:?})")
                }
                Event::Subscribed { .. } => t.subscribed = true,
                Event::Recovered { .. } => t.recovered = Some(true),
                Event::NotRecovered { offset, epoch, .. } => {
                    t.recovered = Some(false);
                    // The position the ack gave (read from the event: the
                    // session may have taken later deliveries meanwhile).
                    t.offsets.clear();
                    t.resub_position = epoch.as_ref().and(offset);
                }
                Event::Delivery(d) => {
                    if d.data.get().contains("final") {
                        t.done = true;
                    }
                    t.offsets.push(d.offset);
                }
                Event::Error(e) => panic!("client {i}: {e}"),
                Event::Message(_) => {}
            }
        }
    }
}

fn summary(t: &[Track]) -> String {
    let c = |f: &dyn Fn(&Track) -> bool| t.iter().filter(|x| f(x)).count();
    format!(
        "subscribed {}, back {}, resubscribed {}, done {}",
        c(&|x| x.subscribed),
        c(&|x| x.connected >= 2),
        c(&|x| x.recovered.is_some()),
        c(&|x| x.done)
    )
}

/// Publishes one message to every room every 200 ms; `finish` makes the
/// next round the final one.
struct Publisher {
    next_at: Instant,
    round: u32,
    finish: bool,
    finished: bool,
}

impl Publisher {
    fn tick(&mut self, driver: &mut Driver, id: SessionId) {
        if self.finished || Instant::now() < self.next_at {
            return;
        }
        let open = driver.session(id).is_some_and(|s| s.is_open());
        if !open {
            return;
        }
        self.next_at = Instant::now() + Duration::from_millis(200);
        self.round += 1;
        let data = if self.finish {
            self.finished = true;
            format!(r#"{{"final":{}}}"#, self.round)
        } else {
            self.round.to_string()
        };
        let data: Box<RawValue> = serde_json::from_str(&data).unwrap();
        driver.with_session(id, |s, _| {
            for r in 0..ROOMS {
                s.publish(&format!("storm-{r}"), &data).unwrap();
            }
        });
    }
}

fn histogram(values: impl Iterator<Item = Duration>, bucket: Duration, n: usize) -> Vec<usize> {
    let mut h = vec![0; n + 1];
    for v in values {
        let i = (v.as_nanos() / bucket.as_nanos()) as usize;
        h[i.min(n)] += 1;
    }
    h
}

#[test]
fn five_thousand_clients_come_back_spread_out_and_resubscribed() {
    let server = start(&config(2, |_| {}));
    let addr = server.local_addr();
    let url = WsUrl::parse(&format!("ws://{addr}/ws")).unwrap();
    let mut cfg = ClientConfig::new(url);
    cfg.pubsub = true;
    cfg.reconnect = Some(Backoff {
        min_delay: WINDOW,
        max_delay: WINDOW * 4,
        max_attempts: None,
        reset_after: Duration::from_secs(60),
    });
    // The storm is about reconnecting, not liveness.
    cfg.conn = ConnSettings { ping_interval: Duration::ZERO, ..ConnSettings::default() };
    let cfg = Arc::new(cfg);

    let mut driver = Driver::new().unwrap();
    let rooms: Vec<usize> = (0..CLIENTS).map(|i| i % ROOMS).collect();
    for (i, room) in rooms.iter().enumerate() {
        let id = driver.add(cfg.clone());
        assert_eq!(id.0, i);
        driver.with_session(id, |s, _| s.subscribe(&format!("storm-{room}")));
    }
    let mut tracks: Vec<Track> = (0..CLIENTS).map(|_| Track::default()).collect();
    let mut kill = None;
    run_until(&mut driver, &mut tracks, &mut kill, PHASE_LIMIT, None, |t| {
        t.iter().all(|x| x.subscribed)
    });

    // Kill and restart on the same port. The clients are not driven while
    // the old server drains, so they all see its end at once.
    let killed_at = Instant::now();
    server.shutdown(Duration::from_millis(200));
    let server = start(&config(2, |c| c.server.listen = addr));
    let restarted_at = Instant::now();
    let mut kill = None;
    run_until(&mut driver, &mut tracks, &mut kill, PHASE_LIMIT, None, |t| {
        t.iter().all(|x| x.connected >= 1)
    });

    // A publisher on the new server, publishing all along the storm.
    let mut pcfg = ClientConfig::new(cfg.url.clone());
    pcfg.reconnect = cfg.reconnect.clone();
    pcfg.reconnect.as_mut().unwrap().min_delay = Duration::from_millis(10);
    let pid = driver.add(Arc::new(pcfg));
    let mut publisher =
        Publisher { next_at: Instant::now(), round: 0, finish: false, finished: false };
    run_until(&mut driver, &mut tracks, &mut kill, PHASE_LIMIT, Some((pid, &mut publisher)), |t| {
        t.iter().all(|x| x.connected >= 2 && x.recovered.is_some())
    });
    let back = Instant::now();
    // Two more rounds after everyone is back, then the final one.
    while publisher.round < 2 + publisher.round.min(1)
        && back.elapsed() < Duration::from_millis(400)
    {
        run_until(
            &mut driver,
            &mut tracks,
            &mut kill,
            PHASE_LIMIT,
            Some((pid, &mut publisher)),
            |_| true,
        );
        driver.turn(Some(Duration::from_millis(50))).unwrap();
    }
    publisher.finish = true;
    run_until(&mut driver, &mut tracks, &mut kill, PHASE_LIMIT, Some((pid, &mut publisher)), |t| {
        t.iter().all(|x| x.done)
    });

    // 1. Spread over the window, not a spike: the delays drawn.
    let bucket = WINDOW / BUCKETS as u32;
    let drawn = histogram(tracks.iter().map(|t| t.drawn), bucket, BUCKETS);
    // 2. For the record: when they actually came back, from the moment
    // each saw its connection end, and from the kill (the clients are not
    // driven while the old server drains and the new one starts, so those
    // whose delay ran out meanwhile come back together at the first turn).
    let actual = histogram(
        tracks.iter().map(|t| t.back_at.unwrap().saturating_duration_since(t.lost_at.unwrap())),
        bucket,
        BUCKETS * 2,
    );
    let from_kill = histogram(
        tracks.iter().map(|t| t.back_at.unwrap().saturating_duration_since(killed_at)),
        bucket,
        BUCKETS * 2,
    );
    eprintln!("storm: {CLIENTS} clients, window {WINDOW:?}, buckets of {bucket:?}");
    eprintln!(
        "storm: delays drawn (last bucket: beyond the window, after a failed try): {drawn:?}"
    );
    eprintln!("storm: reconnected at, from the drop seen (last bucket: later): {actual:?}");
    eprintln!("storm: reconnected at, from the kill (last bucket: later): {from_kill:?}");
    eprintln!("storm: old server down and new one up after {:?}", restarted_at - killed_at);
    eprintln!("storm: publish rounds {}", publisher.round);
    let within: usize = drawn[..BUCKETS].iter().sum();
    assert!(within >= CLIENTS * 95 / 100, "most come back on their first try: {drawn:?}");
    for (i, &n) in drawn[..BUCKETS].iter().enumerate() {
        let share = n * 100 / CLIENTS;
        assert!((5..=15).contains(&share), "bucket {i} holds {share}%: {drawn:?}");
    }

    // 3. Every message after the resubscribe, in order, no gap, no duplicate.
    let history = tracks.iter().any(|t| t.resub_position.is_some());
    let mut last_of_room: HashMap<usize, u64> = HashMap::new();
    for (i, t) in tracks.iter().enumerate() {
        let offs = &t.offsets;
        assert!(!offs.is_empty(), "client {i} got nothing after its resubscribe");
        assert!(
            offs.windows(2).all(|w| w[1] == w[0] + 1),
            "client {i}: gap or duplicate in {offs:?}"
        );
        if let Some(p) = t.resub_position {
            assert_eq!(offs[0], p + 1, "client {i}: first delivery after the ack's position");
        }
        let last = *offs.last().unwrap();
        let prev = *last_of_room.entry(rooms[i]).or_insert(last);
        assert_eq!(prev, last, "client {i} ends at another offset than its room's other clients");
        if !history {
            assert_eq!(t.recovered, Some(false), "client {i}: no history, yet recovered");
        }
    }
    drop(server);
}

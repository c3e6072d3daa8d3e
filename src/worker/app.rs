//! The application layer of one [`Worker`]: the broker's delivery into
//! connections (`Deliver` for [`Core`]), what connections ask of the
//! application ([`Worker::app_event`]), the HTTP routes (health, readiness,
//! metrics), metrics queries across workers and the rate-limited refusal
//! log.
//!
//! Nothing here touches a socket: replies are queued on connections and
//! marked dirty, and the loop in `mod.rs` flushes them.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use log::{info, warn};

use crate::conn::{AppEvent, HttpRoute, Route};
use crate::handshake::http_response;
use crate::id::ConnId;
use crate::metrics::{dashboard_json, render_prometheus, BackplaneInfo, ProcessInfo, Stats};
use crate::pubsub::broker::{BrokerEvent, Deliver};
use crate::pubsub::protocol as proto;
use crate::pubsub::Payload;
use crate::timer::take_expired;
use tungstenite::protocol::frame::coding::Data as OpData;

use super::slot::Core;
use super::{Control, Worker, QUERY_TIMEOUT_MS};

/// At most this many refusal lines per second per worker reach the log.
const REFUSAL_LOGS_PER_SEC: u32 = 10;

impl Deliver for Core {
    fn deliver(&mut self, to: ConnId, frame: &Bytes) -> bool {
        match self.key_of(to) {
            Some(key) => self.queue(key, frame.clone()),
            None => false,
        }
    }

    fn deliver_direct(&mut self, to: ConnId, frame: &Bytes) -> bool {
        match self.key_of(to) {
            Some(key) if self.conns[key].conn.route() == Some(Route::PubSub) => {
                self.queue(key, frame.clone())
            }
            _ => false,
        }
    }
}

/// Who asked for a stats gathering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatsFor {
    /// `GET /metrics` on this connection.
    Http(ConnId),
    /// The dashboard feeds on this worker.
    Dashboard,
}

/// How often the dashboard gets a snapshot.
const DASHBOARD_EVERY_MS: u64 = 1000;

pub(super) struct PendingMetrics {
    origin: StatsFor,
    remaining: usize,
    stats: Vec<Stats>,
    deadline_ms: u64,
}

impl Worker {
    /// Logs a refusal at info, at most [`REFUSAL_LOGS_PER_SEC`] lines a
    /// second, so a flood of bad clients cannot flood the log.
    pub(super) fn log_refusal(&mut self, line: &str) {
        let second = self.core.host.now_ms / 1000;
        let (at, count, suppressed) = &mut self.refusal_log;
        if *at != second {
            if *suppressed > 0 {
                info!("worker {}: {} refusal log lines suppressed", self.index, suppressed);
            }
            (*at, *count, *suppressed) = (second, 0, 0);
        }
        if *count < REFUSAL_LOGS_PER_SEC {
            *count += 1;
            info!("worker {}: refused {line}", self.index);
        } else {
            *suppressed += 1;
        }
    }

    /// Logs what the broker reported (refusals, rate-limited).
    fn broker_events(&mut self) {
        while let Some(event) = self.broker.poll_event() {
            match event {
                BrokerEvent::Forbidden { conn, subject, publish, room } => {
                    let subject = subject.as_deref().unwrap_or("anonymous");
                    let action = if publish { "publish to" } else { "subscribe to" };
                    let line = format!("conn {conn} ({subject}): may not {action} {room}");
                    self.log_refusal(&line);
                }
            }
        }
    }

    pub(super) fn app_event(&mut self, key: usize, id: Option<ConnId>, event: AppEvent) {
        match event {
            AppEvent::HttpPublish(p) => {
                let payload = Payload::Json(Bytes::from(p.data));
                self.broker.publish(&p.room, None, payload, &mut self.core);
            }
            AppEvent::Opened(Route::PubSub) => {
                if let Some(id) = id {
                    self.broker.handle_open(id, &mut self.core);
                }
            }
            AppEvent::Opened(Route::Dashboard) => {
                if let Some(id) = id {
                    self.dashboards.push(id);
                    // The first snapshot goes out now, not in a second.
                    self.next_dashboard_ms = self.core.host.now_ms;
                    self.dashboard_tick();
                }
            }
            AppEvent::Opened(Route::Echo) => {}
            AppEvent::Http(route) => {
                if let Some(id) = id {
                    self.http_route(key, id, route);
                }
            }
            AppEvent::Message(op, payload) => {
                let Some(id) = id else { return };
                let Some(slot) = self.core.conns.get(key).filter(|s| s.id == id) else { return };
                let checked = self.broker.check_request(id, slot.conn.identity(), op, &payload);
                let now_ms = self.core.host.now_ms;
                self.broker.dispatch(id, checked, &payload, now_ms, &mut self.core);
                self.broker_events();
            }
        }
    }

    fn http_route(&mut self, key: usize, id: ConnId, route: HttpRoute) {
        let text = "text/plain; charset=utf-8";
        let response = match route {
            HttpRoute::Health => http_response(200, text, b"ok\n", &[]),
            HttpRoute::Ready if self.shutdown.started.load(Ordering::Relaxed) => {
                http_response(503, text, b"shutting down\n", &[])
            }
            HttpRoute::Ready if self.backplane.as_ref().is_some_and(|l| !l.shared.up()) => {
                http_response(503, text, b"backplane down\n", &[])
            }
            HttpRoute::Ready => http_response(200, text, b"ready\n", &[]),
            HttpRoute::Metrics => return self.gather_stats(StatsFor::Http(id)),
        };
        self.respond(key, response);
    }

    /// Asks every other worker for its stats; `answer_metrics` runs once all
    /// answered or the query expired.
    fn gather_stats(&mut self, origin: StatsFor) {
        let mut pending = PendingMetrics {
            origin,
            remaining: self.peers.len() - 1,
            stats: Vec::new(),
            deadline_ms: self.core.host.now_ms + QUERY_TIMEOUT_MS,
        };
        pending.stats.resize(self.peers.len(), Stats::default());
        pending.stats[self.index] = self.snapshot();
        if pending.remaining == 0 {
            return self.answer_metrics(pending);
        }
        self.next_query += 1;
        let (query, origin_worker) = (self.next_query, self.index);
        for (w, out) in self.outgoing.iter_mut().enumerate() {
            if w != origin_worker {
                out.push(Control::StatsQuery { query, origin_worker });
            }
        }
        self.metrics_queries.insert(query, pending);
    }

    /// Starts a dashboard snapshot when one is due, there is a feed to send
    /// it to, and the previous one is not still being gathered.
    pub(super) fn dashboard_tick(&mut self) {
        let now_ms = self.core.host.now_ms;
        if self.dashboards.is_empty() || now_ms < self.next_dashboard_ms {
            return;
        }
        let core = &self.core;
        self.dashboards.retain(|&id| core.key_of(id).is_some());
        let busy = self.metrics_queries.values().any(|p| p.origin == StatsFor::Dashboard);
        if self.dashboards.is_empty() || busy {
            return;
        }
        self.next_dashboard_ms = now_ms + DASHBOARD_EVERY_MS;
        self.gather_stats(StatsFor::Dashboard);
    }

    fn respond(&mut self, key: usize, response: Vec<u8>) {
        let Some(slot) = self.core.conns.get_mut(key) else { return };
        slot.conn.respond(Bytes::from(response));
        self.core.mark_dirty(key);
    }

    /// Answers a metrics request with what arrived. Workers that did not
    /// answer in time are left out and named in the log.
    fn answer_metrics(&mut self, p: PendingMetrics) {
        let mut process = ProcessInfo::read(self.shutdown.started.load(Ordering::Relaxed));
        process.backplane = self.backplane.as_ref().map(|l| {
            let s = &l.shared;
            BackplaneInfo {
                up: s.up(),
                queued_bytes: s.queued_bytes.load(Ordering::Relaxed) as u64,
                published: s.published.load(Ordering::Relaxed),
                received: s.received.load(Ordering::Relaxed),
                reconnects: s.reconnects.load(Ordering::Relaxed),
                sent_back: s.sent_back.load(Ordering::Relaxed),
            }
        });
        let id = match p.origin {
            StatsFor::Http(id) => id,
            StatsFor::Dashboard => {
                let json = dashboard_json(&p.stats, &process, unix_ms());
                let frame = proto::frame(OpData::Text, json.as_bytes());
                for i in 0..self.dashboards.len() {
                    if let Some(key) = self.core.key_of(self.dashboards[i]) {
                        self.core.queue(key, frame.clone());
                    }
                }
                return;
            }
        };
        let Some(key) = self.core.key_of(id) else { return };
        let body = render_prometheus(&p.stats, &process);
        let response = http_response(200, "text/plain; version=0.0.4", body.as_bytes(), &[]);
        self.respond(key, response);
    }

    /// Metrics queries past their deadline are answered with what arrived;
    /// the broker's own queries (presence) likewise.
    pub(super) fn expire_queries(&mut self) {
        let now_ms = self.core.host.now_ms;
        self.broker.handle_timeout(now_ms, &mut self.core);
        if self.metrics_queries.is_empty() {
            return;
        }
        for p in take_expired(&mut self.metrics_queries, now_ms, |p| p.deadline_ms) {
            self.metrics_timeouts += 1;
            warn!(
                "worker {}: {} worker(s) did not answer a metrics query in {} ms",
                self.index, p.remaining, QUERY_TIMEOUT_MS
            );
            self.answer_metrics(p);
        }
    }

    pub(super) fn handle_stats_reply(&mut self, query: u64, worker: usize, stats: Stats) {
        let Some(p) = self.metrics_queries.get_mut(&query) else { return };
        if let Some(slot) = p.stats.get_mut(worker) {
            *slot = stats;
        }
        p.remaining -= 1;
        if p.remaining == 0 {
            if let Some(p) = self.metrics_queries.remove(&query) {
                self.answer_metrics(p);
            }
        }
    }
}

/// Milliseconds since the Unix epoch (the dashboard's time axis).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

//! What a worker lends its connections: the [`Host`] that owns the clock,
//! the output cork, the pool of tungstenite contexts, the counters, the
//! settings and the application events, and the [`Env`] a connection borrows
//! from it for one turn. How a turn ends (the cork, the queue, backpressure,
//! the half-close) is `driver.rs`. No protocol logic lives here.

use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

use super::{AppEvent, Settings};
use crate::metrics::Stats;
use crate::outbox::Cork;

/// Contexts kept per worker for reuse.
const CTX_POOL_MAX: usize = 64;

/// Reusable tungstenite contexts, owned by a worker.
#[derive(Default)]
pub struct CtxPool {
    // Boxed on purpose: contexts move between the pool and connections'
    // `Option<Box<_>>` as one pointer, and a connection holds 8 bytes, not ~300.
    #[allow(clippy::vec_box)]
    pub(super) free: Vec<Box<WebSocketContext>>,
}

impl CtxPool {
    pub(super) fn take(&mut self, config: &WebSocketConfig) -> Box<WebSocketContext> {
        self.free
            .pop()
            .unwrap_or_else(|| Box::new(WebSocketContext::new(Role::Server, Some(*config))))
    }

    pub(super) fn give(&mut self, ctx: Box<WebSocketContext>) {
        if self.free.len() < CTX_POOL_MAX {
            self.free.push(ctx);
        }
    }
}

/// Everything a worker lends its connections, owned in one place: the clock,
/// the output cork, the context pool, the counters, the settings and the
/// application events. The worker holds one; so does every sans-IO driver
/// (tests, fuzzers, benches), which then build an [`Env`] the same way the
/// worker does.
pub struct Host {
    /// The current tick.
    pub now: u64,
    /// Milliseconds since start (for round-trip times).
    pub now_ms: u64,
    /// Wall-clock seconds since the Unix epoch (token expiry).
    pub now_unix: u64,
    /// Output for the connection whose turn it is.
    pub cork: Cork,
    /// Contexts to lend.
    pub pool: CtxPool,
    /// Counters.
    pub stats: Stats,
    /// Settings.
    pub settings: Settings,
    /// Events for the application layer.
    pub events: Vec<AppEvent>,
    /// Compressors and the shared inflater (permessage-deflate).
    pub deflate: crate::deflate::Shared,
}

impl Host {
    /// A host at tick 0 with an empty cork, pool, counters and events.
    pub fn new(settings: Settings) -> Host {
        Host {
            now: 0,
            now_ms: 0,
            now_unix: 0,
            cork: Cork::default(),
            pool: CtxPool::default(),
            stats: Stats::default(),
            settings,
            events: Vec::new(),
            deflate: crate::deflate::Shared::default(),
        }
    }

    /// Sets the clock for a simulation where a tick is `tick_ms` and the
    /// wall clock started at `unix0`.
    pub fn set_tick(&mut self, now: u64, tick_ms: u64, unix0: u64) {
        self.now = now;
        self.now_ms = now * tick_ms;
        self.now_unix = unix0 + now * tick_ms / 1000;
    }

    /// The environment for one connection's turn.
    pub fn env(&mut self) -> Env<'_> {
        Env {
            now: self.now,
            now_ms: self.now_ms,
            now_unix: self.now_unix,
            cork: &mut self.cork,
            pool: &mut self.pool,
            stats: &mut self.stats,
            settings: &self.settings,
            events: &mut self.events,
            deflate: &mut self.deflate,
        }
    }

    /// Everything in the cork, as if the kernel took it all; the cork is
    /// emptied.
    pub fn take_output(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.cork.len());
        self.cork.write_to(&mut out).expect("writing into a Vec cannot fail");
        self.cork.clear();
        out
    }
}

/// What a connection needs from its worker while it handles input or a timer.
pub struct Env<'a> {
    /// The current tick.
    pub now: u64,
    /// Milliseconds since the worker started (for round-trip times).
    pub now_ms: u64,
    /// Wall-clock seconds since the Unix epoch (token expiry).
    pub now_unix: u64,
    /// Output for this connection (written to the socket when its turn ends).
    pub cork: &'a mut Cork,
    /// Contexts to borrow.
    pub pool: &'a mut CtxPool,
    /// The worker's counters.
    pub stats: &'a mut Stats,
    /// Settings.
    pub settings: &'a Settings,
    /// Events for the worker's application layer.
    pub events: &'a mut Vec<AppEvent>,
    /// The worker's compressors and shared inflater.
    pub deflate: &'a mut crate::deflate::Shared,
}

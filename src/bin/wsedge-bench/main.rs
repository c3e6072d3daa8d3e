//! `wsedge-bench`: a self-contained WebSocket / raw-TCP load tester for wsedge.
//!
//! Design goals: never be the bottleneck. Each worker is one single-threaded,
//! edge-triggered mio loop; reads are drained into per-connection buffers that
//! are reused, frames are parsed in place, outgoing frames are batched in a
//! per-connection write buffer and flushed with one `write` per connection per
//! loop pass. No allocation happens per message on the hot path.
//!
//! It only ever talks to loopback addresses (127.0.0.0/8); every mode is
//! bounded in time and in count and stops by itself.
//!
//! This binary intentionally does not use the `wsedge` library crate.
//!
//! Modules, from the command line to the report:
//! - [`args`]: modes and their options (lexopt), the help of every mode;
//!   [`config`]: the options validated into a run's configuration;
//!   [`target`]: loopback-only URLs and addresses.
//! - [`driver`]: one client run: plans, worker threads, progress, merge.
//! - [`worker`]: one thread's mio loop and the phases of a run.
//! - [`client`]: one connection's state, buffers and socket I/O;
//!   [`recv`]: the handshake response, frames and records it reads back.
//! - [`wire`]: keys, masked frames, frame heads, timestamps (pure).
//! - [`stats`]: counters, error kinds, latency histograms;
//!   [`report`]: the human summary and the one-line JSON.
//! - [`pubsub`]: the pub/sub mode (its own loop, wire dialects, accounting).
//! - [`serve`]: serve-tcp-echo, the raw TCP ceiling server;
//!   [`serve_fanout`]: serve-tcp-fanout, the raw TCP fan-out ceiling.
//! - [`tls`]: `wss://` (the rustls client configuration, TLS I/O).
//! - [`net`], [`sys`]: sockets and OS calls (all the `unsafe` lives there).

// Every `unsafe` block says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

mod args;
mod client;
mod config;
mod driver;
mod net;
mod pubsub;
mod recv;
mod report;
mod serve;
mod serve_fanout;
mod stats;
mod sys;
mod target;
mod tls;
mod wire;
mod worker;

use std::process::ExitCode;
use std::sync::Arc;

use args::Command;

/// Nanoseconds in a second / a millisecond: run time is kept as `u64` ns
/// since the run started.
const NS_PER_SEC: u64 = 1_000_000_000;
const NS_PER_MS: u64 = 1_000_000;

fn main() -> ExitCode {
    match args::parse(std::env::args_os().skip(1)) {
        Ok(Command::Help(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Command::Serve(cfg)) => serve::serve_tcp_echo(&cfg),
        Ok(Command::ServeFanout(cfg)) => serve_fanout::serve_tcp_fanout(&cfg),
        Ok(Command::Pubsub(cfg)) => pubsub::run_pubsub(cfg),
        Ok(Command::Client(cfg)) => driver::run_client(Arc::new(cfg)),
        Err(e) => {
            eprintln!("wsedge-bench: {e}\n({})", e.hint());
            ExitCode::from(2)
        }
    }
}

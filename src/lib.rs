//! wsedge: a WebSocket edge server.
//!
//! One mio poll loop per core ([`worker`]), each owning a slab of sans-IO
//! connection state machines ([`conn`]). Protocol logic (upgrade parsing in
//! [`handshake`], frame-boundary scanning and close handling in [`conn`],
//! deadlines in [`timer`], write queues in [`outbox`]) takes bytes and ticks
//! and returns actions; only [`worker`] touches sockets. Frames are decoded by
//! tungstenite over the in-memory [`stream`]. Several nodes share rooms
//! through Redis with [`cluster`].

#![forbid(unsafe_code)]

pub mod auth;
pub mod client;
pub(crate) mod cluster;
pub mod config;
pub mod conn;
pub mod deflate;
pub mod handshake;
pub mod id;
pub mod metrics;
pub mod outbox;
pub mod pubsub;
pub mod ratelimit;
pub mod server;
pub mod stream;
pub mod timer;
pub mod tls;
pub(crate) mod web;
pub mod worker;

pub use config::Config;
pub use server::Server;

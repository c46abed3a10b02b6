//! Rampart's async server: TLS listener, WebSocket sessions, accounts and devices,
//! store-and-forward delivery, rate limits and metrics.
//!
//! Protocol rules live in `rampart-core` and the wire format in `rampart-proto`; this crate
//! adds the I/O, the clock and the randomness.
#![forbid(unsafe_code)]

mod attachment_service;
pub mod blobs;
mod call_service;
pub mod case_export;
pub mod config;
pub mod console;
mod delivery_service;
pub mod evidence_log;
pub mod investigation;
mod limiter;
pub mod metrics;
pub mod sentinel_service;
mod server;
mod session;
mod state;
pub mod tls;
pub mod verifier;

pub use config::ServerConfig;
pub use server::{MetricsSink, Server, ServerError, load_or_create_relay_secret, open_store};

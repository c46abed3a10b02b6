//! Rampart's TURN relay (RFC 8656; clients over UDP, TCP or TLS, relayed media over UDP) and
//! the async TURN client calls use, both built
//! on the sans-IO message layer of `rampart-turn`.
//!
//! - [`server`]: the relay. One task reads the listening port (STUN requests, Send
//!   indications, ChannelData from clients); one task per allocation reads its relayed port
//!   (peer datagrams, relayed to the client only from permitted peer addresses). Credentials
//!   are coturn's `--use-auth-secret` REST credentials, so the relay keeps no user table.
//!   What it relays from clients must look like SRTP/SRTCP (`media_shape`), within a
//!   per-allocation bandwidth cap, under a per-user allocation quota.
//! - [`client`]: a TURN client over one UDP socket: allocation with the long-term credential
//!   mechanism, permissions, channels, relaying, and automatic refreshes.
//! - [`allocation`]: the per-allocation rules (permissions, channel bindings, bandwidth) with
//!   time as an argument, so they are tested without sleeping.
#![forbid(unsafe_code)]

pub mod allocation;
pub mod client;
pub mod config;
mod nonce;
pub mod server;
pub mod stats;
mod stream;

pub use client::{TurnClient, TurnClientError};
pub use config::{RelayConfig, TlsListen};
pub use server::{RelayError, RelayHandle, RelayStatsReader, start};
pub use stats::RelayStats;

/// The SOFTWARE attribute the relay and the client send (RFC 8489 §14.14).
pub const SOFTWARE: &str = concat!("Rampart relay ", env!("CARGO_PKG_VERSION"));

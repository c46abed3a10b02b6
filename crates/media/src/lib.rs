//! Call media crypto for Rampart, sans-IO: RTP header parsing (RFC 3550 §5.1) and SRTP/SRTCP
//! protection with AEAD_AES_256_GCM (RFC 7714), the RFC 3711 key derivation, rollover counter
//! estimation and replay windows.
//!
//! No sockets, no clock and no RNG: the master key is an argument ([`SrtpKeys`]), normally
//! derived from the MLS exporter secret of the call's 1:1 conversation
//! ([`SrtpKeys::from_exporter_secret`]), see `docs/calls.md`.
#![forbid(unsafe_code)]

pub mod keys;
mod replay;
pub mod rtp;
pub mod srtp;

pub use keys::{CallDirection, KeyError, SrtpKeys};
pub use rtp::{RtpHeader, RtpHeaderError};
pub use srtp::{SrtcpContext, SrtpContext, SrtpError};

//! Call media for Rampart, sans-IO: RTP header parsing (RFC 3550 §5.1) and SRTP/SRTCP
//! protection with AEAD_AES_256_GCM (RFC 7714), the RFC 3711 key derivation, rollover counter
//! estimation and replay windows; and the audio pipeline on top: Opus
//! ([`codec`]), a jitter buffer ([`jitter`]), the sending and receiving ends of a call
//! ([`pipeline`], which only a `MediaPermit` opens), WAV files ([`wav`]) and test tones
//! ([`tone`]); and call video ([`video`]: H.264, RFC 6184 payloading, NACK/PLI feedback,
//! loss-based rate control, `.y4m` files).
//!
//! No sockets, no clock and no RNG: the master key is an argument ([`SrtpKeys`]), normally
//! derived from the MLS exporter secret of the call's 1:1 conversation
//! ([`SrtpKeys::from_exporter_secret`]), see `docs/calls.md`; time is a `now_ms` argument and
//! random initial values (SSRC, sequence number, timestamp) are the caller's.
#![forbid(unsafe_code)]

pub mod codec;
pub mod jitter;
pub mod keys;
pub mod pipeline;
mod replay;
pub mod rtp;
pub mod srtp;
pub mod tone;
pub mod video;
pub mod voice;
pub mod wav;

pub use codec::{CodecError, FRAME_SAMPLES, Frame, OpusDecoder, OpusEncoder, SAMPLE_RATE};
pub use jitter::{JitterBuffer, JitterConfig, JitterOutput, JitterStats};
pub use keys::{CallDirection, KeyError, SrtpKeys};
pub use pipeline::{AudioReceiver, AudioSender, DatagramOutcome, MediaError, ReceiverStats, Rejection};
pub use rtp::{RtpHeader, RtpHeaderError};
pub use srtp::{SrtcpContext, SrtpContext, SrtpError};
pub use voice::VoiceProcessor;
pub use wav::WavError;

//! The audio pipeline of one call, both ends of it, sans-IO: PCM frames → Opus → RTP → SRTP
//! datagrams on the sending side; datagrams → SRTP/SRTCP → jitter buffer → Opus (or
//! concealment) → PCM frames on the receiving side. The caller moves the datagrams and keeps
//! the time.
//!
//! Both ends take a [`MediaPermit`], which only a local accept (callee) or dial (caller)
//! creates (`rampart_core::call`): no datagram is parsed and no codec code runs for a call the
//! user did not take part in.

use rampart_core::call::{CallId, MediaPermit};
use thiserror::Error;

use crate::codec::{CodecError, FRAME_SAMPLES, Frame, MAX_OPUS_PACKET_BYTES, OpusDecoder, OpusEncoder};
use crate::jitter::{JitterBuffer, JitterConfig, JitterOutput, JitterStats};
use crate::keys::{KdfLabel, SessionKeys, SrtpKeys, derive_session_keys};
use crate::rtp::{RTP_FIXED_HEADER_BYTES, RTP_VERSION, RtpHeader};
use crate::srtp::{SrtcpContext, SrtpContext, SrtpError};

/// The dynamic RTP payload type Rampart uses for Opus (the one WebRTC stacks use; both ends
/// are Rampart, so it needs no negotiation).
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// Longest datagram the receiver looks at: an Ethernet MTU. The sender's are far shorter
/// (12-byte header, at most 1275 bytes of Opus, 16-byte tag).
pub const MAX_DATAGRAM_BYTES: usize = 1500;

/// Why the sender could not make a datagram.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MediaError {
    #[error("Opus: {0}")]
    Codec(#[from] CodecError),
    #[error("SRTP: {0}")]
    Srtp(#[from] SrtpError),
}

/// The sending end: one Opus encoder and one SRTP context, for one SSRC.
pub struct AudioSender {
    permit: MediaPermit,
    encoder: OpusEncoder,
    srtp: SrtpContext,
    ssrc: u32,
    next_seq: u16,
    next_timestamp: u32,
    packets_sent: u64,
}

impl std::fmt::Debug for AudioSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioSender")
            .field("call", &self.permit.call())
            .field("srtp", &self.srtp)
            .field("next_seq", &self.next_seq)
            .field("packets_sent", &self.packets_sent)
            .finish_non_exhaustive()
    }
}

impl AudioSender {
    /// `keys` are this device's sending direction's. The caller draws `ssrc`, `initial_seq`
    /// and `initial_ts` at random (RFC 3550 §5.1), since this crate has no RNG.
    pub fn new(
        permit: MediaPermit,
        keys: SrtpKeys,
        ssrc: u32,
        initial_seq: u16,
        initial_ts: u32,
    ) -> Result<Self, MediaError> {
        Ok(Self {
            permit,
            encoder: OpusEncoder::new()?,
            srtp: SrtpContext::new(&keys, ssrc),
            ssrc,
            next_seq: initial_seq,
            next_timestamp: initial_ts,
            packets_sent: 0,
        })
    }

    pub fn call(&self) -> CallId {
        self.permit.call()
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn packets_sent(&self) -> u64 {
        self.packets_sent
    }

    /// Encodes one 20 ms frame and returns it as one SRTP datagram (payload type 111, marker
    /// on the first packet, RFC 7587). Sequence number and timestamp advance only when a
    /// datagram is returned.
    pub fn encode_frame(&mut self, pcm: &Frame) -> Result<Vec<u8>, MediaError> {
        let payload = self.encoder.encode(pcm)?;
        let marker = if self.packets_sent == 0 { 0x80 } else { 0 };
        let mut rtp = Vec::with_capacity(RTP_FIXED_HEADER_BYTES + payload.len());
        rtp.push(RTP_VERSION << 6);
        rtp.push(marker | OPUS_PAYLOAD_TYPE);
        rtp.extend_from_slice(&self.next_seq.to_be_bytes());
        rtp.extend_from_slice(&self.next_timestamp.to_be_bytes());
        rtp.extend_from_slice(&self.ssrc.to_be_bytes());
        rtp.extend_from_slice(&payload);
        let datagram = self.srtp.protect(&rtp)?;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_timestamp = self.next_timestamp.wrapping_add(FRAME_SAMPLES as u32);
        self.packets_sent += 1;
        Ok(datagram)
    }
}

/// What a datagram is, by its first two bytes (RFC 7983 §7 and RFC 5761 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    Rtp,
    /// RTCP packet types 200–207 (SR, RR, SDES, BYE, APP, RTPFB, PSFB, XR).
    Rtcp,
    /// Not version 2, too short, or a second byte of 192–223 that is not one of those RTCP
    /// types: RFC 5761 keeps RTP payload types 64–95 free so that this range is never RTP.
    Other,
}

/// Demultiplexes RTP from RTCP on the shared port.
pub fn classify(datagram: &[u8]) -> DatagramKind {
    let [first, second, ..] = *datagram else {
        return DatagramKind::Other;
    };
    if first >> 6 != RTP_VERSION {
        return DatagramKind::Other;
    }
    match second {
        200..=207 => DatagramKind::Rtcp,
        192..=223 => DatagramKind::Other,
        _ => DatagramKind::Rtp,
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Too long, not RTP/RTCP, a bad header, a payload type other than Opus's, bad padding, or
    /// an Opus payload that is empty or too long.
    Malformed,
    /// The tag did not verify, or it is from another SSRC than the stream's.
    Unauthenticated,
    /// Already received, or too old for the replay window.
    Replayed,
}

/// What [`AudioReceiver::handle_datagram`] did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramOutcome {
    /// Authenticated audio, handed to the jitter buffer (which may still find it late).
    Audio,
    /// Authenticated SRTCP; nothing reads its reports yet.
    Rtcp,
    Rejected(Rejection),
}

/// Receiver counters. Every datagram counts once in `packets_received`, `rtcp_received` or
/// `packets_rejected` (and there once in one of the `rejected_*`). Every frame
/// [`AudioReceiver::poll_frame`] returns counts once in `frames_decoded` or `frames_concealed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    pub packets_received: u64,
    pub rtcp_received: u64,
    pub packets_rejected: u64,
    pub rejected_malformed: u64,
    pub rejected_unauthenticated: u64,
    pub rejected_replayed: u64,
    pub frames_decoded: u64,
    /// Frames made up by packet loss concealment or rebuilt from in-band FEC.
    pub frames_concealed: u64,
    /// Of `frames_concealed`, those for which the next packet's FEC data was decoded.
    pub frames_from_fec: u64,
    /// Packets that authenticated but that the Opus decoder refused (concealed instead).
    pub decode_errors: u64,
    pub jitter: JitterStats,
}

/// The receiving end: SRTP/SRTCP for the other side's stream, a jitter buffer and an Opus
/// decoder. The stream's SSRC is learnt from the first datagram that authenticates.
pub struct AudioReceiver {
    permit: MediaPermit,
    srtp_keys: SessionKeys,
    srtcp_keys: SessionKeys,
    srtp: Option<SrtpContext>,
    srtcp: Option<SrtcpContext>,
    jitter: JitterBuffer,
    decoder: OpusDecoder,
    stats: ReceiverStats,
}

impl std::fmt::Debug for AudioReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioReceiver")
            .field("call", &self.permit.call())
            .field("srtp", &self.srtp)
            .field("srtcp", &self.srtcp)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl AudioReceiver {
    /// `keys` are the other side's sending direction's.
    pub fn new(permit: MediaPermit, keys: SrtpKeys) -> Result<Self, MediaError> {
        Self::with_jitter_config(permit, keys, JitterConfig::default())
    }

    pub fn with_jitter_config(
        permit: MediaPermit,
        keys: SrtpKeys,
        jitter: JitterConfig,
    ) -> Result<Self, MediaError> {
        Ok(Self {
            permit,
            srtp_keys: derive_session_keys(&keys, KdfLabel::SrtpEncryption, KdfLabel::SrtpSalt),
            srtcp_keys: derive_session_keys(&keys, KdfLabel::SrtcpEncryption, KdfLabel::SrtcpSalt),
            srtp: None,
            srtcp: None,
            jitter: JitterBuffer::new(jitter),
            decoder: OpusDecoder::new()?,
            stats: ReceiverStats::default(),
        })
    }

    pub fn call(&self) -> CallId {
        self.permit.call()
    }

    /// The other side's SSRC, once one of its datagrams authenticated.
    pub fn remote_ssrc(&self) -> Option<u32> {
        self.srtp.as_ref().map(SrtpContext::ssrc).or_else(|| self.srtcp.as_ref().map(SrtcpContext::ssrc))
    }

    pub fn stats(&self) -> ReceiverStats {
        ReceiverStats { jitter: self.jitter.stats(), ..self.stats }
    }

    /// Frames waiting in the jitter buffer (bounded by its capacity, 50 by default).
    pub fn buffered_frames(&self) -> usize {
        self.jitter.len()
    }

    /// When [`Self::poll_frame`] may next give a frame (for the caller's timer).
    pub fn next_due_ms(&self) -> Option<u64> {
        self.jitter.next_due_ms()
    }

    /// Takes one datagram from the network. Never panics; whatever does not authenticate or
    /// make sense is counted and dropped.
    pub fn handle_datagram(&mut self, datagram: &[u8], now_ms: u64) -> DatagramOutcome {
        let outcome = if datagram.len() > MAX_DATAGRAM_BYTES {
            Err(Rejection::Malformed)
        } else {
            match classify(datagram) {
                DatagramKind::Rtp => self.handle_rtp(datagram, now_ms),
                DatagramKind::Rtcp => self.handle_rtcp(datagram),
                DatagramKind::Other => Err(Rejection::Malformed),
            }
        };
        match outcome {
            Ok(DatagramOutcome::Audio) => self.stats.packets_received += 1,
            Ok(DatagramOutcome::Rtcp) => self.stats.rtcp_received += 1,
            Ok(DatagramOutcome::Rejected(_)) => {}
            Err(rejection) => {
                self.stats.packets_rejected += 1;
                match rejection {
                    Rejection::Malformed => self.stats.rejected_malformed += 1,
                    Rejection::Unauthenticated => self.stats.rejected_unauthenticated += 1,
                    Rejection::Replayed => self.stats.rejected_replayed += 1,
                }
            }
        }
        outcome.unwrap_or_else(DatagramOutcome::Rejected)
    }

    fn handle_rtp(&mut self, datagram: &[u8], now_ms: u64) -> Result<DatagramOutcome, Rejection> {
        let header = RtpHeader::parse(datagram).map_err(|_| Rejection::Malformed)?;
        let clear = match self.srtp.as_mut() {
            Some(context) => context.unprotect(datagram),
            None => {
                // Until a packet authenticates, each one gets a fresh context for its SSRC, so
                // a forged packet cannot fix the SSRC or move a replay window.
                let ssrc = self.remote_ssrc().unwrap_or(header.ssrc);
                let mut context = SrtpContext::from_session_keys(&self.srtp_keys, ssrc);
                let clear = context.unprotect(datagram);
                if clear.is_ok() {
                    self.srtp = Some(context);
                }
                clear
            }
        }
        .map_err(rejection_of)?;
        // Authenticated from here on: the header is the AAD, the payload was encrypted.
        if header.payload_type != OPUS_PAYLOAD_TYPE {
            return Err(Rejection::Malformed);
        }
        let mut payload = clear.get(header.header_len..).ok_or(Rejection::Malformed)?;
        if header.padding {
            // RFC 3550 §5.1: the last octet counts the padding octets, itself included.
            let padding = usize::from(*payload.last().ok_or(Rejection::Malformed)?);
            let end =
                payload.len().checked_sub(padding).filter(|_| padding > 0).ok_or(Rejection::Malformed)?;
            payload = payload.get(..end).ok_or(Rejection::Malformed)?;
        }
        if payload.is_empty() || payload.len() > MAX_OPUS_PACKET_BYTES {
            return Err(Rejection::Malformed);
        }
        self.jitter.push(header.sequence_number, header.timestamp, payload, now_ms);
        Ok(DatagramOutcome::Audio)
    }

    fn handle_rtcp(&mut self, datagram: &[u8]) -> Result<DatagramOutcome, Rejection> {
        let result = match self.srtcp.as_mut() {
            Some(context) => context.unprotect(datagram),
            None => {
                let sender = datagram
                    .get(4..8)
                    .and_then(|bytes| bytes.try_into().ok())
                    .map(u32::from_be_bytes)
                    .ok_or(Rejection::Malformed)?;
                let ssrc = self.remote_ssrc().unwrap_or(sender);
                let mut context = SrtcpContext::from_session_keys(&self.srtcp_keys, ssrc);
                let result = context.unprotect(datagram);
                if result.is_ok() {
                    self.srtcp = Some(context);
                }
                result
            }
        };
        // The reports themselves are not used yet; authenticating them keeps the replay window
        // and SSRC right for when they are.
        result.map(|_| DatagramOutcome::Rtcp).map_err(rejection_of)
    }

    /// The next 20 ms of 48 kHz mono audio if one is due at `now_ms` (call until `None`):
    /// decoded, or concealed when its packet is missing.
    pub fn poll_frame(&mut self, now_ms: u64) -> Option<Frame> {
        let output = self.jitter.pop(now_ms)?;
        Some(match output {
            JitterOutput::Frame(packet) => match self.decoder.decode(Some(&packet)) {
                Ok(pcm) => {
                    self.stats.frames_decoded += 1;
                    pcm
                }
                Err(_) => {
                    self.stats.decode_errors += 1;
                    self.conceal()
                }
            },
            JitterOutput::Lost => {
                // When the frame after the lost one is here, its in-band FEC rebuilds the lost
                // one better than concealment would.
                let fec = self.jitter.peek_next().map(|next| self.decoder.decode_fec(next));
                match fec {
                    Some(Ok(pcm)) => {
                        self.stats.frames_concealed += 1;
                        self.stats.frames_from_fec += 1;
                        pcm
                    }
                    Some(Err(_)) | None => self.conceal(),
                }
            }
        })
    }

    fn conceal(&mut self) -> Frame {
        self.stats.frames_concealed += 1;
        // Concealment cannot fail for a decoder that decoded before; silence if it ever does.
        self.decoder.decode(None).unwrap_or([0; FRAME_SAMPLES])
    }
}

pub(crate) fn rejection_of(error: SrtpError) -> Rejection {
    match error {
        SrtpError::AuthenticationFailed | SrtpError::SsrcMismatch { .. } => Rejection::Unauthenticated,
        SrtpError::Replayed { .. } | SrtpError::TooOld { .. } => Rejection::Replayed,
        SrtpError::RtpHeader(_)
        | SrtpError::TooShortForTag
        | SrtpError::TooShortForRtcpHeader
        | SrtpError::UnsupportedRtcpVersion(_)
        | SrtpError::IndexNotIncreasing { .. }
        | SrtpError::KeyExhausted
        | SrtpError::UnencryptedSrtcp
        | SrtpError::PayloadTooLong => Rejection::Malformed,
    }
}

#[cfg(test)]
pub(crate) mod tests;

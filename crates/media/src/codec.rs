//! Opus (RFC 6716): 48 kHz mono, 20 ms frames, VoIP mode.
//!
//! The codec is `opus-pure`, a Rust port of the reference libopus that is checked byte for byte
//! against libopus and fuzzed by its authors. It replaces libopus itself for two reasons: the
//! decoder is the first code to read what the other side sends after accept, and in Rust a
//! malformed packet is an error rather than memory corruption everywhere but the port's SIMD
//! kernels (which use `unsafe` on slices it has already bounded); and the build needs no system
//! library (libopus's own build needs CMake). No codec code runs before the local user accepted a call:
//! the pipeline that owns these ([`crate::pipeline`]) can only be built with a `MediaPermit`.

use thiserror::Error;

/// Opus's sample rate for calls (RFC 7587 §4.1: the RTP clock is always 48 kHz).
pub const SAMPLE_RATE: u32 = 48_000;
/// [`SAMPLE_RATE`] as the codec's API takes it.
const SAMPLE_RATE_HZ: i32 = 48_000;
/// Samples in one 20 ms mono frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
/// Milliseconds of audio in one frame.
pub const FRAME_MS: u64 = 20;
/// Largest Opus packet (RFC 6716 §3.2.1: at most 1275 bytes per frame); anything longer is not
/// handed to the decoder.
pub const MAX_OPUS_PACKET_BYTES: usize = 1275;
/// Encoder target bitrate: wideband speech with room for in-band FEC.
pub const DEFAULT_BITRATE: i32 = 24_000;

/// One 20 ms frame of 48 kHz mono PCM.
pub type Frame = [i16; FRAME_SAMPLES];

/// Why encoding or decoding failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("Opus: {0}")]
    Opus(String),
    #[error("Opus packet of {0} bytes, at most 1275 are accepted")]
    PacketTooLong(usize),
    #[error("empty Opus packet")]
    EmptyPacket,
    #[error("Opus packet holds {0} samples, a 20 ms frame (960) is expected")]
    WrongDuration(usize),
}

impl From<opus_pure::Error> for CodecError {
    fn from(error: opus_pure::Error) -> Self {
        Self::Opus(error.to_string())
    }
}

/// Encoder settings; the defaults are the call profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderConfig {
    pub bitrate: i32,
    /// In-band FEC (LBRR): each packet also carries a coarse copy of the previous frame, which
    /// the receiver decodes when that frame was lost. Costs some bitrate.
    pub inband_fec: bool,
    /// Expected loss in percent; the encoder uses it to size the FEC data.
    pub expected_loss_percent: i32,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self { bitrate: DEFAULT_BITRATE, inband_fec: true, expected_loss_percent: 5 }
    }
}

/// An Opus encoder for 20 ms mono frames at 48 kHz.
pub struct OpusEncoder {
    inner: opus_pure::OpusEncoder,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder").finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// An encoder with the call profile ([`EncoderConfig::default`]).
    pub fn new() -> Result<Self, CodecError> {
        Self::with_config(EncoderConfig::default())
    }

    pub fn with_config(config: EncoderConfig) -> Result<Self, CodecError> {
        let mut inner = opus_pure::OpusEncoder::new(SAMPLE_RATE_HZ, 1, opus_pure::Application::Voip)?;
        inner.bitrate_bps = config.bitrate;
        inner.use_inband_fec = config.inband_fec;
        inner.packet_loss_perc = config.expected_loss_percent.clamp(0, 100);
        Ok(Self { inner })
    }

    /// Encodes one frame into one Opus packet (at most [`MAX_OPUS_PACKET_BYTES`]).
    pub fn encode(&mut self, pcm: &Frame) -> Result<Vec<u8>, CodecError> {
        let mut packet = vec![0u8; MAX_OPUS_PACKET_BYTES];
        let length = self.inner.encode_s16(pcm, FRAME_SAMPLES, &mut packet)?;
        packet.truncate(length);
        Ok(packet)
    }
}

/// An Opus decoder producing 20 ms mono frames at 48 kHz.
pub struct OpusDecoder {
    inner: opus_pure::OpusDecoder,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    pub fn new() -> Result<Self, CodecError> {
        Ok(Self { inner: opus_pure::OpusDecoder::new(SAMPLE_RATE_HZ, 1)? })
    }

    /// Decodes one packet, or conceals a lost frame (packet loss concealment) when `packet` is
    /// `None`. Only packets of exactly one 20 ms frame are decoded: the sender never makes
    /// others, and checking the duration first keeps the output a whole [`Frame`].
    pub fn decode(&mut self, packet: Option<&[u8]>) -> Result<Frame, CodecError> {
        let mut pcm = [0i16; FRAME_SAMPLES];
        let input = match packet {
            Some(bytes) => Self::checked(bytes)?,
            // An empty packet is the decoder's packet loss concealment.
            None => &[][..],
        };
        self.fill(input, &mut pcm, false)?;
        Ok(pcm)
    }

    /// Reconstructs the frame *before* `next_packet` from the in-band FEC data that packet
    /// carries; when it carries none, the decoder falls back to concealment.
    pub fn decode_fec(&mut self, next_packet: &[u8]) -> Result<Frame, CodecError> {
        let mut pcm = [0i16; FRAME_SAMPLES];
        let input = Self::checked(next_packet)?;
        self.fill(input, &mut pcm, true)?;
        Ok(pcm)
    }

    fn checked(bytes: &[u8]) -> Result<&[u8], CodecError> {
        if bytes.is_empty() {
            return Err(CodecError::EmptyPacket);
        }
        if bytes.len() > MAX_OPUS_PACKET_BYTES {
            return Err(CodecError::PacketTooLong(bytes.len()));
        }
        let samples = opus_pure::packet::samples(bytes, SAMPLE_RATE_HZ)?;
        if samples != FRAME_SAMPLES {
            return Err(CodecError::WrongDuration(samples));
        }
        Ok(bytes)
    }

    fn fill(&mut self, input: &[u8], pcm: &mut Frame, fec: bool) -> Result<(), CodecError> {
        let decoded = if fec {
            self.inner.decode_fec_s16(input, FRAME_SAMPLES, pcm)?
        } else {
            self.inner.decode_s16(input, FRAME_SAMPLES, pcm)?
        };
        // The decoder fills the whole buffer for a 20 ms packet or for concealment of 20 ms; a short
        // count would leave the zeros of the initial buffer, which is silence, not garbage.
        if decoded > FRAME_SAMPLES {
            return Err(CodecError::WrongDuration(decoded));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use crate::tone::{dominant_frequency, sine};

    #[test]
    fn round_trips_a_tone_and_conceals() {
        let mut encoder = OpusEncoder::new().unwrap();
        let mut decoder = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        for frame in sine(1000.0, 0.5, 60) {
            let packet = encoder.encode(&frame).unwrap();
            assert!(!packet.is_empty() && packet.len() <= MAX_OPUS_PACKET_BYTES);
            out.extend_from_slice(&decoder.decode(Some(&packet)).unwrap());
        }
        let freq = dominant_frequency(&out[FRAME_SAMPLES * 10..], SAMPLE_RATE);
        assert!((freq - 1000.0).abs() < 5.0, "{freq}");
        // Concealment right after real audio continues the tone rather than producing silence.
        let concealed = decoder.decode(None).unwrap();
        assert!(concealed.iter().any(|&s| s != 0));
    }

    #[test]
    fn refuses_bad_packets() {
        let mut decoder = OpusDecoder::new().unwrap();
        assert_eq!(decoder.decode(Some(&[])), Err(CodecError::EmptyPacket));
        assert_eq!(decoder.decode(Some(&[0u8; 1276])), Err(CodecError::PacketTooLong(1276)));
        // TOC 0x00: SILK narrowband 10 ms, one frame: 480 samples.
        assert_eq!(decoder.decode(Some(&[0x00, 0, 0])), Err(CodecError::WrongDuration(480)));
        // Code 3 with a zero frame count is malformed (RFC 6716 §3.2.5).
        assert!(decoder.decode(Some(&[0x03, 0x00])).is_err());
        // The decoder is still usable afterwards.
        assert!(decoder.decode(None).is_ok());
    }
}

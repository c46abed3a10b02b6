//! Opus (RFC 6716) through libopus: 48 kHz mono, 20 ms frames, VoIP mode.
//!
//! libopus is the reference implementation every major messenger ships and OSS-Fuzz fuzzes
//! continuously; it is linked from the system (`libopus-dev`). No codec code runs before the
//! local user accepted a call: the pipeline that owns these ([`crate::pipeline`]) can only be
//! built with a `MediaPermit`.

use thiserror::Error;

/// Opus's sample rate for calls (RFC 7587 §4.1: the RTP clock is always 48 kHz).
pub const SAMPLE_RATE: u32 = 48_000;
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
    #[error("libopus: {0}")]
    Opus(String),
    #[error("Opus packet of {0} bytes, at most 1275 are accepted")]
    PacketTooLong(usize),
    #[error("empty Opus packet")]
    EmptyPacket,
    #[error("Opus packet holds {0} samples, a 20 ms frame (960) is expected")]
    WrongDuration(usize),
}

impl From<opus::Error> for CodecError {
    fn from(error: opus::Error) -> Self {
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
    /// Expected loss in percent; libopus uses it to size the FEC data.
    pub expected_loss_percent: i32,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self { bitrate: DEFAULT_BITRATE, inband_fec: true, expected_loss_percent: 5 }
    }
}

/// An Opus encoder for 20 ms mono frames at 48 kHz.
pub struct OpusEncoder {
    inner: opus::Encoder,
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
        let mut inner = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
        inner.set_bitrate(opus::Bitrate::Bits(config.bitrate))?;
        inner.set_inband_fec(config.inband_fec)?;
        inner.set_packet_loss_perc(config.expected_loss_percent.clamp(0, 100))?;
        Ok(Self { inner })
    }

    /// Encodes one frame into one Opus packet (at most [`MAX_OPUS_PACKET_BYTES`]).
    pub fn encode(&mut self, pcm: &Frame) -> Result<Vec<u8>, CodecError> {
        Ok(self.inner.encode_vec(pcm, MAX_OPUS_PACKET_BYTES)?)
    }
}

/// An Opus decoder producing 20 ms mono frames at 48 kHz.
pub struct OpusDecoder {
    inner: opus::Decoder,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    pub fn new() -> Result<Self, CodecError> {
        Ok(Self { inner: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)? })
    }

    /// Decodes one packet, or conceals a lost frame (packet loss concealment) when `packet` is
    /// `None`. Only packets of exactly one 20 ms frame are decoded: the sender never makes
    /// others, and checking the duration first keeps the output a whole [`Frame`].
    pub fn decode(&mut self, packet: Option<&[u8]>) -> Result<Frame, CodecError> {
        let mut pcm = [0i16; FRAME_SAMPLES];
        let input = match packet {
            Some(bytes) => Self::checked(bytes)?,
            // The opus crate passes a null pointer for an empty slice: libopus's PLC.
            None => &[][..],
        };
        self.fill(input, &mut pcm, false)?;
        Ok(pcm)
    }

    /// Reconstructs the frame *before* `next_packet` from the in-band FEC data that packet
    /// carries; when it carries none, libopus falls back to concealment.
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
        let samples = opus::packet::get_nb_samples(bytes, SAMPLE_RATE)?;
        if samples != FRAME_SAMPLES {
            return Err(CodecError::WrongDuration(samples));
        }
        Ok(bytes)
    }

    fn fill(&mut self, input: &[u8], pcm: &mut Frame, fec: bool) -> Result<(), CodecError> {
        let decoded = self.inner.decode(input, pcm, fec)?;
        // libopus fills the whole buffer for a 20 ms packet or for concealment of 20 ms; a short
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

//! What a calling device does to its microphone's signal before encoding it: echo cancellation
//! (the other side's voice, played by the speaker and picked up again by the microphone, is
//! removed), noise suppression, a high-pass filter and automatic gain control.
//!
//! This is WebRTC's audio processing module (AEC3, NS, AGC2) as `sonora`, its Rust port: the
//! processing every major calling app ships, without a C++ build. Sans-IO like the rest of the
//! crate: the caller hands in what it plays ([`VoiceProcessor::played`]) and what it captured
//! ([`VoiceProcessor::captured`]), frame by frame, in the order they happened.

use sonora::config::{EchoCanceller, GainController2, HighPassFilter, NoiseSuppression};
use sonora::{AudioProcessing, Config, StreamConfig};

use crate::codec::{FRAME_SAMPLES, Frame, SAMPLE_RATE};

/// The processing module works in 10 ms blocks: two per frame.
const BLOCK_SAMPLES: usize = FRAME_SAMPLES / 2;

/// Echo cancellation, noise suppression and gain control for one call's microphone.
pub struct VoiceProcessor {
    apm: AudioProcessing,
}

impl std::fmt::Debug for VoiceProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceProcessor").finish_non_exhaustive()
    }
}

impl Default for VoiceProcessor {
    fn default() -> Self {
        Self::new()
    }
}

impl VoiceProcessor {
    /// Echo cancellation, noise suppression (moderate), high-pass filter and adaptive gain.
    pub fn new() -> Self {
        let config = Config {
            echo_canceller: Some(EchoCanceller::default()),
            noise_suppression: Some(NoiseSuppression::default()),
            gain_controller2: Some(GainController2::default()),
            high_pass_filter: Some(HighPassFilter::default()),
            ..Config::default()
        };
        let stream = StreamConfig::new(SAMPLE_RATE, 1);
        let apm =
            AudioProcessing::builder().config(config).capture_config(stream).render_config(stream).build();
        Self { apm }
    }

    /// A frame the speaker plays: the echo canceller's reference.
    pub fn played(&mut self, frame: &Frame) {
        let mut unused = [0i16; BLOCK_SAMPLES];
        for block in frame.chunks_exact(BLOCK_SAMPLES) {
            // Only a frame of the wrong size is refused, and these are always 10 ms.
            let _ = self.apm.process_render_i16(block, &mut unused);
        }
    }

    /// A frame the microphone captured, cleaned: what to send.
    pub fn captured(&mut self, frame: &Frame) -> Frame {
        let mut out = *frame;
        for (block, cleaned) in frame.chunks_exact(BLOCK_SAMPLES).zip(out.chunks_exact_mut(BLOCK_SAMPLES)) {
            if self.apm.process_capture_i16(block, cleaned).is_err() {
                cleaned.copy_from_slice(block);
            }
        }
        out
    }
}

/// Echo return loss enhancement in dB, measured on a speech-like signal through a simulated
/// room ([`crate::tone::echo_of`]): how much quieter the echo is in what would be sent than at
/// the microphone, from `from_second` on (after the canceller converged).
pub fn erle_db(seconds: usize, from_second: usize) -> f64 {
    use crate::tone::{echo_of, energy, speech_like};
    let played = speech_like(seconds, 7);
    let mic = echo_of(&played);
    let mut processor = VoiceProcessor::new();
    let mut sent = Vec::with_capacity(mic.len());
    for (speaker, microphone) in played.chunks_exact(FRAME_SAMPLES).zip(mic.chunks_exact(FRAME_SAMPLES)) {
        let (Ok(speaker), Ok(microphone)) = (Frame::try_from(speaker), Frame::try_from(microphone)) else {
            break;
        };
        processor.played(&speaker);
        sent.extend_from_slice(&processor.captured(&microphone));
    }
    let from = (from_second * SAMPLE_RATE as usize).min(sent.len());
    let (Some(mic_tail), Some(sent_tail)) = (mic.get(from..sent.len()), sent.get(from..)) else { return 0.0 };
    10.0 * (energy(mic_tail) / energy(sent_tail)).log10()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]
    use super::*;
    use crate::tone::{dominant_frequency, echo_of, energy, sine, speech_like};

    fn frames(samples: &[i16]) -> impl Iterator<Item = Frame> + '_ {
        samples.chunks_exact(FRAME_SAMPLES).map(|c| Frame::try_from(c).unwrap())
    }

    #[test]
    fn the_echo_of_the_other_side_is_removed() {
        let erle = erle_db(12, 4);
        assert!(erle >= 20.0, "ERLE {erle:.1} dB");
    }

    #[test]
    fn the_local_voice_gets_through_while_the_other_side_talks() {
        // Double talk: the far end plays speech, the local speaker says a 1 kHz "aah" (in bursts,
        // as speech comes) on top of the echo.
        let seconds = 10;
        let played = speech_like(seconds, 11);
        let echo = echo_of(&played);
        let voice: Vec<i16> = sine(1000.0, 0.25, seconds * 50)
            .concat()
            .iter()
            .enumerate()
            .map(|(i, s)| if (i / 24_000) % 2 == 0 { *s } else { 0 })
            .collect();
        let mic: Vec<i16> = echo.iter().zip(&voice).map(|(e, v)| e.saturating_add(*v)).collect();
        let mut processor = VoiceProcessor::new();
        let mut sent = Vec::new();
        for (speaker, microphone) in frames(&played).zip(frames(&mic)) {
            processor.played(&speaker);
            sent.extend_from_slice(&processor.captured(&microphone));
        }
        // A burst late in the call, after convergence: the voice is what dominates.
        let burst = &sent[8 * 48_000 + 4_800..8 * 48_000 + 19_200];
        let frequency = dominant_frequency(burst, SAMPLE_RATE);
        assert!((frequency - 1000.0).abs() <= 10.0, "{frequency} Hz dominates what is sent");
        let kept = 10.0 * (energy(burst) / energy(&voice[8 * 48_000 + 4_800..8 * 48_000 + 19_200])).log10();
        assert!(kept > -12.0, "the local voice lost {:.1} dB", -kept);
    }
}

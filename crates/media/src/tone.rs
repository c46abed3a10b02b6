//! Test tones: a sine generator in 20 ms frames, and the dominant frequency of a signal, to
//! check that audio survives the pipeline (encoder → SRTP → jitter buffer → decoder); a
//! speech-like signal and a simulated room echo, to measure the echo canceller.

use crate::codec::{FRAME_SAMPLES, Frame, SAMPLE_RATE};

/// Lowest and highest frequency [`dominant_frequency`] looks at: the voice band and some.
pub const SCAN_LOW_HZ: f64 = 50.0;
pub const SCAN_HIGH_HZ: f64 = 4000.0;
/// The coarse scan looks at this much of the signal: 250 ms resolves 1 Hz steps well enough
/// to find the peak's neighbourhood, at a quarter of the cost of a whole second.
const COARSE_WINDOW_SECONDS: f64 = 0.25;
/// The fine scan looks at up to this much.
const FINE_WINDOW_SECONDS: f64 = 2.0;

/// `frames` frames of a 48 kHz sine of `freq_hz`, peak `amplitude` as a fraction of full
/// scale (clamped to 0..=1), phase continuous across frames.
pub fn sine(freq_hz: f32, amplitude: f32, frames: usize) -> Vec<Frame> {
    let peak = f64::from(amplitude.clamp(0.0, 1.0)) * f64::from(i16::MAX);
    let step = std::f64::consts::TAU * f64::from(freq_hz) / f64::from(SAMPLE_RATE);
    let mut n: u64 = 0;
    (0..frames)
        .map(|_| {
            let mut frame = [0i16; FRAME_SAMPLES];
            for sample in &mut frame {
                *sample = (peak * (step * n as f64).sin()).round() as i16;
                n += 1;
            }
            frame
        })
        .collect()
}

/// The frequency, in Hz, with the most energy in `samples` between [`SCAN_LOW_HZ`] and
/// [`SCAN_HIGH_HZ`] (capped below Nyquist): a Goertzel scan in 1 Hz steps over the first 250 ms
/// (Hann-windowed), refined in 0.05 Hz steps over up to 2 s around the best one. Accurate to
/// well within ±1 Hz for a clean tone of a second. Gives 0 for no samples or a zero rate.
pub fn dominant_frequency(samples: &[i16], sample_rate: u32) -> f32 {
    if samples.is_empty() || sample_rate == 0 {
        return 0.0;
    }
    let rate = f64::from(sample_rate);
    let high = SCAN_HIGH_HZ.min(rate / 2.0 - 1.0);
    if high < SCAN_LOW_HZ {
        return 0.0;
    }
    let take = |seconds: f64| {
        let count = ((rate * seconds) as usize).clamp(1, samples.len());
        windowed(samples.get(..count).unwrap_or(samples))
    };
    let coarse = take(COARSE_WINDOW_SECONDS);
    let best = scan(&coarse, rate, SCAN_LOW_HZ, high, 1.0);
    let fine = take(FINE_WINDOW_SECONDS);
    let refined = scan(&fine, rate, (best - 10.0).max(SCAN_LOW_HZ), (best + 10.0).min(high), 0.05);
    refined as f32
}

/// The samples as floats under a Hann window, which keeps a strong tone's side lobes from
/// hiding the true peak.
fn windowed(samples: &[i16]) -> Vec<f64> {
    let len = samples.len();
    let span = (len.max(2) - 1) as f64;
    samples
        .iter()
        .enumerate()
        .map(|(n, &s)| {
            let w = 0.5 - 0.5 * (std::f64::consts::TAU * n as f64 / span).cos();
            f64::from(s) * w
        })
        .collect()
}

/// The frequency in `[low, high]`, stepping by `step`, where the Goertzel power is largest.
fn scan(samples: &[f64], rate: f64, low: f64, high: f64, step: f64) -> f64 {
    let steps = ((high - low) / step).floor() as u64;
    let mut best = (low, f64::MIN);
    for i in 0..=steps {
        let freq = low + i as f64 * step;
        let power = goertzel_power(samples, freq, rate);
        if power > best.1 {
            best = (freq, power);
        }
    }
    best.0
}

fn goertzel_power(samples: &[f64], freq: f64, rate: f64) -> f64 {
    let coeff = 2.0 * (std::f64::consts::TAU * freq / rate).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Speech-like far-end signal: a few tones whose loudness comes and goes like syllables,
/// with silences between phrases (a steady tone is what noise suppression removes).
pub fn speech_like(seconds: usize, seed: u64) -> Vec<i16> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as f64 / f64::from(u32::MAX >> 1)
    };
    let total = seconds * SAMPLE_RATE as usize;
    let mut out = Vec::with_capacity(total);
    let mut phase = [0.0f64; 3];
    let pitches = [180.0, 360.0, 720.0];
    while out.len() < total {
        let syllable = (0.12 + 0.2 * next()) * f64::from(SAMPLE_RATE);
        let loud = if next() < 0.2 { 0.0 } else { 0.15 + 0.25 * next() };
        let shift = 0.8 + 0.4 * next();
        for i in 0..syllable as usize {
            let envelope = (std::f64::consts::PI * i as f64 / syllable).sin();
            let mut sample = 0.0;
            for (k, (p, pitch)) in phase.iter_mut().zip(pitches).enumerate() {
                *p += std::f64::consts::TAU * pitch * shift / f64::from(SAMPLE_RATE);
                sample += p.sin() / (k + 1) as f64;
            }
            out.push((sample * loud * envelope * 16_000.0) as i16);
        }
    }
    out.truncate(total);
    out
}

/// The room: what the speaker plays comes back to the microphone 40 ms later, halved, with
/// a weaker reflection 25 ms after that.
pub fn echo_of(played: &[i16]) -> Vec<i16> {
    let direct = 48 * 40;
    let reflection = direct + 48 * 25;
    let at = |i: usize, back: usize| {
        i.checked_sub(back).and_then(|j| played.get(j)).map_or(0.0, |s| f64::from(*s))
    };
    (0..played.len()).map(|i| (at(i, direct) * 0.5 + at(i, reflection) * 0.2) as i16).collect()
}

/// Energy of a signal (at least 1, so ratios of it are finite).
pub fn energy(samples: &[i16]) -> f64 {
    samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>().max(1.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    #[test]
    fn finds_the_frequency_of_a_sine() {
        for freq in [60.0f32, 440.0, 1000.0, 2217.5, 3900.0] {
            let samples: Vec<i16> = sine(freq, 0.3, 50).concat();
            let found = dominant_frequency(&samples, SAMPLE_RATE);
            assert!((found - freq).abs() < 1.0, "{freq} → {found}");
        }
    }

    #[test]
    fn works_at_other_rates_and_on_nothing() {
        let rate = 8000u32;
        let samples: Vec<i16> = (0..8000)
            .map(|n| ((std::f64::consts::TAU * 300.0 * f64::from(n) / f64::from(rate)).sin() * 8000.0) as i16)
            .collect();
        let found = dominant_frequency(&samples, rate);
        assert!((found - 300.0).abs() < 1.0, "{found}");
        assert_eq!(dominant_frequency(&[], 48_000), 0.0);
        assert_eq!(dominant_frequency(&[1, 2, 3], 0), 0.0);
    }

    #[test]
    fn sine_is_continuous_and_bounded() {
        let frames = sine(440.0, 2.0, 3);
        assert_eq!(frames.len(), 3);
        let all: Vec<i16> = frames.concat();
        assert!(all.iter().all(|&s| s > i16::MIN));
        assert!(all.windows(2).all(|w| (i32::from(w[0]) - i32::from(w[1])).abs() < 2000));
    }
}

//! WAV files in and out of the pipeline's format, 48 kHz mono 16-bit frames of 20 ms.
//!
//! Reading takes mono or stereo (averaged to mono), 16-bit integer or 32-bit float samples, at
//! any rate from 1 kHz to 384 kHz; other rates are converted to 48 kHz by linear interpolation
//! between neighbouring samples. That is plenty for test signals and voice prompts, but it is
//! not a band-limited resampler: going down from a higher rate folds content above 24 kHz back
//! into the audible band. The last frame is padded with silence. At most [`MAX_WAV_SECONDS`] are
//! read (the output of an hour is about 330 MiB); the check is made on the header, before any
//! sample is read.

use std::io::{Read, Seek, Write};
use std::path::Path;

use thiserror::Error;

use crate::codec::{FRAME_SAMPLES, Frame, SAMPLE_RATE};

/// Longest audio read.
pub const MAX_WAV_SECONDS: u64 = 3600;
pub const MIN_WAV_SAMPLE_RATE: u32 = 1_000;
pub const MAX_WAV_SAMPLE_RATE: u32 = 384_000;

/// Why a WAV file could not be read or written.
#[derive(Debug, Error)]
pub enum WavError {
    #[error("WAV: {0}")]
    Wav(#[from] hound::Error),
    #[error("{0} channels: only mono and stereo WAV files are read")]
    UnsupportedChannels(u16),
    #[error("{bits}-bit {kind} samples: only 16-bit integer and 32-bit float WAV files are read")]
    UnsupportedSampleFormat { bits: u16, kind: &'static str },
    #[error("sample rate of {0} Hz: only 1000 to 384000 Hz is read")]
    UnsupportedSampleRate(u32),
    #[error("{seconds} s of audio: at most {max} s are read")]
    TooLong { seconds: u64, max: u64 },
}

/// Reads a WAV file into 48 kHz mono frames (see the module documentation).
pub fn read_wav(path: &Path) -> Result<Vec<Frame>, WavError> {
    let file = std::fs::File::open(path).map_err(hound::Error::IoError)?;
    read_wav_from(std::io::BufReader::new(file))
}

/// [`read_wav`] from any reader.
pub fn read_wav_from<R: Read>(reader: R) -> Result<Vec<Frame>, WavError> {
    read_limited(reader, MAX_WAV_SECONDS)
}

fn read_limited<R: Read>(reader: R, max_seconds: u64) -> Result<Vec<Frame>, WavError> {
    let mut reader = hound::WavReader::new(reader)?;
    let spec = reader.spec();
    if !(1..=2).contains(&spec.channels) {
        return Err(WavError::UnsupportedChannels(spec.channels));
    }
    if !(MIN_WAV_SAMPLE_RATE..=MAX_WAV_SAMPLE_RATE).contains(&spec.sample_rate) {
        return Err(WavError::UnsupportedSampleRate(spec.sample_rate));
    }
    let frames_in = u64::from(reader.duration());
    let rate = u64::from(spec.sample_rate);
    if frames_in > max_seconds.saturating_mul(rate) {
        return Err(WavError::TooLong { seconds: frames_in / rate, max: max_seconds });
    }
    let mut resampler = Resampler::new(spec.sample_rate, frames_in);
    let channels = usize::from(spec.channels);
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 16) => feed(
            &mut resampler,
            reader.samples::<i16>().map(|s| s.map(|v| f32::from(v) / 32768.0)),
            channels,
        )?,
        (hound::SampleFormat::Float, 32) => feed(
            &mut resampler,
            reader.samples::<f32>().map(|s| s.map(|v| if v.is_finite() { v.clamp(-1.0, 1.0) } else { 0.0 })),
            channels,
        )?,
        (format, bits) => {
            let kind = if format == hound::SampleFormat::Float { "float" } else { "integer" };
            return Err(WavError::UnsupportedSampleFormat { bits, kind });
        }
    }
    Ok(frames_from_samples(&resampler.finish()))
}

/// Averages each group of `channels` samples and passes it on.
fn feed(
    resampler: &mut Resampler,
    samples: impl Iterator<Item = Result<f32, hound::Error>>,
    channels: usize,
) -> Result<(), WavError> {
    let mut sum = 0.0f32;
    let mut count = 0usize;
    for sample in samples {
        sum += sample?;
        count += 1;
        if count == channels {
            resampler.push(sum / channels as f32);
            sum = 0.0;
            count = 0;
        }
    }
    Ok(())
}

/// Streaming linear interpolation from `rate_in` to 48 kHz, so that only the output is held.
/// Output sample `k` sits at input position `k × rate_in / 48000`, between input samples `i`
/// and `i + 1`; it is emitted as soon as sample `i + 1` arrives.
struct Resampler {
    rate_in: u64,
    previous: Option<f32>,
    /// Input samples seen.
    seen: u64,
    /// Next output sample index.
    next_out: u64,
    out: Vec<i16>,
}

impl Resampler {
    fn new(rate_in: u32, expected_in: u64) -> Self {
        let rate_in = u64::from(rate_in);
        let expected_out = expected_in.saturating_mul(u64::from(SAMPLE_RATE)) / rate_in.max(1);
        Self {
            rate_in,
            previous: None,
            seen: 0,
            next_out: 0,
            out: Vec::with_capacity(usize::try_from(expected_out).unwrap_or(0).saturating_add(1)),
        }
    }

    fn push(&mut self, sample: f32) {
        if let Some(previous) = self.previous {
            // Every output whose position lies in [seen - 1, seen).
            let interval_start = self.seen - 1;
            loop {
                let position = self.next_out * self.rate_in;
                let index = position / u64::from(SAMPLE_RATE);
                if index > interval_start {
                    break;
                }
                let fraction = (position % u64::from(SAMPLE_RATE)) as f32 / SAMPLE_RATE as f32;
                self.out.push(to_i16(previous + (sample - previous) * fraction));
                self.next_out += 1;
            }
        }
        self.previous = Some(sample);
        self.seen += 1;
    }

    /// The outputs that fall on or after the last input sample, which has no successor to
    /// interpolate towards.
    fn finish(mut self) -> Vec<i16> {
        if let Some(last) = self.previous {
            while self.next_out * self.rate_in / u64::from(SAMPLE_RATE) < self.seen {
                self.out.push(to_i16(last));
                self.next_out += 1;
            }
        }
        self.out
    }
}

fn to_i16(sample: f32) -> i16 {
    // 32768 (not 32767) so that 16-bit input at 48 kHz comes out bit for bit.
    (sample * 32768.0).round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

/// `samples` in 20 ms frames, the last one padded with silence.
pub fn frames_from_samples(samples: &[i16]) -> Vec<Frame> {
    samples
        .chunks(FRAME_SAMPLES)
        .map(|chunk| {
            let mut frame = [0i16; FRAME_SAMPLES];
            for (slot, sample) in frame.iter_mut().zip(chunk) {
                *slot = *sample;
            }
            frame
        })
        .collect()
}

/// The WAV format the pipeline writes: 48 kHz, mono, 16-bit.
pub fn pipeline_spec() -> hound::WavSpec {
    hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

/// Writes frames as a 48 kHz mono 16-bit WAV file.
pub fn write_wav(path: &Path, frames: &[Frame]) -> Result<(), WavError> {
    let file = std::fs::File::create(path).map_err(hound::Error::IoError)?;
    write_wav_to(std::io::BufWriter::new(file), frames)
}

/// [`write_wav`] to any seekable writer (the header's lengths are filled in at the end).
pub fn write_wav_to<W: Write + Seek>(writer: W, frames: &[Frame]) -> Result<(), WavError> {
    let mut wav = hound::WavWriter::new(writer, pipeline_spec())?;
    for frame in frames {
        for &sample in frame {
            wav.write_sample(sample)?;
        }
    }
    wav.finalize()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use std::io::Cursor;

    use super::*;
    use crate::tone::{dominant_frequency, sine};

    fn wav_bytes<S: hound::Sample + Copy>(spec: hound::WavSpec, samples: &[S]) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for &s in samples {
            writer.write_sample(s).unwrap();
        }
        writer.finalize().unwrap();
        cursor.into_inner()
    }

    fn tone(freq: f64, rate: u32, seconds: f64) -> Vec<f64> {
        let count = (f64::from(rate) * seconds) as usize;
        (0..count).map(|n| (std::f64::consts::TAU * freq * n as f64 / f64::from(rate)).sin() * 0.5).collect()
    }

    #[test]
    fn pipeline_format_round_trips_exactly() {
        let frames = sine(440.0, 0.5, 10);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.wav");
        write_wav(&path, &frames).unwrap();
        assert_eq!(read_wav(&path).unwrap(), frames);
    }

    #[test]
    fn stereo_44100_is_downmixed_and_resampled() {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        // Left 440 Hz, right silent: the mix is 440 Hz at half level.
        let left = tone(440.0, 44_100, 1.0);
        let samples: Vec<i16> = left.iter().flat_map(|&l| [(l * 32767.0) as i16, 0]).collect();
        let frames = read_wav_from(Cursor::new(wav_bytes(spec, &samples))).unwrap();
        // 44100 samples → 48000, i.e. 50 frames exactly.
        assert_eq!(frames.len(), 50);
        let all: Vec<i16> = frames.concat();
        assert!((dominant_frequency(&all, SAMPLE_RATE) - 440.0).abs() < 1.0);
        let peak = all.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((8000..=8300).contains(&peak), "{peak}");
    }

    #[test]
    fn float_at_16_khz_is_upsampled_and_padded() {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut samples: Vec<f32> = tone(1000.0, 16_000, 0.51).iter().map(|&s| s as f32).collect();
        samples.push(f32::NAN);
        samples.push(7.0);
        let frames = read_wav_from(Cursor::new(wav_bytes(spec, &samples))).unwrap();
        // 8162 samples at 16 kHz → 24486 at 48 kHz → 26 frames, the last one padded.
        assert_eq!(frames.len(), 26);
        let all: Vec<i16> = frames.concat();
        assert!((dominant_frequency(&all[..24_000], SAMPLE_RATE) - 1000.0).abs() < 1.0);
        assert_eq!(all[24_485], i16::MAX);
        assert!(all[24_486..].iter().all(|&s| s == 0));
    }

    #[test]
    fn refuses_what_it_does_not_read() {
        let spec = |channels, bits, sample_format, sample_rate| hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample: bits,
            sample_format,
        };
        let int = hound::SampleFormat::Int;
        let bytes = wav_bytes(spec(1, 24, int, 48_000), &[0i32; 10]);
        assert!(matches!(
            read_wav_from(Cursor::new(bytes)),
            Err(WavError::UnsupportedSampleFormat { bits: 24, kind: "integer" })
        ));
        let bytes = wav_bytes(spec(3, 16, int, 48_000), &[0i16; 30]);
        assert!(matches!(read_wav_from(Cursor::new(bytes)), Err(WavError::UnsupportedChannels(3))));
        let bytes = wav_bytes(spec(1, 16, int, 500), &[0i16; 30]);
        assert!(matches!(read_wav_from(Cursor::new(bytes)), Err(WavError::UnsupportedSampleRate(500))));
        let bytes = wav_bytes(spec(1, 16, int, 8_000), &[0i16; 16_001]);
        assert!(matches!(read_limited(Cursor::new(bytes), 2), Err(WavError::TooLong { seconds: 2, max: 2 })));
        assert!(matches!(read_wav_from(Cursor::new(b"RIFF....WAVEjunk".to_vec())), Err(WavError::Wav(_))));
        assert!(matches!(read_wav(Path::new("/nonexistent/x.wav")), Err(WavError::Wav(_))));
    }

    #[test]
    fn empty_file_gives_no_frames() {
        let bytes = wav_bytes::<i16>(pipeline_spec(), &[]);
        assert_eq!(read_wav_from(Cursor::new(bytes)).unwrap(), Vec::<Frame>::new());
    }
}

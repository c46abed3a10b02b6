//! Microseconds per 20 ms frame for each stage of the audio pipeline: Opus encode, Opus
//! decode, concealment, and the whole send path (encode + RTP + SRTP) and receive path (SRTP +
//! jitter buffer + decode). `cargo bench -p rampart-media --bench audio`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;
use support::permit;

use std::hint::black_box;
use std::time::Instant;

use rampart_media::tone::sine;
use rampart_media::{
    AudioReceiver, AudioSender, CallDirection, DatagramOutcome, OpusDecoder, OpusEncoder, SrtpKeys,
};

const FRAMES: usize = 2_000;

fn report(name: &str, start: Instant, frames: usize) {
    report_decoded(name, start.elapsed(), frames);
}

fn main() {
    // A tone with some noise-like harmonics keeps the encoder out of its cheapest paths.
    let frames: Vec<_> = sine(440.0, 0.4, FRAMES)
        .into_iter()
        .zip(sine(1_733.0, 0.2, FRAMES))
        .map(|(a, b)| {
            let mut mixed = a;
            for (x, y) in mixed.iter_mut().zip(b) {
                *x = x.saturating_add(y);
            }
            mixed
        })
        .collect();

    let mut encoder = OpusEncoder::new().unwrap();
    let start = Instant::now();
    let packets: Vec<Vec<u8>> = frames.iter().map(|f| encoder.encode(f).unwrap()).collect();
    report("opus encode (24 kbit/s, FEC)", start, FRAMES);
    let bytes: usize = packets.iter().map(Vec::len).sum();
    println!("{:<32} {:>8.1} bytes/packet", "  packet size", bytes as f64 / FRAMES as f64);

    let mut decoder = OpusDecoder::new().unwrap();
    let start = Instant::now();
    for packet in &packets {
        black_box(decoder.decode(Some(packet)).unwrap());
    }
    report("opus decode", start, FRAMES);

    let start = Instant::now();
    for _ in 0..FRAMES {
        black_box(decoder.decode(None).unwrap());
    }
    report("opus concealment (PLC)", start, FRAMES);

    let keys = SrtpKeys::from_exporter_secret(&[5; 64], CallDirection::CallerToCallee).unwrap();
    let mut sender = AudioSender::new(permit(), keys.clone(), 0xabcd_ef01, 1, 1).unwrap();
    let start = Instant::now();
    let datagrams: Vec<Vec<u8>> = frames.iter().map(|f| sender.encode_frame(f).unwrap()).collect();
    report("send: encode + RTP + SRTP", start, FRAMES);

    let mut receiver = AudioReceiver::new(permit(), keys).unwrap();
    let start = Instant::now();
    let mut accepted = 0;
    for (i, datagram) in datagrams.iter().enumerate() {
        let now = i as u64 * 20;
        if matches!(receiver.handle_datagram(datagram, now), DatagramOutcome::Audio) {
            accepted += 1;
        }
        while let Some(frame) = receiver.poll_frame(now) {
            black_box(frame);
        }
    }
    let elapsed = start.elapsed();
    // Every datagram authenticated as audio, and what was played was decoded, not concealed:
    // otherwise the figure would time concealment, not the receive path.
    let stats = receiver.stats();
    assert_eq!(accepted, FRAMES, "datagrams refused: {stats:?}");
    assert_eq!(stats.frames_concealed, 0, "{stats:?}");
    // The jitter buffer holds back its target delay at the end (a few frames).
    assert!(stats.frames_decoded as usize >= FRAMES - 10, "{stats:?}");
    report_decoded("receive: SRTP + jitter + decode", elapsed, stats.frames_decoded as usize);

    // The microphone's processing: echo cancellation, noise suppression, gain, per frame (the
    // speaker's frame as reference, the microphone's cleaned), on a speech-like signal through
    // a simulated room, and how much of the echo it removed once converged.
    let played = rampart_media::tone::speech_like(FRAMES / 50, 3);
    let mic = rampart_media::tone::echo_of(&played);
    let mut processor = rampart_media::VoiceProcessor::new();
    let start = Instant::now();
    let mut processed = 0;
    for (speaker, microphone) in
        played.chunks_exact(rampart_media::FRAME_SAMPLES).zip(mic.chunks_exact(rampart_media::FRAME_SAMPLES))
    {
        processor.played(&speaker.try_into().unwrap());
        black_box(processor.captured(&microphone.try_into().unwrap()));
        processed += 1;
    }
    assert_eq!(processed, FRAMES, "every frame was processed");
    report("voice: AEC3 + NS + AGC2", start, processed);
    let erle = rampart_media::voice::erle_db(12, 4);
    println!("{:<32} {:>8.1} dB (12 s, converged after 4 s)", "  echo return loss enhancement", erle);
}

fn report_decoded(name: &str, elapsed: std::time::Duration, frames: usize) {
    let micros = elapsed.as_secs_f64() * 1e6 / frames as f64;
    // 20 ms of audio per frame: the share of one core a real-time call spends here.
    println!("{name:<32} {micros:>8.1} µs/frame  ({:.2}% of real time)", micros / 200.0);
}

//! Call video costs: H.264 encode and decode per picture at 640x480 and 1280x720, the bitrate
//! the encoder makes at the call's settings, the whole send path (encode + RTP + SRTP) and
//! receive path (SRTP + reassembly + decode), and the processing latency a picture sees from
//! capture to display without the network (the time on the send path plus the receive path).
//! The content is the moving test pattern of `rampart_media::video::test_pattern`, or, with
//! RAMPART_BENCH_Y4M=clip.y4m, a real clip. `cargo bench -p rampart-media --bench video`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;
use support::permit;

use std::hint::black_box;
use std::time::{Duration, Instant};

use rampart_media::video::h264::{VideoDecoder, VideoEncoder, VideoEncoderConfig, annex_b};
use rampart_media::video::y4m::Y4mReader;
use rampart_media::video::{
    SendStream, VideoFrame, VideoReceiver, VideoSendConfig, VideoSender, test_pattern,
};
use rampart_media::{CallDirection, SrtpKeys};

const FRAMES: usize = 150;

fn clip(width: usize, height: usize) -> (Vec<VideoFrame>, String) {
    if let Some(path) = std::env::var_os("RAMPART_BENCH_Y4M") {
        let reader = Y4mReader::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap())).unwrap();
        let (header, frames) = reader.read_all(FRAMES).unwrap();
        if (header.width, header.height) == (width, height) {
            return (frames, format!("{}", std::path::Path::new(&path).display()));
        }
    }
    ((0..FRAMES as u64).map(|i| test_pattern(width, height, i).unwrap()).collect(), "test pattern".into())
}

fn per_frame(elapsed: Duration, frames: usize) -> f64 {
    assert!(frames > 0 && elapsed > Duration::ZERO, "nothing was measured");
    elapsed.as_secs_f64() * 1e3 / frames as f64
}

fn bench_size(width: usize, height: usize, bitrate_bps: u32) {
    let (frames, source) = clip(width, height);
    println!(
        "{width}x{height}, {} pictures of {source}, target {} kbit/s at 30 fps:",
        frames.len(),
        bitrate_bps / 1000
    );
    let config = VideoEncoderConfig { bitrate_bps, fps: 30.0 };

    let mut encoder = VideoEncoder::new(config).unwrap();
    let start = Instant::now();
    let pictures: Vec<_> = frames.iter().map(|f| encoder.encode(f).unwrap()).collect();
    let encode_ms = per_frame(start.elapsed(), frames.len());
    // (index of the source frame, its coded picture): the encoder may skip a picture.
    let coded: Vec<_> = pictures.iter().enumerate().filter(|(_, p)| !p.is_empty()).collect();
    let bytes: usize = coded.iter().map(|(_, p)| p.len()).sum();
    println!("  {:<34} {encode_ms:>7.2} ms/picture ({:.0}% of a core at 30 fps)", "encode", encode_ms * 3.0);
    println!(
        "  {:<34} {:>7.0} kbit/s ({} of {} pictures coded, {} keyframes)",
        "bitrate",
        bytes as f64 * 8.0 * 30.0 / frames.len() as f64 / 1000.0,
        coded.len(),
        frames.len(),
        coded.iter().filter(|(_, p)| p.keyframe).count()
    );

    let mut decoder = VideoDecoder::new().unwrap();
    let start = Instant::now();
    let mut decoded = 0;
    let mut shown = Vec::new();
    for (index, picture) in &coded {
        if let Some(frame) = decoder.decode(&annex_b(&picture.nal_units)).unwrap() {
            decoded += 1;
            shown.push((*index, frame));
        }
    }
    let decode_ms = per_frame(start.elapsed(), decoded);
    assert_eq!(decoded, coded.len(), "every coded picture decoded");
    let psnr: f64 = shown.iter().map(|(index, frame)| frame.psnr_y(&frames[*index]).unwrap()).sum();
    println!("  {:<34} {decode_ms:>7.2} ms/picture", "decode");
    println!("  {:<34} {:>7.1} dB ({decoded} pictures)", "quality (mean luma PSNR)", psnr / decoded as f64);

    // The pipeline: what a call does per picture on each side.
    let keys = SrtpKeys::from_exporter_secret(&[5; 64], CallDirection::CallerToCallee).unwrap();
    let back = SrtpKeys::from_exporter_secret(&[5; 64], CallDirection::CalleeToCaller).unwrap();
    let stream = SendStream { ssrc: 1, peer_ssrc: 2, initial_seq: 9, timestamp_base: 0 };
    let send_config =
        VideoSendConfig { start_bps: bitrate_bps, max_bps: bitrate_bps, ..VideoSendConfig::default() };
    let mut sender = VideoSender::new(permit(), &keys, &back, stream, send_config).unwrap();
    let mut receiver = VideoReceiver::new(permit(), &keys, &back, 2, 1).unwrap();
    let (mut send_time, mut receive_time, mut latencies) = (Duration::ZERO, Duration::ZERO, Vec::new());
    for (i, frame) in frames.iter().enumerate() {
        let now = i as u64 * 33;
        let start = Instant::now();
        let datagrams = sender.encode_frame(frame, i as u32 * 3_000, now).unwrap();
        let sent = start.elapsed();
        let start = Instant::now();
        for datagram in &datagrams {
            receiver.handle_datagram(datagram, now).unwrap();
        }
        let picture = receiver.poll_picture();
        let received = start.elapsed();
        black_box(&picture);
        send_time += sent;
        receive_time += received;
        if picture.is_some() {
            latencies.push(sent + received);
        }
    }
    let stats = receiver.stats();
    assert_eq!(stats.frames_decoded as usize, latencies.len());
    assert_eq!(stats.packets_rejected, 0, "{stats:?}");
    println!("  {:<34} {:>7.2} ms/picture", "send: encode + RTP + SRTP", per_frame(send_time, frames.len()));
    println!(
        "  {:<34} {:>7.2} ms/picture",
        "receive: SRTP + reassembly + decode",
        per_frame(receive_time, latencies.len())
    );
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let p95 = latencies[latencies.len() * 95 / 100];
    println!(
        "  {:<34} {:>7.2} ms median, {:.2} ms p95 ({} pictures)",
        "latency without the network",
        median.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3,
        latencies.len()
    );
}

fn main() {
    bench_size(640, 480, 800_000);
    bench_size(1280, 720, 2_000_000);
}

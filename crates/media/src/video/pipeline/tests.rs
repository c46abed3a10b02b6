#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::keys::CallDirection;
use crate::pipeline::tests::permit;
use crate::video::frame::test_pattern;
use crate::video::pacer::Pacer;

fn stream(ssrc: u32, peer_ssrc: u32) -> SendStream {
    SendStream { ssrc, peer_ssrc, initial_seq: 65_000, timestamp_base: 77 }
}

fn keys() -> (SrtpKeys, SrtpKeys) {
    let secret = [7u8; 64];
    (
        SrtpKeys::from_exporter_secret(&secret, CallDirection::CallerToCallee).unwrap(),
        SrtpKeys::from_exporter_secret(&secret, CallDirection::CalleeToCaller).unwrap(),
    )
}

/// One direction of a simulated path: a bottleneck of `cap_bps` with a drop-tail queue of
/// `queue_ms`, random loss, and a fixed delay.
struct Link {
    delay_ms: u64,
    loss: f64,
    cap_bps: Option<u64>,
    queue_ms: u64,
    busy_until_us: u64,
    in_flight: VecDeque<(u64, Vec<u8>)>,
    rng: StdRng,
    dropped: u64,
}

impl Link {
    fn new(delay_ms: u64, loss: f64, cap_bps: Option<u64>, seed: u64) -> Self {
        Self {
            delay_ms,
            loss,
            cap_bps,
            queue_ms: 150,
            busy_until_us: 0,
            in_flight: VecDeque::new(),
            rng: StdRng::seed_from_u64(seed),
            dropped: 0,
        }
    }

    fn send(&mut self, datagram: Vec<u8>, now_ms: u64) {
        let now_us = now_ms * 1_000;
        let mut leaves_us = now_us;
        if let Some(cap) = self.cap_bps {
            let start = self.busy_until_us.max(now_us);
            if start - now_us > self.queue_ms * 1_000 {
                self.dropped += 1;
                return;
            }
            leaves_us = start + datagram.len() as u64 * 8 * 1_000_000 / cap;
            self.busy_until_us = leaves_us;
        }
        if self.rng.random::<f64>() < self.loss {
            self.dropped += 1;
            return;
        }
        let arrives = leaves_us / 1_000 + self.delay_ms;
        let at = self.in_flight.partition_point(|(t, _)| *t <= arrives);
        self.in_flight.insert(at, (arrives, datagram));
    }

    fn deliver(&mut self, now_ms: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while self.in_flight.front().is_some_and(|(t, _)| *t <= now_ms) {
            out.extend(self.in_flight.pop_front().map(|(_, d)| d));
        }
        out
    }
}

struct Outcome {
    sender: VideoSenderStats,
    receiver: VideoReceiverStats,
    worst_psnr: f64,
    mean_psnr: f64,
    /// Pictures shown in the last two seconds.
    recent_frames: u64,
    /// Share of the second half during which the encoder's rate was under the cap.
    under_cap_share: f64,
}

/// Runs `seconds` of a 320x240, 30 fps call over `forward` (media) and `back` (feedback).
fn simulate(seconds: u64, mut forward: Link, mut back: Link, config: VideoSendConfig) -> Outcome {
    let cap = forward.cap_bps.unwrap_or(u64::MAX);
    let (mut second_half_ms, mut under_cap_ms) = (0u64, 0u64);
    let (caller, callee) = keys();
    let permit = permit();
    let mut sender = VideoSender::new(permit, &caller, &callee, stream(0x1111, 0x2222), config).unwrap();
    let mut receiver = VideoReceiver::new(permit, &caller, &callee, 0x2222, 0x1111).unwrap();
    let mut pacer = Pacer::new(config.start_bps);
    let clip: Vec<_> = (0..30).map(|i| test_pattern(320, 240, i).unwrap()).collect();
    let (mut worst, mut total, mut count, mut recent) = (f64::MAX, 0.0, 0u64, 0u64);
    let end = seconds * 1_000;
    for now in 0..end {
        if now % 33 == 0 {
            let index = now / 33;
            let frame = &clip[(index % 30) as usize];
            let datagrams = sender.encode_frame(frame, (index * 3_000) as u32, now).unwrap();
            if !pacer.push(datagrams) {
                sender.request_keyframe();
            }
        }
        for datagram in forward.deliver(now) {
            let _ = receiver.handle_datagram(&datagram, now);
        }
        if let Some(rtcp) = receiver.poll_rtcp(now) {
            back.send(rtcp, now);
        }
        for rtcp in back.deliver(now) {
            pacer.push_urgent(sender.handle_rtcp(&rtcp, now).unwrap());
        }
        pacer.set_encoder_rate(sender.stats().encoder_bps);
        while let Some(datagram) = pacer.poll(now) {
            forward.send(datagram, now);
        }
        if now * 2 >= end {
            second_half_ms += 1;
            under_cap_ms += u64::from(u64::from(sender.stats().encoder_bps) < cap);
        }
        while let Some(picture) = receiver.poll_picture() {
            let offset = picture.rtp_timestamp.wrapping_sub(sender.timestamp_of(0));
            let index = (offset / 3_000 % 30) as usize;
            let psnr = picture.frame.psnr_y(&clip[index]).unwrap();
            worst = worst.min(psnr);
            total += psnr;
            count += 1;
            if now + 2_000 >= end {
                recent += 1;
            }
        }
    }
    Outcome {
        sender: sender.stats(),
        receiver: receiver.stats(),
        worst_psnr: worst,
        mean_psnr: total / count.max(1) as f64,
        recent_frames: recent,
        under_cap_share: under_cap_ms as f64 / second_half_ms.max(1) as f64,
    }
}

#[test]
fn a_clean_path_shows_every_picture() {
    let outcome =
        simulate(4, Link::new(20, 0.0, None, 1), Link::new(20, 0.0, None, 2), VideoSendConfig::default());
    let r = outcome.receiver;
    assert!(r.frames_decoded >= 115, "{r:?}");
    assert_eq!((r.freezes, r.keyframe_requests_sent, r.packets_nacked), (0, 0, 0), "{r:?}");
    assert!(outcome.worst_psnr > 30.0, "worst {:.1} dB", outcome.worst_psnr);
    // One path delay after it was sent, plus the time the pacer takes to let the keyframe out
    // (about 40 ms at the start rate).
    let first = r.first_frame_ms.unwrap();
    assert!((20..100).contains(&first), "first picture after {first} ms");
}

#[test]
fn five_percent_loss_and_a_bandwidth_cap_are_survived() {
    // The sender starts above the cap (800 kbit/s against 600).
    let config = VideoSendConfig { start_bps: 800_000, ..VideoSendConfig::default() };
    let outcome = simulate(20, Link::new(40, 0.05, Some(600_000), 3), Link::new(40, 0.05, None, 4), config);
    let (s, r) = (outcome.sender, outcome.receiver);
    eprintln!(
        "sender {s:?}\nreceiver {r:?}\nmean PSNR {:.1} worst {:.1}",
        outcome.mean_psnr, outcome.worst_psnr
    );
    // Losses were asked for again and sent again.
    assert!(r.packets_nacked > 0 && s.retransmitted > 0, "{r:?} {s:?}");
    // The sender came down to the cap and stayed under it most of the second half (it probes
    // above now and then).
    assert!(s.encoder_rate_changes >= 1, "{s:?}");
    assert!(
        outcome.under_cap_share > 0.7,
        "under the cap {:.0}% of the time",
        outcome.under_cap_share * 100.0
    );
    // Pictures keep coming at the end, and the stream froze for at most a fifth of the time.
    assert!(outcome.recent_frames >= 30, "{} pictures in the last 2 s", outcome.recent_frames);
    assert!(r.freeze_ms < 4_000, "{r:?}");
    assert!(r.frames_decoded > 300, "{r:?}");
    assert!(outcome.mean_psnr > 28.0, "mean {:.1} dB", outcome.mean_psnr);
}

#[test]
fn a_lost_keyframe_is_asked_for_again() {
    // Everything lost for the first half second: the receiver asks for a keyframe and shows
    // pictures once it comes.
    let (caller, callee) = keys();
    let permit = permit();
    let mut sender =
        VideoSender::new(permit, &caller, &callee, stream(1, 2), VideoSendConfig::default()).unwrap();
    let mut receiver = VideoReceiver::new(permit, &caller, &callee, 2, 1).unwrap();
    let mut shown = 0;
    for i in 0..60u64 {
        let now = i * 33;
        let datagrams =
            sender.encode_frame(&test_pattern(160, 120, i).unwrap(), (i * 3_000) as u32, now).unwrap();
        if now >= 500 {
            for d in datagrams {
                receiver.handle_datagram(&d, now).unwrap();
            }
        }
        if let Some(rtcp) = receiver.poll_rtcp(now) {
            sender.handle_rtcp(&rtcp, now).unwrap();
        }
        shown += std::iter::from_fn(|| receiver.poll_picture()).count();
    }
    assert!(receiver.stats().keyframe_requests_sent >= 1);
    assert!(sender.stats().keyframe_requests_received >= 1);
    assert!(sender.stats().keyframes >= 2);
    assert!(shown > 20, "{shown}");
}

#[test]
fn forged_and_foreign_datagrams_are_refused() {
    let (caller, callee) = keys();
    let permit = permit();
    let mut sender =
        VideoSender::new(permit, &caller, &callee, stream(1, 2), VideoSendConfig::default()).unwrap();
    let mut receiver = VideoReceiver::new(permit, &caller, &callee, 2, 1).unwrap();
    let datagrams = sender.encode_frame(&test_pattern(160, 120, 0).unwrap(), 0, 0).unwrap();
    let mut forged = datagrams[0].clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(receiver.handle_datagram(&forged, 0), Err(Rejection::Unauthenticated));
    // The same keys under another SSRC (the audio stream's, say) do not reach the video.
    let mut other =
        VideoSender::new(permit, &caller, &callee, stream(9, 2), VideoSendConfig::default()).unwrap();
    let foreign = other.encode_frame(&test_pattern(160, 120, 0).unwrap(), 0, 0).unwrap();
    assert_eq!(receiver.handle_datagram(&foreign[0], 0), Err(Rejection::Unauthenticated));
    assert_eq!(receiver.handle_datagram(&[0x80, 102, 0, 1], 0), Err(Rejection::Malformed));
    assert_eq!(sender.handle_rtcp(&datagrams[0], 0), Err(Rejection::Malformed), "RTP is not feedback");
    for d in &datagrams {
        receiver.handle_datagram(d, 1).unwrap();
    }
    assert_eq!(receiver.handle_datagram(&datagrams[0], 2), Err(Rejection::Replayed));
    assert_eq!(receiver.stats().frames_decoded, 1);
}

/// A hostile sender that skips almost a thousand sequence numbers with every packet would have
/// the receiver wait for (and NACK) millions of packets; it waits for at most 512, and asks
/// for at most 64 in one NACK.
#[test]
fn a_sender_skipping_sequence_numbers_cannot_grow_the_receivers_bookkeeping() {
    let (caller, callee) = keys();
    let mut receiver = VideoReceiver::new(permit(), &caller, &callee, 2, 1).unwrap();
    let mut srtp = SrtpContext::new(&caller, 1);
    let mut seq = 0u16;
    for i in 0..300u32 {
        let mut rtp = vec![0x80, H264_PAYLOAD_TYPE];
        rtp.extend_from_slice(&seq.to_be_bytes());
        rtp.extend_from_slice(&(i * 3_000).to_be_bytes());
        rtp.extend_from_slice(&1u32.to_be_bytes());
        rtp.extend_from_slice(&[0x61, 0xe0, 0x00]);
        receiver.handle_datagram(&srtp.protect(&rtp).unwrap(), u64::from(i)).unwrap();
        assert!(receiver.missing.len() <= MAX_MISSING, "{} waited for", receiver.missing.len());
        if let Some(rtcp) = receiver.poll_rtcp(u64::from(i)) {
            let mut feedback_in = SrtcpContext::new(&callee, 2);
            let clear = feedback_in.unprotect(&rtcp).unwrap();
            for item in crate::video::feedback::parse_compound(&clear).unwrap() {
                if let crate::video::feedback::Feedback::Nack { lost, .. } = item {
                    assert!(lost.len() <= MAX_NACKED_PER_REPORT, "{} in one NACK", lost.len());
                }
            }
        }
        seq = seq.wrapping_add(999);
    }
    assert!(receiver.stats().packets_received == 300);
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use rampart_core::call::{CallEvent, CallId, CallerCall, SealedSignal, SignalKind};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::*;
use crate::codec::SAMPLE_RATE;
use crate::keys::CallDirection;
use crate::tone::{dominant_frequency, sine};

/// A real permit: dial, receive the answer, apply it.
pub(crate) fn permit() -> MediaPermit {
    let mut call = CallerCall::dial(CallId([7; 16]), 0);
    call.handle_signal(SealedSignal::new(SignalKind::Answer, vec![]));
    assert!(call.answer_applied());
    while let Some(event) = call.poll_event() {
        if let CallEvent::EnableMedia(permit) = event {
            return permit;
        }
    }
    panic!("no EnableMedia event");
}

fn keys() -> SrtpKeys {
    SrtpKeys::from_exporter_secret(&[0x33; 64], CallDirection::CallerToCallee).unwrap()
}

fn pair() -> (AudioSender, AudioReceiver) {
    let sender = AudioSender::new(permit(), keys(), 0x1234_5678, 65_500, 0xffff_f000).unwrap();
    let receiver = AudioReceiver::new(permit(), keys()).unwrap();
    (sender, receiver)
}

/// Sends `frames` one per 20 ms, delivering datagram `i` at `deliver(i)` (or never, for
/// `None`), polling the receiver every millisecond; returns the receiver's output.
fn run(
    sender: &mut AudioSender,
    receiver: &mut AudioReceiver,
    frames: &[Frame],
    deliver: impl Fn(usize) -> Option<u64>,
) -> Vec<Frame> {
    let mut in_flight: Vec<(u64, usize, Vec<u8>)> = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let datagram = sender.encode_frame(frame).unwrap();
        if let Some(at) = deliver(i) {
            in_flight.push((at, i, datagram));
        }
    }
    in_flight.sort_by_key(|(at, i, _)| (*at, *i));
    let end = frames.len() as u64 * 20 + 200;
    let mut out = Vec::new();
    let mut queue = in_flight.into_iter().peekable();
    for now in 0..end {
        while let Some((_, _, datagram)) = queue.next_if(|(at, _, _)| *at <= now) {
            assert_eq!(receiver.handle_datagram(&datagram, now), DatagramOutcome::Audio);
        }
        while let Some(frame) = receiver.poll_frame(now) {
            out.push(frame);
        }
    }
    out
}

#[test]
fn a_440_hz_tone_comes_through() {
    let (mut sender, mut receiver) = pair();
    let frames = sine(440.0, 0.5, 100);
    let out = run(&mut sender, &mut receiver, &frames, |i| Some(i as u64 * 20 + 5));
    let stats = receiver.stats();
    assert_eq!(stats.packets_received, 100);
    assert_eq!(stats.frames_decoded, 100);
    assert_eq!(stats.packets_rejected, 0);
    assert_eq!(stats.jitter.lost, 0);
    let samples: Vec<i16> = out[..100].concat();
    // One second, after the encoder's first frames.
    let second = &samples[FRAME_SAMPLES * 20..FRAME_SAMPLES * 70];
    let freq = dominant_frequency(second, SAMPLE_RATE);
    assert!((freq - 440.0).abs() <= 5.0, "{freq}");
    assert_eq!(receiver.remote_ssrc(), Some(0x1234_5678));
}

#[test]
fn random_loss_of_half_a_percent_conceals_under_one_percent() {
    let (mut sender, mut receiver) = pair();
    let frames = sine(300.0, 0.4, 3000);
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let dropped: Vec<bool> = (0..frames.len()).map(|_| rng.random_bool(0.005)).collect();
    let lost = dropped.iter().filter(|&&d| d).count();
    assert!(lost > 5, "the seed should lose some");
    let out = run(&mut sender, &mut receiver, &frames, |i| (!dropped[i]).then_some(i as u64 * 20 + 7));
    let stats = receiver.stats();
    assert_eq!(stats.packets_received as usize, frames.len() - lost);
    // Playout starts at the first packet that came and ends at the last one.
    let first = dropped.iter().position(|&d| !d).unwrap();
    let last = dropped.iter().rposition(|&d| !d).unwrap();
    assert_eq!(stats.jitter.lost as usize, dropped[first..last].iter().filter(|&&d| d).count());
    assert!(stats.frames_concealed > 0);
    // Frames after the last packet are concealment too; count only the stream's span.
    let span = stats.frames_decoded + stats.jitter.lost;
    assert!((stats.jitter.lost as f64) < span as f64 * 0.01, "{stats:?}");
    assert!(out.len() as u64 >= span);
    let samples: Vec<i16> = out[50..100].concat();
    assert!((dominant_frequency(&samples, SAMPLE_RATE) - 300.0).abs() <= 5.0);
}

#[test]
fn reordered_packets_are_put_back_in_order() {
    let frames = sine(500.0, 0.4, 200);
    // Reference: the same stream delivered in order.
    let (mut sender, mut receiver) = pair();
    let reference = run(&mut sender, &mut receiver, &frames, |i| Some(i as u64 * 20));

    let (mut sender, mut receiver) = pair();
    // Each group of four is delivered in a shuffled order, up to 30 ms late.
    let mut rng = StdRng::seed_from_u64(42);
    let mut delays: Vec<u64> = Vec::new();
    for _ in 0..frames.len() / 4 {
        let mut group = [0u64, 10, 20, 30];
        group.shuffle(&mut rng);
        delays.extend(group);
    }
    let out = run(&mut sender, &mut receiver, &frames, |i| Some(i as u64 * 20 + delays[i]));
    let stats = receiver.stats();
    assert_eq!(stats.jitter.late, 0, "{stats:?}");
    assert_eq!(stats.jitter.lost, 0, "{stats:?}");
    assert_eq!(stats.frames_decoded, 200);
    // Decoded in sequence order: the output is the in-order output, sample for sample.
    assert_eq!(&out[..200], &reference[..200]);
}

#[test]
fn headers_carry_opus_marker_sequence_and_timestamp() {
    let (mut sender, _) = pair();
    let silence = [0i16; FRAME_SAMPLES];
    let mut previous: Option<RtpHeader> = None;
    for i in 0..40 {
        let datagram = sender.encode_frame(&silence).unwrap();
        let header = RtpHeader::parse(&datagram).unwrap();
        assert_eq!(header.payload_type, OPUS_PAYLOAD_TYPE);
        assert_eq!(header.marker, i == 0);
        assert_eq!(header.ssrc, 0x1234_5678);
        assert_eq!(classify(&datagram), DatagramKind::Rtp);
        if let Some(previous) = previous {
            assert_eq!(header.sequence_number, previous.sequence_number.wrapping_add(1));
            assert_eq!(header.timestamp, previous.timestamp.wrapping_add(960));
        } else {
            assert_eq!((header.sequence_number, header.timestamp), (65_500, 0xffff_f000));
        }
        previous = Some(header);
    }
    assert_eq!(sender.packets_sent(), 40);
    assert_eq!(sender.call(), CallId([7; 16]));
}

#[test]
fn rejects_forgeries_replays_and_junk() {
    let (mut sender, mut receiver) = pair();
    let frame = sine(440.0, 0.5, 1).remove(0);
    let first = sender.encode_frame(&frame).unwrap();
    let second = sender.encode_frame(&frame).unwrap();

    // Under another key (the other direction's): refused, and the SSRC is not learnt from it.
    let other = SrtpKeys::from_exporter_secret(&[0x33; 64], CallDirection::CalleeToCaller).unwrap();
    let mut wrong = AudioSender::new(permit(), other, 0x1111_1111, 1, 1).unwrap();
    let forged = wrong.encode_frame(&frame).unwrap();
    assert_eq!(receiver.handle_datagram(&forged, 0), DatagramOutcome::Rejected(Rejection::Unauthenticated));
    assert_eq!(receiver.remote_ssrc(), None);

    let mut tampered = first.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert_eq!(receiver.handle_datagram(&tampered, 0), DatagramOutcome::Rejected(Rejection::Unauthenticated));
    assert_eq!(receiver.handle_datagram(&first, 0), DatagramOutcome::Audio);
    assert_eq!(receiver.handle_datagram(&first, 1), DatagramOutcome::Rejected(Rejection::Replayed));
    assert_eq!(receiver.handle_datagram(&second, 20), DatagramOutcome::Audio);
    // Properly protected, but from another SSRC than the one learnt.
    let mut intruder = AudioSender::new(permit(), keys(), 0x2222_2222, 1, 1).unwrap();
    let foreign = intruder.encode_frame(&frame).unwrap();
    assert_eq!(receiver.handle_datagram(&foreign, 21), DatagramOutcome::Rejected(Rejection::Unauthenticated));

    for junk in [
        &[][..],
        &[0x80],
        &[0x40; 40],
        &[0x80, 0xc9, 0, 1],       // RTCP RR, far too short
        &[0x80, 0xc0, 0, 0, 0, 0], // second byte 192: neither RTP nor an RTCP type we take
        &[0x80, 0x6f, 0, 1, 0, 0, 0, 1, 0x12, 0x34, 0x56, 0x78],
        &[0x80; 1501],
    ] {
        assert_eq!(
            receiver.handle_datagram(junk, 30),
            DatagramOutcome::Rejected(Rejection::Malformed),
            "{junk:?}"
        );
    }
    let stats = receiver.stats();
    assert_eq!(stats.packets_received, 2);
    assert_eq!(stats.packets_rejected, 11);
    assert_eq!(stats.rejected_unauthenticated, 3);
    assert_eq!(stats.rejected_replayed, 1);
    assert_eq!(stats.rejected_malformed, 7);
}

#[test]
fn authenticated_rtcp_is_counted_and_replays_refused() {
    let (_, mut receiver) = pair();
    // A receiver report from the sender's SSRC (RFC 3550 §6.4.2, no report blocks).
    let rtcp = [0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78];
    let srtcp = SrtcpContext::new(&keys(), 0x1234_5678).protect(&rtcp).unwrap();
    assert_eq!(classify(&srtcp), DatagramKind::Rtcp);
    assert_eq!(receiver.handle_datagram(&srtcp, 0), DatagramOutcome::Rtcp);
    assert_eq!(receiver.handle_datagram(&srtcp, 1), DatagramOutcome::Rejected(Rejection::Replayed));
    assert_eq!(receiver.remote_ssrc(), Some(0x1234_5678));
    // Unprotected RTCP is refused.
    assert_eq!(receiver.handle_datagram(&rtcp, 2), DatagramOutcome::Rejected(Rejection::Malformed));
    let stats = receiver.stats();
    assert_eq!((stats.rtcp_received, stats.packets_rejected), (1, 2));
}

#[test]
fn padding_and_bad_opus_are_handled() {
    let (_, mut receiver) = pair();
    let mut context = SrtpContext::new(&keys(), 0x1234_5678);
    let header = |padding: bool, seq: u8| {
        vec![
            if padding { 0xa0 } else { 0x80 },
            OPUS_PAYLOAD_TYPE,
            0,
            seq,
            0,
            0,
            0,
            seq,
            0x12,
            0x34,
            0x56,
            0x78,
        ]
    };
    // Padding larger than the payload.
    let mut bad_padding = header(true, 1);
    bad_padding.extend_from_slice(&[0xf8, 9]);
    let datagram = context.protect(&bad_padding).unwrap();
    assert_eq!(receiver.handle_datagram(&datagram, 0), DatagramOutcome::Rejected(Rejection::Malformed));
    // Valid padding around a payload the Opus decoder refuses (TOC of a 10 ms frame).
    let mut padded = header(true, 2);
    padded.extend_from_slice(&[0x00, 0xaa, 0, 0, 3]);
    let datagram = context.protect(&padded).unwrap();
    assert_eq!(receiver.handle_datagram(&datagram, 0), DatagramOutcome::Audio);
    let frame = (0..200).find_map(|now| receiver.poll_frame(now)).unwrap();
    assert_eq!(frame.len(), FRAME_SAMPLES);
    let stats = receiver.stats();
    assert_eq!((stats.decode_errors, stats.frames_concealed, stats.frames_decoded), (1, 1, 0));
    // Another payload type, authenticated: still refused.
    let mut other_type = header(false, 3);
    other_type[1] = 0;
    other_type.push(0xf8);
    let datagram = context.protect(&other_type).unwrap();
    assert_eq!(receiver.handle_datagram(&datagram, 0), DatagramOutcome::Rejected(Rejection::Malformed));
}

#[test]
fn fec_rebuilds_a_lost_frame() {
    let (mut sender, mut receiver) = pair();
    let frames = sine(440.0, 0.5, 60);
    run(&mut sender, &mut receiver, &frames, |i| (i != 30).then_some(i as u64 * 20));
    let stats = receiver.stats();
    assert_eq!(stats.jitter.lost, 1);
    assert_eq!(stats.frames_from_fec, 1);
}

//! Both ends of a call's video, sans-IO. The sender encodes, packetizes (RFC 6184), protects
//! (SRTP) and keeps what it sent for a second, to send again what a NACK names; it reads the
//! receiver's feedback: NACKs, picture loss indications (a keyframe) and receiver reports (the
//! bitrate). The receiver orders packets, asks again for the missing ones, reassembles
//! pictures, decodes them, and when a picture cannot be completed waits for a keyframe and
//! asks for one.
//!
//! Like audio, both ends need a [`MediaPermit`]. Each side's video has its own SSRC, named in
//! its offer or answer, and both SSRCs are fixed from the start: a packet from any other SSRC
//! is not authenticated, and nothing is learnt from the network.

use std::collections::{BTreeMap, VecDeque};

use rampart_core::call::{CallId, MediaPermit};

use super::feedback::{Feedback, ReportBlock, build_compound, parse_compound};
use super::frame::VideoFrame;
use super::h264::{
    VideoCodecError, VideoDecoder, VideoEncoder, VideoEncoderConfig, annex_b, nal_type, nal_unit_type,
};
use super::payload::{Depacketizer, MAX_PAYLOAD_BYTES, packetize};
use super::rate::{DelayEstimator, RateController};
use super::sps::read_sps;
use crate::keys::SrtpKeys;
use crate::pipeline::{DatagramKind, MAX_DATAGRAM_BYTES, Rejection, classify, rejection_of};
use crate::rtp::{RTP_FIXED_HEADER_BYTES, RTP_VERSION, RtpHeader};
use crate::srtp::{SrtcpContext, SrtpContext, SrtpError, estimate_index};

/// The dynamic RTP payload type for H.264 (the one WebRTC stacks commonly use).
pub const H264_PAYLOAD_TYPE: u8 = 102;
/// RTP clock rate for video (RFC 6184 §8.2.1).
pub const VIDEO_CLOCK_HZ: u32 = 90_000;
/// How long sent packets are kept for retransmission.
const HISTORY_MS: u64 = 1_000;
const MAX_HISTORY_PACKETS: usize = 2_048;
/// Keyframe requests closer together than this get one keyframe.
const MIN_KEYFRAME_INTERVAL_MS: u64 = 300;
/// A packet is sent again at most this often, however many NACKs name it.
const MIN_RESEND_INTERVAL_MS: u64 = 100;
/// Packets the receiver holds while waiting for missing ones, and their bytes.
const MAX_BUFFERED_PACKETS: usize = 2_048;
const MAX_BUFFERED_BYTES: usize = 4 << 20;
/// A sequence gap wider than this is a restart, not loss.
const MAX_GAP: u64 = 1_000;
/// Packets waited for at once; a gap that would take more is a restart (a hostile sender
/// could otherwise make the receiver track millions of them).
const MAX_MISSING: usize = 512;
/// A packet this far behind the newest cannot authenticate any more (SRTP's replay window), so
/// it is not asked for again, and a picture waiting for it is given up at once.
const NACKABLE_BEHIND: u64 = crate::replay::REPLAY_WINDOW_PACKETS - 16;
/// Sequence numbers in one NACK (each becomes at most one of its 64 entries).
const MAX_NACKED_PER_REPORT: usize = 64;
/// The receiver asks for a missing packet again after this long, at most [`MAX_NACKS`] times,
/// and gives the picture up after [`GIVE_UP_MS`].
const NACK_RETRY_MS: u64 = 120;
const MAX_NACKS: u32 = 3;
const GIVE_UP_MS: u64 = 400;
/// How often the receiver reports, and repeats an unanswered keyframe request.
const REPORT_INTERVAL_MS: u64 = 500;
const PLI_RETRY_MS: u64 = 500;
/// A gap between shown pictures longer than this is a freeze.
pub const FREEZE_GAP_MS: u64 = 200;

/// Sender settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoSendConfig {
    pub fps: f32,
    pub start_bps: u32,
    pub min_bps: u32,
    pub max_bps: u32,
}

impl Default for VideoSendConfig {
    fn default() -> Self {
        Self { fps: 30.0, start_bps: 300_000, min_bps: 100_000, max_bps: 2_500_000 }
    }
}

/// The sender's stream: its SSRC, the other side's video SSRC (whose feedback it reads), and
/// the random first sequence number and timestamp (RFC 3550 §5.1; this crate has no RNG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendStream {
    pub ssrc: u32,
    pub peer_ssrc: u32,
    pub initial_seq: u16,
    pub timestamp_base: u32,
}

/// Sender counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoSenderStats {
    pub frames_encoded: u64,
    pub frames_skipped_by_encoder: u64,
    pub keyframes: u64,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub retransmitted: u64,
    pub nacks_received: u64,
    pub keyframe_requests_received: u64,
    pub reports_received: u64,
    pub rtcp_rejected: u64,
    pub encoder_rate_changes: u64,
    pub estimate_bps: u32,
    pub encoder_bps: u32,
}

pub struct VideoSender {
    permit: MediaPermit,
    config: VideoSendConfig,
    encoder: VideoEncoder,
    srtp: SrtpContext,
    feedback_in: SrtcpContext,
    ssrc: u32,
    next_seq: u16,
    timestamp_base: u32,
    history: VecDeque<Sent>,
    rate: RateController,
    last_keyframe_ms: Option<u64>,
    stats: VideoSenderStats,
}

impl std::fmt::Debug for VideoSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoSender")
            .field("call", &self.permit.call())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl VideoSender {
    /// `send_keys` are this side's direction's, `receive_keys` the other side's (its feedback
    /// comes under them, from the stream's `peer_ssrc`).
    pub fn new(
        permit: MediaPermit,
        send_keys: &SrtpKeys,
        receive_keys: &SrtpKeys,
        stream: SendStream,
        config: VideoSendConfig,
    ) -> Result<Self, VideoCodecError> {
        let SendStream { ssrc, peer_ssrc, initial_seq, timestamp_base } = stream;
        let rate = RateController::new(config.start_bps, config.min_bps, config.max_bps);
        let encoder =
            VideoEncoder::new(VideoEncoderConfig { bitrate_bps: rate.encoder_bps(), fps: config.fps })?;
        Ok(Self {
            permit,
            config,
            encoder,
            srtp: SrtpContext::new(send_keys, ssrc),
            feedback_in: SrtcpContext::new(receive_keys, peer_ssrc),
            ssrc,
            next_seq: initial_seq,
            timestamp_base,
            history: VecDeque::new(),
            rate,
            last_keyframe_ms: None,
            stats: VideoSenderStats::default(),
        })
    }

    pub fn call(&self) -> CallId {
        self.permit.call()
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn stats(&self) -> VideoSenderStats {
        VideoSenderStats {
            estimate_bps: self.rate.estimate_bps(),
            encoder_bps: self.rate.encoder_bps(),
            ..self.stats
        }
    }

    /// The next picture will be a keyframe (the pacer dropped what the receiver needed).
    pub fn request_keyframe(&mut self) {
        self.encoder.request_keyframe();
    }

    /// The RTP timestamp of a picture taken `offset` (in 90 kHz ticks) after the first.
    pub fn timestamp_of(&self, offset: u32) -> u32 {
        self.timestamp_base.wrapping_add(offset)
    }

    /// Encodes one picture and returns its SRTP datagrams. `timestamp_offset` is the picture's
    /// capture time in 90 kHz ticks since the first picture.
    pub fn encode_frame(
        &mut self,
        frame: &VideoFrame,
        timestamp_offset: u32,
        now_ms: u64,
    ) -> Result<Vec<Vec<u8>>, VideoSendError> {
        if let Some(bps) = self.rate.poll_encoder_rate(now_ms) {
            // A new encoder starts with a keyframe.
            self.encoder = VideoEncoder::new(VideoEncoderConfig { bitrate_bps: bps, fps: self.config.fps })?;
            self.stats.encoder_rate_changes += 1;
        }
        let picture = self.encoder.encode(frame)?;
        if picture.is_empty() {
            self.stats.frames_skipped_by_encoder += 1;
            return Ok(Vec::new());
        }
        self.stats.frames_encoded += 1;
        if picture.keyframe {
            self.stats.keyframes += 1;
            self.last_keyframe_ms = Some(now_ms);
        }
        let timestamp = self.timestamp_of(timestamp_offset);
        let payloads = packetize(&picture.nal_units, MAX_PAYLOAD_BYTES);
        let last = payloads.len().saturating_sub(1);
        let mut datagrams = Vec::with_capacity(payloads.len());
        for (i, payload) in payloads.into_iter().enumerate() {
            let marker = if i == last { 0x80 } else { 0 };
            let mut rtp = Vec::with_capacity(RTP_FIXED_HEADER_BYTES + payload.len());
            rtp.push(RTP_VERSION << 6);
            rtp.push(marker | H264_PAYLOAD_TYPE);
            rtp.extend_from_slice(&self.next_seq.to_be_bytes());
            rtp.extend_from_slice(&timestamp.to_be_bytes());
            rtp.extend_from_slice(&self.ssrc.to_be_bytes());
            rtp.extend_from_slice(&payload);
            let datagram = self.srtp.protect(&rtp)?;
            self.remember(self.next_seq, now_ms, datagram.clone());
            self.next_seq = self.next_seq.wrapping_add(1);
            self.stats.packets_sent += 1;
            self.stats.bytes_sent += datagram.len() as u64;
            datagrams.push(datagram);
        }
        Ok(datagrams)
    }

    fn remember(&mut self, seq: u16, now_ms: u64, datagram: Vec<u8>) {
        while self.history.front().is_some_and(|sent| now_ms.saturating_sub(sent.sent_ms) > HISTORY_MS)
            || self.history.len() >= MAX_HISTORY_PACKETS
        {
            self.history.pop_front();
        }
        self.history.push_back(Sent { seq, sent_ms: now_ms, resent_ms: None, datagram });
    }

    /// Takes an SRTCP datagram from the other side's video receiver; returns the datagrams to
    /// send again (the very packets that were lost: the same SRTP index and bytes, so nothing
    /// new is encrypted under a used nonce).
    pub fn handle_rtcp(&mut self, datagram: &[u8], now_ms: u64) -> Result<Vec<Vec<u8>>, Rejection> {
        let result = self.read_feedback(datagram, now_ms);
        if result.is_err() {
            self.stats.rtcp_rejected += 1;
        }
        result
    }

    fn read_feedback(&mut self, datagram: &[u8], now_ms: u64) -> Result<Vec<Vec<u8>>, Rejection> {
        if datagram.len() > MAX_DATAGRAM_BYTES || classify(datagram) != DatagramKind::Rtcp {
            return Err(Rejection::Malformed);
        }
        let clear = self.feedback_in.unprotect(datagram).map_err(rejection_of)?;
        let items = parse_compound(&clear).map_err(|_| Rejection::Malformed)?;
        let mut resend = Vec::new();
        for item in items {
            match item {
                Feedback::Nack { media_ssrc, lost, .. } if media_ssrc == self.ssrc => {
                    self.stats.nacks_received += 1;
                    for seq in lost {
                        // A packet sent again a moment ago is on its way: a repeated NACK
                        // crossed it, and sending it once more would only add to a full queue.
                        // The history holds consecutive sequence numbers: found by offset.
                        let offset = self.history.front().map(|first| seq.wrapping_sub(first.seq));
                        let sent = offset
                            .and_then(|offset| self.history.get_mut(usize::from(offset)))
                            .filter(|sent| sent.seq == seq)
                            .filter(|sent| {
                                sent.resent_ms
                                    .is_none_or(|at| now_ms.saturating_sub(at) >= MIN_RESEND_INTERVAL_MS)
                            });
                        if let Some(sent) = sent {
                            sent.resent_ms = Some(now_ms);
                            resend.push(sent.datagram.clone());
                        }
                    }
                }
                Feedback::PictureLoss { media_ssrc, .. } if media_ssrc == self.ssrc => {
                    self.stats.keyframe_requests_received += 1;
                    let recent = self
                        .last_keyframe_ms
                        .is_some_and(|at| now_ms.saturating_sub(at) < MIN_KEYFRAME_INTERVAL_MS);
                    if !recent {
                        self.encoder.request_keyframe();
                    }
                }
                Feedback::ReceiverReport { blocks, .. } => {
                    for block in blocks.iter().filter(|b| b.media_ssrc == self.ssrc) {
                        self.stats.reports_received += 1;
                        self.rate.on_report(block.fraction_lost);
                    }
                }
                Feedback::Remb { bitrate_bps, media_ssrcs, .. } if media_ssrcs.contains(&self.ssrc) => {
                    self.stats.reports_received += 1;
                    self.rate.on_remb(bitrate_bps);
                }
                Feedback::Nack { .. } | Feedback::PictureLoss { .. } | Feedback::Remb { .. } => {}
            }
        }
        self.stats.retransmitted += resend.len() as u64;
        self.stats.packets_sent += resend.len() as u64;
        self.stats.bytes_sent += resend.iter().map(|d| d.len() as u64).sum::<u64>();
        Ok(resend)
    }
}

/// A packet kept for retransmission.
struct Sent {
    seq: u16,
    sent_ms: u64,
    resent_ms: Option<u64>,
    datagram: Vec<u8>,
}

/// Why the sender could not make a picture's datagrams.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VideoSendError {
    #[error(transparent)]
    Codec(#[from] VideoCodecError),
    #[error("SRTP: {0}")]
    Srtp(#[from] SrtpError),
}

/// Receiver counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoReceiverStats {
    pub packets_received: u64,
    pub packets_rejected: u64,
    pub duplicates: u64,
    pub late: u64,
    pub frames_decoded: u64,
    /// Pictures thrown away: incomplete, undecodable, or not a keyframe while one was awaited.
    pub frames_dropped: u64,
    pub decode_errors: u64,
    pub keyframes_decoded: u64,
    pub nacks_sent: u64,
    pub packets_nacked: u64,
    pub keyframe_requests_sent: u64,
    pub reports_sent: u64,
    pub freezes: u64,
    pub freeze_ms: u64,
    /// When the first picture was shown, in the caller's `now_ms`.
    pub first_frame_ms: Option<u64>,
    /// The last delay-based estimate sent (REMB).
    pub bandwidth_estimate_bps: u64,
}

struct Packet {
    timestamp: u32,
    marker: bool,
    payload: Vec<u8>,
}

struct Missing {
    since_ms: u64,
    last_asked_ms: Option<u64>,
    asked: u32,
}

/// Where picture assembly stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assembly {
    /// Nothing decodable until a keyframe starts (its first packet is an SPS).
    AwaitingKeyframe,
    /// The next picture starts at this extended sequence number.
    InSync { next: u64 },
}

/// A decoded picture and its RTP timestamp.
#[derive(Debug, Clone)]
pub struct DecodedPicture {
    pub frame: VideoFrame,
    pub rtp_timestamp: u32,
}

pub struct VideoReceiver {
    permit: MediaPermit,
    srtp: SrtpContext,
    feedback_out: SrtcpContext,
    own_ssrc: u32,
    peer_ssrc: u32,
    packets: BTreeMap<u64, Packet>,
    buffered_bytes: usize,
    highest: Option<u64>,
    missing: BTreeMap<u64, Missing>,
    assembly: Assembly,
    decoder: VideoDecoder,
    decoded: VecDeque<DecodedPicture>,
    last_shown_ms: Option<u64>,
    last_pli_ms: Option<u64>,
    pli_due: bool,
    last_report_ms: u64,
    reported_highest: Option<u64>,
    lost_since_report: u64,
    cumulative_lost: u64,
    delay: DelayEstimator,
    stats: VideoReceiverStats,
}

impl std::fmt::Debug for VideoReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoReceiver")
            .field("call", &self.permit.call())
            .field("assembly", &self.assembly)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl VideoReceiver {
    /// `receive_keys` are the other side's direction's (its video comes under them, from
    /// `peer_ssrc`); `send_keys` this side's (feedback goes out under them, from `own_ssrc`).
    pub fn new(
        permit: MediaPermit,
        receive_keys: &SrtpKeys,
        send_keys: &SrtpKeys,
        own_ssrc: u32,
        peer_ssrc: u32,
    ) -> Result<Self, VideoCodecError> {
        Ok(Self {
            permit,
            srtp: SrtpContext::new(receive_keys, peer_ssrc),
            feedback_out: SrtcpContext::new(send_keys, own_ssrc),
            own_ssrc,
            peer_ssrc,
            packets: BTreeMap::new(),
            buffered_bytes: 0,
            highest: None,
            missing: BTreeMap::new(),
            assembly: Assembly::AwaitingKeyframe,
            decoder: VideoDecoder::new()?,
            decoded: VecDeque::new(),
            last_shown_ms: None,
            last_pli_ms: None,
            pli_due: false,
            last_report_ms: 0,
            reported_highest: None,
            lost_since_report: 0,
            cumulative_lost: 0,
            delay: DelayEstimator::new(),
            stats: VideoReceiverStats::default(),
        })
    }

    pub fn call(&self) -> CallId {
        self.permit.call()
    }

    pub fn stats(&self) -> VideoReceiverStats {
        self.stats
    }

    /// Takes one SRTP datagram of the other side's video. Never panics: what does not
    /// authenticate or make sense is counted and dropped.
    pub fn handle_datagram(&mut self, datagram: &[u8], now_ms: u64) -> Result<(), Rejection> {
        let result = self.accept(datagram, now_ms);
        match result {
            Ok(()) => self.stats.packets_received += 1,
            Err(_) => self.stats.packets_rejected += 1,
        }
        self.assemble(now_ms);
        result
    }

    fn accept(&mut self, datagram: &[u8], now_ms: u64) -> Result<(), Rejection> {
        if datagram.len() > MAX_DATAGRAM_BYTES || classify(datagram) != DatagramKind::Rtp {
            return Err(Rejection::Malformed);
        }
        let header = RtpHeader::parse(datagram).map_err(|_| Rejection::Malformed)?;
        let clear = self.srtp.unprotect(datagram).map_err(rejection_of)?;
        // Authenticated from here on.
        if header.payload_type != H264_PAYLOAD_TYPE || header.padding {
            return Err(Rejection::Malformed);
        }
        let payload = clear.get(header.header_len..).filter(|p| !p.is_empty()).ok_or(Rejection::Malformed)?;
        let ext = estimate_index(self.highest, header.sequence_number).ok_or(Rejection::Malformed)?;
        match self.highest {
            Some(highest)
                if ext > highest + MAX_GAP
                    || (ext > highest
                        && self.missing.len() as u64 + (ext - highest - 1) > MAX_MISSING as u64) =>
            {
                // A jump this far is not loss: start over from here, at a keyframe.
                self.reset();
                self.highest = Some(ext);
            }
            Some(highest) if ext > highest => {
                for lost in highest + 1..ext {
                    self.missing.insert(lost, Missing { since_ms: now_ms, last_asked_ms: None, asked: 0 });
                    self.lost_since_report += 1;
                    self.cumulative_lost += 1;
                }
                self.highest = Some(ext);
            }
            Some(_) => {
                if self.missing.remove(&ext).is_none() {
                    // Not a packet we were waiting for: too old, or one we already have.
                    if self.packets.contains_key(&ext) {
                        self.stats.duplicates += 1;
                    } else {
                        self.stats.late += 1;
                    }
                    return Ok(());
                }
            }
            None => self.highest = Some(ext),
        }
        if let Assembly::InSync { next } = self.assembly
            && ext < next
        {
            self.stats.late += 1;
            return Ok(());
        }
        if self.packets.len() >= MAX_BUFFERED_PACKETS
            || self.buffered_bytes + payload.len() > MAX_BUFFERED_BYTES
        {
            self.reset();
        }
        self.buffered_bytes += payload.len();
        self.delay.on_packet(header.timestamp, datagram.len(), now_ms);
        self.packets.insert(
            ext,
            Packet { timestamp: header.timestamp, marker: header.marker, payload: payload.to_vec() },
        );
        Ok(())
    }

    /// Drops everything held and waits for a keyframe.
    fn reset(&mut self) {
        self.stats.frames_dropped += u64::from(!self.packets.is_empty());
        self.packets.clear();
        self.missing.clear();
        self.buffered_bytes = 0;
        self.await_keyframe();
    }

    fn await_keyframe(&mut self) {
        self.assembly = Assembly::AwaitingKeyframe;
        self.pli_due = true;
    }

    /// A picture that cannot be shown: dropped, and a keyframe awaited.
    fn drop_picture(&mut self, decode_error: bool) {
        self.stats.decode_errors += u64::from(decode_error);
        self.stats.frames_dropped += 1;
        self.await_keyframe();
    }

    fn drop_below(&mut self, ext: u64) {
        let kept = self.packets.split_off(&ext);
        self.buffered_bytes -= self.packets.values().map(|p| p.payload.len()).sum::<usize>();
        self.packets = kept;
        self.missing = self.missing.split_off(&ext);
    }

    /// Drops the picture that cannot be completed (everything below `ext`) and waits for a
    /// keyframe.
    fn give_up(&mut self, ext: u64) {
        self.drop_below(ext);
        self.drop_picture(false);
    }

    /// Decodes every picture that is complete.
    fn assemble(&mut self, now_ms: u64) {
        loop {
            match self.assembly {
                Assembly::AwaitingKeyframe => {
                    let start = self
                        .packets
                        .iter()
                        .find(|(_, p)| nal_unit_type(&p.payload) == Some(nal_type::SPS))
                        .map(|(ext, _)| *ext);
                    let Some(start) = start else {
                        // Pictures arrive that cannot be decoded without one: ask.
                        self.pli_due |= !self.packets.is_empty();
                        return;
                    };
                    self.drop_below(start);
                    self.assembly = Assembly::InSync { next: start };
                }
                Assembly::InSync { next } => {
                    let Some(end) = self.complete_picture(next, now_ms) else { return };
                    let picture: Vec<Packet> =
                        (next..=end).filter_map(|ext| self.packets.remove(&ext)).collect();
                    self.buffered_bytes -= picture.iter().map(|p| p.payload.len()).sum::<usize>();
                    self.missing = self.missing.split_off(&(end + 1));
                    self.assembly = Assembly::InSync { next: end + 1 };
                    self.decode(picture, now_ms);
                }
            }
        }
    }

    /// The last extended sequence number of the picture starting at `next`, when all of its
    /// packets are here. A packet missing for longer than [`GIVE_UP_MS`] gives the picture up:
    /// wait for a keyframe.
    fn complete_picture(&mut self, next: u64, now_ms: u64) -> Option<u64> {
        let timestamp = self.packets.get(&next).map(|p| p.timestamp);
        let mut ext = next;
        loop {
            match self.packets.get(&ext) {
                Some(packet) if Some(packet.timestamp) == timestamp => {
                    if packet.marker {
                        return Some(ext);
                    }
                    ext += 1;
                }
                // The next picture began without this one's marker: its end was lost for good.
                Some(_) => {
                    self.give_up(ext);
                    return None;
                }
                None => {
                    let behind = self.highest.unwrap_or(ext).saturating_sub(ext);
                    let overdue = self.missing.get(&ext).is_some_and(|m| {
                        now_ms.saturating_sub(m.since_ms) > GIVE_UP_MS || behind >= NACKABLE_BEHIND
                    });
                    if overdue {
                        self.give_up(ext + 1);
                    }
                    return None;
                }
            }
        }
    }

    fn decode(&mut self, picture: Vec<Packet>, now_ms: u64) {
        let Some(timestamp) = picture.first().map(|p| p.timestamp) else { return };
        let mut depacketizer = Depacketizer::new();
        let nal_units = picture
            .iter()
            .try_for_each(|p| depacketizer.push(&p.payload))
            .and_then(|()| depacketizer.finish());
        let Ok(nal_units) = nal_units else {
            self.drop_picture(false);
            return;
        };
        // The decoder sizes its buffers from the SPS: one Rampart would not send is refused
        // before the decoder sees it.
        let sps_refused = nal_units
            .iter()
            .filter(|n| nal_unit_type(n) == Some(nal_type::SPS))
            .any(|n| read_sps(n).is_err());
        if sps_refused {
            self.drop_picture(true);
            return;
        }
        let keyframe = nal_units.iter().any(|n| nal_unit_type(n) == Some(nal_type::IDR_SLICE));
        match self.decoder.decode(&annex_b(&nal_units)) {
            Ok(Some(frame)) => {
                self.stats.frames_decoded += 1;
                self.stats.keyframes_decoded += u64::from(keyframe);
                self.pli_due = false;
                if let Some(last) = self.last_shown_ms {
                    let gap = now_ms.saturating_sub(last);
                    if gap > FREEZE_GAP_MS {
                        self.stats.freezes += 1;
                        self.stats.freeze_ms += gap;
                    }
                }
                self.last_shown_ms = Some(now_ms);
                self.stats.first_frame_ms.get_or_insert(now_ms);
                if self.decoded.len() >= 8 {
                    // Nobody is taking pictures: keep the newest.
                    self.decoded.pop_front();
                }
                self.decoded.push_back(DecodedPicture { frame, rtp_timestamp: timestamp });
            }
            Ok(None) => {}
            Err(_) => self.drop_picture(true),
        }
    }

    /// The next decoded picture, oldest first.
    pub fn poll_picture(&mut self) -> Option<DecodedPicture> {
        self.decoded.pop_front()
    }

    /// Feedback to send now, as one SRTCP datagram: NACKs for packets still missing, a
    /// keyframe request while one is needed, and a receiver report every 500 ms.
    pub fn poll_rtcp(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        // Time also completes (or gives up) pictures, not only arrivals.
        self.assemble(now_ms);
        let mut items = Vec::new();
        let mut lost = Vec::new();
        let newest = self.highest.unwrap_or_default();
        self.missing.retain(|ext, m| {
            now_ms.saturating_sub(m.since_ms) <= GIVE_UP_MS + 600
                && newest.saturating_sub(*ext) < NACKABLE_BEHIND
        });
        for (ext, missing) in &mut self.missing {
            if lost.len() >= MAX_NACKED_PER_REPORT {
                break;
            }
            let due = missing.last_asked_ms.is_none_or(|at| now_ms.saturating_sub(at) >= NACK_RETRY_MS);
            if due && missing.asked < MAX_NACKS {
                missing.asked += 1;
                missing.last_asked_ms = Some(now_ms);
                lost.push(*ext as u16);
            }
        }
        if !lost.is_empty() {
            self.stats.nacks_sent += 1;
            self.stats.packets_nacked += lost.len() as u64;
            items.push(Feedback::Nack { sender_ssrc: self.own_ssrc, media_ssrc: self.peer_ssrc, lost });
        }
        let pli_allowed = self.last_pli_ms.is_none_or(|at| now_ms.saturating_sub(at) >= PLI_RETRY_MS);
        if self.pli_due && self.highest.is_some() && pli_allowed {
            self.last_pli_ms = Some(now_ms);
            self.stats.keyframe_requests_sent += 1;
            items.push(Feedback::PictureLoss { sender_ssrc: self.own_ssrc, media_ssrc: self.peer_ssrc });
        }
        if let Some(highest) = self.highest
            && now_ms.saturating_sub(self.last_report_ms) >= REPORT_INTERVAL_MS
        {
            let expected = highest.saturating_sub(self.reported_highest.unwrap_or(highest)).max(1);
            let fraction = (self.lost_since_report * 256 / expected).min(255) as u8;
            self.last_report_ms = now_ms;
            self.reported_highest = Some(highest);
            self.lost_since_report = 0;
            self.stats.reports_sent += 1;
            let block = ReportBlock {
                media_ssrc: self.peer_ssrc,
                fraction_lost: fraction,
                cumulative_lost: self.cumulative_lost.min(0x7f_ffff) as u32,
                extended_highest_sequence: highest as u32,
                jitter: 0,
            };
            items.insert(0, Feedback::ReceiverReport { reporter_ssrc: self.own_ssrc, blocks: vec![block] });
            if let Some(bitrate_bps) = self.delay.update() {
                self.stats.bandwidth_estimate_bps = bitrate_bps;
                items.push(Feedback::Remb {
                    sender_ssrc: self.own_ssrc,
                    bitrate_bps,
                    media_ssrcs: vec![self.peer_ssrc],
                });
            }
        }
        if items.is_empty() {
            return None;
        }
        self.feedback_out.protect(&build_compound(&items)).ok()
    }
}

#[cfg(test)]
mod tests;

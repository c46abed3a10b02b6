//! The RTCP a video call needs (RFC 3550, RFC 4585): receiver reports (how much was lost, for
//! the sender's rate control), generic NACKs (which packets to send again), picture loss
//! indications (send a keyframe) and REMB (the receiver's estimate of what the path carries).
//! Built and parsed here, carried in SRTCP.
//!
//! Parsing is bounded: a compound packet is at most [`MAX_COMPOUND_BYTES`], holds at most
//! [`MAX_PACKETS`] packets, and its NACKs name at most [`MAX_NACKED`] sequence numbers. Packet
//! types Rampart does not use are skipped (their length still checked).

use thiserror::Error;

pub const MAX_COMPOUND_BYTES: usize = 1_200;
pub const MAX_PACKETS: usize = 16;
pub const MAX_NACKED: usize = 512;

const VERSION: u8 = 2;
const PT_RR: u8 = 201;
const PT_RTPFB: u8 = 205;
const PT_PSFB: u8 = 206;
const FMT_GENERIC_NACK: u8 = 1;
const FMT_PLI: u8 = 1;
const FMT_APPLICATION: u8 = 15;
const REMB_ID: &[u8; 4] = b"REMB";

/// One report block of a receiver report (RFC 3550 §6.4.1), the fields Rampart uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    pub media_ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Packets lost since the stream began (24 bits, saturating).
    pub cumulative_lost: u32,
    pub extended_highest_sequence: u32,
    pub jitter: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    ReceiverReport {
        reporter_ssrc: u32,
        blocks: Vec<ReportBlock>,
    },
    /// Packets of `media_ssrc` that did not arrive (RFC 4585 §6.2.1).
    Nack {
        sender_ssrc: u32,
        media_ssrc: u32,
        lost: Vec<u16>,
    },
    /// The receiver cannot decode `media_ssrc` until a keyframe (RFC 4585 §6.3.1).
    PictureLoss {
        sender_ssrc: u32,
        media_ssrc: u32,
    },
    /// The receiver's estimate of the bitrate the path carries (draft-alvestrand-rmcat-remb),
    /// for the streams listed.
    Remb {
        sender_ssrc: u32,
        bitrate_bps: u64,
        media_ssrcs: Vec<u32>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FeedbackError {
    #[error("RTCP of {0} bytes is over the limit")]
    TooLong(usize),
    #[error("an RTCP packet is cut short")]
    Truncated,
    #[error("RTCP version {0}, not 2")]
    WrongVersion(u8),
    #[error("more than {MAX_PACKETS} packets in one compound")]
    TooManyPackets,
    #[error("NACKs for more than {MAX_NACKED} packets")]
    TooManyNacks,
    #[error("padding in a packet that is not the last, or more padding than packet")]
    BadPadding,
}

fn header(out: &mut Vec<u8>, count_or_fmt: u8, packet_type: u8, words_after_header: usize) {
    out.push((VERSION << 6) | (count_or_fmt & 0x1f));
    out.push(packet_type);
    out.extend_from_slice(&(words_after_header as u16).to_be_bytes());
}

/// Serializes feedback as one compound RTCP packet (clear text, for SRTCP to protect). A
/// report with more than 31 blocks or a NACK list is cut to what fits in one packet.
pub fn build_compound(items: &[Feedback]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        match item {
            Feedback::ReceiverReport { reporter_ssrc, blocks } => {
                let blocks = blocks.get(..blocks.len().min(31)).unwrap_or_default();
                header(&mut out, blocks.len() as u8, PT_RR, 1 + 6 * blocks.len());
                out.extend_from_slice(&reporter_ssrc.to_be_bytes());
                for block in blocks {
                    out.extend_from_slice(&block.media_ssrc.to_be_bytes());
                    let lost = block.cumulative_lost.min(0x7f_ffff);
                    out.push(block.fraction_lost);
                    out.extend_from_slice(&lost.to_be_bytes()[1..]);
                    out.extend_from_slice(&block.extended_highest_sequence.to_be_bytes());
                    out.extend_from_slice(&block.jitter.to_be_bytes());
                    // No sender reports are sent, so LSR and DLSR are zero (RFC 3550 §6.4.1).
                    out.extend_from_slice(&[0; 8]);
                }
            }
            Feedback::Nack { sender_ssrc, media_ssrc, lost } => {
                let entries = nack_entries(lost);
                header(&mut out, FMT_GENERIC_NACK, PT_RTPFB, 2 + entries.len());
                out.extend_from_slice(&sender_ssrc.to_be_bytes());
                out.extend_from_slice(&media_ssrc.to_be_bytes());
                for (pid, bitmask) in entries {
                    out.extend_from_slice(&pid.to_be_bytes());
                    out.extend_from_slice(&bitmask.to_be_bytes());
                }
            }
            Feedback::PictureLoss { sender_ssrc, media_ssrc } => {
                header(&mut out, FMT_PLI, PT_PSFB, 2);
                out.extend_from_slice(&sender_ssrc.to_be_bytes());
                out.extend_from_slice(&media_ssrc.to_be_bytes());
            }
            Feedback::Remb { sender_ssrc, bitrate_bps, media_ssrcs } => {
                let ssrcs = media_ssrcs.get(..media_ssrcs.len().min(255)).unwrap_or_default();
                header(&mut out, FMT_APPLICATION, PT_PSFB, 4 + ssrcs.len());
                out.extend_from_slice(&sender_ssrc.to_be_bytes());
                out.extend_from_slice(&0u32.to_be_bytes());
                out.extend_from_slice(REMB_ID);
                // An 18-bit mantissa and a 6-bit exponent.
                let mut exponent = 0u32;
                let mut mantissa = *bitrate_bps;
                while mantissa >= 1 << 18 && exponent < 63 {
                    mantissa >>= 1;
                    exponent += 1;
                }
                let word =
                    ((ssrcs.len() as u32) << 24) | (exponent << 18) | (mantissa.min((1 << 18) - 1) as u32);
                out.extend_from_slice(&word.to_be_bytes());
                for ssrc in ssrcs {
                    out.extend_from_slice(&ssrc.to_be_bytes());
                }
            }
        }
    }
    out
}

/// Groups sequence numbers into (PID, BLP) entries: a packet ID and a bitmask of the 16 after
/// it. At most 64 entries (1,088 packets), which keeps a NACK inside one datagram.
fn nack_entries(lost: &[u16]) -> Vec<(u16, u16)> {
    let mut entries: Vec<(u16, u16)> = Vec::new();
    for &seq in lost {
        let full = entries.len() >= 64;
        match entries.last_mut() {
            Some((pid, mask)) if (1..=16).contains(&seq.wrapping_sub(*pid)) => {
                *mask |= 1 << (seq.wrapping_sub(*pid) - 1);
            }
            Some((pid, _)) if *pid == seq => {}
            _ if full => break,
            _ => entries.push((seq, 0)),
        }
    }
    entries
}

fn be32(bytes: &[u8], at: usize) -> Result<u32, FeedbackError> {
    let word = bytes.get(at..at + 4).and_then(|w| w.try_into().ok()).ok_or(FeedbackError::Truncated)?;
    Ok(u32::from_be_bytes(word))
}

/// Parses a compound RTCP packet (clear text, after SRTCP). Unknown packet types are skipped.
pub fn parse_compound(bytes: &[u8]) -> Result<Vec<Feedback>, FeedbackError> {
    if bytes.len() > MAX_COMPOUND_BYTES {
        return Err(FeedbackError::TooLong(bytes.len()));
    }
    let mut items = Vec::new();
    let mut nacked = 0usize;
    let mut rest = bytes;
    let mut packets = 0;
    while !rest.is_empty() {
        packets += 1;
        if packets > MAX_PACKETS {
            return Err(FeedbackError::TooManyPackets);
        }
        let &[first, packet_type, len_high, len_low, ..] = rest else { return Err(FeedbackError::Truncated) };
        if first >> 6 != VERSION {
            return Err(FeedbackError::WrongVersion(first >> 6));
        }
        let len = (usize::from(u16::from_be_bytes([len_high, len_low])) + 1) * 4;
        let mut packet = rest.get(..len).ok_or(FeedbackError::Truncated)?;
        rest = rest.get(len..).unwrap_or_default();
        if first & 0x20 != 0 {
            // RFC 3550 §6.4.1: only the last packet of a compound may be padded.
            let padding = usize::from(*packet.last().ok_or(FeedbackError::BadPadding)?);
            if !rest.is_empty() || padding == 0 || padding > packet.len() - 4 {
                return Err(FeedbackError::BadPadding);
            }
            packet = packet.get(..packet.len() - padding).ok_or(FeedbackError::BadPadding)?;
        }
        let count = first & 0x1f;
        match (packet_type, count) {
            (PT_RR, _) => {
                let reporter_ssrc = be32(packet, 4)?;
                let mut blocks = Vec::new();
                for i in 0..usize::from(count) {
                    let at = 8 + 24 * i;
                    let block = packet.get(at..at + 24).ok_or(FeedbackError::Truncated)?;
                    let lost = be32(block, 4)?;
                    blocks.push(ReportBlock {
                        media_ssrc: be32(block, 0)?,
                        fraction_lost: (lost >> 24) as u8,
                        cumulative_lost: lost & 0x00ff_ffff,
                        extended_highest_sequence: be32(block, 8)?,
                        jitter: be32(block, 12)?,
                    });
                }
                items.push(Feedback::ReceiverReport { reporter_ssrc, blocks });
            }
            (PT_RTPFB, FMT_GENERIC_NACK) => {
                let (sender_ssrc, media_ssrc) = (be32(packet, 4)?, be32(packet, 8)?);
                let mut lost = Vec::new();
                for entry in packet.get(12..).unwrap_or_default().chunks(4) {
                    let [a, b, c, d] = *entry else { return Err(FeedbackError::Truncated) };
                    let pid = u16::from_be_bytes([a, b]);
                    let mask = u16::from_be_bytes([c, d]);
                    lost.push(pid);
                    lost.extend(
                        (0..16).filter(|bit| mask & (1 << bit) != 0).map(|bit| pid.wrapping_add(bit + 1)),
                    );
                }
                nacked += lost.len();
                if nacked > MAX_NACKED {
                    return Err(FeedbackError::TooManyNacks);
                }
                items.push(Feedback::Nack { sender_ssrc, media_ssrc, lost });
            }
            (PT_PSFB, FMT_PLI) => {
                items.push(Feedback::PictureLoss {
                    sender_ssrc: be32(packet, 4)?,
                    media_ssrc: be32(packet, 8)?,
                });
            }
            (PT_PSFB, FMT_APPLICATION) if packet.get(12..16) == Some(REMB_ID.as_slice()) => {
                let word = be32(packet, 16)?;
                let count = (word >> 24) as usize;
                let bitrate_bps = u64::from(word & 0x3_ffff) << ((word >> 18) & 0x3f);
                let media_ssrcs = (0..count).map(|i| be32(packet, 20 + 4 * i)).collect::<Result<_, _>>()?;
                items.push(Feedback::Remb { sender_ssrc: be32(packet, 4)?, bitrate_bps, media_ssrcs });
            }
            // Sender reports, SDES, BYE, other feedback: nothing Rampart acts on.
            _ => {}
        }
    }
    Ok(items)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn feedback_round_trips() {
        let items = vec![
            Feedback::ReceiverReport {
                reporter_ssrc: 1,
                blocks: vec![ReportBlock {
                    media_ssrc: 2,
                    fraction_lost: 13,
                    cumulative_lost: 70_000,
                    extended_highest_sequence: 0x1_0005,
                    jitter: 90,
                }],
            },
            Feedback::Nack { sender_ssrc: 1, media_ssrc: 2, lost: vec![65_530, 65_535, 0, 3, 40] },
            Feedback::PictureLoss { sender_ssrc: 1, media_ssrc: 2 },
            Feedback::Remb { sender_ssrc: 1, bitrate_bps: 612_352, media_ssrcs: vec![2] },
        ];
        let bytes = build_compound(&items);
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(parse_compound(&bytes).unwrap(), items);
    }

    #[test]
    fn a_pli_is_the_rfc_4585_layout() {
        let pli =
            build_compound(&[Feedback::PictureLoss { sender_ssrc: 0x0102_0304, media_ssrc: 0x0506_0708 }]);
        assert_eq!(pli, [0x81, 206, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn bad_compounds_are_refused() {
        let pli = build_compound(&[Feedback::PictureLoss { sender_ssrc: 1, media_ssrc: 2 }]);
        assert_eq!(parse_compound(&pli[..10]), Err(FeedbackError::Truncated));
        let mut v1 = pli.clone();
        v1[0] = 0x41;
        assert_eq!(parse_compound(&v1), Err(FeedbackError::WrongVersion(1)));
        let many: Vec<u8> = pli.iter().copied().cycle().take(pli.len() * 17).collect();
        assert_eq!(parse_compound(&many), Err(FeedbackError::TooManyPackets));
        assert!(matches!(parse_compound(&vec![0x80; 2_000]), Err(FeedbackError::TooLong(2_000))));
        // A receiver report claiming 31 blocks in a packet that holds none.
        let lying = [0x9f, 201, 0, 1, 0, 0, 0, 1];
        assert_eq!(parse_compound(&lying), Err(FeedbackError::Truncated));
        // Full NACK masks, many entries: refused past the limit.
        let mut nack = vec![0x81, 205, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2];
        for pid in 0..40u16 {
            nack.extend_from_slice(&(pid * 17).to_be_bytes());
            nack.extend_from_slice(&[0xff, 0xff]);
        }
        let words = (nack.len() / 4 - 1) as u16;
        nack[2..4].copy_from_slice(&words.to_be_bytes());
        assert_eq!(parse_compound(&nack), Err(FeedbackError::TooManyNacks));
        // Padding on a packet followed by another.
        let mut padded = pli.clone();
        padded[0] |= 0x20;
        padded.extend_from_slice(&pli);
        assert_eq!(parse_compound(&padded), Err(FeedbackError::BadPadding));
    }

    #[test]
    fn unknown_packet_types_are_skipped() {
        let mut bytes = vec![0x81, 202, 0, 1, 0, 0, 0, 9];
        bytes.extend(build_compound(&[Feedback::PictureLoss { sender_ssrc: 1, media_ssrc: 2 }]));
        assert_eq!(
            parse_compound(&bytes).unwrap(),
            vec![Feedback::PictureLoss { sender_ssrc: 1, media_ssrc: 2 }]
        );
    }
}

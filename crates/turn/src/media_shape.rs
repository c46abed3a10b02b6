//! The shape check the relay applies to call media: a datagram it relays for a call must look
//! like SRTP (RFC 3711, RFC 7714 AEAD-AES-GCM) or SRTCP; anything else is dropped and counted
//! against the caller. The relay cannot decrypt media and does not try: it checks only what is
//! in the clear (the RTP/RTCP headers) against the datagram's length, so that malformed
//! packets never reach the other side's media stack.

/// Bytes of the AEAD-AES-GCM authentication tag that ends every SRTP and SRTCP packet
/// (RFC 7714 §5.1).
pub const AEAD_TAG_BYTES: usize = 16;
/// SRTCP's E flag and index word (RFC 3711 §3.4).
const SRTCP_INDEX_BYTES: usize = 4;
/// The fixed RTP header (RFC 3550 §5.1).
const RTP_HEADER_BYTES: usize = 12;
/// The fixed RTCP header (RFC 3550 §6.4.1).
const RTCP_HEADER_BYTES: usize = 8;
/// Default size cap: Opus at its highest rate fits well below.
pub const DEFAULT_MAX_MEDIA_DATAGRAM: usize = 1_400;

/// What a well-formed media datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaPacket {
    Srtp { ssrc: u32, sequence: u16, payload_type: u8 },
    Srtcp { ssrc: u32, packet_type: u8 },
}

/// Why a datagram is not well-formed SRTP/SRTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MediaShapeError {
    #[error("datagram of {len} bytes is over the cap of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("datagram of {0} bytes is too short for a header and a tag")]
    TooShort(usize),
    #[error("RTP version {0}, not 2")]
    WrongVersion(u8),
    #[error("the CSRC list or header extension runs past the datagram")]
    HeaderPastEnd,
    #[error("the RTCP length field ({words} words) runs past the datagram")]
    RtcpLengthPastEnd { words: u16 },
    #[error("RTCP packet type {0} is not one Rampart sends")]
    UnknownRtcpType(u8),
}

fn byte(d: &[u8], i: usize) -> Result<u8, MediaShapeError> {
    d.get(i).copied().ok_or(MediaShapeError::TooShort(d.len()))
}

fn be16(d: &[u8], i: usize) -> Result<u16, MediaShapeError> {
    Ok(u16::from_be_bytes([byte(d, i)?, byte(d, i + 1)?]))
}

fn be32(d: &[u8], i: usize) -> Result<u32, MediaShapeError> {
    Ok(u32::from_be_bytes([byte(d, i)?, byte(d, i + 1)?, byte(d, i + 2)?, byte(d, i + 3)?]))
}

/// Check a datagram's shape. RTP and RTCP share a port (RFC 5761): a second byte of 192–223
/// (RTCP packet types 192–223 with the marker bit position) means RTCP.
pub fn check(datagram: &[u8], max_len: usize) -> Result<MediaPacket, MediaShapeError> {
    let len = datagram.len();
    if len > max_len {
        return Err(MediaShapeError::TooLarge { len, max: max_len });
    }
    let first = byte(datagram, 0)?;
    let version = first >> 6;
    if version != 2 {
        return Err(MediaShapeError::WrongVersion(version));
    }
    let second = byte(datagram, 1)?;
    if (192..=223).contains(&second) {
        check_srtcp(datagram, second)
    } else {
        check_srtp(datagram, first, second)
    }
}

fn check_srtp(d: &[u8], first: u8, second: u8) -> Result<MediaPacket, MediaShapeError> {
    if d.len() < RTP_HEADER_BYTES + AEAD_TAG_BYTES {
        return Err(MediaShapeError::TooShort(d.len()));
    }
    let csrc_count = usize::from(first & 0x0f);
    let mut header = RTP_HEADER_BYTES + 4 * csrc_count;
    if first & 0x10 != 0 {
        // Extension: 16-bit profile, 16-bit length in 32-bit words, then the words.
        let words = usize::from(be16(d, header + 2).map_err(|_| MediaShapeError::HeaderPastEnd)?);
        header += 4 + 4 * words;
    }
    // The header is in the clear; the tag follows the (encrypted, possibly empty) payload.
    if header + AEAD_TAG_BYTES > d.len() {
        return Err(MediaShapeError::HeaderPastEnd);
    }
    Ok(MediaPacket::Srtp { ssrc: be32(d, 8)?, sequence: be16(d, 2)?, payload_type: second & 0x7f })
}

fn check_srtcp(d: &[u8], packet_type: u8) -> Result<MediaPacket, MediaShapeError> {
    if d.len() < RTCP_HEADER_BYTES + SRTCP_INDEX_BYTES + AEAD_TAG_BYTES {
        return Err(MediaShapeError::TooShort(d.len()));
    }
    // SR, RR, SDES, BYE, APP, transport and payload feedback, XR.
    if !(200..=207).contains(&packet_type) {
        return Err(MediaShapeError::UnknownRtcpType(packet_type));
    }
    // The first packet of the compound is in the clear up to its SSRC; its length (in 32-bit
    // words, minus one) must fit in what precedes the SRTCP index and tag.
    let words = be16(d, 2)?;
    let first_packet = (usize::from(words) + 1) * 4;
    if first_packet > d.len() - SRTCP_INDEX_BYTES - AEAD_TAG_BYTES {
        return Err(MediaShapeError::RtcpLengthPastEnd { words });
    }
    Ok(MediaPacket::Srtcp { ssrc: be32(d, 4)?, packet_type })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn srtp(csrc: u8, ext_words: Option<u16>, payload: usize) -> Vec<u8> {
        let mut d = vec![0x80 | csrc | if ext_words.is_some() { 0x10 } else { 0 }, 111];
        d.extend_from_slice(&7u16.to_be_bytes());
        d.extend_from_slice(&960u32.to_be_bytes());
        d.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        d.extend(std::iter::repeat_n(0u8, 4 * usize::from(csrc)));
        if let Some(w) = ext_words {
            d.extend_from_slice(&0xbedeu16.to_be_bytes());
            d.extend_from_slice(&w.to_be_bytes());
            d.extend(std::iter::repeat_n(0u8, 4 * usize::from(w)));
        }
        d.extend(std::iter::repeat_n(0xaa, payload + AEAD_TAG_BYTES));
        d
    }

    #[test]
    fn well_formed_srtp_passes() {
        let expected = MediaPacket::Srtp { ssrc: 0xdead_beef, sequence: 7, payload_type: 111 };
        assert_eq!(check(&srtp(0, None, 80), 1400), Ok(expected));
        assert_eq!(check(&srtp(2, Some(1), 80), 1400), Ok(expected));
        assert_eq!(check(&srtp(0, None, 0), 1400), Ok(expected), "an empty payload is allowed");
    }

    #[test]
    fn malformed_srtp_is_refused() {
        let mut v1 = srtp(0, None, 80);
        v1[0] = 0x40;
        assert_eq!(check(&v1, 1400), Err(MediaShapeError::WrongVersion(1)));
        // 15 CSRCs claimed in a small datagram.
        let mut lying = srtp(0, None, 10);
        lying[0] |= 0x0f;
        assert_eq!(check(&lying, 1400), Err(MediaShapeError::HeaderPastEnd));
        // An extension longer than the datagram.
        let mut ext = srtp(0, Some(1), 10);
        ext[14] = 0xff;
        assert_eq!(check(&ext, 1400), Err(MediaShapeError::HeaderPastEnd));
        assert_eq!(
            check(&srtp(0, None, 2000), 1400),
            Err(MediaShapeError::TooLarge { len: 2028, max: 1400 })
        );
        assert!(matches!(check(&[0x80, 111, 0, 1], 1400), Err(MediaShapeError::TooShort(4))));
        assert!(check(&[], 1400).is_err());
        // Every truncation of a good packet below header + tag is refused, without panicking.
        let good = srtp(1, Some(2), 40);
        for cut in 0..RTP_HEADER_BYTES + 4 + 4 + 8 + AEAD_TAG_BYTES {
            assert!(check(&good[..cut], 1400).is_err(), "cut at {cut}");
        }
    }

    fn srtcp(packet_type: u8, words: u16, total: usize) -> Vec<u8> {
        let mut d = vec![0x81, packet_type];
        d.extend_from_slice(&words.to_be_bytes());
        d.extend_from_slice(&42u32.to_be_bytes());
        d.resize(total, 0x55);
        d
    }

    #[test]
    fn srtcp_shape() {
        // A receiver report with one block: 8 + 24 bytes = 8 words - 1 = 7; then index and tag.
        let rr = srtcp(201, 7, 32 + 4 + 16);
        assert_eq!(check(&rr, 1400), Ok(MediaPacket::Srtcp { ssrc: 42, packet_type: 201 }));
        assert_eq!(
            check(&srtcp(201, 8, 32 + 4 + 16), 1400),
            Err(MediaShapeError::RtcpLengthPastEnd { words: 8 })
        );
        assert_eq!(check(&srtcp(195, 1, 64), 1400), Err(MediaShapeError::UnknownRtcpType(195)));
        assert!(matches!(check(&srtcp(200, 1, 20), 1400), Err(MediaShapeError::TooShort(20))));
    }
}

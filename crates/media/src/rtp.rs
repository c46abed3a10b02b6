//! RTP fixed header parsing (RFC 3550 §5.1), bounds-checked: any input gives a header or an
//! error, never a panic.

use thiserror::Error;

/// Length of the fixed part of the RTP header (RFC 3550 §5.1), without CSRCs or extension.
pub const RTP_FIXED_HEADER_BYTES: usize = 12;

/// The only RTP version in use (RFC 3550 §5.1, "V").
pub const RTP_VERSION: u8 = 2;

/// Why bytes are not an RTP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpHeaderError {
    #[error("shorter than the 12-byte fixed RTP header")]
    TooShortForFixedHeader,
    #[error("RTP version {0}, expected 2")]
    UnsupportedVersion(u8),
    #[error("the CSRC list runs past the end of the packet")]
    TruncatedCsrcList,
    #[error("the header extension runs past the end of the packet")]
    TruncatedExtension,
}

/// The header extension (RFC 3550 §5.3.1): a profile-defined 16-bit value and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpHeaderExtension {
    pub profile: u16,
    /// The extension data, a whole number of 32-bit words.
    pub data: Vec<u8>,
}

/// A parsed RTP header (RFC 3550 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpHeader {
    pub padding: bool,
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrcs: Vec<u32>,
    pub extension: Option<RtpHeaderExtension>,
    /// Bytes the header occupies at the start of the packet, CSRCs and extension included:
    /// where the payload starts.
    pub header_len: usize,
}

fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    let pair = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_be_bytes(pair.try_into().ok()?))
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let quad = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_be_bytes(quad.try_into().ok()?))
}

impl RtpHeader {
    /// Parses the header at the start of `packet` (RTP or SRTP: the header is in the clear in
    /// both). The payload is `packet[header_len..]`.
    pub fn parse(packet: &[u8]) -> Result<Self, RtpHeaderError> {
        let [first, second, ..] = *packet else {
            return Err(RtpHeaderError::TooShortForFixedHeader);
        };
        if packet.len() < RTP_FIXED_HEADER_BYTES {
            return Err(RtpHeaderError::TooShortForFixedHeader);
        }
        let version = first >> 6;
        if version != RTP_VERSION {
            return Err(RtpHeaderError::UnsupportedVersion(version));
        }
        let padding = first & 0x20 != 0;
        let has_extension = first & 0x10 != 0;
        let csrc_count = usize::from(first & 0x0f);
        let marker = second & 0x80 != 0;
        let payload_type = second & 0x7f;
        let fixed = |offset| u32_at(packet, offset).ok_or(RtpHeaderError::TooShortForFixedHeader);
        let sequence_number = u16_at(packet, 2).ok_or(RtpHeaderError::TooShortForFixedHeader)?;
        let timestamp = fixed(4)?;
        let ssrc = fixed(8)?;

        let mut csrcs = Vec::with_capacity(csrc_count);
        let mut offset = RTP_FIXED_HEADER_BYTES;
        for _ in 0..csrc_count {
            csrcs.push(u32_at(packet, offset).ok_or(RtpHeaderError::TruncatedCsrcList)?);
            offset += 4;
        }

        let extension = if has_extension {
            // RFC 3550 §5.3.1: 16-bit profile, 16-bit length in 32-bit words, then the data.
            let profile = u16_at(packet, offset).ok_or(RtpHeaderError::TruncatedExtension)?;
            let words = u16_at(packet, offset + 2).ok_or(RtpHeaderError::TruncatedExtension)?;
            let data_start = offset + 4;
            let data_end = data_start + usize::from(words) * 4;
            let data = packet.get(data_start..data_end).ok_or(RtpHeaderError::TruncatedExtension)?.to_vec();
            offset = data_end;
            Some(RtpHeaderExtension { profile, data })
        } else {
            None
        };

        Ok(Self {
            padding,
            marker,
            payload_type,
            sequence_number,
            timestamp,
            ssrc,
            csrcs,
            extension,
            header_len: offset,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    #[test]
    fn parses_the_rfc_7714_sample_header() {
        let packet = [0x80, 0x40, 0xf1, 0x7b, 0x80, 0x41, 0xf8, 0xd3, 0x55, 0x01, 0xa0, 0xb2, 0x47];
        let header = RtpHeader::parse(&packet).unwrap_or_else(|e| panic!("{e}"));
        assert!(!header.padding && !header.marker);
        assert_eq!(header.payload_type, 0x40);
        assert_eq!(header.sequence_number, 0xf17b);
        assert_eq!(header.timestamp, 0x8041_f8d3);
        assert_eq!(header.ssrc, 0x5501_a0b2);
        assert!(header.csrcs.is_empty() && header.extension.is_none());
        assert_eq!(header.header_len, 12);
    }

    #[test]
    fn parses_csrcs_and_extension() {
        let mut packet = vec![0x92, 0xe0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        packet.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 8]); // two CSRCs
        packet.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // one-word extension
        packet.extend_from_slice(b"payload");
        let header = RtpHeader::parse(&packet).unwrap_or_else(|e| panic!("{e}"));
        assert!(header.marker);
        assert_eq!(header.payload_type, 0x60);
        assert_eq!(header.csrcs, vec![7, 8]);
        assert_eq!(header.extension, Some(RtpHeaderExtension { profile: 0xbede, data: vec![1, 2, 3, 4] }));
        assert_eq!(header.header_len, 28);
        assert_eq!(packet.get(header.header_len..), Some(&b"payload"[..]));
    }

    #[test]
    fn refuses_truncated_and_foreign_headers() {
        assert_eq!(RtpHeader::parse(&[]), Err(RtpHeaderError::TooShortForFixedHeader));
        assert_eq!(RtpHeader::parse(&[0x80; 11]), Err(RtpHeaderError::TooShortForFixedHeader));
        assert_eq!(RtpHeader::parse(&[0x40; 12]), Err(RtpHeaderError::UnsupportedVersion(1)));
        let mut csrcs = vec![0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        csrcs.extend_from_slice(&[0; 11]);
        assert_eq!(RtpHeader::parse(&csrcs), Err(RtpHeaderError::TruncatedCsrcList));
        let mut extension = vec![0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0xff, 0xff];
        extension.extend_from_slice(&[0; 40]);
        assert_eq!(RtpHeader::parse(&extension), Err(RtpHeaderError::TruncatedExtension));
        assert_eq!(RtpHeader::parse(&extension[..14]), Err(RtpHeaderError::TruncatedExtension));
    }
}

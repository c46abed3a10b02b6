//! ChannelData messages (RFC 8656 §12.4) and telling what arrives on a port apart (RFC 8656
//! §12, RFC 7983 as updated by RFC 9443).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Channel Number        |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! /                       Application Data                        /
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::fmt;

use thiserror::Error;

use crate::limits::MAX_DATA_LEN;

/// Length of the ChannelData header (channel number and length).
pub const CHANNEL_DATA_HEADER_LEN: usize = 4;

/// A channel number, always in 0x4000..=0x4FFF: the numbers a client may bind (RFC 8656 §12).
/// 0x0000–0x3FFF cannot be channels (the first two bits would read as STUN) and 0x5000–0x7FFF
/// are reserved.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelNumber(u16);

/// A number outside 0x4000..=0x4FFF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("channel number {0:#06x} is outside 0x4000..=0x4FFF")]
pub struct InvalidChannelNumber(pub u16);

impl ChannelNumber {
    /// The lowest channel number.
    pub const MIN: Self = Self(0x4000);
    /// The highest channel number.
    pub const MAX: Self = Self(0x4FFF);

    /// Checks the range.
    pub const fn new(number: u16) -> Result<Self, InvalidChannelNumber> {
        if number >= Self::MIN.0 && number <= Self::MAX.0 {
            Ok(Self(number))
        } else {
            Err(InvalidChannelNumber(number))
        }
    }

    /// The number.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<u16> for ChannelNumber {
    type Error = InvalidChannelNumber;

    fn try_from(number: u16) -> Result<Self, Self::Error> {
        Self::new(number)
    }
}

impl fmt::Debug for ChannelNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelNumber({:#06x})", self.0)
    }
}

/// How ChannelData messages travel, which decides their padding (RFC 8656 §12.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP (and DTLS): one message per datagram, padding optional; this crate sends none.
    Datagram,
    /// TCP (and TLS): messages back to back, each padded to a multiple of 4 so the next
    /// starts aligned.
    Stream,
}

/// Why bytes are not a ChannelData message this crate accepts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChannelDataError {
    #[error("{len} bytes is shorter than the 4-byte ChannelData header")]
    TooShort { len: usize },
    #[error(transparent)]
    InvalidChannelNumber(#[from] InvalidChannelNumber),
    #[error("{len} bytes of data exceed the {max}-byte limit")]
    DataTooLong { len: usize, max: usize },
    /// The length field and the bytes disagree: a datagram must hold the data and at most its
    /// padding (RFC 8656 §12.5), a stream frame exactly the padded data.
    #[error("length field says {declared} bytes of data, the message has {actual} bytes after the header")]
    LengthMismatch { declared: usize, actual: usize },
}

/// A ChannelData message: data for the peer bound to `channel`, borrowed from the bytes it was
/// decoded from so relaying copies nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    pub channel: ChannelNumber,
    pub data: &'a [u8],
}

impl fmt::Debug for ChannelData<'_> {
    /// The data's length only: it is end-to-end encrypted media.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelData")
            .field("channel", &self.channel)
            .field("data_len", &self.data.len())
            .finish()
    }
}

impl<'a> ChannelData<'a> {
    /// Decodes one ChannelData message. Over a [`Transport::Datagram`] the datagram holds the
    /// data and optionally padding up to a multiple of 4 (RFC 8656 §12.5: "the padding is not
    /// required but MAY be included"); anything else is refused. Over a [`Transport::Stream`]
    /// `bytes` is one frame cut by the caller: exactly the padded data.
    pub fn decode(bytes: &'a [u8], transport: Transport) -> Result<Self, ChannelDataError> {
        let (&[number_high, number_low, len_high, len_low], rest) = bytes
            .split_first_chunk::<CHANNEL_DATA_HEADER_LEN>()
            .ok_or(ChannelDataError::TooShort { len: bytes.len() })?;
        let channel = ChannelNumber::new(u16::from_be_bytes([number_high, number_low]))?;
        let declared = usize::from(u16::from_be_bytes([len_high, len_low]));
        if declared > MAX_DATA_LEN {
            return Err(ChannelDataError::DataTooLong { len: declared, max: MAX_DATA_LEN });
        }
        let padded = declared.next_multiple_of(4);
        let length_ok = match transport {
            Transport::Datagram => (declared..=padded).contains(&rest.len()),
            Transport::Stream => rest.len() == padded,
        };
        let data = rest
            .get(..declared)
            .filter(|_| length_ok)
            .ok_or(ChannelDataError::LengthMismatch { declared, actual: rest.len() })?;
        Ok(Self { channel, data })
    }

    /// Encodes the message, padded for a stream, unpadded for a datagram.
    pub fn encode(&self, transport: Transport) -> Result<Vec<u8>, ChannelDataError> {
        let len = self.data.len();
        if len > MAX_DATA_LEN {
            return Err(ChannelDataError::DataTooLong { len, max: MAX_DATA_LEN });
        }
        let len_field =
            u16::try_from(len).map_err(|_| ChannelDataError::DataTooLong { len, max: MAX_DATA_LEN })?;
        let mut out = Vec::with_capacity(CHANNEL_DATA_HEADER_LEN + len.next_multiple_of(4));
        out.extend_from_slice(&self.channel.get().to_be_bytes());
        out.extend_from_slice(&len_field.to_be_bytes());
        out.extend_from_slice(self.data);
        if transport == Transport::Stream {
            out.resize(out.len().next_multiple_of(4), 0);
        }
        Ok(out)
    }

    /// Length of one stream frame whose first 4 bytes are `header`: what a stream reader must
    /// collect before calling [`ChannelData::decode`] with [`Transport::Stream`].
    pub fn stream_frame_len(header: [u8; CHANNEL_DATA_HEADER_LEN]) -> usize {
        let [_, _, len_high, len_low] = header;
        CHANNEL_DATA_HEADER_LEN + usize::from(u16::from_be_bytes([len_high, len_low])).next_multiple_of(4)
    }
}

/// What a packet arriving on a TURN server's listening port is, from its first byte (RFC 8656
/// §12): `0b00` STUN, `0b01` ChannelData. Nothing else is valid there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TurnPacket {
    Stun,
    ChannelData,
}

/// The RFC 8656 §12 rule for a TURN server's listening port: `None` for anything that is
/// neither STUN nor ChannelData (first two bits `0b10` or `0b11`), to be dropped.
pub const fn demultiplex(first_byte: u8) -> Option<TurnPacket> {
    match first_byte >> 6 {
        0b00 => Some(TurnPacket::Stun),
        0b01 => Some(TurnPacket::ChannelData),
        _ => None,
    }
}

/// A protocol sharing one UDP port with others, as RFC 7983 (updated by RFC 9443) tells them
/// apart by the first byte. For endpoints that multiplex STUN, DTLS, SRTP and TURN channels on
/// one socket; a TURN server's own port uses [`demultiplex`] instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketClass {
    /// 0–3: STUN.
    Stun,
    /// 16–19: ZRTP.
    Zrtp,
    /// 20–63: DTLS.
    Dtls,
    /// 64–79: TURN ChannelData.
    ChannelData,
    /// 80–127 and 192–255: QUIC (RFC 9443).
    Quic,
    /// 128–191: RTP or RTCP.
    RtpOrRtcp,
    /// 4–15: unassigned; drop.
    Unknown,
}

/// RFC 7983 §7 / RFC 9443 §3 first-byte demultiplexing.
pub const fn classify(first_byte: u8) -> PacketClass {
    match first_byte {
        0..=3 => PacketClass::Stun,
        16..=19 => PacketClass::Zrtp,
        20..=63 => PacketClass::Dtls,
        64..=79 => PacketClass::ChannelData,
        80..=127 | 192..=255 => PacketClass::Quic,
        128..=191 => PacketClass::RtpOrRtcp,
        4..=15 => PacketClass::Unknown,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn channel(number: u16) -> ChannelNumber {
        ChannelNumber::new(number).unwrap()
    }

    #[test]
    fn channel_number_bounds() {
        assert_eq!(ChannelNumber::new(0x4000).map(ChannelNumber::get), Ok(0x4000));
        assert_eq!(ChannelNumber::new(0x4FFF).map(ChannelNumber::get), Ok(0x4FFF));
        for bad in [0x0000, 0x3FFF, 0x5000, 0x7FFF, 0x8000, 0xFFFF] {
            assert_eq!(ChannelNumber::new(bad), Err(InvalidChannelNumber(bad)));
            assert_eq!(ChannelNumber::try_from(bad), Err(InvalidChannelNumber(bad)));
        }
    }

    #[test]
    fn datagram_round_trip_without_padding() {
        let message = ChannelData { channel: channel(0x4001), data: b"hello" };
        let bytes = message.encode(Transport::Datagram).unwrap();
        assert_eq!(bytes, [0x40, 0x01, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o']);
        assert_eq!(ChannelData::decode(&bytes, Transport::Datagram), Ok(message));
    }

    #[test]
    fn stream_round_trip_with_padding() {
        let message = ChannelData { channel: channel(0x4FFF), data: b"hello" };
        let bytes = message.encode(Transport::Stream).unwrap();
        assert_eq!(bytes, [0x4F, 0xFF, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o', 0, 0, 0]);
        assert_eq!(ChannelData::stream_frame_len([0x4F, 0xFF, 0x00, 0x05]), bytes.len());
        assert_eq!(ChannelData::decode(&bytes, Transport::Stream), Ok(message));
        // Unpadded is not a whole stream frame.
        assert_eq!(
            ChannelData::decode(&bytes[..9], Transport::Stream),
            Err(ChannelDataError::LengthMismatch { declared: 5, actual: 5 })
        );
    }

    #[test]
    fn datagram_accepts_optional_padding_only() {
        let padded = [0x40, 0x00, 0x00, 0x01, 0xAA, 0, 0, 0];
        for len in 5..=8 {
            let decoded = ChannelData::decode(&padded[..len], Transport::Datagram).unwrap();
            assert_eq!(decoded.data, [0xAA]);
        }
        let mut too_long = padded.to_vec();
        too_long.push(0);
        assert_eq!(
            ChannelData::decode(&too_long, Transport::Datagram),
            Err(ChannelDataError::LengthMismatch { declared: 1, actual: 5 })
        );
        assert_eq!(
            ChannelData::decode(&padded[..4], Transport::Datagram),
            Err(ChannelDataError::LengthMismatch { declared: 1, actual: 0 })
        );
    }

    #[test]
    fn empty_data_is_valid() {
        let message = ChannelData { channel: channel(0x4000), data: &[] };
        for transport in [Transport::Datagram, Transport::Stream] {
            let bytes = message.encode(transport).unwrap();
            assert_eq!(bytes, [0x40, 0x00, 0x00, 0x00]);
            assert_eq!(ChannelData::decode(&bytes, transport), Ok(message));
        }
    }

    #[test]
    fn refuses_short_reserved_and_oversized() {
        for len in 0..4 {
            assert_eq!(
                ChannelData::decode(&[0x40, 0, 0, 0][..len], Transport::Datagram),
                Err(ChannelDataError::TooShort { len })
            );
        }
        assert_eq!(
            ChannelData::decode(&[0x50, 0x00, 0, 0], Transport::Datagram),
            Err(ChannelDataError::InvalidChannelNumber(InvalidChannelNumber(0x5000)))
        );
        assert_eq!(
            ChannelData::decode(&[0x3F, 0xFF, 0, 0], Transport::Datagram),
            Err(ChannelDataError::InvalidChannelNumber(InvalidChannelNumber(0x3FFF)))
        );

        let at_limit = vec![7u8; MAX_DATA_LEN];
        let message = ChannelData { channel: channel(0x4000), data: &at_limit };
        let bytes = message.encode(Transport::Datagram).unwrap();
        assert_eq!(ChannelData::decode(&bytes, Transport::Datagram), Ok(message));

        let over = vec![7u8; MAX_DATA_LEN + 1];
        let message = ChannelData { channel: channel(0x4000), data: &over };
        assert_eq!(
            message.encode(Transport::Datagram),
            Err(ChannelDataError::DataTooLong { len: MAX_DATA_LEN + 1, max: MAX_DATA_LEN })
        );
        // A length field over the limit is refused before the bytes are looked at.
        let mut header = vec![0x40, 0x00];
        header.extend_from_slice(&u16::try_from(MAX_DATA_LEN + 1).unwrap().to_be_bytes());
        assert_eq!(
            ChannelData::decode(&header, Transport::Datagram),
            Err(ChannelDataError::DataTooLong { len: MAX_DATA_LEN + 1, max: MAX_DATA_LEN })
        );
        // And a length field larger than the datagram is refused.
        assert_eq!(
            ChannelData::decode(&[0x40, 0x00, 0x00, 0x08, 1, 2, 3, 4], Transport::Datagram),
            Err(ChannelDataError::LengthMismatch { declared: 8, actual: 4 })
        );
    }

    #[test]
    fn demultiplex_by_first_two_bits() {
        assert_eq!(demultiplex(0x00), Some(TurnPacket::Stun));
        assert_eq!(demultiplex(0x3F), Some(TurnPacket::Stun));
        assert_eq!(demultiplex(0x40), Some(TurnPacket::ChannelData));
        assert_eq!(demultiplex(0x7F), Some(TurnPacket::ChannelData));
        assert_eq!(demultiplex(0x80), None);
        assert_eq!(demultiplex(0xFF), None);
    }

    #[test]
    fn classify_follows_rfc_7983_and_9443() {
        let expected = |byte: u8| match byte {
            0..=3 => PacketClass::Stun,
            4..=15 => PacketClass::Unknown,
            16..=19 => PacketClass::Zrtp,
            20..=63 => PacketClass::Dtls,
            64..=79 => PacketClass::ChannelData,
            128..=191 => PacketClass::RtpOrRtcp,
            _ => PacketClass::Quic,
        };
        for byte in 0..=u8::MAX {
            assert_eq!(classify(byte), expected(byte), "first byte {byte}");
        }
        // Boundaries named in the RFCs.
        assert_eq!(classify(20), PacketClass::Dtls);
        assert_eq!(classify(63), PacketClass::Dtls);
        assert_eq!(classify(128), PacketClass::RtpOrRtcp);
        assert_eq!(classify(191), PacketClass::RtpOrRtcp);
        // A real STUN header, an RTCP sender report and a DTLS handshake record.
        assert_eq!(classify(0x00), PacketClass::Stun);
        assert_eq!(classify(0x80), PacketClass::RtpOrRtcp);
        assert_eq!(classify(0x16), PacketClass::Dtls);
    }
}

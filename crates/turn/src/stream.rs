//! TURN over TCP and TLS (RFC 8656 §3.1 and §12.5): STUN messages and ChannelData travel back
//! to back on one byte stream, and the reader cuts frames by their length fields.
//!
//! A STUN frame is its 20-byte header plus the length the header declares; a ChannelData frame
//! is its 4-byte header plus the data padded to a multiple of 4. [`StreamDecoder`] does the
//! cutting without I/O: the caller pushes whatever the socket gave it and takes whole frames
//! out. It never holds more than one frame and one read, and refuses a frame longer than the
//! datagram limits ([`MAX_MESSAGE_LEN`], [`MAX_DATA_LEN`]): a stream is no way around them.

use thiserror::Error;

use crate::channel::{self, CHANNEL_DATA_HEADER_LEN, ChannelData, TurnPacket};
use crate::limits::{MAX_DATA_LEN, MAX_MESSAGE_LEN};
use crate::message::HEADER_LEN;

/// Bytes needed to know a frame's length: a ChannelData header, or the start of a STUN header
/// (type and length).
pub const FRAME_PREFIX_LEN: usize = 4;

/// Largest frame a stream may carry.
pub const MAX_FRAME_LEN: usize =
    if MAX_MESSAGE_LEN > CHANNEL_DATA_HEADER_LEN + MAX_DATA_LEN.next_multiple_of(4) {
        MAX_MESSAGE_LEN
    } else {
        CHANNEL_DATA_HEADER_LEN + MAX_DATA_LEN.next_multiple_of(4)
    };

/// Why a stream is not TURN. Every one ends the connection: after a bad length nothing later on
/// the stream can be framed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StreamError {
    #[error("a frame starts with byte {0:#04x}, which is neither STUN nor ChannelData")]
    NotTurn(u8),
    #[error("a STUN frame declares {0} bytes of attributes, not a multiple of 4")]
    Misaligned(usize),
    #[error("a frame of {len} bytes exceeds the {max}-byte limit")]
    TooLong { len: usize, max: usize },
}

/// The whole length of the frame that starts with `prefix`.
pub fn frame_len(prefix: [u8; FRAME_PREFIX_LEN]) -> Result<usize, StreamError> {
    let [first, _, len_high, len_low] = prefix;
    let declared = usize::from(u16::from_be_bytes([len_high, len_low]));
    match channel::demultiplex(first) {
        Some(TurnPacket::Stun) => {
            if !declared.is_multiple_of(4) {
                return Err(StreamError::Misaligned(declared));
            }
            let len = HEADER_LEN + declared;
            if len > MAX_MESSAGE_LEN {
                return Err(StreamError::TooLong { len, max: MAX_MESSAGE_LEN });
            }
            Ok(len)
        }
        Some(TurnPacket::ChannelData) => {
            let len = ChannelData::stream_frame_len(prefix);
            if declared > MAX_DATA_LEN {
                return Err(StreamError::TooLong { len, max: MAX_FRAME_LEN });
            }
            Ok(len)
        }
        None => Err(StreamError::NotTurn(first)),
    }
}

/// Cuts a TURN byte stream into frames.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    buffer: Vec<u8>,
    /// Where the next frame starts in `buffer`; consumed bytes are dropped lazily.
    start: usize,
    /// Set once the stream failed: it stays failed.
    failed: Option<StreamError>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` while it is incomplete. A STUN frame is for
    /// [`crate::Message::decode`], a ChannelData frame for [`ChannelData::decode`] with
    /// [`crate::Transport::Stream`].
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, StreamError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let pending = self.buffer.get(self.start..).unwrap_or_default();
        let Some(prefix) = pending.first_chunk::<FRAME_PREFIX_LEN>() else { return Ok(None) };
        let len = match frame_len(*prefix) {
            Ok(len) => len,
            Err(error) => {
                self.failed = Some(error.clone());
                return Err(error);
            }
        };
        if pending.len() < len {
            return Ok(None);
        }
        let start = self.start;
        self.start += len;
        Ok(self.buffer.get(start..start + len))
    }

    /// Bytes held that are not yet a whole frame.
    pub fn buffered(&self) -> usize {
        self.buffer.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::channel::{ChannelNumber, Transport};
    use crate::integrity::encode_protected;
    use crate::message::{Class, Message, Method, TransactionId};

    fn binding() -> Vec<u8> {
        let request = Message::new(Class::Request, Method::Binding, TransactionId([7; 12]));
        encode_protected(&request, None, true).unwrap()
    }

    fn channel_data(len: usize) -> Vec<u8> {
        let data = vec![0x80; len];
        let message = ChannelData { channel: ChannelNumber::new(0x4001).unwrap(), data: &data };
        message.encode(Transport::Stream).unwrap()
    }

    #[test]
    fn cuts_frames_however_the_bytes_arrive() {
        let mut stream = binding();
        stream.extend(channel_data(5));
        stream.extend(binding());
        stream.extend(channel_data(1500));
        // One byte at a time, then everything at once: the same frames.
        for chunk in [1, 3, 7, stream.len()] {
            let mut decoder = StreamDecoder::new();
            let mut frames = Vec::new();
            for piece in stream.chunks(chunk) {
                decoder.push(piece);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    frames.push(frame.to_vec());
                }
            }
            assert_eq!(frames.len(), 4, "chunk {chunk}");
            assert!(Message::decode(&frames[0]).is_ok());
            let data = ChannelData::decode(&frames[1], Transport::Stream).unwrap();
            assert_eq!(data.data.len(), 5);
            assert_eq!(frames[1].len(), 12, "padded to a multiple of 4");
            assert!(Message::decode(&frames[2]).is_ok());
            assert_eq!(ChannelData::decode(&frames[3], Transport::Stream).unwrap().data.len(), 1500);
            assert_eq!(decoder.buffered(), 0);
        }
    }

    #[test]
    fn refuses_what_no_turn_peer_sends_and_stays_failed() {
        // RTP straight onto the stream (first byte 0b10...).
        let mut decoder = StreamDecoder::new();
        decoder.push(&[0x80, 0x6F, 0x00, 0x01, 0, 0, 0, 0]);
        assert_eq!(decoder.next_frame(), Err(StreamError::NotTurn(0x80)));
        decoder.push(&binding());
        assert!(decoder.next_frame().is_err());

        // A TLS ClientHello on the plain port reads as STUN with a misaligned length; text reads
        // as ChannelData far longer than any datagram.
        assert_eq!(frame_len([0x16, 0x03, 0x01, 0x02]), Err(StreamError::Misaligned(0x0102)));
        assert!(matches!(frame_len(*b"GET "), Err(StreamError::TooLong { .. })));
        // A STUN length that is not a multiple of 4, or past the message limit.
        assert_eq!(frame_len([0x00, 0x01, 0x00, 0x05]), Err(StreamError::Misaligned(5)));
        assert!(matches!(frame_len([0x00, 0x01, 0xFF, 0xFC]), Err(StreamError::TooLong { .. })));
        // ChannelData with more data than one relayed datagram.
        assert!(matches!(frame_len([0x40, 0x01, 0x05, 0xDD]), Err(StreamError::TooLong { .. })));
        assert_eq!(frame_len([0x40, 0x01, 0x05, 0xDC]), Ok(4 + 1500));
    }
}

//! H.264 over RTP (RFC 6184), packetization mode 1: a NAL unit that fits is sent as it is
//! (single NAL unit packet); a longer one is cut into FU-A fragments. On receipt, STAP-A
//! aggregates are also understood. The depacketizer bounds everything it keeps: NAL unit
//! sizes, NAL units per picture, and the picture's total size.

use thiserror::Error;

/// Largest RTP payload the sender makes: with the 12-byte RTP header and the 16-byte SRTP tag
/// a datagram stays near 1,200 bytes, under any path's MTU and the relay's size cap.
pub const MAX_PAYLOAD_BYTES: usize = 1_160;
/// Largest picture (access unit) the receiver reassembles. A 1080p keyframe at the highest
/// bitrate Rampart uses is far smaller.
pub const MAX_ACCESS_UNIT_BYTES: usize = 1 << 20;
/// Most NAL units in one picture.
pub const MAX_NAL_UNITS_PER_ACCESS_UNIT: usize = 256;

const STAP_A: u8 = 24;
const FU_A: u8 = 28;
const FU_START: u8 = 0x80;
const FU_END: u8 = 0x40;

/// Cuts a picture's NAL units into RTP payloads of at most `max_payload` bytes.
pub fn packetize(nal_units: &[Vec<u8>], max_payload: usize) -> Vec<Vec<u8>> {
    let max_payload = max_payload.max(3);
    let mut payloads = Vec::new();
    for nal in nal_units {
        let Some((&header, body)) = nal.split_first() else { continue };
        if nal.len() <= max_payload {
            payloads.push(nal.clone());
            continue;
        }
        let indicator = (header & 0xe0) | FU_A;
        let kind = header & 0x1f;
        let chunks: Vec<&[u8]> = body.chunks(max_payload - 2).collect();
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut fu_header = kind;
            if i == 0 {
                fu_header |= FU_START;
            }
            if i == last {
                fu_header |= FU_END;
            }
            let mut payload = Vec::with_capacity(chunk.len() + 2);
            payload.push(indicator);
            payload.push(fu_header);
            payload.extend_from_slice(chunk);
            payloads.push(payload);
        }
    }
    payloads
}

/// Why a payload or a picture was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PayloadError {
    #[error("empty payload")]
    Empty,
    #[error("NAL unit type {0} is not used in packetization mode 1")]
    UnsupportedType(u8),
    #[error("the forbidden bit is set")]
    ForbiddenBit,
    #[error("a STAP-A entry runs past the payload")]
    StapPastEnd,
    #[error("a fragment arrived without its start, or a new start before the end")]
    FragmentOutOfOrder,
    #[error("the picture is over {MAX_ACCESS_UNIT_BYTES} bytes or {MAX_NAL_UNITS_PER_ACCESS_UNIT} NAL units")]
    TooLarge,
}

/// Reassembles one picture's NAL units from its payloads, in sequence order.
#[derive(Debug, Default)]
pub struct Depacketizer {
    nal_units: Vec<Vec<u8>>,
    fragment: Option<Vec<u8>>,
    bytes: usize,
}

impl Depacketizer {
    pub fn new() -> Self {
        Self::default()
    }

    fn push_nal(&mut self, nal: Vec<u8>) -> Result<(), PayloadError> {
        self.bytes += nal.len() + 4;
        if self.bytes > MAX_ACCESS_UNIT_BYTES || self.nal_units.len() >= MAX_NAL_UNITS_PER_ACCESS_UNIT {
            return Err(PayloadError::TooLarge);
        }
        self.nal_units.push(nal);
        Ok(())
    }

    /// Takes the next payload of the picture.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), PayloadError> {
        let (&header, rest) = payload.split_first().ok_or(PayloadError::Empty)?;
        if header & 0x80 != 0 {
            return Err(PayloadError::ForbiddenBit);
        }
        match header & 0x1f {
            1..=23 => {
                if self.fragment.is_some() {
                    return Err(PayloadError::FragmentOutOfOrder);
                }
                self.push_nal(payload.to_vec())
            }
            STAP_A => {
                if self.fragment.is_some() {
                    return Err(PayloadError::FragmentOutOfOrder);
                }
                let mut rest = rest;
                while !rest.is_empty() {
                    let (size, after) = rest.split_first_chunk::<2>().ok_or(PayloadError::StapPastEnd)?;
                    let size = usize::from(u16::from_be_bytes(*size));
                    let nal = after.get(..size).filter(|n| !n.is_empty()).ok_or(PayloadError::StapPastEnd)?;
                    // An aggregate holds single NAL units only.
                    let inner = nal.first().copied().unwrap_or_default();
                    if inner & 0x80 != 0 {
                        return Err(PayloadError::ForbiddenBit);
                    }
                    if !(1..=23).contains(&(inner & 0x1f)) {
                        return Err(PayloadError::UnsupportedType(inner & 0x1f));
                    }
                    self.push_nal(nal.to_vec())?;
                    rest = after.get(size..).unwrap_or_default();
                }
                Ok(())
            }
            FU_A => {
                let (&fu_header, body) = rest.split_first().ok_or(PayloadError::Empty)?;
                let start = fu_header & FU_START != 0;
                let end = fu_header & FU_END != 0;
                match (&mut self.fragment, start) {
                    (None, true) => {
                        let mut nal = Vec::with_capacity(body.len() * 4 + 1);
                        nal.push((header & 0xe0) | (fu_header & 0x1f));
                        nal.extend_from_slice(body);
                        self.fragment = Some(nal);
                    }
                    (Some(nal), false) => nal.extend_from_slice(body),
                    _ => return Err(PayloadError::FragmentOutOfOrder),
                }
                if self.fragment.as_ref().is_some_and(|n| n.len() + self.bytes > MAX_ACCESS_UNIT_BYTES) {
                    return Err(PayloadError::TooLarge);
                }
                if end {
                    let nal = self.fragment.take().unwrap_or_default();
                    self.push_nal(nal)?;
                }
                Ok(())
            }
            other => Err(PayloadError::UnsupportedType(other)),
        }
    }

    /// The picture's NAL units, once its last payload is in; an unfinished fragment is an
    /// error.
    pub fn finish(self) -> Result<Vec<Vec<u8>>, PayloadError> {
        if self.fragment.is_some() {
            return Err(PayloadError::FragmentOutOfOrder);
        }
        Ok(self.nal_units)
    }
}

/// Depacketizes one picture's payloads (sequence order), for fuzzing and tests.
pub fn depacketize<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<Vec<u8>>, PayloadError> {
    let mut depacketizer = Depacketizer::new();
    for payload in payloads {
        depacketizer.push(payload)?;
    }
    depacketizer.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn nal(kind: u8, len: usize) -> Vec<u8> {
        let mut n = vec![0x60 | kind];
        n.extend((0..len - 1).map(|i| i as u8));
        n
    }

    #[test]
    fn small_and_large_nal_units_round_trip() {
        let units = vec![nal(7, 12), nal(8, 4), nal(5, 5_000), nal(1, 1_160), nal(1, 1_161)];
        let payloads = packetize(&units, MAX_PAYLOAD_BYTES);
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD_BYTES));
        // 2 small, 5 fragments for 5,000 bytes, 1 exact fit, 2 fragments for one byte over.
        assert_eq!(payloads.len(), 2 + 5 + 1 + 2);
        assert_eq!(depacketize(payloads.iter().map(Vec::as_slice)).unwrap(), units);
    }

    #[test]
    fn stap_a_is_understood() {
        let mut stap = vec![0x78];
        for unit in [nal(7, 10), nal(8, 4)] {
            stap.extend_from_slice(&(unit.len() as u16).to_be_bytes());
            stap.extend_from_slice(&unit);
        }
        assert_eq!(depacketize([stap.as_slice()]).unwrap(), vec![nal(7, 10), nal(8, 4)]);
        stap.push(0);
        assert_eq!(depacketize([stap.as_slice()]), Err(PayloadError::StapPastEnd));
        // An aggregate inside an aggregate, or inside an open fragment, is refused.
        let nested = [0x78, 0, 2, 0x78, 0];
        assert_eq!(depacketize([&nested[..]]), Err(PayloadError::UnsupportedType(24)));
        let open = packetize(&[nal(5, 3_000)], MAX_PAYLOAD_BYTES);
        let stap_in_fragment = [open[0].as_slice(), &[0x78, 0, 1, 0x61]];
        assert_eq!(depacketize(stap_in_fragment), Err(PayloadError::FragmentOutOfOrder));
    }

    #[test]
    fn broken_fragments_and_foreign_types_are_refused() {
        let payloads = packetize(&[nal(5, 3_000)], MAX_PAYLOAD_BYTES);
        // A middle fragment lost: the end arrives after the start's continuation is missing —
        // still one NAL unit, but a start after a start is out of order.
        let twice = [payloads[0].as_slice(), payloads[0].as_slice()];
        assert_eq!(depacketize(twice), Err(PayloadError::FragmentOutOfOrder));
        assert_eq!(depacketize([payloads[1].as_slice()]), Err(PayloadError::FragmentOutOfOrder));
        assert_eq!(depacketize([payloads[0].as_slice()]), Err(PayloadError::FragmentOutOfOrder));
        assert_eq!(depacketize([&[0x7d, 0][..]]), Err(PayloadError::UnsupportedType(29)));
        assert_eq!(depacketize([&[0x85][..]]), Err(PayloadError::ForbiddenBit));
        assert_eq!(depacketize([&[][..]]), Err(PayloadError::Empty));
    }

    #[test]
    fn a_picture_cannot_grow_without_bound() {
        let start = [0x7c, 0x85, 1, 2, 3];
        let middle = vec![0x7c, 0x05].into_iter().chain(std::iter::repeat_n(9, 1_000)).collect::<Vec<u8>>();
        let mut depacketizer = Depacketizer::new();
        depacketizer.push(&start).unwrap();
        let mut refused = false;
        for _ in 0..2_000 {
            if depacketizer.push(&middle) == Err(PayloadError::TooLarge) {
                refused = true;
                break;
            }
        }
        assert!(refused);
        let mut many = Depacketizer::new();
        let results: Vec<_> = (0..300).map(|_| many.push(&[0x61, 0])).collect();
        assert!(results.contains(&Err(PayloadError::TooLarge)));
    }
}

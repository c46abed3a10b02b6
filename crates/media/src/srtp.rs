//! SRTP and SRTCP with AEAD_AES_256_GCM (RFC 7714), one context per direction and SSRC.
//!
//! Packets are byte slices in and `Vec<u8>` out; the caller does the I/O. Receiving contexts
//! estimate the rollover counter (RFC 3711 §3.3.1) and refuse replayed or too-old packets
//! (RFC 3711 §3.3.2), updating their window only after the tag has been verified. Sending
//! contexts refuse to protect a packet index twice, since a repeated (key, IV) pair would break
//! GCM's confidentiality and authenticity (RFC 7714 §8.1, "the IV ... MUST NOT repeat").

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use thiserror::Error;

use crate::keys::{KdfLabel, MASTER_SALT_BYTES, SessionKeys, SrtpKeys, derive_session_keys};
use crate::replay::{ReplayVerdict, ReplayWindow};
use crate::rtp::{RTP_VERSION, RtpHeader, RtpHeaderError};

/// The GCM authentication tag appended to every SRTP and SRTCP packet (RFC 7714 §7: 16 octets).
pub const AUTH_TAG_BYTES: usize = 16;
/// The E flag and 31-bit SRTCP index trailing every SRTCP packet (RFC 7714 §9.1).
pub const SRTCP_INDEX_BYTES: usize = 4;
/// The part of the RTCP header up to and including the sender's SSRC (RFC 3550 §6.4.1),
/// authenticated but not encrypted in SRTCP (RFC 7714 §9.2).
pub const RTCP_HEADER_BYTES: usize = 8;
/// Largest SRTP packet index: ROC (32 bits) || SEQ (16 bits), RFC 3711 §3.3.1. RFC 7714 §8.1
/// builds the IV from this 48-bit index.
pub const MAX_SRTP_INDEX: u64 = (1 << 48) - 1;
/// Largest SRTCP index (31 bits, RFC 3711 §3.4).
pub const MAX_SRTCP_INDEX: u32 = 0x7fff_ffff;
/// The E flag: set when the SRTCP payload is encrypted (RFC 7714 §9.1).
const SRTCP_E_FLAG: u32 = 0x8000_0000;

/// Why a packet could not be protected or unprotected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SrtpError {
    #[error("malformed RTP header: {0}")]
    RtpHeader(#[from] RtpHeaderError),
    #[error("packet too short to hold the 16-byte authentication tag")]
    TooShortForTag,
    #[error("RTCP packet shorter than its 8-byte header")]
    TooShortForRtcpHeader,
    #[error("RTCP version {0}, expected 2")]
    UnsupportedRtcpVersion(u8),
    #[error("SSRC {found:#010x}, but this context is for {expected:#010x}")]
    SsrcMismatch { expected: u32, found: u32 },
    #[error("authentication failed")]
    AuthenticationFailed,
    #[error("packet index {index} was already received")]
    Replayed { index: u64 },
    #[error("packet index {index} is behind the replay window")]
    TooOld { index: u64 },
    #[error("packet index {index} is not after the last one protected ({last})")]
    IndexNotIncreasing { index: u64, last: u64 },
    #[error("the packet indices of this key are used up; rekey")]
    KeyExhausted,
    #[error("SRTCP packet with the E flag clear: unencrypted SRTCP is not accepted")]
    UnencryptedSrtcp,
    #[error("payload too long for AES-GCM")]
    PayloadTooLong,
}

/// AES-256-GCM under a session key, with the session salt for the IV.
struct SessionCipher {
    aead: Aes256Gcm,
    salt: [u8; MASTER_SALT_BYTES],
}

impl SessionCipher {
    fn new(session: &SessionKeys) -> Self {
        Self { aead: Aes256Gcm::new(GenericArray::from_slice(&session.key)), salt: session.salt }
    }

    /// RFC 7714 §8.1 (SRTP) and §9.1 (SRTCP): IV = (0x0000 || SSRC || index) XOR salt, where
    /// the 48-bit index is ROC || SEQ for SRTP and 0x0000 || 0 || 31-bit SRTCP index for SRTCP.
    fn iv(&self, ssrc: u32, index: u64) -> [u8; 12] {
        let mut iv = [0u8; 12];
        let ssrc_bytes = ssrc.to_be_bytes();
        let index_bytes = index.to_be_bytes();
        let fields = [0u8, 0].iter().chain(ssrc_bytes.iter()).chain(index_bytes.iter().skip(2));
        for ((slot, field), salt) in iv.iter_mut().zip(fields).zip(self.salt.iter()) {
            *slot = field ^ salt;
        }
        iv
    }

    /// Encrypts `buffer` in place and returns the tag.
    fn seal(&self, ssrc: u32, index: u64, aad: &[u8], buffer: &mut [u8]) -> Result<[u8; 16], SrtpError> {
        let iv = self.iv(ssrc, index);
        let tag = self
            .aead
            .encrypt_in_place_detached(Nonce::from_slice(&iv), aad, buffer)
            .map_err(|_| SrtpError::PayloadTooLong)?;
        Ok(tag.into())
    }

    /// Verifies `tag` and decrypts `buffer` in place; on failure `buffer` must be discarded.
    fn open(
        &self,
        ssrc: u32,
        index: u64,
        aad: &[u8],
        buffer: &mut [u8],
        tag: [u8; 16],
    ) -> Result<(), SrtpError> {
        let iv = self.iv(ssrc, index);
        self.aead
            .decrypt_in_place_detached(Nonce::from_slice(&iv), aad, buffer, &Tag::from(tag))
            .map_err(|_| SrtpError::AuthenticationFailed)
    }
}

/// Splits `bytes` into its first `len - tail` bytes and the last `tail`, if long enough.
fn split_tail(bytes: &[u8], tail: usize) -> Option<(&[u8], &[u8])> {
    let at = bytes.len().checked_sub(tail)?;
    Some(bytes.split_at(at))
}

fn tag_array(bytes: &[u8]) -> Result<[u8; AUTH_TAG_BYTES], SrtpError> {
    bytes.try_into().map_err(|_| SrtpError::TooShortForTag)
}

/// RFC 3711 §3.3.1 (and Appendix A): the packet index of sequence number `seq`, guessed from
/// the highest index seen so far (`ROC` = its top 32 bits, `s_l` = its low 16). `None` when the
/// guess is a rollover before the first one, i.e. the packet is older than the stream.
pub(crate) fn estimate_index(highest: Option<u64>, seq: u16) -> Option<u64> {
    let Some(highest) = highest else {
        // The first packet of a stream has ROC 0 (RFC 3711 §3.3.1).
        return Some(u64::from(seq));
    };
    let roc = highest >> 16;
    let s_l = (highest & 0xffff) as u16;
    let guessed_roc = if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 { roc.checked_sub(1)? } else { roc }
    } else if s_l - 0x8000 > seq {
        roc + 1
    } else {
        roc
    };
    Some((guessed_roc << 16) | u64::from(seq))
}

/// SRTP for one direction and one SSRC: protect on the sending side, unprotect on the
/// receiving side (a context should be used for one of the two).
pub struct SrtpContext {
    ssrc: u32,
    cipher: SessionCipher,
    last_protected: Option<u64>,
    received: ReplayWindow,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpContext")
            .field("ssrc", &format_args!("{:#010x}", self.ssrc))
            .field("last_protected", &self.last_protected)
            .field("highest_received", &self.received.highest())
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    /// A context for `ssrc` with session keys derived from `keys` (RFC 3711 §4.3, labels 0x00
    /// and 0x02, key derivation rate 0).
    pub fn new(keys: &SrtpKeys, ssrc: u32) -> Self {
        let session = derive_session_keys(keys, KdfLabel::SrtpEncryption, KdfLabel::SrtpSalt);
        Self::from_session_keys(&session, ssrc)
    }

    pub(crate) fn from_session_keys(session: &SessionKeys, ssrc: u32) -> Self {
        Self {
            ssrc,
            cipher: SessionCipher::new(session),
            last_protected: None,
            received: ReplayWindow::default(),
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Protects an RTP packet (RFC 7714 §8): the header stays clear and is the AAD (§8.2), the
    /// payload is encrypted, the 16-byte tag is appended. The sequence numbers given must
    /// increase (modulo rollover): an index that is not after the last one protected is refused.
    /// The sender's ROC follows the same RFC 3711 §3.3.1 estimate as the receiver's, so a jump
    /// of more than 2^15 sequence numbers reads as going backwards and is refused too.
    pub fn protect(&mut self, rtp_packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let header = RtpHeader::parse(rtp_packet)?;
        self.check_ssrc(header.ssrc)?;
        let index = estimate_index(self.last_protected, header.sequence_number).ok_or(
            SrtpError::IndexNotIncreasing {
                index: u64::from(header.sequence_number),
                last: self.last_protected.unwrap_or_default(),
            },
        )?;
        if index > MAX_SRTP_INDEX {
            return Err(SrtpError::KeyExhausted);
        }
        if let Some(last) = self.last_protected
            && index <= last
        {
            return Err(SrtpError::IndexNotIncreasing { index, last });
        }
        let mut packet = Vec::with_capacity(rtp_packet.len() + AUTH_TAG_BYTES);
        packet.extend_from_slice(rtp_packet);
        let (aad, payload) = packet.split_at_mut(header.header_len.min(rtp_packet.len()));
        let tag = self.cipher.seal(self.ssrc, index, aad, payload)?;
        packet.extend_from_slice(&tag);
        self.last_protected = Some(index);
        Ok(packet)
    }

    /// Verifies and decrypts an SRTP packet (RFC 7714 §8), refusing replays and packets behind
    /// the window (RFC 3711 §3.3.2). The window and rollover counter move only once the tag has
    /// been verified.
    pub fn unprotect(&mut self, srtp_packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let header = RtpHeader::parse(srtp_packet)?;
        let (body, tag) = split_tail(srtp_packet, AUTH_TAG_BYTES).ok_or(SrtpError::TooShortForTag)?;
        if body.len() < header.header_len {
            return Err(SrtpError::TooShortForTag);
        }
        self.check_ssrc(header.ssrc)?;
        let seq = header.sequence_number;
        let index = estimate_index(self.received.highest(), seq)
            .ok_or(SrtpError::TooOld { index: u64::from(seq) })?;
        if index > MAX_SRTP_INDEX {
            return Err(SrtpError::KeyExhausted);
        }
        match self.received.check(index) {
            ReplayVerdict::Fresh => {}
            ReplayVerdict::Replayed => return Err(SrtpError::Replayed { index }),
            ReplayVerdict::TooOld => return Err(SrtpError::TooOld { index }),
        }
        let mut packet = body.to_vec();
        let (aad, payload) = packet.split_at_mut(header.header_len);
        self.cipher.open(self.ssrc, index, aad, payload, tag_array(tag)?)?;
        self.received.accept(index);
        Ok(packet)
    }

    fn check_ssrc(&self, found: u32) -> Result<(), SrtpError> {
        if found == self.ssrc { Ok(()) } else { Err(SrtpError::SsrcMismatch { expected: self.ssrc, found }) }
    }
}

/// The RTCP header fields SRTCP needs: version and the sender's SSRC (RFC 3550 §6.4.1).
fn rtcp_sender_ssrc(packet: &[u8]) -> Result<u32, SrtpError> {
    let header = packet.get(..RTCP_HEADER_BYTES).ok_or(SrtpError::TooShortForRtcpHeader)?;
    let version = header.first().map_or(0, |first| first >> 6);
    if version != RTP_VERSION {
        return Err(SrtpError::UnsupportedRtcpVersion(version));
    }
    let ssrc = header.get(4..8).ok_or(SrtpError::TooShortForRtcpHeader)?;
    Ok(u32::from_be_bytes(ssrc.try_into().map_err(|_| SrtpError::TooShortForRtcpHeader)?))
}

/// SRTCP for one direction and one sender SSRC (RFC 7714 §9), with its own index counter and
/// replay window.
pub struct SrtcpContext {
    ssrc: u32,
    cipher: SessionCipher,
    next_index: u32,
    received: ReplayWindow,
}

impl std::fmt::Debug for SrtcpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtcpContext")
            .field("ssrc", &format_args!("{:#010x}", self.ssrc))
            .field("next_index", &self.next_index)
            .field("highest_received", &self.received.highest())
            .finish_non_exhaustive()
    }
}

impl SrtcpContext {
    /// A context for `ssrc` with session keys derived from `keys` (RFC 3711 §4.3, labels 0x03
    /// and 0x05, key derivation rate 0).
    pub fn new(keys: &SrtpKeys, ssrc: u32) -> Self {
        let session = derive_session_keys(keys, KdfLabel::SrtcpEncryption, KdfLabel::SrtcpSalt);
        Self::from_session_keys(&session, ssrc)
    }

    pub(crate) fn from_session_keys(session: &SessionKeys, ssrc: u32) -> Self {
        Self { ssrc, cipher: SessionCipher::new(session), next_index: 0, received: ReplayWindow::default() }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Protects a (compound) RTCP packet (RFC 7714 §9): the first 8 bytes stay clear, the rest
    /// is encrypted, then the tag and E || SRTCP index follow. AAD = the first 8 bytes ||
    /// E || index (§9.2). The index counts from 0 (RFC 3711 §3.3.2).
    pub fn protect(&mut self, rtcp_packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let ssrc = rtcp_sender_ssrc(rtcp_packet)?;
        self.check_ssrc(ssrc)?;
        let index = self.next_index;
        if index > MAX_SRTCP_INDEX {
            return Err(SrtpError::KeyExhausted);
        }
        let trailer = (SRTCP_E_FLAG | index).to_be_bytes();
        let mut packet = Vec::with_capacity(rtcp_packet.len() + AUTH_TAG_BYTES + SRTCP_INDEX_BYTES);
        packet.extend_from_slice(rtcp_packet);
        let (header, payload) = packet.split_at_mut(RTCP_HEADER_BYTES);
        let aad = [&header[..], &trailer[..]].concat();
        let tag = self.cipher.seal(self.ssrc, u64::from(index), &aad, payload)?;
        packet.extend_from_slice(&tag);
        packet.extend_from_slice(&trailer);
        self.next_index = index + 1;
        Ok(packet)
    }

    /// Verifies and decrypts an SRTCP packet (RFC 7714 §9), refusing replays and indices
    /// behind the window; the window moves only after the tag has been verified. SRTCP with
    /// the E flag clear (authentication only, §9.3) is refused: Rampart always encrypts.
    pub fn unprotect(&mut self, srtcp_packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let ssrc = rtcp_sender_ssrc(srtcp_packet)?;
        let (rest, trailer) = split_tail(srtcp_packet, SRTCP_INDEX_BYTES).ok_or(SrtpError::TooShortForTag)?;
        let (body, tag) = split_tail(rest, AUTH_TAG_BYTES).ok_or(SrtpError::TooShortForTag)?;
        if body.len() < RTCP_HEADER_BYTES {
            return Err(SrtpError::TooShortForTag);
        }
        self.check_ssrc(ssrc)?;
        let trailer_bytes: [u8; SRTCP_INDEX_BYTES] =
            trailer.try_into().map_err(|_| SrtpError::TooShortForTag)?;
        let e_and_index = u32::from_be_bytes(trailer_bytes);
        if e_and_index & SRTCP_E_FLAG == 0 {
            return Err(SrtpError::UnencryptedSrtcp);
        }
        let index = u64::from(e_and_index & MAX_SRTCP_INDEX);
        match self.received.check(index) {
            ReplayVerdict::Fresh => {}
            ReplayVerdict::Replayed => return Err(SrtpError::Replayed { index }),
            ReplayVerdict::TooOld => return Err(SrtpError::TooOld { index }),
        }
        let mut packet = body.to_vec();
        let (header, payload) = packet.split_at_mut(RTCP_HEADER_BYTES);
        let aad = [&header[..], trailer].concat();
        self.cipher.open(self.ssrc, index, &aad, payload, tag_array(tag)?)?;
        self.received.accept(index);
        Ok(packet)
    }

    fn check_ssrc(&self, found: u32) -> Result<(), SrtpError> {
        if found == self.ssrc { Ok(()) } else { Err(SrtpError::SsrcMismatch { expected: self.ssrc, found }) }
    }

    #[cfg(test)]
    fn set_next_index(&mut self, index: u32) {
        self.next_index = index;
    }
}

#[cfg(test)]
mod tests;

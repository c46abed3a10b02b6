//! Master keys, the RFC 3711 §4.3 key derivation function and the split of a call's MLS
//! exporter secret into one master key per direction.

use aes::cipher::{KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use sha2::Sha256;
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// AEAD_AES_256_GCM key length (RFC 7714 §12).
pub const MASTER_KEY_BYTES: usize = 32;
/// SRTP master salt length for the AEAD transforms (RFC 7714 §12: 96 bits).
pub const MASTER_SALT_BYTES: usize = 12;
/// Shortest exporter secret [`SrtpKeys::from_exporter_secret`] accepts.
pub const MIN_EXPORTER_SECRET_BYTES: usize = 64;

/// Why keys could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("exporter secret of {0} bytes, at least 64 are needed")]
    ExporterSecretTooShort(usize),
    #[error("HKDF-SHA256 refused the output length")]
    HkdfExpand,
}

/// Which way media flows; each direction has its own master key so that the two senders never
/// share a (key, IV) pair even if their SSRCs collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallDirection {
    CallerToCallee,
    CalleeToCaller,
}

impl CallDirection {
    /// HKDF `info` of this direction's master key and salt.
    fn hkdf_info(self) -> &'static [u8] {
        match self {
            Self::CallerToCallee => b"rampart srtp v1 caller to callee",
            Self::CalleeToCaller => b"rampart srtp v1 callee to caller",
        }
    }
}

/// An SRTP master key and master salt for AEAD_AES_256_GCM. Zeroized on drop; `Debug` shows no
/// byte of either.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SrtpKeys {
    pub master_key: [u8; MASTER_KEY_BYTES],
    pub master_salt: [u8; MASTER_SALT_BYTES],
}

impl std::fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpKeys")
            .field("master_key", &"<redacted>")
            .field("master_salt", &"<redacted>")
            .finish()
    }
}

impl SrtpKeys {
    /// The master key and salt of one direction of a call, from the MLS exporter secret of the
    /// call's conversation (`Engine::export_secret`, label "rampart call", context = call id;
    /// `docs/calls.md`). Both devices compute the same two directions from the same secret:
    /// HKDF-SHA256 (RFC 5869) with extract salt "rampart srtp v1", and expand `info` naming the
    /// direction, 44 bytes = 32-byte master key || 12-byte master salt.
    pub fn from_exporter_secret(secret: &[u8], direction: CallDirection) -> Result<Self, KeyError> {
        if secret.len() < MIN_EXPORTER_SECRET_BYTES {
            return Err(KeyError::ExporterSecretTooShort(secret.len()));
        }
        let hkdf = Hkdf::<Sha256>::new(Some(b"rampart srtp v1"), secret);
        let mut okm = [0u8; MASTER_KEY_BYTES + MASTER_SALT_BYTES];
        // 44 bytes is far below HKDF-SHA256's 255 * 32 byte limit (RFC 5869 §2.3), so expand
        // does not fail; its error is still passed on rather than unwrapped.
        let expanded = hkdf.expand(direction.hkdf_info(), &mut okm);
        let mut keys = Self { master_key: [0; MASTER_KEY_BYTES], master_salt: [0; MASTER_SALT_BYTES] };
        let result = match expanded {
            Ok(()) => {
                let (key, salt) = okm.split_at(MASTER_KEY_BYTES);
                keys.master_key.copy_from_slice(key);
                keys.master_salt.copy_from_slice(salt);
                Ok(keys)
            }
            Err(_) => Err(KeyError::HkdfExpand),
        };
        okm.zeroize();
        result
    }
}

/// Session key and salt for one of SRTP or SRTCP (RFC 3711 §4.3).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SessionKeys {
    pub(crate) key: [u8; MASTER_KEY_BYTES],
    pub(crate) salt: [u8; MASTER_SALT_BYTES],
}

/// RFC 3711 §4.3.1 labels.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KdfLabel {
    SrtpEncryption = 0x00,
    SrtpSalt = 0x02,
    SrtcpEncryption = 0x03,
    SrtcpSalt = 0x05,
}

/// The AES-CM PRF of RFC 3711 §4.3.3 with key_derivation_rate 0 (so r = 0): the keystream of
/// AES-CTR under the master key, with IV = (master_salt XOR (label << 48)) * 2^16, truncated to
/// `out.len()` bytes.
///
/// RFC 3711 §4.3.2 writes the master salt as 112 bits; RFC 7714 §12 keeps this KDF with a
/// 96-bit master salt, which is used as the first 96 of those 112 bits, zero-padded on the right
/// (as libsrtp does). The label sits in the 8th byte: `key_id = label || r` (7 bytes) is aligned
/// to the right end of the 14-byte `x`.
fn aes_cm_prf<Cipher: KeyIvInit + StreamCipher>(
    master_key: &[u8],
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) {
    let mut iv = [0u8; 16];
    for (slot, salt_byte) in iv.iter_mut().zip(master_salt.iter().take(14)) {
        *slot = *salt_byte;
    }
    if let Some(label_byte) = iv.get_mut(7) {
        *label_byte ^= label;
    }
    out.fill(0);
    if let Ok(mut cipher) = Cipher::new_from_slices(master_key, &iv) {
        cipher.apply_keystream(out);
    }
    iv.zeroize();
}

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// RFC 3711 §4.3 derivation of one session key and salt pair from the master key (AES-256-CM
/// PRF, RFC 6188 §7 / RFC 7714 §12).
pub(crate) fn derive_session_keys(
    master: &SrtpKeys,
    key_label: KdfLabel,
    salt_label: KdfLabel,
) -> SessionKeys {
    let mut session = SessionKeys { key: [0; MASTER_KEY_BYTES], salt: [0; MASTER_SALT_BYTES] };
    aes_cm_prf::<Aes256Ctr>(&master.master_key, &master.master_salt, key_label as u8, &mut session.key);
    aes_cm_prf::<Aes256Ctr>(&master.master_key, &master.master_salt, salt_label as u8, &mut session.salt);
    session
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    /// RFC 3711 Appendix B.3 (AES-128, 112-bit salt): the same PRF code run with AES-128.
    #[test]
    fn kdf_matches_rfc_3711_appendix_b3() {
        type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;
        let master_key = unhex("e1f97a0d3e018be0d64fa32c06de4139");
        let master_salt = unhex("0ec675ad498afeebb6960b3aabe6");
        let mut cipher_key = [0u8; 16];
        aes_cm_prf::<Aes128Ctr>(&master_key, &master_salt, 0x00, &mut cipher_key);
        assert_eq!(cipher_key.to_vec(), unhex("c61e7a93744f39ee10734afe3ff7a087"));
        let mut cipher_salt = [0u8; 14];
        aes_cm_prf::<Aes128Ctr>(&master_key, &master_salt, 0x02, &mut cipher_salt);
        assert_eq!(cipher_salt.to_vec(), unhex("30cbbc08863d8c85d49db34a9ae1"));
    }

    /// AES-256 with a 96-bit salt: no published vectors, so these values were computed
    /// independently with Python's `cryptography` (AES-256-CTR keystream from the counter block
    /// salt || 0x0000 with the label XORed into byte 7, then 0x0000).
    #[test]
    fn aes_256_kdf_matches_an_independent_computation() {
        let mut master = SrtpKeys { master_key: [0; 32], master_salt: [0; 12] };
        for (i, byte) in master.master_key.iter_mut().enumerate() {
            *byte = i as u8;
        }
        master.master_salt.copy_from_slice(&unhex("517569642070726f2071756f"));
        let srtp = derive_session_keys(&master, KdfLabel::SrtpEncryption, KdfLabel::SrtpSalt);
        assert_eq!(
            srtp.key.to_vec(),
            unhex("55a897acc260e7906b03359810579a2d9fe41f1985acf2e07a9e4a6ac284d8e1")
        );
        assert_eq!(srtp.salt.to_vec(), unhex("2df806deb9b0f9c4bcbbc9dd"));
        let srtcp = derive_session_keys(&master, KdfLabel::SrtcpEncryption, KdfLabel::SrtcpSalt);
        assert_eq!(
            srtcp.key.to_vec(),
            unhex("a272bf8833ee0a30f1d0b5c82d954d324691abc9a59595b747e9e3136900e344")
        );
        assert_eq!(srtcp.salt.to_vec(), unhex("735dd67e86c2c58ead4dcc25"));
    }

    #[test]
    fn exporter_split_is_deterministic_and_per_direction() {
        let secret = [7u8; 64];
        let a = SrtpKeys::from_exporter_secret(&secret, CallDirection::CallerToCallee).unwrap();
        let b = SrtpKeys::from_exporter_secret(&secret, CallDirection::CallerToCallee).unwrap();
        let c = SrtpKeys::from_exporter_secret(&secret, CallDirection::CalleeToCaller).unwrap();
        assert_eq!(a.master_key, b.master_key);
        assert_eq!(a.master_salt, b.master_salt);
        assert_ne!(a.master_key, c.master_key);
        assert_ne!(a.master_salt, c.master_salt);
        let other = SrtpKeys::from_exporter_secret(&[8u8; 64], CallDirection::CallerToCallee).unwrap();
        assert_ne!(a.master_key, other.master_key);
        assert_eq!(
            SrtpKeys::from_exporter_secret(&[0; 63], CallDirection::CallerToCallee).err(),
            Some(KeyError::ExporterSecretTooShort(63))
        );
    }

    #[test]
    fn debug_is_redacted() {
        let keys = SrtpKeys { master_key: [0xab; 32], master_salt: [0xcd; 12] };
        let shown = format!("{keys:?}");
        assert!(shown.contains("redacted"));
        assert!(!shown.contains("171") && !shown.contains("ab"));
    }
}

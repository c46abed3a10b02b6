//! MESSAGE-INTEGRITY (RFC 8489 §14.5), FINGERPRINT (§14.7) and the keys of the short-term and
//! long-term credential mechanisms (§9.1.1, §9.2.2).
//!
//! Verification works on the received bytes, not on a decoded [`Message`]: the HMAC and the
//! CRC cover the exact bytes that were sent (padding included, which RFC 5769's vectors fill
//! with spaces), and re-encoding could change them. Encoding appends MESSAGE-INTEGRITY, then
//! FINGERPRINT, each computed with the header length adjusted to end at that attribute.
//!
//! Passwords go through SASLprep (RFC 4013), the processing RFC 5389 specified and RFC 5769's
//! vectors use; RFC 8489 replaced it with the PRECIS OpaqueString profile (RFC 8265), which
//! gives the same result for the ASCII passwords coturn and Rampart use (the REST API's are
//! base64). Usernames and realms are used as they are on the wire: preparing them is the
//! sender's job (RFC 5389 §15.3, §15.7), and coturn hashes them as bytes too.

use std::fmt;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::attribute::{Attribute, AttributeError, AttributeType};
use crate::limits::MAX_MESSAGE_LEN;
use crate::message::{
    ATTRIBUTE_HEADER_LEN, DecodeError, EncodeError, HEADER_LEN, Header, Message, Placement, RawAttributes,
    Section, set_attributes_len,
};

/// The value XORed into the CRC-32 of FINGERPRINT, "STUN" in ASCII (RFC 8489 §14.7), so that
/// a packet of another protocol that happens to carry a CRC-32 is not taken for STUN.
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// Length of the MESSAGE-INTEGRITY value (an HMAC-SHA1).
pub const MESSAGE_INTEGRITY_LEN: usize = 20;

/// Length of the FINGERPRINT value.
pub const FINGERPRINT_LEN: usize = 4;

type HmacSha1 = Hmac<Sha1>;

/// The HMAC key of MESSAGE-INTEGRITY. Wiped from memory when dropped; never printed.
pub struct IntegrityKey(Zeroizing<Vec<u8>>);

/// Why a key cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeyError {
    /// SASLprep refuses the password (a control character, a private-use or unassigned code
    /// point, bad bidirectional text...). The password itself is never part of the error.
    #[error("the password is not valid under SASLprep (RFC 4013)")]
    InvalidPassword,
}

/// SASLprep (RFC 4013) of a password: non-ASCII spaces become spaces, "commonly mapped to
/// nothing" characters (soft hyphen...) go, NFKC, then prohibited characters are refused.
/// ASCII passwords without control characters come back unchanged.
pub fn saslprep(password: &str) -> Result<Zeroizing<String>, KeyError> {
    stringprep::saslprep(password)
        .map(|prepared| Zeroizing::new(prepared.into_owned()))
        .map_err(|_| KeyError::InvalidPassword)
}

impl IntegrityKey {
    /// Short-term credentials (RFC 8489 §9.1.1): the key is the prepared password.
    pub fn short_term(password: &str) -> Result<Self, KeyError> {
        let prepared = saslprep(password)?;
        Ok(Self(Zeroizing::new(prepared.as_bytes().to_vec())))
    }

    /// Long-term credentials (RFC 8489 §9.2.2): MD5(username ":" realm ":" password), with the
    /// username and realm as they are on the wire and the password prepared.
    pub fn long_term(username: &str, realm: &str, password: &str) -> Result<Self, KeyError> {
        let prepared = saslprep(password)?;
        Ok(Self::long_term_prepared(username, realm, &prepared))
    }

    /// The long-term key from a password that needs no preparation.
    pub(crate) fn long_term_prepared(username: &str, realm: &str, prepared_password: &str) -> Self {
        let digest = Md5::new()
            .chain_update(username.as_bytes())
            .chain_update(b":")
            .chain_update(realm.as_bytes())
            .chain_update(b":")
            .chain_update(prepared_password.as_bytes())
            .finalize();
        Self(Zeroizing::new(digest.to_vec()))
    }

    #[cfg(test)]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A key computed elsewhere, such as the MD5 key coturn can store instead of a password.
    pub fn from_bytes(key: Vec<u8>) -> Self {
        Self(Zeroizing::new(key))
    }

    fn hmac(&self) -> Option<HmacSha1> {
        // HMAC takes keys of any length, so this never fails; a failure would fail closed.
        <HmacSha1 as Mac>::new_from_slice(&self.0).ok()
    }
}

impl fmt::Debug for IntegrityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IntegrityKey(..)")
    }
}

/// Why MESSAGE-INTEGRITY or FINGERPRINT does not check out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IntegrityError {
    /// The bytes are not a well-formed message.
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    /// No MESSAGE-INTEGRITY a receiver would read (RFC 8489 §14.6: one after
    /// MESSAGE-INTEGRITY-SHA256 is ignored).
    #[error("no MESSAGE-INTEGRITY attribute")]
    MissingIntegrity,
    /// Wrong key, or the message was altered.
    #[error("MESSAGE-INTEGRITY does not match")]
    IntegrityMismatch,
    #[error("no FINGERPRINT attribute")]
    MissingFingerprint,
    #[error("FINGERPRINT does not match")]
    FingerprintMismatch,
}

/// HMAC-SHA1 over `prefix` (a message up to an attribute) with the header's length field
/// replaced by `length_field`: the length the message would have if it ended right after
/// MESSAGE-INTEGRITY (RFC 8489 §14.5).
fn message_integrity(
    prefix: &[u8],
    length_field: usize,
    key: &IntegrityKey,
) -> Option<[u8; MESSAGE_INTEGRITY_LEN]> {
    let (type_bytes, rest) = prefix.split_first_chunk::<2>()?;
    let after_length = rest.get(2..)?;
    let length_field = u16::try_from(length_field).ok()?;
    let mut mac = key.hmac()?;
    mac.update(type_bytes);
    mac.update(&length_field.to_be_bytes());
    mac.update(after_length);
    Some(mac.finalize().into_bytes().into())
}

/// CRC-32 of `prefix` (a message up to FINGERPRINT) XOR "STUN", with the header's length field
/// replaced by `length_field` (RFC 8489 §14.7).
fn fingerprint(prefix: &[u8], length_field: usize) -> Option<u32> {
    let (type_bytes, rest) = prefix.split_first_chunk::<2>()?;
    let after_length = rest.get(2..)?;
    let length_field = u16::try_from(length_field).ok()?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(type_bytes);
    crc.update(&length_field.to_be_bytes());
    crc.update(after_length);
    Some(crc.finalize() ^ FINGERPRINT_XOR)
}

fn invalid_length(attribute: AttributeType, len: usize) -> IntegrityError {
    IntegrityError::Malformed(DecodeError::InvalidAttribute {
        attribute,
        error: AttributeError::InvalidLength { len },
    })
}

/// Checks the MESSAGE-INTEGRITY of a received message with `key`, in constant time. The
/// message's framing is checked as by [`Header::decode`].
pub fn verify_message_integrity(message: &[u8], key: &IntegrityKey) -> Result<(), IntegrityError> {
    Header::decode(message)?;
    let mut section = Section::Body;
    for raw in RawAttributes::new(message) {
        let raw = raw?;
        let placement = section.place(raw.attribute_type);
        if placement == Placement::AfterFingerprint {
            return Err(DecodeError::AttributeAfterFingerprint { attribute: raw.attribute_type }.into());
        }
        if placement != Placement::Read || raw.attribute_type != AttributeType::MESSAGE_INTEGRITY {
            continue;
        }
        let received: &[u8; MESSAGE_INTEGRITY_LEN] =
            raw.value.try_into().map_err(|_| invalid_length(raw.attribute_type, raw.value.len()))?;
        let prefix = message.get(..raw.start).ok_or(IntegrityError::IntegrityMismatch)?;
        let length_field = raw.start - HEADER_LEN + ATTRIBUTE_HEADER_LEN + MESSAGE_INTEGRITY_LEN;
        let computed =
            message_integrity(prefix, length_field, key).ok_or(IntegrityError::IntegrityMismatch)?;
        return if bool::from(computed.ct_eq(received)) {
            Ok(())
        } else {
            Err(IntegrityError::IntegrityMismatch)
        };
    }
    Err(IntegrityError::MissingIntegrity)
}

/// Checks the FINGERPRINT of a received message, which must be its last attribute.
pub fn verify_fingerprint(message: &[u8]) -> Result<(), IntegrityError> {
    Header::decode(message)?;
    let mut section = Section::Body;
    for raw in RawAttributes::new(message) {
        let raw = raw?;
        let placement = section.place(raw.attribute_type);
        if placement == Placement::AfterFingerprint {
            return Err(DecodeError::AttributeAfterFingerprint { attribute: raw.attribute_type }.into());
        }
        if raw.attribute_type != AttributeType::FINGERPRINT {
            continue;
        }
        let received: [u8; FINGERPRINT_LEN] =
            raw.value.try_into().map_err(|_| invalid_length(raw.attribute_type, raw.value.len()))?;
        let prefix = message.get(..raw.start).ok_or(IntegrityError::FingerprintMismatch)?;
        let length_field = raw.start - HEADER_LEN + ATTRIBUTE_HEADER_LEN + FINGERPRINT_LEN;
        if raw.start + ATTRIBUTE_HEADER_LEN + FINGERPRINT_LEN != message.len() {
            // Something follows: the next iteration reports it.
            continue;
        }
        let computed = fingerprint(prefix, length_field).ok_or(IntegrityError::FingerprintMismatch)?;
        return if computed == u32::from_be_bytes(received) {
            Ok(())
        } else {
            Err(IntegrityError::FingerprintMismatch)
        };
    }
    Err(IntegrityError::MissingFingerprint)
}

/// Encodes `message`, then appends MESSAGE-INTEGRITY computed with `key` (if any), then
/// FINGERPRINT (if asked), in that order (RFC 8489 §14.5, §14.7). The message must not carry
/// either attribute, nor MESSAGE-INTEGRITY-SHA256, itself.
pub fn encode_protected(
    message: &Message,
    key: Option<&IntegrityKey>,
    with_fingerprint: bool,
) -> Result<Vec<u8>, EncodeError> {
    if let Some(attribute) = message.attributes.iter().map(Attribute::attribute_type).find(|t| {
        matches!(
            *t,
            AttributeType::MESSAGE_INTEGRITY
                | AttributeType::MESSAGE_INTEGRITY_SHA256
                | AttributeType::FINGERPRINT
        )
    }) {
        return Err(EncodeError::IntegrityAttributeGiven { attribute });
    }
    let added = usize::from(key.is_some()) + usize::from(with_fingerprint);
    let mut out = Vec::with_capacity(HEADER_LEN + 128);
    message.encode_into(&mut out, added)?;
    let final_len = out.len()
        + if key.is_some() { ATTRIBUTE_HEADER_LEN + MESSAGE_INTEGRITY_LEN } else { 0 }
        + if with_fingerprint { ATTRIBUTE_HEADER_LEN + FINGERPRINT_LEN } else { 0 };
    if final_len > MAX_MESSAGE_LEN {
        return Err(EncodeError::TooLong { len: final_len, max: MAX_MESSAGE_LEN });
    }

    if let Some(key) = key {
        let length_field = out.len() - HEADER_LEN + ATTRIBUTE_HEADER_LEN + MESSAGE_INTEGRITY_LEN;
        // Cannot fail: `out` holds a header and `length_field` is below the message limit.
        let tag = message_integrity(&out, length_field, key)
            .ok_or(EncodeError::TooLong { len: final_len, max: MAX_MESSAGE_LEN })?;
        set_attributes_len(&mut out, length_field);
        out.extend_from_slice(&AttributeType::MESSAGE_INTEGRITY.0.to_be_bytes());
        out.extend_from_slice(&(MESSAGE_INTEGRITY_LEN as u16).to_be_bytes());
        out.extend_from_slice(&tag);
    }
    if with_fingerprint {
        let length_field = out.len() - HEADER_LEN + ATTRIBUTE_HEADER_LEN + FINGERPRINT_LEN;
        let crc = fingerprint(&out, length_field)
            .ok_or(EncodeError::TooLong { len: final_len, max: MAX_MESSAGE_LEN })?;
        set_attributes_len(&mut out, length_field);
        out.extend_from_slice(&AttributeType::FINGERPRINT.0.to_be_bytes());
        out.extend_from_slice(&(FINGERPRINT_LEN as u16).to_be_bytes());
        out.extend_from_slice(&crc.to_be_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;
    use crate::attribute::{Nonce, Realm, Software, Username};
    use crate::message::{Class, Method, TransactionId};

    fn allocate() -> Message {
        Message::new(Class::Request, Method::Allocate, TransactionId([0x5A; 12]))
            .with(Attribute::RequestedTransport(crate::TransportProtocol::UDP))
            .with(Attribute::Username(Username::new("1700000600:device-42").unwrap()))
            .with(Attribute::Realm(Realm::new("rampart.example").unwrap()))
            .with(Attribute::Nonce(Nonce::new("0123456789abcdef").unwrap()))
            .with(Attribute::Software(Software::new("rampart").unwrap()))
    }

    fn key() -> IntegrityKey {
        IntegrityKey::long_term("1700000600:device-42", "rampart.example", "secret").unwrap()
    }

    #[test]
    fn saslprep_maps_and_normalises() {
        // RFC 5769 §2.4's password: soft hyphen mapped to nothing, U+00AA and U+2168 by NFKC.
        assert_eq!(saslprep("The\u{AD}M\u{AA}tr\u{2168}").unwrap().as_str(), "TheMatrIX");
        // RFC 4013 §3's examples.
        assert_eq!(saslprep("I\u{AD}X").unwrap().as_str(), "IX");
        assert_eq!(saslprep("user").unwrap().as_str(), "user");
        assert_eq!(saslprep("\u{AA}").unwrap().as_str(), "a");
        assert_eq!(saslprep("\u{2168}").unwrap().as_str(), "IX");
        assert_eq!(saslprep("\u{07}"), Err(KeyError::InvalidPassword));
        assert_eq!(saslprep("\u{627}\u{31}"), Err(KeyError::InvalidPassword));
        // Non-ASCII spaces become ASCII spaces.
        assert_eq!(saslprep("a\u{A0}b").unwrap().as_str(), "a b");
    }

    #[test]
    fn long_term_key_is_md5_of_user_realm_password() {
        // MD5("user:realm:pass"), computed independently.
        let key = IntegrityKey::long_term("user", "realm", "pass").unwrap();
        assert_eq!(hex(&key.0), "8493fbc53ba582fb4c044c456bdc40eb");
        assert_eq!(format!("{key:?}"), "IntegrityKey(..)");
        assert_eq!(
            IntegrityKey::long_term("user", "realm", "pa\u{7}ss").map(|_| ()),
            Err(KeyError::InvalidPassword)
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn protected_message_verifies_and_decodes() {
        let message = allocate();
        let bytes = encode_protected(&message, Some(&key()), true).unwrap();
        verify_message_integrity(&bytes, &key()).unwrap();
        verify_fingerprint(&bytes).unwrap();
        let decoded = Message::decode(&bytes).unwrap().message;
        // The decoded message is the original plus the two computed attributes, in order.
        let tail: Vec<AttributeType> =
            decoded.attributes[message.attributes.len()..].iter().map(Attribute::attribute_type).collect();
        assert_eq!(tail, [AttributeType::MESSAGE_INTEGRITY, AttributeType::FINGERPRINT]);
        assert_eq!(decoded.attributes[..message.attributes.len()], message.attributes[..]);
        // Re-encoding the decoded message verbatim gives the same bytes.
        assert_eq!(decoded.encode().unwrap(), bytes);
    }

    #[test]
    fn integrity_only_and_fingerprint_only() {
        let message = allocate();
        let integrity_only = encode_protected(&message, Some(&key()), false).unwrap();
        verify_message_integrity(&integrity_only, &key()).unwrap();
        assert_eq!(verify_fingerprint(&integrity_only), Err(IntegrityError::MissingFingerprint));

        let fingerprint_only = encode_protected(&message, None, true).unwrap();
        verify_fingerprint(&fingerprint_only).unwrap();
        assert_eq!(
            verify_message_integrity(&fingerprint_only, &key()),
            Err(IntegrityError::MissingIntegrity)
        );

        assert_eq!(encode_protected(&message, None, false).unwrap(), message.encode().unwrap());
    }

    #[test]
    fn wrong_key_fails() {
        let bytes = encode_protected(&allocate(), Some(&key()), true).unwrap();
        let other = IntegrityKey::long_term("1700000600:device-42", "rampart.example", "secreT").unwrap();
        assert_eq!(verify_message_integrity(&bytes, &other), Err(IntegrityError::IntegrityMismatch));
        let short_term = IntegrityKey::short_term("secret").unwrap();
        assert_eq!(verify_message_integrity(&bytes, &short_term), Err(IntegrityError::IntegrityMismatch));
    }

    #[test]
    fn every_flipped_bit_fails_integrity_or_framing() {
        let bytes = encode_protected(&allocate(), Some(&key()), false).unwrap();
        for index in 0..bytes.len() {
            for bit in 0..8 {
                let mut altered = bytes.clone();
                altered[index] ^= 1 << bit;
                assert!(
                    verify_message_integrity(&altered, &key()).is_err(),
                    "byte {index} bit {bit} flipped and still verified"
                );
            }
        }
    }

    #[test]
    fn every_flipped_bit_fails_fingerprint_or_framing() {
        let bytes = encode_protected(&allocate(), None, true).unwrap();
        for index in 0..bytes.len() {
            for bit in 0..8 {
                let mut altered = bytes.clone();
                altered[index] ^= 1 << bit;
                assert!(
                    verify_fingerprint(&altered).is_err(),
                    "byte {index} bit {bit} flipped and still verified"
                );
            }
        }
    }

    #[test]
    fn flipped_value_byte_is_a_mismatch_not_a_framing_error() {
        let bytes = encode_protected(&allocate(), Some(&key()), true).unwrap();
        let mut altered = bytes.clone();
        altered[HEADER_LEN + 4] ^= 0x01; // inside REQUESTED-TRANSPORT's value
        assert_eq!(verify_message_integrity(&altered, &key()), Err(IntegrityError::IntegrityMismatch));
        assert_eq!(verify_fingerprint(&altered), Err(IntegrityError::FingerprintMismatch));
        let last = altered.len() - 1;
        let mut altered = bytes;
        altered[last] ^= 0x80; // inside FINGERPRINT itself
        assert_eq!(verify_fingerprint(&altered), Err(IntegrityError::FingerprintMismatch));
        verify_message_integrity(&altered, &key()).unwrap();
    }

    #[test]
    fn attributes_after_integrity_are_not_covered_but_ignored() {
        // An attacker appending an attribute after MESSAGE-INTEGRITY: the integrity still
        // verifies (it does not cover it) and the decoder drops it, so it cannot take effect.
        let bytes = encode_protected(&allocate(), Some(&key()), false).unwrap();
        let mut appended = bytes.clone();
        appended.extend_from_slice(&[0x00, 0x0D, 0x00, 0x04, 0, 0, 0, 0]); // LIFETIME 0
        let len = u16::try_from(appended.len() - HEADER_LEN).unwrap();
        appended[2..4].copy_from_slice(&len.to_be_bytes());
        verify_message_integrity(&appended, &key()).unwrap();
        let decoded = Message::decode(&appended).unwrap().message;
        assert_eq!(decoded.lifetime(), None);
        assert_eq!(decoded, Message::decode(&bytes).unwrap().message);
    }

    #[test]
    fn integrity_after_sha256_is_ignored() {
        let message =
            allocate().with(Attribute::MessageIntegritySha256(crate::Sha256Tag::new(vec![0; 32]).unwrap()));
        let plain = message.encode().unwrap();
        let mut bytes = plain.clone();
        // Append a MESSAGE-INTEGRITY computed with the right key after MESSAGE-INTEGRITY-SHA256.
        let length_field = bytes.len() - HEADER_LEN + 24;
        let tag = message_integrity(&bytes, length_field, &key()).unwrap();
        bytes.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
        bytes.extend_from_slice(&tag);
        set_attributes_len(&mut bytes, length_field);
        assert_eq!(verify_message_integrity(&bytes, &key()), Err(IntegrityError::MissingIntegrity));
        assert_eq!(Message::decode(&bytes).unwrap().message, message);
    }

    #[test]
    fn fingerprint_must_be_last() {
        let bytes = encode_protected(&allocate(), None, true).unwrap();
        let mut appended = bytes;
        appended.extend_from_slice(&[0x80, 0x22, 0x00, 0x00]); // empty SOFTWARE
        let len = appended.len() - HEADER_LEN;
        set_attributes_len(&mut appended, len);
        let after = DecodeError::AttributeAfterFingerprint { attribute: AttributeType::SOFTWARE };
        assert_eq!(verify_fingerprint(&appended), Err(IntegrityError::Malformed(after.clone())));
        assert_eq!(Message::decode(&appended), Err(after));
    }

    #[test]
    fn integrity_attribute_with_wrong_length_is_malformed() {
        let mut bytes = allocate().encode().unwrap();
        bytes.extend_from_slice(&[0x00, 0x08, 0x00, 0x10]);
        bytes.extend_from_slice(&[0; 16]);
        let len = bytes.len() - HEADER_LEN;
        set_attributes_len(&mut bytes, len);
        let invalid = DecodeError::InvalidAttribute {
            attribute: AttributeType::MESSAGE_INTEGRITY,
            error: AttributeError::InvalidLength { len: 16 },
        };
        assert_eq!(verify_message_integrity(&bytes, &key()), Err(IntegrityError::Malformed(invalid.clone())));
        assert_eq!(Message::decode(&bytes), Err(invalid));
    }

    #[test]
    fn given_integrity_attributes_are_refused() {
        for attribute in [
            Attribute::MessageIntegrity([0; 20]),
            Attribute::Fingerprint(0),
            Attribute::MessageIntegritySha256(crate::Sha256Tag::new(vec![0; 16]).unwrap()),
        ] {
            let attribute_type = attribute.attribute_type();
            assert_eq!(
                encode_protected(&allocate().with(attribute), Some(&key()), true),
                Err(EncodeError::IntegrityAttributeGiven { attribute: attribute_type })
            );
        }
    }

    #[test]
    fn protection_respects_the_limits() {
        let big = crate::Data::new(vec![0; crate::limits::MAX_DATA_LEN]).unwrap();
        let send = Message::new(Class::Indication, Method::Send, TransactionId([1; 12]))
            .with(Attribute::XorPeerAddress("[2001:db8::1]:3478".parse().unwrap()))
            .with(Attribute::Data(big))
            .with(Attribute::DontFragment);
        let bytes = encode_protected(&send, Some(&key()), true).unwrap();
        assert!(bytes.len() <= MAX_MESSAGE_LEN);
        verify_message_integrity(&bytes, &key()).unwrap();
        verify_fingerprint(&bytes).unwrap();

        let mut full = Message::new(Class::Request, Method::CreatePermission, TransactionId([1; 12]));
        for port in 0..u16::try_from(crate::limits::MAX_ATTRIBUTES - 1).unwrap() {
            full = full.with(Attribute::XorPeerAddress(std::net::SocketAddr::from(([192, 0, 2, 1], port))));
        }
        encode_protected(&full, Some(&key()), false).unwrap();
        assert_eq!(
            encode_protected(&full, Some(&key()), true),
            Err(EncodeError::TooManyAttributes { count: 65, max: 64 })
        );
    }
}

//! Verification codes, link codes and device secrets, and how the server keeps them: only as
//! hashes, compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::limits::{DEVICE_SECRET_BYTES, MAX_CODE_BYTES};

/// A SHA-256 digest of a secret. This, never the secret, is what a server stores.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

impl SecretHash {
    fn of(domain: &[u8], parts: &[&[u8]]) -> Self {
        let mut h = Sha256::new();
        h.update(domain);
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        Self(h.finalize().into())
    }

    /// Constant-time comparison, so response timing reveals nothing about the stored hash.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// The six-digit code sent to a phone number to prove the registrant holds it.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct VerificationCode(String);

impl std::fmt::Debug for VerificationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerificationCode(<redacted>)")
    }
}

/// A code that is not of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("a verification code is 6 digits")]
    BadVerificationCode,
    #[error("a link code is 8 letters or digits, like ABCD-EF23")]
    BadLinkCode,
}

impl VerificationCode {
    pub fn generate<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        Self(format!("{:06}", rng.random_range(0..1_000_000u32)))
    }

    pub fn parse(input: &str) -> Result<Self, CodeError> {
        let s: String = input.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s))
        } else {
            Err(CodeError::BadVerificationCode)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Bound to the phone number, so one code cannot verify another number.
    pub fn hash_for(&self, phone_e164: &str) -> SecretHash {
        SecretHash::of(b"rampart verification code v1", &[phone_e164.as_bytes(), self.0.as_bytes()])
    }
}

/// Crockford-like alphabet without 0/O, 1/I/L, U: easy to read aloud and type.
pub const LINK_ALPHABET: &[u8; 30] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789";
const LINK_CODE_LEN: usize = 8;

/// A one-time code that lets an existing device approve a new one (about 40 bits).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct LinkCode(String);

impl std::fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkCode(<redacted>)")
    }
}

impl LinkCode {
    pub fn generate<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        let alphabet = LINK_ALPHABET;
        let s = (0..LINK_CODE_LEN)
            .map(|_| {
                let i = rng.random_range(0..alphabet.len());
                char::from(alphabet.get(i).copied().unwrap_or(b'A'))
            })
            .collect();
        Self(s)
    }

    /// Accepts any case, with or without the dash and spaces.
    pub fn parse(input: &str) -> Result<Self, CodeError> {
        if input.len() > MAX_CODE_BYTES * 2 {
            return Err(CodeError::BadLinkCode);
        }
        let s: String = input
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if s.len() == LINK_CODE_LEN && s.bytes().all(|b| LINK_ALPHABET.contains(&b)) {
            Ok(Self(s))
        } else {
            Err(CodeError::BadLinkCode)
        }
    }

    /// Canonical form without dash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `ABCD-EFGH`, the form shown to people.
    pub fn display(&self) -> String {
        let (a, b) = self.0.split_at(LINK_CODE_LEN / 2);
        format!("{a}-{b}")
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash::of(b"rampart link code v1", &[self.0.as_bytes()])
    }
}

/// A device's long-term credential for authenticating to the server. 256 random bits, so a fast
/// hash is enough to store it (there is nothing to brute-force); wiped from memory on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct DeviceSecret([u8; DEVICE_SECRET_BYTES]);

impl std::fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceSecret(<redacted>)")
    }
}

impl DeviceSecret {
    pub fn generate<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        let mut b = [0u8; DEVICE_SECRET_BYTES];
        rng.fill(&mut b);
        Self(b)
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; DEVICE_SECRET_BYTES]>::try_from(bytes).ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash::of(b"rampart device secret v1", &[&self.0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn link_codes_round_trip_through_display() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..100 {
            let code = LinkCode::generate(&mut rng);
            let shown = code.display();
            assert_eq!(LinkCode::parse(&shown.to_lowercase()).ok(), Some(code));
        }
    }

    #[test]
    fn verification_code_shape() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let c = VerificationCode::generate(&mut rng);
        assert_eq!(c.as_str().len(), 6);
        assert!(VerificationCode::parse("12a456").is_err());
        assert!(VerificationCode::parse("123 456").is_ok());
    }

    #[test]
    fn code_hash_is_bound_to_phone() {
        let c = VerificationCode::parse("123456").ok();
        let c = c.as_ref();
        let a = c.map(|c| c.hash_for("+14155550123"));
        let b = c.map(|c| c.hash_for("+14155550124"));
        assert_ne!(a, b);
    }

    #[test]
    fn secret_hash_matches() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let s = DeviceSecret::generate(&mut rng);
        let t = DeviceSecret::generate(&mut rng);
        assert!(s.hash().matches(&s.hash()));
        assert!(!s.hash().matches(&t.hash()));
    }
}

//! Stateless NONCEs (RFC 8489 §9.2): the nonce carries its own expiry and a MAC over the expiry
//! and the client's address, so the relay keeps no table of nonces, a nonce cannot be carried
//! to another 5-tuple, and an old one is recognised as stale (438) rather than forged.

use std::net::SocketAddr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rampart_turn::Nonce;
use sha2::Sha256;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// Hex digits of the expiry (Unix milliseconds as a u64).
const EXPIRY_HEX: usize = 16;
/// Bytes of the MAC kept: 128 bits is plenty for a value that lives minutes.
const TAG_BYTES: usize = 16;

/// What a received nonce is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceCheck {
    Valid,
    /// Ours, but expired: answer 438 with a fresh one.
    Stale,
    /// Not ours (or not for this client): also 438, the client retries with a fresh one.
    Invalid,
}

pub(crate) struct Nonces {
    key: Zeroizing<[u8; 32]>,
    lifetime_ms: u64,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces").field("lifetime_ms", &self.lifetime_ms).finish_non_exhaustive()
    }
}

impl Nonces {
    /// `key` is random per relay start: restarting the relay makes old nonces stale, which
    /// clients recover from with one 438 round trip.
    pub(crate) fn new(key: [u8; 32], lifetime: Duration) -> Self {
        let lifetime_ms = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX).max(1);
        Self { key: Zeroizing::new(key), lifetime_ms }
    }

    fn mac(&self, expiry: u64, client: SocketAddr) -> Option<HmacSha256> {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(self.key.as_slice()).ok()?;
        mac.update(&expiry.to_be_bytes());
        mac.update(client.to_string().as_bytes());
        Some(mac)
    }

    /// A nonce for `client`, valid from `now_ms` (Unix milliseconds) for the configured
    /// lifetime.
    pub(crate) fn issue(&self, client: SocketAddr, now_ms: u64) -> Option<Nonce> {
        let expiry = now_ms.saturating_add(self.lifetime_ms);
        let tag = self.mac(expiry, client)?.finalize().into_bytes();
        let tag = tag.get(..TAG_BYTES)?;
        Nonce::new(format!("{expiry:0width$x}{}", hex::encode(tag), width = EXPIRY_HEX)).ok()
    }

    pub(crate) fn check(&self, nonce: &str, client: SocketAddr, now_ms: u64) -> NonceCheck {
        if nonce.len() != EXPIRY_HEX + 2 * TAG_BYTES {
            return NonceCheck::Invalid;
        }
        let (Some(expiry_hex), Some(tag_hex)) = (nonce.get(..EXPIRY_HEX), nonce.get(EXPIRY_HEX..)) else {
            return NonceCheck::Invalid;
        };
        let Ok(expiry) = u64::from_str_radix(expiry_hex, 16) else {
            return NonceCheck::Invalid;
        };
        let Ok(tag) = hex::decode(tag_hex) else {
            return NonceCheck::Invalid;
        };
        let Some(mac) = self.mac(expiry, client) else {
            return NonceCheck::Invalid;
        };
        // Constant time: the tag is what a forger would be guessing.
        if mac.verify_truncated_left(&tag).is_err() {
            return NonceCheck::Invalid;
        }
        if now_ms > expiry { NonceCheck::Stale } else { NonceCheck::Valid }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn issued_nonces_check_until_expiry_and_only_for_their_client() {
        let nonces = Nonces::new([7; 32], Duration::from_secs(10));
        let client: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let other: SocketAddr = "192.0.2.1:5001".parse().unwrap();
        let nonce = nonces.issue(client, 1_000_000).unwrap();
        assert!(nonce.as_str().len() < 128);
        assert_eq!(nonces.check(nonce.as_str(), client, 1_000_000), NonceCheck::Valid);
        assert_eq!(nonces.check(nonce.as_str(), client, 1_010_000), NonceCheck::Valid);
        assert_eq!(nonces.check(nonce.as_str(), client, 1_010_001), NonceCheck::Stale);
        assert_eq!(nonces.check(nonce.as_str(), other, 1_000_000), NonceCheck::Invalid);
        let other_key = Nonces::new([8; 32], Duration::from_secs(10));
        assert_eq!(other_key.check(nonce.as_str(), client, 1_000_000), NonceCheck::Invalid);
        // A forged expiry breaks the MAC.
        let mut forged = nonce.as_str().to_owned();
        forged.replace_range(0..1, "f");
        assert_eq!(nonces.check(&forged, client, 1_000_000), NonceCheck::Invalid);
        for junk in ["", "zz", "é", &"g".repeat(48), &"0".repeat(48)] {
            assert_eq!(nonces.check(junk, client, 0), NonceCheck::Invalid, "{junk:?}");
        }
    }
}

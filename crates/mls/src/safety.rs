//! Safety numbers: 60 digits that two people compare (or scan as a QR code) to check that
//! nobody sits between them. Each side contributes 30 digits computed from its account id and
//! its identity (root) key, the key that certifies all its devices: a new identity (the number
//! registered again, or a server presenting keys of its own) changes the number, a device the
//! identity certified does not. What the number cannot show — a device in the conversation that
//! the identities did not certify — [`unexpected_members`] checks against the conversation's
//! actual membership.

use rampart_core::AccountId;
use rampart_proto::DeviceCertificate;

use crate::Member;
use sha2::{Digest, Sha512};

const VERSION: &[u8] = b"rampart safety number v1";
/// Iterations of the hash, to make searching for a colliding key set expensive (as Signal).
const ITERATIONS: usize = 5200;

fn half(account: AccountId, keys: &[[u8; 32]]) -> String {
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut input = Vec::with_capacity(8 + 32 * sorted.len());
    input.extend_from_slice(&account.0.to_be_bytes());
    for k in &sorted {
        input.extend_from_slice(k);
    }
    let mut hash = Sha512::new().chain_update(VERSION).chain_update(&input).finalize();
    for _ in 1..ITERATIONS {
        hash = Sha512::new().chain_update(hash).chain_update(&input).finalize();
    }
    // Six groups of five digits, each from five bytes of the hash.
    hash.chunks(5)
        .take(6)
        .map(|chunk| {
            let n = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect()
}

/// The safety number of two accounts, the same whichever side computes it.
pub fn safety_number(a: AccountId, a_keys: &[[u8; 32]], b: AccountId, b_keys: &[[u8; 32]]) -> String {
    let (first, second) = if a <= b { ((a, a_keys), (b, b_keys)) } else { ((b, b_keys), (a, a_keys)) };
    let mut digits = half(first.0, first.1);
    digits.push_str(&half(second.0, second.1));
    digits
}

/// An account's identity key among its devices' certificates: the top of their signing chains
/// (the self-signed key, or the key that signed a chain whose self-signed certificate is not
/// presented, as after the first device was revoked).
pub fn root_of(certs: &[DeviceCertificate]) -> Option<[u8; 32]> {
    let mut current = certs.first()?;
    // Each step moves to the certificate of the current one's signer; a chain longer than the
    // certificates would be a loop.
    for _ in 0..=certs.len() {
        if current.signer_key == current.signature_key {
            return Some(current.signature_key);
        }
        match certs.iter().find(|c| c.signature_key == current.signer_key) {
            Some(signer) => current = signer,
            None => return Some(current.signer_key),
        }
    }
    None
}

/// The members of a conversation that are not devices the accounts' identities certify (as
/// this device checked them): what a lying server would have had to slip in.
pub fn unexpected_members<'a>(members: &'a [Member], certified: &[DeviceCertificate]) -> Vec<&'a Member> {
    members
        .iter()
        .filter(|m| {
            !certified
                .iter()
                .any(|c| c.account == m.account && c.device == m.device && c.signature_key == m.signature_key)
        })
        .collect()
}

/// The 60 digits in twelve groups of five, as people read them.
pub fn grouped(number: &str) -> String {
    number.as_bytes().chunks(5).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree_and_any_key_change_shows() {
        let a = [[1u8; 32], [2u8; 32]];
        let b = [[3u8; 32]];
        let n = safety_number(AccountId(1), &a, AccountId(2), &b);
        assert_eq!(n.len(), 60);
        assert!(n.bytes().all(|c| c.is_ascii_digit()));
        assert_eq!(n, safety_number(AccountId(2), &b, AccountId(1), &a));
        assert_eq!(n, safety_number(AccountId(1), &[[2u8; 32], [1u8; 32]], AccountId(2), &b));
        assert_ne!(n, safety_number(AccountId(1), &a, AccountId(2), &[[4u8; 32]]));
        assert_ne!(n, safety_number(AccountId(1), &a[..1], AccountId(2), &b));
        assert_eq!(grouped(&n).split(' ').count(), 12);
    }

    fn cert(account: u64, device: u64, key: u8, signer: u8) -> DeviceCertificate {
        DeviceCertificate {
            account: AccountId(account),
            device: rampart_core::DeviceId(device),
            signature_key: [key; 32],
            signer_key: [signer; 32],
            signature: [0; 64],
        }
    }

    fn member(account: u64, device: u64, key: u8) -> Member {
        Member {
            account: AccountId(account),
            device: rampart_core::DeviceId(device),
            signature_key: [key; 32],
            signer_key: [key; 32],
            leaf: 0,
        }
    }

    #[test]
    fn the_root_is_the_top_of_the_signing_chain() {
        // Root 1 signed 2, 2 signed 3: from any starting certificate, the root is 1.
        let chain = [cert(7, 3, 3, 2), cert(7, 1, 1, 1), cert(7, 2, 2, 1)];
        assert_eq!(root_of(&chain), Some([1; 32]));
        // The first device was revoked: its certificate is gone, its key still tops the chain.
        assert_eq!(root_of(&[cert(7, 3, 3, 2), cert(7, 2, 2, 1)]), Some([1; 32]));
        assert_eq!(root_of(&[]), None);
        // A loop (never produced by honest certificates) has no root.
        assert_eq!(root_of(&[cert(7, 1, 1, 2), cert(7, 2, 2, 1)]), None);
    }

    #[test]
    fn a_device_no_identity_certified_is_unexpected() {
        let certified = [cert(1, 10, 1, 1), cert(2, 20, 2, 2), cert(2, 21, 3, 2)];
        let honest = [member(1, 10, 1), member(2, 20, 2), member(2, 21, 3)];
        assert!(unexpected_members(&honest, &certified).is_empty());
        // A ghost device, a known device with another key, a device under the wrong account.
        let ghost =
            [member(1, 10, 1), member(2, 20, 2), member(3, 30, 9), member(2, 21, 8), member(1, 20, 2)];
        let found: Vec<u64> = unexpected_members(&ghost, &certified).iter().map(|m| m.device.0).collect();
        assert_eq!(found, vec![30, 21, 20]);
    }
}

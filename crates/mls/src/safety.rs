//! Safety numbers: 60 digits that two people compare (or scan as a QR code) to check that
//! nobody sits between them. Each side contributes 30 digits computed from its account id and
//! all its devices' signature keys, so a device added or replaced changes the number.

use rampart_core::AccountId;
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
}

//! Proof of work for call set-up: a price on each call that a person never notices and a
//! campaign calling a thousand people pays a thousand times.
//!
//! When Sentinel asks an account to prove work before it calls, the server refuses the set-up
//! with a *challenge*: an opaque token it signed (HMAC-SHA-256 with a key only it holds) naming
//! the caller, the callee, an expiry and a difficulty. The client finds a nonce such that
//! SHA-256 of a domain tag, the token and the nonce starts with that many zero bits, and places
//! the call again with the token and the nonce. The server keeps no state per challenge: the
//! token says everything and the MAC says it is the server's; a set of spent tokens, kept until
//! they expire, stops one solution paying for a second call.
//!
//! A token is bound to one caller and one callee, so work done for one target buys nothing for
//! the next. Both sides are here, sans-IO: the key and the time are arguments, and [`solve`]
//! works within a budget so a caller can bound what a (lying) server makes it spend.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::AccountId;

/// The token's layout version.
const VERSION: u8 = 1;
/// version, expiry (ms, big endian), difficulty, random id, MAC.
pub const TOKEN_BYTES: usize = 1 + 8 + 1 + 16 + 32;
/// How long a challenge may be answered.
pub const CHALLENGE_LIFETIME_MS: u64 = 2 * 60 * 1000;
/// The most work a client does for one call: 2^24 hashes on average, about 3 s on one core of
/// the machine in docs/benchmarks.md (7 s at the 90th percentile). A server that asks for more
/// is refused (it could otherwise keep a device busy for hours).
pub const MAX_DIFFICULTY_BITS: u8 = 24;
/// Least work a challenge asks for (below it a challenge costs nothing).
pub const MIN_DIFFICULTY_BITS: u8 = 8;

const MAC_DOMAIN: &[u8] = b"rampart call challenge v1";
const WORK_DOMAIN: &[u8] = b"rampart call work v1";

/// Why a challenge or its answer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("the challenge token is not one of this server's")]
    Malformed,
    #[error("the challenge was not issued for this caller and callee, or by this server")]
    Forged,
    #[error("the challenge expired")]
    Expired,
    #[error("the answer does not carry the work asked for")]
    NotEnoughWork,
    #[error("the challenge was answered already")]
    Spent,
    #[error("the server asks for {0} bits of work, more than the {MAX_DIFFICULTY_BITS} a client gives")]
    TooHard(u8),
    #[error("no answer found within the budget")]
    OutOfBudget,
}

/// A challenge as the server hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub token: Vec<u8>,
    pub difficulty_bits: u8,
    pub expires_at_ms: u64,
}

/// A challenge answered correctly: its id (for the spent set) and when it stops mattering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    pub id: [u8; 16],
    pub expires_at_ms: u64,
}

/// The server's secret for challenges.
pub struct ChallengeKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for ChallengeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChallengeKey(..)")
    }
}

impl ChallengeKey {
    pub fn generate(rng: &mut impl RngCore) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut());
        Self(key)
    }

    fn mac(&self, caller: AccountId, callee: AccountId, signed: &[u8]) -> Hmac<Sha256> {
        // A 32-byte key is always a valid HMAC key; the fallback is never taken.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref())
            .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
        mac.update(MAC_DOMAIN);
        mac.update(&caller.0.to_be_bytes());
        mac.update(&callee.0.to_be_bytes());
        mac.update(signed);
        mac
    }

    /// A challenge for `caller` to call `callee`, asking `difficulty_bits` of work (clamped to
    /// what clients accept).
    pub fn issue(
        &self,
        caller: AccountId,
        callee: AccountId,
        difficulty_bits: u8,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) -> Challenge {
        let bits = difficulty_bits.clamp(MIN_DIFFICULTY_BITS, MAX_DIFFICULTY_BITS);
        let expires_at_ms = now_ms.saturating_add(CHALLENGE_LIFETIME_MS);
        let mut token = Vec::with_capacity(TOKEN_BYTES);
        token.push(VERSION);
        token.extend_from_slice(&expires_at_ms.to_be_bytes());
        token.push(bits);
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        token.extend_from_slice(&id);
        let tag = self.mac(caller, callee, &token).finalize().into_bytes();
        token.extend_from_slice(&tag);
        Challenge { token, difficulty_bits: bits, expires_at_ms }
    }

    /// Check an answer: the token is this server's, for this caller and callee, not expired,
    /// and `nonce` carries the work it asks for. Whether it was spent is the caller's to check
    /// with [`Answered::id`].
    pub fn check(
        &self,
        caller: AccountId,
        callee: AccountId,
        token: &[u8],
        nonce: u64,
        now_ms: u64,
    ) -> Result<Answered, ChallengeError> {
        let parsed = Parsed::of(token)?;
        self.mac(caller, callee, parsed.signed)
            .verify_slice(parsed.tag)
            .map_err(|_| ChallengeError::Forged)?;
        if now_ms >= parsed.expires_at_ms {
            return Err(ChallengeError::Expired);
        }
        if work_bits(token, nonce) < u32::from(parsed.difficulty_bits) {
            return Err(ChallengeError::NotEnoughWork);
        }
        Ok(Answered { id: parsed.id, expires_at_ms: parsed.expires_at_ms })
    }
}

struct Parsed<'a> {
    signed: &'a [u8],
    tag: &'a [u8],
    expires_at_ms: u64,
    difficulty_bits: u8,
    id: [u8; 16],
}

impl<'a> Parsed<'a> {
    fn of(token: &'a [u8]) -> Result<Self, ChallengeError> {
        if token.len() != TOKEN_BYTES || token.first() != Some(&VERSION) {
            return Err(ChallengeError::Malformed);
        }
        let (signed, tag) = token.split_at(TOKEN_BYTES - 32);
        let expires: [u8; 8] =
            signed.get(1..9).and_then(|s| s.try_into().ok()).ok_or(ChallengeError::Malformed)?;
        let difficulty_bits = *signed.get(9).ok_or(ChallengeError::Malformed)?;
        let id: [u8; 16] =
            signed.get(10..26).and_then(|s| s.try_into().ok()).ok_or(ChallengeError::Malformed)?;
        Ok(Self { signed, tag, expires_at_ms: u64::from_be_bytes(expires), difficulty_bits, id })
    }
}

/// Leading zero bits of the work hash of `token` and `nonce`.
pub fn work_bits(token: &[u8], nonce: u64) -> u32 {
    let digest = Sha256::new()
        .chain_update(WORK_DOMAIN)
        .chain_update(token)
        .chain_update(nonce.to_be_bytes())
        .finalize();
    let mut bits = 0;
    for byte in digest {
        if byte == 0 {
            bits += 8;
        } else {
            bits += byte.leading_zeros();
            break;
        }
    }
    bits
}

/// Find a nonce carrying `difficulty_bits` of work for `token`, trying at most `budget`
/// nonces. Refuses a difficulty above [`MAX_DIFFICULTY_BITS`] before any work.
pub fn solve(token: &[u8], difficulty_bits: u8, budget: u64) -> Result<u64, ChallengeError> {
    solve_range(token, difficulty_bits, 0, budget)?.ok_or(ChallengeError::OutOfBudget)
}

/// [`solve`] over the nonces `from .. from + count` only: `None` when none of them carries the
/// work. A caller that must stay interruptible (a user hanging up) works in slices of this.
pub fn solve_range(
    token: &[u8],
    difficulty_bits: u8,
    from: u64,
    count: u64,
) -> Result<Option<u64>, ChallengeError> {
    if difficulty_bits > MAX_DIFFICULTY_BITS {
        return Err(ChallengeError::TooHard(difficulty_bits));
    }
    if token.is_empty() || token.len() > TOKEN_BYTES {
        return Err(ChallengeError::Malformed);
    }
    let want = u32::from(difficulty_bits);
    Ok((from..from.saturating_add(count)).find(|nonce| work_bits(token, *nonce) >= want))
}

/// Enough tries to find an answer to any challenge a client accepts, with overwhelming
/// probability (64 times the expected work of the hardest).
pub const SOLVE_BUDGET: u64 = 64 << MAX_DIFFICULTY_BITS;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const ME: AccountId = AccountId(7);
    const YOU: AccountId = AccountId(9);

    #[test]
    fn an_answer_with_the_work_passes_and_nothing_else_does() {
        let mut rng = StdRng::seed_from_u64(1);
        let key = ChallengeKey::generate(&mut rng);
        let c = key.issue(ME, YOU, 12, 1_000, &mut rng);
        assert_eq!(c.token.len(), TOKEN_BYTES);
        assert_eq!(c.difficulty_bits, 12);
        let nonce = solve(&c.token, c.difficulty_bits, SOLVE_BUDGET).unwrap();
        assert!(work_bits(&c.token, nonce) >= 12);
        let answered = key.check(ME, YOU, &c.token, nonce, 2_000).unwrap();
        assert_eq!(answered.expires_at_ms, 1_000 + CHALLENGE_LIFETIME_MS);

        // Work for one callee buys nothing for another, nor for another caller.
        assert_eq!(key.check(ME, AccountId(10), &c.token, nonce, 2_000), Err(ChallengeError::Forged));
        assert_eq!(key.check(AccountId(8), YOU, &c.token, nonce, 2_000), Err(ChallengeError::Forged));
        // Another server's key, an expired token, a lowered difficulty, a wrong nonce.
        let other = ChallengeKey::generate(&mut rng);
        assert_eq!(other.check(ME, YOU, &c.token, nonce, 2_000), Err(ChallengeError::Forged));
        assert_eq!(
            key.check(ME, YOU, &c.token, nonce, 1_000 + CHALLENGE_LIFETIME_MS),
            Err(ChallengeError::Expired)
        );
        let mut easier = c.token.clone();
        easier[9] = 1;
        assert_eq!(key.check(ME, YOU, &easier, nonce, 2_000), Err(ChallengeError::Forged));
        let lazy = (0..).find(|n| work_bits(&c.token, *n) < 12).unwrap();
        assert_eq!(key.check(ME, YOU, &c.token, lazy, 2_000), Err(ChallengeError::NotEnoughWork));
        // Tokens of the wrong size or version.
        assert_eq!(key.check(ME, YOU, &c.token[1..], nonce, 2_000), Err(ChallengeError::Malformed));
        assert_eq!(key.check(ME, YOU, &[], nonce, 2_000), Err(ChallengeError::Malformed));
        let mut v2 = c.token.clone();
        v2[0] = 2;
        assert_eq!(key.check(ME, YOU, &v2, nonce, 2_000), Err(ChallengeError::Malformed));
    }

    #[test]
    fn a_client_bounds_what_a_server_makes_it_do() {
        let token = [1u8; TOKEN_BYTES];
        assert_eq!(solve(&token, MAX_DIFFICULTY_BITS + 1, SOLVE_BUDGET), Err(ChallengeError::TooHard(25)));
        assert_eq!(solve(&[0u8; TOKEN_BYTES + 1], 8, SOLVE_BUDGET), Err(ChallengeError::Malformed));
        assert_eq!(solve(&token, 20, 10), Err(ChallengeError::OutOfBudget));
        // Slices find what the whole search finds.
        let whole = solve(&token, 10, SOLVE_BUDGET).unwrap();
        let sliced = (0..).step_by(64).find_map(|from| solve_range(&token, 10, from, 64).unwrap()).unwrap();
        assert_eq!(whole, sliced);
        assert_eq!(solve_range(&token, 10, u64::MAX, 5), Ok(None));
        // The server never asks for less than the minimum, nor more than clients give.
        let mut rng = StdRng::seed_from_u64(2);
        let key = ChallengeKey::generate(&mut rng);
        assert_eq!(key.issue(ME, YOU, 0, 0, &mut rng).difficulty_bits, MIN_DIFFICULTY_BITS);
        assert_eq!(key.issue(ME, YOU, 60, 0, &mut rng).difficulty_bits, MAX_DIFFICULTY_BITS);
    }
}

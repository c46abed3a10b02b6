#![no_main]
//! A call challenge's answer as a client sends it: eight bytes of nonce, then the token. Checked
//! against a fixed key (the seeds are answers it issued), for the caller and callee the seeds
//! name and for others. No panic; what passes was issued by the key, for that pair, and carries
//! the work; the solver stays within its budget whatever the token and difficulty.

use libfuzzer_sys::fuzz_target;
use rampart_core::AccountId;
use rampart_core::challenge::{ChallengeKey, MAX_DIFFICULTY_BITS, solve, work_bits};
use rand::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let Some((nonce, token)) = data.split_first_chunk::<8>() else { return };
    let nonce = u64::from_be_bytes(*nonce);
    let key = ChallengeKey::generate(&mut rand::rngs::StdRng::seed_from_u64(7));
    let (caller, callee) = (AccountId(1), AccountId(2));
    for now in [0, 1_000, u64::MAX] {
        if key.check(caller, callee, token, nonce, now).is_ok() {
            assert!(work_bits(token, nonce) >= u32::from(token.get(9).copied().unwrap_or(u8::MAX)));
            assert!(key.check(callee, caller, token, nonce, now).is_err());
        }
    }
    let bits = token.first().copied().unwrap_or(0) % (MAX_DIFFICULTY_BITS + 8);
    if let Ok(found) = solve(token, bits, 256) {
        assert!(found < 256);
        assert!(work_bits(token, found) >= u32::from(bits));
    }
});

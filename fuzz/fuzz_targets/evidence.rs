#![no_main]
//! An evidence log and its head as someone with the disk could leave them: the first line is
//! the head, the rest the log, checked against a fixed key (the seeds are signed with it). No
//! panic; what verifies is what the head says, in order, and a retention plan of it verifies
//! too.

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use rampart_sentinel::evidence::{Head, plan_prune, verify};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (head, log) = text.split_once('\n').unwrap_or((text, ""));
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let public = key.verifying_key();
    let Ok(verified) = verify(log, head, &public) else { return };
    let count = u64::try_from(verified.entries.len()).unwrap_or(u64::MAX);
    assert_eq!(count, verified.head.next_seq - verified.head.first_seq);
    assert!(verified.entries.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    let parsed = Head::from_line(head, &public).expect("a head that verified parses");
    if let Some(before) = verified.entries.get(verified.entries.len() / 2).map(|e| e.at_ms)
        && let Ok(Some(pruned)) = plan_prune(log, parsed, &public, before)
    {
        verify(&pruned.log, &pruned.head.to_line(&key), &public).expect("what retention keeps verifies");
    }
});

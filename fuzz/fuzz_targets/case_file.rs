#![no_main]
//! A case file as anyone could hand it to an investigator: checked against a fixed key (the
//! seeds are signed with it) and against the key it names. No panic; what verifies carries
//! entries in order, and is signed by the key that was expected.

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use rampart_sentinel::case::verify_case;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let key = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    if let Ok(verified) = verify_case(text, Some(&key)) {
        assert_eq!(verified.signed_by, key);
        assert!(verified.entries.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    }
    let _ = verify_case(text, None);
});

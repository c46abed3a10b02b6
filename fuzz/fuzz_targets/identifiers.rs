#![no_main]
//! The identifier parsers of `rampart-core` on arbitrary text: they must never panic, and the
//! canonical form of anything they accept must parse back to the same value.

use libfuzzer_sys::fuzz_target;
use rampart_core::{LinkCode, PhoneNumber, Username, VerificationCode};

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);

    if let Ok(phone) = PhoneNumber::parse(&input) {
        let e164 = phone.as_e164();
        assert!(
            e164.starts_with('+') && (9..=16).contains(&e164.len()),
            "bad canonical phone number"
        );
        assert!(
            e164.bytes().skip(1).all(|b| b.is_ascii_digit()),
            "bad canonical phone number"
        );
        // Compare the text, not the values: Debug redacts phone numbers.
        let again = PhoneNumber::parse(e164).map(|p| p.as_e164().to_owned());
        assert_eq!(
            again.as_deref(),
            Ok(e164),
            "phone number does not round-trip through as_e164"
        );
    }

    if let Ok(name) = Username::parse(&input) {
        let again = Username::parse(name.as_str());
        assert_eq!(
            again.as_ref(),
            Ok(&name),
            "username does not round-trip through as_str"
        );
        // The displayed form (with '@') is accepted too.
        assert_eq!(
            Username::parse(&name.to_string()).as_ref(),
            Ok(&name),
            "username does not round-trip through Display"
        );
    }

    if let Ok(code) = LinkCode::parse(&input) {
        let again = LinkCode::parse(&code.display());
        // Debug redacts codes: compare the canonical text so a failure is readable.
        assert_eq!(
            again.as_ref().map(LinkCode::as_str),
            Ok(code.as_str()),
            "link code does not round-trip through display"
        );
        assert_eq!(
            LinkCode::parse(code.as_str()).as_ref(),
            Ok(&code),
            "link code does not round-trip through as_str"
        );
    }

    if let Ok(code) = VerificationCode::parse(&input) {
        let again = VerificationCode::parse(code.as_str());
        assert_eq!(
            again.as_ref().map(VerificationCode::as_str),
            Ok(code.as_str()),
            "verification code does not round-trip"
        );
    }
});

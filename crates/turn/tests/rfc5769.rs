//! RFC 5769's four test vectors: decoding, MESSAGE-INTEGRITY, FINGERPRINT, XOR addresses, the
//! long-term key with SASLprep, and the encoder reproducing them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::net::SocketAddr;

use rampart_turn::integrity::{encode_protected, saslprep, verify_fingerprint, verify_message_integrity};
use rampart_turn::rfc5769::*;
use rampart_turn::{
    Attribute, AttributeType, Class, IntegrityError, IntegrityKey, Message, Method, Nonce, Realm, Software,
    TransactionId, Username,
};

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
}

fn short_term_key() -> IntegrityKey {
    IntegrityKey::short_term(SHORT_TERM_PASSWORD).unwrap()
}

#[test]
fn vector_2_1_sample_request() {
    let decoded = Message::decode(&SAMPLE_REQUEST).unwrap();
    let message = &decoded.message;
    assert_eq!((message.class, message.method), (Class::Request, Method::Binding));
    assert_eq!(message.transaction_id, TransactionId(TRANSACTION_ID));
    assert_eq!(message.software().map(Software::as_str), Some("STUN test client"));
    // The username is padded with spaces, which are not part of it.
    assert_eq!(message.username().map(Username::as_str), Some("evtj:h6vY"));
    assert_eq!(
        message.attributes.last(),
        Some(&Attribute::Fingerprint(0xe57a_3bcf)),
        "FINGERPRINT is the last attribute"
    );
    assert!(message.has(AttributeType::MESSAGE_INTEGRITY));
    // PRIORITY (0x0024, ICE) is comprehension-required and unknown here: a server would answer
    // 420. ICE-CONTROLLED (0x8029) is comprehension-optional and skipped.
    assert_eq!(decoded.unknown_comprehension_required, [AttributeType(0x0024)]);
    assert_eq!(message.attributes.len(), 4);

    verify_message_integrity(&SAMPLE_REQUEST, &short_term_key()).unwrap();
    verify_fingerprint(&SAMPLE_REQUEST).unwrap();
}

#[test]
fn vector_2_2_sample_ipv4_response() {
    let message = Message::decode(&SAMPLE_IPV4_RESPONSE).unwrap();
    assert!(message.unknown_comprehension_required.is_empty());
    let message = message.message;
    assert_eq!((message.class, message.method), (Class::SuccessResponse, Method::Binding));
    assert_eq!(message.software().map(Software::as_str), Some("test vector"));
    assert_eq!(message.xor_mapped_address(), Some("192.0.2.1:32853".parse().unwrap()));
    verify_message_integrity(&SAMPLE_IPV4_RESPONSE, &short_term_key()).unwrap();
    verify_fingerprint(&SAMPLE_IPV4_RESPONSE).unwrap();
}

#[test]
fn vector_2_3_sample_ipv6_response() {
    let message = Message::decode(&SAMPLE_IPV6_RESPONSE).unwrap().message;
    assert_eq!((message.class, message.method), (Class::SuccessResponse, Method::Binding));
    assert_eq!(message.software().map(Software::as_str), Some("test vector"));
    let expected: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853".parse().unwrap();
    assert_eq!(message.xor_mapped_address(), Some(expected));
    verify_message_integrity(&SAMPLE_IPV6_RESPONSE, &short_term_key()).unwrap();
    verify_fingerprint(&SAMPLE_IPV6_RESPONSE).unwrap();
}

#[test]
fn vector_2_4_sample_request_with_long_term_authentication() {
    let message = Message::decode(&SAMPLE_REQUEST_LONG_TERM).unwrap().message;
    assert_eq!((message.class, message.method), (Class::Request, Method::Binding));
    assert_eq!(message.transaction_id, TransactionId(LONG_TERM_TRANSACTION_ID));
    assert_eq!(message.username().map(Username::as_str), Some(LONG_TERM_USERNAME));
    assert_eq!(message.nonce().map(Nonce::as_str), Some(LONG_TERM_NONCE));
    assert_eq!(message.realm().map(Realm::as_str), Some(LONG_TERM_REALM));
    assert_eq!(verify_fingerprint(&SAMPLE_REQUEST_LONG_TERM), Err(IntegrityError::MissingFingerprint));

    // The password needs SASLprep: soft hyphen removed, NFKC for U+00AA and U+2168.
    assert_eq!(saslprep(LONG_TERM_PASSWORD).unwrap().as_str(), LONG_TERM_PASSWORD_PREPARED);
    let key = IntegrityKey::long_term(LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD).unwrap();
    verify_message_integrity(&SAMPLE_REQUEST_LONG_TERM, &key).unwrap();
    // The prepared password gives the same key.
    let prepared =
        IntegrityKey::long_term(LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD_PREPARED).unwrap();
    verify_message_integrity(&SAMPLE_REQUEST_LONG_TERM, &prepared).unwrap();
    // The key is MD5("マトリックス:example.org:TheMatrIX"), as Python's hashlib computes it.
    let python_md5 = IntegrityKey::from_bytes(hex("e8ca7ad59d5eb0518e312911d2dab2a9"));
    verify_message_integrity(&SAMPLE_REQUEST_LONG_TERM, &python_md5).unwrap();
    // Without SASLprep (MD5 over the password's raw UTF-8, also from hashlib), with another
    // password, or with the short-term mechanism, it fails.
    for wrong in [
        IntegrityKey::from_bytes(hex("4f4d503a0f546242dd06d8fbe14bbc69")),
        IntegrityKey::long_term(LONG_TERM_USERNAME, LONG_TERM_REALM, "TheMatrix").unwrap(),
        IntegrityKey::short_term(LONG_TERM_PASSWORD).unwrap(),
    ] {
        assert_eq!(
            verify_message_integrity(&SAMPLE_REQUEST_LONG_TERM, &wrong),
            Err(IntegrityError::IntegrityMismatch)
        );
    }
}

#[test]
fn encoder_reproduces_vector_2_4_byte_for_byte() {
    // 2.4 pads with zeros, as this crate does, and has no attribute unknown here.
    let message = Message::new(Class::Request, Method::Binding, TransactionId(LONG_TERM_TRANSACTION_ID))
        .with(Attribute::Username(Username::new(LONG_TERM_USERNAME).unwrap()))
        .with(Attribute::Nonce(Nonce::new(LONG_TERM_NONCE).unwrap()))
        .with(Attribute::Realm(Realm::new(LONG_TERM_REALM).unwrap()));
    let key = IntegrityKey::long_term(LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD).unwrap();
    assert_eq!(encode_protected(&message, Some(&key), false).unwrap(), SAMPLE_REQUEST_LONG_TERM);
    // And re-encoding the decoded vector verbatim too.
    let decoded = Message::decode(&SAMPLE_REQUEST_LONG_TERM).unwrap().message;
    assert_eq!(decoded.encode().unwrap(), SAMPLE_REQUEST_LONG_TERM);
}

/// 2.2 and 2.3 pad SOFTWARE with a space where this crate pads with a zero, which changes both
/// MESSAGE-INTEGRITY and FINGERPRINT. The expected bytes are the vectors with a zero there and
/// both attributes recomputed with Python's `hmac` and `zlib` (an independent implementation;
/// libwebrtc's tests have the same HMAC for 2.2, "kCalculatedHmac2").
#[test]
fn encoder_reproduces_vectors_2_2_and_2_3_with_zero_padding() {
    let expected_ipv4 =
        hex("0101003c 2112a442 b7e7a701 bc34d686 fa87dfae 8022000b 74657374 20766563 746f7200
         00200008 0001a147 e112a643 00080014 5d6b58be ad94e07e ef0dfc12 82a2bd08 43141028
         80280004 25167a15");
    let expected_ipv6 =
        hex("01010048 2112a442 b7e7a701 bc34d686 fa87dfae 8022000b 74657374 20766563 746f7200
         00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9 00080014 bd036d6a 331750df
         e2edc58e 643455cf f5c8e264 80280004 4f260293");
    for (vector, expected, address) in [
        (&SAMPLE_IPV4_RESPONSE[..], expected_ipv4, "192.0.2.1:32853"),
        (&SAMPLE_IPV6_RESPONSE[..], expected_ipv6, "[2001:db8:1234:5678:11:2233:4455:6677]:32853"),
    ] {
        let message = Message::new(Class::SuccessResponse, Method::Binding, TransactionId(TRANSACTION_ID))
            .with(Attribute::Software(Software::new("test vector").unwrap()))
            .with(Attribute::XorMappedAddress(address.parse().unwrap()));
        let encoded = encode_protected(&message, Some(&short_term_key()), true).unwrap();
        assert_eq!(encoded, expected);
        // Same length and the same bytes up to the padding byte as the RFC's vector.
        assert_eq!(encoded.len(), vector.len());
        assert_eq!(encoded[..35], vector[..35]);
        assert_eq!(vector[35], b' ');
        verify_message_integrity(&encoded, &short_term_key()).unwrap();
        verify_fingerprint(&encoded).unwrap();
    }
}

#[test]
fn vectors_with_a_flipped_byte_fail() {
    for (vector, key) in [
        (&SAMPLE_REQUEST[..], short_term_key()),
        (&SAMPLE_IPV4_RESPONSE[..], short_term_key()),
        (&SAMPLE_IPV6_RESPONSE[..], short_term_key()),
        (
            &SAMPLE_REQUEST_LONG_TERM[..],
            IntegrityKey::long_term(LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD).unwrap(),
        ),
    ] {
        let has_fingerprint = verify_fingerprint(vector).is_ok();
        // MESSAGE-INTEGRITY covers everything up to its own end, not the FINGERPRINT after it.
        let integrity_end = if has_fingerprint { vector.len() - 8 } else { vector.len() };
        for index in 0..vector.len() {
            let mut altered = vector.to_vec();
            altered[index] ^= 0x01;
            if index < integrity_end {
                assert!(
                    verify_message_integrity(&altered, &key).is_err(),
                    "byte {index} flipped, integrity holds"
                );
            }
            if has_fingerprint {
                assert!(verify_fingerprint(&altered).is_err(), "byte {index} flipped, fingerprint holds");
            }
        }
    }
}

#[test]
fn truncated_vectors_are_refused_without_panicking() {
    for vector in
        [&SAMPLE_REQUEST[..], &SAMPLE_IPV4_RESPONSE, &SAMPLE_IPV6_RESPONSE, &SAMPLE_REQUEST_LONG_TERM]
    {
        for len in 0..vector.len() {
            assert!(Message::decode(&vector[..len]).is_err(), "a {len}-byte prefix decoded");
            assert!(verify_fingerprint(&vector[..len]).is_err());
            assert!(verify_message_integrity(&vector[..len], &short_term_key()).is_err());
        }
    }
}

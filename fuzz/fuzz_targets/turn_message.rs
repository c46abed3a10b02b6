#![no_main]
//! The relay's decoders on arbitrary bytes, as a TURN server receives them from anyone: STUN
//! messages, ChannelData (datagram and stream framing), MESSAGE-INTEGRITY and FINGERPRINT
//! checks, and TURN REST usernames. None may panic; accepted messages must survive
//! encode → decode unchanged, and ChannelData must re-encode to an equal message.

use libfuzzer_sys::fuzz_target;
use rampart_turn::integrity::{encode_protected, verify_fingerprint, verify_message_integrity};
use rampart_turn::{Attribute, ChannelData, Header, IntegrityKey, Message, SharedSecret, Transport, channel, credentials};

fuzz_target!(|data: &[u8]| {
    let header = Header::decode(data);
    if let Ok(decoded) = Message::decode(data) {
        assert!(header.is_ok(), "a message decoded whose header does not");
        let message = decoded.message;
        let bytes = match message.encode() {
            Ok(bytes) => bytes,
            Err(e) => panic!("decoded message does not re-encode: {e}; message: {message:?}"),
        };
        match Message::decode(&bytes) {
            Ok(again) => {
                assert_eq!(again.message, message, "message changed in an encode/decode round trip");
                assert!(again.unknown_comprehension_required.is_empty());
            }
            Err(e) => panic!("re-encoded message does not decode: {e}; message: {message:?}"),
        }
        // Protecting a message without integrity attributes of its own must verify.
        let key = IntegrityKey::from_bytes(vec![0x5A; 16]);
        let unprotected = Message {
            attributes: message
                .attributes
                .iter()
                .filter(|a| {
                    !matches!(
                        a,
                        Attribute::MessageIntegrity(_)
                            | Attribute::MessageIntegritySha256(_)
                            | Attribute::Fingerprint(_)
                    )
                })
                .cloned()
                .collect(),
            ..message
        };
        if let Ok(protected) = encode_protected(&unprotected, Some(&key), true) {
            assert_eq!(verify_message_integrity(&protected, &key), Ok(()));
            assert_eq!(verify_fingerprint(&protected), Ok(()));
        }
    }
    let key = IntegrityKey::from_bytes(b"fuzz".to_vec());
    let _ = verify_message_integrity(data, &key);
    let _ = verify_fingerprint(data);

    for transport in [Transport::Datagram, Transport::Stream] {
        if let Ok(message) = ChannelData::decode(data, transport) {
            let bytes = match message.encode(transport) {
                Ok(bytes) => bytes,
                Err(e) => panic!("decoded ChannelData does not re-encode: {e}"),
            };
            assert_eq!(ChannelData::decode(&bytes, transport), Ok(message), "ChannelData round trip");
        }
    }
    if let Some(&first) = data.first() {
        let _ = channel::classify(first);
        let _ = channel::demultiplex(first);
    }

    if let Ok(username) = std::str::from_utf8(data) {
        if let Ok(secret) = SharedSecret::new(b"fuzzing-shared-secret".to_vec()) {
            if let Ok(user) = credentials::verify(&secret, username, 1_700_000_000) {
                assert!(user.expires_at() >= 1_700_000_000);
                let _ = user.integrity_key("realm");
            }
        }
    }
});

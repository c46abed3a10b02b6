//! Message codec: every attribute and method round-trips, every limit holds at its edge, and
//! malformed, truncated or oversized input is refused with the right error, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::net::SocketAddr;

use rampart_turn::attribute::AddressFamily;
use rampart_turn::integrity::{encode_protected, verify_fingerprint, verify_message_integrity};
use rampart_turn::limits::{
    MAX_ATTRIBUTES, MAX_DATA_LEN, MAX_MESSAGE_LEN, MAX_TEXT_CHARS, MAX_TEXT_LEN, MAX_USERNAME_LEN,
};
use rampart_turn::{
    Attribute, AttributeError, AttributeType, ChannelNumber, Class, Data, DecodeError, EncodeError,
    ErrorCode, Header, IntegrityKey, Message, Method, Nonce, Realm, ReservationToken, Sha256Tag, Software,
    TransactionId, TransportProtocol, UnknownAttributes, Username,
};

const CLASSES: [Class; 4] = [Class::Request, Class::Indication, Class::SuccessResponse, Class::ErrorResponse];
const ID: TransactionId =
    TransactionId([0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC]);

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// One of every attribute, addresses in both families.
fn every_attribute() -> Vec<Attribute> {
    let mut attributes = Vec::new();
    for address in [addr("192.0.2.1:32853"), addr("[2001:db8:1234:5678:11:2233:4455:6677]:65535")] {
        attributes.push(Attribute::MappedAddress(address));
        attributes.push(Attribute::XorMappedAddress(address));
        attributes.push(Attribute::XorPeerAddress(address));
        attributes.push(Attribute::XorRelayedAddress(address));
    }
    attributes.extend([
        Attribute::Username(Username::new("1700000600:device-42").unwrap()),
        Attribute::Realm(Realm::new("rampart.example").unwrap()),
        Attribute::Nonce(Nonce::new("obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA").unwrap()),
        Attribute::Software(Software::new("rampart 0.1 ✓").unwrap()),
        Attribute::ErrorCode(ErrorCode::new(ErrorCode::UNAUTHENTICATED, "Unauthenticated").unwrap()),
        Attribute::ErrorCode(ErrorCode::new(699, "").unwrap()),
        Attribute::UnknownAttributes(UnknownAttributes::new(vec![AttributeType(0x0024)]).unwrap()),
        Attribute::UnknownAttributes(
            UnknownAttributes::new(vec![AttributeType(0x0024), AttributeType(0x7FFF)]).unwrap(),
        ),
        Attribute::Lifetime { seconds: 600 },
        Attribute::Lifetime { seconds: 0 },
        Attribute::RequestedTransport(TransportProtocol::UDP),
        Attribute::RequestedTransport(TransportProtocol(255)),
        Attribute::RequestedAddressFamily(AddressFamily::IPV6),
        Attribute::AdditionalAddressFamily(AddressFamily::IPV6),
        Attribute::ChannelNumber(ChannelNumber::MIN),
        Attribute::ChannelNumber(ChannelNumber::MAX),
        Attribute::Data(Data::new(b"srtp".to_vec()).unwrap()),
        Attribute::Data(Data::new(vec![0xEE; 5]).unwrap()),
        Attribute::Data(Data::new(Vec::new()).unwrap()),
        Attribute::DontFragment,
        Attribute::EvenPort { reserve_next: true },
        Attribute::EvenPort { reserve_next: false },
        Attribute::ReservationToken(ReservationToken([1, 2, 3, 4, 5, 6, 7, 8])),
        Attribute::MessageIntegrity([0xAB; 20]),
        Attribute::MessageIntegritySha256(Sha256Tag::new(vec![0xCD; 32]).unwrap()),
        Attribute::Fingerprint(0xDEAD_BEEF),
    ]);
    attributes
}

fn round_trip(message: &Message) {
    let bytes = message.encode().unwrap_or_else(|e| panic!("{message:?}: {e}"));
    assert_eq!(bytes.len() % 4, 0);
    let decoded = Message::decode(&bytes).unwrap_or_else(|e| panic!("{message:?}: {e}"));
    assert_eq!(&decoded.message, message);
    assert!(decoded.unknown_comprehension_required.is_empty());
    let header = Header::decode(&bytes).unwrap();
    assert_eq!((header.class, header.method, header.transaction_id), (message.class, message.method, ID));
    assert_eq!(header.attributes_len, bytes.len() - 20);
}

#[test]
fn every_attribute_round_trips_alone() {
    for attribute in every_attribute() {
        round_trip(&Message::new(Class::Request, Method::Allocate, ID).with(attribute));
    }
}

#[test]
fn every_attribute_round_trips_together() {
    // Integrity attributes last, in the order receivers read them.
    let message = Message {
        class: Class::SuccessResponse,
        method: Method::Allocate,
        transaction_id: ID,
        attributes: every_attribute(),
    };
    round_trip(&message);
}

#[test]
fn every_method_in_every_class_it_has() {
    for method in Method::ALL {
        for class in CLASSES {
            let message =
                Message::new(class, method, ID).with(Attribute::Software(Software::new("x").unwrap()));
            if method.allows(class) {
                round_trip(&message);
            } else {
                assert_eq!(message.encode(), Err(EncodeError::ClassNotAllowed { method, class }));
                // The same bytes made by hand are refused by the decoder.
                let mut bytes = Message::new(Class::Request, Method::Binding, ID).encode().unwrap();
                let allowed = Message::new(
                    if matches!(method, Method::Send | Method::Data) {
                        Class::Indication
                    } else {
                        Class::Request
                    },
                    method,
                    ID,
                )
                .encode()
                .unwrap();
                // Put the method's bits with the refused class's bits into the header.
                let class_bits: u16 = match class {
                    Class::Request => 0x0000,
                    Class::Indication => 0x0010,
                    Class::SuccessResponse => 0x0100,
                    Class::ErrorResponse => 0x0110,
                };
                let method_bits = u16::from_be_bytes([allowed[0], allowed[1]]) & !0x0110;
                bytes[..2].copy_from_slice(&(method_bits | class_bits).to_be_bytes());
                assert_eq!(Message::decode(&bytes), Err(DecodeError::ClassNotAllowed { method, class }));
            }
        }
    }
    assert!(Method::Binding.allows(Class::Indication));
    assert!(!Method::Send.allows(Class::Request));
    assert!(!Method::Data.allows(Class::SuccessResponse));
    assert!(!Method::Allocate.allows(Class::Indication));
}

#[test]
fn known_message_types_on_the_wire() {
    let first_two = |class, method| {
        let bytes = Message::new(class, method, ID).encode().unwrap();
        u16::from_be_bytes([bytes[0], bytes[1]])
    };
    assert_eq!(first_two(Class::Request, Method::Allocate), 0x0003);
    assert_eq!(first_two(Class::SuccessResponse, Method::Allocate), 0x0103);
    assert_eq!(first_two(Class::ErrorResponse, Method::Allocate), 0x0113);
    assert_eq!(first_two(Class::Request, Method::Refresh), 0x0004);
    assert_eq!(first_two(Class::Indication, Method::Send), 0x0016);
    assert_eq!(first_two(Class::Indication, Method::Data), 0x0017);
    assert_eq!(first_two(Class::Request, Method::CreatePermission), 0x0008);
    assert_eq!(first_two(Class::Request, Method::ChannelBind), 0x0009);
    assert_eq!(first_two(Class::Indication, Method::Binding), 0x0011);
}

#[test]
fn attribute_values_on_the_wire() {
    let value_of = |attribute: Attribute| {
        let bytes = Message::new(Class::Request, Method::Allocate, ID).with(attribute).encode().unwrap();
        bytes[20..].to_vec()
    };
    assert_eq!(
        value_of(Attribute::Lifetime { seconds: 600 }),
        [0x00, 0x0D, 0x00, 0x04, 0x00, 0x00, 0x02, 0x58]
    );
    assert_eq!(
        value_of(Attribute::RequestedTransport(TransportProtocol::UDP)),
        [0x00, 0x19, 0x00, 0x04, 17, 0, 0, 0]
    );
    assert_eq!(
        value_of(Attribute::ChannelNumber(ChannelNumber::new(0x4001).unwrap())),
        [0x00, 0x0C, 0x00, 0x04, 0x40, 0x01, 0, 0]
    );
    assert_eq!(value_of(Attribute::DontFragment), [0x00, 0x1A, 0x00, 0x00]);
    assert_eq!(value_of(Attribute::EvenPort { reserve_next: true }), [0x00, 0x18, 0x00, 0x01, 0x80, 0, 0, 0]);
    assert_eq!(
        value_of(Attribute::ErrorCode(ErrorCode::new(438, "Stale Nonce").unwrap())),
        [&[0x00, 0x09, 0x00, 0x0F, 0, 0, 4, 38][..], b"Stale Nonce", &[0]].concat()
    );
    assert_eq!(
        value_of(Attribute::UnknownAttributes(UnknownAttributes::new(vec![AttributeType(0x0024)]).unwrap())),
        [0x00, 0x0A, 0x00, 0x02, 0x00, 0x24, 0, 0]
    );
    // XOR-PEER-ADDRESS 192.0.2.1:32853 as in RFC 5769 §2.2.
    assert_eq!(
        value_of(Attribute::XorPeerAddress(addr("192.0.2.1:32853"))),
        [0x00, 0x12, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43]
    );
    // MAPPED-ADDRESS is not XORed.
    assert_eq!(
        value_of(Attribute::MappedAddress(addr("192.0.2.1:32853"))),
        [0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x80, 0x55, 192, 0, 2, 1]
    );
}

#[test]
fn ipv6_xor_depends_on_the_transaction_id() {
    let address = Attribute::XorRelayedAddress(addr("[2001:db8::1]:3478"));
    let one =
        Message::new(Class::SuccessResponse, Method::Allocate, ID).with(address.clone()).encode().unwrap();
    let other = Message::new(Class::SuccessResponse, Method::Allocate, TransactionId([0; 12]))
        .with(address)
        .encode()
        .unwrap();
    assert_ne!(one[28..], other[28..]);
    // The first 4 address bytes are XORed with the cookie only, so they agree.
    assert_eq!(one[28..32], other[28..32]);
}

#[test]
fn error_codes() {
    for (code, ok) in [
        (299, false),
        (300, true),
        (401, true),
        (420, true),
        (699, true),
        (700, false),
        (0, false),
        (u16::MAX, false),
    ] {
        assert_eq!(ErrorCode::new(code, "x").is_ok(), ok, "{code}");
    }
    let error = ErrorCode::new(ErrorCode::UNKNOWN_ATTRIBUTE, "Unknown Attribute").unwrap();
    assert_eq!((error.code(), error.reason()), (420, "Unknown Attribute"));

    let request = Message::new(Class::Request, Method::Allocate, ID);
    let response = Message::error_response(&request, error.clone());
    assert_eq!(
        (response.class, response.method, response.transaction_id),
        (Class::ErrorResponse, Method::Allocate, ID)
    );
    assert_eq!(response.error_code(), Some(&error));
    let success = Message::success_response(&request);
    assert_eq!((success.class, success.transaction_id), (Class::SuccessResponse, ID));

    // Wire values with class 2, class 7 or number 100 are refused; reserved bits are ignored.
    for (value, expected) in [
        ([0u8, 0, 2, 0], Err(AttributeError::InvalidErrorCode { class: 2, number: 0 })),
        ([0, 0, 7, 0], Err(AttributeError::InvalidErrorCode { class: 7, number: 0 })),
        ([0, 0, 4, 100], Err(AttributeError::InvalidErrorCode { class: 4, number: 100 })),
        ([0xFF, 0xFF, 0xFC, 1], Ok(401)),
    ] {
        let bytes = raw_message(&[(0x0009, &value)]);
        let result = Message::decode(&bytes).map(|d| d.message.error_code().map(ErrorCode::code).unwrap());
        match expected {
            Ok(code) => assert_eq!(result, Ok(code)),
            Err(error) => {
                assert_eq!(
                    result,
                    Err(DecodeError::InvalidAttribute { attribute: AttributeType::ERROR_CODE, error })
                )
            }
        }
    }
}

/// A Binding request made by hand: `(type, value)` attributes, zero padding.
fn raw_message(attributes: &[(u16, &[u8])]) -> Vec<u8> {
    let mut bytes = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xA4, 0x42];
    bytes.extend_from_slice(&ID.0);
    for (attribute_type, value) in attributes {
        bytes.extend_from_slice(&attribute_type.to_be_bytes());
        bytes.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(value);
        bytes.resize(bytes.len().next_multiple_of(4), 0);
    }
    let len = u16::try_from(bytes.len() - 20).unwrap();
    bytes[2..4].copy_from_slice(&len.to_be_bytes());
    bytes
}

fn invalid(attribute_type: u16, error: AttributeError) -> Result<Message, DecodeError> {
    Err(DecodeError::InvalidAttribute { attribute: AttributeType(attribute_type), error })
}

fn decode_message(bytes: &[u8]) -> Result<Message, DecodeError> {
    Message::decode(bytes).map(|decoded| decoded.message)
}

#[test]
fn invalid_attribute_values_are_refused() {
    let cases: Vec<(u16, Vec<u8>, AttributeError)> = vec![
        (0x0020, vec![0, 3, 0, 0, 1, 2, 3, 4], AttributeError::UnknownAddressFamily(3)),
        (0x0020, vec![0, 1, 0, 0, 1, 2, 3], AttributeError::InvalidLength { len: 7 }),
        (0x0012, vec![0, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8], AttributeError::InvalidLength { len: 12 }),
        (0x0016, vec![0, 2, 0, 0, 1, 2, 3, 4], AttributeError::InvalidLength { len: 8 }),
        (0x0001, vec![0, 1], AttributeError::InvalidLength { len: 2 }),
        (0x000D, vec![0, 0, 2], AttributeError::InvalidLength { len: 3 }),
        (0x0019, vec![17, 0, 0, 0, 0], AttributeError::InvalidLength { len: 5 }),
        (0x000C, vec![0x50, 0x00, 0, 0], AttributeError::InvalidChannelNumber(0x5000)),
        (0x000C, vec![0x3F, 0xFF, 0, 0], AttributeError::InvalidChannelNumber(0x3FFF)),
        (0x000C, vec![0x40, 0x00], AttributeError::InvalidLength { len: 2 }),
        (0x001A, vec![0, 0, 0, 0], AttributeError::InvalidLength { len: 4 }),
        (0x0018, vec![0x80, 0], AttributeError::InvalidLength { len: 2 }),
        (0x0022, vec![1; 7], AttributeError::InvalidLength { len: 7 }),
        (0x0008, vec![0; 19], AttributeError::InvalidLength { len: 19 }),
        (0x001C, vec![0; 12], AttributeError::InvalidLength { len: 12 }),
        (0x001C, vec![0; 18], AttributeError::InvalidLength { len: 18 }),
        (0x001C, vec![0; 36], AttributeError::InvalidLength { len: 36 }),
        (0x8028, vec![0; 8], AttributeError::InvalidLength { len: 8 }),
        (0x000A, vec![0, 0x24, 0], AttributeError::InvalidLength { len: 3 }),
        (0x0006, vec![0xFF, 0xFE], AttributeError::InvalidUtf8),
        (0x0014, vec![b'a', 0xC0], AttributeError::InvalidUtf8),
        (0x0017, vec![2, 0], AttributeError::InvalidLength { len: 2 }),
        (0x8000, vec![2, 0, 0, 0, 0, 0, 0, 0], AttributeError::InvalidLength { len: 8 }),
    ];
    for (attribute_type, value, error) in cases {
        assert_eq!(decode_message(&raw_message(&[(attribute_type, &value)])), invalid(attribute_type, error));
    }
}

#[test]
fn text_limits_at_their_edges() {
    // USERNAME: 513 bytes, no character limit.
    let at = "é".repeat(MAX_USERNAME_LEN / 2) + "x"; // 513 bytes
    assert_eq!(at.len(), MAX_USERNAME_LEN);
    let message = Message::new(Class::Request, Method::Allocate, ID)
        .with(Attribute::Username(Username::new(at).unwrap()));
    round_trip(&message);
    let over = "x".repeat(MAX_USERNAME_LEN + 1);
    let too_long = AttributeError::TooLong { len: MAX_USERNAME_LEN + 1, max: MAX_USERNAME_LEN };
    assert_eq!(Username::new(over.clone()), Err(too_long.clone()));
    assert_eq!(decode_message(&raw_message(&[(0x0006, over.as_bytes())])), invalid(0x0006, too_long));

    // REALM, NONCE, SOFTWARE: fewer than 128 characters and at most 763 bytes.
    let at = "\u{1F512}".repeat(MAX_TEXT_CHARS); // 127 four-byte characters
    let over_chars = "a".repeat(MAX_TEXT_CHARS + 1);
    let over_bytes = "a".repeat(MAX_TEXT_LEN + 1);
    for attribute_type in [0x0014u16, 0x0015, 0x8022] {
        let decoded = decode_message(&raw_message(&[(attribute_type, at.as_bytes())])).unwrap();
        round_trip(&Message { transaction_id: ID, ..decoded });
        assert_eq!(
            decode_message(&raw_message(&[(attribute_type, over_chars.as_bytes())])),
            invalid(attribute_type, AttributeError::TooManyCharacters { chars: 128, max: MAX_TEXT_CHARS })
        );
        assert_eq!(
            decode_message(&raw_message(&[(attribute_type, over_bytes.as_bytes())])),
            invalid(attribute_type, AttributeError::TooLong { len: MAX_TEXT_LEN + 1, max: MAX_TEXT_LEN })
        );
    }
    assert_eq!(
        Realm::new(over_chars.clone()),
        Err(AttributeError::TooManyCharacters { chars: 128, max: 127 })
    );
    assert_eq!(
        Nonce::new(over_chars.clone()).map(|_| ()),
        Err(AttributeError::TooManyCharacters { chars: 128, max: 127 })
    );
    assert_eq!(Software::new(over_bytes).map(|_| ()), Err(AttributeError::TooLong { len: 764, max: 763 }));
    assert_eq!(
        ErrorCode::new(400, over_chars).map(|_| ()),
        Err(AttributeError::TooManyCharacters { chars: 128, max: 127 })
    );
}

#[test]
fn data_limit_at_its_edge() {
    let at = Data::new(vec![0x5A; MAX_DATA_LEN]).unwrap();
    let message = Message::new(Class::Indication, Method::Send, ID)
        .with(Attribute::XorPeerAddress(addr("[2001:db8::2]:5000")))
        .with(Attribute::Data(at));
    round_trip(&message);
    assert_eq!(
        Data::new(vec![0; MAX_DATA_LEN + 1]).map(|_| ()),
        Err(AttributeError::TooLong { len: MAX_DATA_LEN + 1, max: MAX_DATA_LEN })
    );
    let over = vec![0; MAX_DATA_LEN + 1];
    assert_eq!(
        decode_message(&raw_message(&[(0x0013, &over)])),
        invalid(0x0013, AttributeError::TooLong { len: MAX_DATA_LEN + 1, max: MAX_DATA_LEN })
    );
}

#[test]
fn message_size_limit() {
    // Exactly the limit, filled by an unknown comprehension-optional attribute: accepted.
    let filler = vec![0u8; MAX_MESSAGE_LEN - 20 - 4];
    let at_limit = raw_message(&[(0x8050, &filler)]);
    assert_eq!(at_limit.len(), MAX_MESSAGE_LEN);
    assert_eq!(decode_message(&at_limit).unwrap().attributes, []);
    // Four bytes more: refused before the attributes are read.
    let filler = vec![0u8; MAX_MESSAGE_LEN - 20];
    let over = raw_message(&[(0x8050, &filler)]);
    assert_eq!(
        decode_message(&over),
        Err(DecodeError::TooLong { len: MAX_MESSAGE_LEN + 4, max: MAX_MESSAGE_LEN })
    );
    // A whole UDP datagram of zeros is refused as too long too, not read.
    assert_eq!(
        decode_message(&[0u8; 65_535]),
        Err(DecodeError::TooLong { len: 65_535, max: MAX_MESSAGE_LEN })
    );

    // The encoder refuses what would exceed the limit.
    let big = || Attribute::Realm(Realm::new("r".repeat(MAX_TEXT_CHARS)).unwrap());
    let mut message = Message::new(Class::Request, Method::Allocate, ID);
    while message.attributes.len() < 12 {
        message = message.with(big());
    }
    assert_eq!(message.encode(), Err(EncodeError::TooLong { len: 20 + 12 * 132, max: MAX_MESSAGE_LEN }));
}

#[test]
fn attribute_count_limit() {
    let dont_fragment = [(0x001Au16, &[][..]); MAX_ATTRIBUTES + 1];
    let at = raw_message(&dont_fragment[..MAX_ATTRIBUTES]);
    assert_eq!(decode_message(&at).unwrap().attributes.len(), MAX_ATTRIBUTES);
    let over = raw_message(&dont_fragment);
    assert_eq!(decode_message(&over), Err(DecodeError::TooManyAttributes { max: MAX_ATTRIBUTES }));
    // Skipped attributes count too.
    let optional = [(0x8050u16, &[][..]); MAX_ATTRIBUTES + 1];
    assert_eq!(
        decode_message(&raw_message(&optional)),
        Err(DecodeError::TooManyAttributes { max: MAX_ATTRIBUTES })
    );

    let message = Message {
        class: Class::Request,
        method: Method::Allocate,
        transaction_id: ID,
        attributes: vec![Attribute::DontFragment; MAX_ATTRIBUTES + 1],
    };
    assert_eq!(
        message.encode(),
        Err(EncodeError::TooManyAttributes { count: MAX_ATTRIBUTES + 1, max: MAX_ATTRIBUTES })
    );
    let too_many_unknown = (0..=MAX_ATTRIBUTES).map(|t| AttributeType(u16::try_from(t).unwrap())).collect();
    assert_eq!(
        UnknownAttributes::new(too_many_unknown),
        Err(AttributeError::TooManyEntries { count: MAX_ATTRIBUTES + 1, max: MAX_ATTRIBUTES })
    );
}

#[test]
fn header_errors() {
    let valid = Message::new(Class::Request, Method::Binding, ID)
        .with(Attribute::Software(Software::new("abc").unwrap()))
        .encode()
        .unwrap();
    for len in 0..20 {
        assert_eq!(decode_message(&valid[..len]), Err(DecodeError::TooShort { len }));
        assert_eq!(Header::decode(&valid[..len]), Err(DecodeError::TooShort { len }));
    }
    // Truncated inside the attributes: the header's length no longer matches.
    for len in 20..valid.len() {
        assert_eq!(
            decode_message(&valid[..len]),
            Err(DecodeError::LengthMismatch { declared: valid.len() - 20, actual: len - 20 })
        );
    }
    // Trailing bytes.
    let mut longer = valid.clone();
    longer.extend_from_slice(&[0; 4]);
    assert_eq!(decode_message(&longer), Err(DecodeError::LengthMismatch { declared: 8, actual: 12 }));

    let with = |index: usize, byte: u8| {
        let mut bytes = valid.clone();
        bytes[index] = byte;
        decode_message(&bytes)
    };
    assert_eq!(with(0, 0x40), Err(DecodeError::NotStun));
    assert_eq!(with(0, 0x80), Err(DecodeError::NotStun));
    assert_eq!(with(4, 0x20), Err(DecodeError::BadMagicCookie(0x2012_A442)));
    assert_eq!(with(3, 0x09), Err(DecodeError::UnalignedLength(9)));
    assert_eq!(with(1, 0x02), Err(DecodeError::UnknownMethod(0x002)));
    assert_eq!(with(1, 0x0A), Err(DecodeError::UnknownMethod(0x00A)));
    assert_eq!(with(0, 0x3E), Err(DecodeError::UnknownMethod(0xF81)));
}

#[test]
fn attribute_running_past_the_end_is_refused() {
    let mut bytes = raw_message(&[(0x8022, b"abcd")]);
    // Claim 8 bytes of value where 4 follow.
    bytes[23] = 8;
    assert_eq!(
        decode_message(&bytes),
        Err(DecodeError::TruncatedAttribute { attribute: AttributeType::SOFTWARE })
    );
    // Claim 5: the value fits but its padding does not.
    bytes[23] = 5;
    assert_eq!(
        decode_message(&bytes),
        Err(DecodeError::TruncatedAttribute { attribute: AttributeType::SOFTWARE })
    );
    // 65,535 bytes.
    bytes[22] = 0xFF;
    bytes[23] = 0xFF;
    assert_eq!(
        decode_message(&bytes),
        Err(DecodeError::TruncatedAttribute { attribute: AttributeType::SOFTWARE })
    );
}

#[test]
fn unknown_attributes_are_reported_or_skipped() {
    let bytes = raw_message(&[
        (0x0030, b"x"),          // unknown, comprehension-required
        (0x8022, b"abc"),        // SOFTWARE
        (0x8030, b"skipped"),    // unknown, comprehension-optional
        (0x7FFF, b""),           // unknown, comprehension-required
        (0x0030, b"again"),      // reported once
        (0x000D, &[0, 0, 0, 9]), // LIFETIME
    ]);
    let decoded = Message::decode(&bytes).unwrap();
    assert_eq!(decoded.unknown_comprehension_required, [AttributeType(0x0030), AttributeType(0x7FFF)]);
    assert_eq!(
        decoded.message.attributes,
        [Attribute::Software(Software::new("abc").unwrap()), Attribute::Lifetime { seconds: 9 }]
    );
    assert!(AttributeType(0x7FFF).is_comprehension_required());
    assert!(!AttributeType(0x8000).is_comprehension_required());
    assert_eq!(AttributeType(0x0030).to_string(), "0x0030");
    assert_eq!(AttributeType::XOR_PEER_ADDRESS.to_string(), "XOR-PEER-ADDRESS (0x0012)");
}

#[test]
fn padding_content_and_reserved_bits_are_ignored() {
    // USERNAME "abc" padded with 0xFF, EVEN-PORT with every reserved bit set, REQUESTED-TRANSPORT
    // and CHANNEL-NUMBER with reserved bytes set, an address with the reserved byte set.
    let mut bytes = raw_message(&[
        (0x0006, b"abc"),
        (0x0018, &[0xFF]),
        (0x0019, &[17, 0xFF, 0xFF, 0xFF]),
        (0x000C, &[0x40, 0x10, 0xFF, 0xFF]),
        (0x0001, &[0xFF, 0x01, 0x00, 0x50, 10, 0, 0, 1]),
    ]);
    bytes[27] = 0xFF;
    bytes[33..36].copy_from_slice(&[0xFF; 3]);
    let message = decode_message(&bytes).unwrap();
    assert_eq!(
        message.attributes,
        [
            Attribute::Username(Username::new("abc").unwrap()),
            Attribute::EvenPort { reserve_next: true },
            Attribute::RequestedTransport(TransportProtocol::UDP),
            Attribute::ChannelNumber(ChannelNumber::new(0x4010).unwrap()),
            Attribute::MappedAddress(addr("10.0.0.1:80")),
        ]
    );
    assert_eq!(message.requested_transport(), Some(TransportProtocol::UDP));
    assert_eq!(message.channel_number(), ChannelNumber::new(0x4010).ok());
    round_trip(&Message { transaction_id: ID, ..message });
}

#[test]
fn encoder_keeps_integrity_ordering() {
    let base = || Message::new(Class::Request, Method::Refresh, ID);
    let fingerprint = Attribute::Fingerprint(1);
    let integrity = Attribute::MessageIntegrity([0; 20]);
    let sha256 = Attribute::MessageIntegritySha256(Sha256Tag::new(vec![0; 16]).unwrap());
    let lifetime = Attribute::Lifetime { seconds: 0 };

    round_trip(
        &base().with(lifetime.clone()).with(integrity.clone()).with(sha256.clone()).with(fingerprint.clone()),
    );
    round_trip(&base().with(sha256.clone()).with(fingerprint.clone()));
    assert_eq!(
        base().with(fingerprint.clone()).with(lifetime.clone()).encode(),
        Err(EncodeError::AttributeAfterFingerprint { attribute: AttributeType::LIFETIME })
    );
    assert_eq!(
        base().with(integrity.clone()).with(lifetime.clone()).encode(),
        Err(EncodeError::AttributeAfterIntegrity { attribute: AttributeType::LIFETIME })
    );
    assert_eq!(
        base().with(sha256.clone()).with(integrity.clone()).encode(),
        Err(EncodeError::AttributeAfterIntegrity { attribute: AttributeType::MESSAGE_INTEGRITY })
    );
    assert_eq!(
        base().with(integrity.clone()).with(integrity).encode(),
        Err(EncodeError::AttributeAfterIntegrity { attribute: AttributeType::MESSAGE_INTEGRITY })
    );
    assert_eq!(
        base().with(fingerprint.clone()).with(fingerprint).encode(),
        Err(EncodeError::AttributeAfterFingerprint { attribute: AttributeType::FINGERPRINT })
    );
}

#[test]
fn accessors() {
    let peers = [addr("192.0.2.10:1000"), addr("[2001:db8::10]:2000")];
    let message = Message::new(Class::SuccessResponse, Method::Allocate, ID)
        .with(Attribute::XorRelayedAddress(addr("203.0.113.5:49152")))
        .with(Attribute::XorMappedAddress(addr("198.51.100.7:6000")))
        .with(Attribute::Lifetime { seconds: 600 })
        .with(Attribute::XorPeerAddress(peers[0]))
        .with(Attribute::XorPeerAddress(peers[1]))
        .with(Attribute::Data(Data::new(b"payload".to_vec()).unwrap()));
    assert_eq!(message.xor_relayed_address(), Some(addr("203.0.113.5:49152")));
    assert_eq!(message.xor_mapped_address(), Some(addr("198.51.100.7:6000")));
    assert_eq!(message.lifetime(), Some(600));
    assert_eq!(message.xor_peer_addresses().collect::<Vec<_>>(), peers);
    assert_eq!(message.data(), Some(&b"payload"[..]));
    assert_eq!(message.username(), None);
    assert!(message.has(AttributeType::LIFETIME));
    assert!(!message.has(AttributeType::USERNAME));
    // Debug of DATA shows its length, not its bytes.
    assert!(format!("{message:?}").contains("Data(7 bytes)"));
}

/// A small deterministic generator (xorshift64*), so the loop below needs no dependency and
/// always checks the same messages.
struct Generator(u64);

impl Generator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(bound).unwrap()).unwrap()
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
    }

    fn text(&mut self, max_chars: usize) -> String {
        const CHARS: [char; 8] = ['a', 'Z', '0', ':', ' ', 'é', 'マ', '🔒'];
        let len = self.below(max_chars + 1);
        (0..len).map(|_| CHARS[self.below(CHARS.len())]).collect()
    }

    fn address(&mut self) -> SocketAddr {
        let port = u16::from_le_bytes([self.bytes(1)[0], self.bytes(1)[0]]);
        if self.below(2) == 0 {
            let octets: [u8; 4] = self.bytes(4).try_into().unwrap();
            SocketAddr::from((octets, port))
        } else {
            let octets: [u8; 16] = self.bytes(16).try_into().unwrap();
            SocketAddr::from((octets, port))
        }
    }

    fn attribute(&mut self) -> Attribute {
        match self.below(19) {
            0 => Attribute::MappedAddress(self.address()),
            1 => Attribute::XorMappedAddress(self.address()),
            2 => Attribute::XorPeerAddress(self.address()),
            3 => Attribute::XorRelayedAddress(self.address()),
            4 => Attribute::Username(Username::new(self.text(40)).unwrap()),
            5 => Attribute::Realm(Realm::new(self.text(MAX_TEXT_CHARS)).unwrap()),
            6 => Attribute::Nonce(Nonce::new(self.text(30)).unwrap()),
            7 => Attribute::Software(Software::new(self.text(20)).unwrap()),
            8 => Attribute::ErrorCode(
                ErrorCode::new(u16::try_from(300 + self.below(400)).unwrap(), self.text(20)).unwrap(),
            ),
            9 => {
                let types = (0..self.below(5))
                    .map(|_| AttributeType(u16::try_from(self.below(0x8000)).unwrap()))
                    .collect();
                Attribute::UnknownAttributes(UnknownAttributes::new(types).unwrap())
            }
            10 => Attribute::Lifetime { seconds: u32::try_from(self.next() >> 32).unwrap() },
            11 => Attribute::RequestedTransport(TransportProtocol(self.bytes(1)[0])),
            12 => Attribute::RequestedAddressFamily(AddressFamily(self.bytes(1)[0])),
            13 => Attribute::ChannelNumber(
                ChannelNumber::new(0x4000 + u16::try_from(self.below(0x1000)).unwrap()).unwrap(),
            ),
            14 => {
                let len = self.below(200);
                Attribute::Data(Data::new(self.bytes(len)).unwrap())
            }
            15 => Attribute::DontFragment,
            16 => Attribute::EvenPort { reserve_next: self.below(2) == 1 },
            17 => Attribute::ReservationToken(ReservationToken(self.bytes(8).try_into().unwrap())),
            _ => Attribute::AdditionalAddressFamily(AddressFamily(self.bytes(1)[0])),
        }
    }

    fn message(&mut self) -> Message {
        let method = Method::ALL[self.below(Method::ALL.len())];
        let class = loop {
            let class = CLASSES[self.below(CLASSES.len())];
            if method.allows(class) {
                break class;
            }
        };
        let transaction_id = TransactionId(self.bytes(12).try_into().unwrap());
        let attributes = (0..self.below(8)).map(|_| self.attribute()).collect();
        Message { class, method, transaction_id, attributes }
    }
}

#[test]
fn generated_messages_round_trip_and_verify() {
    let mut generator = Generator(0x5EED_CAFE_F00D_0001);
    let key = IntegrityKey::long_term("user", "realm", "password").unwrap();
    let mut encoded = 0;
    for _ in 0..3000 {
        let message = generator.message();
        let Ok(bytes) = message.encode() else {
            // Only size can stop a generated message (long texts and data add up).
            assert!(matches!(message.encode(), Err(EncodeError::TooLong { .. })));
            continue;
        };
        encoded += 1;
        let decoded = Message::decode(&bytes).unwrap();
        assert_eq!(decoded.message, message);
        assert!(decoded.unknown_comprehension_required.is_empty());

        if let Ok(protected) = encode_protected(&message, Some(&key), true) {
            verify_message_integrity(&protected, &key).unwrap();
            verify_fingerprint(&protected).unwrap();
            let decoded = Message::decode(&protected).unwrap().message;
            assert_eq!(decoded.attributes[..message.attributes.len()], message.attributes[..]);
        }
    }
    assert!(encoded > 2500, "only {encoded} generated messages fit");
}

#[test]
fn mutated_messages_never_panic_and_round_trip_when_accepted() {
    let mut generator = Generator(0x0BAD_5EED_0000_0002);
    let key = IntegrityKey::short_term("password").unwrap();
    for _ in 0..3000 {
        let message = generator.message();
        let Ok(mut bytes) = encode_protected(&message, Some(&key), generator.below(2) == 0) else { continue };
        for _ in 0..=generator.below(4) {
            match generator.below(3) {
                0 if !bytes.is_empty() => {
                    let index = generator.below(bytes.len());
                    bytes[index] ^= 1 << generator.below(8);
                }
                0 | 1 => bytes.truncate(generator.below(bytes.len() + 1)),
                _ => {
                    let index = generator.below(bytes.len() + 1);
                    let extra_len = generator.below(9);
                    let extra = generator.bytes(extra_len);
                    bytes.splice(index..index, extra);
                }
            }
        }
        let _ = verify_message_integrity(&bytes, &key);
        let _ = verify_fingerprint(&bytes);
        if let Ok(decoded) = Message::decode(&bytes) {
            let again = decoded.message.encode().unwrap();
            assert_eq!(Message::decode(&again).unwrap().message, decoded.message);
        }
    }
}

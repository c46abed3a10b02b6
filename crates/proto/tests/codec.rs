#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Round trips and every class of bad input the decoder must refuse with a clear error.

use bytes::Bytes;
use rampart_core::challenge::TOKEN_BYTES;
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
        ClientRequest::Authenticate { device: DeviceId(3), secret: secret(), client: "rampart/0.1.0".into() },
        ClientRequest::Authenticate { device: DeviceId(3), secret: secret(), client: String::new() },
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
                challenge: None,
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
        let frame = ClientFrame { request_id: 77, request };
        let bytes = encode_client_frame(&frame);
        assert_eq!(decode_client_frame(&bytes).as_ref(), Ok(&frame), "the whole frame round-trips");
        let mut refused = 0;
        for cut in 0..bytes.len() {
            // Some prefixes are themselves valid frames (protobuf has no length header, so
            // dropping whole trailing fields leaves a well-formed message). What must never
            // happen is a cut frame decoding as the frame it was cut from: the missing bytes
            // would have been ignored.
            match decode_client_frame(&bytes[..cut]) {
                Ok(f) => assert_ne!(f, frame, "a frame cut at {cut} of {} decodes as the whole", bytes.len()),
                Err(_) => refused += 1,
            }
        }
        // At least the empty and the version-only prefixes are refused.
        assert!(refused >= 2.min(bytes.len()), "{frame:?}: {refused} of {} prefixes refused", bytes.len());
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

// ---------------------------------------------------------------- calls

fn group() -> GroupId {
    GroupId::from_slice(&[5u8; 16]).unwrap()
}

/// A call set-up to account 2 in `group()`, with call id 7s.
fn place_call(offer: Bytes, answer: Option<ChallengeAnswer>) -> ClientRequest {
    ClientRequest::PlaceCall {
        call: call::CallId([7; 16]),
        callee: AccountId(2),
        group: group(),
        media: call::MediaKind::Audio,
        offer,
        answer,
    }
}

fn call_frames() -> Vec<ClientRequest> {
    let call = call::CallId([7; 16]);
    vec![
        place_call(Bytes::from_static(b"mls ciphertext"), None),
        place_call(
            Bytes::from_static(b"mls ciphertext"),
            Some(ChallengeAnswer { token: Bytes::from(vec![1u8; TOKEN_BYTES]), nonce: u64::MAX }),
        ),
        ClientRequest::FetchOffer { call },
        ClientRequest::CallSignal { call, kind: call::SignalKind::Answer, body: Bytes::from_static(b"ct") },
        ClientRequest::CallSignal { call, kind: call::SignalKind::Hangup, body: Bytes::new() },
        ClientRequest::FetchRelayCredentials { call },
    ]
}

#[test]
fn call_requests_round_trip() {
    for request in call_frames() {
        let frame = ClientFrame { request_id: 1, request };
        assert_eq!(decode_client_frame(&encode_client_frame(&frame)).unwrap(), frame);
    }
    let responses = vec![
        ResponseBody::CallPlaced { ringing_devices: 2 },
        ResponseBody::CallOffer { group: group(), offer: Bytes::from_static(b"offer") },
        ResponseBody::RelayCredentials(RelayCredentials {
            username: "1763900000:abc.def".into(),
            password: "c2VjcmV0".into(),
            relays: vec!["127.0.0.1:3478".into()],
            expires_at_ms: 1_763_900_000_000,
        }),
    ];
    for r in responses {
        let frame = ServerFrame::Response { request_id: 3, result: Ok(r) };
        assert_eq!(decode_server_frame(&encode_server_frame(&frame)).unwrap(), frame);
    }
}

fn challenged(token: Vec<u8>, difficulty_bits: u8) -> ServerFrame {
    ServerFrame::Response {
        request_id: 4,
        result: Err(ErrorBody {
            code: ErrorCode::ChallengeRequired,
            message: "prove work".into(),
            retry_after_ms: 0,
            challenge: Some(Challenge { token, difficulty_bits, expires_at_ms: 99 }),
        }),
    }
}

#[test]
fn call_challenges_round_trip_and_odd_ones_are_refused() {
    let frame = challenged(vec![3u8; TOKEN_BYTES], 20);
    assert_eq!(decode_server_frame(&encode_server_frame(&frame)).unwrap(), frame);
    // A token of another size, from a server or a client, is refused by the decoder.
    for len in [0, 1, TOKEN_BYTES - 1, TOKEN_BYTES + 1, 4096] {
        let err = decode_server_frame(&encode_server_frame(&challenged(vec![3u8; len], 20))).unwrap_err();
        assert!(err.to_string().contains("challenge.token"), "{err}");
        let place = place_call(
            Bytes::from_static(b"x"),
            Some(ChallengeAnswer { token: Bytes::from(vec![1u8; len]), nonce: 1 }),
        );
        let err = decode_client_frame(&encode_client_frame(&ClientFrame { request_id: 1, request: place }))
            .unwrap_err();
        assert!(err.to_string().contains("answer.token"), "{err}");
    }
    // A difficulty over what clients give decodes: the client's solver refuses it with its own
    // error, before any work.
    let hard = challenged(vec![3u8; TOKEN_BYTES], 200);
    assert_eq!(decode_server_frame(&encode_server_frame(&hard)).unwrap(), hard);
}

#[test]
fn call_requests_that_misfit_are_marked_as_call_envelopes() {
    let call = call::CallId([7; 16]);
    let bad = [
        // An offer over the limit.
        place_call(Bytes::from(vec![0u8; limits::MAX_CALL_OFFER_BYTES + 1]), None),
        // An empty offer.
        place_call(Bytes::new(), None),
        // Offers do not travel as later signals.
        ClientRequest::CallSignal { call, kind: call::SignalKind::Offer, body: Bytes::from_static(b"x") },
        // A hang-up smuggling bytes (ending signals are their kind alone).
        ClientRequest::CallSignal {
            call,
            kind: call::SignalKind::Hangup,
            body: Bytes::from_static(b"payload"),
        },
        // An answer without content.
        ClientRequest::CallSignal { call, kind: call::SignalKind::Answer, body: Bytes::new() },
        // A signal over the limit.
        ClientRequest::CallSignal {
            call,
            kind: call::SignalKind::Candidates,
            body: Bytes::from(vec![1u8; limits::MAX_CALL_SIGNAL_BYTES + 1]),
        },
    ];
    for request in bad {
        let err =
            decode_client_frame(&encode_client_frame(&ClientFrame { request_id: 1, request })).unwrap_err();
        assert!(err.is_call_envelope(), "{err}");
        assert_eq!(err.code(), ErrorCode::BadRequest);
    }
    // A call id of the wrong length: encode a valid frame, then patch in a 15-byte id by hand
    // is not possible through the typed API; a non-call request never counts as a call misfit.
    let err = decode_client_frame(&[PROTOCOL_VERSION, 0xff]).unwrap_err();
    assert!(!err.is_call_envelope());
}

#[test]
fn ring_notice_has_a_fixed_small_schema() {
    let notice = call::RingNotice {
        call: call::CallId([0xff; 16]),
        caller: AccountId(u64::MAX),
        caller_device: DeviceId(u64::MAX),
        media: call::MediaKind::Audio,
        sent_at_ms: u64::MAX,
    };
    let bytes = encode_envelope(&Envelope::Ring(notice));
    assert!(bytes.len() <= limits::MAX_RING_ENVELOPE_BYTES, "{} bytes", bytes.len());
    assert_eq!(decode_envelope(&bytes).unwrap(), Envelope::Ring(notice));
    // A ring envelope carrying anything beyond the schema is refused: here a payload smuggled
    // into a ring by re-using the call-signal encoder's fields.
    let smuggled = encode_envelope(&Envelope::CallSignal {
        call: notice.call,
        kind: call::SignalKind::Offer,
        group: group(),
        payload: Bytes::from_static(b"exploit"),
    });
    let mut patched = smuggled.clone();
    // Field 1 (kind) is the first byte pair: 0x08 then the enum value; CALL_SIGNAL = 7, RING = 6.
    assert_eq!(&patched[..2], &[0x08, 7]);
    patched[1] = 6;
    assert!(decode_envelope(&patched).is_err());
}

#[test]
fn server_notices_are_bounded_plain_text() {
    let text = "Accounts that called you were part of an attack.\nUpdate the app.".to_owned();
    let bytes = encode_envelope(&Envelope::ServerNotice(text.clone()));
    assert_eq!(decode_envelope(&bytes).unwrap(), Envelope::ServerNotice(text));
    // Escape sequences (a server writing to a terminal), other control characters, empty and
    // oversized notices are refused.
    for bad in ["\u{1b}[2J gone", "tab\there", "", &"x".repeat(limits::MAX_SERVER_NOTICE_BYTES + 1)] {
        let bytes = encode_envelope(&Envelope::ServerNotice(bad.to_owned()));
        assert!(decode_envelope(&bytes).is_err(), "{bad:?}");
    }
    // A notice may not carry anything else: a group smuggled in by re-using another kind's
    // fields is refused.
    let smuggled =
        encode_envelope(&Envelope::Application { group: group(), payload: Bytes::from_static(b"hi") });
    let mut patched = smuggled.clone();
    assert_eq!(&patched[..2], &[0x08, 4]);
    patched[1] = 8;
    assert!(decode_envelope(&patched).is_err());
}

#[test]
fn call_content_round_trips_and_needs_a_session_for_offers() {
    let session = MediaSession {
        relay_address: "127.0.0.1:50000".parse().unwrap(),
        ssrc: 42,
        epoch: 3,
        codec: OPUS_CODEC.into(),
        video_ssrc: Some(43),
    };
    let content = Content {
        message_id: MessageId([1; 16]),
        sent_at_ms: 9,
        seq: 0,
        body: ContentBody::Call(CallMessage {
            call: call::CallId([2; 16]),
            kind: call::SignalKind::Offer,
            session: Some(session.clone()),
        }),
    };
    assert_eq!(decode_content(&encode_content(&content)).unwrap(), content);
    // A video stream under the audio stream's SSRC would share its SRTP nonces: refused.
    let same_ssrc = Content {
        body: ContentBody::Call(CallMessage {
            call: call::CallId([2; 16]),
            kind: call::SignalKind::Offer,
            session: Some(MediaSession { video_ssrc: Some(42), ..session.clone() }),
        }),
        ..content.clone()
    };
    assert!(matches!(
        decode_content(&encode_content(&same_ssrc)),
        Err(DecodeError::Invalid { field: "video_ssrc", .. })
    ));
    let no_session = Content {
        body: ContentBody::Call(CallMessage {
            call: call::CallId([2; 16]),
            kind: call::SignalKind::Answer,
            session: None,
        }),
        ..content
    };
    assert_eq!(decode_content(&encode_content(&no_session)).unwrap_err(), DecodeError::Missing("session"));
}

#[test]
fn group_names_with_control_characters_are_refused() {
    use rampart_proto::{Content, ContentBody, decode_content, encode_content};
    let content = |name: &str| Content {
        message_id: rampart_core::MessageId([1; 16]),
        sent_at_ms: 1,
        seq: 0,
        body: ContentBody::GroupName(name.into()),
    };
    assert!(decode_content(&encode_content(&content("Friends ✓"))).is_ok());
    for bad in ["\u{1b}[2J\u{1b}[Hpwned", "line\nbreak", "bell\u{7}", "\u{9b}31m"] {
        assert!(
            matches!(
                decode_content(&encode_content(&content(bad))),
                Err(DecodeError::Invalid { field: "name", .. })
            ),
            "{bad:?}"
        );
    }
}

//! Writes the seed corpora: one valid frame of every request and server frame kind, some valid
//! identifiers and contents, STUN/TURN messages (RFC 5769's vectors among them), and a few
//! hand-made bad inputs, to `corpus/<target>/seed-<name>`.
//!
//! Not a fuzz target. Run from `fuzz/`: `cargo run --bin make-seeds` (optionally with an output
//! directory instead of `corpus`). Deterministic: the same source always writes the same bytes,
//! except the `ds_commit` seeds, real MLS groups whose keys come from the system's generator.
//! Seeds are named `seed-*` so the root `.gitignore`, which ignores libFuzzer's hash-named
//! corpus files, keeps them.
#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use rampart_core::{
    AccountId, DeviceId, DeviceSecret, GroupId, LinkCode, MessageId, PhoneNumber, ServerMessageId, Username,
    VerificationCode,
};
use rampart_proto::{
    ClientFrame, ClientRequest, Delivery, DeviceInfo, ErrorBody, ErrorCode, GoodbyeReason,
    PROTOCOL_VERSION, Content, ContentBody, Envelope, DeviceCertificate, Recipient, ResponseBody, ServerFrame, encode_client_frame,
    encode_content, encode_envelope, encode_certificate, encode_server_frame,
};

type Seeds = Vec<(String, Vec<u8>)>;

fn phone() -> Result<PhoneNumber, String> {
    PhoneNumber::parse("+14155550123").map_err(|e| e.to_string())
}

fn user(name: &str) -> Result<Username, String> {
    Username::parse(name).map_err(|e| e.to_string())
}

fn link_code() -> Result<LinkCode, String> {
    LinkCode::parse("ABCD-EF23").map_err(|e| e.to_string())
}

fn secret() -> Result<DeviceSecret, String> {
    DeviceSecret::from_slice(&[0x5a; 32]).ok_or_else(|| "device secret".to_owned())
}

/// A valid frame cut short, a classic malformed input.
fn truncated(frame: &[u8]) -> Vec<u8> {
    frame
        .get(..frame.len().div_ceil(2))
        .unwrap_or(frame)
        .to_vec()
}

/// The same frame with another version byte.
fn with_version(frame: &[u8], version: u8) -> Vec<u8> {
    let mut out = frame.to_vec();
    if let Some(first) = out.first_mut() {
        *first = version;
    }
    out
}

fn client_seeds() -> Result<Seeds, String> {
    let requests: Vec<(&str, ClientRequest)> = vec![
        (
            "register",
            ClientRequest::Register {
                phone: phone()?,
                username: Some(user("alice")?),
            },
        ),
        (
            "register-no-username",
            ClientRequest::Register {
                phone: phone()?,
                username: None,
            },
        ),
        (
            "verify",
            ClientRequest::Verify {
                phone: phone()?,
                code: VerificationCode::parse("123456").map_err(|e| e.to_string())?,
                device_name: "laptop".into(),
                secret: secret()?,
            },
        ),
        (
            "authenticate",
            ClientRequest::Authenticate {
                device: DeviceId(3),
                secret: secret()?,
                client: "rampart/0.1.0".into(),
            },
        ),
        (
            "begin-link",
            ClientRequest::BeginLink {
                device_name: "tablet".into(),
                secret: secret()?,
            },
        ),
        (
            "approve-link",
            ClientRequest::ApproveLink { code: link_code()? },
        ),
        (
            "send-username",
            ClientRequest::Send {
                to: Recipient::Username(user("bob")?),
                message_id: MessageId([9; 16]),
                body: Bytes::from_static(b"opaque body"),
            },
        ),
        (
            "send-phone",
            ClientRequest::Send {
                to: Recipient::Phone(phone()?),
                message_id: MessageId([1; 16]),
                body: Bytes::from(encode_content(&Content { message_id: MessageId([9; 16]), sent_at_ms: 1, seq: 0, body: ContentBody::Text { text: "hello".into(), reply_to: None } })),
            },
        ),
        (
            "ack",
            ClientRequest::Ack {
                ids: vec![ServerMessageId(1), ServerMessageId(2), ServerMessageId(300)],
            },
        ),
        ("list-devices", ClientRequest::ListDevices),
        (
            "revoke-device",
            ClientRequest::RevokeDevice {
                device: DeviceId(4),
            },
        ),
        (
            "block",
            ClientRequest::Block {
                account: AccountId(7),
            },
        ),
        (
            "set-username",
            ClientRequest::SetUsername {
                username: Some(user("carol_2")?),
            },
        ),
        (
            "clear-username",
            ClientRequest::SetUsername { username: None },
        ),
        ("ping", ClientRequest::Ping),
    ];
    let mut seeds: Seeds = requests
        .into_iter()
        .zip(1u64..)
        .map(|((name, request), request_id)| {
            (
                name.to_owned(),
                encode_client_frame(&ClientFrame {
                    request_id,
                    request,
                }),
            )
        })
        .collect();

    let send = seeds
        .iter()
        .find(|(n, _)| n == "send-username")
        .map(|(_, b)| b.clone())
        .unwrap_or_default();
    seeds.push(("bad-empty".into(), Vec::new()));
    seeds.push(("bad-version-only".into(), vec![PROTOCOL_VERSION]));
    seeds.push(("bad-version-0".into(), with_version(&send, 0)));
    seeds.push(("bad-version-2".into(), with_version(&send, 2)));
    seeds.push(("bad-truncated-send".into(), truncated(&send)));
    Ok(seeds)
}

fn server_seeds() -> Result<Seeds, String> {
    let response = |request_id, result| ServerFrame::Response { request_id, result };
    let frames: Vec<(&str, ServerFrame)> = vec![
        (
            "error",
            response(
                1,
                Err(ErrorBody {
                    code: ErrorCode::RateLimited,
                    message: "slow down".into(),
                    retry_after_ms: 1500,
                    challenge: None,
                }),
            ),
        ),
        (
            "error-challenge-required",
            response(
                4,
                Err(ErrorBody {
                    code: ErrorCode::ChallengeRequired,
                    message: "this account proves work for each call".into(),
                    retry_after_ms: 0,
                    challenge: Some(rampart_proto::Challenge {
                        token: vec![1; rampart_core::challenge::TOKEN_BYTES],
                        difficulty_bits: 20,
                        expires_at_ms: 1_800_000_000_000,
                    }),
                }),
            ),
        ),
        (
            "error-unsupported-version",
            response(
                0,
                Err(ErrorBody {
                    code: ErrorCode::UnsupportedVersion,
                    message: "unsupported protocol version 2".into(),
                    retry_after_ms: 0,
                    challenge: None,
                }),
            ),
        ),
        ("ok", response(2, Ok(ResponseBody::Ok))),
        (
            "registration-started",
            response(
                3,
                Ok(ResponseBody::RegistrationStarted {
                    expires_in_secs: 600,
                }),
            ),
        ),
        (
            "registered",
            response(
                4,
                Ok(ResponseBody::Registered {
                    account: AccountId(1),
                    device: DeviceId(2),
                    replaced_existing: true,
                }),
            ),
        ),
        (
            "authenticated",
            response(
                5,
                Ok(ResponseBody::Authenticated {
                    account: AccountId(1),
                    device: DeviceId(2),
                    label: "@alice".into(),
                }),
            ),
        ),
        (
            "link-started",
            response(
                6,
                Ok(ResponseBody::LinkStarted {
                    code: link_code()?,
                    expires_in_secs: 600,
                }),
            ),
        ),
        (
            "link-approved",
            response(
                7,
                Ok(ResponseBody::LinkApproved {
                    device: DeviceId(9),
                }),
            ),
        ),
        (
            "sent",
            response(
                8,
                Ok(ResponseBody::Sent {
                    server_timestamp_ms: 1_700_000_000_000,
                    recipient_devices: 2,
                    skipped_devices: 1,
                }),
            ),
        ),
        (
            "devices",
            response(
                9,
                Ok(ResponseBody::Devices(vec![
                    DeviceInfo {
                        device: DeviceId(2),
                        name: "primary".into(),
                        created_at_ms: 1,
                        last_seen_at_ms: 2,
                    },
                    DeviceInfo {
                        device: DeviceId(9),
                        name: "tablet".into(),
                        created_at_ms: 3,
                        last_seen_at_ms: 4,
                    },
                ])),
            ),
        ),
        (
            "pong",
            response(
                10,
                Ok(ResponseBody::Pong {
                    server_time_ms: 1_700_000_000_000,
                }),
            ),
        ),
        (
            "delivery",
            ServerFrame::Delivery(Delivery {
                server_id: ServerMessageId(42),
                message_id: MessageId([7; 16]),
                sender_account: AccountId(1),
                sender_device: DeviceId(2),
                sender_label: "+14155550123".into(),
                server_timestamp_ms: 1_700_000_000_000,
                body: Bytes::from(encode_content(&Content { message_id: MessageId([9; 16]), sent_at_ms: 1, seq: 0, body: ContentBody::Text { text: "hi".into(), reply_to: None } })),
            }),
        ),
        ("queue-drained", ServerFrame::QueueDrained),
        (
            "link-completed",
            ServerFrame::LinkCompleted {
                account: AccountId(1),
                device: DeviceId(9),
            },
        ),
        (
            "goodbye",
            ServerFrame::Goodbye {
                reason: GoodbyeReason::ShuttingDown,
                message: "the server is shutting down".into(),
            },
        ),
        (
            "goodbye-revoked",
            ServerFrame::Goodbye {
                reason: GoodbyeReason::DeviceRevoked,
                message: String::new(),
            },
        ),
    ];
    let mut seeds: Seeds = frames
        .into_iter()
        .map(|(name, frame)| (name.to_owned(), encode_server_frame(&frame)))
        .collect();

    let delivery = seeds
        .iter()
        .find(|(n, _)| n == "delivery")
        .map(|(_, b)| b.clone())
        .unwrap_or_default();
    seeds.push(("bad-empty".into(), Vec::new()));
    seeds.push(("bad-version-only".into(), vec![PROTOCOL_VERSION]));
    seeds.push(("bad-version-2".into(), with_version(&delivery, 2)));
    seeds.push(("bad-truncated-delivery".into(), truncated(&delivery)));
    Ok(seeds)
}

fn call_envelope_seeds() -> Result<Seeds, String> {
    use rampart_proto::{CallId, CallMessage, MediaKind, MediaSession, RingNotice, SignalKind, OPUS_CODEC};
    let group = GroupId::from_slice(&[7; 16]).ok_or("group id")?;
    let call = CallId([3; 16]);
    let frame = |request| encode_client_frame(&ClientFrame { request_id: 1, request });
    let place = frame(ClientRequest::PlaceCall {
        call,
        callee: AccountId(2),
        group: group.clone(),
        media: MediaKind::Audio,
        offer: Bytes::from_static(b"mls private message"),
        answer: None,
    });
    let answered = frame(ClientRequest::PlaceCall {
        call,
        callee: AccountId(2),
        group: group.clone(),
        media: MediaKind::Audio,
        offer: Bytes::from_static(b"mls private message"),
        answer: Some(rampart_proto::ChallengeAnswer {
            token: Bytes::from(vec![1; rampart_core::challenge::TOKEN_BYTES]),
            nonce: 123_456,
        }),
    });
    let session = MediaSession {
        relay_address: "127.0.0.1:50000".parse().map_err(|_| "address")?,
        ssrc: 7,
        epoch: 2,
        codec: OPUS_CODEC.into(),
        video_ssrc: Some(8),
    };
    let offer = encode_content(&Content {
        message_id: MessageId([9; 16]),
        sent_at_ms: 1,
        seq: 0,
        body: ContentBody::Call(CallMessage { call, kind: SignalKind::Offer, session: Some(session) }),
    });
    let ring = encode_envelope(&Envelope::Ring(RingNotice {
        call,
        caller: AccountId(1),
        caller_device: DeviceId(2),
        media: MediaKind::Audio,
        sent_at_ms: 5,
    }));
    Ok(vec![
        ("place-call".into(), place.clone()),
        ("place-call-answered".into(), answered),
        ("fetch-offer".into(), frame(ClientRequest::FetchOffer { call })),
        ("fetch-relay".into(), frame(ClientRequest::FetchRelayCredentials { call })),
        (
            "signal-answer".into(),
            frame(ClientRequest::CallSignal { call, kind: SignalKind::Answer, body: Bytes::from_static(b"mls") }),
        ),
        ("signal-hangup".into(), frame(ClientRequest::CallSignal { call, kind: SignalKind::Hangup, body: Bytes::new() })),
        ("offer-content".into(), offer.clone()),
        ("ring".into(), ring.clone()),
        (
            "call-signal-envelope".into(),
            encode_envelope(&Envelope::CallSignal { call, kind: SignalKind::Update, group, payload: Bytes::from_static(b"mls") }),
        ),
        ("bad-truncated-place-call".into(), truncated(&place)),
        ("bad-truncated-offer".into(), truncated(&offer)),
        ("bad-truncated-ring".into(), truncated(&ring)),
    ])
}

fn content_seeds() -> Seeds {
    let text = encode_content(&Content { message_id: MessageId([9; 16]), sent_at_ms: 1, seq: 0, body: ContentBody::Text { text: "hello, world".into(), reply_to: None } });
    vec![
        ("text".into(), text.clone()),
        (
            "unicode".into(),
            encode_content(&Content { message_id: MessageId([9; 16]), sent_at_ms: 1, seq: 0, body: ContentBody::Text { text: "grüße 👋".into(), reply_to: None } }),
        ),
        ("empty".into(), Vec::new()),
        ("bad-truncated".into(), truncated(&text)),
        (
            "contacts".into(),
            encode_content(&Content {
                message_id: MessageId([9; 16]),
                sent_at_ms: 1,
                seq: 0,
                body: ContentBody::Contacts(vec![(AccountId(2), "@bob".into()), (AccountId(3), "+14155550100".into())]),
            }),
        ),
        (
            "envelope-application".into(),
            encode_envelope(&Envelope::Application {
                group: GroupId::from_slice(&[7; 16]).expect("valid"),
                payload: Bytes::from_static(b"mls"),
            }),
        ),
        (
            "certificate".into(),
            encode_certificate(&DeviceCertificate {
                account: AccountId(1),
                device: DeviceId(2),
                signature_key: [3; 32],
                signer_key: [3; 32],
                signature: [4; 64],
            }),
        ),
    ]
}

fn identifier_seeds() -> Seeds {
    [
        ("phone", "+14155550123"),
        ("phone-formatted", " +1 (415) 555-0123 "),
        ("phone-no-plus", "14155550123"),
        ("phone-leading-zero", "+0123456789"),
        ("username", "alice_1"),
        ("username-at-upper", "@Alice_1"),
        ("username-bad", "1abc"),
        ("link-code", "ABCD-EF23"),
        ("link-code-lower", "abcd ef23"),
        ("verification-code", "123 456"),
        ("verification-code-dash", "123-456"),
        ("unicode", "＋１４１５５５５０１２３ é"),
    ]
    .into_iter()
    .map(|(name, text)| (name.to_owned(), text.as_bytes().to_vec()))
    .collect()
}

/// STUN/TURN messages a relay receives and sends: RFC 5769's four vectors, one message of every
/// TURN method, ChannelData both framings, a REST username, and a few bad inputs.
fn turn_seeds() -> Result<Seeds, String> {
    use rampart_turn::attribute::AddressFamily;
    use rampart_turn::integrity::encode_protected;
    use rampart_turn::{
        Attribute, ChannelData, ChannelNumber, Class, Data, ErrorCode, IntegrityKey, Message, Method, Nonce, Realm,
        ReservationToken, Sha256Tag, SharedSecret, Software, TransactionId, Transport, TransportProtocol,
        UnknownAttributes, Username, credentials, rfc5769,
    };

    let e = |e: &dyn std::fmt::Display| e.to_string();
    let id = TransactionId([0x5a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb]);
    let secret = SharedSecret::new(b"0123456789abcdef-shared-secret".to_vec()).map_err(|x| e(&x))?;
    let credential = credentials::mint(&secret, "device-42", 1_700_000_000, 600).map_err(|x| e(&x))?;
    let realm = Realm::new("rampart.example").map_err(|x| e(&x))?;
    let nonce = Nonce::new("0123456789abcdef").map_err(|x| e(&x))?;
    let key = IntegrityKey::long_term(credential.username().as_str(), realm.as_str(), credential.password())
        .map_err(|x| e(&x))?;
    let peer4: std::net::SocketAddr = ([192, 0, 2, 10], 5000).into();
    let peer6: std::net::SocketAddr = ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10], 6000).into();
    let channel = ChannelNumber::new(0x4001).map_err(|x| e(&x))?;
    let authenticated = |message: Message| {
        message
            .with(Attribute::Username(credential.username().clone()))
            .with(Attribute::Realm(realm.clone()))
            .with(Attribute::Nonce(nonce.clone()))
    };

    let protected: Vec<(&str, Message, bool)> = vec![
        (
            "allocate-request",
            Message::new(Class::Request, Method::Allocate, id)
                .with(Attribute::RequestedTransport(TransportProtocol::UDP))
                .with(Attribute::DontFragment),
            false,
        ),
        (
            "allocate-401",
            Message::new(Class::ErrorResponse, Method::Allocate, id)
                .with(Attribute::ErrorCode(ErrorCode::new(401, "Unauthenticated").map_err(|x| e(&x))?))
                .with(Attribute::Realm(realm.clone()))
                .with(Attribute::Nonce(nonce.clone()))
                .with(Attribute::Software(Software::new("rampart").map_err(|x| e(&x))?)),
            false,
        ),
        (
            "allocate-authenticated",
            authenticated(
                Message::new(Class::Request, Method::Allocate, id)
                    .with(Attribute::RequestedTransport(TransportProtocol::UDP))
                    .with(Attribute::Lifetime { seconds: 600 })
                    .with(Attribute::EvenPort { reserve_next: true })
                    .with(Attribute::RequestedAddressFamily(AddressFamily::IPV4))
                    .with(Attribute::AdditionalAddressFamily(AddressFamily::IPV6)),
            ),
            true,
        ),
        (
            "allocate-reservation",
            authenticated(
                Message::new(Class::Request, Method::Allocate, id)
                    .with(Attribute::RequestedTransport(TransportProtocol::UDP))
                    .with(Attribute::ReservationToken(ReservationToken([1, 2, 3, 4, 5, 6, 7, 8]))),
            ),
            true,
        ),
        (
            "allocate-success",
            Message::new(Class::SuccessResponse, Method::Allocate, id)
                .with(Attribute::XorRelayedAddress(([203, 0, 113, 5], 49152).into()))
                .with(Attribute::XorMappedAddress(([198, 51, 100, 7], 6000).into()))
                .with(Attribute::Lifetime { seconds: 600 }),
            true,
        ),
        (
            "refresh-delete",
            authenticated(Message::new(Class::Request, Method::Refresh, id).with(Attribute::Lifetime { seconds: 0 })),
            true,
        ),
        (
            "create-permission",
            authenticated(
                Message::new(Class::Request, Method::CreatePermission, id)
                    .with(Attribute::XorPeerAddress(peer4))
                    .with(Attribute::XorPeerAddress(peer6)),
            ),
            true,
        ),
        (
            "channel-bind",
            authenticated(
                Message::new(Class::Request, Method::ChannelBind, id)
                    .with(Attribute::ChannelNumber(channel))
                    .with(Attribute::XorPeerAddress(peer4)),
            ),
            true,
        ),
        (
            "send-indication",
            Message::new(Class::Indication, Method::Send, id)
                .with(Attribute::XorPeerAddress(peer6))
                .with(Attribute::Data(Data::new(b"\x80\x60srtp".to_vec()).map_err(|x| e(&x))?))
                .with(Attribute::DontFragment),
            false,
        ),
        (
            "data-indication",
            Message::new(Class::Indication, Method::Data, id)
                .with(Attribute::XorPeerAddress(peer4))
                .with(Attribute::Data(Data::new(b"\x16\xfe\xfddtls".to_vec()).map_err(|x| e(&x))?)),
            false,
        ),
        ("binding-indication", Message::new(Class::Indication, Method::Binding, id), false),
        (
            "error-420",
            Message::new(Class::ErrorResponse, Method::Allocate, id)
                .with(Attribute::ErrorCode(ErrorCode::new(420, "Unknown Attribute").map_err(|x| e(&x))?))
                .with(Attribute::UnknownAttributes(
                    UnknownAttributes::new(vec![rampart_turn::AttributeType(0x0024)]).map_err(|x| e(&x))?,
                )),
            false,
        ),
    ];
    let mut seeds: Seeds = vec![
        ("rfc5769-2.1-request".into(), rfc5769::SAMPLE_REQUEST.to_vec()),
        ("rfc5769-2.2-ipv4-response".into(), rfc5769::SAMPLE_IPV4_RESPONSE.to_vec()),
        ("rfc5769-2.3-ipv6-response".into(), rfc5769::SAMPLE_IPV6_RESPONSE.to_vec()),
        ("rfc5769-2.4-long-term-request".into(), rfc5769::SAMPLE_REQUEST_LONG_TERM.to_vec()),
    ];
    for (name, message, with_integrity) in protected {
        let bytes = encode_protected(&message, with_integrity.then_some(&key), true).map_err(|x| e(&x))?;
        seeds.push((name.to_owned(), bytes));
    }
    let sha256 = Message::new(Class::Request, Method::Binding, id)
        .with(Attribute::Username(Username::new("user").map_err(|x| e(&x))?))
        .with(Attribute::MessageIntegrity([7; 20]))
        .with(Attribute::MessageIntegritySha256(Sha256Tag::new(vec![9; 32]).map_err(|x| e(&x))?))
        .with(Attribute::Fingerprint(0));
    seeds.push(("integrity-sha256".into(), sha256.encode().map_err(|x| e(&x))?));

    // 13 bytes, so the stream framing pads and the datagram framing does not.
    let media = b"\x80\x60\x00\x01srtp pay!";
    for (name, transport) in [("channel-data-datagram", Transport::Datagram), ("channel-data-stream", Transport::Stream)] {
        let bytes = ChannelData { channel, data: media }.encode(transport).map_err(|x| e(&x))?;
        seeds.push((name.into(), bytes));
    }
    seeds.push(("rest-username".into(), credential.username().as_str().as_bytes().to_vec()));

    seeds.push(("bad-empty".into(), Vec::new()));
    seeds.push(("bad-truncated-2.1".into(), truncated(&rfc5769::SAMPLE_REQUEST)));
    let mut bad_cookie = rfc5769::SAMPLE_IPV4_RESPONSE.to_vec();
    if let Some(byte) = bad_cookie.get_mut(4) {
        *byte ^= 0xff;
    }
    seeds.push(("bad-cookie".into(), bad_cookie));
    let mut after_fingerprint = rfc5769::SAMPLE_IPV4_RESPONSE.to_vec();
    after_fingerprint.extend_from_slice(&[0x80, 0x22, 0x00, 0x00]);
    if let Some(length) = after_fingerprint.get_mut(2..4) {
        length.copy_from_slice(&0x40u16.to_be_bytes());
    }
    seeds.push(("bad-attribute-after-fingerprint".into(), after_fingerprint));
    seeds.push(("bad-channel-reserved".into(), vec![0x50, 0x00, 0x00, 0x01, 0xff]));
    Ok(seeds)
}

/// Event sequences for `call_machine` (first byte: ring policy and contact flag; then one
/// event per byte, decoded as in fuzz_targets/call_machine.rs).
fn call_seeds() -> Seeds {
    const OFFER: u8 = 0;
    const ANSWER: u8 = 1;
    const CONNECT: u8 = 3;
    const UPDATE: u8 = 4;
    const HANGUP: u8 = 5;
    const ACCEPT: u8 = 128;
    const DECLINE: u8 = 152;
    const ANSWER_SENT: u8 = 160;
    const TIMEOUT: u8 = 184;
    const CONTACTS_CONTACT: u8 = 0x05;
    const CONTACTS_STRANGER: u8 = 0x01;
    vec![
        ("accepted-call".into(), vec![CONTACTS_CONTACT, ACCEPT, OFFER, ANSWER, ANSWER_SENT, UPDATE, HANGUP]),
        ("signal-2019-connect-while-ringing".into(), vec![CONTACTS_CONTACT, CONNECT, ANSWER_SENT, ACCEPT, CONNECT]),
        ("messenger-update-while-ringing".into(), vec![CONTACTS_CONTACT, UPDATE, OFFER, ANSWER_SENT, TIMEOUT]),
        ("stranger".into(), vec![CONTACTS_STRANGER, OFFER, ACCEPT, ANSWER_SENT]),
        ("declined".into(), vec![CONTACTS_CONTACT, DECLINE, ACCEPT, OFFER]),
    ]
}

/// Datagrams for `media_shape`: an SRTP packet, one with CSRCs and an extension, an SRTCP
/// receiver report, and broken ones.
fn media_seeds() -> Seeds {
    let mut srtp = vec![0x80, 111, 0, 7, 0, 0, 3, 0xc0, 0xde, 0xad, 0xbe, 0xef];
    srtp.extend([0xaa; 80 + 16]);
    let mut with_ext = vec![0x92, 111, 0, 8, 0, 0, 3, 0xc0, 0xde, 0xad, 0xbe, 0xef];
    with_ext.extend([0, 0, 0, 1, 0, 0, 0, 2, 0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]);
    with_ext.extend([0xaa; 40 + 16]);
    let mut rr = vec![0x81, 201, 0, 7, 0, 0, 0, 42];
    rr.extend([0x55; 24 + 4 + 16]);
    let mut lying_csrc = srtp.clone();
    if let Some(b) = lying_csrc.first_mut() {
        *b |= 0x0f;
    }
    lying_csrc.truncate(40);
    vec![
        ("srtp".into(), srtp),
        ("srtp-csrc-extension".into(), with_ext),
        ("srtcp-rr".into(), rr),
        ("bad-csrc-count".into(), lying_csrc),
        ("bad-version".into(), vec![0x40; 40]),
    ]
}

/// Seeds for the `srtp` target: SRTP and SRTCP packets really protected under the target's fixed
/// key and SSRC (so the accepting path is reachable), clear RTP packets with CSRCs and an
/// extension (for the parse → protect → unprotect path), and damaged ones.
fn media_srtp_seeds() -> Result<Seeds, String> {
    use rampart_media::{SrtcpContext, SrtpContext, SrtpKeys};
    const SSRC: u32 = 0x5501_a0b2;
    let keys = SrtpKeys { master_key: [0x42; 32], master_salt: [0x24; 12] };
    let mut rtp = vec![0x80, 111, 0xff, 0xfe, 0, 0, 3, 0xc0];
    rtp.extend(SSRC.to_be_bytes());
    rtp.extend(b"an opus frame would be here");
    let mut rtp_ext = vec![0x92, 0xef, 0, 8, 0, 0, 3, 0xc0];
    rtp_ext.extend(SSRC.to_be_bytes());
    rtp_ext.extend([0, 0, 0, 1, 0, 0, 0, 2, 0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]);
    rtp_ext.extend([0xaa; 20]);
    let mut rtcp = vec![0x81, 201, 0, 7];
    rtcp.extend(SSRC.to_be_bytes());
    rtcp.extend([0x55; 24]);

    let mut srtp_sender = SrtpContext::new(&keys, SSRC);
    let srtp = srtp_sender.protect(&rtp).map_err(|e| e.to_string())?;
    let srtp_ext = srtp_sender.protect(&rtp_ext).map_err(|e| e.to_string())?;
    let srtcp = SrtcpContext::new(&keys, SSRC).protect(&rtcp).map_err(|e| e.to_string())?;
    let mut flipped = srtp.clone();
    if let Some(last) = flipped.last_mut() {
        *last ^= 1;
    }
    let mut lying_csrc = rtp.clone();
    if let Some(first) = lying_csrc.first_mut() {
        *first |= 0x0f;
    }
    Ok(vec![
        ("rtp".into(), rtp),
        ("rtp-csrc-extension".into(), rtp_ext),
        ("rtcp-rr".into(), rtcp),
        ("srtp".into(), srtp.clone()),
        ("srtp-csrc-extension".into(), srtp_ext),
        ("srtcp".into(), srtcp.clone()),
        ("srtp-tag-flipped".into(), flipped),
        ("srtp-truncated".into(), truncated(&srtp)),
        ("srtcp-truncated".into(), truncated(&srtcp)),
        ("rtp-bad-csrc-count".into(), lying_csrc),
        ("bad-version".into(), vec![0x40; 40]),
        ("empty".into(), Vec::new()),
    ])
}

/// Seeds for `rtp_rtcp`: datagrams of a real `AudioSender` (a 440 Hz tone, so the decoder gets
/// real Opus) under the target's fixed key, each behind the target's 16-bit word (length, and
/// 20 ms of pacing): in order, reordered with a duplicate, with a loss, and mixed with an
/// SRTCP report and junk; and one bare SRTP datagram.
fn media_rtp_rtcp_seeds() -> Result<Seeds, String> {
    use rampart_core::call::{CallEvent, CallId, CallerCall, SealedSignal, SignalKind};
    use rampart_media::tone::sine;
    use rampart_media::{AudioSender, SrtcpContext, SrtpKeys};
    const SSRC: u32 = 0x5501_a0b2;
    let keys = SrtpKeys { master_key: [0x42; 32], master_salt: [0x24; 12] };
    let mut call = CallerCall::dial(CallId([1; 16]), 0);
    call.handle_signal(SealedSignal::new(SignalKind::Answer, Vec::new()));
    call.answer_applied();
    let permit = std::iter::from_fn(|| call.poll_event())
        .find_map(|event| match event {
            CallEvent::EnableMedia(permit) => Some(permit),
            _ => None,
        })
        .ok_or("no media permit")?;
    // Starts just below the sequence number wrap.
    let mut sender = AudioSender::new(permit, keys.clone(), SSRC, 0xfffa, 0x1234).map_err(|e| e.to_string())?;
    let datagrams = sine(440.0, 0.5, 16)
        .iter()
        .map(|frame| sender.encode_frame(frame))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mut rtcp = vec![0x80, 201, 0, 1];
    rtcp.extend(SSRC.to_be_bytes());
    let srtcp = SrtcpContext::new(&keys, SSRC).protect(&rtcp).map_err(|e| e.to_string())?;
    const STEP_20_MS: u16 = 4 << 11;
    let framed = |parts: &[&[u8]]| -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            let len = u16::try_from(part.len()).unwrap_or(0x07ff) & 0x07ff;
            out.extend((STEP_20_MS | len).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    };
    let pick = |order: &[usize]| -> Vec<&[u8]> {
        order.iter().filter_map(|&i| datagrams.get(i).map(Vec::as_slice)).collect()
    };
    let in_order: Vec<usize> = (0..datagrams.len()).collect();
    let reordered = [0, 2, 1, 3, 3, 5, 4, 6, 8, 7, 9, 10, 12, 11, 13, 15, 14];
    let lossy: Vec<usize> = (0..datagrams.len()).filter(|&i| i != 5 && i != 6).collect();
    let mut mixed = pick(&[0, 1]);
    mixed.push(&srtcp);
    mixed.push(&[0x80, 0xc0, 0, 0]);
    mixed.push(&[0x40; 20]);
    mixed.extend(pick(&[2, 3, 4]));
    mixed.push(&srtcp);
    Ok(vec![
        ("in-order".into(), framed(&pick(&in_order))),
        ("reordered-duplicate".into(), framed(&pick(&reordered))),
        ("loss".into(), framed(&pick(&lossy))),
        ("rtcp-and-junk".into(), framed(&mixed)),
        ("bare-srtp".into(), datagrams.first().cloned().unwrap_or_default()),
        ("empty".into(), Vec::new()),
    ])
}

/// Seeds for `jitter`: 4-byte operations after a configuration byte. Kind byte: `0 | step << 2`
/// pushes an absolute sequence number and lets `step` ms pass, `2` lets time pass and drains.
fn jitter_seeds() -> Seeds {
    let push = |seq: u16, step: u8| {
        let [high, low] = seq.to_be_bytes();
        [step << 2, high, low, 0x0b]
    };
    const DRAIN: [u8; 4] = [2, 0, 0, 0];
    let stream = |order: &[u16]| -> Vec<u8> {
        let mut out = vec![0];
        for &seq in order {
            out.extend(push(seq, 20));
            out.extend(DRAIN);
        }
        out.extend([2, 0, 200, 0, 2, 1, 0, 0]);
        out
    };
    let in_order: Vec<u16> = (0..20).collect();
    let wrapping: Vec<u16> = (0..20u16).map(|i| 65_530u16.wrapping_add(i)).collect();
    let mut burst = vec![0];
    for seq in 0..5u16 {
        burst.extend(push(seq, 20));
        burst.extend(DRAIN);
    }
    burst.extend([2, 0, 140, 0]);
    for seq in 5..12u16 {
        burst.extend(push(seq, 0));
    }
    burst.extend([2, 0, 100, 0]);
    vec![
        ("in-order".into(), stream(&in_order)),
        ("reordered".into(), stream(&[0, 2, 1, 3, 5, 4, 6, 8, 7, 9])),
        ("loss-and-duplicate".into(), stream(&[0, 1, 2, 2, 4, 5, 6, 1, 3, 7, 8])),
        ("wrap".into(), stream(&wrapping)),
        ("burst".into(), burst),
        ("far-jump".into(), stream(&[0, 1, 2, 3, 40_000, 40_001, 4])),
    ]
}

/// Seeds for `ds_commit`: a real group's creator GroupInfo and first commit, then a removal
/// (both accepted); the first commit with a byte changed; a member's leaf renewed as the creator.
fn ds_commit_seeds() -> Result<Seeds, String> {
    use openmls_memory_storage::MemoryStorage;
    use rampart_mls::{Engine, identity};
    let e = |e: rampart_mls::MlsError| e.to_string();
    let device = |n: u64| -> Result<(Engine<MemoryStorage>, [u8; 32]), String> {
        let key = identity::new_signature_key().map_err(e)?;
        let public = identity::public_key(&key).map_err(e)?;
        let cert = identity::certify(&key, AccountId(n), DeviceId(n), public).map_err(e)?;
        Ok((Engine::new(MemoryStorage::default(), key, cert).map_err(e)?, public))
    };
    let (mut alice, alice_key) = device(1)?;
    let (mut bob, bob_key) = device(2)?;
    let group = GroupId::from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 7, 7, 7, 7, 7, 7, 7, 7]).ok_or("group id")?;
    alice.create_group(&group).map_err(e)?;
    let package = bob.key_packages(1).map_err(e)?.remove(0);
    let first = alice.add(&group, &[package]).map_err(e)?;
    let info = first.group_info.clone().ok_or("a first commit carries its GroupInfo")?;
    let input = |first: &[u8], second: &[u8]| -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        out.extend_from_slice(&alice_key);
        out.extend_from_slice(&bob_key);
        out.extend_from_slice(group.as_bytes());
        for part in [info.as_slice(), first] {
            out.extend_from_slice(&u16::try_from(part.len()).map_err(|_| "too long for a seed")?.to_be_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(second);
        Ok(out)
    };
    let mut tampered = first.commit.clone();
    let middle = tampered.len() / 2;
    if let Some(b) = tampered.get_mut(middle) {
        *b ^= 1;
    }
    alice.commit_accepted(&group).map_err(e)?;
    bob.join(first.welcome.as_deref().ok_or("Welcome")?).map_err(e)?;
    let key = identity::new_signature_key().map_err(e)?;
    let as_alice = identity::certify(&key, AccountId(1), DeviceId(1), identity::public_key(&key).map_err(e)?)
        .map_err(e)?;
    let forged = bob.forged_leaf_renewal(&group, &key, &as_alice).map_err(e)?;
    let removal = alice.remove(&group, &[DeviceId(2)]).map_err(e)?;
    Ok(vec![
        ("first-commit-then-removal".into(), input(&first.commit, &removal.commit)?),
        ("tampered-first-commit".into(), input(&tampered, &[])?),
        ("forged-renewal".into(), input(&first.commit, &forged)?),
    ])
}

/// TURN over TCP/TLS: the first byte picks the read size, then real messages back to back
/// (STUN requests and responses, padded ChannelData), as a stream carries them.
fn turn_stream_seeds() -> Result<Seeds, String> {
    use rampart_turn::{ChannelData, ChannelNumber, Transport};
    let messages = turn_seeds()?;
    let stun: Vec<&Vec<u8>> =
        messages.iter().map(|(_, bytes)| bytes).filter(|b| b.first().is_some_and(|f| f >> 6 == 0)).take(6).collect();
    let channel = ChannelNumber::new(0x4001).map_err(|e| e.to_string())?;
    let mut seeds = Vec::new();
    for (name, piece) in [("whole", 255u8), ("byte-by-byte", 1), ("in-sevens", 7)] {
        let mut stream = vec![piece];
        for (i, message) in stun.iter().enumerate() {
            stream.extend_from_slice(message);
            let data = vec![0x80; 60 + i];
            let framed = ChannelData { channel, data: &data }.encode(Transport::Stream).map_err(|e| e.to_string())?;
            stream.extend(framed);
        }
        seeds.push((name.to_owned(), stream));
    }
    Ok(seeds)
}

/// Evidence logs signed with the fuzz target's fixed key: a head line, then the log.
fn evidence_seeds() -> Result<Seeds, String> {
    use rampart_sentinel::evidence::{Chain, Record};
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let record = |n: u64| Record {
        decision: if n % 2 == 0 { "suspend_calling".into() } else { "refuse_call_setup".into() },
        subject: format!("a{n}"),
        by: "rule probing_call_setup".into(),
        reason: "call set-ups that do not fit the call schema".into(),
        signals: [("misfits_10m".to_owned(), 3 + n)].into(),
        until_ms: (n % 2 == 0).then_some(1_000_000 + n),
    };
    let mut seeds = Vec::new();
    for entries in [0u64, 1, 4] {
        let mut chain = Chain::new();
        let mut log = String::new();
        for n in 0..entries {
            log.push_str(&chain.append(&key, 1_000 + n, record(n)).map_err(|e| e.to_string())?);
        }
        let head = chain.head().to_line(&key);
        seeds.push((format!("log-{entries}"), format!("{head}{log}").into_bytes()));
    }
    Ok(seeds)
}

/// Answers to challenges issued by the fuzz target's fixed key (seed 7) for accounts 1 and 2,
/// at difficulty 8: right, lazy, and for another pair.
fn call_challenge_seeds() -> Seeds {
    use rampart_core::AccountId;
    use rampart_core::challenge::{ChallengeKey, SOLVE_BUDGET, solve};
    use rand::SeedableRng;
    let key = ChallengeKey::generate(&mut rand::rngs::StdRng::seed_from_u64(7));
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let mut seeds = Vec::new();
    for (name, caller, callee) in [("right", 1, 2), ("other-pair", 2, 1)] {
        let c = key.issue(AccountId(caller), AccountId(callee), 8, 500, &mut rng);
        let nonce = solve(&c.token, c.difficulty_bits, SOLVE_BUDGET).unwrap_or(0);
        let mut bytes = nonce.to_be_bytes().to_vec();
        bytes.extend_from_slice(&c.token);
        seeds.push((format!("answer-{name}"), bytes));
        let mut lazy = 0u64.to_be_bytes().to_vec();
        lazy.extend_from_slice(&c.token);
        seeds.push((format!("lazy-{name}"), lazy));
    }
    seeds
}

/// Case files signed with the fuzz target's fixed key, around excerpts of signed logs.
fn case_file_seeds() -> Result<Seeds, String> {
    use rampart_sentinel::case::sign_case;
    use rampart_sentinel::evidence::{Chain, Excerpt, Record};
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let mut seeds = Vec::new();
    for entries in [0u64, 1, 3] {
        let mut chain = Chain::new();
        let mut lines = Vec::new();
        for n in 0..entries {
            let record = Record {
                decision: "suspend_calling".into(),
                subject: format!("a{n}"),
                by: "rule probing_call_setup".into(),
                reason: "call set-ups that do not fit the call schema".into(),
                signals: [("misfits_10m".to_owned(), 3 + n)].into(),
                until_ms: Some(1_000_000 + n),
            };
            let line = chain.append(&key, 1_000 + n, record).map_err(|e| e.to_string())?;
            lines.push(line.trim_end().to_owned());
        }
        let excerpt = Excerpt { head: chain.head().to_line(&key).trim_end().to_owned(), lines };
        let case = serde_json::json!({
            "cluster": { "id": "c1", "accounts": [{ "account": 1 }], "targets": [{ "account": 9 }] },
            "evidence": excerpt,
        });
        let file = sign_case(case, &key).map_err(|e| e.to_string())?;
        let text = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
        seeds.push((format!("case-{entries}"), text));
    }
    Ok(seeds)
}

fn sentinel_policy_seeds() -> Seeds {
    let mut seeds = vec![("default".to_owned(), rampart_sentinel::policy::DEFAULT_POLICY.as_bytes().to_vec())];
    for (name, text) in [
        ("one-rule", "[[rule]]\nname = \"x\"\nwhen = \"misfits_10m >= 3 || (calls_placed_10m > 2 && !network_is_hosting)\"\naction = \"slow_down\"\nduration = \"30m\"\n"),
        ("arith", "[[rule]]\nname = \"y\"\nwhen = \"calls_answered_24h * 10 < calls_placed_24h - 1\"\naction = \"block_network\"\nduration = \"7d\"\nreason = \"r\"\n"),
        ("empty", ""),
    ] {
        seeds.push((name.to_owned(), text.as_bytes().to_vec()));
    }
    seeds
}

fn turn_uri_seeds() -> Seeds {
    [
        ("udp-bare", "192.0.2.7:3478"),
        ("udp", "turn:relay.example.org?transport=udp"),
        ("tcp", "turn:relay.example.org:3478?transport=tcp"),
        ("tls", "turns:relay.example.org:443"),
        ("v6", "turn:[2001:db8::1]:3478?transport=tcp"),
        ("list", "turns:a:443\nturn:b?transport=tcp\n192.0.2.7:3478\nbogus"),
    ]
    .into_iter()
    .map(|(name, text)| (name.to_owned(), text.as_bytes().to_vec()))
    .collect()
}

/// A real picture's payloads as the video receiver gets them: a keyframe (SPS, PPS and an IDR
/// slice cut into FU-A fragments) and a P picture, each as length-prefixed payloads.
fn video_payload_seeds() -> Result<Seeds, String> {
    use rampart_media::video::h264::{VideoEncoder, VideoEncoderConfig};
    use rampart_media::video::payload::{MAX_PAYLOAD_BYTES, packetize};
    let mut encoder = VideoEncoder::new(VideoEncoderConfig { bitrate_bps: 300_000, fps: 30.0 }).map_err(|e| e.to_string())?;
    let framed = |payloads: &[Vec<u8>]| {
        let mut out = Vec::new();
        for payload in payloads {
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            out.extend_from_slice(payload);
        }
        out
    };
    let mut seeds = Vec::new();
    for (i, name) in [(0u64, "keyframe"), (1, "p-picture")] {
        let frame = rampart_media::video::test_pattern(160, 120, i).map_err(|e| e.to_string())?;
        let picture = encoder.encode(&frame).map_err(|e| e.to_string())?;
        // Small payloads so that the keyframe is fragmented.
        seeds.push((name.to_owned(), framed(&packetize(&picture.nal_units, 200))));
        if i == 0 {
            seeds.push(("keyframe-mtu".to_owned(), framed(&packetize(&picture.nal_units, MAX_PAYLOAD_BYTES))));
        }
    }
    seeds.push(("stap-a".to_owned(), vec![0, 9, 0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce]));
    seeds.push(("empty".to_owned(), Vec::new()));
    Ok(seeds)
}

/// A real keyframe and P picture as the `video_receiver` target's packet records, then the
/// same out of order with one lost.
fn video_receiver_seeds() -> Result<Seeds, String> {
    use rampart_media::video::h264::{VideoEncoder, VideoEncoderConfig};
    use rampart_media::video::payload::packetize;
    let mut encoder = VideoEncoder::new(VideoEncoderConfig { bitrate_bps: 300_000, fps: 30.0 }).map_err(|e| e.to_string())?;
    let mut packets = Vec::new();
    for i in 0..2u64 {
        let frame = rampart_media::video::test_pattern(64, 48, i).map_err(|e| e.to_string())?;
        let picture = encoder.encode(&frame).map_err(|e| e.to_string())?;
        let payloads = packetize(&picture.nal_units, 250);
        let last = payloads.len().saturating_sub(1);
        for (n, payload) in payloads.into_iter().enumerate() {
            let first = n == 0;
            packets.push((first && i > 0, n == last, payload));
        }
    }
    let record = |seq: u16, (next_picture, marker, payload): &(bool, bool, Vec<u8>)| {
        let mut out = seq.to_be_bytes().to_vec();
        out.push(u8::from(*next_picture) * 2);
        out.push(if *marker { 0x80 | 7 } else { 1 });
        out.push(payload.len() as u8);
        out.extend_from_slice(payload);
        out
    };
    let in_order: Vec<u8> = packets.iter().enumerate().flat_map(|(i, p)| record(100 + i as u16, p)).collect();
    let mut shuffled: Vec<u8> = Vec::new();
    for (i, p) in packets.iter().enumerate().rev().filter(|(i, _)| *i != 1) {
        shuffled.extend(record(100 + i as u16, p));
    }
    Ok(vec![("in-order".to_owned(), in_order), ("reversed-one-lost".to_owned(), shuffled)])
}

fn rtcp_feedback_seeds() -> Seeds {
    use rampart_media::video::feedback::{Feedback, ReportBlock, build_compound};
    let report = Feedback::ReceiverReport {
        reporter_ssrc: 1,
        blocks: vec![ReportBlock {
            media_ssrc: 2,
            fraction_lost: 12,
            cumulative_lost: 40,
            extended_highest_sequence: 70_000,
            jitter: 3,
        }],
    };
    let nack = Feedback::Nack { sender_ssrc: 1, media_ssrc: 2, lost: vec![5, 6, 9, 30, 65_535] };
    let pli = Feedback::PictureLoss { sender_ssrc: 1, media_ssrc: 2 };
    let remb = Feedback::Remb { sender_ssrc: 1, bitrate_bps: 450_000, media_ssrcs: vec![2] };
    vec![
        ("compound".to_owned(), build_compound(&[report.clone(), nack.clone(), pli.clone(), remb.clone()])),
        ("report".to_owned(), build_compound(&[report])),
        ("nack".to_owned(), build_compound(&[nack])),
        ("pli".to_owned(), build_compound(&[pli])),
        ("remb".to_owned(), build_compound(&[remb])),
        ("sdes-skipped".to_owned(), vec![0x81, 202, 0, 1, 0, 0, 0, 9]),
    ]
}

fn y4m_seeds() -> Result<Seeds, String> {
    use rampart_media::video::y4m::{Y4mHeader, Y4mWriter};
    let header = Y4mHeader { width: 16, height: 16, rate: (30, 1) };
    let mut writer = Y4mWriter::new(Vec::new(), header).map_err(|e| e.to_string())?;
    for i in 0..2 {
        let frame = rampart_media::video::test_pattern(16, 16, i).map_err(|e| e.to_string())?;
        writer.write_frame(&frame, Some(&format!("TS={i}"))).map_err(|e| e.to_string())?;
    }
    let two_frames = writer.finish().map_err(|e| e.to_string())?;
    Ok(vec![
        ("two-frames".to_owned(), two_frames),
        ("header-only".to_owned(), b"YUV4MPEG2 W16 H16 F30:1 Ip A1:1 C420jpeg\n".to_vec()),
        ("truncated".to_owned(), b"YUV4MPEG2 W16 H16\nFRAME\n\x10\x10".to_vec()),
    ])
}

fn yuyv_seeds() -> Seeds {
    // A 16x16 picture (the target doubles 8 and 8); the target makes the stride 2 * 16 + s - 8,
    // so s = 8 gives rows of exactly 32 bytes and s = 24 rows padded to 48; then a short one.
    let picture = |stride: usize| (0..stride * 16).map(|i| if i % 2 == 0 { 128 } else { 96 }).collect::<Vec<u8>>();
    let seed = |s: u8, stride: usize, keep: usize| {
        let mut bytes = vec![8, 8, s];
        bytes.extend(picture(stride).into_iter().take(keep));
        bytes
    };
    vec![
        ("exact-rows".to_owned(), seed(8, 32, usize::MAX)),
        ("padded-rows".to_owned(), seed(24, 48, usize::MAX)),
        ("short".to_owned(), seed(8, 32, 100)),
    ]
}

fn write(dir: &Path, target: &str, seeds: &Seeds) -> Result<(), String> {
    let dir = dir.join(target);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, bytes) in seeds {
        let path = dir.join(format!("seed-{name}"));
        fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!("{}: {} seeds", dir.display(), seeds.len());
    Ok(())
}

fn run() -> Result<(), String> {
    let dir = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"),
    };
    write(&dir, "client_frame", &client_seeds()?)?;
    write(&dir, "server_frame", &server_seeds()?)?;
    write(&dir, "content", &content_seeds())?;
    write(&dir, "call_envelope", &call_envelope_seeds()?)?;
    write(&dir, "identifiers", &identifier_seeds())?;
    write(&dir, "turn_message", &turn_seeds()?)?;
    write(&dir, "call_machine", &call_seeds())?;
    write(&dir, "media_shape", &media_seeds())?;
    write(&dir, "srtp", &media_srtp_seeds()?)?;
    write(&dir, "rtp_rtcp", &media_rtp_rtcp_seeds()?)?;
    write(&dir, "jitter", &jitter_seeds())?;
    write(&dir, "ds_commit", &ds_commit_seeds()?)?;
    write(&dir, "turn_stream", &turn_stream_seeds()?)?;
    write(&dir, "turn_uri", &turn_uri_seeds())?;
    write(&dir, "video_payload", &video_payload_seeds()?)?;
    write(&dir, "rtcp_feedback", &rtcp_feedback_seeds())?;
    write(&dir, "y4m", &y4m_seeds()?)?;
    write(&dir, "video_receiver", &video_receiver_seeds()?)?;
    write(&dir, "yuyv", &yuyv_seeds())?;
    write(&dir, "evidence", &evidence_seeds()?)?;
    write(&dir, "sentinel_policy", &sentinel_policy_seeds())?;
    write(&dir, "case_file", &case_file_seeds()?)?;
    write(&dir, "call_challenge", &call_challenge_seeds())?;
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("make-seeds: {e}");
            ExitCode::FAILURE
        }
    }
}

//! Writes the seed corpora: one valid frame of every request and server frame kind, some valid
//! identifiers and contents, and a few hand-made bad inputs, to `corpus/<target>/seed-<name>`.
//!
//! Not a fuzz target. Run from `fuzz/`: `cargo run --bin make-seeds` (optionally with an output
//! directory instead of `corpus`). Deterministic: the same source always writes the same bytes.
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
                body: Bytes::from(encode_content(&Content { message_id: MessageId([9; 16]), sent_at_ms: 1, body: ContentBody::Text { text: "hello".into(), reply_to: None } })),
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
                body: Bytes::from(encode_content(&Content { message_id: MessageId([9; 16]), sent_at_ms: 1, body: ContentBody::Text { text: "hi".into(), reply_to: None } })),
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

fn content_seeds() -> Seeds {
    let text = encode_content(&Content { message_id: MessageId([9; 16]), sent_at_ms: 1, body: ContentBody::Text { text: "hello, world".into(), reply_to: None } });
    vec![
        ("text".into(), text.clone()),
        (
            "unicode".into(),
            encode_content(&Content { message_id: MessageId([9; 16]), sent_at_ms: 1, body: ContentBody::Text { text: "grüße 👋".into(), reply_to: None } }),
        ),
        ("empty".into(), Vec::new()),
        ("bad-truncated".into(), truncated(&text)),
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
    write(&dir, "identifiers", &identifier_seeds())?;
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

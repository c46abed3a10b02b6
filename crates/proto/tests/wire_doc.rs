#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! Holds docs/wire.md to the code: every message, enum, enum value and field of the schema is
//! documented, no name the schema lacks is, and the limits the doc states are the codec's.
//!
//! The doc is read with plain string handling:
//! - names count when they appear as a word inside a `code span` (fenced blocks are skipped);
//! - limits are read from Markdown table rows, found by their first cell; numbers in the other
//!   cells are written with a space between groups of three digits ("2 113 536 B").

use std::collections::BTreeSet;
use std::path::Path;

use rampart_core::call::{CallId, RING_TIMEOUT_MS};
use rampart_core::limits::*;
use rampart_core::{GroupId, MessageId};
use rampart_proto::*;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn doc() -> String {
    read("../../docs/wire.md")
}

/// Every .proto file of the crate, concatenated.
fn proto_text() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .proto files in {}", dir.display());
    files.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect::<Vec<_>>().join("\n")
}

// ---------------------------------------------------------------- the schema

#[derive(Debug, Default)]
struct Schema {
    messages: Vec<String>,
    enums: Vec<String>,
    /// (enum, value)
    values: Vec<(String, String)>,
    /// (message, field or oneof)
    fields: Vec<(String, String)>,
}

enum Scope {
    Message(String),
    Enum(String),
    /// A oneof inside this message.
    Oneof(String),
}

fn parse_schema(text: &str) -> Schema {
    let mut cleaned = String::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for c in code.chars() {
            if matches!(c, '{' | '}' | ';' | '=') {
                cleaned.push(' ');
                cleaned.push(c);
                cleaned.push(' ');
            } else {
                cleaned.push(c);
            }
        }
        cleaned.push('\n');
    }
    let tokens: Vec<&str> = cleaned.split_whitespace().collect();
    let mut schema = Schema::default();
    let mut stack: Vec<Scope> = Vec::new();
    let mut statement: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        match t {
            "message" | "enum" | "oneof" if statement.is_empty() => {
                let name = tokens[i + 1].to_owned();
                assert_eq!(tokens[i + 2], "{", "unexpected schema syntax after {t} {name}");
                match t {
                    "message" => {
                        schema.messages.push(name.clone());
                        stack.push(Scope::Message(name));
                    }
                    "enum" => {
                        schema.enums.push(name.clone());
                        stack.push(Scope::Enum(name));
                    }
                    _ => {
                        let Some(Scope::Message(owner)) = stack.last() else {
                            panic!("oneof {name} outside a message");
                        };
                        let owner = owner.clone();
                        schema.fields.push((owner.clone(), name));
                        stack.push(Scope::Oneof(owner));
                    }
                }
                i += 3;
                continue;
            }
            "}" => {
                stack.pop();
            }
            ";" => {
                if let Some(eq) = statement.iter().position(|s| *s == "=")
                    && eq > 0
                {
                    let name = statement[eq - 1].to_owned();
                    match stack.last() {
                        Some(Scope::Enum(e)) => schema.values.push((e.clone(), name)),
                        Some(Scope::Message(m) | Scope::Oneof(m)) => schema.fields.push((m.clone(), name)),
                        // `syntax = "proto3";` and file-level options.
                        None => {}
                    }
                }
                statement.clear();
            }
            other => statement.push(other),
        }
        i += 1;
    }
    assert!(stack.is_empty(), "unbalanced braces in the schema");
    schema
}

// ---------------------------------------------------------------- the doc

/// The doc without its fenced code blocks.
fn prose(doc: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The text of every `code span` (they may wrap across lines).
fn code_spans(doc: &str) -> Vec<String> {
    prose(doc).split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty())
}

/// Every word that appears inside some code span.
fn code_words(doc: &str) -> BTreeSet<String> {
    code_spans(doc).iter().flat_map(|s| words(s).map(str::to_owned).collect::<Vec<_>>()).collect()
}

fn cells(line: &str) -> Vec<&str> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(str::trim).collect()
}

/// The one table row whose first cell is exactly `label`.
fn row<'a>(doc: &'a str, label: &str) -> &'a str {
    let rows: Vec<&str> =
        doc.lines().filter(|l| l.trim_start().starts_with('|') && cells(l).first() == Some(&label)).collect();
    match rows.as_slice() {
        [one] => one,
        [] => panic!("docs/wire.md has no table row starting with `| {label} |`"),
        _ => panic!("docs/wire.md has {} table rows starting with `| {label} |`", rows.len()),
    }
}

/// Numbers written in `text`: digit runs, where a single space followed by exactly three
/// digits continues the number ("2 113 536" is one number).
fn numbers(text: &str) -> Vec<u64> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) {
            i += 1;
            continue;
        }
        let mut digits = String::new();
        while i < b.len() && b[i].is_ascii_digit() {
            digits.push(b[i] as char);
            i += 1;
        }
        // Thousands groups: " ddd" not followed by another digit.
        while i + 3 < b.len()
            && b[i] == b' '
            && b[i + 1..i + 4].iter().all(u8::is_ascii_digit)
            && !b.get(i + 4).is_some_and(u8::is_ascii_digit)
        {
            digits.push_str(std::str::from_utf8(&b[i + 1..i + 4]).unwrap());
            i += 4;
        }
        out.push(digits.parse().unwrap());
    }
    out
}

/// Numbers in every cell of the row but the first.
fn row_numbers(doc: &str, label: &str) -> Vec<u64> {
    cells(row(doc, label)).iter().skip(1).flat_map(|c| numbers(c)).collect()
}

/// How the doc writes a number: groups of three digits separated by spaces.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[track_caller]
fn assert_row_states(doc: &str, label: &str, expected: u64) {
    let found = row_numbers(doc, label);
    assert!(
        found.contains(&expected),
        "docs/wire.md, row `{label}`: the code's limit is {} but the row says {:?}",
        grouped(expected),
        found.iter().map(|n| grouped(*n)).collect::<Vec<_>>()
    );
}

/// The first number of the row: the limit a decoder check must have.
fn row_limit(doc: &str, label: &str) -> usize {
    let found = row_numbers(doc, label);
    *found.first().unwrap_or_else(|| panic!("row `{label}` states no number")) as usize
}

// ---------------------------------------------------------------- (a) names

#[test]
fn every_message_and_enum_of_the_schema_is_in_the_doc() {
    let schema = parse_schema(&proto_text());
    assert!(schema.messages.len() > 50, "schema parse looks wrong: {:?}", schema.messages);
    assert!(schema.enums.len() >= 6, "schema parse looks wrong: {:?}", schema.enums);
    let words = code_words(&doc());
    let missing: Vec<_> =
        schema.messages.iter().chain(&schema.enums).filter(|n| !words.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "docs/wire.md never names (in a `code span`) these schema types: {missing:?}"
    );
}

#[test]
fn every_enum_value_and_field_of_the_schema_is_in_the_doc() {
    let schema = parse_schema(&proto_text());
    let words = code_words(&doc());
    let values: Vec<_> =
        schema.values.iter().filter(|(_, v)| !words.contains(v)).map(|(e, v)| format!("{e}.{v}")).collect();
    assert!(values.is_empty(), "docs/wire.md never names these enum values: {values:?}");
    let fields: Vec<_> =
        schema.fields.iter().filter(|(_, f)| !words.contains(f)).map(|(m, f)| format!("{m}.{f}")).collect();
    assert!(fields.is_empty(), "docs/wire.md never names these fields: {fields:?}");
}

#[test]
fn every_error_code_goodbye_reason_and_envelope_kind_has_a_row() {
    let schema = parse_schema(&proto_text());
    let doc = doc();
    for (enumeration, unspecified_needs_row) in
        [("ErrorCode", false), ("GoodbyeReason", true), ("EnvelopeKind", false)]
    {
        for (_, value) in schema.values.iter().filter(|(e, _)| e == enumeration) {
            if value.ends_with("_UNSPECIFIED") && !unspecified_needs_row {
                continue;
            }
            row(&doc, &format!("`{value}`"));
        }
    }
}

/// Catches names of an older protocol (a `PlainContent` body, a retired error code): a
/// CamelCase or SCREAMING_CASE word in a code span must be a name of the schema.
#[test]
fn the_doc_names_nothing_the_schema_lacks() {
    let schema = parse_schema(&proto_text());
    let known: BTreeSet<&str> = schema
        .messages
        .iter()
        .chain(&schema.enums)
        .chain(schema.values.iter().map(|(_, v)| v))
        .map(String::as_str)
        .collect();
    // Not schema names: the codec's version constant, the link code's alphabet and example, and
    // the HTTP method of the upgrade request.
    let other = ["PROTOCOL_VERSION", "ABCDEFGHJKMNPQRSTVWXYZ23456789", "ABCD", "EF23", "GET"];
    let stale: BTreeSet<String> = code_words(&doc())
        .into_iter()
        .filter(|w| {
            let first_upper = w.starts_with(|c: char| c.is_ascii_uppercase());
            let camel = first_upper && w.contains(|c: char| c.is_ascii_lowercase()) && !w.contains('_');
            let screaming = first_upper && w.len() > 2 && !w.contains(|c: char| c.is_ascii_lowercase());
            (camel || screaming) && !known.contains(w.as_str()) && !other.contains(&w.as_str())
        })
        .collect();
    assert!(stale.is_empty(), "docs/wire.md names things the schema does not have: {stale:?}");
}

// ---------------------------------------------------------------- (b) limits

#[test]
fn the_version_byte_is_the_codec_s() {
    let doc = doc();
    let line = format!("`version` is `{PROTOCOL_VERSION}`");
    assert!(doc.contains(&line), "docs/wire.md should say {line}");
    assert_row_states(&doc, "`UNSUPPORTED_VERSION`", u64::from(PROTOCOL_VERSION));
}

#[test]
fn the_frame_limit_is_max_frame_bytes() {
    let doc = doc();
    let max = MAX_FRAME_BYTES as u64;
    assert_row_states(&doc, "Frame (version byte + protobuf) = one WebSocket message", max);
    assert_row_states(&doc, "`FRAME_TOO_LARGE`", max);
    // The decoding order in §2 states it too.
    let stated = format!("at most {} bytes", grouped(max));
    assert!(doc.contains(&stated), "docs/wire.md §2 should say the frame is {stated}");
}

#[test]
fn stated_limits_are_the_code_s_constants() {
    let doc = doc();
    let d = &doc;
    let n = |v: usize| v as u64;
    assert_row_states(d, "`Send.body`, `GroupSend.body`", n(MAX_BODY_BYTES));
    assert_row_states(d, "`MESSAGE_TOO_LARGE`", n(MAX_BODY_BYTES / 1024));
    assert_row_states(d, "`Delivery.body` (one `Envelope`)", n(MAX_ENVELOPE_BYTES));
    assert_row_states(d, "`GroupCommit.commit`, `GroupCommit.welcome`", n(MAX_HANDSHAKE_BYTES));
    assert_row_states(d, "`GroupCommit.added`, `GroupCommit.removed`", n(MAX_COMMIT_DEVICES));
    let group_id = "`group_id` (every message that names a group)";
    assert_row_states(d, group_id, n(GroupId::MIN_BYTES));
    assert_row_states(d, group_id, n(GroupId::MAX_BYTES));
    assert_row_states(d, "Member devices per group", u64::from(DEFAULT_MAX_GROUP_DEVICES));
    assert_row_states(d, "`PlaceCall.offer`, `CallOffer.offer`", n(MAX_CALL_OFFER_BYTES));
    assert_row_states(d, "`CallSignal.body`", n(MAX_CALL_SIGNAL_BYTES));
    assert_row_states(d, "`RING` envelope, encoded", n(MAX_RING_ENVELOPE_BYTES));
    assert_row_states(d, "Ringing: `PlaceCall` until `FetchOffer`", RING_TIMEOUT_MS / 1000);
    assert_row_states(d, "`RelayCredentials.relays`", n(MAX_RELAYS));
    assert_row_states(
        d,
        "Certificate (`PublishKeys.certificate`, `CertifyDevice.certificate`, `DeviceKey.certificate`, a `DeviceCertificate`)",
        n(MAX_CERTIFICATE_BYTES),
    );
    assert_row_states(
        d,
        "Key package (`PublishKeys.key_packages` entries, `PublishKeys.last_resort`, `ClaimedKeyPackage.key_package`)",
        n(MAX_KEY_PACKAGE_BYTES),
    );
    assert_row_states(d, "`PublishKeys.key_packages`", n(MAX_KEY_PACKAGES_PER_UPLOAD));
    // The server keeps twice the stock a client aims for.
    assert_row_states(d, "One-time key packages kept per device", 2 * u64::from(KEY_PACKAGE_STOCK));
    assert_row_states(d, "One-time key packages kept per device", u64::from(KEY_PACKAGE_STOCK));
    assert_row_states(
        d,
        "`FetchKeys.account_ids`, `ClaimKeyPackages.device_ids`, `AccountKeys.accounts`, `KeyPackages.packages`",
        n(MAX_KEY_REQUEST_ITEMS),
    );
    assert_row_states(
        d,
        "`device_name` (`Verify`, `BeginLink`, `DeviceInfo.name`)",
        n(MAX_DEVICE_NAME_BYTES),
    );
    assert_row_states(d, "`device_secret`", n(DEVICE_SECRET_BYTES));
    let ids = "`message_id`, `call_id`, `blob_id`, `Content.message_id` and message ids inside content";
    assert_row_states(d, ids, n(BLOB_ID_BYTES));
    assert_row_states(d, ids, n(MessageId([0; 16]).0.len()));
    assert_row_states(d, ids, n(CallId([0; 16]).0.len()));
    assert_row_states(d, "`Ack.server_ids`", n(MAX_ACK_IDS));
    assert_row_states(d, "`Failure.message`, `Goodbye.message`", n(MAX_ERROR_TEXT_BYTES));
    assert_row_states(
        d,
        "`Authenticated.label`, `Delivery.sender_label`, `AccountDevices.label`",
        n(MAX_LABEL_BYTES),
    );
    assert_row_states(d, "`DeviceList.devices`, `AccountDevices.devices`", n(MAX_LISTED_DEVICES));
    assert_row_states(
        d,
        "Code fields (`Verify.code`, `ApproveLink.code`, `LinkStarted.code`)",
        n(MAX_CODE_BYTES),
    );
    assert_row_states(d, "`StartUpload.size`", MAX_ATTACHMENT_CIPHERTEXT_BYTES);
    assert_row_states(
        d,
        "`UploadChunk.data`, `Download.length`, `BlobData.data`",
        n(MAX_ATTACHMENT_CHUNK_BYTES),
    );
    assert_row_states(d, "Attachment segment (plaintext per sealed segment)", ATTACHMENT_SEGMENT_BYTES);
    assert_row_states(d, "`Attachment.size` (plaintext)", MAX_ATTACHMENT_BYTES);
    assert_row_states(d, "`Content`, encoded", n(MAX_BODY_BYTES));
    assert_row_states(d, "`Receipt.targets`", n(MAX_RECEIPT_TARGETS));
    assert_row_states(d, "Unacknowledged deliveries in flight per connection", n(MAX_IN_FLIGHT));
    assert_row_states(d, "Devices per account", u64::from(DEFAULT_MAX_DEVICES));
    assert_row_states(d, "Queued messages per device", u64::from(DEFAULT_MAX_QUEUE));
    assert_row_states(d, "Queued message lifetime", DEFAULT_MESSAGE_TTL_SECS);
    assert_row_states(d, "Verification and link code lifetime", DEFAULT_CODE_TTL_SECS);
    assert_row_states(d, "Wrong attempts per verification code", u64::from(MAX_CODE_ATTEMPTS));
    assert_row_states(d, "`WRONG_CODE`", u64::from(MAX_CODE_ATTEMPTS));
}

// ---------------------------------------------------------------- limits kept in the codec

fn too_large_max<T: std::fmt::Debug>(field: &str, result: Result<T, DecodeError>) -> usize {
    match result {
        Err(DecodeError::TooLarge { field: f, max, .. }) if f == field => max,
        other => panic!("expected `{field}` to be too large, got {other:?}"),
    }
}

fn content(body: ContentBody) -> Vec<u8> {
    encode_content(&Content { message_id: MessageId([1; 16]), sent_at_ms: 1, seq: 0, body })
}

fn text(len: usize) -> String {
    "a".repeat(len)
}

fn attachment(name: String, mime: String, caption: String) -> ContentBody {
    ContentBody::Attachment(AttachmentPointer {
        name,
        mime,
        size: 1,
        blob_id: [2; 16],
        key: [3; 32],
        digest: [4; 32],
        caption,
    })
}

/// The doc's number is the decoder's limit: one byte more is refused with exactly that limit,
/// and the limit itself is accepted.
#[track_caller]
fn check_content_limit(doc: &str, label: &str, field: &str, make: impl Fn(usize) -> ContentBody) {
    let limit = row_limit(doc, label);
    let max = too_large_max(field, decode_content(&content(make(limit + 1))));
    assert_eq!(max, limit, "docs/wire.md row `{label}` says {limit}; the decoder's limit is {max}");
    decode_content(&content(make(limit))).unwrap();
}

#[test]
fn content_limits_are_the_decoder_s() {
    let doc = doc();
    let d = &doc;
    let label = "`Text.text`, `Edit.text`, `Attachment.caption`";
    check_content_limit(d, label, "text", |n| ContentBody::Text { text: text(n), reply_to: None });
    check_content_limit(d, label, "text", |n| ContentBody::Edit {
        target: MessageId([5; 16]),
        text: text(n),
    });
    check_content_limit(d, label, "caption", |n| attachment("a".into(), "b".into(), text(n)));
    check_content_limit(d, "`Reaction.emoji`", "emoji", |n| ContentBody::Reaction {
        target: MessageId([5; 16]),
        emoji: text(n),
    });
    check_content_limit(d, "`GroupName.name`", "name", |n| ContentBody::GroupName(text(n)));
    check_content_limit(d, "`Attachment.name`", "name", |n| attachment(text(n), "b".into(), String::new()));
    check_content_limit(d, "`Attachment.mime`", "mime", |n| attachment("a".into(), text(n), String::new()));
    check_content_limit(d, "`MediaSession.codec`", "codec", |n| {
        ContentBody::Call(CallMessage {
            call: CallId([6; 16]),
            kind: SignalKind::Answer,
            session: Some(MediaSession {
                relay_address: "192.0.2.1:3478".parse().unwrap(),
                ssrc: 1,
                epoch: 1,
                codec: text(n),
                video_ssrc: None,
            }),
        })
    });
}

fn relay_credentials_frame(username: String, password: String, relay: String) -> Vec<u8> {
    encode_server_frame(&ServerFrame::Response {
        request_id: 1,
        result: Ok(ResponseBody::RelayCredentials(RelayCredentials {
            username,
            password,
            relays: vec![relay],
            expires_at_ms: 1,
        })),
    })
}

#[test]
fn relay_credential_limits_are_the_decoder_s() {
    let doc = doc();
    type Frame = fn(String) -> Vec<u8>;
    let cases: [(&str, &str, Frame); 3] = [
        ("`RelayCredentials.username`", "username", |s| relay_credentials_frame(s, "p".into(), "r:1".into())),
        ("`RelayCredentials.password`", "password", |s| relay_credentials_frame("u".into(), s, "r:1".into())),
        ("`RelayCredentials.relays` entry", "relays", |s| relay_credentials_frame("u".into(), "p".into(), s)),
    ];
    for (label, field, frame) in cases {
        let limit = row_limit(&doc, label);
        let max = too_large_max(field, decode_server_frame(&frame(text(limit + 1))));
        assert_eq!(max, limit, "docs/wire.md row `{label}` says {limit}; the decoder's limit is {max}");
        decode_server_frame(&frame(text(limit))).unwrap();
    }
}

#[test]
fn the_number_reader_reads_the_doc_s_style() {
    assert_eq!(numbers("2 113 536 B (2 MiB + 16 KiB)"), vec![2_113_536, 2, 16]);
    assert_eq!(numbers("1 … 256 (none 0)"), vec![1, 256, 0]);
    assert_eq!(numbers("SHA-256, 32 bytes, EF23"), vec![256, 32]);
    assert_eq!(grouped(2_113_536), "2 113 536");
    assert_eq!(grouped(512), "512");
}

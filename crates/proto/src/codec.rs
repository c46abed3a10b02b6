//! Frame encoding and decoding with hard limits.
//!
//! A frame is one version byte followed by one protobuf message. Decoding checks, in order: the
//! frame is not empty and not larger than [`MAX_FRAME_BYTES`]; the version is one we speak; the
//! protobuf parses (prost allocates at most the frame's size, which is bounded); then every
//! field is converted into its typed form with its own limit. No input can make these functions
//! panic; the fuzz targets in `fuzz/` hold them to that.

use bytes::Bytes;
use prost::Message;
use rampart_core::challenge::TOKEN_BYTES;
use rampart_core::limits::{
    DEVICE_SECRET_BYTES, MAX_ACK_IDS, MAX_ATTACHMENT_CHUNK_BYTES, MAX_ATTACHMENT_CIPHERTEXT_BYTES,
    MAX_BODY_BYTES, MAX_CERTIFICATE_BYTES, MAX_CODE_BYTES, MAX_COMMIT_DEVICES, MAX_DEVICE_NAME_BYTES,
    MAX_ERROR_TEXT_BYTES, MAX_FRAME_BYTES, MAX_GROUP_INFO_BYTES, MAX_HANDSHAKE_BYTES, MAX_KEY_PACKAGE_BYTES,
    MAX_KEY_PACKAGES_PER_UPLOAD, MAX_KEY_REQUEST_ITEMS, MAX_LABEL_BYTES, MAX_LISTED_DEVICES,
};
use rampart_core::limits::{
    MAX_CALL_OFFER_BYTES, MAX_CALL_SIGNAL_BYTES, MAX_CLIENT_NAME_BYTES, MAX_RELAY_BYTES, MAX_RELAYS,
    MAX_RING_ENVELOPE_BYTES, MAX_SERVER_NOTICE_BYTES,
};
use rampart_core::{
    AccountId, DeviceId, DeviceSecret, GroupId, LinkCode, MessageId, PhoneNumber, ServerMessageId, Username,
    VerificationCode,
};
use zeroize::Zeroize;

use crate::frames::*;
use crate::pb;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// Longest text in a `Content`.
const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Longest reaction emoji.
const MAX_EMOJI_BYTES: usize = 32;
/// Longest group name.
const MAX_GROUP_NAME_BYTES: usize = 128;
/// Most message ids in one receipt.
pub const MAX_RECEIPT_TARGETS: usize = 256;
pub use rampart_core::limits::MAX_ATTACHMENT_BYTES;

/// Why bytes are not a valid frame. Safe to show to the peer and to log: it never quotes the
/// input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty frame")]
    Empty,
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("unsupported protocol version {found}; this peer speaks version {PROTOCOL_VERSION}")]
    UnsupportedVersion { found: u8 },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}` has {len} bytes; the limit is {max}")]
    TooLarge { field: &'static str, len: usize, max: usize },
    #[error("field `{field}` is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A call request that does not fit the call schema: the server counts these against the
    /// caller (a sign of a hostile client probing call set-up).
    #[error("call envelope: {0}")]
    CallEnvelope(Box<DecodeError>),
}

impl DecodeError {
    /// The error code to answer a client with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            DecodeError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            DecodeError::TooLarge { field: "body", .. } => ErrorCode::MessageTooLarge,
            _ => ErrorCode::BadRequest,
        }
    }

    /// True for a call request that did not fit the call schema.
    pub fn is_call_envelope(&self) -> bool {
        matches!(self, DecodeError::CallEnvelope(_))
    }

    fn in_call(self) -> Self {
        DecodeError::CallEnvelope(Box::new(self))
    }
}

// ---------------------------------------------------------------- call fields

fn call_id(bytes: &[u8]) -> Result<CallId, DecodeError> {
    fixed("call_id", bytes).map(CallId)
}

fn media_kind(v: i32) -> Result<MediaKind, DecodeError> {
    match pb::MediaKind::try_from(v) {
        Ok(pb::MediaKind::Audio) => Ok(MediaKind::Audio),
        _ => Err(DecodeError::Invalid { field: "media", reason: "unknown media kind".into() }),
    }
}

fn media_kind_to_pb(m: MediaKind) -> pb::MediaKind {
    match m {
        MediaKind::Audio => pb::MediaKind::Audio,
    }
}

fn signal_kind(v: i32) -> Result<SignalKind, DecodeError> {
    use pb::SignalKind as P;
    Ok(match P::try_from(v) {
        Ok(P::Offer) => SignalKind::Offer,
        Ok(P::Answer) => SignalKind::Answer,
        Ok(P::Candidates) => SignalKind::Candidates,
        Ok(P::Connect) => SignalKind::Connect,
        Ok(P::Update) => SignalKind::Update,
        Ok(P::Hangup) => SignalKind::Hangup,
        Ok(P::Busy) => SignalKind::Busy,
        Ok(P::Reject) => SignalKind::Reject,
        Ok(P::Unspecified) | Err(_) => {
            return Err(DecodeError::Invalid { field: "kind", reason: "unknown signal kind".into() });
        }
    })
}

fn signal_kind_to_pb(k: SignalKind) -> pb::SignalKind {
    use pb::SignalKind as P;
    match k {
        SignalKind::Offer => P::Offer,
        SignalKind::Answer => P::Answer,
        SignalKind::Candidates => P::Candidates,
        SignalKind::Connect => P::Connect,
        SignalKind::Update => P::Update,
        SignalKind::Hangup => P::Hangup,
        SignalKind::Busy => P::Busy,
        SignalKind::Reject => P::Reject,
    }
}

/// Signals that carry no end-to-end content: the kind says it all.
fn signal_is_bare(kind: SignalKind) -> bool {
    matches!(kind, SignalKind::Hangup | SignalKind::Busy | SignalKind::Reject)
}

fn decode_call_signal(r: pb::CallSignal) -> Result<ClientRequest, DecodeError> {
    let kind = signal_kind(r.kind)?;
    if kind == SignalKind::Offer {
        return Err(DecodeError::Invalid { field: "kind", reason: "offers go with PlaceCall".into() });
    }
    // Ending signals are their kind alone: a ringing callee acts on the kind, so they carry no
    // bytes at all (nothing of the caller's rides along to a device that has not accepted).
    let body = if signal_is_bare(kind) {
        if !r.body.is_empty() {
            return Err(DecodeError::Invalid { field: "body", reason: "must be empty for this kind".into() });
        }
        Bytes::new()
    } else {
        required_bytes("body", r.body, MAX_CALL_SIGNAL_BYTES)?
    };
    Ok(ClientRequest::CallSignal { call: call_id(&r.call_id)?, kind, body })
}

fn split_frame(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::FrameTooLarge { len: bytes.len(), max: MAX_FRAME_BYTES });
    }
    let (&version, payload) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion { found: version });
    }
    Ok(payload)
}

fn framed(msg: &impl Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + msg.encoded_len());
    out.push(PROTOCOL_VERSION);
    // Encoding into a Vec cannot run out of space, so the error branch is unreachable; it is
    // still handled rather than unwrapped.
    if msg.encode(&mut out).is_err() {
        out.truncate(1);
    }
    out
}

// ---------------------------------------------------------------- field checks

fn bounded_str(field: &'static str, s: String, max: usize) -> Result<String, DecodeError> {
    if s.len() > max {
        return Err(DecodeError::TooLarge { field, len: s.len(), max });
    }
    Ok(s)
}

/// A server notice's text: bounded UTF-8, no control characters but newlines (it is shown in
/// terminals, and the server is not trusted to keep escape sequences out).
pub fn server_notice(bytes: Vec<u8>) -> Result<String, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Missing("notice"));
    }
    let text = bounded_str(
        "notice",
        String::from_utf8(bytes)
            .map_err(|_| DecodeError::Invalid { field: "notice", reason: "not UTF-8".into() })?,
        MAX_SERVER_NOTICE_BYTES,
    )?;
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(DecodeError::Invalid { field: "notice", reason: "control characters".into() });
    }
    Ok(text)
}

/// Group names are shown to people (in lists, call bars, reports): bounded and free of
/// control characters, so a member cannot move the cursor or rewrite a terminal.
pub fn group_name(s: String) -> Result<String, DecodeError> {
    let s = bounded_str("name", s, MAX_GROUP_NAME_BYTES)?;
    if s.chars().any(char::is_control) {
        return Err(DecodeError::Invalid { field: "name", reason: "control characters".into() });
    }
    Ok(s)
}

/// Device names are shown to people: bounded and free of control characters.
/// A software name: printable ASCII only (it goes to logs and the operators' pages).
fn client_name(s: String) -> Result<String, DecodeError> {
    let s = bounded_str("client", s, MAX_CLIENT_NAME_BYTES)?;
    if !s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(DecodeError::Invalid { field: "client", reason: "not printable ASCII".into() });
    }
    Ok(s)
}

fn device_name(s: String) -> Result<String, DecodeError> {
    let s = bounded_str("device_name", s, MAX_DEVICE_NAME_BYTES)?;
    if s.chars().any(char::is_control) {
        return Err(DecodeError::Invalid { field: "device_name", reason: "control characters".into() });
    }
    Ok(s)
}

fn label(s: String) -> Result<String, DecodeError> {
    let s = bounded_str("sender_label", s, MAX_LABEL_BYTES)?;
    if s.chars().any(char::is_control) {
        return Err(DecodeError::Invalid { field: "sender_label", reason: "control characters".into() });
    }
    Ok(s)
}

fn phone(field: &'static str, s: &str) -> Result<PhoneNumber, DecodeError> {
    if s.is_empty() {
        return Err(DecodeError::Missing(field));
    }
    PhoneNumber::parse(s).map_err(|e| DecodeError::Invalid { field, reason: e.to_string() })
}

fn username(field: &'static str, s: &str) -> Result<Username, DecodeError> {
    Username::parse(s).map_err(|e| DecodeError::Invalid { field, reason: e.to_string() })
}

fn optional_username(field: &'static str, s: &str) -> Result<Option<Username>, DecodeError> {
    if s.is_empty() { Ok(None) } else { username(field, s).map(Some) }
}

fn secret(mut bytes: Vec<u8>) -> Result<DeviceSecret, DecodeError> {
    let parsed = DeviceSecret::from_slice(&bytes);
    let len = bytes.len();
    bytes.zeroize();
    parsed.ok_or(DecodeError::Invalid {
        field: "device_secret",
        reason: format!("must be {DEVICE_SECRET_BYTES} bytes, got {len}"),
    })
}

fn message_id(bytes: &[u8]) -> Result<MessageId, DecodeError> {
    MessageId::from_slice(bytes).ok_or(DecodeError::Invalid {
        field: "message_id",
        reason: format!("must be 16 bytes, got {}", bytes.len()),
    })
}

fn body(bytes: Bytes) -> Result<Bytes, DecodeError> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(DecodeError::TooLarge { field: "body", len: bytes.len(), max: MAX_BODY_BYTES });
    }
    Ok(bytes)
}

fn bounded_bytes(field: &'static str, bytes: Vec<u8>, max: usize) -> Result<Bytes, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge { field, len: bytes.len(), max });
    }
    Ok(bytes.into())
}

fn required_bytes(field: &'static str, bytes: Vec<u8>, max: usize) -> Result<Bytes, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Missing(field));
    }
    bounded_bytes(field, bytes, max)
}

fn optional_bytes(field: &'static str, bytes: Vec<u8>, max: usize) -> Result<Option<Bytes>, DecodeError> {
    if bytes.is_empty() { Ok(None) } else { bounded_bytes(field, bytes, max).map(Some) }
}

fn group_id(bytes: &[u8]) -> Result<GroupId, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Missing("group_id"));
    }
    GroupId::from_slice(bytes).ok_or(DecodeError::Invalid {
        field: "group_id",
        reason: format!(
            "must be {} to {} bytes, got {}",
            GroupId::MIN_BYTES,
            GroupId::MAX_BYTES,
            bytes.len()
        ),
    })
}

fn id_list<T>(
    field: &'static str,
    ids: Vec<u64>,
    min: usize,
    max: usize,
    make: fn(u64) -> T,
) -> Result<Vec<T>, DecodeError> {
    if ids.len() < min {
        return Err(DecodeError::Missing(field));
    }
    if ids.len() > max {
        return Err(DecodeError::TooLarge { field, len: ids.len(), max });
    }
    ids.into_iter().map(|id| nonzero(field, id).map(make)).collect()
}

fn fixed<const N: usize>(field: &'static str, bytes: &[u8]) -> Result<[u8; N], DecodeError> {
    <[u8; N]>::try_from(bytes).map_err(|_| DecodeError::Invalid {
        field,
        reason: format!("must be {N} bytes, got {}", bytes.len()),
    })
}

fn recipient(r: Option<pb::Recipient>, field: &'static str) -> Result<Recipient, DecodeError> {
    let to = r.and_then(|t| t.to).ok_or(DecodeError::Missing(field))?;
    Ok(match to {
        pb::recipient::To::Phone(p) => Recipient::Phone(phone("phone", &p)?),
        pb::recipient::To::Username(u) => Recipient::Username(username("username", &u)?),
    })
}

fn recipient_to_pb(to: &Recipient) -> pb::Recipient {
    pb::Recipient {
        to: Some(match to {
            Recipient::Phone(p) => pb::recipient::To::Phone(p.as_e164().to_owned()),
            Recipient::Username(u) => pb::recipient::To::Username(u.as_str().to_owned()),
        }),
    }
}

fn nonzero(field: &'static str, id: u64) -> Result<u64, DecodeError> {
    if id == 0 { Err(DecodeError::Missing(field)) } else { Ok(id) }
}

fn code_str(field: &'static str, s: &str) -> Result<(), DecodeError> {
    if s.len() > MAX_CODE_BYTES {
        return Err(DecodeError::TooLarge { field, len: s.len(), max: MAX_CODE_BYTES });
    }
    Ok(())
}

// ---------------------------------------------------------------- client frames

/// Decode a frame sent by a client.
pub fn decode_client_frame(bytes: &[u8]) -> Result<ClientFrame, DecodeError> {
    let payload = split_frame(bytes)?;
    let frame = pb::ClientFrame::decode(payload).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let request = frame.request.ok_or(DecodeError::Missing("request"))?;
    use pb::client_frame::Request as R;
    let request = match request {
        R::Register(r) => ClientRequest::Register {
            phone: phone("phone", &r.phone)?,
            username: optional_username("username", &r.username)?,
        },
        R::Verify(r) => {
            code_str("code", &r.code)?;
            ClientRequest::Verify {
                phone: phone("phone", &r.phone)?,
                code: VerificationCode::parse(&r.code)
                    .map_err(|e| DecodeError::Invalid { field: "code", reason: e.to_string() })?,
                device_name: device_name(r.device_name)?,
                secret: secret(r.device_secret)?,
            }
        }
        R::Authenticate(r) => ClientRequest::Authenticate {
            device: DeviceId(nonzero("device_id", r.device_id)?),
            secret: secret(r.device_secret)?,
            client: client_name(r.client)?,
        },
        R::BeginLink(r) => ClientRequest::BeginLink {
            device_name: device_name(r.device_name)?,
            secret: secret(r.device_secret)?,
        },
        R::ApproveLink(r) => {
            code_str("code", &r.code)?;
            ClientRequest::ApproveLink {
                code: LinkCode::parse(&r.code)
                    .map_err(|e| DecodeError::Invalid { field: "code", reason: e.to_string() })?,
            }
        }
        R::Send(r) => ClientRequest::Send {
            to: recipient(r.to, "to")?,
            message_id: message_id(&r.message_id)?,
            body: body(r.body.into())?,
        },
        R::Ack(r) => {
            if r.server_ids.is_empty() {
                return Err(DecodeError::Missing("server_ids"));
            }
            if r.server_ids.len() > MAX_ACK_IDS {
                return Err(DecodeError::TooLarge {
                    field: "server_ids",
                    len: r.server_ids.len(),
                    max: MAX_ACK_IDS,
                });
            }
            ClientRequest::Ack { ids: r.server_ids.into_iter().map(ServerMessageId).collect() }
        }
        R::ListDevices(_) => ClientRequest::ListDevices,
        R::RevokeDevice(r) => {
            ClientRequest::RevokeDevice { device: DeviceId(nonzero("device_id", r.device_id)?) }
        }
        R::SetUsername(r) => {
            ClientRequest::SetUsername { username: optional_username("username", &r.username)? }
        }
        R::Ping(_) => ClientRequest::Ping,
        R::PublishKeys(r) => {
            if r.key_packages.len() > MAX_KEY_PACKAGES_PER_UPLOAD {
                return Err(DecodeError::TooLarge {
                    field: "key_packages",
                    len: r.key_packages.len(),
                    max: MAX_KEY_PACKAGES_PER_UPLOAD,
                });
            }
            ClientRequest::PublishKeys {
                certificate: optional_bytes("certificate", r.certificate, MAX_CERTIFICATE_BYTES)?,
                key_packages: r
                    .key_packages
                    .into_iter()
                    .map(|k| required_bytes("key_packages", k, MAX_KEY_PACKAGE_BYTES))
                    .collect::<Result<_, _>>()?,
                last_resort: optional_bytes("last_resort", r.last_resort, MAX_KEY_PACKAGE_BYTES)?,
            }
        }
        R::CertifyDevice(r) => ClientRequest::CertifyDevice {
            device: DeviceId(nonzero("device_id", r.device_id)?),
            certificate: required_bytes("certificate", r.certificate, MAX_CERTIFICATE_BYTES)?,
        },
        R::LookupAccount(r) => ClientRequest::LookupAccount { who: recipient(r.who, "who")? },
        R::FetchKeys(r) => ClientRequest::FetchKeys {
            accounts: id_list("account_ids", r.account_ids, 1, MAX_KEY_REQUEST_ITEMS, AccountId)?,
        },
        R::ClaimKeyPackages(r) => ClientRequest::ClaimKeyPackages {
            devices: id_list("device_ids", r.device_ids, 1, MAX_KEY_REQUEST_ITEMS, DeviceId)?,
        },
        R::GroupCommit(r) => ClientRequest::GroupCommit(GroupCommit {
            group: group_id(&r.group_id)?,
            epoch: r.epoch,
            message_id: message_id(&r.message_id)?,
            commit: required_bytes("commit", r.commit, MAX_HANDSHAKE_BYTES)?,
            welcome: optional_bytes("welcome", r.welcome, MAX_HANDSHAKE_BYTES)?,
            group_info: optional_bytes("group_info", r.group_info, MAX_GROUP_INFO_BYTES)?,
            added: id_list("added", r.added, 0, MAX_COMMIT_DEVICES, DeviceId)?,
            removed: id_list("removed", r.removed, 0, MAX_COMMIT_DEVICES, DeviceId)?,
        }),
        R::GroupSend(r) => ClientRequest::GroupSend {
            group: group_id(&r.group_id)?,
            message_id: message_id(&r.message_id)?,
            body: body(r.body.into())?,
        },
        R::LeaveGroup(r) => ClientRequest::LeaveGroup { group: group_id(&r.group_id)? },
        R::StartUpload(r) => {
            if r.size == 0 {
                return Err(DecodeError::Missing("size"));
            }
            if r.size > MAX_ATTACHMENT_CIPHERTEXT_BYTES {
                return Err(DecodeError::Invalid { field: "size", reason: "larger than 100 MiB".into() });
            }
            ClientRequest::StartUpload { size: r.size }
        }
        R::UploadChunk(r) => ClientRequest::UploadChunk {
            blob: fixed("blob_id", &r.blob_id)?,
            offset: r.offset,
            data: required_bytes("data", r.data, MAX_ATTACHMENT_CHUNK_BYTES)?,
        },
        R::Download(r) => {
            if r.length == 0 {
                return Err(DecodeError::Missing("length"));
            }
            if r.length as usize > MAX_ATTACHMENT_CHUNK_BYTES {
                return Err(DecodeError::TooLarge {
                    field: "length",
                    len: r.length as usize,
                    max: MAX_ATTACHMENT_CHUNK_BYTES,
                });
            }
            ClientRequest::Download {
                blob: fixed("blob_id", &r.blob_id)?,
                offset: r.offset,
                length: r.length,
            }
        }
        R::PlaceCall(r) => (|| {
            Ok(ClientRequest::PlaceCall {
                call: call_id(&r.call_id)?,
                callee: AccountId(nonzero("callee_account_id", r.callee_account_id)?),
                group: group_id(&r.group_id)?,
                media: media_kind(r.media)?,
                offer: required_bytes("offer", r.offer, MAX_CALL_OFFER_BYTES)?,
                answer: r.answer.map(challenge_answer).transpose()?,
            })
        })()
        .map_err(DecodeError::in_call)?,
        R::FetchOffer(r) => {
            ClientRequest::FetchOffer { call: call_id(&r.call_id).map_err(DecodeError::in_call)? }
        }
        R::CallSignal(r) => decode_call_signal(r).map_err(DecodeError::in_call)?,
        R::Block(r) => ClientRequest::Block { account: AccountId(nonzero("account_id", r.account_id)?) },
        R::Unblock(r) => ClientRequest::Unblock { account: AccountId(nonzero("account_id", r.account_id)?) },
        R::FetchRelayCredentials(r) => {
            ClientRequest::FetchRelayCredentials { call: call_id(&r.call_id).map_err(DecodeError::in_call)? }
        }
    };
    Ok(ClientFrame { request_id: frame.request_id, request })
}

/// Encode a frame to send to the server.
pub fn encode_client_frame(frame: &ClientFrame) -> Vec<u8> {
    use pb::client_frame::Request as R;
    let request = match &frame.request {
        ClientRequest::Register { phone, username } => R::Register(pb::Register {
            phone: phone.as_e164().to_owned(),
            username: username.as_ref().map(|u| u.as_str().to_owned()).unwrap_or_default(),
        }),
        ClientRequest::Verify { phone, code, device_name, secret } => R::Verify(pb::Verify {
            phone: phone.as_e164().to_owned(),
            code: code.as_str().to_owned(),
            device_name: device_name.clone(),
            device_secret: secret.as_bytes().to_vec(),
        }),
        ClientRequest::Authenticate { device, secret, client } => R::Authenticate(pb::Authenticate {
            device_id: device.0,
            device_secret: secret.as_bytes().to_vec(),
            client: client.clone(),
        }),
        ClientRequest::BeginLink { device_name, secret } => R::BeginLink(pb::BeginLink {
            device_name: device_name.clone(),
            device_secret: secret.as_bytes().to_vec(),
        }),
        ClientRequest::ApproveLink { code } => {
            R::ApproveLink(pb::ApproveLink { code: code.as_str().to_owned() })
        }
        ClientRequest::Send { to, message_id, body } => R::Send(pb::Send {
            to: Some(recipient_to_pb(to)),
            message_id: message_id.0.to_vec(),
            body: body.to_vec(),
        }),
        ClientRequest::Ack { ids } => R::Ack(pb::Ack { server_ids: ids.iter().map(|i| i.0).collect() }),
        ClientRequest::ListDevices => R::ListDevices(pb::ListDevices {}),
        ClientRequest::RevokeDevice { device } => R::RevokeDevice(pb::RevokeDevice { device_id: device.0 }),
        ClientRequest::SetUsername { username } => R::SetUsername(pb::SetUsername {
            username: username.as_ref().map(|u| u.as_str().to_owned()).unwrap_or_default(),
        }),
        ClientRequest::Ping => R::Ping(pb::Ping {}),
        ClientRequest::PublishKeys { certificate, key_packages, last_resort } => {
            R::PublishKeys(pb::PublishKeys {
                certificate: certificate.as_ref().map(|c| c.to_vec()).unwrap_or_default(),
                key_packages: key_packages.iter().map(|k| k.to_vec()).collect(),
                last_resort: last_resort.as_ref().map(|c| c.to_vec()).unwrap_or_default(),
            })
        }
        ClientRequest::CertifyDevice { device, certificate } => {
            R::CertifyDevice(pb::CertifyDevice { device_id: device.0, certificate: certificate.to_vec() })
        }
        ClientRequest::LookupAccount { who } => {
            R::LookupAccount(pb::LookupAccount { who: Some(recipient_to_pb(who)) })
        }
        ClientRequest::FetchKeys { accounts } => {
            R::FetchKeys(pb::FetchKeys { account_ids: accounts.iter().map(|a| a.0).collect() })
        }
        ClientRequest::ClaimKeyPackages { devices } => {
            R::ClaimKeyPackages(pb::ClaimKeyPackages { device_ids: devices.iter().map(|d| d.0).collect() })
        }
        ClientRequest::GroupCommit(c) => R::GroupCommit(pb::GroupCommit {
            group_id: c.group.as_bytes().to_vec(),
            epoch: c.epoch,
            commit: c.commit.to_vec(),
            welcome: c.welcome.as_ref().map(|w| w.to_vec()).unwrap_or_default(),
            group_info: c.group_info.as_ref().map(|g| g.to_vec()).unwrap_or_default(),
            added: c.added.iter().map(|d| d.0).collect(),
            removed: c.removed.iter().map(|d| d.0).collect(),
            message_id: c.message_id.0.to_vec(),
        }),
        ClientRequest::GroupSend { group, message_id, body } => R::GroupSend(pb::GroupSend {
            group_id: group.as_bytes().to_vec(),
            message_id: message_id.0.to_vec(),
            body: body.to_vec(),
        }),
        ClientRequest::LeaveGroup { group } => {
            R::LeaveGroup(pb::LeaveGroup { group_id: group.as_bytes().to_vec() })
        }
        ClientRequest::StartUpload { size } => R::StartUpload(pb::StartUpload { size: *size }),
        ClientRequest::UploadChunk { blob, offset, data } => {
            R::UploadChunk(pb::UploadChunk { blob_id: blob.to_vec(), offset: *offset, data: data.to_vec() })
        }
        ClientRequest::Download { blob, offset, length } => {
            R::Download(pb::Download { blob_id: blob.to_vec(), offset: *offset, length: *length })
        }
        ClientRequest::PlaceCall { call, callee, group, media, offer, answer } => {
            R::PlaceCall(pb::PlaceCall {
                call_id: call.0.to_vec(),
                callee_account_id: callee.0,
                group_id: group.as_bytes().to_vec(),
                media: media_kind_to_pb(*media) as i32,
                offer: offer.to_vec(),
                answer: answer
                    .as_ref()
                    .map(|a| pb::ChallengeAnswer { token: a.token.to_vec(), nonce: a.nonce }),
            })
        }
        ClientRequest::FetchOffer { call } => R::FetchOffer(pb::FetchOffer { call_id: call.0.to_vec() }),
        ClientRequest::CallSignal { call, kind, body } => R::CallSignal(pb::CallSignal {
            call_id: call.0.to_vec(),
            kind: signal_kind_to_pb(*kind) as i32,
            body: body.to_vec(),
        }),
        ClientRequest::Block { account } => R::Block(pb::Block { account_id: account.0 }),
        ClientRequest::Unblock { account } => R::Unblock(pb::Unblock { account_id: account.0 }),
        ClientRequest::FetchRelayCredentials { call } => {
            R::FetchRelayCredentials(pb::FetchRelayCredentials { call_id: call.0.to_vec() })
        }
    };
    let mut msg = pb::ClientFrame { request_id: frame.request_id, request: Some(request) };
    let out = framed(&msg);
    wipe_client_secrets(&mut msg);
    out
}

fn wipe_client_secrets(msg: &mut pb::ClientFrame) {
    use pb::client_frame::Request as R;
    match &mut msg.request {
        Some(R::Verify(r)) => r.device_secret.zeroize(),
        Some(R::Authenticate(r)) => r.device_secret.zeroize(),
        Some(R::BeginLink(r)) => r.device_secret.zeroize(),
        _ => {}
    }
}

// ---------------------------------------------------------------- server frames

/// A challenge token is exactly [`TOKEN_BYTES`] long; a difficulty is what clients give at most
/// (a larger one is refused by the client before any work, with its own error).
fn call_challenge(c: pb::CallChallenge) -> Result<Challenge, DecodeError> {
    if c.token.len() != TOKEN_BYTES {
        return Err(DecodeError::Invalid {
            field: "challenge.token",
            reason: format!("must be {TOKEN_BYTES} bytes, got {}", c.token.len()),
        });
    }
    let difficulty_bits = u8::try_from(c.difficulty_bits).map_err(|_| DecodeError::Invalid {
        field: "challenge.difficulty_bits",
        reason: format!("{} is not a number of bits", c.difficulty_bits),
    })?;
    Ok(Challenge { token: c.token, difficulty_bits, expires_at_ms: c.expires_at_ms })
}

fn challenge_answer(a: pb::ChallengeAnswer) -> Result<ChallengeAnswer, DecodeError> {
    if a.token.len() != TOKEN_BYTES {
        return Err(DecodeError::Invalid {
            field: "answer.token",
            reason: format!("must be {TOKEN_BYTES} bytes, got {}", a.token.len()),
        });
    }
    Ok(ChallengeAnswer { token: Bytes::from(a.token), nonce: a.nonce })
}

fn error_code_to_pb(code: ErrorCode) -> pb::ErrorCode {
    use pb::ErrorCode as P;
    match code {
        ErrorCode::BadRequest => P::BadRequest,
        ErrorCode::UnsupportedVersion => P::UnsupportedVersion,
        ErrorCode::FrameTooLarge => P::FrameTooLarge,
        ErrorCode::NotAuthenticated => P::NotAuthenticated,
        ErrorCode::InvalidCredentials => P::InvalidCredentials,
        ErrorCode::RateLimited => P::RateLimited,
        ErrorCode::WrongCode => P::WrongCode,
        ErrorCode::CodeExpired => P::CodeExpired,
        ErrorCode::NoPendingCode => P::NoPendingCode,
        ErrorCode::UsernameTaken => P::UsernameTaken,
        ErrorCode::NoSuchRecipient => P::NoSuchRecipient,
        ErrorCode::NoSuchLink => P::NoSuchLink,
        ErrorCode::TooManyDevices => P::TooManyDevices,
        ErrorCode::QueueFull => P::QueueFull,
        ErrorCode::MessageTooLarge => P::MessageTooLarge,
        ErrorCode::NoSuchDevice => P::NoSuchDevice,
        ErrorCode::WrongState => P::WrongState,
        ErrorCode::Unavailable => P::Unavailable,
        ErrorCode::Internal => P::Internal,
        ErrorCode::StaleEpoch => P::StaleEpoch,
        ErrorCode::NoSuchGroup => P::NoSuchGroup,
        ErrorCode::NotAMember => P::NotAMember,
        ErrorCode::NoKeyPackage => P::NoKeyPackage,
        ErrorCode::BadKey => P::BadKey,
        ErrorCode::Forbidden => P::Forbidden,
        ErrorCode::ChallengeRequired => P::ChallengeRequired,
    }
}

fn error_code_from_pb(code: i32) -> ErrorCode {
    use pb::ErrorCode as P;
    match P::try_from(code) {
        Ok(P::BadRequest) => ErrorCode::BadRequest,
        Ok(P::UnsupportedVersion) => ErrorCode::UnsupportedVersion,
        Ok(P::FrameTooLarge) => ErrorCode::FrameTooLarge,
        Ok(P::NotAuthenticated) => ErrorCode::NotAuthenticated,
        Ok(P::InvalidCredentials) => ErrorCode::InvalidCredentials,
        Ok(P::RateLimited) => ErrorCode::RateLimited,
        Ok(P::WrongCode) => ErrorCode::WrongCode,
        Ok(P::CodeExpired) => ErrorCode::CodeExpired,
        Ok(P::NoPendingCode) => ErrorCode::NoPendingCode,
        Ok(P::UsernameTaken) => ErrorCode::UsernameTaken,
        Ok(P::NoSuchRecipient) => ErrorCode::NoSuchRecipient,
        Ok(P::NoSuchLink) => ErrorCode::NoSuchLink,
        Ok(P::TooManyDevices) => ErrorCode::TooManyDevices,
        Ok(P::QueueFull) => ErrorCode::QueueFull,
        Ok(P::MessageTooLarge) => ErrorCode::MessageTooLarge,
        Ok(P::NoSuchDevice) => ErrorCode::NoSuchDevice,
        Ok(P::WrongState) => ErrorCode::WrongState,
        Ok(P::Unavailable) => ErrorCode::Unavailable,
        Ok(P::StaleEpoch) => ErrorCode::StaleEpoch,
        Ok(P::NoSuchGroup) => ErrorCode::NoSuchGroup,
        Ok(P::NotAMember) => ErrorCode::NotAMember,
        Ok(P::NoKeyPackage) => ErrorCode::NoKeyPackage,
        Ok(P::BadKey) => ErrorCode::BadKey,
        Ok(P::Forbidden) => ErrorCode::Forbidden,
        Ok(P::ChallengeRequired) => ErrorCode::ChallengeRequired,
        // A newer server may send codes we do not know yet: treat them as internal errors,
        // the message text still explains.
        Ok(P::Internal) | Ok(P::Unspecified) | Err(_) => ErrorCode::Internal,
    }
}

fn goodbye_to_pb(reason: GoodbyeReason) -> pb::GoodbyeReason {
    match reason {
        GoodbyeReason::Unspecified => pb::GoodbyeReason::Unspecified,
        GoodbyeReason::ShuttingDown => pb::GoodbyeReason::ShuttingDown,
        GoodbyeReason::DeviceRevoked => pb::GoodbyeReason::DeviceRevoked,
        GoodbyeReason::IdleTimeout => pb::GoodbyeReason::IdleTimeout,
        GoodbyeReason::ProtocolViolation => pb::GoodbyeReason::ProtocolViolation,
    }
}

fn goodbye_from_pb(reason: i32) -> GoodbyeReason {
    match pb::GoodbyeReason::try_from(reason) {
        Ok(pb::GoodbyeReason::ShuttingDown) => GoodbyeReason::ShuttingDown,
        Ok(pb::GoodbyeReason::DeviceRevoked) => GoodbyeReason::DeviceRevoked,
        Ok(pb::GoodbyeReason::IdleTimeout) => GoodbyeReason::IdleTimeout,
        Ok(pb::GoodbyeReason::ProtocolViolation) => GoodbyeReason::ProtocolViolation,
        Ok(pb::GoodbyeReason::Unspecified) | Err(_) => GoodbyeReason::Unspecified,
    }
}

/// Encode a frame to send to a client.
pub fn encode_server_frame(frame: &ServerFrame) -> Vec<u8> {
    use pb::server_frame::Frame as F;
    let f = match frame {
        ServerFrame::Response { request_id, result } => {
            use pb::response::Result as R;
            let result = match result {
                Err(e) => R::Error(pb::Failure {
                    code: error_code_to_pb(e.code) as i32,
                    message: truncate(&e.message, MAX_ERROR_TEXT_BYTES),
                    retry_after_ms: e.retry_after_ms,
                    challenge: e.challenge.as_ref().map(|c| pb::CallChallenge {
                        token: c.token.clone(),
                        difficulty_bits: u32::from(c.difficulty_bits),
                        expires_at_ms: c.expires_at_ms,
                    }),
                }),
                Ok(ResponseBody::Ok) => R::Ok(pb::Success {}),
                Ok(ResponseBody::RegistrationStarted { expires_in_secs }) => {
                    R::RegistrationStarted(pb::RegistrationStarted { expires_in_secs: *expires_in_secs })
                }
                Ok(ResponseBody::Registered { account, device, replaced_existing }) => {
                    R::Registered(pb::Registered {
                        account_id: account.0,
                        device_id: device.0,
                        replaced_existing: *replaced_existing,
                    })
                }
                Ok(ResponseBody::Authenticated { account, device, label }) => {
                    R::Authenticated(pb::Authenticated {
                        account_id: account.0,
                        device_id: device.0,
                        label: label.clone(),
                    })
                }
                Ok(ResponseBody::LinkStarted { code, expires_in_secs }) => R::LinkStarted(pb::LinkStarted {
                    code: code.as_str().to_owned(),
                    expires_in_secs: *expires_in_secs,
                }),
                Ok(ResponseBody::LinkApproved { device }) => {
                    R::LinkApproved(pb::LinkApproved { device_id: device.0 })
                }
                Ok(ResponseBody::Sent { server_timestamp_ms, recipient_devices, skipped_devices }) => {
                    R::Sent(pb::Sent {
                        server_timestamp_ms: *server_timestamp_ms,
                        recipient_devices: *recipient_devices,
                        skipped_devices: *skipped_devices,
                    })
                }
                Ok(ResponseBody::Devices(list)) => R::Devices(pb::DeviceList {
                    devices: list
                        .iter()
                        .map(|d| pb::DeviceInfo {
                            device_id: d.device.0,
                            name: d.name.clone(),
                            created_at_ms: d.created_at_ms,
                            last_seen_at_ms: d.last_seen_at_ms,
                        })
                        .collect(),
                }),
                Ok(ResponseBody::Pong { server_time_ms }) => {
                    R::Pong(pb::Pong { server_time_ms: *server_time_ms })
                }
                Ok(ResponseBody::AccountKeys(accounts)) => R::AccountKeys(pb::AccountKeys {
                    accounts: accounts
                        .iter()
                        .map(|a| pb::AccountDevices {
                            account_id: a.account.0,
                            label: a.label.clone(),
                            devices: a
                                .devices
                                .iter()
                                .map(|(d, c)| pb::DeviceKey {
                                    device_id: d.0,
                                    certificate: c.as_ref().map(|c| c.to_vec()).unwrap_or_default(),
                                })
                                .collect(),
                        })
                        .collect(),
                }),
                Ok(ResponseBody::KeyPackages(list)) => R::KeyPackages(pb::KeyPackages {
                    packages: list
                        .iter()
                        .map(|(d, k)| pb::ClaimedKeyPackage { device_id: d.0, key_package: k.to_vec() })
                        .collect(),
                }),
                Ok(ResponseBody::CommitAccepted { epoch }) => {
                    R::CommitAccepted(pb::CommitAccepted { epoch: *epoch })
                }
                Ok(ResponseBody::KeysPublished { one_time_left }) => {
                    R::KeysPublished(pb::KeysPublished { one_time_left: *one_time_left })
                }
                Ok(ResponseBody::UploadStarted { blob, chunk_bytes }) => {
                    R::UploadStarted(pb::UploadStarted { blob_id: blob.to_vec(), chunk_bytes: *chunk_bytes })
                }
                Ok(ResponseBody::ChunkStored { stored, complete }) => {
                    R::ChunkStored(pb::ChunkStored { stored: *stored, complete: *complete })
                }
                Ok(ResponseBody::BlobData { total, data }) => {
                    R::BlobData(pb::BlobData { total: *total, data: data.to_vec() })
                }
                Ok(ResponseBody::CallPlaced { ringing_devices }) => {
                    R::CallPlaced(pb::CallPlaced { ringing_devices: *ringing_devices })
                }
                Ok(ResponseBody::CallOffer { group, offer }) => {
                    R::CallOffer(pb::CallOffer { group_id: group.as_bytes().to_vec(), offer: offer.to_vec() })
                }
                Ok(ResponseBody::RelayCredentials(c)) => R::RelayCredentials(pb::RelayCredentials {
                    username: c.username.clone(),
                    password: c.password.clone(),
                    relays: c.relays.clone(),
                    expires_at_ms: c.expires_at_ms,
                }),
            };
            F::Response(pb::Response { request_id: *request_id, result: Some(result) })
        }
        ServerFrame::Delivery(d) => F::Delivery(pb::Delivery {
            server_id: d.server_id.0,
            message_id: d.message_id.0.to_vec(),
            sender_account_id: d.sender_account.0,
            sender_device_id: d.sender_device.0,
            sender_label: d.sender_label.clone(),
            server_timestamp_ms: d.server_timestamp_ms,
            body: d.body.to_vec(),
        }),
        ServerFrame::QueueDrained => F::QueueDrained(pb::QueueDrained {}),
        ServerFrame::LinkCompleted { account, device } => {
            F::LinkCompleted(pb::LinkCompleted { account_id: account.0, device_id: device.0 })
        }
        ServerFrame::Goodbye { reason, message } => F::Goodbye(pb::Goodbye {
            reason: goodbye_to_pb(*reason) as i32,
            message: truncate(message, MAX_ERROR_TEXT_BYTES),
        }),
    };
    framed(&pb::ServerFrame { frame: Some(f) })
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}

/// Decode a frame sent by the server.
pub fn decode_server_frame(bytes: &[u8]) -> Result<ServerFrame, DecodeError> {
    let payload = split_frame(bytes)?;
    let frame = pb::ServerFrame::decode(payload).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    use pb::server_frame::Frame as F;
    Ok(match frame.frame.ok_or(DecodeError::Missing("frame"))? {
        F::Response(r) => {
            use pb::response::Result as R;
            let result = match r.result.ok_or(DecodeError::Missing("result"))? {
                R::Error(e) => Err(ErrorBody {
                    code: error_code_from_pb(e.code),
                    message: bounded_str("message", e.message, MAX_ERROR_TEXT_BYTES)?,
                    retry_after_ms: e.retry_after_ms,
                    challenge: e.challenge.map(call_challenge).transpose()?,
                }),
                R::Ok(_) => Ok(ResponseBody::Ok),
                R::RegistrationStarted(s) => {
                    Ok(ResponseBody::RegistrationStarted { expires_in_secs: s.expires_in_secs })
                }
                R::Registered(s) => Ok(ResponseBody::Registered {
                    account: AccountId(nonzero("account_id", s.account_id)?),
                    device: DeviceId(nonzero("device_id", s.device_id)?),
                    replaced_existing: s.replaced_existing,
                }),
                R::Authenticated(s) => Ok(ResponseBody::Authenticated {
                    account: AccountId(nonzero("account_id", s.account_id)?),
                    device: DeviceId(nonzero("device_id", s.device_id)?),
                    label: label(s.label)?,
                }),
                R::LinkStarted(s) => {
                    code_str("code", &s.code)?;
                    Ok(ResponseBody::LinkStarted {
                        code: LinkCode::parse(&s.code)
                            .map_err(|e| DecodeError::Invalid { field: "code", reason: e.to_string() })?,
                        expires_in_secs: s.expires_in_secs,
                    })
                }
                R::LinkApproved(s) => {
                    Ok(ResponseBody::LinkApproved { device: DeviceId(nonzero("device_id", s.device_id)?) })
                }
                R::Sent(s) => Ok(ResponseBody::Sent {
                    server_timestamp_ms: s.server_timestamp_ms,
                    recipient_devices: s.recipient_devices,
                    skipped_devices: s.skipped_devices,
                }),
                R::Devices(list) => {
                    if list.devices.len() > MAX_LISTED_DEVICES {
                        return Err(DecodeError::TooLarge {
                            field: "devices",
                            len: list.devices.len(),
                            max: MAX_LISTED_DEVICES,
                        });
                    }
                    let devices = list
                        .devices
                        .into_iter()
                        .map(|d| {
                            Ok(DeviceInfo {
                                device: DeviceId(nonzero("device_id", d.device_id)?),
                                name: device_name(d.name)?,
                                created_at_ms: d.created_at_ms,
                                last_seen_at_ms: d.last_seen_at_ms,
                            })
                        })
                        .collect::<Result<Vec<_>, DecodeError>>()?;
                    Ok(ResponseBody::Devices(devices))
                }
                R::Pong(p) => Ok(ResponseBody::Pong { server_time_ms: p.server_time_ms }),
                R::AccountKeys(k) => {
                    if k.accounts.len() > MAX_KEY_REQUEST_ITEMS {
                        return Err(DecodeError::TooLarge {
                            field: "accounts",
                            len: k.accounts.len(),
                            max: MAX_KEY_REQUEST_ITEMS,
                        });
                    }
                    let accounts = k
                        .accounts
                        .into_iter()
                        .map(|a| {
                            if a.devices.len() > MAX_LISTED_DEVICES {
                                return Err(DecodeError::TooLarge {
                                    field: "devices",
                                    len: a.devices.len(),
                                    max: MAX_LISTED_DEVICES,
                                });
                            }
                            Ok(AccountDevices {
                                account: AccountId(nonzero("account_id", a.account_id)?),
                                label: label(a.label)?,
                                devices: a
                                    .devices
                                    .into_iter()
                                    .map(|d| {
                                        Ok((
                                            DeviceId(nonzero("device_id", d.device_id)?),
                                            optional_bytes(
                                                "certificate",
                                                d.certificate,
                                                MAX_CERTIFICATE_BYTES,
                                            )?,
                                        ))
                                    })
                                    .collect::<Result<_, DecodeError>>()?,
                            })
                        })
                        .collect::<Result<_, DecodeError>>()?;
                    Ok(ResponseBody::AccountKeys(accounts))
                }
                R::KeyPackages(k) => {
                    if k.packages.len() > MAX_KEY_REQUEST_ITEMS {
                        return Err(DecodeError::TooLarge {
                            field: "packages",
                            len: k.packages.len(),
                            max: MAX_KEY_REQUEST_ITEMS,
                        });
                    }
                    let list = k
                        .packages
                        .into_iter()
                        .map(|p| {
                            Ok((
                                DeviceId(nonzero("device_id", p.device_id)?),
                                required_bytes("key_package", p.key_package, MAX_KEY_PACKAGE_BYTES)?,
                            ))
                        })
                        .collect::<Result<_, DecodeError>>()?;
                    Ok(ResponseBody::KeyPackages(list))
                }
                R::CommitAccepted(c) => Ok(ResponseBody::CommitAccepted { epoch: c.epoch }),
                R::KeysPublished(k) => Ok(ResponseBody::KeysPublished { one_time_left: k.one_time_left }),
                R::UploadStarted(u) => Ok(ResponseBody::UploadStarted {
                    blob: fixed("blob_id", &u.blob_id)?,
                    chunk_bytes: u.chunk_bytes,
                }),
                R::ChunkStored(c) => Ok(ResponseBody::ChunkStored { stored: c.stored, complete: c.complete }),
                R::BlobData(b) => Ok(ResponseBody::BlobData {
                    total: b.total,
                    data: bounded_bytes("data", b.data, MAX_ATTACHMENT_CHUNK_BYTES)?,
                }),
                R::CallPlaced(c) => Ok(ResponseBody::CallPlaced { ringing_devices: c.ringing_devices }),
                R::CallOffer(c) => Ok(ResponseBody::CallOffer {
                    group: group_id(&c.group_id)?,
                    offer: required_bytes("offer", c.offer, MAX_CALL_OFFER_BYTES)?,
                }),
                R::RelayCredentials(c) => {
                    if c.relays.is_empty() || c.relays.len() > MAX_RELAYS {
                        return Err(DecodeError::Invalid { field: "relays", reason: "1 to 4 relays".into() });
                    }
                    Ok(ResponseBody::RelayCredentials(RelayCredentials {
                        username: bounded_str("username", c.username, 128)?,
                        password: bounded_str("password", c.password, 64)?,
                        relays: c
                            .relays
                            .into_iter()
                            .map(|r| bounded_str("relays", r, MAX_RELAY_BYTES))
                            .collect::<Result<_, _>>()?,
                        expires_at_ms: c.expires_at_ms,
                    }))
                }
            };
            ServerFrame::Response { request_id: r.request_id, result }
        }
        F::Delivery(d) => ServerFrame::Delivery(Delivery {
            server_id: ServerMessageId(nonzero("server_id", d.server_id)?),
            message_id: message_id(&d.message_id)?,
            sender_account: AccountId(nonzero("sender_account_id", d.sender_account_id)?),
            sender_device: DeviceId(nonzero("sender_device_id", d.sender_device_id)?),
            sender_label: label(d.sender_label)?,
            server_timestamp_ms: d.server_timestamp_ms,
            body: bounded_bytes("body", d.body, MAX_ENVELOPE_BYTES)?,
        }),
        F::QueueDrained(_) => ServerFrame::QueueDrained,
        F::LinkCompleted(l) => ServerFrame::LinkCompleted {
            account: AccountId(nonzero("account_id", l.account_id)?),
            device: DeviceId(nonzero("device_id", l.device_id)?),
        },
        F::Goodbye(g) => ServerFrame::Goodbye {
            reason: goodbye_from_pb(g.reason),
            message: bounded_str("message", g.message, MAX_ERROR_TEXT_BYTES)?,
        },
    })
}

// ---------------------------------------------------------------- envelopes

/// Largest envelope: an MLS handshake message plus a little framing.
pub const MAX_ENVELOPE_BYTES: usize = MAX_HANDSHAKE_BYTES + 1024;

/// Encode what the server queues for a device.
pub fn encode_envelope(envelope: &Envelope) -> Vec<u8> {
    use pb::EnvelopeKind as K;
    let (kind, group, payload, devices) = match envelope {
        Envelope::Direct(p) => (K::Direct, None, p.to_vec(), vec![]),
        Envelope::Commit { group, payload } => (K::Commit, Some(group), payload.to_vec(), vec![]),
        Envelope::Welcome { group, payload } => (K::Welcome, Some(group), payload.to_vec(), vec![]),
        Envelope::Application { group, payload } => (K::Application, Some(group), payload.to_vec(), vec![]),
        Envelope::MemberLeft { group, devices } => {
            (K::MemberLeft, Some(group), vec![], devices.iter().map(|d| d.0).collect())
        }
        Envelope::Ring(n) => {
            return pb::Envelope {
                kind: K::Ring as i32,
                ring: Some(pb::RingNotice {
                    call_id: n.call.0.to_vec(),
                    caller_account_id: n.caller.0,
                    caller_device_id: n.caller_device.0,
                    media: media_kind_to_pb(n.media) as i32,
                    sent_at_ms: n.sent_at_ms,
                }),
                ..Default::default()
            }
            .encode_to_vec();
        }
        Envelope::ServerNotice(text) => (K::ServerNotice, None, text.as_bytes().to_vec(), vec![]),
        Envelope::CallSignal { call, kind, group, payload } => {
            return pb::Envelope {
                kind: K::CallSignal as i32,
                group_id: group.as_bytes().to_vec(),
                payload: payload.to_vec(),
                call_id: call.0.to_vec(),
                signal: signal_kind_to_pb(*kind) as i32,
                ..Default::default()
            }
            .encode_to_vec();
        }
    };
    pb::Envelope {
        kind: kind as i32,
        group_id: group.map(|g| g.as_bytes().to_vec()).unwrap_or_default(),
        payload,
        devices,
        ..Default::default()
    }
    .encode_to_vec()
}

/// Decode a `Delivery.body`.
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(DecodeError::TooLarge { field: "envelope", len: bytes.len(), max: MAX_ENVELOPE_BYTES });
    }
    let e = pb::Envelope::decode(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    use pb::EnvelopeKind as K;
    let kind = K::try_from(e.kind).unwrap_or(K::Unspecified);
    if kind == K::Direct {
        return Ok(Envelope::Direct(bounded_bytes("payload", e.payload, MAX_BODY_BYTES)?));
    }
    if kind == K::Ring {
        // The fixed schema, and nothing else: a ring notice with extra fields set (or bigger
        // than the schema allows) is not a ring notice.
        if bytes.len() > MAX_RING_ENVELOPE_BYTES {
            return Err(DecodeError::TooLarge {
                field: "ring",
                len: bytes.len(),
                max: MAX_RING_ENVELOPE_BYTES,
            });
        }
        if !e.group_id.is_empty() || !e.payload.is_empty() || !e.devices.is_empty() || !e.call_id.is_empty() {
            return Err(DecodeError::Invalid {
                field: "ring",
                reason: "fields outside the ring schema".into(),
            });
        }
        let n = e.ring.ok_or(DecodeError::Missing("ring"))?;
        return Ok(Envelope::Ring(RingNotice {
            call: call_id(&n.call_id)?,
            caller: AccountId(nonzero("caller_account_id", n.caller_account_id)?),
            caller_device: DeviceId(nonzero("caller_device_id", n.caller_device_id)?),
            media: media_kind(n.media)?,
            sent_at_ms: n.sent_at_ms,
        }));
    }
    if kind == K::ServerNotice {
        if !e.group_id.is_empty() || !e.devices.is_empty() || !e.call_id.is_empty() || e.ring.is_some() {
            return Err(DecodeError::Invalid {
                field: "notice",
                reason: "fields outside the notice schema".into(),
            });
        }
        return Ok(Envelope::ServerNotice(server_notice(e.payload)?));
    }
    let group = group_id(&e.group_id)?;
    Ok(match kind {
        K::Commit => {
            Envelope::Commit { group, payload: required_bytes("payload", e.payload, MAX_HANDSHAKE_BYTES)? }
        }
        K::Welcome => {
            Envelope::Welcome { group, payload: required_bytes("payload", e.payload, MAX_HANDSHAKE_BYTES)? }
        }
        K::Application => {
            Envelope::Application { group, payload: required_bytes("payload", e.payload, MAX_BODY_BYTES)? }
        }
        K::MemberLeft => Envelope::MemberLeft {
            group,
            devices: id_list("devices", e.devices, 1, MAX_LISTED_DEVICES, DeviceId)?,
        },
        K::CallSignal => {
            let kind = signal_kind(e.signal)?;
            let payload = if signal_is_bare(kind) {
                if !e.payload.is_empty() {
                    return Err(DecodeError::Invalid {
                        field: "payload",
                        reason: "must be empty for this kind".into(),
                    });
                }
                Bytes::new()
            } else {
                let max =
                    if kind == SignalKind::Offer { MAX_CALL_OFFER_BYTES } else { MAX_CALL_SIGNAL_BYTES };
                required_bytes("payload", e.payload, max)?
            };
            Envelope::CallSignal { call: call_id(&e.call_id)?, kind, group, payload }
        }
        K::Direct | K::Ring | K::ServerNotice | K::Unspecified => {
            return Err(DecodeError::Invalid { field: "kind", reason: "unknown envelope kind".into() });
        }
    })
}

// ---------------------------------------------------------------- device certificates

pub fn encode_certificate(c: &DeviceCertificate) -> Vec<u8> {
    pb::DeviceCertificate {
        account_id: c.account.0,
        device_id: c.device.0,
        signature_key: c.signature_key.to_vec(),
        signer_key: c.signer_key.to_vec(),
        signature: c.signature.to_vec(),
    }
    .encode_to_vec()
}

pub fn decode_certificate(bytes: &[u8]) -> Result<DeviceCertificate, DecodeError> {
    if bytes.len() > MAX_CERTIFICATE_BYTES {
        return Err(DecodeError::TooLarge {
            field: "certificate",
            len: bytes.len(),
            max: MAX_CERTIFICATE_BYTES,
        });
    }
    let c = pb::DeviceCertificate::decode(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    Ok(DeviceCertificate {
        account: AccountId(nonzero("account_id", c.account_id)?),
        device: DeviceId(nonzero("device_id", c.device_id)?),
        signature_key: fixed("signature_key", &c.signature_key)?,
        signer_key: fixed("signer_key", &c.signer_key)?,
        signature: fixed("signature", &c.signature)?,
    })
}

// ---------------------------------------------------------------- end-to-end content

fn target(field: &'static str, bytes: &[u8]) -> Result<MessageId, DecodeError> {
    MessageId::from_slice(bytes)
        .ok_or(DecodeError::Invalid { field, reason: format!("must be 16 bytes, got {}", bytes.len()) })
}

fn text(field: &'static str, s: String) -> Result<String, DecodeError> {
    bounded_str(field, s, MAX_TEXT_BYTES)
}

/// Encode the plaintext of an MLS application message.
pub fn encode_content(content: &Content) -> Vec<u8> {
    use pb::content::Body as B;
    let body = match &content.body {
        ContentBody::Text { text, reply_to } => B::Text(pb::Text {
            text: text.clone(),
            reply_to: reply_to.map(|r| r.0.to_vec()).unwrap_or_default(),
        }),
        ContentBody::Reaction { target, emoji } => {
            B::Reaction(pb::Reaction { target: target.0.to_vec(), emoji: emoji.clone() })
        }
        ContentBody::Edit { target, text } => {
            B::Edit(pb::Edit { target: target.0.to_vec(), text: text.clone() })
        }
        ContentBody::Delete { target } => B::Delete(pb::Delete { target: target.0.to_vec() }),
        ContentBody::Receipt { kind, targets } => B::Receipt(pb::Receipt {
            kind: match kind {
                ReceiptKind::Delivered => pb::ReceiptKind::Delivered,
                ReceiptKind::Read => pb::ReceiptKind::Read,
            } as i32,
            targets: targets.iter().map(|t| t.0.to_vec()).collect(),
        }),
        ContentBody::Attachment(a) => B::Attachment(pb::Attachment {
            name: a.name.clone(),
            mime: a.mime.clone(),
            size: a.size,
            blob_id: a.blob_id.to_vec(),
            key: a.key.to_vec(),
            digest: a.digest.to_vec(),
            caption: a.caption.clone(),
        }),
        ContentBody::Timer { seconds } => B::Timer(pb::Timer { seconds: *seconds }),
        ContentBody::GroupName(name) => B::GroupName(pb::GroupName { name: name.clone() }),
        ContentBody::Contacts(list) => B::Contacts(pb::Contacts {
            contacts: list
                .iter()
                .map(|(account, label)| pb::Contact { account_id: account.0, label: label.clone() })
                .collect(),
        }),
        ContentBody::Call(c) => B::Call(pb::CallMessage {
            call_id: c.call.0.to_vec(),
            kind: signal_kind_to_pb(c.kind) as i32,
            session: c.session.as_ref().map(|m| pb::MediaSession {
                relay_address: m.relay_address.to_string(),
                ssrc: m.ssrc,
                epoch: m.epoch,
                codec: m.codec.clone(),
                video_ssrc: m.video_ssrc,
            }),
        }),
    };
    let mut msg = pb::Content {
        message_id: content.message_id.0.to_vec(),
        sent_at_ms: content.sent_at_ms,
        seq: content.seq,
        body: Some(body),
    };
    let out = msg.encode_to_vec();
    if let Some(B::Attachment(a)) = &mut msg.body {
        a.key.zeroize();
    }
    out
}

/// Decode the plaintext of an MLS application message. Everything in it came from another
/// person: every field is bounded and checked.
pub fn decode_content(bytes: &[u8]) -> Result<Content, DecodeError> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(DecodeError::TooLarge { field: "content", len: bytes.len(), max: MAX_BODY_BYTES });
    }
    let c = pb::Content::decode(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    use pb::content::Body as B;
    let body = match c.body.ok_or(DecodeError::Missing("body"))? {
        B::Text(t) => ContentBody::Text {
            text: text("text", t.text)?,
            reply_to: if t.reply_to.is_empty() { None } else { Some(target("reply_to", &t.reply_to)?) },
        },
        B::Reaction(r) => ContentBody::Reaction {
            target: target("target", &r.target)?,
            emoji: bounded_str("emoji", r.emoji, MAX_EMOJI_BYTES)?,
        },
        B::Edit(e) => ContentBody::Edit { target: target("target", &e.target)?, text: text("text", e.text)? },
        B::Delete(d) => ContentBody::Delete { target: target("target", &d.target)? },
        B::Receipt(r) => {
            if r.targets.is_empty() {
                return Err(DecodeError::Missing("targets"));
            }
            if r.targets.len() > MAX_RECEIPT_TARGETS {
                return Err(DecodeError::TooLarge {
                    field: "targets",
                    len: r.targets.len(),
                    max: MAX_RECEIPT_TARGETS,
                });
            }
            let kind = match pb::ReceiptKind::try_from(r.kind) {
                Ok(pb::ReceiptKind::Delivered) => ReceiptKind::Delivered,
                Ok(pb::ReceiptKind::Read) => ReceiptKind::Read,
                _ => {
                    return Err(DecodeError::Invalid {
                        field: "kind",
                        reason: "unknown receipt kind".into(),
                    });
                }
            };
            ContentBody::Receipt {
                kind,
                targets: r.targets.iter().map(|t| target("targets", t)).collect::<Result<_, _>>()?,
            }
        }
        B::Attachment(mut a) => {
            if a.size > MAX_ATTACHMENT_BYTES {
                return Err(DecodeError::Invalid { field: "size", reason: "larger than 100 MiB".into() });
            }
            let key = fixed("key", &a.key);
            a.key.zeroize();
            let name = bounded_str("name", a.name, 255)?;
            if name.chars().any(char::is_control) {
                return Err(DecodeError::Invalid { field: "name", reason: "control characters".into() });
            }
            ContentBody::Attachment(AttachmentPointer {
                name,
                mime: bounded_str("mime", a.mime, 128)?,
                size: a.size,
                blob_id: fixed("blob_id", &a.blob_id)?,
                key: key?,
                digest: fixed("digest", &a.digest)?,
                caption: text("caption", a.caption)?,
            })
        }
        B::Timer(t) => ContentBody::Timer { seconds: t.seconds },
        B::GroupName(g) => ContentBody::GroupName(group_name(g.name)?),
        B::Contacts(c) => {
            if c.contacts.is_empty() || c.contacts.len() > crate::frames::MAX_SYNCED_CONTACTS {
                return Err(DecodeError::Invalid { field: "contacts", reason: "1 to 1 000 entries".into() });
            }
            let mut list = Vec::with_capacity(c.contacts.len());
            for contact in c.contacts {
                let label = bounded_str("label", contact.label, MAX_LABEL_BYTES)?;
                if label.chars().any(char::is_control) {
                    return Err(DecodeError::Invalid { field: "label", reason: "control characters".into() });
                }
                list.push((AccountId(nonzero("account_id", contact.account_id)?), label));
            }
            ContentBody::Contacts(list)
        }
        B::Call(c) => ContentBody::Call(decode_call_message(c)?),
    };
    Ok(Content {
        message_id: target("message_id", &c.message_id)?,
        sent_at_ms: c.sent_at_ms,
        seq: c.seq,
        body,
    })
}

/// A call signal's content: bounded, and the session's shape checked, before anyone uses it.
fn decode_call_message(c: pb::CallMessage) -> Result<CallMessage, DecodeError> {
    let kind = signal_kind(c.kind)?;
    let session = match c.session {
        None => None,
        Some(m) => {
            let address = bounded_str("relay_address", m.relay_address, 64)?;
            let relay_address = address.parse().map_err(|_| DecodeError::Invalid {
                field: "relay_address",
                reason: "not an ip:port address".into(),
            })?;
            Some(MediaSession {
                relay_address,
                ssrc: m.ssrc,
                epoch: m.epoch,
                codec: bounded_str("codec", m.codec, 32)?,
                video_ssrc: match m.video_ssrc {
                    Some(video) if video == m.ssrc => {
                        return Err(DecodeError::Invalid {
                            field: "video_ssrc",
                            reason: "the same SSRC as the audio stream".into(),
                        });
                    }
                    other => other,
                },
            })
        }
    };
    if matches!(kind, SignalKind::Offer | SignalKind::Answer) && session.is_none() {
        return Err(DecodeError::Missing("session"));
    }
    Ok(CallMessage { call: call_id(&c.call_id)?, kind, session })
}

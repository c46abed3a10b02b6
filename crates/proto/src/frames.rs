//! Typed frames: what the decoder produces and the encoder consumes. Every value here has
//! already passed its size and shape checks.

use bytes::Bytes;
use rampart_core::{
    AccountId, DeviceId, DeviceSecret, LinkCode, MessageId, PhoneNumber, ServerMessageId, Username,
    VerificationCode,
};

/// One request from a client.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    pub request_id: u64,
    pub request: ClientRequest,
}

/// Who a message is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Recipient {
    Phone(PhoneNumber),
    Username(Username),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientRequest {
    Register { phone: PhoneNumber, username: Option<Username> },
    Verify { phone: PhoneNumber, code: VerificationCode, device_name: String, secret: DeviceSecret },
    Authenticate { device: DeviceId, secret: DeviceSecret },
    BeginLink { device_name: String, secret: DeviceSecret },
    ApproveLink { code: LinkCode },
    Send { to: Recipient, message_id: MessageId, body: Bytes },
    Ack { ids: Vec<ServerMessageId> },
    ListDevices,
    RevokeDevice { device: DeviceId },
    SetUsername { username: Option<Username> },
    Ping,
}

impl ClientRequest {
    /// A stable name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientRequest::Register { .. } => "register",
            ClientRequest::Verify { .. } => "verify",
            ClientRequest::Authenticate { .. } => "authenticate",
            ClientRequest::BeginLink { .. } => "begin_link",
            ClientRequest::ApproveLink { .. } => "approve_link",
            ClientRequest::Send { .. } => "send",
            ClientRequest::Ack { .. } => "ack",
            ClientRequest::ListDevices => "list_devices",
            ClientRequest::RevokeDevice { .. } => "revoke_device",
            ClientRequest::SetUsername { .. } => "set_username",
            ClientRequest::Ping => "ping",
        }
    }
}

/// Error categories the client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadRequest,
    UnsupportedVersion,
    FrameTooLarge,
    NotAuthenticated,
    InvalidCredentials,
    RateLimited,
    WrongCode,
    CodeExpired,
    NoPendingCode,
    UsernameTaken,
    NoSuchRecipient,
    NoSuchLink,
    TooManyDevices,
    QueueFull,
    MessageTooLarge,
    NoSuchDevice,
    WrongState,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// A stable snake_case name for metrics labels and `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::WrongCode => "wrong_code",
            ErrorCode::CodeExpired => "code_expired",
            ErrorCode::NoPendingCode => "no_pending_code",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::NoSuchRecipient => "no_such_recipient",
            ErrorCode::NoSuchLink => "no_such_link",
            ErrorCode::TooManyDevices => "too_many_devices",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::NoSuchDevice => "no_such_device",
            ErrorCode::WrongState => "wrong_state",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An error answer: a code to act on and a message to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub device: DeviceId,
    pub name: String,
    pub created_at_ms: u64,
    pub last_seen_at_ms: u64,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseBody {
    Ok,
    RegistrationStarted { expires_in_secs: u32 },
    Registered { account: AccountId, device: DeviceId, replaced_existing: bool },
    Authenticated { account: AccountId, device: DeviceId, label: String },
    LinkStarted { code: LinkCode, expires_in_secs: u32 },
    LinkApproved { device: DeviceId },
    Sent { server_timestamp_ms: u64, recipient_devices: u32 },
    Devices(Vec<DeviceInfo>),
    Pong { server_time_ms: u64 },
}

/// A message pushed to its recipient device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub server_id: ServerMessageId,
    pub message_id: MessageId,
    pub sender_account: AccountId,
    pub sender_device: DeviceId,
    pub sender_label: String,
    pub server_timestamp_ms: u64,
    pub body: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoodbyeReason {
    Unspecified,
    ShuttingDown,
    DeviceRevoked,
    IdleTimeout,
    ProtocolViolation,
}

/// One frame from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerFrame {
    Response { request_id: u64, result: Result<ResponseBody, ErrorBody> },
    Delivery(Delivery),
    QueueDrained,
    LinkCompleted { account: AccountId, device: DeviceId },
    Goodbye { reason: GoodbyeReason, message: String },
}

/// Client-side message content (inside `Send.body`; the server never decodes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainContent {
    pub text: String,
    pub sent_at_ms: u64,
}

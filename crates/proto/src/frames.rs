//! Typed frames: what the decoder produces and the encoder consumes. Every value here has
//! already passed its size and shape checks.

use bytes::Bytes;
pub use rampart_core::call::{CallId, MediaKind, RingNotice, SignalKind};
pub use rampart_core::challenge::Challenge;
use rampart_core::{
    AccountId, DeviceId, DeviceSecret, GroupId, LinkCode, MessageId, PhoneNumber, ServerMessageId, Username,
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
    Register {
        phone: PhoneNumber,
        username: Option<Username>,
    },
    Verify {
        phone: PhoneNumber,
        code: VerificationCode,
        device_name: String,
        secret: DeviceSecret,
    },
    Authenticate {
        device: DeviceId,
        secret: DeviceSecret,
        /// The software, as the device says (`rampart/0.1.0`): Sentinel notices clients that
        /// are not Rampart's own; anyone can claim anything here.
        client: String,
    },
    BeginLink {
        device_name: String,
        secret: DeviceSecret,
    },
    ApproveLink {
        code: LinkCode,
    },
    Send {
        to: Recipient,
        message_id: MessageId,
        body: Bytes,
    },
    Ack {
        ids: Vec<ServerMessageId>,
    },
    ListDevices,
    RevokeDevice {
        device: DeviceId,
    },
    SetUsername {
        username: Option<Username>,
    },
    Ping,
    PublishKeys {
        certificate: Option<Bytes>,
        key_packages: Vec<Bytes>,
        last_resort: Option<Bytes>,
    },
    CertifyDevice {
        device: DeviceId,
        certificate: Bytes,
    },
    LookupAccount {
        who: Recipient,
    },
    FetchKeys {
        accounts: Vec<AccountId>,
    },
    ClaimKeyPackages {
        devices: Vec<DeviceId>,
    },
    GroupCommit(GroupCommit),
    GroupSend {
        group: GroupId,
        message_id: MessageId,
        body: Bytes,
    },
    LeaveGroup {
        group: GroupId,
    },
    StartUpload {
        size: u64,
    },
    UploadChunk {
        blob: BlobId,
        offset: u64,
        data: Bytes,
    },
    Download {
        blob: BlobId,
        offset: u64,
        length: u32,
    },
    PlaceCall {
        call: CallId,
        callee: AccountId,
        group: GroupId,
        media: MediaKind,
        offer: Bytes,
        /// The work a refusal with [`ErrorCode::ChallengeRequired`] asked for.
        answer: Option<ChallengeAnswer>,
    },
    FetchOffer {
        call: CallId,
    },
    CallSignal {
        call: CallId,
        kind: SignalKind,
        body: Bytes,
    },
    FetchRelayCredentials {
        call: CallId,
    },
    /// Deliver nothing more from `account` to the caller's account.
    Block {
        account: AccountId,
    },
    Unblock {
        account: AccountId,
    },
}

/// Where an attachment's ciphertext lives in the server's blob store.
pub type BlobId = [u8; rampart_core::limits::BLOB_ID_BYTES];

/// An MLS commit handed to the delivery service.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupCommit {
    pub group: GroupId,
    /// The epoch the commit was made in.
    pub epoch: u64,
    pub message_id: MessageId,
    pub commit: Bytes,
    pub welcome: Option<Bytes>,
    /// A new group's first commit carries the group before it (its creator's signed GroupInfo
    /// with the ratchet tree): the server checks every commit against the state it starts.
    pub group_info: Option<Bytes>,
    pub added: Vec<DeviceId>,
    pub removed: Vec<DeviceId>,
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
            ClientRequest::PublishKeys { .. } => "publish_keys",
            ClientRequest::CertifyDevice { .. } => "certify_device",
            ClientRequest::LookupAccount { .. } => "lookup_account",
            ClientRequest::FetchKeys { .. } => "fetch_keys",
            ClientRequest::ClaimKeyPackages { .. } => "claim_key_packages",
            ClientRequest::GroupCommit(_) => "group_commit",
            ClientRequest::GroupSend { .. } => "group_send",
            ClientRequest::LeaveGroup { .. } => "leave_group",
            ClientRequest::StartUpload { .. } => "start_upload",
            ClientRequest::UploadChunk { .. } => "upload_chunk",
            ClientRequest::Download { .. } => "download",
            ClientRequest::PlaceCall { .. } => "place_call",
            ClientRequest::FetchOffer { .. } => "fetch_offer",
            ClientRequest::CallSignal { .. } => "call_signal",
            ClientRequest::FetchRelayCredentials { .. } => "fetch_relay_credentials",
            ClientRequest::Block { .. } => "block",
            ClientRequest::Unblock { .. } => "unblock",
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
    StaleEpoch,
    NoSuchGroup,
    NotAMember,
    NoKeyPackage,
    BadKey,
    Forbidden,
    /// Place the call again with the work [`ErrorBody::challenge`] asks for.
    ChallengeRequired,
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
            ErrorCode::StaleEpoch => "stale_epoch",
            ErrorCode::NoSuchGroup => "no_such_group",
            ErrorCode::NotAMember => "not_a_member",
            ErrorCode::NoKeyPackage => "no_key_package",
            ErrorCode::BadKey => "bad_key",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::ChallengeRequired => "challenge_required",
        }
    }
}

/// An error answer: a code to act on and a message to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_ms: u32,
    /// With [`ErrorCode::ChallengeRequired`]: the work to do before calling again.
    pub challenge: Option<Challenge>,
}

/// A solved call challenge: the token as the server gave it and the nonce carrying the work
/// (see `rampart_core::challenge`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeAnswer {
    pub token: Bytes,
    pub nonce: u64,
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
    Sent { server_timestamp_ms: u64, recipient_devices: u32, skipped_devices: u32 },
    Devices(Vec<DeviceInfo>),
    Pong { server_time_ms: u64 },
    AccountKeys(Vec<AccountDevices>),
    KeyPackages(Vec<(DeviceId, Bytes)>),
    CommitAccepted { epoch: u64 },
    KeysPublished { one_time_left: u32 },
    UploadStarted { blob: BlobId, chunk_bytes: u32 },
    ChunkStored { stored: u64, complete: bool },
    BlobData { total: u64, data: Bytes },
    CallPlaced { ringing_devices: u32 },
    CallOffer { group: GroupId, offer: Bytes },
    RelayCredentials(RelayCredentials),
}

/// Short-lived TURN credentials for one call. `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayCredentials {
    pub username: String,
    pub password: String,
    /// TURN servers over UDP, as `host:port`.
    pub relays: Vec<String>,
    pub expires_at_ms: u64,
}

impl std::fmt::Debug for RelayCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("relays", &self.relays)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// An account and its devices' certificates (`None` until a device has published one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDevices {
    pub account: AccountId,
    pub label: String,
    pub devices: Vec<(DeviceId, Option<Bytes>)>,
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

/// What a queued message is: written by the server into `Delivery.body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// `Send`: opaque bytes for every device of an account.
    Direct(Bytes),
    /// An accepted MLS commit.
    Commit { group: GroupId, payload: Bytes },
    /// An MLS Welcome.
    Welcome { group: GroupId, payload: Bytes },
    /// An MLS application message.
    Application { group: GroupId, payload: Bytes },
    /// These devices left the group; some member should commit their removal.
    MemberLeft { group: GroupId, devices: Vec<DeviceId> },
    /// Ring: a notice the server filled in itself.
    Ring(RingNotice),
    /// A later signal of a call, still end-to-end encrypted.
    CallSignal { call: CallId, kind: SignalKind, group: GroupId, payload: Bytes },
    /// A notice from the server's operators (that an account which called you was part of an
    /// attack campaign, say): plain text the server wrote, never from another user.
    ServerNotice(String),
}

/// Binds a device's MLS signature key to its account and device id, signed by the device
/// itself (an account's first device) or by an already trusted device of the same account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCertificate {
    pub account: AccountId,
    pub device: DeviceId,
    pub signature_key: [u8; 32],
    pub signer_key: [u8; 32],
    pub signature: [u8; 64],
}

/// End-to-end encrypted content: the plaintext of one MLS application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub message_id: MessageId,
    pub sent_at_ms: u64,
    /// The sending device's count of what it sent in this conversation (1, 2, 3, …), so a
    /// receiver notices messages the server did not deliver; 0 when not counted.
    pub seq: u64,
    pub body: ContentBody,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    Delivered,
    Read,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentBody {
    Text {
        text: String,
        reply_to: Option<MessageId>,
    },
    /// An empty emoji removes the sender's reaction.
    Reaction {
        target: MessageId,
        emoji: String,
    },
    Edit {
        target: MessageId,
        text: String,
    },
    Delete {
        target: MessageId,
    },
    Receipt {
        kind: ReceiptKind,
        targets: Vec<MessageId>,
    },
    Attachment(AttachmentPointer),
    /// Disappearing messages after this many seconds; 0 turns them off.
    Timer {
        seconds: u32,
    },
    GroupName(String),
    /// A call signal (offer, answer, candidates...). Only released signals get here.
    Call(CallMessage),
    /// This account's contacts (account, how it is shown), for its other devices: at most
    /// [`MAX_SYNCED_CONTACTS`] per message.
    Contacts(Vec<(AccountId, String)>),
}

/// Contacts in one [`ContentBody::Contacts`] message.
pub const MAX_SYNCED_CONTACTS: usize = 1_000;

/// The end-to-end content of a call signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallMessage {
    pub call: CallId,
    pub kind: SignalKind,
    pub session: Option<MediaSession>,
}

/// One side's media parameters: where it can be reached on the relay, its stream, and the
/// MLS epoch whose exporter keys the media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSession {
    pub relay_address: std::net::SocketAddr,
    pub ssrc: u32,
    pub epoch: u64,
    pub codec: String,
    /// The sender's video stream (H.264), when it does video; never equal to `ssrc`.
    pub video_ssrc: Option<u32>,
}

/// The only codec this build speaks.
pub const OPUS_CODEC: &str = "opus/48000/1";

/// Where an attachment's ciphertext is and how to open it. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct AttachmentPointer {
    pub name: String,
    pub mime: String,
    pub size: u64,
    pub blob_id: BlobId,
    pub key: [u8; 32],
    pub digest: [u8; 32],
    pub caption: String,
}

impl std::fmt::Debug for AttachmentPointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentPointer")
            .field("name", &self.name)
            .field("mime", &self.mime)
            .field("size", &self.size)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

//! Rampart storage.
//!
//! The server talks to storage only through the [`Store`] trait. Each method is one atomic,
//! domain-level operation (a registration completes entirely or not at all; a message is queued
//! for every device of the recipient or for none), so backends can use whatever transaction
//! machinery they have and the server never holds a transaction across an `.await` of its own.
//!
//! Backends: [`sqlite::SqliteStore`] (embedded default, one writer thread with group commit) and
//! [`postgres::PostgresStore`] (several server nodes on one database). Both pass the same
//! [`conformance`] suite.
//!
//! Storage never sees the wire format: message bodies are opaque bytes.
#![forbid(unsafe_code)]

pub mod conformance;
mod convert;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use rampart_core::call::CallId;
use rampart_core::{
    AccountId, DeviceId, GroupId, MessageId, PhoneNumber, SecretHash, ServerMessageId, Username,
};

/// Milliseconds since the Unix epoch. Storage never reads a clock: callers pass `now`.
pub type UnixMillis = u64;

/// A registration waiting for its verification code.
#[derive(Debug, Clone)]
pub struct PendingRegistration {
    pub phone: PhoneNumber,
    pub code_hash: SecretHash,
    /// Username requested at registration, claimed when the code is verified.
    pub username: Option<Username>,
    pub expires_at: UnixMillis,
}

/// A device about to be created: its name and the hash of the secret it will authenticate with.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub name: String,
    pub secret_hash: SecretHash,
}

/// The result of a completed registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub account: AccountId,
    pub device: DeviceId,
    /// True when the phone number already had an account: its old devices were removed.
    pub replaced_existing: bool,
    /// The devices removed by the takeover, so the server can cut off their connections.
    pub removed_devices: Vec<DeviceId>,
}

/// A new device waiting for an existing device of some account to approve it.
#[derive(Debug, Clone)]
pub struct PendingLink {
    pub code_hash: SecretHash,
    pub device: NewDevice,
    pub expires_at: UnixMillis,
}

/// What the server needs to check a device's credentials.
#[derive(Debug, Clone)]
pub struct DeviceAuth {
    pub account: AccountId,
    pub device: DeviceId,
    pub secret_hash: SecretHash,
    /// When the account was created (its first device verified its number).
    pub account_created_at: UnixMillis,
    /// When this device was registered or linked.
    pub device_created_at: UnixMillis,
}

/// A device as listed to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub name: String,
    pub created_at: UnixMillis,
    pub last_seen_at: UnixMillis,
}

/// A message to queue for every device of one recipient account.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub recipient: AccountId,
    /// Only this device of the recipient gets a copy (a call's signals after one device
    /// answered); `None`: every device.
    pub only_device: Option<DeviceId>,
    pub sender_account: AccountId,
    pub sender_device: DeviceId,
    pub message_id: MessageId,
    pub received_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub body: Vec<u8>,
}

/// How much of a device's queue may be filled: in all, and by one sending account (other than
/// the device's own), so a stranger can take only a share of it and a friend's message still
/// finds room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub per_device: u32,
    pub per_sender: u32,
}

impl QueueLimits {
    /// One sender may fill the whole queue.
    pub fn whole(max: u32) -> Self {
        Self { per_device: max, per_sender: max }
    }
}

/// What to do about a device whose queue has no room for a message. One rule for every
/// backend ([`room_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenFull {
    /// Refuse the whole message (the backend rolls back the copies already queued).
    Fail(QueueLimits),
    /// Leave that device out.
    Skip(QueueLimits),
    /// Queue anyway: handshake messages must reach every member.
    Ignore,
}

impl WhenFull {
    pub(crate) fn limits(self) -> Option<QueueLimits> {
        match self {
            WhenFull::Fail(l) | WhenFull::Skip(l) => Some(l),
            WhenFull::Ignore => None,
        }
    }
}

/// Whether a device with `depth` messages queued, `from_sender` of them from this sender
/// (`None`: the device's own account, which has no share), takes one more: `Ok(false)` leaves
/// the device out, an error refuses the message.
pub(crate) fn room_for(when_full: WhenFull, depth: i64, from_sender: Option<i64>) -> StoreResult<bool> {
    let Some(l) = when_full.limits() else { return Ok(true) };
    let full = depth >= i64::from(l.per_device);
    let share_full = from_sender.is_some_and(|n| n >= i64::from(l.per_sender));
    match when_full {
        WhenFull::Fail(_) if full => Err(StoreError::QueueFull { max: l.per_device }),
        WhenFull::Fail(_) if share_full => Err(StoreError::SenderShareFull { max: l.per_sender }),
        _ => Ok(!full && !share_full),
    }
}

/// What a group message reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSent {
    pub copies: Vec<StoredMessage>,
    /// Member devices whose queue had no room for it (they miss it; the sender is told).
    pub skipped: u32,
}

/// One queued copy of a message, for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: ServerMessageId,
    pub device: DeviceId,
    pub sender_account: AccountId,
    pub sender_device: DeviceId,
    pub sender_label: String,
    pub message_id: MessageId,
    pub received_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub body: Vec<u8>,
}

/// One code waiting in the embedded verifier's outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub phone: String,
    pub text: String,
    pub created_at: UnixMillis,
}

/// What was removed by [`Store::purge_expired`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub messages: u64,
    pub registrations: u64,
    pub links: u64,
    pub outbox: u64,
    pub calls: u64,
}

/// How long a call is kept after it can no longer be answered, so late signals still find it
/// (ended) instead of an unknown id: [`Store::purge_expired`] removes calls whose `expires_at`
/// is more than this before `now`.
/// An answered call that has not ended is kept this much longer than others, so that its
/// hang-up (and late signals) still find it.
pub const ANSWERED_CALL_KEEP_MS: u64 = 24 * 60 * 60 * 1000;
pub const CALL_KEEP_AFTER_EXPIRY_MS: u64 = 3_600_000;

/// Longest misfit reason [`Store::count_call_misfit`] accepts, in bytes.
pub const MAX_MISFIT_REASON: usize = 64;

/// A call the signaling server is setting up: who calls whom, in which 1:1 conversation, and the
/// caller's offer (opaque end-to-end ciphertext) held until one callee device accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub call: rampart_core::call::CallId,
    pub caller: AccountId,
    pub caller_device: DeviceId,
    pub callee: AccountId,
    pub group: GroupId,
    pub offer: Vec<u8>,
    pub created_at: UnixMillis,
    /// After this the call can no longer be answered (ring timeout) and may be purged.
    pub expires_at: UnixMillis,
    /// The callee device that accepted, once one did.
    pub answered_by: Option<DeviceId>,
    pub ended: bool,
}

/// Longest text field of a Sentinel action (subject, action, rule, reason, lifted by), in bytes.
pub const MAX_SENTINEL_FIELD: usize = 256;

/// An action Sentinel's policy (or an operator) took against an account or a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelAction {
    pub id: u64,
    /// `a42` for an account, `net:203.0.113.0/24` for a network.
    pub subject: String,
    /// `suspend_calling`, `block_network`...
    pub action: String,
    pub rule: String,
    pub reason: String,
    pub created_at: UnixMillis,
    /// It is in force until then, unless lifted before.
    pub until: UnixMillis,
    pub lifted_at: Option<UnixMillis>,
    pub lifted_by: Option<String>,
}

/// A new action, for [`Store::record_sentinel_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSentinelAction {
    pub subject: String,
    pub action: String,
    pub rule: String,
    pub reason: String,
    pub created_at: UnixMillis,
    pub until: UnixMillis,
}

/// What Sentinel saw an account do, kept (for the metadata retention period) so operators can
/// link the accounts of a campaign and find the people it targeted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelSighting {
    pub at: UnixMillis,
    /// Who did it: the caller of a call, the account that registered or signed in, the account
    /// that was blocked.
    pub account: AccountId,
    pub kind: SightingKind,
    /// The other account: the callee, or the account that blocked.
    pub peer: Option<AccountId>,
    /// `203.0.113.0/24` or `2001:db8::/48`, for registrations and sign-ins.
    pub network: Option<String>,
    /// The source address, for registrations and sign-ins.
    pub address: Option<String>,
    /// For sign-ins: the software the device named, when it is not Rampart's own.
    pub client: Option<String>,
}

/// The kinds of [`SentinelSighting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SightingKind {
    Registered,
    SignedIn,
    Called,
    Answered,
    Declined,
    /// A request that did not fit the protocol was refused.
    Refused,
    /// A call set-up aimed at `peer` was refused (it did not fit, or calling was suspended):
    /// `peer` was targeted all the same.
    Attempted,
    /// `peer` blocked `account`.
    Blocked,
    Lookup,
    /// `account` brought `peer` into a conversation (a first message or a group invitation).
    Invited,
    /// The account's device behaved unlike Rampart's own client; `client` holds the behaviour
    /// fingerprint (the name it gave and what it did).
    Quirk,
}

impl SightingKind {
    pub const ALL: [SightingKind; 11] = [
        Self::Registered,
        Self::SignedIn,
        Self::Called,
        Self::Answered,
        Self::Declined,
        Self::Refused,
        Self::Attempted,
        Self::Blocked,
        Self::Lookup,
        Self::Invited,
        Self::Quirk,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::SignedIn => "signed_in",
            Self::Called => "called",
            Self::Answered => "answered",
            Self::Declined => "declined",
            Self::Refused => "refused",
            Self::Attempted => "attempted",
            Self::Blocked => "blocked",
            Self::Lookup => "lookup",
            Self::Invited => "invited",
            Self::Quirk => "quirk",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Which sightings to read: those of these accounts, from these networks, or with these
/// client names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SightingQuery {
    pub accounts: Vec<AccountId>,
    pub networks: Vec<String>,
    pub clients: Vec<String>,
    /// Only sightings at or after this time.
    pub since: UnixMillis,
    /// At most this many, oldest first.
    pub limit: u32,
}

/// Longest network, address or client text of a sighting, in bytes.
pub const MAX_SIGHTING_FIELD: usize = 64;
/// Most accounts, networks or clients in one [`SightingQuery`].
pub const MAX_SIGHTING_KEYS: usize = 1000;

/// How often one account's call requests did not fit the call schema, by reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallMisfit {
    pub reason: String,
    pub count: u64,
    /// The latest `now` this reason was counted at (it never moves backwards).
    pub last_at: UnixMillis,
}

/// Something another server node sharing this store did that connections on this node must
/// hear about. Only backends shared by several nodes (PostgreSQL) produce events, and never for
/// the node's own writes: a node pushes its own work to its own connections directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// New messages were queued for this device.
    Queued(DeviceId),
    /// The device was revoked, or removed by a re-registration of its number.
    Revoked(DeviceId),
    /// A link code was approved: the new device waiting with it is now `device`.
    Linked { code_hash: SecretHash, account: AccountId, device: DeviceId },
    /// Events may have been missed (the listening connection was re-established): every
    /// connected device should re-read its queue.
    Resync,
}

/// Storage errors. The domain variants are answers the client should see; `Backend` is a
/// failure of the database itself.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no verification code is pending for this number; ask for a new one")]
    NoPendingCode,
    #[error("the verification code has expired; ask for a new one")]
    CodeExpired,
    #[error("wrong verification code ({attempts_left} attempts left)")]
    WrongCode { attempts_left: u32 },
    #[error("the username is already taken")]
    UsernameTaken,
    #[error("unknown or expired link code")]
    NoSuchLink,
    #[error("the account already has {max} devices; revoke one first")]
    TooManyDevices { max: u32 },
    #[error("the recipient's queue is full ({max} messages); try again later")]
    QueueFull { max: u32 },
    #[error("the recipient already has {max} of your messages waiting; try again once they have read them")]
    SenderShareFull { max: u32 },
    #[error("no such account")]
    NoSuchAccount,
    #[error("no such device")]
    NoSuchDevice,
    #[error(
        "another commit was accepted for this epoch; the group is at epoch {current}: process pending messages and retry"
    )]
    StaleEpoch { current: u64 },
    #[error("no such group")]
    NoSuchGroup,
    #[error("this device is not a member of the group")]
    NotMember,
    #[error("the group would have more than {max} member devices")]
    TooManyMembers { max: u32 },
    #[error("device {0} has no key package left")]
    NoKeyPackage(DeviceId),
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("storage backend failure: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An account's devices and their certificates (`None` until a device has published one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountKeys {
    pub account: AccountId,
    pub label: String,
    pub devices: Vec<(DeviceId, Option<Vec<u8>>)>,
}

/// An MLS commit for the delivery service. Bodies are the envelopes to queue, already encoded.
#[derive(Debug, Clone)]
pub struct GroupCommitRecord {
    pub group: GroupId,
    pub sender_account: AccountId,
    pub sender_device: DeviceId,
    /// The epoch the commit was made in; it is accepted only if the group is still there.
    pub epoch: u64,
    pub added: Vec<DeviceId>,
    pub removed: Vec<DeviceId>,
    pub message_id: MessageId,
    pub commit_body: Vec<u8>,
    pub welcome_body: Option<Vec<u8>>,
    pub received_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub max_members: u32,
    /// The group's public MLS state after this commit, as the delivery service checked it
    /// (opaque here). Written with the new epoch, so it always belongs to the stored epoch.
    /// `None` only for a group created before the server kept public state.
    pub public_state: Option<Vec<u8>>,
    /// The Welcome counts against the committer's share of each added device's queue (a
    /// stranger cannot flood a queue with invitations); the queue's total is not checked
    /// (a member that missed a handshake message could never read the group again).
    pub max_per_sender: u32,
}

impl GroupCommitRecord {
    /// The Welcome is a second message from the same sender: it gets its own id, derived from
    /// the commit's so a retried commit queues it once.
    pub fn welcome_message_id(&self) -> MessageId {
        let mut id = self.message_id.0;
        id[15] ^= 0x80;
        MessageId(id)
    }
}

/// A message for every other member device of a group.
#[derive(Debug, Clone)]
pub struct GroupMessage {
    pub group: GroupId,
    pub sender_account: AccountId,
    pub sender_device: DeviceId,
    pub message_id: MessageId,
    pub body: Vec<u8>,
    pub received_at: UnixMillis,
    pub expires_at: UnixMillis,
}

/// The recipient's devices `enqueue` fills (by their database keys): all, or only `only`
/// among them (none if it is not one of them any more).
pub(crate) fn only_device<T>(devices: Vec<T>, key: impl Fn(&T) -> i64, only: Option<DeviceId>) -> Vec<T> {
    match only {
        None => devices,
        Some(only) => devices.into_iter().filter(|d| u64::try_from(key(d)).ok() == Some(only.0)).collect(),
    }
}

/// What the delivery service knows of a group: its epoch, member devices with accounts, and
/// the public MLS state every commit is checked against (`None` for a group created before
/// the server kept it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    pub epoch: u64,
    pub members: Vec<(DeviceId, AccountId)>,
    pub public_state: Option<Vec<u8>>,
}

/// What accepting a commit changes, decided by [`plan_commit`] for every backend alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPlan {
    pub create: bool,
    pub new_epoch: u64,
    /// Members before the commit, other than the committing device: they get the commit.
    pub commit_to: Vec<DeviceId>,
    pub welcome_to: Vec<DeviceId>,
    pub remove: Vec<DeviceId>,
}

/// The delivery service's rules for a commit, given the group's state (`None`: no such group
/// yet), the account of every added device (`None`: no such device), and the accounts that
/// blocked the committer.
///
/// - Exactly one commit per epoch: one made in an older epoch is stale.
/// - A group is created by its creator's first commit, in epoch 0.
/// - Only members commit. Any member may add devices of accounts already in the group (a
///   newly linked device); only the creator adds new accounts or removes other accounts'
///   devices; anyone may remove devices of their own account and devices that already left.
/// - Nobody brings into a group an account that blocked them.
/// - A new group starts with its public state, and a group that has one keeps one.
pub fn plan_commit(
    state: Option<&GroupState>,
    c: &GroupCommitRecord,
    added_accounts: &[Option<AccountId>],
    blocking_committer: &[AccountId],
) -> StoreResult<CommitPlan> {
    let is_creator = c.group.creator() == c.sender_account;
    if c.added.is_empty() && c.removed.is_empty() && state.is_none() {
        return Err(StoreError::NoSuchGroup);
    }
    if !c.added.is_empty() && c.welcome_body.is_none() {
        return Err(StoreError::Forbidden("a commit that adds devices needs a Welcome".into()));
    }
    let (create, epoch, members) = match state {
        None => {
            if c.epoch != 0 {
                return Err(StoreError::NoSuchGroup);
            }
            if !is_creator {
                return Err(StoreError::Forbidden(
                    "a group's id must start with its creator's account".into(),
                ));
            }
            if c.public_state.is_none() {
                return Err(StoreError::Forbidden("a new group starts with its public state".into()));
            }
            (true, 0, vec![(c.sender_device, c.sender_account)])
        }
        Some(s) => {
            if !s.members.iter().any(|(d, _)| *d == c.sender_device) {
                return Err(StoreError::NotMember);
            }
            if c.epoch != s.epoch {
                return Err(StoreError::StaleEpoch { current: s.epoch });
            }
            if s.public_state.is_some() && c.public_state.is_none() {
                return Err(StoreError::Forbidden("a commit without the group's next public state".into()));
            }
            (false, s.epoch, s.members.clone())
        }
    };
    let member_accounts: Vec<AccountId> = members.iter().map(|(_, a)| *a).collect();
    for (device, account) in c.added.iter().zip(added_accounts) {
        let Some(account) = account else {
            return Err(StoreError::NoSuchDevice);
        };
        if members.iter().any(|(d, _)| d == device) {
            return Err(StoreError::Forbidden(format!("{device} is already a member")));
        }
        if !is_creator && !member_accounts.contains(account) {
            return Err(StoreError::Forbidden("only the group's creator adds new people".into()));
        }
        if !member_accounts.contains(account) && blocking_committer.contains(account) {
            return Err(StoreError::Forbidden(format!("{account} does not take invitations from you")));
        }
    }
    let mut remove = Vec::new();
    for device in &c.removed {
        if *device == c.sender_device {
            return Err(StoreError::Forbidden("a device cannot remove itself; leave the group".into()));
        }
        if let Some((_, account)) = members.iter().find(|(d, _)| d == device) {
            if *account != c.sender_account && !is_creator {
                return Err(StoreError::Forbidden("only the group's creator removes other people".into()));
            }
            remove.push(*device);
        }
    }
    let after = members.len() + c.added.len() - remove.len();
    if after > c.max_members as usize {
        return Err(StoreError::TooManyMembers { max: c.max_members });
    }
    Ok(CommitPlan {
        create,
        new_epoch: epoch + 1,
        commit_to: members.iter().map(|(d, _)| *d).filter(|d| *d != c.sender_device).collect(),
        welcome_to: c.added.clone(),
        remove,
    })
}

/// Everything the server stores. Implementations must be safe to call from many tasks at once.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and metrics: "sqlite" or "postgres".
    fn backend_name(&self) -> &'static str;

    /// Events from other nodes sharing this store, or `None` for a single-node backend.
    async fn subscribe(&self) -> StoreResult<Option<tokio::sync::mpsc::Receiver<StoreEvent>>> {
        Ok(None)
    }

    // --- registration -------------------------------------------------------------------

    /// Start (or restart) a registration: replaces any pending code for the number and resets
    /// its attempt counter.
    async fn begin_registration(&self, pending: PendingRegistration) -> StoreResult<()>;

    /// Check the code and, if right, create the account (or take over the existing account of
    /// that number, removing its old devices and their queues, and replacing its username with
    /// the one asked for, or none: a recycled number must not inherit someone's name) with one
    /// first device. The
    /// pending code is single-use: consumed on success, burnt after `max_attempts` wrong tries.
    async fn complete_registration(
        &self,
        phone: &PhoneNumber,
        code_hash: SecretHash,
        device: NewDevice,
        now: UnixMillis,
        max_attempts: u32,
    ) -> StoreResult<Registered>;

    // --- accounts -----------------------------------------------------------------------

    async fn account_by_phone(&self, phone: &PhoneNumber) -> StoreResult<Option<AccountId>>;
    async fn account_by_username(&self, username: &Username) -> StoreResult<Option<AccountId>>;
    /// `@username` if the account has one, else its phone number.
    async fn account_label(&self, account: AccountId) -> StoreResult<Option<String>>;
    /// Set or clear the username. `UsernameTaken` if another account has it.
    async fn set_username(&self, account: AccountId, username: Option<&Username>) -> StoreResult<()>;

    // --- devices ------------------------------------------------------------------------

    async fn device_auth(&self, device: DeviceId) -> StoreResult<Option<DeviceAuth>>;
    async fn touch_device(&self, device: DeviceId, now: UnixMillis) -> StoreResult<()>;
    async fn list_devices(&self, account: AccountId) -> StoreResult<Vec<DeviceRecord>>;
    /// Remove a device of this account and delete its queue. `NoSuchDevice` if the device does
    /// not exist or belongs to another account.
    async fn revoke_device(&self, account: AccountId, device: DeviceId) -> StoreResult<()>;

    // --- linking ------------------------------------------------------------------------

    async fn begin_link(&self, pending: PendingLink) -> StoreResult<()>;
    /// Consume the link code and add its device to `account`, unless the account already has
    /// `max_devices`. `NoSuchLink` for an unknown, used or expired code; `NoSuchDevice` when
    /// `approver` is no longer a device of `account` (revoked while it approved; the code stays
    /// valid).
    async fn complete_link(
        &self,
        code_hash: SecretHash,
        approver: DeviceId,
        account: AccountId,
        now: UnixMillis,
        max_devices: u32,
    ) -> StoreResult<DeviceId>;

    // --- queues -------------------------------------------------------------------------

    /// Durably queue one copy for every device of `msg.recipient` (or only `msg.only_device`,
    /// if it is one of them), all or none. The copies carry
    /// the sender's label as it is at this moment (`@username`, else the number), read in the
    /// same transaction, so a name that changed hands is never attached to the wrong sender. `QueueFull` if
    /// any of those devices already holds `limits.per_device` messages, `SenderShareFull` if
    /// one holds `limits.per_sender` from this sender (another account's). Nothing is queued,
    /// and `Ok(vec![])` is returned, when the recipient blocked the sender. Idempotent on
    /// (device, sender account, message id): a retried send returns the copies already queued
    /// and queues nothing twice.
    /// Returns the queued copies, so the caller can push them to online devices.
    async fn enqueue(&self, msg: NewMessage, limits: QueueLimits) -> StoreResult<Vec<StoredMessage>>;

    /// Unexpired messages of a device with id greater than `after`, oldest first.
    async fn fetch_queue(
        &self,
        device: DeviceId,
        after: Option<ServerMessageId>,
        now: UnixMillis,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;

    /// Delete acknowledged messages of this device. Ids of other devices are ignored.
    /// Returns how many were deleted.
    async fn ack(&self, device: DeviceId, ids: &[ServerMessageId]) -> StoreResult<u64>;

    async fn queue_depth(&self, device: DeviceId) -> StoreResult<u64>;
    async fn total_queued(&self) -> StoreResult<u64>;

    /// Remove expired messages, registrations and link codes, outbox entries created more than
    /// `outbox_ttl_ms` before `now`, and calls that expired more than
    /// [`CALL_KEEP_AFTER_EXPIRY_MS`] before `now`. Call misfit counters are never purged.
    async fn purge_expired(&self, now: UnixMillis, outbox_ttl_ms: u64) -> StoreResult<Purged>;

    // --- embedded verifier outbox -------------------------------------------------------

    async fn outbox_push(&self, entry: OutboxEntry) -> StoreResult<()>;
    async fn outbox_list(&self) -> StoreResult<Vec<OutboxEntry>>;

    // --- end-to-end keys (opaque bytes: the server checks them before they get here) ----

    /// Set a device's certificate. It never changes: setting a different one is forbidden.
    async fn set_certificate(&self, device: DeviceId, certificate: Vec<u8>) -> StoreResult<()>;
    async fn device_certificate(&self, device: DeviceId) -> StoreResult<Option<Vec<u8>>>;
    /// Add one-time key packages (at most `max_stock` are kept) and replace the last-resort
    /// one. Returns how many one-time packages the device has on the server.
    async fn publish_key_packages(
        &self,
        device: DeviceId,
        one_time: Vec<Vec<u8>>,
        last_resort: Option<Vec<u8>>,
        max_stock: u32,
    ) -> StoreResult<u32>;
    /// Take one package per device: a one-time package (deleted as it is handed out), else the
    /// last-resort one. Fails with `NoKeyPackage` if a device has neither.
    async fn claim_key_packages(&self, devices: &[DeviceId]) -> StoreResult<Vec<(DeviceId, Vec<u8>)>>;
    /// Unknown accounts are left out.
    async fn account_keys(&self, accounts: &[AccountId]) -> StoreResult<Vec<AccountKeys>>;

    // --- groups (the MLS delivery service) ----------------------------------------------

    async fn group_state(&self, group: &GroupId) -> StoreResult<Option<GroupState>>;
    /// Accept a commit by [`plan_commit`]'s rules, atomically: the epoch moves on, membership
    /// changes, the commit is queued for the other members and the Welcome for the added
    /// devices. Handshake messages ignore the queue cap: a member that missed one could never
    /// read the group again. The Welcome still counts against the committer's share of each
    /// added device's queue (`SenderShareFull`, nothing changed).
    async fn commit_group(&self, commit: GroupCommitRecord) -> StoreResult<(u64, Vec<StoredMessage>)>;
    /// Queue an application message for every other member device. A device whose queue is
    /// full, or holds the sender's share, misses it (`skipped`); the others still get it.
    /// Devices of accounts that blocked the sender are left out (and not counted).
    async fn send_group(&self, msg: GroupMessage, limits: QueueLimits) -> StoreResult<GroupSent>;
    /// Drop `devices` from the group and queue `notice` (a message from one of them) for the
    /// remaining members, atomically.
    async fn leave_group(
        &self,
        devices: &[DeviceId],
        notice: GroupMessage,
    ) -> StoreResult<Vec<StoredMessage>>;

    // --- blocks ---------------------------------------------------------------------------

    /// `blocker` takes nothing more from `blocked`: no direct message, no group message, no
    /// ring, no invitation (see [`plan_commit`]). Commits of groups both already share pass.
    /// Setting a block twice, or lifting one that is not there, is not an error.
    async fn set_block(
        &self,
        blocker: AccountId,
        blocked: AccountId,
        on: bool,
        now: UnixMillis,
    ) -> StoreResult<()>;
    /// The accounts `blocker` blocked.
    async fn blocked_accounts(&self, blocker: AccountId) -> StoreResult<Vec<AccountId>>;

    // --- calls (set-up through the signaling server) ----------------------------------------

    /// Record a new call. `false` when the call id is already taken (the record is unchanged).
    /// `NoSuchAccount` when the caller or the callee account does not exist.
    async fn create_call(&self, call: CallRecord) -> StoreResult<bool>;
    async fn call(&self, id: &CallId) -> StoreResult<Option<CallRecord>>;
    /// Claim the call for one callee-account device, atomically: returns the record (with its
    /// offer) when `device` is now, or already was, the device that answered; `None` when another
    /// device answered first, or the call is unknown, ended, or expired at `now`. The caller
    /// checks that `device` belongs to the callee account before calling.
    async fn answer_call(
        &self,
        id: &CallId,
        device: DeviceId,
        now: UnixMillis,
    ) -> StoreResult<Option<CallRecord>>;
    /// Mark the call ended and drop the held offer (set it empty). Idempotent; unknown ids are fine.
    async fn end_call(&self, id: &CallId) -> StoreResult<()>;
    /// Count `n` misfits of `account` for `reason` (<= 64 bytes, e.g. "schema", "not_a_party",
    /// "unknown_call", "not_in_conversation"); returns the new count for that reason. The
    /// server adds up a second's worth per account and reason, so a flood is one write.
    /// `Forbidden` for a longer reason, `NoSuchAccount` for an unknown account.
    async fn count_call_misfit(
        &self,
        account: AccountId,
        reason: &str,
        n: u64,
        now: UnixMillis,
    ) -> StoreResult<u64>;
    /// Misfit counts of one account, ordered by reason (bytewise).
    async fn call_misfits(&self, account: AccountId) -> StoreResult<Vec<CallMisfit>>;
    /// Accounts with the most misfits in total (for the operator), highest first (ties by
    /// account id), at most `limit`.
    async fn top_call_misfits(&self, limit: u32) -> StoreResult<Vec<(AccountId, u64)>>;
    /// How many calls `caller` placed with created_at >= since (for rate limits and detection).
    async fn calls_placed_since(&self, caller: AccountId, since: UnixMillis) -> StoreResult<u64>;

    /// Keep an action Sentinel took; returns its id. `Forbidden` when a text field is longer
    /// than [`MAX_SENTINEL_FIELD`].
    async fn record_sentinel_action(&self, action: NewSentinelAction) -> StoreResult<u64>;
    /// The actions on `subject` in force at `now` (not lifted, `until` after `now`), oldest first.
    async fn sentinel_actions_in_force(
        &self,
        subject: &str,
        now: UnixMillis,
    ) -> StoreResult<Vec<SentinelAction>>;
    /// The latest actions, in force or not, newest first, at most `limit`.
    async fn sentinel_actions(&self, limit: u32) -> StoreResult<Vec<SentinelAction>>;
    /// Lift every action in force on `subject` at `now`, by `by` (an operator); returns them.
    async fn lift_sentinel_actions(
        &self,
        subject: &str,
        by: &str,
        now: UnixMillis,
    ) -> StoreResult<Vec<SentinelAction>>;
    /// When `action` on `subject` was last lifted, if ever (a lift pardons the subject for a
    /// while: the policy does not take the same action again at once; others it may).
    async fn last_sentinel_lift(&self, subject: &str, action: &str) -> StoreResult<Option<UnixMillis>>;
    /// Delete the actions that ended (expired or lifted) before `before`, lifts not yet noted
    /// excepted; returns how many.
    async fn purge_sentinel_actions(&self, before: UnixMillis) -> StoreResult<u64>;
    /// Lifted actions no node has noted yet, marked noted as they are returned, at most
    /// `limit` (each lift goes to one node's evidence log once).
    async fn take_unnoted_sentinel_lifts(&self, limit: u32) -> StoreResult<Vec<SentinelAction>>;

    /// Keep what Sentinel saw, in one write. `Forbidden` when a network or address is longer
    /// than [`MAX_SIGHTING_FIELD`].
    async fn record_sentinel_sightings(&self, sightings: Vec<SentinelSighting>) -> StoreResult<()>;
    /// The sightings of the query's accounts or from its networks, oldest first. `Forbidden`
    /// when it names more than [`MAX_SIGHTING_KEYS`] accounts or networks.
    async fn sentinel_sightings(&self, query: SightingQuery) -> StoreResult<Vec<SentinelSighting>>;
    /// Delete the sightings older than `before` (metadata retention); returns how many.
    async fn purge_sentinel_sightings(&self, before: UnixMillis) -> StoreResult<u64>;
}

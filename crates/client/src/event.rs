//! What a received delivery turned into, for whoever shows it.

/// What one received delivery turned into.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Event {
    Message {
        conversation: String,
        from: String,
        from_account: u64,
        message_id: String,
        text: String,
    },
    Joined {
        conversation: String,
        members: usize,
    },
    MembershipChanged {
        conversation: String,
        added: usize,
        removed: usize,
    },
    RemovedFromConversation {
        conversation: String,
    },
    KeysChanged {
        conversation: String,
        account: u64,
    },
    Refused {
        reason: String,
    },
    /// Messages a member sent in the conversation never arrived here (their counts jumped):
    /// the server dropped them, or a full queue did.
    MessagesMissing {
        conversation: String,
        from: String,
        count: u64,
    },
    /// Someone who is not a contact started a conversation: it waits, unopened, for
    /// `rampart requests accept` (or decline, or block).
    Request {
        conversation: String,
        from: String,
        from_account: u64,
    },
    /// A ring notice: `rings` is false for a caller the ring policy keeps silent (a missed call
    /// request) or a notice that arrived too late.
    IncomingCall {
        call: String,
        from: String,
        from_account: u64,
        rings: bool,
    },
    /// A notice from the server's operators (not from any person): that an account which
    /// called this one was part of an attack campaign, say.
    ServerNotice {
        text: String,
        at_ms: u64,
    },
}

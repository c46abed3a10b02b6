//! Consent for conversations: what a device does with a delivery before anything of it is
//! parsed.
//!
//! Calls have their ring policy ([`crate::call::RingPolicy`]); this is the same rule for
//! messages. Someone else starts a conversation with you — a 1:1 or a group — by sending an MLS
//! Welcome. From a contact it is processed. From anyone else it becomes a *request*: the device
//! keeps the sealed delivery and the server-vouched sender, and hands nothing of it to the MLS
//! engine until the user accepts. Whatever later arrives in that conversation waits with it,
//! in order, and is processed in that order after an accept.
//!
//! The only inputs are facts the device has without opening the payload: who the server says
//! sent it, the envelope's kind and conversation id, and what the device itself recorded.

/// Who may start a conversation with this device's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessagePolicy {
    /// Anyone: conversations from strangers are joined at once (no requests).
    Everyone,
    /// Contacts start conversations; anyone else's first message waits as a request.
    #[default]
    Requests,
    /// Contacts only: a stranger's first message is dropped unseen.
    Contacts,
}

impl MessagePolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "everyone" => Some(MessagePolicy::Everyone),
            "requests" => Some(MessagePolicy::Requests),
            "contacts" => Some(MessagePolicy::Contacts),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MessagePolicy::Everyone => "everyone",
            MessagePolicy::Requests => "requests",
            MessagePolicy::Contacts => "contacts",
        }
    }
}

/// Where the conversation a delivery belongs to stands on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The device is a member (it created, accepted or was let in).
    Joined,
    /// Waiting for the user: a request is open for it.
    Requested,
    /// The user declined it.
    Declined,
    /// Nothing is known of it here.
    Unknown,
}

/// The envelope's kind, as the server's framing says (the payload is not opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    /// An invitation into a conversation.
    Welcome,
    /// A change to a conversation's membership or keys.
    Commit,
    /// Anything else said in a conversation: messages, departure notices.
    Content,
}

/// Everything the decision looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub policy: MessagePolicy,
    /// The sender is this device's own account (another of its devices).
    pub from_self: bool,
    pub from_contact: bool,
    /// The user blocked the sender.
    pub from_blocked: bool,
    pub standing: Standing,
    pub kind: DeliveryKind,
    /// Requests open on this device.
    pub open_requests: usize,
    /// Of those, opened by this delivery's sender.
    pub open_requests_from_sender: usize,
    /// Only a new invitation and a held conversation are judged by the following; elsewhere
    /// the caller may leave them 0 (they are not looked at, and cost queries to find).
    ///
    /// Deliveries already held in this conversation's request.
    pub held_in_request: usize,
    /// Bytes held in all requests on this device.
    pub held_bytes: u64,
}

/// Requests a device keeps open at once; a stranger's invitation beyond this is dropped.
pub const MAX_OPEN_REQUESTS: usize = 200;
/// Requests one sender may have open on a device, so one account cannot fill the box.
pub const MAX_REQUESTS_PER_SENDER: usize = 10;
/// Messages held in one request; more are dropped until the user decides.
pub const MAX_HELD_PER_REQUEST: usize = 100;
/// Membership changes held in one request, past which it can no longer be kept whole.
/// Commits are kept beyond the message limit: a group missing one could not be read after an
/// accept.
pub const MAX_HELD_COMMITS_PER_REQUEST: usize = 1_000;
/// Bytes held in all requests on a device; past it nothing more is held (or opened as a
/// request) until the user answers some.
pub const MAX_HELD_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the MLS engine.
    Process,
    /// Open a request for this conversation and keep the Welcome in it, sealed.
    OpenRequest,
    /// Keep it sealed in the conversation's open request.
    Hold,
    /// Never opened, never kept.
    Drop(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Declined,
    Blocked,
    /// The policy takes no requests and the sender is not a contact.
    NotAContact,
    TooManyRequests,
    RequestFull,
    /// A message for a conversation this device never joined nor was asked into.
    UnknownConversation,
    /// An invitation into a conversation this device is already in (only a lying server or a
    /// confused client sends one).
    AlreadyJoined,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Declined => "declined conversation",
            DropReason::Blocked => "blocked sender",
            DropReason::NotAContact => "not a contact",
            DropReason::TooManyRequests => "too many open requests",
            DropReason::RequestFull => "request holds too many messages",
            DropReason::UnknownConversation => "a conversation this device is not in",
            DropReason::AlreadyJoined => "an invitation into a conversation already joined",
        }
    }
}

/// Decide what to do with one delivery.
pub fn decide(f: &Facts) -> Verdict {
    // This account's own devices are always let in: they are the user.
    if f.from_self {
        return match f.standing {
            Standing::Declined => Verdict::Drop(DropReason::Declined),
            Standing::Requested => hold(f),
            Standing::Joined if f.kind == DeliveryKind::Welcome => Verdict::Drop(DropReason::AlreadyJoined),
            Standing::Joined => Verdict::Process,
            Standing::Unknown if f.kind == DeliveryKind::Welcome => Verdict::Process,
            Standing::Unknown => Verdict::Drop(DropReason::UnknownConversation),
        };
    }
    match f.standing {
        Standing::Declined => Verdict::Drop(DropReason::Declined),
        Standing::Requested if f.from_blocked => Verdict::Drop(DropReason::Blocked),
        Standing::Requested => hold(f),
        // A blocked member of a shared group still changes its keys and members (skipping
        // that would fork the group), but what it says is not shown.
        // Nothing opens a conversation twice: the envelope's group id is the server's word,
        // and a Welcome under a joined id could carry any group.
        Standing::Joined if f.kind == DeliveryKind::Welcome => Verdict::Drop(DropReason::AlreadyJoined),
        Standing::Joined if f.from_blocked && f.kind != DeliveryKind::Commit => {
            Verdict::Drop(DropReason::Blocked)
        }
        Standing::Joined => Verdict::Process,
        Standing::Unknown if f.kind != DeliveryKind::Welcome => {
            Verdict::Drop(DropReason::UnknownConversation)
        }
        Standing::Unknown if f.from_blocked => Verdict::Drop(DropReason::Blocked),
        Standing::Unknown if f.from_contact || f.policy == MessagePolicy::Everyone => Verdict::Process,
        Standing::Unknown if f.policy == MessagePolicy::Contacts => Verdict::Drop(DropReason::NotAContact),
        Standing::Unknown
            if f.open_requests >= MAX_OPEN_REQUESTS
                || f.open_requests_from_sender >= MAX_REQUESTS_PER_SENDER
                || f.held_bytes >= MAX_HELD_BYTES =>
        {
            Verdict::Drop(DropReason::TooManyRequests)
        }
        Standing::Unknown => Verdict::OpenRequest,
    }
}

fn hold(f: &Facts) -> Verdict {
    let limit =
        if f.kind == DeliveryKind::Content { MAX_HELD_PER_REQUEST } else { MAX_HELD_COMMITS_PER_REQUEST };
    if f.held_in_request >= limit || f.held_bytes >= MAX_HELD_BYTES {
        Verdict::Drop(DropReason::RequestFull)
    } else {
        Verdict::Hold
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    const POLICIES: [MessagePolicy; 3] =
        [MessagePolicy::Everyone, MessagePolicy::Requests, MessagePolicy::Contacts];
    const STANDINGS: [Standing; 4] =
        [Standing::Joined, Standing::Requested, Standing::Declined, Standing::Unknown];
    const KINDS: [DeliveryKind; 3] = [DeliveryKind::Welcome, DeliveryKind::Commit, DeliveryKind::Content];

    /// Every combination of the facts, with counters at, below and above their limits.
    fn all_facts() -> Vec<Facts> {
        let mut out = Vec::new();
        for policy in POLICIES {
            for standing in STANDINGS {
                for kind in KINDS {
                    for bits in 0..8u8 {
                        for open_requests in [0, MAX_OPEN_REQUESTS - 1, MAX_OPEN_REQUESTS] {
                            for from_sender in [0, MAX_REQUESTS_PER_SENDER - 1, MAX_REQUESTS_PER_SENDER] {
                                for held_in_request in [
                                    0,
                                    MAX_HELD_PER_REQUEST - 1,
                                    MAX_HELD_PER_REQUEST,
                                    MAX_HELD_COMMITS_PER_REQUEST - 1,
                                    MAX_HELD_COMMITS_PER_REQUEST,
                                ] {
                                    for held_bytes in [0, MAX_HELD_BYTES] {
                                        out.push(Facts {
                                            policy,
                                            from_self: bits & 1 != 0,
                                            from_contact: bits & 2 != 0,
                                            from_blocked: bits & 4 != 0,
                                            standing,
                                            kind,
                                            open_requests,
                                            open_requests_from_sender: from_sender.min(open_requests),
                                            held_in_request,
                                            held_bytes,
                                        });
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn a_stranger_is_never_processed_in_a_conversation_not_joined() {
        for f in all_facts() {
            let stranger = !f.from_self && !f.from_contact && f.policy != MessagePolicy::Everyone;
            if stranger && f.standing != Standing::Joined {
                assert_ne!(decide(&f), Verdict::Process, "{f:?}");
            }
        }
    }

    #[test]
    fn blocked_senders_never_say_anything() {
        for f in all_facts() {
            if f.from_blocked && !f.from_self && f.kind != DeliveryKind::Commit {
                assert!(matches!(decide(&f), Verdict::Drop(_)), "{f:?}");
            }
        }
    }

    #[test]
    fn declined_conversations_stay_closed_and_unknown_ones_only_open_by_welcome() {
        for f in all_facts() {
            let v = decide(&f);
            if f.standing == Standing::Declined {
                assert_eq!(v, Verdict::Drop(DropReason::Declined), "{f:?}");
            }
            if f.standing == Standing::Unknown && f.kind != DeliveryKind::Welcome {
                assert_eq!(v, Verdict::Drop(DropReason::UnknownConversation), "{f:?}");
            }
            if v == Verdict::OpenRequest {
                assert_eq!(
                    (f.standing, f.kind, f.policy),
                    (Standing::Unknown, DeliveryKind::Welcome, MessagePolicy::Requests)
                );
                assert!(f.open_requests < MAX_OPEN_REQUESTS);
                assert!(f.open_requests_from_sender < MAX_REQUESTS_PER_SENDER);
                assert!(f.held_bytes < MAX_HELD_BYTES);
            }
            if v == Verdict::Hold {
                assert_eq!(f.standing, Standing::Requested);
                let limit = if f.kind == DeliveryKind::Content {
                    MAX_HELD_PER_REQUEST
                } else {
                    MAX_HELD_COMMITS_PER_REQUEST
                };
                assert!(f.held_in_request < limit && f.held_bytes < MAX_HELD_BYTES);
            }
            // A membership change in a request is kept past the message limit, so that the
            // group can still be read after an accept.
            if f.standing == Standing::Requested
                && f.kind == DeliveryKind::Commit
                && f.held_in_request < MAX_HELD_COMMITS_PER_REQUEST
                && f.held_bytes < MAX_HELD_BYTES
                && (f.from_self || !f.from_blocked)
            {
                assert_eq!(v, Verdict::Hold, "{f:?}");
            }
            // Nothing is joined twice.
            if f.standing == Standing::Joined && f.kind == DeliveryKind::Welcome {
                assert_eq!(v, Verdict::Drop(DropReason::AlreadyJoined), "{f:?}");
            }
        }
    }

    #[test]
    fn contacts_and_own_devices_get_through() {
        for f in all_facts() {
            let trusted = f.from_self || (f.from_contact && !f.from_blocked);
            if trusted && f.standing == Standing::Unknown && f.kind == DeliveryKind::Welcome {
                assert_eq!(decide(&f), Verdict::Process, "{f:?}");
            }
            if f.standing == Standing::Joined
                && f.kind != DeliveryKind::Welcome
                && (f.from_self || !f.from_blocked)
            {
                assert_eq!(decide(&f), Verdict::Process, "{f:?}");
            }
        }
    }

    #[test]
    fn policies_round_trip() {
        for p in POLICIES {
            assert_eq!(MessagePolicy::parse(p.as_str()), Some(p));
        }
        assert_eq!(MessagePolicy::parse("friends"), None);
        assert_eq!(MessagePolicy::default(), MessagePolicy::Requests);
    }
}

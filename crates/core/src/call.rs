//! Call set-up as sans-IO state machines: what a device may do with a call, and when.
//!
//! The 2019 attack (docs/threat-model.md) ran its exploit through the callee's handling of
//! call set-up messages *before anyone answered*. The rule here is that, until the local user
//! accepts, a callee handles exactly one thing: the server's fixed-schema [`RingNotice`].
//! Everything the caller sends (offer, candidates, "connect", session updates) reaches the
//! machine as a [`SealedSignal`]: bytes no code can read. A sealed signal is opened only by
//! [`CalleeCall::release`], which returns something only once the call was accepted locally;
//! media can be enabled only with a [`MediaPermit`], which only a local accept creates. Both
//! guarantees are in the types, not in `if`s that a later change could forget: there is no
//! other constructor.
//!
//! The machines follow the `handle_*` in / `poll_*` out shape: inputs are calls with `now` as an
//! argument, outputs are [`CallEvent`]s to drain with `poll_event` and a deadline from
//! `poll_timeout`. No clock, no sockets, no randomness.
//!
//! Known bugs of this class that the tests below replay:
//! - Signal, 2019: a "connect" message from the caller, received while ringing, was treated as
//!   the callee's answer, and audio flowed before the user accepted.
//! - Facebook Messenger, 2020: an SDP update from the caller while ringing started media on the
//!   callee without an answer.

use std::collections::VecDeque;

use crate::ids::{AccountId, DeviceId};

/// A call's id: 128 random bits chosen by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub [u8; 16]);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
}

/// What the server delivers to make a device ring: a fixed schema it fills in itself and
/// vouches for. It carries no bytes chosen by the caller other than the call id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingNotice {
    pub call: CallId,
    pub caller: AccountId,
    pub caller_device: DeviceId,
    pub media: MediaKind,
    /// When the server accepted the call, in Unix milliseconds.
    pub sent_at_ms: u64,
}

/// Who may make this account's devices ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RingPolicy {
    Everyone,
    /// Accounts the user saved or wrote to.
    #[default]
    Contacts,
    Nobody,
}

impl RingPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "everyone" => Some(RingPolicy::Everyone),
            "contacts" => Some(RingPolicy::Contacts),
            "nobody" => Some(RingPolicy::Nobody),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RingPolicy::Everyone => "everyone",
            RingPolicy::Contacts => "contacts",
            RingPolicy::Nobody => "nobody",
        }
    }

    /// May a caller who is (or is not) a contact make the device ring?
    pub fn may_ring(self, caller_is_contact: bool) -> bool {
        match self {
            RingPolicy::Everyone => true,
            RingPolicy::Contacts => caller_is_contact,
            RingPolicy::Nobody => false,
        }
    }
}

/// The kind of a call signal, as the end-to-end encrypted signaling message's outer envelope
/// says. The kind is all the machine ever sees of a signal before it is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    Offer,
    Answer,
    Candidates,
    /// "Start media now" (the message of the Signal 2019 bug).
    Connect,
    /// A session description update (the message of the Messenger bug).
    Update,
    Hangup,
    Busy,
    Reject,
}

impl SignalKind {
    /// Every kind, for tests and fuzzers that must try them all.
    pub const ALL: [SignalKind; 8] = [
        SignalKind::Offer,
        SignalKind::Answer,
        SignalKind::Candidates,
        SignalKind::Connect,
        SignalKind::Update,
        SignalKind::Hangup,
        SignalKind::Busy,
        SignalKind::Reject,
    ];
}

/// A call signal from the other side, still sealed: its bytes (end-to-end ciphertext) cannot be
/// read from here. Only [`CalleeCall::release`] or [`CallerCall::release`] turn it into a
/// [`ReleasedSignal`], and only in states that allow it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSignal {
    kind: SignalKind,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for SealedSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSignal").field("kind", &self.kind).field("len", &self.bytes.len()).finish()
    }
}

impl SealedSignal {
    pub fn new(kind: SignalKind, bytes: Vec<u8>) -> Self {
        Self { kind, bytes }
    }

    pub fn kind(&self) -> SignalKind {
        self.kind
    }
}

/// A signal the machine allowed to be decrypted and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasedSignal {
    pub kind: SignalKind,
    pub bytes: Vec<u8>,
}

/// Proof that the local user accepted (callee) or placed (caller) this call. Media code takes
/// one; it has no public constructor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPermit {
    call: CallId,
}

impl MediaPermit {
    pub fn call(&self) -> CallId {
        self.call
    }
}

/// Why a call ended (or never rang).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Not a contact under the "contacts" policy, or the policy is "nobody": nothing rang;
    /// the call shows up afterwards as a missed call request.
    NotAllowedToRing,
    /// Nobody answered in time.
    Unanswered,
    DeclinedLocally,
    /// The caller hung up (before or after accept).
    RemoteHangup,
    HungUpLocally,
    /// The other side is busy or rejected.
    Rejected,
    /// The offer never came after accept, or the answer never came after dialing.
    SetupTimeout,
}

/// What the machine asks its owner to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// Show the incoming call and ring (callee).
    Ring(RingNotice),
    /// Ask for the caller's offer, which stayed on the server until now (callee, after accept).
    FetchOffer,
    /// Ask the server for relay credentials (only after a local accept or dial).
    FetchRelayCredentials,
    /// A signal may now be decrypted and parsed.
    Released(ReleasedSignal),
    /// Send a signal of this kind to the other side (the owner builds and encrypts it).
    Send(SignalKind),
    /// Media may start.
    EnableMedia(MediaPermit),
    /// Stop media and close everything of this call.
    Ended(EndReason),
}

/// How many of the other side's signals a call saw, and what became of them: the hostile-caller
/// tests and the detection of call campaigns read these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignalCounters {
    /// Dropped unread because they came before the local accept.
    pub dropped_before_accept: u64,
    /// Dropped unread because the call was over or the kind made no sense in that state.
    pub dropped_out_of_place: u64,
    /// Released for decryption and parsing.
    pub released: u64,
}

/// How long a device rings, and how long an accepted call waits for its offer.
pub const RING_TIMEOUT_MS: u64 = 60_000;
pub const SETUP_TIMEOUT_MS: u64 = 20_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum CalleeState {
    Ringing {
        deadline_ms: u64,
    },
    /// Accepted locally; the offer is being fetched.
    AwaitingOffer {
        permit: MediaPermit,
        deadline_ms: u64,
    },
    /// The offer was released; the owner builds the answer.
    Answering {
        permit: MediaPermit,
        deadline_ms: u64,
    },
    Active {
        permit: MediaPermit,
    },
    Ended(EndReason),
}

/// The callee's side of one call.
#[derive(Debug)]
pub struct CalleeCall {
    notice: RingNotice,
    state: CalleeState,
    events: VecDeque<CallEvent>,
    counters: SignalCounters,
}

impl CalleeCall {
    /// A ring notice arrived. Under `policy`, a caller who may not ring ends the call at once:
    /// nothing rings, nothing is fetched, and the owner records a missed call request.
    pub fn on_ring(notice: RingNotice, policy: RingPolicy, caller_is_contact: bool, now_ms: u64) -> Self {
        let mut events = VecDeque::new();
        let state = if policy.may_ring(caller_is_contact) {
            events.push_back(CallEvent::Ring(notice));
            CalleeState::Ringing { deadline_ms: now_ms.saturating_add(RING_TIMEOUT_MS) }
        } else {
            events.push_back(CallEvent::Ended(EndReason::NotAllowedToRing));
            CalleeState::Ended(EndReason::NotAllowedToRing)
        };
        Self { notice, state, events, counters: SignalCounters::default() }
    }

    pub fn call(&self) -> CallId {
        self.notice.call
    }

    pub fn notice(&self) -> &RingNotice {
        &self.notice
    }

    pub fn counters(&self) -> SignalCounters {
        self.counters
    }

    /// The user accepted: only from ringing.
    pub fn accept(&mut self, now_ms: u64) -> bool {
        if !matches!(self.state, CalleeState::Ringing { .. }) {
            return false;
        }
        let permit = MediaPermit { call: self.notice.call };
        self.state =
            CalleeState::AwaitingOffer { permit, deadline_ms: now_ms.saturating_add(SETUP_TIMEOUT_MS) };
        self.events.push_back(CallEvent::FetchOffer);
        self.events.push_back(CallEvent::FetchRelayCredentials);
        true
    }

    pub fn decline(&mut self) {
        if matches!(self.state, CalleeState::Ringing { .. }) {
            self.events.push_back(CallEvent::Send(SignalKind::Reject));
            self.end(EndReason::DeclinedLocally);
        }
    }

    pub fn hang_up(&mut self) {
        match self.state {
            CalleeState::Ringing { .. } => self.decline(),
            CalleeState::AwaitingOffer { .. }
            | CalleeState::Answering { .. }
            | CalleeState::Active { .. } => {
                self.events.push_back(CallEvent::Send(SignalKind::Hangup));
                self.end(EndReason::HungUpLocally);
            }
            CalleeState::Ended(_) => {}
        }
    }

    /// A signal from the caller arrived (still sealed). What may happen to it depends only on
    /// the state; before accept, nothing does.
    pub fn handle_signal(&mut self, signal: SealedSignal) {
        match (&self.state, signal.kind) {
            // The caller gave up: the only thing a ringing callee acts on besides the notice,
            // and it acts on the kind alone.
            (CalleeState::Ringing { .. }, SignalKind::Hangup) => {
                self.counters.dropped_before_accept += 1;
                self.end(EndReason::RemoteHangup);
            }
            (CalleeState::Ringing { .. }, _) => self.counters.dropped_before_accept += 1,
            (CalleeState::AwaitingOffer { permit, deadline_ms }, SignalKind::Offer) => {
                let (permit, deadline_ms) = (*permit, *deadline_ms);
                self.release_into(signal);
                self.state = CalleeState::Answering { permit, deadline_ms };
            }
            (
                CalleeState::Answering { .. } | CalleeState::Active { .. },
                SignalKind::Candidates | SignalKind::Update,
            ) => self.release_into(signal),
            (
                CalleeState::AwaitingOffer { .. }
                | CalleeState::Answering { .. }
                | CalleeState::Active { .. },
                SignalKind::Hangup,
            ) => self.end(EndReason::RemoteHangup),
            _ => self.counters.dropped_out_of_place += 1,
        }
    }

    /// The owner sent the answer it built from the released offer: media may start.
    pub fn answer_sent(&mut self) -> bool {
        let CalleeState::Answering { permit, .. } = self.state else { return false };
        self.state = CalleeState::Active { permit };
        self.events.push_back(CallEvent::EnableMedia(permit));
        true
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        match self.state {
            CalleeState::Ringing { deadline_ms } if now_ms >= deadline_ms => self.end(EndReason::Unanswered),
            CalleeState::AwaitingOffer { deadline_ms, .. } | CalleeState::Answering { deadline_ms, .. }
                if now_ms >= deadline_ms =>
            {
                self.events.push_back(CallEvent::Send(SignalKind::Hangup));
                self.end(EndReason::SetupTimeout)
            }
            _ => {}
        }
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            CalleeState::Ringing { deadline_ms }
            | CalleeState::AwaitingOffer { deadline_ms, .. }
            | CalleeState::Answering { deadline_ms, .. } => Some(deadline_ms),
            CalleeState::Active { .. } | CalleeState::Ended(_) => None,
        }
    }

    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    /// True once the user accepted (and until the call ends).
    pub fn locally_accepted(&self) -> bool {
        self.permit().is_some()
    }

    /// True while media may flow.
    pub fn media_enabled(&self) -> bool {
        matches!(self.state, CalleeState::Active { .. })
    }

    pub fn ended(&self) -> Option<EndReason> {
        match self.state {
            CalleeState::Ended(r) => Some(r),
            _ => None,
        }
    }

    fn permit(&self) -> Option<MediaPermit> {
        match self.state {
            CalleeState::AwaitingOffer { permit, .. }
            | CalleeState::Answering { permit, .. }
            | CalleeState::Active { permit } => Some(permit),
            CalleeState::Ringing { .. } | CalleeState::Ended(_) => None,
        }
    }

    fn release_into(&mut self, signal: SealedSignal) {
        self.counters.released += 1;
        self.events.push_back(CallEvent::Released(ReleasedSignal { kind: signal.kind, bytes: signal.bytes }));
    }

    fn end(&mut self, reason: EndReason) {
        if !matches!(self.state, CalleeState::Ended(_)) {
            self.state = CalleeState::Ended(reason);
            self.events.push_back(CallEvent::Ended(reason));
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CallerState {
    /// The offer is sent; waiting for the callee to answer.
    Dialing {
        permit: MediaPermit,
        deadline_ms: u64,
    },
    /// The callee's answer was released; the owner applies it.
    Connecting {
        permit: MediaPermit,
        deadline_ms: u64,
    },
    Active {
        permit: MediaPermit,
    },
    Ended(EndReason),
}

/// The caller's side of one call. Placing the call is the caller's local consent.
#[derive(Debug)]
pub struct CallerCall {
    call: CallId,
    state: CallerState,
    events: VecDeque<CallEvent>,
    counters: SignalCounters,
}

impl CallerCall {
    pub fn dial(call: CallId, now_ms: u64) -> Self {
        let permit = MediaPermit { call };
        let mut events = VecDeque::new();
        events.push_back(CallEvent::FetchRelayCredentials);
        events.push_back(CallEvent::Send(SignalKind::Offer));
        Self {
            call,
            state: CallerState::Dialing { permit, deadline_ms: now_ms.saturating_add(RING_TIMEOUT_MS) },
            events,
            counters: SignalCounters::default(),
        }
    }

    pub fn call(&self) -> CallId {
        self.call
    }

    pub fn counters(&self) -> SignalCounters {
        self.counters
    }

    pub fn handle_signal(&mut self, signal: SealedSignal) {
        match (&self.state, signal.kind) {
            (CallerState::Dialing { permit, .. }, SignalKind::Answer) => {
                let permit = *permit;
                self.release_into(signal);
                self.state = CallerState::Connecting { permit, deadline_ms: u64::MAX };
            }
            (CallerState::Dialing { .. }, SignalKind::Busy | SignalKind::Reject) => {
                self.end(EndReason::Rejected)
            }
            (
                CallerState::Connecting { .. } | CallerState::Active { .. },
                SignalKind::Candidates | SignalKind::Update,
            ) => self.release_into(signal),
            (
                CallerState::Dialing { .. } | CallerState::Connecting { .. } | CallerState::Active { .. },
                SignalKind::Hangup,
            ) => self.end(EndReason::RemoteHangup),
            _ => self.counters.dropped_out_of_place += 1,
        }
    }

    /// The owner applied the released answer: media may start.
    pub fn answer_applied(&mut self) -> bool {
        let CallerState::Connecting { permit, .. } = self.state else { return false };
        self.state = CallerState::Active { permit };
        self.events.push_back(CallEvent::EnableMedia(permit));
        true
    }

    pub fn hang_up(&mut self) {
        if !matches!(self.state, CallerState::Ended(_)) {
            self.events.push_back(CallEvent::Send(SignalKind::Hangup));
            self.end(EndReason::HungUpLocally);
        }
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        if let CallerState::Dialing { deadline_ms, .. } = self.state
            && now_ms >= deadline_ms
        {
            self.events.push_back(CallEvent::Send(SignalKind::Hangup));
            self.end(EndReason::Unanswered);
        }
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            CallerState::Dialing { deadline_ms, .. } => Some(deadline_ms),
            _ => None,
        }
    }

    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    pub fn media_enabled(&self) -> bool {
        matches!(self.state, CallerState::Active { .. })
    }

    pub fn ended(&self) -> Option<EndReason> {
        match self.state {
            CallerState::Ended(r) => Some(r),
            _ => None,
        }
    }

    fn release_into(&mut self, signal: SealedSignal) {
        self.counters.released += 1;
        self.events.push_back(CallEvent::Released(ReleasedSignal { kind: signal.kind, bytes: signal.bytes }));
    }

    fn end(&mut self, reason: EndReason) {
        if !matches!(self.state, CallerState::Ended(_)) {
            self.state = CallerState::Ended(reason);
            self.events.push_back(CallEvent::Ended(reason));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn notice() -> RingNotice {
        RingNotice {
            call: CallId([7; 16]),
            caller: AccountId(1),
            caller_device: DeviceId(2),
            media: MediaKind::Audio,
            sent_at_ms: 1_000,
        }
    }

    fn events(c: &mut CalleeCall) -> Vec<CallEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn ringing() -> CalleeCall {
        let mut c = CalleeCall::on_ring(notice(), RingPolicy::Contacts, true, 0);
        assert_eq!(events(&mut c), vec![CallEvent::Ring(notice())]);
        c
    }

    /// Signal 2019: a "connect" from the caller while ringing must not start media.
    #[test]
    fn connect_while_ringing_starts_nothing() {
        let mut c = ringing();
        c.handle_signal(SealedSignal::new(SignalKind::Connect, b"connect".to_vec()));
        assert!(!c.media_enabled());
        assert!(!c.answer_sent(), "no answer can be sent before an accept");
        assert_eq!(events(&mut c), vec![]);
        assert_eq!(c.counters().dropped_before_accept, 1);
        assert_eq!(c.counters().released, 0);
    }

    /// Messenger 2020: an SDP update while ringing must not start media or be parsed.
    #[test]
    fn session_update_while_ringing_starts_nothing() {
        let mut c = ringing();
        for kind in [SignalKind::Update, SignalKind::Offer, SignalKind::Candidates, SignalKind::Answer] {
            c.handle_signal(SealedSignal::new(kind, vec![0xff; 64]));
        }
        assert!(!c.media_enabled());
        assert!(events(&mut c).is_empty());
        assert_eq!(c.counters(), SignalCounters { dropped_before_accept: 4, ..Default::default() });
    }

    #[test]
    fn strangers_do_not_ring() {
        for (policy, contact) in
            [(RingPolicy::Contacts, false), (RingPolicy::Nobody, true), (RingPolicy::Nobody, false)]
        {
            let mut c = CalleeCall::on_ring(notice(), policy, contact, 0);
            assert_eq!(events(&mut c), vec![CallEvent::Ended(EndReason::NotAllowedToRing)]);
            assert!(!c.accept(1), "a call that never rang cannot be accepted");
            c.handle_signal(SealedSignal::new(SignalKind::Offer, vec![1]));
            assert!(events(&mut c).is_empty());
            assert_eq!(c.counters().released, 0);
        }
        assert!(RingPolicy::Everyone.may_ring(false));
    }

    #[test]
    fn the_offer_is_released_only_after_accept_and_media_only_after_the_answer() {
        let mut c = ringing();
        c.handle_signal(SealedSignal::new(SignalKind::Offer, b"early".to_vec()));
        assert!(c.accept(10));
        assert_eq!(events(&mut c), vec![CallEvent::FetchOffer, CallEvent::FetchRelayCredentials]);
        assert!(!c.media_enabled());
        c.handle_signal(SealedSignal::new(SignalKind::Offer, b"offer".to_vec()));
        let ev = events(&mut c);
        assert_eq!(
            ev,
            vec![CallEvent::Released(ReleasedSignal { kind: SignalKind::Offer, bytes: b"offer".to_vec() })]
        );
        assert!(!c.media_enabled());
        assert!(c.answer_sent());
        let ev = events(&mut c);
        let [CallEvent::EnableMedia(permit)] = ev.as_slice() else { panic!("{ev:?}") };
        assert_eq!(permit.call(), notice().call);
        assert!(c.media_enabled() && c.locally_accepted());
        c.handle_signal(SealedSignal::new(SignalKind::Hangup, vec![]));
        assert_eq!(c.ended(), Some(EndReason::RemoteHangup));
        assert!(!c.media_enabled());
    }

    #[test]
    fn timeouts() {
        let mut c = ringing();
        c.handle_timeout(RING_TIMEOUT_MS - 1);
        assert!(c.ended().is_none());
        c.handle_timeout(RING_TIMEOUT_MS);
        assert_eq!(c.ended(), Some(EndReason::Unanswered));
        let mut c = ringing();
        c.accept(5);
        events(&mut c);
        c.handle_timeout(5 + SETUP_TIMEOUT_MS);
        assert_eq!(
            events(&mut c),
            vec![CallEvent::Send(SignalKind::Hangup), CallEvent::Ended(EndReason::SetupTimeout)]
        );
    }

    #[test]
    fn caller_media_waits_for_the_answer() {
        let mut c = CallerCall::dial(CallId([1; 16]), 0);
        let ev: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
        assert_eq!(ev, vec![CallEvent::FetchRelayCredentials, CallEvent::Send(SignalKind::Offer)]);
        for kind in [SignalKind::Connect, SignalKind::Update, SignalKind::Candidates, SignalKind::Offer] {
            c.handle_signal(SealedSignal::new(kind, vec![9]));
        }
        assert!(!c.media_enabled());
        assert!(!c.answer_applied());
        assert_eq!(c.counters().dropped_out_of_place, 4);
        c.handle_signal(SealedSignal::new(SignalKind::Answer, b"answer".to_vec()));
        assert!(c.answer_applied());
        assert!(c.media_enabled());
        let mut rejected = CallerCall::dial(CallId([2; 16]), 0);
        rejected.handle_signal(SealedSignal::new(SignalKind::Busy, vec![]));
        assert_eq!(rejected.ended(), Some(EndReason::Rejected));
    }

    /// Every sequence of five inputs: media is never enabled without a local accept, nothing is
    /// released before it, and every signal that reaches a ringing callee is dropped unread and
    /// counted. The sequences also reach the states that matter (media on, a signal released,
    /// a ringing call dropping signals), so the invariants are checked where they could break.
    #[test]
    fn exhaustive_short_sequences_keep_the_invariant() {
        #[derive(Clone, Copy, Debug)]
        enum Input {
            Signal(SignalKind),
            Accept,
            Decline,
            AnswerSent,
            Timeout,
            HangUp,
        }
        let mut inputs: Vec<Input> = SignalKind::ALL.iter().map(|k| Input::Signal(*k)).collect();
        inputs.extend([Input::Accept, Input::Decline, Input::AnswerSent, Input::Timeout, Input::HangUp]);
        let n = inputs.len();
        let (mut media_on, mut released_after_accept, mut dropped_while_ringing) = (0u64, 0u64, 0u64);
        for code in 0..n.pow(5) {
            let mut c = ringing();
            let mut accepted = false;
            let mut rest = code;
            for _ in 0..5 {
                let input = inputs[rest % n];
                rest /= n;
                let before = c.counters();
                let was_ringing = matches!(c.state, CalleeState::Ringing { .. });
                match input {
                    Input::Signal(k) => c.handle_signal(SealedSignal::new(k, vec![1, 2, 3])),
                    Input::Accept => accepted |= c.accept(0),
                    Input::Decline => c.decline(),
                    Input::AnswerSent => {
                        c.answer_sent();
                    }
                    Input::Timeout => c.handle_timeout(RING_TIMEOUT_MS),
                    Input::HangUp => c.hang_up(),
                }
                if !accepted {
                    assert_eq!(c.counters().released, before.released, "released before accept: {input:?}");
                }
                if was_ringing && let Input::Signal(_) = input {
                    assert_eq!(
                        c.counters().dropped_before_accept,
                        before.dropped_before_accept + 1,
                        "a signal to a ringing callee is counted as dropped"
                    );
                    dropped_while_ringing += 1;
                }
                while let Some(e) = c.poll_event() {
                    if matches!(e, CallEvent::EnableMedia(_) | CallEvent::Released(_) | CallEvent::FetchOffer)
                    {
                        assert!(accepted, "{e:?} before accept");
                    }
                    if let CallEvent::Released(_) = e {
                        released_after_accept += 1;
                    }
                }
                assert!(!c.media_enabled() || c.locally_accepted());
                if c.media_enabled() {
                    media_on += 1;
                }
            }
        }
        assert!(media_on > 0, "no sequence reached media: the check above never ran where it matters");
        assert!(released_after_accept > 0, "no sequence released a signal");
        assert!(dropped_while_ringing > 0, "no sequence sent a signal to a ringing callee");
    }
}

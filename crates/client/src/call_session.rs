//! One call as a device sees it, with no I/O: the typed call machine of `rampart-core` plus
//! everything the driver must remember and decide around it — who may speak in this call,
//! what the server already knows of it, where the other side may be reached, and how it
//! ended. The driver (`call::driver`) carries out what this says over the connection, the
//! relay and the media tasks; this module has no tokio, no database and no socket, so the
//! rules are tested here directly.

use std::net::IpAddr;

use rampart_core::call::{
    CallEvent, CallId, CalleeCall, CallerCall, EndReason, RingNotice, RingPolicy, SealedSignal,
    SignalCounters, SignalKind,
};
use rampart_core::{AccountId, DeviceId, GroupId};
use rampart_proto::{MediaSession, OPUS_CODEC};

use crate::call_inbox::CallInput;

/// Other calls this one tells its user about, at most (each once).
const MAX_WAITING_TOLD: usize = 64;
/// Relay addresses remembered, at most (a server offers a handful).
const MAX_RELAY_IPS: usize = 16;

/// A step of a call, for the terminal and the chat window (`Display` says it for people).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallProgress {
    Calling {
        peer: String,
    },
    Ringing {
        devices: u32,
    },
    /// The server prices this call in work (proof of work for its anti-abuse policy).
    ProvingWork {
        bits: u8,
    },
    Accepting {
        peer: String,
    },
    /// Media flows.
    Connected {
        peer: String,
        relay: String,
    },
    HangingUp,
    /// Another call rings this device during this one: it is not answered (a device is in one
    /// call at a time) and stays in the log as missed.
    Waiting {
        peer: String,
    },
    Ended {
        outcome: &'static str,
    },
}

/// Why something the other side (or the server) said about the call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallRefusal {
    #[error("the offer belongs to another conversation")]
    OfferForAnotherConversation,
    #[error("a call signal signed by someone else")]
    SignedBySomeoneElse,
    #[error("a call signal whose content does not match its envelope")]
    ContentMismatch,
    #[error("no media session")]
    NoMediaSession,
    #[error("unsupported codec {0:?}")]
    UnsupportedCodec(String),
    #[error("the conversation's keys changed during set-up (different MLS epochs); call again")]
    EpochMismatch,
    #[error("the other side's media address is not on a relay of this server")]
    NotOnOurRelay,
    #[error("the other side's video stream uses its audio stream's SSRC")]
    SharedSsrc,
}

/// A ringing call this device did not take: how the log should record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotTaken {
    pub outcome: &'static str,
    pub why: &'static str,
    pub counters: SignalCounters,
}

#[derive(Debug)]
enum Machine {
    Caller(CallerCall),
    Callee(CalleeCall),
}

/// One call in progress.
#[derive(Debug)]
pub(crate) struct CallSession {
    pub(crate) call: CallId,
    pub(crate) group: GroupId,
    pub(crate) peer: AccountId,
    pub(crate) peer_label: String,
    /// This device, to recognise another of its account's devices taking the call.
    me: (AccountId, DeviceId),
    /// The other side's device: a callee knows its caller's from the ring notice; a caller
    /// learns the callee's from the first signal the peer account sends in this call.
    peer_device: Option<DeviceId>,
    machine: Machine,
    pub(crate) local_ssrc: u32,
    /// Our video stream, when this side does video (a caller that asked for it, a callee whose
    /// caller offered it).
    pub(crate) local_video_ssrc: Option<u32>,
    pub(crate) peer_session: Option<MediaSession>,
    pub(crate) answered_at: Option<u64>,
    failure: Option<String>,
    /// Released signals (after the offer/answer) that did not decrypt or parse.
    unusable_signals: u64,
    /// The server holds this call: the caller's PlaceCall was accepted, or the callee got the
    /// offer. Before that there is nothing to hang up on the server.
    known_to_server: bool,
    /// The relays' addresses: the only places the other side's relayed address may be.
    relay_ips: Vec<IpAddr>,
    /// Calls that rang during this one and were told so, so each is told once.
    waiting_told: Vec<CallId>,
}

impl CallSession {
    /// This device calls `peer` in the 1:1 conversation `group`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dial(
        call: CallId,
        group: GroupId,
        peer: AccountId,
        peer_label: String,
        me: (AccountId, DeviceId),
        local_ssrc: u32,
        local_video_ssrc: Option<u32>,
        now: u64,
    ) -> Self {
        Self::new(
            call,
            group,
            peer,
            peer_label,
            me,
            None,
            Machine::Caller(CallerCall::dial(call, now)),
            local_ssrc,
        )
        .with_video(local_video_ssrc)
    }

    /// The user accepts a ringing call. What arrived for it while it rang (`early`) goes to
    /// the ringing machine first, which drops each signal unread and counts it (a caller's
    /// hang-up ends the ring): fed after the accept instead, a caller's (or a lying server's)
    /// early signals would be released and parsed as if they had come after it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn accept(
        notice: RingNotice,
        policy: RingPolicy,
        caller_is_contact: bool,
        group: GroupId,
        peer_label: String,
        me: (AccountId, DeviceId),
        early: impl IntoIterator<Item = (SignalKind, Vec<u8>, (AccountId, DeviceId))>,
        local_ssrc: u32,
        now: u64,
    ) -> Result<Self, NotTaken> {
        let caller = (notice.caller, notice.caller_device);
        let mut machine = CalleeCall::on_ring(notice, policy, caller_is_contact, now);
        let mut answered_elsewhere = false;
        for (kind, payload, from) in early {
            let my_other_device = from.0 == me.0 && from.1 != me.1;
            if from == caller || (my_other_device && kind == SignalKind::Hangup) {
                answered_elsewhere |= my_other_device && machine.ended().is_none();
                machine.handle_signal(SealedSignal::new(kind, payload));
            }
        }
        if !machine.accept(now) {
            let (outcome, why) = match machine.ended() {
                Some(EndReason::RemoteHangup) if answered_elsewhere => {
                    ("answered elsewhere", "another of your devices took the call")
                }
                Some(EndReason::RemoteHangup) => ("missed", "the caller hung up"),
                _ => ("request", "this call may not ring this device"),
            };
            return Err(NotTaken { outcome, why, counters: machine.counters() });
        }
        let mut session = Self::new(
            notice.call,
            group,
            notice.caller,
            peer_label,
            me,
            Some(notice.caller_device),
            Machine::Callee(machine),
            local_ssrc,
        );
        session.answered_at = Some(now);
        Ok(session)
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        call: CallId,
        group: GroupId,
        peer: AccountId,
        peer_label: String,
        me: (AccountId, DeviceId),
        peer_device: Option<DeviceId>,
        machine: Machine,
        local_ssrc: u32,
    ) -> Self {
        Self {
            call,
            group,
            peer,
            peer_label,
            me,
            peer_device,
            machine,
            local_ssrc,
            local_video_ssrc: None,
            peer_session: None,
            answered_at: None,
            failure: None,
            unusable_signals: 0,
            known_to_server: false,
            relay_ips: Vec::new(),
            waiting_told: Vec::new(),
        }
    }

    fn with_video(mut self, local_video_ssrc: Option<u32>) -> Self {
        self.local_video_ssrc = local_video_ssrc.filter(|v| *v != self.local_ssrc);
        self
    }

    pub(crate) fn is_caller(&self) -> bool {
        matches!(self.machine, Machine::Caller(_))
    }

    /// What the machine asks for next. Once the call has failed or ended, only its ending is
    /// carried out: work queued before (fetching credentials, say) would only bother the server.
    pub(crate) fn poll_event(&mut self) -> Option<CallEvent> {
        loop {
            let event = match &mut self.machine {
                Machine::Caller(m) => m.poll_event(),
                Machine::Callee(m) => m.poll_event(),
            }?;
            let ending = matches!(
                event,
                CallEvent::Ended(_)
                    | CallEvent::Send(SignalKind::Hangup | SignalKind::Reject | SignalKind::Busy)
            );
            if ending || (self.failure.is_none() && self.ended().is_none()) {
                return Some(event);
            }
        }
    }

    /// Something of ours failed: the call ends cleanly, and the other side hears a hang-up.
    /// The first failure is the one reported.
    pub(crate) fn fail(&mut self, why: impl Into<String>) {
        if self.failure.is_none() {
            self.failure = Some(why.into());
        }
        self.hang_up();
    }

    pub(crate) fn hang_up(&mut self) {
        match &mut self.machine {
            Machine::Caller(m) => m.hang_up(),
            Machine::Callee(m) => m.hang_up(),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: u64) {
        match &mut self.machine {
            Machine::Caller(m) => m.handle_timeout(now),
            Machine::Callee(m) => m.handle_timeout(now),
        }
    }

    pub(crate) fn ended(&self) -> Option<EndReason> {
        match &self.machine {
            Machine::Caller(m) => m.ended(),
            Machine::Callee(m) => m.ended(),
        }
    }

    pub(crate) fn counters(&self) -> SignalCounters {
        match &self.machine {
            Machine::Caller(m) => m.counters(),
            Machine::Callee(m) => m.counters(),
        }
    }

    pub(crate) fn unusable_signals(&self) -> u64 {
        self.unusable_signals
    }

    /// A ring notice or call signal taken from the inbox during the call. Only the other
    /// side's device may speak in this call, and in its conversation; another device of this
    /// account may only say, with a hang-up, that it took the call. Another call that may ring
    /// is told to the user once, as waiting; everything else is left alone.
    pub(crate) fn handle_input(&mut self, input: CallInput) -> Option<CallProgress> {
        match input {
            CallInput::Signal { call, kind, group, payload, from }
                if call == self.call && group == self.group =>
            {
                let from_peer = from.0 == self.peer && self.peer_device.is_none_or(|d| d == from.1);
                let answered_elsewhere = from.0 == self.me.0 && from.1 != self.me.1;
                if from_peer || (answered_elsewhere && kind == SignalKind::Hangup) {
                    if from_peer {
                        self.peer_device.get_or_insert(from.1);
                    }
                    let signal = SealedSignal::new(kind, payload.to_vec());
                    match &mut self.machine {
                        Machine::Caller(m) => m.handle_signal(signal),
                        Machine::Callee(m) => m.handle_signal(signal),
                    }
                }
                None
            }
            CallInput::Ring { notice, label, may_ring: true }
                if notice.call != self.call
                    && !self.waiting_told.contains(&notice.call)
                    && self.waiting_told.len() < MAX_WAITING_TOLD =>
            {
                self.waiting_told.push(notice.call);
                Some(CallProgress::Waiting { peer: label })
            }
            _ => None,
        }
    }

    /// The server answered the callee's fetch with the caller's offer, which now goes to the
    /// machine (accepted, so it releases it).
    pub(crate) fn offer_fetched(&mut self, group: &GroupId, offer: Vec<u8>) -> Result<(), CallRefusal> {
        if *group != self.group {
            return Err(CallRefusal::OfferForAnotherConversation);
        }
        self.known_to_server = true;
        if let Machine::Callee(m) = &mut self.machine {
            m.handle_signal(SealedSignal::new(SignalKind::Offer, offer));
        }
        Ok(())
    }

    /// The server took the caller's offer.
    pub(crate) fn placed(&mut self) {
        self.known_to_server = true;
    }

    /// Whether a signal of `kind` goes to the server: a caller whose call was never placed
    /// has nobody to tell that it ended.
    pub(crate) fn tells_server(&self, kind: SignalKind) -> bool {
        let ending = matches!(kind, SignalKind::Hangup | SignalKind::Reject | SignalKind::Busy);
        !(ending && !self.known_to_server && self.is_caller())
    }

    /// A relay of this call resolved to `ip`: the other side may be reached there.
    pub(crate) fn relay_resolved(&mut self, ip: IpAddr) {
        if !self.relay_ips.contains(&ip) && self.relay_ips.len() < MAX_RELAY_IPS {
            self.relay_ips.push(ip);
        }
    }

    /// Our half of the offer or answer.
    pub(crate) fn local_session(&self, relayed: std::net::SocketAddr, epoch: u64) -> MediaSession {
        MediaSession {
            relay_address: relayed,
            ssrc: self.local_ssrc,
            epoch,
            codec: OPUS_CODEC.into(),
            video_ssrc: self.local_video_ssrc,
        }
    }

    /// A released signal, decrypted: it must be signed by the other side's account, checked
    /// before its content is parsed at all.
    pub(crate) fn check_sender(&self, sender: AccountId) -> Result<(), CallRefusal> {
        if sender != self.peer {
            return Err(CallRefusal::SignedBySomeoneElse);
        }
        Ok(())
    }

    /// A released signal, parsed: it must say, inside the encryption, what its envelope said.
    pub(crate) fn check_content(
        &self,
        call: CallId,
        kind: SignalKind,
        released_as: SignalKind,
    ) -> Result<(), CallRefusal> {
        if call != self.call || kind != released_as {
            return Err(CallRefusal::ContentMismatch);
        }
        Ok(())
    }

    /// The other side's offer or answer, checked against this call: our codec, the epoch whose
    /// exporter keys the media, and — relay-only — an address on one of our relays, never one
    /// of its choosing.
    pub(crate) fn check_peer_session(
        &self,
        session: Option<&MediaSession>,
        epoch: u64,
    ) -> Result<(), CallRefusal> {
        let session = session.ok_or(CallRefusal::NoMediaSession)?;
        if session.codec != OPUS_CODEC {
            return Err(CallRefusal::UnsupportedCodec(session.codec.clone()));
        }
        if session.video_ssrc == Some(session.ssrc) {
            return Err(CallRefusal::SharedSsrc);
        }
        if session.epoch != epoch {
            return Err(CallRefusal::EpochMismatch);
        }
        if !self.relay_ips.contains(&session.relay_address.ip()) {
            return Err(CallRefusal::NotOnOurRelay);
        }
        Ok(())
    }

    /// The other side's checked session is in place (the relay permits it). A caller's call
    /// is now answered; a callee must answer, and does video if its caller offered it, with
    /// `video_ssrc` for its own stream. Returns whether an answer is to be sent.
    pub(crate) fn peer_session_applied(&mut self, session: MediaSession, video_ssrc: u32) -> bool {
        let offered_video = session.video_ssrc.is_some();
        self.peer_session = Some(session);
        match &mut self.machine {
            Machine::Caller(m) => {
                m.answer_applied();
                false
            }
            Machine::Callee(_) => {
                if offered_video && video_ssrc != self.local_ssrc {
                    self.local_video_ssrc = Some(video_ssrc);
                }
                true
            }
        }
    }

    /// The callee's answer went out.
    pub(crate) fn answer_sent(&mut self) {
        if let Machine::Callee(m) = &mut self.machine {
            m.answer_sent();
        }
    }

    /// A released signal after the offer and answer did not open or parse: dropped, so a bad
    /// one cannot end a call.
    pub(crate) fn signal_unusable(&mut self) {
        self.unusable_signals = self.unusable_signals.saturating_add(1);
    }

    /// Media started at `now`: the call is answered then if it was not before (a caller's).
    /// Returns whether that is news for the log.
    pub(crate) fn media_started(&mut self, now: u64) -> bool {
        if self.answered_at.is_some() {
            return false;
        }
        self.answered_at = Some(now);
        true
    }

    /// How the call log and report name the end.
    pub(crate) fn outcome(&self) -> &'static str {
        if self.failure.is_some() {
            return "failed";
        }
        reason_outcome(self.ended().unwrap_or(EndReason::HungUpLocally))
    }

    /// The report's detail: the failure, or why it ended.
    pub(crate) fn detail(&self) -> String {
        self.failure
            .clone()
            .unwrap_or_else(|| format!("{:?}", self.ended().unwrap_or(EndReason::HungUpLocally)))
    }
}

pub(crate) fn reason_outcome(reason: EndReason) -> &'static str {
    match reason {
        EndReason::NotAllowedToRing => "request",
        EndReason::Unanswered => "unanswered",
        EndReason::DeclinedLocally => "declined",
        EndReason::RemoteHangup => "ended",
        EndReason::HungUpLocally => "ended",
        EndReason::Rejected => "rejected",
        EndReason::SetupTimeout => "failed",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use rampart_core::call::{MediaKind, RingPolicy};

    const ME: (AccountId, DeviceId) = (AccountId(1), DeviceId(10));
    const MY_OTHER_DEVICE: (AccountId, DeviceId) = (AccountId(1), DeviceId(11));
    const PEER: (AccountId, DeviceId) = (AccountId(2), DeviceId(20));
    const PEER_OTHER_DEVICE: (AccountId, DeviceId) = (AccountId(2), DeviceId(21));
    const STRANGER: (AccountId, DeviceId) = (AccountId(3), DeviceId(30));
    const NOW: u64 = 1_000_000;
    const RELAY: [u8; 4] = [192, 0, 2, 1];

    fn group() -> GroupId {
        GroupId::new(AccountId(1), &mut rand::rng())
    }

    fn notice(call: CallId) -> RingNotice {
        RingNotice { call, caller: PEER.0, caller_device: PEER.1, media: MediaKind::Audio, sent_at_ms: NOW }
    }

    fn accepted(group: &GroupId) -> CallSession {
        CallSession::accept(
            notice(CallId([7; 16])),
            RingPolicy::Contacts,
            true,
            group.clone(),
            "@peer".into(),
            ME,
            [],
            5,
            NOW,
        )
        .unwrap()
    }

    fn drain(session: &mut CallSession) -> Vec<CallEvent> {
        std::iter::from_fn(|| session.poll_event()).collect()
    }

    fn signal(
        session: &CallSession,
        group: &GroupId,
        kind: SignalKind,
        from: (AccountId, DeviceId),
    ) -> CallInput {
        CallInput::Signal {
            call: session.call,
            kind,
            group: group.clone(),
            payload: vec![1, 2, 3].into(),
            from,
        }
    }

    fn seen(session: &CallSession) -> u64 {
        let c = session.counters();
        c.dropped_before_accept + c.dropped_out_of_place + c.released
    }

    fn session_at(ip: [u8; 4], epoch: u64) -> MediaSession {
        MediaSession {
            relay_address: std::net::SocketAddr::from((ip, 50_000)),
            ssrc: 9,
            epoch,
            codec: OPUS_CODEC.into(),
            video_ssrc: None,
        }
    }

    #[test]
    fn only_the_callers_device_speaks_and_only_in_its_conversation() {
        let group = group();
        let mut call = accepted(&group);
        assert!(matches!(
            drain(&mut call).as_slice(),
            [CallEvent::Ring(_), CallEvent::FetchOffer, CallEvent::FetchRelayCredentials]
        ));
        let elsewhere = GroupId::new(AccountId(2), &mut rand::rng());
        let hostile = [
            signal(&call, &group, SignalKind::Hangup, STRANGER),
            signal(&call, &group, SignalKind::Hangup, PEER_OTHER_DEVICE),
            signal(&call, &elsewhere, SignalKind::Hangup, PEER),
            CallInput::Signal {
                call: CallId([8; 16]),
                kind: SignalKind::Hangup,
                group: group.clone(),
                payload: vec![].into(),
                from: PEER,
            },
            // Another of my devices may only say that it took the call.
            signal(&call, &group, SignalKind::Offer, MY_OTHER_DEVICE),
            // This device cannot be its own peer.
            signal(&call, &group, SignalKind::Hangup, ME),
        ];
        for input in hostile {
            assert_eq!(call.handle_input(input), None);
        }
        assert_eq!((seen(&call), call.ended()), (0, None), "none of them reached the machine");
        call.handle_input(signal(&call, &group, SignalKind::Hangup, PEER));
        assert_eq!(call.ended(), Some(EndReason::RemoteHangup));
        assert_eq!(call.outcome(), "ended");
    }

    #[test]
    fn a_hang_up_from_another_of_my_devices_ends_the_call() {
        let group = group();
        let mut call = accepted(&group);
        drain(&mut call);
        call.handle_input(signal(&call, &group, SignalKind::Hangup, MY_OTHER_DEVICE));
        assert_eq!(call.ended(), Some(EndReason::RemoteHangup));
    }

    #[test]
    fn a_caller_holds_to_the_first_device_that_answers() {
        let group = group();
        let mut call =
            CallSession::dial(CallId([1; 16]), group.clone(), PEER.0, "@peer".into(), ME, 5, None, NOW);
        assert_eq!(
            drain(&mut call),
            vec![CallEvent::FetchRelayCredentials, CallEvent::Send(SignalKind::Offer)]
        );
        call.placed();
        call.handle_input(signal(&call, &group, SignalKind::Answer, PEER));
        assert!(matches!(drain(&mut call).as_slice(), [CallEvent::Released(_)]));
        // Another of the callee's devices cannot end (or join) the call now.
        call.handle_input(signal(&call, &group, SignalKind::Hangup, PEER_OTHER_DEVICE));
        assert_eq!(call.ended(), None);
        call.handle_input(signal(&call, &group, SignalKind::Hangup, PEER));
        assert_eq!(call.ended(), Some(EndReason::RemoteHangup));
    }

    #[test]
    fn another_call_is_told_once_as_waiting_and_never_without_end() {
        let group = group();
        let mut call = accepted(&group);
        let ring = |n: u8, may_ring| CallInput::Ring {
            notice: notice(CallId([n; 16])),
            label: format!("@{n}"),
            may_ring,
        };
        assert_eq!(call.handle_input(ring(9, true)), Some(CallProgress::Waiting { peer: "@9".into() }));
        assert_eq!(call.handle_input(ring(9, true)), None, "told once");
        assert_eq!(call.handle_input(ring(10, false)), None, "a stranger's call is a request, not a ring");
        assert_eq!(call.handle_input(ring(7, true)), None, "not this call itself");
        let told = (11..=250).filter(|n| call.handle_input(ring(*n, true)).is_some()).count();
        assert_eq!(told, MAX_WAITING_TOLD - 1, "a flood of calls is told about only so far");
    }

    #[test]
    fn accepting_feeds_what_came_while_ringing_to_the_ringing_machine() {
        let group = group();
        let accept = |early: Vec<(SignalKind, Vec<u8>, (AccountId, DeviceId))>, policy, contact| {
            CallSession::accept(
                notice(CallId([7; 16])),
                policy,
                contact,
                group.clone(),
                "@p".into(),
                ME,
                early,
                5,
                NOW,
            )
        };
        // A caller's early offer (the 2019 attack's shape) is dropped unread, and counted.
        let call =
            accept(vec![(SignalKind::Offer, vec![0xde, 0xad], PEER)], RingPolicy::Contacts, true).unwrap();
        assert_eq!(call.counters().dropped_before_accept, 1);
        assert_eq!(call.counters().released, 0);
        // A stranger's early signals are not even counted against the call.
        let call = accept(vec![(SignalKind::Offer, vec![1], STRANGER)], RingPolicy::Contacts, true).unwrap();
        assert_eq!(seen(&call), 0);
        let missed =
            accept(vec![(SignalKind::Hangup, vec![], PEER)], RingPolicy::Contacts, true).unwrap_err();
        assert_eq!((missed.outcome, missed.why), ("missed", "the caller hung up"));
        let elsewhere =
            accept(vec![(SignalKind::Hangup, vec![], MY_OTHER_DEVICE)], RingPolicy::Contacts, true);
        assert_eq!(elsewhere.unwrap_err().outcome, "answered elsewhere");
        let request = accept(vec![], RingPolicy::Contacts, false).unwrap_err();
        assert_eq!(request.outcome, "request");
        assert_eq!(accept(vec![], RingPolicy::Nobody, true).unwrap_err().outcome, "request");
    }

    #[test]
    fn after_a_failure_only_the_ending_comes_out() {
        let group = group();
        let mut call = CallSession::dial(CallId([1; 16]), group, PEER.0, "@peer".into(), ME, 5, None, NOW);
        call.fail("no relay");
        call.fail("a later failure");
        let events = drain(&mut call);
        assert!(
            events.iter().all(|e| matches!(e, CallEvent::Ended(_) | CallEvent::Send(SignalKind::Hangup))),
            "{events:?}"
        );
        assert_eq!((call.outcome(), call.detail().as_str()), ("failed", "no relay"));
        // Never placed: the server has nothing to hang up.
        assert!(!call.tells_server(SignalKind::Hangup));
        assert!(call.tells_server(SignalKind::Offer));
        call.placed();
        assert!(call.tells_server(SignalKind::Hangup));
    }

    #[test]
    fn the_other_side_is_reached_only_through_our_relay_in_this_epoch() {
        let group = group();
        let mut call = accepted(&group);
        call.relay_resolved(RELAY.into());
        assert_eq!(call.check_peer_session(Some(&session_at(RELAY, 4)), 4), Ok(()));
        assert_eq!(call.check_peer_session(None, 4), Err(CallRefusal::NoMediaSession));
        assert_eq!(
            call.check_peer_session(Some(&session_at([203, 0, 113, 9], 4)), 4),
            Err(CallRefusal::NotOnOurRelay),
            "an address of the peer's choosing would reveal this device's"
        );
        assert_eq!(call.check_peer_session(Some(&session_at(RELAY, 3)), 4), Err(CallRefusal::EpochMismatch));
        let mut other_codec = session_at(RELAY, 4);
        other_codec.codec = "pcmu/8000/1".into();
        assert!(matches!(
            call.check_peer_session(Some(&other_codec), 4),
            Err(CallRefusal::UnsupportedCodec(_))
        ));
        let mut shared = session_at(RELAY, 4);
        shared.video_ssrc = Some(shared.ssrc);
        assert_eq!(call.check_peer_session(Some(&shared), 4), Err(CallRefusal::SharedSsrc));
        for n in 0..100u8 {
            call.relay_resolved([10, 0, 0, n].into());
        }
        assert!(call.relay_ips.len() <= MAX_RELAY_IPS);
    }

    #[test]
    fn an_opened_signal_must_say_what_its_envelope_said() {
        let group = group();
        let call = accepted(&group);
        let id = call.call;
        assert_eq!(call.check_sender(PEER.0), Ok(()));
        assert_eq!(call.check_sender(STRANGER.0), Err(CallRefusal::SignedBySomeoneElse));
        assert_eq!(call.check_content(id, SignalKind::Offer, SignalKind::Offer), Ok(()));
        assert_eq!(
            call.check_content(CallId([0; 16]), SignalKind::Offer, SignalKind::Offer),
            Err(CallRefusal::ContentMismatch)
        );
        assert_eq!(
            call.check_content(id, SignalKind::Hangup, SignalKind::Offer),
            Err(CallRefusal::ContentMismatch)
        );
    }

    #[test]
    fn a_callee_does_video_only_when_its_caller_offers_it() {
        let group = group();
        let mut call = accepted(&group);
        assert!(call.peer_session_applied(session_at(RELAY, 1), 77), "a callee answers");
        assert_eq!(call.local_video_ssrc, None);
        let mut call = accepted(&group);
        let mut with_video = session_at(RELAY, 1);
        with_video.video_ssrc = Some(10);
        call.peer_session_applied(with_video, 77);
        assert_eq!(call.local_video_ssrc, Some(77));
        let mut caller = CallSession::dial(CallId([1; 16]), group, PEER.0, "@p".into(), ME, 5, Some(5), NOW);
        assert_eq!(caller.local_video_ssrc, None, "never the audio stream's SSRC");
        assert!(!caller.peer_session_applied(session_at(RELAY, 1), 77), "a caller does not answer");
    }

    #[test]
    fn a_caller_is_answered_when_media_starts_a_callee_when_it_accepts() {
        let group = group();
        let mut caller =
            CallSession::dial(CallId([1; 16]), group.clone(), PEER.0, "@p".into(), ME, 5, None, NOW);
        assert!(caller.media_started(NOW + 5));
        assert!(!caller.media_started(NOW + 9));
        assert_eq!(caller.answered_at, Some(NOW + 5));
        let mut callee = accepted(&group);
        assert!(!callee.media_started(NOW + 5));
        assert_eq!(callee.answered_at, Some(NOW));
    }
}

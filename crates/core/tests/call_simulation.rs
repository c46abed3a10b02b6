//! Two call machines and a server between them, in simulated time, tested the way str0m tests
//! its `Rtc`: no sockets and no clock, so thousands of calls run in a second, each under a
//! network the seed chooses (delay, reordering, loss, duplication) and, in the hostile runs,
//! a server or stranger that injects signals of every kind at any moment.
//!
//! For every run the rules of the threat model must hold on the callee: nothing is released
//! for decryption and media never starts before the user accepted; media starts only after the
//! offer was released and the answer sent. On the caller, media starts only after an answer
//! was released. Every run ends (the machines' own timeouts and the users' hang-ups), and an
//! honest network with an accepting callee always connects.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::BTreeMap;

use rampart_core::call::{
    CallEvent, CallId, CalleeCall, CallerCall, EndReason, MediaKind, RING_TIMEOUT_MS, RingNotice, RingPolicy,
    SETUP_TIMEOUT_MS, SealedSignal, SignalKind,
};
use rampart_core::ids::{AccountId, DeviceId};

/// SplitMix64: a seeded generator, so a failing seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// How the path between the devices behaves in one run.
#[derive(Debug, Clone, Copy)]
struct Network {
    max_delay_ms: u64,
    loss_percent: u64,
    duplicate_percent: u64,
    /// Signals a hostile party injects towards each side, at random times.
    injected: u64,
}

/// What the callee's user does.
#[derive(Debug, Clone, Copy)]
enum Callee {
    AcceptsAfter(u64),
    DeclinesAfter(u64),
    NeverAnswers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Caller,
    Callee,
}

/// Something due at a simulated time.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Due {
    /// A signal reaches a side (from the other side, or injected: the machines cannot tell).
    Signal(Side, SignalKind, Vec<u8>),
    /// The server delivers the ring notice.
    Ring,
    /// The server answers the callee's FetchOffer with the offer it holds.
    Offer,
    UserAct,
    /// A user hangs up once in the call.
    HangUp(Side),
}

/// What happened on one side, for the checks.
#[derive(Debug, Default)]
struct Seen {
    accepted_at: Option<u64>,
    released: Vec<(u64, SignalKind)>,
    answer_sent_at: Option<u64>,
    media_at: Option<u64>,
    ended: Option<(u64, EndReason)>,
}

struct World {
    now: u64,
    rng: Rng,
    net: Network,
    due: BTreeMap<(u64, u64), Due>,
    serial: u64,
    caller: CallerCall,
    callee: Option<CalleeCall>,
    /// The offer the server holds once the caller placed the call.
    held_offer: Option<Vec<u8>>,
    user: Callee,
    at_caller: Seen,
    at_callee: Seen,
    hang_up_after_media: u64,
}

impl World {
    fn at(&mut self, when: u64, what: Due) {
        self.serial += 1;
        self.due.insert((when, self.serial), what);
    }

    /// A signal sent to `to` over the network: maybe lost, maybe twice, each after its own delay
    /// (so two signals can swap places).
    fn send(&mut self, to: Side, kind: SignalKind) {
        if self.rng.chance(self.net.loss_percent) {
            return;
        }
        let copies = if self.rng.chance(self.net.duplicate_percent) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = self.rng.below(self.net.max_delay_ms + 1);
            self.at(self.now + delay, Due::Signal(to, kind, vec![kind as u8]));
        }
    }

    fn run(mut self) -> (Seen, Seen, CallerCall, Option<CalleeCall>) {
        // The server rings the callee once the caller's PlaceCall reached it.
        let ring_delay = self.rng.below(self.net.max_delay_ms + 1);
        self.at(ring_delay, Due::Ring);
        for _ in 0..self.net.injected {
            let when = self.rng.below(RING_TIMEOUT_MS + SETUP_TIMEOUT_MS);
            let to = if self.rng.chance(50) { Side::Caller } else { Side::Callee };
            let kind = SignalKind::ALL[self.rng.below(SignalKind::ALL.len() as u64) as usize];
            let junk: Vec<u8> = (0..self.rng.below(64)).map(|_| self.rng.next() as u8).collect();
            self.at(when, Due::Signal(to, kind, junk));
        }
        let end = RING_TIMEOUT_MS + 2 * SETUP_TIMEOUT_MS + 10 * self.net.max_delay_ms + 60_000;
        self.drain_events();
        while self.now <= end {
            // The next thing due: a delivery, or a machine's own timeout.
            let next_due = self.due.keys().next().map(|(t, _)| *t);
            let timeouts =
                [self.caller.poll_timeout(), self.callee.as_ref().and_then(CalleeCall::poll_timeout)];
            let next_timeout = timeouts.into_iter().flatten().min();
            let Some(next) = [next_due, next_timeout].into_iter().flatten().min() else { break };
            assert!(next >= self.now, "time went backwards");
            self.now = next;
            self.caller.handle_timeout(self.now);
            if let Some(callee) = &mut self.callee {
                callee.handle_timeout(self.now);
            }
            while let Some(entry) = self.due.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let what = entry.remove();
                self.deliver(what);
                self.drain_events();
            }
            self.drain_events();
        }
        (self.at_caller, self.at_callee, self.caller, self.callee)
    }

    fn deliver(&mut self, what: Due) {
        match what {
            Due::Ring => {
                let notice = RingNotice {
                    call: self.caller.call(),
                    caller: AccountId(1),
                    caller_device: DeviceId(10),
                    media: MediaKind::Audio,
                    sent_at_ms: self.now,
                };
                self.callee = Some(CalleeCall::on_ring(notice, RingPolicy::Contacts, true, self.now));
                let act = match self.user {
                    Callee::AcceptsAfter(ms) | Callee::DeclinesAfter(ms) => Some(ms),
                    Callee::NeverAnswers => None,
                };
                if let Some(ms) = act {
                    self.at(self.now + ms, Due::UserAct);
                }
            }
            Due::UserAct => {
                let Some(callee) = &mut self.callee else { return };
                match self.user {
                    Callee::AcceptsAfter(_) => {
                        if callee.accept(self.now) {
                            self.at_callee.accepted_at = Some(self.now);
                        }
                    }
                    Callee::DeclinesAfter(_) => callee.decline(),
                    Callee::NeverAnswers => {}
                }
            }
            Due::Offer => {
                if let (Some(callee), Some(offer)) = (&mut self.callee, self.held_offer.clone()) {
                    callee.handle_signal(SealedSignal::new(SignalKind::Offer, offer));
                }
            }
            Due::Signal(Side::Caller, kind, bytes) => {
                self.caller.handle_signal(SealedSignal::new(kind, bytes))
            }
            Due::Signal(Side::Callee, kind, bytes) => {
                // Before the ring reaches the callee there is no machine: the device has nothing
                // to give it to, and drops it (as the client does with signals of unknown calls).
                if let Some(callee) = &mut self.callee {
                    callee.handle_signal(SealedSignal::new(kind, bytes));
                }
            }
            Due::HangUp(Side::Caller) => self.caller.hang_up(),
            Due::HangUp(Side::Callee) => {
                if let Some(callee) = &mut self.callee {
                    callee.hang_up();
                }
            }
        }
    }

    /// Carry out what the machines ask for, as the client does.
    fn drain_events(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(event) = self.caller.poll_event() {
                progressed = true;
                let now = self.now;
                match event {
                    CallEvent::Send(SignalKind::Offer) => self.held_offer = Some(b"offer".to_vec()),
                    CallEvent::Send(kind) => self.send(Side::Callee, kind),
                    CallEvent::Released(signal) => {
                        self.at_caller.released.push((now, signal.kind));
                        if signal.kind == SignalKind::Answer {
                            self.caller.answer_applied();
                        }
                    }
                    CallEvent::EnableMedia(permit) => {
                        assert_eq!(permit.call(), self.caller.call());
                        self.at_caller.media_at = Some(now);
                        let after = self.hang_up_after_media;
                        let side = if self.rng.chance(50) { Side::Caller } else { Side::Callee };
                        self.at(now + after, Due::HangUp(side));
                    }
                    CallEvent::Ended(reason) => self.at_caller.ended = Some((now, reason)),
                    CallEvent::FetchRelayCredentials | CallEvent::FetchOffer | CallEvent::Ring(_) => {}
                }
            }
            let events: Vec<CallEvent> = match &mut self.callee {
                Some(callee) => std::iter::from_fn(|| callee.poll_event()).collect(),
                None => Vec::new(),
            };
            if !events.is_empty() {
                progressed = true;
                let mut answer_now = false;
                for event in events {
                    let now = self.now;
                    match event {
                        CallEvent::FetchOffer => {
                            let delay = self.rng.below(self.net.max_delay_ms + 1);
                            self.at(now + delay, Due::Offer);
                        }
                        CallEvent::Released(signal) => {
                            self.at_callee.released.push((now, signal.kind));
                            answer_now |= signal.kind == SignalKind::Offer;
                        }
                        CallEvent::EnableMedia(_) => self.at_callee.media_at = Some(now),
                        CallEvent::Ended(reason) => self.at_callee.ended = Some((now, reason)),
                        CallEvent::Send(kind) => self.send(Side::Caller, kind),
                        CallEvent::Ring(_) | CallEvent::FetchRelayCredentials => {}
                    }
                }
                if answer_now {
                    // The owner built the answer from the released offer: it goes out, then
                    // media may start.
                    if let Some(callee) = &mut self.callee
                        && callee.answer_sent()
                    {
                        self.at_callee.answer_sent_at = Some(self.now);
                        self.send(Side::Caller, SignalKind::Answer);
                    }
                }
            }
            if !progressed {
                break;
            }
        }
    }
}

fn world(seed: u64, net: Network, user: Callee) -> World {
    let mut rng = Rng(seed);
    let call = CallId(rng.next().to_le_bytes().repeat(2).try_into().unwrap());
    let hang_up_after_media = 1_000 + rng.below(30_000);
    World {
        now: 0,
        rng,
        net,
        due: BTreeMap::new(),
        serial: 0,
        caller: CallerCall::dial(call, 0),
        callee: None,
        held_offer: None,
        user,
        at_caller: Seen::default(),
        at_callee: Seen::default(),
        hang_up_after_media,
    }
}

/// The rules every run keeps, whatever the network and whoever injects what.
fn check_rules(seed: u64, caller: &Seen, callee: &Seen) {
    let context = format!("seed {seed}: caller {caller:?}, callee {callee:?}");
    match callee.accepted_at {
        None => {
            assert!(callee.released.is_empty(), "released before any accept: {context}");
            assert_eq!(callee.media_at, None, "media without accept: {context}");
        }
        Some(accepted) => {
            assert!(callee.released.iter().all(|(t, _)| *t >= accepted), "released before accept: {context}");
        }
    }
    if let Some(media) = callee.media_at {
        let offer = callee.released.iter().find(|(_, k)| *k == SignalKind::Offer).map(|(t, _)| *t);
        assert!(offer.is_some_and(|t| t <= media), "callee media without a released offer: {context}");
        assert!(
            callee.answer_sent_at.is_some_and(|t| t <= media),
            "callee media before its answer: {context}"
        );
        assert!(callee.accepted_at.is_some_and(|t| t <= media), "{context}");
    }
    if let Some(media) = caller.media_at {
        let answer = caller.released.iter().find(|(_, k)| *k == SignalKind::Answer).map(|(t, _)| *t);
        assert!(answer.is_some_and(|t| t <= media), "caller media without a released answer: {context}");
    }
    // Only offers, answers, candidates and updates are ever released, and only one offer (one
    // answer) per call: a duplicate or an injected second one is dropped, not handed over.
    for (side, seen, once) in [("callee", callee, SignalKind::Offer), ("caller", caller, SignalKind::Answer)]
    {
        for (_, kind) in &seen.released {
            assert!(
                matches!(
                    kind,
                    SignalKind::Offer | SignalKind::Answer | SignalKind::Candidates | SignalKind::Update
                ),
                "{side} released {kind:?}: {context}"
            );
        }
        let count = seen.released.iter().filter(|(_, k)| *k == once).count();
        assert!(count <= 1, "{side} released {count} of {once:?}: {context}");
        assert!(
            !seen.released.iter().any(|(_, k)| matches!(k, SignalKind::Connect)),
            "Connect released on the {side}: {context}"
        );
    }
}

/// Honest network (delay and reordering, no loss) and a callee who accepts in time: the call
/// connects on both sides, and ends on both once someone hangs up.
#[test]
fn an_honest_network_connects_every_accepted_call() {
    for seed in 0..2_000 {
        let mut rng = Rng(seed ^ 0xA5A5);
        let net =
            Network { max_delay_ms: rng.below(3_000), loss_percent: 0, duplicate_percent: 0, injected: 0 };
        let user = Callee::AcceptsAfter(rng.below(RING_TIMEOUT_MS - 10_000));
        let (caller, callee, caller_machine, callee_machine) = world(seed, net, user).run();
        check_rules(seed, &caller, &callee);
        assert!(callee.media_at.is_some(), "seed {seed} ({net:?}): the callee never connected: {callee:?}");
        assert!(caller.media_at.is_some(), "seed {seed} ({net:?}): the caller never connected: {caller:?}");
        assert!(caller_machine.ended().is_some(), "seed {seed}: the caller is still in the call");
        assert!(
            callee_machine.is_some_and(|m| m.ended().is_some()),
            "seed {seed}: the callee is still in the call"
        );
    }
}

/// Declined or unanswered calls end on both sides, with the reason each side would show.
#[test]
fn declined_and_unanswered_calls_end_on_both_sides() {
    for seed in 0..500 {
        let mut rng = Rng(seed ^ 0x5A5A);
        let net =
            Network { max_delay_ms: rng.below(2_000), loss_percent: 0, duplicate_percent: 0, injected: 0 };
        let declines = seed % 2 == 0;
        let user = if declines { Callee::DeclinesAfter(rng.below(30_000)) } else { Callee::NeverAnswers };
        let (caller, callee, ..) = world(seed, net, user).run();
        check_rules(seed, &caller, &callee);
        let caller_end = caller.ended.map(|(_, r)| r);
        let callee_end = callee.ended.map(|(_, r)| r);
        if declines {
            assert_eq!(callee_end, Some(EndReason::DeclinedLocally), "seed {seed}");
            assert_eq!(caller_end, Some(EndReason::Rejected), "seed {seed}");
        } else {
            // The caller's minute runs from dialing, the callee's from the ring: whichever
            // side's ends first, the callee shows a missed call.
            assert!(
                matches!(callee_end, Some(EndReason::Unanswered | EndReason::RemoteHangup)),
                "seed {seed}: {callee_end:?}"
            );
            assert_eq!(caller_end, Some(EndReason::Unanswered), "seed {seed}");
        }
        assert_eq!((caller.media_at, callee.media_at), (None, None), "seed {seed}");
    }
}

/// A lossy, duplicating network and a hostile party injecting signals of every kind at both
/// sides: the rules hold in every run, and every run ends (each machine is over, or in a call
/// whose media path, not the machine, watches the other side).
#[test]
fn hostile_networks_never_release_early_or_start_media_unasked() {
    let mut connected = 0;
    let mut before_accept_dropped = 0;
    for seed in 0..3_000 {
        let mut rng = Rng(seed ^ 0x0BAD_CA11);
        let net = Network {
            max_delay_ms: rng.below(5_000),
            loss_percent: rng.below(40),
            duplicate_percent: rng.below(40),
            injected: rng.below(50),
        };
        let user = match rng.below(3) {
            0 => Callee::AcceptsAfter(rng.below(RING_TIMEOUT_MS)),
            1 => Callee::DeclinesAfter(rng.below(RING_TIMEOUT_MS)),
            _ => Callee::NeverAnswers,
        };
        let (caller, callee, caller_machine, callee_machine) = world(seed, net, user).run();
        check_rules(seed, &caller, &callee);
        if let Some(machine) = &callee_machine {
            let counters = machine.counters();
            if callee.accepted_at.is_none() {
                assert_eq!(counters.released, 0, "seed {seed}");
            }
            before_accept_dropped += counters.dropped_before_accept;
            // Without an accept, nothing but the ringing remains: the ring times out.
            if callee.accepted_at.is_none() {
                assert!(machine.ended().is_some(), "seed {seed}: still ringing at the end: {callee:?}");
            }
        }
        // A caller never answered ends by its own timeout; one that connected is in a call.
        assert!(
            caller_machine.ended().is_some()
                || caller_machine.media_enabled()
                || caller.released.iter().any(|(_, k)| *k == SignalKind::Answer),
            "seed {seed}: the caller is stuck: {caller:?}"
        );
        connected += u64::from(callee.media_at.is_some() && caller.media_at.is_some());
    }
    // The runs did exercise both ends of the space: calls that connected despite the network,
    // and signals a ringing callee dropped unread.
    assert!(connected > 100, "only {connected} of 3000 hostile runs connected");
    assert!(before_accept_dropped > 1_000, "only {before_accept_dropped} signals arrived before an accept");
}

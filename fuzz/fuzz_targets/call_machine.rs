#![no_main]
//! The call state machines driven by arbitrary event sequences: each input byte is one event
//! (a signal of some kind from the other side, an accept, a decline, a timeout, ...). Whatever
//! the order, media is never enabled without a local accept, and no signal is released for
//! decryption before it.

use libfuzzer_sys::fuzz_target;
use rampart_core::call::{
    CallEvent, CallId, CalleeCall, CallerCall, MediaKind, RingNotice, RingPolicy, SealedSignal,
    SignalKind,
};
use rampart_core::{AccountId, DeviceId};

fuzz_target!(|data: &[u8]| {
    let Some((&setup, events)) = data.split_first() else {
        return;
    };
    let policy = [RingPolicy::Everyone, RingPolicy::Contacts, RingPolicy::Nobody][usize::from(setup % 3)];
    let contact = setup & 4 != 0;
    let notice = RingNotice {
        call: CallId([setup; 16]),
        caller: AccountId(1),
        caller_device: DeviceId(1),
        media: MediaKind::Audio,
        sent_at_ms: 0,
    };
    let mut callee = CalleeCall::on_ring(notice, policy, contact, 0);
    let mut caller = CallerCall::dial(CallId([setup; 16]), 0);
    let mut accepted = false;
    let mut now = 0u64;
    for &b in events {
        now += u64::from(b) * 500;
        let signal = || SealedSignal::new(SignalKind::ALL[usize::from(b % 8)], vec![b; usize::from(b % 7)]);
        match b >> 3 {
            0..=15 => {
                callee.handle_signal(signal());
                caller.handle_signal(signal());
            }
            16..=18 => accepted |= callee.accept(now),
            19 => callee.decline(),
            20..=22 => {
                callee.answer_sent();
                caller.answer_applied();
            }
            23..=25 => {
                callee.handle_timeout(now);
                caller.handle_timeout(now);
            }
            26 => callee.hang_up(),
            27 => caller.hang_up(),
            _ => {}
        }
        while let Some(e) = callee.poll_event() {
            if matches!(e, CallEvent::EnableMedia(_) | CallEvent::Released(_) | CallEvent::FetchOffer) {
                assert!(accepted, "callee: {e:?} before a local accept");
            }
        }
        while caller.poll_event().is_some() {}
        assert!(!callee.media_enabled() || callee.locally_accepted(), "media without accept");
        assert!(accepted || callee.counters().released == 0, "released before accept");
    }
});

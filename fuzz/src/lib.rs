//! What several fuzz targets share.

use rampart_core::call::{CallEvent, CallId, CallerCall, MediaPermit, SealedSignal, SignalKind};

/// A real permit, the only way to get one: dial, take the answer, apply it.
pub fn permit() -> MediaPermit {
    let mut call = CallerCall::dial(CallId([1; 16]), 0);
    call.handle_signal(SealedSignal::new(SignalKind::Answer, Vec::new()));
    call.answer_applied();
    std::iter::from_fn(|| call.poll_event())
        .find_map(|event| match event {
            CallEvent::EnableMedia(permit) => Some(permit),
            _ => None,
        })
        .expect("a dialled and answered call enables media")
}

#![no_main]
//! Everything of a call that crosses the network before media: the caller's requests as the
//! server decodes them (`PlaceCall`, `CallSignal`, `FetchOffer`, `FetchRelayCredentials`), the
//! ring notice and call-signal envelopes as a callee device decodes them, and the offer/answer
//! content (`CallMessage`) a device parses once a call machine released it. None may panic; what
//! decodes must survive encode → decode unchanged, and a ring envelope must stay within its
//! fixed size.

use libfuzzer_sys::fuzz_target;
use rampart_proto::{
    ClientRequest, ContentBody, Envelope, decode_client_frame, decode_content, decode_envelope,
    encode_client_frame, encode_content, encode_envelope,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode_client_frame(data) {
        if matches!(
            frame.request,
            ClientRequest::PlaceCall { .. }
                | ClientRequest::CallSignal { .. }
                | ClientRequest::FetchOffer { .. }
                | ClientRequest::FetchRelayCredentials { .. }
        ) {
            assert_eq!(decode_client_frame(&encode_client_frame(&frame)).ok(), Some(frame));
        }
    }
    if let Ok(envelope) = decode_envelope(data) {
        let again = encode_envelope(&envelope);
        if matches!(envelope, Envelope::Ring(_)) {
            assert!(again.len() <= rampart_core::limits::MAX_RING_ENVELOPE_BYTES);
        }
        assert_eq!(decode_envelope(&again).ok(), Some(envelope));
    }
    if let Ok(content) = decode_content(data)
        && let ContentBody::Call(call) = &content.body
    {
        if let Some(session) = &call.session {
            assert!(session.codec.len() <= 32);
        }
        assert_eq!(decode_content(&encode_content(&content)).ok(), Some(content));
    }
});

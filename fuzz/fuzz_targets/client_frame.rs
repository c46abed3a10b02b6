#![no_main]
//! `decode_client_frame` on arbitrary bytes: it must never panic, and whatever it accepts must
//! survive encode → decode unchanged.

use libfuzzer_sys::fuzz_target;
use rampart_proto::{decode_client_frame, encode_client_frame};

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = decode_client_frame(data) else {
        return;
    };
    let bytes = encode_client_frame(&frame);
    match decode_client_frame(&bytes) {
        Ok(again) => assert_eq!(
            again, frame,
            "client frame changed in an encode/decode round trip"
        ),
        Err(e) => panic!("re-encoded client frame does not decode: {e}; frame: {frame:?}"),
    }
});

#![no_main]
//! `decode_server_frame` on arbitrary bytes: it must never panic, and whatever it accepts must
//! survive encode → decode unchanged.

use libfuzzer_sys::fuzz_target;
use rampart_proto::{decode_server_frame, encode_server_frame};

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = decode_server_frame(data) else {
        return;
    };
    let bytes = encode_server_frame(&frame);
    match decode_server_frame(&bytes) {
        Ok(again) => assert_eq!(
            again, frame,
            "server frame changed in an encode/decode round trip"
        ),
        Err(e) => panic!("re-encoded server frame does not decode: {e}; frame: {frame:?}"),
    }
});

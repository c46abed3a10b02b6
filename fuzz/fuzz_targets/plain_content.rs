#![no_main]
//! `decode_plain_content` on arbitrary bytes: it must never panic, and whatever it accepts must
//! survive encode → decode unchanged.

use libfuzzer_sys::fuzz_target;
use rampart_proto::{decode_plain_content, encode_plain_content};

fuzz_target!(|data: &[u8]| {
    let Ok(content) = decode_plain_content(data) else {
        return;
    };
    let bytes = encode_plain_content(&content);
    match decode_plain_content(&bytes) {
        Ok(again) => assert_eq!(
            again, content,
            "plain content changed in an encode/decode round trip"
        ),
        Err(e) => panic!("re-encoded plain content does not decode: {e}; content: {content:?}"),
    }
});

#![no_main]
//! The relay's SRTP/SRTCP shape check on arbitrary datagrams: it never panics, and whatever it
//! accepts really has a version-2 header and room for the AEAD tag.

use libfuzzer_sys::fuzz_target;
use rampart_turn::media_shape::{AEAD_TAG_BYTES, MediaPacket, check};

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = check(data, 1400) {
        assert!(data.len() <= 1400);
        assert_eq!(data.first().map(|b| b >> 6), Some(2));
        match packet {
            MediaPacket::Srtp { .. } => assert!(data.len() >= 12 + AEAD_TAG_BYTES),
            MediaPacket::Srtcp { .. } => assert!(data.len() >= 8 + 4 + AEAD_TAG_BYTES),
        }
    }
});

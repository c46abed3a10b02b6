#![no_main]
//! H.264 RTP payloads (RFC 6184) as a video receiver reassembles them, then the picture as its
//! decoder gets it. The input is a picture's payloads, each prefixed by a 16-bit big-endian
//! length (the low 11 bits). The depacketizer never panics and keeps within its limits; what
//! it accepts has its SPS checked (`read_sps`, as the receiver does) and goes to the OpenH264
//! decoder, which must return (a picture within the size
//! limits, or an error) rather than crash.

use libfuzzer_sys::fuzz_target;
use rampart_media::video::frame::{MAX_HEIGHT, MAX_WIDTH};
use rampart_media::video::h264::{VideoDecoder, annex_b, nal_type, nal_unit_type};
use rampart_media::video::sps::read_sps;
use rampart_media::video::payload::{Depacketizer, MAX_ACCESS_UNIT_BYTES, MAX_NAL_UNITS_PER_ACCESS_UNIT};

fuzz_target!(|data: &[u8]| {
    let mut depacketizer = Depacketizer::new();
    let mut rest = data;
    let mut failed = false;
    while let [high, low, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*high, *low]) & 0x07ff).min(tail.len());
        let (payload, after) = tail.split_at(len);
        rest = after;
        if depacketizer.push(payload).is_err() {
            failed = true;
            break;
        }
    }
    if failed {
        return;
    }
    let Ok(nal_units) = depacketizer.finish() else { return };
    assert!(nal_units.len() <= MAX_NAL_UNITS_PER_ACCESS_UNIT);
    // As the receiver does: an SPS it would not send is refused before the decoder sees it.
    for nal in nal_units.iter().filter(|n| nal_unit_type(n) == Some(nal_type::SPS)) {
        match read_sps(nal) {
            Ok(size) => assert!(size.width * size.height <= MAX_WIDTH * MAX_HEIGHT),
            Err(_) => return,
        }
    }
    let access_unit = annex_b(&nal_units);
    assert!(access_unit.len() <= MAX_ACCESS_UNIT_BYTES);
    let mut decoder = VideoDecoder::new().expect("a decoder");
    if let Ok(Some(frame)) = decoder.decode(&access_unit) {
        assert!(frame.width().max(frame.height()) <= MAX_WIDTH && frame.width().min(frame.height()) <= MAX_HEIGHT);
    }
});

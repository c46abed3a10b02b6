#![no_main]
//! Camera pictures as a V4L2 driver hands them over: a size, a row stride and the bytes.
//! `VideoFrame::from_yuyv` never panics, and a frame it makes has the asked size.

use libfuzzer_sys::fuzz_target;
use rampart_media::video::VideoFrame;

fuzz_target!(|data: &[u8]| {
    let [w, h, s, rest @ ..] = data else { return };
    // Sizes up to 512x512, strides around the row length (shorter ones must be refused).
    let (width, height) = (usize::from(*w) * 2, usize::from(*h) * 2);
    let stride = (width * 2).saturating_add(usize::from(*s)).saturating_sub(8);
    if let Ok(frame) = VideoFrame::from_yuyv(width, height, stride, rest) {
        assert_eq!((frame.width(), frame.height()), (width, height));
    }
});

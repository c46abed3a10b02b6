#![no_main]
//! RTCP feedback as a video sender reads it (receiver reports, NACK, PLI, REMB): the parser
//! never panics, keeps within its limits, and what it accepts survives build → parse
//! unchanged.

use libfuzzer_sys::fuzz_target;
use rampart_media::video::feedback::{Feedback, MAX_NACKED, build_compound, parse_compound};

fuzz_target!(|data: &[u8]| {
    let Ok(items) = parse_compound(data) else { return };
    let nacked: usize = items
        .iter()
        .map(|item| match item {
            Feedback::Nack { lost, .. } => lost.len(),
            _ => 0,
        })
        .sum();
    assert!(nacked <= MAX_NACKED);
    // Rebuilt, a report keeps at most 31 blocks and a NACK at most 64 entries: inputs beyond
    // those only round-trip after one rebuild.
    let once = parse_compound(&build_compound(&items)).expect("what was built parses");
    let twice = parse_compound(&build_compound(&once)).expect("what was built parses");
    assert_eq!(once, twice);
});

#![no_main]
//! The receiving end of a call's video under a fixed key, on whatever an accepted peer could
//! send: the input is cut into packets (sequence number, timestamp step, marker, time step,
//! payload length, payload), each protected under the stream's key, so they authenticate and
//! reach the reordering, NACK, give-up and reassembly logic, and the decoder. Feedback and
//! pictures are polled in between. Nothing panics, and every datagram is counted once.

use libfuzzer_sys::fuzz_target;
use rampart_fuzz::permit;
use rampart_media::video::{H264_PAYLOAD_TYPE, VideoReceiver};
use rampart_media::{SrtpContext, SrtpKeys};

fuzz_target!(|data: &[u8]| {
    let keys = SrtpKeys { master_key: [0x42; 32], master_salt: [0x24; 12] };
    let back = SrtpKeys { master_key: [0x43; 32], master_salt: [0x25; 12] };
    let mut receiver = VideoReceiver::new(permit(), &keys, &back, 2, 1).expect("a receiver");
    let (mut rest, mut now, mut timestamp, mut fed) = (data, 0u64, 0u32, 0u64);
    while let [seq_high, seq_low, ts_step, flags, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, after) = tail.split_at(len);
        rest = after;
        timestamp = timestamp.wrapping_add(u32::from(*ts_step) * 1_500);
        now += u64::from(flags & 0x3f) * 5;
        let mut rtp = vec![0x80, (flags & 0x80) | H264_PAYLOAD_TYPE, *seq_high, *seq_low];
        rtp.extend_from_slice(&timestamp.to_be_bytes());
        rtp.extend_from_slice(&1u32.to_be_bytes());
        rtp.extend_from_slice(payload);
        // A fresh context per packet: any sequence number can be protected.
        let datagram = if flags & 0x40 == 0 {
            SrtpContext::new(&keys, 1).protect(&rtp).unwrap_or(rtp)
        } else {
            rtp
        };
        let _ = receiver.handle_datagram(&datagram, now);
        fed += 1;
        let _ = receiver.poll_rtcp(now);
        while receiver.poll_picture().is_some() {}
    }
    let stats = receiver.stats();
    assert_eq!(stats.packets_received + stats.packets_rejected, fed);
});

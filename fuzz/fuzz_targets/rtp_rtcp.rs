#![no_main]
//! The receiving end of a call on arbitrary datagrams: RTP header parsing and the RTP/RTCP
//! demultiplexer on the whole input, then the input split into datagrams fed to
//! `AudioReceiver::handle_datagram` under a fixed key (each prefixed by a 16-bit big-endian
//! word: the low 11 bits its length, the top 5 how many 5 ms steps pass after it), with
//! frames polled in between (jitter buffer, Opus decoding and concealment). Nothing panics,
//! every datagram is counted exactly once, and the jitter buffer stays within its capacity.

use libfuzzer_sys::fuzz_target;
use rampart_fuzz::permit;
use rampart_media::pipeline::{DatagramKind, DatagramOutcome, classify};
use rampart_media::{AudioReceiver, RtpHeader, SrtpKeys};

/// The same key as the `srtp` target's; seeds are protected under it.
fn keys() -> SrtpKeys {
    SrtpKeys { master_key: [0x42; 32], master_salt: [0x24; 12] }
}

fuzz_target!(|data: &[u8]| {
    let kind = classify(data);
    if kind != DatagramKind::Other {
        assert!(data.len() >= 2 && data[0] >> 6 == 2);
    }
    if let Ok(header) = RtpHeader::parse(data) {
        assert!(header.header_len >= 12 && header.header_len <= data.len());
    }

    let mut receiver = AudioReceiver::new(permit(), keys()).expect("receiver");
    let capacity = rampart_media::JitterConfig::default().capacity;
    let mut now = 0u64;
    let mut handled = 0u64;
    let mut audio = 0u64;
    let mut rest = data;
    while let [high, low, tail @ ..] = rest {
        let word = u16::from_be_bytes([*high, *low]);
        let len = usize::from(word & 0x07ff).min(tail.len());
        let (datagram, after) = tail.split_at(len);
        let outcome = receiver.handle_datagram(datagram, now);
        handled += 1;
        if outcome == DatagramOutcome::Audio {
            audio += 1;
            assert_eq!(classify(datagram), DatagramKind::Rtp);
        }
        assert!(receiver.buffered_frames() <= capacity);
        now += u64::from(word >> 11) * 5;
        while let Some(frame) = receiver.poll_frame(now) {
            assert_eq!(frame.len(), 960);
        }
        rest = after;
    }
    // Play out what is left.
    for _ in 0..30 {
        now += 20;
        while receiver.poll_frame(now).is_some() {}
    }
    let stats = receiver.stats();
    assert_eq!(stats.packets_received + stats.rtcp_received + stats.packets_rejected, handled);
    assert_eq!(stats.packets_received, audio);
    assert_eq!(
        stats.packets_rejected,
        stats.rejected_malformed + stats.rejected_unauthenticated + stats.rejected_replayed
    );
    assert!(stats.frames_from_fec <= stats.frames_concealed);
});

#![no_main]
//! The jitter buffer under arbitrary pushes and pops: each 4-byte group is one operation (push
//! an absolute or a nearby sequence number, let time pass and drain, pop once). It never
//! panics, never holds more than its capacity, keeps its delay within bounds, and accounts for
//! every packet it accepted: played, discarded or still held.

use libfuzzer_sys::fuzz_target;
use rampart_media::jitter::{JitterBuffer, JitterConfig, PushOutcome};

fuzz_target!(|data: &[u8]| {
    let Some((&setup, ops)) = data.split_first() else {
        return;
    };
    // A few configurations, the default among them; odd ones get sanitised.
    let config = match setup % 4 {
        0 => JitterConfig::default(),
        1 => JitterConfig { capacity: 1, initial_delay_ms: 0, min_delay_ms: 0, ..JitterConfig::default() },
        2 => JitterConfig { frame_ms: 0, max_delay_ms: 1, ..JitterConfig::default() },
        _ => JitterConfig { initial_delay_ms: 500, max_delay_ms: 400, capacity: 8, ..JitterConfig::default() },
    };
    let mut buffer = JitterBuffer::new(config);
    let config = buffer.config();
    let mut now = u64::from(setup >> 2) * 1000;
    let mut last_seq = 0u16;
    let mut accepted = 0u64;
    for op in ops.chunks_exact(4) {
        let [kind, a, b, c] = [op[0], op[1], op[2], op[3]];
        match kind % 4 {
            0 | 1 => {
                let seq = if kind % 4 == 0 {
                    u16::from_be_bytes([a, b])
                } else {
                    last_seq.wrapping_add_signed(i16::from(a as i8))
                };
                last_seq = seq;
                let timestamp = u32::from(seq).wrapping_mul(960).wrapping_add(u32::from(b) << 4);
                let payload = vec![c; usize::from(c % 16)];
                if buffer.push(seq, timestamp, &payload, now) == PushOutcome::Buffered {
                    accepted += 1;
                }
                now += u64::from(kind >> 2);
            }
            2 => {
                now += u64::from(u16::from_be_bytes([a, b]));
                let mut pops = 0;
                while buffer.pop(now).is_some() {
                    pops += 1;
                    assert!(pops < 1000, "pop keeps giving at one instant");
                }
            }
            _ => {
                now += u64::from(a);
                buffer.pop(now);
            }
        }
        assert!(buffer.len() <= config.capacity);
        let target = buffer.target_delay_ms();
        assert!(target >= config.min_delay_ms && target <= config.max_delay_ms);
        let stats = buffer.stats();
        assert_eq!(stats.played + stats.discarded + buffer.len() as u64, accepted);
        assert_eq!(stats.received - stats.late - stats.duplicate, accepted);
    }
});

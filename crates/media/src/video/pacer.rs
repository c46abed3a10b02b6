//! Spreads a video sender's packets out in time. A keyframe is many times a normal picture's
//! size; sent as one burst it fills a narrow link's queue and the link drops its tail, which
//! costs the very keyframe that was meant to repair the stream. The pacer lets packets out at
//! a multiple of the encoder's rate ([`PACING_FACTOR`], as WebRTC's pacer does), with a
//! little burst allowance so an ordinary picture still leaves at once. Retransmissions go to
//! the head of the queue. Sans-IO: the caller asks when the next packet is due and polls.

use std::collections::VecDeque;

/// Packets leave at this multiple of the encoder's bitrate.
pub const PACING_FACTOR: f64 = 2.5;
/// Sending may run this far ahead of the pace (an ordinary picture fits).
const BURST_US: u64 = 40_000;
/// A queue longer than this (at the pacing rate) is stale: it is dropped and the caller asks
/// its encoder for a keyframe.
pub const MAX_QUEUE_MS: u64 = 600;

#[derive(Debug, Clone, Default)]
pub struct Pacer {
    queue: VecDeque<Vec<u8>>,
    queued_bytes: usize,
    rate_bps: u64,
    /// When the next packet may leave, in µs of the caller's clock.
    next_us: u64,
    /// Packets dropped because the queue grew stale.
    pub dropped: u64,
}

impl Pacer {
    /// A pacer for an encoder running at `encoder_bps`.
    pub fn new(encoder_bps: u32) -> Self {
        let mut pacer = Self::default();
        pacer.set_encoder_rate(encoder_bps);
        pacer
    }

    pub fn set_encoder_rate(&mut self, encoder_bps: u32) {
        self.rate_bps = ((f64::from(encoder_bps) * PACING_FACTOR) as u64).max(64_000);
    }

    /// How long the queue takes to drain at the pacing rate, in ms.
    pub fn queued_ms(&self) -> u64 {
        self.queued_bytes as u64 * 8 * 1_000 / self.rate_bps.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues a picture's packets. Returns `false` when the queue had grown stale and was
    /// dropped first: the caller should ask for a keyframe, since what follows no longer has
    /// its references.
    pub fn push(&mut self, datagrams: Vec<Vec<u8>>) -> bool {
        let fresh = self.queued_ms() <= MAX_QUEUE_MS;
        if !fresh {
            self.dropped += self.queue.len() as u64;
            self.queue.clear();
            self.queued_bytes = 0;
        }
        for datagram in datagrams {
            self.queued_bytes += datagram.len();
            self.queue.push_back(datagram);
        }
        fresh
    }

    /// Queues retransmissions ahead of everything else: the receiver is waiting for them.
    pub fn push_urgent(&mut self, datagrams: Vec<Vec<u8>>) {
        for datagram in datagrams.into_iter().rev() {
            self.queued_bytes += datagram.len();
            self.queue.push_front(datagram);
        }
    }

    /// When the next packet may leave (`None`: nothing queued).
    pub fn next_ms(&self) -> Option<u64> {
        (!self.queue.is_empty()).then(|| self.next_us.div_ceil(1_000))
    }

    /// The next packet, if one is due at `now_ms`.
    pub fn poll(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        let now_us = now_ms * 1_000;
        if self.next_us > now_us {
            return None;
        }
        let datagram = self.queue.pop_front()?;
        self.queued_bytes -= datagram.len();
        let cost_us = datagram.len() as u64 * 8 * 1_000_000 / self.rate_bps.max(1);
        self.next_us = self.next_us.max(now_us.saturating_sub(BURST_US)) + cost_us;
        Some(datagram)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn drain(pacer: &mut Pacer, now_ms: u64) -> usize {
        std::iter::from_fn(|| pacer.poll(now_ms)).count()
    }

    #[test]
    fn a_burst_is_spread_out_and_a_small_picture_is_not() {
        // 400 kbit/s: packets leave at 1 Mbit/s, with 40 ms of allowance.
        let mut pacer = Pacer::new(400_000);
        pacer.push(vec![vec![0; 1_000]; 3]);
        assert_eq!(drain(&mut pacer, 1_000), 3, "a small picture leaves at once");
        // A 60-packet keyframe (60 kB): 480 ms at 1 Mbit/s.
        pacer.push(vec![vec![0; 1_000]; 60]);
        let now = 2_000;
        let first = drain(&mut pacer, now);
        assert!((4..=7).contains(&first), "{first} at once");
        let mut sent = first;
        let mut at = now;
        while let Some(due) = pacer.next_ms() {
            at = due;
            sent += drain(&mut pacer, at);
        }
        assert_eq!(sent, 60);
        assert!((420..=500).contains(&(at - now)), "drained after {} ms", at - now);
    }

    #[test]
    fn retransmissions_jump_the_queue_and_a_stale_queue_is_dropped() {
        let mut pacer = Pacer::new(100_000);
        pacer.push(vec![vec![1; 1_000]; 10]);
        pacer.push_urgent(vec![vec![9; 500]]);
        assert_eq!(pacer.poll(0).unwrap()[0], 9);
        // 250 kbit/s of pacing: 80 kB is over two seconds of queue.
        assert!(pacer.push(vec![vec![2; 1_000]; 80]));
        assert!(!pacer.push(vec![vec![3; 1_000]]), "stale: dropped");
        assert_eq!(pacer.dropped, 90);
        assert_eq!(pacer.poll(10_000).unwrap()[0], 3);
        assert!(pacer.is_empty());
    }
}

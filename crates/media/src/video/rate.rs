//! Bandwidth estimation and the sender's bitrate, after Google Congestion Control
//! (draft-ietf-rmcat-gcc-02) in its receiver-side form:
//!
//! - **Delay-based, at the receiver** ([`DelayEstimator`]): a link that is full queues before it
//!   drops, so the one-way delay of packets (arrival time minus RTP timestamp) climbs above its
//!   floor. Above [`OVERUSE_MS`] of queueing the estimate drops to 85% of what actually
//!   arrives; under [`UNDERUSE_MS`] it grows by 8% a report, never past 1.5 times what arrives.
//!   It goes to the sender as REMB.
//! - **Loss-based, at the sender** ([`RateController`]): above 10% loss the rate drops by half
//!   the loss. Under it the rate grows: unlike GCC's 2% threshold this tolerates the random
//!   loss of a bad radio link, which NACKs repair, and leaves congestion to the delay signal.
//!
//! The sender uses the lower of the two. The encoder cannot change its bitrate in place (the
//! binding offers no safe way), so the encoder is rebuilt in steps: only when the estimate is
//! 20% away from its rate, and not more often than [`MIN_DOWN_INTERVAL_MS`] (down) or
//! [`MIN_UP_INTERVAL_MS`] (up), because each step costs a keyframe.

use std::collections::VecDeque;

pub const MIN_DOWN_INTERVAL_MS: u64 = 500;
pub const MIN_UP_INTERVAL_MS: u64 = 4_000;
/// How far the estimate must be from the encoder's rate before the encoder is rebuilt.
const STEP_RATIO: f64 = 0.2;
/// Queueing delay (over the floor) that means the path is full, and that means it is not.
pub const OVERUSE_MS: f64 = 60.0;
pub const UNDERUSE_MS: f64 = 25.0;
/// How long the delay floor and the arrival rate are measured over.
const FLOOR_WINDOW_MS: u64 = 10_000;
const RATE_WINDOW_MS: u64 = 1_000;
/// Samples kept in either window, whatever the sender does.
const MAX_SAMPLES: usize = 4_096;

#[derive(Debug, Clone)]
pub struct RateController {
    loss_bps: f64,
    remb_bps: Option<f64>,
    min_bps: u32,
    max_bps: u32,
    encoder_bps: u32,
    last_step_ms: u64,
}

impl RateController {
    pub fn new(start_bps: u32, min_bps: u32, max_bps: u32) -> Self {
        let start = start_bps.clamp(min_bps, max_bps);
        Self {
            loss_bps: f64::from(start),
            remb_bps: None,
            min_bps,
            max_bps,
            encoder_bps: start,
            last_step_ms: 0,
        }
    }

    /// The lower of the loss-based and the receiver's delay-based estimates.
    pub fn estimate_bps(&self) -> u32 {
        let estimate = self.remb_bps.map_or(self.loss_bps, |remb| remb.min(self.loss_bps));
        estimate.clamp(f64::from(self.min_bps), f64::from(self.max_bps)) as u32
    }

    pub fn encoder_bps(&self) -> u32 {
        self.encoder_bps
    }

    /// A receiver report's loss fraction (in 1/256) for this sender.
    pub fn on_report(&mut self, fraction_lost: u8) {
        let loss = f64::from(fraction_lost) / 256.0;
        if loss > 0.10 {
            self.loss_bps *= 1.0 - 0.5 * loss;
        } else {
            self.loss_bps *= 1.08;
        }
        self.loss_bps = self.loss_bps.clamp(f64::from(self.min_bps), f64::from(self.max_bps));
    }

    /// The receiver's delay-based estimate (REMB).
    pub fn on_remb(&mut self, bitrate_bps: u64) {
        self.remb_bps = Some(bitrate_bps as f64);
    }

    /// A new encoder bitrate when the estimate has moved far enough from the current one, and
    /// the last step was long enough ago.
    pub fn poll_encoder_rate(&mut self, now_ms: u64) -> Option<u32> {
        let estimate = self.estimate_bps();
        let (current, target) = (f64::from(self.encoder_bps), f64::from(estimate));
        let since = now_ms.saturating_sub(self.last_step_ms);
        let down = target < current * (1.0 - STEP_RATIO) && since >= MIN_DOWN_INTERVAL_MS;
        let up = target > current * (1.0 + STEP_RATIO) && since >= MIN_UP_INTERVAL_MS;
        if !(down || up) {
            return None;
        }
        self.encoder_bps = estimate;
        self.last_step_ms = now_ms;
        Some(estimate)
    }
}

/// The receiver's delay-based estimate.
#[derive(Debug, Clone, Default)]
pub struct DelayEstimator {
    last_timestamp: Option<(u32, i64)>,
    /// One-way delay samples (ms, offset by the unknown clock difference) for the floor.
    floor: VecDeque<(u64, f64)>,
    smoothed_ms: Option<f64>,
    arrivals: VecDeque<(u64, usize)>,
    estimate_bps: Option<f64>,
}

impl DelayEstimator {
    pub fn new() -> Self {
        Self::default()
    }

    /// A packet of `bytes` with RTP timestamp `timestamp` (90 kHz) arrived at `now_ms`.
    pub fn on_packet(&mut self, timestamp: u32, bytes: usize, now_ms: u64) {
        // Unwrap the timestamp against the previous one (a picture's packets share one).
        let unwrapped = match self.last_timestamp {
            Some((last, last_unwrapped)) => {
                last_unwrapped.saturating_add(i64::from(timestamp.wrapping_sub(last) as i32))
            }
            None => 0,
        };
        self.last_timestamp = Some((timestamp, unwrapped));
        let delay = now_ms as f64 - unwrapped as f64 / 90.0;
        while self.floor.front().is_some_and(|(at, _)| now_ms.saturating_sub(*at) > FLOOR_WINDOW_MS) {
            self.floor.pop_front();
        }
        // Keep the floor candidates only: a sample above a later one can never be the minimum.
        while self.floor.back().is_some_and(|(_, d)| *d >= delay) {
            self.floor.pop_back();
        }
        if self.floor.len() >= MAX_SAMPLES {
            self.floor.pop_front();
        }
        self.floor.push_back((now_ms, delay));
        self.smoothed_ms = Some(self.smoothed_ms.map_or(delay, |s| 0.9 * s + 0.1 * delay));
        while self.arrivals.front().is_some_and(|(at, _)| now_ms.saturating_sub(*at) > RATE_WINDOW_MS) {
            self.arrivals.pop_front();
        }
        if self.arrivals.len() >= MAX_SAMPLES {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back((now_ms, bytes));
    }

    /// Queueing delay over the floor, in ms.
    pub fn queueing_ms(&self) -> Option<f64> {
        let floor = self.floor.front()?.1;
        Some(self.smoothed_ms? - floor)
    }

    /// Bits per second that arrived over the last second.
    pub fn incoming_bps(&self) -> f64 {
        self.arrivals.iter().map(|(_, b)| *b as f64 * 8.0).sum::<f64>() * 1_000.0 / RATE_WINDOW_MS as f64
    }

    /// Updates and returns the estimate; called once per receiver report.
    pub fn update(&mut self) -> Option<u64> {
        let queueing = self.queueing_ms()?;
        let incoming = self.incoming_bps();
        let previous = self.estimate_bps.unwrap_or(incoming);
        let estimate = if queueing > OVERUSE_MS {
            0.85 * incoming
        } else if queueing < UNDERUSE_MS {
            (previous * 1.08).min(1.5 * incoming + 50_000.0)
        } else {
            previous
        };
        self.estimate_bps = Some(estimate);
        Some(estimate as u64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn heavy_loss_lowers_and_light_loss_raises() {
        let mut rate = RateController::new(1_000_000, 100_000, 2_000_000);
        assert_eq!(rate.poll_encoder_rate(0), None);
        for _ in 0..3 {
            rate.on_report(64); // 25% loss
        }
        assert!(rate.estimate_bps() < 700_000, "{}", rate.estimate_bps());
        assert_eq!(rate.poll_encoder_rate(300), None, "too soon after the start");
        let lowered = rate.poll_encoder_rate(500).unwrap();
        assert!(lowered < 700_000);
        for _ in 0..20 {
            rate.on_report(13); // 5%: repaired by NACKs, not a reason to slow down
        }
        assert_eq!(rate.poll_encoder_rate(2_000), None, "raising waits longer");
        assert!(rate.poll_encoder_rate(5_000).unwrap() > lowered);
        for _ in 0..200 {
            rate.on_report(255);
        }
        assert_eq!(rate.estimate_bps(), 100_000, "never below the floor");
    }

    #[test]
    fn the_receivers_estimate_caps_the_rate() {
        let mut rate = RateController::new(1_000_000, 100_000, 2_000_000);
        rate.on_remb(300_000);
        assert_eq!(rate.estimate_bps(), 300_000);
        assert_eq!(rate.poll_encoder_rate(1_000), Some(300_000));
    }

    #[test]
    fn a_growing_queue_is_overuse() {
        let mut delay = DelayEstimator::new();
        // 30 pictures a second of 3 kB; the path adds nothing at first, then 10 ms more per
        // picture (a queue filling).
        let mut now = 0;
        for i in 0..60u32 {
            now = u64::from(i) * 33;
            delay.on_packet(i * 3_000, 3_000, now + 20);
        }
        let steady = delay.update().unwrap();
        assert!(delay.queueing_ms().unwrap() < 5.0);
        assert!(steady as f64 >= delay.incoming_bps() * 0.99, "no overuse: {steady}");
        for i in 60..90u32 {
            now = u64::from(i) * 33;
            delay.on_packet(i * 3_000, 3_000, now + 20 + u64::from(i - 60) * 10);
        }
        let congested = delay.update().unwrap();
        assert!(delay.queueing_ms().unwrap() > OVERUSE_MS, "{:?}", delay.queueing_ms());
        assert!((congested as f64) < delay.incoming_bps(), "{congested}");
        let _ = now;
    }
}

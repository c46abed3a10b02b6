//! What the console's charts draw: per-minute counts of what this node saw over the last hour.
//! Kept in memory per node (the overview says so); actions over time come from the store.

use std::sync::Mutex;

use rampart_sentinel::Observation;

/// Minutes kept.
pub const MINUTES: usize = 60;

/// The series, in the order [`Activity::series`] returns them.
pub const SERIES: [&str; 4] = ["calls placed", "calls answered", "refused set-ups", "sign-ins"];

#[derive(Debug, Default)]
pub struct Activity {
    inner: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    /// The minute (Unix time / 60 s) of the newest bucket.
    newest: u64,
    counts: Vec<[u64; SERIES.len()]>,
}

impl Ring {
    fn advance(&mut self, minute: u64) {
        if self.counts.is_empty() {
            self.counts = vec![[0; SERIES.len()]; MINUTES];
            self.newest = minute;
        }
        if minute <= self.newest {
            return;
        }
        let steps = (minute - self.newest).min(MINUTES as u64);
        for step in 1..=steps {
            let slot = ((self.newest + step) % MINUTES as u64) as usize;
            if let Some(bucket) = self.counts.get_mut(slot) {
                *bucket = [0; SERIES.len()];
            }
        }
        self.newest = minute;
    }
}

impl Activity {
    /// Count what an observation shows, at `now_ms`.
    pub fn note(&self, observation: &Observation, now_ms: u64) {
        let series = match observation {
            Observation::CallPlaced { .. } => 0,
            Observation::CallAnswered { .. } => 1,
            Observation::Misfit { .. } => 2,
            Observation::Connected { .. } => 3,
            _ => return,
        };
        let minute = now_ms / 60_000;
        let mut ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        ring.advance(minute);
        // A late observation from an earlier minute still in the ring counts there.
        if minute + (MINUTES as u64) > ring.newest {
            let slot = (minute % MINUTES as u64) as usize;
            if let Some(count) = ring.counts.get_mut(slot).and_then(|bucket| bucket.get_mut(series)) {
                *count += 1;
            }
        }
    }

    /// Each series' counts for the last [`MINUTES`] minutes ending at `now_ms`, oldest first.
    pub fn series(&self, now_ms: u64) -> Vec<Vec<u64>> {
        let minute = now_ms / 60_000;
        let mut ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        ring.advance(minute);
        let newest = ring.newest;
        (0..SERIES.len())
            .map(|s| {
                (0..MINUTES as u64)
                    .rev()
                    .map(|back| {
                        let m = newest.saturating_sub(back);
                        ring.counts
                            .get((m % MINUTES as u64) as usize)
                            .and_then(|b| b.get(s).copied())
                            .unwrap_or(0)
                    })
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn counts_land_in_their_minute_and_age_out() {
        let a = Activity::default();
        let placed = Observation::CallPlaced { caller: 1, callee: 2 };
        let t0 = 1_000 * 60_000;
        a.note(&placed, t0);
        a.note(&placed, t0 + 1_000);
        a.note(&Observation::Misfit { account: 1 }, t0 + 61_000);
        let s = a.series(t0 + 61_000);
        assert_eq!(s[0].len(), MINUTES);
        assert_eq!(s[0][MINUTES - 2], 2);
        assert_eq!(s[2][MINUTES - 1], 1);
        assert_eq!(s[0].iter().sum::<u64>(), 2);
        // An hour later it is gone.
        let later = a.series(t0 + 61 * 60_000);
        assert!(later.iter().all(|series| series.iter().all(|&c| c == 0)));
    }
}

//! Tables of token buckets keyed by device, phone tag or source address.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

use rampart_core::{RetryAfter, TokenBucket};

use crate::config::Bucket;

/// One rate limit, applied per key.
#[derive(Debug)]
pub struct Limiter<K> {
    pub name: &'static str,
    bucket: Bucket,
    table: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(name: &'static str, bucket: Bucket) -> Self {
        Self { name, bucket, table: Mutex::new(HashMap::new()) }
    }

    /// Take `cost` tokens from `key`'s bucket.
    pub fn check(&self, key: &K, cost: u32, now: Instant) -> Result<(), RetryAfter> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = table
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::new(self.bucket.burst, self.bucket.per_second(), now));
        bucket.try_take(cost, now)
    }

    /// Does `key` have any tokens left? Takes none.
    pub fn would_allow(&self, key: &K, now: Instant) -> bool {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        match table.get_mut(key) {
            None => true,
            Some(b) => {
                let mut probe = b.clone();
                probe.try_take(1, now).is_ok()
            }
        }
    }

    /// Forget full buckets so the table does not grow without bound.
    pub fn sweep(&self, now: Instant) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.retain(|_, b| !b.is_idle(now));
    }
}

/// How many distinct targets a key's table remembers before it starts over (each target is
/// then charged again; memory stays bounded).
const DISTINCT_MEMORY: usize = 4_096;

/// A rate limit on distinct targets per key: a target seen before (since the key's bucket was
/// last full) is free, a new one takes a token. What an enumeration has to pay for and a
/// person writing to the same people all day does not.
#[derive(Debug)]
pub struct DistinctLimiter<K> {
    pub name: &'static str,
    bucket: Bucket,
    table: Mutex<HashMap<K, (TokenBucket, HashSet<u64>)>>,
}

impl<K: Hash + Eq + Clone> DistinctLimiter<K> {
    pub fn new(name: &'static str, bucket: Bucket) -> Self {
        Self { name, bucket, table: Mutex::new(HashMap::new()) }
    }

    /// Charge `key` for `target` (a hash of it), unless it asked for that target before.
    pub fn check(&self, key: &K, target: u64, now: Instant) -> Result<(), RetryAfter> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let (bucket, seen) = table.entry(key.clone()).or_insert_with(|| {
            (TokenBucket::new(self.bucket.burst, self.bucket.per_second(), now), HashSet::new())
        });
        if seen.contains(&target) {
            return Ok(());
        }
        bucket.try_take(1, now)?;
        if seen.len() >= DISTINCT_MEMORY {
            seen.clear();
        }
        seen.insert(target);
        Ok(())
    }

    /// Forget keys whose bucket is full again (and the targets they had asked for).
    pub fn sweep(&self, now: Instant) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.retain(|_, (b, _)| !b.is_idle(now));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_new_targets_are_charged() {
        let limiter = DistinctLimiter::new("t", Bucket { burst: 3, per_minute: 0.0 });
        let now = Instant::now();
        for target in [1, 2, 3] {
            limiter.check(&7u64, target, now).unwrap();
        }
        // Asking again for someone already looked up is free, however often.
        for _ in 0..100 {
            limiter.check(&7u64, 2, now).unwrap();
        }
        assert!(limiter.check(&7u64, 4, now).is_err(), "a fourth distinct target is refused");
        assert!(limiter.check(&8u64, 4, now).is_ok(), "per key");
    }
}

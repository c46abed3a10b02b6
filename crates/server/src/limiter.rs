//! Tables of token buckets keyed by device, phone tag or source address.

use std::collections::HashMap;
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

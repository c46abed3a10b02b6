//! Token buckets. Time is an argument: the caller passes `now`, so tests need no sleeping.

use std::time::{Duration, Instant};

/// How long to wait before the next attempt can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

/// A classic token bucket: `burst` tokens at most, refilled at `per_second`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    burst: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `per_second` may be fractional (e.g. 1/600 for "one per 10 minutes").
    pub fn new(burst: u32, per_second: f64, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self { burst, per_second: per_second.max(0.0), tokens: burst, last: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.last = now;
    }

    /// Take `n` tokens or say how long until they would be there.
    pub fn try_take(&mut self, n: u32, now: Instant) -> Result<(), RetryAfter> {
        self.refill(now);
        let n = f64::from(n);
        if self.tokens >= n {
            self.tokens -= n;
            return Ok(());
        }
        if self.per_second <= 0.0 || n > self.burst {
            return Err(RetryAfter(Duration::from_secs(3600)));
        }
        let wait = (n - self.tokens) / self.per_second;
        Err(RetryAfter(Duration::from_secs_f64(wait.min(86_400.0))))
    }

    /// True when the bucket is full again, so a table of buckets can forget it.
    pub fn is_idle(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, 1.0, t0);
        for _ in 0..3 {
            assert!(b.try_take(1, t0).is_ok());
        }
        let wait = b.try_take(1, t0);
        assert!(matches!(wait, Err(RetryAfter(d)) if d > Duration::from_millis(900)));
        assert!(b.try_take(1, t0 + Duration::from_millis(1001)).is_ok());
        assert!(b.try_take(1, t0 + Duration::from_millis(1002)).is_err());
        assert!(b.is_idle(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn request_larger_than_burst_never_succeeds() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2, 100.0, t0);
        assert!(b.try_take(3, t0 + Duration::from_secs(100)).is_err());
    }
}

//! Items per second per write key: one source (a website's public browser key, say) cannot
//! take the collector, the log or the quarantine for everyone else.
//!
//! A token bucket per source: it holds up to `burst` items and refills at `per_second`. A
//! request is let in while its source's bucket holds at least one item, and takes as many tokens as it
//! has items, so one large request may leave the bucket below zero; the next waits until it
//! has refilled to one item (the `Retry-After` of the 429).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate for each write key; 0 items per second turns limiting off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRate {
    pub items_per_second: u32,
    pub burst: u32,
}

impl Default for KeyRate {
    /// Far above what one website's visitors send, far below what fills a disk.
    fn default() -> Self {
        KeyRate {
            items_per_second: 2_000,
            burst: 20_000,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every source that wrote.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: KeyRate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub(crate) fn new(rate: KeyRate) -> Self {
        RateLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn rate(&self) -> KeyRate {
        self.rate
    }

    /// Takes `items` tokens from `source`'s bucket, or says how long until it may write.
    pub(crate) fn take(&self, source: &str, items: usize, now: Instant) -> Result<(), Duration> {
        if self.rate.items_per_second == 0 {
            return Ok(());
        }
        let per_second = f64::from(self.rate.items_per_second);
        let burst = f64::from(self.rate.burst.max(1));
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.entry(source.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.at = now;
        if bucket.tokens <= 0.0 {
            return Err(Duration::from_secs_f64((-bucket.tokens + 1.0) / per_second));
        }
        bucket.tokens -= items as f64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_over_its_rate_waits_while_others_write() {
        let limiter = RateLimiter::new(KeyRate {
            items_per_second: 100,
            burst: 1_000,
        });
        let start = Instant::now();
        assert_eq!(limiter.take("web", 900, start), Ok(()));
        // One large request may go below zero; the next one waits for the refill.
        assert_eq!(limiter.take("web", 500, start), Ok(()));
        let wait = limiter.take("web", 1, start).expect_err("over its rate");
        assert!(wait >= Duration::from_secs(4), "{wait:?}");
        // Another source has its own bucket.
        assert_eq!(limiter.take("crm", 1_000, start), Ok(()));
        // Refilled at 100 a second: 5 s later the bucket is above zero again.
        assert_eq!(
            limiter.take("web", 1, start + Duration::from_secs(5)),
            Ok(())
        );
    }

    #[test]
    fn zero_turns_limiting_off() {
        let limiter = RateLimiter::new(KeyRate {
            items_per_second: 0,
            burst: 0,
        });
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(limiter.take("web", 1_000_000, now), Ok(()));
        }
    }
}

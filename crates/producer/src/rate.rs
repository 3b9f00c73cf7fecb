//! Items and bytes per second, per write key and per client address: one source (a website's
//! public browser key, say), or one visitor of it, cannot take the collector, the log or the
//! quarantine for everyone else.
//!
//! Two token buckets per name (a key's name, or a key's name and a client address): items and
//! body bytes. Each holds up to its burst and refills at its rate. A request is let in while
//! both buckets hold something, and takes what it carries, so one large request may leave a
//! bucket below zero; the next waits until it has refilled (the `Retry-After` of the 429).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate: items a second with their burst, and body bytes a second with theirs. A rate of 0
/// turns that limit off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRate {
    pub items_per_second: u32,
    pub burst: u32,
    pub bytes_per_second: u64,
    pub burst_bytes: u64,
}

impl Default for KeyRate {
    /// Far above what one website's visitors send, far below what fills a disk.
    fn default() -> Self {
        KeyRate {
            items_per_second: 2_000,
            burst: 20_000,
            bytes_per_second: 8 << 20,
            burst_bytes: 32 << 20,
        }
    }
}

impl KeyRate {
    /// What one visitor of a website sends at most, by default, with a browser key: a page
    /// view and a few clicks a second, and a burst of a batch flushed at page exit.
    pub const PER_VISITOR: KeyRate = KeyRate {
        items_per_second: 10,
        burst: 100,
        bytes_per_second: 64 << 10,
        burst_bytes: 1 << 20,
    };

    /// No limit at all.
    pub const UNLIMITED: KeyRate = KeyRate {
        items_per_second: 0,
        burst: 0,
        bytes_per_second: 0,
        burst_bytes: 0,
    };

    /// What a 429 says of this rate.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.items_per_second > 0 {
            parts.push(format!(
                "{} items a second, bursts of {}",
                self.items_per_second, self.burst
            ));
        }
        if self.bytes_per_second > 0 {
            parts.push(format!(
                "{} bytes a second, bursts of {}",
                self.bytes_per_second, self.burst_bytes
            ));
        }
        if parts.is_empty() {
            "no limit".into()
        } else {
            parts.join("; ")
        }
    }
}

#[derive(Debug)]
struct Bucket {
    items: f64,
    bytes: f64,
    at: Instant,
}

/// Buckets kept at most; beyond, full (idle) ones are dropped, so many client addresses
/// cannot grow the collector's memory without bound.
const MAX_BUCKETS: usize = 100_000;

/// The buckets of every name that wrote.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

fn refill(level: f64, elapsed: f64, per_second: f64, burst: f64) -> f64 {
    (level + elapsed * per_second).min(burst)
}

impl RateLimiter {
    pub(crate) fn new() -> Self {
        RateLimiter::default()
    }

    /// Takes `items` and `bytes` from `name`'s buckets at `rate`, or says how long until it
    /// may write.
    pub(crate) fn take(
        &self,
        name: &str,
        rate: KeyRate,
        items: usize,
        bytes: usize,
        now: Instant,
    ) -> Result<(), Duration> {
        let limit_items = rate.items_per_second > 0;
        let limit_bytes = rate.bytes_per_second > 0;
        if !limit_items && !limit_bytes {
            return Ok(());
        }
        let items_per_second = f64::from(rate.items_per_second);
        let item_burst = f64::from(rate.burst.max(1));
        let bytes_per_second = rate.bytes_per_second as f64;
        let byte_burst = rate.burst_bytes.max(1) as f64;
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(name) {
            // A bucket left alone for a minute has refilled at any rate worth having.
            buckets.retain(|_, bucket| now.saturating_duration_since(bucket.at).as_secs() < 60);
        }
        let bucket = buckets.entry(name.to_owned()).or_insert(Bucket {
            items: item_burst,
            bytes: byte_burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.at = now;
        bucket.items = refill(bucket.items, elapsed, items_per_second, item_burst);
        bucket.bytes = refill(bucket.bytes, elapsed, bytes_per_second, byte_burst);
        let mut wait: f64 = 0.0;
        if limit_items && bucket.items <= 0.0 {
            wait = wait.max((-bucket.items + 1.0) / items_per_second);
        }
        if limit_bytes && bucket.bytes <= 0.0 {
            wait = wait.max((-bucket.bytes + 1.0) / bytes_per_second);
        }
        if wait > 0.0 {
            return Err(Duration::from_secs_f64(wait));
        }
        if limit_items {
            bucket.items -= items as f64;
        }
        if limit_bytes {
            bucket.bytes -= bytes as f64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(per_second: u32, burst: u32) -> KeyRate {
        KeyRate {
            items_per_second: per_second,
            burst,
            ..KeyRate::UNLIMITED
        }
    }

    #[test]
    fn a_source_over_its_rate_waits_while_others_write() {
        let limiter = RateLimiter::new();
        let rate = items(100, 1_000);
        let start = Instant::now();
        assert_eq!(limiter.take("web", rate, 900, 0, start), Ok(()));
        // One large request may go below zero; the next one waits for the refill.
        assert_eq!(limiter.take("web", rate, 500, 0, start), Ok(()));
        let wait = limiter
            .take("web", rate, 1, 0, start)
            .expect_err("over its rate");
        assert!(wait >= Duration::from_secs(4), "{wait:?}");
        // Another source has its own bucket.
        assert_eq!(limiter.take("crm", rate, 1_000, 0, start), Ok(()));
        // Refilled at 100 a second: 5 s later the bucket is above zero again.
        assert_eq!(
            limiter.take("web", rate, 1, 0, start + Duration::from_secs(5)),
            Ok(())
        );
    }

    #[test]
    fn bytes_are_limited_as_items_are() {
        let limiter = RateLimiter::new();
        let rate = KeyRate {
            bytes_per_second: 1_000,
            burst_bytes: 10_000,
            ..KeyRate::UNLIMITED
        };
        let start = Instant::now();
        assert_eq!(limiter.take("web", rate, 1, 12_000, start), Ok(()));
        let wait = limiter
            .take("web", rate, 1, 1, start)
            .expect_err("over its bytes");
        assert!(wait >= Duration::from_secs(2), "{wait:?}");
    }

    #[test]
    fn zero_turns_limiting_off() {
        let limiter = RateLimiter::new();
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(
                limiter.take("web", KeyRate::UNLIMITED, 1_000_000, 1 << 30, now),
                Ok(())
            );
        }
    }
}

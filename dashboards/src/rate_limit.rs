//! Token buckets for public endpoints anyone can call, such as the widget's offline form
//! (`POST /v1/chat/leads`): a bucket per key (a client address, a site) that holds up to
//! `capacity` tokens and regains one every `refill_ms`. A request takes a token or is refused
//! with the time until the next one, which the handler turns into `429 Too Many Requests` with
//! `Retry-After`.
//!
//! Time comes from the injected clock, so tests move it by hand. Memory is bounded: when the
//! table grows past [`MAX_KEYS`], buckets that have refilled completely (they hold no
//! information) are dropped, and if that is not enough the table starts over, which at worst
//! forgives some clients early.

use std::collections::HashMap;

use parking_lot::Mutex;

/// The most keys a limiter tracks before it sheds the idle ones.
pub const MAX_KEYS: usize = 50_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated_ms: i64,
}

/// One kind of limit: `capacity` requests at once, then one per `refill_ms`.
#[derive(Debug)]
pub struct RateLimiter {
    capacity: f64,
    refill_ms: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(capacity: u32, refill_ms: u64) -> RateLimiter {
        RateLimiter {
            capacity: f64::from(capacity.max(1)),
            refill_ms: refill_ms.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key` at `now_ms`, or says how many whole seconds until one is there.
    pub fn check(&self, key: &str, now_ms: i64) -> Result<(), u64> {
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            self.shed(&mut buckets, now_ms);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.capacity,
            updated_ms: now_ms,
        });
        self.refill(bucket, now_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait_ms = (1.0 - bucket.tokens) * self.refill_ms;
            Err((wait_ms / 1000.0).ceil().max(1.0) as u64)
        }
    }

    fn refill(&self, bucket: &mut Bucket, now_ms: i64) {
        // A clock that went back refills nothing rather than going negative.
        let elapsed = (now_ms - bucket.updated_ms).max(0) as f64;
        bucket.tokens = (bucket.tokens + elapsed / self.refill_ms).min(self.capacity);
        bucket.updated_ms = bucket.updated_ms.max(now_ms);
    }

    fn shed(&self, buckets: &mut HashMap<String, Bucket>, now_ms: i64) {
        buckets.retain(|_, bucket| {
            self.refill(bucket, now_ms);
            bucket.tokens < self.capacity
        });
        if buckets.len() >= MAX_KEYS {
            buckets.clear();
        }
    }
}

/// The offline form's limits: per client address, and per site (a botnet spread over many
/// addresses still cannot flood one site's lead list).
#[derive(Debug)]
pub struct LeadLimits {
    pub per_ip: RateLimiter,
    pub per_site: RateLimiter,
}

/// Five leads at once from one address, then one every two minutes.
pub const LEADS_PER_IP: u32 = 5;
pub const LEAD_IP_REFILL_MS: u64 = 2 * 60 * 1000;
/// Sixty leads at once for one site, then one a minute.
pub const LEADS_PER_SITE: u32 = 60;
pub const LEAD_SITE_REFILL_MS: u64 = 60 * 1000;

impl Default for LeadLimits {
    fn default() -> Self {
        LeadLimits {
            per_ip: RateLimiter::new(LEADS_PER_IP, LEAD_IP_REFILL_MS),
            per_site: RateLimiter::new(LEADS_PER_SITE, LEAD_SITE_REFILL_MS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_then_refills_with_time() {
        let limiter = RateLimiter::new(3, 10_000);
        for _ in 0..3 {
            assert_eq!(limiter.check("a", 0), Ok(()));
        }
        assert_eq!(limiter.check("a", 0), Err(10));
        assert_eq!(limiter.check("a", 4_000), Err(6));
        // Other keys have their own bucket.
        assert_eq!(limiter.check("b", 4_000), Ok(()));
        assert_eq!(limiter.check("a", 10_000), Ok(()));
        assert_eq!(limiter.check("a", 10_000), Err(10));
        // Refilling stops at the capacity, and a clock going back refills nothing.
        for _ in 0..3 {
            assert_eq!(limiter.check("a", 1_000_000), Ok(()));
        }
        assert!(limiter.check("a", 1_000_000).is_err());
        assert!(limiter.check("a", 0).is_err());
    }

    #[test]
    fn the_table_sheds_idle_buckets_when_full() {
        let limiter = RateLimiter::new(2, 1_000);
        for key in 0..MAX_KEYS {
            limiter.check(&key.to_string(), 0).unwrap();
        }
        // Within the window nothing can be shed, so the table starts over: still allowed.
        assert_eq!(limiter.check("busy", 0), Ok(()));
        assert_eq!(limiter.buckets.lock().len(), 1);
        for key in 0..MAX_KEYS {
            limiter.check(&key.to_string(), 0).unwrap();
        }
        // Much later every old bucket is full again and is dropped to make room.
        limiter.check("late", 60_000).unwrap();
        assert!(limiter.buckets.lock().len() <= 2);
    }
}

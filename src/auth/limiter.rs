//! Brute-force limits on failed logins: a token bucket per username and one
//! per client address. Each failure takes a token; an empty bucket means
//! `429` with the seconds until the next token. A success refills the
//! username's bucket.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The most buckets kept; past it, full buckets (which carry no
/// information) are dropped, so a flood of made-up usernames cannot grow
/// memory without bound.
pub const MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub struct LoginLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl LoginLimiter {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        LoginLimiter {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` when any of `keys` has no attempt left.
    pub fn check(&self, keys: &[&str], now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut wait = Duration::ZERO;
        for key in keys {
            if let Some(bucket) = buckets.get_mut(*key) {
                self.refill(bucket, now);
                if bucket.tokens < 1.0 {
                    let seconds = (1.0 - bucket.tokens) / self.per_second;
                    wait = wait.max(Duration::from_secs_f64(seconds));
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Takes a token from each of `keys` for a failed attempt.
    pub fn fail(&self, keys: &[&str], now: Instant) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() + keys.len() > MAX_BUCKETS {
            buckets.retain(|_, bucket| {
                self.refill(bucket, now);
                bucket.tokens < self.burst
            });
        }
        for key in keys {
            let bucket = buckets.entry((*key).to_owned()).or_insert(Bucket {
                tokens: self.burst,
                updated: now,
            });
            self.refill(bucket, now);
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
        }
    }

    /// Forgets `key`'s failures (after a successful login).
    pub fn reset(&self, key: &str) {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// How many buckets are kept.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.updated = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = LoginLimiter::new(6, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(&["u:ann"], start), Ok(()));
            limiter.fail(&["u:ann"], start);
        }
        let wait = limiter.check(&["u:ann"], start).unwrap_err();
        assert_eq!(wait.as_secs(), 10, "6 a minute: one every 10 s");
        assert_eq!(
            limiter.check(&["u:ann"], start + Duration::from_secs(10)),
            Ok(())
        );
        assert_eq!(limiter.check(&["u:bob"], start), Ok(()));
    }

    #[test]
    fn any_exhausted_key_blocks() {
        let limiter = LoginLimiter::new(5, 1);
        let now = Instant::now();
        limiter.fail(&["a:10.0.0.1"], now);
        assert!(limiter.check(&["u:new", "a:10.0.0.1"], now).is_err());
        assert!(limiter.check(&["u:new", "a:10.0.0.2"], now).is_ok());
    }

    #[test]
    fn success_resets_the_username() {
        let limiter = LoginLimiter::new(5, 1);
        let now = Instant::now();
        limiter.fail(&["u:ann"], now);
        assert!(limiter.check(&["u:ann"], now).is_err());
        limiter.reset("u:ann");
        assert!(limiter.check(&["u:ann"], now).is_ok());
    }
}

//! A bounded memory of 32-byte digests seen lately: API keys whose use was
//! written down (`keys::UseRecorder`), passwords that verified
//! (`password::HashPool`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The most digests remembered at once: 48 bytes each, so under 1 MiB with
/// the map's own.
pub const MAX_REMEMBERED: usize = 10_000;

/// Digests remembered for `period` from when they were last remembered.
pub struct Recent {
    period: Duration,
    seen: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Recent {
    pub fn new(period: Duration) -> Recent {
        Recent {
            period,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `digest` was remembered less than a period before `now`.
    pub fn holds(&self, digest: &[u8; 32], now: Instant) -> bool {
        self.lock()
            .get(digest)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.period)
    }

    /// Remembers `digest` from `now` unless it is held already: whether it
    /// was not (one lock for both). When [`MAX_REMEMBERED`] are held, the
    /// expired ones are forgotten first; if none has, `digest` is not
    /// remembered, and the answer is still `true`.
    pub fn remember(&self, digest: [u8; 32], now: Instant) -> bool {
        let mut seen = self.lock();
        let fresh = |at: &Instant| now.saturating_duration_since(*at) < self.period;
        if seen.get(&digest).is_some_and(fresh) {
            return false;
        }
        if seen.len() >= MAX_REMEMBERED && !seen.contains_key(&digest) {
            seen.retain(|_, at| fresh(at));
            if seen.len() >= MAX_REMEMBERED {
                return true;
            }
        }
        seen.insert(digest, now);
        true
    }

    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: usize) -> [u8; 32] {
        let mut digest = [0u8; 32];
        digest[..8].copy_from_slice(&(n as u64).to_le_bytes());
        digest
    }

    #[test]
    fn remembered_for_a_period_and_bounded() {
        let recent = Recent::new(Duration::from_secs(60));
        let start = Instant::now();
        assert!(!recent.holds(&digest(1), start));
        assert!(recent.remember(digest(1), start));
        assert!(!recent.remember(digest(1), start + Duration::from_secs(59)));
        assert!(recent.holds(&digest(1), start + Duration::from_secs(59)));
        assert!(!recent.holds(&digest(1), start + Duration::from_secs(60)));
        assert!(recent.remember(digest(1), start + Duration::from_secs(60)));
        for n in 2..MAX_REMEMBERED + 10 {
            recent.remember(digest(n), start);
            assert!(recent.held() <= MAX_REMEMBERED);
        }
        // Full of live ones: a new one is not kept.
        assert!(recent.remember(digest(usize::MAX), start));
        assert!(!recent.holds(&digest(usize::MAX), start));
        // Once they expire, room is made.
        let later = start + Duration::from_secs(61);
        assert!(recent.remember(digest(usize::MAX), later));
        assert!(recent.holds(&digest(usize::MAX), later));
        assert!(recent.held() <= 2);
    }
}

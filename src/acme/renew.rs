//! The renewal thread: keeps a valid certificate served, for as long as
//! the server runs.
//!
//! Each round reads the stored certificate. One for the configured names
//! that has not expired is installed if it is not being served yet; while
//! it is before its renewal time (`renew_at` of its lifetime), the thread
//! sleeps. Otherwise it orders a new one ([`obtain`]). A failure is
//! reported through [`Host::error`] and retried after a back-off that
//! doubles per failure from `retry_min` up to `retry_max`, with jitter; the
//! certificate being served stays in place meanwhile.
//!
//! Sleeps last at most [`RECHECK_INTERVAL`]: after a suspend or a clock
//! change the thread looks again within that time, rather than trusting a
//! sleep of weeks.

use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use super::error::{AcmeError, Step};
use super::issue::{log_time, same_names};
use super::{Host, Settings, obtain, store};

/// The longest sleep before the stored certificate is looked at again,
/// and the sleep after an issuance: so a certificate that is due at once
/// (a tiny `renew_at`, a CA clock ahead of ours) is ordered at most once
/// in this time, never in a loop.
const RECHECK_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// A back-off is shortened by up to this share of itself, at random, so
/// that servers that failed together do not retry together.
const JITTER_SHARE: f64 = 0.25;

/// See [`super::start`].
pub(super) fn start(settings: Settings, host: Arc<dyn Host>) -> io::Result<JoinHandle<()>> {
    check(&settings).map_err(|reason| io::Error::new(io::ErrorKind::InvalidInput, reason))?;
    thread::Builder::new()
        .name("wren-acme".to_owned())
        .spawn(move || run(&settings, host.as_ref()))
}

/// The settings the schedule depends on; the rest `obtain` checks.
fn check(settings: &Settings) -> Result<(), String> {
    if !(settings.renew_at > 0.0 && settings.renew_at <= 1.0) {
        return Err(format!(
            "ACME renew_at must be in (0, 1], not {}",
            settings.renew_at
        ));
    }
    if settings.retry_min.is_zero() || settings.retry_min > settings.retry_max {
        return Err("ACME retry_min must be above zero and at most retry_max".to_owned());
    }
    if settings.domains.is_empty() {
        return Err("ACME needs at least one domain".to_owned());
    }
    Ok(())
}

fn run(settings: &Settings, host: &dyn Host) {
    // The chain being served, so that a stored one is installed once.
    let mut serving: Option<String> = None;
    let mut failures: u32 = 0;
    loop {
        let wait = match round(settings, host, &mut serving) {
            Ok(wait) => {
                failures = 0;
                wait
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                let wait = back_off(
                    settings.retry_min,
                    settings.retry_max,
                    failures,
                    fastrand::f64(),
                );
                host.error(&err.to_string());
                host.info(&format!(
                    "ACME: attempt {failures} failed; the next in {:.1} s",
                    wait.as_secs_f64()
                ));
                wait
            }
        };
        thread::sleep(wait);
    }
}

/// One look at the certificate: installs a stored one not yet served,
/// renews when due; returns how long to sleep.
fn round(
    settings: &Settings,
    host: &dyn Host,
    serving: &mut Option<String>,
) -> Result<Duration, AcmeError> {
    let now = SystemTime::now();
    let stored = store::load_certificate(&settings.dir).unwrap_or_else(|err| {
        host.error(&format!("{err}; ordering a new one"));
        None
    });
    let usable = stored.filter(|stored| {
        same_names(&stored.leaf.names, &settings.domains) && now < stored.leaf.not_after
    });
    if let Some(stored) = usable {
        let due = renewal_time(
            stored.leaf.not_before,
            stored.leaf.not_after,
            settings.renew_at,
        );
        if serving.as_deref() != Some(stored.chain_pem.as_str()) {
            match host.install(&stored.chain_pem, &stored.key_pem) {
                Ok(()) => {
                    host.info(&format!(
                        "ACME: serving the stored certificate for {}, valid until {}, renewed from {}",
                        stored.leaf.names.join(", "),
                        log_time(stored.leaf.not_after),
                        log_time(due)
                    ));
                    *serving = Some(stored.chain_pem);
                }
                // Not due yet: try installing again after a back-off. Due:
                // a new certificate is wanted anyway.
                Err(reason) if now < due => return Err(AcmeError::new(Step::Install, reason)),
                Err(reason) => host.error(&AcmeError::new(Step::Install, reason).to_string()),
            }
        }
        if let Ok(left) = due.duration_since(now) {
            return Ok(left.min(RECHECK_INTERVAL));
        }
    }
    let issued = obtain(settings, host)?;
    *serving = Some(issued.chain_pem);
    // The next round finds the new certificate stored and served, and
    // sleeps until its own renewal time (short-lived certificates renew
    // well within RECHECK_INTERVAL).
    Ok(Duration::ZERO)
}

/// When a certificate valid from `not_before` to `not_after` is renewed:
/// once `renew_at` of its lifetime has passed.
fn renewal_time(not_before: SystemTime, not_after: SystemTime, renew_at: f64) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + lifetime.mul_f64(renew_at.clamp(0.0, 1.0))
}

/// The wait after the `failures`-th failure in a row: `retry_min` doubled
/// per earlier failure, at most `retry_max`, shortened by up to
/// [`JITTER_SHARE`] of itself as `random` (in `[0, 1)`) says.
fn back_off(retry_min: Duration, retry_max: Duration, failures: u32, random: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    let base = retry_min.saturating_mul(1 << doublings).min(retry_max);
    base - base.mul_f64(JITTER_SHARE * random.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_the_minimum_and_stops_at_the_cap() {
        let (min, max) = (Duration::from_secs(10), Duration::from_secs(300));
        let none = |failures| back_off(min, max, failures, 0.0);
        assert_eq!(none(1), min);
        assert_eq!(none(2), min * 2);
        assert_eq!(none(3), min * 4);
        assert_eq!(none(6), max, "320 s is capped");
        assert_eq!(none(u32::MAX), max);
    }

    #[test]
    fn jitter_only_shortens_and_by_at_most_its_share() {
        let (min, max) = (Duration::from_secs(10), Duration::from_secs(300));
        for failures in [1, 2, 9] {
            let base = back_off(min, max, failures, 0.0);
            for _ in 0..200 {
                let wait = back_off(min, max, failures, fastrand::f64());
                assert!(
                    wait <= base && wait >= base.mul_f64(1.0 - JITTER_SHARE),
                    "{wait:?}"
                );
            }
            assert_eq!(
                back_off(min, max, failures, 1.0),
                base.mul_f64(1.0 - JITTER_SHARE)
            );
        }
    }

    #[test]
    fn renewal_comes_at_the_configured_share_of_the_lifetime() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let days = |n: u64| Duration::from_secs(n * 86_400);
        let end = start + days(90);
        assert_eq!(renewal_time(start, end, 2.0 / 3.0), start + days(60));
        assert_eq!(renewal_time(start, end, 1.0), end);
        assert_eq!(
            renewal_time(end, start, 0.5),
            end,
            "a backwards validity is due at once"
        );
    }

    #[test]
    fn unusable_schedules_are_refused() {
        let settings = |renew_at, retry_min: u64, retry_max: u64| Settings {
            domains: vec!["a.example".into()],
            email: None,
            directory: "https://ca/dir".into(),
            ca_root: None,
            dir: "/nonexistent".into(),
            challenge: super::super::ChallengeKind::Http01,
            renew_at,
            retry_min: Duration::from_secs(retry_min),
            retry_max: Duration::from_secs(retry_max),
        };
        assert!(check(&settings(2.0 / 3.0, 1, 10)).is_ok());
        assert!(check(&settings(0.0, 1, 10)).is_err());
        assert!(check(&settings(1.5, 1, 10)).is_err());
        assert!(check(&settings(f64::NAN, 1, 10)).is_err());
        assert!(check(&settings(0.5, 0, 10)).is_err());
        assert!(check(&settings(0.5, 20, 10)).is_err());
    }
}

//! The two timestamp formats wren writes: the HTTP `Date` format
//! (IMF-fixdate, RFC 9110 §5.6.7) and RFC 3339 for logs, both in UTC.

use std::cell::RefCell;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A UTC calendar time, to the second.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    weekday: usize,
}

fn civil(unix_seconds: u64) -> Civil {
    let days = (unix_seconds / 86_400) as i64;
    let secs_of_day = (unix_seconds % 86_400) as u32;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: secs_of_day / 3600,
        minute: secs_of_day / 60 % 60,
        second: secs_of_day % 60,
        weekday: (days % 7) as usize,
    }
}

fn unix_now() -> (u64, u32) {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_secs(), since.subsec_millis())
}

/// The current time in whole seconds since 1970, as the store keeps times.
pub fn unix_seconds_now() -> i64 {
    i64::try_from(unix_now().0).unwrap_or(i64::MAX)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(unix_seconds: u64) -> String {
    let c = civil(unix_seconds);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[c.weekday],
        c.day,
        MONTHS[c.month as usize - 1],
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

/// `2026-11-22T14:06:00.000Z` for a stored unix second (times before 1970,
/// which wren never stores, show as the epoch).
pub fn rfc3339_seconds(unix_seconds: i64) -> String {
    rfc3339_millis(u64::try_from(unix_seconds).unwrap_or(0), 0)
}

/// `2026-11-22T14:06:00.123Z`.
pub fn rfc3339_millis(unix_seconds: u64, millis: u32) -> String {
    let mut out = Vec::with_capacity(24);
    write_rfc3339(&mut out, unix_seconds, millis);
    String::from_utf8(out).unwrap_or_default()
}

fn write_rfc3339(out: &mut Vec<u8>, unix_seconds: u64, millis: u32) {
    let c = civil(unix_seconds);
    let _ = write!(
        out,
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, millis
    );
}

/// Appends the current time in log format. The part up to the second
/// changes once a second: each thread formats it once per second and
/// appends the milliseconds to it (every request logs a time).
pub fn write_rfc3339_now(out: &mut Vec<u8>) {
    let (secs, millis) = unix_now();
    write_rfc3339_cached(out, secs, millis);
}

/// [`write_rfc3339`] through this thread's cache of the last second.
fn write_rfc3339_cached(out: &mut Vec<u8>, secs: u64, millis: u32) {
    LOG_SECOND_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let (second, text) = &mut *cache;
        if *second != secs || text.is_empty() {
            text.clear();
            write_rfc3339(text, secs, 0);
            // Without "000Z": the milliseconds are appended per line.
            text.truncate(text.len() - 4);
            *second = secs;
        }
        out.extend_from_slice(text);
    });
    push_three_digits(out, millis);
    out.push(b'Z');
}

/// Appends `n` (at most 999) as three digits, zeros first: log times'
/// milliseconds, log durations' fractions.
pub fn push_three_digits(out: &mut Vec<u8>, n: u32) {
    let n = n.min(999);
    out.extend_from_slice(&[
        b'0' + (n / 100) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]);
}

/// The current time in log format.
pub fn now_rfc3339() -> String {
    let (secs, millis) = unix_now();
    rfc3339_millis(secs, millis)
}

thread_local! {
    /// The log time up to its second (`2026-11-22T14:06:00.`), and which
    /// second that is.
    static LOG_SECOND_CACHE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((0, Vec::new())) };
    /// The `Date` value changes once a second; each thread formats it once
    /// per second rather than once per response.
    static DATE_CACHE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// Calls `f` with the current `Date` header value.
pub fn with_http_date_now<R>(f: impl FnOnce(&str) -> R) -> R {
    let (secs, _) = unix_now();
    DATE_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs || cache.1.is_empty() {
            *cache = (secs, http_date(secs));
        }
        f(&cache.1)
    })
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form
/// wren writes and S3 stores send in `Last-Modified`. Years outside
/// 1970..=9999 are refused, so no arithmetic below can overflow.
pub fn parse_http_date(value: &str) -> Option<SystemTime> {
    let (_, rest) = value.trim().split_once(", ")?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = fields.as_slice() else {
        return None;
    };
    let day: u32 = day.parse().ok()?;
    let month = MONTHS.iter().position(|name| name == month)? as u32 + 1;
    let year: i64 = year
        .parse()
        .ok()
        .filter(|year| (1970..=9999).contains(year))?;
    let clock: Vec<u32> = time
        .split(':')
        .map(|part| part.parse().ok())
        .collect::<Option<_>>()?;
    let [hour, minute, second] = clock.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || *hour > 23 || *minute > 59 || *second > 60 {
        return None;
    }
    system_time(year, month, day, *hour, *minute, *second)
}

/// The instant of a UTC calendar date and time (fields already checked to
/// be in range), `None` before 1970 or past what `SystemTime` holds.
pub fn system_time(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<SystemTime> {
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    let seconds = days * 86_400 + u64::from(hour * 3600 + minute * 60 + second);
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// Days since 1970-01-01 of a proleptic Gregorian date: the inverse of
/// [`civil`] (Howard Hinnant's days-from-civil algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        // A leap day, and the turn of a century that is a leap year.
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(rfc3339_millis(1_795_356_360, 7), "2026-11-22T14:06:00.007Z");
    }

    #[test]
    fn cached_log_times_equal_times_formatted_whole() {
        // Seconds repeated, going back, crossing a day and a year.
        for (secs, millis) in [
            (1_795_356_360, 7),
            (1_795_356_360, 999),
            (1_795_356_361, 0),
            (1_795_356_360, 120),
            (1_798_761_599, 999),
            (1_798_761_600, 1),
            (0, 0),
        ] {
            let mut cached = b"before ".to_vec();
            write_rfc3339_cached(&mut cached, secs, millis);
            assert_eq!(
                String::from_utf8(cached).unwrap(),
                format!("before {}", rfc3339_millis(secs, millis))
            );
        }
        assert_eq!(
            rfc3339_millis(1_709_251_199, 999),
            "2024-02-29T23:59:59.999Z"
        );
    }

    #[test]
    fn cached_date_is_current() {
        let (secs, _) = unix_now();
        let cached = with_http_date_now(str::to_owned);
        assert!(cached == http_date(secs) || cached == http_date(secs + 1));
    }
    #[test]
    fn http_dates_parse() {
        let at = |seconds| Some(UNIX_EPOCH + Duration::from_secs(seconds));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), at(0));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            at(784_111_777)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT"),
            at(951_782_400)
        );
        for seconds in [86_399, 1_700_000_000, 4_102_444_800] {
            let formatted = http_date(seconds);
            assert_eq!(parse_http_date(&formatted), at(seconds), "{formatted}");
        }
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Wed, 31 Dec 1969 23:59:59 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun, 06 Nov 9223372036854775807 08:49:37 GMT",
            "Sun, 06 Nov 300000000000 08:49:37 GMT",
            "Sun, 06 Nov 10000 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }
}

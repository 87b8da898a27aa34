//! The value parsers of the settings table: each turns one raw value, from a
//! flag or an environment variable, into its type, or says in one line what
//! it expected. A message quotes the value it refuses unless the value may
//! hold a password.

use std::net::{IpAddr, Ipv4Addr};
use std::num::ParseIntError;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::backup::Location;
use crate::model::ModelSource;

/// A whole number of the setting's type (`u16` refuses `70000`).
pub fn number<T: FromStr<Err = ParseIntError>>(s: &str) -> Result<T, String> {
    s.parse()
        .map_err(|err| format!("expected a whole number, got '{s}' ({err})"))
}

/// A whole number other than 0, for counts where 0 would stop all service.
pub fn at_least_one<T: FromStr<Err = ParseIntError> + PartialEq + From<u8>>(
    s: &str,
) -> Result<T, String> {
    let value = number(s)?;
    if value == T::from(0) {
        return Err("must be at least 1".to_owned());
    }
    Ok(value)
}

/// A size limit in bytes; 0 would refuse every upload.
pub fn at_least_one_byte(s: &str) -> Result<u64, String> {
    match number(s)? {
        0 => Err("must be at least 1 byte".to_owned()),
        bytes => Ok(bytes),
    }
}

/// A limit, where 0 means none.
pub fn limit(s: &str) -> Result<Option<u64>, String> {
    Ok(Some(number(s)?).filter(|&limit| limit != 0))
}

/// A positive number of seconds up to a year, fractions allowed (`2`, `0.5`).
pub fn seconds(s: &str) -> Result<Duration, String> {
    up_to_a_year(s, "seconds", 1.0)
}

/// A positive number of hours up to a year, fractions allowed (`24`,
/// `0.5`), where the empty text means "not set".
pub fn optional_hours(s: &str) -> Result<Option<Duration>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    up_to_a_year(s, "hours", 3600.0).map(Some)
}

/// A positive number of `unit`s, each `unit_seconds` long, up to a year,
/// fractions allowed.
fn up_to_a_year(s: &str, unit: &str, unit_seconds: f64) -> Result<Duration, String> {
    const YEAR_SECONDS: f64 = 86_400.0 * 365.0;
    let value: f64 = s
        .parse()
        .map_err(|_| format!("expected a number of {unit}, got '{s}'"))?;
    if !(value > 0.0 && value * unit_seconds <= YEAR_SECONDS) {
        return Err(format!(
            "expected a positive number of {unit}, got '{s}' (at most a year: {})",
            YEAR_SECONDS / unit_seconds
        ));
    }
    Ok(Duration::from_secs_f64(value * unit_seconds))
}

/// Where backups go: a folder or `s3://BUCKET/PREFIX`, where the empty
/// text means "not set".
pub fn optional_location(s: &str) -> Result<Option<Location>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    Location::parse(s).map(Some)
}

/// A whole number of seconds, for values sent on as whole seconds
/// (`Cache-Control: max-age`).
pub fn whole_seconds(s: &str) -> Result<Duration, String> {
    s.parse()
        .map(Duration::from_secs)
        .map_err(|_| format!("expected a whole number of seconds, got '{s}'"))
}

/// An address to bind: an IP address, or `localhost` (resolved here, since a
/// static binary in a scratch image has no resolver configuration).
pub fn host(s: &str) -> Result<IpAddr, String> {
    if s.eq_ignore_ascii_case("localhost") {
        return Ok(Ipv4Addr::LOCALHOST.into());
    }
    s.parse()
        .map_err(|_| format!("expected an IP address or 'localhost', got '{s}'"))
}

/// The value named `s` among `choices`, or an error listing them.
pub fn one_of<T: Copy>(s: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<String> = choices
                .iter()
                .map(|(name, _)| format!("'{name}'"))
                .collect();
            format!("expected {}, got '{s}'", names.join(" or "))
        })
}

/// An environment variable standing for a switch. Anything else is refused
/// rather than read as "off": `WREN_NO_SIGNUP=on` must not leave sign-up open.
pub fn switch(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "expected 1, true, yes or on (or 0, false, no, off), got '{s}'"
        )),
    }
}

/// A folder or file path.
pub fn path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("expected a path, got nothing".to_owned());
    }
    Ok(PathBuf::from(s))
}

/// A file path, where the empty text means "not set".
pub fn optional_path(s: &str) -> Result<Option<PathBuf>, String> {
    Ok((!s.is_empty()).then(|| PathBuf::from(s)))
}

/// A port, where the empty text means "not set". Port 0 (any free port)
/// is allowed, as for `--port`.
pub fn optional_port(s: &str) -> Result<Option<u16>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    number(s).map(Some)
}

/// A DNS name a certificate can be issued for: letters, digits and
/// hyphens in dot-separated labels of 1 to 63 characters, in lower case.
/// Wildcards need DNS-01, which wren does not answer.
pub fn domain(s: &str) -> Result<String, String> {
    let name = s.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    // A top-level domain is never all digits: that is an IPv4 address.
    let numeric_tld = name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
    if name.len() > 253 || !name.contains('.') || numeric_tld || !name.split('.').all(label_ok) {
        return Err(format!(
            "expected a DNS name such as example.org (no wildcard, no IP address), got '{s}'"
        ));
    }
    Ok(name)
}

/// A browser origin: `*`, or `http://` or `https://` and a host with an
/// optional port, nothing after (an origin has no path), in lower case.
pub fn origin(s: &str) -> Result<String, String> {
    if s == "*" {
        return Ok(s.to_owned());
    }
    let lower = s.to_ascii_lowercase();
    let host = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    let host_ok = host.is_some_and(|host| {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    });
    if !host_ok {
        return Err(format!(
            "expected * or an origin such as https://app.example:8443 (no path), got '{s}'"
        ));
    }
    Ok(lower)
}

/// An e-mail address, roughly (something@domain), or nothing.
pub fn optional_email(s: &str) -> Result<Option<String>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    match s.split_once('@') {
        Some((local, host))
            if !local.is_empty()
                && host.contains('.')
                && !s.contains(|c: char| c.is_whitespace() || c == ',') =>
        {
            Ok(Some(s.to_owned()))
        }
        _ => Err(format!("expected an e-mail address, got '{s}'")),
    }
}

/// An `https://` URL.
pub fn https_url(s: &str) -> Result<String, String> {
    match s.strip_prefix("https://") {
        Some(rest) if !rest.is_empty() => Ok(s.to_owned()),
        _ => Err(format!("expected an https:// URL, got '{s}'")),
    }
}

/// A share of a whole, above 0 and at most 1.
pub fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(value) if value > 0.0 && value <= 1.0 => Ok(value),
        _ => Err(format!(
            "expected a number above 0 and at most 1, got '{s}'"
        )),
    }
}

/// Any text, the empty one included.
pub fn text(s: &str) -> Result<String, String> {
    Ok(s.to_owned())
}

/// Text that must not be empty.
pub fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("expected a value, got nothing".to_owned());
    }
    Ok(s.to_owned())
}

/// Text, where the empty text means "not set".
pub fn optional_text(s: &str) -> Result<Option<String>, String> {
    Ok((!s.is_empty()).then(|| s.to_owned()))
}

/// A `postgres://` URL, parsed; the empty text means "not set". A build
/// without PostgreSQL refuses any.
pub fn database_url(s: &str) -> Result<Option<super::Database>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    #[cfg(feature = "postgres")]
    return crate::postgres::Config::parse(s).map(Some);
    #[cfg(not(feature = "postgres"))]
    Err("this wren was built without PostgreSQL (cargo feature `postgres`)".into())
}

/// An `http://` or `https://` URL, where the empty text means "not set".
pub fn optional_http_url(s: &str) -> Result<Option<String>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    if !(s.starts_with("http://") || s.starts_with("https://")) {
        return Err(format!("expected an http:// or https:// URL, got '{s}'"));
    }
    Ok(Some(s.to_owned()))
}

/// `random`, a model file, or the empty text for the built-in model.
pub fn model(s: &str) -> Result<ModelSource, String> {
    let Ok(source) = s.parse();
    Ok(source)
}

/// One bootstrap account, `NAME:PASSWORD` (the password may hold colons).
/// Errors never quote the entry: it holds a password.
pub fn user(entry: &str) -> Result<(String, String), String> {
    match entry.split_once(':') {
        Some((name, password)) if !name.is_empty() && !password.is_empty() => {
            // A name sign-up would refuse could never sign in through it
            // (nor get a limiter bucket).
            crate::auth::check_username(name).map_err(|rule| format!("a user name {rule}"))?;
            Ok((name.to_owned(), password.to_owned()))
        }
        _ => Err("expected NAME:PASSWORD with neither part empty".to_owned()),
    }
}

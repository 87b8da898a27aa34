//! Request rate limits, the HTTP side of `auth::limiter`'s
//! [`RequestLimiter`]: who the client is, the per-address check around the
//! router, the per-account or per-key check the gate makes once it knows
//! the caller, and the headers that tell clients where they stand.
//!
//! Every request but a health check ([`HEALTH_PATHS`]) takes a token from
//! its client address's bucket before it is routed, so requests no route
//! matches count too. A signed-in request also takes one from its account's
//! or API key's bucket, from all addresses together, once `session::admit`
//! has checked its credentials. Past either, `429` with `Retry-After` (whole
//! seconds, at least 1) names which was exceeded.
//!
//! Every answer of a limited request carries the fields of
//! draft-ietf-httpapi-ratelimit-headers-10: `RateLimit-Policy` states each
//! policy (`"address"`, and `"account"` or `"key"` on signed-in routes)
//! with its burst as the quota `q` and the time an empty bucket takes to
//! refill as the window `w`, so `q/w` is the sustained rate; `RateLimit`
//! gives the whole requests `r` left and the seconds `t` until the bucket
//! is full again or, when nothing is left, until the next request may be
//! served, the same point in time as `Retry-After`. A policy's two fields
//! are separate field lines, which Structured Fields read as one list.
//!
//! The client address is the socket peer's (an IPv6 client counts by its
//! /64). With `--trust-proxy` it is the last `X-Forwarded-For` hop, the one
//! the proxy appended, since earlier hops are whatever the client sent; a
//! last hop that is no IP address (with or without a port) means the
//! request did not come through a proxy that appends one, so the peer
//! counts, as it would without the header: a client cannot slip out of its
//! bucket by sending garbage.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::App;
use crate::auth::limiter::{Level, Limit, MAX_REQUEST_BUCKETS, Refused, RequestLimiter};
use crate::config::RateLimits as Settings;
use crate::handlers::session::Principal;
use crate::http::{ApiError, Request, Response};
use crate::peer::client_address;
use crate::router::Headers;

/// The health checks and the metrics, never limited: load balancers,
/// orchestrators and Prometheus poll them from one address, and must see
/// the server's health, not their own request rate.
pub const HEALTH_PATHS: &[&str] = &["/status", "/livez", "/readyz", "/metrics"];

/// The request limiters of a server whose rate limits are on.
pub struct RateLimits {
    address: Policy,
    address_limiter: RequestLimiter,
    account: Policy,
    key: Policy,
    /// Accounts and keys, each kind hashed apart ([`Caller`]).
    callers: RequestLimiter,
}

/// A policy as clients see it.
struct Policy {
    /// `"address"`, `"account"` or `"key"`, as the headers name it.
    name: &'static str,
    /// Its `RateLimit-Policy` field value, made once.
    field: &'static str,
    limit: Limit,
    /// What the 429 says was exceeded.
    subject: &'static str,
}

impl Policy {
    fn new(name: &'static str, subject: &'static str, limit: Limit) -> Policy {
        let window = whole_seconds(limit.refill_time()).max(1);
        let field = format!("\"{name}\";q={};w={window}", limit.burst());
        Policy {
            name,
            // Made once at start and kept for the life of the process.
            field: Box::leak(field.into_boxed_str()),
            limit,
            subject,
        }
    }

    /// The `RateLimit-Policy` and `RateLimit` fields for `level`.
    fn headers(&self, level: Level) -> [(&'static str, Cow<'static, str>); 2] {
        [
            ("RateLimit-Policy", Cow::Borrowed(self.field)),
            ("RateLimit", Cow::Owned(self.level_field(level))),
        ]
    }

    /// The `RateLimit` field value for `level`, its numbers written with
    /// `itoa` into one string of the right size: every limited answer
    /// carries it, and `format!` cost more than taking the token (`concat`,
    /// a little more than this).
    fn level_field(&self, level: Level) -> String {
        let mut remaining = itoa::Buffer::new();
        let remaining = remaining.format(level.remaining);
        let mut reset = itoa::Buffer::new();
        let reset = reset.format(whole_seconds(level.reset));
        // The name, the numbers, and the 8 bytes of `"`, `";r=` and `;t=`.
        let mut field = String::with_capacity(self.name.len() + remaining.len() + reset.len() + 8);
        field.push('"');
        field.push_str(self.name);
        field.push_str("\";r=");
        field.push_str(remaining);
        field.push_str(";t=");
        field.push_str(reset);
        field
    }

    /// The `429` of a request `refused` under this policy, counted; the
    /// first of a run of them notes in the log who (`who()`) went over.
    fn refused(&self, app: &App, refused: Refused, who: impl FnOnce() -> String) -> ApiError {
        app.metrics.rate_limited();
        let error = self.refusal(refused.level);
        if !refused.first {
            return error;
        }
        error.with_cause(format!(
            "rate limit: {} {} went over its limit of {} at once, then {} a second; \
             its requests are refused until it slows down",
            self.subject,
            who(),
            self.limit.burst(),
            self.limit.rate(),
        ))
    }

    /// The `429` of a request over this policy, with its fields.
    fn refusal(&self, level: Level) -> ApiError {
        let retry = whole_seconds(level.reset).max(1);
        let mut error = ApiError::new(
            429,
            format!(
                "too many requests from this {}: at most {} at once, then {} a second; \
                 retry in {retry} s",
                self.subject,
                self.limit.burst(),
                self.limit.rate(),
            ),
        )
        .with_header("Retry-After", retry.to_string());
        for (name, value) in self.headers(level) {
            error = error.with_header(name, value);
        }
        error
    }
}

impl RateLimits {
    /// The limiters `settings` ask for, or `None` when the limits are off.
    pub fn open(settings: &Settings) -> Option<RateLimits> {
        if !settings.enabled() {
            return None;
        }
        let address = Limit::per_second(settings.address_rate, settings.address_burst);
        let caller = Limit::per_second(settings.account_rate, settings.account_burst);
        Some(RateLimits {
            address: Policy::new("address", "address", address),
            account: Policy::new("account", "account", caller),
            key: Policy::new("key", "API key", caller),
            address_limiter: RequestLimiter::new(address, MAX_REQUEST_BUCKETS),
            callers: RequestLimiter::new(caller, MAX_REQUEST_BUCKETS),
        })
    }
}

/// Whom an account's or a key's bucket counts: the two kinds hash apart, so
/// a key named like an account never shares its bucket.
#[derive(Hash)]
enum Caller<'a> {
    Account(&'a str),
    Key(&'a str),
}

/// Serves `request` with `serve` within its client address's limit, adding
/// the address policy's fields to the answer; a health check, or any
/// request while the limits are off, is served as it is.
pub fn around(
    app: &App,
    request: &mut Request<'_>,
    serve: impl FnOnce(&mut Request<'_>) -> Response,
) -> Response {
    let Some(limits) = &app.rate_limits else {
        return serve(request);
    };
    if HEALTH_PATHS.contains(&request.path()) {
        return serve(request);
    }
    let address = client_address(client_ip(app, request));
    let policy = &limits.address;
    match limits.address_limiter.take(address, Instant::now()) {
        Ok(level) => {
            let mut response = serve(request);
            for (name, value) in policy.headers(level) {
                response = response.with_header(name, value);
            }
            response
        }
        Err(refused) => policy
            .refused(app, refused, || match address {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("{v6}/64"),
            })
            .into_response(),
    }
}

/// The per-account or per-key check of a signed-in request, made by the
/// gate once `principal` is known: the fields for its answer, or the `429`.
pub fn admit(app: &App, principal: &Principal) -> Result<Headers, ApiError> {
    let Some(limits) = &app.rate_limits else {
        return Ok(Vec::new());
    };
    let (caller, policy) = match principal {
        Principal::Account { account, .. } => (Caller::Account(&account.username), &limits.account),
        Principal::Key { key, .. } => (Caller::Key(&key.name), &limits.key),
    };
    match limits.callers.take(caller, Instant::now()) {
        Ok(level) => Ok(policy.headers(level).into()),
        Err(refused) => Err(policy.refused(app, refused, || match principal {
            Principal::Account { account, .. } => account.username.clone(),
            Principal::Key { key, .. } => key.name.clone(),
        })),
    }
}

/// Who sent `request`, for every limit that counts per client: the socket
/// peer, or with `--trust-proxy` the last `X-Forwarded-For` hop when it is
/// an address. Requests built in memory (unit tests) have no peer and
/// share one.
pub fn client_ip(app: &App, request: &Request<'_>) -> IpAddr {
    let peer = request
        .peer()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| peer.ip());
    if !app.config.rate_limits.trust_proxy {
        return peer;
    }
    request
        .header_values("x-forwarded-for")
        .last()
        .and_then(|line| line.rsplit(',').next())
        .and_then(forwarded_ip)
        .unwrap_or(peer)
}

/// An `X-Forwarded-For` hop: an IP address, perhaps with a port
/// (`203.0.113.7:4711`, `[2001:db8::1]:4711`) or in brackets.
fn forwarded_ip(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| {
            let inner = hop.strip_prefix('[')?.strip_suffix(']')?;
            inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        })
}

/// `duration` in whole seconds, rounded up: a client that waits that long
/// finds the token there.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs_f64().ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_hops_are_addresses_with_or_without_a_port() {
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        for (hop, expected) in [
            ("203.0.113.7", Some(v4)),
            (" 203.0.113.7 ", Some(v4)),
            ("203.0.113.7:4711", Some(v4)),
            ("2001:db8::1", Some(v6)),
            ("[2001:db8::1]", Some(v6)),
            ("[2001:db8::1]:4711", Some(v6)),
            ("", None),
            ("unknown", None),
            ("203.0.113.7.1", None),
            ("_hidden", None),
        ] {
            assert_eq!(forwarded_ip(hop), expected, "{hop:?}");
        }
    }

    fn app_trusting_proxy(trust: bool) -> App {
        let mut app = crate::app::test_app();
        app.config.rate_limits.trust_proxy = trust;
        app
    }

    #[test]
    fn the_last_forwarded_hop_counts_only_behind_a_trusted_proxy() {
        let peer: SocketAddr = "192.0.2.1:5555".parse().unwrap();
        let forwarded = |app: &App, lines: &[&str]| {
            let request = lines
                .iter()
                .fold(Request::new("GET", "/").with_peer(peer), |request, line| {
                    request.with_header("X-Forwarded-For", line)
                });
            client_ip(app, &request).to_string()
        };
        let trusting = app_trusting_proxy(true);
        // The proxy appends to the last line; earlier hops are the client's.
        assert_eq!(forwarded(&trusting, &["1.1.1.1, 10.0.0.5"]), "10.0.0.5");
        assert_eq!(
            forwarded(&trusting, &["1.1.1.1", "2.2.2.2, 10.0.0.6"]),
            "10.0.0.6"
        );
        // No header, or a last hop that is no address: the peer.
        assert_eq!(forwarded(&trusting, &[]), "192.0.2.1");
        assert_eq!(forwarded(&trusting, &["10.0.0.5, garbage"]), "192.0.2.1");
        assert_eq!(forwarded(&trusting, &["10.0.0.5,"]), "192.0.2.1");
        let direct = app_trusting_proxy(false);
        assert_eq!(forwarded(&direct, &["10.0.0.5"]), "192.0.2.1");
    }

    #[test]
    fn the_fields_follow_the_draft() {
        let policy = Policy::new("address", "address", Limit::per_second(10, 20));
        assert_eq!(policy.field, "\"address\";q=20;w=2");
        let level = Level {
            remaining: 19,
            reset: Duration::from_millis(100),
        };
        let [(name, value), (name2, value2)] = policy.headers(level);
        assert_eq!(
            (name, value.as_ref()),
            ("RateLimit-Policy", "\"address\";q=20;w=2")
        );
        assert_eq!(
            (name2, value2.as_ref()),
            ("RateLimit", "\"address\";r=19;t=1")
        );
        // A window under a second is still one.
        let fast = Policy::new("key", "API key", Limit::per_second(100, 20));
        assert_eq!(fast.field, "\"key\";q=20;w=1");
        let refused = fast
            .refusal(Level {
                remaining: 0,
                reset: Duration::from_millis(10),
            })
            .into_response();
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.header("retry-after"), Some("1"));
        assert_eq!(refused.header("ratelimit"), Some("\"key\";r=0;t=1"));
        let body: serde_json::Value =
            serde_json::from_slice(refused.body_bytes().unwrap()).unwrap();
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with("too many requests from this API key"),
            "{message}"
        );
    }

    #[test]
    fn off_means_no_limiters() {
        let app = crate::app::test_app();
        assert!(app.rate_limits.is_none(), "loopback: off");
        let mut request = Request::new("GET", "/nope");
        let response = around(&app, &mut request, |_| Response::new(204));
        assert_eq!(
            (response.status(), response.header("ratelimit")),
            (204, None)
        );
    }
}

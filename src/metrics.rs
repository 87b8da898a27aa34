//! The server's metrics and their text for Prometheus (`GET /metrics`).
//!
//! Everything counted on the hot path is a plain atomic, never a lock: the
//! router bumps its matched route's [`RouteCounters`] (answers by status,
//! a latency histogram), the engine its [`crate::http::stats::Stats`], the
//! handlers the domain counters of [`Metrics`]. Reading them for a scrape
//! takes each figure on its own (relaxed loads), so a scrape during traffic
//! may see one counter a request ahead of another, as with any Prometheus
//! client.
//!
//! The text is the Prometheus text exposition format, version 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>), written
//! by hand by [`Text`]: per family one `# HELP` and one `# TYPE` line, then
//! its samples; label values escape `\`, `"` and line feeds, help text `\`
//! and line feeds; a histogram's `_bucket` samples count cumulatively up to
//! `le="+Inf"`, then `_sum` and `_count`. Names are `wren_*` in base units.

use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::alerts::RULES;
use crate::http::stats::{Cap, Stats};

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The latency histogram's bucket bounds, in nanoseconds (`le` is
/// inclusive). From 100 µs, since most of wren's answers take less than a
/// millisecond, to 10 s for uploads and slow object stores.
pub const LATENCY_BUCKETS_NANOS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// The statuses counted each in its own slot: those in the engine's status
/// table, which are the ones wren sends. Any other counts as `"other"`.
/// Sorted, for the binary search.
pub const STATUSES: [u16; 30] = [
    200, 201, 202, 204, 206, 301, 302, 304, 308, 400, 401, 403, 404, 405, 408, 409, 411, 412, 413,
    414, 415, 416, 417, 422, 429, 500, 501, 502, 503, 507,
];

/// The methods unmatched requests are counted by (a route's own method
/// labels its requests); any other counts as `"other"`.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// The `route` label of requests no route took (`404`, `405`, a malformed
/// path).
pub const UNMATCHED: &str = "unmatched";

/// The histogram slot of `elapsed`: the first bucket whose bound it does
/// not pass, or the last slot (`+Inf`).
pub fn latency_slot(elapsed: Duration) -> usize {
    let nanos = elapsed.as_nanos();
    LATENCY_BUCKETS_NANOS
        .iter()
        .position(|&bound| nanos <= u128::from(bound))
        .unwrap_or(LATENCY_BUCKETS_NANOS.len())
}

/// The slot of `status` in [`STATUSES`], or the last one (`"other"`).
fn status_slot(status: u16) -> usize {
    STATUSES.binary_search(&status).unwrap_or(STATUSES.len())
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// One route's answers by status and their latency, in fixed arrays of
/// atomics made when the route table is built.
#[derive(Debug, Default)]
pub struct RouteCounters {
    statuses: [AtomicU64; STATUSES.len() + 1],
    /// By slot, not cumulative: one increment per request.
    latency: [AtomicU64; LATENCY_BUCKETS_NANOS.len() + 1],
    latency_sum_nanos: AtomicU64,
}

impl RouteCounters {
    /// Counts one answer with `status` that took `elapsed`.
    pub fn record(&self, status: u16, elapsed: Duration) {
        add(&self.statuses[status_slot(status)], 1);
        add(&self.latency[latency_slot(elapsed)], 1);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        add(&self.latency_sum_nanos, nanos);
    }

    /// Requests answered, all statuses together.
    pub fn count(&self) -> u64 {
        self.latency.iter().map(get).sum()
    }
}

/// A route's counters with the labels they are reported under.
#[derive(Debug, Clone)]
pub struct RouteSeries {
    pub method: &'static str,
    /// The route's pattern, or [`UNMATCHED`].
    pub route: &'static str,
    pub counters: Arc<RouteCounters>,
}

/// The counters of unmatched requests, one per method of [`METHODS`] and
/// one for the rest.
#[derive(Debug, Default)]
pub struct Unmatched {
    by_method: [Arc<RouteCounters>; METHODS.len() + 1],
}

impl Unmatched {
    /// The counters `method`'s unmatched requests count in.
    pub fn counters(&self, method: &str) -> &RouteCounters {
        let slot = METHODS
            .iter()
            .position(|known| *known == method)
            .unwrap_or(METHODS.len());
        &self.by_method[slot]
    }

    /// Their series, labelled by method (`"other"` for the rest).
    pub fn series(&self) -> impl Iterator<Item = RouteSeries> + '_ {
        METHODS
            .iter()
            .chain(std::iter::once(&"other"))
            .zip(&self.by_method)
            .map(|(method, counters)| RouteSeries {
                method,
                route: UNMATCHED,
                counters: Arc::clone(counters),
            })
    }
}

/// What the application counts, beside the router's and the engine's
/// figures, which are attached once the server is bound and the route
/// table built.
#[derive(Debug, Default)]
pub struct Metrics {
    /// The engine's stats, from `Server::stats`.
    engine: OnceLock<Arc<Stats>>,
    /// The router's per-route counters, from `Router::series`.
    routes: OnceLock<Vec<RouteSeries>>,
    /// With TLS on: when the served certificate expires, in seconds since
    /// the Unix epoch (0 while there is none), from `SiteCertificates`.
    certificate_expiry: OnceLock<Arc<AtomicU64>>,
    events_processed: AtomicU64,
    /// By the position of the code in `alerts::RULES`.
    alerts_fired: [AtomicU64; RULES.len()],
    predictions_served: AtomicU64,
    bytes_stored: AtomicU64,
    bytes_served: AtomicU64,
    logins_failed: AtomicU64,
    logins_rate_limited: AtomicU64,
    rate_limited: AtomicU64,
}

impl Metrics {
    /// Reports the engine's `stats` from now on (the first call counts).
    pub fn attach_engine(&self, stats: Arc<Stats>) {
        let _ = self.engine.set(stats);
    }

    /// Reports the route table's `series` from now on (the first call
    /// counts).
    pub fn attach_routes(&self, series: Vec<RouteSeries>) {
        let _ = self.routes.set(series);
    }

    /// Reports TLS from now on: the handshakes, and the certificate expiry
    /// time kept in `expiry` (the first call counts).
    pub fn attach_tls(&self, expiry: Arc<AtomicU64>) {
        let _ = self.certificate_expiry.set(expiry);
    }

    /// An event stored, with the alert `codes` it fired.
    pub fn event_processed(&self, codes: &[u16]) {
        add(&self.events_processed, 1);
        for code in codes {
            if let Some(slot) = RULES.iter().position(|(rule, _)| rule == code) {
                add(&self.alerts_fired[slot], 1);
            }
        }
    }

    /// `n` predictions answered.
    pub fn predictions_served(&self, n: u64) {
        add(&self.predictions_served, n);
    }

    /// `n` bytes of files or images stored.
    pub fn bytes_stored(&self, n: u64) {
        add(&self.bytes_stored, n);
    }

    /// `n` bytes of stored files or images sent (the body as answered).
    pub fn bytes_served(&self, n: u64) {
        add(&self.bytes_served, n);
    }

    /// A login or sign-in with credentials that opened no account.
    pub fn login_failed(&self) {
        add(&self.logins_failed, 1);
    }

    /// A login or sign-in refused by the login limiter (`429`).
    pub fn login_rate_limited(&self) {
        add(&self.logins_rate_limited, 1);
    }

    /// A request refused by a request rate limit (`429`).
    pub fn rate_limited(&self) {
        add(&self.rate_limited, 1);
    }

    /// Every metric as the text format, `version` in the build info.
    pub fn render(&self, version: &str) -> String {
        let mut text = Text::default();
        text.family("wren_build_info", "gauge", "The running build; always 1.");
        text.sample("wren_build_info", &[("version", version)], 1);
        if let Some(routes) = self.routes.get() {
            render_routes(&mut text, routes);
        }
        if let Some(engine) = self.engine.get() {
            render_engine(&mut text, engine);
            if let Some(expiry) = self.certificate_expiry.get() {
                render_tls(&mut text, engine, get(expiry));
            }
        }
        text.counter(
            "wren_events_processed_total",
            "Transaction events stored (POST /event).",
            get(&self.events_processed),
        );
        text.family(
            "wren_alerts_fired_total",
            "counter",
            "Alert codes fired by stored events, by code.",
        );
        for ((code, _), fired) in RULES.iter().zip(&self.alerts_fired) {
            let code = code.to_string();
            text.sample("wren_alerts_fired_total", &[("code", &code)], get(fired));
        }
        text.counter(
            "wren_predictions_served_total",
            "Predictions answered, one per instance of a batch.",
            get(&self.predictions_served),
        );
        text.counter(
            "wren_stored_bytes_total",
            "Bytes of files and images stored.",
            get(&self.bytes_stored),
        );
        text.counter(
            "wren_served_bytes_total",
            "Bytes of stored files and images sent.",
            get(&self.bytes_served),
        );
        text.counter(
            "wren_logins_failed_total",
            "Logins and sign-ins whose credentials opened no account.",
            get(&self.logins_failed),
        );
        text.counter(
            "wren_logins_rate_limited_total",
            "Logins and sign-ins refused by the login limiter (429).",
            get(&self.logins_rate_limited),
        );
        text.counter(
            "wren_rate_limited_total",
            "Requests refused by a request rate limit (429).",
            get(&self.rate_limited),
        );
        text.finish()
    }
}

/// Requests by route, method and status, and their latency by route.
fn render_routes(text: &mut Text, routes: &[RouteSeries]) {
    // Routes nothing reached yet are left out: a table of forty routes
    // would otherwise add seven hundred lines of zeros.
    let reached: Vec<&RouteSeries> = routes.iter().filter(|s| s.counters.count() > 0).collect();
    text.family(
        "wren_http_requests_total",
        "counter",
        "Requests answered, by route pattern, method and status.",
    );
    for series in &reached {
        let counters = &series.counters;
        let statuses = STATUSES.iter().map(u16::to_string);
        for (status, count) in statuses
            .chain(std::iter::once("other".to_owned()))
            .zip(&counters.statuses)
        {
            let count = get(count);
            if count > 0 {
                let labels = [
                    ("route", series.route),
                    ("method", series.method),
                    ("status", status.as_str()),
                ];
                text.sample("wren_http_requests_total", &labels, count);
            }
        }
    }
    text.family(
        "wren_http_request_duration_seconds",
        "histogram",
        "Time from taking up a request to its answer (CORS and rate limits included), by route pattern and method.",
    );
    for series in &reached {
        let counters = &series.counters;
        let labels = [("route", series.route), ("method", series.method)];
        let mut cumulative = 0;
        for (slot, count) in counters.latency.iter().enumerate() {
            cumulative += get(count);
            let le = match LATENCY_BUCKETS_NANOS.get(slot) {
                Some(&nanos) => seconds(nanos).to_string(),
                None => "+Inf".to_owned(),
            };
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            text.sample(
                "wren_http_request_duration_seconds_bucket",
                &with_le,
                cumulative,
            );
        }
        let sum = seconds(get(&counters.latency_sum_nanos));
        text.sample("wren_http_request_duration_seconds_sum", &labels, sum);
        text.sample(
            "wren_http_request_duration_seconds_count",
            &labels,
            cumulative,
        );
    }
}

/// The engine's connections, requests in flight and refusals.
fn render_engine(text: &mut Text, engine: &Stats) {
    text.gauge(
        "wren_open_connections",
        "Connections open now, idle or busy.",
        engine.open_connections(),
    );
    text.gauge(
        "wren_requests_in_flight",
        "Requests being served now.",
        engine.in_flight(),
    );
    text.family(
        "wren_connections_refused_total",
        "counter",
        "Connections refused at a connection cap, by the setting of the cap.",
    );
    for cap in Cap::ALL {
        let labels = [("cap", cap.name())];
        text.sample(
            "wren_connections_refused_total",
            &labels,
            engine.refused(cap),
        );
    }
}

/// The TLS handshakes, and when the served certificate expires (no sample
/// while there is none yet).
fn render_tls(text: &mut Text, engine: &Stats, certificate_expiry: u64) {
    text.counter(
        "wren_tls_handshakes_total",
        "TLS handshakes completed.",
        engine.tls_handshakes(),
    );
    text.counter(
        "wren_tls_handshake_failures_total",
        "TLS handshakes that failed.",
        engine.tls_handshake_failures(),
    );
    text.family(
        "wren_tls_certificate_expiry_timestamp_seconds",
        "gauge",
        "When the served certificate stops being valid (its notAfter), in seconds since the Unix epoch.",
    );
    if certificate_expiry > 0 {
        text.sample(
            "wren_tls_certificate_expiry_timestamp_seconds",
            &[],
            certificate_expiry,
        );
    }
}

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// A text-format document being written.
#[derive(Default)]
pub struct Text {
    out: String,
}

impl Text {
    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample of the family begun last.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        for (i, (label, value)) in labels.iter().enumerate() {
            self.out.push(if i == 0 { '{' } else { ',' });
            self.out.push_str(label);
            self.out.push_str("=\"");
            for c in value.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        if !labels.is_empty() {
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A counter family of one sample without labels.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    /// A gauge family of one sample without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_the_first_bucket_it_does_not_pass() {
        assert_eq!(latency_slot(Duration::ZERO), 0);
        assert_eq!(latency_slot(Duration::from_micros(100)), 0);
        assert_eq!(latency_slot(Duration::from_nanos(100_001)), 1);
        assert_eq!(latency_slot(Duration::from_millis(1)), 3);
        assert_eq!(latency_slot(Duration::from_secs(10)), 15);
        assert_eq!(latency_slot(Duration::from_secs(11)), 16);
        assert_eq!(latency_slot(Duration::MAX), 16);
    }

    #[test]
    fn statuses_have_their_slots_and_the_rest_share_one() {
        assert!(STATUSES.is_sorted());
        assert_eq!(STATUSES[status_slot(404)], 404);
        assert_eq!(status_slot(418), STATUSES.len());
        assert_eq!(status_slot(599), STATUSES.len());
    }

    #[test]
    fn labels_and_help_are_escaped() {
        let mut text = Text::default();
        text.family("x_total", "counter", "back\\slash\nnew \"line\"");
        text.sample("x_total", &[("a", "q\"b\\n\nl"), ("b", "é")], 3);
        text.sample("x_total", &[], 1.5);
        assert_eq!(
            text.finish(),
            "# HELP x_total back\\\\slash\\nnew \"line\"\n\
             # TYPE x_total counter\n\
             x_total{a=\"q\\\"b\\\\n\\nl\",b=\"é\"} 3\n\
             x_total 1.5\n"
        );
    }

    #[test]
    fn routes_render_by_status_with_a_cumulative_histogram() {
        let reached = Arc::new(RouteCounters::default());
        reached.record(200, Duration::from_micros(50));
        reached.record(200, Duration::from_millis(2));
        reached.record(418, Duration::from_millis(20));
        let series = [
            RouteSeries {
                method: "GET",
                route: "/items/{id:int}",
                counters: reached,
            },
            RouteSeries {
                method: "POST",
                route: "/never",
                counters: Arc::default(),
            },
        ];
        let mut text = Text::default();
        render_routes(&mut text, &series);
        let labels = "route=\"/items/{id:int}\",method=\"GET\"";
        let mut expected = format!(
            "# HELP wren_http_requests_total Requests answered, by route pattern, method and status.\n\
             # TYPE wren_http_requests_total counter\n\
             wren_http_requests_total{{{labels},status=\"200\"}} 2\n\
             wren_http_requests_total{{{labels},status=\"other\"}} 1\n\
             # HELP wren_http_request_duration_seconds Time from taking up a request to its answer (CORS and rate limits included), by route pattern and method.\n\
             # TYPE wren_http_request_duration_seconds histogram\n"
        );
        let cumulative = [1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3];
        let bounds = [
            "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
            "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
        ];
        for (le, count) in bounds.iter().zip(cumulative) {
            expected.push_str(&format!(
                "wren_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {count}\n"
            ));
        }
        expected.push_str(&format!(
            "wren_http_request_duration_seconds_sum{{{labels}}} 0.02205\n\
             wren_http_request_duration_seconds_count{{{labels}}} 3\n"
        ));
        assert_eq!(text.finish(), expected);
    }

    #[test]
    fn the_domain_counters_render_with_every_alert_code() {
        let metrics = Metrics::default();
        metrics.event_processed(&[123, 1100]);
        metrics.event_processed(&[]);
        metrics.predictions_served(3);
        metrics.login_failed();
        let text = metrics.render("1.2.3");
        assert!(text.starts_with(
            "# HELP wren_build_info The running build; always 1.\n\
             # TYPE wren_build_info gauge\n\
             wren_build_info{version=\"1.2.3\"} 1\n"
        ));
        for line in [
            "wren_events_processed_total 2\n",
            "wren_alerts_fired_total{code=\"30\"} 0\n",
            "wren_alerts_fired_total{code=\"123\"} 1\n",
            "wren_alerts_fired_total{code=\"1100\"} 1\n",
            "wren_predictions_served_total 3\n",
            "wren_logins_failed_total 1\n",
            "wren_logins_rate_limited_total 0\n",
            "wren_rate_limited_total 0\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        // Nothing of the engine or the routes before they are attached.
        assert!(!text.contains("wren_open_connections"));
        assert!(!text.contains("wren_http_requests_total"));
    }
}

//! `GET /metrics` against the real binary, read with Prometheus's own text
//! parser (`prometheus_client`, through `tools/parse_metrics.py` in the
//! repository's venv: `make venv`): the counters move as requests are made,
//! a refused connection counts at its cap, the token guards it when set,
//! and `--no-metrics` removes it.

mod common;

use std::io::{BufReader, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Response, Server, read_response};
use serde_json::{Value, json};

/// The samples of one scrape, as `prometheus_client` parsed them.
struct Scrape {
    families: Value,
    samples: Vec<Value>,
}

impl Scrape {
    /// Parses a `/metrics` answer, which must be a `200` in the text format.
    fn of(response: &Response) -> Scrape {
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
        assert!(
            python.is_file(),
            "{} is missing: run `make venv` (this test reads /metrics with prometheus_client)",
            python.display()
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/parse_metrics.py");
        let mut child = Command::new(&python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tools/parse_metrics.py");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&response.body)
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "prometheus_client refused the text: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            response.text()
        );
        let parsed: Value = serde_json::from_slice(&output.stdout).unwrap();
        Scrape {
            families: parsed["families"].clone(),
            samples: parsed["samples"].as_array().unwrap().clone(),
        }
    }

    /// The value of the sample `name` whose labels include `labels`; `None`
    /// when there is none, a panic when there are several.
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Value> = self
            .samples
            .iter()
            .filter(|sample| {
                sample["name"] == name
                    && labels
                        .iter()
                        .all(|(label, value)| sample["labels"][label] == *value)
            })
            .collect();
        assert!(found.len() <= 1, "several samples {name} {labels:?}");
        found
            .first()
            .map(|sample| sample["value"].as_f64().unwrap())
    }

    /// Like [`Scrape::find`], for a sample that must be there.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
    }
}

fn scrape(server: &Server) -> Scrape {
    Scrape::of(&server.get("/metrics"))
}

const JSON: &str = "application/json";

#[test]
fn counters_move_as_requests_are_made() {
    let server = Server::start(&[]);
    let before = scrape(&server);
    assert_eq!(before.families["wren_http_requests"], "counter");
    assert_eq!(
        before.families["wren_http_request_duration_seconds"],
        "histogram"
    );
    assert_eq!(
        before.value("wren_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );
    let status = [("route", "/status"), ("method", "GET")];
    assert_eq!(before.find("wren_http_requests_total", &status), None);
    for metric in [
        "wren_events_processed_total",
        "wren_predictions_served_total",
        "wren_logins_failed_total",
    ] {
        assert_eq!(before.value(metric, &[]), 0.0, "{metric}");
    }

    for _ in 0..3 {
        assert_eq!(server.get("/status").status, 200);
    }
    assert_eq!(server.get("/no/such/route").status, 404);
    let withdrawal = json!({"type": "withdraw", "amount": "500", "user_id": 7, "time": 10});
    let event = server.post("/event", JSON, &withdrawal.to_string(), "");
    assert_eq!(
        event.json()["alert_codes"],
        json!([1100]),
        "{}",
        event.text()
    );
    assert_eq!(server.get("/predict/123/12/4").status, 200);
    let login = json!({"username": "nobody", "password": "wrong password"});
    assert_eq!(
        server.post("/login", JSON, &login.to_string(), "").status,
        401
    );
    // An idle connection held open while scraping.
    let idle = server.connect();

    let after = scrape(&server);
    let with_status = |code| [status[0], status[1], ("status", code)];
    assert_eq!(
        after.value("wren_http_requests_total", &with_status("200")),
        3.0
    );
    assert_eq!(
        after.value("wren_http_request_duration_seconds_count", &status),
        3.0
    );
    let all = [status[0], status[1], ("le", "+Inf")];
    assert_eq!(
        after.value("wren_http_request_duration_seconds_bucket", &all),
        3.0
    );
    let unmatched = [("route", "unmatched"), ("method", "GET"), ("status", "404")];
    assert_eq!(after.value("wren_http_requests_total", &unmatched), 1.0);
    let login_route = [("route", "/login"), ("method", "POST"), ("status", "401")];
    assert_eq!(after.value("wren_http_requests_total", &login_route), 1.0);
    // The scrape before this one counts too.
    let metrics = [("route", "/metrics"), ("method", "GET"), ("status", "200")];
    assert_eq!(after.value("wren_http_requests_total", &metrics), 1.0);

    assert_eq!(after.value("wren_events_processed_total", &[]), 1.0);
    assert_eq!(
        after.value("wren_alerts_fired_total", &[("code", "1100")]),
        1.0
    );
    assert_eq!(
        after.value("wren_alerts_fired_total", &[("code", "30")]),
        0.0
    );
    assert_eq!(after.value("wren_predictions_served_total", &[]), 1.0);
    assert_eq!(after.value("wren_logins_failed_total", &[]), 1.0);
    // The scrape itself is in flight, on a connection beside the idle one.
    assert!(after.value("wren_requests_in_flight", &[]) >= 1.0);
    assert!(after.value("wren_open_connections", &[]) >= 2.0);
    drop(idle);
}

#[test]
fn answers_given_before_routing_count_under_their_route() {
    let server = Server::start(&[
        "--rate-limiting",
        "on",
        "--rate-limit",
        "1",
        "--rate-burst",
        "2",
        "--cors-origin",
        "https://app.example",
    ]);
    let predict = "/predict/123/12/4";
    let statuses: Vec<u16> = (0..3).map(|_| server.get(predict).status).collect();
    assert_eq!(statuses, [200, 200, 429]);
    let preflight = server.request(
        "OPTIONS /event HTTP/1.1\r\nHost: test\r\nOrigin: https://app.example\r\n\
         Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(preflight.status, 204, "{}", preflight.text());

    let after = scrape(&server);
    let route = |route, method, status| [("route", route), ("method", method), ("status", status)];
    let predict_route = "/predict/{seller_available}/{month}/{customer_visiting_website}";
    assert_eq!(
        after.value(
            "wren_http_requests_total",
            &route(predict_route, "GET", "200")
        ),
        2.0
    );
    // The limiter's 429 is the route's answer as much as the handler's 200.
    assert_eq!(
        after.value(
            "wren_http_requests_total",
            &route(predict_route, "GET", "429")
        ),
        1.0
    );
    assert_eq!(
        after.value(
            "wren_http_requests_total",
            &route("/event", "OPTIONS", "204")
        ),
        1.0
    );
    assert_eq!(
        after.find(
            "wren_http_requests_total",
            &route("unmatched", "OPTIONS", "204")
        ),
        None
    );
    assert_eq!(after.value("wren_rate_limited_total", &[]), 1.0);
}

#[test]
fn a_refused_connection_counts_at_its_cap() {
    let server = Server::start(&["--max-connections-per-ip", "1"]);
    let held = server.connect();
    let refused = server.request("GET /status HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(refused.status, 503);
    // Another address is under its own cap.
    let mut other = server.connect_from(Ipv4Addr::new(127, 0, 0, 2));
    other
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let scraped = Scrape::of(&read_response(&mut BufReader::new(other), true));
    let per_ip = [("cap", "max_connections_per_ip")];
    assert_eq!(
        scraped.value("wren_connections_refused_total", &per_ip),
        1.0
    );
    let total = [("cap", "max_connections")];
    assert_eq!(scraped.value("wren_connections_refused_total", &total), 0.0);
    drop(held);
}

#[test]
fn the_token_guards_metrics_when_set() {
    let token = "a metrics token only prometheus knows";
    let server = Server::start_with(&[], |command| {
        command.env("WREN_METRICS_TOKEN", token);
    });
    let none = server.get("/metrics");
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"], "unauthorized");
    let wrong = server.get_with("/metrics", "Authorization: Bearer not the token\r\n");
    assert_eq!(wrong.status, 401);
    let right = server.get_with("/metrics", &format!("Authorization: Bearer {token}\r\n"));
    let scraped = Scrape::of(&right);
    let refused = [("route", "/metrics"), ("method", "GET"), ("status", "401")];
    assert_eq!(scraped.value("wren_http_requests_total", &refused), 2.0);
}

#[test]
fn no_metrics_removes_the_route_and_its_link() {
    let server = Server::start(&["--no-metrics"]);
    assert_eq!(server.get("/metrics").status, 404);
    assert_eq!(server.get("/").json()["links"].get("metrics"), None);
    let on = Server::start(&[]);
    assert_eq!(on.get("/").json()["links"]["metrics"], "/metrics");
}

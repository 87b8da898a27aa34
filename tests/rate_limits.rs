//! Request rate limits over real sockets: the `429` past the burst with
//! `Retry-After` and the draft's `RateLimit-Policy`/`RateLimit` fields,
//! health checks never limited, per-account and per-key limits across
//! addresses, `--trust-proxy` on and off, and the buckets' bound under a
//! flood of 100,000 addresses.
//!
//! Rates are 1 a second at least, so each test spends its burst within
//! well under a second of work, or asserts only what refilling cannot
//! change (a request refused is refused; a fresh bucket is full).

mod common;

use std::io::{BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::thread;
use std::time::Duration;

use common::{Response, Server, read_response};
use serde_json::json;

const JSON: &str = "application/json";

/// One connection kept alive across requests.
struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn new(stream: TcpStream) -> Client {
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    /// A GET with extra header lines (each ending in CRLF).
    fn get(&mut self, path: &str, headers: &str) -> Response {
        write!(
            self.writer,
            "GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n"
        )
        .unwrap();
        read_response(&mut self.reader, true)
    }

    /// GETs `path` until it is refused (at most `most` times); the refusal.
    fn until_refused(&mut self, path: &str, headers: &str, most: usize) -> Response {
        for _ in 0..most {
            let response = self.get(path, headers);
            if response.status == 429 {
                return response;
            }
            assert!(response.status < 500, "{}", response.text());
        }
        panic!("{path} was never refused in {most} requests");
    }
}

fn start(extra: &[&str]) -> Server {
    let mut args = vec!["--rate-limiting", "on"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Every value of the header `name`.
fn all<'r>(response: &'r Response, name: &str) -> Vec<&'r str> {
    response
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn forwarded(address: &str) -> String {
    format!("X-Forwarded-For: {address}\r\n")
}

fn bearer(credential: &str) -> String {
    format!("Authorization: Bearer {credential}\r\n")
}

#[test]
fn past_the_burst_a_429_with_retry_after_and_the_draft_s_fields() {
    let server = start(&["--rate-limit", "1", "--rate-burst", "5"]);
    assert!(
        server
            .wait_for_log("rate limits are on (--rate-limiting on)")
            .contains("1 requests a second per client address after a burst of 5")
    );
    let mut client = Client::new(server.connect());
    let first = client.get("/api/v1/model", "");
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("ratelimit-policy"),
        Some("\"address\";q=5;w=5")
    );
    // One token spent at one a second: full again in a second.
    assert_eq!(first.header("ratelimit"), Some("\"address\";r=4;t=1"));
    assert_eq!(first.header("retry-after"), None);
    // Requests no route matches count too, and carry the fields.
    let unmatched = client.get("/no/such/route", "");
    assert_eq!(unmatched.status, 404);
    assert!(unmatched.header("ratelimit").is_some());
    let refused = client.until_refused("/api/v1/model", "", 50);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"address\";q=5;w=5")
    );
    assert_eq!(refused.header("ratelimit"), Some("\"address\";r=0;t=1"));
    let body = refused.json();
    assert_eq!(body["status_code"], 429);
    assert_eq!(body["error"], "too_many_requests");
    let message = body["message"].as_str().unwrap();
    assert!(
        message
            .starts_with("too many requests from this address: at most 5 at once, then 1 a second"),
        "{message}"
    );
    // The moment the address went over is one warning in the log, not one
    // per refusal (those are in the access log).
    for _ in 0..3 {
        assert_eq!(client.get("/api/v1/model", "").status, 429);
    }
    let tripped = "rate limit: address 127.0.0.1 went over its limit of 5 at once, then 1 a second";
    let line = server.wait_for_log(tripped);
    assert!(line.contains("[warn] request "), "{line}");
    let trips = server.log().iter().filter(|l| l.contains(tripped)).count();
    assert_eq!(trips, 1, "{:#?}", server.log());
    // Another address has a bucket of its own.
    let mut other = Client::new(server.connect_from(Ipv4Addr::new(127, 0, 0, 2)));
    assert_eq!(
        other.get("/api/v1/model", "").header("ratelimit"),
        Some("\"address\";r=4;t=1")
    );
}

#[test]
fn health_checks_are_never_limited() {
    let server = start(&["--rate-limit", "1", "--rate-burst", "2"]);
    let mut client = Client::new(server.connect());
    assert_eq!(client.until_refused("/no/such/route", "", 50).status, 429);
    for _ in 0..50 {
        let status = client.get("/status", "");
        assert_eq!(status.status, 200);
        assert_eq!(status.header("ratelimit"), None);
        assert_eq!(status.header("ratelimit-policy"), None);
    }
    // The other health paths are exempt by name, served or not.
    for path in ["/livez", "/readyz"] {
        assert_ne!(client.get(path, "").status, 429, "{path}");
    }
}

#[test]
fn limits_are_off_on_loopback_unless_turned_on() {
    let server = Server::start(&[]);
    server.wait_for_log("rate limits are off: wren listens only on 127.0.0.1");
    let mut client = Client::new(server.connect());
    for _ in 0..100 {
        let response = client.get("/api/v1/model", "");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("ratelimit"), None);
    }
}

#[test]
fn an_account_is_limited_across_addresses() {
    let server = start(&[
        "--account-rate-limit",
        "1",
        "--account-rate-burst",
        "5",
        "--user",
        "ann:ann-password",
    ]);
    let body = json!({"login": "ann", "password": "ann-password"}).to_string();
    let signed_in = server.post("/api/sign_in", JSON, &body, "");
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
    // An open route carries the address policy only.
    assert_eq!(
        all(&signed_in, "ratelimit-policy"),
        ["\"address\";q=20;w=2"]
    );
    let token = signed_in.json()["token"].as_str().unwrap().to_owned();
    let ann = bearer(&token);

    let mut client = Client::new(server.connect());
    let first = client.get("/api/v1/account", &ann);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        all(&first, "ratelimit-policy"),
        ["\"account\";q=5;w=5", "\"address\";q=20;w=2"]
    );
    let limits = all(&first, "ratelimit");
    assert_eq!(limits[0], "\"account\";r=4;t=1");
    assert!(limits[1].starts_with("\"address\";r="), "{limits:?}");
    let refused = client.until_refused("/api/v1/account", &ann, 50);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(all(&refused, "ratelimit")[0], "\"account\";r=0;t=1");
    let message = refused.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("too many requests from this account"),
        "{message}"
    );
    server.wait_for_log("rate limit: account ann went over its limit of 5 at once");
    // The same account from another address: the same bucket, though that
    // address has its own, untouched one.
    let mut elsewhere = Client::new(server.connect_from(Ipv4Addr::new(127, 0, 0, 3)));
    let refused = elsewhere.get("/api/v1/account", &ann);
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(
        all(&refused, "ratelimit")[1],
        "\"address\";r=19;t=1",
        "the address's own bucket"
    );
    // Open routes take no account token.
    assert_eq!(elsewhere.get("/api/v1/model", &ann).status, 200);
}

#[test]
fn an_api_key_is_limited_apart_from_its_account() {
    let server = start(&[
        "--account-rate-limit",
        "1",
        "--account-rate-burst",
        "5",
        "--user",
        "ann:ann-password",
    ]);
    let body = json!({"login": "ann", "password": "ann-password"}).to_string();
    let token = server.post("/api/sign_in", JSON, &body, "").json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let key_body = json!({"name": "ann-sync", "scopes": ["files"]}).to_string();
    let created = server.post("/api/v1/keys", JSON, &key_body, &bearer(&token));
    assert_eq!(created.status, 201, "{}", created.text());
    let key = format!("X-API-Key: {}\r\n", created.json()["key"].as_str().unwrap());
    let mut client = Client::new(server.connect());
    // The account spends its bucket; its key still has its own.
    client.until_refused("/api/v1/account", &bearer(&token), 50);
    let first = client.get("/api/files_keys", &key);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(all(&first, "ratelimit-policy")[0], "\"key\";q=5;w=5");
    assert_eq!(all(&first, "ratelimit")[0], "\"key\";r=4;t=1");
    let refused = client.until_refused("/api/files_keys", &key, 50);
    assert_eq!(refused.header("retry-after"), Some("1"));
    let message = refused.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("too many requests from this API key"),
        "{message}"
    );
    // A refused caller stays refused, even on a route it may not call: its
    // every request counts.
    assert_eq!(client.get("/api/v1/keys", &key).status, 429);
}

#[test]
fn without_trust_proxy_forwarded_addresses_are_ignored() {
    let server = start(&["--rate-limit", "1", "--rate-burst", "3"]);
    let mut client = Client::new(server.connect());
    let mut refused = None;
    for n in 1..50 {
        let response = client.get("/api/v1/model", &forwarded(&format!("10.0.0.{n}")));
        if response.status == 429 {
            refused = Some(n);
            break;
        }
    }
    assert!(
        refused.is_some(),
        "every forwarded address counted as the peer"
    );
}

#[test]
fn with_trust_proxy_the_last_forwarded_hop_is_the_client() {
    let server = start(&["--rate-limit", "1", "--rate-burst", "3", "--trust-proxy"]);
    server.wait_for_log("the last X-Forwarded-For hop (--trust-proxy)");
    let mut client = Client::new(server.connect());
    // Each forwarded client has its own bucket, on one connection.
    for n in 1..=30 {
        let response = client.get("/api/v1/model", &forwarded(&format!("10.0.0.{n}")));
        assert_eq!(response.status, 200);
        assert_eq!(response.header("ratelimit"), Some("\"address\";r=2;t=1"));
    }
    // Hops before the last are the client's own words: they change nothing.
    let spoofing = |n: u8| forwarded(&format!("192.0.2.{n}, 10.1.1.1"));
    let refused = client.until_refused("/api/v1/model", &spoofing(1), 50);
    assert_eq!(refused.status, 429);
    assert_eq!(client.get("/api/v1/model", &spoofing(2)).status, 429);
    // A port after the address is the same client.
    assert_eq!(
        client
            .get("/api/v1/model", &forwarded("10.1.1.1:4711"))
            .status,
        429
    );
    // A last hop that is no address counts against the peer, whatever the
    // garbage: it cannot open a fresh bucket.
    client.until_refused("/api/v1/model", &forwarded("unknown"), 50);
    assert_eq!(
        client
            .get("/api/v1/model", &forwarded("10.2.2.2, nonsense"))
            .status,
        429
    );
    assert_eq!(
        client.get("/api/v1/model", "").status,
        429,
        "the peer's bucket"
    );
    assert_eq!(
        client.get("/api/v1/model", &forwarded("10.3.3.3")).status,
        200
    );
}

/// Refused, or served from a bucket of 1000 that holds only the few tokens
/// (one a second) that came back since it was spent.
fn assert_spent(response: &Response) {
    let limit = response.header("ratelimit").unwrap_or_default();
    let remaining: u64 = limit
        .split(";r=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no remaining count in {limit:?}"));
    assert!(
        response.status == 429 || remaining < 100,
        "{} {limit}",
        response.status
    );
}

/// Sends one GET per address in `addresses` over one kept-alive
/// connection, pipelined in batches; every answer must be served.
fn flood(server: &Server, addresses: std::ops::Range<u32>) {
    const BATCH: u32 = 64;
    let mut client = Client::new(server.connect());
    let mut next = addresses.start;
    while next < addresses.end {
        let end = (next + BATCH).min(addresses.end);
        let mut requests = String::new();
        for n in next..end {
            let [_, b, c, d] = n.to_be_bytes();
            requests.push_str(&format!(
                "GET /no/such/route HTTP/1.1\r\nHost: test\r\nX-Forwarded-For: 10.{b}.{c}.{d}\r\n\r\n"
            ));
        }
        client.writer.write_all(requests.as_bytes()).unwrap();
        for _ in next..end {
            let response = read_response(&mut client.reader, true);
            assert_eq!(response.status, 404, "{}", response.text());
        }
        next = end;
    }
}

#[test]
fn a_flood_of_100k_addresses_keeps_memory_bounded_and_the_limits_working() {
    // A burst that takes longer to refill than the test runs: a bucket that
    // is full after the flood was dropped and made anew.
    let server = start(&["--rate-limit", "1", "--rate-burst", "1000", "--trust-proxy"]);
    let idle = forwarded("198.51.100.1");
    let busy = forwarded("198.51.100.2");
    let mut client = Client::new(server.connect());
    // The idle client spends a little and goes quiet; the busy one spends
    // its burst and keeps sending while refused.
    assert_eq!(client.get("/api/v1/model", &idle).status, 200);
    client.until_refused("/api/v1/model", &busy, 1100);
    let before = server.proc_status("VmRSS");

    thread::scope(|scope| {
        for part in 0..4u32 {
            let server = &server;
            scope.spawn(move || {
                for start in (part * 25_000..(part + 1) * 25_000).step_by(5_000) {
                    flood(server, start..start + 5_000);
                }
            });
        }
        // Meanwhile the busy client keeps asking: at one token a second it
        // is served now and then, but never gets its burst back.
        let mut busy_client = Client::new(server.connect());
        for _ in 0..40 {
            assert_spent(&busy_client.get("/api/v1/model", &busy));
            thread::sleep(Duration::from_millis(50));
        }
    });

    let full = server.proc_status("VmRSS");
    let grown_kib = full.saturating_sub(before);
    // The flood fills the address limiter to its bound: 57,344 buckets in
    // 16 tables of 8,192 slots plus their order, about 9 MiB; the rest is
    // allocator slack of the threads that served it (about 10 MiB in all
    // when this was written). That the bound was reached, and room made
    // by dropping the stalest, is what the idle client shows below.
    assert!(
        grown_kib < 16 * 1024,
        "RSS grew by {grown_kib} KiB over the flood ({before} -> {full} KiB)"
    );
    // Once full, it stays that size: 50,000 more new addresses, which
    // would take about 4 MiB as buckets of their own, leave it as it was.
    thread::scope(|scope| {
        for part in 0..4u32 {
            let server = &server;
            let start = 100_000 + part * 12_500;
            scope.spawn(move || flood(server, start..start + 12_500));
        }
    });
    let after = server.proc_status("VmRSS");
    assert!(
        after.saturating_sub(full) < 1024,
        "RSS grew from {full} KiB to {after} KiB over a second flood"
    );
    let mut client = Client::new(server.connect());
    // The idle client's bucket was the stalest: dropped, it starts full.
    assert_eq!(
        client.get("/api/v1/model", &idle).header("ratelimit"),
        Some("\"address\";r=999;t=1")
    );
    // The busy client kept its empty bucket.
    assert_spent(&client.get("/api/v1/model", &busy));
    // A new client is served from a full bucket, and health checks pass.
    assert_eq!(
        client
            .get("/api/v1/model", &forwarded("203.0.113.9"))
            .header("ratelimit"),
        Some("\"address\";r=999;t=1")
    );
    assert_eq!(client.get("/status", &busy).status, 200);
}

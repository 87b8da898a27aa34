//! Login and sign-up limits and the password-hashing pool, over real
//! sockets: clients on several loopback addresses (127.0.0.x all reach the
//! server on 127.0.0.1), and many at once.

mod common;

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::Ipv4Addr;
use std::sync::Barrier;
use std::thread;

use common::{Response, Server, read_response};

const RIGHT: &str = "correct horse";

fn loopback(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// `login` and `password` as JSON to `path`, on a connection from `from`.
fn credentials_from(
    server: &Server,
    from: Ipv4Addr,
    path: &str,
    login: &str,
    password: &str,
) -> Response {
    let body = format!(r#"{{"login":"{login}","password":"{password}"}}"#);
    let mut stream = server.connect_from(from);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut BufReader::new(stream), true)
}

fn sign_up_from(server: &Server, from: Ipv4Addr, login: &str, password: &str) -> Response {
    credentials_from(server, from, "/api/sign_up", login, password)
}

/// The seconds of a `Retry-After`, which a `429` or `503` must carry.
fn retry_after(response: &Response) -> u64 {
    response
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After on {}: {}", response.status, response.text()))
        .parse()
        .unwrap()
}

/// How many answers had each status.
fn tally(statuses: impl IntoIterator<Item = u16>) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for status in statuses {
        *counts.entry(status).or_default() += 1;
    }
    counts
}

#[test]
fn two_hundred_concurrent_sign_ups_keep_memory_bounded() {
    const SIGN_UPS: usize = 200;
    const MAX_PEAK_KIB: u64 = 200 * 1024;
    let server = Server::start(&[]);
    let start = Barrier::new(SIGN_UPS);
    let answers: Vec<Response> = thread::scope(|scope| {
        let sign_ups: Vec<_> = (0..SIGN_UPS)
            .map(|n| {
                let (server, start) = (&server, &start);
                scope.spawn(move || {
                    start.wait();
                    sign_up_from(server, loopback(1), &format!("user{n}"), RIGHT)
                })
            })
            .collect();
        sign_ups.into_iter().map(|s| s.join().unwrap()).collect()
    });
    let counts = tally(answers.iter().map(|r| r.status));
    let peak = server.proc_status("VmHWM");
    println!(
        "{SIGN_UPS} concurrent sign-ups: {counts:?}; server peak RSS {} MiB",
        peak / 1024
    );
    assert!(
        counts.keys().all(|s| [201, 429, 503].contains(s)),
        "{counts:?}"
    );
    assert!(counts.contains_key(&201), "{counts:?}");
    for refused in answers.iter().filter(|r| r.status != 201) {
        assert!(retry_after(refused) >= 1);
    }
    assert!(
        peak < MAX_PEAK_KIB,
        "peak RSS {peak} KiB, over {MAX_PEAK_KIB} KiB"
    );
}

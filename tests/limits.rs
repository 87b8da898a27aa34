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

const WRONG: &str = "wrong horse";
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

fn sign_in_from(server: &Server, from: Ipv4Addr, login: &str, password: &str) -> Response {
    credentials_from(server, from, "/api/sign_in", login, password)
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
fn ten_wrong_passwords_from_one_address_leave_the_owner_free_from_another() {
    let server = Server::start(&[]);
    let (attacker, owner) = (loopback(1), loopback(2));
    assert_eq!(sign_up_from(&server, owner, "ann", RIGHT).status, 201);
    for attempt in 1..=10 {
        let response = sign_in_from(&server, attacker, "ann", WRONG);
        assert_eq!(response.status, 401, "wrong password {attempt}");
    }
    // The attacker's address is done with ann, even with the right password.
    let limited = sign_in_from(&server, attacker, "ann", RIGHT);
    assert_eq!(limited.status, 429);
    assert!(retry_after(&limited) >= 1);
    // The owner, from their own address, is not.
    let owner_in = sign_in_from(&server, owner, "ann", RIGHT);
    assert_eq!(owner_in.status, 200, "{}", owner_in.text());
}

#[test]
fn a_guesser_spread_over_addresses_is_delayed_per_username() {
    // One username from one address: 2 failures; one address: 4; one
    // username across addresses: 10.
    let server = Server::start(&["--login-burst", "2", "--login-rate", "1"]);
    assert_eq!(sign_up_from(&server, loopback(1), "ann", RIGHT).status, 201);
    assert_eq!(sign_up_from(&server, loopback(1), "bob", RIGHT).status, 201);
    // Two guesses from each address: never enough to empty a (username,
    // address) or an address bucket, so a 429 can only be ann's own.
    let mut answers = Vec::new();
    for last in 2..=9 {
        for _ in 0..2 {
            answers.push(sign_in_from(&server, loopback(last), "ann", WRONG));
        }
    }
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    let limited = answers
        .iter()
        .find(|r| r.status == 429)
        .unwrap_or_else(|| panic!("no 429 after five bursts: {statuses:?}"));
    assert!(retry_after(limited) >= 1);
    assert!(
        statuses.iter().all(|s| [401, 429].contains(s)),
        "{statuses:?}"
    );
    // The addresses themselves are not blocked: bob signs in from one.
    assert_eq!(sign_in_from(&server, loopback(2), "bob", RIGHT).status, 200);
}

#[test]
fn concurrent_wrong_guesses_from_one_address_evaluate_no_more_than_the_burst() {
    const GUESSES: usize = 20;
    // Enough workers that the guesses really run at once.
    let server = Server::start(&["--login-burst", "3", "--login-rate", "1", "--threads", "24"]);
    assert_eq!(sign_up_from(&server, loopback(1), "ann", RIGHT).status, 201);
    let start = Barrier::new(GUESSES);
    let statuses: Vec<u16> = thread::scope(|scope| {
        let guesses: Vec<_> = (0..GUESSES)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    sign_in_from(&server, loopback(1), "ann", WRONG).status
                })
            })
            .collect();
        guesses.into_iter().map(|g| g.join().unwrap()).collect()
    });
    let counts = tally(statuses);
    println!("{GUESSES} concurrent wrong guesses, burst 3: {counts:?}");
    let evaluated = counts.get(&401).copied().unwrap_or(0);
    assert!((1..=3).contains(&evaluated), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&(GUESSES - evaluated)), "{counts:?}");
}

#[test]
fn a_sign_up_flood_gets_429_after_the_burst_and_another_address_still_signs_up() {
    let server = Server::start(&["--signup-burst", "3", "--signup-rate", "1"]);
    let flood = loopback(1);
    // Invalid sign-ups cost nothing and count for nothing.
    for n in 0..5 {
        let short = sign_up_from(&server, flood, &format!("short{n}"), "pw");
        assert_eq!(short.status, 400);
    }
    for n in 0..2 {
        let created = sign_up_from(&server, flood, &format!("user{n}"), RIGHT);
        assert_eq!(created.status, 201, "sign-up {n}: {}", created.text());
    }
    // A taken login counts too: its password was hashed.
    assert_eq!(sign_up_from(&server, flood, "user0", RIGHT).status, 409);
    let limited = sign_up_from(&server, flood, "user3", RIGHT);
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert!((1..=3600).contains(&retry_after(&limited)));
    assert!(
        limited.json()["message"]
            .as_str()
            .unwrap()
            .contains("sign-ups")
    );
    // Nothing was stored for the refused one; another address signs up.
    assert_eq!(
        sign_in_from(&server, loopback(2), "user3", RIGHT).status,
        401
    );
    assert_eq!(
        sign_up_from(&server, loopback(2), "user3", RIGHT).status,
        201
    );
    assert_eq!(
        sign_in_from(&server, loopback(2), "user3", RIGHT).status,
        200
    );
}

#[test]
fn two_hundred_concurrent_sign_ups_keep_memory_bounded() {
    const SIGN_UPS: usize = 200;
    const MAX_PEAK_KIB: u64 = 200 * 1024;
    // A burst that lets every sign-up through to the hashers, and no cap on
    // connections from one address: the pool alone must bound the memory.
    let server = Server::start(&[
        "--signup-burst",
        "1000",
        "--signup-rate",
        "1000",
        "--max-connections-per-ip",
        "0",
    ]);
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

//! Three wren instances behind "one address": on different ports, sharing
//! one PostgreSQL database (`--database-url`) and one Garage bucket
//! (`--storage s3`), with clients picking an instance at random for each
//! request. Whatever instance answers, it is one server: accounts, tokens
//! and their revocation, API keys, files, each account's quota (held by
//! reservations in the database while uploads are in flight), and each
//! user's events, judged in one order. One instance is killed with SIGKILL
//! under load; nothing it acknowledged is lost and the others serve on.
//!
//! Needs the servers `scripts/with-postgres.sh` and
//! `scripts/with-garage.sh` start (`make test` runs it so); without them it
//! says so and passes, unless `WREN_TEST_POSTGRES` or `WREN_TEST_S3` is
//! `required`.
#![cfg(feature = "postgres")]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::events::{event, fastrand_like, history, workload};
use common::postgres::{fresh_database, url_of};
use common::{Response, Server};
use serde_json::{Value, json};

const JSON: &str = "application/json";
const SECRET: &str = "one secret for every instance, 32+ bytes";
const ADMIN: &str = "root:a long admin password";
const QUOTA: u64 = 1_000_000;
const INSTANCES: usize = 3;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The Garage node's settings as `scripts/with-garage.sh` exports them.
struct Garage {
    endpoint: String,
    region: String,
    bucket: String,
    key_id: String,
    secret: String,
}

fn garage() -> Option<Garage> {
    let Some(endpoint) = var("S3_ENDPOINT") else {
        assert!(
            var("WREN_TEST_S3").as_deref() != Some("required"),
            "WREN_TEST_S3=required, but S3_ENDPOINT is not set"
        );
        eprintln!("skipped: S3_ENDPOINT is not set (run through scripts/with-garage.sh)");
        return None;
    };
    let need = |name: &str| var(name).unwrap_or_else(|| panic!("S3_ENDPOINT set, {name} not"));
    Some(Garage {
        endpoint,
        region: var("S3_REGION").unwrap_or_else(|| "us-east-1".into()),
        bucket: need("S3_BUCKET"),
        key_id: need("S3_ACCESS_KEY_ID"),
        secret: need("S3_SECRET_ACCESS_KEY"),
    })
}

/// The instances, each with its own data folder, on the shared database
/// and bucket prefix.
fn cluster(database_url: &str, garage: &Garage) -> Vec<Server> {
    let prefix = format!("wren-scale-out-{}/", std::process::id());
    let quota = QUOTA.to_string();
    (0..INSTANCES)
        .map(|_| {
            let args = [
                "--storage",
                "s3",
                "--s3-endpoint",
                &garage.endpoint,
                "--s3-region",
                &garage.region,
                "--s3-bucket",
                &garage.bucket,
                "--s3-prefix",
                &prefix,
                "--account-quota",
                &quota,
                "--admin",
                ADMIN,
                "--max-connections-per-ip",
                "0",
            ];
            Server::start_with(&args, |command| {
                command
                    .env("DATABASE_URL", database_url)
                    .env("WREN_SECRET", SECRET)
                    .env("S3_ACCESS_KEY_ID", &garage.key_id)
                    .env("S3_SECRET_ACCESS_KEY", &garage.secret);
            })
        })
        .collect()
}

/// One request on its own connection, or `None` when the instance did not
/// answer (killed, say): the test's clients must tell "refused" from "no
/// answer", which the harness's client (it panics) does not.
fn try_call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &str,
    body: &str,
) -> Option<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: wren\r\nConnection: close\r\n{headers}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    // Whole (the server closed), so the harness's reader cannot block.
    let complete = raw.windows(4).any(|w| w == b"\r\n\r\n");
    complete.then(|| common::read_response(&mut &raw[..], method != "HEAD"))
}

fn call(server: &Server, method: &str, target: &str, headers: &str, body: &str) -> Response {
    try_call(server.addr, method, target, headers, body)
        .unwrap_or_else(|| panic!("{method} {target}: no answer from {}", server.addr))
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

fn sign_in(server: &Server, login: &str, password: &str) -> String {
    let body = json!({"login": login, "password": password}).to_string();
    let signed_in = call(server, "POST", "/api/sign_in", &json_type(), &body);
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
    bearer(signed_in.json()["token"].as_str().unwrap())
}

fn json_type() -> String {
    format!("Content-Type: {JSON}\r\n")
}

/// A file's bytes, different per seed (text, so the harness can send it).
fn contents(seed: u64, len: usize) -> String {
    let mut rng = fastrand_like(seed | 1);
    (0..len)
        .map(|_| char::from(b'a' + (rng() % 26) as u8))
        .collect()
}

#[test]
fn three_instances_are_one_server() {
    let (Some(database), Some(garage)) = (fresh_database("scale_out"), garage()) else {
        return;
    };
    let database_url = url_of(&database);
    let servers = cluster(&database_url, &garage);
    let mut pick = {
        let mut rng = fastrand_like(7);
        move || (rng() % INSTANCES as u64) as usize
    };

    // An account made through one instance; its token, issued by another,
    // works on all until revoked through one.
    let body = json!({"login": "ann", "password": "correct horse"}).to_string();
    let made = call(
        &servers[pick()],
        "POST",
        "/api/sign_up",
        &json_type(),
        &body,
    );
    assert_eq!(made.status, 201, "{}", made.text());
    let ann = sign_in(&servers[pick()], "ann", "correct horse");
    for server in &servers {
        assert_eq!(call(server, "GET", "/api/files_keys", &ann, "").status, 200);
    }
    let session = sign_in(&servers[pick()], "ann", "correct horse");
    assert_eq!(
        call(&servers[pick()], "POST", "/api/logout", &session, "").status,
        200
    );
    for server in &servers {
        assert_eq!(
            call(server, "GET", "/api/files_keys", &session, "").status,
            401
        );
    }

    // A file written through one instance is read, listed and deleted
    // through the others.
    let file = contents(1, 70_000);
    let put = call(&servers[0], "PUT", "/api/file/notes/a.txt", &ann, &file);
    assert_eq!(put.status, 201, "{}", put.text());
    for server in &servers[1..] {
        let got = call(server, "GET", "/api/file/notes/a.txt", &ann, "");
        assert_eq!(got.status, 200, "{}", got.text());
        assert!(
            got.body == file.as_bytes(),
            "the bytes read elsewhere differ"
        );
    }
    let listed = call(&servers[2], "GET", "/api/files_keys", &ann, "");
    assert_eq!(listed.json(), json!(["notes/a.txt"]));
    let deleted = call(&servers[1], "DELETE", "/api/file/notes/a.txt", &ann, "");
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(
        call(&servers[0], "GET", "/api/file/notes/a.txt", &ann, "").status,
        404
    );

    // The quota holds across instances: two uploads that each fit, sent
    // at once through two instances (each instance's own ledger lets its
    // one through), end with one stored and one refused.
    let big = contents(2, 600_000);
    let racing: Vec<Response> = thread::scope(|scope| {
        let uploads: Vec<_> = [(1, "race/one"), (2, "race/two")]
            .into_iter()
            .map(|(at, key)| {
                let (server, ann, big) = (&servers[at], &ann, &big);
                scope.spawn(move || call(server, "PUT", &format!("/api/file/{key}"), ann, big))
            })
            .collect();
        uploads.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut statuses: Vec<u16> = racing.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [201, 507],
        "{:?}",
        racing.iter().map(Response::text).collect::<Vec<_>>()
    );
    let refused = racing.iter().find(|r| r.status == 507).unwrap();
    assert_eq!(
        refused.json()["error"],
        "quota_exceeded",
        "{}",
        refused.text()
    );
    let third = call(&servers[0], "PUT", "/api/file/race/three", &ann, &big);
    assert_eq!(third.status, 507, "{}", third.text());
    let account = call(&servers[pick()], "GET", "/api/v1/account", &ann, "");
    assert_eq!(account.status, 200, "{}", account.text());
    assert_eq!(account.json()["bytes_used"], 600_000, "{}", account.text());
    assert_eq!(account.json()["files"], 1, "{}", account.text());
    // Each write's reservation went with its commit (or its refusal).
    let mut db = wren::postgres::Client::connect(&database, Duration::from_secs(10)).unwrap();
    let left = db
        .query("SELECT count(*) FROM s3_reservations", &[])
        .unwrap();
    assert_eq!(left[0].i64(0).unwrap(), 0, "reservations left behind");

    // An API key made through one instance works on all until deleted
    // through one.
    let root = sign_in(&servers[pick()], "root", "a long admin password");
    let key_body = json!({"name": "feed", "scopes": ["alerts"]}).to_string();
    let made = call(
        &servers[pick()],
        "POST",
        "/api/v1/keys",
        &format!("{root}{}", json_type()),
        &key_body,
    );
    assert_eq!(made.status, 201, "{}", made.text());
    let key = format!("X-API-Key: {}\r\n", made.json()["key"].as_str().unwrap());
    let profile = "/api/v1/users/3/alert-profile";
    for server in &servers {
        assert_eq!(call(server, "GET", profile, &key, "").status, 200);
    }
    let gone = call(&servers[pick()], "DELETE", "/api/v1/keys/feed", &root, "");
    assert_eq!(gone.status, 200, "{}", gone.text());
    for server in &servers {
        assert_eq!(call(server, "GET", profile, &key, "").status, 401);
    }

    events_survive_an_instance_killed_under_load(servers, &root);
}

/// 8 clients send 20 users' events, each to an instance picked at random;
/// a third of the way in, one instance is killed with SIGKILL. Every event
/// acknowledged is stored with the codes it was answered with, nothing
/// else is stored but events whose answer was lost with the instance, and
/// replaying each user's stored history one by one on a fresh SQLite
/// server gives the same codes.
fn events_survive_an_instance_killed_under_load(mut servers: Vec<Server>, root: &str) {
    const CLIENTS: usize = 8;
    let users_events = workload(20, 25);
    let total: usize = users_events.iter().map(Vec::len).sum();
    let mut queues: Vec<Vec<Value>> = vec![Vec::new(); CLIENTS];
    for (n, event) in users_events.iter().flatten().enumerate() {
        queues[n % CLIENTS].push(event.clone());
    }
    for queue in &mut queues {
        queue.sort_by_key(|e| e["time"].as_i64().unwrap());
    }
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let victim = INSTANCES - 1;
    let killed = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    // (event, Some(answer)) or (event, None): no answer, so it may or may
    // not be stored.
    let outcomes: Mutex<Vec<(Value, Option<Response>)>> = Mutex::new(Vec::new());
    let victim_server = &servers[victim];
    thread::scope(|scope| {
        for (client, queue) in queues.iter().enumerate() {
            let (addrs, killed, answered, outcomes) = (&addrs, &killed, &answered, &outcomes);
            scope.spawn(move || {
                let mut rng = fastrand_like(client as u64 + 11);
                for event in queue {
                    let alive = if killed.load(Ordering::SeqCst) {
                        INSTANCES - 1
                    } else {
                        INSTANCES
                    };
                    let at = addrs[(rng() % alive as u64) as usize];
                    let body = event.to_string();
                    let answer = try_call(at, "POST", "/event", &json_type(), &body);
                    answered.fetch_add(1, Ordering::SeqCst);
                    outcomes.lock().unwrap().push((event.clone(), answer));
                }
            });
        }
        while answered.load(Ordering::SeqCst) < total / 3 {
            thread::sleep(Duration::from_millis(2));
        }
        victim_server.signal(libc::SIGKILL);
        killed.store(true, Ordering::SeqCst);
    });
    assert!(servers[victim].wait_exit(Duration::from_secs(10)).is_some());
    let survivors = &servers[..victim];
    for server in survivors {
        assert_eq!(call(server, "GET", "/status", "", "").status, 200);
    }

    let outcomes = Arc::new(outcomes.into_inner().unwrap());
    let mut acknowledged: HashMap<i64, Vec<Value>> = HashMap::new();
    let mut unanswered: HashMap<i64, usize> = HashMap::new();
    for (event, answer) in outcomes.iter() {
        let user = event["user_id"].as_i64().unwrap();
        match answer.as_ref().map(|r| r.status) {
            Some(200) => {
                let mut stored = event.clone();
                stored["alert_codes"] = answer.as_ref().unwrap().json()["alert_codes"].clone();
                acknowledged.entry(user).or_default().push(stored);
            }
            Some(409) => {}
            Some(other) => panic!("{other} for {event}: {}", answer.as_ref().unwrap().text()),
            None => *unanswered.entry(user).or_default() += 1,
        }
    }
    let lost_answers: usize = unanswered.values().sum();
    eprintln!(
        "events: {total}, acknowledged: {}, unanswered (the killed instance's): {lost_answers}",
        acknowledged.values().map(Vec::len).sum::<usize>()
    );

    let replay = Server::start(&[]);
    let mut fired = 0;
    for user in 100..120 {
        let stored = history(&survivors[user as usize % victim], root, user);
        let key = |e: &Value| {
            format!(
                "{} {} {} {}",
                e["time"],
                e["type"],
                e["amount"].as_str().unwrap().trim_end_matches('0'),
                e["alert_codes"]
            )
        };
        let stored_keys: Vec<String> = stored.iter().map(key).collect();
        let acked = acknowledged.remove(&user).unwrap_or_default();
        for event in &acked {
            assert!(
                stored_keys.contains(&key(event)),
                "user {user}: acknowledged {event} is not stored as answered"
            );
        }
        let extra = stored.len() - acked.len();
        assert!(
            extra <= unanswered.get(&user).copied().unwrap_or(0),
            "user {user}: {extra} stored events nobody sent or saw refused"
        );
        for stored_event in &stored {
            let text = |field: &str| stored_event[field].as_str().unwrap();
            let time = stored_event["time"].as_i64().unwrap();
            let again = event(text("type"), text("amount"), user, time);
            let codes = replay.post("/event", JSON, &again.to_string(), "");
            assert_eq!(codes.status, 200, "{}", codes.text());
            let stored_codes = &stored_event["alert_codes"];
            assert_eq!(&codes.json()["alert_codes"], stored_codes, "user {user}");
            fired += stored_codes.as_array().unwrap().len();
        }
    }
    assert!(fired > 0, "no rule fired: the replay proves nothing");
}

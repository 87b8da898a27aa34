//! Transaction alerts over real sockets: the seed's API tests, invalid
//! payloads, ordering, restarts, profiles, and concurrent clients.

mod common;

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::events::{event, history, workload};
use common::{Response, Server, read_response};
use serde_json::{Value, json};

const JSON: &str = "application/json";
const USER: &str = "auditor:audit-password";

fn send_event(server: &Server, body: &Value) -> Response {
    server.post("/event", JSON, &body.to_string(), "")
}

fn codes(response: &Response) -> Value {
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["alert_codes"].clone()
}

/// A bearer header for the `--admin` account every server here gets (the
/// alert routes are admins' and alerts keys').
fn auth(server: &Server) -> String {
    let response = server.post(
        "/api/sign_in",
        JSON,
        r#"{"login": "auditor", "password": "audit-password"}"#,
        "",
    );
    assert_eq!(response.status, 200, "{}", response.text());
    format!(
        "Authorization: Bearer {}\r\n",
        response.json()["token"].as_str().unwrap()
    )
}

#[test]
fn the_seed_api_tests() {
    let server = Server::start(&["--admin", USER]);
    let first = send_event(&server, &event("deposit", "100.00", 1, 0));
    assert_eq!(
        first.json(),
        json!({"alert": false, "alert_codes": [], "user_id": 1})
    );
    let second = send_event(&server, &event("deposit", "101.00", 1, 3));
    assert_eq!(
        second.json(),
        json!({"alert": true, "alert_codes": [123], "user_id": 1})
    );
    // The seed README's curl example.
    let readme = send_event(&server, &event("deposit", "217.00", 11, 35));
    assert_eq!(codes(&readme), json!([123]));
}

#[test]
fn every_invalid_payload_the_seed_rejects_gets_400() {
    let server = Server::start(&["--admin", USER]);
    let valid = event("deposit", "1.00", 5, 10);
    let cases: Vec<(&str, Option<Value>, &str)> = vec![
        ("type", None, "'type' is required"),
        (
            "type",
            Some(json!(1)),
            "'type' must be one of these values (deposit, withdraw)",
        ),
        (
            "type",
            Some(json!("invalid")),
            "'type' must be one of these values (deposit, withdraw)",
        ),
        ("amount", None, "'amount' is required"),
        (
            "amount",
            Some(json!("a")),
            "'amount' must be a decimal number",
        ),
        (
            "amount",
            Some(json!("-9")),
            "'amount' must be greater than 0",
        ),
        ("user_id", None, "'user_id' is required"),
        ("user_id", Some(json!("a")), "'user_id' must be an integer"),
        (
            "user_id",
            Some(json!(-9)),
            "'user_id' must be greater than or equal to 0",
        ),
        ("time", None, "'time' is required"),
        ("time", Some(json!("a")), "'time' must be an integer"),
        (
            "time",
            Some(json!(-9)),
            "'time' must be greater than or equal to 0",
        ),
    ];
    for (field, value, message) in cases {
        let mut payload = valid.clone();
        match value {
            Some(value) => payload[field] = value,
            None => {
                payload.as_object_mut().unwrap().remove(field);
            }
        }
        let response = send_event(&server, &payload);
        assert_eq!(response.status, 400, "{payload}");
        let body = response.json();
        assert_eq!(body["message"], message, "{payload}");
        assert_eq!(body["details"][0]["field"], field, "{payload}");
    }
    for not_json in ["", "type=deposit", "{\"type\": "] {
        let response = server.post("/event", JSON, not_json, "");
        assert_eq!(response.status, 400);
        assert_eq!(response.json()["message"], "Request must be JSON");
    }
    // Nothing of all that was stored.
    assert!(history(&server, &auth(&server), 5).is_empty());
}

#[test]
fn time_going_backwards_gets_409_and_is_not_stored() {
    let server = Server::start(&["--admin", USER]);
    assert_eq!(
        codes(&send_event(&server, &event("withdraw", "5", 9, 1000))),
        json!([])
    );
    let late = send_event(&server, &event("withdraw", "500", 9, 999));
    assert_eq!(late.status, 409);
    assert!(late.json()["message"].as_str().unwrap().contains("1000"));
    let stored = history(&server, &auth(&server), 9);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["time"], 1000);
    // The refused withdrawal does not count toward three in a row.
    send_event(&server, &event("withdraw", "5", 9, 1000));
    assert_eq!(
        codes(&send_event(&server, &event("withdraw", "5", 9, 1001))),
        json!([30])
    );
}

#[test]
fn history_survives_a_restart_and_counts_in_windows() {
    let mut server = Server::start(&["--admin", USER]);
    let data_dir = server.data_dir.clone();
    let data_arg = data_dir.to_str().unwrap().to_owned();
    send_event(&server, &event("deposit", "150", 3, 10_000));
    send_event(&server, &event("withdraw", "1", 3, 11_000));
    server.signal(libc::SIGTERM);
    assert!(
        server
            .wait_exit(std::time::Duration::from_secs(10))
            .is_some()
    );

    let server = Server::start(&["--admin", USER, "--data-dir", &data_arg]);
    // 150 before the restart + 60 now, within 30 s: over 200.
    assert_eq!(
        codes(&send_event(&server, &event("deposit", "60", 3, 40_000))),
        json!([123])
    );
    // Times before the stored ones are still refused.
    assert_eq!(
        send_event(&server, &event("deposit", "1", 3, 5)).status,
        409
    );
    let stored = history(&server, &auth(&server), 3);
    let amounts: Vec<&str> = stored
        .iter()
        .map(|e| e["amount"].as_str().unwrap())
        .collect();
    assert_eq!(amounts, ["150", "1", "60"]);
    assert_eq!(stored[2]["alert_codes"], json!([123]));
}

#[test]
fn profiles_need_an_account_and_change_the_next_event() {
    let server = Server::start(&["--admin", USER]);
    let auth = auth(&server);
    let path = "/api/v1/users/7/alert-profile";
    assert_eq!(server.get(path).status, 401);
    let profile = server.get_with(path, &auth).json();
    assert_eq!(profile["risk"], "medium");
    assert_eq!(profile["thresholds"]["withdrawal_over"], "100");
    assert_eq!(profile["overrides"], json!({}));

    // 80 is under the medium threshold.
    assert_eq!(
        codes(&send_event(&server, &event("withdraw", "80", 7, 0))),
        json!([])
    );
    let put = |body: Value| {
        server.request(&format!(
            "PUT {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.to_string().len()
        ))
    };
    let high = put(json!({"risk": "high"}));
    assert_eq!(high.status, 200, "{}", high.text());
    let body = high.json();
    assert_eq!(body["thresholds"]["withdrawal_over"], "50");
    assert_eq!(body["thresholds"]["burst_count"], 3);
    // High risk: over 50, and two withdrawals in a row are enough for 30.
    assert_eq!(
        codes(&send_event(&server, &event("withdraw", "80", 7, 200_000))),
        json!([30, 1100])
    );

    // Overrides beat the rating; leaving risk out keeps it.
    let overridden =
        put(json!({"overrides": {"withdrawal_over": "90.5", "consecutive_withdrawals": 5}}));
    assert_eq!(overridden.json()["risk"], "high");
    assert_eq!(overridden.json()["thresholds"]["withdrawal_over"], "90.5");
    assert_eq!(
        codes(&send_event(&server, &event("withdraw", "90", 7, 400_000))),
        json!([])
    );
    assert_eq!(
        server.get_with(path, &auth).json()["overrides"],
        json!({"withdrawal_over": "90.5", "consecutive_withdrawals": 5})
    );

    let bad = put(json!({"risk": "extreme", "overrides": {"burst_count": 0, "speed": 1}}));
    assert_eq!(bad.status, 422);
    let fields: Vec<String> = bad.json()["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["overrides.burst_count", "overrides.speed", "risk"]);
    let junk: serde_json::Map<String, Value> =
        (0..500).map(|i| (format!("k{i}"), json!(1))).collect();
    let many = put(json!({"overrides": junk}));
    assert_eq!(many.status, 422);
    assert_eq!(many.json()["details"].as_array().unwrap().len(), 100);
    assert!(
        many.json()["message"]
            .as_str()
            .unwrap()
            .contains("500 problems")
    );
    // A refused update changes nothing.
    assert_eq!(server.get_with(path, &auth).json()["risk"], "high");
}

#[test]
fn concurrent_clients_get_the_codes_a_replay_gives() {
    clients_get_the_codes_a_replay_gives(8, 5, 200, &[]);
}

/// Many clients and users at once: events of one user share a group
/// commit's batch (each judged after the ones before it) as well as
/// events of different users.
#[test]
fn sixty_four_clients_and_twenty_users_get_the_codes_a_replay_gives() {
    // 64 clients from one address: more connections than its default cap.
    clients_get_the_codes_a_replay_gives(64, 20, 50, &["--max-connections-per-ip", "0"]);
}

/// `clients` send `users` × `per_user` events at once to a server started
/// with `args`; every answer must be what a fresh server gives when the
/// stored history is replayed one event at a time.
fn clients_get_the_codes_a_replay_gives(
    clients: usize,
    users: i64,
    per_user: usize,
    args: &[&str],
) {
    let total = users as usize * per_user;
    let mut args = args.to_vec();
    args.extend(["--admin", USER]);
    let server = Server::start(&args);
    let users_events = workload(users, per_user);
    // Each user's events dealt round-robin to the clients, so one user's
    // events travel on several connections at once.
    let mut queues: Vec<Vec<Value>> = vec![Vec::new(); clients];
    let mut dealt = 0;
    for user_events in &users_events {
        for event in user_events {
            queues[dealt % clients].push(event.clone());
            dealt += 1;
        }
    }
    for queue in &mut queues {
        queue.sort_by_key(|e| e["time"].as_i64().unwrap());
    }
    let answered: Vec<(Value, Response)> = thread::scope(|scope| {
        let handles: Vec<_> = queues
            .iter()
            .map(|queue| {
                let server = &server;
                scope.spawn(move || {
                    queue
                        .iter()
                        .map(|e| (e.clone(), send_event(server, e)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(answered.len(), total);

    let mut fired: HashMap<i64, Vec<(Value, Value)>> = HashMap::new();
    let mut refused = 0;
    for (event, response) in &answered {
        match response.status {
            200 => fired
                .entry(event["user_id"].as_i64().unwrap())
                .or_default()
                .push((event.clone(), response.json()["alert_codes"].clone())),
            409 => refused += 1,
            other => panic!("status {other} for {event}: {}", response.text()),
        }
    }
    assert!(fired.values().map(Vec::len).sum::<usize>() + refused == total);

    let auth = auth(&server);
    let replay = Server::start(&[]);
    let mut all_codes = std::collections::BTreeSet::new();
    for user in 0..users {
        let user_id = 100 + user;
        let stored = history(&server, &auth, user_id);
        let accepted = fired.remove(&user_id).unwrap_or_default();
        // Every 200 is in the history, nothing else is.
        assert_eq!(stored.len(), accepted.len(), "user {user_id}");
        let key = |e: &Value| {
            (
                e["time"].as_i64().unwrap(),
                e["type"].as_str().unwrap().to_owned(),
                e["amount"]
                    .as_str()
                    .unwrap()
                    .trim_end_matches('0')
                    .to_owned(),
                e["alert_codes"].clone(),
            )
        };
        let mut stored_keys: Vec<_> = stored.iter().map(key).collect();
        let mut accepted_keys: Vec<_> = accepted
            .iter()
            .map(|(e, codes)| {
                let mut e = e.clone();
                e["alert_codes"] = codes.clone();
                key(&e)
            })
            .collect();
        stored_keys.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        accepted_keys.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        assert_eq!(stored_keys, accepted_keys, "user {user_id}");

        // One by one, in stored order, a fresh server fires the same codes.
        for stored_event in &stored {
            let again = event(
                stored_event["type"].as_str().unwrap(),
                stored_event["amount"].as_str().unwrap(),
                user_id,
                stored_event["time"].as_i64().unwrap(),
            );
            let codes = codes(&send_event(&replay, &again));
            assert_eq!(
                codes, stored_event["alert_codes"],
                "user {user_id}, {again}"
            );
            for code in codes.as_array().unwrap() {
                all_codes.insert(code.as_u64().unwrap());
            }
        }
    }
    // The workload exercises every rule, so the comparison means something.
    assert_eq!(
        all_codes.into_iter().collect::<Vec<_>>(),
        [30, 123, 300, 500, 1100]
    );
}

/// 10,000 events at one time for one user, on one keep-alive connection:
/// each is answered, and the latencies of the first and the last thousand
/// go to the test output for comparison. (The store's own test holds the
/// history each event reads to the thresholds' bound; no timing is
/// asserted here.)
#[test]
fn ten_thousand_events_at_one_time() {
    let server = Server::start(&[]);
    let mut connection = BufReader::new(server.connect());
    let mut latencies = Vec::with_capacity(10_000);
    let mut last = Value::Null;
    for i in 0..10_000 {
        let kind = if i % 3 == 1 { "withdraw" } else { "deposit" };
        let body = event(kind, "1.00", 7, 1_000_000).to_string();
        let request = format!(
            "POST /event HTTP/1.1\r\nHost: test\r\nContent-Type: {JSON}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let started = Instant::now();
        connection.get_mut().write_all(request.as_bytes()).unwrap();
        let response = read_response(&mut connection, true);
        latencies.push(started.elapsed());
        last = codes(&response);
    }
    for (name, part) in [
        ("first", &latencies[..1000]),
        ("last", &latencies[latencies.len() - 1000..]),
    ] {
        let mean = part.iter().sum::<Duration>() / 1000;
        let slowest = part.iter().max().unwrap();
        eprintln!(
            "POST /event, 10,000 at one time: {name} 1000: mean {mean:?}, slowest {slowest:?}"
        );
    }
    assert_eq!(last, json!([123, 500]));
}

/// Events pipelined on one connection are answered after their commits
/// (the answers come later, from the store's writer), in the order sent,
/// each with the codes a one-at-a-time replay gives, a refusal in their
/// midst included; the connection then serves on.
/// Each answer to an event is written later, by whichever worker takes
/// it, which then re-arms the connection for its next request: a request
/// that arrives while that happens must not go unnoticed (seen: the
/// connection then sat until its idle timeout).
#[test]
fn keep_alive_clients_sending_event_after_event_never_stall() {
    let server = Server::start(&[]);
    common::ask_back_to_back(&server, 750, |user, i| {
        let body = event("deposit", "1.00", user, i).to_string();
        format!(
            "POST /event HTTP/1.1\r\nHost: t\r\nContent-Type: {JSON}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    });
}

#[test]
fn pipelined_events_are_answered_in_order() {
    let server = Server::start(&[]);
    // The seed's example and an out-of-order event among them.
    let events = [
        event("deposit", "100.00", 5, 0),
        event("deposit", "101", 5, 3),
        event("withdraw", "1", 5, 2),
        event("deposit", "102", 5, 4),
        event("withdraw", "10", 5, 5),
    ];
    let mut batch = String::new();
    for (i, body) in events.iter().enumerate() {
        let body = body.to_string();
        batch.push_str(&format!(
            "POST /event HTTP/1.1\r\nHost: t\r\nX-Request-Id: ev-{i}\r\nContent-Type: {JSON}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    let mut connection = server.send(&batch);
    let answers: Vec<Response> = (0..events.len())
        .map(|_| read_response(&mut connection, true))
        .collect();
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(
            answer.header("x-request-id"),
            Some(format!("ev-{i}").as_str())
        );
    }
    assert_eq!(answers[2].status, 409, "{}", answers[2].text());
    assert_eq!(answers[2].json()["error"], "out_of_order");
    // The codes of the same events sent one at a time to another server.
    let replay = Server::start(&[]);
    for (body, answer) in events.iter().zip(&answers) {
        let expected = send_event(&replay, body);
        assert_eq!(answer.status, expected.status, "{body}");
        assert_eq!(answer.json(), expected.json(), "{body}");
    }
    assert_eq!(codes(&answers[1]), json!([123]));
    // The same connection goes on to other routes.
    connection
        .get_mut()
        .write_all(b"GET /status HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut connection, true).status, 200);
}

//! The events the concurrency tests send: many users' deposits and
//! withdrawals, varied so that every alert rule fires now and then.

use serde_json::{Value, json};

use super::Server;

/// One `POST /event` body.
pub fn event(kind: &str, amount: &str, user_id: i64, time: i64) -> Value {
    json!({"type": kind, "amount": amount, "user_id": user_id, "time": time})
}

/// Deterministic pseudo-random events for a few users, each user's times
/// increasing (sometimes equal), amounts and kinds varied so that every
/// rule fires now and then.
pub fn workload(users: i64, per_user: usize) -> Vec<Vec<Value>> {
    let mut rng = fastrand_like(42);
    (0..users)
        .map(|user| {
            let mut time = 1_000_000;
            (0..per_user)
                .map(|_| {
                    time += (rng() % 15_000) as i64;
                    let kind = if rng().is_multiple_of(2) {
                        "deposit"
                    } else {
                        "withdraw"
                    };
                    let amount = format!("{}.{:02}", 20 + rng() % 120, rng() % 100);
                    event(kind, &amount, 100 + user, time)
                })
                .collect()
        })
        .collect()
}

/// A small xorshift: the tests need repeatable variety, not a crate.
pub fn fastrand_like(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// A user's whole stored history, oldest first, following the pages.
pub fn history(server: &Server, auth: &str, user_id: i64) -> Vec<Value> {
    let mut events = Vec::new();
    let mut target = format!("/api/v1/users/{user_id}/events?limit=100");
    loop {
        let response = server.get_with(&target, auth);
        assert_eq!(response.status, 200, "{}", response.text());
        let body = response.json();
        events.extend(body["events"].as_array().unwrap().iter().cloned());
        match body["next_before"].as_i64() {
            Some(before) => {
                target = format!("/api/v1/users/{user_id}/events?limit=100&before={before}")
            }
            None => break,
        }
    }
    events.reverse();
    events
}

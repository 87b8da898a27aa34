//! The store's contract, run against every backend: SQLite always, and
//! PostgreSQL in the environment `scripts/with-postgres.sh` sets up
//! (`WREN_TEST_DATABASE_URL`; without it the PostgreSQL half is skipped,
//! saying so, unless `WREN_TEST_POSTGRES=required`). Each test gets a
//! fresh database of its own on each backend.
//!
//! The backends must answer alike: the event tests compare each
//! PostgreSQL outcome with SQLite's for the same writes, and two
//! PostgreSQL stores on one database (two instances) must give one user's
//! events the codes of a sequential replay.

mod common;

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use rust_decimal::Decimal;

use wren::alerts::{AlertProfile, Event, Kind, Risk, TimeUnit};
use wren::auth::Role;
use wren::auth::keys::Scope;
use wren::store::sqlite::SqliteStore;
use wren::store::{
    Account, ApiKey, KeyCreated, Recorded, S3Credentials, Store, StoreError, StoreResult,
};

const MS: TimeUnit = TimeUnit::MILLISECONDS;

/// A fresh SQLite store for `test`.
fn sqlite(test: &str) -> SqliteStore {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("store-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    SqliteStore::open(&dir).unwrap()
}

#[cfg(feature = "postgres")]
mod pg {
    pub use super::common::postgres::fresh_database;
    use wren::postgres::Config;
    use wren::store::postgres::PgStore;

    pub fn store(config: &Config) -> PgStore {
        PgStore::open(config, 4).unwrap()
    }
}

/// Every backend's fresh store for `test`, named.
fn backends(test: &str) -> Vec<(&'static str, Box<dyn Store>)> {
    let sqlite: (&'static str, Box<dyn Store>) = ("sqlite", Box::new(sqlite(test)));
    #[cfg(feature = "postgres")]
    if let Some(config) = pg::fresh_database(test) {
        return vec![sqlite, ("postgres", Box::new(pg::store(&config)))];
    }
    vec![sqlite]
}

fn create(store: &dyn Store, account: Account) -> StoreResult<()> {
    let (done, outcome) = mpsc::sync_channel(1);
    store.create_account(
        account,
        Box::new(move |created| done.send(created).unwrap()),
    );
    outcome.recv_timeout(Duration::from_secs(30)).unwrap()
}

fn record(store: &dyn Store, user_id: i64, event: Event) -> StoreResult<Recorded> {
    let (done, outcome) = mpsc::sync_channel(1);
    store.record_event(
        user_id,
        &event,
        MS,
        Box::new(move |recorded| done.send(recorded).unwrap()),
    );
    outcome.recv_timeout(Duration::from_secs(30)).unwrap()
}

fn account(name: &str) -> Account {
    Account {
        username: name.into(),
        password_hash: "$argon2id$hash".into(),
        role: Role::User,
        sessions_from: 1_700_000_000,
        s3: None,
    }
}

fn event(kind: Kind, amount: &str, time: i64) -> Event {
    Event {
        kind,
        amount: amount.parse::<Decimal>().unwrap(),
        time,
    }
}

/// A user's events that make every rule fire at least once (the bench's
/// pattern), at `step` ms apart from `start`.
fn pattern(start: i64, step: i64) -> Vec<Event> {
    let amounts = [
        (Kind::Deposit, "60"),
        (Kind::Withdraw, "30"),
        (Kind::Deposit, "70"),
        (Kind::Withdraw, "150"),
        (Kind::Withdraw, "20"),
        (Kind::Withdraw, "10"),
        (Kind::Deposit, "80"),
        (Kind::Deposit, "40"),
    ];
    amounts
        .iter()
        .enumerate()
        .map(|(i, &(kind, amount))| event(kind, amount, start + i as i64 * step))
        .collect()
}

fn codes(recorded: StoreResult<Recorded>) -> Vec<u16> {
    match recorded.unwrap() {
        Recorded::Stored { codes, .. } => codes,
        other => panic!("not stored: {other:?}"),
    }
}

#[test]
fn accounts_are_created_once_found_and_updated() {
    for (name, store) in backends("accounts") {
        let store = &*store;
        create(store, account("ann")).unwrap();
        let again = create(store, account("ann"));
        assert!(
            matches!(again, Err(StoreError::Conflict)),
            "{name}: {again:?}"
        );
        let mut bob = account("bob");
        bob.role = Role::Admin;
        bob.s3 = Some(S3Credentials {
            access_key_id: "AKID".into(),
            sealed_secret: vec![0, 1, 2, 0xff],
            bucket: Some("bobs".into()),
        });
        create(store, bob.clone()).unwrap();
        assert_eq!(store.find_account("bob").unwrap(), Some(bob), "{name}");
        assert_eq!(store.find_account("nobody").unwrap(), None, "{name}");
        // The same password keeps the sessions; a new one ends them.
        store
            .upsert_account("ann", "$argon2id$hash", Role::Admin)
            .unwrap();
        let ann = store.find_account("ann").unwrap().unwrap();
        assert_eq!(
            (ann.role, ann.sessions_from),
            (Role::Admin, 1_700_000_000),
            "{name}"
        );
        store
            .upsert_account("ann", "$argon2id$new", Role::User)
            .unwrap();
        let ann = store.find_account("ann").unwrap().unwrap();
        assert_eq!(ann.password_hash, "$argon2id$new", "{name}");
        assert!(ann.sessions_from > 1_700_000_000, "{name}");
        store
            .upsert_account("cy", "$argon2id$c", Role::User)
            .unwrap();
        assert!(store.find_account("cy").unwrap().is_some(), "{name}");
        store.ping().unwrap();
    }
}

#[test]
fn revoked_tokens_are_known_until_they_expire() {
    for (name, store) in backends("tokens") {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        store.revoke_token("old", now - 10).unwrap();
        assert!(store.is_token_revoked("old").unwrap(), "{name}");
        store.revoke_token("new", now + 60).unwrap();
        store.revoke_token("new", now + 60).unwrap();
        assert!(store.is_token_revoked("new").unwrap(), "{name}");
        // Revoking prunes what has expired.
        assert!(!store.is_token_revoked("old").unwrap(), "{name}");
        assert!(!store.is_token_revoked("never").unwrap(), "{name}");
    }
}

#[test]
fn keys_are_bounded_per_account_found_by_hash_and_deleted_by_owner() {
    for (name, store) in backends("keys") {
        let store = &*store;
        create(store, account("ann")).unwrap();
        let key = |key_name: &str, account: Option<&str>| ApiKey {
            name: key_name.into(),
            scopes: vec![Scope::Events, Scope::Files],
            account: account.map(Into::into),
            created_at: 1_700_000_000,
            last_used: None,
        };
        let hash = |n: u8| [n; 32];
        let first = key("ann-1", Some("ann"));
        assert_eq!(
            store.create_key(&first, &hash(1), 2).unwrap(),
            KeyCreated::Created,
            "{name}"
        );
        assert_eq!(
            store.create_key(&first, &hash(2), 2).unwrap(),
            KeyCreated::NameTaken,
            "{name}"
        );
        let second = key("ann-2", Some("ann"));
        assert_eq!(
            store.create_key(&second, &hash(3), 2).unwrap(),
            KeyCreated::Created,
            "{name}"
        );
        let third = key("ann-3", Some("ann"));
        assert_eq!(
            store.create_key(&third, &hash(4), 2).unwrap(),
            KeyCreated::AccountFull,
            "{name}"
        );
        let stray = key("nobody-1", Some("nobody"));
        assert_eq!(
            store.create_key(&stray, &hash(5), 2).unwrap(),
            KeyCreated::NoSuchAccount,
            "{name}"
        );
        let server = key("ops", None);
        assert_eq!(
            store.create_key(&server, &hash(6), 2).unwrap(),
            KeyCreated::Created,
            "{name}"
        );

        assert_eq!(
            store.find_key(&hash(1)).unwrap(),
            Some(first.clone()),
            "{name}"
        );
        assert_eq!(store.find_key(&hash(9)).unwrap(), None, "{name}");
        store.record_key_use(&hash(1), 1_700_000_123).unwrap();
        let used = store.find_key(&hash(1)).unwrap().unwrap();
        assert_eq!(used.last_used, Some(1_700_000_123), "{name}");

        let names = |keys: Vec<ApiKey>| keys.into_iter().map(|k| k.name).collect::<Vec<_>>();
        assert_eq!(
            names(store.keys(Some("ann")).unwrap()),
            ["ann-1", "ann-2"],
            "{name}"
        );
        assert_eq!(
            names(store.keys(None).unwrap()),
            ["ann-1", "ann-2", "ops"],
            "{name}"
        );
        // Another account's key is not its to delete.
        assert!(!store.delete_key("ops", Some("ann")).unwrap(), "{name}");
        assert!(store.delete_key("ann-1", Some("ann")).unwrap(), "{name}");
        assert!(store.delete_key("ops", None).unwrap(), "{name}");
        assert_eq!(names(store.keys(None).unwrap()), ["ann-2"], "{name}");
    }
}

#[test]
fn events_get_the_same_codes_and_history_on_every_backend() {
    let mut outcomes = Vec::new();
    for (name, store) in backends("events") {
        let store = &*store;
        let mut seen = Vec::new();
        store
            .set_alert_profile(
                2,
                &AlertProfile {
                    risk: Risk::High,
                    ..AlertProfile::default()
                },
            )
            .unwrap();
        for user in [1i64, 2, 3] {
            for event in pattern(1_000, 1_000) {
                seen.push(codes(record(store, user, event)));
            }
        }
        // Out of order: the latest time is named, nothing is stored.
        let late = record(store, 1, event(Kind::Deposit, "5", 500)).unwrap();
        assert_eq!(late, Recorded::OutOfOrder { latest: 8_000 }, "{name}");
        let history = store.events(1, None, 3).unwrap();
        assert_eq!(history.len(), 3, "{name}");
        assert_eq!(history[0].event.time, 8_000, "{name}");
        let older = store.events(1, Some(history[2].seq), 10).unwrap();
        assert_eq!(older.len(), 5, "{name}");
        assert!(store.events(99, None, 10).unwrap().is_empty(), "{name}");
        assert_eq!(store.alert_profile(2).unwrap().risk, Risk::High, "{name}");
        assert_eq!(
            store.alert_profile(3).unwrap(),
            AlertProfile::default(),
            "{name}"
        );
        outcomes.push((name, seen));
    }
    let (_, expected) = &outcomes[0];
    assert!(
        expected.iter().any(|codes| !codes.is_empty()),
        "no rule fired at all"
    );
    for (name, seen) in &outcomes[1..] {
        assert_eq!(seen, expected, "{name} disagrees with sqlite");
    }
}

/// Events queued all at once, so that the writer batches many, several
/// of one user among them, over histories longer than the last events the
/// thresholds read (so the older reads run, before and after the batch's
/// own rows): every backend gives every event the same outcome.
#[test]
fn batched_events_get_the_same_codes_on_every_backend() {
    const USERS: i64 = 12;
    const PER_USER: usize = 60;
    let mut outcomes = Vec::new();
    for (name, store) in backends("batched") {
        let store = &*store;
        for (user, risk) in [(1, Risk::High), (2, Risk::Low)] {
            let profile = AlertProfile {
                risk,
                ..AlertProfile::default()
            };
            store.set_alert_profile(user, &profile).unwrap();
        }
        let mut rng = common::events::fastrand_like(9);
        let mut times = vec![0i64; USERS as usize];
        let (done, answers) = mpsc::channel();
        let mut sent = 0;
        for _ in 0..PER_USER {
            for user in 0..USERS {
                // Now and then a step back in time: refused inside a batch.
                // Close together with small amounts: the deposit window
                // reaches past the last events read, and its total sits
                // near the threshold, so a wrong total changes the codes.
                let step = (rng() % 6_000) as i64 - 300;
                times[user as usize] += step;
                let kind = if rng().is_multiple_of(3) {
                    Kind::Withdraw
                } else {
                    Kind::Deposit
                };
                let amount = format!("{}.{:02}", 1 + rng() % 70, rng() % 100);
                let queued = event(kind, &amount, times[user as usize]);
                let done = done.clone();
                store.record_event(
                    user,
                    &queued,
                    MS,
                    Box::new(move |recorded| done.send((sent, recorded)).unwrap()),
                );
                sent += 1;
            }
        }
        let mut seen: Vec<(usize, String)> = (0..sent)
            .map(|_| {
                let (at, recorded) = answers.recv_timeout(Duration::from_secs(60)).unwrap();
                let outcome = match recorded.unwrap() {
                    Recorded::Stored { codes, .. } => format!("codes {codes:?}"),
                    Recorded::OutOfOrder { latest } => format!("out of order, latest {latest}"),
                };
                (at, outcome)
            })
            .collect();
        seen.sort();
        outcomes.push((name, seen));
    }
    let (_, expected) = &outcomes[0];
    assert!(expected.iter().any(|(_, o)| o.starts_with("out of order")));
    let fired = expected
        .iter()
        .filter(|(_, o)| o.starts_with("codes ["))
        .count()
        - expected.iter().filter(|(_, o)| *o == "codes []").count();
    assert!(fired > PER_USER, "too few alerts ({fired}) to compare");
    for (name, seen) in &outcomes[1..] {
        for ((at, got), (_, want)) in seen.iter().zip(expected) {
            assert_eq!(got, want, "{name}, event {at}");
        }
    }
}

/// Two PostgreSQL stores on one database, as two instances: each user's
/// events sent all at once through both, from a thread each. Whatever
/// order they are stored in, replaying them in that order on SQLite, one
/// at a time, gives each the codes it was stored with: no event was judged
/// without the ones stored before it.
#[cfg(feature = "postgres")]
#[test]
fn two_instances_never_interleave_one_users_events() {
    let Some(config) = pg::fresh_database("instances") else {
        return;
    };
    let instances = [pg::store(&config), pg::store(&config)];
    const USERS: i64 = 8;
    // One time for all: every order is in order, so none is refused.
    let events: Vec<Event> = pattern(1_000, 0);
    std::thread::scope(|scope| {
        for user in 0..USERS {
            for (i, &event) in events.iter().enumerate() {
                let instance = &instances[i % 2];
                scope.spawn(move || codes(record(instance, user, event)));
            }
        }
    });
    for user in 0..USERS {
        let mut stored = instances[1].events(user, None, 100).unwrap();
        assert_eq!(stored.len(), events.len(), "user {user}");
        stored.reverse();
        let replay = sqlite(&format!("instances-replay-{user}"));
        for (at, stored) in stored.iter().enumerate() {
            let replayed = codes(record(&replay, user, stored.event));
            assert_eq!(stored.alert_codes, replayed, "user {user}, event {at}");
        }
    }
}

#[cfg(feature = "postgres")]
#[test]
fn a_postgres_schema_from_a_newer_wren_is_refused() {
    let Some(config) = pg::fresh_database("newer") else {
        return;
    };
    drop(pg::store(&config));
    // Opening again finds everything in place.
    drop(pg::store(&config));
    let mut client = wren::postgres::Client::connect(&config, Duration::from_secs(10)).unwrap();
    client
        .batch_execute("UPDATE wren_schema SET version = 99")
        .unwrap();
    let refused = wren::store::postgres::PgStore::open(&config, 1)
        .err()
        .unwrap();
    assert!(refused.to_string().contains("newer wren"), "{refused}");
}

//! The embedded store: one SQLite file, `<data-dir>/wren.db`.
//!
//! Opened as every wren database is ([`crate::sqlite`]: private, WAL,
//! `synchronous = FULL`, versioned by `PRAGMA user_version`), with its schema
//! brought up to date by `MIGRATIONS`. A small pool of connections is
//! shared by the server's threads.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Account, ApiKey, KeyCreated, Recorded, S3Credentials, Store, StoreError, StoreResult,
    StoredEvent,
};
use crate::alerts::{self, AlertProfile, Event, Kind, Overrides, Risk, TimeUnit};
use crate::auth::Role;
use crate::auth::keys::{self, KeyHash};

/// Connections kept open; more threads than this wait for one.
pub const POOL_SIZE: usize = 4;

/// Schema versions, in order; entry `n` takes `user_version` from `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: accounts and revoked tokens.
    "CREATE TABLE accounts (
        username TEXT PRIMARY KEY NOT NULL,
        password_hash TEXT NOT NULL,
        s3_access_key_id TEXT,
        s3_secret_sealed BLOB,
        s3_bucket TEXT,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE revoked_tokens (
        jti TEXT PRIMARY KEY NOT NULL,
        expires_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);",
    // 2: transaction alerts. Amounts are decimal strings (exact); codes a
    // comma-separated list.
    "CREATE TABLE alert_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('deposit', 'withdraw')),
        amount TEXT NOT NULL,
        time INTEGER NOT NULL,
        alert_codes TEXT NOT NULL
    ) STRICT;
    CREATE INDEX alert_events_user_seq ON alert_events (user_id, seq);
    CREATE INDEX alert_events_user_time ON alert_events (user_id, time);
    CREATE TABLE alert_profiles (
        user_id INTEGER PRIMARY KEY NOT NULL,
        risk TEXT NOT NULL,
        overrides TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;",
    // 3: an index per history branch, so that a user with many withdrawals
    // (or many events at one time) does not make each event scan them.
    "DROP INDEX alert_events_user_time;
    CREATE INDEX alert_events_user_kind_seq ON alert_events (user_id, kind, seq);
    CREATE INDEX alert_events_user_kind_time ON alert_events (user_id, kind, time);",
    // 4: account roles; every account so far is a user.
    "ALTER TABLE accounts ADD COLUMN role TEXT NOT NULL DEFAULT 'user'
        CHECK (role IN ('user', 'admin'));",
    // 5: API keys, found by the SHA-256 of the key (never the key itself);
    // `account` is the one a `files` key acts for, and scopes are a
    // comma-separated list.
    "CREATE TABLE api_keys (
        name TEXT PRIMARY KEY NOT NULL,
        key_hash BLOB NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        account TEXT REFERENCES accounts (username) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        last_used INTEGER
    ) STRICT;
    CREATE INDEX api_keys_account ON api_keys (account);",
];

pub struct SqliteStore {
    path: PathBuf,
    pool: Mutex<Pool>,
    returned: Condvar,
    /// SQLite has one writer at a time; queueing event writers here is fair
    /// and cheap, where SQLite's busy handler would poll with sleeps.
    event_writer: Mutex<()>,
}

struct Pool {
    idle: Vec<Connection>,
    /// Connections open, idle or in use.
    open: usize,
}

fn backend(err: rusqlite::Error) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl SqliteStore {
    /// Opens (creating, mode 0600) `<dir>/wren.db` and migrates its schema.
    pub fn open(dir: &Path) -> StoreResult<SqliteStore> {
        let path = dir.join("wren.db");
        let conn = crate::sqlite::open(&path, MIGRATIONS)
            .map_err(|err| StoreError::Backend(format!("{}: {err}", path.display())))?;
        Ok(SqliteStore {
            path,
            pool: Mutex::new(Pool {
                idle: vec![conn],
                open: 1,
            }),
            returned: Condvar::new(),
            event_writer: Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn connect(&self) -> StoreResult<Connection> {
        crate::sqlite::connect(&self.path).map_err(backend)
    }

    /// Runs `f` on a pooled connection.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
        let mut checked_out = CheckedOut {
            store: self,
            conn: Some(self.checkout()?),
        };
        let Some(conn) = checked_out.conn.as_mut() else {
            unreachable!("the connection is taken only on drop");
        };
        f(conn).map_err(backend)
    }

    fn checkout(&self) -> StoreResult<Connection> {
        let mut pool = self.lock();
        loop {
            if let Some(conn) = pool.idle.pop() {
                return Ok(conn);
            }
            if pool.open < POOL_SIZE {
                pool.open += 1;
                drop(pool);
                return self.connect().inspect_err(|_| self.release_slot());
            }
            pool = self
                .returned
                .wait(pool)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A connection is gone: another may be opened in its place.
    fn release_slot(&self) {
        self.lock().open -= 1;
        self.returned.notify_one();
    }
}

/// A connection out of the pool. It goes back when dropped, unless a panic
/// is unwinding through it (it may be mid-transaction), in which case it is
/// closed and its slot freed, so a panicking handler never shrinks the pool.
struct CheckedOut<'a> {
    store: &'a SqliteStore,
    conn: Option<Connection>,
}

impl Drop for CheckedOut<'_> {
    fn drop(&mut self) {
        match self.conn.take() {
            Some(conn) if !std::thread::panicking() => {
                self.store.lock().idle.push(conn);
                self.store.returned.notify_one();
            }
            _ => self.store.release_slot(),
        }
    }
}

impl Store for SqliteStore {
    fn create_account(&self, account: &Account) -> StoreResult<()> {
        let s3 = account.s3.as_ref();
        let inserted = self.with(|conn| {
            let tx = conn.transaction()?;
            let inserted = tx.execute(
                "INSERT INTO accounts
                   (username, password_hash, role, s3_access_key_id, s3_secret_sealed, s3_bucket,
                    created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (username) DO NOTHING",
                params![
                    account.username,
                    account.password_hash,
                    account.role.as_str(),
                    s3.map(|c| &c.access_key_id),
                    s3.map(|c| &c.sealed_secret),
                    s3.and_then(|c| c.bucket.as_ref()),
                    now_unix(),
                ],
            )?;
            if inserted == 1 {
                forget_keys_of_namesakes(&tx, &account.username)?;
            }
            tx.commit()?;
            Ok(inserted)
        })?;
        if inserted == 0 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    fn upsert_account(&self, username: &str, password_hash: &str, role: Role) -> StoreResult<()> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            let inserted = tx.execute(
                "INSERT INTO accounts (username, password_hash, role, created_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (username) DO NOTHING",
                params![username, password_hash, role.as_str(), now_unix()],
            )?;
            if inserted == 1 {
                forget_keys_of_namesakes(&tx, username)?;
            } else {
                tx.execute(
                    "UPDATE accounts SET password_hash = ?2, role = ?3 WHERE username = ?1",
                    params![username, password_hash, role.as_str()],
                )?;
            }
            tx.commit()
        })
    }

    fn find_account(&self, username: &str) -> StoreResult<Option<Account>> {
        self.with(|conn| {
            conn.query_row(
                "SELECT username, password_hash, s3_access_key_id, s3_secret_sealed, s3_bucket,
                        role
                 FROM accounts WHERE username = ?1",
                params![username],
                |row| {
                    let access_key_id: Option<String> = row.get(2)?;
                    let sealed_secret: Option<Vec<u8>> = row.get(3)?;
                    let s3 = match (access_key_id, sealed_secret) {
                        (Some(access_key_id), Some(sealed_secret)) => Some(S3Credentials {
                            access_key_id,
                            sealed_secret,
                            bucket: row.get(4)?,
                        }),
                        _ => None,
                    };
                    let role: String = row.get(5)?;
                    Ok(Account {
                        username: row.get(0)?,
                        password_hash: row.get(1)?,
                        role: Role::parse(&role).ok_or_else(|| corrupt("role"))?,
                        s3,
                    })
                },
            )
            .optional()
        })
    }

    fn revoke_token(&self, jti: &str, expires_at: i64) -> StoreResult<()> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM revoked_tokens WHERE expires_at < ?1",
                params![now_unix()],
            )?;
            tx.execute(
                "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2)
                 ON CONFLICT (jti) DO NOTHING",
                params![jti, expires_at],
            )?;
            tx.commit()
        })
    }

    fn record_event(&self, user_id: i64, event: &Event, unit: TimeUnit) -> StoreResult<Recorded> {
        let _writer = self
            .event_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.with(|conn| SqliteStore::record_event_in(conn, user_id, event, unit))
    }

    fn alert_profile(&self, user_id: i64) -> StoreResult<AlertProfile> {
        self.with(|conn| load_profile(conn, user_id))
    }

    fn set_alert_profile(&self, user_id: i64, profile: &AlertProfile) -> StoreResult<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO alert_profiles (user_id, risk, overrides, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id) DO UPDATE SET risk = excluded.risk,
                   overrides = excluded.overrides, updated_at = excluded.updated_at",
                params![
                    user_id,
                    profile.risk.as_str(),
                    profile.overrides.to_json().to_string(),
                    now_unix()
                ],
            )
        })
        .map(drop)
    }

    fn events(
        &self,
        user_id: i64,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        self.with(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT seq, kind, amount, time, alert_codes FROM alert_events
                 WHERE user_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
            )?;
            statement
                .query_map(
                    params![user_id, before.unwrap_or(i64::MAX), limit as i64],
                    |row| {
                        let codes: String = row.get("alert_codes")?;
                        Ok(StoredEvent {
                            seq: row.get("seq")?,
                            event: event_from_row(row)?,
                            alert_codes: codes_from_text(&codes)?,
                        })
                    },
                )?
                .collect()
        })
    }

    fn is_token_revoked(&self, jti: &str) -> StoreResult<bool> {
        self.with(|conn| {
            conn.query_row(
                "SELECT 1 FROM revoked_tokens WHERE jti = ?1",
                params![jti],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
        })
    }

    fn create_key(
        &self,
        key: &ApiKey,
        hash: &KeyHash,
        max_per_account: usize,
    ) -> StoreResult<KeyCreated> {
        self.with(|conn| {
            // Immediate: the checks and the insert see one state of the table.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let exists = |sql: &str, value: &str| {
                tx.query_row(sql, params![value], |_| Ok(()))
                    .optional()
                    .map(|found| found.is_some())
            };
            if exists("SELECT 1 FROM api_keys WHERE name = ?1", &key.name)? {
                return Ok(KeyCreated::NameTaken);
            }
            if let Some(account) = &key.account {
                if !exists("SELECT 1 FROM accounts WHERE username = ?1", account)? {
                    return Ok(KeyCreated::NoSuchAccount);
                }
                let held: i64 = tx.query_row(
                    "SELECT count(*) FROM api_keys WHERE account = ?1",
                    params![account],
                    |row| row.get(0),
                )?;
                if usize::try_from(held).unwrap_or(usize::MAX) >= max_per_account {
                    return Ok(KeyCreated::AccountFull);
                }
            }
            tx.execute(
                "INSERT INTO api_keys (name, key_hash, scopes, account, created_at, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key.name,
                    &hash[..],
                    keys::scope_list(&key.scopes),
                    key.account,
                    key.created_at,
                    key.last_used,
                ],
            )?;
            tx.commit()?;
            Ok(KeyCreated::Created)
        })
    }

    fn find_key(&self, hash: &KeyHash) -> StoreResult<Option<ApiKey>> {
        self.with(|conn| {
            conn.prepare_cached(
                "SELECT name, scopes, account, created_at, last_used FROM api_keys
                 WHERE key_hash = ?1",
            )?
            .query_row(params![&hash[..]], key_from_row)
            .optional()
        })
    }

    fn keys(&self) -> StoreResult<Vec<ApiKey>> {
        self.with(|conn| {
            conn.prepare_cached(
                "SELECT name, scopes, account, created_at, last_used FROM api_keys ORDER BY name",
            )?
            .query_map([], key_from_row)?
            .collect()
        })
    }

    fn delete_key(&self, name: &str) -> StoreResult<bool> {
        self.with(|conn| conn.execute("DELETE FROM api_keys WHERE name = ?1", params![name]))
            .map(|deleted| deleted > 0)
    }

    fn record_key_use(&self, hash: &KeyHash, at: i64) -> StoreResult<()> {
        self.with(|conn| {
            conn.execute(
                "UPDATE api_keys SET last_used = ?2 WHERE key_hash = ?1",
                params![&hash[..], at],
            )
        })
        .map(drop)
    }
}

/// Deletes the keys bound to `username` before an account of that name is
/// created: they can only be left from an earlier account of the name,
/// removed without the cascade (by hand, with foreign keys off).
fn forget_keys_of_namesakes(
    tx: &rusqlite::Transaction<'_>,
    username: &str,
) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM api_keys WHERE account = ?1", params![username])
        .map(drop)
}

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    let scopes: String = row.get("scopes")?;
    Ok(ApiKey {
        name: row.get("name")?,
        scopes: keys::parse_scopes(scopes.split(',')).map_err(|_| corrupt("scopes"))?,
        account: row.get("account")?,
        created_at: row.get("created_at")?,
        last_used: row.get("last_used")?,
    })
}

/// Reads a stored row back; a value this code did not write is reported as
/// a backend error rather than trusted.
fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, what.to_owned(), rusqlite::types::Type::Text)
}

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let kind: String = row.get("kind")?;
    let amount: String = row.get("amount")?;
    Ok(Event {
        kind: Kind::parse(&kind).ok_or_else(|| corrupt("kind"))?,
        amount: alerts::parse_decimal(&amount).ok_or_else(|| corrupt("amount"))?,
        time: row.get("time")?,
    })
}

fn codes_to_text(codes: &[u16]) -> String {
    codes
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn codes_from_text(text: &str) -> rusqlite::Result<Vec<u16>> {
    text.split(',')
        .filter(|c| !c.is_empty())
        .map(|c| c.parse().map_err(|_| corrupt("alert_codes")))
        .collect()
}

fn load_profile(conn: &Connection, user_id: i64) -> rusqlite::Result<AlertProfile> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT risk, overrides FROM alert_profiles WHERE user_id = ?1")?
        .query_row(params![user_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((risk, overrides)) = row else {
        return Ok(AlertProfile::default());
    };
    let overrides: serde_json::Value =
        serde_json::from_str(&overrides).map_err(|_| corrupt("overrides"))?;
    Ok(AlertProfile {
        risk: Risk::parse(&risk).ok_or_else(|| corrupt("risk"))?,
        overrides: overrides
            .as_object()
            .and_then(|o| Overrides::from_json(o, &mut |_, _| {}))
            .ok_or_else(|| corrupt("overrides"))?,
    })
}

impl SqliteStore {
    fn record_event_in(
        conn: &mut Connection,
        user_id: i64,
        event: &Event,
        unit: TimeUnit,
    ) -> rusqlite::Result<Recorded> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let profile = load_profile(&tx, user_id)?;
        let thresholds = profile.thresholds();
        let need = thresholds.history_need(event.time, unit);
        // The union of what each rule needs, oldest first: the deposits
        // since a time, the last n events, the last m deposits. Each branch
        // walks an index over exactly the rows it returns.
        let mut history = {
            let mut statement = tx.prepare_cached(
                "SELECT kind, amount, time FROM alert_events WHERE seq IN (
                    SELECT seq FROM alert_events
                    WHERE user_id = ?1 AND kind = 'deposit' AND time >= ?2
                    UNION
                    SELECT seq FROM (SELECT seq FROM alert_events WHERE user_id = ?1
                                     ORDER BY seq DESC LIMIT ?3)
                    UNION
                    SELECT seq FROM (SELECT seq FROM alert_events
                                     WHERE user_id = ?1 AND kind = 'deposit'
                                     ORDER BY seq DESC LIMIT ?4)
                 ) ORDER BY seq",
            )?;
            statement
                .query_map(
                    params![user_id, need.since, need.last_events, need.last_deposits],
                    event_from_row,
                )?
                .collect::<rusqlite::Result<Vec<Event>>>()?
        };
        // Stored order is time order, and the last event is always loaded.
        if let Some(latest) = history.last().map(|e| e.time)
            && event.time < latest
        {
            return Ok(Recorded::OutOfOrder { latest });
        }
        history.push(*event);
        let codes = alerts::evaluate(&history, &thresholds, unit);
        tx.prepare_cached(
            "INSERT INTO alert_events (user_id, kind, amount, time, alert_codes)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            user_id,
            event.kind.as_str(),
            event.amount.to_string(),
            event.time,
            codes_to_text(&codes)
        ])?;
        tx.commit()?;
        Ok(Recorded::Stored(codes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wren-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_panic_inside_a_query_does_not_lose_its_connection_slot() {
        let store = SqliteStore::open(&temp_dir("panics")).unwrap();
        for _ in 0..POOL_SIZE + 1 {
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = store.with(|_| -> rusqlite::Result<()> { panic!("a bug") });
            }));
            assert!(panicked.is_err());
        }
        // With every slot lost, this would wait forever.
        assert_eq!(store.find_account("nobody").unwrap(), None);
    }

    fn account(name: &str) -> Account {
        Account {
            username: name.into(),
            password_hash: "$argon2id$hash".into(),
            role: Role::User,
            s3: None,
        }
    }

    #[test]
    fn accounts_round_trip_and_conflict() {
        let store = SqliteStore::open(&temp_dir("accounts")).unwrap();
        let mut alice = account("alice");
        alice.s3 = Some(S3Credentials {
            access_key_id: "AK".into(),
            sealed_secret: vec![1, 2, 3],
            bucket: Some("b".into()),
        });
        store.create_account(&alice).unwrap();
        assert_eq!(store.find_account("alice").unwrap(), Some(alice));
        assert!(matches!(
            store.create_account(&account("alice")),
            Err(StoreError::Conflict)
        ));
        assert_eq!(store.find_account("bob").unwrap(), None);
    }

    #[test]
    fn upsert_creates_then_replaces_the_password_and_role() {
        let store = SqliteStore::open(&temp_dir("upsert")).unwrap();
        store.upsert_account("orhan", "h1", Role::Admin).unwrap();
        let found = store.find_account("orhan").unwrap().unwrap();
        assert_eq!(
            (found.password_hash.as_str(), found.role),
            ("h1", Role::Admin)
        );
        store.upsert_account("orhan", "h2", Role::User).unwrap();
        let found = store.find_account("orhan").unwrap().unwrap();
        assert_eq!(
            (found.password_hash.as_str(), found.role),
            ("h2", Role::User)
        );
    }

    fn key(name: &str, account: Option<&str>) -> ApiKey {
        ApiKey {
            name: name.into(),
            scopes: vec![crate::auth::Scope::Files],
            account: account.map(str::to_owned),
            created_at: 1_700_000_000,
            last_used: None,
        }
    }

    #[test]
    fn keys_are_found_by_hash_listed_by_name_and_deleted() {
        let store = SqliteStore::open(&temp_dir("keys")).unwrap();
        store.create_account(&account("ann")).unwrap();
        let mut ci = key("ci", Some("ann"));
        ci.scopes = vec![crate::auth::Scope::Events, crate::auth::Scope::Files];
        let ci_hash = keys::hash("wren_ci");
        assert_eq!(
            store.create_key(&ci, &ci_hash, 10).unwrap(),
            KeyCreated::Created
        );
        let mut billing = key("billing", None);
        billing.scopes = vec![crate::auth::Scope::Alerts];
        store
            .create_key(&billing, &keys::hash("wren_billing"), 10)
            .unwrap();
        assert_eq!(store.find_key(&ci_hash).unwrap(), Some(ci.clone()));
        assert_eq!(store.find_key(&keys::hash("wren_other")).unwrap(), None);
        let names: Vec<String> = store.keys().unwrap().into_iter().map(|k| k.name).collect();
        assert_eq!(names, ["billing", "ci"]);

        store.record_key_use(&ci_hash, 1_700_000_123).unwrap();
        assert_eq!(
            store.find_key(&ci_hash).unwrap().unwrap().last_used,
            Some(1_700_000_123)
        );
        assert!(store.delete_key("ci").unwrap());
        assert!(!store.delete_key("ci").unwrap());
        assert_eq!(store.find_key(&ci_hash).unwrap(), None);
    }

    #[test]
    fn keys_refuse_a_taken_name_a_missing_account_and_a_full_one() {
        let store = SqliteStore::open(&temp_dir("key-rules")).unwrap();
        store.create_account(&account("ann")).unwrap();
        let create = |name: &str, account: Option<&str>| {
            let hash = keys::hash(&format!("wren_{name}"));
            store.create_key(&key(name, account), &hash, 2).unwrap()
        };
        assert_eq!(create("a", Some("ann")), KeyCreated::Created);
        assert_eq!(create("a", None), KeyCreated::NameTaken);
        assert_eq!(create("b", Some("nobody")), KeyCreated::NoSuchAccount);
        assert_eq!(create("b", Some("ann")), KeyCreated::Created);
        assert_eq!(create("c", Some("ann")), KeyCreated::AccountFull);
        // Keys bound to no account are not counted against one.
        assert_eq!(create("c", None), KeyCreated::Created);
    }

    #[test]
    fn a_new_account_never_inherits_a_removed_namesake_s_keys() {
        let store = SqliteStore::open(&temp_dir("namesake")).unwrap();
        store.create_account(&account("ann")).unwrap();
        let hash = keys::hash("wren_old");
        store
            .create_key(&key("old", Some("ann")), &hash, 10)
            .unwrap();
        // Removed by hand, as with the sqlite3 shell (foreign keys off).
        let remove_ann_by_hand = || {
            store
                .with(|conn| {
                    conn.execute_batch(
                        "PRAGMA foreign_keys = OFF;
                         DELETE FROM accounts WHERE username = 'ann';
                         PRAGMA foreign_keys = ON;",
                    )
                })
                .unwrap()
        };
        remove_ann_by_hand();
        assert!(store.find_key(&hash).unwrap().is_some(), "left behind");
        store.create_account(&account("ann")).unwrap();
        assert_eq!(store.find_key(&hash).unwrap(), None);

        store
            .create_key(&key("old", Some("ann")), &hash, 10)
            .unwrap();
        remove_ann_by_hand();
        store.upsert_account("ann", "h", Role::User).unwrap();
        assert_eq!(store.find_key(&hash).unwrap(), None);
    }

    #[test]
    fn deleting_an_account_with_foreign_keys_on_deletes_its_keys() {
        let store = SqliteStore::open(&temp_dir("cascade")).unwrap();
        store.create_account(&account("ann")).unwrap();
        let hash = keys::hash("wren_k");
        store.create_key(&key("k", Some("ann")), &hash, 10).unwrap();
        store
            .with(|conn| conn.execute("DELETE FROM accounts WHERE username = 'ann'", []))
            .unwrap();
        assert_eq!(store.find_key(&hash).unwrap(), None);
    }

    #[test]
    fn data_survives_reopening_and_the_file_is_private() {
        let dir = temp_dir("reopen");
        {
            let store = SqliteStore::open(&dir).unwrap();
            store.create_account(&account("carol")).unwrap();
            store.revoke_token("jti-1", now_unix() + 60).unwrap();
        }
        let store = SqliteStore::open(&dir).unwrap();
        assert!(store.find_account("carol").unwrap().is_some());
        assert!(store.is_token_revoked("jti-1").unwrap());
        assert!(!store.is_token_revoked("jti-2").unwrap());
        let mode = std::fs::metadata(dir.join("wren.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn expired_revocations_are_purged() {
        let store = SqliteStore::open(&temp_dir("purge")).unwrap();
        store.revoke_token("old", now_unix() - 10).unwrap();
        store.revoke_token("new", now_unix() + 60).unwrap();
        assert!(!store.is_token_revoked("old").unwrap());
        assert!(store.is_token_revoked("new").unwrap());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = temp_dir("newer");
        drop(SqliteStore::open(&dir).unwrap());
        let conn = Connection::open(dir.join("wren.db")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = SqliteStore::open(&dir).err().unwrap();
        assert!(err.to_string().contains("newer than this wren"), "{err}");
    }

    #[test]
    fn the_pool_serves_many_threads() {
        let store = std::sync::Arc::new(SqliteStore::open(&temp_dir("pool")).unwrap());
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store.create_account(&account(&format!("user{i}"))).unwrap();
                    assert!(store.find_account(&format!("user{i}")).unwrap().is_some());
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(store.lock().open <= POOL_SIZE);
    }
}

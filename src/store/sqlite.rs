//! The embedded store: one SQLite file, `<data-dir>/wren.db`.
//!
//! Opened as every wren database is ([`crate::sqlite`]: private, WAL,
//! `synchronous = FULL`, versioned by `PRAGMA user_version`), with its schema
//! brought up to date by `MIGRATIONS`. A small pool of connections is
//! shared by the server's threads, each thread getting back the one it
//! used last when it can (`SqliteStore::checkout`).
//!
//! # Events and sign-ups: group commit on one writer
//!
//! SQLite has one writer at a time; with WAL, readers never wait for it.
//! [`Store::record_event`] queues the event for the store's writer thread
//! ([`GroupCommit`]), which has a connection of its own, and returns at
//! once; the queue keeps arrival order, so a user's events are judged in
//! the order they came. The writer takes everything queued and, in one
//! `IMMEDIATE` transaction with one commit, and so one fsync
//! (`write_batch`), judges each event (`judge`: the profile, the bounded
//! history its thresholds need, the rules) and stores it with its codes
//! (`store_event`, one `INSERT`); each outcome goes to its callback only
//! once the commit holding it is done. An event is judged from what its
//! transaction holds, the events of the batch before it included, so
//! events of one user give the codes they would one at a time, and a
//! failure undoes that event alone.
//!
//! The writer being the only one that stores events, it keeps each active
//! user's last events as it reads and stores them (`tails.rs`), so an
//! event of a user it has seen reads no history at all, only the profile;
//! a batch that does not commit drops them all.
//!
//! New accounts ([`Store::create_account`]) queue for the same writer, in
//! the same batches as events, for the same reason: a burst of sign-ups
//! shares fsyncs instead of paying one each (a sign-up at a time on a
//! pooled connection was one transaction and one fsync per account). The
//! writer only writes: the password's argon2 hash, the costly part of a
//! sign-up, is computed on the request's worker before the account is
//! queued, so a sign-up costs the events sharing its batch no more than
//! its few statements. An account is created in the batch as a lone
//! sign-up would be (`insert_account`): a name taken, by the batch's
//! accounts before it too, is `Conflict`, and the keys a removed namesake
//! left are deleted; its two statements sit under a savepoint, so a
//! failure undoes that account alone. The store's other writes (bootstrap
//! accounts, keys, profiles, revocations) still take a pooled connection
//! and a transaction each.
//!
//! Why judge on the writer rather than beside it: an earlier version
//! judged each event on a pooled connection in parallel, then checked in
//! the batch that the user's latest event and profile had not moved. On
//! two cores under `make bench`'s 50 clients that cost 72 µs of CPU per
//! event against 57 µs here, at the same rate: the read transaction, the
//! second look at what the judgement rested on, and pooled connections
//! re-reading pages another connection had changed cost more than the
//! serial judgement saves. The writer judges from its own page cache,
//! which no one else's commit makes stale, in about 20 µs an event, so
//! it is not the bottleneck of a server that spends more than that
//! answering each request. Users wait for no one but the single writer.
//!
//! The queue's lock is held only to queue or take a batch; a callback runs
//! with no lock held.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use rust_decimal::Decimal;

use super::batch::{
    QueuedEvent, Write, Written, codes_from_text, codes_to_text, now_unix, profile_from_text,
};
use super::judge::{self, Verdict};
use super::tails::{Held, Tails};
use super::{
    Account, AccountDone, ApiKey, EventDone, KeyCreated, Recorded, S3Credentials, Store,
    StoreError, StoreResult, StoredEvent,
};
use crate::alerts::{self, AlertProfile, Event, Kind, TimeUnit, Total};
use crate::auth::Role;
use crate::auth::keys::{self, KeyHash};
use crate::group_commit::GroupCommit;

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
    // 4: each event's running total of its user's deposits (an exact
    // `alerts::Total`, 32 bytes), so that the deposits within a window are
    // the difference of two totals instead of a read of every deposit in
    // it. Events stored before have none until `SqliteStore::open` fills
    // them in (`fill_deposit_totals`), which the partial index lets find
    // them without a scan.
    "ALTER TABLE alert_events ADD COLUMN deposit_total BLOB;
    CREATE INDEX alert_events_untotalled ON alert_events (user_id, seq)
        WHERE deposit_total IS NULL;",
    // 5: account roles; every account so far is a user.
    "ALTER TABLE accounts ADD COLUMN role TEXT NOT NULL DEFAULT 'user'
        CHECK (role IN ('user', 'admin'));",
    // 6: API keys, found by the SHA-256 of the key (never the key itself);
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
    // 7: the second each account's session tokens count from (see
    // `Account::sessions_from`); tokens already out stay valid.
    "ALTER TABLE accounts ADD COLUMN sessions_from INTEGER NOT NULL DEFAULT 0;",
    // 8: a user's deposits are in time order (times never go back), so
    // the last ones come from the (user, kind, time) index as well: one
    // index fewer to update with every event.
    "DROP INDEX alert_events_user_kind_seq;",
];

pub struct SqliteStore {
    path: PathBuf,
    pool: Mutex<Pool>,
    returned: Condvar,
    /// Events and new accounts waiting for their batch's commit (see the
    /// module doc). It writes one batch at a time, so these writes queue
    /// here, fair and cheap, rather than in SQLite's busy handler, which
    /// polls with sleeps.
    commits: GroupCommit<Write, Written>,
}

struct Pool {
    /// Idle connections, each with the number of the thread that used it
    /// last ([`thread_number`]).
    idle: Vec<(u64, Connection)>,
    /// Connections open, idle or in use.
    open: usize,
    /// Threads waiting for a connection: a connection given back wakes one
    /// only when there is one (a condvar's notify is a system call even
    /// when nobody waits).
    waiting: usize,
}

fn backend(err: rusqlite::Error) -> StoreError {
    StoreError::Backend(err.to_string())
}

/// The store's file in the data folder.
pub const DATABASE_FILE: &str = "wren.db";

impl SqliteStore {
    /// Opens (creating, mode 0600) `<dir>/wren.db` and migrates its schema.
    pub fn open(dir: &Path) -> StoreResult<SqliteStore> {
        let path = dir.join(DATABASE_FILE);
        let failed = |err: String| StoreError::Backend(format!("{}: {err}", path.display()));
        let mut conn = crate::sqlite::open(&path, MIGRATIONS).map_err(failed)?;
        fill_deposit_totals(&mut conn).map_err(|err| failed(err.to_string()))?;
        // The writer has a connection of its own: it is the one SQLite
        // writer for events and sign-ups, never waiting for the pool or a
        // pool for it.
        let mut writer = crate::sqlite::connect(&path).map_err(|err| failed(err.to_string()))?;
        let mut tails = Tails::default();
        let commits = GroupCommit::start(
            "wren-store-writer",
            move |batch| write_batch(&mut writer, &mut tails, batch),
            || Written::Lost,
        )
        .map_err(|err| failed(format!("cannot start the writer thread: {err}")))?;
        Ok(SqliteStore {
            path,
            pool: Mutex::new(Pool {
                idle: vec![(thread_number(), conn)],
                open: 1,
                waiting: 0,
            }),
            returned: Condvar::new(),
            commits,
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

    /// A connection for this thread: the one it used last when that one is
    /// idle, else any idle one, else a new one while fewer than
    /// [`POOL_SIZE`] are open, else the first one given back. A connection
    /// staying with one thread keeps its page cache and statements in that
    /// core's cache: measured with `make bench`'s 50 clients on two
    /// workers, a `POST /login` cost 1.6 µs less CPU than with connections
    /// taken in turn by whichever worker came. Once two threads have needed
    /// one at the same time, each has its own; no more are opened than
    /// threads ever needed at once (each holds its own page cache).
    fn checkout(&self) -> StoreResult<Connection> {
        let me = thread_number();
        let mut pool = self.lock();
        loop {
            if let Some(at) = pool.idle.iter().rposition(|(user, _)| *user == me) {
                return Ok(pool.idle.swap_remove(at).1);
            }
            if let Some((_, conn)) = pool.idle.pop() {
                return Ok(conn);
            }
            if pool.open < POOL_SIZE {
                pool.open += 1;
                drop(pool);
                return self.connect().inspect_err(|_| self.release_slot());
            }
            pool.waiting += 1;
            pool = self
                .returned
                .wait(pool)
                .unwrap_or_else(PoisonError::into_inner);
            pool.waiting -= 1;
        }
    }

    /// Gives `conn` back to the pool.
    fn check_in(&self, conn: Connection) {
        let mut pool = self.lock();
        pool.idle.push((thread_number(), conn));
        if pool.waiting > 0 {
            self.returned.notify_one();
        }
    }

    /// A connection is gone: another may be opened in its place.
    fn release_slot(&self) {
        let mut pool = self.lock();
        pool.open -= 1;
        if pool.waiting > 0 {
            self.returned.notify_one();
        }
    }
}

/// This thread's number, unique in the process: which thread used a pooled
/// connection last.
fn thread_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static NUMBER: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    NUMBER.with(|number| *number)
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
            Some(conn) if !std::thread::panicking() => self.store.check_in(conn),
            _ => self.store.release_slot(),
        }
    }
}

impl Store for SqliteStore {
    fn create_account(&self, account: Account, done: AccountDone) {
        self.commits
            .submit(Write::Account(account), move |written| {
                done(written.of_account())
            });
    }

    fn upsert_account(&self, username: &str, password_hash: &str, role: Role) -> StoreResult<()> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            let inserted = tx.execute(
                "INSERT INTO accounts (username, password_hash, role, created_at, sessions_from)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (username) DO NOTHING",
                params![username, password_hash, role.as_str(), now_unix()],
            )?;
            if inserted == 1 {
                forget_keys_of_namesakes(&tx, username)?;
            } else {
                tx.execute(
                    "UPDATE accounts SET
                        sessions_from = CASE WHEN password_hash = ?2 THEN sessions_from ELSE ?4 END,
                        password_hash = ?2,
                        role = ?3
                     WHERE username = ?1",
                    params![username, password_hash, role.as_str(), now_unix()],
                )?;
            }
            tx.commit()
        })
    }

    fn find_account(&self, username: &str) -> StoreResult<Option<Account>> {
        self.with(|conn| {
            conn.prepare_cached(
                "SELECT username, password_hash, s3_access_key_id, s3_secret_sealed, s3_bucket,
                        role, sessions_from
                 FROM accounts WHERE username = ?1",
            )?
            .query_row(params![username], |row| {
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
                    sessions_from: row.get(6)?,
                    s3,
                })
            })
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

    fn record_event(&self, user_id: i64, event: &Event, unit: TimeUnit, done: EventDone) {
        super::batch::queue_event(&self.commits, user_id, event, unit, done);
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
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS}, alert_codes FROM alert_events
                     WHERE user_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
            ))?;
            statement
                .query_map(
                    params![user_id, before.unwrap_or(i64::MAX), limit as i64],
                    |row| {
                        let codes: String = row.get(4)?;
                        Ok(StoredEvent {
                            seq: row.get(0)?,
                            event: event_from_row(row)?,
                            alert_codes: codes_from_text(&codes)
                                .ok_or_else(|| corrupt("alert_codes"))?,
                        })
                    },
                )?
                .collect()
        })
    }

    fn ping(&self) -> StoreResult<()> {
        // The schema table, not a constant: the database file must be
        // readable, not only the connection open.
        self.with(|conn| conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(())))
    }

    fn is_token_revoked(&self, jti: &str) -> StoreResult<bool> {
        self.with(|conn| {
            conn.prepare_cached("SELECT 1 FROM revoked_tokens WHERE jti = ?1")?
                .query_row(params![jti], |_| Ok(()))
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

    fn keys(&self, of: Option<&str>) -> StoreResult<Vec<ApiKey>> {
        self.with(|conn| {
            conn.prepare_cached(
                "SELECT name, scopes, account, created_at, last_used FROM api_keys
                 WHERE ?1 IS NULL OR account = ?1 ORDER BY name",
            )?
            .query_map(params![of], key_from_row)?
            .collect()
        })
    }

    fn delete_key(&self, name: &str, of: Option<&str>) -> StoreResult<bool> {
        self.with(|conn| {
            conn.execute(
                "DELETE FROM api_keys WHERE name = ?1 AND (?2 IS NULL OR account = ?2)",
                params![name, of],
            )
        })
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
/// created, inside the transaction creating it: they can only be left from
/// an earlier account of the name, removed without the cascade (by hand,
/// with foreign keys off).
fn forget_keys_of_namesakes(tx: &Connection, username: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM api_keys WHERE account = ?1")?
        .execute(params![username])
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

/// The columns every read of events starts with, in this order:
/// [`event_from_row`] reads them by position, since looking a column up by
/// name costs a scan of the statement's column names per value.
const EVENT_COLUMNS: &str = "seq, kind, amount, time";

/// The event in a row that starts with [`EVENT_COLUMNS`].
fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let kind = row.get_ref(1)?.as_str()?;
    let amount = row.get_ref(2)?.as_str()?;
    Ok(Event {
        kind: Kind::parse(kind).ok_or_else(|| corrupt("kind"))?,
        amount: alerts::parse_decimal(amount).ok_or_else(|| corrupt("amount"))?,
        time: row.get(3)?,
    })
}

fn load_profile(conn: &Connection, user_id: i64) -> rusqlite::Result<AlertProfile> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT risk, overrides FROM alert_profiles WHERE user_id = ?1")?
        .query_row(params![user_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((risk, overrides)) = row else {
        return Ok(AlertProfile::default());
    };
    profile_from_text(&risk, &overrides).ok_or_else(|| corrupt("profile"))
}

// What an event's judgement reads of its user's history; each walks an
// index over exactly the rows it returns (a test holds them to it).

/// The user's last ?2 events, newest first.
/// Its rows start with [`EVENT_COLUMNS`]; the running total follows.
const LAST_EVENTS: &str = "SELECT seq, kind, amount, time, deposit_total FROM alert_events
    WHERE user_id = ?1 ORDER BY seq DESC LIMIT ?2";
/// The user's last ?2 deposits, newest first.
const LAST_DEPOSITS: &str = "SELECT amount FROM alert_events
    WHERE user_id = ?1 AND kind = 'deposit' ORDER BY time DESC, seq DESC LIMIT ?2";
/// The running total of the user's last deposit before time ?2.
const TOTAL_BEFORE_WINDOW: &str = "SELECT deposit_total FROM alert_events
    WHERE user_id = ?1 AND kind = 'deposit' AND time < ?2
    ORDER BY time DESC, seq DESC LIMIT 1";
/// Judges `event` from what `conn` sees of `user_id`'s history: the
/// profile, the last events (held by the writer's tails when it can), and
/// whatever else the thresholds need ([`judge::verdict`]).
fn judge(
    conn: &Connection,
    tails: &mut Tails,
    user_id: i64,
    event: &Event,
    unit: TimeUnit,
) -> rusqlite::Result<Verdict> {
    let profile = load_profile(conn, user_id)?;
    let thresholds = profile.thresholds();
    let need = thresholds.history_need(event.time, unit);
    // The last events, oldest first, each with its running deposit total:
    // from the writer's tails when they hold them, else read (and held).
    let last_events = need.last_events as usize;
    let held = match tails.last(user_id, last_events) {
        Some(held) => held,
        None => {
            let held = read_last_events(conn, user_id, need.last_events)?;
            tails.fill(user_id, &held, last_events);
            held
        }
    };
    let mut history = SqliteHistory { conn, user_id };
    judge::verdict(&thresholds, &need, held, event, unit, &mut history)
}

/// The rest of a user's history, read along the indexes.
struct SqliteHistory<'a> {
    conn: &'a Connection,
    user_id: i64,
}

impl judge::History for SqliteHistory<'_> {
    type Error = rusqlite::Error;

    fn last_deposits(&mut self, n: u32) -> rusqlite::Result<Vec<Decimal>> {
        self.conn
            .prepare_cached(LAST_DEPOSITS)?
            .query_map(params![self.user_id, n], |row| {
                let amount: String = row.get(0)?;
                alerts::parse_decimal(&amount).ok_or_else(|| corrupt("amount"))
            })?
            .collect()
    }

    fn total_before(&mut self, since: i64) -> rusqlite::Result<Option<Total>> {
        self.conn
            .prepare_cached(TOTAL_BEFORE_WINDOW)?
            .query_row(params![self.user_id, since], |row| total_in(row, 0))
            .optional()
    }
}

/// The user's last `n` events, oldest first, with their running deposit
/// totals: fewer when that is the whole history.
fn read_last_events(conn: &Connection, user_id: i64, n: u32) -> rusqlite::Result<Held> {
    let mut events = Vec::with_capacity(n as usize + 1);
    let mut totals = Vec::with_capacity(n as usize);
    let mut statement = conn.prepare_cached(LAST_EVENTS)?;
    let mut rows = statement.query(params![user_id, n])?;
    while let Some(row) = rows.next()? {
        events.push(event_from_row(row)?);
        totals.push(total_in(row, 4)?);
    }
    events.reverse();
    totals.reverse();
    Ok(Held { events, totals })
}

/// Writes a batch of events and accounts in one transaction and one
/// commit; the outcomes in the batch's order, each in its write's kind.
/// An event is one `INSERT`, which SQLite undoes alone when it fails (a
/// statement rollback); an account is two statements under a savepoint
/// (`insert_account`), undone together. So a write that fails leaves the
/// others stored. Should the commit fail, or SQLite roll the whole
/// transaction back, every write of the batch fails with it.
fn write_batch(conn: &mut Connection, tails: &mut Tails, batch: Vec<Write>) -> Vec<Written> {
    tails.begin_batch();
    let written = (|| {
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for write in &batch {
            let outcome = match write {
                Write::Event(queued) => {
                    store_event(&tx, tails, queued).map(|r| Written::Event(Ok(r)))
                }
                Write::Account(account) => insert_account(&mut tx, account).map(Written::Account),
            };
            match outcome {
                Ok(outcome) => outcomes.push(outcome),
                // An error SQLite answers by rolling the whole transaction
                // back (a full disk, an I/O error) takes the batch with it:
                // the writes before this one are not stored.
                Err(err) if tx.is_autocommit() => return Err(err),
                Err(err) => outcomes.push(write.failed(backend(err))),
            }
        }
        tx.commit()?;
        Ok(outcomes)
    })();
    tails.end_batch(written.is_ok());
    written.unwrap_or_else(|err| {
        let err = backend(err);
        batch
            .iter()
            .map(|write| write.failed(err.clone()))
            .collect()
    })
}

/// Creates an account inside the batch's write transaction (`tx`), as a
/// lone sign-up would: `Conflict` when the name is taken, the batch's
/// accounts before it included, so of two sign-ups of one name the first
/// is created. Under a savepoint: should forgetting the namesake's keys
/// fail, the account is undone with it, and is absent as its failure says.
fn insert_account(
    tx: &mut Transaction<'_>,
    account: &Account,
) -> rusqlite::Result<StoreResult<()>> {
    let s3 = account.s3.as_ref();
    let savepoint = tx.savepoint()?;
    let inserted = savepoint
        .prepare_cached(
            "INSERT INTO accounts
               (username, password_hash, role, s3_access_key_id, s3_secret_sealed, s3_bucket,
                created_at, sessions_from)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (username) DO NOTHING",
        )?
        .execute(params![
            account.username,
            account.password_hash,
            account.role.as_str(),
            s3.map(|c| &c.access_key_id),
            s3.map(|c| &c.sealed_secret),
            s3.and_then(|c| c.bucket.as_ref()),
            now_unix(),
            account.sessions_from,
        ])?;
    if inserted == 0 {
        return Ok(Err(StoreError::Conflict));
    }
    forget_keys_of_namesakes(&savepoint, &account.username)?;
    savepoint.commit()?;
    Ok(Ok(()))
}

/// Judges an event and stores it with its codes, inside the batch's write
/// transaction (`tx`): what it is judged from is what the transaction
/// holds, the events of the batch before it included.
fn store_event(
    tx: &Connection,
    tails: &mut Tails,
    queued: &QueuedEvent,
) -> rusqlite::Result<Recorded> {
    let &QueuedEvent {
        user_id,
        event,
        unit,
    } = queued;
    let (codes, deposit_total, history_rows) = match judge(tx, tails, user_id, &event, unit)? {
        Verdict::OutOfOrder { latest } => return Ok(Recorded::OutOfOrder { latest }),
        Verdict::Codes {
            codes,
            deposit_total,
            history_rows,
        } => (codes, deposit_total, history_rows),
    };
    tx.prepare_cached(
        "INSERT INTO alert_events (user_id, kind, amount, time, alert_codes, deposit_total)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        user_id,
        event.kind.as_str(),
        event.amount.to_string(),
        event.time,
        codes_to_text(&codes),
        deposit_total.to_bytes(),
    ])?;
    tails.stored(user_id, event, deposit_total);
    Ok(Recorded::Stored {
        codes,
        history_rows,
    })
}

/// The running deposit total in column `column` of `row`.
fn total_in(row: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Total> {
    let bytes = row.get_ref(column)?.as_blob()?;
    Total::from_bytes(bytes).ok_or_else(|| corrupt("deposit_total"))
}

/// How many events [`fill_deposit_totals`] reads at a time.
const FILL_BATCH: i64 = 1000;

/// Gives the events stored before `deposit_total` existed their running
/// deposit totals, user by user in stored order, in one transaction. Runs
/// at every open; once they are filled, it is one probe of an empty index.
fn fill_deposit_totals(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let users = tx
        .prepare("SELECT DISTINCT user_id FROM alert_events WHERE deposit_total IS NULL")?
        .query_map([], |row| row.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    for user_id in users {
        let mut total = Total::ZERO;
        let mut after = 0;
        loop {
            let batch = tx
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM alert_events
                         WHERE user_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                ))?
                .query_map(params![user_id, after, FILL_BATCH], |row| {
                    Ok((row.get::<_, i64>(0)?, event_from_row(row)?))
                })?
                .collect::<rusqlite::Result<Vec<(i64, Event)>>>()?;
            let Some(&(last, _)) = batch.last() else {
                break;
            };
            for (seq, event) in batch {
                if event.kind == Kind::Deposit {
                    total = total.plus(Total::of(event.amount));
                }
                tx.prepare_cached("UPDATE alert_events SET deposit_total = ?1 WHERE seq = ?2")?
                    .execute(params![total.to_bytes(), seq])?;
            }
            after = last;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Risk;
    use std::os::unix::fs::PermissionsExt;

    /// Records an event and waits for its outcome.
    fn record(
        store: &SqliteStore,
        user_id: i64,
        event: &Event,
        unit: TimeUnit,
    ) -> StoreResult<Recorded> {
        let (done, outcome) = mpsc::sync_channel(1);
        let done: EventDone = Box::new(move |recorded| done.send(recorded).unwrap());
        store.record_event(user_id, event, unit, done);
        outcome.recv().unwrap()
    }

    /// Creates an account and waits for the outcome.
    fn create(store: &SqliteStore, account: Account) -> StoreResult<()> {
        let (done, outcome) = mpsc::sync_channel(1);
        store.create_account(
            account,
            Box::new(move |created| done.send(created).unwrap()),
        );
        outcome.recv().unwrap()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wren-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_judge_s_history_rows_start_with_the_event_columns() {
        assert!(LAST_EVENTS.starts_with(&format!("SELECT {EVENT_COLUMNS}, deposit_total ")));
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

    /// The marks on the connection this thread gets from the pool, before
    /// `mine` is added to them. A mark is a temporary table: each belongs
    /// to one connection.
    fn marks_then_mark(store: &SqliteStore, mine: &str) -> Vec<String> {
        store.with(|conn| marks_then_mark_on(conn, mine)).unwrap()
    }

    /// The same on `conn`.
    fn marks_then_mark_on(conn: &Connection, mine: &str) -> rusqlite::Result<Vec<String>> {
        let marks = conn
            .prepare("SELECT name FROM sqlite_temp_master WHERE type = 'table'")?
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        conn.execute_batch(&format!("CREATE TEMP TABLE IF NOT EXISTS {mine} (x)"))?;
        Ok(marks)
    }

    #[test]
    fn each_thread_gets_back_the_connection_it_used_last() {
        let store = SqliteStore::open(&temp_dir("affinity")).unwrap();
        // Two connections, each held by one thread at the same time.
        let both_hold = std::sync::Barrier::new(2);
        let both_marked = std::sync::Barrier::new(2);
        std::thread::scope(|scope| {
            for mine in ["first", "second"] {
                let (store, both_hold, both_marked) = (&store, &both_hold, &both_marked);
                scope.spawn(move || {
                    let marks = store
                        .with(|conn| {
                            both_hold.wait();
                            marks_then_mark_on(conn, mine)?;
                            marks_then_mark_on(conn, mine)
                        })
                        .unwrap();
                    assert_eq!(marks, [mine]);
                    both_marked.wait();
                    // However the two interleave, each finds its own mark
                    // alone.
                    for _ in 0..200 {
                        assert_eq!(marks_then_mark(store, mine), [mine]);
                    }
                });
            }
        });
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

    #[test]
    fn accounts_round_trip_and_conflict() {
        let store = SqliteStore::open(&temp_dir("accounts")).unwrap();
        let mut alice = account("alice");
        alice.s3 = Some(S3Credentials {
            access_key_id: "AK".into(),
            sealed_secret: vec![1, 2, 3],
            bucket: Some("b".into()),
        });
        create(&store, alice.clone()).unwrap();
        assert_eq!(store.find_account("alice").unwrap(), Some(alice));
        assert!(matches!(
            create(&store, account("alice")),
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
        let before = store.find_account("orhan").unwrap().unwrap().sessions_from;
        assert!(before > 0);
        // The same password and another role: sessions stay (the role
        // check refuses the old tokens on its own).
        store.upsert_account("orhan", "h1", Role::User).unwrap();
        let found = store.find_account("orhan").unwrap().unwrap();
        assert_eq!(found.sessions_from, before);
        // A new password: sessions count from now.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        store.upsert_account("orhan", "h2", Role::User).unwrap();
        let found = store.find_account("orhan").unwrap().unwrap();
        assert!(found.sessions_from > before);
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
        create(&store, account("ann")).unwrap();
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
        let names: Vec<String> = store
            .keys(None)
            .unwrap()
            .into_iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(names, ["billing", "ci"]);

        store.record_key_use(&ci_hash, 1_700_000_123).unwrap();
        assert_eq!(
            store.find_key(&ci_hash).unwrap().unwrap().last_used,
            Some(1_700_000_123)
        );
        let of_ann: Vec<String> = store
            .keys(Some("ann"))
            .unwrap()
            .into_iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(of_ann, ["ci"]);
        // Another account cannot delete it; its own account can.
        assert!(!store.delete_key("ci", Some("bob")).unwrap());
        assert!(store.delete_key("ci", Some("ann")).unwrap());
        assert!(!store.delete_key("ci", None).unwrap());
        assert!(store.delete_key("billing", None).unwrap());
        assert_eq!(store.find_key(&ci_hash).unwrap(), None);
    }

    #[test]
    fn keys_refuse_a_taken_name_a_missing_account_and_a_full_one() {
        let store = SqliteStore::open(&temp_dir("key-rules")).unwrap();
        create(&store, account("ann")).unwrap();
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
        create(&store, account("ann")).unwrap();
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
        create(&store, account("ann")).unwrap();
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
        create(&store, account("ann")).unwrap();
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
            create(&store, account("carol")).unwrap();
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

    use crate::alerts::tests::{full_history_codes, random_history, random_profile};
    use std::sync::{Arc, mpsc};
    use std::time::{Duration, Instant};

    const MS: TimeUnit = TimeUnit::MILLISECONDS;

    fn codes_of(recorded: Recorded) -> Vec<u16> {
        match recorded {
            Recorded::Stored { codes, .. } => codes,
            other => panic!("not stored: {other:?}"),
        }
    }

    /// The most history rows the judgement may read for `profile`.
    fn row_bound(profile: &AlertProfile) -> usize {
        let need = profile.thresholds().history_need(0, MS);
        need.last_events as usize + need.last_deposits as usize + 1
    }

    #[test]
    fn events_get_the_codes_the_whole_history_gives() {
        let store = SqliteStore::open(&temp_dir("whole-history")).unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        for user_id in 0..40 {
            let profile = random_profile(&mut rng);
            store.set_alert_profile(user_id, &profile).unwrap();
            let thresholds = profile.thresholds();
            let history = random_history(&mut rng, MS, 60);
            for end in 1..=history.len() {
                let recorded = record(&store, user_id, &history[end - 1], MS).unwrap();
                let Recorded::Stored {
                    codes,
                    history_rows,
                } = recorded
                else {
                    panic!("user {user_id}, event {end}: {recorded:?}");
                };
                assert_eq!(
                    codes,
                    full_history_codes(&history[..end], &thresholds, MS),
                    "user {user_id}, event {end}: {thresholds:?}"
                );
                assert!(history_rows <= row_bound(&profile), "{history_rows}");
            }
        }
    }

    #[test]
    fn codes_stay_exact_when_a_profile_changes_mid_history() {
        // The writer holds each user's last events for the thresholds it
        // last judged with; a new profile may need more than it holds.
        let store = SqliteStore::open(&temp_dir("profile-changes")).unwrap();
        let mut rng = fastrand::Rng::with_seed(11);
        for user_id in 0..12 {
            let history = random_history(&mut rng, MS, 80);
            let mut profile = AlertProfile::default();
            for end in 1..=history.len() {
                if end % 9 == 0 {
                    profile = random_profile(&mut rng);
                    store.set_alert_profile(user_id, &profile).unwrap();
                }
                let recorded = record(&store, user_id, &history[end - 1], MS).unwrap();
                assert_eq!(
                    codes_of(recorded),
                    full_history_codes(&history[..end], &profile.thresholds(), MS),
                    "user {user_id}, event {end}"
                );
            }
        }
    }

    /// Prints the mean and the slowest of each thousand events' latencies.
    fn print_latencies(what: &str, latencies: &[Duration]) {
        for (name, part) in [
            ("first", &latencies[..1000]),
            ("last", &latencies[latencies.len() - 1000..]),
        ] {
            let mean = part.iter().sum::<Duration>() / part.len() as u32;
            let slowest = part.iter().max().unwrap();
            eprintln!("{what}: {name} 1000: mean {mean:?}, slowest {slowest:?}");
        }
    }

    #[test]
    fn ten_thousand_events_at_one_time_each_read_the_same_few_rows() {
        let store = SqliteStore::open(&temp_dir("one-time")).unwrap();
        let bound = row_bound(&AlertProfile::default());
        let mut latencies = Vec::new();
        let mut rows_read = Vec::new();
        for i in 0..10_000 {
            let kind = if i % 3 == 1 {
                Kind::Withdraw
            } else {
                Kind::Deposit
            };
            let event = Event {
                kind,
                amount: Decimal::ONE,
                time: 1_000_000,
            };
            let started = Instant::now();
            let recorded = record(&store, 1, &event, MS).unwrap();
            latencies.push(started.elapsed());
            let Recorded::Stored { history_rows, .. } = recorded else {
                panic!("event {i}: {recorded:?}");
            };
            assert!(history_rows <= bound, "event {i} read {history_rows} rows");
            rows_read.push(history_rows);
        }
        print_latencies("store, 10,000 events at one time", &latencies);
        // Each reads as much as the thresholds need once the history holds
        // it: the last six events, which hold the last three deposits too
        // (no event is older than the window), the 10,000th as the 7th.
        assert_eq!(rows_read[..7], [0, 1, 2, 3, 4, 5, 6]);
        assert!(rows_read[6..].iter().all(|rows| *rows == 6));
        assert_eq!(store.events(1, None, 1).unwrap()[0].alert_codes, [123, 500]);
    }

    #[test]
    fn the_history_is_read_along_indexes_without_sorting() {
        let store = SqliteStore::open(&temp_dir("plans")).unwrap();
        for query in [LAST_EVENTS, LAST_DEPOSITS, TOTAL_BEFORE_WINDOW] {
            let plan: Vec<String> = store
                .with(|conn| {
                    let mut explained = conn.prepare(&format!("EXPLAIN QUERY PLAN {query}"))?;
                    let values = vec![1; explained.parameter_count()];
                    explained
                        .query_map(rusqlite::params_from_iter(values), |row| {
                            row.get::<_, String>("detail")
                        })?
                        .collect()
                })
                .unwrap();
            assert!(
                plan.len() == 1
                    && plan[0].starts_with("SEARCH alert_events USING")
                    && plan[0].contains("INDEX"),
                "{query}: {plan:?}"
            );
        }
    }

    /// Writes `batch` as one batch, with the writer's function.
    fn write_as_one(store: &SqliteStore, batch: Vec<Write>) -> Vec<Written> {
        store
            .with(|conn| Ok(write_batch(conn, &mut Tails::default(), batch)))
            .unwrap()
    }

    /// Writes `events` of user 1 as one batch.
    fn write_as_one_batch(store: &SqliteStore, events: &[Event]) -> Vec<StoreResult<Recorded>> {
        let batch = events
            .iter()
            .map(|event| {
                Write::Event(QueuedEvent {
                    user_id: 1,
                    event: *event,
                    unit: MS,
                })
            })
            .collect();
        let written = write_as_one(store, batch);
        written.into_iter().map(Written::of_event).collect()
    }

    #[test]
    fn events_in_one_batch_get_the_codes_they_would_one_at_a_time() {
        let store = SqliteStore::open(&temp_dir("in-batch")).unwrap();
        let event = |kind, amount: i64, time| Event {
            kind,
            amount: Decimal::from(amount),
            time,
        };
        let events = [
            event(Kind::Deposit, 100, 0),
            event(Kind::Deposit, 101, 3),
            event(Kind::Withdraw, 1, 2),
            event(Kind::Deposit, 102, 4),
            event(Kind::Withdraw, 200, 5),
        ];
        let outcomes = write_as_one_batch(&store, &events);
        let replay = SqliteStore::open(&temp_dir("in-batch-replay")).unwrap();
        for (event, outcome) in events.iter().zip(outcomes) {
            assert_eq!(
                outcome.unwrap(),
                record(&replay, 1, event, MS).unwrap(),
                "{event:?}"
            );
        }
        assert_eq!(
            record(&replay, 1, &events[2], MS).unwrap(),
            Recorded::OutOfOrder { latest: 5 }
        );
        // A profile changed between batches applies to the next: over 50 is
        // high risk's withdrawal limit, not medium's.
        let high = AlertProfile {
            risk: Risk::High,
            ..AlertProfile::default()
        };
        store.set_alert_profile(1, &high).unwrap();
        let withdrawal = event(Kind::Withdraw, 60, 6);
        let outcome = write_as_one_batch(&store, &[withdrawal]);
        assert!(codes_of(outcome[0].clone().unwrap()).contains(&1100));
        let medium = codes_of(record(&replay, 1, &withdrawal, MS).unwrap());
        assert!(!medium.contains(&1100), "{medium:?}");
    }

    #[test]
    fn an_event_that_fails_in_a_batch_is_undone_alone() {
        let store = SqliteStore::open(&temp_dir("batch-failure")).unwrap();
        let deposit = |user_id| {
            Write::Event(QueuedEvent {
                user_id,
                event: Event {
                    kind: Kind::Deposit,
                    amount: Decimal::from(10),
                    time: 5,
                },
                unit: MS,
            })
        };
        // User 2's history holds a row it cannot read: its event fails.
        store
            .with(|conn| {
                conn.execute(
                    "INSERT INTO alert_events (user_id, kind, amount, time, alert_codes)
                     VALUES (2, 'deposit', 'not a number', 1, '')",
                    [],
                )
            })
            .unwrap();
        let outcomes: Vec<StoreResult<Recorded>> =
            write_as_one(&store, vec![deposit(1), deposit(2), deposit(3)])
                .into_iter()
                .map(Written::of_event)
                .collect();
        assert!(
            matches!(outcomes[0], Ok(Recorded::Stored { .. })),
            "{outcomes:?}"
        );
        assert!(
            matches!(outcomes[1], Err(StoreError::Backend(_))),
            "{outcomes:?}"
        );
        assert!(
            matches!(outcomes[2], Ok(Recorded::Stored { .. })),
            "{outcomes:?}"
        );
        assert_eq!(store.events(1, None, 10).unwrap().len(), 1);
        assert_eq!(store.events(3, None, 10).unwrap().len(), 1);
        let stored_for_2: i64 = store
            .with(|conn| {
                conn.query_row(
                    "SELECT count(*) FROM alert_events WHERE user_id = 2",
                    [],
                    |row| row.get(0),
                )
            })
            .unwrap();
        assert_eq!(stored_for_2, 1, "only the unreadable row");
    }

    /// The accounts' outcomes of a batch's outcomes, in order.
    fn of_accounts(written: Vec<Written>) -> Vec<StoreResult<()>> {
        written.into_iter().map(Written::of_account).collect()
    }

    #[test]
    fn of_two_sign_ups_of_one_name_in_one_batch_the_first_is_created() {
        let store = SqliteStore::open(&temp_dir("batch-namesakes")).unwrap();
        let mut second = account("ann");
        second.password_hash = "$argon2id$other".into();
        let outcomes = of_accounts(write_as_one(
            &store,
            vec![
                Write::Account(account("ann")),
                Write::Account(account("bob")),
                Write::Account(second),
            ],
        ));
        assert!(
            matches!(outcomes[..], [Ok(()), Ok(()), Err(StoreError::Conflict)]),
            "{outcomes:?}"
        );
        assert_eq!(store.find_account("ann").unwrap(), Some(account("ann")));
        assert_eq!(store.find_account("bob").unwrap(), Some(account("bob")));
    }

    #[test]
    fn events_and_sign_ups_share_a_batch_in_arrival_order() {
        let store = SqliteStore::open(&temp_dir("batch-mixed")).unwrap();
        let deposit = |time| {
            Write::Event(QueuedEvent {
                user_id: 1,
                event: Event {
                    kind: Kind::Deposit,
                    amount: Decimal::from(10),
                    time,
                },
                unit: MS,
            })
        };
        let mut written = write_as_one(
            &store,
            vec![deposit(1), Write::Account(account("ann")), deposit(2)],
        )
        .into_iter();
        let (first, ann, second) = (
            written.next().unwrap(),
            written.next().unwrap(),
            written.next().unwrap(),
        );
        assert!(written.next().is_none());
        assert!(matches!(first.of_event(), Ok(Recorded::Stored { .. })));
        assert!(matches!(ann.of_account(), Ok(())));
        assert!(matches!(second.of_event(), Ok(Recorded::Stored { .. })));
        assert_eq!(store.find_account("ann").unwrap(), Some(account("ann")));
        let times: Vec<i64> = store
            .events(1, None, 10)
            .unwrap()
            .iter()
            .map(|stored| stored.event.time)
            .collect();
        assert_eq!(times, [2, 1]);
    }

    #[test]
    fn a_sign_up_that_fails_in_a_batch_is_undone_alone() {
        let store = SqliteStore::open(&temp_dir("batch-sign-up-failure")).unwrap();
        // carl's account was removed by hand and left a key behind, which
        // cannot be deleted: his sign-up fails at its second statement,
        // after its account row was inserted.
        create(&store, account("carl")).unwrap();
        store
            .create_key(&key("old", Some("carl")), &keys::hash("wren_old"), 10)
            .unwrap();
        store
            .with(|conn| {
                conn.execute_batch(
                    "PRAGMA foreign_keys = OFF;
                     DELETE FROM accounts WHERE username = 'carl';
                     PRAGMA foreign_keys = ON;
                     CREATE TRIGGER keep_carls_keys BEFORE DELETE ON api_keys
                     WHEN old.account = 'carl' BEGIN SELECT RAISE(ABORT, 'kept'); END;",
                )
            })
            .unwrap();
        let outcomes = of_accounts(write_as_one(
            &store,
            vec![
                Write::Account(account("ann")),
                Write::Account(account("carl")),
                Write::Account(account("dora")),
            ],
        ));
        assert!(
            matches!(outcomes[..], [Ok(()), Err(StoreError::Backend(_)), Ok(())]),
            "{outcomes:?}"
        );
        // The failure says carl's account is absent, and it is.
        assert_eq!(store.find_account("carl").unwrap(), None);
        assert!(store.find_account("ann").unwrap().is_some());
        assert!(store.find_account("dora").unwrap().is_some());
    }

    #[test]
    fn concurrent_sign_ups_of_one_name_create_it_once() {
        let store = Arc::new(SqliteStore::open(&temp_dir("one-name")).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let mut mine = account("ann");
                    mine.password_hash = format!("$argon2id${n}");
                    (mine.password_hash.clone(), create(&store, mine))
                })
            })
            .collect();
        let outcomes: Vec<(String, StoreResult<()>)> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        let created: Vec<&String> = outcomes
            .iter()
            .filter(|(_, outcome)| outcome.is_ok())
            .map(|(hash, _)| hash)
            .collect();
        assert_eq!(created.len(), 1, "{outcomes:?}");
        assert!(
            outcomes
                .iter()
                .all(|(_, outcome)| matches!(outcome, Ok(()) | Err(StoreError::Conflict))),
            "{outcomes:?}"
        );
        let stored = store.find_account("ann").unwrap().unwrap();
        assert_eq!(&stored.password_hash, created[0]);
    }

    #[test]
    fn concurrent_events_get_the_codes_of_the_order_they_were_stored_in() {
        let store = Arc::new(SqliteStore::open(&temp_dir("concurrent")).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|thread| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(thread);
                    // Two threads per user: both post at the same times.
                    let user_id = (thread % 4) as i64;
                    for event in
                        random_history(&mut fastrand::Rng::with_seed(user_id as u64), MS, 50)
                    {
                        let event = Event {
                            kind: if rng.bool() {
                                Kind::Deposit
                            } else {
                                Kind::Withdraw
                            },
                            ..event
                        };
                        record(&store, user_id, &event, MS).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let thresholds = AlertProfile::default().thresholds();
        for user_id in 0..4 {
            let mut stored = store.events(user_id, None, 1000).unwrap();
            stored.reverse();
            let history: Vec<Event> = stored.iter().map(|s| s.event).collect();
            for (end, event) in stored.iter().enumerate() {
                assert_eq!(
                    event.alert_codes,
                    full_history_codes(&history[..=end], &thresholds, MS),
                    "user {user_id}, event {end}"
                );
            }
        }
    }

    #[test]
    fn events_stored_before_running_totals_get_them_at_the_next_open() {
        let dir = temp_dir("fill-totals");
        let mut rng = fastrand::Rng::with_seed(3);
        let history = random_history(&mut rng, MS, 2_500);
        {
            // The schema as it was before running totals, filled as the store
            // then filled it.
            let conn = crate::sqlite::open(&dir.join("wren.db"), &MIGRATIONS[..3]).unwrap();
            for event in &history[..2_400] {
                conn.execute(
                    "INSERT INTO alert_events (user_id, kind, amount, time, alert_codes)
                     VALUES (1, ?1, ?2, ?3, '')",
                    params![event.kind.as_str(), event.amount.to_string(), event.time],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&dir).unwrap();
        let thresholds = AlertProfile::default().thresholds();
        for end in 2_401..=history.len() {
            let codes = codes_of(record(&store, 1, &history[end - 1], MS).unwrap());
            assert_eq!(codes, full_history_codes(&history[..end], &thresholds, MS));
        }
        let untotalled: i64 = store
            .with(|conn| {
                conn.query_row(
                    "SELECT count(*) FROM alert_events WHERE deposit_total IS NULL",
                    [],
                    |row| row.get(0),
                )
            })
            .unwrap();
        assert_eq!(untotalled, 0);
    }

    #[test]
    fn the_pool_serves_many_threads() {
        let store = std::sync::Arc::new(SqliteStore::open(&temp_dir("pool")).unwrap());
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    create(&store, account(&format!("user{i}"))).unwrap();
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

//! The PostgreSQL store, for several wren instances sharing one database
//! (`--database-url`); the SQLite store's counterpart behind the same
//! [`Store`] trait, with the same schema versions.
//!
//! # Connections
//!
//! A [`Pool`] of at most `pool_size` blocking connections, which replaces
//! the ones the server or the network broke, so a restarted database costs
//! the requests in flight, not the instance.
//!
//! # Schema
//!
//! `wren_schema` holds the version, numbered as SQLite's `user_version`:
//! entry `n` of `MIGRATIONS` takes it from `n` to `n + 1`. Instances
//! starting together migrate one at a time (an advisory lock), all pending
//! steps in one transaction, since PostgreSQL's DDL is transactional. A
//! database from a newer wren is refused.
//!
//! # Events and sign-ups: group commit, per-user locks
//!
//! As in SQLite, events and new accounts queue for the store's writer
//! thread ([`GroupCommit`]), which writes what is queued in one
//! transaction and one commit. Other instances write the same users, so
//! the writer holds nothing of a user between batches (no tails) and, in
//! each batch, first takes the transaction-scoped advisory lock of every
//! user it holds events of, in ascending order (so two instances' batches
//! never wait on each other in a circle); an event is then judged from
//! what is committed plus the batch's earlier events, and no other
//! instance can slip an event of that user in before the commit.
//!
//! PostgreSQL aborts a whole transaction on its first error, where SQLite
//! undoes the one statement: a batch that meets an error (a row this code
//! did not write, say) is rolled back and its writes are retried one
//! transaction each, so the failing one fails alone. A lost connection
//! fails the batch; its writes were not acknowledged.

use std::sync::Arc;

use rust_decimal::Decimal;

use super::batch::{QueuedEvent, Write, Written, codes_from_text, now_unix, profile_from_text};
use super::{
    Account, AccountDone, ApiKey, EventDone, KeyCreated, S3Credentials, Store, StoreError,
    StoreResult, StoredEvent,
};
use crate::alerts::{self, AlertProfile, Event, Kind, TimeUnit, Total};
use crate::auth::Role;
use crate::auth::keys::{self, KeyHash};
use crate::group_commit::GroupCommit;
use crate::postgres::pool::{self, Pool, TIMEOUT};
use crate::postgres::{Client, Config, Param, PgError, Row};

/// The advisory lock migrations hold (the two-key form, so it shares no
/// key with the users' one-key locks): "wren", 1.
const MIGRATION_LOCK: (i32, i32) = (0x7772_656e, 1);

/// Schema versions, numbered as SQLite's (`store::sqlite`): entry `n` takes
/// `wren_schema.version` from `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: accounts and revoked tokens.
    "CREATE TABLE accounts (
        username TEXT PRIMARY KEY NOT NULL,
        password_hash TEXT NOT NULL,
        s3_access_key_id TEXT,
        s3_secret_sealed BYTEA,
        s3_bucket TEXT,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE revoked_tokens (
        jti TEXT PRIMARY KEY NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);",
    // 2: transaction alerts; amounts are decimal strings (exact), codes a
    // comma-separated list.
    "CREATE TABLE alert_events (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        user_id BIGINT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('deposit', 'withdraw')),
        amount TEXT NOT NULL,
        time BIGINT NOT NULL,
        alert_codes TEXT NOT NULL
    );
    CREATE INDEX alert_events_user_seq ON alert_events (user_id, seq);
    CREATE INDEX alert_events_user_time ON alert_events (user_id, time);
    CREATE TABLE alert_profiles (
        user_id BIGINT PRIMARY KEY NOT NULL,
        risk TEXT NOT NULL,
        overrides TEXT NOT NULL,
        updated_at BIGINT NOT NULL
    );",
    // 3: an index per history branch.
    "DROP INDEX alert_events_user_time;
    CREATE INDEX alert_events_user_kind_seq ON alert_events (user_id, kind, seq);
    CREATE INDEX alert_events_user_kind_time ON alert_events (user_id, kind, time);",
    // 4: each event's running total of its user's deposits. Every event
    // this store writes has one, so it needs no index of the events
    // without (SQLite's has events from before the column).
    "ALTER TABLE alert_events ADD COLUMN deposit_total BYTEA;",
    // 5: account roles.
    "ALTER TABLE accounts ADD COLUMN role TEXT NOT NULL DEFAULT 'user'
        CHECK (role IN ('user', 'admin'));",
    // 6: API keys, found by the SHA-256 of the key.
    "CREATE TABLE api_keys (
        name TEXT PRIMARY KEY NOT NULL,
        key_hash BYTEA NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        account TEXT REFERENCES accounts (username) ON DELETE CASCADE,
        created_at BIGINT NOT NULL,
        last_used BIGINT
    );
    CREATE INDEX api_keys_account ON api_keys (account);",
    // 7: the second each account's session tokens count from.
    "ALTER TABLE accounts ADD COLUMN sessions_from BIGINT NOT NULL DEFAULT 0;",
    // 8: deposits come from the (user, kind, time) index.
    "DROP INDEX alert_events_user_kind_seq;",
];

mod buckets;
mod events;

pub use buckets::PgBuckets;

pub struct PgStore {
    /// Shared with the limiter's buckets ([`PgStore::buckets`]).
    pool: Arc<Pool>,
    /// Events and new accounts waiting for their batch's commit.
    commits: GroupCommit<Write, Written>,
}

impl PgStore {
    /// Connects to the database `config` names, brings its schema up to
    /// date, and starts the writer; the pool opens up to `pool_size`
    /// connections. The error says what failed: the address, the login, or
    /// the schema.
    pub fn open(config: &Config, pool_size: usize) -> StoreResult<PgStore> {
        let mut client = Client::connect(config, TIMEOUT).map_err(backend)?;
        migrate(&mut client)?;
        let mut writer = Some(client);
        let writer_config = config.clone();
        let commits = GroupCommit::start(
            "wren-store-writer",
            move |batch| write_batch(&mut writer, &writer_config, batch),
            || Written::Lost,
        )
        .map_err(|err| StoreError::Backend(format!("cannot start the writer thread: {err}")))?;
        Ok(PgStore {
            pool: Arc::new(Pool::new(config, pool_size)),
            commits,
        })
    }

    /// The login and sign-up limiters' buckets, in this store's database
    /// and over its connections.
    pub fn buckets(&self) -> StoreResult<PgBuckets> {
        PgBuckets::open(Arc::clone(&self.pool)).map_err(StoreError::Backend)
    }

    fn with<T>(&self, work: impl FnOnce(&mut Client) -> Result<T, PgError>) -> StoreResult<T> {
        self.pool.with(work).map_err(backend)
    }
}

fn backend(err: PgError) -> StoreError {
    StoreError::Backend(err.to_string())
}

/// A value this code did not write.
fn corrupt(what: &str) -> PgError {
    PgError::Protocol(format!("a stored {what} wren did not write"))
}

/// Brings the schema up to date, one instance at a time.
fn migrate(client: &mut Client) -> StoreResult<()> {
    pool::migrate(client, "wren_schema", MIGRATION_LOCK, MIGRATIONS)
        .map_err(|err| StoreError::Backend(format!("migrating the schema: {err}")))?
        .map_err(StoreError::Backend)
}

/// Writes a batch of events and accounts in one transaction; should it
/// meet an error, each write alone in its own. The outcomes in the
/// batch's order.
fn write_batch(writer: &mut Option<Client>, config: &Config, batch: Vec<Write>) -> Vec<Written> {
    if writer.as_mut().is_none_or(Client::spoke_while_idle) {
        match Client::connect(config, TIMEOUT) {
            Ok(client) => *writer = Some(client),
            Err(err) => {
                *writer = None;
                let err = backend(err);
                return batch
                    .iter()
                    .map(|write| write.failed(err.clone()))
                    .collect();
            }
        }
    }
    let Some(client) = writer.as_mut() else {
        unreachable!("connected just above");
    };
    match client.transaction(|tx| write_all(tx, &batch)) {
        Ok(outcomes) => outcomes,
        Err(_) if !client.is_broken() && batch.len() > 1 => batch
            .iter()
            .map(|write| {
                match client.transaction(|tx| write_all(tx, std::slice::from_ref(write))) {
                    Ok(mut outcome) => outcome.remove(0),
                    Err(err) => write.failed(backend(err)),
                }
            })
            .collect(),
        Err(err) => {
            let err = backend(err);
            batch
                .iter()
                .map(|write| write.failed(err.clone()))
                .collect()
        }
    }
}

/// The writes of `batch`, in the transaction `tx`: the events as
/// `events` writes them, then the sign-ups; the outcomes in the batch's
/// order.
fn write_all(tx: &mut Client, batch: &[Write]) -> Result<Vec<Written>, PgError> {
    let queued: Vec<&QueuedEvent> = batch
        .iter()
        .filter_map(|write| match write {
            Write::Event(queued) => Some(queued),
            Write::Account(_) => None,
        })
        .collect();
    let mut recorded = events::write(tx, &queued)?.into_iter();
    batch
        .iter()
        .map(|write| match write {
            Write::Event(_) => Ok(Written::Event(Ok(recorded
                .next()
                .expect("an outcome per event")))),
            Write::Account(account) => insert_account(tx, account).map(Written::Account),
        })
        .collect()
}

/// The event in columns `first` (kind), `first + 1` (amount) and
/// `first + 2` (time).
fn event_at(row: &Row, first: usize) -> Result<Event, PgError> {
    Ok(Event {
        kind: Kind::parse(row.str(first)?).ok_or_else(|| corrupt("kind"))?,
        amount: decimal(row, first + 1)?,
        time: row.i64(first + 2)?,
    })
}

fn decimal(row: &Row, at: usize) -> Result<Decimal, PgError> {
    alerts::parse_decimal(row.str(at)?).ok_or_else(|| corrupt("amount"))
}

fn total(row: &Row, at: usize) -> Result<Option<Total>, PgError> {
    row.bytes(at)?
        .map(|bytes| Total::from_bytes(&bytes).ok_or_else(|| corrupt("deposit total")))
        .transpose()
}

fn load_profile(client: &mut Client, user_id: i64) -> Result<AlertProfile, PgError> {
    let rows = client.query(
        "SELECT risk, overrides FROM alert_profiles WHERE user_id = $1",
        &[user_id.into()],
    )?;
    match rows.first() {
        None => Ok(AlertProfile::default()),
        Some(row) => profile_from_text(row.str(0)?, row.str(1)?).ok_or_else(|| corrupt("profile")),
    }
}

/// Creates an account in the batch's transaction, as a lone sign-up would:
/// `Conflict` when the name is taken.
fn insert_account(tx: &mut Client, account: &Account) -> Result<StoreResult<()>, PgError> {
    let s3 = account.s3.as_ref();
    let inserted = tx.execute(
        "INSERT INTO accounts
           (username, password_hash, role, s3_access_key_id, s3_secret_sealed, s3_bucket,
            created_at, sessions_from)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (username) DO NOTHING",
        &[
            (&account.username).into(),
            (&account.password_hash).into(),
            account.role.as_str().into(),
            s3.map(|c| &c.access_key_id).into(),
            s3.map(|c| &c.sealed_secret[..]).into(),
            s3.and_then(|c| c.bucket.as_ref()).into(),
            now_unix().into(),
            account.sessions_from.into(),
        ],
    )?;
    if inserted == 0 {
        return Ok(Err(StoreError::Conflict));
    }
    forget_keys_of_namesakes(tx, &account.username)?;
    Ok(Ok(()))
}

/// Deletes keys left bound to `username` by an earlier account of the name.
fn forget_keys_of_namesakes(tx: &mut Client, username: &str) -> Result<(), PgError> {
    tx.execute(
        "DELETE FROM api_keys WHERE account = $1",
        &[username.into()],
    )
    .map(drop)
}

/// The start of a query of keys: the columns `key_from_row` reads, in its
/// order.
macro_rules! keys_query {
    () => {
        "SELECT name, scopes, account, created_at, last_used FROM api_keys"
    };
}
/// The key whose hash is $1: on every request made with an API key, so
/// its text is made once, at compile time, not per call.
const FIND_KEY: &str = concat!(keys_query!(), " WHERE key_hash = $1");
/// Every key, or (given $1) one account's.
const LIST_KEYS: &str = concat!(
    keys_query!(),
    " WHERE $1::text IS NULL OR account = $1 ORDER BY name"
);

fn key_from_row(row: &Row) -> Result<ApiKey, PgError> {
    Ok(ApiKey {
        name: row.str(0)?.to_owned(),
        scopes: keys::parse_scopes(row.str(1)?.split(',')).map_err(|_| corrupt("scopes"))?,
        account: row.text(2)?.map(str::to_owned),
        created_at: row.i64(3)?,
        last_used: row.text(4)?.map(|_| row.i64(4)).transpose()?,
    })
}

impl Store for PgStore {
    fn create_account(&self, account: Account, done: AccountDone) {
        self.commits
            .submit(Write::Account(account), move |written| {
                done(written.of_account())
            });
    }

    fn upsert_account(&self, username: &str, password_hash: &str, role: Role) -> StoreResult<()> {
        self.with(|client| {
            client.transaction(|tx| {
                let now = now_unix();
                let inserted = tx.execute(
                    "INSERT INTO accounts (username, password_hash, role, created_at, sessions_from)
                     VALUES ($1, $2, $3, $4, $4)
                     ON CONFLICT (username) DO NOTHING",
                    &[username.into(), password_hash.into(), role.as_str().into(), now.into()],
                )?;
                if inserted == 1 {
                    return forget_keys_of_namesakes(tx, username);
                }
                tx.execute(
                    "UPDATE accounts SET
                        sessions_from = CASE WHEN password_hash = $2 THEN sessions_from ELSE $4 END,
                        password_hash = $2,
                        role = $3
                     WHERE username = $1",
                    &[
                        username.into(),
                        password_hash.into(),
                        role.as_str().into(),
                        now.into(),
                    ],
                )
                .map(drop)
            })
        })
    }

    fn find_account(&self, username: &str) -> StoreResult<Option<Account>> {
        self.with(|client| {
            let rows = client.query(
                "SELECT username, password_hash, s3_access_key_id, s3_secret_sealed, s3_bucket,
                        role, sessions_from
                 FROM accounts WHERE username = $1",
                &[username.into()],
            )?;
            let Some(row) = rows.first() else {
                return Ok(None);
            };
            let s3 = match (row.text(2)?, row.bytes(3)?) {
                (Some(access_key_id), Some(sealed_secret)) => Some(S3Credentials {
                    access_key_id: access_key_id.to_owned(),
                    sealed_secret,
                    bucket: row.text(4)?.map(str::to_owned),
                }),
                _ => None,
            };
            Ok(Some(Account {
                username: row.str(0)?.to_owned(),
                password_hash: row.str(1)?.to_owned(),
                role: Role::parse(row.str(5)?).ok_or_else(|| corrupt("role"))?,
                sessions_from: row.i64(6)?,
                s3,
            }))
        })
    }

    fn revoke_token(&self, jti: &str, expires_at: i64) -> StoreResult<()> {
        self.with(|client| {
            client.transaction(|tx| {
                tx.execute(
                    "DELETE FROM revoked_tokens WHERE expires_at < $1",
                    &[now_unix().into()],
                )?;
                tx.execute(
                    "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2)
                     ON CONFLICT (jti) DO NOTHING",
                    &[jti.into(), expires_at.into()],
                )
                .map(drop)
            })
        })
    }

    fn is_token_revoked(&self, jti: &str) -> StoreResult<bool> {
        self.with(|client| {
            let rows =
                client.query("SELECT 1 FROM revoked_tokens WHERE jti = $1", &[jti.into()])?;
            Ok(!rows.is_empty())
        })
    }

    fn ping(&self) -> StoreResult<()> {
        // The schema table, not a constant: the database must be wren's.
        self.with(|client| {
            client
                .query("SELECT version FROM wren_schema", &[])
                .map(drop)
        })
    }

    fn create_key(
        &self,
        key: &ApiKey,
        hash: &KeyHash,
        max_per_account: usize,
    ) -> StoreResult<KeyCreated> {
        self.with(|client| {
            client.transaction(|tx| {
                let taken = tx.query(
                    "SELECT 1 FROM api_keys WHERE name = $1",
                    &[(&key.name).into()],
                )?;
                if !taken.is_empty() {
                    return Ok(KeyCreated::NameTaken);
                }
                if let Some(account) = &key.account {
                    // The account's row, locked: two instances creating keys
                    // for one account count one after the other.
                    let found = tx.query(
                        "SELECT 1 FROM accounts WHERE username = $1 FOR UPDATE",
                        &[account.into()],
                    )?;
                    if found.is_empty() {
                        return Ok(KeyCreated::NoSuchAccount);
                    }
                    let held = tx.query(
                        "SELECT count(*) FROM api_keys WHERE account = $1",
                        &[account.into()],
                    )?;
                    let held = held.first().map_or(Ok(0), |row| row.i64(0))?;
                    if usize::try_from(held).unwrap_or(usize::MAX) >= max_per_account {
                        return Ok(KeyCreated::AccountFull);
                    }
                }
                let inserted = tx.execute(
                    "INSERT INTO api_keys (name, key_hash, scopes, account, created_at, last_used)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (name) DO NOTHING",
                    &[
                        (&key.name).into(),
                        Param::Bytes(&hash[..]),
                        Param::Text(keys::scope_list(&key.scopes).into()),
                        key.account.as_ref().into(),
                        key.created_at.into(),
                        key.last_used.into(),
                    ],
                )?;
                Ok(if inserted == 1 {
                    KeyCreated::Created
                } else {
                    KeyCreated::NameTaken
                })
            })
        })
    }

    fn find_key(&self, hash: &KeyHash) -> StoreResult<Option<ApiKey>> {
        self.with(|client| {
            let rows = client.query(FIND_KEY, &[Param::Bytes(&hash[..])])?;
            rows.first().map(key_from_row).transpose()
        })
    }

    fn keys(&self, of: Option<&str>) -> StoreResult<Vec<ApiKey>> {
        self.with(|client| {
            let rows = client.query(LIST_KEYS, &[of.into()])?;
            rows.iter().map(key_from_row).collect()
        })
    }

    fn delete_key(&self, name: &str, of: Option<&str>) -> StoreResult<bool> {
        self.with(|client| {
            client.execute(
                "DELETE FROM api_keys WHERE name = $1 AND ($2::text IS NULL OR account = $2)",
                &[name.into(), of.into()],
            )
        })
        .map(|deleted| deleted > 0)
    }

    fn record_key_use(&self, hash: &KeyHash, at: i64) -> StoreResult<()> {
        self.with(|client| {
            client.execute(
                "UPDATE api_keys SET last_used = $2 WHERE key_hash = $1",
                &[Param::Bytes(&hash[..]), at.into()],
            )
        })
        .map(drop)
    }

    fn record_event(&self, user_id: i64, event: &Event, unit: TimeUnit, done: EventDone) {
        super::batch::queue_event(&self.commits, user_id, event, unit, done);
    }

    fn alert_profile(&self, user_id: i64) -> StoreResult<AlertProfile> {
        self.with(|client| load_profile(client, user_id))
    }

    fn set_alert_profile(&self, user_id: i64, profile: &AlertProfile) -> StoreResult<()> {
        self.with(|client| {
            client.execute(
                "INSERT INTO alert_profiles (user_id, risk, overrides, updated_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id) DO UPDATE SET risk = excluded.risk,
                   overrides = excluded.overrides, updated_at = excluded.updated_at",
                &[
                    user_id.into(),
                    profile.risk.as_str().into(),
                    Param::Text(profile.overrides.to_json().to_string().into()),
                    now_unix().into(),
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
        self.with(|client| {
            let rows = client.query(
                "SELECT seq, kind, amount, time, alert_codes FROM alert_events
                 WHERE user_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                &[
                    user_id.into(),
                    before.unwrap_or(i64::MAX).into(),
                    i64::try_from(limit).unwrap_or(i64::MAX).into(),
                ],
            )?;
            rows.iter()
                .map(|row| {
                    Ok(StoredEvent {
                        seq: row.i64(0)?,
                        event: event_at(row, 1)?,
                        alert_codes: codes_from_text(row.str(4)?)
                            .ok_or_else(|| corrupt("alert codes"))?,
                    })
                })
                .collect()
        })
    }
}

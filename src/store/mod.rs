//! Durable state behind one seam: accounts, revoked tokens, API keys, and
//! the alert events and profiles of transaction alerts.
//!
//! [`Store`] is what handlers see. SQLite ([`sqlite::SqliteStore`], a file
//! in the data folder) is the embedded default; a PostgreSQL implementation
//! fills the same trait for multi-instance deployments and must pass the
//! same tests.
//!
//! The writes that come in bursts, events ([`Store::record_event`]) and
//! sign-ups ([`Store::create_account`]), hand their outcome to a callback
//! instead of returning it, so that an implementation can commit many of
//! them together, one fsync for all, and answer each once its commit is
//! durable, without a thread waiting on it: the SQLite store batches both
//! on one writer thread. The costly part of a sign-up, the password's hash,
//! is the caller's, done before the account reaches the store.

mod batch;
mod judge;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;
mod tails;

use std::fmt;

use crate::alerts::{AlertProfile, Event, TimeUnit};
use crate::auth::keys::KeyHash;
use crate::auth::{Role, Scope};

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub username: String,
    /// An argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    /// The unix second its session tokens count from: when the account was
    /// created, or its password last changed. Tokens issued before are
    /// refused, so a token outlives neither a password change nor the
    /// account (a new account of the same name starts afresh).
    pub sessions_from: i64,
    /// The user's own S3 credentials, if given at sign-up; the secret is
    /// sealed (encrypted) by the caller before it reaches the store.
    pub s3: Option<S3Credentials>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub sealed_secret: Vec<u8>,
    pub bucket: Option<String>,
}

/// An API key as stored, its hash aside (the key itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub name: String,
    /// Sorted, each once, never empty.
    pub scopes: Vec<Scope>,
    /// The account a key with the `files` scope acts for.
    pub account: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, written at most once a minute per key.
    pub last_used: Option<i64>,
}

/// What became of a key given to [`Store::create_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCreated {
    Created,
    /// Not stored: another key has the name.
    NameTaken,
    /// Not stored: its account has as many keys as it may.
    AccountFull,
    /// Not stored: the account it names does not exist.
    NoSuchAccount,
}

#[derive(Debug, Clone)]
pub enum StoreError {
    /// A unique key is taken (a username at sign-up).
    Conflict,
    /// The database failed; the message is for the log, not the client.
    Backend(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Conflict => f.write_str("already exists"),
            StoreError::Backend(message) => write!(f, "storage failed: {message}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type StoreResult<T> = Result<T, StoreError>;

/// A stored event, with its place in the user's history and what fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Increases with every event stored; orders a user's history and
    /// serves as the paging cursor.
    pub seq: i64,
    pub event: Event,
    pub alert_codes: Vec<u16>,
}

/// Where [`Store::record_event`] sends its outcome.
pub type EventDone = Box<dyn FnOnce(StoreResult<Recorded>) + Send>;

/// Where [`Store::create_account`] sends its outcome.
pub type AccountDone = Box<dyn FnOnce(StoreResult<()>) + Send>;

/// What became of an event given to [`Store::record_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Stored, with the codes that fired, and how many stored rows of the
    /// user's history the judgement used (read, or held from an earlier
    /// read): at most what the thresholds need (`alerts::HistoryNeed`),
    /// however long the history.
    Stored {
        codes: Vec<u16>,
        history_rows: usize,
    },
    /// Not stored: the user already has an event at a later time.
    OutOfOrder { latest: i64 },
}

/// What wren keeps. Implementations are safe to share between threads.
pub trait Store: Send + Sync {
    /// Creates an account; `Conflict` when the username is taken. Keys left
    /// bound to an earlier account of the same name (removed by hand) are
    /// deleted with it: a new account never inherits them. Either all of it
    /// happens or none.
    ///
    /// `done` gets the outcome once it is final, as with
    /// [`Store::record_event`]: after the commit that made the account
    /// durable (on the store's writer thread, whose batches hold events and
    /// accounts alike), or on the caller's thread when it fails before it
    /// is written. The caller goes on at once; nothing waits for the commit
    /// with a thread of its own.
    fn create_account(&self, account: Account, done: AccountDone);

    /// Creates the account or replaces its password and role (operator
    /// bootstrap, `--user` and `--admin`); a new account inherits no keys,
    /// as with [`Store::create_account`]. A new password (another hash)
    /// moves the account's `sessions_from` to now.
    fn upsert_account(&self, username: &str, password_hash: &str, role: Role) -> StoreResult<()>;

    fn find_account(&self, username: &str) -> StoreResult<Option<Account>>;

    /// Remembers a token id as revoked until it would have expired anyway
    /// (unix seconds); expired entries are purged on the way.
    fn revoke_token(&self, jti: &str, expires_at: i64) -> StoreResult<()>;

    fn is_token_revoked(&self, jti: &str) -> StoreResult<bool>;

    /// Whether the store answers a query at all (for `/readyz`).
    fn ping(&self) -> StoreResult<()>;

    /// Stores a new key under its hash, unless its name is taken, or its
    /// account is missing or already has `max_per_account` keys.
    fn create_key(
        &self,
        key: &ApiKey,
        hash: &KeyHash,
        max_per_account: usize,
    ) -> StoreResult<KeyCreated>;

    /// The key with this hash, if it exists (was created and not revoked).
    fn find_key(&self, hash: &KeyHash) -> StoreResult<Option<ApiKey>>;

    /// Every key, by name; with `of`, only the keys bound to that account.
    fn keys(&self, of: Option<&str>) -> StoreResult<Vec<ApiKey>>;

    /// Deletes the key named `name`, with `of` only when it is bound to that
    /// account (in the same statement, so a key revoked and re-created by
    /// someone else in between is never taken); false when there was none.
    fn delete_key(&self, name: &str, of: Option<&str>) -> StoreResult<bool>;

    /// Sets the `last_used` time (unix seconds) of the key with this hash.
    fn record_key_use(&self, hash: &KeyHash, at: i64) -> StoreResult<()>;

    /// Judges and stores one event, serialized with every other event of
    /// the user: refuses an event earlier than the user's latest, loads the
    /// profile and the bounded history the rules need, runs them and stores
    /// the event with its codes, in one transaction that holds all of what
    /// the codes were judged from. Either all of it happens or none. Events
    /// of different users do not wait for one another beyond what the
    /// backend's writes require.
    ///
    /// `done` gets the outcome once it is final: after the commit that
    /// made the event durable (on the store's writer thread), or on the
    /// caller's thread when the event is refused or fails before it is
    /// written. The caller goes on at once; nothing waits for the commit
    /// with a thread of its own.
    fn record_event(&self, user_id: i64, event: &Event, unit: TimeUnit, done: EventDone);

    /// The user's profile, or the default (medium, no overrides).
    fn alert_profile(&self, user_id: i64) -> StoreResult<AlertProfile>;

    fn set_alert_profile(&self, user_id: i64, profile: &AlertProfile) -> StoreResult<()>;

    /// Up to `limit` of the user's events, newest first, older than the
    /// event `before` (a `seq`) when given.
    fn events(
        &self,
        user_id: i64,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>>;
}

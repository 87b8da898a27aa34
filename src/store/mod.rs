//! Durable state behind one seam: accounts, revoked tokens, and the alert
//! events and profiles of transaction alerts.
//!
//! [`Store`] is what handlers see. SQLite ([`sqlite::SqliteStore`], a file
//! in the data folder) is the embedded default; a PostgreSQL implementation
//! fills the same trait for multi-instance deployments and must pass the
//! same tests.

pub mod sqlite;

use std::fmt;

use crate::alerts::{AlertProfile, Event, TimeUnit};

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub username: String,
    /// An argon2id PHC string.
    pub password_hash: String,
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

#[derive(Debug)]
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

/// What became of an event given to [`Store::record_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Stored, with the codes that fired, and how many stored rows of the
    /// user's history the judgement read: at most what the thresholds need
    /// (`alerts::HistoryNeed`), however long the history.
    Stored {
        codes: Vec<u16>,
        history_rows: usize,
    },
    /// Not stored: the user already has an event at a later time.
    OutOfOrder { latest: i64 },
}

/// What wren keeps. Implementations are safe to share between threads.
pub trait Store: Send + Sync {
    /// Creates an account; `Conflict` when the username is taken.
    fn create_account(&self, account: &Account) -> StoreResult<()>;

    /// Creates the account or replaces its password (operator bootstrap).
    fn upsert_password(&self, username: &str, password_hash: &str) -> StoreResult<()>;

    fn find_account(&self, username: &str) -> StoreResult<Option<Account>>;

    /// Remembers a token id as revoked until it would have expired anyway
    /// (unix seconds); expired entries are purged on the way.
    fn revoke_token(&self, jti: &str, expires_at: i64) -> StoreResult<()>;

    fn is_token_revoked(&self, jti: &str) -> StoreResult<bool>;

    /// Judges and stores one event, serialized with every other event of
    /// the user: refuses an event earlier than the user's latest, loads the
    /// profile and the bounded history the rules need, runs them and stores
    /// the event with its codes, in one transaction that holds all of what
    /// the codes were judged from. Either all of it happens or none. Events
    /// of different users do not wait for one another beyond what the
    /// backend's writes require.
    fn record_event(&self, user_id: i64, event: &Event, unit: TimeUnit) -> StoreResult<Recorded>;

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

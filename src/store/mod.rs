//! Durable state behind one seam: accounts and revoked tokens (later: alert
//! events and profiles).
//!
//! [`Store`] is what handlers see. SQLite ([`sqlite::SqliteStore`], a file
//! in the data folder) is the embedded default; a PostgreSQL implementation
//! fills the same trait for multi-instance deployments and must pass the
//! same tests.

pub mod sqlite;

use std::fmt;

use crate::http::ApiError;

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

/// A storage failure is the server's problem, not the client's: `503`, with
/// the cause kept out of the response.
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict => ApiError::new(409, "already exists"),
            StoreError::Backend(_) => ApiError::new(503, "storage is unavailable; try again"),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

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
}

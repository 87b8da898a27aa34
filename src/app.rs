//! The application state every handler receives.

use crate::auth::keys::UseRecorder;
use crate::auth::limiter::{LoginLimiter, Sharing, SignupLimiter};
use crate::auth::password::{self, HashError, HashPool};
use crate::auth::seal::Sealer;
use crate::auth::tokens::Tokens;
use crate::auth::{Role, secret};
use crate::blob::{SizeRecord, Storage};
use crate::config::Config;
use crate::handlers::rate::RateLimits;
use crate::metrics::Metrics;
use crate::model::ModelSlot;
use crate::store::Store;
use crate::store::sqlite::SqliteStore;
use std::sync::Arc;

/// Shared, read-mostly state of a running server.
pub struct App {
    pub config: Config,
    pub store: Box<dyn Store>,
    pub tokens: Tokens,
    pub login_limiter: LoginLimiter,
    pub signup_limiter: SignupLimiter,
    /// The request rate limits, per client address and per account or
    /// key; `None` when they are off (`config::RateLimitMode`).
    pub rate_limits: Option<RateLimits>,
    /// Where every password is hashed and verified, a bounded number at once.
    pub hashers: HashPool,
    /// When each API key's use was last written (at most once a minute).
    pub key_use: UseRecorder,
    pub model: ModelSlot,
    pub storage: Storage,
    /// Seals the S3 secrets accounts bring, with a key from the server secret.
    pub sealer: Sealer,
    /// `Cache-Control` of cacheable predictions (`--predict-max-age`),
    /// built once: it is on every `GET /predict` answer.
    pub predict_cache_control: &'static str,
    /// What `/metrics` reports besides the router's and the engine's
    /// figures (counted even under `--no-metrics`: a relaxed atomic add
    /// costs no more than asking whether to make it).
    /// Shared with answers given later (an event's, after its commit).
    pub metrics: Arc<Metrics>,
}

impl App {
    /// Opens the embedded store in the data folder, loads (or makes) the
    /// server secret, creates or updates the bootstrap accounts (`--user`
    /// as users, `--admin` as admins) and loads the model.
    pub fn open(config: Config) -> Result<App, OpenError> {
        let model = ModelSlot::open(config.model.source.clone())
            .map_err(|err| format!("cannot load the model: {err}"))?;
        let (store, shared_buckets) = open_store(&config)?;
        let secret = secret::load(config.auth.secret.as_deref(), &config.data_dir)?;
        let storage = Storage::open(&config.storage, &config.data_dir, &size_record(&config))?;
        let hashers = HashPool::new(
            config.auth.max_concurrent_hashes,
            password::SLOT_WAIT,
            config.auth.password_cache,
        );
        // Nothing else hashes yet, so these never wait for a slot.
        let bootstrap = [
            ("--user", Role::User, &config.auth.users),
            ("--admin", Role::Admin, &config.auth.admins),
        ];
        for (flag, role, accounts) in bootstrap {
            for (username, plain) in accounts {
                let hash_failed = |err: HashError| {
                    format!("cannot hash the password of {flag} {username}: {err}")
                };
                let stored = store
                    .find_account(username)
                    .map_err(|err| format!("cannot read the account of {flag}: {err}"))?;
                // The same password again keeps its hash, so a restart does
                // not end the account's sessions; a new one ends them.
                let hash = match stored {
                    Some(account)
                        if hashers
                            .verify(&account.password_hash, plain)
                            .map_err(|busy| hash_failed(busy.into()))? =>
                    {
                        account.password_hash
                    }
                    _ => hashers.hash(plain).map_err(hash_failed)?,
                };
                store
                    .upsert_account(username, &hash, role)
                    .map_err(|err| format!("cannot create the account from {flag}: {err}"))?;
            }
        }
        let sharing = shared_buckets.map(|buckets| Sharing {
            buckets,
            secret: secret.clone(),
        });
        Ok(App {
            tokens: Tokens::new(&secret, config.auth.token_ttl),
            login_limiter: LoginLimiter::new(
                config.auth.login_rate_per_minute,
                config.auth.login_burst,
            )
            .shared_through(sharing.as_ref()),
            signup_limiter: SignupLimiter::new(
                config.auth.signup_rate_per_hour,
                config.auth.signup_burst,
            )
            .shared_through(sharing.as_ref()),
            rate_limits: RateLimits::open(&config.rate_limits),
            hashers,
            key_use: UseRecorder::new(),
            store,
            model,
            storage,
            sealer: Sealer::new(&secret),
            predict_cache_control: Box::leak(
                format!("max-age={}", config.model.max_age.as_secs()).into_boxed_str(),
            ),
            metrics: Arc::default(),
            config,
        })
    }
}

/// Why a server could not start.
#[derive(Debug)]
pub enum OpenError {
    /// The database `--database-url` names cannot be used (unreachable,
    /// refused the login, or its schema is not one this wren knows): a
    /// setting to correct, like a bad flag.
    Database(String),
    /// Anything else: the data folder, the model, a bootstrap account.
    Other(String),
}

impl From<String> for OpenError {
    fn from(message: String) -> Self {
        OpenError::Other(message)
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Database(message) | OpenError::Other(message) => f.write_str(message),
        }
    }
}

/// The store: PostgreSQL when `--database-url` names a database, with a
/// connection per worker thread and one for the monitor's extra workers
/// to share, and the limiters' buckets there too; else SQLite in the data
/// folder, and the limiters keep their buckets in memory.
fn open_store(config: &Config) -> Result<(Box<dyn Store>, Option<SharedLimits>), OpenError> {
    #[cfg(feature = "postgres")]
    if let Some(database) = &config.database {
        let unusable = |err: crate::store::StoreError| {
            let problem = match err {
                crate::store::StoreError::Backend(problem) => problem,
                other => other.to_string(),
            };
            OpenError::Database(format!(
                "--database-url: cannot use the database {} at {}:{}: {problem}",
                database.database, database.host, database.port
            ))
        };
        let store = crate::store::postgres::PgStore::open(database, config.limits.threads + 1)
            .map_err(unusable)?;
        let buckets: SharedLimits = Arc::new(store.buckets().map_err(unusable)?);
        return Ok((Box::new(store), Some(buckets)));
    }
    let store = SqliteStore::open(&config.data_dir).map_err(|err| err.to_string())?;
    Ok((Box::new(store), None))
}

/// The login and sign-up limiters' buckets, when instances share them.
type SharedLimits = Arc<dyn crate::auth::limiter::SharedBuckets>;

/// Where the S3 backend records sizes and usage: in the database, when
/// instances share one, with a connection per worker thread (a write holds
/// one while the store makes its object visible).
fn size_record(config: &Config) -> SizeRecord {
    #[cfg(feature = "postgres")]
    if let Some(database) = &config.database {
        return SizeRecord::Database {
            config: database.clone(),
            connections: config.limits.threads,
        };
    }
    let _ = config;
    SizeRecord::DataFolder
}

/// An `App` on default settings over a fresh data folder, for unit tests.
#[cfg(test)]
pub(crate) fn test_app() -> App {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wren-unit-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data_dir = dir.to_str().unwrap();
    let config = Config::parse("wren", &["--data-dir", data_dir], |_| None).unwrap();
    App::open(config).unwrap()
}

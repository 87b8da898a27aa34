//! A bounded pool of [`Client`]s, shared by the threads of one instance:
//! at most `size` connections open at once, opened as needed; one the
//! server or the network broke is dropped when given back, and one the
//! server ended while it sat idle is dropped at checkout
//! ([`Client::spoke_while_idle`]); another is opened in its place, so a
//! restarted database costs the requests in flight, not the instance.

use std::io;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Client, Config, PgError};

/// How long connecting, and each answer (from the request to its last
/// message), may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Pool {
    config: Config,
    size: usize,
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Client>,
    open: usize,
}

impl Pool {
    /// A pool of up to `size` (at least one) connections to `config`'s
    /// database; none is opened yet.
    pub fn new(config: &Config, size: usize) -> Pool {
        Pool {
            config: config.clone(),
            size: size.max(1),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
        }
    }

    /// Runs `work` on a connection of the pool, waiting for one while all
    /// `size` are in use (at most [`TIMEOUT`]).
    pub fn with<T>(
        &self,
        work: impl FnOnce(&mut Client) -> Result<T, PgError>,
    ) -> Result<T, PgError> {
        let mut lease = Lease {
            pool: self,
            client: Some(self.checkout()?),
        };
        work(lease.client.as_mut().expect("a lease holds its client"))
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection the server has not ended, a new one while fewer
    /// than `size` are open, else the next one given back within
    /// [`TIMEOUT`].
    fn checkout(&self) -> Result<Client, PgError> {
        let deadline = Instant::now() + TIMEOUT;
        let mut state = self.lock();
        loop {
            if let Some(mut client) = state.idle.pop() {
                if !client.spoke_while_idle() {
                    return Ok(client);
                }
                // Ended by the server (a restart, say): its place goes to
                // a new connection.
                state.open -= 1;
                continue;
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return Client::connect(&self.config, TIMEOUT).inspect_err(|_| self.forget_one());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PgError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "none of the pool's {} connections came free within {} s",
                        self.size,
                        TIMEOUT.as_secs()
                    ),
                )));
            }
            state = self
                .returned
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Back to the pool; a broken connection is dropped instead, and its
    /// place freed for a new one.
    fn give_back(&self, client: Client) {
        if client.is_broken() {
            self.forget_one();
            return;
        }
        self.lock().idle.push(client);
        self.returned.notify_one();
    }

    fn forget_one(&self) {
        self.lock().open -= 1;
        self.returned.notify_one();
    }
}

/// A connection out of the pool, given back when the work is done; one
/// whose work panicked halfway is closed instead, its place freed.
struct Lease<'p> {
    pool: &'p Pool,
    client: Option<Client>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if std::thread::panicking() {
                self.pool.forget_one();
            } else {
                self.pool.give_back(client);
            }
        }
    }
}

/// Brings a schema up to date, one instance at a time: `table` holds its
/// version, numbered as SQLite's `user_version` (entry `n` of `migrations`
/// takes it from `n` to `n + 1`); `lock` is the two-key advisory lock
/// instances starting together take in turn. All pending steps run in one
/// transaction, since PostgreSQL's DDL is transactional. A schema from a
/// newer wren is refused: `Ok(Err(why))`.
pub fn migrate(
    client: &mut Client,
    table: &str,
    lock: (i32, i32),
    migrations: &[&str],
) -> Result<Result<(), String>, PgError> {
    client.transaction(|tx| {
        tx.execute(
            "SELECT pg_advisory_xact_lock($1::int, $2::int)",
            &[i64::from(lock.0).into(), i64::from(lock.1).into()],
        )?;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL)"
        ))?;
        let rows = tx.query(&format!("SELECT version FROM {table}"), &[])?;
        let version = match rows.first() {
            Some(row) => row.i64(0)?,
            None => {
                tx.execute(&format!("INSERT INTO {table} (version) VALUES (0)"), &[])?;
                0
            }
        };
        let known = migrations.len() as i64;
        if version > known {
            return Ok(Err(format!(
                "the database's schema ({table}) is version {version}, from a newer wren (this \
                 one knows up to {known}); refusing to use it"
            )));
        }
        let Ok(done) = usize::try_from(version) else {
            return Ok(Err(format!(
                "the database's schema ({table}) has version {version}, which no wren writes"
            )));
        };
        for migration in &migrations[done..] {
            tx.batch_execute(migration)?;
        }
        tx.execute(&format!("UPDATE {table} SET version = $1"), &[known.into()])?;
        Ok(Ok(()))
    })
}

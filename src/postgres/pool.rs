//! A bounded pool of [`Client`]s, shared by the threads of one instance:
//! at most `size` connections open at once, opened as needed; one the
//! server or the network broke is dropped when given back, and one the
//! server ended while it sat idle is dropped at checkout
//! ([`Client::spoke_while_idle`]); another is opened in its place, so a
//! restarted database costs the requests in flight, not the instance.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{Client, Config, PgError};

/// How long connecting, and each round trip, may take.
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

    /// The database this pool connects to.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs `work` on a connection of the pool, waiting for one while all
    /// `size` are in use.
    pub fn with<T>(
        &self,
        work: impl FnOnce(&mut Client) -> Result<T, PgError>,
    ) -> Result<T, PgError> {
        let mut client = self.checkout()?;
        let done = work(&mut client);
        self.give_back(client);
        done
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection the server has not ended, a new one while fewer
    /// than `size` are open, else the next one given back.
    fn checkout(&self) -> Result<Client, PgError> {
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
            state = self
                .returned
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
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
        for migration in &migrations[version as usize..] {
            tx.batch_execute(migration)?;
        }
        tx.execute(&format!("UPDATE {table} SET version = $1"), &[known.into()])?;
        Ok(Ok(()))
    })
}

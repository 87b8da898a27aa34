//! The login and sign-up limiters' buckets in the database instances
//! share ([`SharedBuckets`]): a row per bucket (`limiter_buckets`), keyed
//! by the limiter's keyed hash, holding its tokens, when they were
//! counted, and when it will be full again.
//!
//! A take locks its keys' rows (`SELECT ... FOR UPDATE`, in ascending key
//! order so that two takes never wait on each other in a circle) in one
//! transaction, so two instances taking the last token of one bucket
//! cannot both have it. A missing bucket is a full one: the statement that
//! locks a row makes it full first when there is none (an upsert, which
//! settles two instances making it at once). Rows whose buckets have refilled
//! say nothing a missing row would not, and are deleted every
//! [`PURGE_EVERY`] takes, so the table holds only the buckets still
//! refilling: attempts of the last refill time (minutes for logins, hours
//! for sign-ups at the defaults).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::auth::limiter::{Limit, SharedBuckets};
use crate::postgres::pool;
use crate::postgres::{Client, PgError, Pool};

/// How many takes (per instance) between two purges of refilled buckets.
pub const PURGE_EVERY: u64 = 1024;

/// The buckets' schema versions, under their own version table (beside
/// the store's, whose numbering stays SQLite's) and migration lock.
const SCHEMA_TABLE: &str = "wren_limiter_schema";
const MIGRATION_LOCK: (i32, i32) = (0x7772_656e, 3);
const MIGRATIONS: &[&str] = &[
    // 1: a row per bucket still refilling.
    "CREATE TABLE limiter_buckets (
        key BIGINT PRIMARY KEY NOT NULL,
        tokens DOUBLE PRECISION NOT NULL,
        updated DOUBLE PRECISION NOT NULL,
        full_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX limiter_buckets_full_at ON limiter_buckets (full_at);",
];

pub struct PgBuckets {
    pool: Arc<Pool>,
    takes: AtomicU64,
}

impl PgBuckets {
    /// The buckets in `pool`'s database, their table brought up to date.
    pub fn open(pool: Arc<Pool>) -> Result<PgBuckets, String> {
        pool.with(|client| pool::migrate(client, SCHEMA_TABLE, MIGRATION_LOCK, MIGRATIONS))
            .map_err(|err| format!("the limiter buckets' table: {err}"))?
            .map_err(|err| format!("the limiter buckets' table: {err}"))?;
        Ok(PgBuckets {
            pool,
            takes: AtomicU64::new(0),
        })
    }
}

/// The keys in the order their rows are locked, each once.
fn in_lock_order(keys: &[(u64, Limit)]) -> Vec<(i64, Limit)> {
    let mut ordered: Vec<(i64, Limit)> = keys
        .iter()
        .map(|&(key, limit)| (key as i64, limit))
        .collect();
    ordered.sort_by_key(|&(key, _)| key);
    ordered.dedup_by_key(|&mut (key, _)| key);
    ordered
}

/// Each key's tokens at `now`, its row locked until the transaction ends:
/// one statement per key makes a missing bucket full and locks it, or
/// locks the one there (a purge cannot slip in between).
fn lock_buckets(tx: &mut Client, keys: &[(i64, Limit)], now: f64) -> Result<Vec<f64>, PgError> {
    let mut levels = Vec::with_capacity(keys.len());
    for &(key, limit) in keys {
        let rows = tx.query(
            "INSERT INTO limiter_buckets (key, tokens, updated, full_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (key) DO UPDATE SET key = excluded.key
             RETURNING tokens, updated",
            &[key.into(), (limit.burst() as f64).into(), now.into()],
        )?;
        let row = rows
            .first()
            .ok_or_else(|| PgError::Protocol("no limiter bucket came back".into()))?;
        levels.push(limit.refill(row.f64(0)?, now - row.f64(1)?));
    }
    Ok(levels)
}

/// Stores a bucket's `tokens` as counted at `now`.
fn set_bucket(
    tx: &mut Client,
    key: i64,
    limit: Limit,
    tokens: f64,
    now: f64,
) -> Result<(), PgError> {
    let full_at = now + limit.time_to_full(tokens).as_secs_f64();
    tx.execute(
        "UPDATE limiter_buckets SET tokens = $2, updated = $3, full_at = $4 WHERE key = $1",
        &[key.into(), tokens.into(), now.into(), full_at.into()],
    )
    .map(drop)
}

impl SharedBuckets for PgBuckets {
    fn take(&self, keys: &[(u64, Limit)], now: f64) -> Result<Result<(), Duration>, String> {
        let keys = in_lock_order(keys);
        let taken = self.pool.with(|client| {
            let taken = client.transaction(|tx| {
                let levels = lock_buckets(tx, &keys, now)?;
                let wait = keys
                    .iter()
                    .zip(&levels)
                    .filter(|(_, tokens)| **tokens < 1.0)
                    .map(|((_, limit), tokens)| limit.wait_for_one(*tokens))
                    .max();
                if let Some(wait) = wait {
                    return Ok(Err(wait));
                }
                for (&(key, limit), tokens) in keys.iter().zip(levels) {
                    set_bucket(tx, key, limit, tokens - 1.0, now)?;
                }
                Ok(Ok(()))
            })?;
            if self.takes.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1 {
                // Housekeeping after the take has committed: it skips the
                // rows takes hold, and its failure is no failure of the
                // take (the next purge deletes what this one left).
                let _ = client.execute(
                    "DELETE FROM limiter_buckets WHERE key IN (
                         SELECT key FROM limiter_buckets WHERE full_at < $1
                         FOR UPDATE SKIP LOCKED)",
                    &[now.into()],
                );
            }
            Ok(taken)
        });
        taken.map_err(|err| format!("limiter buckets: {err}"))
    }

    fn give_back(
        &self,
        keys: &[(u64, Limit)],
        forget: Option<u64>,
        now: f64,
    ) -> Result<(), String> {
        let keys = in_lock_order(keys);
        let forget = forget.map(|key| key as i64);
        let given = self.pool.with(|client| {
            client.transaction(|tx| {
                let levels = lock_buckets(tx, &keys, now)?;
                for (&(key, limit), tokens) in keys.iter().zip(levels) {
                    if Some(key) == forget {
                        tx.execute("DELETE FROM limiter_buckets WHERE key = $1", &[key.into()])?;
                    } else {
                        let tokens = (tokens + 1.0).min(limit.burst() as f64);
                        set_bucket(tx, key, limit, tokens, now)?;
                    }
                }
                Ok(())
            })
        });
        given.map_err(|err| format!("limiter buckets: {err}"))
    }
}

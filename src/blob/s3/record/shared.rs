//! The record in the PostgreSQL database that instances share
//! (`--database-url`): the same `objects` and `usage` figures as the local
//! record, in tables of their own (`s3_objects`, `s3_usage`, the usage kept
//! by a trigger in the same transaction as each object's row), under their
//! own schema version (`wren_s3_record_schema`), beside the store's.
//!
//! Several instances write one account at once, each with its own quota
//! ledger, which sees only its own uploads. So a write takes two short
//! steps in the database around the request that makes its object
//! visible:
//! 1. **Reserve**, under the account's advisory lock: the write is held to
//!    the quota against what the record says (every instance's committed
//!    writes) plus the reservations of the account's other writes in
//!    flight, and reserves what it adds.
//! 2. **Change**, under the key's advisory lock, which orders one key's
//!    changes across instances as the store takes them: the request to the
//!    store, then the new size recorded and the reservation deleted, in one
//!    commit.
//!
//! So two writes of one account never pass the quota together, and only
//! writes of the same key wait for each other. A reservation whose write
//! never reached its commit (its instance died) expires after
//! `RESERVATION_LIFETIME`; until then it holds its room, which errs on the
//! side of the quota.

use super::{KeyOrder, Place};
use crate::blob::quota::{Exceeded, Limit, Quota};
use crate::blob::{BlobError, Usage};
use crate::postgres::pool::{self, Pool};
use crate::postgres::{Client, Config, PgError, Row};

/// The schema table and the advisory lock (two-key form; the store's is
/// "wren", 1) of the record's migrations.
const SCHEMA_TABLE: &str = "wren_s3_record_schema";
const MIGRATION_LOCK: (i32, i32) = (0x7772_656e, 2);
/// The first key of each account's advisory lock ("s3re") and of each
/// object's ("s3ke"); the second is the account's name, or the object's
/// key in the bucket, hashed by the server.
const ACCOUNT_LOCK_CLASS: i32 = 0x7333_7265;
const KEY_LOCK_CLASS: i32 = 0x7333_6b65;
/// How long a step waits for another's lock: for the account's, another
/// reservation (a few statements); for a key's, another change of the key
/// (a single request to the store: a PutObject of up to a part, 8 MiB, or
/// a CompleteMultipartUpload). Past it the upload is refused as busy
/// (503, to retry). Under the database connection's read timeout
/// (`postgres::pool::TIMEOUT`, 10 s), which would otherwise end the wait
/// first and take the connection with it.
const TURN_WAIT: &str = "SET LOCAL lock_timeout = '8s'";
/// How long a reservation holds its room when its write never commits.
const RESERVATION_LIFETIME: &str = "10 minutes";
/// PostgreSQL's SQLSTATE for a lock not granted within `lock_timeout`.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Schema versions of the shared record, in order.
const MIGRATIONS: &[&str] = &[
    // 1: each recorded object's size, each account's usage kept by trigger
    // in the transaction that changes the object's row.
    "CREATE TABLE s3_objects (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        size BIGINT NOT NULL CHECK (size >= 0),
        PRIMARY KEY (namespace, key)
    );
    CREATE TABLE s3_usage (
        namespace TEXT PRIMARY KEY NOT NULL,
        bytes BIGINT NOT NULL,
        files BIGINT NOT NULL
    );
    CREATE FUNCTION s3_usage_follow() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE s3_usage SET bytes = bytes - OLD.size, files = files - 1
            WHERE namespace = OLD.namespace;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO s3_usage (namespace, bytes, files) VALUES (NEW.namespace, NEW.size, 1)
            ON CONFLICT (namespace) DO UPDATE
                SET bytes = s3_usage.bytes + excluded.bytes, files = s3_usage.files + 1;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER s3_usage_follow AFTER INSERT OR UPDATE OR DELETE ON s3_objects
        FOR EACH ROW EXECUTE FUNCTION s3_usage_follow();",
    // 2: the room each write in flight has reserved.
    "CREATE TABLE s3_reservations (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        namespace TEXT NOT NULL,
        bytes BIGINT NOT NULL CHECK (bytes >= 0),
        new_key BOOLEAN NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX s3_reservations_namespace ON s3_reservations (namespace, expires_at);",
];

pub struct SharedRecord {
    pool: Pool,
    /// What each account may store, held against every instance's writes.
    quota: Quota,
    /// This instance's turns per key, so that its ledger is settled in the
    /// record's order (the database's lock is released at commit, before
    /// the ledger hears of it).
    pub(super) order: KeyOrder,
}

impl SharedRecord {
    /// Connects to `config`'s database (up to `connections` at once) and
    /// brings the record's tables up to date.
    pub fn open(config: &Config, connections: usize, quota: Quota) -> Result<SharedRecord, String> {
        let pool = Pool::new(config, connections);
        pool.with(|client| pool::migrate(client, SCHEMA_TABLE, MIGRATION_LOCK, MIGRATIONS))
            .map_err(|err| format!("the S3 size record in the database: {err}"))?
            .map_err(|err| format!("the S3 size record in the database: {err}"))?;
        Ok(SharedRecord {
            pool,
            quota,
            order: KeyOrder::default(),
        })
    }

    /// See [`super::Record::change`]: a write reserves its room first, then
    /// the change runs under the key's lock (see the module documentation).
    pub(super) fn change<T>(
        &self,
        place: Place<'_>,
        write: Option<u64>,
        request: impl FnOnce() -> Result<(T, Option<u64>), BlobError>,
    ) -> Result<(T, Option<u64>), BlobError> {
        let reservation = write.map(|size| self.reserve(place, size)).transpose()?;
        let outcome = self.pool.with(|client| {
            client.transaction(|tx| {
                take_turn(tx, KEY_LOCK_CLASS, place.object)?;
                let changed = request();
                if let Some(id) = reservation {
                    tx.execute("DELETE FROM s3_reservations WHERE id = $1", &[id.into()])?;
                }
                let (done, size) = match changed {
                    Ok(changed) => changed,
                    Err(err) => return Ok(Err(err)),
                };
                match size {
                    Some(size) => tx.execute(
                        "INSERT INTO s3_objects (namespace, key, size) VALUES ($1, $2, $3)
                         ON CONFLICT (namespace, key) DO UPDATE SET size = excluded.size",
                        &[
                            place.namespace.into(),
                            place.key.into(),
                            (size as i64).into(),
                        ],
                    )?,
                    None => tx.execute(
                        "DELETE FROM s3_objects WHERE namespace = $1 AND key = $2",
                        &[place.namespace.into(), place.key.into()],
                    )?,
                };
                Ok(Ok((done, size)))
            })
        });
        if let (Err(_), Some(id)) = (&outcome, reservation) {
            // The transaction that would have released the room rolled
            // back (no turn within TURN_WAIT, the database gone): release
            // it now, or a retry would find the account's room held by
            // this write until the reservation expires. Best effort: if
            // this fails too, expiry is the fallback.
            let _ = self.pool.with(|client| {
                client.execute("DELETE FROM s3_reservations WHERE id = $1", &[id.into()])
            });
        }
        outcome.map_err(record_error)?
    }

    /// Holds a write of `size` bytes to the quota and reserves what it
    /// adds, under the account's lock: the reservation's id.
    fn reserve(&self, place: Place<'_>, size: u64) -> Result<i64, BlobError> {
        let outcome = self.pool.with(|client| {
            client.transaction(|tx| {
                take_turn(tx, ACCOUNT_LOCK_CLASS, place.namespace)?;
                tx.execute(
                    "DELETE FROM s3_reservations WHERE namespace = $1 AND expires_at <= now()",
                    &[place.namespace.into()],
                )?;
                let usage = usage(tx, place.namespace)?;
                let reserved = reserved(tx, place.namespace)?;
                let recorded = recorded_size(tx, place.namespace, place.key)?;
                if let Err(exceeded) = fits(self.quota, usage, reserved, recorded, size) {
                    return Ok(Err(BlobError::QuotaExceeded(exceeded)));
                }
                let adds = size.saturating_sub(recorded.unwrap_or(0));
                let rows = tx.query(
                    &format!(
                        "INSERT INTO s3_reservations (namespace, bytes, new_key, expires_at)
                         VALUES ($1, $2, $3::boolean, now() + interval '{RESERVATION_LIFETIME}')
                         RETURNING id"
                    ),
                    &[
                        place.namespace.into(),
                        (adds as i64).into(),
                        (if recorded.is_none() { "true" } else { "false" }).into(),
                    ],
                )?;
                let row = rows
                    .first()
                    .ok_or_else(|| PgError::Protocol("no reservation came back".into()))?;
                Ok(Ok(row.i64(0)?))
            })
        });
        outcome.map_err(record_error)?
    }

    pub(super) fn usage(&self, namespace: &str) -> Result<Usage, BlobError> {
        self.pool
            .with(|client| usage(client, namespace))
            .map_err(record_error)
    }

    pub(super) fn recorded_size(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<u64>, BlobError> {
        self.pool
            .with(|client| recorded_size(client, namespace, key))
            .map_err(record_error)
    }
}

/// Whether the account, storing `usage` with `recorded` bytes at the key
/// and `reserved` for its other writes in flight, may store `size` bytes
/// there; a change that does not grow a figure is never refused (a quota
/// lowered below what is stored still lets files shrink).
fn fits(
    quota: Quota,
    usage: Usage,
    reserved: Usage,
    recorded: Option<u64>,
    size: u64,
) -> Result<(), Exceeded> {
    let new_key = u64::from(recorded.is_none());
    Limit::Files.admit(quota.files, usage.files, reserved.files, new_key, true)?;
    let growth = size.saturating_sub(recorded.unwrap_or(0));
    Limit::Bytes.admit(quota.bytes, usage.bytes, reserved.bytes, growth, true)
}

/// Waits (up to [`TURN_WAIT`]) for the lock of `name` in `class`, held to
/// the end of the transaction.
fn take_turn(client: &mut Client, class: i32, name: &str) -> Result<(), PgError> {
    client.batch_execute(TURN_WAIT)?;
    client.execute(
        "SELECT pg_advisory_xact_lock($1::int, hashtext($2))",
        &[i64::from(class).into(), name.into()],
    )?;
    Ok(())
}

/// What the account's writes in flight have reserved: bytes, and new keys.
fn reserved(client: &mut Client, namespace: &str) -> Result<Usage, PgError> {
    let rows = client.query(
        "SELECT coalesce(sum(bytes), 0)::bigint, count(*) FILTER (WHERE new_key)
         FROM s3_reservations WHERE namespace = $1 AND expires_at > now()",
        &[namespace.into()],
    )?;
    let row = rows
        .first()
        .ok_or_else(|| PgError::Protocol("no sum of reservations came back".into()))?;
    Ok(Usage {
        bytes: count(row, 0)?,
        files: count(row, 1)?,
    })
}

fn usage(client: &mut Client, namespace: &str) -> Result<Usage, PgError> {
    let rows = client.query(
        "SELECT bytes, files FROM s3_usage WHERE namespace = $1",
        &[namespace.into()],
    )?;
    rows.first().map_or(Ok(Usage::default()), |row| {
        Ok(Usage {
            bytes: count(row, 0)?,
            files: count(row, 1)?,
        })
    })
}

fn recorded_size(client: &mut Client, namespace: &str, key: &str) -> Result<Option<u64>, PgError> {
    let rows = client.query(
        "SELECT size FROM s3_objects WHERE namespace = $1 AND key = $2",
        &[namespace.into(), key.into()],
    )?;
    rows.first().map(|row| count(row, 0)).transpose()
}

/// A size or count, which the tables keep at zero or more.
fn count(row: &Row, at: usize) -> Result<u64, PgError> {
    u64::try_from(row.i64(at)?)
        .map_err(|_| PgError::Protocol("a negative size in the S3 size record".into()))
}

fn record_error(err: PgError) -> BlobError {
    match &err {
        PgError::Db { code, .. } if code == LOCK_NOT_AVAILABLE => {
            BlobError::Busy("another write of this account's files is being stored".to_owned())
        }
        _ => BlobError::Local(format!("S3 size record: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTA: Quota = Quota {
        bytes: Some(100),
        files: Some(2),
    };

    fn stores(bytes: u64, files: u64) -> Usage {
        Usage { bytes, files }
    }

    #[test]
    fn a_write_fits_what_every_instance_stored() {
        let none = Usage::default();
        assert!(fits(QUOTA, stores(60, 1), none, None, 40).is_ok());
        let over = fits(QUOTA, stores(60, 1), none, None, 41).unwrap_err();
        assert_eq!(
            (over.limit, over.stored, over.needed),
            (Limit::Bytes, 60, 41)
        );
        // Replacing a file counts the difference.
        assert!(fits(QUOTA, stores(90, 2), none, Some(50), 60).is_ok());
        assert!(fits(QUOTA, stores(90, 2), none, Some(50), 61).is_err());
        let files = fits(QUOTA, stores(10, 2), none, None, 1).unwrap_err();
        assert_eq!(files.limit, Limit::Files);
        assert!(fits(QUOTA, stores(10, 2), none, Some(5), 1).is_ok());
        assert!(fits(Quota::default(), stores(u64::MAX / 2, 9), none, None, 5).is_ok());
    }

    #[test]
    fn writes_in_flight_hold_their_room() {
        let in_flight = stores(30, 1);
        assert!(fits(QUOTA, stores(30, 0), in_flight, None, 40).is_ok());
        let over = fits(QUOTA, stores(30, 0), in_flight, None, 41).unwrap_err();
        assert_eq!((over.limit, over.reserved), (Limit::Bytes, 30));
        let files = fits(QUOTA, stores(0, 1), in_flight, None, 1).unwrap_err();
        assert_eq!((files.limit, files.reserved), (Limit::Files, 1));
    }

    #[test]
    fn shrinking_is_never_refused() {
        let none = Usage::default();
        assert!(fits(QUOTA, stores(150, 3), none, Some(80), 10).is_ok());
        assert!(fits(QUOTA, stores(150, 3), stores(50, 2), Some(80), 80).is_ok());
    }
}

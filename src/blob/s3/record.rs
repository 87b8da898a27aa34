//! The S3 backend's record of what each account stores: every object's
//! size, by account and key, in `<data-dir>/files/s3-index.db`, with each
//! account's usage kept beside it by trigger (`blob::usage`). Quotas are
//! judged from it; listing the bucket per upload would cost a request per
//! thousand objects.
//!
//! S3 cannot share a transaction with SQLite, so the record follows the
//! store: a write is recorded right after the store made the object visible
//! (the PutObject or CompleteMultipartUpload answered), a delete right after
//! the store removed it. Both run under the key's turn ([`KeyOrder`]), so
//! the record takes one key's changes in the order the store took them, and
//! the quota ledger is settled in that order too.
//!
//! What a crash (or a failed record) can leave: an object the store made
//! visible that the record still has at its old size (or not at all), or a
//! record of an object the store has just deleted. The drift is at most one
//! object per write or delete in flight at the crash, each at most
//! `--max-object-size`, and it is repaired the next time the key is written
//! or deleted, when the record takes the store's word again (a delete of a
//! key the store no longer has removes its record). Objects already in the
//! bucket when the record was created (by an older wren, or put there by
//! something else) are counted from their first write through wren.

use std::collections::HashSet;
use std::fs::{self, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, params};

use crate::blob::usage::{self, USAGE_SCHEMA};
use crate::blob::{BlobError, Book, Settle, Usage};

#[cfg(feature = "postgres")]
mod shared;
#[cfg(feature = "postgres")]
pub(super) use shared::SharedRecord;

/// The record's file in the data folder's `files/`.
pub const RECORD_FILE: &str = "s3-index.db";
/// Held by the one process recording for this data folder.
const LOCK_FILE: &str = ".s3-lock";

/// The record's schema versions, in order (see [`crate::sqlite`]).
const RECORD_MIGRATIONS: &[&str] = &[
    // 1: each recorded object's size.
    "CREATE TABLE objects (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (namespace, key)
    ) STRICT;",
    // 2: each account's usage, kept by triggers on `objects`.
    USAGE_SCHEMA,
];

/// The longest a write or delete waits for another of the same key to be
/// recorded: that one is a single request to the store, bounded by the
/// client's timeouts.
const KEY_TURN_WAIT: Duration = Duration::from_secs(60);

/// The record: each object's size and each account's usage, kept by one
/// instance in its data folder, or (`--database-url`) by every instance in
/// the database they share.
pub(super) enum Record {
    Local(LocalRecord),
    #[cfg(feature = "postgres")]
    Shared(shared::SharedRecord),
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Record::Local(_) => "Record::Local",
            #[cfg(feature = "postgres")]
            Record::Shared(_) => "Record::Shared",
        })
    }
}

/// One object's change, as the record names it.
#[derive(Clone, Copy)]
pub(super) struct Place<'a> {
    pub namespace: &'a str,
    pub key: &'a str,
    /// The key in the bucket, which names the account too.
    pub object: &'a str,
}

impl Record {
    /// Opens (or creates) the record in `folder`, for this process alone.
    pub(super) fn open(folder: &Path) -> Result<Record, String> {
        LocalRecord::open(folder).map(Record::Local)
    }

    /// Runs `request`, which changes what the store holds for `place` and
    /// says what that is now (`Some(size)`, or `None`: nothing), in the
    /// key's turn; records that, and tells `settle`, in the same turn. A
    /// `write` of that many bytes is first held to `quota` by the shared
    /// record, which sees the other instances' writes (a local record's
    /// ledger has judged it already). A record that fails after the store
    /// changed leaves the drift a crash there would (see the module
    /// documentation); the error is the server's.
    pub(super) fn change<T>(
        &self,
        place: Place<'_>,
        write: Option<u64>,
        settle: Settle<'_>,
        request: impl FnOnce() -> Result<(T, Option<u64>), BlobError>,
    ) -> Result<T, BlobError> {
        let order = match self {
            Record::Local(record) => &record.order,
            #[cfg(feature = "postgres")]
            Record::Shared(record) => &record.order,
        };
        // The turn lasts until the ledger is settled, so that this
        // instance's ledger sees one key's changes in the record's order.
        let _turn = order.take(place.object)?;
        let (done, size) = match self {
            Record::Local(record) => {
                let _ = write;
                let (done, size) = request()?;
                record.set(place.namespace, place.key, size)?;
                (done, size)
            }
            #[cfg(feature = "postgres")]
            Record::Shared(record) => record.change(place, write, request)?,
        };
        settle(size);
        Ok(done)
    }
}

impl Book for Record {
    fn usage(&self, namespace: &str) -> Result<Usage, BlobError> {
        match self {
            Record::Local(record) => usage::read(&record.index(), namespace).map_err(record_error),
            #[cfg(feature = "postgres")]
            Record::Shared(record) => record.usage(namespace),
        }
    }

    fn recorded_size(&self, namespace: &str, key: &str) -> Result<Option<u64>, BlobError> {
        match self {
            Record::Local(record) => {
                usage::recorded_size(&record.index(), namespace, key).map_err(record_error)
            }
            #[cfg(feature = "postgres")]
            Record::Shared(record) => record.recorded_size(namespace, key),
        }
    }
}

/// The record in `<data-dir>/files/s3-index.db`.
pub(super) struct LocalRecord {
    index: Mutex<Connection>,
    /// Whose turn it is to change (and record) each key.
    order: KeyOrder,
    /// Two processes recording into one file would each judge quotas
    /// without the other's uploads in progress.
    _lock: File,
}

impl LocalRecord {
    fn open(folder: &Path) -> Result<LocalRecord, String> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .map_err(|err| format!("cannot create {}: {err}", folder.display()))?;
        let lock = crate::blob::local::lock(&folder.join(LOCK_FILE))?;
        let path = folder.join(RECORD_FILE);
        let index = crate::sqlite::open(&path, RECORD_MIGRATIONS)
            .map_err(|err| format!("cannot open the S3 size record {}: {err}", path.display()))?;
        Ok(LocalRecord {
            index: Mutex::new(index),
            order: KeyOrder::default(),
            _lock: lock,
        })
    }

    fn index(&self) -> MutexGuard<'_, Connection> {
        // Every change is one statement: a panic cannot leave half of one.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that the account's `key` holds `size` bytes, or (`None`)
    /// nothing.
    fn set(&self, namespace: &str, key: &str, size: Option<u64>) -> Result<(), BlobError> {
        let index = self.index();
        let changed = match size {
            Some(size) => index.execute(
                "INSERT INTO objects (namespace, key, size) VALUES (?1, ?2, ?3)
                 ON CONFLICT (namespace, key) DO UPDATE SET size = excluded.size",
                params![namespace, key, size as i64],
            ),
            None => index.execute(
                "DELETE FROM objects WHERE namespace = ?1 AND key = ?2",
                params![namespace, key],
            ),
        };
        changed.map(drop).map_err(record_error)
    }
}

fn record_error(err: rusqlite::Error) -> BlobError {
    BlobError::Local(format!("S3 size record: {err}"))
}

/// One key's turn at a time: the request that changes what the store holds
/// for a key and the record of it run in one turn, so that two writes of
/// one key are recorded in the order the store took them.
#[derive(Debug, Default)]
pub(super) struct KeyOrder {
    taken: Mutex<HashSet<String>>,
    given_back: Condvar,
}

/// A key's turn, given back on drop.
pub(super) struct KeyTurn<'a> {
    order: &'a KeyOrder,
    key: String,
}

impl KeyOrder {
    /// Waits (up to [`KEY_TURN_WAIT`]) for `key`'s turn: `key` is the key
    /// in the bucket, which names the account too.
    pub(super) fn take(&self, key: &str) -> Result<KeyTurn<'_>, BlobError> {
        let taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut taken, _) = self
            .given_back
            .wait_timeout_while(taken, KEY_TURN_WAIT, |taken| taken.contains(key))
            .unwrap_or_else(PoisonError::into_inner);
        if taken.contains(key) {
            return Err(BlobError::Busy(
                "another write of this file is being stored".to_owned(),
            ));
        }
        taken.insert(key.to_owned());
        Ok(KeyTurn {
            order: self,
            key: key.to_owned(),
        })
    }
}

impl Drop for KeyTurn<'_> {
    fn drop(&mut self) {
        self.order
            .taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
        self.order.given_back.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wren-s3-record-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// Records `size` for ann's `key` as a change through the store does.
    fn set(record: &Record, key: &str, size: Option<u64>) {
        let place = Place {
            namespace: "ann",
            key,
            object: key,
        };
        let settled = std::cell::Cell::new(None);
        record
            .change(place, size, &|size| settled.set(Some(size)), || {
                Ok(((), size))
            })
            .unwrap();
        assert_eq!(settled.get(), Some(size), "settled in the turn");
    }

    #[test]
    fn sizes_and_usage_are_recorded_and_survive_reopening() {
        let dir = folder("reopen");
        {
            let record = Record::open(&dir).unwrap();
            set(&record, "a", Some(10));
            set(&record, "b", Some(5));
            set(&record, "a", Some(20));
            set(&record, "gone", None);
            assert!(Record::open(&dir).is_err(), "a second record on one folder");
        }
        let record = Record::open(&dir).unwrap();
        assert_eq!(
            record.usage("ann").unwrap(),
            Usage {
                bytes: 25,
                files: 2
            }
        );
        assert_eq!(record.recorded_size("ann", "a").unwrap(), Some(20));
        set(&record, "a", None);
        assert_eq!(record.recorded_size("ann", "a").unwrap(), None);
        assert_eq!(record.usage("ann").unwrap(), Usage { bytes: 5, files: 1 });
        assert_eq!(record.usage("bob").unwrap(), Usage::default());
    }

    #[test]
    fn one_turn_per_key() {
        let order = KeyOrder::default();
        let first = order.take("ann/k").unwrap();
        let _other = order.take("ann/j").unwrap();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| order.take("ann/k").map(drop).is_ok());
            std::thread::sleep(Duration::from_millis(20));
            assert!(!waiter.is_finished());
            drop(first);
            assert!(waiter.join().unwrap());
        });
    }
}

//! The local backend: objects as files under `<data-dir>/files/`, with an
//! SQLite index that maps each account's keys to them.
//!
//! ```text
//! files/index.db                       key -> file, size, ETag, type, time;
//!                                      usage per account
//! files/.lock                          held by the one process serving it
//! files/accounts/<account>/<random>    one object's bytes, nothing else
//! files/accounts/<account>/.<random>.tmp   an upload in progress
//! ```
//!
//! Everything is private to the server's user (files 0600, folders 0700),
//! like the database and the secret.
//!
//! Keys never become paths: a file's name is random (with the key's
//! extension, so an image's server path looks like one), so no key can
//! name anything outside its account's folder, whatever it contains.
//!
//! A write streams into a temporary file in the same folder, is fsynced,
//! renamed to its final name and the folder fsynced; only then does an
//! index transaction point the key at it (and move the account's usage row
//! with it, by trigger: see `blob::usage`), and the replaced file is removed
//! after that commit. The renames, folder syncs and index commits are the
//! index writer's ([`crate::group_commit`]): the uploads that finish
//! streaming while it commits share its next transaction, one fsync per
//! account folder and one for the index, so a burst of uploads costs one
//! fsync per file and a few per batch, not three per file behind one lock. A crash leaves the key on its old file or its new
//! one, never a partial one, and the account's usage exactly the sum of the
//! sizes the index names. Temporary files a crash leaves are removed when
//! the backend opens. A crash in the instant between a rename and its commit
//! (or between a commit and the old file's removal) leaves one file the
//! index does not name; those are left in place, not removed: deleting every
//! file the index does not know would turn a lost or restored-from-backup
//! index into lost data.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::usage::{self, USAGE_SCHEMA};
use super::{
    BlobError, Blobs, Book, ByteRange, Download, KeyPage, ObjectInfo, Owner, Page, Settle, Usage,
    WriteCondition, Written,
};
use crate::group_commit::GroupCommit;

/// The backend's folder in the data folder. Locations are given from the
/// data folder (`files/accounts/ann/…`): where to look, without the host's
/// own layout.
pub const FOLDER: &str = "files";
/// How often a read retries when a concurrent replace removed the file it
/// was about to open.
const OPEN_ATTEMPTS: usize = 3;
/// The index's file in [`FOLDER`].
pub const INDEX_FILE: &str = "index.db";
const LOCK_FILE: &str = ".lock";
const ACCOUNTS_FOLDER: &str = "accounts";
const TEMP_SUFFIX: &str = ".tmp";

/// The index's schema versions, in order; entry `n` takes `user_version`
/// from `n` to `n + 1` (see [`crate::sqlite`]).
const INDEX_MIGRATIONS: &[&str] = &[
    // 1: the index as it was before it was versioned. `IF NOT EXISTS`
    // because an index from then has this table at user_version 0: it is
    // taken as version 1 as it stands, rows and all.
    "CREATE TABLE IF NOT EXISTS objects (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        file TEXT NOT NULL,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL,
        content_type TEXT NOT NULL,
        modified INTEGER NOT NULL,
        PRIMARY KEY (namespace, key)
    ) STRICT;",
    // 2: each account's usage, kept by triggers on `objects`.
    USAGE_SCHEMA,
];

pub struct LocalBlobs {
    /// `files/accounts`: one folder per account.
    accounts: PathBuf,
    /// Holds the advisory lock: two processes sweeping and renaming in one
    /// folder would remove each other's uploads.
    _lock: File,
    /// For reads; the writer has a connection of its own.
    index: Mutex<Connection>,
    /// The one writer of the index: it checks each change's condition,
    /// renames files in and commits the changes waiting at that moment in
    /// one transaction, one fsync per folder and one for the index (see
    /// [`write_changes`]). Its order is the order of the commits, so two
    /// writes to one key cannot both pass `If-None-Match: *`. Uploads
    /// stream without it.
    writer: GroupCommit<Change, Result<Changed, BlobError>>,
}

/// A change to the index, done by the writer.
enum Change {
    /// Point `key` at the file an upload wrote, if `condition` still holds.
    Put {
        folder: PathBuf,
        /// Where the upload's bytes are, synced.
        temp: PathBuf,
        /// The file's name once renamed in.
        name: String,
        condition: WriteCondition,
        object: NewObject,
    },
    Delete {
        namespace: String,
        key: String,
        folder: PathBuf,
    },
}

/// The index row a put writes.
struct NewObject {
    namespace: String,
    key: String,
    size: u64,
    etag: String,
    content_type: String,
    modified: u64,
}

/// What a committed change did: the key's size now (`None`: deleted), and
/// whether it was there before.
struct Changed {
    size: Option<u64>,
    replaced: bool,
}

impl LocalBlobs {
    /// Opens (or creates) the store under `root` (a server's is
    /// `<data-dir>/`[`FOLDER`]), and removes the temporary files an earlier
    /// crash left. Fails when another process serves it.
    pub fn open(root: &Path) -> Result<LocalBlobs, String> {
        let accounts = root.join(ACCOUNTS_FOLDER);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&accounts)
            .map_err(|err| format!("cannot create the file store {}: {err}", accounts.display()))?;
        let lock = lock(&root.join(LOCK_FILE))?;
        let db = root.join(INDEX_FILE);
        let cannot_open =
            |err: String| format!("cannot open the file index {}: {err}", db.display());
        let conn = crate::sqlite::open(&db, INDEX_MIGRATIONS).map_err(cannot_open)?;
        let mut writer_conn =
            crate::sqlite::connect(&db).map_err(|err| cannot_open(err.to_string()))?;
        // Account folders whose entry in `accounts` is known durable.
        let mut durable = HashSet::new();
        let parent = accounts.clone();
        let writer = GroupCommit::start(
            "wren-files-writer",
            move |changes| write_changes(&mut writer_conn, &parent, &mut durable, changes),
            || {
                Err(BlobError::Local(
                    "the batch holding this change failed to be written".into(),
                ))
            },
        )
        .map_err(|err| format!("cannot start the file index's writer thread: {err}"))?;
        let blobs = LocalBlobs {
            accounts,
            _lock: lock,
            index: Mutex::new(conn),
            writer,
        };
        blobs.sweep()?;
        Ok(blobs)
    }

    /// Has the writer commit `change`, then settles it on this thread
    /// while the writer waits: the next batch, which may change the same
    /// key, commits only after (see [`Settle`]).
    fn commit(&self, change: Change, settle: Settle<'_>) -> Result<Changed, BlobError> {
        let (send_outcome, outcome) = mpsc::sync_channel(1);
        let (settled, wait_for_settle) = mpsc::sync_channel::<()>(1);
        self.writer.submit(change, move |result| {
            // Nobody to settle when the caller is gone; otherwise wait for
            // it, or for its end (the sender dropped).
            if send_outcome.send(result).is_ok() {
                let _ = wait_for_settle.recv();
            }
        });
        let changed = outcome.recv().unwrap_or_else(|_| {
            Err(BlobError::Local(
                "the file index's writer stopped before answering".into(),
            ))
        })?;
        settle(changed.size);
        drop(settled);
        Ok(changed)
    }

    fn index(&self) -> MutexGuard<'_, Connection> {
        // A panic elsewhere while holding the lock leaves no half-done
        // state: every change is one SQLite transaction.
        self.index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn folder(&self, owner: &Owner) -> PathBuf {
        self.accounts.join(&owner.namespace)
    }

    /// Removes the temporary files of uploads a crash interrupted.
    fn sweep(&self) -> Result<(), String> {
        let entries = fs::read_dir(&self.accounts)
            .map_err(|err| format!("cannot list {}: {err}", self.accounts.display()))?;
        for folder in entries.flatten() {
            if !folder.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(files) = fs::read_dir(folder.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
                    fs::remove_file(file.path()).map_err(|err| {
                        format!(
                            "cannot remove the leftover {}: {err}",
                            file.path().display()
                        )
                    })?;
                }
            }
        }
        Ok(())
    }

    fn lookup(&self, owner: &Owner, key: &str) -> Result<Option<(ObjectInfo, String)>, BlobError> {
        find(&self.index(), &owner.namespace, key).map_err(index_error)
    }

    /// Streams `body` into the new file `temp`, synced: its size and the
    /// first 128 bits of its BLAKE3, in hex (the ETag).
    fn receive(temp: &Path, body: &mut dyn Read) -> Result<(u64, String), BlobError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(temp)
            .map_err(|err| local_error("cannot create", temp, err))?;
        super::receive::receive(file, temp, body)
    }
}

impl Blobs for LocalBlobs {
    fn put(
        &self,
        owner: &Owner,
        key: &str,
        content_type: &str,
        condition: &WriteCondition,
        body: &mut dyn Read,
        settle: Settle<'_>,
    ) -> Result<Written, BlobError> {
        // Refuse early when the condition already fails, before any bytes
        // are stored; it is checked again at commit.
        if !condition.allows(self.lookup(owner, key)?.as_ref().map(|(info, _)| info)) {
            return Err(BlobError::PreconditionFailed);
        }
        let folder = self.folder(owner);
        create_folder(&folder)?;
        let name = file_name(key)?;
        // Removed on any way out before the writer renames it in, a panic
        // included; after that, the writer answers for the file.
        let temp = folder.join(format!(".{name}{TEMP_SUFFIX}"));
        let pending = Pending::new(temp.clone());
        let (size, digest) = LocalBlobs::receive(&temp, body)?;
        let modified = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let object = NewObject {
            namespace: owner.namespace.clone(),
            key: key.to_owned(),
            size,
            etag: format!("\"{digest}\""),
            content_type: content_type.to_owned(),
            modified,
        };
        let info = ObjectInfo {
            key: key.to_owned(),
            size,
            etag: object.etag.clone(),
            content_type: content_type.to_owned(),
            modified: UNIX_EPOCH + Duration::from_secs(modified),
        };
        let change = Change::Put {
            folder,
            temp,
            name,
            condition: condition.clone(),
            object,
        };
        let changed = self.commit(change, settle)?;
        pending.keep();
        Ok(Written {
            info,
            created: !changed.replaced,
        })
    }

    fn head(&self, owner: &Owner, key: &str) -> Result<ObjectInfo, BlobError> {
        self.lookup(owner, key)?
            .map(|(info, _)| info)
            .ok_or(BlobError::NotFound)
    }

    fn get(
        &self,
        owner: &Owner,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Download, BlobError> {
        for _ in 0..OPEN_ATTEMPTS {
            let (info, name) = self.lookup(owner, key)?.ok_or(BlobError::NotFound)?;
            let path = self.folder(owner).join(&name);
            let mut file = match File::open(&path) {
                Ok(file) => file,
                // Replaced between the lookup and the open: look again.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(local_error("cannot open", &path, err)),
            };
            let range = match range {
                None => None,
                Some(range) => Some(
                    range
                        .resolve(info.size)
                        .ok_or(BlobError::RangeNotSatisfiable { size: info.size })?,
                ),
            };
            let (first, len) =
                range.map_or((0, info.size), |(first, last)| (first, last - first + 1));
            file.seek(SeekFrom::Start(first))
                .map_err(|err| local_error("cannot seek in", &path, err))?;
            return Ok(Download {
                info,
                range,
                body: Box::new(file.take(len)),
            });
        }
        Err(BlobError::Local(format!(
            "the file for '{key}' kept being replaced while opening it"
        )))
    }

    fn delete(&self, owner: &Owner, key: &str, settle: Settle<'_>) -> Result<(), BlobError> {
        let change = Change::Delete {
            namespace: owner.namespace.clone(),
            key: key.to_owned(),
            folder: self.folder(owner),
        };
        self.commit(change, settle).map(drop)
    }

    fn list(
        &self,
        owner: &Owner,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, BlobError> {
        let index = self.index();
        // Keys sort bytewise (SQLite's BINARY collation over UTF-8), so the
        // keys with a prefix are one run starting at the prefix.
        let mut statement = index
            .prepare_cached(
                "SELECT key, size, etag, content_type, modified FROM objects
                 WHERE namespace = ?1 AND key >= ?2 AND key > ?3
                 ORDER BY key",
            )
            .map_err(index_error)?;
        let mut rows = statement
            .query(params![owner.namespace, prefix, after.unwrap_or("")])
            .map_err(index_error)?;
        let mut objects = Vec::new();
        while let Some(row) = rows.next().map_err(index_error)? {
            let key: String = row.get(0).map_err(index_error)?;
            if !key.starts_with(prefix) {
                break;
            }
            if objects.len() == limit {
                return Ok(Page {
                    objects,
                    truncated: true,
                });
            }
            objects.push(ObjectInfo {
                key,
                size: row.get::<_, i64>(1).map_err(index_error)? as u64,
                etag: row.get(2).map_err(index_error)?,
                content_type: row.get(3).map_err(index_error)?,
                modified: UNIX_EPOCH
                    + Duration::from_secs(row.get::<_, i64>(4).map_err(index_error)? as u64),
            });
        }
        Ok(Page {
            objects,
            truncated: false,
        })
    }

    fn list_keys(
        &self,
        owner: &Owner,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, BlobError> {
        let index = self.index();
        let mut statement = index
            .prepare_cached(
                "SELECT key FROM objects WHERE namespace = ?1 AND key > ?2 ORDER BY key LIMIT ?3",
            )
            .map_err(index_error)?;
        // One more than asked tells whether the listing is truncated.
        let mut keys = statement
            .query_map(
                params![owner.namespace, after.unwrap_or(""), limit as i64 + 1],
                |row| row.get::<_, String>(0),
            )
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(index_error)?;
        let truncated = keys.len() > limit;
        keys.truncate(limit);
        Ok(KeyPage { keys, truncated })
    }

    fn location(&self, owner: &Owner, key: &str) -> String {
        let folder = Path::new(FOLDER)
            .join(ACCOUNTS_FOLDER)
            .join(&owner.namespace);
        match self.lookup(owner, key) {
            Ok(Some((_, name))) => folder.join(name).display().to_string(),
            _ => folder.display().to_string(),
        }
    }

    fn ready(&self, _within: Duration) -> Result<(), BlobError> {
        // A local folder answers at once or not at all.
        match fs::metadata(&self.accounts) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(BlobError::Upstream(format!(
                "{} is not a folder",
                self.accounts.display()
            ))),
            Err(err) => Err(BlobError::Upstream(format!(
                "cannot reach {}: {err}",
                self.accounts.display()
            ))),
        }
    }
}

impl Book for LocalBlobs {
    fn usage(&self, namespace: &str) -> Result<Usage, BlobError> {
        usage::read(&self.index(), namespace).map_err(index_error)
    }

    fn recorded_size(&self, namespace: &str, key: &str) -> Result<Option<u64>, BlobError> {
        usage::recorded_size(&self.index(), namespace, key).map_err(index_error)
    }
}

/// The object `key` of `namespace` and its file's name, if the index has
/// it.
fn find(
    index: &Connection,
    namespace: &str,
    key: &str,
) -> rusqlite::Result<Option<(ObjectInfo, String)>> {
    index
        .prepare_cached(
            "SELECT size, etag, content_type, modified, file FROM objects
             WHERE namespace = ?1 AND key = ?2",
        )?
        .query_row(params![namespace, key], |row| {
            Ok((
                ObjectInfo {
                    key: key.to_owned(),
                    size: row.get::<_, i64>(0)? as u64,
                    etag: row.get(1)?,
                    content_type: row.get(2)?,
                    modified: UNIX_EPOCH + Duration::from_secs(row.get::<_, i64>(3)? as u64),
                },
                row.get(4)?,
            ))
        })
        .optional()
}

/// Writes a batch of changes, in order, in one transaction: each put's
/// condition is checked against the index as the changes before it left
/// it and its file renamed in; then each folder a file was renamed into is
/// synced once (and `accounts` too, the first time a folder is seen, for
/// the folder's own entry), and the transaction commits. However many
/// uploads wait, that is one fsync per account folder and one for the
/// index, each change acknowledged only after both. Replaced and deleted
/// files are removed once the commit holds.
///
/// A change refused (its condition, a missing key, a failed rename or
/// statement) fails alone. A failed sync or commit, or an error SQLite
/// answers by rolling the whole transaction back, fails the batch, and the
/// files it renamed in are removed again.
fn write_changes(
    index: &mut Connection,
    accounts: &Path,
    durable: &mut HashSet<PathBuf>,
    changes: Vec<Change>,
) -> Vec<Result<Changed, BlobError>> {
    let count = changes.len();
    // Removes the files renamed in, on any way out but a commit (a panic
    // included).
    let mut renamed = Pending::many();
    let mut folders: Vec<PathBuf> = Vec::new();
    let mut replaced = Vec::new();
    let written = (|| {
        let tx = index
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(index_error)?;
        let mut outcomes = Vec::with_capacity(count);
        for change in changes {
            let outcome = match change {
                Change::Put {
                    folder,
                    temp,
                    name,
                    condition,
                    object,
                } => {
                    let path = folder.join(&name);
                    let put = put_row(&tx, &object, &name, &condition, || {
                        fs::rename(&temp, &path)
                            .map_err(|err| local_error("cannot rename into", &path, err))?;
                        renamed.paths.push(path.clone());
                        Ok(())
                    });
                    if put.is_ok() && !folders.contains(&folder) {
                        folders.push(folder.clone());
                    }
                    put.map(|old| {
                        let changed = Changed {
                            size: Some(object.size),
                            replaced: old.is_some(),
                        };
                        replaced.extend(old.map(|old| folder.join(old)));
                        changed
                    })
                }
                Change::Delete {
                    namespace,
                    key,
                    folder,
                } => delete_row(&tx, &namespace, &key).map(|old| {
                    replaced.push(folder.join(old));
                    Changed {
                        size: None,
                        replaced: true,
                    }
                }),
            };
            match outcome {
                // SQLite rolled the whole transaction back: the changes
                // before this one are gone too.
                Err(err) if tx.is_autocommit() => return Err(err),
                outcome => outcomes.push(outcome),
            }
        }
        for folder in &folders {
            if !durable.contains(folder) {
                sync_folder(accounts)?;
            }
            sync_folder(folder)?;
        }
        tx.commit().map_err(index_error)?;
        Ok(outcomes)
    })();
    match written {
        Ok(outcomes) => {
            renamed.keep();
            durable.extend(folders);
            // The index no longer points at these; if a crash loses a
            // removal, the file stays, unindexed (see the module docs).
            for file in replaced {
                let _ = fs::remove_file(file);
            }
            outcomes
        }
        Err(err) => {
            // Only the index and the disk fail a whole batch.
            let cause = match err {
                BlobError::Local(message) => message,
                other => format!("{other:?}"),
            };
            let message = format!("the batch holding this change failed: {cause}");
            (0..count)
                .map(|_| Err(BlobError::Local(message.clone())))
                .collect()
        }
    }
}

/// Points `object`'s key at the file `name` if `condition` allows what is
/// there now, calling `rename_in` first: the file the row names must
/// exist before the row does. The file it replaces, if any.
fn put_row(
    tx: &Connection,
    object: &NewObject,
    name: &str,
    condition: &WriteCondition,
    rename_in: impl FnOnce() -> Result<(), BlobError>,
) -> Result<Option<String>, BlobError> {
    let current = find(tx, &object.namespace, &object.key).map_err(index_error)?;
    if !condition.allows(current.as_ref().map(|(info, _)| info)) {
        return Err(BlobError::PreconditionFailed);
    }
    rename_in()?;
    tx.prepare_cached(
        "INSERT INTO objects (namespace, key, file, size, etag, content_type, modified)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (namespace, key) DO UPDATE SET
             file = excluded.file, size = excluded.size, etag = excluded.etag,
             content_type = excluded.content_type, modified = excluded.modified",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            object.namespace,
            object.key,
            name,
            object.size as i64,
            object.etag,
            object.content_type,
            object.modified as i64
        ])
    })
    .map_err(index_error)?;
    Ok(current.map(|(_, file)| file))
}

/// Removes the key's row; the file it named.
fn delete_row(tx: &Connection, namespace: &str, key: &str) -> Result<String, BlobError> {
    let (_, file) = find(tx, namespace, key)
        .map_err(index_error)?
        .ok_or(BlobError::NotFound)?;
    tx.execute(
        "DELETE FROM objects WHERE namespace = ?1 AND key = ?2",
        params![namespace, key],
    )
    .map_err(index_error)?;
    Ok(file)
}

/// Every file the index at `index` names, as paths from the data folder
/// (`files/accounts/ann/0a1b….png`), in one read of the connection's
/// current transaction: what a backup must copy to hold what the index
/// holds.
pub fn indexed_files(index: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut statement =
        index.prepare("SELECT namespace, file FROM objects ORDER BY namespace, file")?;
    let mut rows = statement.query([])?;
    let mut paths = Vec::new();
    while let Some(row) = rows.next()? {
        let namespace: String = row.get(0)?;
        let file: String = row.get(1)?;
        paths.push(format!("{FOLDER}/{ACCOUNTS_FOLDER}/{namespace}/{file}"));
    }
    Ok(paths)
}

/// Files written for puts, removed when dropped until the index has taken
/// them ([`Pending::keep`]).
struct Pending {
    paths: Vec<PathBuf>,
    kept: bool,
}

impl Pending {
    fn new(path: PathBuf) -> Pending {
        Pending {
            paths: vec![path],
            kept: false,
        }
    }

    fn many() -> Pending {
        Pending {
            paths: Vec::new(),
            kept: false,
        }
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.kept {
            for path in &self.paths {
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// A new random file name, keeping the key's extension when it is a short
/// plain one (`.png`), so that a stored image is recognisable on disk.
fn file_name(key: &str) -> Result<String, BlobError> {
    let mut random = [0u8; 16];
    getrandom::getrandom(&mut random)
        .map_err(|err| BlobError::Local(format!("no OS randomness for a file name: {err}")))?;
    let last = key.rsplit('/').next().unwrap_or(key);
    let extension = last.rsplit_once('.').map(|(_, ext)| ext).filter(|ext| {
        (1..=8).contains(&ext.len()) && ext.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    Ok(match extension {
        Some(ext) => format!(
            "{}.{}",
            crate::hex::encode(&random),
            ext.to_ascii_lowercase()
        ),
        None => crate::hex::encode(&random),
    })
}

fn create_folder(folder: &Path) -> Result<(), BlobError> {
    if folder.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)
        .map_err(|err| local_error("cannot create", folder, err))?;
    // The new folder's entry in its parent must survive a crash too.
    if let Some(parent) = folder.parent() {
        sync_folder(parent)?;
    }
    Ok(())
}

/// Takes the store's advisory lock, for the life of the returned file.
pub(super) fn lock(path: &Path) -> Result<File, String> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|err| format!("cannot create {}: {err}", path.display()))?;
    // SAFETY: flock on a file descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!(
            "another process is serving the file store {} (it holds {})",
            path.parent().unwrap_or(path).display(),
            path.display()
        ));
    }
    Ok(file)
}

/// Makes a rename in `folder` durable.
fn sync_folder(folder: &Path) -> Result<(), BlobError> {
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .map_err(|err| local_error("cannot sync", folder, err))
}

pub(super) fn local_error(what: &str, path: &Path, err: io::Error) -> BlobError {
    BlobError::Local(format!("{what} {}: {err}", path.display()))
}

fn index_error(err: rusqlite::Error) -> BlobError {
    BlobError::Local(format!("file index: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder for a store, not there yet.
    fn fresh_root() -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "wren-blobs-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&root);
        root
    }

    fn store() -> (LocalBlobs, PathBuf) {
        let root = fresh_root();
        (LocalBlobs::open(&root).unwrap(), root)
    }

    fn index_version(root: &Path) -> i64 {
        Connection::open(root.join(INDEX_FILE))
            .unwrap()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap()
    }

    fn owner(name: &str) -> Owner {
        Owner {
            namespace: name.into(),
            credentials: None,
        }
    }

    fn put(blobs: &LocalBlobs, who: &str, key: &str, bytes: &[u8]) -> Result<Written, BlobError> {
        blobs.put(
            &owner(who),
            key,
            "text/plain",
            &WriteCondition::Always,
            &mut &bytes[..],
            &|_| {},
        )
    }

    fn read(blobs: &LocalBlobs, who: &str, key: &str, range: Option<ByteRange>) -> Vec<u8> {
        let mut out = Vec::new();
        blobs
            .get(&owner(who), key, range)
            .unwrap()
            .body
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Files in the accounts' folders.
    fn files(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(root.join(ACCOUNTS_FOLDER))
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_dir())
            .flat_map(|dir| fs::read_dir(dir.path()).unwrap().flatten())
            .map(|f| f.file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn round_trip_replace_and_delete() {
        let (blobs, root) = store();
        let first = put(&blobs, "ann", "a/b ✓.txt", b"hello").unwrap();
        assert!(first.created);
        assert_eq!(first.info.size, 5);
        assert_eq!(first.info.etag.len(), 34);
        assert_eq!(read(&blobs, "ann", "a/b ✓.txt", None), b"hello");
        let second = put(&blobs, "ann", "a/b ✓.txt", b"bye").unwrap();
        assert!(!second.created);
        assert_ne!(second.info.etag, first.info.etag);
        assert_eq!(read(&blobs, "ann", "a/b ✓.txt", None), b"bye");
        // The replaced file is gone; the one left keeps the key's extension.
        let names = files(&root);
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].ends_with(".txt"));
        blobs.delete(&owner("ann"), "a/b ✓.txt", &|_| {}).unwrap();
        assert!(matches!(
            blobs.head(&owner("ann"), "a/b ✓.txt"),
            Err(BlobError::NotFound)
        ));
        assert!(matches!(
            blobs.delete(&owner("ann"), "a/b ✓.txt", &|_| {}),
            Err(BlobError::NotFound)
        ));
        assert!(files(&root).is_empty());
    }

    /// Every write and delete moves the account's usage with the index, and
    /// settles each change, in order, with what the index then records.
    #[test]
    fn usage_and_settled_sizes_follow_the_index() {
        let (blobs, _root) = store();
        let settled = Mutex::new(Vec::new());
        let settle = |size: Option<u64>| settled.lock().unwrap().push(size);
        let ann = owner("ann");
        let write = |key: &str, mut body: &[u8], condition: &WriteCondition| {
            blobs.put(&ann, key, "text/plain", condition, &mut body, &settle)
        };
        write("a", b"12345", &WriteCondition::Always).unwrap();
        put(&blobs, "ann", "b", b"123").unwrap();
        put(&blobs, "bob", "a", b"1").unwrap();
        let usage = |who: &str| {
            let Usage { bytes, files } = blobs.usage(who).unwrap();
            (bytes, files)
        };
        assert_eq!(usage("ann"), (8, 2));
        write("a", b"1234567890", &WriteCondition::Always).unwrap();
        assert_eq!(usage("ann"), (13, 2));
        assert_eq!(blobs.recorded_size("ann", "a").unwrap(), Some(10));
        blobs.delete(&ann, "a", &settle).unwrap();
        assert_eq!(usage("ann"), (3, 1));
        assert_eq!(blobs.recorded_size("ann", "a").unwrap(), None);
        // A write that fails settles nothing and changes nothing.
        let refused = write("b", b"x", &WriteCondition::Absent);
        assert!(matches!(refused, Err(BlobError::PreconditionFailed)));
        assert_eq!(usage("ann"), (3, 1));
        assert_eq!(usage("bob"), (1, 1));
        assert_eq!(*settled.lock().unwrap(), [Some(5), Some(10), None]);
    }

    #[test]
    fn the_indexed_files_are_named_from_the_data_folder() {
        let (blobs, root) = store();
        put(&blobs, "ann", "a.png", b"a").unwrap();
        put(&blobs, "bob", "b", b"b").unwrap();
        // Replaced: only the new file is named.
        put(&blobs, "ann", "a.png", b"a2").unwrap();
        let named = indexed_files(&blobs.index()).unwrap();
        assert_eq!(named.len(), 2, "{named:?}");
        for path in &named {
            let from_store = path.strip_prefix("files/").unwrap();
            assert!(root.join(from_store).is_file(), "{path}");
        }
        assert!(named[0].starts_with("files/accounts/ann/") && named[0].ends_with(".png"));
        assert!(named[1].starts_with("files/accounts/bob/"));
    }

    #[test]
    fn locations_are_paths_from_the_data_folder() {
        let (blobs, root) = store();
        put(&blobs, "ann", "pics/cat.png", b"png").unwrap();
        let location = blobs.location(&owner("ann"), "pics/cat.png");
        let from_root = location
            .strip_prefix("files/accounts/ann/")
            .unwrap_or_else(|| panic!("{location}"));
        assert!(from_root.ends_with(".png"), "{location}");
        let file = root.join(ACCOUNTS_FOLDER).join("ann").join(from_root);
        assert_eq!(fs::read(&file).unwrap(), b"png");
        assert_eq!(
            blobs.location(&owner("ann"), "missing"),
            "files/accounts/ann"
        );
    }

    #[test]
    fn accounts_do_not_see_each_other() {
        let (blobs, _root) = store();
        put(&blobs, "ann", "k", b"ann's").unwrap();
        assert!(matches!(
            blobs.get(&owner("bob"), "k", None),
            Err(BlobError::NotFound)
        ));
        assert!(
            blobs
                .list(&owner("bob"), "", None, 10)
                .unwrap()
                .objects
                .is_empty()
        );
    }

    #[test]
    fn conditions_and_ranges() {
        let (blobs, _root) = store();
        let ann = owner("ann");
        let written = put(&blobs, "ann", "k", b"0123456789").unwrap();
        let absent = blobs.put(
            &ann,
            "k",
            "text/plain",
            &WriteCondition::Absent,
            &mut &b"x"[..],
            &|_| {},
        );
        assert!(matches!(absent, Err(BlobError::PreconditionFailed)));
        let stale = WriteCondition::Matches(vec!["\"nope\"".into()]);
        let stale = blobs.put(&ann, "k", "text/plain", &stale, &mut &b"x"[..], &|_| {});
        assert!(matches!(stale, Err(BlobError::PreconditionFailed)));
        let current = WriteCondition::Matches(vec![written.info.etag.clone()]);
        blobs
            .put(
                &ann,
                "k",
                "text/plain",
                &current,
                &mut &b"0123456789"[..],
                &|_| {},
            )
            .unwrap();
        let range = ByteRange::From {
            first: 2,
            last: Some(4),
        };
        assert_eq!(read(&blobs, "ann", "k", Some(range)), b"234");
        assert_eq!(read(&blobs, "ann", "k", Some(ByteRange::Suffix(3))), b"789");
        let beyond = blobs.get(
            &ann,
            "k",
            Some(ByteRange::From {
                first: 10,
                last: None,
            }),
        );
        assert!(matches!(
            beyond,
            Err(BlobError::RangeNotSatisfiable { size: 10 })
        ));
    }

    /// A put of `bytes` to ann's `key` as the writer gets it, its file
    /// written to a temporary name as an upload leaves it.
    fn put_change(root: &Path, key: &str, bytes: &[u8], condition: WriteCondition) -> Change {
        let folder = root.join(ACCOUNTS_FOLDER).join("ann");
        create_folder(&folder).unwrap();
        let name = file_name(key).unwrap();
        let temp = folder.join(format!(".{name}{TEMP_SUFFIX}"));
        fs::write(&temp, bytes).unwrap();
        Change::Put {
            folder,
            temp,
            name,
            condition,
            object: NewObject {
                namespace: "ann".into(),
                key: key.into(),
                size: bytes.len() as u64,
                etag: format!("\"{}\"", bytes.len()),
                content_type: "text/plain".into(),
                modified: 0,
            },
        }
    }

    #[test]
    fn changes_in_one_batch_each_see_the_ones_before() {
        let (blobs, root) = store();
        let mut index = crate::sqlite::connect(&root.join(INDEX_FILE)).unwrap();
        let delete = |key: &str| Change::Delete {
            namespace: "ann".into(),
            key: key.into(),
            folder: root.join(ACCOUNTS_FOLDER).join("ann"),
        };
        let batch = vec![
            put_change(&root, "a", b"first", WriteCondition::Absent),
            put_change(&root, "a", b"second", WriteCondition::Absent),
            put_change(&root, "a", b"third", WriteCondition::Always),
            put_change(&root, "b", b"bee", WriteCondition::Always),
            delete("b"),
            delete("b"),
            put_change(
                &root,
                "c",
                b"sea",
                WriteCondition::Matches(vec!["\"3\"".into()]),
            ),
        ];
        let outcomes = write_changes(&mut index, &blobs.accounts, &mut HashSet::new(), batch);
        let summary: Vec<_> = outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(changed) => format!("{:?} {}", changed.size, changed.replaced),
                Err(err) => format!("{err:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "Some(5) false",
                "PreconditionFailed",
                "Some(5) true",
                "Some(3) false",
                "None true",
                "NotFound",
                "PreconditionFailed",
            ]
        );
        assert_eq!(read(&blobs, "ann", "a", None), b"third");
        assert!(matches!(
            blobs.head(&owner("ann"), "b"),
            Err(BlobError::NotFound)
        ));
        assert_eq!(blobs.usage("ann").unwrap().bytes, 5);
        // The replaced and deleted files are gone; the refused puts'
        // temporary files are left to their uploads, which remove them.
        let (temps, kept): (Vec<_>, Vec<_>) = files(&root)
            .into_iter()
            .partition(|name| name.ends_with(TEMP_SUFFIX));
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(temps.len(), 2, "{temps:?}");
    }

    #[test]
    fn a_batch_that_cannot_commit_fails_whole_and_leaves_no_file() {
        let (blobs, root) = store();
        put(&blobs, "ann", "kept", b"old").unwrap();
        let mut index = crate::sqlite::connect(&root.join(INDEX_FILE)).unwrap();
        // Another connection holds the write lock past the busy timeout.
        let holder = crate::sqlite::connect(&root.join(INDEX_FILE)).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        index.busy_timeout(Duration::from_millis(10)).unwrap();
        let batch = vec![
            put_change(&root, "new", b"new", WriteCondition::Always),
            put_change(&root, "kept", b"newer", WriteCondition::Always),
        ];
        let outcomes = write_changes(&mut index, &blobs.accounts, &mut HashSet::new(), batch);
        assert!(
            outcomes
                .iter()
                .all(|outcome| matches!(outcome, Err(BlobError::Local(_))))
        );
        holder.execute_batch("ROLLBACK").unwrap();
        assert_eq!(read(&blobs, "ann", "kept", None), b"old");
        assert!(matches!(
            blobs.head(&owner("ann"), "new"),
            Err(BlobError::NotFound)
        ));
        let renamed: Vec<_> = files(&root)
            .into_iter()
            .filter(|name| !name.ends_with(TEMP_SUFFIX))
            .collect();
        assert_eq!(renamed.len(), 1, "only the old file: {renamed:?}");
    }

    #[test]
    fn racing_creates_of_one_key_let_exactly_one_through() {
        let (blobs, root) = store();
        let created = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for n in 0..16u8 {
                let (blobs, created) = (&blobs, &created);
                scope.spawn(move || {
                    let body = [n; 10];
                    let written = blobs.put(
                        &owner("ann"),
                        "once",
                        "text/plain",
                        &WriteCondition::Absent,
                        &mut &body[..],
                        &|_| {},
                    );
                    match written {
                        Ok(_) => created.lock().unwrap().push(n),
                        Err(BlobError::PreconditionFailed) => {}
                        Err(other) => panic!("{other:?}"),
                    }
                });
            }
        });
        let created = created.into_inner().unwrap();
        assert_eq!(created.len(), 1, "{created:?}");
        assert_eq!(read(&blobs, "ann", "once", None), [created[0]; 10]);
        assert_eq!(files(&root).len(), 1);
    }

    #[test]
    fn a_failed_upload_keeps_the_old_object_and_leaves_nothing() {
        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "client gone"));
                }
                self.0 -= 1;
                out[..4].copy_from_slice(b"new!");
                Ok(4)
            }
        }
        let (blobs, root) = store();
        put(&blobs, "ann", "k", b"old").unwrap();
        let failed = blobs.put(
            &owner("ann"),
            "k",
            "text/plain",
            &WriteCondition::Always,
            &mut Broken(100),
            &|_| {},
        );
        assert!(matches!(failed, Err(BlobError::Body(_))));
        assert_eq!(read(&blobs, "ann", "k", None), b"old");
        assert_eq!(files(&root).len(), 1);
    }

    #[test]
    fn opening_removes_interrupted_uploads_and_keeps_unindexed_files() {
        let (blobs, root) = store();
        put(&blobs, "ann", "k", b"kept").unwrap();
        drop(blobs);
        let folder = root.join(ACCOUNTS_FOLDER).join("ann");
        fs::write(folder.join(".0123.tmp"), b"half an upload").unwrap();
        // Not in the index: a crash between rename and commit, or an index
        // lost or restored from an older backup. Never deleted.
        fs::write(folder.join("feedbeef"), b"renamed, never indexed").unwrap();
        let blobs = LocalBlobs::open(&root).unwrap();
        assert_eq!(files(&root).len(), 2);
        assert!(folder.join("feedbeef").exists());
        assert!(!folder.join(".0123.tmp").exists());
        assert_eq!(read(&blobs, "ann", "k", None), b"kept");
    }

    #[test]
    fn one_process_at_a_time_and_private_files() {
        use std::os::unix::fs::PermissionsExt;
        let (blobs, root) = store();
        let second = LocalBlobs::open(&root).err().unwrap();
        assert!(second.contains("another process"), "{second}");
        put(&blobs, "ann", "k", b"private").unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let folder = root.join(ACCOUNTS_FOLDER).join("ann");
        assert_eq!(mode(&folder), 0o700);
        assert_eq!(mode(&folder.join(&files(&root)[0])), 0o600);
        assert_eq!(mode(&root.join(INDEX_FILE)), 0o600);
        drop(blobs);
        LocalBlobs::open(&root).unwrap();
    }

    #[test]
    fn listing_pages_by_prefix_in_key_order() {
        let (blobs, _root) = store();
        for key in ["b/2", "a", "b/1", "b/3", "c", "b0"] {
            put(&blobs, "ann", key, key.as_bytes()).unwrap();
        }
        let keys = |page: Page| page.objects.into_iter().map(|o| o.key).collect::<Vec<_>>();
        let ann = owner("ann");
        assert_eq!(
            keys(blobs.list(&ann, "", None, 100).unwrap()),
            ["a", "b/1", "b/2", "b/3", "b0", "c"]
        );
        let first = blobs.list(&ann, "b/", None, 2).unwrap();
        assert!(first.truncated);
        assert_eq!(keys(first), ["b/1", "b/2"]);
        let rest = blobs.list(&ann, "b/", Some("b/2"), 2).unwrap();
        assert!(!rest.truncated);
        assert_eq!(keys(rest), ["b/3"]);
    }

    #[test]
    fn a_new_index_has_every_migration() {
        let (_blobs, root) = store();
        assert_eq!(index_version(&root), INDEX_MIGRATIONS.len() as i64);
    }

    /// An index written before the index was versioned: the table as that
    /// wren made it, with `user_version` left at 0.
    #[test]
    fn an_index_from_before_versions_opens_with_its_rows() {
        let root = fresh_root();
        let folder = root.join(ACCOUNTS_FOLDER).join("ann");
        fs::create_dir_all(&folder).unwrap();
        fs::write(folder.join("0a1b.txt"), b"from before").unwrap();
        let old = Connection::open(root.join(INDEX_FILE)).unwrap();
        old.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS objects (
                 namespace TEXT NOT NULL,
                 key TEXT NOT NULL,
                 file TEXT NOT NULL,
                 size INTEGER NOT NULL,
                 etag TEXT NOT NULL,
                 content_type TEXT NOT NULL,
                 modified INTEGER NOT NULL,
                 PRIMARY KEY (namespace, key)
             ) STRICT;
             INSERT INTO objects VALUES
                 ('ann', 'old.txt', '0a1b.txt', 11, '\"e\"', 'text/plain', 1700000000);",
        )
        .unwrap();
        drop(old);
        assert_eq!(index_version(&root), 0);

        let blobs = LocalBlobs::open(&root).unwrap();
        assert_eq!(index_version(&root), INDEX_MIGRATIONS.len() as i64);
        let info = blobs.head(&owner("ann"), "old.txt").unwrap();
        // Usage counts the files from before it was kept.
        let usage = blobs.usage("ann").unwrap();
        assert_eq!((usage.bytes, usage.files), (11, 1));
        assert_eq!((info.size, info.etag.as_str()), (11, "\"e\""));
        assert_eq!(read(&blobs, "ann", "old.txt", None), b"from before");
        put(&blobs, "ann", "new.txt", b"after").unwrap();
        assert_eq!(
            blobs.list_keys(&owner("ann"), None, 10).unwrap().keys,
            ["new.txt", "old.txt"]
        );
    }

    #[test]
    fn an_index_from_a_newer_wren_is_refused() {
        let (blobs, root) = store();
        drop(blobs);
        let newer = INDEX_MIGRATIONS.len() as i64 + 1;
        Connection::open(root.join(INDEX_FILE))
            .unwrap()
            .pragma_update(None, "user_version", newer)
            .unwrap();
        let err = LocalBlobs::open(&root).err().unwrap();
        assert!(err.contains("file index"), "{err}");
        assert!(err.contains("newer than this wren"), "{err}");
    }
}

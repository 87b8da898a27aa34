//! The data folder's state at one moment, copied into the staging folder
//! (`<data-dir>/.backup/image/`) in the data folder's own layout, while
//! the server keeps serving.
//!
//! - **Databases** (`wren.db`, `files/index.db`, `files/s3-index.db`,
//!   whichever exist) are copied with SQLite's online backup API from a
//!   connection that holds one read transaction for the whole copy, so
//!   every step reads the same snapshot: the copy never restarts because a
//!   writer committed meanwhile, and, the databases being in WAL mode, a
//!   reader never holds up a writer. The copy is then made a single file
//!   (rollback journal mode) and checked with `PRAGMA quick_check`.
//! - **The local store's files**: the snapshot of `files/index.db` is
//!   taken while holding the index's write lock for a moment, and every
//!   file that snapshot names is hard-linked into the staging folder
//!   before the lock is let go. A link keeps a file's bytes even when the
//!   server then replaces or deletes it (it only ever renames new files in
//!   and unlinks old ones), so the backup holds exactly the files its index
//!   names. The lock is held only for the files written since a first pass
//!   linked the rest without it: a moment, whatever the store's size. The
//!   server's writes to the index wait (within its busy timeout) meanwhile;
//!   nothing else does.
//! - **The secret and the ACME folder** are copied as they are: each of
//!   their files is replaced whole by a rename, never written in place.

use std::collections::HashSet;
use std::ffi::c_int;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::backup::{Backup, StepResult};

use super::location::{private_folder, private_folders, remove_tree, write_new};
use super::manifest::check_path;
use super::progress::{Amount, Phase, Report};
use super::{BackupError, io_failed};
use crate::blob::local::{self, INDEX_FILE};
use crate::blob::s3::RECORD_FILE;
use crate::sqlite::BUSY_TIMEOUT;
use crate::store::sqlite::DATABASE_FILE;

/// The staging folder in the data folder: the snapshot's image, and the
/// S3 client's throwaway record. Removed after each backup; one a crash
/// left is removed by the next.
const STAGING_FOLDER: &str = ".backup";
/// Held by the one backup of a data folder in progress.
const LOCK_FILE: &str = ".backup-lock";

/// Database pages copied per step of the backup API, between which the
/// progress is told (1 MiB with SQLite's default 4 KiB page).
const PAGES_PER_STEP: c_int = 256;
/// The wait between tries of a step SQLite found busy.
const BUSY_PAUSE: Duration = Duration::from_millis(10);

/// The one backup of a data folder in progress: its lock and its staging
/// folder, removed when dropped.
pub(super) struct Session {
    folder: PathBuf,
    _lock: File,
}

impl Session {
    /// Takes the data folder's backup lock (another backup in progress is
    /// an error) and makes a fresh staging folder.
    pub(super) fn open(data_dir: &Path) -> Result<Session, BackupError> {
        let lock_path = data_dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|err| io_failed("create", &lock_path, err))?;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(BackupError::Failed(format!(
                "another backup of {} is in progress (it holds {})",
                data_dir.display(),
                lock_path.display()
            )));
        }
        let folder = data_dir.join(STAGING_FOLDER);
        remove_tree(&folder)?;
        private_folder(&folder)?;
        let session = Session {
            folder,
            _lock: lock,
        };
        private_folder(&session.image())?;
        Ok(session)
    }

    /// Where the snapshot is laid out.
    pub(super) fn image(&self) -> PathBuf {
        self.folder.join("image")
    }

    /// A folder for the S3 client's size record, which backups do not use.
    pub(super) fn record(&self) -> PathBuf {
        self.folder.join("s3-record")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = remove_tree(&self.folder);
    }
}

/// What a snapshot laid out in the staging image.
pub(super) struct Snapshot {
    /// When the databases' snapshots were taken (RFC 3339).
    pub(super) created: String,
    /// The databases copied, as paths from the data folder.
    pub(super) databases: Vec<String>,
    /// Every file of the image, databases included.
    pub(super) files: Vec<String>,
}

impl Snapshot {
    /// Whether the data folder records files kept on S3.
    pub(super) fn has_s3_record(&self) -> bool {
        self.databases.contains(&s3_record_path())
    }
}

fn index_path() -> String {
    format!("{}/{INDEX_FILE}", local::FOLDER)
}

fn s3_record_path() -> String {
    format!("{}/{RECORD_FILE}", local::FOLDER)
}

/// Takes the snapshot of `data_dir` into `image` (see the module doc).
pub(super) fn take(
    data_dir: &Path,
    image: &Path,
    report: &dyn Fn(Report<'_>),
) -> Result<Snapshot, BackupError> {
    let mut sources: Vec<(String, Connection)> = Vec::new();
    let mut files = Vec::new();
    let index = index_path();
    if data_dir.join(&index).is_file() {
        let (reader, held) = hold_indexed_files(data_dir, image, &index)?;
        sources.push((index, reader));
        files.extend(held);
    }
    for path in [DATABASE_FILE.to_owned(), s3_record_path()] {
        let full = data_dir.join(&path);
        if full.is_file() {
            let source = open_source(&full)?;
            begin_read(&source).map_err(|err| database_failed(&path, err))?;
            sources.push((path, source));
        }
    }
    let created = crate::date::now_rfc3339();
    let mut total = Amount {
        bytes: 0,
        files: sources.len() as u64,
    };
    for (path, source) in &sources {
        total.bytes += snapshot_size(source).map_err(|err| database_failed(path, err))?;
    }
    report(Report::Phase {
        phase: Phase::Snapshot,
        total,
    });
    let mut done = Amount::default();
    let mut databases = Vec::new();
    for (path, source) in sources {
        copy_database(&source, image, &path, &mut done, report)?;
        done.files += 1;
        report(Report::Progress(done));
        // Ends the read transaction; nothing was written.
        drop(source);
        databases.push(path);
    }
    files.extend(copy_secret_and_acme(data_dir, image)?);
    files.extend(databases.iter().cloned());
    Ok(Snapshot {
        created,
        databases,
        files,
    })
}

/// Links every file the file index names into `image`, in two passes (see
/// the module doc): the connection holding the index's snapshot in a read
/// transaction, and the files it names.
fn hold_indexed_files(
    data_dir: &Path,
    image: &Path,
    index: &str,
) -> Result<(Connection, Vec<String>), BackupError> {
    let index_file = data_dir.join(index);
    let failed = |err: rusqlite::Error| database_failed(index, err);
    // First, holding nothing: what the index names now. A file replaced
    // or deleted meanwhile is simply not linked here.
    let mut held = HashSet::new();
    for path in local::indexed_files(&open_source(&index_file)?).map_err(failed)? {
        if link(data_dir, image, &path, false)? {
            held.insert(path);
        }
    }
    // Then, under the write lock, the snapshot and the files written since:
    // a name is never reused for other bytes, so one linked already is
    // held, and the lock lasts as long as the new files take.
    let writer = open_source(&index_file)?;
    writer
        .execute_batch("BEGIN IMMEDIATE")
        .map_err(|err| database_failed(index, err))?;
    let reader = open_source(&index_file)?;
    begin_read(&reader).map_err(failed)?;
    let named = local::indexed_files(&reader).map_err(failed)?;
    for path in named.iter().filter(|path| !held.contains(*path)) {
        link(data_dir, image, path, true)?;
    }
    // The snapshot's files are all held: writes may go on. Links the first
    // pass made to files replaced since are left in the staging folder:
    // the backup copies only what the snapshot names.
    drop(writer);
    Ok((reader, named))
}

/// Links the data folder's `path` into `image` (copies it when the two are
/// on different filesystems): whether it is there now. A file already there
/// is kept: a name in the store is never reused for other bytes. A missing
/// file is skipped unless `required`, when it is an error: the index names
/// it.
fn link(data_dir: &Path, image: &Path, path: &str, required: bool) -> Result<bool, BackupError> {
    check_path(path).map_err(|problem| {
        BackupError::Failed(format!(
            "the file index names a file a backup cannot hold: {problem}"
        ))
    })?;
    let from = data_dir.join(path);
    let to = image.join(path);
    if let Some(parent) = to.parent() {
        private_folders(image, parent, &mut Vec::new())?;
    }
    let linked = match fs::hard_link(&from, &to) {
        // `files/` on a filesystem of its own: a copy, made while the file
        // is still the one the index names.
        Err(err) if err.kind() == io::ErrorKind::CrossesDevices => {
            File::open(&from).map(|mut file| write_new(image, path, &mut file).map(|_| ()))
        }
        linked => linked.map(Ok),
    };
    match linked {
        Ok(copied) => copied.map(|()| true),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound && !required => Ok(false),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(BackupError::Failed(format!(
            "the file index names {path}, which is not in the data folder"
        ))),
        Err(err) => Err(BackupError::Failed(format!(
            "cannot hold {} for the backup: {err}",
            from.display()
        ))),
    }
}

/// A connection to a database of the data folder (the caller checked it
/// is there), set up as the server's own connections are.
#[inline(never)]
fn open_source(path: &Path) -> Result<Connection, BackupError> {
    crate::sqlite::connect(path).map_err(|err| io_failed("open", path, err))
}

/// Opens a read transaction, fixing the snapshot every later read sees.
#[inline(never)]
fn begin_read(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN")?;
    query_number(conn, "SELECT count(*) FROM sqlite_schema").map(|_| ())
}

/// The bytes of the database as its connection's snapshot sees it.
fn snapshot_size(conn: &Connection) -> rusqlite::Result<u64> {
    Ok(query_number(conn, "PRAGMA page_count")? * page_size(conn)?)
}

fn page_size(conn: &Connection) -> rusqlite::Result<u64> {
    query_number(conn, "PRAGMA page_size")
}

/// The one number `sql` answers (a negative one as 0).
#[inline(never)]
fn query_number(conn: &Connection, sql: &str) -> rusqlite::Result<u64> {
    let value: i64 = conn.query_row(sql, [], |row| row.get(0))?;
    Ok(value.max(0) as u64)
}

/// The text `sql` answers first (`PRAGMA quick_check`'s `ok`).
#[inline(never)]
pub(super) fn query_text(conn: &Connection, sql: &str) -> rusqlite::Result<String> {
    conn.query_row(sql, [], |row| row.get(0))
}

/// Copies the database `source` holds a read transaction on into the new
/// file `path` of `image`, step by step, then makes the copy one
/// self-contained file and checks it.
fn copy_database(
    source: &Connection,
    image: &Path,
    path: &str,
    done: &mut Amount,
    report: &dyn Fn(Report<'_>),
) -> Result<(), BackupError> {
    let failed = |err: rusqlite::Error| database_failed(path, err);
    let to = image.join(path);
    if let Some(parent) = to.parent() {
        private_folders(image, parent, &mut Vec::new())?;
    }
    // Private before SQLite opens it, as the server's own databases are.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&to)
        .map_err(|err| io_failed("create", &to, err))?;
    let mut copy = Connection::open(&to).map_err(failed)?;
    let before = done.bytes;
    let page_size = page_size(source).map_err(failed)?;
    {
        let backup = Backup::new(source, &mut copy).map_err(failed)?;
        let mut busy_since: Option<Instant> = None;
        loop {
            match backup.step(PAGES_PER_STEP).map_err(failed)? {
                StepResult::Done => break,
                StepResult::More => {
                    busy_since = None;
                    let progress = backup.progress();
                    let copied = (progress.pagecount - progress.remaining).max(0) as u64;
                    done.bytes = before + copied * page_size;
                    report(Report::Progress(*done));
                }
                // Busy or locked: only another connection writing to the
                // copy could cause it, which nothing does; wait as the
                // server's connections wait, then give up.
                _ => {
                    let since = *busy_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > BUSY_TIMEOUT {
                        return Err(BackupError::Failed(format!(
                            "{path}: the copy stayed locked for {BUSY_TIMEOUT:?}"
                        )));
                    }
                    std::thread::sleep(BUSY_PAUSE);
                }
            }
        }
    }
    query_text(&copy, "PRAGMA journal_mode = DELETE").map_err(failed)?;
    let check = query_text(&copy, "PRAGMA quick_check").map_err(failed)?;
    if check != "ok" {
        return Err(BackupError::Failed(format!(
            "the copy of {path} fails SQLite's quick_check: {check}"
        )));
    }
    done.bytes = before + fs::metadata(&to).map_or(0, |meta| meta.len());
    Ok(())
}

/// Copies the server secret and the ACME folder's files (not the
/// temporary ones a write in progress has); the paths copied.
fn copy_secret_and_acme(data_dir: &Path, image: &Path) -> Result<Vec<String>, BackupError> {
    let mut paths = vec![crate::auth::secret::SECRET_FILE.to_owned()];
    let acme = data_dir.join(crate::acme::FOLDER);
    if let Ok(entries) = fs::read_dir(&acme) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.file_type().is_ok_and(|kind| kind.is_file()) {
                paths.push(format!("{}/{name}", crate::acme::FOLDER));
            }
        }
    }
    let mut copied = Vec::new();
    for path in paths {
        let from = data_dir.join(&path);
        let mut file = match File::open(&from) {
            Ok(file) => file,
            // No secret file (WREN_SECRET), or a file renamed away.
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => {
                return Err(io_failed("read", &from, err));
            }
        };
        write_new(image, &path, &mut file)?;
        copied.push(path);
    }
    Ok(copied)
}

#[inline(never)]
fn database_failed(path: &str, err: rusqlite::Error) -> BackupError {
    BackupError::Failed(format!("{path}: {err}"))
}

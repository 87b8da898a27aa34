//! Online backup and restore of a data folder: `wren backup`, `wren
//! restore`, and the server's scheduled backups ([`schedule`]).
//!
//! A backup is the data folder's state at one moment, taken while the
//! server keeps serving ([`snapshot`] says how), in the data folder's own
//! layout plus `manifest.json` ([`manifest`]):
//!
//! ```text
//! wren.db                       the store (accounts, keys, events, …)
//! files/index.db                the local file index, and the files it
//! files/accounts/<account>/…    names, with their bytes
//! files/s3-index.db             the S3 size record; the objects stay on S3
//! secret                        the server secret: tokens stay valid
//! acme/…                        the ACME account and certificate
//! manifest.json                 every file's size and SHA-256, written last
//! ```
//!
//! It goes to a folder or to S3 ([`location`]), and is never seen half
//! written. A restore checks every file against the manifest while laying
//! the backup out beside the new data folder, and renames it into place
//! only when all of it checked out: the server then started on it serves
//! exactly the backed-up state.
//!
//! What is not in a backup: the objects kept on S3 (they stay where they
//! are; the manifest says where), files the local index does not name (an
//! upload in progress, or one a crash left unindexed), and locks and
//! temporary files.

pub mod location;
pub mod manifest;
pub mod progress;
pub mod schedule;
mod snapshot;

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use self::location::Location;
use self::location::{
    Reader, Writer, beside, private_folder, put_in_place, remove_tree, sync_folder, write_new,
};
use self::manifest::{Entry, MANIFEST_FILE, Manifest, S3Objects};
pub use self::progress::{Amount, Phase, Report};
use self::progress::{Bytes, Tally, plural};
use self::snapshot::{Session, Snapshot};
use crate::blob::S3Config;
use crate::store::sqlite::DATABASE_FILE;

/// The largest manifest read (about a million files' entries): past it,
/// what `--from` names is not a wren backup.
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;

/// Why a backup or a restore did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupError {
    /// What a flag names cannot be used (a folder that is not a data
    /// folder, a destination already taken): the message names the flag.
    Refused(String),
    /// It failed on the way: a disk, the object store, a damaged backup.
    Failed(String),
}

impl fmt::Display for BackupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackupError::Refused(why) | BackupError::Failed(why) => f.write_str(why),
        }
    }
}

/// Backs up the data folder `data_dir` into the new backup `to`, named by
/// `flag` in refusals; `s3` is the server's S3 settings (how an `s3://`
/// location is reached, and where the server keeps its files on S3).
/// Returns the summary it also reports.
pub fn backup(
    data_dir: &Path,
    to: &Location,
    flag: &str,
    s3: Option<&S3Config>,
    report: &dyn Fn(Report<'_>),
) -> Result<String, BackupError> {
    let session = begin(data_dir)?;
    backup_in(&session, data_dir, to, flag, s3, report)
}

/// Checks that `data_dir` is a server's data folder and takes its backup
/// session.
fn begin(data_dir: &Path) -> Result<Session, BackupError> {
    if !data_dir.is_dir() {
        return Err(BackupError::Refused(format!(
            "--data-dir: there is no folder at {}",
            data_dir.display()
        )));
    }
    if !data_dir.join(DATABASE_FILE).is_file() {
        return Err(BackupError::Refused(format!(
            "--data-dir: {} holds no wren database ({DATABASE_FILE})",
            data_dir.display()
        )));
    }
    Session::open(data_dir)
}

/// One copy for the command and the schedule (inlined into both, it cost
/// 12 KB of a static binary that must stay under 8 MiB).
#[inline(never)]
fn backup_in(
    session: &Session,
    data_dir: &Path,
    to: &Location,
    flag: &str,
    s3: Option<&S3Config>,
    report: &dyn Fn(Report<'_>),
) -> Result<String, BackupError> {
    let mut writer = location::writer(to, flag, s3, &session.record())?;
    let written = write_backup(session, data_dir, to, s3, &mut *writer, report);
    match written {
        Ok(summary) => {
            report(Report::Finished(&summary));
            Ok(summary)
        }
        Err(err) => {
            writer.abandon();
            Err(err)
        }
    }
}

fn write_backup(
    session: &Session,
    data_dir: &Path,
    to: &Location,
    s3: Option<&S3Config>,
    writer: &mut dyn Writer,
    report: &dyn Fn(Report<'_>),
) -> Result<String, BackupError> {
    let image = session.image();
    let snapshot = snapshot::take(data_dir, &image, report)?;
    let phase = match to {
        Location::Dir(_) => Phase::Copy,
        Location::S3 { .. } => Phase::Upload,
    };
    let files = transfer(&image, &snapshot.files, writer, phase, report)?;
    let manifest = manifest_of(&snapshot, files, s3);
    writer.finish(&mut manifest.to_json().as_slice())?;
    let total = manifest.total();
    let mut summary = format!(
        "backed up {} to {to}: {} {}, {} {} in all, {}",
        data_dir.display(),
        manifest.databases.len(),
        plural(manifest.databases.len() as u64, "database", "databases"),
        total.files,
        plural(total.files, "file", "files"),
        Bytes(total.bytes),
    );
    if let Some(objects) = &manifest.s3_objects {
        summary.push_str(&format!(
            "; the files kept on S3 stay where they are ({})",
            s3_place(objects)
        ));
    }
    Ok(summary)
}

fn manifest_of(snapshot: &Snapshot, files: Vec<Entry>, s3: Option<&S3Config>) -> Manifest {
    Manifest {
        wren_version: env!("CARGO_PKG_VERSION").to_owned(),
        created: snapshot.created.clone(),
        databases: snapshot.databases.clone(),
        files,
        s3_objects: snapshot.has_s3_record().then(|| S3Objects {
            endpoint: s3.map(|s3| s3.endpoint.clone()),
            bucket: s3.and_then(|s3| s3.bucket.clone()),
            prefix: s3.map(|s3| s3.prefix.clone()).unwrap_or_default(),
        }),
    }
}

/// Where the manifest says the S3 objects are, for people.
fn s3_place(objects: &S3Objects) -> String {
    match &objects.bucket {
        Some(bucket) => format!("s3://{bucket}/{}", objects.prefix),
        None => "in the buckets the server and its accounts use".to_owned(),
    }
}

/// Hands each of the image's `files` to `writer`, hashing it on the way:
/// the manifest's entries.
fn transfer(
    image: &Path,
    files: &[String],
    writer: &mut dyn Writer,
    phase: Phase,
    report: &dyn Fn(Report<'_>),
) -> Result<Vec<Entry>, BackupError> {
    let mut total = Amount {
        bytes: 0,
        files: files.len() as u64,
    };
    for path in files {
        total.bytes += fs::metadata(image.join(path)).map_or(0, |meta| meta.len());
    }
    report(Report::Phase { phase, total });
    let mut done = Amount::default();
    let mut entries = Vec::with_capacity(files.len());
    for path in files {
        let staged = image.join(path);
        let mut file = File::open(&staged).map_err(|err| io_failed("read", &staged, err))?;
        let (size, sha256) = {
            let mut seen = |n: u64| {
                done.bytes += n;
                report(Report::Progress(done));
            };
            let mut tally = Tally::new(&mut file, u64::MAX, &mut seen);
            writer.put(path, &mut tally)?;
            tally.finish()
        };
        done.files += 1;
        report(Report::Progress(done));
        entries.push(Entry {
            path: path.clone(),
            size,
            sha256,
        });
    }
    Ok(entries)
}

/// Lays the backup at `from` out as the new data folder `data_dir`, which
/// must not exist or be empty; `s3` is the server's S3 settings, for an
/// `s3://` backup. Every file is checked against the manifest before the
/// folder is put in place (the databases passed `quick_check` when they
/// were copied, and the hashes say they are those bytes). Returns the
/// summary it also reports.
pub fn restore(
    from: &Location,
    data_dir: &Path,
    s3: Option<&S3Config>,
    report: &dyn Fn(Report<'_>),
) -> Result<String, BackupError> {
    check_new_data_dir(data_dir)?;
    let work = beside(data_dir, "restoring", "--data-dir")?;
    if let Some(parent) = work
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        fs::create_dir_all(parent).map_err(|err| io_failed("create", parent, err))?;
    }
    remove_tree(&work)?;
    private_folder(&work)?;
    let _work = RemovedOnDrop(work.clone());
    let laid = work.join("data");
    private_folder(&laid)?;
    let reader = location::reader(from, "--from", s3, &work.join("s3-record"))?;
    let manifest = read_manifest(&*reader, from)?;
    let total = manifest.total();
    report(Report::Phase {
        phase: Phase::Verify,
        total,
    });
    let mut done = Amount::default();
    let mut folders = vec![laid.clone()];
    for entry in &manifest.files {
        let Some(mut body) = reader.get(&entry.path)? else {
            return Err(damaged(&format!("{} is missing", entry.path)));
        };
        let (size, sha256) = {
            let mut seen = |n: u64| {
                done.bytes += n;
                report(Report::Progress(done));
            };
            // One byte past the size tells a longer file, without reading it.
            let limit = entry.size.saturating_add(1);
            let mut tally = Tally::new(&mut *body, limit, &mut seen);
            folders.extend(write_new(&laid, &entry.path, &mut tally)?);
            tally.finish()
        };
        if size != entry.size || sha256 != entry.sha256 {
            return Err(damaged(&format!(
                "{} differs from what the manifest lists ({} bytes with SHA-256 {}, \
                 where it lists {} bytes with {})",
                entry.path, size, sha256, entry.size, entry.sha256
            )));
        }
        done.files += 1;
        report(Report::Progress(done));
    }
    for folder in &folders {
        sync_folder(folder)?;
    }
    put_in_place(&laid, data_dir)?;
    let mut summary = format!(
        "restored {from} ({}, wren {}) into {}: {} {}, {}",
        manifest.created,
        manifest.wren_version,
        data_dir.display(),
        total.files,
        plural(total.files, "file", "files"),
        Bytes(total.bytes),
    );
    if let Some(objects) = &manifest.s3_objects {
        summary.push_str(&format!(
            "; the files kept on S3 were not in the backup: they are where they were ({})",
            s3_place(objects)
        ));
    }
    report(Report::Finished(&summary));
    Ok(summary)
}

/// A restore goes into a new folder: never over a server's data.
fn check_new_data_dir(data_dir: &Path) -> Result<(), BackupError> {
    let mut entries = match fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => {
            return Err(BackupError::Refused(format!(
                "--data-dir: {} cannot be restored into: {err}",
                data_dir.display()
            )));
        }
    };
    if data_dir.join(DATABASE_FILE).exists() {
        return Err(BackupError::Refused(format!(
            "--data-dir: {} already holds a wren database ({DATABASE_FILE}); restore into a new \
             folder and start the server there",
            data_dir.display()
        )));
    }
    if entries.next().is_some() {
        return Err(BackupError::Refused(format!(
            "--data-dir: {} is not empty; restore into a new or empty folder",
            data_dir.display()
        )));
    }
    Ok(())
}

fn read_manifest(reader: &dyn Reader, from: &Location) -> Result<Manifest, BackupError> {
    let Some(mut body) = reader.get(MANIFEST_FILE)? else {
        return Err(BackupError::Refused(format!(
            "--from: {from} holds no backup: it has no {MANIFEST_FILE} (a backup that stopped \
             half-way has none)"
        )));
    };
    let mut bytes = Vec::new();
    Tally::new(&mut *body, MAX_MANIFEST_BYTES + 1, &mut |_| {})
        .read_to_end(&mut bytes)
        .map_err(|err| BackupError::Failed(format!("cannot read {from}/{MANIFEST_FILE}: {err}")))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(BackupError::Refused(format!(
            "--from: {from}/{MANIFEST_FILE} is larger than {}",
            Bytes(MAX_MANIFEST_BYTES)
        )));
    }
    Manifest::parse(&bytes).map_err(|problem| {
        BackupError::Refused(format!("--from: {from}/{MANIFEST_FILE}: {problem}"))
    })
}

#[inline(never)]
fn damaged(what: &str) -> BackupError {
    BackupError::Failed(format!(
        "the backup is damaged, nothing was restored: {what}"
    ))
}

/// A file operation on `path` that failed: `cannot WHAT PATH: ERR`. One
/// function for the many places that say it, so that each is a call.
#[cold]
#[inline(never)]
fn io_failed(what: &str, path: &Path, err: impl fmt::Display) -> BackupError {
    BackupError::Failed(format!("cannot {what} {}: {err}", path.display()))
}

/// A work folder, removed with what is left in it however the work ends.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = remove_tree(&self.0);
    }
}

#[cfg(test)]
mod tests;

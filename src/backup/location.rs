//! Where a backup is: a folder, or a prefix in an S3 bucket. Writing one
//! ([`Writer`]) and reading one back ([`Reader`]) for each.
//!
//! A folder backup is written under a temporary name beside its final one
//! (`.NAME.partial`), every file and folder fsynced, and renamed into place
//! when complete; an S3 backup's `manifest.json` is uploaded last. Either
//! way a backup that stopped half-way never looks complete.
//!
//! S3 is reached through the S3 backend's own client ([`S3Blobs`]: signing,
//! multipart uploads past 8 MiB, retries, error reading) with the server's
//! endpoint and keys, the backup's prefix standing where an account's name
//! stands in the backend's layout (`<prefix>/<path>`). The backend's size
//! record, which a backup has no use for, is kept in a throwaway folder.
//!
//! The small helpers here and in `snapshot` that wrap the standard
//! library's file calls are `#[inline(never)]`: inlined at each of their
//! calls with the code they wrap, they cost tens of KB of a static binary
//! that must stay under 8 MiB, and none is on a hot path.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::manifest::MANIFEST_FILE;
use super::{BackupError, io_failed};
use crate::blob::s3::{S3Blobs, check_bucket_name};
use crate::blob::{BlobError, Blobs, Owner, S3Config, WriteCondition, check_key};

/// Copy buffer for files.
const COPY_BUFFER: usize = 64 * 1024;

/// Where a backup is, as `--to`, `--from` and `--backup-to` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Dir(PathBuf),
    /// `s3://bucket/prefix`: the backup's objects are `prefix/<path>`.
    S3 {
        bucket: String,
        prefix: String,
    },
}

impl Location {
    /// A folder path, or `s3://BUCKET/PREFIX` (a prefix is needed, and
    /// slashes at its ends are dropped).
    pub fn parse(s: &str) -> Result<Location, String> {
        let Some(rest) = s.strip_prefix("s3://") else {
            if s.is_empty() {
                return Err("expected a folder or s3://bucket/prefix, got nothing".to_owned());
            }
            return Ok(Location::Dir(PathBuf::from(s)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket_name(bucket).map_err(|rule| {
            format!(
                "the bucket name '{}' {rule}",
                crate::text::excerpt(bucket, 64)
            )
        })?;
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            return Err(format!(
                "expected s3://{bucket}/PREFIX: a backup needs a prefix of its own"
            ));
        }
        // Every object's key starts with the prefix: the keys' rules.
        check_key(prefix).map_err(|rule| {
            format!(
                "the prefix '{}' cannot start S3 keys: {rule}",
                crate::text::excerpt(prefix, 64)
            )
        })?;
        Ok(Location::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The location of `name` inside this one.
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Dir(dir) => Location::Dir(dir.join(name)),
            Location::S3 { bucket, prefix } => Location::S3 {
                bucket: bucket.clone(),
                prefix: format!("{prefix}/{name}"),
            },
        }
    }

    /// Whether objects written here could land among the accounts' files
    /// of a server keeping them in `server_bucket` under `server_prefix`
    /// (`<server_prefix><account>/<key>`): the same bucket, and a prefix
    /// inside the server's.
    pub fn overlaps(&self, server_bucket: &str, server_prefix: &str) -> bool {
        match self {
            Location::Dir(_) => false,
            Location::S3 { bucket, prefix } => {
                bucket == server_bucket && format!("{prefix}/").starts_with(server_prefix)
            }
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Dir(dir) => write!(f, "{}", dir.display()),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// Where a backup being made goes.
pub(super) trait Writer {
    /// Stores `body` as the backup's `path`.
    fn put(&mut self, path: &str, body: &mut dyn Read) -> Result<(), BackupError>;
    /// Stores the manifest, last: the backup is complete.
    fn finish(&mut self, manifest: &mut dyn Read) -> Result<(), BackupError>;
    /// Removes what was written of a backup that failed (best effort).
    fn abandon(&mut self);
}

/// A backup being read back.
pub(super) trait Reader {
    /// The backup's `path`; `Ok(None)` when it has no such file.
    fn get(&self, path: &str) -> Result<Option<Box<dyn Read + '_>>, BackupError>;
}

/// A writer for a new backup at `location`, refused (naming `flag`) when
/// a backup or anything else is there already. `record` is a folder for
/// the S3 client's throwaway size record.
pub(super) fn writer(
    location: &Location,
    flag: &str,
    s3: Option<&S3Config>,
    record: &Path,
) -> Result<Box<dyn Writer>, BackupError> {
    match location {
        Location::Dir(dir) => Ok(Box::new(DirWriter::create(dir, flag)?)),
        Location::S3 { bucket, prefix } => {
            let target = S3Target::open(s3, bucket, prefix, record, flag)?;
            match target.blobs.head(&target.owner, MANIFEST_FILE) {
                Ok(_) => Err(BackupError::Refused(format!(
                    "{flag}: {location} already holds a backup"
                ))),
                Err(BlobError::NotFound) => Ok(Box::new(S3Writer {
                    target,
                    written: Vec::new(),
                })),
                Err(err) => Err(s3_failed(location, err)),
            }
        }
    }
}

/// A reader of the backup at `location`.
pub(super) fn reader(
    location: &Location,
    flag: &str,
    s3: Option<&S3Config>,
    record: &Path,
) -> Result<Box<dyn Reader>, BackupError> {
    match location {
        Location::Dir(dir) => Ok(Box::new(DirReader(dir.clone()))),
        Location::S3 { bucket, prefix } => {
            Ok(Box::new(S3Target::open(s3, bucket, prefix, record, flag)?))
        }
    }
}

/// A folder backup being written under its temporary name.
struct DirWriter {
    temporary: PathBuf,
    target: PathBuf,
    /// Every folder made, to be fsynced before the rename.
    folders: Vec<PathBuf>,
    finished: bool,
}

impl DirWriter {
    fn create(target: &Path, flag: &str) -> Result<DirWriter, BackupError> {
        if fs::read_dir(target).is_ok_and(|mut entries| entries.next().is_some())
            || target.is_file()
        {
            return Err(BackupError::Refused(format!(
                "{flag}: {} already exists and is not an empty folder; a backup never \
                 overwrites anything",
                target.display()
            )));
        }
        let temporary = beside(target, "partial", flag)?;
        if let Some(parent) = temporary.parent() {
            fs::create_dir_all(parent).map_err(|err| io_failed("create", parent, err))?;
        }
        // What a crash of an earlier backup to the same place left.
        remove_tree(&temporary)?;
        private_folder(&temporary)?;
        Ok(DirWriter {
            folders: vec![temporary.clone()],
            temporary,
            target: target.to_owned(),
            finished: false,
        })
    }
}

impl Writer for DirWriter {
    fn put(&mut self, path: &str, body: &mut dyn Read) -> Result<(), BackupError> {
        let made = write_new(&self.temporary, path, body)?;
        self.folders.extend(made);
        Ok(())
    }

    fn finish(&mut self, manifest: &mut dyn Read) -> Result<(), BackupError> {
        write_new(&self.temporary, MANIFEST_FILE, manifest)?;
        for folder in &self.folders {
            sync_folder(folder)?;
        }
        put_in_place(&self.temporary, &self.target)?;
        self.finished = true;
        Ok(())
    }

    fn abandon(&mut self) {
        if !self.finished {
            let _ = remove_tree(&self.temporary);
        }
    }
}

impl Drop for DirWriter {
    fn drop(&mut self) {
        self.abandon();
    }
}

struct DirReader(PathBuf);

impl Reader for DirReader {
    fn get(&self, path: &str) -> Result<Option<Box<dyn Read + '_>>, BackupError> {
        let file = self.0.join(path);
        match File::open(&file) {
            Ok(opened) => Ok(Some(Box::new(opened))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_failed("read", &file, err)),
        }
    }
}

/// A backup's prefix in a bucket, and the client that reaches it.
struct S3Target {
    blobs: S3Blobs,
    /// The backend's "account": the backup's prefix.
    owner: Owner,
    location: Location,
}

impl S3Target {
    fn open(
        server: Option<&S3Config>,
        bucket: &str,
        prefix: &str,
        record: &Path,
        flag: &str,
    ) -> Result<S3Target, BackupError> {
        let location = Location::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        };
        let Some(server) = server else {
            return Err(BackupError::Refused(format!(
                "{flag}: {location} needs the server's S3 settings: --s3-endpoint, and \
                 S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY in the environment"
            )));
        };
        let config = S3Config {
            bucket: Some(bucket.to_owned()),
            prefix: String::new(),
            ..server.clone()
        };
        let blobs = S3Blobs::new(&config, record).map_err(BackupError::Failed)?;
        Ok(S3Target {
            blobs,
            owner: Owner {
                namespace: prefix.to_owned(),
                credentials: None,
            },
            location,
        })
    }
}

impl Reader for S3Target {
    fn get(&self, path: &str) -> Result<Option<Box<dyn Read + '_>>, BackupError> {
        match self.blobs.get(&self.owner, path, None) {
            Ok(download) => Ok(Some(download.body)),
            Err(BlobError::NotFound) => Ok(None),
            Err(err) => Err(s3_failed(&self.location, err)),
        }
    }
}

struct S3Writer {
    target: S3Target,
    /// What was uploaded, to remove if the backup fails.
    written: Vec<String>,
}

impl S3Writer {
    fn upload(
        &mut self,
        path: &str,
        content_type: &str,
        body: &mut dyn Read,
    ) -> Result<(), BackupError> {
        let target = &self.target;
        target
            .blobs
            .put(
                &target.owner,
                path,
                content_type,
                &WriteCondition::Always,
                body,
                &|_| {},
            )
            .map_err(|err| s3_failed(&target.location, err))?;
        self.written.push(path.to_owned());
        Ok(())
    }
}

impl Writer for S3Writer {
    fn put(&mut self, path: &str, body: &mut dyn Read) -> Result<(), BackupError> {
        self.upload(path, "application/octet-stream", body)
    }

    fn finish(&mut self, manifest: &mut dyn Read) -> Result<(), BackupError> {
        self.upload(MANIFEST_FILE, "application/json", manifest)?;
        self.written.clear();
        Ok(())
    }

    fn abandon(&mut self) {
        let target = &self.target;
        for path in self.written.drain(..) {
            let _ = target.blobs.delete(&target.owner, &path, &|_| {});
        }
    }
}

/// Every complete and incomplete backup S3 holds under `location` (a
/// `--backup-to` prefix), by name: (name, whether it has its manifest).
pub(super) fn s3_backups(
    location: &Location,
    s3: Option<&S3Config>,
    record: &Path,
) -> Result<Vec<(String, bool)>, BackupError> {
    let Location::S3 { bucket, prefix } = location else {
        return Ok(Vec::new());
    };
    let target = S3Target::open(s3, bucket, prefix, record, "--backup-to")?;
    let mut found: Vec<(String, bool)> = Vec::new();
    // Keys come in order, so each backup's are together.
    for key in all_keys(&target)? {
        let Some((name, rest)) = key.split_once('/') else {
            continue;
        };
        let complete = rest == MANIFEST_FILE;
        match found.last_mut() {
            Some((last, has_manifest)) if last == name => *has_manifest |= complete,
            _ => found.push((name.to_owned(), complete)),
        }
    }
    Ok(found)
}

/// Removes the backup `name` under the S3 `location`, object by object.
pub(super) fn remove_s3_backup(
    location: &Location,
    name: &str,
    s3: Option<&S3Config>,
    record: &Path,
) -> Result<(), BackupError> {
    let backup = location.join(name);
    let Location::S3 { bucket, prefix } = &backup else {
        return Ok(());
    };
    let target = S3Target::open(s3, bucket, prefix, record, "--backup-to")?;
    for key in all_keys(&target)? {
        match target.blobs.delete(&target.owner, &key, &|_| {}) {
            Ok(()) | Err(BlobError::NotFound) => {}
            Err(err) => return Err(s3_failed(&target.location, err)),
        }
    }
    Ok(())
}

/// Every key under the target's prefix, in order.
#[inline(never)]
fn all_keys(target: &S3Target) -> Result<Vec<String>, BackupError> {
    let mut keys = Vec::new();
    loop {
        let page = target
            .blobs
            .list_keys(&target.owner, keys.last().map(String::as_str), 1000)
            .map_err(|err| s3_failed(&target.location, err))?;
        let more = page.truncated && !page.keys.is_empty();
        keys.extend(page.keys);
        if !more {
            return Ok(keys);
        }
    }
}

/// An S3 failure as the operator reads it: the store's own words included
/// (this goes to a terminal or the log, never to a client).
#[inline(never)]
fn s3_failed(location: &Location, err: BlobError) -> BackupError {
    let why = match err {
        BlobError::Upstream(why) | BlobError::Local(why) | BlobError::Busy(why) => why,
        BlobError::Credentials { detail, .. } => detail,
        BlobError::KeyTooLong { max } => {
            format!("a path is too long for S3 under this prefix (at most {max} bytes)")
        }
        // The local file being uploaded could not be read.
        BlobError::Body(err) => format!("cannot read what was being uploaded: {err}"),
        other => format!("{other:?}"),
    };
    BackupError::Failed(format!("{location}: {why}"))
}

/// `path`'s sibling `.NAME.WHAT`, where unfinished work goes; refused,
/// naming `flag`, when `path` ends in no name (`/`, `.`, `..`).
#[inline(never)]
pub(super) fn beside(path: &Path, what: &str, flag: &str) -> Result<PathBuf, BackupError> {
    match path.file_name() {
        Some(name) => Ok(path.with_file_name(format!(".{}.{what}", name.display()))),
        None => Err(BackupError::Refused(format!(
            "{flag}: {} names no folder: give the folder's own name, not /, . or ..",
            path.display()
        ))),
    }
}

/// Writes `body` into the new file `root/path` (0600, folders 0700 made as
/// needed), fsynced; the folders it made.
#[inline(never)]
pub(super) fn write_new(
    root: &Path,
    path: &str,
    body: &mut dyn Read,
) -> Result<Vec<PathBuf>, BackupError> {
    let file_path = root.join(path);
    let mut made = Vec::new();
    if let Some(parent) = file_path.parent() {
        private_folders(root, parent, &mut made)?;
    }
    let failed = |what: &str, err: io::Error| io_failed(what, &file_path, err);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file_path)
        .map_err(|err| failed("create", err))?;
    let mut buffer = vec![0; COPY_BUFFER];
    loop {
        let n = match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                return Err(BackupError::Failed(format!(
                    "cannot read what goes into {}: {err}",
                    file_path.display()
                )));
            }
        };
        file.write_all(&buffer[..n])
            .map_err(|err| failed("write", err))?;
    }
    file.sync_all().map_err(|err| failed("sync", err))?;
    Ok(made)
}

/// Makes `folder` and its missing parents up to `root`, private, adding
/// each it made to `made`.
#[inline(never)]
pub(super) fn private_folders(
    root: &Path,
    folder: &Path,
    made: &mut Vec<PathBuf>,
) -> Result<(), BackupError> {
    if folder.is_dir() || folder.as_os_str() == root.as_os_str() {
        return Ok(());
    }
    if let Some(parent) = folder.parent() {
        private_folders(root, parent, made)?;
    }
    private_folder(folder)?;
    made.push(folder.to_owned());
    Ok(())
}

/// Makes the folder `path`, private to the server's user.
#[inline(never)]
pub(super) fn private_folder(path: &Path) -> Result<(), BackupError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|err| io_failed("create", path, err))
}

/// Makes what was written into `folder` durable.
#[inline(never)]
pub(super) fn sync_folder(folder: &Path) -> Result<(), BackupError> {
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .map_err(|err| io_failed("sync", folder, err))
}

/// Renames the finished `temporary` folder to `target` (which may be an
/// empty folder) and makes the rename durable.
#[inline(never)]
pub(super) fn put_in_place(temporary: &Path, target: &Path) -> Result<(), BackupError> {
    fs::rename(temporary, target).map_err(|err| {
        BackupError::Failed(format!(
            "cannot rename {} to {}: {err}",
            temporary.display(),
            target.display()
        ))
    })?;
    match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_folder(parent),
        _ => sync_folder(Path::new(".")),
    }
}

/// Removes `path` and everything in it, if it is there.
#[inline(never)]
pub(super) fn remove_tree(path: &Path) -> Result<(), BackupError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io_failed("remove", path, err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str, prefix: &str) -> Location {
        Location::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    #[test]
    fn folders_and_s3_prefixes_parse() {
        assert_eq!(
            Location::parse("/srv/backups").unwrap(),
            Location::Dir("/srv/backups".into())
        );
        assert_eq!(
            Location::parse("s3://wren-backups/daily/").unwrap(),
            s3("wren-backups", "daily")
        );
        assert_eq!(
            Location::parse("s3://wren-backups//a/b").unwrap(),
            s3("wren-backups", "a/b")
        );
        for (bad, problem) in [
            ("", "got nothing"),
            ("s3://wren-backups", "needs a prefix"),
            ("s3://wren-backups/", "needs a prefix"),
            ("s3://Bad_Bucket/x", "bucket name"),
            ("s3://wren-backups/a/../b", "'..'"),
            ("s3://wren-backups/a//b", "empty"),
            ("s3://wren-backups/a/\u{7}", "control character"),
        ] {
            let refused = Location::parse(bad).unwrap_err();
            assert!(refused.contains(problem), "{bad}: {refused}");
        }
        assert_eq!(s3("b-1", "x/y").to_string(), "s3://b-1/x/y");
    }

    #[test]
    fn joining_names_a_backup_inside() {
        assert_eq!(
            Location::Dir("/b".into()).join("wren-backup-1"),
            Location::Dir("/b/wren-backup-1".into())
        );
        assert_eq!(s3("b-1", "x").join("n"), s3("b-1", "x/n"));
    }

    #[test]
    fn a_backup_prefix_among_the_accounts_files_overlaps() {
        // Accounts' files are `<server prefix><account>/…`.
        assert!(s3("files", "backups").overlaps("files", ""));
        assert!(s3("files", "wren/backups").overlaps("files", "wren/"));
        assert!(!s3("files", "backups").overlaps("files", "wren/"));
        assert!(!s3("other", "backups").overlaps("files", ""));
        assert!(!Location::Dir("/b".into()).overlaps("files", ""));
    }

    #[test]
    fn unfinished_work_sits_beside_its_target() {
        assert_eq!(
            beside(Path::new("/srv/b/daily"), "partial", "--to").unwrap(),
            PathBuf::from("/srv/b/.daily.partial")
        );
        assert_eq!(
            beside(Path::new("new"), "restoring", "--data-dir").unwrap(),
            PathBuf::from(".new.restoring")
        );
        for no_name in ["/", ".", "x/.."] {
            let refused = beside(Path::new(no_name), "partial", "--to").unwrap_err();
            assert!(
                matches!(&refused, BackupError::Refused(why) if why.starts_with("--to: ")),
                "{no_name}: {refused:?}"
            );
        }
    }
}

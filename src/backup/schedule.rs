//! Backups on a schedule, inside the server (`--backup-every`,
//! `--backup-keep`, `--backup-to`), as PocketBase makes them.
//!
//! One thread (`wren-backup`) makes a backup every interval, the first one
//! an interval after start (a restart is not a reason for a backup), into
//! a folder of its own named by its time (`wren-backup-20261122T141349.877Z`,
//! which sorts as time does) under `--backup-to`, then removes all but the
//! newest `--backup-keep` complete backups there, and what a failed or
//! interrupted backup older than the newest complete one left. A backup
//! that fails is logged and tried again at the next tick; it never stops
//! the server, nor does a panic in this thread.

use std::fs;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::location::{beside, remove_s3_backup, remove_tree, s3_backups};
use super::{BackupError, Location, Report, backup_in, begin, io_failed};
use crate::blob::S3Config;

/// What the server's schedule makes, how often, and how many it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub every: Duration,
    pub keep: usize,
    pub to: Location,
}

/// What a scheduled backup's name starts with.
const NAME_PREFIX: &str = "wren-backup-";

/// The flag scheduled backups' refusals name.
const FLAG: &str = "--backup-to";

/// What the schedule's thread tells: the backups' own reports, and its
/// failures.
pub struct Log {
    pub report: Box<dyn Fn(Report<'_>) + Send>,
    pub failed: Box<dyn Fn(&str) + Send>,
}

/// Starts the thread that backs `data_dir` up on `schedule`; `s3` is the
/// server's S3 settings.
pub fn start(
    schedule: Schedule,
    data_dir: PathBuf,
    s3: Option<S3Config>,
    log: Log,
) -> io::Result<()> {
    thread::Builder::new()
        .name("wren-backup".into())
        .spawn(move || {
            let mut next = Instant::now() + schedule.every;
            loop {
                thread::sleep(next.saturating_duration_since(Instant::now()));
                let ticked = catch_unwind(AssertUnwindSafe(|| {
                    tick(&schedule, &data_dir, s3.as_ref(), &log)
                }));
                if ticked.is_err() {
                    (log.failed)("a scheduled backup panicked; the next one is tried as planned");
                }
                // A backup longer than the interval delays the next one
                // rather than starting it at once.
                next = (next + schedule.every).max(Instant::now());
            }
        })?;
    Ok(())
}

/// One scheduled backup, then the retention.
fn tick(schedule: &Schedule, data_dir: &Path, s3: Option<&S3Config>, log: &Log) {
    let session = match begin(data_dir) {
        Ok(session) => session,
        Err(err) => return (log.failed)(&format!("scheduled backup failed: {err}")),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let name = backup_name(now.as_secs(), now.subsec_millis());
    let to = schedule.to.join(&name);
    if let Err(err) = backup_in(&session, data_dir, &to, FLAG, s3, &*log.report) {
        (log.failed)(&format!(
            "scheduled backup to {to} failed, the next in {:?}: {err}",
            schedule.every
        ));
    }
    match prune(&schedule.to, schedule.keep, s3, &session.record()) {
        Ok(removed) if removed.is_empty() => {}
        Ok(removed) => (log.report)(Report::Finished(&format!(
            "removed from {}, keeping the newest {}: {}",
            schedule.to,
            schedule.keep,
            removed.join(", ")
        ))),
        Err(err) => (log.failed)(&format!(
            "cannot remove old backups from {}: {err}",
            schedule.to
        )),
    }
}

/// A backup's name from its time: `wren-backup-20261122T141349.877Z`.
pub fn backup_name(unix_seconds: u64, millis: u32) -> String {
    let stamp: String = crate::date::rfc3339_millis(unix_seconds, millis)
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{NAME_PREFIX}{stamp}")
}

/// Whether `name` is one [`backup_name`] makes.
fn is_backup_name(name: &str) -> bool {
    let Some(stamp) = name.strip_prefix(NAME_PREFIX) else {
        return false;
    };
    // `d` stands for a digit.
    const SHAPE: &[u8] = b"ddddddddTdddddd.dddZ";
    stamp.len() == SHAPE.len()
        && stamp.bytes().zip(SHAPE).all(|(byte, &want)| match want {
            b'd' => byte.is_ascii_digit(),
            other => byte == other,
        })
}

/// Which of the `found` backups (name, complete) retention removes: the
/// complete ones past the newest `keep`, and the incomplete ones older than
/// the newest complete one (what failed or interrupted backups left; a
/// newer one may still be in progress).
fn expired(found: &[(String, bool)], keep: usize) -> Vec<&(String, bool)> {
    let complete = || found.iter().filter(|(_, complete)| *complete);
    let newest_complete = complete().map(|(name, _)| name).max();
    found
        .iter()
        .filter(|(name, is_complete)| {
            if *is_complete {
                complete().filter(|(other, _)| other > name).count() >= keep
            } else {
                newest_complete.is_some_and(|newest| name < newest)
            }
        })
        .collect()
}

/// Applies the retention to the backups under `to`; the names removed.
fn prune(
    to: &Location,
    keep: usize,
    s3: Option<&S3Config>,
    record: &Path,
) -> Result<Vec<String>, BackupError> {
    let found = match to {
        Location::Dir(dir) => backups_in_folder(dir)?,
        Location::S3 { .. } => s3_backups(to, s3, record)?
            .into_iter()
            .filter(|(name, _)| is_backup_name(name))
            .collect(),
    };
    let mut removed = Vec::new();
    for (name, complete) in expired(&found, keep) {
        match to {
            Location::Dir(dir) if *complete => remove_tree(&dir.join(name))?,
            Location::Dir(dir) => remove_tree(&beside(&dir.join(name), "partial", FLAG)?)?,
            Location::S3 { .. } => remove_s3_backup(to, name, s3, record)?,
        }
        removed.push(name.clone());
    }
    Ok(removed)
}

/// The scheduled backups in `dir`: complete ones under their name, and
/// unfinished ones under `.NAME.partial`.
fn backups_in_folder(dir: &Path) -> Result<Vec<(String, bool)>, BackupError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(io_failed("list", dir, err));
        }
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let partial = name
            .strip_prefix('.')
            .and_then(|rest| rest.strip_suffix(".partial"));
        match partial {
            Some(name) if is_backup_name(name) => found.push((name.to_owned(), false)),
            None if is_backup_name(&name) => found.push((name, true)),
            _ => {}
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_as_time_does_and_are_recognised() {
        let name = backup_name(1_795_443_229, 877);
        assert_eq!(name, "wren-backup-20261123T141349.877Z");
        assert!(is_backup_name(&name));
        assert!(backup_name(1_795_443_229, 900) > name);
        assert!(backup_name(1_795_443_230, 0) > backup_name(1_795_443_229, 999));
        for other in [
            "wren-backup-",
            "wren-backup-20261121T111349.877",
            "wren-backup-20261121T111349.877Zx",
            "wren-backup-2026112xT111349.877Z",
            "backup-20261121T111349.877Z",
            "wren-backup-20261121-111349.877Z",
        ] {
            assert!(!is_backup_name(other), "{other}");
        }
    }

    fn names(found: &[(String, bool)], keep: usize) -> Vec<String> {
        let mut names: Vec<String> = expired(found, keep)
            .into_iter()
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn retention_keeps_the_newest_complete_backups() {
        let found: Vec<(String, bool)> = [("b1", true), ("b4", true), ("b2", true), ("b3", true)]
            .iter()
            .map(|(name, complete)| (name.to_string(), *complete))
            .collect();
        assert_eq!(names(&found, 2), ["b1", "b2"]);
        assert_eq!(names(&found, 4), Vec::<String>::new());
        assert_eq!(names(&found, 1), ["b1", "b2", "b3"]);
    }

    #[test]
    fn retention_removes_leftovers_older_than_the_newest_complete_backup() {
        let found: Vec<(String, bool)> = [
            ("b1", false),
            ("b2", true),
            ("b3", false),
            ("b4", true),
            ("b5", false),
        ]
        .iter()
        .map(|(name, complete)| (name.to_string(), *complete))
        .collect();
        // b5 is newer than every complete backup: perhaps in progress.
        assert_eq!(names(&found, 2), ["b1", "b3"]);
        assert_eq!(names(&found, 1), ["b1", "b2", "b3"]);
        // With no complete backup, nothing tells a leftover from one in
        // progress.
        let unfinished = vec![("b1".to_string(), false)];
        assert!(names(&unfinished, 1).is_empty());
    }

    #[test]
    fn a_folder_lists_complete_and_unfinished_backups_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("wren-schedule-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let complete = backup_name(1_795_443_229, 1);
        let unfinished = backup_name(1_795_443_229, 2);
        for name in [
            complete.clone(),
            format!(".{unfinished}.partial"),
            "photos".to_owned(),
            ".other.partial".to_owned(),
        ] {
            fs::create_dir_all(dir.join(name)).unwrap();
        }
        fs::write(dir.join(backup_name(1_795_443_229, 3)), b"a file").unwrap();
        let mut found = backups_in_folder(&dir).unwrap();
        found.sort();
        assert_eq!(
            found,
            [(complete.clone(), true), (unfinished.clone(), false)]
        );
        // The unfinished one is newer than the complete one: kept.
        let location = Location::Dir(dir.clone());
        let record = dir.join("unused");
        assert!(prune(&location, 1, None, &record).unwrap().is_empty());
        let newer = backup_name(1_795_443_230, 0);
        fs::create_dir_all(dir.join(&newer)).unwrap();
        assert_eq!(
            prune(&location, 1, None, &record).unwrap().len(),
            2,
            "the older complete one and the leftover go"
        );
        assert!(dir.join(&newer).is_dir());
        assert!(!dir.join(&complete).exists());
        assert!(!dir.join(format!(".{unfinished}.partial")).exists());
        assert!(dir.join("photos").is_dir());
        assert!(backups_in_folder(&dir.join("missing")).unwrap().is_empty());
    }
}

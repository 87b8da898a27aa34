//! Backup and restore of a data folder made in process: the round trip,
//! and the refusals. The live server under load is `tests/backup.rs`'s.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::auth::Role;
use crate::blob::local::LocalBlobs;
use crate::blob::{Blobs, Owner, WriteCondition};
use crate::store::Store;
use crate::store::sqlite::SqliteStore;

/// A fresh path under the temp folder, not there yet.
fn fresh(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "wren-backup-unit-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&path);
    path
}

fn ann() -> Owner {
    Owner {
        namespace: "ann".into(),
        credentials: None,
    }
}

/// A data folder with an account, a secret and two files, one replaced.
fn data_dir() -> PathBuf {
    let dir = fresh("data");
    fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(&dir).unwrap();
    store.upsert_account("ann", "hash", Role::User).unwrap();
    crate::auth::secret::load(None, &dir).unwrap();
    let blobs = LocalBlobs::open(&dir.join("files")).unwrap();
    for (key, bytes) in [
        ("a.txt", &b"first"[..]),
        ("b.bin", b"bee"),
        ("a.txt", b"second"),
    ] {
        blobs
            .put(
                &ann(),
                key,
                "text/plain",
                &WriteCondition::Always,
                &mut &bytes[..],
                &|_| {},
            )
            .unwrap();
    }
    dir
}

fn quiet(_: Report<'_>) {}

fn read(blobs: &LocalBlobs, key: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    blobs
        .get(&ann(), key, None)
        .unwrap()
        .body
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

#[test]
fn a_restored_folder_holds_what_was_backed_up() {
    let data = data_dir();
    let to = fresh("to");
    let reports = std::sync::Mutex::new(Vec::new());
    let record = |report: Report<'_>| {
        if let Some(line) = report.log_line("backup") {
            reports.lock().unwrap().push(line);
        }
    };
    let summary = backup(&data, &Location::Dir(to.clone()), "--to", None, &record).unwrap();
    assert!(summary.contains("2 databases"), "{summary}");
    let lines = reports.into_inner().unwrap();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("backup: snapshot databases: "),
        "{lines:?}"
    );
    assert!(lines[1].starts_with("backup: copy files: "), "{lines:?}");
    assert!(
        lines[2].starts_with("backup: done: backed up "),
        "{lines:?}"
    );
    // The staging folder is gone, and nothing unfinished is left.
    assert!(!data.join(".backup").exists());
    assert!(!beside(&to, "partial", "--to").unwrap().exists());

    let manifest = Manifest::parse(&fs::read(to.join(MANIFEST_FILE)).unwrap()).unwrap();
    assert_eq!(manifest.databases, ["files/index.db", "wren.db"]);
    let paths: Vec<&str> = manifest.files.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths.len(),
        5,
        "two files, two databases, the secret: {paths:?}"
    );
    assert!(paths.contains(&"secret"), "{paths:?}");
    assert!(manifest.s3_objects.is_none());

    let new = fresh("new");
    restore(&Location::Dir(to), &new, None, &quiet).unwrap();
    assert_eq!(
        fs::read(new.join("secret")).unwrap(),
        fs::read(data.join("secret")).unwrap()
    );
    let store = SqliteStore::open(&new).unwrap();
    assert!(store.find_account("ann").unwrap().is_some());
    let blobs = LocalBlobs::open(&new.join("files")).unwrap();
    assert_eq!(read(&blobs, "a.txt"), b"second");
    assert_eq!(read(&blobs, "b.bin"), b"bee");
    assert!(!beside(&new, "restoring", "--data-dir").unwrap().exists());
}

#[test]
fn a_backup_goes_only_where_nothing_is() {
    let data = data_dir();
    let taken = fresh("taken");
    fs::create_dir_all(&taken).unwrap();
    fs::write(taken.join("notes"), b"mine").unwrap();
    let refused = backup(&data, &Location::Dir(taken.clone()), "--to", None, &quiet);
    assert!(
        matches!(&refused, Err(BackupError::Refused(why)) if why.starts_with("--to: ")),
        "{refused:?}"
    );
    assert_eq!(fs::read(taken.join("notes")).unwrap(), b"mine");
    // An empty folder is fine.
    let empty = fresh("empty");
    fs::create_dir_all(&empty).unwrap();
    backup(&data, &Location::Dir(empty.clone()), "--to", None, &quiet).unwrap();
    assert!(empty.join(MANIFEST_FILE).is_file());

    let not_data = fresh("not-data");
    fs::create_dir_all(&not_data).unwrap();
    let refused = backup(&not_data, &Location::Dir(fresh("x")), "--to", None, &quiet);
    assert!(
        matches!(&refused, Err(BackupError::Refused(why)) if why.contains("holds no wren database")),
        "{refused:?}"
    );
}

#[test]
fn one_backup_of_a_folder_at_a_time() {
    let data = data_dir();
    let _held = begin(&data).unwrap();
    let second = backup(&data, &Location::Dir(fresh("second")), "--to", None, &quiet);
    assert!(
        matches!(&second, Err(BackupError::Failed(why)) if why.contains("another backup")),
        "{second:?}"
    );
}

#[test]
fn a_restore_refuses_a_used_folder_and_a_damaged_backup() {
    let data = data_dir();
    let to = fresh("to");
    backup(&data, &Location::Dir(to.clone()), "--to", None, &quiet).unwrap();
    let from = Location::Dir(to.clone());

    let into_data = restore(&from, &data, None, &quiet).unwrap_err();
    assert!(
        matches!(&into_data, BackupError::Refused(why)
            if why.starts_with("--data-dir: ") && why.contains("already holds a wren database")),
        "{into_data:?}"
    );
    let busy = fresh("busy");
    fs::create_dir_all(&busy).unwrap();
    fs::write(busy.join("x"), b"x").unwrap();
    let not_empty = restore(&from, &busy, None, &quiet).unwrap_err();
    assert!(
        matches!(&not_empty, BackupError::Refused(why) if why.contains("is not empty")),
        "{not_empty:?}"
    );
    let nothing = restore(&Location::Dir(fresh("none")), &fresh("new"), None, &quiet);
    assert!(
        matches!(&nothing, Err(BackupError::Refused(why)) if why.starts_with("--from: ")),
        "{nothing:?}"
    );
    let no_manifest = fresh("no-manifest");
    fs::create_dir_all(&no_manifest).unwrap();
    let incomplete = restore(&Location::Dir(no_manifest), &fresh("new"), None, &quiet);
    assert!(
        matches!(&incomplete, Err(BackupError::Refused(why)) if why.contains("no manifest.json")),
        "{incomplete:?}"
    );

    // One byte of one stored file changed: found, and nothing laid out.
    let manifest = Manifest::parse(&fs::read(to.join(MANIFEST_FILE)).unwrap()).unwrap();
    let stored = manifest
        .files
        .iter()
        .find(|entry| entry.path.starts_with("files/accounts/"))
        .unwrap();
    let path = to.join(&stored.path);
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] ^= 1;
    fs::write(&path, bytes).unwrap();
    let new = fresh("new");
    let damaged = restore(&from, &new, None, &quiet).unwrap_err();
    assert!(
        matches!(&damaged, BackupError::Failed(why)
            if why.contains("damaged") && why.contains(&stored.path)),
        "{damaged:?}"
    );
    assert!(!new.exists());
    assert!(!beside(&new, "restoring", "--data-dir").unwrap().exists());
}

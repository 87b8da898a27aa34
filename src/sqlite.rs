//! The one way wren opens an SQLite database: the store (`wren.db`) and the
//! local files index (`files/index.db`) both go through here, so both are
//! private, durable and versioned alike.
//!
//! - Private: the file is created mode 0600 before SQLite opens it, and
//!   SQLite gives its `-wal` and `-shm` files the database's permissions.
//! - Durable: WAL, so readers never wait for the writer, and
//!   `synchronous = FULL`, so a committed transaction survives a power cut.
//!   Each connection waits up to [`BUSY_TIMEOUT`] for another's write.
//! - Versioned: a database's schema is `PRAGMA user_version`, and its owner's
//!   ordered list of migrations brings it up to date at open, one
//!   transaction each. A database from a newer wren (a version past the
//!   list) is refused, never used: this binary cannot know what it means.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::config::DbConfig;

/// How long a connection waits for another's write to finish.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the database at `path`, creating it (mode 0600) when missing, and
/// applies the `migrations` it lacks: entry `n` takes `user_version` from
/// `n` to `n + 1`, so a schema changes only by appending to the list. The
/// error says what failed, for the caller to put after the file's name.
pub fn open(path: &Path, migrations: &[&str]) -> Result<Connection, String> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|err| format!("cannot create the file: {err}"))?;
    let mut conn = connect(path).map_err(|err| err.to_string())?;
    migrate(&mut conn, migrations)?;
    Ok(conn)
}

/// One more connection to a database that [`open`] has created and
/// migrated, set up as [`open`] sets up its own.
pub fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // Before the pragmas: switching to WAL takes the write lock.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;",
    )?;
    // One plan per statement, whatever values are bound: the bundled
    // SQLite is built with STAT4, under which binding a new value to a
    // compared column's parameter makes the next step parse and plan the
    // statement again; that was a quarter of the CPU of POST /event.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), String> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|err| err.to_string())?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > migrations.len() {
        return Err(format!(
            "the database schema is version {version}, newer than this wren ({}); upgrade wren",
            migrations.len()
        ));
    }
    for (index, migration) in migrations.iter().enumerate().skip(version) {
        let target = index + 1;
        apply(conn, migration, target)
            .map_err(|err| format!("migration to schema version {target}: {err}"))?;
    }
    Ok(())
}

/// Runs one migration and records the version it reaches, in one
/// transaction: a failure leaves the database at the version before it.
fn apply(conn: &mut Connection, migration: &str, version: usize) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute_batch(migration)?;
    tx.pragma_update(None, "user_version", version as i64)?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::*;

    const MIGRATIONS: &[&str] = &[
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL) STRICT;",
        "ALTER TABLE notes ADD COLUMN author TEXT;",
    ];

    fn database(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wren-sqlite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("test.db")
    }

    fn user_version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_fresh_database_gets_every_migration_and_the_settings() {
        let path = database("fresh");
        let conn = open(&path, MIGRATIONS).unwrap();
        assert_eq!(user_version(&conn), 2);
        conn.execute("INSERT INTO notes (text, author) VALUES ('hi', 'ann')", [])
            .unwrap();
        let journal_mode: String = conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(journal_mode, "wal");
        let number = |name: &str| -> i64 {
            conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
                .unwrap()
        };
        // FULL is 2.
        assert_eq!(number("synchronous"), 2);
        assert_eq!(number("foreign_keys"), 1);
        assert_eq!(number("busy_timeout"), 5000);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_older_database_gets_only_what_it_lacks() {
        let path = database("older");
        let conn = open(&path, &MIGRATIONS[..1]).unwrap();
        conn.execute("INSERT INTO notes (text) VALUES ('kept')", [])
            .unwrap();
        drop(conn);
        let conn = open(&path, MIGRATIONS).unwrap();
        assert_eq!(user_version(&conn), 2);
        let text: String = conn
            .query_row("SELECT text FROM notes WHERE author IS NULL", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(text, "kept");
        // Opening again at the same version changes nothing.
        drop(conn);
        assert_eq!(user_version(&open(&path, MIGRATIONS).unwrap()), 2);
    }

    #[test]
    fn a_database_from_a_newer_wren_is_refused() {
        let path = database("newer");
        drop(open(&path, MIGRATIONS).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 3).unwrap();
        drop(conn);
        let err = open(&path, MIGRATIONS).err().unwrap();
        assert!(err.contains("version 3, newer than this wren (2)"), "{err}");
    }

    #[test]
    fn a_failed_migration_leaves_the_version_it_found() {
        let path = database("failed");
        drop(open(&path, &MIGRATIONS[..1]).unwrap());
        let broken = [MIGRATIONS[0], "ALTER TABLE missing ADD COLUMN x TEXT;"];
        let err = open(&path, &broken).err().unwrap();
        assert!(err.contains("migration to schema version 2"), "{err}");
        assert_eq!(user_version(&Connection::open(&path).unwrap()), 1);
    }
}

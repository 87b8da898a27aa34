//! Each account's usage as the backends keep it in SQLite: a `usage` row per
//! account (bytes, files) beside the `objects` table that records each
//! object's size (in the local files index, and in the S3 backend's size
//! record), kept equal to the sums over that table by triggers.
//!
//! Triggers rather than code: every change to an object's row, by any
//! statement, moves the account's row in the same transaction, so the two
//! cannot disagree after a crash, and reading an account's usage is one row
//! however many files it has.

use rusqlite::{Connection, OptionalExtension, params};

use super::quota::Usage;

/// The migration that adds the `usage` table to a database whose `objects`
/// table has `namespace`, `key` and `size` columns: the table, its rows for
/// the objects already recorded, and the triggers that keep it in step.
pub(super) const USAGE_SCHEMA: &str = "
    CREATE TABLE usage (
        namespace TEXT PRIMARY KEY NOT NULL,
        bytes INTEGER NOT NULL,
        files INTEGER NOT NULL
    ) STRICT;
    INSERT INTO usage (namespace, bytes, files)
        SELECT namespace, SUM(size), COUNT(*) FROM objects GROUP BY namespace;
    CREATE TRIGGER usage_after_insert AFTER INSERT ON objects BEGIN
        INSERT INTO usage (namespace, bytes, files) VALUES (NEW.namespace, NEW.size, 1)
        ON CONFLICT (namespace) DO UPDATE SET
            bytes = bytes + excluded.bytes, files = files + 1;
    END;
    CREATE TRIGGER usage_after_update AFTER UPDATE OF size ON objects BEGIN
        UPDATE usage SET bytes = bytes - OLD.size + NEW.size
        WHERE namespace = NEW.namespace;
    END;
    CREATE TRIGGER usage_after_delete AFTER DELETE ON objects BEGIN
        UPDATE usage SET bytes = bytes - OLD.size, files = files - 1
        WHERE namespace = OLD.namespace;
    END;";

/// The account's usage (none stored: zero).
pub(super) fn read(conn: &Connection, namespace: &str) -> rusqlite::Result<Usage> {
    conn.prepare_cached("SELECT bytes, files FROM usage WHERE namespace = ?1")?
        .query_row(params![namespace], |row| {
            Ok(Usage {
                bytes: row.get::<_, i64>(0)? as u64,
                files: row.get::<_, i64>(1)? as u64,
            })
        })
        .optional()
        .map(Option::unwrap_or_default)
}

/// The size recorded for the account's `key`, if any.
pub(super) fn recorded_size(
    conn: &Connection,
    namespace: &str,
    key: &str,
) -> rusqlite::Result<Option<u64>> {
    conn.prepare_cached("SELECT size FROM objects WHERE namespace = ?1 AND key = ?2")?
        .query_row(params![namespace, key], |row| row.get::<_, i64>(0))
        .optional()
        .map(|size| size.map(|size| size as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The triggers keep `usage` equal to the sums, through inserts,
    /// upserts, deletes and rolled-back transactions; rows from before the
    /// migration are counted by it.
    #[test]
    fn usage_follows_every_change_of_the_table() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE objects (namespace TEXT NOT NULL, key TEXT NOT NULL,
                 size INTEGER NOT NULL, PRIMARY KEY (namespace, key)) STRICT;
             INSERT INTO objects VALUES ('ann', 'old', 7), ('ann', 'older', 3);",
        )
        .unwrap();
        conn.execute_batch(USAGE_SCHEMA).unwrap();
        let usage = |conn: &Connection, who: &str| {
            let Usage { bytes, files } = read(conn, who).unwrap();
            (bytes, files)
        };
        assert_eq!(usage(&conn, "ann"), (10, 2));
        assert_eq!(usage(&conn, "bob"), (0, 0));
        let upsert = "INSERT INTO objects VALUES (?1, ?2, ?3)
                      ON CONFLICT (namespace, key) DO UPDATE SET size = excluded.size";
        conn.execute(upsert, params!["ann", "new", 100]).unwrap();
        conn.execute(upsert, params!["ann", "old", 50]).unwrap();
        conn.execute(upsert, params!["bob", "k", 1]).unwrap();
        assert_eq!(usage(&conn, "ann"), (153, 3));
        assert_eq!(usage(&conn, "bob"), (1, 1));
        conn.execute("DELETE FROM objects WHERE key = 'older'", [])
            .unwrap();
        assert_eq!(usage(&conn, "ann"), (150, 2));
        let tx = conn.transaction().unwrap();
        tx.execute(upsert, params!["ann", "gone", 1000]).unwrap();
        drop(tx);
        assert_eq!(usage(&conn, "ann"), (150, 2));
        let sums: (i64, i64) = conn
            .query_row(
                "SELECT SUM(size), COUNT(*) FROM objects WHERE namespace = 'ann'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(sums, (150, 2));
        assert_eq!(recorded_size(&conn, "ann", "old").unwrap(), Some(50));
        assert_eq!(recorded_size(&conn, "ann", "older").unwrap(), None);
    }
}

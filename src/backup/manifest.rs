//! `manifest.json`: what a backup holds, written last, so a backup without
//! one is incomplete. Every file is listed with its size and SHA-256, which
//! a restore checks before anything it laid out is put in place.
//!
//! ```json
//! {"format": "wren-backup/1", "wren_version": "0.1.0",
//!  "created": "2026-11-22T14:13:49.877Z",
//!  "databases": ["files/index.db", "wren.db"],
//!  "files": [{"path": "wren.db", "size": 53248, "sha256": "…"}, …],
//!  "s3_objects": {"endpoint": "…", "bucket": "…", "prefix": "wren/"}}
//! ```
//!
//! `s3_objects` is there when the data folder records files kept on S3
//! (`files/s3-index.db`): those objects are not copied, they stay where
//! they are, and it says where the server kept them (accounts with their
//! own S3 keys keep theirs in their own buckets).
//!
//! It is read and written through `serde_json::Value`, which the server
//! already carries, rather than derived (de)serializers of its own: those
//! cost some 30 KB of a static binary that must stay under 8 MiB.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::progress::Amount;

/// The manifest's name in a backup.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The layout this wren writes and reads.
pub const FORMAT: &str = "wren-backup/1";

/// What a backup may hold at its top level: the store's database, the
/// server secret, the file store's folder and the ACME folder. A manifest
/// naming anything else is refused, so a restore never writes outside
/// these.
pub const TOP_LEVEL: [&str; 4] = [
    crate::store::sqlite::DATABASE_FILE,
    crate::auth::secret::SECRET_FILE,
    crate::blob::local::FOLDER,
    crate::acme::FOLDER,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub wren_version: String,
    /// When the databases were copied (RFC 3339, UTC).
    pub created: String,
    /// The SQLite databases among `files`.
    pub databases: Vec<String>,
    /// Every file of the backup but the manifest.
    pub files: Vec<Entry>,
    /// Where the files the S3 size record counts stay.
    pub s3_objects: Option<S3Objects>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// From the data folder, `/`-separated (see [`check_path`]).
    pub path: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// Where the server kept its files on S3, as it was configured when the
/// backup was made (unknown parts are left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Objects {
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    pub prefix: String,
}

/// `field` of `object` as text, or why not.
fn text(object: &Value, field: &str) -> Result<String, String> {
    object
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("'{field}' is missing or not text"))
}

fn optional_text(object: &Value, field: &str) -> Option<String> {
    object.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// `field` of `object` as a list, or why not.
fn list<'v>(object: &'v Value, field: &str) -> Result<&'v Vec<Value>, String> {
    object
        .get(field)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("'{field}' is missing or not a list"))
}

impl Manifest {
    /// Reads and checks a manifest: the format is this wren's, every path
    /// is one a backup may hold and is listed once, the sizes add up to a
    /// number, every database is among the files, every hash is a SHA-256.
    /// The error says what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|err| format!("not a backup manifest: {err}"))?;
        let format =
            text(&value, "format").map_err(|why| format!("not a backup manifest: {why}"))?;
        if format != FORMAT {
            return Err(format!(
                "its format is '{}', which this wren does not read (it reads {FORMAT})",
                crate::text::excerpt(&format, 64)
            ));
        }
        let mut files = Vec::new();
        let mut listed = HashSet::new();
        // What `total` adds up, which must not overflow.
        let mut bytes = 0u64;
        for item in list(&value, "files")? {
            let path = text(item, "path")?;
            check_path(&path)?;
            if !listed.insert(path.clone()) {
                return Err(format!(
                    "it lists {} twice",
                    crate::text::excerpt(&path, 256)
                ));
            }
            let size = item
                .get("size")
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("the size of {path} is not a whole number"))?;
            bytes = bytes
                .checked_add(size)
                .ok_or_else(|| format!("its sizes add up past {} bytes", u64::MAX))?;
            let sha256 = text(item, "sha256")?;
            let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
            if sha256.len() != 64 || !sha256.bytes().all(hex) {
                return Err(format!("the SHA-256 of {path} is not 64 hex digits"));
            }
            files.push(Entry { path, size, sha256 });
        }
        let mut databases = Vec::new();
        for item in list(&value, "databases")? {
            let database = item
                .as_str()
                .ok_or("'databases' holds something other than a path")?;
            if !listed.contains(database) {
                return Err(format!(
                    "it names the database '{}' but lists no such file",
                    crate::text::excerpt(database, 256)
                ));
            }
            databases.push(database.to_owned());
        }
        let s3_objects = value
            .get("s3_objects")
            .filter(|objects| objects.is_object())
            .map(|objects| S3Objects {
                endpoint: optional_text(objects, "endpoint"),
                bucket: optional_text(objects, "bucket"),
                prefix: optional_text(objects, "prefix").unwrap_or_default(),
            });
        Ok(Manifest {
            wren_version: text(&value, "wren_version")?,
            created: text(&value, "created")?,
            databases,
            files,
            s3_objects,
        })
    }

    /// The manifest as JSON text, one line.
    pub fn to_json(&self) -> Vec<u8> {
        let files: Vec<Value> = self
            .files
            .iter()
            .map(|entry| {
                let mut item = Map::new();
                item.insert("path".into(), entry.path.as_str().into());
                item.insert("size".into(), entry.size.into());
                item.insert("sha256".into(), entry.sha256.as_str().into());
                Value::Object(item)
            })
            .collect();
        let mut manifest = Map::new();
        manifest.insert("format".into(), FORMAT.into());
        manifest.insert("wren_version".into(), self.wren_version.as_str().into());
        manifest.insert("created".into(), self.created.as_str().into());
        let databases: Vec<Value> = self.databases.iter().map(|d| d.as_str().into()).collect();
        manifest.insert("databases".into(), Value::Array(databases));
        manifest.insert("files".into(), Value::Array(files));
        if let Some(objects) = &self.s3_objects {
            let mut place = Map::new();
            for (field, value) in [("endpoint", &objects.endpoint), ("bucket", &objects.bucket)] {
                if let Some(value) = value {
                    place.insert(field.into(), value.as_str().into());
                }
            }
            place.insert("prefix".into(), objects.prefix.as_str().into());
            manifest.insert("s3_objects".into(), Value::Object(place));
        }
        // The serializer responses use (a Value cannot fail to serialize).
        let mut json = serde_json::to_vec(&Value::Object(manifest)).unwrap_or_default();
        json.push(b'\n');
        json
    }

    /// The bytes and files the manifest lists.
    pub fn total(&self) -> Amount {
        Amount {
            bytes: self.files.iter().map(|entry| entry.size).sum(),
            files: self.files.len() as u64,
        }
    }
}

/// Checks a path inside a backup: relative, `/`-separated, under one of the
/// [`TOP_LEVEL`] names, each segment a plain name (not empty, `.` or `..`,
/// no control character or backslash). Paths come from a manifest or a
/// file index that may have been tampered with; this is what keeps them
/// inside the folder they are laid out in.
pub fn check_path(path: &str) -> Result<(), String> {
    let shown = crate::text::excerpt(path, 256);
    let mut segments = path.split('/');
    let top = segments.next().unwrap_or_default();
    if !TOP_LEVEL.contains(&top) {
        return Err(format!(
            "'{shown}' is not a path a backup holds (they start with {})",
            TOP_LEVEL.join(", ")
        ));
    }
    for segment in path.split('/') {
        let plain = !segment.is_empty()
            && segment != "."
            && segment != ".."
            && !segment.chars().any(|c| c.is_control() || c == '\\');
        if !plain {
            return Err(format!(
                "'{shown}' has an empty, '.' or '..' segment, or a control character"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry {
        Entry {
            path: path.to_owned(),
            size: 3,
            sha256: "ab".repeat(32),
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            wren_version: "0.1.0".to_owned(),
            created: "2026-11-22T14:13:49.877Z".to_owned(),
            databases: vec!["wren.db".to_owned()],
            files: vec![entry("wren.db"), entry("files/accounts/ann/0a1b.png")],
            s3_objects: None,
        }
    }

    #[test]
    fn a_manifest_reads_back_as_written() {
        let written = manifest();
        assert_eq!(Manifest::parse(&written.to_json()).unwrap(), written);
        assert_eq!(written.total(), Amount { bytes: 6, files: 2 });
        let with_s3 = Manifest {
            s3_objects: Some(S3Objects {
                endpoint: None,
                bucket: Some("b".to_owned()),
                prefix: "wren/".to_owned(),
            }),
            ..manifest()
        };
        let json = String::from_utf8(with_s3.to_json()).unwrap();
        assert!(json.contains("\"s3_objects\""), "{json}");
        assert!(!json.contains("endpoint"), "{json}");
        assert_eq!(Manifest::parse(json.as_bytes()).unwrap(), with_s3);
    }

    #[test]
    fn paths_stay_inside_what_a_backup_holds() {
        for good in [
            "wren.db",
            "secret",
            "files/index.db",
            "files/accounts/ann/0a1b.png",
            "acme/account.key",
        ] {
            assert_eq!(check_path(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../wren.db",
            "files/../../etc",
            "files/./index.db",
            "files//index.db",
            "files/",
            "manifest.json",
            "other/file",
            "files/a\\b",
            "files/a\nb",
            "wren.db-wal",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_manifest_that_does_not_hold_together_is_refused() {
        let refused = |change: &dyn Fn(&mut Manifest), needle: &str| {
            let mut bad = manifest();
            change(&mut bad);
            let problem = Manifest::parse(&bad.to_json()).unwrap_err();
            assert!(problem.contains(needle), "{needle}: {problem}");
        };
        let other_format = String::from_utf8(manifest().to_json())
            .unwrap()
            .replace(FORMAT, "wren-backup/9");
        let problem = Manifest::parse(other_format.as_bytes()).unwrap_err();
        assert!(problem.contains("'wren-backup/9'"), "{problem}");
        refused(&|m| m.files[1].sha256 = "xyz".into(), "64 hex");
        refused(&|m| m.files[1].sha256 = "AB".repeat(32), "64 hex");
        refused(&|m| m.files[1].path = "../x".into(), "not a path");
        refused(
            &|m| m.databases.push("files/index.db".into()),
            "no such file",
        );
        refused(&|m| m.files.push(entry("wren.db")), "lists wren.db twice");
        refused(
            &|m| {
                m.files[0].size = u64::MAX;
                m.files[1].size = 1;
            },
            "add up past",
        );
        for not_one in [
            &b"{\"format\": 1}"[..],
            b"[]",
            b"{\"format\": \"wren-backup/1\"}",
            b"x",
        ] {
            assert!(Manifest::parse(not_one).is_err());
        }
        let not_a_path = String::from_utf8(manifest().to_json())
            .unwrap()
            .replace("\"databases\":[\"wren.db\"]", "\"databases\":[7]");
        let problem = Manifest::parse(not_a_path.as_bytes()).unwrap_err();
        assert!(problem.contains("'databases'"), "{problem}");
        let problem = Manifest::parse(b"{\"format\": 1}").unwrap_err();
        assert!(problem.contains("not a backup manifest"), "{problem}");
    }
}

//! Object storage: each account's files, on local disk ([`local`]) or in an
//! S3-compatible store ([`s3`]), behind one trait so that the file and image
//! routes never know which.
//!
//! Invariants every backend keeps:
//! - An account sees only its own namespace; keys are checked by
//!   [`check_key`] before they reach a backend.
//! - A write is all or nothing: a reader sees the old object or the new
//!   one, never a part, whatever happens mid-upload.
//! - Bodies stream in both directions with bounded buffers; nothing holds
//!   a whole object in memory.
//! - Each account's usage (bytes and files) is recorded durably beside its
//!   objects' sizes, and every write and delete settles its change with the
//!   quota ledger in the order the record took it ([`quota`]).
//!
//! Uploads and deletes go through [`Storage`], which holds them to the
//! account's quota and to the disk's free-space floor; reads go to the
//! backend [`Storage::of`] picks.

pub mod local;
pub mod quota;
pub mod range;
mod receive;
pub mod s3;
mod usage;

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use quota::{Book, Quota, Usage};
pub use range::ByteRange;

use quota::{Claim, DiskFloor, Ledger, Metered};

/// Longest key, in bytes after percent-decoding.
pub const MAX_KEY_BYTES: usize = 1024;

/// Where files and images live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    Local,
    S3,
}

/// How bucket names go into S3 URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Addressing {
    Path,
    VirtualHost,
}

/// File storage settings.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    pub kind: StorageKind,
    /// Set when an endpoint is configured: for `--storage s3`, or for
    /// accounts with their own keys.
    pub s3: Option<S3Config>,
    pub max_object_size: u64,
    pub max_image_size: u64,
    /// What each account may store.
    pub quota: Quota,
    /// Bytes kept free on the data folder's filesystem; uploads that would
    /// leave less are refused (0: no floor).
    pub min_free_disk: u64,
}

/// Where the S3-compatible store is. Its `Debug` output hides the secret.
#[derive(Clone, PartialEq)]
pub struct S3Config {
    pub endpoint: String,
    pub region: String,
    /// The server's bucket; `None` only when the server stores locally and
    /// the endpoint serves accounts that bring keys and buckets of their own.
    pub bucket: Option<String>,
    pub prefix: String,
    pub addressing: S3Addressing,
    /// The server's own keys (S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY):
    /// environment only, never flags, which every user of the host can see.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("addressing", &self.addressing)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}

/// What is known about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// A strong entity tag, quoted, as sent in `ETag`.
    pub etag: String,
    pub content_type: String,
    pub modified: SystemTime,
}

/// A precondition on a write (`If-Match`, `If-None-Match: *`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    Always,
    /// Only if no object has the key.
    Absent,
    /// Only if the object's current ETag is one of these (quoted) tags.
    Matches(Vec<String>),
}

impl WriteCondition {
    /// Whether a write may go ahead over `current`, the object there now.
    pub fn allows(&self, current: Option<&ObjectInfo>) -> bool {
        match (self, current) {
            (WriteCondition::Always, _) => true,
            (WriteCondition::Absent, current) => current.is_none(),
            (WriteCondition::Matches(_), None) => false,
            (WriteCondition::Matches(tags), Some(info)) => {
                tags.iter().any(|tag| tag == "*" || *tag == info.etag)
            }
        }
    }
}

/// The result of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub info: ObjectInfo,
    /// Whether the key was new (`201`) rather than replaced (`200`).
    pub created: bool,
}

/// An object being read: what it is, which bytes follow, and the bytes.
pub struct Download {
    pub info: ObjectInfo,
    /// The inclusive byte range being sent, when a range was asked for.
    pub range: Option<(u64, u64)>,
    pub body: Box<dyn Read + Send>,
}

/// One page of a listing, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub objects: Vec<ObjectInfo>,
    /// Whether keys follow the last one listed.
    pub truncated: bool,
}

/// One page of keys alone, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    /// Whether keys follow the last one listed.
    pub truncated: bool,
}

/// Whose files: the namespace and, for an account that brought its own S3
/// keys, those keys.
#[derive(Debug, Clone)]
pub struct Owner {
    /// The account's name (letters, digits, `.`, `_`, `-`; never `.` or
    /// `..`, see `auth::check_username`).
    pub namespace: String,
    pub credentials: Option<UserCredentials>,
}

/// An account's own S3 keys and, optionally, its bucket.
#[derive(Clone)]
pub struct UserCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub bucket: Option<String>,
}

impl fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<hidden>")
            .field("bucket", &self.bucket)
            .finish()
    }
}

/// Why a storage operation failed.
#[derive(Debug)]
pub enum BlobError {
    NotFound,
    PreconditionFailed,
    /// The key is too long for this store once its prefix and the
    /// account's name are added: at most `max` bytes here.
    KeyTooLong {
        max: usize,
    },
    /// The range asked for lies past the end of an object of `size` bytes.
    RangeNotSatisfiable {
        size: u64,
    },
    /// Reading the body to store failed (too large, malformed, timed out):
    /// the uploader's fault, not the store's. The error is the body's own.
    Body(io::Error),
    /// The object store answered with an error or could not be reached.
    /// The message may name the store's address and quote its answer: it is
    /// for the log, never for a client.
    Upstream(String),
    /// The object store refused the account's own keys or bucket. `reason`
    /// is for the account: the store's error code and status, or wren's own
    /// words, never the store's address or its free-text message, which
    /// `detail` keeps for the log.
    Credentials {
        reason: String,
        detail: String,
    },
    /// Local disk or index failure.
    Local(String),
    /// A bounded resource is in use to its limit; try again shortly.
    Busy(String),
    /// The upload would take the account past its quota.
    QuotaExceeded(quota::Exceeded),
    /// The upload would leave the data folder's disk under its floor.
    InsufficientStorage(quota::LowDisk),
}

impl BlobError {
    /// The account's keys or bucket refused for a reason wren states itself
    /// (nothing of the store's in it), which the log gets as it is.
    pub fn refused(reason: &str) -> BlobError {
        BlobError::Credentials {
            reason: reason.to_owned(),
            detail: reason.to_owned(),
        }
    }
}

/// Told by a backend that a key's durable record changed: it now holds that
/// many bytes, or (`None`) nothing. Called right after the change commits
/// and before any later change of the key can, so that whoever listens
/// (the quota ledger) sees one key's changes in the record's order.
pub type Settle<'a> = &'a dyn Fn(Option<u64>);

/// A storage backend. Keys given to it have passed [`check_key`]. As a
/// [`Book`] it answers each account's usage and each object's size from its
/// durable record.
pub trait Blobs: Book + Send + Sync {
    /// Streams `body` into `key`; the object appears whole or not at all,
    /// and `settle` hears of it (see [`Settle`]). `content_type` has been
    /// checked by the caller.
    fn put(
        &self,
        owner: &Owner,
        key: &str,
        content_type: &str,
        condition: &WriteCondition,
        body: &mut dyn Read,
        settle: Settle<'_>,
    ) -> Result<Written, BlobError>;

    fn head(&self, owner: &Owner, key: &str) -> Result<ObjectInfo, BlobError>;

    /// The object's bytes, or the bytes in `range`.
    fn get(
        &self,
        owner: &Owner,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Download, BlobError>;

    /// Removes `key`; `settle` hears of it (see [`Settle`]).
    fn delete(&self, owner: &Owner, key: &str, settle: Settle<'_>) -> Result<(), BlobError>;

    /// Up to `limit` objects whose keys start with `prefix` and sort after
    /// `after` (bytewise), in key order.
    fn list(
        &self,
        owner: &Owner,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, BlobError>;

    /// Up to `limit` keys sorting after `after`, in key order: a listing
    /// without the details that cost S3 a request per object.
    fn list_keys(
        &self,
        owner: &Owner,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, BlobError>;

    /// Where the object is kept, for people: its path from the server's data
    /// folder (`files/accounts/ann/…`, never the host's absolute path) or
    /// `s3://bucket/key`.
    fn location(&self, owner: &Owner, key: &str) -> String;

    /// Whether the backend answers a cheap request within `within` (for
    /// `/readyz`): the folder is there, or the server's bucket answers.
    fn ready(&self, within: Duration) -> Result<(), BlobError>;
}

/// Where the S3 backend keeps each object's size and each account's usage.
pub enum SizeRecord {
    /// In the data folder, for this instance alone.
    DataFolder,
    /// In the PostgreSQL database instances share (`--database-url`), over
    /// up to `connections` connections; each write is then held to the
    /// quota against every instance's.
    #[cfg(feature = "postgres")]
    Database {
        config: crate::postgres::Config,
        connections: usize,
    },
}

/// The storage a server runs with: its default backend, the S3 backend
/// whenever an endpoint is configured (for `--storage s3`, and for accounts
/// that brought their own keys), and what holds uploads to the accounts'
/// quotas and the disk's floor.
pub struct Storage {
    default: Arc<dyn Blobs>,
    default_kind: StorageKind,
    s3: Option<Arc<s3::S3Blobs>>,
    quota: Quota,
    ledger: Ledger,
    floor: DiskFloor,
}

impl Storage {
    /// Opens the backends; the local files and their index live under
    /// `<data_dir>/files/`, and so does the S3 backend's record unless
    /// `record` puts it in a shared database.
    pub fn open(
        config: &StorageConfig,
        data_dir: &Path,
        record: &SizeRecord,
    ) -> Result<Storage, String> {
        let files = data_dir.join(local::FOLDER);
        let s3 = match (&config.s3, record) {
            (None, _) => None,
            (Some(s3_config), SizeRecord::DataFolder) => {
                Some(Arc::new(s3::S3Blobs::new(s3_config, &files)?))
            }
            #[cfg(feature = "postgres")]
            (
                Some(s3_config),
                SizeRecord::Database {
                    config: database,
                    connections,
                },
            ) => Some(Arc::new(s3::S3Blobs::shared(
                s3_config,
                database,
                *connections,
                config.quota,
            )?)),
        };
        let default: Arc<dyn Blobs> = match (config.kind, &s3) {
            (StorageKind::S3, Some(s3)) => s3.clone(),
            (StorageKind::S3, None) => return Err("--storage s3 needs --s3-endpoint".into()),
            (StorageKind::Local, _) => Arc::new(local::LocalBlobs::open(&files)?),
        };
        Ok(Storage {
            default,
            default_kind: config.kind,
            s3,
            quota: config.quota,
            ledger: Ledger::new(),
            floor: DiskFloor::new(data_dir, config.min_free_disk)?,
        })
    }

    /// The backend that holds `owner`'s files (shared, so a streamed
    /// response can keep using it).
    pub fn of(&self, owner: &Owner) -> Result<Arc<dyn Blobs>, BlobError> {
        self.backend(owner).map(|(blobs, _)| blobs)
    }

    /// The backend that holds `owner`'s files, and which kind it is.
    fn backend(&self, owner: &Owner) -> Result<(Arc<dyn Blobs>, StorageKind), BlobError> {
        // The namespace is a folder and a key prefix; an account made
        // before the name rules (or by hand) must not become `..`.
        if let Err(rule) = crate::auth::check_username(&owner.namespace) {
            return Err(BlobError::Local(format!(
                "account name '{}' cannot hold files: it {rule}",
                owner.namespace
            )));
        }
        match (&owner.credentials, &self.s3) {
            (None, _) => Ok((self.default.clone(), self.default_kind)),
            (Some(_), Some(s3)) => Ok((s3.clone(), StorageKind::S3)),
            // The account signed up while an endpoint was configured.
            (Some(_), None) => Err(BlobError::refused(
                "this account stores its files with its own S3 keys, but the server has no S3 endpoint configured now",
            )),
        }
    }

    /// Begins an upload of `owner`'s `key`, whose body declares `declared`
    /// bytes when its length is known: refused before any byte is read when
    /// the account's quota or the disk's floor cannot take it (a new key
    /// past the file limit, a declared size past the byte limit, a disk
    /// already under its floor).
    pub fn upload<'s>(
        &'s self,
        owner: &'s Owner,
        key: &'s str,
        declared: Option<u64>,
    ) -> Result<Upload<'s>, BlobError> {
        let (blobs, kind) = self.backend(owner)?;
        let claim = self
            .ledger
            .reserve(&*blobs, &owner.namespace, key, self.quota)?;
        if let Some(size) = declared {
            claim.cover(size, true).map_err(BlobError::QuotaExceeded)?;
        }
        // S3 uploads write nothing to the local disk (parts are buffered in
        // memory), but their record is committed there.
        let local = kind == StorageKind::Local;
        let incoming = if local { declared.unwrap_or(0) } else { 0 };
        self.floor.check(incoming)?;
        Ok(Upload {
            blobs,
            owner,
            key,
            claim,
            floor: local.then_some(&self.floor),
            declared: declared.is_some(),
        })
    }

    /// Deletes `owner`'s `key`, settling its usage.
    pub fn delete(&self, owner: &Owner, key: &str) -> Result<(), BlobError> {
        let blobs = self.of(owner)?;
        let claim = self.ledger.track(&*blobs, &owner.namespace, key)?;
        blobs.delete(owner, key, &|size| claim.settle(size))
    }

    /// What `owner` stores, from the durable record.
    pub fn usage(&self, owner: &Owner) -> Result<Usage, BlobError> {
        self.of(owner)?.usage(&owner.namespace)
    }

    /// What each account may store.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Whether the default backend answers within `within`.
    pub fn ready(&self, within: Duration) -> Result<(), BlobError> {
        self.default.ready(within)
    }

    /// Whether accounts may bring their own S3 keys (an endpoint is set).
    pub fn takes_user_keys(&self) -> bool {
        self.s3.is_some()
    }

    /// Checks an account's own keys with a signed request to its bucket.
    pub fn check_credentials(&self, credentials: &UserCredentials) -> Result<(), BlobError> {
        match &self.s3 {
            Some(s3) => s3.check_credentials(credentials),
            None => Err(BlobError::refused("no S3 endpoint is configured")),
        }
    }
}

/// An upload that [`Storage::upload`] let begin: its claim on the account's
/// quota lasts until it is stored or dropped.
pub struct Upload<'s> {
    blobs: Arc<dyn Blobs>,
    owner: &'s Owner,
    key: &'s str,
    claim: Claim<'s>,
    /// The disk's floor, when the backend writes the bytes there.
    floor: Option<&'s DiskFloor>,
    /// Whether the claim covers the body's declared length already.
    declared: bool,
}

impl Upload<'_> {
    /// Streams `body` to the backend, each byte covered by the claim; a
    /// body that would pass the quota (or fill the disk) is stopped as soon
    /// as it would, and nothing of it is stored.
    pub fn put(
        self,
        content_type: &str,
        condition: &WriteCondition,
        body: &mut dyn Read,
    ) -> Result<Written, BlobError> {
        let mut metered = Metered::new(body, &self.claim, self.floor, self.declared);
        let written = self.blobs.put(
            self.owner,
            self.key,
            content_type,
            condition,
            &mut metered,
            &|size| self.claim.settle(size),
        );
        metered.outcome(written)
    }
}

/// Checks a key (already percent-decoded): 1 to [`MAX_KEY_BYTES`] bytes, no
/// control characters, no empty, `.` or `..` segments. The error names the
/// rule broken.
pub fn check_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("the key is empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return Err("the key is longer than 1024 bytes");
    }
    if key.chars().any(char::is_control) {
        return Err("the key contains a control character");
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err("the key has an empty segment (a leading, trailing or double '/')"),
            "." | ".." => return Err("the key has a '.' or '..' segment"),
            _ => {}
        }
    }
    Ok(())
}

/// Reads until `buffer` is full or the body ends; the count read. Only
/// the end of the body makes it stop short.
fn fill(body: &mut dyn Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match body.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_rules() {
        for good in [
            "a",
            "a/b/c.txt",
            "ünï/cødé ✓",
            "a.b/..c/d..",
            &"k".repeat(1024),
        ] {
            assert_eq!(check_key(good), Ok(()), "{good}");
        }
        let cases = [
            ("", "empty"),
            ("/a", "empty segment"),
            ("a/", "empty segment"),
            ("a//b", "empty segment"),
            ("..", "'..'"),
            ("a/../b", "'..'"),
            ("./a", "'.'"),
            ("a\0b", "control"),
            ("a\nb", "control"),
            ("a\u{7f}", "control"),
        ];
        for (bad, rule) in cases {
            let problem = check_key(bad).unwrap_err();
            assert!(problem.contains(rule), "{bad:?}: {problem}");
        }
        assert!(check_key(&"k".repeat(1025)).unwrap_err().contains("1024"));
        // Bytes, not characters: 342 three-byte characters are 1026 bytes.
        assert!(check_key(&"✓".repeat(342)).is_err());
    }

    #[test]
    fn write_conditions() {
        let info = ObjectInfo {
            key: "k".into(),
            size: 1,
            etag: "\"abc\"".into(),
            content_type: "text/plain".into(),
            modified: SystemTime::UNIX_EPOCH,
        };
        assert!(WriteCondition::Always.allows(None));
        assert!(WriteCondition::Always.allows(Some(&info)));
        assert!(WriteCondition::Absent.allows(None));
        assert!(!WriteCondition::Absent.allows(Some(&info)));
        let matches =
            |tags: &[&str]| WriteCondition::Matches(tags.iter().map(|t| t.to_string()).collect());
        assert!(matches(&["\"abc\""]).allows(Some(&info)));
        assert!(matches(&["\"x\"", "*"]).allows(Some(&info)));
        assert!(!matches(&["\"x\""]).allows(Some(&info)));
        assert!(!matches(&["*"]).allows(None));
    }
}

//! Files in an S3-compatible object store (AWS S3, MinIO, Garage, …).
//!
//! Layout: an account's object `key` is stored as
//! `{prefix}{namespace}/{key}` in the bucket, where `prefix` is the
//! configured `S3_PREFIX` and `namespace` the account's name. An account
//! with its own S3 keys ([`UserCredentials`]) is served with those keys, in
//! its own bucket or, when it named none, in the server's bucket; a refusal
//! of those keys is then the account's problem ([`BlobError::Credentials`]),
//! not the server's ([`BlobError::Upstream`]).
//!
//! How the [`Blobs`] promises are kept:
//! - All or nothing: a body up to [`PART_SIZE`] goes up in one PutObject; a
//!   larger one as a multipart upload, which S3 only makes visible on
//!   CompleteMultipartUpload and which is aborted on any failure.
//! - Bounded memory: one [`PART_SIZE`] buffer per upload, reused for every
//!   part; downloads hand the response body over as a reader.
//! - Preconditions: a HEAD before each write tells `created` and decides
//!   `If-Match` / `If-None-Match: *` against the current ETag. The write
//!   then carries `If-Match: <that ETag>` or `If-None-Match: *` to the store,
//!   which closes the race between the HEAD and the write on stores that
//!   honour conditional writes (AWS S3 has since 2024). Stores that ignore
//!   those headers (Garage 2.5 does) leave a window of one round trip in
//!   which a concurrent writer can slip in.
//! - Listings: S3 lists keys, sizes and ETags but no content types, so each
//!   listed object is HEADed too, a few at a time.
//! - Usage: each object's size is recorded in a local SQLite file (or, for
//!   instances sharing a database, in PostgreSQL) right after the store
//!   took the write or delete, one key's changes in the store's order
//!   (`record`, which also says what a crash can leave).
//!
//! This file holds [`S3Blobs`] (whose keys and bucket serve an account, and
//! the [`Blobs`] operations); the jobs behind it have a file each:
//! `request` (signing and sending, timeouts, reading answers), `upload`
//! (single and multipart writes), `listing` (pages and their HEADs),
//! `record` (the sizes and usage, kept locally or shared) and `error` (what the
//! store's refusals mean).

mod error;
mod listing;
mod record;
mod request;
mod upload;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rusty_s3::actions::ListObjectsV2;
use rusty_s3::{Bucket, Credentials};
use ureq::http::HeaderMap;

use self::error::{check_write, describe, error_code, missing, refusal, store_error};
pub use self::record::RECORD_FILE;
use self::record::{Place, Record};
use self::request::{Client, drain, error_text, header};
pub use self::upload::{MAX_UPLOADS_IN_FLIGHT, PART_SIZE};
use self::upload::{UPLOAD_SLOT_WAIT, Upload, UploadSlots};
use super::{
    BlobError, Blobs, Book, ByteRange, Download, KeyPage, MAX_KEY_BYTES, ObjectInfo, Owner, Page,
    Settle, Usage, UserCredentials, WriteCondition, Written,
};
use crate::blob::S3Config;

/// Checks a bucket name by S3's rules: 3 to 63 characters of lower-case
/// letters, digits, `.` and `-`, starting and ending with a letter or digit,
/// with no `..` (a name like `..` would turn a path-style URL into another).
pub fn check_bucket_name(name: &str) -> Result<(), &'static str> {
    let plain = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !(3..=63).contains(&name.len()) {
        return Err("must be 3 to 63 characters");
    }
    if !name.bytes().all(|b| plain(b) || b == b'.' || b == b'-') {
        return Err("may hold only lower-case letters, digits, '.' and '-'");
    }
    let bytes = name.as_bytes();
    if !plain(bytes[0]) || !plain(bytes[bytes.len() - 1]) || name.contains("..") {
        return Err("must start and end with a letter or digit, with no '..'");
    }
    Ok(())
}

/// Object storage in an S3-compatible store; see the module documentation.
#[derive(Debug)]
pub struct S3Blobs {
    client: Client,
    prefix: String,
    /// The server's bucket, for accounts without one of their own.
    bucket: Option<String>,
    /// The server's keys, for accounts without keys of their own.
    credentials: Option<Credentials>,
    uploads: UploadSlots,
    /// Each object's size, and each account's usage.
    record: Record,
}

/// Whose keys signed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    Server,
    Account,
}

/// Where one account's objects are, and the keys to reach them.
struct Target {
    bucket: Bucket,
    credentials: Credentials,
    keys: Keys,
}

impl S3Blobs {
    /// Prepares a client for the store in `config`, keeping its size
    /// record in `folder` (`<data-dir>/files`). Nothing is sent yet: only
    /// the endpoint URL is checked.
    pub fn new(config: &S3Config, folder: &Path) -> Result<S3Blobs, String> {
        S3Blobs::with_record(config, Record::open(folder)?)
    }

    /// Prepares a client as [`S3Blobs::new`] does, keeping its size record
    /// in the database several instances share, where each write is held
    /// to `quota` against every instance's (see `record::shared`).
    #[cfg(feature = "postgres")]
    pub fn shared(
        config: &S3Config,
        database: &crate::postgres::Config,
        connections: usize,
        quota: super::Quota,
    ) -> Result<S3Blobs, String> {
        let record = record::SharedRecord::open(database, connections, quota)?;
        S3Blobs::with_record(config, Record::Shared(record))
    }

    fn with_record(config: &S3Config, record: Record) -> Result<S3Blobs, String> {
        let credentials = match (&config.access_key_id, &config.secret_access_key) {
            (Some(id), Some(secret)) => Some(Credentials::new(id.clone(), secret.clone())),
            _ => None,
        };
        let client = Client::new(config);
        // Any valid bucket name will do to check that the endpoint makes
        // URLs in the configured addressing style.
        let probe = config.bucket.as_deref().unwrap_or("wren");
        client
            .bucket(probe)
            .map_err(|problem| format!("S3 endpoint '{}': {problem}", config.endpoint))?;
        Ok(S3Blobs {
            client,
            prefix: config.prefix.clone(),
            bucket: config.bucket.clone(),
            credentials,
            uploads: UploadSlots::new(MAX_UPLOADS_IN_FLIGHT, UPLOAD_SLOT_WAIT),
            record,
        })
    }

    /// Checks an account's keys (and bucket, or else the server's) with one
    /// signed ListObjectsV2 of at most one key. Listing is what the routes
    /// need besides reading and writing, so keys that cannot list would fail
    /// later anyway. Any refusal (4xx) becomes [`BlobError::Credentials`]
    /// with the store's code (its message for the log); an unreachable or
    /// failing store [`BlobError::Upstream`].
    pub fn check_credentials(&self, credentials: &UserCredentials) -> Result<(), BlobError> {
        let Some(name) = credentials.bucket.as_deref().or(self.bucket.as_deref()) else {
            return Err(BlobError::refused(
                "no bucket was given and the server has none to share",
            ));
        };
        let bucket = self.client.bucket(name).map_err(|problem| {
            BlobError::refused(&format!("bucket '{name}' cannot be used: {problem}"))
        })?;
        let keys = Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.clone(),
        );
        let mut action = ListObjectsV2::new(&bucket, Some(&keys));
        action.with_prefix(self.prefix.as_str());
        action.with_max_keys(1);
        let mut response = self.client.call(action, &[], ())?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            drain(&mut response);
            return Ok(());
        }
        let text = error_text(&mut response);
        if (400..500).contains(&status) {
            Err(refusal(status, &text))
        } else {
            Err(BlobError::Upstream(describe(status, &text)))
        }
    }

    /// The bucket and keys that serve `owner`.
    fn target(&self, owner: &Owner) -> Result<Target, BlobError> {
        let (credentials, bucket, keys) = match &owner.credentials {
            Some(own) => (
                Credentials::new(own.access_key_id.clone(), own.secret_access_key.clone()),
                own.bucket.as_deref().or(self.bucket.as_deref()),
                Keys::Account,
            ),
            None => {
                let Some(credentials) = self.credentials.clone() else {
                    return Err(BlobError::Upstream(
                        "the server has no S3 keys (S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY) \
                         and this account brought none"
                            .to_owned(),
                    ));
                };
                (credentials, self.bucket.as_deref(), Keys::Server)
            }
        };
        let Some(name) = bucket else {
            return Err(BlobError::Upstream(
                "no bucket: the server has none (S3_BUCKET) and this account named none".to_owned(),
            ));
        };
        let bucket = self
            .client
            .bucket(name)
            .map_err(|problem| BlobError::Upstream(format!("bucket '{name}': {problem}")))?;
        Ok(Target {
            bucket,
            credentials,
            keys,
        })
    }

    /// `{prefix}{namespace}/`: every key of one account starts with it.
    fn namespace_prefix(&self, owner: &Owner) -> String {
        format!("{}{}/", self.prefix, owner.namespace)
    }

    /// The key in the bucket. S3 keys are at most 1024 bytes (the same
    /// bound as wren's own keys), prefix and account name included; past
    /// that the store's refusal would read as its own failure.
    fn object_key(&self, owner: &Owner, key: &str) -> Result<String, BlobError> {
        let prefix = self.namespace_prefix(owner);
        if prefix.len() + key.len() > MAX_KEY_BYTES {
            return Err(BlobError::KeyTooLong {
                max: MAX_KEY_BYTES.saturating_sub(prefix.len()),
            });
        }
        Ok(prefix + key)
    }

    /// The object's metadata, or `None` when there is no such object.
    fn head_object(
        &self,
        target: &Target,
        object: &str,
        key: &str,
    ) -> Result<Option<ObjectInfo>, BlobError> {
        let action = target.bucket.head_object(Some(&target.credentials), object);
        let response = self.client.call(action, &[], ())?;
        match response.status().as_u16() {
            // A HEAD answer has no body, so a missing bucket looks like a
            // missing object here; writes and listings tell them apart.
            404 => Ok(None),
            200 => {
                let headers = response.headers();
                let size = header(headers, "content-length")
                    .and_then(|value| value.parse().ok())
                    .ok_or_else(|| missing("HEAD", "Content-Length"))?;
                info_from(headers, key, size).map(Some)
            }
            status => Err(store_error(status, "", target.keys)),
        }
    }
}

impl Blobs for S3Blobs {
    fn put(
        &self,
        owner: &Owner,
        key: &str,
        content_type: &str,
        condition: &WriteCondition,
        body: &mut dyn Read,
        settle: Settle<'_>,
    ) -> Result<Written, BlobError> {
        let target = self.target(owner)?;
        let object = self.object_key(owner, key)?;
        let current = self.head_object(&target, &object, key)?;
        if !condition.allows(current.as_ref()) {
            return Err(BlobError::PreconditionFailed);
        }
        // Repeat the condition to the store, pinned to what the HEAD saw,
        // so that a store that honours it refuses a write that lost a race.
        let guard = match (condition, &current) {
            (WriteCondition::Absent, _) => Some(("if-none-match", "*")),
            (WriteCondition::Matches(_), Some(info)) => Some(("if-match", info.etag.as_str())),
            _ => None,
        };
        let upload = Upload {
            target: &target,
            object: &object,
            namespace: &owner.namespace,
            key,
            content_type,
            guard,
            settle,
        };
        let (size, etag) = self.upload(&upload, body)?;
        Ok(Written {
            info: ObjectInfo {
                key: key.to_owned(),
                size,
                etag,
                content_type: content_type.to_owned(),
                // The time the write finished, rather than one more HEAD:
                // the store's Last-Modified is within the request's duration
                // of it, and a HEAD could already see a later writer's object.
                modified: SystemTime::now(),
            },
            created: current.is_none(),
        })
    }

    fn head(&self, owner: &Owner, key: &str) -> Result<ObjectInfo, BlobError> {
        let target = self.target(owner)?;
        self.head_object(&target, &self.object_key(owner, key)?, key)?
            .ok_or(BlobError::NotFound)
    }

    fn get(
        &self,
        owner: &Owner,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Download, BlobError> {
        let target = self.target(owner)?;
        let object = self.object_key(owner, key)?;
        let action = target.bucket.get_object(Some(&target.credentials), &object);
        let range_value = range.map(ByteRange::header_value);
        let headers: Vec<_> = range_value
            .as_deref()
            .map(|value| ("range", value))
            .into_iter()
            .collect();
        let mut response = self.client.call(action, &headers, ())?;
        let status = response.status().as_u16();
        match status {
            200 => {
                let headers = response.headers();
                let size = header(headers, "content-length")
                    .and_then(|value| value.parse().ok())
                    .ok_or_else(|| missing("GetObject", "Content-Length"))?;
                let info = info_from(headers, key, size)?;
                Ok(Download {
                    info,
                    range: None,
                    body: Box::new(response.into_body().into_reader()),
                })
            }
            206 => {
                let headers = response.headers();
                let (first, last, size) = header(headers, "content-range")
                    .and_then(parse_content_range)
                    .ok_or_else(|| missing("GetObject", "a valid Content-Range"))?;
                let info = info_from(headers, key, size)?;
                Ok(Download {
                    info,
                    range: Some((first, last)),
                    body: Box::new(response.into_body().into_reader()),
                })
            }
            416 => {
                let stated = header(response.headers(), "content-range")
                    .and_then(|value| value.strip_prefix("bytes */"))
                    .and_then(|total| total.trim().parse().ok());
                drain(&mut response);
                let size = match stated {
                    Some(size) => size,
                    None => {
                        self.head_object(&target, &object, key)?
                            .ok_or(BlobError::NotFound)?
                            .size
                    }
                };
                Err(BlobError::RangeNotSatisfiable { size })
            }
            _ => {
                let text = error_text(&mut response);
                if status == 404 && error_code(&text).is_none_or(|code| code == "NoSuchKey") {
                    Err(BlobError::NotFound)
                } else {
                    Err(store_error(status, &text, target.keys))
                }
            }
        }
    }

    fn delete(&self, owner: &Owner, key: &str, settle: Settle<'_>) -> Result<(), BlobError> {
        let target = self.target(owner)?;
        let object = self.object_key(owner, key)?;
        let place = Place {
            namespace: &owner.namespace,
            key,
            object: &object,
        };
        let mut missing = false;
        self.record.change(place, None, settle, || {
            // S3's DELETE succeeds whether or not the key exists; ask first
            // so that a missing file is a 404. A record of it is then stale
            // (a crash after an earlier delete): it goes too.
            if self.head_object(&target, &object, key)?.is_none() {
                missing = true;
                return Ok(((), None));
            }
            let action = target
                .bucket
                .delete_object(Some(&target.credentials), &object);
            let mut response = self.client.call(action, &[], ())?;
            check_write(&mut response, target.keys)?;
            drain(&mut response);
            Ok(((), None))
        })?;
        if missing {
            return Err(BlobError::NotFound);
        }
        Ok(())
    }

    fn list(
        &self,
        owner: &Owner,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, BlobError> {
        let target = self.target(owner)?;
        let listed = self.list_objects(&target, owner, prefix, after, limit)?;
        // A listing has no content types, so each object is asked for its
        // own: one HEAD per listed object, which also gives size, ETag and
        // date in the same form as `head`.
        let objects = self.head_each(&target, &listed.objects)?;
        Ok(Page {
            objects,
            truncated: listed.truncated,
        })
    }

    fn list_keys(
        &self,
        owner: &Owner,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, BlobError> {
        let target = self.target(owner)?;
        let listed = self.list_objects(&target, owner, "", after, limit)?;
        Ok(KeyPage {
            keys: listed.objects.into_iter().map(|(_, key)| key).collect(),
            truncated: listed.truncated,
        })
    }

    fn location(&self, owner: &Owner, key: &str) -> String {
        let bucket = owner
            .credentials
            .as_ref()
            .and_then(|own| own.bucket.as_deref())
            .or(self.bucket.as_deref())
            .unwrap_or("(no bucket)");
        format!("s3://{bucket}/{}{key}", self.namespace_prefix(owner))
    }

    /// A HEAD of the server's bucket with the server's keys, answered with
    /// success within `within` (a refusal means the bucket cannot be
    /// served from either: gone, or keys no longer good).
    fn ready(&self, within: Duration) -> Result<(), BlobError> {
        let server = Owner {
            namespace: String::new(),
            credentials: None,
        };
        let target = self.target(&server)?;
        let action = target.bucket.head_bucket(Some(&target.credentials));
        let mut response = self.client.probe(action, within)?;
        let status = response.status().as_u16();
        let text = error_text(&mut response);
        if !(200..300).contains(&status) {
            return Err(BlobError::Upstream(describe(status, &text)));
        }
        Ok(())
    }
}

impl Book for S3Blobs {
    fn usage(&self, namespace: &str) -> Result<Usage, BlobError> {
        self.record.usage(namespace)
    }

    fn recorded_size(&self, namespace: &str, key: &str) -> Result<Option<u64>, BlobError> {
        self.record.recorded_size(namespace, key)
    }
}

/// An object's metadata from HEAD or GET answer headers; `size` is the whole
/// object's, which the caller knows from Content-Length or Content-Range.
fn info_from(headers: &HeaderMap, key: &str, size: u64) -> Result<ObjectInfo, BlobError> {
    let etag = header(headers, "etag")
        .map(quoted)
        .ok_or_else(|| missing("HEAD/GET", "ETag"))?;
    Ok(ObjectInfo {
        key: key.to_owned(),
        size,
        etag,
        content_type: header(headers, "content-type")
            .unwrap_or("application/octet-stream")
            .to_owned(),
        // A store that sends no readable date gets "now": a client's cache
        // then revalidates rather than trusting a made-up old date.
        modified: header(headers, "last-modified")
            .and_then(crate::date::parse_http_date)
            .unwrap_or_else(SystemTime::now),
    })
}

/// An ETag as HTTP sends it, quoted; some stores drop the quotes in XML.
fn quoted(etag: &str) -> String {
    let bare = etag.trim().trim_matches('"');
    format!("\"{bare}\"")
}

/// `bytes first-last/total` → (first, last, total).
fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let (span, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let (first, last, total) = (
        first.trim().parse().ok()?,
        last.trim().parse().ok()?,
        total.trim().parse().ok()?,
    );
    (first <= last && last < total).then_some((first, last, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::S3Addressing;

    /// A fresh folder for a backend's size record.
    fn record_folder(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("wren-s3-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn content_ranges_parse() {
        assert_eq!(parse_content_range("bytes 0-9/100"), Some((0, 9, 100)));
        assert_eq!(parse_content_range("bytes 99-99/100"), Some((99, 99, 100)));
        for bad in [
            "bytes */100",
            "bytes 5-1/100",
            "bytes 0-100/100",
            "items 0-1/2",
            "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for good in ["abc", "my-bucket.2026", &"a".repeat(63)] {
            assert_eq!(check_bucket_name(good), Ok(()), "{good}");
        }
        for bad in [
            "ab",
            "..",
            "a..b",
            "-abc",
            "abc.",
            "Upper",
            "has space",
            "a/b",
            &"a".repeat(64),
        ] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn etags_are_quoted_once() {
        assert_eq!(quoted("\"abc\""), "\"abc\"");
        assert_eq!(quoted("abc-3"), "\"abc-3\"");
    }

    #[test]
    fn location_names_the_bucket_and_the_full_key() {
        let blobs = S3Blobs::new(
            &S3Config {
                endpoint: "http://127.0.0.1:9".to_owned(),
                region: "garage".to_owned(),
                bucket: Some("shared".to_owned()),
                prefix: "wren/".to_owned(),
                addressing: S3Addressing::Path,
                access_key_id: None,
                secret_access_key: None,
            },
            &record_folder("location"),
        )
        .unwrap();
        let mut owner = Owner {
            namespace: "ann".to_owned(),
            credentials: None,
        };
        assert_eq!(
            blobs.location(&owner, "a/b.txt"),
            "s3://shared/wren/ann/a/b.txt"
        );
        owner.credentials = Some(UserCredentials {
            access_key_id: "id".to_owned(),
            secret_access_key: "secret".to_owned(),
            bucket: Some("own".to_owned()),
        });
        assert_eq!(blobs.location(&owner, "k"), "s3://own/wren/ann/k");
        // Without server keys, an account without its own is refused.
        owner.credentials = None;
        assert!(matches!(
            blobs.head(&owner, "k"),
            Err(BlobError::Upstream(_))
        ));
    }

    #[test]
    fn bad_endpoints_are_refused() {
        let config = |endpoint: &str, addressing| S3Config {
            endpoint: endpoint.to_owned(),
            region: "r".to_owned(),
            bucket: Some("b".to_owned()),
            prefix: String::new(),
            addressing,
            access_key_id: None,
            secret_access_key: None,
        };
        let folder = record_folder("endpoints");
        let new = |endpoint, addressing| S3Blobs::new(&config(endpoint, addressing), &folder);
        assert!(new("not a url", S3Addressing::Path).is_err());
        assert!(new("ftp://host", S3Addressing::Path).is_err());
        // A bucket cannot be a subdomain of an IP address.
        assert!(new("http://127.0.0.1:9000", S3Addressing::VirtualHost).is_err());
        assert!(new("https://s3.example.com", S3Addressing::VirtualHost).is_ok());
    }
}

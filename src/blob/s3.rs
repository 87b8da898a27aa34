//! Files in an S3-compatible object store (AWS S3, MinIO, Garage, …).
//!
//! Requests are signed by `rusty-s3`, which never does I/O: it turns an
//! action (PutObject, GetObject, …) into a presigned URL, and `ureq` sends
//! it over one shared, pooled, blocking [`ureq::Agent`]. wren has no async
//! runtime and needs none here.
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

use std::io::{self, Read};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use rusty_s3::actions::{CompleteMultipartUploadResponse, CreateMultipartUpload, ListObjectsV2};
use rusty_s3::{Bucket, Credentials, Method, S3Action, UrlStyle};
use ureq::http::{HeaderMap, Response};
use ureq::{AsSendBody, Body};

use super::{
    BlobError, Blobs, ByteRange, Download, KeyPage, MAX_KEY_BYTES, ObjectInfo, Owner, Page,
    UserCredentials, WriteCondition, Written,
};
use crate::blob::{S3Addressing, S3Config};
use crate::text::excerpt;

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

/// Size of every part of a multipart upload but the last, and the largest
/// body sent as a single PutObject. S3 wants parts of at least 5 MiB; 8 MiB
/// is what the AWS CLI uses, and bounds each upload's buffer.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// S3 refuses multipart uploads of more parts (about 78 GiB at 8 MiB).
const MAX_PARTS: usize = 10_000;

/// Bodies shorter than this go up from a buffer of their own, without an
/// upload slot.
const SMALL_BODY: usize = 64 * 1024;

/// Uploads that may hold a [`PART_SIZE`] buffer at once (128 MiB in all);
/// one more waits up to [`UPLOAD_SLOT_WAIT`] for a slot, then gets `503`.
pub const MAX_UPLOADS_IN_FLIGHT: usize = 16;
const UPLOAD_SLOT_WAIT: Duration = Duration::from_secs(30);

/// Bounds the part buffers of uploads in flight: without it, every worker
/// (up to --max-connections) could hold its own 8 MiB.
#[derive(Debug)]
struct UploadSlots {
    free: Mutex<usize>,
    freed: Condvar,
    wait: Duration,
}

/// A taken upload slot, given back on drop.
struct UploadSlot<'s>(&'s UploadSlots);

impl UploadSlots {
    fn new(count: usize, wait: Duration) -> UploadSlots {
        UploadSlots {
            free: Mutex::new(count),
            freed: Condvar::new(),
            wait,
        }
    }

    fn take(&self) -> Result<UploadSlot<'_>, BlobError> {
        let free = self
            .free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (mut free, _) = self
            .freed
            .wait_timeout_while(free, self.wait, |free| *free == 0)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *free == 0 {
            return Err(BlobError::Busy(format!(
                "{MAX_UPLOADS_IN_FLIGHT} uploads to the object store are in progress"
            )));
        }
        *free -= 1;
        Ok(UploadSlot(self))
    }
}

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        *self
            .0
            .free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// How long a signed URL stays valid. Each is used at once, for one
/// request; S3 checks the signature when the request starts, so a long
/// transfer does not outlive it.
const SIGNATURE_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Connecting (TCP and TLS) to the store.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for any one read or write on a connection to the store.
/// Restarted by each read or write, not a deadline for the request, so that a 1 GiB transfer that keeps
/// moving never hits a deadline, while a stalled one fails within a minute.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Most bytes read of an XML answer (a listing of 1,000 long keys is a few
/// MiB) and of an error answer.
const MAX_XML_BYTES: u64 = 16 * 1024 * 1024;
const MAX_ERROR_BYTES: u64 = 64 * 1024;

/// Listing HEADs each object (for its content type) with this many
/// requests at a time: one by one, a page of 1,000 objects would wait for
/// 1,000 round trips in a row.
const HEADS_IN_FLIGHT: usize = 8;

/// Error codes that mean the store refused the keys or the bucket that
/// came with them. With an account's own keys they are the account's to
/// fix, so they become [`BlobError::Credentials`].
const REFUSALS: [&str; 8] = [
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "AllAccessDisabled",
    "AccountProblem",
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
];

/// Object storage in an S3-compatible store; see the module documentation.
#[derive(Debug)]
pub struct S3Blobs {
    agent: ureq::Agent,
    /// Checked by [`S3Blobs::new`]; parsed again for each request, since a
    /// [`Bucket`] is built per request (the bucket depends on the account).
    endpoint: String,
    style: UrlStyle,
    region: String,
    prefix: String,
    /// The server's bucket, for accounts without one of their own.
    bucket: Option<String>,
    /// The server's keys, for accounts without keys of their own.
    credentials: Option<Credentials>,
    uploads: UploadSlots,
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
    /// Prepares a client for the store in `config`. Nothing is sent yet:
    /// only the endpoint URL is checked.
    pub fn new(config: &S3Config) -> Result<S3Blobs, String> {
        let style = match config.addressing {
            S3Addressing::Path => UrlStyle::Path,
            S3Addressing::VirtualHost => UrlStyle::VirtualHost,
        };
        let credentials = match (&config.access_key_id, &config.secret_access_key) {
            (Some(id), Some(secret)) => Some(Credentials::new(id.clone(), secret.clone())),
            _ => None,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            // Error statuses are answers to read (the XML says why), not
            // transport failures.
            .http_status_as_error(false)
            // A redirect from S3 means a wrong region or endpoint; following
            // it would drop the signature. Report it instead.
            .max_redirects(0)
            .timeout_resolve(Some(CONNECT_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(IO_TIMEOUT))
            .timeout_per_write(Some(IO_TIMEOUT))
            // Every request thread may hold a connection to the one store.
            .max_idle_connections(64)
            .max_idle_connections_per_host(64)
            .user_agent(concat!("wren/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let blobs = S3Blobs {
            agent,
            endpoint: config.endpoint.clone(),
            style,
            region: config.region.clone(),
            prefix: config.prefix.clone(),
            bucket: config.bucket.clone(),
            credentials,
            uploads: UploadSlots::new(MAX_UPLOADS_IN_FLIGHT, UPLOAD_SLOT_WAIT),
        };
        // Any valid bucket name will do to check that the endpoint makes
        // URLs in the configured addressing style.
        let probe = config.bucket.as_deref().unwrap_or("wren");
        blobs
            .bucket_named(probe)
            .map_err(|problem| format!("S3 endpoint '{}': {problem}", config.endpoint))?;
        Ok(blobs)
    }

    /// Checks an account's keys (and bucket, or else the server's) with one
    /// signed ListObjectsV2 of at most one key. Listing is what the routes
    /// need besides reading and writing, so keys that cannot list would fail
    /// later anyway. Any refusal (4xx) becomes [`BlobError::Credentials`]
    /// with the store's code and message; an unreachable or failing store
    /// [`BlobError::Upstream`].
    pub fn check_credentials(&self, credentials: &UserCredentials) -> Result<(), BlobError> {
        let Some(name) = credentials.bucket.as_deref().or(self.bucket.as_deref()) else {
            return Err(BlobError::Credentials(
                "no bucket was given and the server has none to share".to_owned(),
            ));
        };
        let bucket = self.bucket_named(name).map_err(|problem| {
            BlobError::Credentials(format!("bucket '{name}' cannot be used: {problem}"))
        })?;
        let keys = Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.clone(),
        );
        let mut action = ListObjectsV2::new(&bucket, Some(&keys));
        action.with_prefix(self.prefix.as_str());
        action.with_max_keys(1);
        let mut response = self.call(action, &[], ())?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            drain(&mut response);
            return Ok(());
        }
        let text = error_text(&mut response);
        let message = describe(status, &text);
        if (400..500).contains(&status) {
            Err(BlobError::Credentials(message))
        } else {
            Err(BlobError::Upstream(message))
        }
    }

    fn bucket_named(&self, name: &str) -> Result<Bucket, String> {
        let endpoint = match self.endpoint.parse() {
            Ok(url) => url,
            Err(_) => return Err("not a valid URL".to_owned()),
        };
        Bucket::new(endpoint, self.style, name.to_owned(), self.region.clone())
            .map_err(|err| err.to_string())
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
            .bucket_named(name)
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

    /// Signs `action` with `headers` among the signed headers, and sends it
    /// with those headers and `body`.
    fn call<'a, A: S3Action<'a>>(
        &self,
        mut action: A,
        headers: &[(&'static str, &'a str)],
        body: impl AsSendBody,
    ) -> Result<Response<Body>, BlobError> {
        let url = sign(&mut action, headers);
        self.send(A::METHOD, &url, headers, body)
    }

    fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&'static str, &str)],
        body: impl AsSendBody,
    ) -> Result<Response<Body>, BlobError> {
        let mut request = ureq::http::Request::builder()
            .method(method.to_str())
            .uri(url);
        for &(name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(body)
            .map_err(|err| BlobError::Upstream(format!("cannot build an S3 request: {err}")))?;
        self.agent.run(request).map_err(|err| {
            BlobError::Upstream(format!(
                "the request to the object store at {} failed: {err}",
                self.endpoint
            ))
        })
    }

    /// The object's metadata, or `None` when there is no such object.
    fn head_object(
        &self,
        target: &Target,
        object: &str,
        key: &str,
    ) -> Result<Option<ObjectInfo>, BlobError> {
        let action = target.bucket.head_object(Some(&target.credentials), object);
        let response = self.call(action, &[], ())?;
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

    /// One ListObjectsV2 page under the account's namespace: (object key,
    /// wren key) pairs, and whether more follow.
    fn list_objects(
        &self,
        target: &Target,
        owner: &Owner,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<(String, String)>, bool), BlobError> {
        let namespace = self.namespace_prefix(owner);
        // No stored key is longer than MAX_KEY_BYTES, so none has a longer
        // prefix; asking would get the store's refusal instead of nothing.
        if namespace.len() + prefix.len() > MAX_KEY_BYTES {
            return Ok((Vec::new(), false));
        }
        let mut action = target.bucket.list_objects_v2(Some(&target.credentials));
        action.with_prefix(format!("{namespace}{prefix}"));
        if let Some(after) = after {
            action.with_start_after(format!("{namespace}{after}"));
        }
        // Asking for none would tell nothing about what follows; one key
        // tells whether the listing is truncated.
        action.with_max_keys(limit.max(1));
        let mut response = self.call(action, &[], ())?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let text = error_text(&mut response);
            return Err(store_error(status, &text, target.keys));
        }
        let xml = xml_text(&mut response)?;
        let listing = ListObjectsV2::parse_response(&xml)
            .map_err(|err| unexpected("ListObjectsV2", &err.to_string()))?;
        if limit == 0 {
            return Ok((Vec::new(), !listing.contents.is_empty()));
        }
        // A store that sends more than max-keys must not make a page (and
        // its HEADs) larger than asked.
        let beyond = listing.contents.len() > limit;
        let listed = listing
            .contents
            .iter()
            .take(limit)
            .filter_map(|entry| {
                let key = entry.key.strip_prefix(&namespace)?;
                Some((entry.key.clone(), key.to_owned()))
            })
            .collect();
        Ok((listed, beyond || listing.next_continuation_token.is_some()))
    }

    /// HEADs `listed` (object key, wren key) pairs, [`HEADS_IN_FLIGHT`] at
    /// a time, in order; objects deleted since they were listed are left
    /// out.
    fn head_each(
        &self,
        target: &Target,
        listed: &[(String, String)],
    ) -> Result<Vec<ObjectInfo>, BlobError> {
        let heads = |part: &[(String, String)]| -> Result<Vec<ObjectInfo>, BlobError> {
            let mut found = Vec::with_capacity(part.len());
            for (object, key) in part {
                found.extend(self.head_object(target, object, key)?);
            }
            Ok(found)
        };
        if listed.len() <= 1 {
            return heads(listed);
        }
        let chunk = listed.len().div_ceil(HEADS_IN_FLIGHT);
        let results: Vec<Result<Vec<ObjectInfo>, BlobError>> = thread::scope(|scope| {
            let workers: Vec<_> = listed
                .chunks(chunk)
                .map(|part| {
                    thread::Builder::new()
                        .name("wren-s3-head".to_owned())
                        .spawn_scoped(scope, move || heads(part))
                })
                .collect();
            // Every thread is joined before any error is returned.
            workers
                .into_iter()
                .map(|worker| match worker {
                    Ok(handle) => handle.join().unwrap_or_else(|_| {
                        Err(BlobError::Upstream("a listing thread panicked".to_owned()))
                    }),
                    Err(err) => Err(BlobError::Upstream(format!(
                        "cannot start a listing thread: {err}"
                    ))),
                })
                .collect()
        });
        let mut objects = Vec::with_capacity(listed.len());
        for found in results {
            objects.extend(found?);
        }
        Ok(objects)
    }

    /// Sends a body that fits one part as a single PutObject; returns the
    /// new ETag.
    fn put_object(
        &self,
        target: &Target,
        object: &str,
        content_type: &str,
        guard: Option<(&'static str, &str)>,
        bytes: &[u8],
    ) -> Result<String, BlobError> {
        let action = target.bucket.put_object(Some(&target.credentials), object);
        let mut headers = vec![("content-type", content_type)];
        headers.extend(guard);
        let mut response = self.call(action, &headers, bytes)?;
        let status = response.status().as_u16();
        check_write(&mut response, target.keys)?;
        drain(&mut response);
        header(response.headers(), "etag")
            .map(quoted)
            .ok_or_else(|| missing("PutObject", &format!("ETag (HTTP {status})")))
    }

    /// Streams `body` to `object`; returns its size and ETag. See the
    /// module documentation for how the object appears all at once.
    fn upload(
        &self,
        target: &Target,
        object: &str,
        content_type: &str,
        guard: Option<(&'static str, &str)>,
        body: &mut dyn Read,
    ) -> Result<(u64, String), BlobError> {
        // Small bodies (most files) need no slot: only a body that fills
        // this first read waits for one and its PART_SIZE buffer, so slow
        // clients sending small files cannot hold the slots.
        let mut first = vec![0u8; SMALL_BODY];
        let first_len = fill(body, &mut first).map_err(BlobError::Body)?;
        if first_len < SMALL_BODY {
            let etag = self.put_object(target, object, content_type, guard, &first[..first_len])?;
            return Ok((first_len as u64, etag));
        }
        let _slot = self.uploads.take()?;
        // Zeroed pages are only mapped when written: a short body touches
        // little of the buffer.
        let mut buffer = vec![0u8; PART_SIZE];
        buffer[..SMALL_BODY].copy_from_slice(&first);
        drop(first);
        let filled = SMALL_BODY + fill(body, &mut buffer[SMALL_BODY..]).map_err(BlobError::Body)?;
        // A full buffer may also be the whole body: peek one byte to know.
        let mut peeked = [0u8; 1];
        if filled < PART_SIZE || fill(body, &mut peeked).map_err(BlobError::Body)? == 0 {
            let etag = self.put_object(target, object, content_type, guard, &buffer[..filled])?;
            return Ok((filled as u64, etag));
        }

        let action = target
            .bucket
            .create_multipart_upload(Some(&target.credentials), object);
        let mut response = self.call(action, &[("content-type", content_type)], ())?;
        check_write(&mut response, target.keys)?;
        let xml = xml_text(&mut response)?;
        let upload_id = CreateMultipartUpload::parse_response(&xml)
            .map_err(|err| unexpected("CreateMultipartUpload", &err.to_string()))?
            .upload_id()
            .to_owned();

        let result = self.upload_parts(
            target,
            object,
            &upload_id,
            guard,
            &mut buffer,
            peeked[0],
            body,
        );
        if result.is_err() {
            // Best effort: parts left behind cost storage until the store's
            // lifecycle rules (if any) clean them, but are never visible.
            let action =
                target
                    .bucket
                    .abort_multipart_upload(Some(&target.credentials), object, &upload_id);
            if let Ok(mut response) = self.call(action, &[], ()) {
                drain(&mut response);
            }
        }
        result
    }

    /// Sends the full `buffer` as part 1, then `peeked` and the rest of
    /// `body` part by part through the same buffer, then completes the
    /// upload. The caller aborts it on error.
    #[allow(clippy::too_many_arguments)]
    fn upload_parts(
        &self,
        target: &Target,
        object: &str,
        upload_id: &str,
        guard: Option<(&'static str, &str)>,
        buffer: &mut [u8],
        peeked: u8,
        body: &mut dyn Read,
    ) -> Result<(u64, String), BlobError> {
        let mut etags: Vec<String> = Vec::new();
        let mut size = 0u64;
        let mut filled = buffer.len();
        let mut carried = Some(peeked);
        loop {
            let number = etags.len() + 1;
            let part_number = match u16::try_from(number) {
                Ok(n) if number <= MAX_PARTS => n,
                _ => {
                    return Err(BlobError::Upstream(format!(
                        "the file needs more than {MAX_PARTS} parts of {PART_SIZE} bytes"
                    )));
                }
            };
            let action = target.bucket.upload_part(
                Some(&target.credentials),
                object,
                part_number,
                upload_id,
            );
            let mut response = self.call(action, &[], &buffer[..filled])?;
            check_write(&mut response, target.keys)?;
            drain(&mut response);
            let etag =
                header(response.headers(), "etag").ok_or_else(|| missing("UploadPart", "ETag"))?;
            etags.push(etag.to_owned());
            size += filled as u64;
            // `fill` only stops short at the end of the body.
            if filled < buffer.len() {
                break;
            }
            let start = match carried.take() {
                Some(byte) => {
                    buffer[0] = byte;
                    1
                }
                None => 0,
            };
            filled = start + fill(body, &mut buffer[start..]).map_err(BlobError::Body)?;
            if filled == 0 {
                break;
            }
        }

        let mut action = target.bucket.complete_multipart_upload(
            Some(&target.credentials),
            object,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let headers: Vec<_> = guard.into_iter().collect();
        let url = sign(&mut action, &headers);
        let mut response = self.send(Method::Post, &url, &headers, action.body())?;
        check_write(&mut response, target.keys)?;
        // S3 may answer 200 and still fail: the body says which.
        let xml = xml_text(&mut response)?;
        let etag = match CompleteMultipartUploadResponse::parse(&xml) {
            Ok(done) => quoted(done.etag()),
            Err(_) => return Err(store_error(200, &xml, target.keys)),
        };
        Ok((size, etag))
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
        let (size, etag) = self.upload(&target, &object, content_type, guard, body)?;
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
        let mut response = self.call(action, &headers, ())?;
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

    fn delete(&self, owner: &Owner, key: &str) -> Result<(), BlobError> {
        let target = self.target(owner)?;
        let object = self.object_key(owner, key)?;
        // S3's DELETE succeeds whether or not the key exists; ask first so
        // that a missing file is a 404.
        if self.head_object(&target, &object, key)?.is_none() {
            return Err(BlobError::NotFound);
        }
        let action = target
            .bucket
            .delete_object(Some(&target.credentials), &object);
        let mut response = self.call(action, &[], ())?;
        check_write(&mut response, target.keys)?;
        drain(&mut response);
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
        let (listed, truncated) = self.list_objects(&target, owner, prefix, after, limit)?;
        // A listing has no content types, so each object is asked for its
        // own: one HEAD per listed object, which also gives size, ETag and
        // date in the same form as `head`.
        let objects = self.head_each(&target, &listed)?;
        Ok(Page { objects, truncated })
    }

    fn list_keys(
        &self,
        owner: &Owner,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, BlobError> {
        let target = self.target(owner)?;
        let (listed, truncated) = self.list_objects(&target, owner, "", after, limit)?;
        Ok(KeyPage {
            keys: listed.into_iter().map(|(_, key)| key).collect(),
            truncated,
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
}

/// Adds `headers` to the signed ones and signs; the request must then carry
/// exactly these headers.
fn sign<'a>(action: &mut impl S3Action<'a>, headers: &[(&'static str, &'a str)]) -> String {
    for &(name, value) in headers {
        action.headers_mut().insert(name, value);
    }
    action.sign(SIGNATURE_LIFETIME).into()
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

/// Turns a failed write into its error: a refused precondition into
/// [`BlobError::PreconditionFailed`], anything else not 2xx into the
/// store's error.
fn check_write(response: &mut Response<Body>, keys: Keys) -> Result<(), BlobError> {
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let text = error_text(response);
    // 409 ConditionalRequestConflict: AWS's answer to two conditional
    // writes racing for the same key.
    if status == 412 || error_code(&text).as_deref() == Some("ConditionalRequestConflict") {
        return Err(BlobError::PreconditionFailed);
    }
    Err(store_error(status, &text, keys))
}

/// The error for an S3 error answer: its code and message, blamed on the
/// account when its own keys or bucket were refused.
fn store_error(status: u16, text: &str, keys: Keys) -> BlobError {
    let code = error_code(text);
    let message = describe(status, text);
    let refused = status == 403 || code.is_some_and(|code| REFUSALS.contains(&code.as_str()));
    if keys == Keys::Account && refused {
        BlobError::Credentials(message)
    } else {
        BlobError::Upstream(message)
    }
}

/// `Code: Message (HTTP status)` from an S3 error document, or just the
/// status when there is none (HEAD answers have no body). The store's
/// message is cut short: it goes into wren's own answer.
fn describe(status: u16, text: &str) -> String {
    match (error_code(text), xml_element(text, "Message")) {
        (Some(code), Some(message)) => {
            format!("{code}: {} (HTTP {status})", excerpt(&message, 200))
        }
        (Some(code), None) => format!("{code} (HTTP {status})"),
        _ => format!("HTTP {status} with no S3 error code"),
    }
}

fn error_code(text: &str) -> Option<String> {
    xml_element(text, "Code").map(|code| excerpt(&code, 64).to_owned())
}

/// The text of the first `<name>` element, XML escapes undone. Error
/// documents are flat, so no parser is needed to read them.
fn xml_element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&format!("</{name}>"))?;
    Some(
        text[start..end]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// An error answer's body, or nothing if it cannot be read.
fn error_text(response: &mut Response<Body>) -> String {
    response
        .body_mut()
        .with_config()
        .limit(MAX_ERROR_BYTES)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default()
}

/// A successful answer's XML body.
fn xml_text(response: &mut Response<Body>) -> Result<String, BlobError> {
    response
        .body_mut()
        .with_config()
        .limit(MAX_XML_BYTES)
        .read_to_string()
        .map_err(|err| BlobError::Upstream(format!("cannot read the object store's answer: {err}")))
}

/// Reads a short answer to its end, so that its connection goes back to
/// the pool.
fn drain(response: &mut Response<Body>) {
    let _ = io::copy(
        &mut response.body_mut().as_reader().take(MAX_ERROR_BYTES),
        &mut io::sink(),
    );
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn missing(action: &str, what: &str) -> BlobError {
    unexpected(action, &format!("no {what} in the answer"))
}

fn unexpected(action: &str, problem: &str) -> BlobError {
    BlobError::Upstream(format!("unexpected {action} answer: {problem}"))
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
    fn error_documents_are_described_and_blamed() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
                   <Message>Forbidden: key &quot;k&quot; &amp; more</Message></Error>";
        assert_eq!(error_code(xml).as_deref(), Some("AccessDenied"));
        assert_eq!(
            describe(403, xml),
            "AccessDenied: Forbidden: key \"k\" & more (HTTP 403)"
        );
        assert!(matches!(
            store_error(403, xml, Keys::Account),
            BlobError::Credentials(_)
        ));
        assert!(matches!(
            store_error(403, xml, Keys::Server),
            BlobError::Upstream(_)
        ));
        assert!(matches!(
            store_error(403, "", Keys::Account),
            BlobError::Credentials(_)
        ));
        let missing_bucket = "<Error><Code>NoSuchBucket</Code><Message>no</Message></Error>";
        assert!(matches!(
            store_error(404, missing_bucket, Keys::Account),
            BlobError::Credentials(_)
        ));
        let busy = "<Error><Code>SlowDown</Code><Message>later</Message></Error>";
        assert!(matches!(
            store_error(503, busy, Keys::Account),
            BlobError::Upstream(_)
        ));
        assert_eq!(describe(500, ""), "HTTP 500 with no S3 error code");
    }

    #[test]
    fn upload_slots_are_bounded_and_given_back() {
        let slots = UploadSlots::new(2, Duration::from_millis(20));
        let first = slots.take().unwrap();
        let _second = slots.take().unwrap();
        assert!(matches!(slots.take(), Err(BlobError::Busy(_))));
        drop(first);
        let _third = slots.take().unwrap();
        // A slot given back while another waits wakes it.
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| UploadSlots::take(&slots).map(|_| ()).is_ok());
            drop(_third);
            assert!(waiter.join().unwrap());
        });
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
        let blobs = S3Blobs::new(&S3Config {
            endpoint: "http://127.0.0.1:9".to_owned(),
            region: "garage".to_owned(),
            bucket: Some("shared".to_owned()),
            prefix: "wren/".to_owned(),
            addressing: S3Addressing::Path,
            access_key_id: None,
            secret_access_key: None,
        })
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
        assert!(S3Blobs::new(&config("not a url", S3Addressing::Path)).is_err());
        assert!(S3Blobs::new(&config("ftp://host", S3Addressing::Path)).is_err());
        // A bucket cannot be a subdomain of an IP address.
        assert!(S3Blobs::new(&config("http://127.0.0.1:9000", S3Addressing::VirtualHost)).is_err());
        assert!(S3Blobs::new(&config("https://s3.example.com", S3Addressing::VirtualHost)).is_ok());
    }

    /// Against a real S3-compatible store, in the environment
    /// `scripts/with-garage.sh` sets up (`make test` runs them so):
    /// `S3_ENDPOINT`, `S3_REGION`, `S3_BUCKET`, `S3_ACCESS_KEY_ID` and
    /// `S3_SECRET_ACCESS_KEY` for the server's store, and
    /// `WREN_TEST_USER_KEY_ID`, `WREN_TEST_USER_KEY_SECRET` and
    /// `WREN_TEST_USER_BUCKET` for an account's own keys. Without them each
    /// test returns at once, saying so, unless `WREN_TEST_S3=required`.
    /// Each test writes under its own prefix.
    mod store {
        use std::io::{self, Read};

        use sha2::{Digest, Sha256};

        use super::super::*;

        fn var(name: &str) -> Option<String> {
            std::env::var(name).ok().filter(|value| !value.is_empty())
        }

        /// Notes a skipped test, or fails it when S3 tests are required.
        fn skip(test: &str, missing: &str) {
            assert!(
                var("WREN_TEST_S3").as_deref() != Some("required"),
                "{test}: {missing} is not set, and WREN_TEST_S3=required"
            );
            eprintln!("skipped {test}: {missing} is not set (run through scripts/with-garage.sh)");
        }

        /// The store's config with a prefix of the test's own, or `None`
        /// (and a note) when no store is configured.
        fn config(test: &str) -> Option<S3Config> {
            let Some(endpoint) = var("S3_ENDPOINT") else {
                skip(test, "S3_ENDPOINT");
                return None;
            };
            Some(S3Config {
                endpoint,
                region: var("S3_REGION").unwrap_or_else(|| "us-east-1".to_owned()),
                bucket: var("S3_BUCKET"),
                prefix: format!("wren-test-{}-{test}/", std::process::id()),
                addressing: S3Addressing::Path,
                access_key_id: var("S3_ACCESS_KEY_ID"),
                secret_access_key: var("S3_SECRET_ACCESS_KEY"),
            })
        }

        fn setup(test: &str) -> Option<(S3Blobs, Owner)> {
            let blobs = S3Blobs::new(&config(test)?).unwrap();
            let owner = Owner {
                namespace: "ann".to_owned(),
                credentials: None,
            };
            Some((blobs, owner))
        }

        fn put(blobs: &S3Blobs, owner: &Owner, key: &str, bytes: &[u8]) -> Written {
            put_if(blobs, owner, key, &WriteCondition::Always, bytes).unwrap()
        }

        fn put_if(
            blobs: &S3Blobs,
            owner: &Owner,
            key: &str,
            condition: &WriteCondition,
            mut bytes: &[u8],
        ) -> Result<Written, BlobError> {
            blobs.put(owner, key, "text/plain", condition, &mut bytes)
        }

        fn read_all(mut download: Download) -> Vec<u8> {
            let mut bytes = Vec::new();
            download.body.read_to_end(&mut bytes).unwrap();
            bytes
        }

        /// `size` reproducible pseudo-random bytes, handed out in reads of
        /// uneven sizes, as a socket would. The bytes do not depend on how
        /// they are read.
        struct Noise {
            bytes: fastrand::Rng,
            chunks: fastrand::Rng,
            left: usize,
        }

        impl Read for Noise {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.left).min(self.chunks.usize(1..100_000));
                buf[..n].iter_mut().for_each(|b| *b = self.bytes.u8(..));
                self.left -= n;
                Ok(n)
            }
        }

        fn noise(size: usize) -> Noise {
            Noise {
                bytes: fastrand::Rng::with_seed(7),
                chunks: fastrand::Rng::with_seed(8),
                left: size,
            }
        }

        fn keys(page: &Page) -> Vec<&str> {
            page.objects.iter().map(|info| info.key.as_str()).collect()
        }

        #[test]
        fn awkward_keys_round_trip() {
            let Some((blobs, owner)) = setup("keys") else {
                return;
            };
            let key = "dïr/sub dir/ünï cødé+plus%25 & ✓.txt";
            let written = blobs
                .put(
                    &owner,
                    key,
                    "text/plain; charset=utf-8",
                    &WriteCondition::Always,
                    &mut &b"hello"[..],
                )
                .unwrap();
            assert!(written.created);
            assert_eq!(written.info.size, 5);
            assert!(written.info.etag.starts_with('"') && written.info.etag.ends_with('"'));

            let head = blobs.head(&owner, key).unwrap();
            assert_eq!(head.key, key);
            assert_eq!(head.size, 5);
            assert_eq!(head.etag, written.info.etag);
            assert_eq!(head.content_type, "text/plain; charset=utf-8");
            let age = SystemTime::now().duration_since(head.modified).unwrap();
            assert!(age < Duration::from_secs(60), "{age:?}");

            let download = blobs.get(&owner, key, None).unwrap();
            assert_eq!(download.info, head);
            assert_eq!(download.range, None);
            assert_eq!(read_all(download), b"hello");

            // The listing gives the key back exactly: '+', spaces and '%'
            // survive its URL encoding.
            let page = blobs.list(&owner, "dïr/", None, 10).unwrap();
            assert_eq!(page.objects, vec![head]);
            assert!(!page.truncated);
            // Another key differing only by what encoding could confuse.
            assert!(matches!(
                blobs.head(&owner, "dïr/sub dir/ünï cødé plus% & ✓.txt"),
                Err(BlobError::NotFound)
            ));

            let again = put(&blobs, &owner, key, b"bye");
            assert!(!again.created);
            assert_eq!(read_all(blobs.get(&owner, key, None).unwrap()), b"bye");

            let empty = put(&blobs, &owner, "empty", b"");
            assert_eq!(empty.info.size, 0);
            assert_eq!(blobs.head(&owner, "empty").unwrap().size, 0);
            assert_eq!(read_all(blobs.get(&owner, "empty", None).unwrap()), b"");
        }

        #[test]
        fn large_bodies_go_up_in_parts() {
            let Some((blobs, owner)) = setup("multipart") else {
                return;
            };
            let size = 20 * 1024 * 1024 + 123;
            let mut expected = Sha256::new();
            io::copy(&mut noise(size), &mut expected).unwrap();
            let expected = expected.finalize();

            let written = blobs
                .put(
                    &owner,
                    "big.bin",
                    "application/octet-stream",
                    &WriteCondition::Always,
                    &mut noise(size),
                )
                .unwrap();
            assert_eq!(written.info.size, size as u64);
            // A multipart ETag ends in the number of parts.
            assert!(written.info.etag.ends_with("-3\""), "{}", written.info.etag);

            let download = blobs.get(&owner, "big.bin", None).unwrap();
            assert_eq!(download.info.size, size as u64);
            assert_eq!(download.info.etag, written.info.etag);
            let mut actual = Sha256::new();
            io::copy(&mut { download.body }, &mut actual).unwrap();
            assert_eq!(actual.finalize(), expected);

            // Exactly one part's worth is still a single PutObject.
            let written = blobs
                .put(
                    &owner,
                    "one.bin",
                    "application/octet-stream",
                    &WriteCondition::Always,
                    &mut noise(PART_SIZE),
                )
                .unwrap();
            assert_eq!(written.info.size, PART_SIZE as u64);
            assert!(!written.info.etag.contains('-'), "{}", written.info.etag);
            // One byte more is two parts.
            let written = blobs
                .put(
                    &owner,
                    "two.bin",
                    "application/octet-stream",
                    &WriteCondition::Always,
                    &mut noise(PART_SIZE + 1),
                )
                .unwrap();
            assert!(written.info.etag.ends_with("-2\""), "{}", written.info.etag);
            assert_eq!(
                blobs.head(&owner, "two.bin").unwrap().size,
                PART_SIZE as u64 + 1
            );
        }

        #[test]
        fn a_failing_body_leaves_nothing_behind() {
            let Some((blobs, owner)) = setup("body-error") else {
                return;
            };
            // Fails after two and a half parts, mid multipart upload.
            let mut failing = noise(2 * PART_SIZE + PART_SIZE / 2).chain(Failing);
            let err = blobs
                .put(
                    &owner,
                    "broken",
                    "text/plain",
                    &WriteCondition::Always,
                    &mut failing,
                )
                .unwrap_err();
            match err {
                BlobError::Body(err) => assert_eq!(err.to_string(), "client went away"),
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                blobs.head(&owner, "broken"),
                Err(BlobError::NotFound)
            ));
            // And within the first part, before any upload starts.
            let err = blobs
                .put(
                    &owner,
                    "broken",
                    "text/plain",
                    &WriteCondition::Always,
                    &mut noise(10).chain(Failing),
                )
                .unwrap_err();
            assert!(matches!(err, BlobError::Body(_)), "{err:?}");
            assert!(matches!(
                blobs.head(&owner, "broken"),
                Err(BlobError::NotFound)
            ));
        }

        struct Failing;

        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::TimedOut, "client went away"))
            }
        }

        #[test]
        fn ranges() {
            let Some((blobs, owner)) = setup("ranges") else {
                return;
            };
            let bytes: Vec<u8> = (0..100).collect();
            let written = put(&blobs, &owner, "r", &bytes);
            let cases = [
                (
                    ByteRange::From {
                        first: 10,
                        last: Some(19),
                    },
                    (10, 19),
                ),
                (
                    ByteRange::From {
                        first: 95,
                        last: None,
                    },
                    (95, 99),
                ),
                (
                    ByteRange::From {
                        first: 90,
                        last: Some(1000),
                    },
                    (90, 99),
                ),
                (ByteRange::Suffix(5), (95, 99)),
                (ByteRange::Suffix(500), (0, 99)),
            ];
            for (range, (first, last)) in cases {
                let download = blobs.get(&owner, "r", Some(range)).unwrap();
                assert_eq!(download.range, Some((first, last)), "{range:?}");
                assert_eq!(download.info.size, 100);
                assert_eq!(download.info.etag, written.info.etag);
                let expected = &bytes[first as usize..=last as usize];
                assert_eq!(read_all(download), expected, "{range:?}");
            }
            for range in [
                ByteRange::From {
                    first: 100,
                    last: None,
                },
                ByteRange::From {
                    first: 500,
                    last: Some(600),
                },
            ] {
                match blobs.get(&owner, "r", Some(range)) {
                    Err(BlobError::RangeNotSatisfiable { size }) => assert_eq!(size, 100),
                    other => panic!("{range:?}: {:?}", other.map(|d| d.range)),
                }
            }
            assert!(matches!(
                blobs.get(&owner, "missing", Some(ByteRange::Suffix(1))),
                Err(BlobError::NotFound)
            ));
        }

        #[test]
        fn write_conditions() {
            let Some((blobs, owner)) = setup("conditions") else {
                return;
            };
            let first = put_if(&blobs, &owner, "c", &WriteCondition::Absent, b"1").unwrap();
            assert!(first.created);
            assert!(matches!(
                put_if(&blobs, &owner, "c", &WriteCondition::Absent, b"2"),
                Err(BlobError::PreconditionFailed)
            ));
            let wrong = WriteCondition::Matches(vec!["\"nope\"".to_owned()]);
            assert!(matches!(
                put_if(&blobs, &owner, "c", &wrong, b"2"),
                Err(BlobError::PreconditionFailed)
            ));
            let right =
                WriteCondition::Matches(vec!["\"nope\"".to_owned(), first.info.etag.clone()]);
            let second = put_if(&blobs, &owner, "c", &right, b"2").unwrap();
            assert!(!second.created);
            assert_ne!(second.info.etag, first.info.etag);
            assert!(matches!(
                put_if(&blobs, &owner, "c", &right, b"3"),
                Err(BlobError::PreconditionFailed)
            ));
            let any = WriteCondition::Matches(vec!["*".to_owned()]);
            assert!(matches!(
                put_if(&blobs, &owner, "absent", &any, b"3"),
                Err(BlobError::PreconditionFailed)
            ));
            assert_eq!(read_all(blobs.get(&owner, "c", None).unwrap()), b"2");
        }

        /// What the store itself does with the conditional headers wren
        /// repeats to it, skipping wren's own HEAD check. Stores differ
        /// (Garage ignores them); either way they must not break a write.
        #[test]
        fn the_store_takes_conditional_headers() {
            let Some((blobs, owner)) = setup("store-conditions") else {
                return;
            };
            put(&blobs, &owner, "c", b"1");
            let target = blobs.target(&owner).unwrap();
            let object = blobs.object_key(&owner, "c").unwrap();
            for (guard, size) in [
                (("if-none-match", "*"), 5),
                (("if-match", "\"0123456789abcdef\""), 5),
                (("if-none-match", "*"), PART_SIZE + 5),
            ] {
                let result = blobs.upload(
                    &target,
                    &object,
                    "text/plain",
                    Some(guard),
                    &mut noise(size),
                );
                match result {
                    Ok(_) => eprintln!("the store ignored {guard:?} ({size} bytes)"),
                    Err(BlobError::PreconditionFailed) => {
                        eprintln!("the store enforced {guard:?} ({size} bytes)")
                    }
                    Err(other) => panic!("{guard:?}, {size} bytes: {other:?}"),
                }
            }
        }

        #[test]
        fn delete_then_gone() {
            let Some((blobs, owner)) = setup("delete") else {
                return;
            };
            put(&blobs, &owner, "d/x", b"x");
            blobs.delete(&owner, "d/x").unwrap();
            assert!(matches!(
                blobs.head(&owner, "d/x"),
                Err(BlobError::NotFound)
            ));
            assert!(matches!(
                blobs.get(&owner, "d/x", None),
                Err(BlobError::NotFound)
            ));
            assert!(matches!(
                blobs.delete(&owner, "d/x"),
                Err(BlobError::NotFound)
            ));
            assert!(blobs.list(&owner, "", None, 10).unwrap().objects.is_empty());
        }

        #[test]
        fn listing_pages() {
            let Some((blobs, owner)) = setup("list") else {
                return;
            };
            for key in ["a/1", "a/2", "a/3", "a/4", "a/5", "b/1", "a0"] {
                put(&blobs, &owner, key, key.as_bytes());
            }
            // Another account's files never show.
            let other = Owner {
                namespace: "an".to_owned(),
                credentials: None,
            };
            put(&blobs, &other, "n/1", b"x");

            let page = blobs.list(&owner, "a/", None, 2).unwrap();
            assert_eq!(keys(&page), ["a/1", "a/2"]);
            assert!(page.truncated);
            assert_eq!(page.objects[0].content_type, "text/plain");
            assert_eq!(page.objects[0].size, 3);
            let page = blobs.list(&owner, "a/", Some("a/2"), 2).unwrap();
            assert_eq!(keys(&page), ["a/3", "a/4"]);
            assert!(page.truncated);
            let page = blobs.list(&owner, "a/", Some("a/4"), 2).unwrap();
            assert_eq!(keys(&page), ["a/5"]);
            assert!(!page.truncated);
            let page = blobs.list(&owner, "", None, 100).unwrap();
            assert_eq!(
                keys(&page),
                ["a/1", "a/2", "a/3", "a/4", "a/5", "a0", "b/1"]
            );
            assert!(!page.truncated);
            let page = blobs.list(&owner, "", Some("a0"), 100).unwrap();
            assert_eq!(keys(&page), ["b/1"]);
            let page = blobs.list(&owner, "", None, 0).unwrap();
            assert!(page.objects.is_empty() && page.truncated);
            let page = blobs.list(&owner, "zzz", None, 0).unwrap();
            assert!(page.objects.is_empty() && !page.truncated);
            assert_eq!(keys(&blobs.list(&other, "", None, 10).unwrap()), ["n/1"]);

            // Pages longer than the HEADs in flight keep their order.
            let many: Vec<String> = (0..30).map(|n| format!("c/{n:02}")).collect();
            for key in &many {
                put(&blobs, &owner, key, b"c");
            }
            let page = blobs.list(&owner, "c/", None, 1000).unwrap();
            assert_eq!(keys(&page), many);
            assert!(!page.truncated);
        }

        #[test]
        fn refused_credentials() {
            let Some(config) = config("refused") else {
                return;
            };
            let blobs = S3Blobs::new(&config).unwrap();
            let key_id = config.access_key_id.clone().unwrap();
            let wrong_secret = UserCredentials {
                access_key_id: key_id,
                secret_access_key: "0".repeat(64),
                bucket: None,
            };
            let unknown_key = UserCredentials {
                access_key_id: "GK000000000000000000000000".to_owned(),
                secret_access_key: "0".repeat(64),
                bucket: None,
            };
            for credentials in [wrong_secret, unknown_key] {
                match blobs.check_credentials(&credentials) {
                    Err(BlobError::Credentials(message)) => eprintln!("refused: {message}"),
                    other => panic!("{other:?}"),
                }
                let owner = Owner {
                    namespace: "ann".to_owned(),
                    credentials: Some(credentials),
                };
                let err = put_if(&blobs, &owner, "k", &WriteCondition::Always, b"x").unwrap_err();
                assert!(matches!(err, BlobError::Credentials(_)), "{err:?}");
                let err = blobs.get(&owner, "k", None).err();
                assert!(matches!(err, Some(BlobError::Credentials(_))), "{err:?}");
                let err = blobs.list(&owner, "", None, 10).unwrap_err();
                assert!(matches!(err, BlobError::Credentials(_)), "{err:?}");
            }

            // The server's own keys refused are the server's problem.
            let mut broken = config.clone();
            broken.secret_access_key = Some("0".repeat(64));
            let broken = S3Blobs::new(&broken).unwrap();
            let owner = Owner {
                namespace: "ann".to_owned(),
                credentials: None,
            };
            let err = put_if(&broken, &owner, "k", &WriteCondition::Always, b"x").unwrap_err();
            assert!(matches!(err, BlobError::Upstream(_)), "{err:?}");

            // A store that cannot be reached is not the account's fault.
            let mut away = config;
            away.endpoint = "http://127.0.0.1:9".to_owned();
            let away = S3Blobs::new(&away).unwrap();
            let err = away
                .check_credentials(&UserCredentials {
                    access_key_id: "id".to_owned(),
                    secret_access_key: "secret".to_owned(),
                    bucket: Some("b".to_owned()),
                })
                .unwrap_err();
            assert!(matches!(err, BlobError::Upstream(_)), "{err:?}");
        }

        #[test]
        fn accounts_with_their_own_keys() {
            let Some((blobs, server_owner)) = setup("own-keys") else {
                return;
            };
            let (Some(key_id), Some(secret)) = (
                var("WREN_TEST_USER_KEY_ID"),
                var("WREN_TEST_USER_KEY_SECRET"),
            ) else {
                skip("accounts_with_their_own_keys", "WREN_TEST_USER_KEY_ID");
                return;
            };
            let bucket = var("WREN_TEST_USER_BUCKET");
            let credentials = UserCredentials {
                access_key_id: key_id,
                secret_access_key: secret,
                bucket: bucket.clone(),
            };
            blobs.check_credentials(&credentials).unwrap();
            let owner = Owner {
                namespace: "ann".to_owned(),
                credentials: Some(credentials.clone()),
            };
            let written = put(&blobs, &owner, "mine.txt", b"own keys");
            assert!(written.created);
            assert_eq!(
                read_all(blobs.get(&owner, "mine.txt", None).unwrap()),
                b"own keys"
            );
            assert_eq!(
                keys(&blobs.list(&owner, "", None, 10).unwrap()),
                ["mine.txt"]
            );
            let server_bucket = blobs.bucket.clone().unwrap_or_default();
            let expected = bucket.clone().unwrap_or_else(|| server_bucket.clone());
            assert!(
                blobs
                    .location(&owner, "mine.txt")
                    .starts_with(&format!("s3://{expected}/"))
            );

            // Missing bucket: refused, with the store's reason.
            let mut nowhere = credentials.clone();
            nowhere.bucket = Some("no-such-bucket-for-wren".to_owned());
            match blobs.check_credentials(&nowhere) {
                Err(BlobError::Credentials(message)) => eprintln!("refused: {message}"),
                other => panic!("{other:?}"),
            }
            let lost = Owner {
                namespace: "ann".to_owned(),
                credentials: Some(nowhere),
            };
            let err = put_if(&blobs, &lost, "k", &WriteCondition::Always, b"x").unwrap_err();
            assert!(matches!(err, BlobError::Credentials(_)), "{err:?}");

            if bucket.as_ref().is_some_and(|own| *own != server_bucket) {
                // The account's bucket is not the server's.
                assert!(matches!(
                    blobs.head(&server_owner, "mine.txt"),
                    Err(BlobError::NotFound)
                ));
                // Keys allowed only on their own bucket, used without naming
                // it, land on the server's bucket and are refused there.
                let mut unnamed = credentials;
                unnamed.bucket = None;
                match blobs.check_credentials(&unnamed) {
                    Err(BlobError::Credentials(message)) => eprintln!("refused: {message}"),
                    other => panic!("{other:?}"),
                }
            }
        }
    }
}

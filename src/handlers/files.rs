//! Per-account files (the cloud storage seed's `/api/file/<key>` routes and
//! a paged listing) and image uploads (the BeCode challenge's `/img/add`),
//! over the storage backend in `blob`.
//!
//! Every route needs a signed-in account, or an API key with the `files`
//! scope acting for its account, and sees only that account's namespace.
//! Bodies stream from the client to the backend and back. Uploads go
//! through `Storage::upload`, which holds them to the account's quota and
//! the disk's floor (`507`), before their first byte when their length is
//! declared; `GET /api/v1/account` shows the figures.

use std::io::{self, Cursor, Read};
use std::time::UNIX_EPOCH;

use serde_json::{Value, json};

use crate::App;
use crate::blob::{
    ByteRange, MAX_KEY_BYTES, ObjectInfo, Owner, UserCredentials, WriteCondition, check_key,
};
use crate::date::http_date;
use crate::handlers::session;
use crate::http::body::Limited;
use crate::http::fields::multipart_body;
use crate::http::request::media_type;
use crate::http::{ApiError, Fields, Request, Response};
use crate::http::{Problem, Problems};
use crate::store::Account;

/// Longest `Content-Type` kept with an object.
pub const MAX_CONTENT_TYPE_BYTES: usize = 255;
/// Most objects in one page of `GET /api/v1/files`, and the default.
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;
/// Room for a multipart envelope around an image, on top of its own limit.
pub const MULTIPART_OVERHEAD: u64 = 64 * 1024;
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The caller's account's namespace (the signed-in account's, or a files
/// key's) and, if it brought them, its S3 keys.
fn owner(app: &App, request: &Request<'_>) -> Result<Owner, ApiError> {
    owner_of(app, session::files_account(app, request)?)
}

/// The namespace and, if it brought them, the S3 keys of `account`.
fn owner_of(app: &App, account: Account) -> Result<Owner, ApiError> {
    let credentials = match account.s3 {
        None => None,
        Some(s3) => {
            let secret = app
                .sealer
                .open(&account.username, &s3.sealed_secret)
                .and_then(|plain| String::from_utf8(plain).map_err(|_| "not UTF-8".to_owned()))
                .map_err(|err| {
                    ApiError::new(503, "this account's S3 keys cannot be read now").with_cause(err)
                })?;
            Some(UserCredentials {
                access_key_id: s3.access_key_id,
                secret_access_key: secret,
                bucket: s3.bucket,
            })
        }
    };
    Ok(Owner {
        namespace: account.username,
        credentials,
    })
}

/// The `{key}` path parameter, checked.
fn key_param(request: &Request<'_>) -> Result<String, ApiError> {
    let key = request.param_str("key")?;
    check_key(key).map_err(|rule| {
        ApiError::bad_request(format!("invalid key: {rule}")).with_code("invalid_key")
    })?;
    Ok(key.to_owned())
}

/// `PUT /api/file/{key}`: stores the raw body under the key.
pub fn put_file(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let owner = owner(app, request)?;
    let key = key_param(request)?;
    let content_type = content_type(request)?;
    let condition = write_condition(request)?;
    let body = request.body();
    let upload = app.storage.upload(&owner, &key, body.content_length())?;
    let first = read_prefix(body, 1)?;
    if first.is_empty() {
        return Err(file_not_specified());
    }
    let written = upload.put(
        &content_type,
        &condition,
        &mut Cursor::new(first).chain(body),
    )?;
    app.metrics.bytes_stored(written.info.size);
    let status = if written.created { 201 } else { 200 };
    Ok(Response::json(
        status,
        &json!({
            "status_code": status,
            "message": format!("File '{key}' uploaded successfully"),
            "key": key,
            "size": written.info.size,
            "etag": written.info.etag,
        }),
    )
    .with_header("ETag", written.info.etag))
}

/// `GET` (and `HEAD`) `/api/file/{key}`: the bytes, whole or one range.
pub fn get_file(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let owner = owner(app, request)?;
    let key = key_param(request)?;
    serve(app, &owner, &key, request)
}

/// Sends an object: `304` when the client's copy is current, `206` for a
/// satisfiable range (unless `If-Range` names another version), the whole
/// object otherwise.
fn serve(app: &App, owner: &Owner, key: &str, request: &Request<'_>) -> Result<Response, ApiError> {
    let blobs = app.storage.of(owner)?;
    let if_range = request.header("if-range").map(str::trim);
    // Conditions are judged on the object's details before its bytes are
    // opened: a 304 costs no download, and beats a bad range (RFC 9110
    // §13.2.2).
    let if_modified_since = request
        .header("if-modified-since")
        .and_then(crate::date::parse_http_date);
    let current = if request.method() == "HEAD"
        || if_range.is_some()
        || if_modified_since.is_some()
        || request.header("if-none-match").is_some()
    {
        Some(blobs.head(owner, key)?)
    } else {
        None
    };
    if let Some(info) = &current {
        // If-Modified-Since counts only without If-None-Match (RFC 9110
        // §13.1.3), to the second Last-Modified is written in.
        let unmodified = match request.header("if-none-match") {
            Some(_) => request.if_none_match(&info.etag),
            None => if_modified_since
                .is_some_and(|since| unix_seconds(info.modified) <= unix_seconds(since)),
        };
        if unmodified {
            return Ok(object_headers(Response::new(304), info));
        }
        if request.method() == "HEAD" {
            let len = info.size;
            return Ok(object_headers(
                Response::stream(200, Box::new(io::empty()), Some(len)),
                info,
            ));
        }
    }
    let mut range = request.header("range").and_then(ByteRange::parse);
    if let (Some(validator), Some(info)) = (if_range, &current)
        && !same_version(validator, info)
    {
        range = None;
    }
    let mut download = blobs.get(owner, key, range)?;
    // Replaced between the HEAD and the GET: a range of the new version
    // would splice two versions together in the client's copy.
    if download.range.is_some()
        && current
            .as_ref()
            .is_some_and(|info| info.etag != download.info.etag)
    {
        download = blobs.get(owner, key, None)?;
    }
    // Counted as answered: a client that leaves early got fewer.
    let response = match download.range {
        Some((first, last)) => {
            app.metrics.bytes_served(last - first + 1);
            Response::stream(206, download.body, Some(last - first + 1)).with_header(
                "Content-Range",
                format!("bytes {first}-{last}/{}", download.info.size),
            )
        }
        None => {
            app.metrics.bytes_served(download.info.size);
            Response::stream(200, download.body, Some(download.info.size))
        }
    };
    Ok(object_headers(response, &download.info))
}

/// Whether an `If-Range` validator names this version: its strong ETag or
/// its exact `Last-Modified` date.
fn same_version(validator: &str, info: &ObjectInfo) -> bool {
    validator == info.etag || validator == http_date(unix_seconds(info.modified))
}

fn unix_seconds(time: std::time::SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The object's own headers. Files are served from the API's origin with
/// whatever type the uploader gave, so the browser is told not to sniff
/// and not to run anything in them (`text/html`, `image/svg+xml`).
fn object_headers(response: Response, info: &ObjectInfo) -> Response {
    response
        .with_header("Content-Type", info.content_type.clone())
        .with_header("ETag", info.etag.clone())
        .with_header("Last-Modified", http_date(unix_seconds(info.modified)))
        .with_header("Accept-Ranges", "bytes")
        // An account's own file: revalidated by its ETag at each use, and
        // kept out of shared caches.
        .with_header("Cache-Control", "private, no-cache")
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Content-Security-Policy", "sandbox")
}

/// `DELETE /api/file/{key}`.
pub fn delete_file(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let owner = owner(app, request)?;
    let key = key_param(request)?;
    app.storage.delete(&owner, &key)?;
    Ok(Response::json(
        200,
        &json!({"status_code": 200, "message": format!("File '{key}' deleted")}),
    ))
}

/// `GET /api/files_keys`: the seed's answer, every key as one JSON array,
/// streamed a page at a time so that memory stays bounded by one page
/// however many files an account has.
pub fn list_keys(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let owner = owner(app, request)?;
    let blobs = app.storage.of(&owner)?;
    let listing = KeyListing::start(blobs, owner, MAX_PAGE)?;
    // An account's listing changes with every upload: no cache keeps it.
    Ok(Response::stream(200, Box::new(listing), None)
        .with_header("Content-Type", "application/json")
        .with_header("Cache-Control", "no-store"))
}

/// The JSON array of an account's keys, produced page by page as it is read.
struct KeyListing {
    blobs: std::sync::Arc<dyn crate::blob::Blobs>,
    owner: Owner,
    /// Keys asked for at a time.
    page: usize,
    /// The last key listed so far.
    after: Option<String>,
    buffer: Vec<u8>,
    /// How much of `buffer` has been read.
    sent: usize,
    done: bool,
}

impl KeyListing {
    /// Reads the first page here, so that a store that fails gets its
    /// status; a failure later can only cut the stream short.
    fn start(
        blobs: std::sync::Arc<dyn crate::blob::Blobs>,
        owner: Owner,
        page: usize,
    ) -> Result<KeyListing, ApiError> {
        let first = blobs.list_keys(&owner, None, page)?;
        let mut listing = KeyListing {
            blobs,
            owner,
            page,
            after: None,
            buffer: vec![b'['],
            sent: 0,
            done: false,
        };
        listing.add(first);
        Ok(listing)
    }

    fn add(&mut self, page: crate::blob::KeyPage) {
        for key in page.keys {
            if self.after.is_some() {
                self.buffer.push(b',');
            }
            // Strings always serialize.
            let _ = serde_json::to_writer(&mut self.buffer, &key);
            self.after = Some(key);
        }
        if !page.truncated {
            self.buffer.push(b']');
            self.done = true;
        }
    }
}

impl Read for KeyListing {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.sent == self.buffer.len() {
            if self.done {
                return Ok(0);
            }
            self.buffer.clear();
            self.sent = 0;
            let page = self
                .blobs
                .list_keys(&self.owner, self.after.as_deref(), self.page)
                .map_err(|err| io::Error::other(format!("listing keys failed: {err:?}")))?;
            self.add(page);
        }
        let n = out.len().min(self.buffer.len() - self.sent);
        out[..n].copy_from_slice(&self.buffer[self.sent..self.sent + n]);
        self.sent += n;
        Ok(n)
    }
}

/// `GET /api/v1/files?prefix=&limit=&after=`: one page of objects in key
/// order; `next_after` is the `after` of the next page, while there is one.
pub fn list_files(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let owner = owner(app, request)?;
    let query = Fields::from_query(request)?;
    let prefix = query.get("prefix").unwrap_or("");
    if prefix.len() > MAX_KEY_BYTES {
        let too_long = Problem::field("prefix", format!("must be at most {MAX_KEY_BYTES} bytes"));
        return Err(Problems::one(too_long).into_bad_request("invalid_query"));
    }
    let after = query.get("after").filter(|after| !after.is_empty());
    let limit = query.limit(DEFAULT_PAGE, MAX_PAGE)?;
    let page = app.storage.of(&owner)?.list(&owner, prefix, after, limit)?;
    let next_after = page
        .truncated
        .then(|| page.objects.last().map(|info| info.key.clone()))
        .flatten();
    let files: Vec<Value> = page.objects.iter().map(describe).collect();
    Ok(Response::json(
        200,
        &json!({"files": files, "truncated": page.truncated, "next_after": next_after}),
    )
    .with_header("Cache-Control", "no-store"))
}

fn describe(info: &ObjectInfo) -> Value {
    let modified = unix_seconds(info.modified);
    json!({
        "key": info.key,
        "size": info.size,
        "etag": info.etag,
        "content_type": info.content_type,
        "modified": crate::date::rfc3339_millis(modified, 0),
    })
}

/// The image formats wren stores, by the signature their bytes start with.
const IMAGE_TYPES: [(&str, &str); 4] = [
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
];

/// Whether `bytes` (the first few of a file) carry `media_type`'s signature.
fn has_signature(media_type: &str, bytes: &[u8]) -> bool {
    match media_type {
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(&[0xff, 0xd8, 0xff]),
        "image/gif" => bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a"),
        "image/webp" => bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
        _ => false,
    }
}

/// Bytes needed to check any signature.
const SIGNATURE_BYTES: usize = 12;

/// `POST /img/add`: a raw image body (`Content-Type: image/png`, jpeg, gif,
/// webp) or a multipart form with an `image` field.
pub fn add_image(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let owner = owner(app, request)?;
    let media_type = request.media_type();
    if media_type == "multipart/form-data" {
        return upload_image_form(app, &owner, request);
    }
    let limit = app.config.storage.max_image_size;
    let body = request.body();
    let declared = body.content_length();
    store_image(app, &owner, &media_type, body, limit, declared)
}

/// `POST /api/v1/images`: a multipart form with an `image` field.
pub fn upload_image(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let owner = owner(app, request)?;
    upload_image_form(app, &owner, request)
}

fn upload_image_form(
    app: &App,
    owner: &Owner,
    request: &mut Request<'_>,
) -> Result<Response, ApiError> {
    let mut form = multipart_body(request)?;
    while let Some(mut part) = form.next_part().map_err(ApiError::from_body_read)? {
        if part.head.name != "image" {
            // Other fields are skipped, read through a small buffer.
            io::copy(&mut part, &mut io::sink()).map_err(ApiError::from_body_read)?;
            continue;
        }
        let declared = media_type(part.head.content_type.as_deref().unwrap_or(""));
        let limit = app.config.storage.max_image_size;
        // A part's length is not declared: it is counted as it streams.
        return store_image(app, owner, &declared, &mut part, limit, None);
    }
    // No image to store, as with an empty body ("File not specified"): a
    // 400 on both image routes, which share this reader.
    let missing = Problem::field("image", "is missing from the form");
    Err(Problems::one(missing).into_bad_request("invalid_fields"))
}

/// Checks the type and signature, then stores the image under a random
/// name in the account's `images/` prefix. `size` is the body's declared
/// length, for a raw body.
fn store_image(
    app: &App,
    owner: &Owner,
    declared: &str,
    body: &mut dyn Read,
    limit: u64,
    size: Option<u64>,
) -> Result<Response, ApiError> {
    let Some((media_type, extension)) = IMAGE_TYPES.iter().find(|(t, _)| *t == declared) else {
        return Err(unsupported_image(&format!(
            "the Content-Type must be image/png, image/jpeg, image/gif or image/webp, not '{}'",
            crate::text::excerpt(declared, 100)
        )));
    };
    let mut random = [0u8; 16];
    getrandom::getrandom(&mut random).map_err(|err| {
        ApiError::new(503, "cannot name the image now")
            .with_cause(format!("no OS randomness: {err}"))
    })?;
    let id = format!("{}.{extension}", crate::hex::encode(&random));
    let key = format!("images/{id}");
    let upload = app.storage.upload(owner, &key, size)?;
    // A multipart part is not bounded by the whole body's limit.
    let mut body = Limited::new(body, limit);
    let first = read_prefix(&mut body, SIGNATURE_BYTES)?;
    if first.is_empty() {
        return Err(file_not_specified());
    }
    if !has_signature(media_type, &first) {
        return Err(unsupported_image(&format!(
            "the bytes are not a {extension} image: its signature is missing"
        )));
    }
    let blobs = app.storage.of(owner)?;
    let written = upload.put(
        media_type,
        &WriteCondition::Absent,
        &mut Cursor::new(first).chain(body),
    )?;
    app.metrics.bytes_stored(written.info.size);
    Ok(Response::json(
        201,
        &json!({
            "server_path": blobs.location(owner, &key),
            "id": id,
            "url": format!("/api/v1/images/{id}"),
        }),
    ))
}

/// `GET /api/v1/account`: the signed-in account, its role, and what its files use:
/// bytes and files stored, and its limits (`null` for none).
pub fn account(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let (_, account) = session::signed_in(app, request)?;
    let role = account.role;
    let owner = owner_of(app, account)?;
    let usage = app.storage.usage(&owner)?;
    let quota = app.storage.quota();
    Ok(Response::json(
        200,
        &json!({
            "login": owner.namespace,
            "role": role.as_str(),
            "bytes_used": usage.bytes,
            "files": usage.files,
            "quota": quota.bytes,
            "max_files": quota.files,
        }),
    )
    .with_header("Cache-Control", "no-store"))
}

/// `GET /api/v1/images/{id}`: the owner's image, with its content type.
pub fn get_image(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let owner = owner(app, request)?;
    let id = request.param_str("id")?;
    let valid = id.split_once('.').is_some_and(|(name, extension)| {
        name.len() == 32
            && name
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            && IMAGE_TYPES.iter().any(|(_, e)| *e == extension)
    });
    if !valid {
        return Err(ApiError::not_found("Not Found"));
    }
    let key = format!("images/{id}");
    serve(app, &owner, &key, request)
}

/// Up to `n` bytes from the start of `body` (fewer only at its end).
fn read_prefix(body: &mut dyn Read, n: usize) -> Result<Vec<u8>, ApiError> {
    let mut first = Vec::with_capacity(n);
    body.take(n as u64)
        .read_to_end(&mut first)
        .map_err(ApiError::from_body_read)?;
    Ok(first)
}

/// The request's `Content-Type`, kept with the object.
fn content_type(request: &Request<'_>) -> Result<String, ApiError> {
    let Some(value) = request.header("content-type").map(str::trim) else {
        return Ok(DEFAULT_CONTENT_TYPE.to_owned());
    };
    if value.is_empty() {
        return Ok(DEFAULT_CONTENT_TYPE.to_owned());
    }
    if value.len() > MAX_CONTENT_TYPE_BYTES || !value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(ApiError::bad_request(format!(
            "Content-Type must be printable ASCII of at most {MAX_CONTENT_TYPE_BYTES} bytes"
        )));
    }
    Ok(value.to_owned())
}

/// `If-None-Match: *` (create only) or `If-Match: "etag", …` (replace only
/// that version).
fn write_condition(request: &Request<'_>) -> Result<WriteCondition, ApiError> {
    if let Some(value) = request.header("if-none-match") {
        if value.trim() != "*" {
            return Err(ApiError::bad_request(
                "on PUT, If-None-Match may only be '*' (create the file only if it does not exist)",
            ));
        }
        return Ok(WriteCondition::Absent);
    }
    if let Some(value) = request.header("if-match") {
        let tags: Vec<String> = value
            .split(',')
            .map(|tag| tag.trim().to_owned())
            .filter(|tag| !tag.is_empty())
            .collect();
        // Weak tags never match for writes (RFC 9110 §13.1.1).
        return Ok(WriteCondition::Matches(
            tags.into_iter()
                .filter(|tag| !tag.starts_with("W/"))
                .collect(),
        ));
    }
    Ok(WriteCondition::Always)
}

fn file_not_specified() -> ApiError {
    ApiError::bad_request("File not specified").with_code("empty_body")
}

fn unsupported_image(message: &str) -> ApiError {
    ApiError::new(415, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::Blobs;

    #[test]
    fn key_listings_stream_page_by_page() {
        let root = std::env::temp_dir().join(format!("wren-key-listing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let blobs = std::sync::Arc::new(crate::blob::local::LocalBlobs::open(&root).unwrap());
        let owner = Owner {
            namespace: "ann".into(),
            credentials: None,
        };
        let listing = |blobs: &std::sync::Arc<crate::blob::local::LocalBlobs>| {
            let mut listing = KeyListing::start(blobs.clone(), owner.clone(), 2).unwrap();
            let mut text = String::new();
            listing.read_to_string(&mut text).unwrap();
            text
        };
        assert_eq!(listing(&blobs), "[]");
        for key in ["b", "a\"quoted\"", "c/d", "e", "f"] {
            blobs
                .put(
                    &owner,
                    key,
                    "text/plain",
                    &WriteCondition::Always,
                    &mut &b"x"[..],
                    &|_| {},
                )
                .unwrap();
        }
        let keys: Vec<String> = serde_json::from_str(&listing(&blobs)).unwrap();
        assert_eq!(keys, ["a\"quoted\"", "b", "c/d", "e", "f"]);
        drop(blobs);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn image_signatures() {
        assert!(has_signature("image/png", b"\x89PNG\r\n\x1a\n rest"));
        assert!(!has_signature("image/png", b"PNG but not really"));
        assert!(has_signature("image/jpeg", &[0xff, 0xd8, 0xff, 0xe0]));
        assert!(has_signature("image/gif", b"GIF89a..."));
        assert!(!has_signature("image/gif", b"GIF90a..."));
        assert!(has_signature("image/webp", b"RIFF\x10\0\0\0WEBPVP8 "));
        assert!(!has_signature("image/webp", b"RIFF\x10\0\0\0WAVE"));
        assert!(!has_signature("text/plain", b"\x89PNG\r\n\x1a\n"));
        assert!(!has_signature("image/png", b""));
    }

    #[test]
    fn write_conditions_from_headers() {
        let condition = |name: &str, value: &str| {
            write_condition(&Request::new("PUT", "/api/file/k").with_header(name, value))
        };
        assert_eq!(
            write_condition(&Request::new("PUT", "/k")).unwrap(),
            WriteCondition::Always
        );
        assert_eq!(
            condition("If-None-Match", "*").unwrap(),
            WriteCondition::Absent
        );
        assert_eq!(
            condition("If-None-Match", "\"abc\"").unwrap_err().status(),
            400
        );
        assert_eq!(
            condition("If-Match", "\"a\", W/\"b\", \"c\"").unwrap(),
            WriteCondition::Matches(vec!["\"a\"".into(), "\"c\"".into()])
        );
    }

    #[test]
    fn content_types_are_kept_when_sane() {
        let content_type_of = |value: &str| {
            content_type(&Request::new("PUT", "/k").with_header("Content-Type", value))
        };
        assert_eq!(
            content_type(&Request::new("PUT", "/k")).unwrap(),
            DEFAULT_CONTENT_TYPE
        );
        assert_eq!(
            content_type_of("text/csv; charset=utf-8").unwrap(),
            "text/csv; charset=utf-8"
        );
        assert_eq!(content_type_of("").unwrap(), DEFAULT_CONTENT_TYPE);
        assert!(content_type_of("text/\u{7f}").is_err());
        assert!(content_type_of(&"a".repeat(MAX_CONTENT_TYPE_BYTES + 1)).is_err());
    }
}

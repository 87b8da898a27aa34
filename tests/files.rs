//! Per-account files and images over real sockets, on both storage backends.
//!
//! Every scenario is a function taking a [`Backend`]; the macro at the end
//! turns each into `local::NAME` and `s3::NAME` tests. The S3 half runs
//! against a real Garage node: `scripts/with-garage.sh cargo test …` starts
//! one and exports its endpoint and keys. Without `S3_ENDPOINT` the S3 tests
//! print a skip line and pass, unless `WREN_TEST_S3=required` (which the
//! script sets), when they fail: a run through the script never skips them.
//!
//! Each S3 server gets its own `--s3-prefix`, so tests running at once never
//! see each other's objects in the shared bucket.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use common::{Response, Server, read_head, read_response};

const MIB: u64 = 1024 * 1024;
const PASSWORD: &str = "correct horse";

/// A valid 1x1 RGB PNG (signature, IHDR, one zlib IDAT, IEND, real CRCs).
const PNG: [u8; 69] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53,
    0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xf8, 0xcf, 0xc0, 0x00,
    0x00, 0x03, 0x01, 0x01, 0x00, 0xf7, 0x03, 0x41, 0x43, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

/// A valid baseline 1x1 grey JPEG: SOI, DQT, SOF0, a one-code DC and AC
/// Huffman table, SOS, one block (DC 0, EOB), EOI.
const JPEG: [u8; 141] = {
    let head: [u8; 7] = [0xff, 0xd8, 0xff, 0xdb, 0x00, 0x43, 0x00];
    let tail: [u8; 70] = [
        0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00, 0x01, 0x00, 0x01, 0x01, 0x01, 0x11, 0x00, // SOF0
        0xff, 0xc4, 0x00, 0x14, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0x00, // DHT DC 0
        0xff, 0xc4, 0x00, 0x14, 0x10, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0x00, // DHT AC 0
        0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00, // SOS
        0x3f, 0xff, 0xd9, // the block, EOI
    ];
    let mut out = [1u8; 141]; // the 64 quantizer entries are all 1
    let mut i = 0;
    while i < head.len() {
        out[i] = head[i];
        i += 1;
    }
    let mut j = 0;
    while j < tail.len() {
        out[7 + 64 + j] = tail[j];
        j += 1;
    }
    out
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Local,
    S3,
}

/// The Garage node the S3 tests use, from the environment.
#[derive(Debug, Clone)]
struct S3Env {
    endpoint: String,
    region: String,
    bucket: String,
    access_key_id: String,
    secret_access_key: String,
}

/// A second key, for accounts that bring their own S3 keys.
struct UserKey {
    id: String,
    secret: String,
    bucket: Option<String>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Skips (prints why, returns `None`) or, under `WREN_TEST_S3=required`,
/// fails.
fn skip<T>(why: &str) -> Option<T> {
    if var("WREN_TEST_S3").as_deref() == Some("required") {
        panic!("WREN_TEST_S3=required, but {why}; run through scripts/with-garage.sh");
    }
    println!("skipped: {why} (run through scripts/with-garage.sh to test against Garage)");
    None
}

fn s3_env() -> Option<S3Env> {
    let Some(endpoint) = var("S3_ENDPOINT") else {
        return skip("S3_ENDPOINT is not set");
    };
    let need =
        |name: &str| var(name).unwrap_or_else(|| panic!("S3_ENDPOINT is set but {name} is not"));
    Some(S3Env {
        endpoint,
        region: var("S3_REGION").unwrap_or_else(|| "us-east-1".into()),
        bucket: need("S3_BUCKET"),
        access_key_id: need("S3_ACCESS_KEY_ID"),
        secret_access_key: need("S3_SECRET_ACCESS_KEY"),
    })
}

fn user_key() -> Option<UserKey> {
    let (Some(id), Some(secret)) = (
        var("WREN_TEST_USER_KEY_ID"),
        var("WREN_TEST_USER_KEY_SECRET"),
    ) else {
        return skip("WREN_TEST_USER_KEY_ID / WREN_TEST_USER_KEY_SECRET are not set");
    };
    Some(UserKey {
        id,
        secret,
        bucket: var("WREN_TEST_USER_BUCKET"),
    })
}

/// A prefix no other test (or earlier run) uses.
fn unique_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "wren-test-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst),
        nanos % 1_000_000_000
    )
}

/// How a test server is set up beyond its backend.
#[derive(Default)]
struct Options<'a> {
    /// Configure the S3 endpoint even for the local backend, so accounts may
    /// bring their own keys.
    user_keys: bool,
    extra: &'a [&'a str],
}

/// A wren server on one backend, with what it takes to restart it on the
/// same data (folder and S3 prefix).
struct Wren {
    server: Server,
    backend: Backend,
    data_dir: PathBuf,
    args: Vec<String>,
    s3: Option<S3Env>,
    prefix: String,
}

/// Variables the server would otherwise pick up from the test's environment
/// (with-garage.sh exports several); each server gets exactly its flags.
const SCRUBBED_ENV: &[&str] = &[
    "S3_ENDPOINT",
    "S3_REGION",
    "S3_BUCKET",
    "S3_PREFIX",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "WREN_S3_ENDPOINT",
    "WREN_S3_REGION",
    "WREN_S3_BUCKET",
    "WREN_S3_PREFIX",
    "WREN_S3_ADDRESSING",
    "WREN_S3_ACCESS_KEY_ID",
    "WREN_S3_SECRET_ACCESS_KEY",
    "WREN_STORAGE",
    "WREN_MAX_OBJECT_SIZE",
    "WREN_MAX_IMAGE_SIZE",
    "WREN_MAX_BODY",
    "WREN_ACCOUNT_QUOTA",
    "WREN_ACCOUNT_MAX_FILES",
    "WREN_MIN_FREE_DISK",
];

impl Wren {
    /// `None` when the test is skipped (S3 without an endpoint).
    fn start(backend: Backend) -> Option<Wren> {
        Wren::start_opts(backend, Options::default())
    }

    /// A server on `backend` with `extra` flags.
    fn start_with(backend: Backend, extra: &[&str]) -> Option<Wren> {
        Wren::start_opts(
            backend,
            Options {
                extra,
                ..Options::default()
            },
        )
    }

    fn start_opts(backend: Backend, options: Options<'_>) -> Option<Wren> {
        let s3 = match (backend, options.user_keys) {
            (Backend::Local, false) => None,
            _ => Some(s3_env()?),
        };
        let data_dir = common::temp_dir("files");
        let prefix = unique_prefix();
        let mut args: Vec<String> = vec!["--data-dir".into(), data_dir.display().to_string()];
        let storage = match backend {
            Backend::Local => "local",
            Backend::S3 => "s3",
        };
        args.extend(["--storage".into(), storage.into()]);
        if let Some(s3) = &s3 {
            for (flag, value) in [
                ("--s3-endpoint", &s3.endpoint),
                ("--s3-region", &s3.region),
                ("--s3-bucket", &s3.bucket),
                ("--s3-prefix", &prefix),
            ] {
                args.extend([flag.to_owned(), value.clone()]);
            }
        }
        args.extend(options.extra.iter().map(|a| a.to_string()));
        let server = Wren::launch(backend, &args, s3.as_ref());
        Some(Wren {
            server,
            backend,
            data_dir,
            args,
            s3,
            prefix,
        })
    }

    fn launch(backend: Backend, args: &[String], s3: Option<&S3Env>) -> Server {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start_with(&args, |command: &mut Command| {
            for name in SCRUBBED_ENV {
                command.env_remove(name);
            }
            // Only --storage s3 gets the server's own keys: a local server
            // with an endpoint serves accounts' own keys alone.
            if let (Backend::S3, Some(s3)) = (backend, s3) {
                command
                    .env("S3_ACCESS_KEY_ID", &s3.access_key_id)
                    .env("S3_SECRET_ACCESS_KEY", &s3.secret_access_key);
            }
        })
    }

    /// Starts the server again on the same data folder and S3 prefix (after
    /// the old process is gone).
    fn restart(&mut self) {
        self.server = Wren::launch(self.backend, &self.args, self.s3.as_ref());
    }

    /// A new account, signed in.
    fn user(&self, login: &str) -> User<'_> {
        let body = json!({"login": login, "password": PASSWORD}).to_string();
        let created = self
            .server
            .post("/api/sign_up", "application/json", &body, "");
        assert_eq!(created.status, 201, "sign up {login}: {}", created.text());
        self.sign_in(login)
    }

    fn sign_in(&self, login: &str) -> User<'_> {
        let body = json!({"login": login, "password": PASSWORD}).to_string();
        let signed_in = self
            .server
            .post("/api/sign_in", "application/json", &body, "");
        assert_eq!(
            signed_in.status,
            200,
            "sign in {login}: {}",
            signed_in.text()
        );
        User {
            wren: self,
            token: Some(signed_in.json()["token"].as_str().unwrap().to_owned()),
        }
    }

    /// A client with no credentials at all.
    fn anonymous(&self) -> User<'_> {
        User {
            wren: self,
            token: None,
        }
    }

    /// The folder the local backend keeps `login`'s files in.
    fn account_folder(&self, login: &str) -> PathBuf {
        self.data_dir.join("files").join("accounts").join(login)
    }

    /// One request on a new connection.
    fn call(
        &self,
        method: &str,
        target: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut raw = head.into_bytes();
        raw.extend_from_slice(body.unwrap_or_default());
        let mut stream = self.server.connect();
        stream.write_all(&raw).unwrap();
        read_response(&mut BufReader::new(stream), method != "HEAD")
    }
}

/// A passing test leaves nothing behind: the server is stopped and its data
/// folder (which may hold hundreds of MiB) removed. A failing one keeps the
/// folder to look at.
impl Drop for Wren {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if self.server.is_running() {
            self.server.signal(libc::SIGKILL);
            self.server.wait_exit(Duration::from_secs(10));
        }
        let _ = fs::remove_dir_all(&self.data_dir);
    }
}

/// An account's (or no account's) view of the server.
struct User<'w> {
    wren: &'w Wren,
    token: Option<String>,
}

impl User<'_> {
    fn call(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        self.wren
            .call(method, target, self.token.as_deref(), headers, body)
    }

    fn put(&self, key: &str, content_type: Option<&str>, body: &[u8]) -> Response {
        self.put_with(key, content_type, &[], body)
    }

    fn put_with(
        &self,
        key: &str,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(content_type) = content_type {
            all.push(("Content-Type", content_type));
        }
        self.call("PUT", &file_url(key), &all, Some(body))
    }

    fn get(&self, key: &str) -> Response {
        self.call("GET", &file_url(key), &[], None)
    }

    fn get_with(&self, key: &str, headers: &[(&str, &str)]) -> Response {
        self.call("GET", &file_url(key), headers, None)
    }

    fn head(&self, key: &str) -> Response {
        self.call("HEAD", &file_url(key), &[], None)
    }

    fn delete(&self, key: &str) -> Response {
        self.call("DELETE", &file_url(key), &[], None)
    }

    fn keys(&self) -> Vec<String> {
        let listed = self.call("GET", "/api/files_keys", &[], None);
        assert_eq!(listed.status, 200, "{}", listed.text());
        assert_eq!(listed.header("cache-control"), Some("no-store"));
        serde_json::from_slice(&listed.body).unwrap()
    }

    fn list(&self, query: &str) -> Response {
        self.call("GET", &format!("/api/v1/files{query}"), &[], None)
    }

    /// Stores `body` and checks the answer; returns the ETag.
    fn store(&self, key: &str, body: &[u8]) -> String {
        let stored = self.put(key, Some("application/octet-stream"), body);
        assert!(
            stored.status == 201 || stored.status == 200,
            "PUT {key}: {} {}",
            stored.status,
            stored.text()
        );
        stored.header("etag").expect("ETag on PUT").to_owned()
    }

    fn post(&self, target: &str, content_type: Option<&str>, body: &[u8]) -> Response {
        let headers: Vec<(&str, &str)> = content_type
            .map(|t| ("Content-Type", t))
            .into_iter()
            .collect();
        self.call("POST", target, &headers, Some(body))
    }

    /// One upload on a new connection, with a Content-Length or chunked,
    /// its body written by another thread while this one reads the answer:
    /// a server that answers before reading all of it (a refusal) cannot
    /// stall the writer, and a write it cut short is no failure.
    fn upload(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        chunked: bool,
    ) -> Response {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if chunked {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        } else {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        }
        let stream = self.wren.server.connect();
        let mut writer = stream.try_clone().unwrap();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let _cut_short = writer.write_all(head.as_bytes()).and_then(|()| {
                    if !chunked {
                        return writer.write_all(body);
                    }
                    for chunk in body.chunks(64 * 1024) {
                        writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                        writer.write_all(chunk)?;
                        writer.write_all(b"\r\n")?;
                    }
                    writer.write_all(b"0\r\n\r\n")
                });
            });
            read_response(&mut BufReader::new(stream), true)
        })
    }

    /// `POST /img/add` of a raw PNG body through [`User::upload`].
    fn add_png(&self, png: &[u8]) -> Response {
        self.upload(
            "POST",
            "/img/add",
            &[("Content-Type", "image/png")],
            png,
            false,
        )
    }

    /// `PUT`s `body` to `key` through [`User::upload`].
    fn put_streamed(&self, key: &str, body: &[u8], chunked: bool) -> Response {
        self.upload("PUT", &file_url(key), &[], body, chunked)
    }

    /// `GET /api/v1/account`: (bytes used, files).
    fn usage(&self) -> (u64, u64) {
        let account = self.call("GET", "/api/v1/account", &[], None);
        assert_eq!(account.status, 200, "{}", account.text());
        let answer = account.json();
        (
            answer["bytes_used"].as_u64().unwrap(),
            answer["files"].as_u64().unwrap(),
        )
    }
}

/// `/api/file/` and the key, each segment percent-encoded.
fn file_url(key: &str) -> String {
    let segments: Vec<String> = key.split('/').map(encode).collect();
    format!("/api/file/{}", segments.join("/"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Asserts an error answer: its status, its JSON `status_code` and a part of
/// its message.
#[track_caller]
fn assert_error(response: &Response, status: u16, message_part: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    let body = response.json();
    assert_eq!(body["status_code"], status, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(message_part),
        "message {message:?} lacks {message_part:?}"
    );
}

/// Asserts a `507` refusal with its `error` code and a part of its message.
#[track_caller]
fn assert_507(response: &Response, code: &str, message_part: &str) {
    assert_error(response, 507, message_part);
    assert_eq!(response.json()["error"], code, "{}", response.text());
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn parse_http_date(text: &str) -> u64 {
    let parts: Vec<&str> = text.split(' ').collect();
    assert_eq!(parts.len(), 6, "not an HTTP date: {text:?}");
    assert!(
        parts[0].len() == 4 && parts[0].ends_with(',') && parts[5] == "GMT",
        "{text:?}"
    );
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == parts[2]).expect("month") as u64 + 1;
    let time: Vec<u64> = parts[4].split(':').map(|p| p.parse().unwrap()).collect();
    epoch_seconds(parts[3].parse().unwrap(), month, parts[1].parse().unwrap())
        + time[0] * 3600
        + time[1] * 60
        + time[2]
}

/// Seconds since the epoch of `2024-05-01T12:00:00.000Z`.
fn parse_rfc3339(text: &str) -> u64 {
    assert_eq!(text.len(), 24, "{text:?}");
    assert!(text.ends_with('Z') && &text[10..11] == "T", "{text:?}");
    let n = |range: std::ops::Range<usize>| -> u64 { text[range].parse().unwrap() };
    epoch_seconds(n(0..4), n(5..7), n(8..10)) + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

/// Days from civil (Howard Hinnant's algorithm), in seconds.
fn epoch_seconds(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year } as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days as u64 * 86_400
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[track_caller]
fn assert_recent(seconds: u64) {
    let now = now();
    assert!(
        seconds <= now + 5 && seconds + 600 >= now,
        "{seconds} is not close to now ({now})"
    );
}

/// Every file and folder under `root`, relative, with file sizes. SQLite's
/// shared-memory files change size on reads and are left out.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<u64>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<u64>>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().to_owned();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                out.insert(relative, None);
                walk(root, &path, out);
            } else if !path.to_string_lossy().ends_with("-shm") {
                out.insert(relative, Some(entry.metadata().unwrap().len()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Names of the files in a folder (none when it does not exist).
fn file_names(folder: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// One part of a form: its name, for a file its (filename, type), its data.
type Part<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a [u8]);

/// A `multipart/form-data` body and its Content-Type.
fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "wren-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, file, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some((filename, content_type)) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Seeded pseudo-random bytes (xorshift64*), reproducible and incompressible.
struct Generator(u64);

impl Generator {
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            let bytes = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// Polls `done` every 20 ms until it holds, failing after `limit`.
#[track_caller]
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// Nested and unicode keys (percent-encoded in the URL) come back byte for
/// byte with their type, ETag, Last-Modified and length; HEAD agrees.
fn nested_and_unicode_keys_round_trip(backend: Backend) {
    let Some(wren) = Wren::start(backend) else {
        return;
    };
    let ann = wren.user("ann");
    let all_bytes: Vec<u8> = (0..=255u8)
        .chain(b"\r\n\r\n\0end".iter().copied())
        .collect();
    let cases: [(&str, Option<&str>, &[u8]); 4] = [
        (
            "docs/2024/q1/report.txt",
            Some("text/plain; charset=utf-8"),
            b"quarterly\nnumbers\n",
        ),
        (
            "ünï/cødé ✓/naïve file (1).bin",
            Some("application/x-wren-test"),
            &all_bytes,
        ),
        (
            "emoji/🦀/crab%2F?#&=+.dat",
            Some("application/octet-stream"),
            b"\xff\xfe odd key",
        ),
        ("no-type", None, b"stored without a Content-Type"),
    ];
    for (key, content_type, bytes) in cases {
        let put = ann.put(key, content_type, bytes);
        assert_eq!(put.status, 201, "PUT {key}: {}", put.text());
        let etag = put.header("etag").expect("ETag on PUT").to_owned();
        assert!(
            etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
            "{etag}"
        );
        let answer = put.json();
        assert_eq!(answer["status_code"], 201);
        assert_eq!(answer["key"], key);
        assert_eq!(answer["size"], bytes.len());
        assert_eq!(answer["etag"], etag.as_str());
        assert_eq!(
            answer["message"],
            format!("File '{key}' uploaded successfully")
        );

        let expected_type = content_type.unwrap_or("application/octet-stream");
        let got = ann.get(key);
        assert_eq!(got.status, 200, "GET {key}: {}", got.text());
        assert_eq!(got.body, bytes, "GET {key}");
        assert_eq!(got.header("content-type"), Some(expected_type), "{key}");
        assert_eq!(got.header("etag"), Some(etag.as_str()), "{key}");
        assert_eq!(
            got.header("content-length"),
            Some(bytes.len().to_string().as_str())
        );
        assert_eq!(got.header("accept-ranges"), Some("bytes"));
        assert_recent(parse_http_date(
            got.header("last-modified").expect("Last-Modified"),
        ));

        let head = ann.head(key);
        assert_eq!(head.status, 200, "HEAD {key}");
        assert!(head.body.is_empty());
        for name in ["content-type", "etag", "content-length", "last-modified"] {
            assert_eq!(head.header(name), got.header(name), "HEAD {key}: {name}");
        }
    }
    let mut keys: Vec<&str> = cases.iter().map(|(key, _, _)| *key).collect();
    keys.sort_unstable();
    assert_eq!(ann.keys(), keys);
}

/// `/api/file/` has no key; an empty body is not a file.
fn empty_key_and_empty_body_are_400(backend: Backend) {
    let Some(wren) = Wren::start(backend) else {
        return;
    };
    let ann = wren.user("ann");
    let no_key = ann.call(
        "PUT",
        "/api/file/",
        &[("Content-Type", "text/plain")],
        Some(b"data"),
    );
    assert_error(&no_key, 400, "the key is empty");
    assert_eq!(no_key.json()["error"], "invalid_key");
    assert_error(
        &ann.call("GET", "/api/file/", &[], None),
        400,
        "the key is empty",
    );
    assert_error(
        &ann.call("DELETE", "/api/file/", &[], None),
        400,
        "the key is empty",
    );

    let empty = ann.put("empty.txt", Some("text/plain"), b"");
    assert_error(&empty, 400, "File not specified");
    assert_eq!(empty.json()["message"], "File not specified");
    // No body framing at all is the same empty body.
    let bare = ann.call("PUT", "/api/file/empty.txt", &[], None);
    assert_error(&bare, 400, "File not specified");
    // Nor does a zero-length chunked body store anything.
    let mut stream = wren.server.connect();
    let token = ann.token.as_deref().unwrap();
    write!(
        stream,
        "PUT /api/file/empty.txt HTTP/1.1\r\nHost: test\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    .unwrap();
    assert_error(
        &read_response(&mut BufReader::new(stream), true),
        400,
        "File not specified",
    );
    assert_error(&ann.get("empty.txt"), 404, "Not Found");
    assert!(ann.keys().is_empty());
}

/// Another account sees none of ann's files: 404 on every route, never the
/// bytes, and its own listings are empty.
fn accounts_are_isolated(backend: Backend) {
    let Some(wren) = Wren::start(backend) else {
        return;
    };
    let ann = wren.user("ann");
    let bob = wren.user("bob");
    let secret = b"ann's secret bytes: 4242-1337";
    ann.store("private/plans.txt", secret);
    for response in [
        bob.get("private/plans.txt"),
        bob.get_with("private/plans.txt", &[("Range", "bytes=0-3")]),
        bob.delete("private/plans.txt"),
    ] {
        assert_error(&response, 404, "Not Found");
        assert_eq!(response.json()["message"], "Not Found");
        assert!(!response.text().contains("secret"), "{}", response.text());
    }
    let head = bob.head("private/plans.txt");
    assert_eq!(head.status, 404);
    assert!(bob.keys().is_empty());
    let listed = bob.list("?prefix=private");
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.json(),
        json!({"files": [], "truncated": false, "next_after": null})
    );
    // bob may use the same key for his own file; ann's stays hers.
    assert_eq!(
        bob.put("private/plans.txt", Some("text/plain"), b"bob's")
            .status,
        201
    );
    assert_eq!(bob.get("private/plans.txt").body, b"bob's");
    assert_eq!(ann.get("private/plans.txt").body, secret);
    assert_eq!(bob.delete("private/plans.txt").status, 200);
    assert_eq!(ann.get("private/plans.txt").body, secret);
    assert_eq!(ann.keys(), ["private/plans.txt"]);
}

/// Every file and image route wants a signed-in account.
fn unauthenticated_requests_get_401(backend: Backend) {
    let Some(wren) = Wren::start(backend) else {
        return;
    };
    let ann = wren.user("ann");
    ann.store("k.txt", b"kept");
    let image = ann.post("/img/add", Some("image/png"), &PNG);
    assert_eq!(image.status, 201, "{}", image.text());
    let image_url = image.json()["url"].as_str().unwrap().to_owned();
    let (form_type, form) = multipart(&[("image", Some(("p.png", "image/png")), &PNG)]);
    let nobody = wren.anonymous();
    let forged = User {
        wren: &wren,
        token: Some("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJl".into()),
    };
    for who in [&nobody, &forged] {
        let answers = [
            (
                "PUT k.txt",
                who.put("k.txt", Some("text/plain"), b"overwritten"),
            ),
            ("PUT new", who.put("new.txt", Some("text/plain"), b"new")),
            ("GET", who.get("k.txt")),
            ("DELETE", who.delete("k.txt")),
            ("files_keys", who.call("GET", "/api/files_keys", &[], None)),
            ("v1/files", who.list("")),
            ("img/add raw", who.post("/img/add", Some("image/png"), &PNG)),
            (
                "img/add form",
                who.post("/img/add", Some(&form_type), &form),
            ),
            (
                "v1/images",
                who.post("/api/v1/images", Some(&form_type), &form),
            ),
            ("image url", who.call("GET", &image_url, &[], None)),
        ];
        for (what, answer) in answers {
            assert_eq!(
                answer.status,
                401,
                "{what} ({:?}): {}",
                who.token,
                answer.text()
            );
            assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{what}");
            assert_eq!(answer.json()["status_code"], 401, "{what}");
            assert!(!answer.text().contains("kept"), "{what}");
        }
        let head = who.head("k.txt");
        assert_eq!(head.status, 401, "HEAD");
    }
    assert_eq!(ann.get("k.txt").body, b"kept");
    assert_eq!(ann.keys().len(), 2, "{:?}", ann.keys());
}

/// Keys that look like paths out of the account are refused before any
/// storage is touched; on disk nothing changes at all.
fn traversal_keys_are_400(backend: Backend) {
    let Some(wren) = Wren::start(backend) else {
        return;
    };
    let ann = wren.user("ann");
    ann.store("inside.txt", b"inside");
    let before = snapshot(&wren.data_dir);
    let targets = [
        "/api/file/..",
        "/api/file/%2e%2e",
        "/api/file/%2E%2E/%2E%2E/etc/passwd",
        "/api/file/../../etc/passwd",
        "/api/file/a/../b",
        "/api/file/a/%2e%2e/b",
        "/api/file/a/..",
        "/api/file/.",
        "/api/file/a/./b",
        "/api/file/a//b",
        "/api/file//etc/passwd",
        "/api/file/%2Fetc%2Fpasswd",
        "/api/file/a%2F..%2Fb",
        "/api/file/a%00b",
        "/api/file/%00",
        "/api/file/a%0Ab",
        "/api/file/a/",
        "/api/file/dir/",
    ];
    for target in targets {
        let put = ann.call(
            "PUT",
            target,
            &[("Content-Type", "text/plain")],
            Some(b"escaped!"),
        );
        assert_eq!(put.status, 400, "PUT {target}: {}", put.text());
        let body = put.json();
        assert!(
            body["error"] == "invalid_key" || body["message"].as_str().unwrap().contains("path"),
            "PUT {target}: {body}"
        );
        for method in ["GET", "DELETE"] {
            let answer = ann.call(method, target, &[], None);
            assert_eq!(answer.status, 400, "{method} {target}: {}", answer.text());
        }
    }
    assert_eq!(ann.keys(), ["inside.txt"]);
    if backend == Backend::Local {
        let after = snapshot(&wren.data_dir);
        assert_eq!(before, after, "the data folder changed");
        // The one stored file is in ann's folder.
        let files = file_names(&wren.account_folder("ann"));
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(
            fs::read(wren.account_folder("ann").join(&files[0])).unwrap(),
            b"inside"
        );
    }
}

/// `If-None-Match` → 304; single ranges → 206 with `Content-Range`; a range
/// past the end → 416.
fn conditional_gets_and_ranges(backend: Backend) {
    let Some(wren) = Wren::start(backend) else {
        return;
    };
    let ann = wren.user("ann");
    let etag = ann.store("digits.txt", b"0123456789");

    let cached = ann.get_with("digits.txt", &[("If-None-Match", &etag)]);
    assert_eq!(cached.status, 304, "{}", cached.text());
    assert!(cached.body.is_empty());
    assert_eq!(cached.header("etag"), Some(etag.as_str()));
    let weak = format!("W/{etag}");
    assert_eq!(
        ann.get_with("digits.txt", &[("If-None-Match", &weak)])
            .status,
        304
    );
    let listed = format!("\"nope\", {etag}");
    assert_eq!(
        ann.get_with("digits.txt", &[("If-None-Match", &listed)])
            .status,
        304
    );
    let head = ann.call(
        "HEAD",
        &file_url("digits.txt"),
        &[("If-None-Match", &etag)],
        None,
    );
    assert_eq!(head.status, 304);
    let stale = ann.get_with("digits.txt", &[("If-None-Match", "\"stale\"")]);
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, b"0123456789");

    let ranges = [
        ("bytes=2-5", "2345", "bytes 2-5/10"),
        ("bytes=-3", "789", "bytes 7-9/10"),
        ("bytes=7-", "789", "bytes 7-9/10"),
        ("bytes=0-0", "0", "bytes 0-0/10"),
        ("bytes=8-999", "89", "bytes 8-9/10"),
        ("bytes=-20", "0123456789", "bytes 0-9/10"),
    ];
    for (range, bytes, content_range) in ranges {
        let part = ann.get_with("digits.txt", &[("Range", range)]);
        assert_eq!(part.status, 206, "{range}: {}", part.text());
        assert_eq!(part.text(), bytes, "{range}");
        assert_eq!(part.header("content-range"), Some(content_range), "{range}");
        assert_eq!(
            part.header("content-length"),
            Some(bytes.len().to_string().as_str()),
            "{range}"
        );
        assert_eq!(part.header("etag"), Some(etag.as_str()), "{range}");
        assert_eq!(
            part.header("content-type"),
            Some("application/octet-stream")
        );
    }
    for range in ["bytes=999999-", "bytes=10-", "bytes=-0"] {
        let beyond = ann.get_with("digits.txt", &[("Range", range)]);
        assert_error(&beyond, 416, "outside");
        assert_eq!(
            beyond.header("content-range"),
            Some("bytes */10"),
            "{range}"
        );
    }
    // Ranges wren does not serve are ignored: the whole object comes back.
    for range in ["bytes=0-1,4-5", "items=0-1", "bytes=5-1"] {
        let whole = ann.get_with("digits.txt", &[("Range", range)]);
        assert_eq!(whole.status, 200, "{range}");
        assert_eq!(whole.body, b"0123456789", "{range}");
    }
    // A current copy beats a range.
    let both = ann.get_with(
        "digits.txt",
        &[("Range", "bytes=2-5"), ("If-None-Match", &etag)],
    );
    assert_eq!(both.status, 304);
    // A current copy beats even a range outside the object.
    let beyond_but_current = ann.get_with(
        "digits.txt",
        &[("Range", "bytes=999-"), ("If-None-Match", &etag)],
    );
    assert_eq!(beyond_but_current.status, 304);

    // If-Range: the range only for the version the client holds, else the
    // whole current object (a resumed download never splices two versions).
    let same = ann.get_with("digits.txt", &[("Range", "bytes=2-5"), ("If-Range", &etag)]);
    assert_eq!(same.status, 206);
    assert_eq!(same.text(), "2345");
    let modified = stale.header("last-modified").unwrap().to_owned();
    let by_date = ann.get_with(
        "digits.txt",
        &[("Range", "bytes=2-5"), ("If-Range", &modified)],
    );
    assert_eq!(by_date.status, 206);
    let other = ann.get_with(
        "digits.txt",
        &[("Range", "bytes=2-5"), ("If-Range", "\"an-older-version\"")],
    );
    assert_eq!(other.status, 200);
    assert_eq!(other.body, b"0123456789");

    // Stored files never run in the API's origin.
    let html = ann.store("page.html", b"<script>alert(1)</script>");
    let served = ann.get_with("page.html", &[("If-None-Match", "\"other\"")]);
    assert_eq!(served.status, 200, "{html}");
    assert_eq!(served.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(served.header("content-security-policy"), Some("sandbox"));
}

/// 201 on create, 200 on replace; `If-None-Match: *` and `If-Match` guard
/// writes with 412 and leave the object as it was.
fn conditional_writes(backend: Backend) {
    let Some(wren) = Wren::start(backend) else {
        return;
    };
    let ann = wren.user("ann");
    let created = ann.put("doc.txt", Some("text/plain"), b"version 1");
    assert_eq!(created.status, 201, "{}", created.text());
    let first = created.header("etag").unwrap().to_owned();

    let exists = ann.put_with(
        "doc.txt",
        Some("text/plain"),
        &[("If-None-Match", "*")],
        b"clobber",
    );
    assert_error(&exists, 412, "does not match");
    let stale = ann.put_with(
        "doc.txt",
        Some("text/plain"),
        &[("If-Match", "\"0000\"")],
        b"clobber",
    );
    assert_error(&stale, 412, "does not match");
    let weak = format!("W/{first}");
    let weak = ann.put_with(
        "doc.txt",
        Some("text/plain"),
        &[("If-Match", &weak)],
        b"clobber",
    );
    assert_eq!(weak.status, 412, "a weak tag never matches a write");
    assert_eq!(ann.get("doc.txt").body, b"version 1");

    let replaced = ann.put_with(
        "doc.txt",
        Some("text/markdown"),
        &[("If-Match", &first)],
        b"version 2",
    );
    assert_eq!(replaced.status, 200, "{}", replaced.text());
    assert_eq!(replaced.json()["status_code"], 200);
    let second = replaced.header("etag").unwrap().to_owned();
    assert_ne!(second, first);
    let got = ann.get("doc.txt");
    assert_eq!(got.body, b"version 2");
    assert_eq!(got.header("content-type"), Some("text/markdown"));
    assert_eq!(got.header("etag"), Some(second.as_str()));

    let outdated = ann.put_with(
        "doc.txt",
        Some("text/plain"),
        &[("If-Match", &first)],
        b"clobber",
    );
    assert_eq!(outdated.status, 412);
    let any_of = format!("\"0000\", {second}");
    let listed = ann.put_with(
        "doc.txt",
        Some("text/plain"),
        &[("If-Match", &any_of)],
        b"version 3",
    );
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(ann.get("doc.txt").body, b"version 3");

    // Creating only if absent works on a new key; If-Match never creates.
    let fresh = ann.put_with(
        "new.txt",
        Some("text/plain"),
        &[("If-None-Match", "*")],
        b"new",
    );
    assert_eq!(fresh.status, 201, "{}", fresh.text());
    let absent = ann.put_with(
        "absent.txt",
        Some("text/plain"),
        &[("If-Match", "*")],
        b"no",
    );
    assert_eq!(absent.status, 412);
    assert_error(&ann.get("absent.txt"), 404, "Not Found");
    let bad = ann.put_with(
        "new.txt",
        Some("text/plain"),
        &[("If-None-Match", "\"abc\"")],
        b"x",
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    // A plain replace is 200 and says so.
    let plain = ann.put("new.txt", Some("text/plain"), b"newer");
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.json()["message"],
        "File 'new.txt' uploaded successfully"
    );
}

/// DELETE answers 200 once, then 404; the object is gone everywhere.
fn delete_then_404(backend: Backend) {
    let Some(wren) = Wren::start(backend) else {
        return;
    };
    let ann = wren.user("ann");
    ann.store("a/b/gone.txt", b"soon gone");
    ann.store("a/b/kept.txt", b"stays");
    let deleted = ann.delete("a/b/gone.txt");
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(
        deleted.json(),
        json!({"status_code": 200, "message": "File 'a/b/gone.txt' deleted"})
    );
    assert_error(&ann.get("a/b/gone.txt"), 404, "Not Found");
    assert_eq!(ann.head("a/b/gone.txt").status, 404);
    assert_error(&ann.delete("a/b/gone.txt"), 404, "Not Found");
    assert_error(&ann.delete("never/was"), 404, "Not Found");
    assert_eq!(ann.keys(), ["a/b/kept.txt"]);
    assert_eq!(ann.get("a/b/kept.txt").body, b"stays");
    if backend == Backend::Local {
        let files = file_names(&wren.account_folder("ann"));
        assert_eq!(
            files.len(),
            1,
            "the deleted file's bytes are still on disk: {files:?}"
        );
    }
    // The key can be used again, as a new file.
    assert_eq!(
        ann.put("a/b/gone.txt", Some("text/plain"), b"back").status,
        201
    );
}

/// `/api/files_keys` lists every key; `/api/v1/files` pages by prefix,
/// limit and after, in bytewise key order.
fn listing_and_paging(backend: Backend) {
    let Some(wren) = Wren::start(backend) else {
        return;
    };
    let ann = wren.user("ann");
    let keys = ["b/2", "a", "b/1", "b/3", "c", "b0", "ü/x", "b/2/deep"];
    for key in keys {
        let put = ann.put(key, Some("text/plain"), key.as_bytes());
        assert_eq!(put.status, 201, "{key}");
    }
    let sorted = ["a", "b/1", "b/2", "b/2/deep", "b/3", "b0", "c", "ü/x"];
    assert_eq!(ann.keys(), sorted);

    let all = ann.list("");
    assert_eq!(all.status, 200, "{}", all.text());
    assert_eq!(all.header("cache-control"), Some("no-store"));
    let all = all.json();
    assert_eq!(all["truncated"], false);
    assert_eq!(all["next_after"], Value::Null);
    let files = all["files"].as_array().unwrap();
    let listed: Vec<&str> = files.iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(listed, sorted);
    for file in files {
        let key = file["key"].as_str().unwrap();
        assert_eq!(file["size"], key.len(), "{file}");
        assert_eq!(file["content_type"], "text/plain", "{file}");
        assert_recent(parse_rfc3339(file["modified"].as_str().unwrap()));
        let head = ann.head(key);
        assert_eq!(file["etag"].as_str(), head.header("etag"), "{file}");
    }

    let keys_of = |page: &Value| -> Vec<String> {
        page["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["key"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = ann.list("?prefix=b%2F&limit=2").json();
    assert_eq!(keys_of(&first), ["b/1", "b/2"]);
    assert_eq!(first["truncated"], true);
    assert_eq!(first["next_after"], "b/2");
    let second = ann.list("?prefix=b%2F&limit=2&after=b%2F2").json();
    assert_eq!(keys_of(&second), ["b/2/deep", "b/3"]);
    // A page that ends exactly at the last key is the last page, on both
    // backends: a client following `next_after` never gets an empty page.
    assert_eq!(second["truncated"], false, "{second}");
    assert_eq!(second["next_after"], Value::Null, "{second}");
    let exact = ann.list("?prefix=b%2F&limit=4").json();
    assert_eq!(keys_of(&exact), ["b/1", "b/2", "b/2/deep", "b/3"]);
    let unicode = ann.list(&format!("?prefix={}", encode("ü"))).json();
    assert_eq!(keys_of(&unicode), ["ü/x"]);
    let none = ann.list("?prefix=zzz").json();
    assert_eq!(
        none,
        json!({"files": [], "truncated": false, "next_after": null})
    );
    let after_all = ann.list(&format!("?after={}", encode("ü/x"))).json();
    assert_eq!(keys_of(&after_all), Vec::<String>::new());

    // One key at a time, following next_after, visits every key once.
    let mut walked = Vec::new();
    let mut after = String::new();
    for _ in 0..20 {
        let page = ann
            .list(&format!("?limit=1&after={}", encode(&after)))
            .json();
        walked.extend(keys_of(&page));
        match page["next_after"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(walked, sorted);

    for bad in ["?limit=0", "?limit=1001", "?limit=abc", "?limit=-1"] {
        let refused = ann.list(bad);
        assert_error(&refused, 400, "limit");
    }
}

/// Accounts with their own S3 keys keep their files in Garage with those
/// keys; keys Garage refuses are a 400 naming them, and no account.
fn sign_up_with_own_s3_keys(backend: Backend) {
    let Some(key) = user_key() else { return };
    let Some(wren) = Wren::start_opts(
        backend,
        Options {
            user_keys: true,
            ..Options::default()
        },
    ) else {
        return;
    };
    let mut body = json!({
        "login": "carol",
        "password": PASSWORD,
        "access_key_id": key.id,
        "secret_access_key": key.secret,
    });
    if let Some(bucket) = &key.bucket {
        body["bucket"] = json!(bucket);
    }
    let created = wren
        .server
        .post("/api/sign_up", "application/json", &body.to_string(), "");
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(!created.text().contains(&key.secret));
    let carol = wren.sign_in("carol");
    let bytes = b"carol's bytes, kept with carol's keys";
    let put = carol.put("mine/notes.txt", Some("text/plain"), bytes);
    assert_eq!(put.status, 201, "{}", put.text());
    let got = carol.get("mine/notes.txt");
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.body, bytes);
    assert_eq!(got.header("content-type"), Some("text/plain"));
    assert_eq!(carol.keys(), ["mine/notes.txt"]);
    let image = carol.post("/img/add", Some("image/png"), &PNG);
    assert_eq!(image.status, 201, "{}", image.text());
    let server_path = image.json()["server_path"].as_str().unwrap().to_owned();
    let bucket = key
        .bucket
        .clone()
        .unwrap_or_else(|| wren.s3.as_ref().unwrap().bucket.clone());
    assert!(
        server_path.starts_with(&format!("s3://{bucket}/")),
        "{server_path}"
    );
    assert_eq!(
        carol
            .call("GET", image.json()["url"].as_str().unwrap(), &[], None)
            .body,
        PNG
    );
    assert_eq!(carol.delete("mine/notes.txt").status, 200);
    assert_error(&carol.get("mine/notes.txt"), 404, "Not Found");
    if backend == Backend::Local {
        // Nothing of carol's is on the local disk.
        assert_eq!(
            file_names(&wren.account_folder("carol")),
            Vec::<String>::new()
        );
    }
    // An account without keys still uses the server's backend, apart.
    let dan = wren.user("dan");
    assert!(dan.keys().is_empty());
    assert_error(&dan.get("mine/notes.txt"), 404, "Not Found");

    // Keys Garage refuses: a wrong secret, an unknown key id.
    let wrong_secret = format!("{}00", &key.secret[..key.secret.len() - 2]);
    let unknown_id = "GK0123456789abcdef01234567".to_owned();
    for (login, id, secret) in [
        ("erin", key.id.clone(), wrong_secret),
        ("fred", unknown_id, key.secret.clone()),
    ] {
        let mut body = json!({"login": login, "password": PASSWORD, "access_key_id": id, "secret_access_key": secret});
        if let Some(bucket) = &key.bucket {
            body["bucket"] = json!(bucket);
        }
        let refused = wren
            .server
            .post("/api/sign_up", "application/json", &body.to_string(), "");
        assert_error(&refused, 400, "access_or_secret_key");
        let answer = refused.json();
        assert_eq!(answer["error"], "invalid_fields");
        assert_eq!(
            answer["details"][0]["field"], "access_or_secret_key",
            "{answer}"
        );
        assert_eq!(answer["details"][0]["problem"], "Not correct", "{answer}");
        assert!(
            !refused.text().contains(&secret),
            "the secret is echoed: {answer}"
        );
        // No account was made.
        let sign_in = json!({"login": login, "password": PASSWORD}).to_string();
        assert_eq!(
            wren.server
                .post("/api/sign_in", "application/json", &sign_in, "")
                .status,
            401
        );
    }
    // Half a key pair names the missing half.
    let half = json!({"login": "gina", "password": PASSWORD, "access_key_id": key.id}).to_string();
    assert_error(
        &wren
            .server
            .post("/api/sign_up", "application/json", &half, ""),
        400,
        "secret_access_key",
    );
}

/// Images: real PNG and JPEG bodies raw or in a multipart `image` field;
/// anything else is 415; only the owner can fetch them back.
fn image_uploads(backend: Backend) {
    let Some(wren) = Wren::start_with(backend, &["--max-image-size", "4096"]) else {
        return;
    };
    let ann = wren.user("ann");
    let bob = wren.user("bob");
    let (png_form_type, png_form) = multipart(&[
        ("title", None, b"a red pixel"),
        ("image", Some(("pixel.png", "image/png")), &PNG),
    ]);
    let (jpeg_form_type, jpeg_form) =
        multipart(&[("image", Some(("pixel.jpg", "image/jpeg")), &JPEG)]);
    // (route, Content-Type, body, the image in it, its extension)
    type Upload<'a> = (&'a str, &'a str, &'a [u8], &'a [u8], &'a str);
    let uploads: [Upload<'_>; 4] = [
        ("/img/add", "image/png", &PNG, &PNG, "png"),
        ("/img/add", "image/jpeg", &JPEG, &JPEG, "jpg"),
        ("/img/add", &png_form_type, &png_form, &PNG, "png"),
        ("/api/v1/images", &jpeg_form_type, &jpeg_form, &JPEG, "jpg"),
    ];
    let mut urls = Vec::new();
    for (target, content_type, body, image, extension) in uploads {
        let what = format!("{target} {content_type}");
        let created = ann.post(target, Some(content_type), body);
        assert_eq!(created.status, 201, "{what}: {}", created.text());
        let answer = created.json();
        let id = answer["id"].as_str().unwrap();
        let (name, ext) = id.split_once('.').unwrap();
        assert_eq!(ext, extension, "{what}: {answer}");
        assert!(
            name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()),
            "{answer}"
        );
        let url = answer["url"].as_str().unwrap();
        assert_eq!(url, format!("/api/v1/images/{id}"));
        let got = ann.call("GET", url, &[], None);
        assert_eq!(got.status, 200, "{what}: {}", got.text());
        assert_eq!(got.body, image, "{what}");
        let media_type = if extension == "png" {
            "image/png"
        } else {
            "image/jpeg"
        };
        assert_eq!(got.header("content-type"), Some(media_type), "{what}");
        let server_path = answer["server_path"].as_str().unwrap();
        match backend {
            Backend::Local => {
                // A path from the data folder, not the host's absolute path.
                assert!(
                    server_path.starts_with("files/accounts/ann/"),
                    "{server_path}"
                );
                let path = fs::canonicalize(wren.data_dir.join(server_path))
                    .unwrap_or_else(|e| panic!("{server_path}: {e}"));
                let folder = fs::canonicalize(wren.account_folder("ann")).unwrap();
                assert!(
                    path.starts_with(&folder),
                    "{server_path} is not under {}",
                    folder.display()
                );
                assert_eq!(fs::read(&path).unwrap(), image, "{server_path}");
            }
            Backend::S3 => {
                assert!(server_path.starts_with("s3://"), "{server_path}");
                assert!(server_path.contains(id), "{server_path}");
                assert!(
                    server_path.contains(&wren.prefix),
                    "{server_path} lacks the prefix"
                );
            }
        }
        // Another account never gets it.
        let stolen = bob.call("GET", url, &[], None);
        assert_error(&stolen, 404, "Not Found");
        assert_ne!(stolen.body, image);
        urls.push(url.to_owned());
    }
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 4, "image ids repeat: {urls:?}");

    let refused: [(&str, Option<&str>, &[u8], u16); 8] = [
        (
            "/img/add",
            Some("image/png"),
            b"just some text, not an image",
            415,
        ),
        ("/img/add", Some("image/jpeg"), &PNG, 415),
        ("/img/add", None, &PNG, 415),
        ("/img/add", Some("text/plain"), &PNG, 415),
        ("/img/add", Some("image/svg+xml"), b"<svg/>", 415),
        ("/api/v1/images", Some("image/png"), &PNG, 415),
        ("/img/add", Some("image/png"), b"", 400),
        (
            "/img/add",
            Some("image/png"),
            &[&PNG[..], &[0u8; 5000][..]].concat(),
            413,
        ),
    ];
    for (target, content_type, body, status) in refused {
        let answer = ann.post(target, content_type, body);
        assert_eq!(
            answer.status,
            status,
            "{target} {content_type:?}: {}",
            answer.text()
        );
        assert_eq!(answer.json()["status_code"], status);
    }
    assert_error(
        &ann.post("/img/add", Some("image/png"), b""),
        400,
        "File not specified",
    );
    let (text_type, text_form) =
        multipart(&[("image", Some(("notes.png", "image/png")), b"plain text")]);
    assert_eq!(
        ann.post("/api/v1/images", Some(&text_type), &text_form)
            .status,
        415
    );
    let (no_image_type, no_image) = multipart(&[("photo", Some(("p.png", "image/png")), &PNG)]);
    assert_error(
        &ann.post("/api/v1/images", Some(&no_image_type), &no_image),
        400,
        "'image'",
    );
    for missing in [
        "/api/v1/images/00000000000000000000000000000000.png",
        "/api/v1/images/nope",
        "/api/v1/images/..",
    ] {
        assert_eq!(ann.call("GET", missing, &[], None).status, 404, "{missing}");
    }
    // Only the four stored images exist.
    let keys = ann.keys();
    assert_eq!(keys.len(), 4, "{keys:?}");
    if backend == Backend::Local {
        assert_eq!(file_names(&wren.account_folder("ann")).len(), 4);
    }
}

/// `--max-object-size` bounds a PUT: one byte over is 413 and nothing is
/// stored; exactly the limit is fine.
fn object_size_limit(backend: Backend) {
    let Some(wren) = Wren::start_with(backend, &["--max-object-size", "1000"]) else {
        return;
    };
    let ann = wren.user("ann");
    assert_eq!(ann.put("fits", None, &[7u8; 1000]).status, 201);
    let over = ann.put("over", None, &[7u8; 1001]);
    assert_eq!(over.status, 413, "{}", over.text());
    // Chunked: the size is only known while reading.
    let mut stream = wren.server.connect();
    let token = ann.token.as_deref().unwrap();
    let mut raw = format!(
        "PUT /api/file/over HTTP/1.1\r\nHost: test\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(&[7u8; 1001]);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    stream.write_all(&raw).unwrap();
    let chunked = read_response(&mut BufReader::new(stream), true);
    assert_eq!(chunked.status, 413, "{}", chunked.text());
    assert_eq!(ann.keys(), ["fits"]);
    if backend == Backend::Local {
        assert_eq!(file_names(&wren.account_folder("ann")).len(), 1);
    }
}

/// Sends `len` generated bytes as the chunked body of a PUT already begun
/// on `stream`; returns their SHA-256.
fn send_chunked(stream: &mut TcpStream, seed: u64, len: u64) -> io::Result<[u8; 32]> {
    const CHUNK: usize = 64 * 1024;
    let mut generator = Generator(seed);
    let mut hasher = Sha256::new();
    let mut frame = Vec::with_capacity(CHUNK + 16);
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        frame.clear();
        frame.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        let start = frame.len();
        frame.resize(start + n, 0);
        generator.fill(&mut frame[start..]);
        hasher.update(&frame[start..]);
        frame.extend_from_slice(b"\r\n");
        stream.write_all(&frame)?;
        left -= n as u64;
    }
    stream.write_all(b"0\r\n\r\n")?;
    Ok(hasher.finalize().into())
}

/// Sends `len` generated bytes of a body with a `Content-Length` already
/// written.
fn send_raw(stream: &mut TcpStream, generator: &mut Generator, len: u64) -> io::Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buffer.len() as u64) as usize;
        generator.fill(&mut buffer[..n]);
        stream.write_all(&buffer[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// 200 MiB up (chunked, so the length is unknown to the server) and down
/// (Content-Length) with the server's peak memory under 64 MiB.
fn large_file_streams_both_ways(backend: Backend) {
    const SIZE: u64 = 200 * MIB;
    const MAX_RSS_KIB: u64 = 64 * 1024;
    let Some(wren) = Wren::start(backend) else {
        return;
    };
    let ann = wren.user("ann");
    let token = ann.token.as_deref().unwrap();
    let started = Instant::now();

    let mut stream = wren.server.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "PUT /api/file/big/blob.bin HTTP/1.1\r\nHost: test\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-big\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let sent = send_chunked(&mut stream, 0x5eed_f11e, SIZE);
    let stored = read_response(&mut BufReader::new(stream), true);
    let sent = sent.unwrap_or_else(|err| {
        panic!(
            "upload failed ({err}); the server said {} {}",
            stored.status,
            stored.text()
        )
    });
    assert_eq!(stored.status, 201, "{}", stored.text());
    assert_eq!(stored.json()["size"], SIZE);
    let uploaded = started.elapsed();
    let after_upload = wren.server.proc_status("VmHWM");

    let mut stream = wren.server.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "GET /api/file/big/blob.bin HTTP/1.1\r\nHost: test\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let head = read_head(&mut reader);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(SIZE.to_string().as_str())
    );
    assert_eq!(head.header("content-type"), Some("application/x-big"));
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut received = 0u64;
    loop {
        let n = reader.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        received += n as u64;
    }
    assert_eq!(received, SIZE);
    let got: [u8; 32] = hasher.finalize().into();
    assert!(
        got == sent,
        "the downloaded bytes differ from the uploaded ones"
    );
    let peak = wren.server.proc_status("VmHWM");
    eprintln!(
        "{backend:?}: 200 MiB up in {:.1}s, down in {:.1}s; VmHWM {} KiB after upload, {} KiB after download",
        uploaded.as_secs_f64(),
        (started.elapsed() - uploaded).as_secs_f64(),
        after_upload,
        peak
    );
    assert!(
        peak < MAX_RSS_KIB,
        "the server's peak RSS was {peak} KiB (limit {MAX_RSS_KIB} KiB)"
    );
    if backend == Backend::Local {
        let folder = wren.account_folder("ann");
        let files = file_names(&folder);
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(fs::metadata(folder.join(&files[0])).unwrap().len(), SIZE);
    }
    // Frees the space (on disk or in Garage) at once.
    assert_eq!(ann.delete("big/blob.bin").status, 200);
}

/// The server dies (SIGKILL) in the middle of a large replacing upload:
/// after a restart the key still holds the old bytes, and the local backend
/// has swept the half-written file.
fn crash_mid_upload_keeps_the_old_object(backend: Backend) {
    const SIZE: u64 = 300 * MIB;
    const SENT_BEFORE_CRASH: u64 = 24 * MIB;
    // Enough workers that a read can run beside the stalled upload.
    let options = Options {
        extra: &["--threads", "4"],
        ..Options::default()
    };
    let Some(mut wren) = Wren::start_opts(backend, options) else {
        return;
    };
    let old = b"content A: the version that must survive".to_vec();
    let etag = {
        let ann = wren.user("ann");
        let etag = ann.store("k/crash.bin", &old);
        let token = ann.token.clone().unwrap();

        let mut stream = wren.server.connect();
        write!(
            stream,
            "PUT /api/file/k/crash.bin HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-new\r\nContent-Length: {SIZE}\r\n\r\n"
        )
        .unwrap();
        send_raw(&mut stream, &mut Generator(7), SENT_BEFORE_CRASH).unwrap();
        if backend == Backend::Local {
            // The upload is streaming into a temporary file next to the
            // old one; readers still get the old bytes.
            let folder = wren.account_folder("ann");
            wait_until(
                Duration::from_secs(20),
                "a .tmp file of at least 1 MiB",
                || {
                    file_names(&folder).iter().any(|name| {
                        name.starts_with('.')
                            && name.ends_with(".tmp")
                            && fs::metadata(folder.join(name)).is_ok_and(|m| m.len() >= MIB)
                    })
                },
            );
        }
        let during = ann.get("k/crash.bin");
        assert_eq!(during.status, 200, "{}", during.text());
        assert_eq!(during.body, old, "a reader saw the upload in progress");
        wren.server.signal(libc::SIGKILL);
        assert!(
            wren.server.wait_exit(Duration::from_secs(10)).is_some(),
            "SIGKILL did not end the server"
        );
        drop(stream);
        etag
    };

    wren.restart();
    let ann = wren.sign_in("ann");
    let after = ann.get("k/crash.bin");
    assert_eq!(after.status, 200, "{}", after.text());
    assert_eq!(after.body, old, "the key lost its old bytes");
    assert_eq!(after.header("etag"), Some(etag.as_str()));
    assert_eq!(
        after.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(ann.keys(), ["k/crash.bin"]);
    if backend == Backend::Local {
        let folder = wren.account_folder("ann");
        let files = file_names(&folder);
        assert_eq!(files.len(), 1, "leftovers after the restart: {files:?}");
        assert!(!files[0].starts_with('.'), "{files:?}");
        assert_eq!(fs::read(folder.join(&files[0])).unwrap(), old);
    }
    // The server works normally after the crash: a replace goes through.
    assert_eq!(
        ann.put("k/crash.bin", Some("text/plain"), b"content B")
            .status,
        200
    );
    assert_eq!(ann.get("k/crash.bin").body, b"content B");
}

/// A server without an S3 endpoint cannot take an account's own keys, and
/// says so (local only: an S3 server always has an endpoint).
fn sign_up_with_keys_needs_an_endpoint(backend: Backend) {
    assert_eq!(backend, Backend::Local);
    let Some(wren) = Wren::start(backend) else {
        return;
    };
    let body = json!({
        "login": "hank",
        "password": PASSWORD,
        "access_key_id": "GK0123456789abcdef01234567",
        "secret_access_key": "0".repeat(64),
    });
    let refused = wren
        .server
        .post("/api/sign_up", "application/json", &body.to_string(), "");
    assert_error(&refused, 400, "no S3 endpoint");
    let answer = refused.json();
    assert_eq!(
        answer["details"][0]["field"], "access_or_secret_key",
        "{answer}"
    );
    let sign_in = json!({"login": "hank", "password": PASSWORD}).to_string();
    assert_eq!(
        wren.server
            .post("/api/sign_in", "application/json", &sign_in, "")
            .status,
        401
    );
    // Without keys the same sign-up is fine.
    let plain = json!({"login": "hank", "password": PASSWORD}).to_string();
    assert_eq!(
        wren.server
            .post("/api/sign_up", "application/json", &plain, "")
            .status,
        201
    );
}

// ---------------------------------------------------------------------------
// Quotas and the disk
// ---------------------------------------------------------------------------

/// On the local backend, that the account's folder holds `count` files:
/// the stored ones, and no temporary file an upload left.
#[track_caller]
fn assert_local_files(wren: &Wren, login: &str, count: usize) {
    if wren.backend == Backend::Local {
        let files = file_names(&wren.account_folder(login));
        assert_eq!(files.len(), count, "{files:?}");
    }
}

/// A quota of 1 MB takes a 600 kB file, refuses a second one (declared,
/// chunked, or behind `Expect: 100-continue`, before its body) with `507`
/// and stores nothing of it, and takes it once the first is deleted; the
/// image routes are held to the same quota.
fn quota_refuses_what_does_not_fit(backend: Backend) {
    const KB600: usize = 600_000;
    let Some(wren) = Wren::start_with(backend, &["--account-quota", "1000000"]) else {
        return;
    };
    let ann = wren.user("ann");
    let first = vec![1u8; KB600];
    let second = vec![2u8; KB600];
    assert_eq!(ann.put_streamed("first.bin", &first, false).status, 201);
    assert_eq!(ann.usage(), (600_000, 1));

    let refused = ann.put_streamed("second.bin", &second, false);
    assert_507(
        &refused,
        "quota_exceeded",
        "may store 1000000 bytes and stores 600000",
    );
    assert!(
        refused.text().contains("needs 600000 more"),
        "{}",
        refused.text()
    );
    let chunked = ann.put_streamed("second.bin", &second, true);
    assert_507(&chunked, "quota_exceeded", "needs at least");
    // The answer comes before the body: no 100 Continue invites it.
    let mut stream = wren.server.connect();
    write!(
        stream,
        "PUT /api/file/second.bin HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\nContent-Length: {KB600}\r\nExpect: 100-continue\r\n\r\n",
        ann.token.as_deref().unwrap()
    )
    .unwrap();
    let early = read_head(&mut BufReader::new(stream));
    assert_eq!(early.status, 507, "{early:?}");

    // Nothing of it was stored.
    assert_eq!(ann.keys(), ["first.bin"]);
    assert_error(&ann.get("second.bin"), 404, "Not Found");
    assert_eq!(ann.usage(), (600_000, 1));
    assert_local_files(&wren, "ann", 1);

    // Images count too: a raw body is refused on its declared length, a
    // form's image as it streams.
    let mut big_png = PNG.to_vec();
    big_png.resize(KB600, 0);
    let raw = ann.add_png(&big_png);
    assert_507(&raw, "quota_exceeded", "1000000 bytes");
    let (form_type, form) = multipart(&[("image", Some(("big.png", "image/png")), &big_png)]);
    let form_headers = [("Content-Type", form_type.as_str())];
    let in_form = ann.upload("POST", "/api/v1/images", &form_headers, &form, false);
    assert_507(&in_form, "quota_exceeded", "needs at least");
    assert_eq!(ann.keys(), ["first.bin"]);
    assert_local_files(&wren, "ann", 1);

    // Another account has its own quota.
    let bob = wren.user("bob");
    assert_eq!(bob.put_streamed("second.bin", &second, false).status, 201);

    assert_eq!(ann.delete("first.bin").status, 200);
    assert_eq!(ann.usage(), (0, 0));
    assert_eq!(ann.put_streamed("second.bin", &second, true).status, 201);
    assert_eq!(ann.get("second.bin").body, second);
    assert_eq!(ann.usage(), (600_000, 1));
    let image = ann.add_png(&big_png[..300_000]);
    assert_eq!(image.status, 201, "{}", image.text());
    assert_eq!(ann.usage(), (900_000, 2));
}

/// Replacing a file counts only the difference, both ways.
fn replacing_counts_only_the_difference(backend: Backend) {
    let Some(wren) = Wren::start_with(backend, &["--account-quota", "1000000"]) else {
        return;
    };
    let ann = wren.user("ann");
    ann.store("k", &[1u8; 600_000]);
    // 600 kB more than the quota's room, had the old bytes counted.
    assert_eq!(ann.put_streamed("k", &[2u8; 900_000], false).status, 200);
    assert_eq!(ann.usage(), (900_000, 1));
    assert_507(
        &ann.put_streamed("k", &[3u8; 1_000_001], false),
        "quota_exceeded",
        "needs 100001 more",
    );
    assert_eq!(
        ann.get("k").body,
        [2u8; 900_000],
        "the refused write replaced it"
    );
    ann.store("j", &[4u8; 100_000]);
    assert_eq!(ann.usage(), (1_000_000, 2));
    assert_507(
        &ann.put_streamed("k", &[5u8; 900_001], true),
        "quota_exceeded",
        "stores 1000000",
    );
    // Shrinking a file makes room.
    assert_eq!(ann.put_streamed("k", &[6u8; 100_000], true).status, 200);
    assert_eq!(ann.usage(), (200_000, 2));
    ann.store("l", &[7u8; 800_000]);
    assert_eq!(ann.usage(), (1_000_000, 3));
    assert_local_files(&wren, "ann", 3);
}

/// `--account-max-files`: one file past it is refused before its body;
/// replacing an existing one is fine, and a delete makes room.
fn file_count_limit(backend: Backend) {
    let Some(wren) = Wren::start_with(backend, &["--account-max-files", "3"]) else {
        return;
    };
    let ann = wren.user("ann");
    for key in ["a", "b", "c"] {
        ann.store(key, key.as_bytes());
    }
    let refused = ann.put_streamed("d", b"d", false);
    assert_507(
        &refused,
        "quota_exceeded",
        "file quota exceeded: the account may store 3 files",
    );
    let image = ann.add_png(&PNG);
    assert_507(&image, "quota_exceeded", "3 files");
    assert_eq!(ann.put("a", None, b"replaced").status, 200);
    assert_eq!(ann.usage(), (10, 3));
    assert_eq!(ann.delete("b").status, 200);
    assert_eq!(ann.put("d", None, b"d").status, 201);
    assert_eq!(ann.keys(), ["a", "c", "d"]);
    let answer = ann.call("GET", "/api/v1/account", &[], None).json();
    assert_eq!(
        answer,
        json!({"login": "ann", "role": "user", "bytes_used": 10, "files": 3, "quota": 1u64 << 30, "max_files": 3})
    );
}

/// Usage is durable: after a restart on the same data, the same figures,
/// and the quota still holds.
fn usage_survives_a_restart(backend: Backend) {
    let Some(mut wren) = Wren::start_with(backend, &["--account-quota", "1000000"]) else {
        return;
    };
    let before = {
        let ann = wren.user("ann");
        ann.store("a", &[1u8; 300_000]);
        ann.store("b", &[2u8; 200_000]);
        ann.store("a", &[3u8; 100_000]);
        ann.store("c", &[4u8; 50_000]);
        assert_eq!(ann.delete("b").status, 200);
        ann.usage()
    };
    assert_eq!(before, (150_000, 2));
    wren.server.signal(libc::SIGTERM);
    assert!(wren.server.wait_exit(Duration::from_secs(10)).is_some());
    wren.restart();
    let ann = wren.sign_in("ann");
    assert_eq!(ann.usage(), before);
    assert_507(
        &ann.put_streamed("d", &[5u8; 850_001], false),
        "quota_exceeded",
        "stores 150000",
    );
    assert_eq!(ann.put_streamed("d", &[5u8; 850_000], false).status, 201);
    assert_eq!(ann.usage(), (1_000_000, 3));
}

/// Uploads racing for an account's room: those that fit alone but not
/// together are refused whichever finishes first, and the usage is exactly
/// the sum of what was stored; uploads racing for one key count once.
fn concurrent_uploads_stay_within_the_quota(backend: Backend) {
    const QUOTA: u64 = 1_000_000;
    const SIZE: usize = 300_000;
    let Some(wren) = Wren::start_with(backend, &["--account-quota", "1000000", "--threads", "8"])
    else {
        return;
    };
    let race = |user: &User<'_>, uploads: Vec<(String, usize, bool)>| -> Vec<(String, u16)> {
        let start = std::sync::Barrier::new(uploads.len());
        std::thread::scope(|scope| {
            let racers: Vec<_> = uploads
                .into_iter()
                .map(|(key, size, chunked)| {
                    let start = &start;
                    scope.spawn(move || {
                        let body = vec![size as u8; size];
                        start.wait();
                        let answer = user.put_streamed(&key, &body, chunked);
                        assert!(
                            answer.status == 201 || answer.status == 200 || answer.status == 507,
                            "{key}: {} {}",
                            answer.status,
                            answer.text()
                        );
                        (key, answer.status)
                    })
                })
                .collect();
            racers
                .into_iter()
                .map(|racer| racer.join().unwrap())
                .collect()
        })
    };
    // Declared lengths: exactly three of eight fit, whatever the order.
    let ann = wren.user("ann");
    let declared = (0..8).map(|i| (format!("k{i}"), SIZE, false)).collect();
    let results = race(&ann, declared);
    let stored: Vec<String> = results
        .iter()
        .filter(|(_, status)| *status == 201)
        .map(|(key, _)| key.clone())
        .collect();
    assert_eq!(stored.len(), 3, "{results:?}");
    assert_eq!(ann.keys(), stored);
    assert_eq!(ann.usage(), (3 * SIZE as u64, 3));

    // Chunked: each is judged as it streams; what is stored never passes
    // the quota and is exactly what the account is charged.
    let bob = wren.user("bob");
    let chunked = (0..8).map(|i| (format!("c{i}"), SIZE, true)).collect();
    let results = race(&bob, chunked);
    let stored: Vec<String> = results
        .iter()
        .filter(|(_, status)| *status == 201)
        .map(|(key, _)| key.clone())
        .collect();
    assert!(!stored.is_empty() && stored.len() <= 3, "{results:?}");
    assert_eq!(bob.keys(), stored);
    let (bytes, files) = bob.usage();
    assert_eq!(
        (bytes, files),
        (stored.len() as u64 * SIZE as u64, stored.len() as u64)
    );
    assert!(bytes <= QUOTA);
    assert_local_files(&wren, "bob", stored.len());

    // One key: 500 kB stored beside it, so each replacement of up to 500 kB
    // fits alone, and all of them fit together since only one is kept.
    let cat = wren.user("cat");
    cat.store("base", &[0u8; 500_000]);
    let sizes = [100_000, 200_000, 300_000, 400_000, 500_000, 500_001];
    let same_key = sizes
        .iter()
        .map(|&size| ("shared".to_owned(), size, size % 2 == 0))
        .collect();
    let results = race(&cat, same_key);
    for ((_, status), size) in results.iter().zip(sizes) {
        let expected: &[u16] = if size > 500_000 { &[507] } else { &[200, 201] };
        assert!(expected.contains(status), "{size}: {status}");
    }
    let kept = cat.get("shared");
    assert_eq!(kept.status, 200);
    let kept_size = kept.body.len() as u64;
    assert!(sizes.contains(&(kept_size as usize)) && kept_size <= 500_000);
    assert_eq!(cat.usage(), (500_000 + kept_size, 2));
    assert_local_files(&wren, "cat", 2);
}

/// A chunked upload over the quota is cut as soon as it passes it (on S3 in
/// the middle of a multipart upload, which is aborted) and leaves nothing:
/// no object, no temporary file, no upload in progress in the bucket.
fn chunked_uploads_over_quota_are_cut(backend: Backend) {
    const QUOTA: u64 = 12 * MIB;
    let quota = QUOTA.to_string();
    let Some(wren) = Wren::start_with(backend, &["--account-quota", &quota]) else {
        return;
    };
    let ann = wren.user("ann");
    ann.store("small", &[1u8; MIB as usize]);
    let mut big = vec![0u8; 20 * MIB as usize];
    Generator(42).fill(&mut big);
    let cut = ann.put_streamed("big", &big, true);
    assert_507(&cut, "quota_exceeded", "needs at least");
    assert_eq!(ann.keys(), ["small"]);
    assert_error(&ann.get("big"), 404, "Not Found");
    assert_eq!(ann.usage(), (MIB, 1));
    assert_local_files(&wren, "ann", 1);
    if let Some(s3) = &wren.s3 {
        assert_eq!(
            multipart_uploads(s3, &wren.prefix),
            0,
            "a multipart upload was left"
        );
    }
    // What fits still goes through, in parts on S3.
    let fits = &big[..11 * MIB as usize];
    assert_eq!(ann.put_streamed("big", fits, true).status, 201);
    assert_eq!(ann.usage(), (12 * MIB, 2));
}

/// Multipart uploads in progress under `prefix` in the test bucket.
/// rusty-s3 has no ListMultipartUploads action: it is a GET of the bucket's
/// URL with `?uploads`, signed here as a GetObject of the empty key.
fn multipart_uploads(s3: &S3Env, prefix: &str) -> usize {
    use rusty_s3::S3Action;
    let bucket = rusty_s3::Bucket::new(
        s3.endpoint.parse().unwrap(),
        rusty_s3::UrlStyle::Path,
        s3.bucket.clone(),
        s3.region.clone(),
    )
    .unwrap();
    let credentials = rusty_s3::Credentials::new(&s3.access_key_id, &s3.secret_access_key);
    let mut action = bucket.get_object(Some(&credentials), "");
    action.query_mut().insert("uploads", "");
    action.query_mut().insert("prefix", prefix);
    let url = action.sign(Duration::from_secs(60));
    let mut answer = ureq::get(url.as_str())
        .call()
        .expect("ListMultipartUploads");
    let xml = answer.body_mut().read_to_string().unwrap();
    assert!(xml.contains("ListMultipartUploadsResult"), "{xml}");
    xml.matches("<Upload>").count()
}

/// `--min-free-disk` past the disk's free space: every upload gets `507
/// insufficient_storage` and stores nothing, while sign-up, sign-in and
/// events (which the database must commit) still work.
fn min_free_disk_refuses_uploads(backend: Backend) {
    // An exabyte: more than any test machine has free. No byte quota, so
    // the refusals can only be the disk's.
    let flags = [
        "--min-free-disk",
        "1000000000000000000",
        "--account-quota",
        "0",
    ];
    let Some(wren) = Wren::start_with(backend, &flags) else {
        return;
    };
    let ann = wren.user("ann");
    let refused = ann.put_streamed("k", b"some bytes", false);
    assert_507(&refused, "insufficient_storage", "short of disk space");
    assert!(
        !refused.text().contains("1000000000000000000"),
        "{}",
        refused.text()
    );
    assert_507(
        &ann.put_streamed("k", b"some bytes", true),
        "insufficient_storage",
        "disk",
    );
    let image = ann.add_png(&PNG);
    assert_507(&image, "insufficient_storage", "disk");
    assert!(ann.keys().is_empty());
    assert_eq!(ann.usage(), (0, 0));
    assert_local_files(&wren, "ann", 0);
    // The database still takes accounts, sign-ins and events.
    let bob = wren.user("bob");
    let account = bob.call("GET", "/api/v1/account", &[], None).json();
    assert_eq!(
        account,
        json!({"login": "bob", "role": "user", "bytes_used": 0, "files": 0, "quota": null, "max_files": 100_000})
    );
    let event = json!({"type": "deposit", "amount": "10.00", "user_id": 7, "time": 1});
    let recorded = wren
        .server
        .post("/event", "application/json", &event.to_string(), "");
    assert_eq!(recorded.status, 200, "{}", recorded.text());
    // The figures go to the log, not to the client.
    wren.server.wait_for_log("min-free-disk");
}

/// An object store that cannot be reached: clients get a generic `502`
/// (`storage_error`) that names nothing of the store, and the log has the
/// cause under the request id the answer carries. Runs without Garage:
/// nothing listens on the discard port.
#[test]
fn a_failing_object_store_is_a_generic_502_and_a_log_line() {
    let address = "127.0.0.1:9";
    let endpoint = format!("http://{address}");
    let args = [
        "--storage",
        "s3",
        "--s3-endpoint",
        &endpoint,
        "--s3-bucket",
        "wren-nowhere",
    ];
    let server = Server::start_with(&args, |command: &mut Command| {
        for name in SCRUBBED_ENV {
            command.env_remove(name);
        }
        command
            .env("S3_ACCESS_KEY_ID", "GK0123456789abcdef01234567")
            .env("S3_SECRET_ACCESS_KEY", "0".repeat(64));
    });
    let account = json!({"login": "ann", "password": PASSWORD}).to_string();
    let created = server.post("/api/sign_up", "application/json", &account, "");
    assert_eq!(created.status, 201, "{}", created.text());
    let signed_in = server.post("/api/sign_in", "application/json", &account, "");
    let token = signed_in.json()["token"].as_str().unwrap().to_owned();
    let put = server.request(&format!(
        "PUT /api/file/notes.txt HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nX-Request-Id: trace-me-1\r\n\
         Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
    ));
    assert_eq!(put.status, 502, "{}", put.text());
    assert_eq!(put.json()["error"], "storage_error");
    assert!(!put.text().contains(address), "{}", put.text());
    assert!(
        put.json()["message"]
            .as_str()
            .unwrap()
            .contains("X-Request-Id")
    );
    assert_eq!(put.header("x-request-id"), Some("trace-me-1"));
    let logged = server.wait_for_log("request trace-me-1:");
    assert!(logged.contains(address), "{logged}");

    // An account's own keys are checked against the same store at sign-up.
    let with_keys = json!({
        "login": "bob",
        "password": PASSWORD,
        "access_key_id": "GK0123456789abcdef01234567",
        "secret_access_key": "0".repeat(64),
    });
    let refused = server.post(
        "/api/sign_up",
        "application/json",
        &with_keys.to_string(),
        "",
    );
    assert_eq!(refused.status, 502, "{}", refused.text());
    assert_eq!(refused.json()["error"], "storage_error");
    assert!(!refused.text().contains(address), "{}", refused.text());
}

/// `local::NAME` and `s3::NAME` for each scenario; the scenarios after `;`
/// only make sense on the local backend.
macro_rules! scenarios {
    ($($name:ident),* $(,)?; local only: $($local:ident),* $(,)?) => {
        mod local {
            $(#[test] fn $name() { super::$name(super::Backend::Local) })*
            $(#[test] fn $local() { super::$local(super::Backend::Local) })*
        }
        mod s3 {
            $(#[test] fn $name() { super::$name(super::Backend::S3) })*
        }
    };
}

scenarios! {
    nested_and_unicode_keys_round_trip,
    empty_key_and_empty_body_are_400,
    accounts_are_isolated,
    unauthenticated_requests_get_401,
    traversal_keys_are_400,
    conditional_gets_and_ranges,
    conditional_writes,
    delete_then_404,
    listing_and_paging,
    sign_up_with_own_s3_keys,
    image_uploads,
    object_size_limit,
    large_file_streams_both_ways,
    crash_mid_upload_keeps_the_old_object,
    quota_refuses_what_does_not_fit,
    replacing_counts_only_the_difference,
    file_count_limit,
    usage_survives_a_restart,
    concurrent_uploads_stay_within_the_quota,
    chunked_uploads_over_quota_are_cut,
    min_free_disk_refuses_uploads;
    local only: sign_up_with_keys_needs_an_endpoint,
}

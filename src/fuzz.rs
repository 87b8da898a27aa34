//! Fuzzing entry points (`cargo fuzz`, see `fuzz/README.md`): the engine's
//! (re-exported from `http::fuzz`) and the application's, through the real
//! route table and handlers over a real store. Compiled only for the fuzzer
//! (`cfg(fuzzing)`) and for tests, which replay the committed corpus and
//! every crash found so far through the same functions (the `tests` module
//! below).
//!
//! Beyond "no panic, no hang", every request the handlers see must get an
//! answer below 500: bad input is the client's error, named in a 4xx.

use std::io::Read;
use std::path::{Component, Path};
use std::sync::OnceLock;

use crate::App;
use crate::auth::Role;
use crate::blob::{ByteRange, MAX_KEY_BYTES, check_key};
use crate::config::Config;
use crate::http::fuzz::escape_every_byte;
use crate::http::response::ResponseBody;
use crate::http::{Body, Request, Response};
use crate::model::Model;
use crate::router::Router;
use crate::routes::{self, Rule};

pub use crate::http::fuzz::{
    TlsConfig, body, connection, head, multipart, percent, tls, tls_config,
};

/// An application on default settings over a fresh data folder, its route
/// table, and an administrator's token.
struct Harness {
    app: App,
    router: Router<App, Rule>,
    bearer: String,
}

/// The file the range and conditional requests read.
const FILE_KEY: &str = "fuzz/digits.txt";
const FILE_BYTES: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        // A memory-backed folder where there is one: each event is an
        // fsync, which there costs nothing.
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        remove_stale_folders(&base);
        let dir = base.join(format!("{FOLDER_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a data folder for the fuzzed server");
        let data_dir = dir.to_str().expect("a UTF-8 temporary folder");
        let config = Config::parse(
            "wren",
            &["--data-dir", data_dir, "--admin", "fuzz:fuzzing-password"],
            |_| None,
        )
        .expect("the fuzzed server's settings");
        let app = App::open(config).expect("the fuzzed server");
        let router = routes::table(&app);
        let (token, _) = app.tokens.issue("fuzz", Role::Admin).expect("a token");
        let harness = Harness {
            app,
            router,
            bearer: format!("Bearer {token}"),
        };
        let stored = harness.send(
            Request::new("PUT", &format!("/api/file/{FILE_KEY}"))
                .with_header("Content-Type", "text/plain")
                .with_body(Body::from_bytes(FILE_BYTES.to_vec())),
        );
        assert_eq!(stored.status(), 201, "{:?}", stored.body_bytes());
        harness
    })
}

/// The data folders of fuzzed servers are named this, then the process id.
const FOLDER_PREFIX: &str = "wren-fuzz-";

/// Removes the data folders of fuzzing processes that have ended: a
/// fuzzer stops by exiting, with no chance to clean up after itself.
fn remove_stale_folders(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(FOLDER_PREFIX))
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Harness {
    /// Serves `request` as the administrator, waiting for a later answer.
    fn send(&self, request: Request<'_>) -> Response {
        let mut request = request.with_header("Authorization", &self.bearer);
        self.router.dispatch(&self.app, &mut request).answered()
    }
}

/// Serves `request` and checks its answer is not a server error.
fn serve(request: Request<'_>, what: &str) -> Response {
    let response = harness().send(request);
    assert!(
        response.status() < 500,
        "{what}: {} {}",
        response.status(),
        String::from_utf8_lossy(response.body_bytes().unwrap_or_default())
    );
    response
}

/// The request bodies handlers parse: the first byte picks the route and
/// the media type, the rest is the body.
pub fn payload(data: &[u8]) {
    const ROUTES: [(&str, &str); 9] = [
        ("POST", "/event"),
        ("POST", "/api/v1/predict"),
        ("POST", "/predict"),
        ("POST", "/api/sign_up"),
        ("POST", "/api/sign_in"),
        ("POST", "/login"),
        ("PUT", "/api/v1/users/7/alert-profile"),
        ("POST", "/api/v1/keys"),
        ("POST", "/api/v1/images"),
    ];
    const TYPES: [&str; 4] = [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=XyZ",
        "text/plain",
    ];
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (method, path) = ROUTES[usize::from(pick) % ROUTES.len()];
    let media_type = TYPES[usize::from(pick) / ROUTES.len() % TYPES.len()];
    let request = Request::new(method, path)
        .with_header("Content-Type", media_type)
        .with_body(Body::from_bytes(body.to_vec()));
    serve(request, &format!("{method} {path} ({media_type})"));
}

/// Any method and request target through the route table: path matching,
/// percent-decoding of parameters, query strings.
pub fn request_target(data: &[u8]) {
    const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"];
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(target) = std::str::from_utf8(rest) else {
        return;
    };
    // The engine hands handlers only origin-form targets of visible ASCII.
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return;
    }
    let method = METHODS[usize::from(pick) % METHODS.len()];
    serve(Request::new(method, target), &format!("{method} {target}"));
}

/// A key that passes the rules is a relative path of plain names within
/// the limit; a key of any bytes, as a request target, gets a 4xx or the
/// file.
pub fn key(data: &[u8]) {
    let Ok(key) = std::str::from_utf8(data) else {
        return;
    };
    if check_key(key).is_ok() {
        assert!((1..=MAX_KEY_BYTES).contains(&key.len()), "{key:?}");
        assert!(!key.chars().any(char::is_control), "{key:?}");
        assert!(
            Path::new(key)
                .components()
                .all(|part| matches!(part, Component::Normal(_))),
            "{key:?} leaves its folder"
        );
    }
    serve(
        Request::new("GET", &format!("/api/file/{}", escape_every_byte(data))),
        &format!("GET {key:?}"),
    );
}

/// `Range` and the conditional headers: a range that parses writes out to
/// itself and resolves inside the object; a read of the stored file with
/// any of them gets a 4xx, the file, or exactly the part of it its
/// `Content-Range` names.
pub fn range(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut values = text.split('\n');
    let range = values.next().unwrap_or_default();
    if let Some(parsed) = ByteRange::parse(range) {
        assert_eq!(ByteRange::parse(&parsed.header_value()), Some(parsed));
        for size in [0, 1, FILE_BYTES.len() as u64, u64::MAX] {
            if let Some((first, last)) = parsed.resolve(size) {
                assert!(first <= last && last < size, "{parsed:?} in {size}");
            }
        }
    }
    let mut request = Request::new("GET", &format!("/api/file/{FILE_KEY}"));
    if !range.is_empty() {
        request = request.with_header("Range", range);
    }
    for (name, value) in ["If-Range", "If-None-Match", "If-Match", "If-Modified-Since"]
        .into_iter()
        .zip(values)
    {
        request = request.with_header(name, value);
    }
    let response = serve(request, &format!("GET with {text:?}"));
    if response.status() == 206 {
        let content_range = response
            .header("content-range")
            .expect("a 206's range")
            .to_owned();
        let (span, size) = content_range
            .strip_prefix("bytes ")
            .and_then(|rest| rest.split_once('/'))
            .expect("bytes first-last/size");
        let (first, last) = span.split_once('-').expect("first-last");
        let first: usize = first.parse().expect("a number");
        let last: usize = last.parse().expect("a number");
        assert_eq!(size, FILE_BYTES.len().to_string());
        let body = response_bytes(response);
        assert_eq!(body, &FILE_BYTES[first..=last], "{content_range}");
    }
}

/// A response's body, read whole.
fn response_bytes(response: Response) -> Vec<u8> {
    let (_, _, body) = response.into_parts();
    match body {
        ResponseBody::Empty => Vec::new(),
        ResponseBody::Bytes(bytes) => bytes.into_owned(),
        ResponseBody::Stream { mut reader, .. } => {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).expect("the file's bytes");
            bytes
        }
    }
}

/// The model file loader: whatever it accepts predicts for any inputs
/// without panicking.
pub fn model(data: &[u8]) {
    let Ok(model) = Model::from_json(data) else {
        return;
    };
    let row: Vec<f64> = (0..model.width())
        .map(|i| data.get(i).map_or(0.0, |&b| f64::from(b) - 128.0))
        .collect();
    model.predict(&row);
    model.is_deterministic();
}

#[cfg(test)]
mod tests {
    //! Every input in `fuzz/corpus/<target>` (the committed seeds) and
    //! `fuzz/regressions/<target>` (the crashes fuzzing found, each fixed)
    //! goes through its target again, so `make test` keeps them fixed.

    use super::*;
    use std::path::PathBuf;

    fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut inputs = Vec::new();
        for kind in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                inputs.push((path, bytes));
            }
        }
        inputs
    }

    fn replay(target: &str, run: impl Fn(&[u8])) {
        let inputs = inputs(target);
        assert!(!inputs.is_empty(), "no seed inputs for the {target} target");
        for (path, bytes) in inputs {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&bytes)));
            assert!(outcome.is_ok(), "{} fails again", path.display());
        }
    }

    #[test]
    fn connection_inputs_pass() {
        replay("connection", connection);
    }

    #[test]
    fn head_inputs_pass() {
        replay("head", head);
    }

    #[test]
    fn body_inputs_pass() {
        replay("body", body);
    }

    #[test]
    fn multipart_inputs_pass() {
        replay("multipart", multipart);
    }

    #[test]
    fn percent_inputs_pass() {
        replay("percent", percent);
    }

    #[test]
    fn tls_inputs_pass() {
        let issued = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let config = tls_config(&issued.cert.pem(), &issued.signing_key.serialize_pem());
        replay("tls", |data| tls(&config, data));
    }

    #[test]
    fn payload_inputs_pass() {
        replay("payload", payload);
    }

    #[test]
    fn request_target_inputs_pass() {
        replay("request_target", request_target);
    }

    #[test]
    fn key_inputs_pass() {
        replay("key", key);
    }

    #[test]
    fn range_inputs_pass() {
        replay("range", range);
    }

    #[test]
    fn model_inputs_pass() {
        replay("model", model);
    }
}

//! Routes that exist only for the socket-level tests (feature
//! `test-routes`): a handler that panics, one that takes its time, and one
//! that echoes its body. Never compiled into release builds.

use std::io::Read;
use std::thread;
use std::time::Duration;

use crate::App;
use crate::handlers::session::{self, Access};
use crate::http::{ApiError, Request, Response};
use crate::router::Router;
use crate::routes::{Doc, Rule};

/// The rules of test routes: marked so, which keeps them out of the API
/// document.
const OPEN: Rule = Rule {
    access: Access::Open,
    doc: Doc::TestOnly,
};
const ACCOUNT: Rule = Rule {
    access: Access::Account,
    doc: Doc::TestOnly,
};

pub fn routes(router: Router<App, Rule>) -> Router<App, Rule> {
    router
        .get("/__test/panic", OPEN, panic)
        .get("/__test/sleep/{ms:int}", OPEN, sleep)
        .post("/__test/echo", OPEN, echo)
        .get("/__test/whoami", ACCOUNT, whoami)
        .get("/__test/stream/{n:int}", OPEN, stream)
        .post("/__test/count", OPEN, count)
        .body_limit(1 << 30)
}

/// A protected route: who the caller is signed in as.
fn whoami(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let (claims, _) = session::signed_in(app, request)?;
    Ok(Response::json(
        200,
        &serde_json::json!({"user": claims.sub}),
    ))
}

fn panic(_app: &App, _request: &mut Request<'_>) -> Result<Response, ApiError> {
    panic!("this test route always panics");
}

fn sleep(_app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let ms = request.param_int("ms")?.clamp(0, 60_000) as u64;
    thread::sleep(Duration::from_millis(ms));
    Ok(Response::text(200, format!("slept {ms} ms")))
}

/// Echoes the body (within the default limit).
fn echo(_app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let body = request.body().read_to_vec()?;
    Ok(Response::new(200)
        .with_header("Content-Type", "application/octet-stream")
        .with_body(body))
}

/// Streams `n` bytes (`0123456789` repeated) with no declared length, so
/// the engine must frame it (chunked, or close-delimited for HTTP/1.0).
fn stream(_app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let n = request.param_int("n")?.clamp(0, 1 << 30) as u64;
    // Generated as it is read, so a large n costs no memory.
    let body = Digits { next: 0, len: n };
    Ok(Response::stream(200, Box::new(body), None))
}

/// Counts the body's bytes as it streams, in constant memory (up to 1 GiB).
fn count(_app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let mut buf = [0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match request
            .body()
            .read(&mut buf)
            .map_err(ApiError::from_body_read)?
        {
            0 => break,
            n => total += n as u64,
        }
    }
    Ok(Response::text(200, total.to_string()))
}

/// `len` bytes of `0123456789` repeated, generated as they are read.
struct Digits {
    next: u64,
    len: u64,
}

impl std::io::Read for Digits {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = out.len().min((self.len - self.next) as usize);
        for (i, slot) in out[..n].iter_mut().enumerate() {
            *slot = b'0' + ((self.next + i as u64) % 10) as u8;
        }
        self.next += n as u64;
        Ok(n)
    }
}

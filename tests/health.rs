//! The operator's routes over real sockets: the index, liveness, and
//! readiness against a real object store that stops answering and comes
//! back. That test runs its own Garage node (`scripts/garage.sh up`), since
//! freezing the one the other S3 tests share would fail them; it needs the
//! Garage binary, so it runs where the S3 tests do (`WREN_TEST_S3=required`
//! under `scripts/with-garage.sh`) and prints a skip line elsewhere.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, temp_dir};

#[test]
fn index_liveness_and_readiness_answer_and_are_never_stored() {
    let server = Server::start(&[]);
    let index = server.get("/");
    assert_eq!(index.status, 200);
    assert_eq!(index.json()["name"], "wren");
    let live = server.get("/livez");
    assert_eq!((live.status, live.text().as_str()), (200, "ok"));
    let ready = server.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["checks"]["storage"], "ok");
    for response in [&live, &ready] {
        assert_eq!(response.header("cache-control"), Some("no-store"));
    }
    let status = server.get("/status");
    assert_eq!(status.header("cache-control"), Some("no-store"));
    assert_eq!(status.header("vary"), Some("Accept"));
}

/// A Garage node of this test's own, stopped when dropped.
struct Garage {
    pid: i32,
    exports: HashMap<String, String>,
}

impl Garage {
    fn start() -> Garage {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/garage.sh");
        let dir = temp_dir("garage");
        for attempt in 0..5 {
            let base = 20_000 + (std::process::id() as u16 % 20_000) + attempt * 97;
            let output = Command::new(&script)
                .arg("up")
                .arg(dir.join(attempt.to_string()))
                .arg(base.to_string())
                .output()
                .unwrap();
            if !output.status.success() {
                continue;
            }
            let exports: HashMap<String, String> = String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| line.strip_prefix("export "))
                .filter_map(|pair| pair.split_once('='))
                .map(|(name, value)| (name.to_owned(), value.trim_matches('\'').to_owned()))
                .collect();
            let pid = exports["GARAGE_PID"].parse().unwrap();
            return Garage { pid, exports };
        }
        panic!("could not start a Garage node of this test's own");
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the node this test started.
        assert_eq!(unsafe { libc::kill(self.pid, signal) }, 0);
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGKILL);
    }
}

/// Polls `/readyz` until it answers `status`, for up to 10 s.
fn wait_for_readiness(server: &Server, status: u16) -> common::Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = server.get("/readyz");
        if response.status == status || Instant::now() > deadline {
            return response;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn readiness_follows_the_object_store_down_and_back() {
    if std::env::var("WREN_TEST_S3").as_deref() != Ok("required") {
        println!("skipped: needs Garage (run through scripts/with-garage.sh)");
        return;
    }
    let garage = Garage::start();
    let env = |name: &str| garage.exports[name].clone();
    let server = Server::start_with(
        &[
            "--storage",
            "s3",
            "--s3-endpoint",
            &env("S3_ENDPOINT"),
            "--s3-region",
            &env("S3_REGION"),
            "--s3-bucket",
            &env("S3_BUCKET"),
        ],
        |command| {
            command
                .env("S3_ACCESS_KEY_ID", env("S3_ACCESS_KEY_ID"))
                .env("S3_SECRET_ACCESS_KEY", env("S3_SECRET_ACCESS_KEY"));
        },
    );
    let ready = wait_for_readiness(&server, 200);
    assert_eq!(ready.status, 200, "{}", ready.text());

    // Frozen: it takes connections but never answers.
    garage.signal(libc::SIGSTOP);
    let started = Instant::now();
    let frozen = server.get("/readyz");
    assert_eq!(frozen.status, 503, "{}", frozen.text());
    assert!(started.elapsed() < Duration::from_secs(5));
    let body = frozen.json();
    assert_eq!(body["details"][0]["field"], "storage", "{body}");
    assert!(
        !frozen.text().contains("127.0.0.1"),
        "the store's address stays in the log: {}",
        frozen.text()
    );
    assert_eq!(frozen.header("retry-after"), Some("1"));
    assert_eq!(server.get("/livez").status, 200, "alive all the same");

    garage.signal(libc::SIGCONT);
    let back = wait_for_readiness(&server, 200);
    assert_eq!(back.status, 200, "{}", back.text());
}

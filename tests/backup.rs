//! Online backup and restore against the real binary: a backup of a live
//! server while clients write, restored and served again; the refusals;
//! the schedule inside the server; and, when scripts/with-garage.sh has
//! set up a Garage node (`S3_ENDPOINT`), backups on S3 and of a server
//! keeping its files there. Without it the S3 tests print a skip line and
//! pass, unless `WREN_TEST_S3=required`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use common::{Response, Server, read_response, wren};

const JSON: &str = "application/json";
const ADMIN: &str = "auditor:audit-password";
const PASSWORD: &str = "correct horse";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed; its stdout and stderr.
fn succeeds(args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let out = wren(args, env);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "{args:?}: {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    (stdout, stderr)
}

/// Runs a command that must fail with `code`; its error line, the last
/// of stderr (phases it went through are logged before it).
fn fails(args: &[&str], env: &[(&str, &str)], code: i32) -> String {
    let out = wren(args, env);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert_eq!(stderr.lines().last(), errors.first().copied(), "{stderr}");
    errors[0].to_owned()
}

/// A server on `args` with nothing from the test's environment (the S3
/// variables scripts/with-garage.sh exports would otherwise reach it).
fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
    Server::start_with(args, |command| {
        command.env_clear().envs(env.iter().copied());
    })
}

/// A path `name` in a fresh folder, not there yet.
fn fresh(name: &str) -> PathBuf {
    common::temp_dir("backup").join(name)
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Restores the backup at `from` into a fresh folder, which must succeed:
/// the new data folder.
fn restored_from(from: &str, env: &[(&str, &str)]) -> PathBuf {
    let restored = fresh("restored");
    succeeds(
        &["restore", "--from", from, "--data-dir", path(&restored)],
        env,
    );
    restored
}

/// One request on a new connection, with a bearer token and a byte body.
fn call(server: &Server, method: &str, target: &str, token: &str, body: &[u8]) -> Response {
    let mut raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let mut stream = server.connect();
    stream.write_all(&raw).unwrap();
    read_response(&mut std::io::BufReader::new(stream), method != "HEAD")
}

/// Signs `login` up and in: its token.
fn account(server: &Server, login: &str) -> String {
    let body = json!({"login": login, "password": PASSWORD}).to_string();
    let created = server.post("/api/sign_up", JSON, &body, "");
    assert_eq!(created.status, 201, "{}", created.text());
    token(server, login, PASSWORD)
}

fn token(server: &Server, login: &str, password: &str) -> String {
    let body = json!({"login": login, "password": password}).to_string();
    let signed_in = server.post("/api/sign_in", JSON, &body, "");
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
    signed_in.json()["token"].as_str().unwrap().to_owned()
}

/// The user's stored history, oldest first, read as the admin `admin`.
fn history(server: &Server, admin: &str, user_id: i64) -> Vec<Value> {
    common::events::history(
        server,
        &format!("Authorization: Bearer {admin}\r\n"),
        user_id,
    )
}

/// `PRAGMA integrity_check` of a restored database.
fn integrity(database: &Path) -> String {
    let conn = rusqlite::Connection::open(database).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

/// What one client wrote, each write marked with whether its answer came
/// before the backup began.
#[derive(Default)]
struct Written {
    token: String,
    user_id: i64,
    /// Every event stored, in order: (type, amount, time, codes, before).
    events: Vec<(String, String, i64, Value, bool)>,
    /// Every version written of each key, in order: (bytes, before).
    files: BTreeMap<String, Vec<(Vec<u8>, bool)>>,
}

/// One of the clients: posts an event and uploads a file (every fourth a
/// replacement of an earlier key) per round until `stop`, counting rounds.
fn client(
    server: &Server,
    number: usize,
    began: &AtomicBool,
    stop: &AtomicBool,
    rounds: &AtomicUsize,
) -> Written {
    let mut written = Written {
        token: account(server, &format!("client{number}")),
        user_id: 1000 + number as i64,
        ..Written::default()
    };
    let mut rng = fastrand::Rng::with_seed(number as u64);
    let mut round = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let kind = if round % 3 == 2 {
            "withdraw"
        } else {
            "deposit"
        };
        let amount = format!("{}.{:02}", 50 + rng.u32(..300), rng.u32(..100));
        let time = round as i64 * 1000;
        let event =
            json!({"type": kind, "amount": amount, "user_id": written.user_id, "time": time});
        let answer = server.post("/event", JSON, &event.to_string(), "");
        let before = !began.load(Ordering::SeqCst);
        assert_eq!(answer.status, 200, "{}", answer.text());
        let codes = answer.json()["alert_codes"].clone();
        written
            .events
            .push((kind.to_owned(), amount, time, codes, before));

        let key = if round % 4 == 3 {
            format!("doc-{}.bin", round - 2)
        } else {
            format!("doc-{round}.bin")
        };
        let size = rng.usize(1..64 * 1024);
        let bytes: Vec<u8> = (0..size).map(|_| rng.u8(..)).collect();
        let answer = call(
            server,
            "PUT",
            &format!("/api/file/{key}"),
            &written.token,
            &bytes,
        );
        let before = !began.load(Ordering::SeqCst);
        assert!(
            answer.status == 200 || answer.status == 201,
            "{}",
            answer.text()
        );
        written.files.entry(key).or_default().push((bytes, before));
        round += 1;
        rounds.fetch_add(1, Ordering::SeqCst);
    }
    written
}

/// The done-when of issue 15's backup item: a backup taken while 8
/// clients post events and upload files, restored into a new folder and
/// served, holds every write answered before the backup began, and its
/// databases pass `PRAGMA integrity_check`.
#[test]
fn a_backup_of_a_busy_server_holds_every_write_acknowledged_before_it_began() {
    const CLIENTS: usize = 8;
    let server = start(&["--admin", ADMIN], &[]);
    let began = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let rounds: Vec<AtomicUsize> = (0..CLIENTS).map(|_| AtomicUsize::new(0)).collect();
    let backup = fresh("backup");
    let (written, backed_up) = thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|number| {
                let (server, began, stop, rounds) = (&server, &began, &stop, &rounds[number]);
                scope.spawn(move || client(server, number, began, stop, rounds))
            })
            .collect();
        // Every client has written for a while before the backup begins.
        let deadline = Instant::now() + Duration::from_secs(60);
        while rounds.iter().any(|done| done.load(Ordering::SeqCst) < 10) {
            assert!(Instant::now() < deadline, "the clients did not get going");
            thread::sleep(Duration::from_millis(20));
        }
        began.store(true, Ordering::SeqCst);
        let backed_up = wren(
            &[
                "backup",
                "--to",
                path(&backup),
                "--data-dir",
                path(&server.data_dir),
            ],
            &[],
        );
        // And they keep writing until it is done.
        stop.store(true, Ordering::SeqCst);
        let written: Vec<Written> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        (written, backed_up)
    });
    let (stdout, stderr) = (text(&backed_up.stdout), text(&backed_up.stderr));
    assert!(backed_up.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("backed up "), "{stdout}");
    // Not a terminal: one log line per phase.
    for phase in [
        "backup: snapshot databases: ",
        "backup: copy files: ",
        "backup: done: ",
    ] {
        assert_eq!(
            stderr.lines().filter(|line| line.contains(phase)).count(),
            1,
            "{phase}: {stderr}"
        );
    }
    drop(server);

    let restored = restored_from(path(&backup), &[]);
    for database in ["wren.db", "files/index.db"] {
        assert_eq!(integrity(&restored.join(database)), "ok", "{database}");
    }
    let server = start(&["--data-dir", path(&restored), "--admin", ADMIN], &[]);
    let admin = token(&server, "auditor", "audit-password");
    let mut required = (0, 0);
    for client in &written {
        // The events stored are the first ones the client sent, every one
        // answered before the backup began among them, each with its codes.
        let stored = history(&server, &admin, client.user_id);
        let before = client.events.iter().filter(|event| event.4).count();
        required.0 += before;
        assert!(
            stored.len() >= before && stored.len() <= client.events.len(),
            "user {}: {} stored, {before} answered before the backup",
            client.user_id,
            stored.len()
        );
        for (stored, (kind, amount, time, codes, _)) in stored.iter().zip(&client.events) {
            let expected =
                json!({"type": kind, "amount": amount, "time": time, "alert_codes": codes});
            assert_eq!(stored, &expected, "user {}", client.user_id);
        }
        // Every key written before the backup began holds the last version
        // answered before it, or one written after; read with the token
        // issued before the backup (the secret came along).
        for (key, versions) in &client.files {
            let Some(last_before) = versions.iter().rposition(|(_, before)| *before) else {
                continue;
            };
            required.1 += 1;
            let answer = call(
                &server,
                "GET",
                &format!("/api/file/{key}"),
                &client.token,
                b"",
            );
            assert_eq!(answer.status, 200, "{key}: {}", answer.text());
            let allowed = versions[last_before..]
                .iter()
                .enumerate()
                .any(|(at, (bytes, before))| (at == 0 || !before) && *bytes == answer.body);
            assert!(allowed, "{key} holds bytes its client never wrote there");
        }
    }
    // The check had something to check.
    assert!(required.0 >= 80 && required.1 >= 60, "{required:?}");
}

#[test]
fn a_restore_refuses_a_used_folder_and_a_damaged_backup() {
    let server = start(&[], &[]);
    let token = account(&server, "ann");
    let put = call(&server, "PUT", "/api/file/a.txt", &token, b"bytes of a");
    assert_eq!(put.status, 201, "{}", put.text());
    let data = path(&server.data_dir).to_owned();
    let backup = fresh("backup");
    succeeds(&["backup", "--to", path(&backup), "--data-dir", &data], &[]);

    let again = fails(
        &["backup", "--to", path(&backup), "--data-dir", &data],
        &[],
        2,
    );
    assert!(
        again.starts_with("error: --to: ") && again.contains("already exists"),
        "{again}"
    );
    let empty = common::temp_dir("empty");
    let not_data = fails(
        &[
            "backup",
            "--to",
            path(&fresh("b")),
            "--data-dir",
            path(&empty),
        ],
        &[],
        2,
    );
    assert!(not_data.contains("holds no wren database"), "{not_data}");

    let from = path(&backup);
    let into_data = fails(&["restore", "--from", from, "--data-dir", &data], &[], 2);
    assert!(
        into_data.starts_with("error: --data-dir: ")
            && into_data.contains("already holds a wren database"),
        "{into_data}"
    );
    fs::write(empty.join("notes"), b"mine").unwrap();
    let not_empty = fails(
        &["restore", "--from", from, "--data-dir", path(&empty)],
        &[],
        2,
    );
    assert!(not_empty.contains("is not empty"), "{not_empty}");
    let nothing = fails(
        &[
            "restore",
            "--from",
            path(&empty),
            "--data-dir",
            path(&fresh("n")),
        ],
        &[],
        2,
    );
    assert!(nothing.contains("no manifest.json"), "{nothing}");

    // One byte of the stored file changed: the manifest's hash finds it,
    // and nothing is laid out.
    let stored = fs::read_dir(backup.join("files/accounts/ann"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = fs::read(&stored).unwrap();
    bytes[0] ^= 0x20;
    fs::write(&stored, bytes).unwrap();
    let new = fresh("new");
    let damaged = fails(
        &["restore", "--from", from, "--data-dir", path(&new)],
        &[],
        1,
    );
    assert!(
        damaged.contains("damaged") && damaged.contains("files/accounts/ann/"),
        "{damaged}"
    );
    assert!(!new.exists());
}

/// Counts the log lines holding `needle`.
fn count(server: &Server, needle: &str) -> usize {
    server
        .log()
        .iter()
        .filter(|line| line.contains(needle))
        .count()
}

/// The complete backups in a `--backup-to` folder.
fn backups_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("wren-backup-"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn the_server_backs_up_on_schedule_and_keeps_the_newest() {
    let to = fresh("scheduled");
    // 0.0005 hours: every 1.8 s.
    let server = start(
        &[
            "--backup-every",
            "0.0005",
            "--backup-keep",
            "2",
            "--backup-to",
            path(&to),
        ],
        &[],
    );
    server.wait_for_log("backups every 0.0005 h into");
    account(&server, "ann");
    let deadline = Instant::now() + Duration::from_secs(60);
    // The log is written by a thread of its own: the line saying what was
    // removed may come after the removal.
    while count(&server, "backup: done: backed up") < 3
        || count(&server, "keeping the newest 2: wren-backup-") < 1
        || backups_in(&to).len() != 2
    {
        assert!(
            Instant::now() < deadline,
            "{:?}\n{:#?}",
            backups_in(&to),
            server.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(count(&server, "backup: snapshot databases: ") >= 3);
    // The newest restores into a folder a server starts on.
    let newest = to.join(backups_in(&to).pop().unwrap());
    let restored = restored_from(path(&newest), &[]);
    let server = start(&["--data-dir", path(&restored)], &[]);
    token(&server, "ann", PASSWORD);
}

#[test]
fn a_failing_scheduled_backup_is_logged_and_the_server_serves_on() {
    let blocker = common::temp_dir("blocker").join("a-file");
    fs::write(&blocker, b"not a folder").unwrap();
    let server = start(
        &["--backup-every", "0.0002", "--backup-to", path(&blocker)],
        &[],
    );
    server.wait_for_log("scheduled backup to ");
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&server, "scheduled backup to ") < 2 {
        assert!(Instant::now() < deadline, "{:#?}", server.log());
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.get("/status").status, 200);
    assert!(!server.data_dir.join(".backup").exists());
}

#[test]
fn schedule_flags_go_together() {
    let refused = |args: &[&str], needle: &str| {
        let out = wren(args, &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    };
    refused(
        &["--backup-every", "1"],
        "--backup-every: needs --backup-to",
    );
    refused(&["--backup-to", "/b"], "--backup-to: needs --backup-every");
    refused(
        &["--backup-every", "0", "--backup-to", "/b"],
        "--backup-every: expected a positive number of hours",
    );
    refused(
        &["--backup-every", "1", "--backup-to", "s3://b-1/x"],
        "needs the server's S3 settings",
    );
    refused(
        &[
            "--backup-every",
            "1",
            "--backup-to",
            "/b",
            "--backup-keep",
            "0",
        ],
        "--backup-keep: must be at least 1",
    );
}

/// The Garage node's settings, or `None` (and a skip line).
fn garage() -> Option<Vec<(&'static str, String)>> {
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let Some(endpoint) = var("S3_ENDPOINT") else {
        assert!(
            var("WREN_TEST_S3").as_deref() != Some("required"),
            "WREN_TEST_S3=required, but S3_ENDPOINT is not set"
        );
        println!("skipped: S3_ENDPOINT is not set (run through scripts/with-garage.sh)");
        return None;
    };
    let need =
        |name: &str| var(name).unwrap_or_else(|| panic!("S3_ENDPOINT is set but {name} is not"));
    Some(vec![
        ("S3_ENDPOINT", endpoint),
        (
            "S3_REGION",
            var("S3_REGION").unwrap_or_else(|| "us-east-1".into()),
        ),
        ("S3_ACCESS_KEY_ID", need("S3_ACCESS_KEY_ID")),
        ("S3_SECRET_ACCESS_KEY", need("S3_SECRET_ACCESS_KEY")),
        ("S3_BUCKET", need("S3_BUCKET")),
    ])
}

/// A prefix no other test or run uses.
fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "wren-test-{}-{name}-{}",
        std::process::id(),
        nanos % 1_000_000_000
    )
}

fn env_of<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    settings
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

#[test]
fn a_backup_on_s3_restores() {
    let Some(garage) = garage() else { return };
    let bucket = &garage
        .iter()
        .find(|(name, _)| *name == "S3_BUCKET")
        .unwrap()
        .1;
    // The server keeps its files locally; the backup goes to the bucket
    // (the server has no bucket of its own, so there is no overlap).
    let env: Vec<(&str, &str)> = env_of(&garage)
        .into_iter()
        .filter(|(name, _)| *name != "S3_BUCKET")
        .collect();
    let server = start(&["--admin", ADMIN], &[]);
    let ann = account(&server, "ann");
    let put = call(
        &server,
        "PUT",
        "/api/file/big.bin",
        &ann,
        &vec![7u8; 9 << 20],
    );
    assert_eq!(put.status, 201, "{}", put.text());
    let event = json!({"type": "deposit", "amount": "250.00", "user_id": 1, "time": 5});
    assert_eq!(
        server.post("/event", JSON, &event.to_string(), "").status,
        200
    );
    let location = format!("s3://{bucket}/{}", unique("cli"));
    let data = path(&server.data_dir).to_owned();
    let (stdout, stderr) = succeeds(&["backup", "--to", &location, "--data-dir", &data], &env);
    assert!(stdout.contains(&location), "{stdout}");
    assert!(stderr.contains("backup: upload files: "), "{stderr}");
    let again = fails(&["backup", "--to", &location, "--data-dir", &data], &env, 2);
    assert!(again.contains("already holds a backup"), "{again}");
    drop(server);

    let restored = restored_from(&location, &env);
    let server = start(&["--data-dir", path(&restored), "--admin", ADMIN], &[]);
    let file = call(&server, "GET", "/api/file/big.bin", &ann, b"");
    assert_eq!(file.status, 200);
    assert!(file.body.len() == 9 << 20 && file.body.iter().all(|&b| b == 7));
    let admin = token(&server, "auditor", "audit-password");
    assert_eq!(history(&server, &admin, 1).len(), 1);
}

#[test]
fn files_kept_on_s3_stay_there_and_the_restored_server_finds_them() {
    let Some(garage) = garage() else { return };
    let env = env_of(&garage);
    let prefix = format!("{}/", unique("files"));
    let server = start(&["--storage", "s3", "--s3-prefix", &prefix], &env);
    let ann = account(&server, "ann");
    let put = call(&server, "PUT", "/api/file/on-s3.txt", &ann, b"kept on S3");
    assert_eq!(put.status, 201, "{}", put.text());
    let backup = fresh("backup");
    let data = path(&server.data_dir).to_owned();
    let (stdout, _) = succeeds(
        &[
            "backup",
            "--to",
            path(&backup),
            "--data-dir",
            &data,
            "--s3-prefix",
            &prefix,
        ],
        &env,
    );
    assert!(stdout.contains("stay where they are"), "{stdout}");
    let manifest: Value =
        serde_json::from_slice(&fs::read(backup.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["s3_objects"]["prefix"], prefix);
    assert!(
        manifest["databases"]
            .as_array()
            .unwrap()
            .contains(&json!("files/s3-index.db")),
        "{manifest}"
    );
    drop(server);

    let restored = restored_from(path(&backup), &env);
    let server = start(
        &[
            "--storage",
            "s3",
            "--s3-prefix",
            &prefix,
            "--data-dir",
            path(&restored),
        ],
        &env,
    );
    let file = call(&server, "GET", "/api/file/on-s3.txt", &ann, b"");
    assert_eq!(
        (file.status, file.body.as_slice()),
        (200, &b"kept on S3"[..])
    );
    // The usage the size record kept came along.
    let usage = call(&server, "GET", "/api/v1/account", &ann, b"").json();
    assert_eq!(
        (usage["bytes_used"].as_u64(), usage["files"].as_u64()),
        (Some(10), Some(1)),
        "{usage}"
    );
}

#[test]
fn scheduled_backups_on_s3_keep_the_newest() {
    let Some(garage) = garage() else { return };
    let env: Vec<(&str, &str)> = env_of(&garage)
        .into_iter()
        .filter(|(name, _)| *name != "S3_BUCKET")
        .collect();
    let bucket = &garage
        .iter()
        .find(|(name, _)| *name == "S3_BUCKET")
        .unwrap()
        .1;
    let to = format!("s3://{bucket}/{}", unique("scheduled"));
    let mut server = start(
        &[
            "--backup-every",
            "0.0005",
            "--backup-keep",
            "1",
            "--backup-to",
            &to,
        ],
        &env,
    );
    account(&server, "ann");
    let deadline = Instant::now() + Duration::from_secs(90);
    while count(&server, "keeping the newest 1: wren-backup-") < 1 {
        assert!(Instant::now() < deadline, "{:#?}", server.log());
        thread::sleep(Duration::from_millis(50));
    }
    // Stopped, so that the newest backup its log names stays the newest.
    server.signal(libc::SIGKILL);
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());
    // Where each backup went, from its done line.
    let made: Vec<String> = server
        .log()
        .iter()
        .filter(|line| line.contains("backup: done: backed up"))
        .filter_map(|line| {
            let rest = line.split(&format!(" to {to}/")).nth(1)?;
            Some(format!("{to}/{}", rest.split(':').next()?))
        })
        .collect();
    assert!(made.len() >= 2, "{made:?}");
    let removed = fails(
        &[
            "restore",
            "--from",
            &made[0],
            "--data-dir",
            path(&fresh("old")),
        ],
        &env,
        2,
    );
    assert!(removed.contains("no manifest.json"), "{removed}");
    restored_from(made.last().unwrap(), &env);
}

//! The command line as an operator meets it: help and version, every kind
//! of refused value, where values come from, and how wren starts or fails to.

mod common;

use std::process::{Command, Output, Stdio};

use common::{BIN, Server, wren};
use wren::config::SETTINGS;

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn version_and_help() {
    let out = wren(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("wren {}", env!("CARGO_PKG_VERSION"))
    );
    let out = wren(&["--help"], &[]);
    assert!(out.status.success());
    assert_eq!(stderr(&out), "");
    let help = stdout(&out);
    for flag in [
        "--host",
        "--port",
        "--data-dir",
        "--threads",
        "--max-connections",
        "--header-timeout",
        "--keep-alive-timeout",
        "--io-timeout",
        "--max-body",
        "--shutdown-timeout",
        "--log-format",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(help.contains("WREN_HOST") && help.contains("PORT"));
    assert!(help.lines().all(|line| line.len() <= 80), "{help}");
    // `wren help` is `wren --help`.
    assert_eq!(stdout(&wren(&["help"], &[])), help);
}

#[test]
fn help_lists_every_setting_with_its_variables_and_default() {
    let help = stdout(&wren(&["--help"], &[]));
    for setting in SETTINGS {
        // Environment-only settings are headed by their variables.
        let heading = format!(
            "  {}",
            setting
                .usage
                .map_or_else(|| setting.env.join(", "), str::to_owned)
        );
        // The entry: its heading and the indented lines under it.
        let entry: Vec<&str> = help
            .lines()
            .skip_while(|line| *line != heading)
            .take_while(|line| *line == heading || line.starts_with("      "))
            .collect();
        assert!(!entry.is_empty(), "--help lacks {heading}:\n{help}");
        // Words as they read, whatever the wrapping split them by.
        let entry = entry
            .iter()
            .flat_map(|line| line.split_whitespace())
            .collect::<Vec<_>>()
            .join(" ");
        for var in setting.env {
            assert!(entry.contains(var), "no {var} in {entry}");
        }
        assert!(
            entry.contains(&format!("default: {}", setting.default)) || setting.default.is_empty(),
            "no default in {entry}"
        );
    }
    for action in ["--help", "--version"] {
        assert!(help.contains(&format!("\n  {action}\n")), "{help}");
    }
}

#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    for flag in ["--help", "--version"] {
        let out = into_a_closed_pipe(&[flag], &[]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert_eq!(stderr(&out), "", "{flag}");
    }
}

/// Runs wren with its stdout's reading end closed before it writes: the
/// write meets EPIPE (Rust ignores SIGPIPE), as in `wren --help | head -1`.
fn into_a_closed_pipe(args: &[&str], env: &[(&str, &std::path::Path)]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// Runs wren with a bad command line and returns its one-line error after
/// checking what every refusal shares: exit code 2, nothing on stdout.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = wren(args, env);
    assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
    assert_eq!(stdout(&out), "", "{args:?} {env:?}");
    let message = stderr(&out);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.starts_with("error: "), "{message}");
    message.trim_end().to_owned()
}

#[test]
fn a_bad_value_is_one_line_naming_the_flag_and_exit_2() {
    for (args, expected) in [
        // A number, and a number out of its type's range.
        (
            &["--port", "eighty"][..],
            "error: --port: expected a whole number, got 'eighty'",
        ),
        (
            &["--port", "70000"],
            "error: --port: expected a whole number, got '70000'",
        ),
        (&["--threads", "0"], "error: --threads: must be at least 1"),
        (
            &["--max-image-size", "0"],
            "error: --max-image-size: must be at least 1 byte",
        ),
        // A duration.
        (
            &["--header-timeout", "0"],
            "error: --header-timeout: expected a positive number of seconds, got '0'",
        ),
        (
            &["--io-timeout", "soon"],
            "error: --io-timeout: expected a number of seconds, got 'soon'",
        ),
        (
            &["--predict-max-age", "1.5"],
            "error: --predict-max-age: expected a whole number of seconds, got '1.5'",
        ),
        // A host.
        (
            &["--host", "example.com"],
            "error: --host: expected an IP address or 'localhost', got 'example.com'",
        ),
        // Choices.
        (
            &["--log-format", "xml"],
            "error: --log-format: expected 'text' or 'json', got 'xml'",
        ),
        (
            &["--event-time-unit", "h"],
            "error: --event-time-unit: expected 'ms' or 's', got 'h'",
        ),
        (
            &["--storage", "disk"],
            "error: --storage: expected 'local' or 's3', got 'disk'",
        ),
        (
            &["--s3-addressing", "dns"],
            "error: --s3-addressing: expected 'path' or 'virtual', got 'dns'",
        ),
        // A URL, a path, a non-empty text.
        (
            &["--s3-endpoint", "s3.example.com"],
            "error: --s3-endpoint: expected an http:// or https:// URL, got 's3.example.com'",
        ),
        (
            &["--data-dir", ""],
            "error: --data-dir: expected a path, got nothing",
        ),
        (
            &["--s3-region", ""],
            "error: --s3-region: expected a value, got nothing",
        ),
        // The user list, which never echoes a password.
        (
            &["--user", "ann:pw", "--user", "nopassword"],
            "error: --user: expected NAME:PASSWORD with neither part empty",
        ),
        (
            &["--user", "a b:secret-pw"],
            "error: --user: a user name may hold only letters, digits, '.', '_' and '-'",
        ),
        // A switch given a value.
        (
            &["--no-signup=yes"],
            "error: --no-signup: is a switch and takes no value",
        ),
        // The command line's own shape.
        (&["--no-such-flag"], "error: unknown flag '--no-such-flag'"),
        (&["--port"], "error: --port: no value given"),
        (
            &["--port", "1", "--port", "2"],
            "error: --port: given more than once",
        ),
        (
            &["--port", "1", "extra"],
            "error: unexpected argument 'extra'",
        ),
        (&["serve"], "error: unknown command 'serve'"),
    ] {
        let message = refused(args, &[]);
        assert!(message.starts_with(expected), "{args:?}: {message}");
    }
}

#[test]
fn a_bad_environment_value_names_the_flag_and_the_variable() {
    for (var, value, expected) in [
        (
            "WREN_MAX_BODY",
            "lots",
            "error: --max-body (from WREN_MAX_BODY): expected a whole number, got 'lots'",
        ),
        (
            "PORT",
            "eighty",
            "error: --port (from PORT): expected a whole number",
        ),
        (
            "WREN_PORT",
            "eighty",
            "error: --port (from WREN_PORT): expected a whole number",
        ),
        (
            "S3_ENDPOINT",
            "minio:9000",
            "error: --s3-endpoint (from S3_ENDPOINT): expected an http:// or https:// URL",
        ),
        (
            "WREN_NO_SIGNUP",
            "maybe",
            "error: --no-signup (from WREN_NO_SIGNUP): expected 1, true, yes or on",
        ),
        (
            "WREN_USERS",
            "ann:pw,nopassword",
            "error: --user (from WREN_USERS): expected NAME:PASSWORD",
        ),
    ] {
        let message = refused(&[], &[(var, value)]);
        assert!(message.starts_with(expected), "{var}={value}: {message}");
    }
    // The storage rules that span settings name the flag to fix.
    let message = refused(&["--storage", "s3"], &[]);
    assert_eq!(
        message,
        "error: --s3-endpoint: --storage s3 needs an endpoint"
    );
}

#[test]
fn a_flag_beats_the_environment() {
    // Were the variables read, PORT would stop wren and the log would be
    // JSON: the harness's `--port 0` and `--log-format text` win.
    let server = Server::start_with(&["--log-format", "text"], |command| {
        command
            .env("PORT", "not-a-port")
            .env("WREN_LOG_FORMAT", "json");
    });
    let line = server.wait_for_log("listening on");
    assert!(!line.starts_with('{'), "{line}");
}

#[test]
fn a_start_prints_the_listening_line() {
    let server = Server::start(&[]);
    let line = server.wait_for_log("listening on");
    assert!(
        line.ends_with(&format!(
            "wren {} listening on http://{}",
            env!("CARGO_PKG_VERSION"),
            server.addr
        )),
        "{line}"
    );
}

#[test]
fn a_start_logs_the_settings_given_with_secrets_hidden() {
    let server = Server::start_with(&["--no-signup", "--user", "ann:ann-password"], |command| {
        command.env("WREN_METRICS_TOKEN", "the-metrics-token");
    });
    let line = server.wait_for_log("settings: ");
    for given in [
        "settings: --port 0, --data-dir ",
        ", --user (hidden), --no-signup, ",
        ", WREN_METRICS_TOKEN (hidden)",
        "; every other at its default",
    ] {
        assert!(line.contains(given), "{given}: {line}");
    }
    server.wait_for_log("listening on");
    let log = server.log().join("\n");
    for secret in ["ann-password", "the-metrics-token"] {
        assert!(!log.contains(secret), "{log}");
    }
}

#[test]
fn an_unusable_data_dir_stops_wren_with_one_line() {
    // A file where the data folder should be.
    let file = common::temp_dir("cli").join("not-a-folder");
    std::fs::write(&file, "").unwrap();
    let out = wren(&["--port", "0", "--data-dir", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    let message = stderr(&out);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains(&format!("cannot create the data folder {}", file.display())),
        "{message}"
    );
}

#[test]
fn port_comes_from_the_environment_as_heroku_sets_it() {
    // Ask the OS for a free port, then hand it to wren through PORT.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = common::temp_dir("cli");
    let mut child = Command::new(BIN)
        .args(["--data-dir", dir.to_str().unwrap()])
        .env("PORT", port.to_string())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let connected = loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(connected, "wren did not listen on PORT={port}");
    // The harness's own servers use --port 0 and report where they listen.
    let server = Server::start(&[]);
    assert_ne!(server.addr.port(), 0);
}

/// Runs `wren keys …` with only `WREN_DATA_DIR` set.
/// A data folder holding a server's (empty) database, as `wren keys` needs.
fn data_dir_with_database() -> std::path::PathBuf {
    let dir = common::temp_dir("keys");
    wren::store::sqlite::SqliteStore::open(&dir).unwrap();
    dir
}

fn keys(data_dir: &std::path::Path, args: &[&str]) -> Output {
    let dir = data_dir.to_str().unwrap();
    wren(&[&["keys"][..], args].concat(), &[("WREN_DATA_DIR", dir)])
}

#[test]
fn keys_create_list_and_revoke_through_the_binary() {
    let dir = data_dir_with_database();
    let out = keys(
        &dir,
        &["create", "--name", "billing", "--scope", "events,alerts"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let created = stdout(&out);
    assert_eq!(created.lines().count(), 1, "{created:?}");
    let key = created.strip_suffix('\n').unwrap();
    let encoded = key.strip_prefix("wren_").unwrap();
    assert!(encoded.len() >= 43, "{key}");
    assert!(
        encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{key}"
    );
    let second = keys(
        &dir,
        &["create", "--name", "predictor", "--scope", "predict"],
    );
    let second_key = stdout(&second).trim_end().to_owned();
    assert_ne!(second_key, key);

    let out = keys(&dir, &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listing = stdout(&out);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 3, "{listing}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("LAST USED"),
        "{listing}"
    );
    assert!(lines[1].starts_with("billing ") && lines[1].contains("events,alerts"));
    assert!(lines[1].ends_with("never"), "{listing}");
    assert!(lines[2].starts_with("predictor "), "{listing}");
    assert!(
        !listing.contains(key) && !listing.contains("wren_"),
        "{listing}"
    );

    let out = keys(&dir, &["revoke", "billing"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listing = stdout(&keys(&dir, &["list"]));
    assert!(!listing.contains("billing") && listing.contains("predictor"));
}

#[test]
fn keys_commands_refuse_with_one_line_and_exit_2() {
    let dir = data_dir_with_database();
    let create = |args: &[&str]| keys(&dir, &[&["create"][..], args].concat());
    assert!(
        create(&["--name", "ci", "--scope", "events"])
            .status
            .success()
    );
    for (out, expected) in [
        (
            keys(&dir, &["revoke", "nope"]),
            "error: there is no key named 'nope'",
        ),
        (
            create(&["--name", "ci", "--scope", "alerts"]),
            "error: --name: a key named 'ci' already exists",
        ),
        (
            create(&["--name", "x", "--scope", "events,everything"]),
            "error: --scope: unknown scope 'everything'; the scopes are events,alerts,predict,files",
        ),
        (
            create(&["--name", "x", "--scope", "files"]),
            "error: --account: a key with the files scope acts for one account",
        ),
        (
            create(&["--name", "x", "--scope", "files", "--account", "ghost"]),
            "error: --account: there is no account named 'ghost'",
        ),
        (
            keys(&dir, &["rotate"]),
            "error: unknown keys command 'rotate'",
        ),
        (
            keys(&dir.join("missing"), &["list"]),
            "error: --data-dir: there is no folder at",
        ),
        (
            keys(&common::temp_dir("not-a-data-dir"), &["list"]),
            "error: --data-dir: ",
        ),
    ] {
        assert_eq!(out.status.code(), Some(2), "{expected}");
        assert_eq!(stdout(&out), "", "{expected}");
        let message = stderr(&out);
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(message.starts_with(expected), "{message}");
    }
}

#[test]
fn keys_take_the_data_folder_from_the_flag_first() {
    let flag_dir = data_dir_with_database();
    let env_dir = data_dir_with_database();
    let out = wren(
        &[
            "keys",
            "create",
            "--name",
            "ci",
            "--scope",
            "events",
            "--data-dir",
            flag_dir.to_str().unwrap(),
        ],
        &[("WREN_DATA_DIR", env_dir.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&keys(&flag_dir, &["list"])).contains("ci "));
    assert!(!stdout(&keys(&env_dir, &["list"])).contains("ci "));
}

#[test]
fn keys_output_to_a_closed_pipe_ends_quietly() {
    let dir = data_dir_with_database();
    assert!(
        keys(&dir, &["create", "--name", "ci", "--scope", "events"])
            .status
            .success()
    );
    for args in [
        &["list"][..],
        &["--help"],
        &["create", "--name", "cd", "--scope", "events"],
    ] {
        let out = into_a_closed_pipe(&[&["keys"][..], args].concat(), &[("WREN_DATA_DIR", &dir)]);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

#[test]
fn help_names_the_keys_commands() {
    let help = stdout(&wren(&["--help"], &[]));
    assert!(help.contains("keys create|list|revoke"), "{help}");
    let out = wren(&["keys", "--help"], &[]);
    assert!(out.status.success());
    let keys_help = stdout(&out);
    for needle in [
        "keys create --name NAME",
        "keys list",
        "keys revoke NAME",
        "--account",
    ] {
        assert!(keys_help.contains(needle), "{keys_help}");
    }
}

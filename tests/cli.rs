//! The command line as an operator meets it.

mod common;

use std::process::{Command, Stdio};

use common::{BIN, Server};

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("wren {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
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
}

#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    for flag in ["--help", "--version"] {
        // The reading end is closed before wren writes: the write meets
        // EPIPE (Rust ignores SIGPIPE), as in `wren --help | head -1`.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(BIN)
            .arg(flag)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert_eq!(String::from_utf8(out.stderr).unwrap(), "", "{flag}");
    }
}

#[test]
fn a_bad_value_is_one_line_naming_the_flag_and_exit_2() {
    for (args, env) in [
        (vec!["--port", "eighty"], None),
        (vec!["--header-timeout", "0"], None),
        (vec!["--no-such-flag"], None),
        (vec![], Some(("WREN_MAX_BODY", "lots"))),
    ] {
        let mut command = Command::new(BIN);
        command.args(&args);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    let out = Command::new(BIN)
        .env("WREN_MAX_BODY", "lots")
        .output()
        .unwrap();
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("--max-body")
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

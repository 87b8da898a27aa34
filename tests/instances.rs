//! wren on PostgreSQL (`--database-url`): what start-up refuses, in one
//! line and exit 2, and instances sharing one database as one server:
//! accounts, tokens and their revocation, API keys (through either or
//! `wren keys`), and each user's event history.
//! Needs the server `scripts/with-postgres.sh` starts (see
//! tests/common/postgres.rs).
#![cfg(feature = "postgres")]

mod common;

use common::postgres::{fresh_database, url, url_of};
use common::{Response, Server, wren};

const JSON: &str = "application/json";
const SECRET: &str = "a shared secret of at least thirty-two bytes";

fn start(database_url: &str, args: &[&str]) -> Server {
    let database_url = database_url.to_owned();
    Server::start_with(args, move |command| {
        command
            .env("DATABASE_URL", database_url)
            .env("WREN_SECRET", SECRET);
    })
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

fn credentials(server: &Server, path: &str, login: &str) -> Response {
    let body = format!(r#"{{"login":"{login}","password":"correct horse"}}"#);
    server.post(path, JSON, &body, "")
}

/// A start-up refused: exit 2 and one line naming what is wrong.
fn refused(args: &[&str], env: &[(&str, &str)], says: &str) {
    let output = wren(args, env);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.contains(says), "{args:?}: {stderr}");
}

#[test]
fn start_up_refuses_what_cannot_work_in_one_line() {
    let Some(url) = url("refusals") else { return };
    let data = common::temp_dir("refusals");
    let data = data.to_str().unwrap();
    let secret = ("WREN_SECRET", SECRET);
    refused(
        &["--data-dir", data, "--database-url", "mysql://a:b@h/d"],
        &[secret],
        "postgres://",
    );
    refused(
        &["--data-dir", data],
        &[("DATABASE_URL", &url)],
        "needs WREN_SECRET",
    );
    refused(
        &["--data-dir", data, "--acme-domain", "example.com"],
        &[("DATABASE_URL", &url), secret],
        "--acme-domain",
    );
    refused(
        &[
            "--data-dir",
            data,
            "--backup-every",
            "24",
            "--backup-to",
            data,
        ],
        &[("DATABASE_URL", &url), secret],
        "pg_dump",
    );
    let mut config = wren::postgres::Config::parse(&url).unwrap();
    config.password = Some("not-the-password".into());
    refused(
        &["--data-dir", data, "--port", "0"],
        &[("DATABASE_URL", &url_of(&config)), secret],
        "password authentication failed",
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = wren::postgres::Config::parse(&url).unwrap();
    config.port = closed;
    refused(
        &["--data-dir", data, "--port", "0"],
        &[("DATABASE_URL", &url_of(&config)), secret],
        "cannot connect",
    );
}

#[test]
fn instances_share_accounts_tokens_keys_revocations_and_history() {
    let Some(config) = fresh_database("instances_http") else {
        return;
    };
    let database_url = url_of(&config);
    let a = start(&database_url, &["--admin", "root:a long admin password"]);
    let b = start(&database_url, &[]);
    assert!(
        a.log()
            .iter()
            .any(|line| line.contains("--database-url (hidden)"))
    );
    assert!(
        !a.log()
            .iter()
            .any(|line| line.contains(config.password.as_deref().unwrap()))
    );
    // Files on local disk are one instance's: the log says so.
    assert!(
        a.log()
            .iter()
            .any(|line| line.contains("use --storage s3 for several instances"))
    );

    // An account made through one instance signs in through the other,
    // and a name is taken everywhere once.
    assert_eq!(credentials(&a, "/api/sign_up", "ann").status, 201);
    assert_eq!(credentials(&b, "/api/sign_up", "ann").status, 409);
    let signed_in = credentials(&b, "/api/sign_in", "ann");
    assert_eq!(signed_in.status, 200);
    let token = signed_in.json()["token"].as_str().unwrap().to_owned();
    for server in [&a, &b] {
        let me = server.get_with("/__test/whoami", &bearer(&token));
        assert_eq!(me.json()["user"], "ann");
    }
    // Revoked through one, refused by both.
    assert_eq!(a.post("/api/logout", JSON, "", &bearer(&token)).status, 200);
    for server in [&a, &b] {
        assert_eq!(
            server.get_with("/__test/whoami", &bearer(&token)).status,
            401
        );
    }

    // An API key made through one works on the other until deleted
    // through it, then on neither.
    let root = r#"{"login":"root","password":"a long admin password"}"#;
    let root = b.post("/api/sign_in", JSON, root, "").json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let made = a.post(
        "/api/v1/keys",
        JSON,
        r#"{"name":"feed","scopes":["alerts"]}"#,
        &bearer(&root),
    );
    assert_eq!(made.status, 201, "{}", made.text());
    let key = format!("X-API-Key: {}\r\n", made.json()["key"].as_str().unwrap());
    let profile = "/api/v1/users/3/alert-profile";
    assert_eq!(b.get_with(profile, &key).status, 200);
    let deleted = b.request(&format!(
        "DELETE /api/v1/keys/feed HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{}\r\n",
        bearer(&root)
    ));
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    for server in [&a, &b] {
        assert_eq!(server.get_with(profile, &key).status, 401);
    }

    // `wren keys` given the database works on the instances' keys: made
    // there, it opens both; revoked there, neither.
    let keys = |args: &[&str]| {
        let mut all = vec!["keys"];
        all.extend_from_slice(args);
        let output = wren(&all, &[("DATABASE_URL", &database_url)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
        String::from_utf8(output.stdout).unwrap()
    };
    let made = keys(&["create", "--name", "cron", "--scope", "alerts"]);
    let key = format!("X-API-Key: {}\r\n", made.trim());
    for server in [&a, &b] {
        assert_eq!(server.get_with(profile, &key).status, 200);
    }
    assert!(keys(&["list"]).contains("cron"));
    keys(&["revoke", "cron"]);
    for server in [&a, &b] {
        assert_eq!(server.get_with(profile, &key).status, 401);
    }

    // One user's events, alternating instances, give the codes one SQLite
    // server gives the same events.
    let single = Server::start(&[]);
    let events = [
        ("deposit", "60.00"),
        ("withdraw", "30.00"),
        ("deposit", "70.00"),
        ("withdraw", "150.00"),
        ("withdraw", "20.00"),
        ("withdraw", "10.00"),
        ("deposit", "80.00"),
        ("deposit", "40.00"),
    ];
    let mut fired = 0;
    for (i, (kind, amount)) in events.iter().enumerate() {
        let body = format!(
            r#"{{"type":"{kind}","amount":"{amount}","user_id":7,"time":{}}}"#,
            (i + 1) * 1000
        );
        let shared = [&a, &b][i % 2].post("/event", JSON, &body, "");
        let alone = single.post("/event", JSON, &body, "");
        assert_eq!(shared.status, 200, "event {i}: {}", shared.text());
        assert_eq!(
            shared.json()["alert_codes"],
            alone.json()["alert_codes"],
            "event {i}"
        );
        fired += shared.json()["alert_codes"].as_array().unwrap().len();
    }
    assert!(fired > 0, "no rule fired: the comparison proves nothing");
    // The history stored through both is one history: time going back is
    // refused whichever instance sees it.
    let late = r#"{"type":"deposit","amount":"1.00","user_id":7,"time":500}"#;
    assert_eq!(b.post("/event", JSON, late, "").status, 409);
}

/// The login and sign-up limits count attempts through every instance:
/// with a burst of 2 failed logins, the third fails with 429 whichever
/// instance it reaches (each instance alone would let 2 through); one
/// sign-up an hour from an address is one across instances.
#[test]
fn instances_share_the_login_and_sign_up_limits() {
    let Some(config) = fresh_database("instances_limits") else {
        return;
    };
    let database_url = url_of(&config);
    let limits = [
        "--login-rate",
        "1",
        "--login-burst",
        "2",
        "--signup-rate",
        "1",
        "--signup-burst",
        "1",
        "--user",
        "bob:bob's long password",
    ];
    let a = start(&database_url, &limits);
    let b = start(&database_url, &limits);
    let attempt = |server: &Server, password: &str| {
        let body = format!(r#"{{"login":"bob","password":"{password}"}}"#);
        server.post("/api/sign_in", JSON, &body, "")
    };
    assert_eq!(attempt(&a, "wrong one").status, 401);
    assert_eq!(attempt(&b, "wrong two").status, 401);
    for server in [&a, &b] {
        let refused = attempt(server, "wrong three");
        assert_eq!(refused.status, 429, "{}", refused.text());
        assert!(refused.header("retry-after").is_some());
    }

    assert_eq!(credentials(&a, "/api/sign_up", "carol").status, 201);
    let second = credentials(&b, "/api/sign_up", "dave");
    assert_eq!(second.status, 429, "{}", second.text());
}

/// Connections the database ends while they sit idle (a restart, an
/// administrator's `pg_terminate_backend`) cost no request: the pool and
/// the writer see they were ended and connect again.
#[test]
fn connections_the_database_ends_cost_no_request() {
    let Some(config) = fresh_database("instances_reconnect") else {
        return;
    };
    let server = start(&url_of(&config), &[]);
    let event = |time: u32| {
        let body = format!(r#"{{"type":"deposit","amount":"5.00","user_id":4,"time":{time}}}"#);
        server.post("/event", JSON, &body, "")
    };
    assert_eq!(credentials(&server, "/api/sign_up", "ann").status, 201);
    assert_eq!(event(1).status, 200);
    // Several connections in the pool, all idle.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| assert_eq!(credentials(&server, "/api/sign_in", "ann").status, 200));
        }
    });

    let mut admin =
        wren::postgres::Client::connect(&config, std::time::Duration::from_secs(10)).unwrap();
    let ended = admin
        .query(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    assert!(ended[0].i64(0).unwrap() >= 2, "the instance's connections");
    std::thread::sleep(std::time::Duration::from_millis(200));

    for time in 2..6 {
        let signed_in = credentials(&server, "/api/sign_in", "ann");
        assert_eq!(signed_in.status, 200, "{}", signed_in.text());
        let stored = event(time);
        assert_eq!(stored.status, 200, "{}", stored.text());
    }
}

/// Names PostgreSQL cannot hold (a NUL in them) are client errors, not the
/// store's: a login with one is refused as unknown, a key named so is
/// missing.
#[test]
fn names_the_database_cannot_hold_are_client_errors() {
    let Some(config) = fresh_database("instances_nul") else {
        return;
    };
    let server = start(&url_of(&config), &["--admin", "root:a long admin password"]);
    let login = r#"{"login":"ann\u0000","password":"correct horse"}"#;
    let refused = server.post("/api/sign_in", JSON, login, "");
    assert_eq!(refused.status, 401, "{}", refused.text());
    let root = r#"{"login":"root","password":"a long admin password"}"#;
    let root = server.post("/api/sign_in", JSON, root, "").json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let missing = server.request(&format!(
        "DELETE /api/v1/keys/a%00b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{}\r\n",
        bearer(&root)
    ));
    assert_eq!(missing.status, 404, "{}", missing.text());
}

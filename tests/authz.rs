//! Who may do what, over real sockets: roles, API keys (made by the real
//! `wren keys` binary and over HTTP), the alert routes' rule, protected
//! mode for `POST /event`, and files keys.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use common::{BIN, Response, Server};
use serde_json::{Value, json};

const JSON: &str = "application/json";
const ADMIN: &str = "root:root-password";
const USER: &str = "ann:ann-password";

fn bearer(credential: &str) -> String {
    format!("Authorization: Bearer {credential}\r\n")
}

fn api_key(key: &str) -> String {
    format!("X-API-Key: {key}\r\n")
}

/// A session token for `login`.
fn sign_in(server: &Server, login: &str, password: &str) -> String {
    let body = json!({"login": login, "password": password}).to_string();
    let response = server.post("/api/sign_in", JSON, &body, "");
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["token"].as_str().unwrap().to_owned()
}

fn sign_up(server: &Server, login: &str, password: &str) {
    let body = json!({"login": login, "password": password}).to_string();
    let response = server.post("/api/sign_up", JSON, &body, "");
    assert_eq!(response.status, 201, "{}", response.text());
}

/// Runs `wren keys …` on `data_dir`, with no environment.
fn keys_command(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("keys")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A key made by `wren keys create`, on the server's data folder.
fn cli_key(server: &Server, name: &str, scopes: &str, account: Option<&str>) -> String {
    let mut args = vec!["create", "--name", name, "--scope", scopes];
    args.extend(
        account
            .map(|account| ["--account", account])
            .into_iter()
            .flatten(),
    );
    let out = keys_command(&server.data_dir, &args);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// A key made over HTTP by the account with `token`.
fn http_key(server: &Server, token: &str, name: &str, scopes: &[&str]) -> Response {
    let body = json!({"name": name, "scopes": scopes}).to_string();
    server.post("/api/v1/keys", JSON, &body, &bearer(token))
}

fn request(server: &Server, method: &str, target: &str, headers: &str, body: &str) -> Response {
    server.request(&format!(
        "{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    ))
}

fn assert_forbidden(response: &Response, what: &str) {
    assert_eq!(response.status, 403, "{what}: {}", response.text());
    assert_eq!(response.json()["error"], "forbidden", "{what}");
}

/// The three alert routes of user 7, as (what, method, target, body).
const ALERT_ROUTES: [(&str, &str, &str, &str); 3] = [
    ("GET profile", "GET", "/api/v1/users/7/alert-profile", ""),
    (
        "PUT profile",
        "PUT",
        "/api/v1/users/7/alert-profile",
        r#"{"risk": "high"}"#,
    ),
    ("GET events", "GET", "/api/v1/users/7/events", ""),
];

#[test]
fn alert_routes_admit_admins_and_alerts_keys_only() {
    let server = Server::start(&["--admin", ADMIN, "--user", USER]);
    let admin = bearer(&sign_in(&server, "root", "root-password"));
    let user = bearer(&sign_in(&server, "ann", "ann-password"));
    let alerts_key = cli_key(&server, "watch", "alerts", None);
    let events_key = cli_key(&server, "feed", "events", None);
    for (what, method, target, body) in ALERT_ROUTES {
        let call = |headers: &str| request(&server, method, target, headers, body);
        let anonymous = call("");
        assert_eq!(anonymous.status, 401, "{what}: {}", anonymous.text());
        assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
        assert_forbidden(&call(&user), what);
        assert_forbidden(&call(&bearer(&events_key)), what);
        for (who, headers) in [
            ("admin", admin.clone()),
            ("alerts key (Bearer)", bearer(&alerts_key)),
            ("alerts key (X-API-Key)", api_key(&alerts_key)),
        ] {
            let answer = call(&headers);
            assert_eq!(answer.status, 200, "{what} by {who}: {}", answer.text());
            assert_eq!(answer.json()["user_id"], 7, "{what} by {who}");
        }
    }
    // The PUT took effect: user 7 is high risk now.
    let profile = request(&server, "GET", ALERT_ROUTES[0].2, &api_key(&alerts_key), "");
    assert_eq!(profile.json()["risk"], "high");
    let refused = request(&server, "GET", ALERT_ROUTES[0].2, &user, "").json();
    assert_eq!(
        refused["message"],
        "this route needs an admin account, or an API key with the alerts scope"
    );
}

/// A server listening on 0.0.0.0, reached through 127.0.0.1.
fn on_all_addresses(extra: &[&str]) -> Server {
    let mut args = vec!["--host", "0.0.0.0", "--admin", ADMIN, "--user", USER];
    args.extend_from_slice(extra);
    let mut server = Server::start(&args);
    assert!(server.addr.ip().is_unspecified(), "{}", server.addr);
    server.addr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), server.addr.port());
    server
}

fn post_event(server: &Server, time: i64, headers: &str) -> Response {
    let event = json!({"type": "deposit", "amount": "10", "user_id": 1, "time": time});
    server.post("/event", JSON, &event.to_string(), headers)
}

#[test]
fn a_server_reachable_from_other_hosts_protects_events() {
    let server = on_all_addresses(&[]);
    let line = server.wait_for_log("POST /event is protected");
    assert!(
        line.contains("0.0.0.0") && line.contains("--open-events"),
        "{line}"
    );

    let anonymous = post_event(&server, 1, "");
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    assert_eq!(anonymous.json()["error"], "unauthorized");
    let events_key = cli_key(&server, "feed", "events", None);
    for (n, headers) in [bearer(&events_key), api_key(&events_key)]
        .iter()
        .enumerate()
    {
        let posted = post_event(&server, 2 + n as i64, headers);
        assert_eq!(posted.status, 200, "{}", posted.text());
        assert_eq!(posted.json()["user_id"], 1);
    }
    let admin = bearer(&sign_in(&server, "root", "root-password"));
    assert_eq!(post_event(&server, 4, &admin).status, 200);
    let user = bearer(&sign_in(&server, "ann", "ann-password"));
    assert_forbidden(&post_event(&server, 5, &user), "a user's event");
    let alerts_key = cli_key(&server, "watch", "alerts", None);
    assert_forbidden(&post_event(&server, 5, &bearer(&alerts_key)), "alerts key");
    // Nothing refused was stored: three events, at times 2, 3 and 4.
    let history = server.get_with("/api/v1/users/1/events", &bearer(&alerts_key));
    let times: Vec<i64> = history.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["time"].as_i64().unwrap())
        .collect();
    assert_eq!(times, [4, 3, 2]);
    // The API document says what this server does.
    let document = server.get("/openapi.json").json();
    let security = &document["paths"]["/event"]["post"]["security"];
    assert_eq!(security[2], json!({"apiKey": ["events"]}), "{security}");
    assert_eq!(security[0], json!({"sessionToken": ["admin"]}));
}

#[test]
fn open_events_keeps_events_open_beyond_loopback() {
    let server = on_all_addresses(&["--open-events"]);
    let line = server.wait_for_log("POST /event is open to anyone");
    assert!(line.contains("--open-events"), "{line}");
    assert_eq!(post_event(&server, 1, "").status, 200);
    let document = server.get("/openapi.json").json();
    assert!(document["paths"]["/event"]["post"]["summary"].is_string());
    assert!(
        document["paths"]["/event"]["post"]
            .get("security")
            .is_none()
    );

    let from_env = Server::start_with(&["--host", "0.0.0.0"], |command| {
        command.env("WREN_OPEN_EVENTS", "1");
    });
    from_env.wait_for_log("POST /event is open to anyone");
}

#[test]
fn events_stay_open_on_loopback() {
    let server = Server::start(&[]);
    let line = server.wait_for_log("POST /event is open");
    assert!(
        line.contains("127.0.0.1") && line.contains("loopback"),
        "{line}"
    );
    assert_eq!(post_event(&server, 1, "").status, 200);
}

#[test]
fn revoked_keys_get_401_whoever_revoked_them() {
    let server = Server::start(&["--admin", ADMIN]);
    let admin_token = sign_in(&server, "root", "root-password");
    let admin = bearer(&admin_token);
    let profile = "/api/v1/users/3/alert-profile";

    // Made and revoked by the command line, while the server runs.
    let cli = cli_key(&server, "cli-made", "alerts", None);
    assert_eq!(server.get_with(profile, &bearer(&cli)).status, 200);
    let out = keys_command(&server.data_dir, &["revoke", "cli-made"]);
    assert!(out.status.success(), "{out:?}");
    let revoked = server.get_with(profile, &bearer(&cli));
    assert_eq!(revoked.status, 401, "{}", revoked.text());
    assert_eq!(
        revoked.json()["message"],
        "the API key is not valid: unknown or revoked"
    );

    // Made and revoked over HTTP.
    let created = http_key(&server, &admin_token, "http-made", &["alerts"]);
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let key = created.json()["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("wren_") && key.len() >= 48, "{key}");
    assert_eq!(server.get_with(profile, &api_key(&key)).status, 200);

    // The listing shows the keys' details, never a key, and the last use.
    let listed = server.get_with("/api/v1/keys", &admin);
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert!(!listed.text().contains("wren_"), "{}", listed.text());
    let entry = listed.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["name"] == "http-made")
        .cloned()
        .unwrap();
    assert_eq!(entry["scopes"], json!(["alerts"]));
    assert!(entry["last_used"].is_string(), "{entry}");

    let deleted = request(&server, "DELETE", "/api/v1/keys/http-made", &admin, "");
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(server.get_with(profile, &api_key(&key)).status, 401);
    let again = request(&server, "DELETE", "/api/v1/keys/http-made", &admin, "");
    assert_eq!(again.status, 404);
}

#[test]
fn key_requests_are_checked_and_keys_cannot_manage_keys() {
    let server = Server::start(&["--admin", ADMIN, "--user", USER]);
    let admin = sign_in(&server, "root", "root-password");
    assert_eq!(http_key(&server, &admin, "ci", &["events"]).status, 201);
    let duplicate = http_key(&server, &admin, "ci", &["alerts"]);
    assert_eq!(duplicate.status, 409, "{}", duplicate.text());
    let unknown = http_key(&server, &admin, "ci2", &["events", "root"]);
    assert_eq!(unknown.status, 422, "{}", unknown.text());
    assert_eq!(unknown.json()["details"][0]["field"], "scopes");
    let bad_name = http_key(&server, &admin, "no spaces", &["events"]);
    assert_eq!(bad_name.status, 422);
    assert_eq!(bad_name.json()["details"][0]["field"], "name");
    let anonymous = server.post(
        "/api/v1/keys",
        JSON,
        r#"{"name":"x","scopes":["files"]}"#,
        "",
    );
    assert_eq!(anonymous.status, 401);

    let user = sign_in(&server, "ann", "ann-password");
    assert_forbidden(
        &http_key(&server, &user, "spy", &["alerts"]),
        "user's alerts key",
    );
    let key = cli_key(&server, "watch", "alerts", None);
    for (what, response) in [
        ("create", http_key(&server, &key, "more", &["alerts"])),
        ("list", server.get_with("/api/v1/keys", &bearer(&key))),
        (
            "revoke",
            request(&server, "DELETE", "/api/v1/keys/ci", &bearer(&key), ""),
        ),
        (
            "logout",
            server.post("/api/logout", JSON, "", &bearer(&key)),
        ),
    ] {
        assert_forbidden(&response, what);
    }
}

#[test]
fn a_files_key_reaches_its_own_account_s_files_and_nothing_else() {
    let server = Server::start(&[]);
    sign_up(&server, "ann", "ann-password");
    sign_up(&server, "bob", "bob-password");
    let ann_token = sign_in(&server, "ann", "ann-password");
    let ann = bearer(&ann_token);
    let bob = bearer(&sign_in(&server, "bob", "bob-password"));
    let put = |key: &str, headers: &str, body: &str| {
        request(&server, "PUT", &format!("/api/file/{key}"), headers, body)
    };
    assert_eq!(put("ann.txt", &ann, "ann's").status, 201);
    assert_eq!(put("bob.txt", &bob, "bob's").status, 201);

    // Ann makes a files key for herself over HTTP; it acts as Ann.
    let created = http_key(&server, &ann_token, "ann-sync", &["files"]);
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["account"], "ann");
    let key = api_key(created.json()["key"].as_str().unwrap());
    assert_eq!(server.get_with("/api/file/ann.txt", &key).text(), "ann's");
    assert_eq!(put("from-key.txt", &key, "new").status, 201);
    let listed = server.get_with("/api/files_keys", &key).json();
    assert_eq!(listed, json!(["ann.txt", "from-key.txt"]));
    assert_eq!(
        server.get_with("/api/file/from-key.txt", &ann).text(),
        "new"
    );
    // Bob's file is not in Ann's namespace, and nothing else is open to it.
    assert_eq!(server.get_with("/api/file/bob.txt", &key).status, 404);
    assert_eq!(server.get_with("/api/file/bob.txt", &bob).text(), "bob's");
    assert_forbidden(
        &server.get_with("/api/v1/users/1/alert-profile", &key),
        "files key on alerts",
    );
    assert_forbidden(
        &server.get_with("/__test/whoami", &key),
        "files key as a session",
    );
    // Ann sees her key; Bob neither sees nor revokes it.
    let anns = server.get_with("/api/v1/keys", &ann).json();
    assert_eq!(anns["keys"][0]["name"], "ann-sync");
    assert_eq!(
        server.get_with("/api/v1/keys", &bob).json()["keys"],
        json!([])
    );
    let bobs_try = request(&server, "DELETE", "/api/v1/keys/ann-sync", &bob, "");
    assert_eq!(bobs_try.status, 404);

    // A files key from the command line acts for the account it names.
    let bobs_key = bearer(&cli_key(&server, "bob-sync", "files", Some("bob")));
    assert_eq!(
        server.get_with("/api/file/bob.txt", &bobs_key).text(),
        "bob's"
    );
    assert_eq!(server.get_with("/api/file/ann.txt", &bobs_key).status, 404);
}

#[test]
fn a_demoted_admin_s_token_stops_working() {
    let mut server = Server::start(&["--admin", "boss:boss-password"]);
    let data_dir = server.data_dir.to_str().unwrap().to_owned();
    let token = bearer(&sign_in(&server, "boss", "boss-password"));
    let profile = "/api/v1/users/1/alert-profile";
    assert_eq!(server.get_with(profile, &token).status, 200);
    let account = server.get_with("/api/v1/account", &token).json();
    assert_eq!(
        (&account["login"], &account["role"]),
        (&"boss".into(), &"admin".into())
    );
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());

    // Named a user at the next start: the admin's token no longer works,
    // for admin routes or any other; a new sign-in is a user's.
    let server = Server::start(&["--user", "boss:boss-password", "--data-dir", &data_dir]);
    let stale = server.get_with(profile, &token);
    assert_eq!(stale.status, 401, "{}", stale.text());
    assert!(
        stale.json()["message"]
            .as_str()
            .unwrap()
            .contains("role has changed"),
        "{}",
        stale.text()
    );
    assert_eq!(server.get_with("/__test/whoami", &token).status, 401);
    let fresh = bearer(&sign_in(&server, "boss", "boss-password"));
    assert_forbidden(&server.get_with(profile, &fresh), "demoted admin");
    let account = server.get_with("/api/v1/account", &fresh).json();
    assert_eq!(account["role"], "user", "{account}");
    assert_eq!(
        server.get_with("/__test/whoami", &fresh).json()["user"],
        "boss"
    );
}

#[test]
fn a_deleted_account_s_token_and_files_key_stop_working() {
    let server = Server::start(&[]);
    sign_up(&server, "carl", "carl-password");
    let token = bearer(&sign_in(&server, "carl", "carl-password"));
    let key = bearer(&cli_key(&server, "carl-sync", "files", Some("carl")));
    assert_eq!(server.get_with("/__test/whoami", &token).status, 200);
    assert_eq!(server.get_with("/api/files_keys", &key).status, 200);

    // Removed by hand, as an operator would with the sqlite3 shell
    // (foreign keys off, so the key's row stays).
    let db = rusqlite::Connection::open(server.data_dir.join("wren.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.pragma_update(None, "foreign_keys", "OFF").unwrap();
    let removed = db
        .execute("DELETE FROM accounts WHERE username = 'carl'", [])
        .unwrap();
    assert_eq!(removed, 1);

    let whoami = server.get_with("/__test/whoami", &token);
    assert_eq!(whoami.status, 401, "{}", whoami.text());
    assert_eq!(whoami.json()["message"], "the account no longer exists");
    let files = server.get_with("/api/files_keys", &key);
    assert_eq!(files.status, 401, "{}", files.text());
    assert_eq!(
        files.json()["message"],
        "the API key's account no longer exists"
    );
    // A new account of that name inherits neither. (Tokens count from the
    // account's creation, to the second: wait for the next one.)
    thread::sleep(Duration::from_millis(1100));
    sign_up(&server, "carl", "another-password");
    assert_eq!(server.get_with("/api/files_keys", &key).status, 401);
    let stale = server.get_with("/__test/whoami", &token);
    assert_eq!(stale.status, 401, "{}", stale.text());
    let fresh = bearer(&sign_in(&server, "carl", "another-password"));
    assert_eq!(server.get_with("/__test/whoami", &fresh).status, 200);
}

#[test]
fn a_new_password_ends_the_sessions_before_it_and_the_same_one_does_not() {
    let mut server = Server::start(&["--user", "dora:first-password"]);
    let data_dir = server.data_dir.to_str().unwrap().to_owned();
    let token = bearer(&sign_in(&server, "dora", "first-password"));
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());

    // Restarted with the same password: the session goes on.
    let mut server = Server::start(&["--user", "dora:first-password", "--data-dir", &data_dir]);
    assert_eq!(server.get_with("/__test/whoami", &token).status, 200);
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());

    // Restarted with a new one: the old session is over.
    thread::sleep(Duration::from_millis(1100));
    let server = Server::start(&["--user", "dora:second-password", "--data-dir", &data_dir]);
    let stale = server.get_with("/__test/whoami", &token);
    assert_eq!(stale.status, 401, "{}", stale.text());
    assert!(
        stale.text().contains("password has changed"),
        "{}",
        stale.text()
    );
    let fresh = bearer(&sign_in(&server, "dora", "second-password"));
    assert_eq!(server.get_with("/__test/whoami", &fresh).status, 200);
}

#[test]
fn the_keys_routes_answer_in_the_error_shape() {
    let server = Server::start(&["--admin", ADMIN]);
    let admin = sign_in(&server, "root", "root-password");
    let not_json = server.post("/api/v1/keys", JSON, "{oops", &bearer(&admin));
    assert_eq!(not_json.status, 400);
    let body: Value = not_json.json();
    assert_eq!(body["status_code"], 400);
    let missing = request(&server, "DELETE", "/api/v1/keys/nope", &bearer(&admin), "");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["message"], "no key named 'nope'");
}

#[test]
fn account_key_and_session_answers_are_never_stored() {
    let server = Server::start(&["--admin", "root:rootpassword"]);
    let token = sign_in(&server, "root", "rootpassword");
    let created = http_key(&server, &token, "feed", &["events"]);
    let answers = [
        (
            "sign-in",
            server.post(
                "/api/sign_in",
                JSON,
                r#"{"login":"root","password":"rootpassword"}"#,
                "",
            ),
        ),
        ("key created", created),
        (
            "keys listed",
            request(&server, "GET", "/api/v1/keys", &bearer(&token), ""),
        ),
        (
            "account",
            request(&server, "GET", "/api/v1/account", &bearer(&token), ""),
        ),
        (
            "key revoked",
            request(&server, "DELETE", "/api/v1/keys/feed", &bearer(&token), ""),
        ),
        (
            "logout",
            request(&server, "POST", "/api/logout", &bearer(&token), ""),
        ),
    ];
    for (what, response) in answers {
        assert!(response.status < 300, "{what}: {}", response.text());
        assert_eq!(response.header("cache-control"), Some("no-store"), "{what}");
    }
}

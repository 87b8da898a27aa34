//! Accounts and authentication over real sockets.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use common::{Response, Server};

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// `login` and `password` as JSON to `path` (sign-up or sign-in).
fn credentials(server: &Server, path: &str, login: &str, password: &str) -> Response {
    let body = format!(r#"{{"login":"{login}","password":"{password}"}}"#);
    server.post(path, JSON, &body, "")
}

fn sign_up(server: &Server, login: &str, password: &str) -> Response {
    credentials(server, "/api/sign_up", login, password)
}

fn sign_in(server: &Server, login: &str, password: &str) -> Response {
    credentials(server, "/api/sign_in", login, password)
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

fn token_of(response: &Response) -> String {
    response.json()["token"].as_str().unwrap().to_owned()
}

#[test]
fn sign_up_sign_in_and_use_the_token_or_the_cookie() {
    let server = Server::start(&[]);
    let created = sign_up(&server, "ann", "correct horse");
    assert_eq!(created.status, 201);
    assert_eq!(
        created.json(),
        serde_json::json!({"status_code": 201, "message": "You have successfully signed up", "login": "ann"})
    );
    let signed_in = sign_in(&server, "ann", "correct horse");
    assert_eq!(signed_in.status, 200);
    assert_eq!(
        signed_in.json()["message"],
        "You have successfully logged in"
    );
    assert_eq!(signed_in.json()["expires_in"], 3600);
    let token = token_of(&signed_in);

    let me = server.get_with("/__test/whoami", &bearer(&token));
    assert_eq!(me.json()["user"], "ann");

    let cookie = signed_in.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/")
    );
    let pair = cookie.split(';').next().unwrap();
    let me = server.get_with("/__test/whoami", &format!("Cookie: {pair}\r\n"));
    assert_eq!(me.json()["user"], "ann");

    let anonymous = server.get("/__test/whoami");
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
}

#[test]
fn wrong_password_and_unknown_user_are_the_same_401() {
    let server = Server::start(&[]);
    sign_up(&server, "ann", "correct horse");
    let wrong = sign_in(&server, "ann", "wrong horse");
    let unknown = sign_in(&server, "nobody", "wrong horse");
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.json()["message"], unknown.json()["message"]);
}

#[test]
fn expired_tampered_and_alg_none_tokens_get_401() {
    let server = Server::start(&["--token-ttl", "1"]);
    sign_up(&server, "ann", "correct horse");
    let token = token_of(&sign_in(&server, "ann", "correct horse"));
    let parts: Vec<&str> = token.split('.').collect();

    let mut tampered = parts.clone();
    let flipped = if parts[2].starts_with('A') { "B" } else { "A" };
    let signature = format!("{flipped}{}", &parts[2][1..]);
    tampered[2] = &signature;
    let response = server.get_with("/__test/whoami", &bearer(&tampered.join(".")));
    assert_eq!(response.status, 401);

    // {"alg":"none","typ":"JWT"} with the genuine claims and no signature.
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    assert_eq!(
        server.get_with("/__test/whoami", &bearer(&none)).status,
        401
    );

    assert_eq!(
        server.get_with("/__test/whoami", &bearer(&token)).status,
        200
    );
    thread::sleep(Duration::from_millis(2100));
    let expired = server.get_with("/__test/whoami", &bearer(&token));
    assert_eq!(expired.status, 401);
    assert!(
        expired.json()["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[test]
fn logout_revokes_the_token() {
    let server = Server::start(&[]);
    sign_up(&server, "ann", "correct horse");
    let token = token_of(&sign_in(&server, "ann", "correct horse"));
    let out = server.post("/api/logout", JSON, "", &bearer(&token));
    assert_eq!(out.status, 200);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        server.get_with("/__test/whoami", &bearer(&token)).status,
        401
    );
    assert_eq!(server.post("/api/logout", JSON, "", "").status, 401);
}

#[test]
fn a_bootstrap_account_gets_the_seed_sentence() {
    let server = Server::start(&["--user", "orhan:12345"]);
    let response = server.post(
        "/login",
        JSON,
        r#"{"username":"orhan","password":"12345"}"#,
        "",
    );
    assert_eq!(response.status, 200);
    assert_eq!(
        response.text(),
        "Login success for user orhan with password of length: 5!"
    );
    // The HTML form solution's field names.
    let response = server.post("/login", FORM, "user=orhan&pass=12345", "");
    assert_eq!(
        response.text(),
        "Login success for user orhan with password of length: 5!"
    );
    let response = server.post(
        "/login",
        JSON,
        r#"{"username":"orhan","password":"12345"}"#,
        "Accept: application/json\r\n",
    );
    let body = response.json();
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Login success")
    );
}

#[test]
fn login_takes_a_multipart_form_from_curl() {
    let server = Server::start(&["--user", "orhan:12345"]);
    let output = std::process::Command::new("curl")
        .args(["-sS", "-F", "user=orhan", "-F", "pass=12345"])
        .arg(format!("http://{}/login", server.addr))
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Login success for user orhan with password of length: 5!"
    );

    // A truncated or malformed form is a prompt 400, and the server goes on.
    const MULTIPART: &str = "multipart/form-data; boundary=XyZ";
    for body in [
        "garbage",
        "--XyZ\r\nContent-Dis",
        "--XyZ\r\n\r\nno disposition",
    ] {
        let response = server.post("/login", MULTIPART, body, "");
        assert_eq!(response.status, 400, "{body:?}");
        assert!(
            response.json()["message"]
                .as_str()
                .unwrap()
                .contains("multipart")
        );
    }
    let response = server.post("/login", "multipart/form-data", "x", "");
    assert_eq!(response.status, 400);
    assert_eq!(server.get("/status").status, 200);
}

#[test]
fn missing_fields_get_400_from_json_forms_and_query_strings() {
    let server = Server::start(&[]);
    let cases = [
        ("/login", JSON, r#"{"username":"ann"}"#, "password"),
        ("/login", FORM, "password=x", "username"),
        ("/login", JSON, "", "username"),
        ("/api/sign_in?login=ann", FORM, "", "password"),
        ("/api/sign_up?password=longenough", FORM, "", "login"),
        (
            "/api/sign_up",
            JSON,
            r#"{"login":"ann","password":""}"#,
            "password",
        ),
    ];
    for (target, content_type, body, field) in cases {
        let response = server.post(target, content_type, body, "");
        assert_eq!(response.status, 400, "{target} {body}");
        let json = response.json();
        assert!(json["message"].as_str().unwrap().contains(field), "{json}");
        assert_eq!(json["details"][0]["field"], field, "{json}");
    }
    // Credentials in the query string, as the cloud service's clients send them.
    assert_eq!(
        server
            .post("/api/sign_up?login=qs&password=longenough", FORM, "", "")
            .status,
        201
    );
    assert_eq!(
        server
            .post("/api/sign_in?login=qs&password=longenough", FORM, "", "")
            .status,
        200
    );
}

#[test]
fn a_taken_login_gets_409_and_signup_can_be_off() {
    let server = Server::start(&[]);
    assert_eq!(sign_up(&server, "ann", "correct horse").status, 201);
    let again = sign_up(&server, "ann", "other horse");
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["status_code"], 409);
    let closed = Server::start(&["--no-signup"]);
    assert_eq!(sign_up(&closed, "ann", "correct horse").status, 403);
}

#[test]
fn repeated_failures_get_429_with_retry_after() {
    let server = Server::start(&["--login-rate", "1", "--login-burst", "3"]);
    sign_up(&server, "ann", "correct horse");
    for _ in 0..3 {
        assert_eq!(sign_in(&server, "ann", "wrong").status, 401);
    }
    let limited = sign_in(&server, "ann", "correct horse");
    assert_eq!(limited.status, 429);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

#[test]
fn accounts_survive_a_restart_and_files_are_private() {
    let server = Server::start(&[]);
    sign_up(&server, "ann", "correct horse");
    let token = token_of(&sign_in(&server, "ann", "correct horse"));
    let data_dir = server.data_dir.clone();
    drop(server);
    for file in ["wren.db", "secret"] {
        let mode = std::fs::metadata(data_dir.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let server = Server::start(&["--data-dir", data_dir.to_str().unwrap()]);
    assert_eq!(sign_in(&server, "ann", "correct horse").status, 200);
    // The secret is kept too, so sessions outlive a restart.
    assert_eq!(
        server.get_with("/__test/whoami", &bearer(&token)).status,
        200
    );
}

#[test]
fn passwords_never_reach_the_log() {
    let password = "S3cr3t-Pa55word-xyzzy";
    let server = Server::start(&[
        "--user",
        &format!("boot:{password}"),
        "--log-format",
        "json",
    ]);
    sign_up(&server, "ann", password);
    sign_in(&server, "ann", password);
    sign_in(&server, "ann", "wrong-but-secret-too");
    server.post(
        "/login",
        JSON,
        &format!(r#"{{"username":"ann","password":"{password}"}}"#),
        "",
    );
    server.post(
        &format!("/api/sign_in?login=ann&password={password}"),
        FORM,
        "",
        "",
    );
    server.post(
        &format!("/api/sign_up?login=bob&password={password}"),
        FORM,
        "",
        "",
    );
    server.post("/login", FORM, &format!("user=ann&pass={password}"), "");
    server.post(
        "/api/sign_up",
        JSON,
        &format!(r#"{{"login":"x y","password":"{password}"}}"#),
        "",
    );
    server.wait_for_log("/api/sign_up");
    thread::sleep(Duration::from_millis(100));
    let log = server.log().join("\n");
    assert!(
        log.contains("/api/sign_in"),
        "the log should have the requests"
    );
    assert!(
        !log.contains(password),
        "a password reached the log:\n{log}"
    );
    assert!(!log.contains("wrong-but-secret-too"));
}

/// Room for every sign-up of a test from one address, and a hashing slot
/// for each of its threads, so that none waits a second for a slot (503).
const MANY_SIGN_UPS: [&str; 6] = [
    "--signup-burst",
    "100",
    "--signup-rate",
    "100",
    "--max-concurrent-hashes",
    "8",
];

#[test]
fn concurrent_sign_ups_are_created_and_answered_once_stored() {
    const THREADS: usize = 8;
    const EACH: usize = 3;
    let server = Server::start(&MANY_SIGN_UPS);
    let start = Barrier::new(THREADS);
    let answers: Vec<(String, Response, Response)> = thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (server, start) = (&server, &start);
                scope.spawn(move || {
                    start.wait();
                    (0..EACH)
                        .map(|n| {
                            let login = format!("user{t}-{n}");
                            let created = sign_up(server, &login, "correct horse");
                            // Answered only once stored: a sign-in at once
                            // finds the account.
                            let signed_in = sign_in(server, &login, "correct horse");
                            (login, created, signed_in)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    assert_eq!(answers.len(), THREADS * EACH);
    for (login, created, signed_in) in &answers {
        assert_eq!(created.status, 201, "{login}: {}", created.text());
        assert_eq!(
            created.json(),
            serde_json::json!({"status_code": 201, "message": "You have successfully signed up", "login": login})
        );
        assert_eq!(signed_in.status, 200, "{login}: {}", signed_in.text());
    }
}

#[test]
fn of_concurrent_sign_ups_of_one_name_one_is_created() {
    const THREADS: usize = 8;
    let server = Server::start(&MANY_SIGN_UPS);
    let start = Barrier::new(THREADS);
    let answers: Vec<(String, Response)> = thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (server, start) = (&server, &start);
                scope.spawn(move || {
                    let password = format!("horse number {t}");
                    start.wait();
                    let created = sign_up(server, "ann", &password);
                    (password, created)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let (created, taken): (Vec<_>, Vec<_>) =
        answers.iter().partition(|(_, answer)| answer.status == 201);
    assert_eq!(
        created.len(),
        1,
        "{:?}",
        answers.iter().map(|(_, a)| a.status).collect::<Vec<_>>()
    );
    assert_eq!(taken.len(), THREADS - 1);
    for (_, answer) in &taken {
        assert_eq!(answer.status, 409, "{}", answer.text());
        assert_eq!(answer.json()["message"], "the login 'ann' is already taken");
    }
    // The account is the one answered 201: its password opens it, the
    // others' do not.
    assert_eq!(sign_in(&server, "ann", &created[0].0).status, 200);
    assert_eq!(sign_in(&server, "ann", &taken[0].0).status, 401);
}

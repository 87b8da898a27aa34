//! CORS over real sockets: a browser's preflight and the call after it,
//! for an origin named with `--cors-origin` and for one that is not.

mod common;

use common::Server;

#[test]
fn a_named_origin_passes_the_preflight_and_reads_the_answer() {
    let server = Server::start(&[
        "--cors-origin",
        "https://app.example",
        "--user",
        "ann:annpassword",
    ]);
    let preflight = server.request(
        "OPTIONS /api/sign_in HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: content-type\r\n\r\n",
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        preflight.header("access-control-allow-credentials"),
        Some("true")
    );
    assert!(
        preflight
            .header("access-control-allow-headers")
            .unwrap()
            .contains("Content-Type")
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("600"));

    let body = r#"{"login":"ann","password":"annpassword"}"#;
    let call = server.post(
        "/api/sign_in",
        "application/json",
        body,
        "Origin: https://app.example\r\n",
    );
    assert_eq!(call.status, 200, "{}", call.text());
    assert_eq!(
        call.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(
        call.header("access-control-expose-headers")
            .unwrap()
            .contains("X-Request-Id")
    );
}

#[test]
fn other_origins_get_no_grant() {
    let server = Server::start(&["--cors-origin", "https://app.example"]);
    let preflight = server.request(
        "OPTIONS /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Origin: https://evil.example\r\nAccess-Control-Request-Method: GET\r\n\r\n",
    );
    assert_eq!(preflight.status, 403);
    assert_eq!(preflight.json()["error"], "cors_refused");
    assert_eq!(preflight.header("access-control-allow-origin"), None);
    let call = server.get_with("/status", "Origin: https://evil.example\r\n");
    assert_eq!(call.status, 200);
    assert_eq!(call.header("access-control-allow-origin"), None);
}

#[test]
fn without_cors_origins_nothing_is_granted() {
    let server = Server::start(&[]);
    let preflight = server.request(
        "OPTIONS /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Origin: https://app.example\r\nAccess-Control-Request-Method: GET\r\n\r\n",
    );
    assert_eq!(preflight.status, 405);
    assert_eq!(preflight.header("access-control-allow-origin"), None);
}

//! `/docs` for real: the page, Swagger UI's files served from a local copy
//! (`--docs-assets`), and a headless Chromium that renders the page, runs
//! Swagger UI against the live spec, and must list every route family.
//!
//! The copy and Chromium come from `scripts/browser.sh install` (npm's
//! swagger-ui-dist, Debian's chromium), which `make unit` runs and whose
//! folder it passes as `WREN_TEST_DOCS_ASSETS`. Without that variable the
//! tests that need them print a skip line, unless `WREN_TEST_BROWSER=required`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Server, temp_dir};

/// The swagger-ui-dist folder, or why the test cannot run.
fn assets() -> Option<PathBuf> {
    match std::env::var_os("WREN_TEST_DOCS_ASSETS") {
        Some(folder) => Some(PathBuf::from(folder)),
        None if std::env::var("WREN_TEST_BROWSER").as_deref() == Ok("required") => {
            panic!("WREN_TEST_BROWSER=required, but WREN_TEST_DOCS_ASSETS is not set")
        }
        None => {
            println!("skipped: WREN_TEST_DOCS_ASSETS is not set (make unit sets it)");
            None
        }
    }
}

#[test]
fn the_page_and_its_local_assets_are_served() {
    let Some(assets) = assets() else { return };
    let server = Server::start(&["--docs-assets", assets.to_str().unwrap()]);
    let page = server.get("/docs");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("/docs/assets/swagger-ui-bundle.js"));
    let script = server.get("/docs/assets/swagger-ui-bundle.js");
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        script.body,
        std::fs::read(assets.join("swagger-ui-bundle.js")).unwrap()
    );
    for hidden in [
        "/docs/assets/package.json.bak",
        "/docs/assets/..%2Fsecret",
        "/docs/assets/.npmrc",
    ] {
        assert_eq!(server.get(hidden).status, 404, "{hidden}");
    }
    let browser = server.get_with("/", "Accept: text/html\r\n");
    assert!(browser.text().contains("swagger-ui"), "{}", browser.text());
}

#[test]
fn no_docs_serves_neither_page_nor_spec() {
    let server = Server::start(&["--no-docs"]);
    for path in [
        "/docs",
        "/docs/assets/swagger-ui.css",
        "/openapi.json",
        "/api/v1/openapi.json",
    ] {
        assert_eq!(server.get(path).status, 404, "{path}");
    }
    assert!(server.get("/").json()["links"].get("docs").is_none());
}

#[test]
fn a_docs_assets_folder_without_swagger_ui_stops_the_start() {
    let empty = temp_dir("no-assets");
    let output = Command::new(common::BIN)
        .args(["--port", "0", "--docs-assets"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: --docs-assets:"), "{stderr}");
    assert!(stderr.contains("swagger-ui-bundle.js"), "{stderr}");
}

/// The DOM of `url` after Chromium ran its scripts (10 s of virtual time).
fn rendered(url: &str) -> String {
    let profile = temp_dir("chromium");
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .expect("chromium runs (scripts/browser.sh install)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn chromium_renders_every_route_family_from_the_spec() {
    let Some(assets) = assets() else { return };
    let server = Server::start(&["--docs-assets", assets.to_str().unwrap()]);
    let dom = rendered(&format!("http://{}/docs", server.addr));
    assert!(!dom.contains("Failed to load API definition"), "{dom}");
    // One path of each family, as Swagger UI writes an operation's path.
    for path in [
        "/status",
        "/login",
        "/api/sign_up",
        "/api/v1/keys",
        "/predict",
        "/api/v1/predict",
        "/event",
        "/api/v1/users/{user_id}/alert-profile",
        "/api/file/{key}",
        "/api/v1/files",
        "/img/add",
        "/readyz",
    ] {
        assert!(
            dom.contains(&format!("data-path=\"{path}\"")),
            "{path} is not on the rendered page"
        );
    }
}

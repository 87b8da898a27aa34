//! HTTPS with the operator's own certificate: a throwaway CA made here
//! (rcgen), the real binary, and a real TLS client (rustls,
//! `common::https`) that trusts only that CA. Handshakes, versions, HSTS, the Secure cookie, garbage on
//! the TLS port, a handshake that never ends, SIGHUP reloads (good and
//! bad), the redirect listener and the start-up errors.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::https::{Https, client_config};
use common::{Server, read_response, temp_dir};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// A CA of the test's own, and where its certificates are written.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

/// A certificate for `localhost` signed by the test CA, as files.
struct Leaf {
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki {
            ca,
            dir: temp_dir("pki"),
        }
    }

    /// Writes a new `localhost` certificate and key as `name`.pem and
    /// `name`.key, valid until 2040.
    fn leaf(&self, name: &str) -> Leaf {
        self.leaf_until(name, 2040)
    }

    /// Like [`Pki::leaf`], valid until the first of January of `year`.
    fn leaf_until(&self, name: &str, year: i32) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, 1, 1);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let leaf = Leaf {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
            der: cert.der().to_vec(),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }

    /// A client that trusts only this CA, speaking only `version`.
    fn client(&self, version: &'static rustls::SupportedProtocolVersion) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca.der().to_vec()))
            .unwrap();
        client_config(roots, &[version])
    }
}

/// `--tls-cert` and `--tls-key` for `leaf`.
fn tls_args(leaf: &Leaf) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        leaf.cert.display().to_string(),
        "--tls-key".into(),
        leaf.key.display().to_string(),
    ]
}

fn start(leaf: &Leaf, extra: &[&str]) -> Server {
    let mut args = tls_args(leaf);
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&args)
}

/// An HTTPS connection to `localhost` at `addr`.
fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Https {
    Https::connect(addr, config, "localhost").expect("TLS handshake")
}

#[test]
fn a_client_trusting_the_ca_is_served_over_tls_1_3_and_1_2() {
    let pki = Pki::new();
    let leaf = pki.leaf("site");
    let server = start(&leaf, &["--log-format", "json"]);
    for (version, name) in [
        (&rustls::version::TLS13, "TLSv1.3"),
        (&rustls::version::TLS12, "TLSv1.2"),
    ] {
        let mut tls = connect(server.addr, &pki.client(version));
        assert_eq!(tls.version(), version.version);
        assert_eq!(tls.certificate(), leaf.der);
        let response = tls.get("/status");
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "Alive!");
        assert_eq!(
            response.header("strict-transport-security"),
            Some("max-age=31536000")
        );
        // Keep-alive over TLS: a second request on the same session.
        assert_eq!(tls.get("/status").text(), "Alive!");
        let line = server.wait_for_log(&format!("\"tls\":\"{name}\""));
        assert!(line.contains("\"path\":\"/status\""), "{line}");
    }
}

#[test]
fn the_session_cookie_is_secure_and_hsts_can_be_turned_off() {
    let pki = Pki::new();
    let leaf = pki.leaf("site");
    let server = start(
        &leaf,
        &["--user", "alice:wonderland", "--hsts-max-age", "0"],
    );
    let mut tls = connect(server.addr, &pki.client(&rustls::version::TLS13));
    let body = r#"{"username":"alice","password":"wonderland"}"#;
    let response = tls.request(&format!(
        "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    assert_eq!(response.status, 200, "{}", response.text());
    let cookie = response.header("set-cookie").expect("a session cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert_eq!(response.header("strict-transport-security"), None);
}

#[test]
fn plain_http_and_garbage_on_the_tls_port_are_closed_and_others_served() {
    let pki = Pki::new();
    let leaf = pki.leaf("site");
    let server = start(&leaf, &["--log-level", "debug"]);
    let config = pki.client(&rustls::version::TLS13);
    // An HTTPS client holds a connection open throughout.
    let mut before = connect(server.addr, &config);
    for junk in [
        &b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0][..],
        &[0u8; 64][..],
    ] {
        let mut stream = server.connect();
        stream.write_all(junk).unwrap();
        let mut answer = Vec::new();
        // Closed (an alert at most, never an HTTP answer), and soon.
        let started = Instant::now();
        let _ = stream.read_to_end(&mut answer);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    }
    assert_eq!(before.get("/status").text(), "Alive!");
    let mut after = connect(server.addr, &config);
    assert_eq!(after.get("/status").text(), "Alive!");
    // What went wrong is there for whoever asks for debug lines.
    server.wait_for_log("[debug] connection from 127.0.0.1");
}

#[test]
fn a_handshake_that_never_ends_is_cut_at_the_header_timeout() {
    let pki = Pki::new();
    let leaf = pki.leaf("site");
    let server = start(&leaf, &["--header-timeout", "1"]);
    // A ClientHello's record header promising more than is ever sent.
    let mut stalled = server.connect();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let silent = server.connect();
    let started = Instant::now();
    for mut stream in [stalled, silent] {
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    let mut tls = connect(server.addr, &pki.client(&rustls::version::TLS13));
    assert_eq!(tls.get("/status").text(), "Alive!");
}

#[test]
fn sighup_serves_a_new_certificate_to_new_connections_and_keeps_open_ones() {
    let pki = Pki::new();
    let first = pki.leaf("site");
    let server = start(&first, &["--keep-alive-timeout", "30"]);
    let config = pki.client(&rustls::version::TLS13);
    let mut open = connect(server.addr, &config);
    assert_eq!(open.certificate(), first.der);
    assert_eq!(open.get("/status").text(), "Alive!");

    // The operator replaces the files in place (certbot-style), then HUPs.
    let second = pki.leaf("next");
    std::fs::copy(&second.cert, &first.cert).unwrap();
    std::fs::copy(&second.key, &first.key).unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_log("certificate reloaded");

    let mut fresh = connect(server.addr, &config);
    assert_eq!(fresh.certificate(), second.der);
    assert_ne!(first.der, second.der);
    assert_eq!(fresh.get("/status").text(), "Alive!");
    assert_eq!(open.get("/status").text(), "Alive!");
}

/// The value of the unlabelled sample `name` in a `/metrics` answer.
fn metric(response: &common::Response, name: &str) -> Option<u64> {
    assert_eq!(response.status, 200, "{}", response.text());
    response.text().lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        Some(value.parse().unwrap())
    })
}

#[test]
fn metrics_count_handshakes_and_give_the_certificate_expiry() {
    let pki = Pki::new();
    let first = pki.leaf_until("site", 2040);
    let server = start(&first, &["--keep-alive-timeout", "30"]);
    let config = pki.client(&rustls::version::TLS13);
    let mut scraper = connect(server.addr, &config);
    let scrape = scraper.get("/metrics");
    // 2040-01-01T00:00:00Z
    let expiry = "wren_tls_certificate_expiry_timestamp_seconds";
    assert_eq!(metric(&scrape, expiry), Some(2_208_988_800));
    assert_eq!(metric(&scrape, "wren_tls_handshakes_total"), Some(1));
    assert_eq!(
        metric(&scrape, "wren_tls_handshake_failures_total"),
        Some(0)
    );

    for _ in 0..2 {
        connect(server.addr, &config).get("/status");
    }
    let mut junk = server.connect();
    junk.write_all(&[0u8; 64]).unwrap();
    let _ = junk.read_to_end(&mut Vec::new());
    let second = pki.leaf_until("next", 2041);
    std::fs::copy(&second.cert, &first.cert).unwrap();
    std::fs::copy(&second.key, &first.key).unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_log("certificate reloaded");

    let scrape = scraper.get("/metrics");
    assert_eq!(metric(&scrape, expiry), Some(2_240_611_200));
    assert_eq!(metric(&scrape, "wren_tls_handshakes_total"), Some(3));
    assert_eq!(
        metric(&scrape, "wren_tls_handshake_failures_total"),
        Some(1)
    );

    // Without TLS there is nothing of it.
    let plain = Server::start(&[]).get("/metrics");
    assert_eq!(plain.status, 200);
    assert!(!plain.text().contains("wren_tls_"), "{}", plain.text());
}

#[test]
fn a_bad_certificate_at_reload_is_logged_and_the_old_one_keeps_serving() {
    let pki = Pki::new();
    let leaf = pki.leaf("site");
    let server = start(&leaf, &[]);
    let other = pki.leaf("other");
    // A key that is not the certificate's, then a file that is no PEM.
    std::fs::copy(&other.key, &leaf.key).unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_log("certificate reload failed");
    std::fs::write(&leaf.cert, "not a certificate").unwrap();
    server.signal(libc::SIGHUP);
    let failures = || {
        server
            .log()
            .iter()
            .filter(|line| line.contains("certificate reload failed"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while failures() < 2 {
        assert!(Instant::now() < deadline, "{:#?}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut tls = connect(server.addr, &pki.client(&rustls::version::TLS13));
    assert_eq!(tls.certificate(), leaf.der);
    assert_eq!(tls.get("/status").text(), "Alive!");
}

#[test]
fn the_redirect_listener_answers_308_to_the_same_path_over_https() {
    let pki = Pki::new();
    let leaf = pki.leaf("site");
    let server = start(&leaf, &["--redirect-port", "0"]);
    let line = server.wait_for_log("redirecting http://");
    let redirect: SocketAddr = line
        .split("redirecting http://")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    let plain = |raw: &str| {
        let mut stream = TcpStream::connect(redirect).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        read_response(&mut BufReader::new(stream), !raw.starts_with("HEAD "))
    };
    let https_port = server.addr.port();
    let response = plain(
        "POST /api/file/a%20b?x=1 HTTP/1.1\r\nHost: files.example:8080\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(response.status, 308);
    assert_eq!(
        response.header("location").unwrap(),
        format!("https://files.example:{https_port}/api/file/a%20b?x=1")
    );
    // No HSTS over plain HTTP (browsers ignore it there).
    assert_eq!(response.header("strict-transport-security"), None);
    // Liveness stays reachable over plain HTTP.
    let status = plain("GET /status HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((status.status, status.text().as_str()), (200, "Alive!"));
    // An unknown ACME token is not found rather than redirected.
    let token = plain("GET /.well-known/acme-challenge/nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(token.status, 404);
}

#[test]
fn tls_connections_count_against_the_connection_caps() {
    let pki = Pki::new();
    let leaf = pki.leaf("site");
    let server = start(&leaf, &["--max-connections-per-ip", "1"]);
    let config = pki.client(&rustls::version::TLS13);
    let mut held = connect(server.addr, &config);
    assert_eq!(held.get("/status").text(), "Alive!");
    // The second connection from the same address is closed at once.
    let mut refused = server.connect();
    let mut rest = Vec::new();
    let _ = refused.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    server.wait_for_log("refused a connection");
    assert_eq!(held.get("/status").text(), "Alive!");
}

/// wren's exit code and stderr for `args`, when it must not start.
fn refused_start(args: &[&str]) -> (Option<i32>, String) {
    let data = temp_dir("data");
    let output = Command::new(common::BIN)
        .args(["--port", "0", "--data-dir"])
        .arg(&data)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_missing_unreadable_or_mismatched_pair_stops_the_start_naming_the_flag() {
    let pki = Pki::new();
    let leaf = pki.leaf("site");
    let other = pki.leaf("other");
    let missing = pki.dir.join("missing.pem");
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN NOTHING-----\n").unwrap();
    for (args, flag) in [
        (
            vec!["--tls-cert", path(&missing), "--tls-key", path(&leaf.key)],
            "--tls-cert:",
        ),
        (
            vec!["--tls-cert", path(&leaf.cert), "--tls-key", path(&missing)],
            "--tls-key:",
        ),
        (
            vec!["--tls-cert", path(&garbage), "--tls-key", path(&leaf.key)],
            "--tls-cert:",
        ),
        (
            vec![
                "--tls-cert",
                path(&leaf.cert),
                "--tls-key",
                path(&other.key),
            ],
            "--tls-cert/--tls-key:",
        ),
        (vec!["--tls-cert", path(&leaf.cert)], "--tls-key:"),
        (vec!["--redirect-port", "8080"], "--redirect-port:"),
    ] {
        let (code, stderr) = refused_start(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("error: {flag}")),
            "{args:?}: {stderr}"
        );
    }
}

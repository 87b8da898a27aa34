//! Automatic certificates end to end: the real binary gets its certificate
//! from Pebble (Let's Encrypt's test CA), which validates against wren's
//! own listeners: TLS-ALPN-01 on the TLS port, HTTP-01 on the redirect
//! port. A real TLS client (`common::https`) that trusts only Pebble's
//! root then checks what
//! wren serves, and that it renews as the certificate nears expiry. Pebble
//! resolves every name to 127.0.0.1 (pebble-challtestsrv's DNS).

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::https::{Https, client_config};
use common::pebble::{BLOCKED, Ca, Validations, free_port, listen_certificate};
use common::{Server, read_response};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, pem::PemObject};
use wren::acme::ChallengeKind;

/// The names wren asks for; Pebble's DNS says they are all 127.0.0.1.
const DOMAINS: [&str; 2] = ["wren.test", "www.wren.test"];

/// Pebble validating on wren's ports, and wren started against it with
/// `challenge`, plus `extra` arguments.
struct Setup {
    ca: Ca,
    wren: Server,
    tls: SocketAddr,
    redirect: SocketAddr,
}

impl Setup {
    fn start(challenge: ChallengeKind, domains: &[&str], lifetime: Option<u64>) -> Setup {
        let (tls_port, http_port) = (free_port(), free_port());
        let ca = Ca::start_with(
            Validations {
                http_port: Some(http_port),
                tls_port: Some(tls_port),
                certificate_lifetime: lifetime,
            },
            &[],
        );
        let ca_root = listen_certificate().join("ca.pem");
        let (tls, http) = (tls_port.to_string(), http_port.to_string());
        let challenge = match challenge {
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
            ChallengeKind::Http01 => "http-01",
        };
        let mut args = vec![
            "--port",
            &tls,
            "--redirect-port",
            &http,
            "--acme-directory",
            &ca.directory,
            "--acme-ca-root",
            ca_root.to_str().unwrap(),
            "--acme-email",
            "ops@wren.test",
            "--acme-challenge",
            challenge,
            "--acme-retry-min",
            "1",
            "--acme-retry-max",
            "2",
            // A connection kept across a renewal stays open that long.
            "--keep-alive-timeout",
            "60",
        ];
        for domain in domains {
            args.extend(["--acme-domain", domain]);
        }
        let wren = Server::start(&args);
        Setup {
            tls: SocketAddr::from(([127, 0, 0, 1], tls_port)),
            redirect: SocketAddr::from(([127, 0, 0, 1], http_port)),
            ca,
            wren,
        }
    }

    /// Connects over TLS asking for `name`, trusting only Pebble's root
    /// (new at each Pebble start).
    fn connect(&self, name: &str) -> Result<Https, rustls::Error> {
        let mut roots = RootCertStore::empty();
        for root in CertificateDer::pem_slice_iter(self.ca.root_pem().as_bytes()) {
            roots.add(root.unwrap()).unwrap();
        }
        let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
        Https::connect(self.tls, &client_config(roots, &versions), name)
    }

    /// Waits until the log shows `count` lines containing `needle`.
    fn wait_for_lines(&self, needle: &str, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let seen = self
                .wren
                .log()
                .iter()
                .filter(|l| l.contains(needle))
                .count();
            if seen >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{count} x {needle:?} not logged in {within:?}: {:#?}\nPebble: {}",
                self.wren.log(),
                self.ca.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn plain_status(&self) -> (u16, String) {
        let mut stream = TcpStream::connect(self.redirect).unwrap();
        stream
            .write_all(b"GET /status HTTP/1.1\r\nHost: wren.test\r\nConnection: close\r\n\r\n")
            .unwrap();
        let response = read_response(&mut BufReader::new(stream), true);
        (response.status, response.text())
    }
}

const ISSUED: &str = "ACME: serving a new certificate";

#[test]
fn tls_alpn_01_gets_a_certificate_serves_it_and_renews_it_near_expiry() {
    // Pebble's certificates live 12 s here: renewal is due after 8 s.
    let setup = Setup::start(ChallengeKind::TlsAlpn01, &DOMAINS, Some(12));
    setup.wait_for_lines(ISSUED, 1, Duration::from_secs(30));
    let mut first = setup
        .connect("wren.test")
        .expect("a chain to Pebble's root");
    assert_eq!(first.get("/status").text(), "Alive!");
    let www = setup.connect("www.wren.test").expect("the second name too");
    assert_eq!(www.certificate(), first.certificate());

    // Stored for the next start, readable by wren alone.
    let acme = setup.wren.data_dir.join("acme");
    for file in ["account.key", "certificate.pem", "certificate.key"] {
        let mode = std::fs::metadata(acme.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    setup.wait_for_lines(ISSUED, 2, Duration::from_secs(30));
    let mut renewed = setup.connect("wren.test").expect("the renewed chain");
    assert_ne!(renewed.certificate(), first.certificate());
    assert_eq!(renewed.get("/status").text(), "Alive!");
    // The connection from before the renewal goes on.
    assert_eq!(first.get("/status").text(), "Alive!");
}

#[test]
fn http_01_on_the_redirect_listener_gets_a_certificate() {
    let setup = Setup::start(ChallengeKind::Http01, &DOMAINS[..1], None);
    setup.wait_for_lines(ISSUED, 1, Duration::from_secs(30));
    let mut https = setup
        .connect("wren.test")
        .expect("a chain to Pebble's root");
    assert_eq!(https.get("/status").text(), "Alive!");
    // Pebble fetched the key authorization from the redirect listener.
    let fetched = setup.wren.wait_for_log("GET /.well-known/acme-challenge/");
    assert!(fetched.contains(" 200 "), "{fetched}");
}

#[test]
fn a_refused_order_is_logged_and_retried_while_the_server_stays_up() {
    let setup = Setup::start(ChallengeKind::TlsAlpn01, &[BLOCKED], None);
    // Logged with the CA's own words, then tried again after the back-off.
    setup.wait_for_lines("rejectedIdentifier", 2, Duration::from_secs(30));
    // No certificate yet: the handshake fails with an alert, at once.
    let started = Instant::now();
    let refused = setup.connect(BLOCKED);
    assert!(refused.is_err(), "no certificate to serve yet");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Plain /status answers meanwhile.
    assert_eq!(setup.plain_status(), (200, "Alive!".to_owned()));
    let mut wren = setup.wren;
    assert!(wren.is_running());
    // A stray plain byte stream on the TLS port is no harm either.
    let mut stray = TcpStream::connect(setup.tls).unwrap();
    stray.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let _ = stray.read_to_end(&mut Vec::new());
    assert!(wren.is_running());
}

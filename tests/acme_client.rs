//! The ACME client against a real CA: Pebble (Let's Encrypt's test CA)
//! validating through pebble-challtestsrv, which answers its DNS queries
//! (every name is 127.0.0.1) and serves the HTTP-01 and TLS-ALPN-01
//! answers the client hands its [`Host`].
//!
//! Each test starts its own pair (`common::pebble`); Pebble reuses valid
//! authorizations half the time, so both paths of the client are taken.

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use wren::acme::{self, AcmeError, Challenge, ChallengeKind, Host, Settings, Step};

mod common;

use common::pebble::{BLOCKED, Ca, Validations};

/// The host the tests give the client: challenges go to challtestsrv's
/// management API; everything else is recorded.
struct ChallengeServer {
    management: String,
    agent: ureq::Agent,
    presented: AtomicUsize,
    withdrawn: AtomicUsize,
    installed: Mutex<Vec<(String, String)>>,
    errors: Mutex<Vec<String>>,
}

impl ChallengeServer {
    fn new(ca: &Ca) -> ChallengeServer {
        ChallengeServer {
            management: ca.challenges.clone(),
            agent: ureq::Agent::new_with_defaults(),
            presented: AtomicUsize::new(0),
            withdrawn: AtomicUsize::new(0),
            installed: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
        }
    }

    fn call(&self, path: &str, body: serde_json::Value) {
        let url = format!("{}{path}", self.management);
        let response = self.agent.post(&url).send(body.to_string()).unwrap();
        assert_eq!(response.status(), 200, "{url}");
    }
}

impl Host for ChallengeServer {
    fn present(&self, challenge: &Challenge<'_>) {
        self.presented.fetch_add(1, Ordering::SeqCst);
        match *challenge {
            Challenge::Http {
                token,
                key_authorization,
            } => self.call(
                "/add-http01",
                serde_json::json!({ "token": token, "content": key_authorization }),
            ),
            // challtestsrv makes its own certificate from the key
            // authorization; `pebble_accepts_wrens_own_tls_alpn_certificate`
            // checks wren's.
            Challenge::TlsAlpn {
                domain,
                key_authorization,
                ..
            } => self.call(
                "/add-tlsalpn01",
                serde_json::json!({ "host": domain, "content": key_authorization }),
            ),
        }
    }

    fn withdraw(&self, challenge: &Challenge<'_>) {
        self.withdrawn.fetch_add(1, Ordering::SeqCst);
        match *challenge {
            Challenge::Http { token, .. } => {
                self.call("/del-http01", serde_json::json!({ "token": token }))
            }
            Challenge::TlsAlpn { domain, .. } => {
                self.call("/del-tlsalpn01", serde_json::json!({ "host": domain }))
            }
        }
    }

    fn install(&self, chain_pem: &str, key_pem: &str) -> Result<(), String> {
        let pair = (chain_pem.to_owned(), key_pem.to_owned());
        self.installed.lock().unwrap().push(pair);
        Ok(())
    }

    fn info(&self, _message: &str) {}

    fn error(&self, message: &str) {
        self.errors.lock().unwrap().push(message.to_owned());
    }
}

fn obtain(ca: &Ca, settings: &Settings, host: &dyn Host) -> acme::Issued {
    acme::obtain(settings, host)
        .unwrap_or_else(|err| panic!("{err}\n--- pebble's log:\n{}", ca.log()))
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn http_01_issues_a_certificate_that_chains_to_pebbles_root() {
    let ca = Ca::start();
    let host = ChallengeServer::new(&ca);
    let domains = ["www.wren.test", "wren.test"];
    let settings = ca.settings(&domains, ChallengeKind::Http01);
    let issued = obtain(&ca, &settings, &host);

    ca.verify_chain(&issued.chain_pem, &domains);
    let mut names = issued.names.clone();
    names.sort();
    assert_eq!(names, ["wren.test", "www.wren.test"]);
    let now = SystemTime::now();
    assert!(issued.not_before <= now + Duration::from_secs(60) && now < issued.not_after);

    // Handed over, and kept privately in the ACME folder.
    let installed = host.installed.lock().unwrap().clone();
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0].0, issued.chain_pem);
    assert!(installed[0].1.starts_with("-----BEGIN PRIVATE KEY-----"));
    let dir = &settings.dir;
    assert_eq!(
        fs::read_to_string(dir.join(acme::CERTIFICATE_FILE)).unwrap(),
        issued.chain_pem
    );
    assert_eq!(
        fs::read_to_string(dir.join(acme::CERTIFICATE_KEY_FILE)).unwrap(),
        installed[0].1
    );
    assert_eq!(mode(dir), 0o700);
    for file in [
        acme::ACCOUNT_KEY_FILE,
        acme::CERTIFICATE_FILE,
        acme::CERTIFICATE_KEY_FILE,
    ] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    // Every challenge presented was withdrawn; one per name (none of this
    // new account's authorizations can have been valid already).
    assert_eq!(host.presented.load(Ordering::SeqCst), 2);
    assert_eq!(host.withdrawn.load(Ordering::SeqCst), 2);
}

#[test]
fn tls_alpn_01_issues_a_certificate_that_chains_to_pebbles_root() {
    let ca = Ca::start();
    let host = ChallengeServer::new(&ca);
    let settings = ca.settings(&["alpn.wren.test"], ChallengeKind::TlsAlpn01);
    let issued = obtain(&ca, &settings, &host);
    ca.verify_chain(&issued.chain_pem, &["alpn.wren.test"]);
    assert_eq!(host.presented.load(Ordering::SeqCst), 1);
    assert_eq!(host.withdrawn.load(Ordering::SeqCst), 1);
}

#[test]
fn a_second_issuance_reuses_the_stored_account_key() {
    let ca = Ca::start();
    let host = ChallengeServer::new(&ca);
    let settings = ca.settings(&["again.wren.test"], ChallengeKind::Http01);
    let first = obtain(&ca, &settings, &host);
    let account_key = fs::read(settings.dir.join(acme::ACCOUNT_KEY_FILE)).unwrap();
    let second = obtain(&ca, &settings, &host);
    assert_eq!(
        fs::read(settings.dir.join(acme::ACCOUNT_KEY_FILE)).unwrap(),
        account_key
    );
    assert_ne!(first.chain_pem, second.chain_pem, "a new certificate");
    ca.verify_chain(&second.chain_pem, &["again.wren.test"]);
    // Pebble logs each account it creates; the second newAccount found the
    // first.
    let log = ca.log();
    assert!(log.contains("There are now 1 accounts in memory"), "{log}");
    assert!(!log.contains("There are now 2 accounts in memory"), "{log}");
    assert_eq!(host.installed.lock().unwrap().len(), 2);
}

#[test]
fn a_refused_order_is_an_error_naming_the_cas_problem() {
    let ca = Ca::start();
    let host = ChallengeServer::new(&ca);
    let settings = ca.settings(&[BLOCKED], ChallengeKind::Http01);
    let error: AcmeError = acme::obtain(&settings, &host).unwrap_err();
    assert_eq!(error.step(), Step::Order);
    let problem = error.problem().expect("the CA's problem document");
    assert_eq!(
        problem.kind,
        "urn:ietf:params:acme:error:rejectedIdentifier"
    );
    let message = error.to_string();
    assert!(message.contains("rejectedIdentifier"), "{message}");
    assert!(message.contains(&problem.detail), "{message}");
    assert!(!message.contains('\n'));
    assert_eq!(host.presented.load(Ordering::SeqCst), 0);
    assert!(host.installed.lock().unwrap().is_empty());
}

#[test]
fn the_renewal_thread_serves_a_stored_certificate_without_ordering() {
    let ca = Ca::start();
    let first = ChallengeServer::new(&ca);
    let settings = ca.settings(&["stored.wren.test"], ChallengeKind::Http01);
    let issued = obtain(&ca, &settings, &first);
    let orders = ca.log().matches("POST /order-plz").count();

    let host = Arc::new(ChallengeServer::new(&ca));
    let thread = acme::start(settings, host.clone()).unwrap();
    let started = Instant::now();
    while host.installed.lock().unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nothing installed"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(host.installed.lock().unwrap()[0].0, issued.chain_pem);
    assert_eq!(ca.log().matches("POST /order-plz").count(), orders);
    assert!(host.errors.lock().unwrap().is_empty());
    assert!(!thread.is_finished());
}

#[test]
fn a_bad_nonce_is_retried_a_few_times_then_reported() {
    // Every nonce refused: the client must retry with each fresh nonce,
    // and give up after its bound with the CA's problem.
    let ca = Ca::start_with(Validations::default(), &[("PEBBLE_WFE_NONCEREJECT", "100")]);
    let host = ChallengeServer::new(&ca);
    let settings = ca.settings(&["nonce.wren.test"], ChallengeKind::Http01);
    let error = acme::obtain(&settings, &host).unwrap_err();
    assert_eq!(error.step(), Step::Account);
    let problem = error.problem().expect("the CA's problem document");
    assert_eq!(problem.kind, "urn:ietf:params:acme:error:badNonce");
    // The first attempt and five retries (the client's bound).
    let attempts = ca.log().matches("POST /sign-me-up").count();
    assert_eq!(attempts, 6, "{}", ca.log());
}

#[test]
fn the_renewal_thread_reports_a_refused_order_and_tries_again() {
    let ca = Ca::start();
    let host = Arc::new(ChallengeServer::new(&ca));
    let settings = ca.settings(&[BLOCKED], ChallengeKind::Http01);
    let thread = acme::start(settings, host.clone()).unwrap();
    let started = Instant::now();
    while host.errors.lock().unwrap().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no second attempt"
        );
        assert!(!thread.is_finished(), "the renewal thread ended");
        thread::sleep(Duration::from_millis(50));
    }
    let errors = host.errors.lock().unwrap().clone();
    for error in &errors {
        assert!(error.contains("rejectedIdentifier"), "{error}");
    }
    // The first retry came after retry_min less its jitter, not at once.
    assert!(started.elapsed() >= Duration::from_millis(225));
    assert!(!thread.is_finished());
    assert!(host.installed.lock().unwrap().is_empty());
}

/// The challenge certificates presented, by name, served only to clients
/// offering `acme-tls/1` (as RFC 8737 §3 has the server do).
#[derive(Debug, Default)]
struct ChallengeCertificates(Mutex<HashMap<String, Arc<CertifiedKey>>>);

impl ResolvesServerCert for ChallengeCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut offered = hello.alpn()?;
        if !offered.any(|protocol| protocol == acme::ACME_TLS_ALPN_PROTOCOL) {
            return None;
        }
        self.0.lock().unwrap().get(hello.server_name()?).cloned()
    }
}

/// A host serving TLS-ALPN-01 itself, with the certificate and key wren
/// hands it, over rustls: what the server will do.
struct TlsAlpnServer {
    certificates: Arc<ChallengeCertificates>,
    port: u16,
}

impl TlsAlpnServer {
    fn start() -> TlsAlpnServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let certificates = Arc::new(ChallengeCertificates::default());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(certificates.clone());
        config.alpn_protocols = vec![acme::ACME_TLS_ALPN_PROTOCOL.to_vec()];
        let config = Arc::new(config);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let config = config.clone();
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut connection = ServerConnection::new(config).unwrap();
                    while connection.is_handshaking() {
                        if connection.complete_io(&mut stream).is_err() {
                            return;
                        }
                    }
                    connection.send_close_notify();
                    let _ = connection.complete_io(&mut stream);
                });
            }
        });
        TlsAlpnServer { certificates, port }
    }
}

impl Host for TlsAlpnServer {
    fn present(&self, challenge: &Challenge<'_>) {
        let Challenge::TlsAlpn {
            domain,
            certificate_der,
            private_key_der,
            ..
        } = *challenge
        else {
            panic!("only TLS-ALPN-01 here");
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(private_key_der.to_vec()));
        let signing_key = rustls::crypto::ring::sign::any_ecdsa_type(&key).unwrap();
        let chain = vec![CertificateDer::from(certificate_der.to_vec())];
        let certified = Arc::new(CertifiedKey::new(chain, signing_key));
        self.certificates
            .0
            .lock()
            .unwrap()
            .insert(domain.to_owned(), certified);
    }

    fn withdraw(&self, challenge: &Challenge<'_>) {
        if let Challenge::TlsAlpn { domain, .. } = *challenge {
            self.certificates.0.lock().unwrap().remove(domain);
        }
    }

    fn install(&self, _chain_pem: &str, _key_pem: &str) -> Result<(), String> {
        Ok(())
    }

    fn info(&self, _message: &str) {}

    fn error(&self, _message: &str) {}
}

#[test]
fn pebble_accepts_wrens_own_tls_alpn_certificate() {
    let server = TlsAlpnServer::start();
    let ca = Ca::start_with(
        Validations {
            tls_port: Some(server.port),
            ..Validations::default()
        },
        &[],
    );
    let settings = ca.settings(
        &["own.wren.test", "other.wren.test"],
        ChallengeKind::TlsAlpn01,
    );
    let issued = obtain(&ca, &settings, &server);
    ca.verify_chain(&issued.chain_pem, &["own.wren.test", "other.wren.test"]);
    assert!(
        server.certificates.0.lock().unwrap().is_empty(),
        "all withdrawn"
    );
}

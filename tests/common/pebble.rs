//! Pebble, Let's Encrypt's test CA, for the ACME tests: each test starts
//! its own Pebble and pebble-challtestsrv on free ports, with a
//! configuration and a TLS certificate for Pebble's own HTTPS made here
//! (openssl CLI), and stops them when it ends. challtestsrv answers
//! Pebble's DNS queries (every name is 127.0.0.1) and, unless a test points
//! Pebble at its own listeners (wren's), the HTTP-01 and TLS-ALPN-01
//! validations. Pebble keeps its defaults but for `PEBBLE_VA_NOSLEEP` (no
//! random waits before validating): it still refuses 5% of good nonces, so
//! the client's `badNonce` retry is exercised on every run.
//! `scripts/pebble.sh install` installs both binaries; a test fails, never
//! skips, when they are missing.

use std::fs;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use wren::acme::{ChallengeKind, Settings};

use super::temp_dir;

pub const PEBBLE: &str = "/usr/bin/pebble";
pub const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";
/// A name on Pebble's `domainBlocklist` here: orders for it are refused.
/// Two labels: Pebble 2.4.0 panics checking a name with fewer labels than
/// a blocked one, so no name ordered here may have fewer than this.
pub const BLOCKED: &str = "blocked.test";
/// How long Pebble and challtestsrv get to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A loopback port free for both TCP and UDP (challtestsrv's DNS takes
/// both) when asked; another test may take it before it is used, which
/// the readiness waits would show as a failure to start.
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A CA and a certificate for 127.0.0.1 it signed, for Pebble's own HTTPS;
/// made once per test run. Returns the folder holding `ca.pem`,
/// `server.pem` and `server.key`.
pub fn listen_certificate() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = temp_dir("listen-certificate");
        let openssl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(&dir));
        let new_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &new_key,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=wren test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &new_key,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
        );
        fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        dir
    })
}

/// A child process killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_for_port(port: u16, what: &str, process: &mut Process) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = process.0.try_wait() {
            panic!("{what} exited at start: {status}");
        }
        assert!(
            started.elapsed() < START_TIMEOUT,
            "{what} did not start listening"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// How a test wants Pebble: where it connects to validate, when not to
/// challtestsrv (wren's own listeners), and how long its certificates live.
#[derive(Debug, Default, Clone, Copy)]
pub struct Validations {
    /// HTTP-01, on port 80 in real life.
    pub http_port: Option<u16>,
    /// TLS-ALPN-01, on port 443 in real life.
    pub tls_port: Option<u16>,
    /// Seconds from issue to expiry; Pebble's default is five years.
    pub certificate_lifetime: Option<u64>,
}

/// A running Pebble with its challenge server.
pub struct Ca {
    pub directory: String,
    pub management: String,
    pub challenges: String,
    work: PathBuf,
    // Dropped (killed) in this order: Pebble, then challtestsrv.
    _pebble: Process,
    _challtestsrv: Process,
}

impl Ca {
    /// Pebble validating through challtestsrv.
    pub fn start() -> Ca {
        Ca::start_with(Validations::default(), &[])
    }

    /// Pebble validating through challtestsrv, except for the ports
    /// `validations` names, with `env` set for it.
    pub fn start_with(validations: Validations, env: &[(&str, &str)]) -> Ca {
        for binary in [PEBBLE, CHALLTESTSRV] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: run scripts/pebble.sh install"
            );
        }
        let work = temp_dir("ca");
        let [
            dns,
            http01,
            tlsalpn01,
            challenge_management,
            acme,
            management,
        ] = [(); 6].map(|()| free_port());
        let address = |port: u16| format!("127.0.0.1:{port}");
        let log = |name: &str| Stdio::from(fs::File::create(work.join(name)).unwrap());
        let mut challtestsrv = Process(
            Command::new(CHALLTESTSRV)
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-dns01", &address(dns), "-http01", &address(http01)])
                .args(["-tlsalpn01", &address(tlsalpn01), "-https01", ""])
                .args(["-management", &address(challenge_management)])
                .stdout(log("challtestsrv.log"))
                .stderr(log("challtestsrv.err"))
                .spawn()
                .unwrap(),
        );
        wait_for_port(
            challenge_management,
            "pebble-challtestsrv",
            &mut challtestsrv,
        );

        let certificate = listen_certificate();
        let mut config = serde_json::json!({ "pebble": {
            "listenAddress": address(acme),
            "managementListenAddress": address(management),
            "certificate": certificate.join("server.pem"),
            "privateKey": certificate.join("server.key"),
            "httpPort": validations.http_port.unwrap_or(http01),
            "tlsPort": validations.tls_port.unwrap_or(tlsalpn01),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "domainBlocklist": [BLOCKED],
        }});
        if let Some(lifetime) = validations.certificate_lifetime {
            config["pebble"]["certificateValidityPeriod"] = lifetime.into();
        }
        fs::write(work.join("pebble.json"), config.to_string()).unwrap();
        let mut pebble = Process(
            Command::new(PEBBLE)
                .arg("-config")
                .arg(work.join("pebble.json"))
                .args(["-dnsserver", &address(dns)])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .envs(env.iter().copied())
                .stdout(log("pebble.log"))
                .stderr(log("pebble.err"))
                .spawn()
                .unwrap(),
        );
        wait_for_port(acme, "pebble", &mut pebble);
        wait_for_port(management, "pebble's management interface", &mut pebble);
        Ca {
            directory: format!("https://{}/dir", address(acme)),
            management: format!("https://{}", address(management)),
            challenges: format!("http://{}", address(challenge_management)),
            work,
            _pebble: pebble,
            _challtestsrv: challtestsrv,
        }
    }

    pub fn settings(&self, domains: &[&str], challenge: ChallengeKind) -> Settings {
        Settings {
            domains: domains.iter().map(|name| name.to_string()).collect(),
            email: Some("admin@wren.test".into()),
            directory: self.directory.clone(),
            ca_root: Some(listen_certificate().join("ca.pem")),
            dir: temp_dir("data").join("acme"),
            challenge,
            renew_at: 2.0 / 3.0,
            retry_min: Duration::from_millis(300),
            retry_max: Duration::from_secs(1),
        }
    }

    /// Pebble's root for this run (it makes a new one each start).
    pub fn root_pem(&self) -> String {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&[
                ureq::tls::Certificate::from_pem(
                    &fs::read(listen_certificate().join("ca.pem")).unwrap(),
                )
                .unwrap(),
            ]))
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder().tls_config(tls).build().into();
        agent
            .get(format!("{}/roots/0", self.management))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    }

    /// What Pebble logged, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.work.join("pebble.log")).unwrap_or_default()
    }

    /// Checks with the openssl CLI that `chain_pem` (leaf first) chains to
    /// Pebble's root and that its leaf names `domains`.
    pub fn verify_chain(&self, chain_pem: &str, domains: &[&str]) {
        let dir = temp_dir("verify");
        let end = "-----END CERTIFICATE-----\n";
        let split = chain_pem.find(end).expect("a PEM chain") + end.len();
        let (leaf, intermediates) = chain_pem.split_at(split);
        assert!(
            !intermediates.trim().is_empty(),
            "Pebble sends an intermediate"
        );
        fs::write(dir.join("leaf.pem"), leaf).unwrap();
        fs::write(dir.join("intermediates.pem"), intermediates).unwrap();
        fs::write(dir.join("root.pem"), self.root_pem()).unwrap();
        let verdict = run(Command::new("openssl").current_dir(&dir).args([
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "intermediates.pem",
            "leaf.pem",
        ]));
        assert_eq!(verdict.trim(), "leaf.pem: OK");
        let names = run(Command::new("openssl").current_dir(&dir).args([
            "x509",
            "-in",
            "leaf.pem",
            "-noout",
            "-ext",
            "subjectAltName",
        ]));
        for domain in domains {
            assert!(
                names.contains(&format!("DNS:{domain}")),
                "{domain} in {names}"
            );
        }
    }
}

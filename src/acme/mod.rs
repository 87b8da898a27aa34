//! Certificates from an ACME CA (RFC 8555), such as Let's Encrypt, kept
//! valid for as long as the server runs.
//!
//! [`start`] runs one thread ("wren-acme") that installs the stored
//! certificate, orders one when there is none for the configured names,
//! and renews it once `renew_at` of its lifetime has passed. [`obtain`] is
//! one issuance, start to end, which that thread calls.
//!
//! The module knows nothing of the server: what the CA must see while a
//! name is being validated, and the certificate to serve, go through the
//! [`Host`] trait, which the server implements. Everything is blocking (one
//! `ureq` agent, bounded by timeouts) and runs on that one thread.
//!
//! The jobs have a file each: `client` speaks to the CA (directory,
//! nonces, signed requests, polling), `issue` runs one issuance over it,
//! `renew` schedules them; `jws` holds the account key and its signatures,
//! `certs` the certificate key, the request, the TLS-ALPN challenge
//! certificate and reading a certificate, over the little DER of `der`;
//! `pem` is the text form, `store` the files in the ACME folder, and
//! `error` the one error type.

mod certs;
mod client;
mod der;
mod error;
mod issue;
mod jws;
mod pem;
mod renew;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

pub use self::certs::expiry as certificate_expiry;
pub use self::error::{AcmeError, Problem, Step};
pub use self::store::{ACCOUNT_KEY_FILE, CERTIFICATE_FILE, CERTIFICATE_KEY_FILE};

/// The ACME folder's name in the data folder.
pub const FOLDER: &str = "acme";

/// The ALPN protocol id a TLS-ALPN-01 validation offers (RFC 8737 §6.2).
/// The server answers a handshake offering it with the presented challenge
/// certificate and negotiates this protocol, then closes the connection.
pub const ACME_TLS_ALPN_PROTOCOL: &[u8] = b"acme-tls/1";

/// What to order, where, and how to keep it.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The names on the certificate; the first is its common name.
    pub domains: Vec<String>,
    /// The account's contact, sent as `mailto:`.
    pub email: Option<String>,
    /// The CA's directory URL.
    pub directory: String,
    /// PEM roots to trust for the directory's own HTTPS (a private or test
    /// CA); `None` trusts the bundled web PKI roots.
    pub ca_root: Option<PathBuf>,
    /// The ACME folder (`<data-dir>/acme`): the account key, the
    /// certificate and its key (see [`ACCOUNT_KEY_FILE`] and the others).
    pub dir: PathBuf,
    /// Which challenge to answer.
    pub challenge: ChallengeKind,
    /// Renew once this share of the certificate's lifetime has passed; in
    /// (0, 1].
    pub renew_at: f64,
    /// The first wait after a failure; it doubles per failure in a row,
    pub retry_min: Duration,
    /// up to this, less some jitter.
    pub retry_max: Duration,
}

/// The challenge types wren can answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeKind {
    /// TLS-ALPN-01 (RFC 8737): on the HTTPS port.
    TlsAlpn01,
    /// HTTP-01 (RFC 8555 §8.3): on port 80.
    Http01,
}

/// What the CA must see, handed to the host while an authorization is
/// pending. (No `Debug`: it holds a private key.)
pub enum Challenge<'a> {
    /// Serve this self-signed certificate (DER, with its PKCS#8 DER key) to
    /// a TLS client that offers ALPN [`ACME_TLS_ALPN_PROTOCOL`] with SNI
    /// `domain` (RFC 8737: its only SAN is `domain`, and a critical
    /// id-pe-acmeIdentifier extension holds the SHA-256 of the key
    /// authorization). `key_authorization` is what that digest is of; a
    /// host that makes its own certificate (a test server) needs it.
    TlsAlpn {
        domain: &'a str,
        certificate_der: &'a [u8],
        private_key_der: &'a [u8],
        key_authorization: &'a str,
    },
    /// Answer `GET /.well-known/acme-challenge/<token>` with this body
    /// (`text/plain`). The token is base64url (checked).
    Http {
        token: &'a str,
        key_authorization: &'a str,
    },
}

/// The server side of the client.
pub trait Host: Send + Sync + 'static {
    /// Starts showing `challenge` to the CA.
    fn present(&self, challenge: &Challenge<'_>);
    /// Stops showing `challenge` (called after every `present`, whatever
    /// the validation's outcome).
    fn withdraw(&self, challenge: &Challenge<'_>);
    /// Serve this certificate from now on: the PEM chain (leaf first) and
    /// its PKCS#8 PEM key. `Err` means it could not be used; it is
    /// reported and tried again.
    fn install(&self, chain_pem: &str, key_pem: &str) -> Result<(), String>;
    fn info(&self, message: &str);
    fn error(&self, message: &str);
}

/// A certificate just issued (and stored, and installed).
#[derive(Clone, Debug)]
pub struct Issued {
    /// Its DNS names, as the CA wrote them.
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The chain, PEM, leaf first.
    pub chain_pem: String,
}

/// Starts the one renewal thread ("wren-acme"): installs a stored
/// certificate at once when it is for the same names and not expired,
/// otherwise orders one; then sleeps until `renew_at` of its lifetime and
/// renews. Failures are reported through [`Host::error`] (with the CA's
/// problem document) and retried with capped, jittered exponential
/// back-off; the old certificate keeps serving meanwhile. Settings the
/// schedule cannot use are an `InvalidInput` error.
pub fn start(settings: Settings, host: Arc<dyn Host>) -> std::io::Result<JoinHandle<()>> {
    renew::start(settings, host)
}

/// One complete issuance: the account (made on first use, with a key kept
/// in the ACME folder), the order, its challenges, finalization, the
/// download, storing, and [`Host::install`].
pub fn obtain(settings: &Settings, host: &dyn Host) -> Result<Issued, AcmeError> {
    issue::obtain(settings, host)
}

//! The server's own certificate, wherever it comes from: PEM files named
//! by `--tls-cert`/`--tls-key` (read at start, again on SIGHUP), or an ACME
//! CA (ordered and renewed by [`crate::acme`] in the background). This is
//! the glue between the settings, the engine's certificate store
//! ([`crate::http::tls::Certificates`]) and the redirect listener's
//! HTTP-01 answers; neither side knows the other.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use rustls::sign::CertifiedKey;

use crate::acme::{self, Challenge};
use crate::config::{CertificateSource, TlsConfig};
use crate::http::log::Logger;
use crate::http::redirect::ChallengeTokens;
use crate::http::tls::{self, Certificates, TlsError};

/// What the TLS and redirect listeners serve from.
pub struct SiteCertificates {
    /// The certificate handshakes get (and ACME's TLS-ALPN-01 ones).
    pub certificates: Arc<Certificates>,
    /// ACME's pending HTTP-01 answers, for the redirect listener.
    pub tokens: Arc<ChallengeTokens>,
    /// When the certificate being served expires, in seconds since the
    /// Unix epoch; 0 while there is none (ACME's first order). For
    /// `/metrics`.
    pub expiry: Arc<AtomicU64>,
    source: CertificateSource,
}

impl SiteCertificates {
    /// Reads the certificate files, when the certificate comes from files:
    /// a missing, unreadable or mismatched pair is a one-line error naming
    /// the flag at fault. With ACME there is nothing yet.
    pub fn open(config: &TlsConfig) -> Result<SiteCertificates, String> {
        let site = SiteCertificates {
            certificates: Arc::new(Certificates::default()),
            tokens: Arc::new(ChallengeTokens::default()),
            expiry: Arc::new(AtomicU64::new(0)),
            source: config.certificate.clone(),
        };
        if let CertificateSource::Files { cert, key } = &config.certificate {
            let loaded = tls::load_pem_files(cert, key).map_err(|err| match err {
                TlsError::Certificate(why) => format!("--tls-cert: {why}"),
                TlsError::Key(why) => format!("--tls-key: {why}"),
                TlsError::Mismatch(why) => format!("--tls-cert/--tls-key: {why}"),
            })?;
            site.serve(loaded);
        }
        Ok(site)
    }

    /// Serves `key` from the next handshake on, and notes its expiry.
    fn serve(&self, key: Arc<CertifiedKey>) {
        let expiry = key
            .end_entity_cert()
            .ok()
            .and_then(|der| acme::certificate_expiry(der))
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_secs());
        self.certificates.set(key);
        self.expiry.store(expiry, Ordering::Relaxed);
    }

    /// SIGHUP: reads the certificate files again and serves them from the
    /// next handshake on; open connections keep theirs. A pair that fails
    /// to load leaves the running one in place. `Ok(None)`: not from files.
    pub fn reload(&self) -> Result<Option<String>, TlsError> {
        let CertificateSource::Files { cert, key } = &self.source else {
            return Ok(None);
        };
        let loaded = tls::load_pem_files(cert, key)?;
        self.serve(loaded);
        Ok(Some(format!(
            "certificate reloaded from {}",
            cert.display()
        )))
    }
}

/// Starts the ACME renewal thread when the certificate comes from a CA: it
/// installs a stored certificate at once, or orders one.
pub fn start_acme(site: &Arc<SiteCertificates>, logger: Logger) -> io::Result<()> {
    let CertificateSource::Acme(settings) = &site.source else {
        return Ok(());
    };
    let host = AcmeHost {
        site: Arc::clone(site),
        logger,
    };
    acme::start(settings.clone(), Arc::new(host)).map(drop)
}

/// The server as the ACME client sees it: challenges go to the TLS
/// listener's certificate store (TLS-ALPN-01) or the redirect listener's
/// tokens (HTTP-01), issued certificates to the store, messages to the log.
struct AcmeHost {
    site: Arc<SiteCertificates>,
    logger: Logger,
}

impl acme::Host for AcmeHost {
    fn present(&self, challenge: &Challenge<'_>) {
        match challenge {
            Challenge::TlsAlpn {
                domain,
                certificate_der,
                private_key_der,
                ..
            } => match tls::load_challenge_der(certificate_der, private_key_der) {
                Ok(key) => self.site.certificates.present_challenge(domain, key),
                Err(err) => self.logger.error(&format!(
                    "ACME: cannot serve the TLS-ALPN-01 certificate for {domain}: {err}"
                )),
            },
            Challenge::Http {
                token,
                key_authorization,
            } => self.site.tokens.present(token, key_authorization),
        }
    }

    fn withdraw(&self, challenge: &Challenge<'_>) {
        match challenge {
            Challenge::TlsAlpn { domain, .. } => self.site.certificates.withdraw_challenge(domain),
            Challenge::Http { token, .. } => self.site.tokens.withdraw(token),
        }
    }

    fn install(&self, chain_pem: &str, key_pem: &str) -> Result<(), String> {
        let key = tls::load_pem(chain_pem, key_pem).map_err(|err| err.to_string())?;
        self.site.serve(key);
        Ok(())
    }

    fn info(&self, message: &str) {
        self.logger.info(message);
    }

    fn error(&self, message: &str) {
        self.logger.error(message);
    }
}

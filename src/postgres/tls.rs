//! TLS to the database with rustls (the ring provider the server already
//! uses), checking the server's certificate as libpq's `sslmode` says.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::config::{Config, SslMode};
use super::error::PgError;

/// `mode` as the URL spells it.
pub fn mode_name(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}

/// The client side of TLS for `mode`: the chain checked against
/// `sslrootcert` (or the bundled web roots) from `require` with a root
/// certificate and from `verify-ca` on, the host name only at
/// `verify-full`; `prefer` and a bare `require` encrypt without checking,
/// as libpq does.
pub fn client_config(config: &Config, mode: SslMode) -> Result<Arc<ClientConfig>, PgError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let check_chain = match mode {
        SslMode::Disable | SslMode::Prefer => false,
        SslMode::Require => config.root_cert.is_some(),
        SslMode::VerifyCa | SslMode::VerifyFull => true,
    };
    let roots = roots(config)?;
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|err| PgError::Tls(format!("the trusted certificates: {err}")))?;
    let verifier = Arc::new(Checks {
        webpki,
        check_chain,
        check_name: mode == SslMode::VerifyFull,
    });
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| PgError::Tls(err.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(tls))
}

/// The certificates in `sslrootcert`, else the bundled web roots.
fn roots(config: &Config) -> Result<RootCertStore, PgError> {
    let mut roots = RootCertStore::empty();
    let Some(path) = &config.root_cert else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    let unreadable = |err: &dyn std::fmt::Display| {
        PgError::Tls(format!("sslrootcert {}: {err}", path.display()))
    };
    for cert in CertificateDer::pem_file_iter(path).map_err(|err| unreadable(&err))? {
        let cert = cert.map_err(|err| unreadable(&err))?;
        roots.add(cert).map_err(|err| unreadable(&err))?;
    }
    if roots.is_empty() {
        return Err(unreadable(&"no certificate in it"));
    }
    Ok(roots)
}

/// What of the server's certificate is checked; the handshake's
/// signatures always are, so the session is at least with the holder of
/// the certificate's key.
#[derive(Debug)]
struct Checks {
    webpki: Arc<WebPkiServerVerifier>,
    check_chain: bool,
    check_name: bool,
}

impl ServerCertVerifier for Checks {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.check_chain {
            return Ok(ServerCertVerified::assertion());
        }
        let verified = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verified {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            verified => verified,
        }
    }

    // The handshake's signatures are checked as the web PKI verifier
    // checks them, whatever of the certificate is.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

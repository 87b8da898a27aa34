//! TLS as a byte transformer between the socket and the connection
//! machine: a [`TlsStream`] is a [`Transport`] like a plain socket, so the
//! machine, the connection layer and the handlers never know which they
//! speak over. rustls (ring provider) does the protocol; this module feeds
//! it the socket's bytes without ever blocking, as the layer above expects.
//!
//! The certificate a handshake gets comes from [`Certificates`], which the
//! server can swap at any time (SIGHUP reloads a file pair, an ACME renewal
//! installs a new one): a connection keeps the certificate it shook hands
//! with, new ones get the new one. It also holds the short-lived
//! certificates of ACME's TLS-ALPN-01 challenge (RFC 8737), shown only to a
//! client that offers the `acme-tls/1` protocol; such a connection is
//! closed once its handshake is done.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ProtocolVersion, ServerConfig, ServerConnection};

use super::stats::Stats;
use super::transport::Transport;

/// ALPN protocol of HTTP/1.1, the one wren speaks.
const HTTP_1_1: &[u8] = b"http/1.1";

/// ALPN protocol of ACME's TLS-ALPN-01 validation (RFC 8737).
const ACME_TLS_1: &[u8] = b"acme-tls/1";

/// The most plaintext taken into one batch of TLS records per write: what
/// the connection layer writes at once, so a body piece leaves in one
/// `writev` of full-sized records.
const PLAINTEXT_BATCH: usize = 64 * 1024;

/// Why a certificate or key could not be used.
#[derive(Debug)]
pub enum TlsError {
    /// The certificate file holds no certificate, or cannot be read.
    Certificate(String),
    /// The key file holds no private key, or cannot be read.
    Key(String),
    /// The key is not one rustls can sign with, or is not the
    /// certificate's.
    Mismatch(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Certificate(why) => write!(f, "certificate: {why}"),
            TlsError::Key(why) => write!(f, "key: {why}"),
            TlsError::Mismatch(why) => write!(f, "certificate and key: {why}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// The crypto wren's TLS uses: rustls's ring provider, as ureq does.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain (leaf first) and its private key, from PEM files.
pub fn load_pem_files(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| TlsError::Certificate(format!("{}: {err}", cert.display())))?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| TlsError::Key(format!("{}: {err}", key.display())))?;
    certified(chain, key_der).map_err(|err| match err {
        TlsError::Certificate(why) => TlsError::Certificate(format!("{}: {why}", cert.display())),
        other => other,
    })
}

/// A certificate chain (leaf first) and its private key, from PEM text.
pub fn load_pem(chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::Certificate(err.to_string()))?;
    let key_der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|err| TlsError::Key(err.to_string()))?;
    certified(chain, key_der)
}

/// An ACME TLS-ALPN-01 challenge certificate (DER) and its PKCS#8 key
/// (DER). Not checked against each other as [`load_pem`] does: that check
/// parses the certificate, and refuses the critical acmeIdentifier
/// extension (RFC 8737) such a certificate must carry. Both come from the
/// ACME client, made together.
pub fn load_challenge_der(cert_der: &[u8], key_der: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    let key = PrivateKeyDer::try_from(key_der.to_vec()).map_err(|err| TlsError::Key(err.into()))?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|err| TlsError::Key(err.to_string()))?;
    let chain = vec![CertificateDer::from(cert_der.to_vec())];
    Ok(Arc::new(CertifiedKey::new(chain, signing_key)))
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    if chain.is_empty() {
        return Err(TlsError::Certificate("no certificate in PEM".into()));
    }
    CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(|err| TlsError::Mismatch(err.to_string()))
}

/// The certificates handshakes are given: the site's, swappable while
/// serving, and ACME's TLS-ALPN-01 challenge certificates by name.
#[derive(Debug, Default)]
pub struct Certificates {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl Certificates {
    /// Serves `key` to every handshake from now on.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(key);
    }

    /// Whether there is a certificate to serve yet (with ACME, not until
    /// the first one is issued).
    pub fn is_set(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Shows `key` to an `acme-tls/1` client asking for `domain`.
    pub fn present_challenge(&self, domain: &str, key: Arc<CertifiedKey>) {
        self.lock_challenges()
            .insert(domain.to_ascii_lowercase(), key);
    }

    pub fn withdraw_challenge(&self, domain: &str) {
        self.lock_challenges().remove(&domain.to_ascii_lowercase());
    }

    fn lock_challenges(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CertifiedKey>>> {
        self.challenges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_1));
        if acme {
            // RFC 8737: a validation handshake gets the challenge
            // certificate for its name or nothing, never the site's.
            let name = hello.server_name()?;
            return self
                .lock_challenges()
                .get(&name.to_ascii_lowercase())
                .cloned();
        }
        // None until a first certificate exists: the handshake fails with
        // an alert, and the connection closes.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The rustls configuration of a TLS listener: TLS 1.3 and 1.2, ALPN
/// `http/1.1` (and `acme-tls/1` for validations), certificates from
/// `certificates`.
pub fn server_config(certificates: Arc<Certificates>) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.3 and 1.2")
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = vec![HTTP_1_1.to_vec(), ACME_TLS_1.to_vec()];
    Arc::new(config)
}

/// A TLS session over a non-blocking TCP socket.
pub struct TlsStream {
    tcp: TcpStream,
    tls: ServerConnection,
    /// Plaintext rustls has decrypted and not yet handed out.
    plaintext: usize,
    /// Where handshakes done and failed are counted.
    stats: Arc<Stats>,
}

impl TlsStream {
    pub fn new(tcp: TcpStream, tls: ServerConnection, stats: Arc<Stats>) -> Self {
        TlsStream {
            tcp,
            tls,
            plaintext: 0,
            stats,
        }
    }

    /// Writes the TLS records rustls holds to the socket; `WouldBlock`
    /// while some remain.
    fn send_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            if self.tls.write_tls(&mut self.tcp)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Sends what rustls owes the peer (handshake flights, session tickets,
    /// alerts) without waiting: a flight left behind on a full socket goes
    /// out with the next read or write.
    fn send_records_now(&mut self) -> io::Result<()> {
        match self.send_records() {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }

    /// Whether this is an ACME validation, whose connection ends with its
    /// handshake.
    fn is_validation(&self) -> bool {
        !self.tls.is_handshaking() && self.tls.alpn_protocol() == Some(ACME_TLS_1)
    }
}

impl Drop for TlsStream {
    /// A connection the server ends (idle past its keep-alive, say) says so
    /// with `close_notify`, when the socket has room for it, so that the
    /// client can tell a clean end from a cut one.
    fn drop(&mut self) {
        if !self.tls.is_handshaking() {
            self.tls.send_close_notify();
            let _ = self.send_records_now();
        }
    }
}

impl Transport for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.plaintext > 0 {
                let n = self.tls.reader().read(buf)?;
                self.plaintext -= n.min(self.plaintext);
                return Ok(n);
            }
            if self.is_validation() {
                self.tls.send_close_notify();
                self.send_records_now()?;
                return Ok(0);
            }
            if self.tls.read_tls(&mut self.tcp)? == 0 {
                return Ok(0);
            }
            let handshaking = self.tls.is_handshaking();
            let state = match self.tls.process_new_packets() {
                Ok(state) => state,
                Err(err) => {
                    if handshaking {
                        self.stats.handshake_failed();
                    }
                    // Not TLS, or TLS gone wrong: tell the peer (rustls has
                    // queued the alert) and end the connection.
                    let _ = self.send_records_now();
                    return Err(io::Error::new(io::ErrorKind::InvalidData, err));
                }
            };
            if handshaking && !self.tls.is_handshaking() {
                self.stats.handshake_done();
            }
            self.plaintext = state.plaintext_bytes_to_read();
            self.send_records_now()?;
            if self.plaintext == 0 && state.peer_has_closed() {
                return Ok(0);
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // Records from before first: bytes must leave in order, and
        // rustls would buffer without bound.
        self.send_records()?;
        let n = self
            .tls
            .writer()
            .write(&data[..data.len().min(PLAINTEXT_BATCH)])?;
        self.send_records_now()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_records()
    }

    fn holds_input(&self) -> bool {
        self.plaintext > 0
    }

    fn shutdown_write(&mut self) {
        self.tls.send_close_notify();
        let _ = self.send_records_now();
        // The peer may be gone already; there is nothing left to tell it.
        let _ = self.tcp.shutdown(Shutdown::Write);
    }

    fn fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }

    fn tls_version(&self) -> Option<&'static str> {
        Some(match self.tls.protocol_version()? {
            ProtocolVersion::TLSv1_3 => "TLSv1.3",
            ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "TLS",
        })
    }
}

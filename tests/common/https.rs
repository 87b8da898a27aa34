//! A real HTTPS client for the socket tests: rustls (ring) trusting only
//! the roots a test gives, with session resumption off, so that every
//! handshake shows the certificate served now (a resumed session shows
//! the one of the session it resumes).

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, ClientConnection, ProtocolVersion, RootCertStore, StreamOwned,
    SupportedProtocolVersion,
};

use super::{Response, read_response};

/// A client configuration trusting `roots`, speaking `versions`, offering
/// ALPN `http/1.1`.
pub fn client_config(
    roots: RootCertStore,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// A TLS connection, handshake done and the chain verified for `name`.
pub struct Https(BufReader<StreamOwned<ClientConnection, TcpStream>>);

impl Https {
    /// Connects and shakes hands; the TLS error when the handshake fails
    /// (an alert from the server, a chain that does not verify).
    pub fn connect(
        addr: SocketAddr,
        config: &Arc<ClientConfig>,
        name: &str,
    ) -> Result<Https, rustls::Error> {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let conn = ClientConnection::new(Arc::clone(config), name).unwrap();
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            if let Err(err) = stream.conn.complete_io(&mut stream.sock) {
                let tls_error = err
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .cloned();
                return Err(tls_error.unwrap_or(rustls::Error::General(err.to_string())));
            }
        }
        Ok(Https(BufReader::new(stream)))
    }

    pub fn version(&self) -> ProtocolVersion {
        self.0.get_ref().conn.protocol_version().unwrap()
    }

    /// The DER of the certificate the server presented.
    pub fn certificate(&self) -> Vec<u8> {
        self.0.get_ref().conn.peer_certificates().unwrap()[0].to_vec()
    }

    pub fn request(&mut self, raw: &str) -> Response {
        self.0.get_mut().write_all(raw.as_bytes()).unwrap();
        read_response(&mut self.0, true)
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.request(&format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"))
    }
}

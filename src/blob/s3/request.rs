//! Talking to the store: where it is, how a request is signed and sent, and
//! how its answer is read within bounds.
//!
//! `rusty-s3` signs and never does I/O: it turns an action (PutObject,
//! GetObject, …) into a presigned URL. `ureq` sends that URL over one shared,
//! pooled, blocking [`ureq::Agent`] whose timeouts bound every step, so a
//! stalled store fails a request instead of holding its thread. wren has no
//! async runtime and needs none here.

use std::io::{self, Read};
use std::time::Duration;

use rusty_s3::{Bucket, Method, S3Action, UrlStyle};
use ureq::http::{HeaderMap, Response};
use ureq::{AsSendBody, Body};

use crate::blob::{BlobError, S3Addressing, S3Config};

/// How long a signed URL stays valid. Each is used at once, for one
/// request; S3 checks the signature when the request starts, so a long
/// transfer does not outlive it.
const SIGNATURE_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Connecting (TCP and TLS) to the store.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for any one read or write on a connection to the store.
/// Restarted by each read or write, not a deadline for the request, so that a 1 GiB transfer that keeps
/// moving never hits a deadline, while a stalled one fails within a minute.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Most bytes read of an XML answer (a listing of 1,000 long keys is a few
/// MiB) and of an error answer.
const MAX_XML_BYTES: u64 = 16 * 1024 * 1024;
const MAX_ERROR_BYTES: u64 = 64 * 1024;

/// The store's address and the agent that talks to it.
#[derive(Debug)]
pub(super) struct Client {
    agent: ureq::Agent,
    /// Parsed again for each request, since a [`Bucket`] is built per
    /// request (the bucket depends on the account).
    endpoint: String,
    style: UrlStyle,
    region: String,
}

impl Client {
    /// A client for the store in `config`. Nothing is sent, and nothing is
    /// checked: [`Client::bucket`] tells whether the endpoint makes URLs.
    pub(super) fn new(config: &S3Config) -> Client {
        let style = match config.addressing {
            S3Addressing::Path => UrlStyle::Path,
            S3Addressing::VirtualHost => UrlStyle::VirtualHost,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            // Error statuses are answers to read (the XML says why), not
            // transport failures.
            .http_status_as_error(false)
            // A redirect from S3 means a wrong region or endpoint; following
            // it would drop the signature. Report it instead.
            .max_redirects(0)
            .timeout_resolve(Some(CONNECT_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(IO_TIMEOUT))
            .timeout_per_write(Some(IO_TIMEOUT))
            // Every request thread may hold a connection to the one store.
            .max_idle_connections(64)
            .max_idle_connections_per_host(64)
            .user_agent(concat!("wren/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            agent,
            endpoint: config.endpoint.clone(),
            style,
            region: config.region.clone(),
        }
    }

    /// The bucket `name` at this endpoint, in the configured URL style; the
    /// error says why no URL can be made.
    pub(super) fn bucket(&self, name: &str) -> Result<Bucket, String> {
        let endpoint = match self.endpoint.parse() {
            Ok(url) => url,
            Err(_) => return Err("not a valid URL".to_owned()),
        };
        Bucket::new(endpoint, self.style, name.to_owned(), self.region.clone())
            .map_err(|err| err.to_string())
    }

    /// Signs `action` with `headers` among the signed headers, and sends it
    /// with those headers and `body`.
    pub(super) fn call<'a, A: S3Action<'a>>(
        &self,
        mut action: A,
        headers: &[(&'static str, &'a str)],
        body: impl AsSendBody + Copy,
    ) -> Result<Response<Body>, BlobError> {
        let url = sign(&mut action, headers);
        self.send(A::METHOD, &url, headers, body)
    }

    /// Signs and sends a bodiless `action`, the whole exchange bounded by
    /// `within` and never retried: a probe of whether the store is there.
    pub(super) fn probe<'a, A: S3Action<'a>>(
        &self,
        mut action: A,
        within: Duration,
    ) -> Result<Response<Body>, BlobError> {
        let url = sign(&mut action, &[]);
        let request = ureq::http::Request::builder()
            .method(A::METHOD.to_str())
            .uri(&url)
            .body(())
            .map_err(|err| BlobError::Upstream(format!("cannot build an S3 request: {err}")))?;
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(within))
            .build();
        self.agent.run(request).map_err(|err| {
            BlobError::Upstream(format!(
                "the object store at {} did not answer within {within:?}: {err}",
                self.endpoint
            ))
        })
    }

    /// Sends a request to a URL [`sign`] made, with exactly the headers it
    /// signed. An answer with an error status is still an answer; only a
    /// store that cannot be reached is an error here.
    ///
    /// A pooled connection the store closed while it sat idle fails the
    /// next request sent on it (a broken pipe, a reset, an early end)
    /// before any answer. Such a failure is retried once, on a new
    /// connection, for the idempotent methods (GET, HEAD, PUT, DELETE:
    /// every body here is in memory, so it can be sent again); never for
    /// POST, whose CompleteMultipartUpload, repeated after a success the
    /// store did not get to answer, would fail a write that happened.
    pub(super) fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&'static str, &str)],
        body: impl AsSendBody + Copy,
    ) -> Result<Response<Body>, BlobError> {
        let request = || {
            let mut request = ureq::http::Request::builder()
                .method(method.to_str())
                .uri(url);
            for &(name, value) in headers {
                request = request.header(name, value);
            }
            request
                .body(body)
                .map_err(|err| BlobError::Upstream(format!("cannot build an S3 request: {err}")))
        };
        let retriable = method != Method::Post;
        let result = match self.agent.run(request()?) {
            Err(err) if retriable && closed_before_answer(&err) => self.agent.run(request()?),
            result => result,
        };
        result.map_err(|err| {
            BlobError::Upstream(format!(
                "the request to the object store at {} failed: {err}",
                self.endpoint
            ))
        })
    }
}

/// Whether `err` is a connection that ended before the store answered: what
/// a pooled connection the store had closed gives.
fn closed_before_answer(err: &ureq::Error) -> bool {
    let ureq::Error::Io(err) = err else {
        return false;
    };
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// Adds `headers` to the signed ones and signs; the request must then carry
/// exactly these headers.
pub(super) fn sign<'a>(
    action: &mut impl S3Action<'a>,
    headers: &[(&'static str, &'a str)],
) -> String {
    for &(name, value) in headers {
        action.headers_mut().insert(name, value);
    }
    action.sign(SIGNATURE_LIFETIME).into()
}

/// An error answer's body, or nothing if it cannot be read.
pub(super) fn error_text(response: &mut Response<Body>) -> String {
    response
        .body_mut()
        .with_config()
        .limit(MAX_ERROR_BYTES)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default()
}

/// A successful answer's XML body.
pub(super) fn xml_text(response: &mut Response<Body>) -> Result<String, BlobError> {
    response
        .body_mut()
        .with_config()
        .limit(MAX_XML_BYTES)
        .read_to_string()
        .map_err(|err| BlobError::Upstream(format!("cannot read the object store's answer: {err}")))
}

/// Reads a short answer to its end, so that its connection goes back to
/// the pool.
pub(super) fn drain(response: &mut Response<Body>) {
    let _ = io::copy(
        &mut response.body_mut().as_reader().take(MAX_ERROR_BYTES),
        &mut io::sink(),
    );
}

pub(super) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    use super::*;

    /// A store whose first connection ends right after the request, with
    /// no answer (as a pooled connection the store closed while the request
    /// went out does), and whose later connections answer `200`. Returns
    /// the endpoint and how many connections were taken.
    fn store_closing_its_first_connection() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let taken = counted.fetch_add(1, Ordering::SeqCst);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                if taken > 0 {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                }
            }
        });
        (endpoint, connections)
    }

    fn client_of(endpoint: &str) -> Client {
        Client::new(&S3Config {
            endpoint: endpoint.to_owned(),
            region: "test".into(),
            bucket: Some("b".into()),
            prefix: String::new(),
            addressing: S3Addressing::Path,
            access_key_id: None,
            secret_access_key: None,
        })
    }

    #[test]
    fn a_connection_closed_before_the_answer_is_retried_once_for_idempotent_requests() {
        let (endpoint, connections) = store_closing_its_first_connection();
        let client = client_of(&endpoint);
        let url = format!("{endpoint}/b/key");
        let mut response = client.send(Method::Put, &url, &[], &b"data"[..]).unwrap();
        assert_eq!(response.status(), 200);
        drain(&mut response);
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        // A POST (CompleteMultipartUpload) is never sent twice.
        let (endpoint, connections) = store_closing_its_first_connection();
        let client = client_of(&endpoint);
        let url = format!("{endpoint}/b/key?uploadId=1");
        assert!(client.send(Method::Post, &url, &[], "<x/>").is_err());
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn only_a_connection_closed_before_an_answer_is_retried() {
        let closed = |kind| closed_before_answer(&ureq::Error::Io(io::Error::from(kind)));
        assert!(closed(io::ErrorKind::BrokenPipe));
        assert!(closed(io::ErrorKind::ConnectionReset));
        assert!(closed(io::ErrorKind::UnexpectedEof));
        assert!(!closed(io::ErrorKind::TimedOut));
        assert!(!closed(io::ErrorKind::ConnectionRefused));
        assert!(!closed_before_answer(&ureq::Error::ConnectionFailed));
    }
}

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
        body: impl AsSendBody,
    ) -> Result<Response<Body>, BlobError> {
        let url = sign(&mut action, headers);
        self.send(A::METHOD, &url, headers, body)
    }

    /// Sends a request to a URL [`sign`] made, with exactly the headers it
    /// signed. An answer with an error status is still an answer; only a
    /// store that cannot be reached is an error here.
    pub(super) fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&'static str, &str)],
        body: impl AsSendBody,
    ) -> Result<Response<Body>, BlobError> {
        let mut request = ureq::http::Request::builder()
            .method(method.to_str())
            .uri(url);
        for &(name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(body)
            .map_err(|err| BlobError::Upstream(format!("cannot build an S3 request: {err}")))?;
        self.agent.run(request).map_err(|err| {
            BlobError::Upstream(format!(
                "the request to the object store at {} failed: {err}",
                self.endpoint
            ))
        })
    }
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

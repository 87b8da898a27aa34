//! wren's request type: what a handler receives. It is built by the engine
//! from the wire, or directly by a unit test, so handlers are pure functions
//! of (application state, request) that need no socket to test.

use std::net::SocketAddr;
use std::ops::Range;

use super::body::Body;
use super::error::ApiError;

/// A path parameter's value, typed by the route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Int(i64),
    /// Text that needed no percent-decoding: where it is in the path, so
    /// the common case copies nothing.
    InPath(Range<usize>),
    /// Text that was percent-decoded.
    Decoded(String),
}

pub struct Request<'a> {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    params: Vec<(&'static str, Param)>,
    body: Body<'a>,
    peer: Option<SocketAddr>,
    id: String,
}

impl Request<'static> {
    /// A request for `target` (`/path?query`) with no headers and no body.
    pub fn new(method: &str, target: &str) -> Self {
        Request::from_parts(method.to_owned(), target.to_owned())
    }

    /// Takes the strings as they are (the engine's parsed head), splitting
    /// the query off the target in place.
    pub(crate) fn from_parts(method: String, mut target: String) -> Self {
        let query = target.find('?').map(|at| {
            let query = target[at + 1..].to_owned();
            target.truncate(at);
            query
        });
        Request {
            method,
            path: target,
            query,
            headers: Vec::new(),
            params: Vec::new(),
            body: Body::empty(),
            peer: None,
            id: String::new(),
        }
    }
}

impl<'a> Request<'a> {
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn with_headers(mut self, headers: Vec<(String, String)>) -> Self {
        self.headers = headers;
        self
    }

    pub fn with_body<'b>(self, body: Body<'b>) -> Request<'b> {
        Request {
            method: self.method,
            path: self.path,
            query: self.query,
            headers: self.headers,
            params: self.params,
            body,
            peer: self.peer,
            id: self.id,
        }
    }

    pub fn with_peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    pub(crate) fn with_id(mut self, id: String) -> Self {
        self.id = id;
        self
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path as sent, still percent-encoded, without the query string.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query string (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The body's media type: `Content-Type` without its parameters, in
    /// lower case (empty when there is none).
    pub fn media_type(&self) -> String {
        media_type(self.header("content-type").unwrap_or(""))
    }

    /// The first header named `name`, compared without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header named `name`, in the order they came, for fields that
    /// may be repeated (`X-Forwarded-For`).
    pub fn header_values<'r>(&'r self, name: &'r str) -> impl Iterator<Item = &'r str> + 'r {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The id the access log and the `X-Request-Id` header carry.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn body(&mut self) -> &mut Body<'a> {
        &mut self.body
    }

    /// What the access log needs once the request is done: its id, method
    /// and path.
    pub(crate) fn into_log_parts(self) -> (String, String, String) {
        (self.id, self.method, self.path)
    }

    pub(crate) fn set_params(&mut self, params: Vec<(&'static str, Param)>) {
        self.params = params;
    }

    /// An integer path parameter, as declared `{name:int}` by the route.
    pub fn param_int(&self, name: &str) -> Result<i64, ApiError> {
        match self.param(name)? {
            Param::Int(value) => Ok(*value),
            Param::InPath(_) | Param::Decoded(_) => Err(missing_param(name)),
        }
    }

    /// A string path parameter (`{name}` or `{name:path}`), percent-decoded.
    pub fn param_str(&self, name: &str) -> Result<&str, ApiError> {
        match self.param(name)? {
            Param::InPath(range) => Ok(&self.path[range.clone()]),
            Param::Decoded(value) => Ok(value),
            Param::Int(_) => Err(missing_param(name)),
        }
    }

    fn param(&self, name: &str) -> Result<&Param, ApiError> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p)
            .ok_or_else(|| missing_param(name))
    }

    /// Whether `If-None-Match` lists `etag` (compared weakly, as RFC 9110
    /// says for this header) or is `*`: the client's copy is current.
    pub fn if_none_match(&self, etag: &str) -> bool {
        self.header("if-none-match").is_some_and(|value| {
            value
                .split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
        })
    }

    /// Whether the client asked for JSON (`Accept: application/json`), which
    /// the legacy plain-text routes honour.
    pub fn wants_json(&self) -> bool {
        self.accepts("application/json")
    }

    /// Whether the client asked for HTML (a browser's navigation).
    pub fn wants_html(&self) -> bool {
        self.accepts("text/html")
    }

    fn accepts(&self, media: &str) -> bool {
        self.header("accept")
            .is_some_and(|accept| lists_media(accept, media))
    }
}

/// A `Content-Type` value's media type, without parameters, in lower case.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A handler asked for a parameter its route does not declare: a bug in the
/// route table, reported as such.
fn missing_param(name: &str) -> ApiError {
    ApiError::new(
        500,
        format!("route declares no parameter '{name}' of that type"),
    )
}

/// True when an `Accept` value lists `media` with a non-zero weight.
fn lists_media(accept: &str, wanted: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        media.eq_ignore_ascii_case(wanted) && !refused
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_path_and_query() {
        let req = Request::new("GET", "/a/b?x=1&y");
        assert_eq!(req.path(), "/a/b");
        assert_eq!(req.query(), Some("x=1&y"));
        assert_eq!(Request::new("GET", "/a").query(), None);
    }

    #[test]
    fn headers_are_case_insensitive() {
        let req = Request::new("GET", "/").with_header("X-Thing", "1");
        assert_eq!(req.header("x-thing"), Some("1"));
        assert_eq!(req.header("x-other"), None);
    }

    #[test]
    fn negotiation_wants_the_media_type_named_with_weight() {
        let json = |accept| lists_media(accept, "application/json");
        assert!(json("application/json"));
        assert!(json("text/html, application/json;q=0.9"));
        assert!(!json("application/json;q=0"));
        assert!(!json("*/*"));
        assert!(!json("text/plain"));
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        let html = Request::new("GET", "/").with_header("Accept", browser);
        assert!(html.wants_html() && !html.wants_json());
    }

    #[test]
    fn typed_params() {
        let mut req = Request::new("GET", "/");
        req.set_params(vec![
            ("n", Param::Int(3)),
            ("s", Param::Decoded("x".into())),
        ]);
        assert_eq!(req.param_int("n").unwrap(), 3);
        assert_eq!(req.param_str("s").unwrap(), "x");
        assert!(req.param_int("s").is_err());
        assert!(req.param_str("missing").is_err());
    }
}

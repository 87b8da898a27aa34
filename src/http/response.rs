//! wren's response type: what a handler returns. The engine adds the framing
//! headers (`Content-Length` or `Transfer-Encoding`, `Connection`, `Date`,
//! `Server`, `X-Request-Id`) when it writes it, so handlers never set those.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;

use serde::Serialize;

/// The headers a new response has room for before its list regrows: the
/// few a handler sets (a content type, an `ETag`, caching) and the ones
/// layers around it add (the rate limit's two), since a regrowth copies
/// the list on every such answer. Not a limit: more still fit.
const RESPONSE_HEADER_ROOM: usize = 8;

/// A response body: nothing, bytes in memory, or a stream read while writing
/// (a file, an object from S3) so that large bodies never sit in memory.
pub enum ResponseBody {
    Empty,
    /// Borrowed for constant bodies, so they cost no allocation.
    Bytes(Cow<'static, [u8]>),
    Stream {
        reader: Box<dyn Read + Send>,
        /// Known length, sent as `Content-Length`; `None` streams chunked.
        len: Option<u64>,
    },
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseBody::Empty => f.write_str("Empty"),
            ResponseBody::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            ResponseBody::Stream { len, .. } => write!(f, "Stream(len: {len:?})"),
        }
    }
}

#[derive(Debug)]
pub struct Response {
    status: u16,
    headers: Vec<(&'static str, Cow<'static, str>)>,
    body: ResponseBody,
    /// A line for the server's log about this response (why it failed),
    /// never sent: an error on a `5xx`, a warning on anything else.
    log_note: Option<String>,
}

impl Response {
    /// A response with no body yet.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::with_capacity(RESPONSE_HEADER_ROOM),
            body: ResponseBody::Empty,
            log_note: None,
        }
    }

    /// `text/plain; charset=utf-8`.
    pub fn text(status: u16, text: impl Into<Cow<'static, str>>) -> Self {
        let body = match text.into() {
            Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
            Cow::Owned(text) => Cow::Owned(text.into_bytes()),
        };
        Response::new(status)
            .with_header("Content-Type", "text/plain; charset=utf-8")
            .with_body(body)
    }

    /// `application/json`, serialized from `value`.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        // Serializing wren's own response types into memory cannot fail: they
        // hold no maps with non-string keys and no failing Serialize impls.
        let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Response::new(status)
            .with_header("Content-Type", "application/json")
            .with_body(bytes)
    }

    /// A body streamed from `reader`; `len` is sent as `Content-Length` when
    /// known, otherwise the body goes out chunked.
    pub fn stream(status: u16, reader: Box<dyn Read + Send>, len: Option<u64>) -> Self {
        Response {
            status,
            headers: Vec::with_capacity(RESPONSE_HEADER_ROOM),
            body: ResponseBody::Stream { reader, len },
            log_note: None,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_body(mut self, bytes: impl Into<Cow<'static, [u8]>>) -> Self {
        self.body = ResponseBody::Bytes(bytes.into());
        self
    }

    pub fn with_log_note(mut self, note: String) -> Self {
        self.log_note = Some(note);
        self
    }

    pub(crate) fn take_log_note(&mut self) -> Option<String> {
        self.log_note.take()
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first header named `name`, compared without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    pub fn headers(&self) -> &[(&'static str, Cow<'static, str>)] {
        &self.headers
    }

    /// The body when it is held in memory (for tests and small bodies).
    pub fn body_bytes(&self) -> Option<&[u8]> {
        match &self.body {
            ResponseBody::Empty => Some(&[]),
            ResponseBody::Bytes(bytes) => Some(bytes.as_ref()),
            ResponseBody::Stream { .. } => None,
        }
    }

    pub(crate) fn into_parts(self) -> (u16, Vec<(&'static str, Cow<'static, str>)>, ResponseBody) {
        (self.status, self.headers, self.body)
    }
}

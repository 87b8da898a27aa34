//! The request body as a handler reads it ([`Body`]), the one size-limited
//! reader ([`Limited`]), and what a failed body read means ([`BodyError`],
//! [`ApiError::from_body_read`]). The wire framing is decoded in `decode`.
//!
//! Bodies are never buffered whole by the engine. A handler reads them as a
//! stream, bounded by its route's limit, and the one helper that reads a body
//! into memory ([`Body::read_to_vec`]) honours the same bound.

use std::fmt;
use std::io::{self, Read};

use super::error::ApiError;

/// Why a body could not be read, carried inside an `io::Error` so that
/// bodies work with any `Read` consumer; [`ApiError`] maps it to a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// More than `limit` bytes (`413`).
    TooLarge { limit: u64 },
    /// Broken chunked framing (`400`).
    Malformed(&'static str),
    /// Arriving slower than the minimum pace, in bytes per second (`408`).
    TooSlow { min_rate: u64 },
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge { limit } => write!(f, "body exceeds {limit} bytes"),
            BodyError::Malformed(what) => write!(f, "malformed body: {what}"),
            BodyError::TooSlow { min_rate } => {
                write!(f, "body slower than {min_rate} bytes per second")
            }
        }
    }
}

impl std::error::Error for BodyError {}

impl ApiError {
    /// The answer to a failed read of the request body: always the client's
    /// doing (too large, malformed framing, too slow, cut short). Never use
    /// it for the server's own I/O, such as a disk write while storing the
    /// body: that is a `5xx` whose cause goes to the log (see
    /// `handlers::errors`).
    pub fn from_body_read(err: io::Error) -> ApiError {
        if let Some(body_error) = err.get_ref().and_then(|e| e.downcast_ref::<BodyError>()) {
            return match body_error {
                BodyError::TooLarge { limit } => ApiError::body_too_large(*limit),
                BodyError::Malformed(what) => {
                    ApiError::bad_request(format!("malformed request body: {what}"))
                }
                BodyError::TooSlow { min_rate } => ApiError::new(
                    408,
                    format!("the request body arrived slower than {min_rate} bytes per second"),
                ),
            };
        }
        match err.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                ApiError::new(408, "timed out reading the request body")
            }
            io::ErrorKind::UnexpectedEof => {
                ApiError::bad_request("request body ended before its declared length")
            }
            _ => ApiError::bad_request(format!("could not read the request body: {err}")),
        }
    }
}

/// A reader that fails with [`BodyError::TooLarge`] once more than `limit`
/// bytes have come through it: the one size-limited reader, for a whole
/// request body and for one part of it (an image in a multipart form).
pub struct Limited<R> {
    inner: R,
    limit: u64,
    read: u64,
}

impl<R: Read> Limited<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        Limited {
            inner,
            limit,
            read: 0,
        }
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte past the limit, so that exactly `limit` bytes
        // pass and a longer input is caught.
        let allowed = self.limit.saturating_sub(self.read).saturating_add(1);
        let want = out
            .len()
            .min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut out[..want])?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(BodyError::TooLarge { limit: self.limit }));
        }
        Ok(n)
    }
}

/// The request body as a handler sees it: a stream bounded by the route's
/// body limit. Reading past the limit fails with [`BodyError::TooLarge`].
pub struct Body<'a> {
    reader: Limited<Source<'a>>,
    content_length: Option<u64>,
}

/// Where a body's bytes come from: the engine lends its decoder for the
/// length of one request; tests and in-memory bodies own theirs.
enum Source<'a> {
    Borrowed(&'a mut dyn Read),
    Owned(Box<dyn Read + 'a>),
}

impl Read for Source<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Borrowed(reader) => reader.read(out),
            Source::Owned(reader) => reader.read(out),
        }
    }
}

impl<'a> Body<'a> {
    pub(crate) fn new(reader: &'a mut dyn Read, content_length: Option<u64>, limit: u64) -> Self {
        Body {
            reader: Limited::new(Source::Borrowed(reader), limit),
            content_length,
        }
    }

    pub fn empty() -> Body<'static> {
        Body::from_bytes(Vec::new())
    }

    /// A body held in memory, as if sent with a `Content-Length`.
    pub fn from_bytes(bytes: Vec<u8>) -> Body<'static> {
        let len = bytes.len() as u64;
        Body {
            reader: Limited::new(Source::Owned(Box::new(io::Cursor::new(bytes))), u64::MAX),
            content_length: Some(len),
        }
    }

    /// The declared `Content-Length`, if the body has one (not chunked).
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    pub fn limit(&self) -> u64 {
        self.reader.limit
    }

    pub(crate) fn set_limit(&mut self, limit: u64) {
        self.reader.limit = limit;
    }

    /// Reads the whole body into memory, within the limit: the one way
    /// handlers get a body to parse.
    pub fn read_to_vec(&mut self) -> Result<Vec<u8>, ApiError> {
        let capacity = self
            .content_length
            .unwrap_or(0)
            .min(self.limit())
            .min(1 << 20);
        let mut bytes = Vec::with_capacity(capacity as usize);
        self.read_to_end(&mut bytes)
            .map_err(ApiError::from_body_read)?;
        Ok(bytes)
    }

    /// Reads the whole body as one JSON document, within the limit.
    pub fn read_json(&mut self) -> Result<serde_json::Value, ApiError> {
        parse_json(&self.read_to_vec()?)
    }
}

/// Parses a JSON document, or says why it is not one (`400`).
pub fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|err| ApiError::bad_request(format!("the body is not valid JSON: {err}")))
}

impl Read for Body<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.reader.read(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_limit_allows_exactly_the_limit() {
        let mut body = Body::from_bytes(b"12345".to_vec());
        body.set_limit(5);
        assert_eq!(body.read_to_vec().unwrap(), b"12345");
        let mut body = Body::from_bytes(b"123456".to_vec());
        body.set_limit(5);
        assert_eq!(body.read_to_vec().unwrap_err().status(), 413);
    }

    #[test]
    fn body_errors_map_to_statuses() {
        let slow = io::Error::other(BodyError::TooSlow { min_rate: 512 });
        assert_eq!(ApiError::from_body_read(slow).status(), 408);
        let too_large = io::Error::other(BodyError::TooLarge { limit: 10 });
        assert_eq!(ApiError::from_body_read(too_large).status(), 413);
        let malformed = io::Error::other(BodyError::Malformed("bad chunk size"));
        assert_eq!(ApiError::from_body_read(malformed).status(), 400);
        let timeout = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(ApiError::from_body_read(timeout).status(), 408);
    }
}

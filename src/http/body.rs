//! Request bodies: the wire decoder the engine drives ([`BodyReader`]) and
//! the stream a handler reads ([`Body`]).
//!
//! Bodies are never buffered whole by the engine. A handler reads them as a
//! stream, bounded by its route's limit, and the one helper that reads a body
//! into memory ([`Body::read_to_vec`]) honours the same bound.

use std::fmt;
use std::io::{self, BufRead, Read, Write};

use super::error::ApiError;
use super::head::Framing;
use super::limits::{MAX_CHUNK_LINE, MAX_HEAD_BYTES};

/// Why a body could not be read, carried inside an `io::Error` so that
/// bodies work with any `Read` consumer; [`ApiError`] maps it to a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// More than `limit` bytes (`413`).
    TooLarge { limit: u64 },
    /// Broken chunked framing (`400`).
    Malformed(&'static str),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge { limit } => write!(f, "body exceeds {limit} bytes"),
            BodyError::Malformed(what) => write!(f, "malformed body: {what}"),
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

fn malformed(what: &'static str) -> io::Error {
    io::Error::other(BodyError::Malformed(what))
}

fn ended_early() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed in the middle of the request body",
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length {
        remaining: u64,
    },
    /// Expecting a chunk-size line.
    ChunkSize,
    ChunkData {
        remaining: u64,
    },
    /// Expecting the CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk: trailer fields up to an empty line.
    Trailers,
    Done,
    /// A read failed; the framing is lost and the connection must close.
    Failed,
}

/// Decodes one request body off a connection (`C` is the connection's
/// buffered reader, and its writer for `100 Continue`).
pub(crate) struct BodyReader<'c, C: BufRead + Write> {
    conn: &'c mut C,
    state: State,
    /// `100 Continue` is owed before the first read: sending it only when the
    /// handler actually reads means a refused request gets its final status
    /// instead.
    continue_owed: bool,
}

impl<'c, C: BufRead + Write> BodyReader<'c, C> {
    pub fn new(conn: &'c mut C, framing: Framing, expect_continue: bool) -> Self {
        let state = match framing {
            Framing::Empty => State::Done,
            Framing::Length(len) => State::Length { remaining: len },
            Framing::Chunked => State::ChunkSize,
        };
        BodyReader {
            conn,
            state,
            continue_owed: expect_continue && state != State::Done,
        }
    }

    /// The body has been read to its end, so the next request can follow.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads and discards up to `limit` bytes of what is left of the body.
    /// Returns whether the body was read to its end.
    pub fn drain(&mut self, limit: u64) -> bool {
        match self.state {
            _ if self.continue_owed => return false,
            State::Failed => return false,
            // Known to be too long: do not wait on the client at all.
            State::Length { remaining } if remaining > limit => return false,
            _ => {}
        }
        let mut sink = [0u8; 8192];
        let mut drained = 0u64;
        while self.state != State::Done && drained <= limit {
            match self.read(&mut sink) {
                Ok(0) => break,
                Ok(n) => drained += n as u64,
                Err(_) => return false,
            }
        }
        self.state == State::Done
    }

    fn read_inner(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.state {
                State::Done | State::Failed => return Ok(0),
                State::Length { remaining } => {
                    let n = self.copy_data(out, remaining)?;
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        State::Done
                    } else {
                        State::Length { remaining }
                    };
                    return Ok(n);
                }
                State::ChunkData { remaining } => {
                    let n = self.copy_data(out, remaining)?;
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData { remaining }
                    };
                    return Ok(n);
                }
                State::ChunkSize => {
                    let size = self.read_chunk_size()?;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData { remaining: size }
                    };
                }
                State::ChunkEnd => {
                    self.expect_crlf("chunk data must end with CRLF")?;
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    self.skip_trailers()?;
                    self.state = State::Done;
                }
            }
        }
    }

    /// Copies up to `min(out.len(), remaining)` body bytes.
    fn copy_data(&mut self, out: &mut [u8], remaining: u64) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let available = self.conn.fill_buf()?;
        if available.is_empty() {
            return Err(ended_early());
        }
        let n = available
            .len()
            .min(out.len())
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        out[..n].copy_from_slice(&available[..n]);
        self.conn.consume(n);
        Ok(n)
    }

    fn next_byte(&mut self) -> io::Result<u8> {
        let available = self.conn.fill_buf()?;
        let Some(&byte) = available.first() else {
            return Err(ended_early());
        };
        self.conn.consume(1);
        Ok(byte)
    }

    fn expect_crlf(&mut self, what: &'static str) -> io::Result<()> {
        if self.next_byte()? == b'\r' && self.next_byte()? == b'\n' {
            Ok(())
        } else {
            Err(malformed(what))
        }
    }

    /// `chunk-size [ BWS ; chunk-ext ] CRLF`, extensions ignored.
    fn read_chunk_size(&mut self) -> io::Result<u64> {
        let mut size: u64 = 0;
        let mut digits = 0usize;
        let mut line_len = 0usize;
        let mut in_extension = false;
        let mut after_space = false;
        loop {
            let byte = self.next_byte()?;
            line_len += 1;
            if line_len > MAX_CHUNK_LINE {
                return Err(malformed("chunk-size line too long"));
            }
            match byte {
                b'\r' => {
                    if self.next_byte()? != b'\n' {
                        return Err(malformed("chunk-size line must end with CRLF"));
                    }
                    if digits == 0 {
                        return Err(malformed("missing chunk size"));
                    }
                    return Ok(size);
                }
                b'\n' => return Err(malformed("chunk-size line must end with CRLF")),
                _ if in_extension => {}
                b';' => in_extension = true,
                // Only whitespace may stand between the size and ';'.
                b' ' | b'\t' if digits > 0 => after_space = true,
                _ if after_space => return Err(malformed("chunk size is not hexadecimal")),
                _ => {
                    let digit = (byte as char)
                        .to_digit(16)
                        .ok_or_else(|| malformed("chunk size is not hexadecimal"))?;
                    size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(digit)))
                        .ok_or_else(|| malformed("chunk size overflows"))?;
                    digits += 1;
                }
            }
        }
    }

    /// Trailer fields are read and dropped, within the head's size limit.
    fn skip_trailers(&mut self) -> io::Result<()> {
        let mut total = 0usize;
        let mut line_len = 0usize;
        loop {
            let byte = self.next_byte()?;
            total += 1;
            if total > MAX_HEAD_BYTES {
                return Err(malformed("trailer section too large"));
            }
            match byte {
                b'\r' => {
                    if self.next_byte()? != b'\n' {
                        return Err(malformed("trailer line must end with CRLF"));
                    }
                    if line_len == 0 {
                        return Ok(());
                    }
                    line_len = 0;
                }
                b'\n' => return Err(malformed("trailer line must end with CRLF")),
                _ => line_len += 1,
            }
        }
    }
}

impl<C: BufRead + Write> Read for BodyReader<'_, C> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.continue_owed {
            self.conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            self.conn.flush()?;
            self.continue_owed = false;
        }
        let result = self.read_inner(out);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
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
}

impl Read for Body<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.reader.read(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection stand-in: what the client sent, and what we wrote back.
    struct FakeConn {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl FakeConn {
        fn new(input: &[u8]) -> Self {
            FakeConn {
                input: io::Cursor::new(input.to_vec()),
                output: Vec::new(),
            }
        }
    }

    impl Read for FakeConn {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl BufRead for FakeConn {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            self.input.fill_buf()
        }
        fn consume(&mut self, amt: usize) {
            self.input.consume(amt)
        }
    }

    impl Write for FakeConn {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn decode(input: &[u8], framing: Framing) -> io::Result<(Vec<u8>, Vec<u8>)> {
        let mut conn = FakeConn::new(input);
        let mut out = Vec::new();
        let mut reader = BodyReader::new(&mut conn, framing, false);
        reader.read_to_end(&mut out)?;
        assert!(reader.is_done());
        let mut rest = Vec::new();
        conn.input.read_to_end(&mut rest)?;
        Ok((out, rest))
    }

    fn malformed_reason(input: &[u8]) -> &'static str {
        let err = decode(input, Framing::Chunked).expect_err("should fail");
        match err.get_ref().and_then(|e| e.downcast_ref::<BodyError>()) {
            Some(BodyError::Malformed(what)) => what,
            other => panic!("unexpected error {err:?} ({other:?})"),
        }
    }

    #[test]
    fn content_length_stops_at_the_length() {
        let (body, rest) = decode(b"helloGET /", Framing::Length(5)).unwrap();
        assert_eq!(body, b"hello");
        assert_eq!(rest, b"GET /");
    }

    #[test]
    fn short_body_is_an_early_end() {
        let err = decode(b"hel", Framing::Length(5)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let input = b"5;name=val\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        let (body, rest) = decode(input, Framing::Chunked).unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(rest, b"NEXT");
        let (body, _) = decode(b"A\r\n0123456789\r\n0\r\n\r\n", Framing::Chunked).unwrap();
        assert_eq!(body, b"0123456789");
    }

    #[test]
    fn strict_chunked_framing() {
        assert_eq!(
            malformed_reason(b"zz\r\nhello\r\n0\r\n\r\n"),
            "chunk size is not hexadecimal"
        );
        assert_eq!(
            malformed_reason(b"10000000000000000\r\n"),
            "chunk size overflows"
        );
        assert_eq!(
            malformed_reason(b"5\nhello\r\n0\r\n\r\n"),
            "chunk-size line must end with CRLF"
        );
        assert_eq!(
            malformed_reason(b"5\r\nhelloXY0\r\n\r\n"),
            "chunk data must end with CRLF"
        );
        assert_eq!(malformed_reason(b"\r\nhello\r\n"), "missing chunk size");
        assert_eq!(
            malformed_reason(b"-5\r\nhello\r\n"),
            "chunk size is not hexadecimal"
        );
        let long = [b"5;".as_slice(), &[b'x'; MAX_CHUNK_LINE]].concat();
        assert_eq!(malformed_reason(&long), "chunk-size line too long");
    }

    #[test]
    fn continue_is_sent_before_the_first_read_only() {
        let mut conn = FakeConn::new(b"abc");
        let mut reader = BodyReader::new(&mut conn, Framing::Length(3), true);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
        assert_eq!(conn.output, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn unread_continue_body_cannot_be_drained() {
        let mut conn = FakeConn::new(b"abc");
        let mut reader = BodyReader::new(&mut conn, Framing::Length(3), true);
        assert!(!reader.drain(1024));
        assert!(conn.output.is_empty());
    }

    #[test]
    fn drain_is_bounded() {
        let mut conn = FakeConn::new(&[b'x'; 100]);
        assert!(BodyReader::new(&mut conn, Framing::Length(100), false).drain(1000));
        let mut conn = FakeConn::new(&[b'x'; 100_000]);
        assert!(!BodyReader::new(&mut conn, Framing::Length(100_000), false).drain(1000));
    }

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
        let too_large = io::Error::other(BodyError::TooLarge { limit: 10 });
        assert_eq!(ApiError::from_body_read(too_large).status(), 413);
        let malformed = io::Error::other(BodyError::Malformed("bad chunk size"));
        assert_eq!(ApiError::from_body_read(malformed).status(), 400);
        let timeout = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(ApiError::from_body_read(timeout).status(), 408);
    }
}

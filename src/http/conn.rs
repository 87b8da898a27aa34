//! One connection: read a head, hand the request to the service, write the
//! response, and repeat while the connection may be kept alive.
//!
//! Every read has a deadline (the head as a whole, the idle wait between
//! requests, each body read), every write has one, and nothing is read into
//! memory beyond the head buffer: bodies stream to the handler.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::body::{Body, BodyReader};
use super::error::ApiError;
use super::head::{Framing, Head, Version, parse_head};
use super::limits::{DRAIN_LIMIT, LINGER_TIMEOUT, MAX_HEAD_BYTES};
use super::log::AccessEntry;
use super::request::Request;
use super::response::{Response, ResponseBody, reason_phrase, status_has_body};
use super::server::{Shared, Slot};

/// The connection's socket and its read buffer (which holds at most one
/// request head, plus whatever of the next request arrived with it).
struct Conn<'s> {
    stream: &'s TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The read timeout currently set on the socket, to skip redundant
    /// `setsockopt` calls on the hot path.
    read_timeout: Option<Duration>,
}

impl<'s> Conn<'s> {
    fn new(stream: &'s TcpStream) -> Self {
        Conn {
            stream,
            buf: vec![0; MAX_HEAD_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            read_timeout: None,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        // A zero timeout means "none" to the socket API.
        let timeout = timeout.max(Duration::from_millis(1));
        if self.read_timeout != Some(timeout) {
            self.stream.set_read_timeout(Some(timeout))?;
            self.read_timeout = Some(timeout);
        }
        Ok(())
    }

    /// Reads more bytes after those buffered; `Ok(0)` means end of stream.
    fn read_more(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.stream.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }
}

impl Read for Conn<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Conn<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end {
            self.start = 0;
            self.end = self.stream.read(&mut self.buf)?;
        }
        Ok(&self.buf[self.start..self.end])
    }

    fn consume(&mut self, amt: usize) {
        self.start = (self.start + amt).min(self.end);
    }
}

impl Write for Conn<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.stream.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Serves one accepted connection until it closes.
pub(crate) fn serve(shared: &Shared, slot: &Slot, peer: SocketAddr, accepted: Instant) {
    let stream = &slot.stream;
    let limits = &shared.limits;
    // Small responses go out in one write; Nagle would only delay them.
    let _ = stream.set_nodelay(true);
    if stream.set_write_timeout(Some(limits.io_timeout)).is_err() {
        return;
    }
    let mut conn = Conn::new(stream);
    let mut out = Vec::with_capacity(1024);
    let mut first = true;
    loop {
        // Wait for the next request (the first one counts against the head
        // deadline from the moment the connection was accepted).
        if conn.buffered().is_empty() {
            if !slot.mark_idle(shared) {
                return;
            }
            let wait = if first {
                limits.header_timeout.saturating_sub(accepted.elapsed())
            } else {
                limits.keep_alive_timeout
            };
            if conn.set_read_timeout(wait).is_err() {
                return;
            }
            match conn.read_more() {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if !slot.mark_busy() {
                return;
            }
        }
        let started = Instant::now();
        let deadline = if first {
            accepted + limits.header_timeout
        } else {
            started + limits.header_timeout
        };
        first = false;

        let head = match read_head(&mut conn, deadline) {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(error) => {
                let meta = Meta {
                    request_id: &new_request_id(),
                    version: Version::Http11,
                    head_only: false,
                    keep_alive: false,
                };
                let (status, bytes) = send(stream, &mut out, error.into_response(), &meta);
                shared.logger.access(&AccessEntry {
                    request_id: meta.request_id,
                    peer,
                    method: "-",
                    path: "-",
                    status,
                    bytes,
                    duration: started.elapsed(),
                });
                linger_close(stream);
                return;
            }
        };

        let keep_alive = handle(shared, &mut conn, &mut out, head, peer, started);
        if !keep_alive {
            linger_close(stream);
            return;
        }
    }
}

/// Reads until a complete head is parsed. `Ok(None)`: the client went away
/// (nothing to answer); `Err`: the error to answer before closing.
fn read_head(conn: &mut Conn<'_>, deadline: Instant) -> Result<Option<Head>, ApiError> {
    loop {
        if let Some((head, len)) = parse_head(conn.buffered())? {
            conn.consume(len);
            return Ok(Some(head));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(header_timeout());
        }
        if conn.set_read_timeout(deadline - now).is_err() {
            return Ok(None);
        }
        match conn.read_more() {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(err) if is_timeout(&err) => return Err(header_timeout()),
            Err(_) => return Ok(None),
        }
    }
}

fn header_timeout() -> ApiError {
    ApiError::new(408, "the request head did not arrive in time")
}

/// Runs one request through the service and writes its response. Returns
/// whether the connection can carry another request.
fn handle(
    shared: &Shared,
    conn: &mut Conn<'_>,
    out: &mut Vec<u8>,
    head: Head,
    peer: SocketAddr,
    started: Instant,
) -> bool {
    let stream = conn.stream;
    let limits = &shared.limits;
    let request_id = request_id(&head.headers);
    if head.framing != Framing::Empty && conn.set_read_timeout(limits.io_timeout).is_err() {
        return false;
    }
    let content_length = match head.framing {
        Framing::Empty => Some(0),
        Framing::Length(len) => Some(len),
        Framing::Chunked => None,
    };
    let head_only = head.method == "HEAD";
    let mut body_reader = BodyReader::new(conn, head.framing, head.expect_continue);
    let body = Body::new(&mut body_reader, content_length, limits.max_body);
    let mut request = Request::from_parts(head.method, head.target)
        .with_headers(head.headers)
        .with_peer(peer)
        .with_id(request_id)
        .with_body(body);

    let response = panic::catch_unwind(AssertUnwindSafe(|| shared.service.call(&mut request)))
        .unwrap_or_else(|_| {
            // The panic hook has logged the panic itself.
            ApiError::new(500, "the server failed to handle this request").into_response()
        });
    let (request_id, method, path) = request.into_log_parts();

    // The next request can follow only once this one's body is consumed;
    // a large unread remainder is cheaper to cut than to read.
    let body_consumed = body_reader.is_done() || body_reader.drain(DRAIN_LIMIT);
    let keep_alive =
        head.keep_alive && body_consumed && !shared.shutting_down.load(Ordering::SeqCst);
    let meta = Meta {
        request_id: &request_id,
        version: head.version,
        head_only,
        keep_alive,
    };
    let (status, bytes, written) = match write_response(stream, out, response, &meta) {
        Ok((status, bytes, reusable)) => (status, bytes, reusable),
        Err(WriteFailure { status, bytes }) => (status, bytes, false),
    };
    shared.logger.access(&AccessEntry {
        request_id: &request_id,
        peer,
        method: &method,
        path: &path,
        status,
        bytes,
        duration: started.elapsed(),
    });
    keep_alive && written
}

/// What the engine needs to know to frame a response.
struct Meta<'a> {
    request_id: &'a str,
    version: Version,
    /// A HEAD request: send the head only.
    head_only: bool,
    keep_alive: bool,
}

struct WriteFailure {
    status: u16,
    bytes: u64,
}

/// Writes an error response on a connection that is about to close, ignoring
/// write failures (the client may be gone). Returns the status and bytes sent.
fn send(stream: &TcpStream, out: &mut Vec<u8>, response: Response, meta: &Meta<'_>) -> (u16, u64) {
    match write_response(stream, out, response, meta) {
        Ok((status, bytes, _)) => (status, bytes),
        Err(WriteFailure { status, bytes }) => (status, bytes),
    }
}

/// Bodies up to this size are sent in the same write as the head.
const COALESCE_LIMIT: usize = 64 * 1024;

/// Writes `response` with its framing headers. On success returns the
/// status, the bytes written and whether the connection stays usable.
fn write_response(
    mut stream: &TcpStream,
    out: &mut Vec<u8>,
    response: Response,
    meta: &Meta<'_>,
) -> Result<(u16, u64, bool), WriteFailure> {
    let (status, headers, body) = response.into_parts();
    let has_body = status_has_body(status);
    let body_len = match &body {
        ResponseBody::Empty => Some(0),
        ResponseBody::Bytes(bytes) => Some(bytes.len() as u64),
        ResponseBody::Stream { len, .. } => *len,
    };
    // Without a length, HTTP/1.1 streams chunked; HTTP/1.0 has only the
    // end of the connection to mark the end of the body.
    let chunked = has_body && body_len.is_none() && meta.version == Version::Http11;
    let close_delimited = has_body && body_len.is_none() && meta.version == Version::Http10;
    let keep_alive = meta.keep_alive && !close_delimited;

    out.clear();
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", status, reason_phrase(status));
    super::date::with_http_date_now(|date| {
        let _ = write!(
            out,
            "Date: {date}\r\nServer: wren/{}\r\n",
            env!("CARGO_PKG_VERSION")
        );
    });
    for (name, value) in &headers {
        // A value carrying CR or LF would let input split the response.
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            continue;
        }
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let _ = write!(out, "X-Request-Id: {}\r\n", meta.request_id);
    if has_body {
        match body_len {
            Some(len) => {
                let _ = write!(out, "Content-Length: {len}\r\n");
            }
            None if chunked && !meta.head_only => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n")
            }
            None => {}
        }
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if meta.version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");

    let send_body = has_body && !meta.head_only;
    let mut written = 0u64;
    let failed = |written| WriteFailure {
        status,
        bytes: written,
    };
    match body {
        ResponseBody::Bytes(bytes) if send_body && bytes.len() <= COALESCE_LIMIT => {
            out.extend_from_slice(&bytes);
            stream.write_all(out).map_err(|_| failed(0))?;
            written += out.len() as u64;
        }
        ResponseBody::Bytes(bytes) if send_body => {
            stream.write_all(out).map_err(|_| failed(0))?;
            written += out.len() as u64;
            stream.write_all(&bytes).map_err(|_| failed(written))?;
            written += bytes.len() as u64;
        }
        ResponseBody::Stream { reader, len } if send_body => {
            stream.write_all(out).map_err(|_| failed(0))?;
            written += out.len() as u64;
            match copy_body(stream, reader, len, chunked) {
                Ok(n) => written += n,
                Err(n) => return Err(failed(written + n)),
            }
        }
        _ => {
            stream.write_all(out).map_err(|_| failed(0))?;
            written += out.len() as u64;
        }
    }
    Ok((status, written, keep_alive))
}

/// Copies a streamed body: chunk-framed, or raw up to `len` (or to the end
/// of the reader for a close-delimited HTTP/1.0 body). A reader that ends
/// before `len` is an error: the client was promised `len` bytes. Returns
/// the bytes written, or on failure those written before it.
fn copy_body(
    mut stream: &TcpStream,
    reader: Box<dyn Read + Send>,
    len: Option<u64>,
    chunked: bool,
) -> Result<u64, u64> {
    let mut reader = reader.take(len.unwrap_or(u64::MAX));
    let mut buf = vec![0u8; 64 * 1024];
    let (mut sent, mut body_bytes) = (0u64, 0u64);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(sent),
        };
        if chunked {
            let size_line = format!("{n:x}\r\n");
            stream
                .write_all(size_line.as_bytes())
                .and_then(|_| stream.write_all(&buf[..n]))
                .and_then(|_| stream.write_all(b"\r\n"))
                .map_err(|_| sent)?;
            sent += (size_line.len() + n + 2) as u64;
        } else {
            stream.write_all(&buf[..n]).map_err(|_| sent)?;
            sent += n as u64;
        }
        body_bytes += n as u64;
    }
    if chunked {
        stream.write_all(b"0\r\n\r\n").map_err(|_| sent)?;
        sent += 5;
    }
    match len {
        Some(len) if body_bytes != len => Err(sent),
        _ => Ok(sent),
    }
}

/// Closes a connection so that the last response reaches the client: stop
/// sending, then read (and drop) what the client still sends for a short
/// while, since closing with unread data makes the kernel send a reset that
/// can destroy the response in flight.
fn linger_close(mut stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(LINGER_TIMEOUT));
    let deadline = Instant::now() + LINGER_TIMEOUT;
    let mut sink = [0u8; 4096];
    let mut total = 0usize;
    while Instant::now() < deadline && total < 64 * 1024 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}

/// Writes a `503` to a connection refused at accept time, without blocking
/// the accept loop.
pub(crate) fn refuse(shared: &Shared, mut stream: TcpStream, peer: SocketAddr, reason: &str) {
    let request_id = new_request_id();
    let response = ApiError::new(503, reason)
        .with_header("Retry-After", "1")
        .into_response();
    let meta = Meta {
        request_id: &request_id,
        version: Version::Http11,
        head_only: false,
        keep_alive: false,
    };
    // The socket is new: its send buffer is empty, so this write does not
    // block for long; the short timeout bounds it anyway.
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = stream.set_nonblocking(true);
    let mut sink = [0u8; 4096];
    let _ = stream.read(&mut sink);
    let started = Instant::now();
    let (status, bytes) = send(&stream, &mut Vec::new(), response, &meta);
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.read(&mut sink);
    shared.logger.access(&AccessEntry {
        request_id: &request_id,
        peer,
        method: "-",
        path: "-",
        status,
        bytes,
        duration: started.elapsed(),
    });
}

/// The client's `X-Request-Id` when it is sane (1 to 64 characters of
/// letters, digits and `-_.:`), otherwise a new random one.
fn request_id(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("x-request-id"))
        .map(|(_, v)| v.as_str())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(new_request_id)
}

/// Request ids only need to be unique enough to find a line in a log, so the
/// fast non-cryptographic generator is right here.
fn new_request_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_request_ids_are_kept() {
        let headers = vec![("X-Request-Id".to_owned(), "abc-123.x:y_z".to_owned())];
        assert_eq!(request_id(&headers), "abc-123.x:y_z");
    }

    #[test]
    fn odd_request_ids_are_replaced() {
        for bad in ["", "has space", "quote\"", &"x".repeat(65)] {
            let headers = vec![("x-request-id".to_owned(), bad.to_owned())];
            let id = request_id(&headers);
            assert_eq!(id.len(), 16, "{bad:?}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
}

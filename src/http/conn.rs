//! One connection: a parkable state machine. When a worker picks it up
//! (its socket is readable), it reads what arrived, serves every complete
//! request in order, and returns it to be parked again or closed.
//!
//! Waiting for a request never holds a thread: the connection is parked
//! with a deadline the monitor enforces. Inside a request, reads of the body
//! and writes of the response block, each under `--io-timeout`.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::body::{Body, BodyReader};
use super::error::ApiError;
use super::head::{Framing, Head, Version, parse_head};
use super::limits::{DRAIN_LIMIT, LINGER_LIMIT, LINGER_TIMEOUT, Limits, MAX_HEAD_BYTES};
use super::log::AccessEntry;
use super::request::Request;
use super::response::{Response, ResponseBody, reason_phrase, status_has_body};
use super::server::Shared;

/// What a parked connection is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Between requests: closed quietly at the deadline.
    Idle,
    /// Part of a request head has arrived: `408` at the deadline.
    Head,
    /// Closing: the response is sent and the write side shut; what the
    /// client still sends is read and dropped until the deadline, so that a
    /// reset does not destroy the response in flight.
    Linger,
}

/// What a worker does with a connection after serving it.
pub(crate) enum Next {
    Park(Box<Conn>),
    Close,
}

/// A connection and its read buffer (at most one request head, plus
/// whatever of the next request arrived with it).
pub(crate) struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    phase: Phase,
    deadline: Instant,
    /// No request has been served yet (the first head's deadline runs from
    /// the accept, not from its first byte).
    first: bool,
    lingered: usize,
    /// How many buffered bytes are known to hold no complete head, so that
    /// a head arriving a byte at a time is not parsed again per byte.
    head_checked: usize,
    header_timeout: Duration,
    keep_alive_timeout: Duration,
    io_timeout: Duration,
    /// Scratch space for response heads, reused across requests.
    out: Vec<u8>,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr, limits: &Limits) -> io::Result<Box<Conn>> {
        stream.set_nonblocking(true)?;
        // Small responses go out in one write; Nagle would only delay them.
        stream.set_nodelay(true)?;
        Ok(Box::new(Conn {
            stream,
            peer,
            buf: vec![0; MAX_HEAD_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            phase: Phase::Idle,
            deadline: Instant::now() + limits.header_timeout,
            first: true,
            lingered: 0,
            head_checked: 0,
            header_timeout: limits.header_timeout,
            keep_alive_timeout: limits.keep_alive_timeout,
            io_timeout: limits.io_timeout,
            out: Vec::with_capacity(512),
        }))
    }

    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn is_lingering(&self) -> bool {
        self.phase == Phase::Linger
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Whether parsing the buffered head can give a new answer: a line
    /// ended since the last try, or the buffer is full (and gets `431`).
    fn head_may_be_ready(&self) -> bool {
        let buffered = self.buffered();
        buffered.len() == self.buf.len()
            || memchr::memchr(b'\n', &buffered[self.head_checked.min(buffered.len())..]).is_some()
    }

    /// Reads what has arrived without waiting; `WouldBlock` when nothing has.
    fn read_available(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = (&self.stream).read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Starts a lingering close.
    fn linger(mut self: Box<Self>) -> Next {
        let _ = self.stream.shutdown(Shutdown::Write);
        self.phase = Phase::Linger;
        self.deadline = Instant::now() + LINGER_TIMEOUT;
        self.start = 0;
        self.end = 0;
        self.keep_lingering()
    }

    fn keep_lingering(mut self: Box<Self>) -> Next {
        loop {
            match (&self.stream).read(&mut self.buf) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    self.lingered += n;
                    if self.lingered > LINGER_LIMIT {
                        return Next::Close;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Next::Park(self),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
    }

    fn socket(&self) -> Socket<'_> {
        Socket {
            stream: &self.stream,
            timeout: self.io_timeout,
        }
    }
}

/// The connection's socket with a deadline on each read and write: the
/// socket is non-blocking (for parking), so waits go through `poll(2)`.
struct Socket<'a> {
    stream: &'a TcpStream,
    timeout: Duration,
}

impl Socket<'_> {
    fn wait(&self, events: libc::c_short) -> io::Result<()> {
        let mut fd = libc::pollfd {
            fd: self.stream.as_raw_fd(),
            events,
            revents: 0,
        };
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd that outlives the call.
            match unsafe { libc::poll(&mut fd, 1, ms) } {
                0 => return Err(io::ErrorKind::TimedOut.into()),
                n if n > 0 => return Ok(()),
                _ => {
                    let err = io::Error::last_os_error();
                    if err.kind() != io::ErrorKind::Interrupted {
                        return Err(err);
                    }
                }
            }
        }
    }
}

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.stream.read(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.wait(libc::POLLIN)?,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }
}

impl Write for Socket<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        loop {
            match self.stream.write(data) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.wait(libc::POLLOUT)?,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// While a request runs, the body is read through the connection's buffer
/// first, then from the socket under the I/O timeout.
impl Read for Conn {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Conn {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            let mut socket = Socket {
                stream: &self.stream,
                timeout: self.io_timeout,
            };
            self.end = socket.read(&mut self.buf)?;
        }
        Ok(&self.buf[self.start..self.end])
    }

    fn consume(&mut self, amt: usize) {
        self.start = (self.start + amt).min(self.end);
    }
}

/// `100 Continue` goes out through here.
impl Write for Conn {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.socket().write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Serves a connection whose socket became readable, until it would wait.
pub(crate) fn serve(shared: &Shared, mut conn: Box<Conn>) -> Next {
    if conn.phase == Phase::Linger {
        return conn.keep_lingering();
    }
    loop {
        if conn.phase == Phase::Idle && shared.shutting_down.load(Ordering::SeqCst) {
            return Next::Close;
        }
        if conn.head_may_be_ready() {
            let started = Instant::now();
            match parse_head(conn.buffered()) {
                Ok(Some((head, len))) => {
                    conn.start += len;
                    conn.head_checked = 0;
                    if !handle(shared, &mut conn, head, started) {
                        return conn.linger();
                    }
                    conn.first = false;
                    conn.phase = Phase::Idle;
                    conn.deadline = Instant::now() + conn.keep_alive_timeout;
                    if conn.buffered().is_empty() {
                        return Next::Park(conn);
                    }
                    // A pipelined request is already here.
                    conn.phase = Phase::Head;
                    conn.deadline = Instant::now() + conn.header_timeout;
                    continue;
                }
                Ok(None) => conn.head_checked = conn.buffered().len(),
                Err(error) => {
                    let timeout = conn.io_timeout;
                    respond_and_close(shared, &mut conn, error, started, timeout);
                    return conn.linger();
                }
            }
        }
        if conn.phase == Phase::Head && Instant::now() >= conn.deadline {
            let timeout = conn.io_timeout;
            respond_and_close(shared, &mut conn, header_timeout(), Instant::now(), timeout);
            return conn.linger();
        }
        match conn.read_available() {
            Ok(0) => return Next::Close,
            Ok(_) => {
                if conn.phase == Phase::Idle {
                    conn.phase = Phase::Head;
                    if !conn.first {
                        conn.deadline = Instant::now() + conn.header_timeout;
                    }
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Next::Park(conn),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
}

/// A parked connection whose deadline passed (called by the monitor).
/// Returns the connection when it should linger before closing.
pub(crate) fn expire(shared: &Shared, mut conn: Box<Conn>) -> Option<Box<Conn>> {
    match conn.phase {
        Phase::Head => {
            // The monitor must never wait on one client: a client that does
            // not read gets what fits in its send buffer now, or nothing.
            let no_wait = Duration::ZERO;
            respond_and_close(shared, &mut conn, header_timeout(), Instant::now(), no_wait);
            match conn.linger() {
                Next::Park(conn) => Some(conn),
                Next::Close => None,
            }
        }
        Phase::Idle | Phase::Linger => None,
    }
}

/// Answers an error that ends the connection (a bad head, a timeout); each
/// write may wait up to `write_timeout` for the client to read.
fn respond_and_close(
    shared: &Shared,
    conn: &mut Conn,
    error: ApiError,
    started: Instant,
    write_timeout: Duration,
) {
    let request_id = new_request_id();
    let meta = Meta {
        request_id: &request_id,
        version: Version::Http11,
        head_only: false,
        keep_alive: false,
    };
    let mut out = std::mem::take(&mut conn.out);
    let mut socket = Socket {
        stream: &conn.stream,
        timeout: write_timeout,
    };
    let (status, bytes) = send(&mut socket, &mut out, error.into_response(), &meta);
    conn.out = out;
    shared.logger.access(&AccessEntry {
        request_id: &request_id,
        peer: conn.peer,
        method: "-",
        path: "-",
        status,
        bytes,
        duration: started.elapsed(),
    });
}

fn header_timeout() -> ApiError {
    ApiError::new(408, "the request head did not arrive in time")
}

/// Runs one request through the service and writes its response. Returns
/// whether the connection can carry another request.
fn handle(shared: &Shared, conn: &mut Conn, head: Head, started: Instant) -> bool {
    let limits = &shared.limits;
    let peer = conn.peer;
    let request_id = request_id(&head.headers);
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

    let mut response = panic::catch_unwind(AssertUnwindSafe(|| shared.service.call(&mut request)))
        .unwrap_or_else(|_| {
            // The panic hook has logged the panic itself.
            ApiError::new(500, "the server failed to handle this request").into_response()
        });
    let (request_id, method, path) = request.into_log_parts();
    if let Some(note) = response.take_log_note() {
        shared
            .logger
            .error(&format!("request {request_id}: {note}"));
    }

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
    let mut out = std::mem::take(&mut conn.out);
    let written = write_response(&mut conn.socket(), &mut out, response, &meta);
    conn.out = out;
    let (status, bytes, reusable) = match written {
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
    keep_alive && reusable
}

/// Appends `name: value` CRLF; plain copies, as `write!`'s formatting
/// machinery costs more than the bytes on this per-response path.
fn put_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
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
fn send(
    stream: &mut impl Write,
    out: &mut Vec<u8>,
    response: Response,
    meta: &Meta<'_>,
) -> (u16, u64) {
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
    stream: &mut impl Write,
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
    out.extend_from_slice(b"Date: ");
    crate::date::with_http_date_now(|date| out.extend_from_slice(date.as_bytes()));
    out.extend_from_slice(
        concat!("\r\nServer: wren/", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes(),
    );
    for (name, value) in &headers {
        // A value carrying CR or LF would let input split the response.
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            continue;
        }
        put_header(out, name, value);
    }
    put_header(out, "X-Request-Id", meta.request_id);
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
    stream: &mut impl Write,
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
    // Non-blocking: the socket is new, so its empty send buffer takes the
    // whole answer, and the accept loop never waits on this client.
    let _ = stream.set_nonblocking(true);
    let mut sink = [0u8; 4096];
    let _ = stream.read(&mut sink);
    let started = Instant::now();
    let (status, bytes) = send(&mut &stream, &mut Vec::new(), response, &meta);
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

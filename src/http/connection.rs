//! One connection on the wire: the connection machine (`machine.rs`) driven
//! over a transport. This layer moves bytes and reads clocks; every protocol
//! decision is the machine's. It also runs the service for each request
//! (catching a panic as a `500` for that request alone) and writes the one
//! access-log line per answer.
//!
//! Waiting for a request never holds a thread: when the machine wants input
//! and none has arrived, the connection goes back to the server to be
//! parked until its deadline. Inside a request, body reads and response
//! writes block, each wait bounded by `--io-timeout`.

use std::borrow::Cow;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::body::Body;
use super::body::BodyError;
use super::error::ApiError;
use super::head::{Framing, Head};
use super::limits::{Limits, MAX_HEAD_BYTES};
use super::log::{AccessEntry, Logger};
use super::machine::{BodyStep, DrainStep, Machine, Step, Timeouts};
use super::request::Request;
use super::response::{Later, Response, ResponseBody};
use super::stats::Stats;
use super::transport::{Transport, flush_by, read_by, write_by};

/// What the engine serves: a function from a request to its response.
pub trait Service: Send + Sync + 'static {
    fn call(&self, request: &mut Request<'_>) -> Response;
}

impl<F> Service for F
where
    F: Fn(&mut Request<'_>) -> Response + Send + Sync + 'static,
{
    fn call(&self, request: &mut Request<'_>) -> Response {
        self(request)
    }
}

/// What one listener serves: its service, and headers every answer on it
/// carries (`Strict-Transport-Security` on a TLS listener).
pub struct Site {
    pub service: Box<dyn Service>,
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
}

/// What every connection shares: the sites, the log, the limits, whether
/// the server is shutting down, and the engine's stats.
pub(crate) struct Context {
    pub limits: Limits,
    pub logger: Logger,
    /// By listener, in the order the server was bound.
    pub sites: Vec<Site>,
    pub shutting_down: AtomicBool,
    pub stats: Arc<Stats>,
}

/// What becomes of a connection after a turn of [`serve`].
pub(crate) enum Next<T> {
    /// Waiting for input: park it until it is readable or its deadline.
    Park(Box<Connection<T>>),
    /// Waiting for the answer its handler gives later: hand it to
    /// [`Awaiting::later`], to [`resume`] once the answer is in.
    Await(Box<Connection<T>>, Awaiting),
    /// Done: close it (dropping it closes its descriptor), once nothing can
    /// find it by its descriptor's number any more, which the system may
    /// give to the next file opened.
    Close(Box<Connection<T>>),
}

/// A request whose answer its handler gives later ([`Response::later`]).
pub(crate) struct Awaiting {
    pub later: Box<Later>,
    pub taken: Taken,
}

/// A request taken up, for finishing its exchange and its log line.
pub(crate) struct Taken {
    started: Instant,
    request_id: String,
    method: String,
    path: String,
}

/// A connection: its transport, its peer, the site it came to (an index
/// into [`Context::sites`]) and its machine.
pub(crate) struct Connection<T> {
    transport: T,
    peer: SocketAddr,
    site: usize,
    machine: Machine,
}

impl<T: Transport> Connection<T> {
    pub fn new(transport: T, peer: SocketAddr, site: usize, limits: &Limits) -> Box<Self> {
        let timeouts = Timeouts {
            header: limits.header_timeout,
            keep_alive: limits.keep_alive_timeout,
            min_rate: limits.min_rate,
        };
        Box::new(Connection {
            transport,
            peer,
            site,
            machine: Machine::new(Instant::now(), timeouts),
        })
    }

    pub fn fd(&self) -> std::os::fd::RawFd {
        self.transport.fd()
    }

    pub fn deadline(&self) -> Instant {
        self.machine.deadline()
    }

    pub fn is_lingering(&self) -> bool {
        self.machine.is_lingering()
    }
}

/// Serves a connection until it would wait: every complete request in
/// order, then parks it (or closes it). Writes may wait `write_timeout`
/// each for the client to read: `--io-timeout` for a connection that became
/// readable, nothing for one the monitor found past its deadline (the
/// monitor must never wait on one client).
pub(crate) fn serve<T: Transport>(
    context: &Context,
    mut conn: Box<Connection<T>>,
    write_timeout: Duration,
) -> Next<T> {
    loop {
        if context.shutting_down.load(Ordering::SeqCst) {
            conn.machine.begin_shutdown();
        }
        match conn.machine.poll(Instant::now()) {
            // Decrypted input is invisible to the descriptor: read it now.
            Step::Wait if conn.transport.holds_input() => {}
            Step::Wait => return Next::Park(conn),
            Step::Receive => {
                let Connection {
                    transport, machine, ..
                } = &mut *conn;
                match transport.read(machine.input()) {
                    Ok(n) => machine.received(n, Instant::now()),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        return Next::Park(conn);
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => {
                        // A reset, or TLS that failed (garbage, a plain
                        // request on the TLS port): the client's doing.
                        let peer = conn.peer;
                        context
                            .logger
                            .debug(&format!("connection from {peer} ended: {err}"));
                        return Next::Close(conn);
                    }
                }
            }
            Step::Dispatch(head) => {
                if let Some(awaiting) = conn.exchange(context, head) {
                    return Next::Await(conn, awaiting);
                }
            }
            Step::Reject(error) => {
                let started = Instant::now();
                let request_id = new_request_id();
                let headers = &context.sites[conn.site].headers;
                let response = error.into_response();
                let answered = conn.answer(response, headers, &request_id, write_timeout);
                log_access(context, &conn, &request_id, "-", "-", started, answered);
            }
            Step::HalfClose => conn.transport.shutdown_write(),
            Step::Close => return Next::Close(conn),
        }
    }
}

/// The answer to a request its handler failed to answer (it panicked, or
/// dropped its later answer's reply unsent).
pub(crate) fn failed_answer() -> Response {
    ApiError::new(500, "the server failed to handle this request").into_response()
}

/// Answers the request `taken` with `answer`, its handler's later answer,
/// then serves the connection on as [`serve`] does.
pub(crate) fn resume<T: Transport>(
    context: &Context,
    mut conn: Box<Connection<T>>,
    taken: Taken,
    answer: Response,
    write_timeout: Duration,
) -> Next<T> {
    conn.finish(context, answer, taken, write_timeout);
    serve(context, conn, write_timeout)
}

/// Answers a connection refused at accept time (the connection cap) with a
/// `503`, without waiting on the client: the socket is new, so its empty
/// send buffer takes the whole answer.
pub(crate) fn refuse<T: Transport>(
    context: &Context,
    transport: T,
    peer: SocketAddr,
    site: usize,
    reason: &str,
) {
    let started = Instant::now();
    let mut conn = Connection::new(transport, peer, site, &context.limits);
    // What the client sent already is read and dropped, so that closing
    // does not reset the connection before the answer is read.
    let mut sink = [0u8; 4096];
    let _ = conn.transport.read(&mut sink);
    conn.machine.refuse();
    let request_id = new_request_id();
    let response = ApiError::new(503, reason)
        .with_header("Retry-After", "1")
        .into_response();
    let answered = conn.answer(response, &[], &request_id, Duration::ZERO);
    conn.transport.shutdown_write();
    let _ = conn.transport.read(&mut sink);
    log_access(context, &conn, &request_id, "-", "-", started, answered);
}

/// What one answer came to, for the access log.
struct Answered {
    status: u16,
    bytes: u64,
}

impl<T: Transport> Connection<T> {
    /// Runs one request through the service and answers it, or, when its
    /// handler answers later, returns what finishing it needs.
    fn exchange(&mut self, context: &Context, head: Head) -> Option<Awaiting> {
        let started = Instant::now();
        context.stats.request_started();
        let request_id = request_id(&head.headers);
        let content_length = match head.framing {
            Framing::Empty => Some(0),
            Framing::Length(len) => Some(len),
            Framing::Chunked => None,
        };
        let io_timeout = context.limits.io_timeout;
        let mut body_reader = BodyReader {
            machine: &mut self.machine,
            transport: &mut self.transport,
            timeout: io_timeout,
        };
        let body = Body::new(&mut body_reader, content_length, context.limits.max_body);
        let mut request = Request::from_parts(head.method, head.target)
            .with_headers(head.headers)
            .with_peer(self.peer)
            .with_id(request_id)
            .with_body(body);
        let site = &context.sites[self.site];
        let mut response =
            panic::catch_unwind(AssertUnwindSafe(|| site.service.call(&mut request)))
                // The panic hook has logged the panic itself.
                .unwrap_or_else(|_| failed_answer());
        let (request_id, method, path) = request.into_log_parts();
        // Whatever comes of the answer, the body is done with now: the
        // connection leaves this thread between request and answer.
        self.drain_body(io_timeout);
        let taken = Taken {
            started,
            request_id,
            method,
            path,
        };
        match response.take_later() {
            Some(later) => Some(Awaiting { later, taken }),
            None => {
                self.finish(context, response, taken, io_timeout);
                None
            }
        }
    }

    /// Answers the request `taken` with `response` and logs it.
    fn finish(
        &mut self,
        context: &Context,
        mut response: Response,
        taken: Taken,
        timeout: Duration,
    ) {
        let Taken {
            started,
            request_id,
            method,
            path,
        } = taken;
        if let Some(note) = response.take_log_note() {
            let line = format!("request {request_id}: {note}");
            if response.status() >= 500 {
                context.logger.error(&line);
            } else {
                context.logger.warn(&line);
            }
        }
        if context.shutting_down.load(Ordering::SeqCst) {
            self.machine.begin_shutdown();
        }
        let site = &context.sites[self.site];
        let answered = self.answer(response, &site.headers, &request_id, timeout);
        context.stats.request_ended();
        log_access(
            context,
            self,
            &request_id,
            &method,
            &path,
            started,
            answered,
        );
    }

    /// Drops what the handler left of the body, as far as the machine finds
    /// it worth it.
    fn drain_body(&mut self, timeout: Duration) {
        loop {
            match self.machine.drain_body(Instant::now()) {
                DrainStep::Done | DrainStep::GiveUp => return,
                DrainStep::Receive => {
                    // A failure marks the body failed; the next turn gives up.
                    let _ = receive_body(&mut self.machine, &mut self.transport, None, timeout);
                }
            }
        }
    }

    /// Frames and writes `response` with the site's `extra` headers, then
    /// ends the exchange.
    fn answer(
        &mut self,
        response: Response,
        extra: &[(&'static str, Cow<'static, str>)],
        request_id: &str,
        timeout: Duration,
    ) -> Answered {
        let (status, mut headers, body) = response.into_parts();
        headers.extend_from_slice(extra);
        let body_len = match &body {
            ResponseBody::Empty => Some(0),
            ResponseBody::Bytes(bytes) => Some(bytes.len() as u64),
            ResponseBody::Stream { len, .. } => *len,
        };
        let sends_body = crate::date::with_http_date_now(|date| {
            self.machine
                .respond(status, &headers, body_len, request_id, date, Instant::now())
        });
        let sent_whole = if sends_body {
            self.send_body(body, timeout)
        } else {
            self.flush(timeout).is_ok()
        };
        let answered = Answered {
            status,
            bytes: self.machine.response_bytes(),
        };
        self.machine.finish(Instant::now(), sent_whole);
        answered
    }

    /// Sends the body after the head, in pieces of at most [`PIECE`] bytes.
    /// Returns whether all of it went out whole.
    fn send_body(&mut self, body: ResponseBody, timeout: Duration) -> bool {
        match body {
            ResponseBody::Empty => {}
            ResponseBody::Bytes(bytes) => {
                for piece in bytes.chunks(PIECE) {
                    self.machine.push_body(piece);
                    if self.machine.output().len() >= PIECE && self.flush(timeout).is_err() {
                        return false;
                    }
                }
            }
            ResponseBody::Stream { reader, len } => {
                let mut reader = reader.take(len.unwrap_or(u64::MAX));
                let mut buf = vec![0u8; PIECE];
                loop {
                    let n = match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                        // The source failed mid-body (a disk, an object
                        // store): the head is out, so all that can be said
                        // is to end the connection early.
                        Err(_) => return false,
                    };
                    let sent = match self.machine.direct_answer() {
                        // After the first piece, which leaves with the head.
                        Some(owed) => self.send_direct(&buf[..n.min(owed)], timeout),
                        None => {
                            self.machine.push_body(&buf[..n]);
                            self.flush(timeout)
                        }
                    };
                    if sent.is_err() {
                        return false;
                    }
                }
            }
        }
        let whole = self.machine.end_body();
        self.flush(timeout).is_ok() && whole
    }

    fn flush(&mut self, timeout: Duration) -> io::Result<()> {
        send_output(&mut self.machine, &mut self.transport, timeout)
    }

    /// Writes answer body bytes straight to the transport (as
    /// [`Machine::direct_answer`] allows), under the same bounds as
    /// [`send_output`].
    fn send_direct(&mut self, mut piece: &[u8], timeout: Duration) -> io::Result<()> {
        while !piece.is_empty() {
            let machine = &self.machine;
            let n = write_by(&mut self.transport, piece, || {
                wait_deadline(timeout, machine.output_deadline())
            })?;
            self.machine.sent_body(n);
            piece = &piece[n..];
        }
        flush_by(&mut self.transport, || {
            wait_deadline(timeout, self.machine.output_deadline())
        })
    }
}

/// The deadline of one wait: `timeout` from now, or sooner when the
/// machine's pace deadline (`--min-rate`) comes first.
fn wait_deadline(timeout: Duration, paced: Option<Instant>) -> Instant {
    let by_timeout = Instant::now() + timeout;
    paced.map_or(by_timeout, |paced| paced.min(by_timeout))
}

/// Writes what the machine has put in its output, each wait for room
/// bounded by `timeout` and by the answer's minimum pace.
fn send_output<T: Transport>(
    machine: &mut Machine,
    transport: &mut T,
    timeout: Duration,
) -> io::Result<()> {
    while !machine.output().is_empty() {
        let paced = machine.output_deadline();
        let n = write_by(transport, machine.output(), || {
            wait_deadline(timeout, paced)
        })?;
        machine.sent(n);
    }
    flush_by(transport, || {
        wait_deadline(timeout, machine.output_deadline())
    })
}

/// Receives more of the request body, the wait bounded by `timeout` and by
/// the body's minimum pace: into the machine's input buffer, or, with
/// `direct`, straight into the handler's buffer as
/// [`Machine::direct_body`] allows. A body that falls behind that pace is
/// the client's slowness ([`BodyError::TooSlow`]); any failure loses the
/// body's framing.
fn receive_body<T: Transport>(
    machine: &mut Machine,
    transport: &mut T,
    direct: Option<&mut [u8]>,
    timeout: Duration,
) -> io::Result<usize> {
    let paced = machine.input_deadline();
    let deadline = wait_deadline(timeout, paced);
    let into_handler = direct.is_some();
    let read = match direct {
        Some(out) => read_by(transport, out, deadline),
        None => read_by(transport, machine.input(), deadline),
    };
    let n = read.map_err(|err| {
        machine.input_failed();
        if err.kind() == io::ErrorKind::TimedOut && paced == Some(deadline) {
            let min_rate = machine.min_rate();
            return io::Error::other(BodyError::TooSlow { min_rate });
        }
        err
    })?;
    if into_handler {
        machine.received_body(n);
    } else {
        machine.received(n, Instant::now());
    }
    Ok(n)
}

/// Handler reads at least this large take body bytes straight from the
/// transport when the machine allows: smaller ones are cheaper through the
/// input buffer, whose one receive may serve several of them.
const DIRECT_READ_MIN: usize = MAX_HEAD_BYTES;

/// Body bytes go out in pieces of this size: a body up to it leaves in the
/// same write as the head.
const PIECE: usize = 64 * 1024;

/// The request body a handler reads: the machine decodes what the transport
/// delivers, receiving (under the I/O timeout and the minimum pace) only
/// when it asks to.
struct BodyReader<'c, T> {
    machine: &'c mut Machine,
    transport: &'c mut T,
    timeout: Duration,
}

impl<T: Transport> Read for BodyReader<'_, T> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if out.len() >= DIRECT_READ_MIN
                && let Some(owed) = self.machine.direct_body(Instant::now())
            {
                let len = out.len().min(owed);
                let n = receive_body(
                    self.machine,
                    self.transport,
                    Some(&mut out[..len]),
                    self.timeout,
                )?;
                if n > 0 {
                    return Ok(n);
                }
                // The peer closed: the machine's next step says so.
                continue;
            }
            match self.machine.read_body(out, Instant::now())? {
                BodyStep::Data(n) => return Ok(n),
                BodyStep::End => return Ok(0),
                BodyStep::Send => {
                    if let Err(err) = send_output(self.machine, self.transport, self.timeout) {
                        self.machine.input_failed();
                        return Err(err);
                    }
                }
                BodyStep::Receive => {
                    receive_body(self.machine, self.transport, None, self.timeout)?;
                }
            }
        }
    }
}

/// The one place an access-log line is written.
fn log_access<T: Transport>(
    context: &Context,
    conn: &Connection<T>,
    request_id: &str,
    method: &str,
    path: &str,
    started: Instant,
    answered: Answered,
) {
    context.logger.access(&AccessEntry {
        request_id,
        peer: conn.peer,
        method,
        path,
        status: answered.status,
        bytes: answered.bytes,
        duration: started.elapsed(),
        tls: conn.transport.tls_version(),
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

//! The connection machine: one HTTP/1.1 connection as a pure state machine
//! (sans-IO, in the style of `ureq-proto`'s server). It is given the bytes
//! that arrived and the current time, and it says what to do next: receive
//! more, dispatch a complete request, answer a refused one, write what it
//! has put in its output, half-close and linger, or close. It never touches
//! a socket or a clock, so every protocol decision is unit-tested byte for
//! byte (see `machine/tests.rs`); the socket layer around it
//! (`connection.rs`, over a `transport::Transport`) only moves bytes.
//!
//! The decisions it owns:
//! - the phases: idle between requests, a head arriving, an exchange
//!   (request body in, response out), lingering close;
//! - the deadlines of the phases a connection is parked in: the header
//!   timeout (from the accept for the first request, from the first byte
//!   for later ones), the keep-alive timeout, the linger; and the minimum
//!   pace of a body or an answer in flight (`--min-rate`);
//! - keep-alive by version and `Connection`, pipelining (bytes after a
//!   request are the next one), `100 Continue` (sent only when the handler
//!   first reads the body), HEAD (never a body, error answers included);
//! - request framing (through `head` and `decode`) and response framing:
//!   `Content-Length`, chunked, or close-delimited for HTTP/1.0;
//! - what happens to a body the handler left unread: drained when small,
//!   else the connection closes.

use std::borrow::Cow;
use std::io::{self, Write as _};
use std::time::{Duration, Instant};

use super::decode::Decoder;
use super::error::ApiError;
use super::head::{Framing, Head, Version, parse_head};
use super::limits::{DRAIN_LIMIT, LINGER_LIMIT, LINGER_TIMEOUT, MAX_HEAD_BYTES, MIN_RATE_GRACE};
use super::status::{has_body, reason_phrase};

/// The timeouts the machine keeps as deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// The whole request head must arrive within this time.
    pub header: Duration,
    /// An idle connection between requests closes after this time.
    pub keep_alive: Duration,
    /// The slowest average pace, in bytes per second, of a request body or
    /// an answer after [`MIN_RATE_GRACE`]; `0`: none.
    pub min_rate: u64,
}

/// What the socket layer does next, from [`Machine::poll`].
#[derive(Debug)]
pub(crate) enum Step {
    /// Nothing can have arrived yet: the client is still reading the
    /// answer just sent. Wait (parked) until the transport is readable or
    /// [`Machine::deadline`] passes, then poll again; trying a read now
    /// would cost a system call per request for nothing.
    Wait,
    /// Read what has arrived into [`Machine::input`] and report it with
    /// [`Machine::received`]; when nothing has, wait (parked) until
    /// [`Machine::deadline`] at the latest, then poll again.
    Receive,
    /// A request head is complete: serve it. Its body comes through
    /// [`Machine::read_body`], the answer goes through [`Machine::respond`],
    /// and [`Machine::finish`] ends the exchange.
    Dispatch(Head),
    /// The request can never be served (a bad head, the header timeout):
    /// answer this error as for a dispatched request; the connection then
    /// closes.
    Reject(ApiError),
    /// Everything is sent and the connection will not be reused: shut the
    /// write side, then keep receiving (and dropping) until the peer closes
    /// or the linger deadline passes, so that the answer is not lost to a
    /// reset of unread input.
    HalfClose,
    Close,
}

/// What [`Machine::read_body`] produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyStep {
    /// This many body bytes are in the caller's buffer.
    Data(usize),
    /// The body has ended.
    End,
    /// No body bytes are buffered: receive more, then ask again.
    Receive,
    /// [`Machine::output`] holds an interim `100 Continue`: send it, then
    /// ask again.
    Send,
}

/// What [`Machine::drain_body`] decided about the unread rest of a body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DrainStep {
    /// The body is consumed: the connection can carry the next request.
    Done,
    /// More of the body must be received (and dropped) first.
    Receive,
    /// Too much is left, or the body cannot be read: the connection closes
    /// after the answer.
    GiveUp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests; closed quietly at the deadline.
    Idle,
    /// Part of a head has arrived: `408` at the deadline.
    Head,
    /// A request is being served.
    Exchange,
    /// The last answer is out; the write side is to be shut.
    Closing,
    /// The write side is shut; input is dropped until the deadline.
    Linger,
}

/// How the response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFraming {
    /// No body bytes at all (HEAD, 204, 304, or none yet).
    Nothing,
    Length {
        remaining: u64,
    },
    Chunked,
    /// HTTP/1.0 with no known length: the end of the connection ends it.
    UntilClose,
}

/// The request being served and the answer being sent.
#[derive(Debug)]
struct Exchange {
    version: Version,
    /// A HEAD request: the answer's head only.
    head_only: bool,
    /// The client's wish at first; once the answer is framed, whether the
    /// connection will carry another request.
    keep_alive: bool,
    body: Decoder,
    continue_owed: bool,
    /// Body bytes dropped after the handler returned.
    drained: u64,
    framing: BodyFraming,
    /// The answer's head has been produced; output is counted from here.
    responded: bool,
    bytes_sent: u64,
    /// When the handler first asked for the body: its pace is measured
    /// from here, not from the head (a handler may think first).
    body_clock: Option<Instant>,
    /// Body bytes received so far, framing included.
    body_bytes: u64,
    /// When the answer's head was produced: its pace is measured from here.
    response_clock: Option<Instant>,
}

impl Exchange {
    fn new(version: Version, head_only: bool, keep_alive: bool, framing: Framing) -> Self {
        Exchange {
            version,
            head_only,
            keep_alive,
            body: Decoder::new(framing),
            continue_owed: false,
            drained: 0,
            framing: BodyFraming::Nothing,
            responded: false,
            bytes_sent: 0,
            body_clock: None,
            body_bytes: 0,
            response_clock: None,
        }
    }
}

/// Output kept between requests up to this size; a larger buffer (after a
/// large answer) is given back, so idle connections stay small.
const OUTPUT_KEPT: usize = 16 * 1024;

/// One connection's state. See the module documentation.
pub(crate) struct Machine {
    timeouts: Timeouts,
    /// At most one request head, plus whatever of the next request arrived
    /// with it; body bytes pass through it too.
    input: Box<[u8]>,
    start: usize,
    end: usize,
    /// How many buffered bytes are known to hold no complete head, so that
    /// a head arriving a byte at a time is not parsed again per byte.
    head_checked: usize,
    output: Vec<u8>,
    /// How much of `output` has been sent.
    output_sent: usize,
    phase: Phase,
    deadline: Instant,
    /// No request has been served yet: the first head's deadline runs from
    /// the accept, not from its first byte.
    first: bool,
    peer_closed: bool,
    shutting_down: bool,
    /// An answer just went out and nothing followed it: wait for the
    /// transport to be readable before reading.
    answered: bool,
    lingered: usize,
    exchange: Exchange,
}

impl Machine {
    /// A connection accepted at `now`.
    pub fn new(now: Instant, timeouts: Timeouts) -> Self {
        Machine {
            timeouts,
            // Allocated by the first read: a connection refused at accept,
            // or one that never sends a byte, costs no buffer.
            input: Box::default(),
            start: 0,
            end: 0,
            head_checked: 0,
            output: Vec::with_capacity(512),
            output_sent: 0,
            phase: Phase::Idle,
            deadline: now + timeouts.header,
            first: true,
            peer_closed: false,
            shutting_down: false,
            answered: false,
            lingered: 0,
            exchange: Exchange::new(Version::Http11, false, false, Framing::Empty),
        }
    }

    /// When a parked connection must be looked at again.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn is_lingering(&self) -> bool {
        self.phase == Phase::Linger
    }

    /// The server is shutting down: no new request is started on an idle
    /// connection, and answers say `Connection: close`.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
    }

    fn buffered(&self) -> &[u8] {
        &self.input[self.start..self.end]
    }

    /// Where the next bytes read go.
    pub fn input(&mut self) -> &mut [u8] {
        if self.input.is_empty() {
            self.input = vec![0; MAX_HEAD_BYTES].into_boxed_slice();
        }
        if self.phase == Phase::Linger {
            // Lingering input is dropped unread.
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.head_checked = self.head_checked.min(self.end);
            self.start = 0;
        }
        &mut self.input[self.end..]
    }

    /// `n` bytes were read into [`Machine::input`] at `now`; `0` means the
    /// peer closed its side.
    pub fn received(&mut self, n: usize, now: Instant) {
        self.answered = false;
        if n == 0 {
            self.peer_closed = true;
            return;
        }
        match self.phase {
            Phase::Linger => self.lingered += n,
            Phase::Idle => {
                self.end += n;
                self.phase = Phase::Head;
                if !self.first {
                    self.deadline = now + self.timeouts.header;
                }
            }
            Phase::Head | Phase::Exchange | Phase::Closing => self.end += n,
        }
    }

    /// Bytes to send, produced by [`Machine::respond`],
    /// [`Machine::push_body`], [`Machine::end_body`] or a `100 Continue`.
    pub fn output(&self) -> &[u8] {
        &self.output[self.output_sent..]
    }

    /// The first `n` bytes of [`Machine::output`] were sent.
    pub fn sent(&mut self, n: usize) {
        self.output_sent += n;
        if self.output_sent == self.output.len() {
            self.output.clear();
            self.output_sent = 0;
        }
        if self.exchange.responded {
            self.exchange.bytes_sent += n as u64;
        }
    }

    /// The latest the rest of the request body may arrive by, at the
    /// minimum pace: after the grace, each second must have brought
    /// `min_rate` bytes on average. `None` before the body is asked for, or
    /// without a minimum.
    pub fn input_deadline(&self) -> Option<Instant> {
        let exchange = &self.exchange;
        self.paced(exchange.body_clock?, exchange.body_bytes)
    }

    /// The latest the rest of the answer may leave by, as for the body.
    pub fn output_deadline(&self) -> Option<Instant> {
        let exchange = &self.exchange;
        self.paced(exchange.response_clock?, exchange.bytes_sent)
    }

    fn paced(&self, since: Instant, bytes: u64) -> Option<Instant> {
        let rate = self.timeouts.min_rate;
        if rate == 0 {
            return None;
        }
        // Past any deadline an Instant can hold: no deadline at all.
        let earned = Duration::try_from_secs_f64(bytes as f64 / rate as f64).ok()?;
        since.checked_add(MIN_RATE_GRACE)?.checked_add(earned)
    }

    /// The pace a body or answer must keep, for the message of a refusal.
    pub fn min_rate(&self) -> u64 {
        self.timeouts.min_rate
    }

    /// Bytes of the answer sent so far, head included.
    pub fn response_bytes(&self) -> u64 {
        self.exchange.bytes_sent
    }

    /// What to do next, outside an exchange.
    pub fn poll(&mut self, now: Instant) -> Step {
        match self.phase {
            Phase::Idle | Phase::Head => self.poll_for_head(now),
            Phase::Closing => {
                self.phase = Phase::Linger;
                self.deadline = now + LINGER_TIMEOUT;
                Step::HalfClose
            }
            Phase::Linger => {
                if self.peer_closed || self.lingered > LINGER_LIMIT || now >= self.deadline {
                    Step::Close
                } else {
                    Step::Receive
                }
            }
            // Polled in the middle of an exchange: the socket layer lost
            // track of the request; nothing on this connection can be
            // trusted any more.
            Phase::Exchange => Step::Close,
        }
    }

    fn poll_for_head(&mut self, now: Instant) -> Step {
        if self.phase == Phase::Idle && self.shutting_down {
            return Step::Close;
        }
        // Once the peer has closed, what it sent is all there is: parse it
        // even without a line end, so that a broken head gets its `400`
        // however its bytes were cut (fuzzing found a head refused when it
        // arrived whole but dropped silently when its last line came alone).
        if self.head_may_be_ready() || (self.peer_closed && !self.buffered().is_empty()) {
            match parse_head(self.buffered()) {
                Ok(Some((head, len))) => {
                    self.start += len;
                    self.head_checked = 0;
                    self.begin_exchange(&head);
                    return Step::Dispatch(head);
                }
                Ok(None) => self.head_checked = self.buffered().len(),
                Err(error) => {
                    self.begin_rejection();
                    return Step::Reject(error);
                }
            }
        }
        if self.peer_closed {
            return Step::Close;
        }
        if now >= self.deadline {
            if self.phase == Phase::Head {
                self.begin_rejection();
                return Step::Reject(ApiError::new(
                    408,
                    "the request head did not arrive in time",
                ));
            }
            return Step::Close;
        }
        if std::mem::take(&mut self.answered) {
            return Step::Wait;
        }
        Step::Receive
    }

    /// Whether parsing the buffered head can give a new answer: a line
    /// ended since the last try, or the buffer is full (and gets `431`).
    fn head_may_be_ready(&self) -> bool {
        let buffered = self.buffered();
        buffered.len() == MAX_HEAD_BYTES
            || memchr::memchr(b'\n', &buffered[self.head_checked.min(buffered.len())..]).is_some()
    }

    fn begin_exchange(&mut self, head: &Head) {
        self.phase = Phase::Exchange;
        self.exchange = Exchange::new(
            head.version,
            head.method == "HEAD",
            head.keep_alive,
            head.framing,
        );
        self.exchange.continue_owed = head.expect_continue && !self.exchange.body.is_done();
    }

    /// An answer to a request that will not be served, after which the
    /// connection closes. A HEAD request is recognised even when its head
    /// did not parse, so that its answer has no body either.
    fn begin_rejection(&mut self) {
        let head_only = self.buffered().trim_ascii_start().starts_with(b"HEAD ");
        self.phase = Phase::Exchange;
        self.exchange = Exchange::new(Version::Http11, head_only, false, Framing::Empty);
    }

    /// Refuses a connection outright (the server is at its connection cap):
    /// answer with [`Machine::respond`], then close.
    pub fn refuse(&mut self) {
        self.begin_rejection();
    }

    /// Reads request body bytes into `out`, at `now`. Errors are the
    /// body's own (malformed framing, the peer gone mid-body); after one,
    /// the connection cannot carry another request.
    pub fn read_body(&mut self, out: &mut [u8], now: Instant) -> io::Result<BodyStep> {
        let exchange = &mut self.exchange;
        exchange.body_clock.get_or_insert(now);
        if exchange.continue_owed {
            exchange.continue_owed = false;
            self.output
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            return Ok(BodyStep::Send);
        }
        if exchange.body.is_done() || exchange.body.has_failed() {
            return Ok(BodyStep::End);
        }
        if out.is_empty() {
            return Ok(BodyStep::Data(0));
        }
        let progress = exchange
            .body
            .decode(&self.input[self.start..self.end], out)
            .map_err(io::Error::other)?;
        self.start += progress.consumed;
        exchange.body_bytes += progress.consumed as u64;
        if progress.produced > 0 {
            return Ok(BodyStep::Data(progress.produced));
        }
        if exchange.body.is_done() {
            return Ok(BodyStep::End);
        }
        if self.peer_closed {
            exchange.body.fail();
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of the request body",
            ));
        }
        Ok(BodyStep::Receive)
    }

    /// Whether the next body bytes may be read straight from the transport
    /// into the handler's buffer, at `now`: `Some(n)`, at most `n` bytes,
    /// when the body is a `Content-Length` one owing `n` more, nothing of
    /// it is buffered, and no `100 Continue` is owed. A large upload then
    /// costs one read per handler buffer, not one per input buffer, and
    /// no copy; reading no further than the length keeps a pipelined next
    /// request out of the handler's hands. Report the read with
    /// [`Machine::received_body`].
    pub fn direct_body(&mut self, now: Instant) -> Option<usize> {
        let exchange = &mut self.exchange;
        if exchange.continue_owed || self.start != self.end || self.peer_closed {
            return None;
        }
        let owed = exchange.body.length_remaining()?;
        exchange.body_clock.get_or_insert(now);
        Some(usize::try_from(owed).unwrap_or(usize::MAX))
    }

    /// `n` body bytes were read straight into the handler's buffer, as
    /// [`Machine::direct_body`] allowed; `0` means the peer closed its side
    /// (the next [`Machine::read_body`] says so).
    pub fn received_body(&mut self, n: usize) {
        if n == 0 {
            self.peer_closed = true;
            return;
        }
        self.exchange.body.consumed_directly(n as u64);
        self.exchange.body_bytes += n as u64;
    }

    /// Receiving failed in the middle of an exchange (a timeout, a reset):
    /// the body's framing is lost.
    pub fn input_failed(&mut self) {
        if !self.exchange.body.is_done() {
            self.exchange.body.fail();
        }
    }

    /// After the handler: drops what it left of the body, so that the next
    /// request can follow, as long as that is cheap. A remainder over
    /// [`DRAIN_LIMIT`] is cheaper to cut than to read; a body still owed a
    /// `100 Continue` was never sent.
    pub fn drain_body(&mut self, now: Instant) -> DrainStep {
        let exchange = &mut self.exchange;
        if exchange.body.is_done() {
            // The common case, before the scratch space costs anything.
            return DrainStep::Done;
        }
        exchange.body_clock.get_or_insert(now);
        let mut scratch = [0u8; 4096];
        loop {
            if exchange.body.is_done() {
                return DrainStep::Done;
            }
            if exchange.continue_owed || exchange.body.has_failed() || self.peer_closed {
                return DrainStep::GiveUp;
            }
            if exchange
                .body
                .length_remaining()
                .is_some_and(|left| exchange.drained.saturating_add(left) > DRAIN_LIMIT)
            {
                return DrainStep::GiveUp;
            }
            let Ok(progress) = exchange
                .body
                .decode(&self.input[self.start..self.end], &mut scratch)
            else {
                return DrainStep::GiveUp;
            };
            self.start += progress.consumed;
            exchange.body_bytes += progress.consumed as u64;
            exchange.drained += progress.produced as u64;
            if exchange.drained > DRAIN_LIMIT {
                return DrainStep::GiveUp;
            }
            if progress.consumed == 0 && !exchange.body.is_done() {
                return DrainStep::Receive;
            }
        }
    }

    /// Puts the answer's head in the output, at `now`, with the framing
    /// headers (`Content-Length` or `Transfer-Encoding`, `Connection`) the
    /// machine decides and `Date`, `Server` and `X-Request-Id`. `body_len`
    /// is the body's length when known. Returns whether body bytes follow:
    /// not for HEAD, `1xx`, `204` or `304`.
    pub fn respond(
        &mut self,
        status: u16,
        headers: &[(&'static str, Cow<'static, str>)],
        body_len: Option<u64>,
        request_id: &str,
        date: &str,
        now: Instant,
    ) -> bool {
        let exchange = &mut self.exchange;
        exchange.response_clock = Some(now);
        let with_body = has_body(status);
        // Without a length, HTTP/1.1 streams chunked; HTTP/1.0 has only the
        // end of the connection to mark the end of the body.
        let unknown_length = with_body && body_len.is_none();
        let chunked = unknown_length && exchange.version == Version::Http11;
        let close_delimited = unknown_length && exchange.version == Version::Http10;
        // The next request can follow only once this one's body is
        // consumed, and never while shutting down.
        exchange.keep_alive = exchange.keep_alive
            && exchange.body.is_done()
            && !self.shutting_down
            && !close_delimited;

        let out = &mut self.output;
        out.extend_from_slice(b"HTTP/1.1 ");
        let _ = write!(out, "{status} {}\r\n", reason_phrase(status));
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(date.as_bytes());
        out.extend_from_slice(
            concat!("\r\nServer: wren/", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes(),
        );
        for (name, value) in headers {
            // A value carrying CR or LF would let input split the response.
            if memchr::memchr2(b'\r', b'\n', value.as_bytes()).is_some() {
                continue;
            }
            put_header(out, name, value);
        }
        put_header(out, "X-Request-Id", request_id);
        if with_body {
            match body_len {
                Some(len) => {
                    let _ = write!(out, "Content-Length: {len}\r\n");
                }
                None if chunked && !exchange.head_only => {
                    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n")
                }
                None => {}
            }
        }
        if !exchange.keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if exchange.version == Version::Http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");

        exchange.responded = true;
        exchange.framing = match body_len {
            _ if !with_body || exchange.head_only => BodyFraming::Nothing,
            Some(len) => BodyFraming::Length { remaining: len },
            None if chunked => BodyFraming::Chunked,
            None => BodyFraming::UntilClose,
        };
        exchange.framing != BodyFraming::Nothing
    }

    /// Puts body bytes in the output, framed. Bytes past a declared length
    /// are dropped: the client was told the length.
    pub fn push_body(&mut self, data: &[u8]) {
        match &mut self.exchange.framing {
            BodyFraming::Nothing => {}
            BodyFraming::Length { remaining } => {
                let n = data
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                self.output.extend_from_slice(&data[..n]);
                *remaining -= n as u64;
            }
            BodyFraming::Chunked if data.is_empty() => {}
            BodyFraming::Chunked => {
                let _ = write!(self.output, "{:x}\r\n", data.len());
                self.output.extend_from_slice(data);
                self.output.extend_from_slice(b"\r\n");
            }
            BodyFraming::UntilClose => self.output.extend_from_slice(data),
        }
    }

    /// Whether the next answer body bytes may go straight from the
    /// handler's buffer to the transport: `Some(n)`, at most `n` bytes, when
    /// the body has a declared length still owing `n` bytes and nothing
    /// else waits in [`Machine::output`] (the head and what was pushed are
    /// sent). A large download then costs no copy into the output. Report
    /// what was written with [`Machine::sent_body`].
    pub fn direct_answer(&self) -> Option<usize> {
        match self.exchange.framing {
            BodyFraming::Length { remaining } if self.output().is_empty() => {
                Some(usize::try_from(remaining).unwrap_or(usize::MAX))
            }
            _ => None,
        }
    }

    /// `n` answer body bytes were written straight to the transport, as
    /// [`Machine::direct_answer`] allowed.
    pub fn sent_body(&mut self, n: usize) {
        if let BodyFraming::Length { remaining } = &mut self.exchange.framing {
            *remaining -= (n as u64).min(*remaining);
        }
        self.exchange.bytes_sent += n as u64;
    }

    /// Ends the body: the last chunk for a chunked body. Returns whether
    /// the body was whole; a body shorter than its declared length leaves
    /// the framing broken, so the connection closes.
    pub fn end_body(&mut self) -> bool {
        let whole = match self.exchange.framing {
            BodyFraming::Chunked => {
                self.output.extend_from_slice(b"0\r\n\r\n");
                true
            }
            BodyFraming::Length { remaining } => remaining == 0,
            BodyFraming::Nothing | BodyFraming::UntilClose => true,
        };
        self.exchange.framing = BodyFraming::Nothing;
        if !whole {
            self.exchange.keep_alive = false;
        }
        whole
    }

    /// The exchange is over at `now`; `sent_whole` says whether every byte
    /// of the answer went out. The connection then waits for the next
    /// request (already there when pipelined), or closes.
    pub fn finish(&mut self, now: Instant, sent_whole: bool) {
        self.output.clear();
        self.output_sent = 0;
        if self.output.capacity() > OUTPUT_KEPT {
            self.output = Vec::with_capacity(512);
        }
        if self.exchange.keep_alive && sent_whole {
            self.first = false;
            if self.buffered().is_empty() {
                self.phase = Phase::Idle;
                self.deadline = now + self.timeouts.keep_alive;
                self.answered = true;
            } else {
                self.phase = Phase::Head;
                self.deadline = now + self.timeouts.header;
            }
        } else {
            self.phase = Phase::Closing;
        }
    }
}

/// Appends `name: value` CRLF; plain copies, as `write!`'s formatting
/// machinery costs more than the bytes on this per-response path.
fn put_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;

//! The connection machine fed bytes and a fake clock, checked byte for byte.

use super::*;

const DATE: &str = "Tue, 01 Dec 2026 04:00:00 GMT";
const SERVER: &str = concat!("Server: wren/", env!("CARGO_PKG_VERSION"));
const TIMEOUTS: Timeouts = Timeouts {
    header: Duration::from_secs(10),
    keep_alive: Duration::from_secs(5),
    min_rate: 512,
};

/// A machine, the time it lives in, and everything it has sent.
struct Wire {
    machine: Machine,
    now: Instant,
    sent: Vec<u8>,
}

impl Wire {
    fn new() -> Self {
        let now = Instant::now();
        Wire {
            machine: Machine::new(now, TIMEOUTS),
            now,
            sent: Vec::new(),
        }
    }

    /// A machine that has dispatched `request` (a whole head, and perhaps
    /// some of its body).
    fn serving(request: &[u8]) -> Self {
        let mut wire = Wire::new();
        wire.feed(request);
        wire.dispatch();
        wire
    }

    /// A machine in the middle of a `GET /status`, ready to answer it.
    fn answering_get() -> Self {
        let mut wire = Wire::serving(GET);
        assert_eq!(wire.machine.drain_body(wire.now), DrainStep::Done);
        wire
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// The client sends `bytes` (as many reads as the buffer needs).
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = self.machine.input();
            assert!(!room.is_empty(), "no room for input");
            let n = room.len().min(bytes.len());
            room[..n].copy_from_slice(&bytes[..n]);
            self.machine.received(n, self.now);
            bytes = &bytes[n..];
        }
    }

    fn poll(&mut self) -> Step {
        self.machine.poll(self.now)
    }

    /// Moves what the machine produced onto the wire.
    fn send(&mut self) {
        let n = self.machine.output().len();
        self.sent.extend_from_slice(self.machine.output());
        self.machine.sent(n);
    }

    /// The next request; fails on any other step.
    fn dispatch(&mut self) -> Head {
        match self.poll() {
            Step::Dispatch(head) => head,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// The next refusal's status.
    fn reject(&mut self) -> u16 {
        match self.poll() {
            Step::Reject(error) => error.status(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// Reads body bytes until the body ends or input runs out, sending a
    /// `100 Continue` when the machine asks to.
    fn read_body(&mut self) -> io::Result<(Vec<u8>, bool)> {
        let mut body = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            match self.machine.read_body(&mut buf, self.now)? {
                BodyStep::Data(n) => body.extend_from_slice(&buf[..n]),
                BodyStep::End => return Ok((body, true)),
                BodyStep::Receive => return Ok((body, false)),
                BodyStep::Send => self.send(),
            }
        }
    }

    /// Answers the current exchange as the socket layer does: drain, head,
    /// body, finish. `body: None` answers with an unknown length.
    fn answer(&mut self, status: u16, body: Option<&[u8]>) {
        assert_eq!(self.machine.drain_body(self.now), DrainStep::Done);
        self.answer_undrained(status, body);
    }

    fn answer_undrained(&mut self, status: u16, body: Option<&[u8]>) {
        let headers = [("Content-Type", Cow::Borrowed("text/plain"))];
        let len = body.map(|b| b.len() as u64);
        if self
            .machine
            .respond(status, &headers, len, "id", DATE, self.now)
        {
            self.machine.push_body(body.unwrap_or(b"streamed"));
            assert!(self.machine.end_body());
        }
        self.send();
        self.machine.finish(self.now, true);
    }

    fn take_sent(&mut self) -> String {
        String::from_utf8(std::mem::take(&mut self.sent)).unwrap()
    }
}

/// The exact bytes of an answer with wren's fixed headers.
fn answer(status_line: &str, framing: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status_line}\r\nDate: {DATE}\r\n{SERVER}\r\nContent-Type: text/plain\r\nX-Request-Id: id\r\n{framing}\r\n{body}"
    )
}

const GET: &[u8] = b"GET /status HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn a_request_is_answered_and_the_connection_kept() {
    let mut wire = Wire::new();
    assert!(matches!(wire.poll(), Step::Receive));
    wire.feed(GET);
    let head = wire.dispatch();
    assert_eq!(
        (head.method.as_str(), head.target.as_str()),
        ("GET", "/status")
    );
    wire.answer(200, Some(b"Alive!"));
    assert_eq!(
        wire.take_sent(),
        answer("200 OK", "Content-Length: 6\r\n", "Alive!")
    );
    // Nothing can follow before the client reads the answer: wait for the
    // socket to be readable rather than try a read that finds nothing.
    assert!(matches!(wire.poll(), Step::Wait));
    assert_eq!(wire.machine.deadline(), wire.now + TIMEOUTS.keep_alive);
    // Woken up: now read.
    assert!(matches!(wire.poll(), Step::Receive));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut wire = Wire::new();
    wire.feed(
        b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nfirst\
          POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nsecond\r\n0\r\n\r\n\
          GET /d HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let mut expected = String::new();
    for (target, body) in [("/a", ""), ("/b", "first"), ("/c", "second"), ("/d", "")] {
        let head = wire.dispatch();
        assert_eq!(head.target, target);
        let (read, ended) = wire.read_body().unwrap();
        assert!(ended);
        assert_eq!(read, body.as_bytes());
        let reply = format!("{target} {body}");
        wire.answer(200, Some(reply.as_bytes()));
        expected += &answer(
            "200 OK",
            &format!("Content-Length: {}\r\n", reply.len()),
            &reply,
        );
    }
    assert_eq!(wire.take_sent(), expected);
    assert!(matches!(wire.poll(), Step::Wait));
}

#[test]
fn a_head_split_across_reads_waits_then_parses_once_whole() {
    let mut wire = Wire::new();
    for byte in &GET[..GET.len() - 1] {
        wire.feed(&[*byte]);
        assert!(matches!(wire.poll(), Step::Receive));
    }
    wire.feed(b"\n");
    assert_eq!(wire.dispatch().target, "/status");
}

#[test]
fn keep_alive_follows_the_version_and_connection() {
    let cases: [(&[u8], &str, bool); 4] = [
        (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", "", true),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            "Connection: close\r\n",
            false,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", "Connection: close\r\n", false),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "Connection: keep-alive\r\n",
            true,
        ),
    ];
    for (request, connection, kept) in cases {
        let mut wire = Wire::serving(request);
        wire.answer(200, Some(b"ok"));
        assert_eq!(
            wire.take_sent(),
            answer(
                "200 OK",
                &format!("Content-Length: 2\r\n{connection}"),
                "ok"
            ),
            "{}",
            String::from_utf8_lossy(request)
        );
        let next = wire.poll();
        if kept {
            assert!(matches!(next, Step::Wait), "{next:?}");
        } else {
            assert!(matches!(next, Step::HalfClose), "{next:?}");
        }
    }
}

#[test]
fn idle_connections_close_quietly_at_the_keep_alive_deadline() {
    let mut wire = Wire::serving(GET);
    wire.answer(200, Some(b"ok"));
    wire.take_sent();
    wire.advance(TIMEOUTS.keep_alive - Duration::from_millis(1));
    assert!(matches!(wire.poll(), Step::Wait));
    wire.advance(Duration::from_millis(1));
    assert!(matches!(wire.poll(), Step::Close));
    assert!(wire.machine.output().is_empty());
}

#[test]
fn a_slow_head_gets_408_and_a_lingering_close() {
    let mut wire = Wire::new();
    wire.feed(b"GET /status HTTP/1.1\r\nHo");
    wire.advance(TIMEOUTS.header - Duration::from_millis(1));
    assert!(matches!(wire.poll(), Step::Receive));
    wire.advance(Duration::from_millis(1));
    assert_eq!(wire.reject(), 408);
    wire.answer(408, Some(b"late"));
    assert_eq!(
        wire.take_sent(),
        answer(
            "408 Request Timeout",
            "Content-Length: 4\r\nConnection: close\r\n",
            "late"
        )
    );
    assert!(matches!(wire.poll(), Step::HalfClose));
    assert!(wire.machine.is_lingering());
    assert_eq!(wire.machine.deadline(), wire.now + LINGER_TIMEOUT);
    // What still arrives is dropped, and never becomes a request.
    wire.feed(GET);
    assert!(matches!(wire.poll(), Step::Receive));
    wire.advance(LINGER_TIMEOUT);
    assert!(matches!(wire.poll(), Step::Close));
}

#[test]
fn the_first_head_deadline_runs_from_the_accept_later_ones_from_their_first_byte() {
    let mut wire = Wire::new();
    wire.advance(Duration::from_secs(9));
    wire.feed(b"GET / HTTP/1.1\r\n");
    wire.advance(Duration::from_secs(1));
    assert_eq!(wire.reject(), 408);

    let mut wire = Wire::serving(GET);
    wire.answer(200, Some(b"ok"));
    wire.advance(Duration::from_secs(4));
    wire.feed(b"GET / HTTP/1.1\r\n");
    assert_eq!(wire.machine.deadline(), wire.now + TIMEOUTS.header);
    wire.advance(TIMEOUTS.header - Duration::from_millis(1));
    assert!(matches!(wire.poll(), Step::Receive));
    wire.advance(Duration::from_millis(1));
    assert_eq!(wire.reject(), 408);
}

#[test]
fn a_client_that_connects_and_sends_nothing_is_closed_quietly() {
    let mut wire = Wire::new();
    wire.advance(TIMEOUTS.header);
    assert!(matches!(wire.poll(), Step::Close));
    assert!(wire.machine.output().is_empty());
}

#[test]
fn continue_is_sent_only_when_the_body_is_read() {
    let request =
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    let mut wire = Wire::serving(request);
    assert!(wire.machine.output().is_empty());
    let (body, ended) = wire.read_body().unwrap();
    assert_eq!((body.as_slice(), ended), (&b""[..], false));
    assert_eq!(wire.take_sent(), "HTTP/1.1 100 Continue\r\n\r\n");
    wire.feed(b"hello");
    let (body, ended) = wire.read_body().unwrap();
    assert_eq!((body.as_slice(), ended), (&b"hello"[..], true));
    assert!(
        wire.machine.output().is_empty(),
        "100 Continue went out twice"
    );
    wire.answer(200, Some(b"hello"));
    assert_eq!(
        wire.take_sent(),
        answer("200 OK", "Content-Length: 5\r\n", "hello")
    );
    assert!(matches!(wire.poll(), Step::Wait));

    // Refused without reading: the final status, no 100, and the body that
    // was never sent cannot be skipped, so the connection closes.
    let mut wire = Wire::serving(request);
    assert_eq!(wire.machine.drain_body(wire.now), DrainStep::GiveUp);
    wire.answer_undrained(413, Some(b"big"));
    assert_eq!(
        wire.take_sent(),
        answer(
            "413 Content Too Large",
            "Content-Length: 3\r\nConnection: close\r\n",
            "big"
        )
    );
    assert!(matches!(wire.poll(), Step::HalfClose));
}

#[test]
fn continue_is_not_owed_for_an_empty_body_or_http10() {
    for request in [
        &b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n"[..],
        b"POST / HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi",
    ] {
        let mut wire = Wire::serving(request);
        wire.read_body().unwrap();
        assert_eq!(wire.take_sent(), "");
    }
}

#[test]
fn head_answers_never_carry_a_body() {
    let mut wire = Wire::serving(b"HEAD /status HTTP/1.1\r\nHost: t\r\n\r\n");
    wire.answer(200, Some(b"Alive!"));
    assert_eq!(
        wire.take_sent(),
        answer("200 OK", "Content-Length: 6\r\n", "")
    );
    // A streamed answer of unknown length: no framing header, no body, and
    // the connection stays in step.
    wire.feed(b"HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    wire.dispatch();
    wire.answer(200, None);
    assert_eq!(wire.take_sent(), answer("200 OK", "", ""));
    assert!(matches!(wire.poll(), Step::Wait));
}

#[test]
fn head_requests_refused_while_parsing_get_no_body_either() {
    for (request, status) in [
        (&b"HEAD / HTTP/1.1\r\n\r\n"[..], 400),
        (b"HEAD / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (
            b"HEAD / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
        ),
        (
            b"HEAD / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: x, chunked\r\n\r\n",
            501,
        ),
        (b"\r\nHEAD /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ] {
        let mut wire = Wire::new();
        wire.feed(request);
        assert_eq!(wire.reject(), status);
        wire.answer(status, Some(b"{\"error\": \"...\"}"));
        let sent = wire.take_sent();
        assert!(
            sent.ends_with("Content-Length: 16\r\nConnection: close\r\n\r\n"),
            "{sent}"
        );
    }
    let long = format!("HEAD /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD_BYTES));
    let mut wire = Wire::new();
    wire.feed(&long.as_bytes()[..MAX_HEAD_BYTES]);
    assert_eq!(wire.reject(), 414);
    wire.answer(414, Some(b"long"));
    assert!(wire.take_sent().ends_with("Connection: close\r\n\r\n"));
}

#[test]
fn chunked_answers_are_framed_and_http10_ones_end_with_the_connection() {
    let mut wire = Wire::answering_get();
    assert!(wire.machine.respond(200, &[], None, "id", DATE, wire.now));
    for piece in [&b"hello"[..], b"", b" world"] {
        wire.machine.push_body(piece);
    }
    assert!(wire.machine.end_body());
    wire.send();
    wire.machine.finish(wire.now, true);
    assert_eq!(
        wire.take_sent(),
        format!(
            "HTTP/1.1 200 OK\r\nDate: {DATE}\r\n{SERVER}\r\nX-Request-Id: id\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
    );
    assert!(matches!(wire.poll(), Step::Wait));

    let mut wire = Wire::serving(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    wire.answer(200, None);
    assert_eq!(
        wire.take_sent(),
        answer("200 OK", "Connection: close\r\n", "streamed")
    );
    assert!(matches!(wire.poll(), Step::HalfClose));
}

#[test]
fn a_streamed_body_short_of_its_length_closes_the_connection() {
    let mut wire = Wire::answering_get();
    assert!(
        wire.machine
            .respond(200, &[], Some(10), "id", DATE, wire.now)
    );
    wire.machine.push_body(b"12345");
    assert!(!wire.machine.end_body());
    wire.send();
    wire.machine.finish(wire.now, true);
    assert!(matches!(wire.poll(), Step::HalfClose));
    // And bytes past a declared length never go out.
    let mut wire = Wire::answering_get();
    wire.machine
        .respond(200, &[], Some(2), "id", DATE, wire.now);
    wire.machine.push_body(b"12345");
    assert!(wire.machine.end_body());
    wire.send();
    assert!(wire.take_sent().ends_with("\r\n\r\n12"));
}

#[test]
fn bodiless_statuses_send_no_length_and_no_body() {
    let mut wire = Wire::answering_get();
    assert!(
        !wire
            .machine
            .respond(304, &[], Some(0), "id", DATE, wire.now)
    );
    wire.send();
    assert_eq!(
        wire.take_sent(),
        format!(
            "HTTP/1.1 304 Not Modified\r\nDate: {DATE}\r\n{SERVER}\r\nX-Request-Id: id\r\n\r\n"
        )
    );
}

#[test]
fn header_values_that_would_split_the_answer_are_dropped() {
    let mut wire = Wire::answering_get();
    let headers = [
        ("X-Bad", Cow::Borrowed("a\r\nSet-Cookie: evil")),
        ("X-Good", Cow::Borrowed("fine")),
    ];
    wire.machine
        .respond(204, &headers, Some(0), "id", DATE, wire.now);
    wire.send();
    let sent = wire.take_sent();
    assert!(!sent.contains("evil"), "{sent}");
    assert!(sent.contains("X-Good: fine\r\n"));
}

#[test]
fn a_lone_cr_or_lf_anywhere_in_a_value_drops_it() {
    let mut wire = Wire::answering_get();
    // Values past 32 bytes are searched a vector at a time.
    let long = "v".repeat(70);
    let headers = [
        ("X-Lf", Cow::Borrowed("a\nSet-Cookie: evil")),
        ("X-Cr", Cow::Borrowed("evil\r")),
        ("X-Long-Lf", Cow::Owned(format!("{long}\nSet-Cookie: evil"))),
        ("X-Long-Cr", Cow::Owned(format!("{long}{long}evil\r"))),
        ("X-Long-Good", Cow::Owned(long.clone())),
    ];
    wire.machine
        .respond(204, &headers, Some(0), "id", DATE, wire.now);
    wire.send();
    let sent = wire.take_sent();
    assert!(!sent.contains("evil"), "{sent}");
    assert!(sent.contains(&format!("X-Long-Good: {long}\r\n")), "{sent}");
}

#[test]
fn every_framing_refusal_closes_with_its_status() {
    let many: String = (0..=crate::http::limits::MAX_HEADERS)
        .map(|i| format!("X-{i}: v\r\n"))
        .collect();
    let cases: Vec<(String, u16)> = vec![
        ("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".into(), 400),
        ("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n".into(), 400),
        ("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n".into(), 400),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".into(), 400),
        ("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n".into(), 400),
        ("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n".into(), 400),
        ("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: \r\n\r\n".into(), 400),
        ("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into(), 501),
        ("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n".into(), 501),
        ("POST / HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\n\r\n".into(), 417),
        ("GET / HTTP/1.1\r\n\r\n".into(), 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), 400),
        (format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n"), 431),
        (format!("GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD_BYTES)), 431),
        (format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD_BYTES)), 414),
        ("GET / HTTP/2.0\r\nHost: t\r\n\r\n".into(), 505),
        ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into(), 505),
        ("G\x01T / HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        ("\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03\n".into(), 400),
    ];
    for (request, status) in cases {
        let mut wire = Wire::new();
        // A valid request follows (when there is room): it must never be
        // served.
        let mut bytes = request.clone().into_bytes();
        if bytes.len() + GET.len() <= MAX_HEAD_BYTES {
            bytes.extend_from_slice(GET);
        } else {
            bytes.truncate(MAX_HEAD_BYTES);
        }
        wire.feed(&bytes);
        assert_eq!(
            wire.reject(),
            status,
            "{:?}",
            crate::text::excerpt(&request, 80)
        );
        wire.answer(status, Some(b"no"));
        assert!(wire.take_sent().ends_with("Connection: close\r\n\r\nno"));
        assert!(matches!(wire.poll(), Step::HalfClose));
        assert!(matches!(wire.poll(), Step::Receive));
        wire.advance(LINGER_TIMEOUT);
        assert!(matches!(wire.poll(), Step::Close));
    }
}

#[test]
fn the_fuzzer_findings_get_the_status_the_rfcs_call_for() {
    // Malformed request lines are 400 (RFC 9112 §3), not 505.
    for line in [
        &b"T s \n\r\n"[..],
        b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTQ/1.1\r\nHost: t\r\n\r\n",
        b"GET / http/1.1\r\nHost: t\r\n\r\n",
    ] {
        let mut wire = Wire::new();
        wire.feed(line);
        assert_eq!(wire.reject(), 400, "{}", String::from_utf8_lossy(line));
    }
    // A higher 1.x minor version is served as HTTP/1.1 (RFC 9110 §2.5).
    let mut wire = Wire::new();
    wire.feed(b"GET /status HTTP/1.2\r\nHost: t\r\n\r\n");
    assert_eq!(wire.dispatch().target, "/status");
    wire.answer(200, Some(b"ok"));
    assert_eq!(
        wire.take_sent(),
        answer("200 OK", "Content-Length: 2\r\n", "ok")
    );
    assert!(matches!(wire.poll(), Step::Wait));
    // An empty Transfer-Encoding, or chunked not last: 400 (RFC 9112 §6.3).
    for te in ["", " , ", "chunked, identity"] {
        let mut wire = Wire::new();
        wire.feed(
            format!("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: {te}\r\n\r\n").as_bytes(),
        );
        assert_eq!(wire.reject(), 400, "{te:?}");
    }
}

#[test]
fn a_framing_error_in_the_body_ends_in_a_lingering_close() {
    let mut wire = Wire::new();
    wire.feed(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n");
    wire.feed(GET);
    wire.dispatch();
    let error = wire.read_body().unwrap_err();
    assert_eq!(ApiError::from_body_read(error).status(), 400);
    assert_eq!(wire.machine.drain_body(wire.now), DrainStep::GiveUp);
    wire.answer_undrained(400, Some(b"bad"));
    assert!(wire.take_sent().ends_with("Connection: close\r\n\r\nbad"));
    assert!(matches!(wire.poll(), Step::HalfClose));
    // The linger reads and drops up to its limit, then gives up.
    let junk = vec![b'x'; 4096];
    for _ in 0..=LINGER_LIMIT / junk.len() {
        assert!(matches!(wire.poll(), Step::Receive));
        wire.feed(&junk);
    }
    assert!(matches!(wire.poll(), Step::Close));
    // A peer that closes ends the linger at once.
    let mut wire = Wire::new();
    wire.feed(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n");
    wire.reject();
    wire.answer(505, Some(b"no"));
    assert!(matches!(wire.poll(), Step::HalfClose));
    wire.machine.received(0, wire.now);
    assert!(matches!(wire.poll(), Step::Close));
}

#[test]
fn a_body_in_any_split_reads_the_same() {
    let request = b"POST /e HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: v\r\n\r\n";
    let head_len = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    for split in 1..=8 {
        let mut wire = Wire::serving(&request[..head_len]);
        let mut body = Vec::new();
        for piece in request[head_len..].chunks(split) {
            wire.feed(piece);
            let (read, _) = wire.read_body().unwrap();
            body.extend(read);
        }
        assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.", "split {split}");
        assert_eq!(wire.machine.drain_body(wire.now), DrainStep::Done);
    }
}

#[test]
fn unread_small_bodies_are_drained_and_large_ones_close() {
    let mut wire = Wire::serving(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123");
    assert_eq!(wire.machine.drain_body(wire.now), DrainStep::Receive);
    wire.feed(b"456789");
    wire.feed(GET);
    wire.answer(200, Some(b"ok"));
    assert!(!wire.take_sent().contains("Connection: close"));
    assert_eq!(wire.dispatch().target, "/status");

    let mut wire = Wire::new();
    let big = DRAIN_LIMIT + 1;
    wire.feed(format!("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {big}\r\n\r\n").as_bytes());
    wire.dispatch();
    assert_eq!(wire.machine.drain_body(wire.now), DrainStep::GiveUp);
    wire.answer_undrained(413, Some(b"no"));
    assert!(wire.take_sent().contains("Connection: close"));
    assert!(matches!(wire.poll(), Step::HalfClose));

    // Chunked: counted as it is dropped.
    let mut wire =
        Wire::serving(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = format!("{:x}\r\n{}\r\n", 8192, "y".repeat(8192));
    let mut step = wire.machine.drain_body(wire.now);
    while step == DrainStep::Receive {
        wire.feed(chunk.as_bytes());
        step = wire.machine.drain_body(wire.now);
    }
    assert_eq!(step, DrainStep::GiveUp);
}

#[test]
fn a_peer_gone_mid_body_is_an_early_end() {
    let mut wire = Wire::serving(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhel");
    assert_eq!(wire.read_body().unwrap(), (b"hel".to_vec(), false));
    wire.machine.received(0, wire.now);
    let error = wire.read_body().unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(wire.machine.drain_body(wire.now), DrainStep::GiveUp);
}

#[test]
fn a_failed_receive_loses_the_framing() {
    let mut wire = Wire::serving(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n");
    wire.machine.input_failed();
    assert_eq!(wire.machine.drain_body(wire.now), DrainStep::GiveUp);
    wire.answer_undrained(408, Some(b"slow"));
    assert!(wire.take_sent().contains("Connection: close"));
}

#[test]
fn shutting_down_closes_idle_connections_and_ends_exchanges_with_close() {
    let mut wire = Wire::new();
    wire.machine.begin_shutdown();
    assert!(matches!(wire.poll(), Step::Close));

    let mut wire = Wire::serving(GET);
    wire.machine.begin_shutdown();
    wire.answer(200, Some(b"ok"));
    assert!(wire.take_sent().contains("Connection: close"));
    assert!(matches!(wire.poll(), Step::HalfClose));
}

#[test]
fn a_refused_connection_gets_its_answer_and_closes() {
    let mut wire = Wire::new();
    wire.machine.refuse();
    wire.answer(503, Some(b"full"));
    assert_eq!(
        wire.take_sent(),
        answer(
            "503 Service Unavailable",
            "Content-Length: 4\r\nConnection: close\r\n",
            "full"
        )
    );
    assert!(matches!(wire.poll(), Step::HalfClose));
}

#[test]
fn only_the_answer_is_counted_for_the_log() {
    let mut wire = Wire::serving(
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    );
    wire.read_body().unwrap();
    wire.feed(b"hi");
    wire.read_body().unwrap();
    let interim = wire.take_sent().len();
    assert_eq!(interim, 25);
    wire.answer(200, Some(b"ok"));
    let sent = wire.take_sent();
    assert_eq!(wire.machine.response_bytes(), sent.len() as u64);
}

#[test]
fn a_body_must_keep_the_minimum_pace_after_the_grace() {
    let mut wire = Wire::serving(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    // The clock starts when the handler first asks for the body.
    assert_eq!(wire.machine.input_deadline(), None);
    wire.advance(Duration::from_secs(3));
    let asked = wire.now;
    wire.read_body().unwrap();
    assert_eq!(wire.machine.input_deadline(), Some(asked + MIN_RATE_GRACE));
    // Each 512 bytes buys one more second.
    wire.feed(&[b'x'; 1024]);
    wire.read_body().unwrap();
    assert_eq!(
        wire.machine.input_deadline(),
        Some(asked + MIN_RATE_GRACE + Duration::from_secs(2))
    );
}

#[test]
fn an_answer_must_keep_the_minimum_pace_from_its_head() {
    let mut wire = Wire::answering_get();
    assert_eq!(wire.machine.output_deadline(), None);
    wire.advance(Duration::from_secs(7));
    let started = wire.now;
    wire.machine
        .respond(200, &[], Some(4096), "id", DATE, wire.now);
    assert_eq!(
        wire.machine.output_deadline(),
        Some(started + MIN_RATE_GRACE)
    );
    wire.machine.push_body(&[b'y'; 4096]);
    let head = wire.machine.output().len() - 4096;
    wire.machine.sent(head + 512);
    assert_eq!(
        wire.machine.output_deadline(),
        Some(started + MIN_RATE_GRACE + Duration::from_secs_f64((head + 512) as f64 / 512.0))
    );
    // What is left to send is what was not sent.
    assert_eq!(wire.machine.output().len(), 4096 - 512);
}

#[test]
fn no_minimum_pace_means_no_pace_deadlines() {
    let mut wire = Wire {
        machine: Machine::new(
            Instant::now(),
            Timeouts {
                min_rate: 0,
                ..TIMEOUTS
            },
        ),
        now: Instant::now(),
        sent: Vec::new(),
    };
    wire.feed(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n");
    wire.dispatch();
    wire.read_body().unwrap();
    assert_eq!(wire.machine.input_deadline(), None);
    wire.feed(b"hello");
    wire.answer(200, Some(b"ok"));
    assert_eq!(wire.machine.output_deadline(), None);
}

#[test]
fn the_input_buffer_is_taken_only_by_a_first_read() {
    let mut wire = Wire::new();
    wire.machine.refuse();
    wire.answer(503, Some(b"full"));
    assert!(wire.machine.input.is_empty(), "a refusal read nothing");
    let mut wire = Wire::new();
    assert!(matches!(wire.poll(), Step::Receive));
    assert!(wire.machine.input.is_empty());
    wire.feed(GET);
    assert_eq!(wire.machine.input.len(), MAX_HEAD_BYTES);
    assert_eq!(wire.dispatch().target, "/status");
}

#[test]
fn a_broken_head_cut_short_by_the_close_is_still_refused() {
    // The bytes after the only line end arrive alone and no line end
    // follows: once the peer has closed, they are parsed all the same, as
    // they are when the whole head arrives in one read.
    let mut wire = Wire::new();
    wire.feed(b"\r\nEx");
    assert!(matches!(wire.poll(), Step::Receive));
    wire.feed(b"pect: 1 PRI * H\xa8");
    assert!(matches!(wire.poll(), Step::Receive));
    wire.machine.received(0, wire.now);
    assert_eq!(wire.reject(), 400);
    // A head merely incomplete at the close is dropped without an answer.
    let mut wire = Wire::new();
    wire.feed(b"GET /status HTTP/1.1\r\nHo");
    assert!(matches!(wire.poll(), Step::Receive));
    wire.machine.received(0, wire.now);
    assert!(matches!(wire.poll(), Step::Close));
}

#[test]
fn a_length_body_read_straight_from_the_wire_stops_at_its_end() {
    let mut wire = Wire::serving(b"PUT /f HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n");
    // Nothing of the body is buffered: the handler may read it directly,
    // at most the 10 bytes owed.
    assert_eq!(wire.machine.direct_body(wire.now), Some(10));
    wire.machine.received_body(6);
    assert_eq!(wire.machine.direct_body(wire.now), Some(4));
    wire.machine.received_body(4);
    assert_eq!(wire.machine.direct_body(wire.now), None);
    assert_eq!(wire.read_body().unwrap(), (Vec::new(), true));
    wire.answer(200, Some(b"ok"));
    // The next request is read as usual.
    wire.feed(GET);
    assert_eq!(wire.dispatch().target, "/status");
}

#[test]
fn buffered_body_bytes_and_owed_continues_come_first() {
    // Part of the body arrived with the head: it is decoded from the
    // buffer before any direct read.
    let mut wire = Wire::serving(b"PUT /f HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    assert_eq!(wire.machine.direct_body(wire.now), None);
    assert_eq!(wire.read_body().unwrap(), (b"abc".to_vec(), false));
    assert_eq!(wire.machine.direct_body(wire.now), Some(7));
    // A chunked body is never read directly.
    let mut wire =
        Wire::serving(b"PUT /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(wire.machine.direct_body(wire.now), None);
    // Nor one still owed its 100 Continue.
    let mut wire = Wire::serving(
        b"PUT /f HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    assert_eq!(wire.machine.direct_body(wire.now), None);
    assert_eq!(wire.read_body().unwrap(), (Vec::new(), false));
    assert_eq!(wire.machine.direct_body(wire.now), Some(5));
    // A peer gone mid-body fails the body.
    wire.machine.received_body(0);
    assert_eq!(wire.machine.direct_body(wire.now), None);
    assert!(wire.read_body().is_err());
}

#[test]
fn an_answer_body_goes_straight_out_once_the_head_is_sent() {
    let mut wire = Wire::answering_get();
    let headers = [("Content-Type", Cow::Borrowed("text/plain"))];
    assert!(
        wire.machine
            .respond(200, &headers, Some(10), "id", DATE, wire.now)
    );
    // The head waits in the output: the first bytes are pushed behind it.
    assert_eq!(wire.machine.direct_answer(), None);
    wire.machine.push_body(b"0123");
    wire.send();
    assert_eq!(wire.machine.direct_answer(), Some(6));
    wire.machine.sent_body(6);
    assert_eq!(wire.machine.direct_answer(), Some(0));
    assert!(wire.machine.end_body(), "all 10 bytes were sent");
    assert_eq!(wire.machine.response_bytes(), wire.sent.len() as u64 + 6);
    wire.machine.finish(wire.now, true);
    assert!(matches!(wire.poll(), Step::Wait), "the connection is kept");

    // A body of unknown length is framed by the machine: never direct.
    let mut wire = Wire::answering_get();
    assert!(
        wire.machine
            .respond(200, &headers, None, "id", DATE, wire.now)
    );
    wire.send();
    assert_eq!(wire.machine.direct_answer(), None);
}

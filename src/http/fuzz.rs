//! Fuzzing entry points for the engine's parsers and its connection
//! machine (`cargo fuzz`, see `fuzz/README.md`), compiled only for the
//! fuzzer (`cfg(fuzzing)`) and for tests, which replay the committed corpus
//! and every crash found so far through the same functions.
//!
//! Each function takes arbitrary bytes and panics only when an invariant
//! breaks; beyond "does not panic or hang" they check what holds for any
//! input: a body or a connection fed in any split reads exactly as it does
//! fed whole, and a head that parsed, written out again, parses to the same
//! head.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection};

use super::decode::Decoder;
use super::head::{Framing, Head, Version, parse_head};
use super::machine::{BodyStep, DrainStep, Machine, Step, Timeouts};
use super::multipart::{self, Multipart};
use super::percent::{escapes_are_well_formed, percent_decode};
use super::tls::{Certificates, load_pem, server_config};

/// The most machine steps one input may take: far above what any input
/// within the fuzzer's length needs, so reaching it means a loop.
const MAX_STEPS: usize = 100_000;

const TIMEOUTS: Timeouts = Timeouts {
    header: Duration::from_secs(10),
    keep_alive: Duration::from_secs(5),
    min_rate: 512,
};

/// Split sizes from the input's first bytes, and the bytes left to feed.
/// Each size is 1 to 256 bytes, used in turn, so that the same input
/// arrives cut at many places.
fn split_plan(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&count, rest)) = data.split_first() else {
        return (vec![usize::MAX], data);
    };
    let count = usize::from(count % 8) + 1;
    let (sizes, rest) = rest.split_at(count.min(rest.len()));
    let mut sizes: Vec<usize> = sizes.iter().map(|&b| usize::from(b) + 1).collect();
    if sizes.is_empty() {
        sizes.push(1);
    }
    (sizes, rest)
}

/// Bytes handed out in pieces of the planned sizes, in turn.
struct Pieces<'a> {
    bytes: &'a [u8],
    sizes: &'a [usize],
    next: usize,
}

impl<'a> Pieces<'a> {
    fn new(bytes: &'a [u8], sizes: &'a [usize]) -> Self {
        Pieces {
            bytes,
            sizes,
            next: 0,
        }
    }

    /// The next piece, at most `room` bytes; empty once all are out.
    fn next_piece(&mut self, room: usize) -> &'a [u8] {
        let size = self.sizes[self.next % self.sizes.len()];
        self.next += 1;
        let n = size.min(room).min(self.bytes.len());
        let (piece, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        piece
    }
}

impl Read for Pieces<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let piece = self.next_piece(out.len());
        out[..piece.len()].copy_from_slice(piece);
        Ok(piece.len())
    }
}

/// What a client sees of a connection, and what a server's handlers see.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// A request dispatched: its head, and its body (or the body's error).
    Request {
        head: String,
        body: Result<Vec<u8>, String>,
    },
    Rejected(u16),
    /// The bytes the machine wrote.
    Sent(Vec<u8>),
    HalfClosed,
    Closed,
}

/// Drives a connection machine over `input` arriving in pieces of `sizes`,
/// answering every request as a handler that reads its whole body would,
/// until the connection closes.
fn converse(input: &[u8], sizes: &[usize]) -> Vec<Seen> {
    let now = Instant::now();
    let mut machine = Machine::new(now, TIMEOUTS);
    let mut pieces = Pieces::new(input, sizes);
    let mut seen = Vec::new();
    for _ in 0..MAX_STEPS {
        match machine.poll(now) {
            Step::Wait | Step::Receive => receive(&mut machine, &mut pieces, now),
            Step::Dispatch(head) => {
                let mut body = Vec::new();
                let mut buf = [0u8; 97];
                let body = loop {
                    // Straight from the wire whenever the machine allows,
                    // as the socket layer does for large reads.
                    if let Some(owed) = machine.direct_body(now) {
                        let piece = pieces.next_piece(buf.len().min(owed));
                        machine.received_body(piece.len());
                        body.extend_from_slice(piece);
                        continue;
                    }
                    match machine.read_body(&mut buf, now) {
                        Ok(BodyStep::Data(n)) => body.extend_from_slice(&buf[..n]),
                        Ok(BodyStep::End) => break Ok(body),
                        Ok(BodyStep::Receive) => receive(&mut machine, &mut pieces, now),
                        Ok(BodyStep::Send) => sent(&mut machine, &mut seen),
                        Err(err) => break Err(err.to_string()),
                    }
                };
                seen.push(Seen::Request {
                    head: describe(&head),
                    body,
                });
                let drained = loop {
                    match machine.drain_body(now) {
                        DrainStep::Receive => receive(&mut machine, &mut pieces, now),
                        done => break done,
                    }
                };
                answer(&mut machine, 200, drained == DrainStep::Done, now);
                sent(&mut machine, &mut seen);
            }
            Step::Reject(error) => {
                seen.push(Seen::Rejected(error.status()));
                answer(&mut machine, error.status(), true, now);
                sent(&mut machine, &mut seen);
            }
            Step::HalfClose => seen.push(Seen::HalfClosed),
            Step::Close => {
                seen.push(Seen::Closed);
                return seen;
            }
        }
    }
    panic!("the connection machine took {MAX_STEPS} steps without closing");
}

/// What the socket layer does when the machine asks for input: reads the
/// next piece, or reports the peer gone when none is left.
fn receive(machine: &mut Machine, pieces: &mut Pieces<'_>, now: Instant) {
    let room = machine.input();
    assert!(
        !room.is_empty(),
        "the machine asks for input it has no room for"
    );
    let piece = pieces.next_piece(room.len());
    room[..piece.len()].copy_from_slice(piece);
    machine.received(piece.len(), now);
}

/// Moves what the machine wrote onto the wire.
fn sent(machine: &mut Machine, seen: &mut Vec<Seen>) {
    let n = machine.output().len();
    if n > 0 {
        seen.push(Seen::Sent(machine.output().to_vec()));
        machine.sent(n);
    }
}

/// Answers the exchange with a short body, as the socket layer writes one.
fn answer(machine: &mut Machine, status: u16, sent_whole: bool, now: Instant) {
    let headers = [("Content-Type", Cow::Borrowed("text/plain"))];
    let body = b"answer";
    let date = "Tue, 01 Dec 2026 04:00:00 GMT";
    if machine.respond(status, &headers, Some(body.len() as u64), "id", date, now) {
        machine.push_body(body);
        assert!(machine.end_body(), "a body of its declared length is whole");
    }
    machine.finish(now, sent_whole);
}

/// Everything a handler can learn of a head.
fn describe(head: &Head) -> String {
    format!(
        "{} {} {:?} {:?} {:?} keep-alive {} continue {}",
        head.method,
        head.target,
        head.version,
        head.headers,
        head.framing,
        head.keep_alive,
        head.expect_continue
    )
}

/// The connection machine fed the input in the planned pieces: it never
/// panics or loops, and what it dispatches, rejects and writes is exactly
/// what it does with the input fed whole (in reads as large as its buffer).
pub fn connection(data: &[u8]) {
    let (sizes, input) = split_plan(data);
    let cut = converse(input, &sizes);
    let whole = converse(input, &[usize::MAX]);
    assert_eq!(
        cut, whole,
        "the connection depends on how its input was cut"
    );
}

/// A head that parses, written out again, parses to the same head, of the
/// length written.
pub fn head(data: &[u8]) {
    let Ok(Some((head, _))) = parse_head(data) else {
        return;
    };
    let version = match head.version {
        Version::Http10 => "HTTP/1.0",
        Version::Http11 => "HTTP/1.1",
    };
    let mut written = format!("{} {} {version}\r\n", head.method, head.target);
    for (name, value) in &head.headers {
        written.push_str(&format!("{name}: {value}\r\n"));
    }
    written.push_str("\r\n");
    match parse_head(written.as_bytes()) {
        Ok(Some((again, len))) => {
            assert_eq!(describe(&again), describe(&head), "{written:?}");
            assert_eq!(len, written.len(), "{written:?}");
        }
        other => panic!("{written:?} parsed from {data:?} does not parse again: {other:?}"),
    }
}

/// A body decoded from the input in the planned pieces, into outputs of the
/// planned sizes, is the body decoded whole, and fails alike. The first
/// byte picks the framing: chunked, or a length from the next two.
pub fn body(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (framing, rest) = match (pick % 2, rest) {
        (0, [high, low, rest @ ..]) => (
            Framing::Length(u64::from(u16::from_be_bytes([*high, *low]))),
            rest,
        ),
        _ => (Framing::Chunked, rest),
    };
    let (sizes, input) = split_plan(rest);
    let decode = |sizes: &[usize]| {
        let mut decoder = Decoder::new(framing);
        let mut pieces = Pieces::new(input, sizes);
        let mut pending: Vec<u8> = Vec::new();
        let mut body = Vec::new();
        let mut out = vec![0u8; 4096];
        for round in 0..MAX_STEPS {
            let room = sizes[round % sizes.len()].min(out.len());
            match decoder.decode(&pending, &mut out[..room]) {
                Err(err) => return (body, Err(err.to_string())),
                Ok(progress) => {
                    pending.drain(..progress.consumed);
                    body.extend_from_slice(&out[..progress.produced]);
                    if decoder.is_done() {
                        // What follows the body is the next request's.
                        let mut rest = pending;
                        rest.extend_from_slice(pieces.bytes);
                        return (body, Ok(rest));
                    }
                    if progress.consumed == 0 && progress.produced == 0 {
                        let piece = pieces.next_piece(usize::MAX);
                        if piece.is_empty() {
                            return (body, Ok(Vec::new()));
                        }
                        pending.extend_from_slice(piece);
                    }
                }
            }
        }
        panic!("the decoder took {MAX_STEPS} rounds");
    };
    let (cut_body, cut_end) = decode(&sizes);
    let (whole_body, whole_end) = decode(&[usize::MAX]);
    assert_eq!(
        cut_end, whole_end,
        "the body depends on how its input was cut"
    );
    if cut_end.is_ok() {
        assert_eq!(
            cut_body, whole_body,
            "the body depends on how its input was cut"
        );
    } else {
        // The bytes decoded in the call that meets the malformation are
        // not handed out, so a broken body's bytes before the error vary
        // with the cuts; they are the same bytes as far as each goes.
        let shorter = cut_body.len().min(whole_body.len());
        assert_eq!(
            cut_body[..shorter],
            whole_body[..shorter],
            "the body depends on the cuts"
        );
    }
}

/// A multipart body read through reads of the planned sizes gives the same
/// parts, or the same error, as read through large reads. The first line
/// of the input is the boundary.
pub fn multipart(data: &[u8]) {
    let (sizes, input) = split_plan(data);
    let Some(newline) = input.iter().position(|&b| b == b'\n') else {
        return;
    };
    let Ok(line) = std::str::from_utf8(&input[..newline]) else {
        return;
    };
    let Some(boundary) = multipart::boundary(&format!("multipart/form-data; boundary={line}"))
    else {
        return;
    };
    let body = &input[newline + 1..];
    let parts = |sizes: &[usize]| -> Result<Vec<(String, Vec<u8>)>, String> {
        let mut reader = Multipart::new(Pieces::new(body, sizes), &boundary);
        let mut parts = Vec::new();
        while let Some(mut part) = reader.next_part().map_err(|err| err.to_string())? {
            let mut data = Vec::new();
            part.read_to_end(&mut data).map_err(|err| err.to_string())?;
            parts.push((format!("{:?}", part.head), data));
        }
        Ok(parts)
    };
    assert_eq!(
        parts(&sizes),
        parts(&[usize::MAX]),
        "the parts depend on how the body was cut"
    );
}

/// Percent-decoding fails exactly on a broken escape, and decoding what was
/// percent-encoded gives back the bytes encoded.
pub fn percent(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for plus_as_space in [false, true] {
        let decoded = percent_decode(text, plus_as_space);
        assert_eq!(decoded.is_some(), escapes_are_well_formed(text), "{text:?}");
    }
    assert_eq!(
        percent_decode(&escape_every_byte(data), true).as_deref(),
        Some(data)
    );
}

/// `bytes` with every byte percent-escaped: any bytes as a path segment.
pub(crate) fn escape_every_byte(bytes: &[u8]) -> String {
    let mut escaped = String::with_capacity(bytes.len() * 3);
    for byte in bytes {
        let _ = write!(escaped, "%{byte:02X}");
    }
    escaped
}

/// The configuration of the TLS target's server side.
pub type TlsConfig = Arc<ServerConfig>;

/// A TLS server configuration serving `chain_pem` with `key_pem`.
pub fn tls_config(chain_pem: &str, key_pem: &str) -> TlsConfig {
    let certificates = Arc::new(Certificates::default());
    certificates.set(load_pem(chain_pem, key_pem).expect("a valid test certificate"));
    server_config(certificates)
}

/// Bytes from a client into a TLS session, as the listener reads them: the
/// session fails cleanly or hands its plaintext to the connection machine,
/// which must not panic or loop either.
pub fn tls(config: &TlsConfig, data: &[u8]) {
    let (sizes, input) = split_plan(data);
    let mut session = ServerConnection::new(Arc::clone(config)).expect("a server session");
    let mut pieces = Pieces::new(input, &sizes);
    let mut plaintext = Vec::new();
    loop {
        match session.read_tls(&mut pieces) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if session.process_new_packets().is_err() {
            break;
        }
        // What the server would send back is dropped: no client reads it.
        let mut sink = Vec::new();
        while session.wants_write() {
            if session.write_tls(&mut sink).is_err() {
                break;
            }
        }
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = session.reader().read(&mut buf) {
            plaintext.extend_from_slice(&buf[..n]);
        }
    }
    converse(&plaintext, &[usize::MAX]);
}

//! The request-body decoder on the wire: `Content-Length` and chunked
//! framing (RFC 9112 §6 and §7.1), as a pure state machine over byte
//! slices. It is fed whatever bytes have arrived, in any split, and says
//! how many it consumed and how many body bytes it produced; it never
//! reads a socket, so the connection machine can drive it and a test can
//! feed it a byte at a time.

use super::body::BodyError;
use super::head::Framing;
use super::limits::{MAX_CHUNK_LINE, MAX_HEAD_BYTES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A `Content-Length` body with this much left.
    Length {
        remaining: u64,
    },
    /// Inside a chunk-size line: `chunk-size [ BWS ; chunk-ext ] CRLF`.
    Size(SizeLine),
    /// Inside a chunk's data.
    Data {
        remaining: u64,
    },
    /// The CRLF after a chunk's data; `true` once the CR is seen.
    DataEnd {
        cr: bool,
    },
    /// After the last chunk: trailer fields, read and dropped up to an
    /// empty line, within the head's size limit.
    Trailers {
        total: usize,
        line_len: usize,
        cr: bool,
    },
    Done,
    /// The framing is broken; the connection cannot carry another request.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct SizeLine {
    size: u64,
    digits: u32,
    len: usize,
    in_extension: bool,
    after_space: bool,
    cr: bool,
}

/// What one call to [`Decoder::decode`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Input bytes used up (framing and data).
    pub consumed: usize,
    /// Body bytes written to the output.
    pub produced: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decoder {
    state: State,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty => State::Done,
            Framing::Length(0) => State::Done,
            Framing::Length(remaining) => State::Length { remaining },
            Framing::Chunked => State::Size(SizeLine::default()),
        };
        Decoder { state }
    }

    /// The body has been read to its end: what follows is the next request.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    pub fn has_failed(&self) -> bool {
        self.state == State::Failed
    }

    /// Marks the framing as lost (the transport failed mid-body).
    pub fn fail(&mut self) {
        self.state = State::Failed;
    }

    /// Body bytes a `Content-Length` body still owes, when it is one.
    pub fn length_remaining(&self) -> Option<u64> {
        match self.state {
            State::Length { remaining } => Some(remaining),
            _ => None,
        }
    }

    /// `n` bytes of a `Content-Length` body were read straight into the
    /// handler's buffer, past [`Decoder::decode`] (see
    /// `Machine::direct_body`); `n` is at most what the body still owes.
    pub fn consumed_directly(&mut self, n: u64) {
        if let State::Length { remaining } = self.state {
            debug_assert!(n <= remaining, "read past the body's length");
            self.state = match remaining.saturating_sub(n) {
                0 => State::Done,
                remaining => State::Length { remaining },
            };
        }
    }

    /// Decodes from `input` into `out` until the input is used up, the
    /// output is full, or the body ends. A framing error leaves the decoder
    /// failed for good.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Result<Progress, BodyError> {
        let result = self.decode_inner(input, out);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn decode_inner(&mut self, input: &[u8], out: &mut [u8]) -> Result<Progress, BodyError> {
        let mut progress = Progress {
            consumed: 0,
            produced: 0,
        };
        loop {
            let rest = &input[progress.consumed..];
            match self.state {
                State::Done | State::Failed => return Ok(progress),
                State::Length { remaining } | State::Data { remaining } => {
                    let n = copy_len(rest.len(), out.len() - progress.produced, remaining);
                    if n == 0 {
                        return Ok(progress);
                    }
                    out[progress.produced..progress.produced + n].copy_from_slice(&rest[..n]);
                    progress.consumed += n;
                    progress.produced += n;
                    let remaining = remaining - n as u64;
                    self.state = match self.state {
                        State::Length { .. } if remaining == 0 => State::Done,
                        State::Length { .. } => State::Length { remaining },
                        _ if remaining == 0 => State::DataEnd { cr: false },
                        _ => State::Data { remaining },
                    };
                }
                _ => {
                    let Some(&byte) = rest.first() else {
                        return Ok(progress);
                    };
                    progress.consumed += 1;
                    self.state = self.framing_byte(byte)?;
                }
            }
        }
    }

    /// The next state after one byte of chunked framing.
    fn framing_byte(&self, byte: u8) -> Result<State, BodyError> {
        Ok(match self.state {
            State::Size(line) => size_line_byte(line, byte)?,
            State::DataEnd { cr: false } if byte == b'\r' => State::DataEnd { cr: true },
            State::DataEnd { cr: true } if byte == b'\n' => State::Size(SizeLine::default()),
            State::DataEnd { .. } => return Err(malformed("chunk data must end with CRLF")),
            State::Trailers {
                total,
                line_len,
                cr,
            } => {
                let total = total + 1;
                if total > MAX_HEAD_BYTES {
                    return Err(malformed("trailer section too large"));
                }
                match (cr, byte) {
                    (true, b'\n') if line_len == 0 => State::Done,
                    (true, b'\n') => State::Trailers {
                        total,
                        line_len: 0,
                        cr: false,
                    },
                    (true, _) | (false, b'\n') => {
                        return Err(malformed("trailer line must end with CRLF"));
                    }
                    (false, b'\r') => State::Trailers {
                        total,
                        line_len,
                        cr: true,
                    },
                    (false, _) => State::Trailers {
                        total,
                        line_len: line_len + 1,
                        cr: false,
                    },
                }
            }
            State::Length { .. } | State::Data { .. } | State::Done | State::Failed => self.state,
        })
    }
}

/// How many data bytes to copy now.
fn copy_len(available: usize, room: usize, remaining: u64) -> usize {
    available
        .min(room)
        .min(usize::try_from(remaining).unwrap_or(usize::MAX))
}

fn malformed(what: &'static str) -> BodyError {
    BodyError::Malformed(what)
}

/// One byte of a chunk-size line; extensions are skipped.
fn size_line_byte(mut line: SizeLine, byte: u8) -> Result<State, BodyError> {
    line.len += 1;
    if line.len > MAX_CHUNK_LINE {
        return Err(malformed("chunk-size line too long"));
    }
    if line.cr {
        if byte != b'\n' {
            return Err(malformed("chunk-size line must end with CRLF"));
        }
        if line.digits == 0 {
            return Err(malformed("missing chunk size"));
        }
        return Ok(if line.size == 0 {
            State::Trailers {
                total: 0,
                line_len: 0,
                cr: false,
            }
        } else {
            State::Data {
                remaining: line.size,
            }
        });
    }
    match byte {
        b'\r' => line.cr = true,
        b'\n' => return Err(malformed("chunk-size line must end with CRLF")),
        _ if line.in_extension => {}
        b';' => line.in_extension = true,
        // Only whitespace may stand between the size and ';'.
        b' ' | b'\t' if line.digits > 0 => line.after_space = true,
        _ if line.after_space => return Err(malformed("chunk size is not hexadecimal")),
        _ => {
            let digit = (byte as char)
                .to_digit(16)
                .ok_or(malformed("chunk size is not hexadecimal"))?;
            line.size = line
                .size
                .checked_mul(16)
                .and_then(|s| s.checked_add(u64::from(digit)))
                .ok_or(malformed("chunk size overflows"))?;
            line.digits += 1;
        }
    }
    Ok(State::Size(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` whole; returns the body and what follows it.
    fn decode(input: &[u8], framing: Framing) -> Result<(Vec<u8>, Vec<u8>), BodyError> {
        decode_in_pieces(input, framing, input.len().max(1), 64 * 1024)
    }

    /// Decodes `input` fed `piece` bytes at a time into an output of `room`
    /// bytes per call.
    fn decode_in_pieces(
        input: &[u8],
        framing: Framing,
        piece: usize,
        room: usize,
    ) -> Result<(Vec<u8>, Vec<u8>), BodyError> {
        let mut decoder = Decoder::new(framing);
        let mut body = Vec::new();
        let mut at = 0;
        let mut out = vec![0u8; room];
        while !decoder.is_done() {
            let end = (at + piece).min(input.len());
            let progress = decoder.decode(&input[at..end], &mut out)?;
            body.extend_from_slice(&out[..progress.produced]);
            at += progress.consumed;
            if progress.consumed == 0 && progress.produced == 0 && end == input.len() {
                break;
            }
        }
        assert!(decoder.is_done(), "the body did not end");
        Ok((body, input[at..].to_vec()))
    }

    fn malformed_reason(input: &[u8]) -> &'static str {
        match decode(input, Framing::Chunked) {
            Err(BodyError::Malformed(what)) => what,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn content_length_stops_at_the_length() {
        let (body, rest) = decode(b"helloGET /", Framing::Length(5)).unwrap();
        assert_eq!(body, b"hello");
        assert_eq!(rest, b"GET /");
    }

    #[test]
    fn a_short_length_body_waits_for_more() {
        let mut decoder = Decoder::new(Framing::Length(5));
        let mut out = [0u8; 16];
        let progress = decoder.decode(b"hel", &mut out).unwrap();
        assert_eq!((progress.consumed, progress.produced), (3, 3));
        assert!(!decoder.is_done());
        assert_eq!(decoder.length_remaining(), Some(2));
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
    fn any_split_decodes_like_the_whole() {
        let input = b"5;a=b\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: 1\r\n\r\nGET";
        let (whole, rest) = decode(input, Framing::Chunked).unwrap();
        for piece in 1..input.len() {
            for room in [1, 3, 64] {
                let (body, after) = decode_in_pieces(input, Framing::Chunked, piece, room).unwrap();
                assert_eq!(
                    (&body, &after),
                    (&whole, &rest),
                    "piece {piece}, room {room}"
                );
            }
        }
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
        assert_eq!(
            malformed_reason(b"5 x\r\nhello\r\n"),
            "chunk size is not hexadecimal"
        );
        let long = [b"5;".as_slice(), &[b'x'; MAX_CHUNK_LINE]].concat();
        assert_eq!(malformed_reason(&long), "chunk-size line too long");
        assert_eq!(
            malformed_reason(b"0\r\nX: 1\n\r\n"),
            "trailer line must end with CRLF"
        );
        let trailers = [b"0\r\nX: ".as_slice(), &[b'y'; MAX_HEAD_BYTES]].concat();
        assert_eq!(malformed_reason(&trailers), "trailer section too large");
    }

    #[test]
    fn a_failed_decoder_stays_failed() {
        let mut decoder = Decoder::new(Framing::Chunked);
        let mut out = [0u8; 8];
        assert!(decoder.decode(b"zz\r\n", &mut out).is_err());
        assert!(decoder.has_failed());
        let progress = decoder.decode(b"5\r\nhello", &mut out).unwrap();
        assert_eq!((progress.consumed, progress.produced), (0, 0));
    }
}

//! Streaming `multipart/form-data` bodies (RFC 7578), the form encoding of
//! HTML file uploads.
//!
//! Why wren's own: the `multipart` crate is archived (RUSTSEC-2023-0050) and
//! `form-data` 0.6's sync parser spins forever on a truncated or malformed
//! body, so one bad request would pin a worker. This parser reads through a
//! fixed buffer, never holds more than one buffer of the body, and fails
//! every malformation with a `400` naming it: the body's own limit bounds the
//! total, [`MAX_PARTS`] and [`MAX_PART_HEAD_BYTES`] bound the structure.

use std::io::{self, Read};

use memchr::memmem;

use super::body::BodyError;
use super::limits::{MAX_PART_HEAD_BYTES, MAX_PARTS};

/// The read buffer: large enough that a part head always fits, small enough
/// that a connection's parser costs little.
const BUFFER_BYTES: usize = 32 * 1024;

/// RFC 2046: a boundary is 1 to 70 characters.
const MAX_BOUNDARY_BYTES: usize = 70;

const _: () = assert!(MAX_PART_HEAD_BYTES < BUFFER_BYTES);

fn malformed(what: &'static str) -> io::Error {
    io::Error::other(BodyError::Malformed(what))
}

/// The boundary named by a `multipart/form-data` Content-Type value.
pub fn boundary(content_type: &str) -> Option<String> {
    let (media_type, params) = content_type.split_once(';')?;
    if !media_type
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return None;
    }
    parameter(params, "boundary")
        .filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY_BYTES && !b.contains(['\r', '\n']))
}

/// One part's head: the fields of its `Content-Disposition` and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHead {
    pub name: String,
    /// Present for file inputs (possibly empty when no file was chosen).
    pub filename: Option<String>,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first boundary: bytes there are ignored.
    Preamble,
    /// Inside a part's data.
    InPart,
    /// Just after a boundary: a part head or the closing `--` follows.
    AfterBoundary,
    /// The closing boundary was read; anything after it is ignored.
    Done,
}

/// A multipart body read part by part: [`Multipart::next_part`] gives each
/// part's head and a reader for its data.
pub struct Multipart<R: Read> {
    reader: R,
    /// `CRLF--boundary`: the delimiter that ends every part's data.
    delimiter: Vec<u8>,
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    state: State,
    parts: usize,
    /// Bytes from `start` known to be data (no delimiter among them).
    known_data: usize,
    /// The delimiter follows those bytes.
    delimiter_next: bool,
}

impl<R: Read> Multipart<R> {
    pub fn new(reader: R, boundary: &str) -> Self {
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        let mut buffer = vec![0u8; BUFFER_BYTES].into_boxed_slice();
        // The first boundary need not follow a line break: start with one,
        // so that it is found like every other delimiter.
        buffer[..2].copy_from_slice(b"\r\n");
        Multipart {
            reader,
            delimiter,
            buffer,
            start: 0,
            end: 2,
            eof: false,
            state: State::Preamble,
            parts: 0,
            known_data: 0,
            delimiter_next: false,
        }
    }

    /// The next part, after skipping whatever is left of the current one;
    /// `None` after the closing boundary.
    pub fn next_part(&mut self) -> io::Result<Option<Part<'_, R>>> {
        if matches!(self.state, State::Preamble | State::InPart) {
            let mut sink = [0u8; 8192];
            while self.read_data(&mut sink)? > 0 {}
        }
        if self.state == State::Done {
            return Ok(None);
        }
        self.fill_at_least(2)?;
        if &self.buffer[self.start..self.start + 2] == b"--" {
            self.state = State::Done;
            return Ok(None);
        }
        self.parts += 1;
        if self.parts > MAX_PARTS {
            return Err(malformed("multipart body has too many parts"));
        }
        self.skip_boundary_line()?;
        let head = self.read_part_head()?;
        self.state = State::InPart;
        Ok(Some(Part {
            head,
            multipart: self,
        }))
    }

    /// The rest of the boundary line: optional transport padding, then CRLF.
    fn skip_boundary_line(&mut self) -> io::Result<()> {
        let mut padding = 0;
        loop {
            self.fill_at_least(1)?;
            match self.buffer[self.start] {
                b' ' | b'\t' => self.start += 1,
                _ => break,
            }
            padding += 1;
            if padding > MAX_PART_HEAD_BYTES {
                return Err(malformed("multipart boundary line is too long"));
            }
        }
        self.fill_at_least(2)?;
        if &self.buffer[self.start..self.start + 2] != b"\r\n" {
            return Err(malformed("multipart boundary must end its line"));
        }
        self.start += 2;
        Ok(())
    }

    fn read_part_head(&mut self) -> io::Result<PartHead> {
        // Parse again only when a line has ended since the last try, so a
        // head arriving a byte at a time costs linear time, not quadratic.
        let mut parse_due = true;
        let mut ended = false;
        loop {
            if parse_due {
                let mut headers = [httparse::EMPTY_HEADER; 16];
                match httparse::parse_headers(&self.buffer[self.start..self.end], &mut headers) {
                    Ok(httparse::Status::Complete((consumed, headers))) => {
                        let head = part_head(headers)?;
                        self.start += consumed;
                        return Ok(head);
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(httparse::Error::TooManyHeaders) => {
                        return Err(malformed("multipart part has too many header fields"));
                    }
                    Err(_) => return Err(malformed("multipart part head is malformed")),
                }
            }
            if ended {
                return Err(malformed("multipart body ended inside a part head"));
            }
            let checked = self.end - self.start;
            if checked >= MAX_PART_HEAD_BYTES {
                return Err(malformed("multipart part head is too large"));
            }
            if self.fill()? {
                parse_due =
                    memchr::memchr(b'\n', &self.buffer[self.start + checked..self.end]).is_some();
            } else {
                // The last bytes may end no line and still break the head:
                // parse once more, so that the error is the one a body
                // read in larger pieces gets (fuzzing found the two apart).
                ended = true;
                parse_due = true;
            }
        }
    }

    /// Reads the current part's data (or the preamble); `0` at its end.
    fn read_data(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if !matches!(self.state, State::Preamble | State::InPart) || out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.known_data > 0 {
                let n = self.known_data.min(out.len());
                out[..n].copy_from_slice(&self.buffer[self.start..self.start + n]);
                self.start += n;
                self.known_data -= n;
                return Ok(n);
            }
            if self.delimiter_next {
                self.delimiter_next = false;
                self.start += self.delimiter.len();
                self.state = State::AfterBoundary;
                return Ok(0);
            }
            // Search once per fill, not once per read: small reads would
            // otherwise scan the same window again and again.
            let window = &self.buffer[self.start..self.end];
            match memmem::find(window, &self.delimiter) {
                Some(at) => {
                    self.known_data = at;
                    self.delimiter_next = true;
                }
                // A delimiter may begin in the last `len - 1` bytes: keep them.
                None => {
                    self.known_data = window.len().saturating_sub(self.delimiter.len() - 1);
                    if self.known_data == 0 && !self.fill()? {
                        return Err(malformed(
                            "multipart body ended before its closing boundary",
                        ));
                    }
                }
            }
        }
    }

    /// Reads more of the body into the buffer; `false` at its end.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.reader.read(&mut self.buffer[self.end..])?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.end += n;
        Ok(true)
    }

    fn fill_at_least(&mut self, n: usize) -> io::Result<()> {
        while self.end - self.start < n {
            if !self.fill()? {
                return Err(malformed(
                    "multipart body ended before its closing boundary",
                ));
            }
        }
        Ok(())
    }
}

/// One part: its head, and its data as a stream.
pub struct Part<'m, R: Read> {
    pub head: PartHead,
    multipart: &'m mut Multipart<R>,
}

impl<R: Read> Read for Part<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.multipart.read_data(out)
    }
}

fn part_head(headers: &[httparse::Header<'_>]) -> io::Result<PartHead> {
    let text = |name: &str| -> io::Result<Option<&str>> {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| {
                std::str::from_utf8(h.value)
                    .map_err(|_| malformed("multipart part header is not valid UTF-8"))
            })
            .transpose()
    };
    let disposition = text("content-disposition")?
        .ok_or_else(|| malformed("multipart part has no Content-Disposition"))?;
    let (kind, params) = disposition.split_once(';').unwrap_or((disposition, ""));
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return Err(malformed("multipart part is not form-data"));
    }
    let name =
        parameter(params, "name").ok_or_else(|| malformed("multipart part has no field name"))?;
    Ok(PartHead {
        name,
        filename: parameter(params, "filename"),
        content_type: text("content-type")?.map(|t| t.trim().to_owned()),
    })
}

/// The value of `name` in a `; key=value; key="quoted"` parameter list.
fn parameter(params: &str, name: &str) -> Option<String> {
    let mut rest = params;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            return None;
        }
        let key_end = rest.find(['=', ';']).unwrap_or(rest.len());
        let (key, after_key) = match rest[key_end..].strip_prefix('=') {
            Some(after_key) => (rest[..key_end].trim(), after_key),
            // A parameter without a value: skip it.
            None if key_end < rest.len() => {
                rest = &rest[key_end..];
                continue;
            }
            None => return None,
        };
        let after_key = after_key.trim_start();
        let (value, after_value) = if let Some(quoted) = after_key.strip_prefix('"') {
            unquote(quoted)?
        } else {
            let end = after_key.find(';').unwrap_or(after_key.len());
            (after_key[..end].trim_end().to_owned(), &after_key[end..])
        };
        if key.eq_ignore_ascii_case(name) {
            return Some(value);
        }
        rest = after_value;
    }
}

/// A quoted string's value (after its opening quote) and what follows it.
fn unquote(quoted: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &quoted[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its bytes `step` at a time, as a slow client.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.bytes.len());
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    fn parts(body: &[u8], step: usize) -> io::Result<Vec<(PartHead, Vec<u8>)>> {
        let mut multipart = Multipart::new(Trickle { bytes: body, step }, "XyZ");
        let mut parts = Vec::new();
        while let Some(mut part) = multipart.next_part()? {
            let mut data = Vec::new();
            part.read_to_end(&mut data)?;
            parts.push((part.head.clone(), data));
        }
        Ok(parts)
    }

    fn error(body: &[u8]) -> String {
        parts(body, 7).unwrap_err().to_string()
    }

    const FORM: &[u8] = b"preamble\r\n--XyZ\r\n\
        Content-Disposition: form-data; name=\"user\"\r\n\r\n\
        orhan\r\n--XyZ  \r\n\
        content-disposition: form-data; name=pass\r\n\r\n\
        12\r\n345\r\n--XyZ\r\n\
        Content-Disposition: form-data; name=\"image\"; filename=\"a \\\"b\\\".png\"\r\n\
        Content-Type: image/png\r\n\r\n\
        \x89PNG\r\n--Xy\r\n-\r\n--XyZ--\r\nepilogue";

    #[test]
    fn fields_and_files_at_any_read_size() {
        for step in [1, 2, 3, 5, 64, 100_000] {
            let parts = parts(FORM, step).unwrap();
            assert_eq!(parts.len(), 3, "step {step}");
            assert_eq!(parts[0].0.name, "user");
            assert_eq!(parts[0].1, b"orhan");
            assert_eq!(parts[1].0.name, "pass");
            assert_eq!(parts[1].1, b"12\r\n345");
            assert_eq!(parts[2].0.filename.as_deref(), Some("a \"b\".png"));
            assert_eq!(parts[2].0.content_type.as_deref(), Some("image/png"));
            assert_eq!(parts[2].1, b"\x89PNG\r\n--Xy\r\n-");
        }
    }

    #[test]
    fn unread_parts_are_skipped() {
        let mut multipart = Multipart::new(FORM, "XyZ");
        let mut names = Vec::new();
        while let Some(part) = multipart.next_part().unwrap() {
            names.push(part.head.name.clone());
        }
        assert_eq!(names, ["user", "pass", "image"]);
    }

    #[test]
    fn large_parts_stream_through() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=f\r\n\r\n".to_vec();
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n--XyZ--");
        let parts = parts(&body, 10_000).unwrap();
        assert_eq!(parts[0].1, data);
    }

    #[test]
    fn truncated_and_malformed_bodies_fail_at_once() {
        assert!(error(b"garbage").contains("closing boundary"));
        assert!(error(b"").contains("closing boundary"));
        assert!(error(b"--XyZ\r\nContent-Dis").contains("inside a part head"));
        assert!(
            error(b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nabc")
                .contains("closing boundary")
        );
        assert!(error(b"--XyZ\r\n\r\nabc\r\n--XyZ--").contains("no Content-Disposition"));
        assert!(
            error(b"--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\n\r\n--XyZ--")
                .contains("not form-data")
        );
        assert!(
            error(b"--XyZ\r\nContent-Disposition: form-data\r\n\r\n\r\n--XyZ--")
                .contains("no field name")
        );
        assert!(error(b"--XyZjunk\r\n").contains("end its line"));
        let mut huge_head = b"--XyZ\r\nX: ".to_vec();
        huge_head.extend(std::iter::repeat_n(b'a', MAX_PART_HEAD_BYTES));
        assert!(error(&huge_head).contains("too large"));
    }

    #[test]
    fn a_broken_head_at_the_end_is_named_however_the_body_was_cut() {
        // No line end after the bad byte: found by a last parse at the end.
        let body = b"--XyZ\r\nContent-Disposition: form-data; n\xb5\x00a";
        for step in [1, 2, 7, body.len()] {
            let err = parts(body, step).unwrap_err().to_string();
            assert!(err.contains("head is malformed"), "step {step}: {err}");
        }
        let err = parts(b"--XyZ\r\nContent-Disposition: form-da", 3).unwrap_err();
        assert!(
            err.to_string().contains("ended inside a part head"),
            "{err}"
        );
    }

    #[test]
    fn part_count_is_bounded() {
        let mut body = Vec::new();
        for _ in 0..=MAX_PARTS {
            body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n");
        }
        body.extend_from_slice(b"--XyZ--");
        assert!(error(&body).contains("too many parts"));
    }

    #[test]
    fn boundaries_from_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=----WebKit123").as_deref(),
            Some("----WebKit123")
        );
        assert_eq!(
            boundary("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b;c\"").as_deref(),
            Some("a b;c")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(
            boundary("multipart/form-data; flag; boundary=b").as_deref(),
            Some("b")
        );
        assert_eq!(boundary("multipart/form-data; boundary="), None);
        assert_eq!(boundary("multipart/mixed; boundary=x"), None);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "b".repeat(71))),
            None
        );
        assert_eq!(boundary("multipart/form-data; boundary=\"open"), None);
    }
}

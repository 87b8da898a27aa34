//! Parsing a request head (request line and header fields) and deciding how
//! its body is framed, per RFC 9112.
//!
//! `httparse` does the tokenizing; this module adds the rules it leaves to
//! the server: the head and header-count limits, one `Host`, a strict
//! `Content-Length`, `Transfer-Encoding` only as `chunked`, and never both
//! (the classic request-smuggling ambiguity).

use super::error::ApiError;
use super::limits::{MAX_HEAD_BYTES, MAX_HEADERS};
use crate::text::excerpt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body at all.
    Empty,
    Length(u64),
    Chunked,
}

/// A parsed, validated request head.
#[derive(Debug)]
pub(crate) struct Head {
    pub method: String,
    /// The request target in origin form (`/path?query`).
    pub target: String,
    pub version: Version,
    pub headers: Vec<(String, String)>,
    pub framing: Framing,
    /// The client asked to keep the connection open (by version and the
    /// `Connection` header).
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending its body.
    pub expect_continue: bool,
}

/// Parses the head at the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete and still within limits,
/// `Ok(Some((head, len)))` once it is complete (`len` bytes long), and an
/// error (with the status to answer) when it can never be valid.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, ApiError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD_BYTES {
                Err(head_too_large(buf))
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::Version) => return parse_other_version(buf),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ApiError::new(
                431,
                format!("request has more than {MAX_HEADERS} header fields"),
            ));
        }
        Err(err) => {
            return Err(ApiError::bad_request(format!(
                "malformed request head: {err}"
            )));
        }
    };
    if len > MAX_HEAD_BYTES {
        return Err(head_too_large(buf));
    }
    let version = match request.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let method = request.method.unwrap_or_default().to_owned();
    let target = origin_form(request.path.unwrap_or_default())?;
    let headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                trim_ows(&String::from_utf8_lossy(h.value)).to_owned(),
            )
        })
        .collect();

    let hosts = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
        .count();
    if hosts > 1 || (hosts == 0 && version == Version::Http11) {
        return Err(ApiError::bad_request(
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    let framing = framing(&headers, version)?;
    let keep_alive = keep_alive(&headers, version);
    let expect_continue = expect_continue(&headers, version)?;
    Ok(Some((
        Head {
            method,
            target,
            version,
            headers,
            framing,
            keep_alive,
            expect_continue,
        },
        len,
    )))
}

/// httparse takes only `HTTP/1.0` and `HTTP/1.1`. Of the rest, a request
/// line of three well-formed parts with a higher 1.x minor version is
/// processed as HTTP/1.1 (RFC 9110 §2.5); another well-formed version gets
/// `505`; anything else (a space inside the target, `http/1.1`, `HTTQ/1.1`,
/// a missing part) is a malformed request line: `400`.
fn parse_other_version(buf: &[u8]) -> Result<Option<(Head, usize)>, ApiError> {
    // Empty lines before the request line are allowed (RFC 9112 §2.2).
    let skipped = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let Some(line_end) = memchr::memchr(b'\n', &buf[skipped..]).map(|at| skipped + at) else {
        // The version is not complete yet ("HTTP/1.2" may go on).
        return if buf.len() >= MAX_HEAD_BYTES {
            Err(head_too_large(buf))
        } else {
            Ok(None)
        };
    };
    let line = &buf[skipped..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let malformed =
        || ApiError::bad_request("malformed request line: expected 'METHOD /target HTTP/1.1'");
    let [method, target, version] = parts[..] else {
        return Err(malformed());
    };
    if method.is_empty() || target.is_empty() {
        return Err(malformed());
    }
    match version {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            // Same length, so every offset the parse reports stays true.
            let mut as_11 = buf.to_vec();
            as_11[skipped + method.len() + 1 + target.len() + 1 + 7] = b'1';
            parse_head(&as_11)
        }
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(ApiError::new(
                505,
                "only HTTP/1.0 and HTTP/1.1 are supported",
            ))
        }
        _ => Err(malformed()),
    }
}

/// A field value (or list item) without the optional whitespace around it:
/// only SP and HTAB are that (RFC 9110 §5.6.3). `str::trim` would also take
/// Unicode spaces, and `Content-Length: 5\u{a0}` would pass as 5.
fn trim_ows(value: &str) -> &str {
    value.trim_matches([' ', '\t'])
}

/// A head that does not fit the limit: `414` when even the request line does
/// not fit, `431` otherwise.
fn head_too_large(buf: &[u8]) -> ApiError {
    let request_line_ends = buf[..buf.len().min(MAX_HEAD_BYTES)]
        .windows(2)
        .any(|w| w == b"\r\n");
    if request_line_ends {
        ApiError::new(
            431,
            format!("request head is larger than {MAX_HEAD_BYTES} bytes"),
        )
    } else {
        ApiError::new(
            414,
            format!("request line is longer than {MAX_HEAD_BYTES} bytes"),
        )
    }
}

/// Reduces an absolute-form target (`http://host/path`, which servers must
/// accept) to origin form; refuses anything else that is not a path.
fn origin_form(target: &str) -> Result<String, ApiError> {
    if target.starts_with('/') {
        return Ok(target.to_owned());
    }
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else {
        return Err(ApiError::bad_request(format!(
            "request target must be a path starting with '/', got '{}'",
            excerpt(target, 64)
        )));
    };
    Ok(match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => rest[i..].to_owned(),
        Some(i) => format!("/{}", &rest[i..]),
        None => "/".to_owned(),
    })
}

/// Decides the body framing (RFC 9112 §6.3).
fn framing(headers: &[(String, String)], version: Version) -> Result<Framing, ApiError> {
    let mut length: Option<u64> = None;
    let mut transfer_encoding: Option<String> = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            // A list of identical values ("5, 5") is allowed; anything else
            // that disagrees is an attempt at ambiguity.
            for item in value.split(',') {
                let parsed = parse_content_length(trim_ows(item))?;
                if length.is_some_and(|l| l != parsed) {
                    return Err(ApiError::bad_request("conflicting Content-Length values"));
                }
                length = Some(parsed);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let joined = match transfer_encoding.take() {
                Some(previous) => format!("{previous}, {value}"),
                None => value.clone(),
            };
            transfer_encoding = Some(joined);
        }
    }
    match (transfer_encoding, length) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "request has both Content-Length and Transfer-Encoding",
        )),
        (Some(_), None) if version == Version::Http10 => Err(ApiError::bad_request(
            "Transfer-Encoding is not allowed in an HTTP/1.0 request",
        )),
        (Some(te), None) => transfer_coding(&te),
        (None, Some(0)) | (None, None) => Ok(Framing::Empty),
        (None, Some(len)) => Ok(Framing::Length(len)),
    }
}

/// A request's transfer codings. Unless `chunked` is the final one the
/// body's end cannot be found, so the request is malformed (`400`, RFC 9112
/// §6.3); `chunked` after other codings is well-formed but asks for a
/// decoding wren does not do (`501`, RFC 9112 §6.1).
fn transfer_coding(value: &str) -> Result<Framing, ApiError> {
    let codings: Vec<&str> = value
        .split(',')
        .map(trim_ows)
        .filter(|c| !c.is_empty())
        .collect();
    match codings[..] {
        [] => Err(ApiError::bad_request("Transfer-Encoding is empty")),
        [.., last] if !last.eq_ignore_ascii_case("chunked") => Err(ApiError::bad_request(format!(
            "Transfer-Encoding '{}' does not end with 'chunked', so the body's end cannot be found",
            excerpt(value, 64)
        ))),
        [_] => Ok(Framing::Chunked),
        _ => Err(ApiError::new(
            501,
            format!(
                "Transfer-Encoding '{}' is not supported; only 'chunked' is",
                excerpt(value, 64)
            ),
        )),
    }
}

/// Content-Length is one or more digits. A value too large for u64 is valid
/// syntax for a body no limit will allow, so it saturates (and is refused
/// with 413 against the body limit).
fn parse_content_length(value: &str) -> Result<u64, ApiError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(format!(
            "Content-Length must be a non-negative integer, got '{}'",
            excerpt(value, 32)
        )));
    }
    Ok(value.parse::<u64>().unwrap_or(u64::MAX))
}

fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| trim_ows(t).eq_ignore_ascii_case(token))
}

fn keep_alive(headers: &[(String, String)], version: Version) -> bool {
    match version {
        Version::Http11 => !has_token(headers, "connection", "close"),
        Version::Http10 => has_token(headers, "connection", "keep-alive"),
    }
}

fn expect_continue(headers: &[(String, String)], version: Version) -> Result<bool, ApiError> {
    let Some((_, value)) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("expect"))
    else {
        return Ok(false);
    };
    if value.eq_ignore_ascii_case("100-continue") {
        // An HTTP/1.0 client does not understand 100 Continue (RFC 9110 §10.1.1).
        Ok(version == Version::Http11)
    } else {
        Err(ApiError::new(
            417,
            format!("unsupported expectation '{}'", excerpt(value, 64)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<(Head, usize)>, ApiError> {
        parse_head(raw.as_bytes())
    }

    fn status_of(raw: &str) -> u16 {
        parse(raw).expect_err("expected an error").status()
    }

    #[test]
    fn parses_a_simple_request() {
        let raw = "GET /status?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\nrest";
        let (head, len) = parse(raw).unwrap().unwrap();
        assert_eq!(len, raw.len() - 4);
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/status?x=1");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.framing, Framing::Empty);
        assert!(head.keep_alive);
        assert!(!head.expect_continue);
    }

    #[test]
    fn partial_heads_wait_for_more() {
        assert!(
            parse("GET /status HTTP/1.1\r\nHost: a\r\n")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn versions_other_than_1x_get_505() {
        assert_eq!(status_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status_of("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505);
        assert_eq!(status_of("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), 505);
    }

    #[test]
    fn a_higher_1x_minor_version_is_served_as_http11() {
        // RFC 9110 §2.5; this was a 505 until the fuzzer findings of issue 11.
        let raw = "GET /status HTTP/1.2\r\nHost: a\r\n\r\n";
        let (head, len) = parse(raw).unwrap().unwrap();
        assert_eq!(head.version, Version::Http11);
        assert_eq!(
            (head.method.as_str(), head.target.as_str()),
            ("GET", "/status")
        );
        assert_eq!(len, raw.len());
        assert!(head.keep_alive);
        let (head, _) = parse("GET / HTTP/1.9\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.keep_alive);
        let (head, _) = parse("\r\nGET /x HTTP/1.3\r\nHost: a\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.target, "/x");
        // Not decided before the line ends: "HTTP/1.2" could go on.
        assert!(parse("GET / HTTP/1.2").unwrap().is_none());
    }

    #[test]
    fn malformed_request_lines_are_400_not_505() {
        for raw in [
            "T s \n\r\n",
            "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTQ/1.1\r\nHost: a\r\n\r\n",
            "GET / http/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.10\r\nHost: a\r\n\r\n",
            "GET / HTTP/2\r\nHost: a\r\n\r\n",
            "GET  / HTTP/1.2\r\nHost: a\r\n\r\n",
        ] {
            let error = parse(raw).expect_err(raw);
            assert_eq!(error.status(), 400, "{raw:?}");
        }
    }

    #[test]
    fn http10_defaults_to_close() {
        let (head, _) = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!head.keep_alive);
        let (head, _) = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.keep_alive);
        let (head, _) = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.keep_alive);
    }

    #[test]
    fn host_is_required_once_in_http11() {
        assert_eq!(status_of("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            400
        );
    }

    #[test]
    fn content_length_must_be_digits_and_agree() {
        let ok = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(parse(ok).unwrap().unwrap().0.framing, Framing::Length(5));
        let list = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n";
        assert_eq!(parse(list).unwrap().unwrap().0.framing, Framing::Length(5));
        for bad in ["-1", "+5", "5x", "0x10", "", "1 2"] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(status_of(&raw), 400, "Content-Length: {bad}");
        }
        let conflict =
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert_eq!(status_of(conflict), 400);
    }

    #[test]
    fn only_spaces_and_tabs_are_trimmed_from_values() {
        let nbsp = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\u{a0}\r\n\r\n";
        assert_eq!(status_of(nbsp), 400);
        let tabbed = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t5 \t\r\n\r\n";
        assert_eq!(
            parse(tabbed).unwrap().unwrap().0.framing,
            Framing::Length(5)
        );
        let (head, _) = parse("GET / HTTP/1.1\r\nHost: a\r\nX-Name: \u{2003}b\u{2003}\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.headers[1].1, "\u{2003}b\u{2003}");
    }

    #[test]
    fn huge_content_length_saturates_for_the_limit_check() {
        let raw = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(
            parse(raw).unwrap().unwrap().0.framing,
            Framing::Length(u64::MAX)
        );
    }

    #[test]
    fn transfer_encoding_rules() {
        let chunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n";
        assert_eq!(parse(chunked).unwrap().unwrap().0.framing, Framing::Chunked);
        let both =
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status_of(both), 400);
        // Without chunked last the body's end is unknown: 400 (RFC 9112
        // §6.3; a 501 until the fuzzer findings of issue 11).
        let gzip = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(status_of(gzip), 400);
        let chunked_first =
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n";
        assert_eq!(status_of(chunked_first), 400);
        let empty = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n";
        assert_eq!(status_of(empty), 400);
        let commas = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,\r\n\r\n";
        assert_eq!(status_of(commas), 400);
        let spaced = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked ,\r\n\r\n";
        assert_eq!(parse(spaced).unwrap().unwrap().0.framing, Framing::Chunked);
        let stacked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(status_of(stacked), 501);
        let split = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status_of(split), 501);
        let http10 = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status_of(http10), 400);
    }

    #[test]
    fn limits_on_head_size_and_header_count() {
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(status_of(&raw), 431);
        let exactly: String = (0..MAX_HEADERS - 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{exactly}\r\n");
        assert!(parse(&raw).unwrap().is_some());

        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert_eq!(status_of(&big), 431);
        let long_line = format!("GET /{} HTTP/1.1", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(status_of(&long_line), 414);
    }

    #[test]
    fn expectations() {
        let raw = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
        assert!(parse(raw).unwrap().unwrap().0.expect_continue);
        let raw = "POST / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n";
        assert_eq!(status_of(raw), 417);
    }

    #[test]
    fn absolute_form_becomes_origin_form() {
        let (head, _) = parse("GET http://example.com/a/b?c HTTP/1.1\r\nHost: example.com\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.target, "/a/b?c");
        let (head, _) = parse("GET HTTPS://example.com HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.target, "/");
        assert_eq!(status_of("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn garbage_is_a_bad_request() {
        assert_eq!(status_of("G\x01T / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status_of("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"), 400);
    }
}

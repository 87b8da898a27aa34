//! The plain-HTTP listener beside a TLS one (`--redirect-port`): every
//! request is sent to the same path over HTTPS with a `308` (method and
//! body kept), except ACME's HTTP-01 challenges (RFC 8555 §8.3), which it
//! answers itself while an order waits on them.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::error::ApiError;
use super::request::Request;
use super::response::Response;

/// Where HTTP-01 challenges are asked for.
const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The key authorizations of pending HTTP-01 challenges, by token.
#[derive(Debug, Default)]
pub struct ChallengeTokens(Mutex<HashMap<String, String>>);

impl ChallengeTokens {
    pub fn present(&self, token: &str, key_authorization: &str) {
        self.lock()
            .insert(token.to_owned(), key_authorization.to_owned());
    }

    pub fn withdraw(&self, token: &str) {
        self.lock().remove(token);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How the redirect listener builds its `Location`.
#[derive(Debug)]
pub struct Redirect {
    /// The TLS listener's port, left out of the `Location` when it is 443.
    pub https_port: u16,
    /// The host to name when the request's `Host` is missing or unusable
    /// (the first ACME domain, when there is one).
    pub fallback_host: Option<String>,
}

impl Redirect {
    /// The answer to `request`: its HTTP-01 challenge, or a `308` to HTTPS.
    pub fn answer(&self, request: &Request<'_>, tokens: &ChallengeTokens) -> Response {
        if let Some(token) = request.path().strip_prefix(CHALLENGE_PREFIX) {
            return match tokens.lock().get(token) {
                Some(key_authorization) => Response::text(200, key_authorization.clone())
                    .with_header("Cache-Control", "no-store"),
                None => ApiError::new(404, "no ACME challenge is pending for this token")
                    .into_response(),
            };
        }
        let host = request
            .header("host")
            .and_then(host_without_port)
            .or(self.fallback_host.as_deref());
        let Some(host) = host else {
            return ApiError::new(400, "the request has no usable Host header to redirect to")
                .into_response();
        };
        let port = match self.https_port {
            443 => String::new(),
            port => format!(":{port}"),
        };
        // The target as sent, still percent-encoded; one that is not a path
        // (an absolute or asterisk form) goes to the root.
        let path = Some(request.path())
            .filter(|path| path.starts_with('/'))
            .unwrap_or("/");
        let query = request.query().map(|q| format!("?{q}")).unwrap_or_default();
        Response::new(308).with_header("Location", format!("https://{host}{port}{path}{query}"))
    }
}

/// The host part of a `Host` header when it is a plain DNS name, IPv4
/// address or bracketed IPv6 address: anything else (a quote, a slash, a
/// user part) must not end up in a `Location`.
fn host_without_port(header: &str) -> Option<&str> {
    let host = if header.starts_with('[') {
        &header[..=header.find(']')?]
    } else {
        header.split_once(':').map_or(header, |(host, _)| host)
    };
    let rest = &header[host.len()..];
    let port_ok = rest.is_empty()
        || rest
            .strip_prefix(':')
            .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = if let Some(inner) = host.strip_prefix('[') {
        let address = &inner[..inner.len() - 1];
        address.contains(':')
            && address
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    (port_ok && name_ok).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(https_port: u16) -> Redirect {
        Redirect {
            https_port,
            fallback_host: Some("example.org".into()),
        }
    }

    fn location(redirect: &Redirect, request: &Request<'_>) -> String {
        let response = redirect.answer(request, &ChallengeTokens::default());
        assert_eq!(response.status(), 308);
        response.header("location").unwrap().to_owned()
    }

    #[test]
    fn the_same_path_and_query_go_to_https_on_the_request_host() {
        let request =
            Request::new("POST", "/api/file/a%20b?x=1&y").with_header("Host", "files.test:8080");
        assert_eq!(
            location(&redirect(443), &request),
            "https://files.test/api/file/a%20b?x=1&y"
        );
        assert_eq!(
            location(&redirect(8443), &request),
            "https://files.test:8443/api/file/a%20b?x=1&y"
        );
    }

    #[test]
    fn ipv6_hosts_keep_their_brackets() {
        let request = Request::new("GET", "/status").with_header("Host", "[::1]:80");
        assert_eq!(location(&redirect(443), &request), "https://[::1]/status");
    }

    #[test]
    fn an_odd_or_missing_host_falls_back_to_the_first_domain() {
        for host in [
            "evil.test/path",
            "a@b",
            "x:y",
            "",
            "[::1",
            "h:",
            "[]",
            "[abc]",
        ] {
            let request = Request::new("GET", "/").with_header("Host", host);
            assert_eq!(
                location(&redirect(443), &request),
                "https://example.org/",
                "{host:?}"
            );
        }
        let without = Request::new("GET", "/");
        assert_eq!(location(&redirect(443), &without), "https://example.org/");
        let nowhere = Redirect {
            https_port: 443,
            fallback_host: None,
        };
        let response = nowhere.answer(&without, &ChallengeTokens::default());
        assert_eq!(response.status(), 400);
    }

    #[test]
    fn pending_challenges_are_answered_and_others_are_not_found() {
        let tokens = ChallengeTokens::default();
        tokens.present("tok-1", "tok-1.thumb");
        let asked = Request::new("GET", "/.well-known/acme-challenge/tok-1");
        let response = redirect(443).answer(&asked, &tokens);
        assert_eq!(response.status(), 200);
        assert_eq!(response.body_bytes(), Some(&b"tok-1.thumb"[..]));
        tokens.withdraw("tok-1");
        assert_eq!(redirect(443).answer(&asked, &tokens).status(), 404);
    }
}

//! The one table of the status codes wren sends: each with the reason
//! phrase of its status line and the machine-readable `error` code of the
//! JSON error shape.

/// The reason phrase and the error code of `status`; the code is empty for
/// statuses that are never errors.
fn entry(status: u16) -> Option<(&'static str, &'static str)> {
    Some(match status {
        100 => ("Continue", ""),
        200 => ("OK", ""),
        201 => ("Created", ""),
        202 => ("Accepted", ""),
        204 => ("No Content", ""),
        206 => ("Partial Content", ""),
        301 => ("Moved Permanently", ""),
        302 => ("Found", ""),
        304 => ("Not Modified", ""),
        308 => ("Permanent Redirect", ""),
        400 => ("Bad Request", "bad_request"),
        401 => ("Unauthorized", "unauthorized"),
        403 => ("Forbidden", "forbidden"),
        404 => ("Not Found", "not_found"),
        405 => ("Method Not Allowed", "method_not_allowed"),
        408 => ("Request Timeout", "request_timeout"),
        409 => ("Conflict", "conflict"),
        411 => ("Length Required", "length_required"),
        412 => ("Precondition Failed", "precondition_failed"),
        413 => ("Content Too Large", "payload_too_large"),
        414 => ("URI Too Long", "uri_too_long"),
        415 => ("Unsupported Media Type", "unsupported_media_type"),
        416 => ("Range Not Satisfiable", "range_not_satisfiable"),
        417 => ("Expectation Failed", "expectation_failed"),
        422 => ("Unprocessable Content", "unprocessable_entity"),
        429 => ("Too Many Requests", "too_many_requests"),
        431 => (
            "Request Header Fields Too Large",
            "request_header_fields_too_large",
        ),
        500 => ("Internal Server Error", "internal_error"),
        501 => ("Not Implemented", "not_implemented"),
        502 => ("Bad Gateway", "bad_gateway"),
        503 => ("Service Unavailable", "service_unavailable"),
        505 => ("HTTP Version Not Supported", "http_version_not_supported"),
        507 => ("Insufficient Storage", "insufficient_storage"),
        _ => return None,
    })
}

/// The reason phrase sent on the status line (empty for an unlisted code,
/// which HTTP/1.1 allows).
pub fn reason_phrase(status: u16) -> &'static str {
    entry(status).map_or("", |(reason, _)| reason)
}

/// The `error` code an error response with this status carries unless the
/// handler names a more specific one.
pub fn error_code(status: u16) -> &'static str {
    match entry(status) {
        Some((_, code)) if !code.is_empty() => code,
        _ if status < 500 => "client_error",
        _ => "server_error",
    }
}

/// Statuses whose responses never carry a body (RFC 9110 §6.4.1).
pub fn has_body(status: u16) -> bool {
    !(status < 200 || status == 204 || status == 304)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_status_has_a_code_and_every_status_a_phrase() {
        for status in 100..600 {
            if let Some((reason, code)) = entry(status) {
                assert!(!reason.is_empty(), "{status}");
                assert_eq!(code.is_empty(), status < 400, "{status}");
            }
        }
        assert_eq!(reason_phrase(413), "Content Too Large");
        assert_eq!(error_code(413), "payload_too_large");
        assert_eq!(error_code(418), "client_error");
        assert_eq!(error_code(599), "server_error");
        assert_eq!(reason_phrase(299), "");
        // The engine's own refusals of a head (head.rs) have theirs too.
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(error_code(505), "http_version_not_supported");
    }

    #[test]
    fn bodiless_statuses() {
        for status in [100, 204, 304] {
            assert!(!has_body(status), "{status}");
        }
        for status in [200, 206, 404, 500] {
            assert!(has_body(status), "{status}");
        }
    }
}

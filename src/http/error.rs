//! The one error type for HTTP errors, and the one JSON shape they take.
//!
//! Every error response wren sends, from the engine (a bad head, a body over
//! its limit) or from a handler (a missing field), is an [`ApiError`] turned
//! into a response by [`ApiError::into_response`]:
//!
//! ```json
//! {"status_code": 404, "error": "not_found", "message": "no route for GET /nope"}
//! ```
//!
//! with an optional `"details": [...]` list when there is more than one problem.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::response::Response;
use super::status::error_code;

/// An error that becomes an HTTP response with a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    status: u16,
    code: &'static str,
    message: String,
    details: Option<Value>,
    headers: Vec<(&'static str, Cow<'static, str>)>,
    /// Why the request failed, for the log only: never sent to the client.
    /// (Boxed to keep the error small: every handler returns it.)
    cause: Option<Box<str>>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status_code: u16,
    error: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a Value>,
}

impl ApiError {
    /// An error with the machine-readable code that goes with `status`.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: error_code(status),
            message: message.into(),
            details: None,
            headers: Vec::new(),
            cause: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    /// `413` for a body over `limit` bytes, declared or counted.
    pub fn body_too_large(limit: u64) -> Self {
        Self::new(
            413,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    /// Replaces the default machine-readable code (`"bad_request"`, ...) with
    /// a more specific one, such as `"invalid_parameter"`.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    /// Attaches a list of individual problems.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Records for the log why the request failed: why the server did (a
    /// database error, logged as an error) or what the client did that the
    /// operator should know of (a rate limit tripped, a warning). The engine
    /// logs it with the request id; the client sees only the message.
    pub fn with_cause(mut self, cause: impl Into<String>) -> Self {
        self.cause = Some(cause.into().into_boxed_str());
        self
    }

    /// Adds a header to the error response (`Allow`, `Retry-After`, ...).
    pub fn with_header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn into_response(self) -> Response {
        let body = ErrorBody {
            status_code: self.status,
            error: self.code,
            message: &self.message,
            details: self.details.as_ref(),
        };
        let mut response = Response::json(self.status, &body);
        for (name, value) in self.headers {
            response = response.with_header(name, value);
        }
        if let Some(cause) = self.cause {
            response = response.with_log_note(cause.into());
        }
        response
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_goes_to_the_log_never_to_the_client() {
        let mut response = ApiError::new(503, "storage is unavailable; try again")
            .with_cause("disk I/O error at /data/wren.db")
            .into_response();
        let body = String::from_utf8(response.body_bytes().unwrap().to_vec()).unwrap();
        assert!(!body.contains("disk"), "{body}");
        assert_eq!(
            response.take_log_note().as_deref(),
            Some("disk I/O error at /data/wren.db")
        );
    }

    use super::*;

    #[test]
    fn renders_the_one_json_shape() {
        let response = ApiError::not_found("no route for GET /nope").into_response();
        assert_eq!(response.status(), 404);
        assert_eq!(response.header("content-type"), Some("application/json"));
        let body: Value = serde_json::from_slice(response.body_bytes().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status_code": 404, "error": "not_found", "message": "no route for GET /nope"})
        );
    }

    #[test]
    fn details_and_headers_are_carried() {
        let response = ApiError::new(405, "nope")
            .with_header("Allow", "GET, HEAD")
            .with_details(serde_json::json!([{"field": "x"}]))
            .into_response();
        assert_eq!(response.header("allow"), Some("GET, HEAD"));
        let body: Value = serde_json::from_slice(response.body_bytes().unwrap()).unwrap();
        assert_eq!(body["details"][0]["field"], "x");
        assert_eq!(body["error"], "method_not_allowed");
    }
}

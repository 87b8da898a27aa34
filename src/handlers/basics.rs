//! The BeCode challenge's basic routes.

use serde_json::json;

use crate::App;
use crate::http::{ApiError, Request, Response};

/// `GET /status`: `Alive!`, or `{"status": "Alive!"}` for JSON clients.
/// Never stored (a liveness answer from a cache says nothing), and
/// `Vary: Accept`, since the form follows `Accept`.
pub fn status(_app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let response = if request.wants_json() {
        Response::json(200, &json!({"status": "Alive!"}))
    } else {
        Response::text(200, "Alive!")
    };
    Ok(response
        .with_header("Cache-Control", "no-store")
        .with_header("Vary", "Accept"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::test_app as app;

    #[test]
    fn status_is_plain_text_by_default() {
        let response = status(&app(), &mut Request::new("GET", "/status")).unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(response.body_bytes(), Some(&b"Alive!"[..]));
        assert_eq!(response.header("cache-control"), Some("no-store"));
        assert_eq!(response.header("vary"), Some("Accept"));
    }

    #[test]
    fn status_speaks_json_when_asked() {
        let mut request = Request::new("GET", "/status").with_header("Accept", "application/json");
        let response = status(&app(), &mut request).unwrap();
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.body_bytes(), Some(&br#"{"status":"Alive!"}"#[..]));
    }
}

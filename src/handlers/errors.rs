//! How the domain's errors become HTTP answers. The domain modules
//! (`store`, `blob`, ...) know nothing of HTTP; this is the one place that
//! decides each error's status, and whose fault it was: the client's
//! (`4xx`, with a message naming what to fix) or the server's (`5xx`, the
//! cause kept for the log and out of the response).

use crate::blob::BlobError;
use crate::http::ApiError;
use crate::store::StoreError;

/// A storage failure is the server's problem, not the client's: `503`, with
/// the cause kept out of the response and written to the log.
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict => ApiError::new(409, "already exists"),
            StoreError::Backend(cause) => ApiError::new(503, "storage is unavailable; try again")
                .with_cause(format!("storage failed: {cause}")),
        }
    }
}

/// What a client is told when the object store fails: the cause stays in
/// the log, and the answer's `X-Request-Id` finds it there.
const UPSTREAM_FAILED: &str =
    "the object store failed; the server's log has the cause under this answer's X-Request-Id";

/// A storage backend's failure: the client's when it named a missing object,
/// a stale version or a bad range, or sent a bad body; the store's otherwise.
impl From<BlobError> for ApiError {
    fn from(err: BlobError) -> Self {
        match err {
            BlobError::NotFound => ApiError::not_found("Not Found"),
            BlobError::PreconditionFailed => ApiError::new(
                412,
                "the object's current version does not match If-Match / If-None-Match",
            ),
            BlobError::KeyTooLong { max } => ApiError::bad_request(format!(
                "invalid key: with this server's prefix and the account's name, keys may be at most {max} bytes"
            ))
            .with_code("invalid_key"),
            BlobError::RangeNotSatisfiable { size } => ApiError::new(
                416,
                format!("the range lies outside the object's {size} bytes"),
            )
            .with_header("Content-Range", format!("bytes */{size}")),
            BlobError::Body(err) => ApiError::from_body_read(err),
            // The store's address and its words are the operator's: they go
            // to the log, under the request id the answer carries.
            BlobError::Upstream(cause) => ApiError::new(502, UPSTREAM_FAILED)
                .with_code("storage_error")
                .with_cause(format!("object store: {cause}")),
            BlobError::Credentials { reason, detail } => ApiError::new(
                502,
                format!("the object store refused this account's S3 keys: {reason}"),
            )
            .with_code("storage_credentials")
            .with_cause(format!("object store refused the account's keys: {detail}")),
            BlobError::Busy(why) => ApiError::new(503, format!("{why}; try again shortly"))
                .with_header("Retry-After", "5"),
            // The server's own disk failed: nothing the client can fix or
            // wait out. The cause (a path, an errno) is for the log only.
            BlobError::Local(cause) => {
                ApiError::new(500, "the server's file storage failed").with_cause(cause)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;
    use crate::http::body::BodyError;

    fn status(err: BlobError) -> u16 {
        ApiError::from(err).status()
    }

    #[test]
    fn the_client_is_blamed_only_for_what_it_sent() {
        assert_eq!(status(BlobError::NotFound), 404);
        assert_eq!(status(BlobError::PreconditionFailed), 412);
        assert_eq!(status(BlobError::KeyTooLong { max: 10 }), 400);
        assert_eq!(status(BlobError::RangeNotSatisfiable { size: 3 }), 416);
        let too_large = io::Error::other(BodyError::TooLarge { limit: 1 });
        assert_eq!(status(BlobError::Body(too_large)), 413);
        let slow = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(status(BlobError::Body(slow)), 408);
    }

    #[test]
    fn the_server_s_failures_are_5xx_with_the_cause_kept_for_the_log() {
        let upstream = ApiError::from(BlobError::Upstream(
            "the request to the object store at http://10.1.2.3:9000 failed".into(),
        ));
        assert_eq!((upstream.status(), upstream.code()), (502, "storage_error"));
        let mut response = upstream.into_response();
        let body = String::from_utf8_lossy(response.body_bytes().unwrap()).into_owned();
        assert!(!body.contains("10.1.2.3"), "{body}");
        assert!(
            response.take_log_note().unwrap().contains("10.1.2.3:9000"),
            "the cause is logged"
        );
        let refused = ApiError::from(BlobError::Credentials {
            reason: "InvalidAccessKeyId (HTTP 403)".into(),
            detail: "InvalidAccessKeyId: no such key at s3.internal (HTTP 403)".into(),
        });
        assert_eq!(
            (refused.status(), refused.code()),
            (502, "storage_credentials")
        );
        assert!(refused.message().ends_with("InvalidAccessKeyId (HTTP 403)"));
        assert!(!refused.message().contains("s3.internal"));
        assert_eq!(status(BlobError::Busy("all slots taken".into())), 503);
        let disk = ApiError::from(BlobError::Local("cannot write /d/f: EIO".into()));
        assert_eq!(disk.status(), 500);
        let mut response = disk.into_response();
        let body = String::from_utf8_lossy(response.body_bytes().unwrap()).into_owned();
        assert!(!body.contains("EIO"), "{body}");
        assert_eq!(
            response.take_log_note().as_deref(),
            Some("cannot write /d/f: EIO")
        );
        let store = ApiError::from(StoreError::Backend("database is locked".into()));
        assert_eq!(store.status(), 503);
        assert!(!store.message().contains("locked"));
    }
}

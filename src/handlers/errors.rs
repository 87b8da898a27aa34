//! How the domain's errors become HTTP answers. The domain modules
//! (`store`, `blob`, ...) know nothing of HTTP; this is the one place that
//! decides each error's status, and whose fault it was: the client's
//! (`4xx`, with a message naming what to fix) or the server's (`5xx`, the
//! cause kept for the log and out of the response).

use crate::auth::password::{Busy, HashError};
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

/// Every password-hashing slot stayed taken for a second: the server is
/// saturated, not broken, so `503` with a short `Retry-After`.
impl From<Busy> for ApiError {
    fn from(busy: Busy) -> Self {
        ApiError::new(
            503,
            "the server is busy checking passwords; try again shortly",
        )
        .with_header("Retry-After", "1")
        .with_cause(HashError::Busy(busy).to_string())
    }
}

/// A password that could not be hashed: the pool was busy, or the OS gave
/// no randomness for a salt (the server's fault; the cause is for the log).
impl From<HashError> for ApiError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy(busy) => busy.into(),
            HashError::Failed(cause) => {
                ApiError::new(503, "cannot hash the password now").with_cause(cause)
            }
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
            // The account's own limit: the message gives the figures, so
            // the client knows what to delete.
            BlobError::QuotaExceeded(exceeded) => {
                ApiError::new(507, exceeded.to_string()).with_code("quota_exceeded")
            }
            // The server's disk: its figures are for the log.
            BlobError::InsufficientStorage(low) => ApiError::new(
                507,
                "the server is short of disk space and takes no uploads until some is freed",
            )
            .with_cause(low.to_string()),
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
    use crate::blob::quota::{Exceeded, Limit, LowDisk};
    use crate::http::body::BodyError;

    fn status(err: BlobError) -> u16 {
        ApiError::from(err).status()
    }

    #[test]
    fn quotas_are_the_account_s_limit_with_the_figures() {
        let exceeded = ApiError::from(BlobError::QuotaExceeded(Exceeded {
            limit: Limit::Bytes,
            allowed: 1000,
            stored: 600,
            reserved: 0,
            needed: 600,
            whole: true,
        }));
        assert_eq!(
            (exceeded.status(), exceeded.code()),
            (507, "quota_exceeded")
        );
        assert!(
            exceeded.message().contains("1000"),
            "{}",
            exceeded.message()
        );
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
        let low = ApiError::from(BlobError::InsufficientStorage(LowDisk {
            free: 10,
            floor: 20,
            needed: 5,
        }));
        assert_eq!((low.status(), low.code()), (507, "insufficient_storage"));
        assert!(!low.message().contains("20"), "{}", low.message());
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
        let busy = ApiError::from(HashError::Busy(Busy { slots: 3 }));
        assert_eq!(busy.status(), 503);
        let mut response = busy.into_response();
        assert_eq!(response.header("retry-after"), Some("1"));
        assert!(
            response
                .take_log_note()
                .is_some_and(|note| note.contains("3 password hashing slots"))
        );
        let no_salt = ApiError::from(HashError::Failed("no OS randomness".into()));
        assert_eq!(no_salt.status(), 503);
        assert!(!no_salt.message().contains("randomness"));
    }
}

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
            BlobError::Upstream(message) => {
                ApiError::new(502, format!("the object store failed: {message}"))
                    .with_code("storage_error")
            }
            BlobError::Credentials(message) => ApiError::new(
                502,
                format!("the object store refused this account's S3 keys: {message}"),
            )
            .with_code("storage_credentials"),
            BlobError::Busy(why) => ApiError::new(503, format!("{why}; try again shortly"))
                .with_header("Retry-After", "5"),
            BlobError::Local(cause) => {
                ApiError::new(503, "file storage is unavailable; try again").with_cause(cause)
            }
        }
    }
}

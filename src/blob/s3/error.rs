//! What the store's refusals mean for wren: S3 error documents read into
//! [`BlobError`]s.
//!
//! Whose fault a refusal is depends on whose keys signed the request: the
//! store refusing an account's own keys or bucket is the account's to fix
//! ([`BlobError::Credentials`]); anything else the store says no to is the
//! server's problem ([`BlobError::Upstream`]).
//!
//! What the store said (its message, which may name its endpoint, region
//! or bucket owner) goes to the log only; an account is told the error
//! code and the status.

use ureq::Body;
use ureq::http::Response;

use super::Keys;
use super::request::error_text;
use crate::blob::BlobError;
use crate::text::excerpt;

/// Error codes that mean the store refused the keys or the bucket that
/// came with them. With an account's own keys they are the account's to
/// fix, so they become [`BlobError::Credentials`].
const REFUSALS: [&str; 8] = [
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "AllAccessDisabled",
    "AccountProblem",
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
];

/// Turns a failed write into its error: a refused precondition into
/// [`BlobError::PreconditionFailed`], anything else not 2xx into the
/// store's error.
pub(super) fn check_write(response: &mut Response<Body>, keys: Keys) -> Result<(), BlobError> {
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let text = error_text(response);
    // 409 ConditionalRequestConflict: AWS's answer to two conditional
    // writes racing for the same key.
    if status == 412 || error_code(&text).as_deref() == Some("ConditionalRequestConflict") {
        return Err(BlobError::PreconditionFailed);
    }
    Err(store_error(status, &text, keys))
}

/// The error for an S3 error answer: its code and message, blamed on the
/// account when its own keys or bucket were refused.
pub(super) fn store_error(status: u16, text: &str, keys: Keys) -> BlobError {
    let code = error_code(text);
    let refused = status == 403 || code.is_some_and(|code| REFUSALS.contains(&code.as_str()));
    if keys == Keys::Account && refused {
        refusal(status, text)
    } else {
        BlobError::Upstream(describe(status, text))
    }
}

/// The store refusing an account's keys or bucket: the account is told
/// `Code (HTTP status)`, the log gets the whole description. S3 error codes
/// are single words (`InvalidAccessKeyId`); a code that is anything else is
/// left out of the reason too.
pub(super) fn refusal(status: u16, text: &str) -> BlobError {
    let code = error_code(text).filter(|code| code.bytes().all(|b| b.is_ascii_alphanumeric()));
    let reason = match code {
        Some(code) => format!("{code} (HTTP {status})"),
        None => format!("HTTP {status}"),
    };
    BlobError::Credentials {
        reason,
        detail: describe(status, text),
    }
}

/// `Code: Message (HTTP status)` from an S3 error document, or just the
/// status when there is none (HEAD answers have no body), for the log. The
/// store's message is cut short: a log line stays a line.
pub(super) fn describe(status: u16, text: &str) -> String {
    match (error_code(text), xml_element(text, "Message")) {
        (Some(code), Some(message)) => {
            format!("{code}: {} (HTTP {status})", excerpt(&message, 200))
        }
        (Some(code), None) => format!("{code} (HTTP {status})"),
        _ => format!("HTTP {status} with no S3 error code"),
    }
}

pub(super) fn error_code(text: &str) -> Option<String> {
    xml_element(text, "Code").map(|code| excerpt(&code, 64).to_owned())
}

/// The text of the first `<name>` element, XML escapes undone. Error
/// documents are flat, so no parser is needed to read them.
fn xml_element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&format!("</{name}>"))?;
    Some(
        text[start..end]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// A successful answer that lacks `what`.
pub(super) fn missing(action: &str, what: &str) -> BlobError {
    unexpected(action, &format!("no {what} in the answer"))
}

/// A successful answer wren cannot read.
pub(super) fn unexpected(action: &str, problem: &str) -> BlobError {
    BlobError::Upstream(format!("unexpected {action} answer: {problem}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_are_described_and_blamed() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
                   <Message>Forbidden: key &quot;k&quot; &amp; more</Message></Error>";
        assert_eq!(error_code(xml).as_deref(), Some("AccessDenied"));
        assert_eq!(
            describe(403, xml),
            "AccessDenied: Forbidden: key \"k\" & more (HTTP 403)"
        );
        assert!(matches!(
            store_error(403, xml, Keys::Account),
            BlobError::Credentials { .. }
        ));
        assert!(matches!(
            store_error(403, xml, Keys::Server),
            BlobError::Upstream(_)
        ));
        assert!(matches!(
            store_error(403, "", Keys::Account),
            BlobError::Credentials { .. }
        ));
        let missing_bucket = "<Error><Code>NoSuchBucket</Code><Message>no</Message></Error>";
        assert!(matches!(
            store_error(404, missing_bucket, Keys::Account),
            BlobError::Credentials { .. }
        ));
        let busy = "<Error><Code>SlowDown</Code><Message>later</Message></Error>";
        assert!(matches!(
            store_error(503, busy, Keys::Account),
            BlobError::Upstream(_)
        ));
        assert_eq!(describe(500, ""), "HTTP 500 with no S3 error code");
    }

    #[test]
    fn an_account_is_told_the_code_and_the_log_the_message() {
        let moved = "<Error><Code>PermanentRedirect</Code><Message>Use the endpoint \
                     s3.eu-west-1.internal.example:9000</Message></Error>";
        let BlobError::Credentials { reason, detail } = store_error(301, moved, Keys::Account)
        else {
            panic!("not the account's");
        };
        assert_eq!(reason, "PermanentRedirect (HTTP 301)");
        assert!(
            detail.contains("s3.eu-west-1.internal.example:9000"),
            "{detail}"
        );
        let odd = "<Error><Code>see http://10.0.0.5/</Code></Error>";
        let BlobError::Credentials { reason, .. } = store_error(403, odd, Keys::Account) else {
            panic!("not the account's");
        };
        assert_eq!(reason, "HTTP 403");
    }
}

//! [`AcmeError`], the module's one error: which step of an issuance failed,
//! at which URL, why, and what the CA said when it said something (its
//! problem document, RFC 8555 §6.7).

use std::fmt;

/// The steps of an issuance, for saying where one failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The settings cannot be used (no names, a name that is not ASCII).
    Settings,
    /// Reading or creating the account key, or the TLS roots to trust.
    Setup,
    Directory,
    Nonce,
    Account,
    Order,
    Authorization,
    Challenge,
    Finalize,
    Download,
    Store,
    Install,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Settings => "checking the settings",
            Step::Setup => "preparing the client",
            Step::Directory => "reading the directory",
            Step::Nonce => "getting a nonce",
            Step::Account => "registering the account",
            Step::Order => "placing the order",
            Step::Authorization => "authorizing",
            Step::Challenge => "answering the challenge",
            Step::Finalize => "finalizing the order",
            Step::Download => "downloading the certificate",
            Step::Store => "storing the certificate",
            Step::Install => "installing the certificate",
        })
    }
}

/// A problem document from the CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Its `type` URI, e.g. `urn:ietf:params:acme:error:rejectedIdentifier`.
    pub kind: String,
    /// Its `detail`, with the details of its subproblems (RFC 8555 §6.7.1)
    /// after it.
    pub detail: String,
}

/// The error of [`obtain`](super::obtain) and everything under it.
#[derive(Clone, Debug)]
pub struct AcmeError {
    step: Step,
    url: Option<String>,
    reason: String,
    problem: Option<Problem>,
}

impl AcmeError {
    pub(super) fn new(step: Step, reason: impl Into<String>) -> AcmeError {
        AcmeError {
            step,
            url: None,
            reason: reason.into(),
            problem: None,
        }
    }

    pub(super) fn at(mut self, url: &str) -> AcmeError {
        self.url = Some(url.to_owned());
        self
    }

    pub(super) fn with_problem(mut self, problem: Option<Problem>) -> AcmeError {
        self.problem = problem;
        self
    }

    pub fn step(&self) -> Step {
        self.step
    }

    /// The URL the failing request went to, when one did.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// What the CA said, when the failure was its answer.
    pub fn problem(&self) -> Option<&Problem> {
        self.problem.as_ref()
    }
}

/// One line: `ACME: <step> failed (<url>): <reason>: <type>: <detail>`.
/// Whatever the CA wrote is put on that line with its control characters
/// replaced, so that a log line stays one line.
impl fmt::Display for AcmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ACME: {} failed", self.step)?;
        if let Some(url) = &self.url {
            write!(f, " ({})", one_line(url))?;
        }
        write!(f, ": {}", one_line(&self.reason))?;
        if let Some(problem) = &self.problem {
            write!(
                f,
                ": {}: {}",
                one_line(&problem.kind),
                one_line(&problem.detail)
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for AcmeError {}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_one_line_naming_the_step_url_and_problem() {
        let error = AcmeError::new(Step::Order, "the CA refused it (HTTP 400)")
            .at("https://ca/new-order")
            .with_problem(Some(Problem {
                kind: "urn:ietf:params:acme:error:rejectedIdentifier".into(),
                detail: "blocked\nname".into(),
            }));
        assert_eq!(
            error.to_string(),
            "ACME: placing the order failed (https://ca/new-order): the CA refused it \
             (HTTP 400): urn:ietf:params:acme:error:rejectedIdentifier: blocked name"
        );
        let plain = AcmeError::new(Step::Store, "disk full");
        assert_eq!(
            plain.to_string(),
            "ACME: storing the certificate failed: disk full"
        );
    }
}

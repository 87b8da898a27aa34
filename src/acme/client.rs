//! The conversation with the CA (RFC 8555 §7), over one blocking `ureq`
//! agent: the directory, nonces, signed requests, and the objects it
//! returns (account, order, authorization, challenge, certificate).
//!
//! Every request after the directory is a signed POST (POST-as-GET for
//! reading, §6.3) carrying a nonce from the CA. Each answer's
//! `Replay-Nonce` is kept for the next request; a `badNonce` refusal is
//! retried with the fresh nonce it brings (§6.5), a few times. Polling
//! honours `Retry-After` and stops after a bounded number of polls and
//! time. Every request is bounded by timeouts, so a stalled CA fails an
//! issuance instead of holding the renewal thread.
//!
//! What to do with the objects (which challenge, when to poll, what to
//! store) is `issue`'s; this file knows the wire.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use super::error::{AcmeError, Problem, Step};
use super::jws::{AccountKey, Signer, base64url};
use super::pem;
use crate::date::parse_http_date;

/// Connecting (TCP and TLS) to the CA.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one read or write on a connection to the CA.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest any one request may take, start to end.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes read of an answer: objects are a few KB, a chain under
/// 10 KB; the bound keeps a broken CA from filling memory.
const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// How often one request is sent again after a `badNonce` refusal. Each
/// refusal brings a fresh nonce; Pebble refuses 5% of good ones on
/// purpose, so six refusals in a row mean something else is wrong.
const MAX_BAD_NONCE_RETRIES: u32 = 5;

/// Polling an authorization or an order: the first wait when the CA gives
/// no `Retry-After`, doubled per poll up to the second figure.
const FIRST_POLL_DELAY: Duration = Duration::from_millis(250);
const MAX_DEFAULT_POLL_DELAY: Duration = Duration::from_secs(5);
/// The most a `Retry-After` is waited for, so that a CA asking for an hour
/// fails the attempt (and the renewal schedule retries) instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How many polls, and how long in all, before giving up on one object.
const MAX_POLLS: u32 = 40;
const MAX_POLL_TIME: Duration = Duration::from_secs(180);

const JOSE_JSON: &str = "application/jose+json";
const PEM_CHAIN: &str = "application/pem-certificate-chain";
const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";

/// The objects the CA answers with are read from a `serde_json::Value`
/// (which wren parses anyway) by the `read` functions below rather than
/// derived: serde derives for these few types cost about 55 KB of the
/// release binary (measured on a probe built like wren's release).
trait Object: Sized {
    /// The object in `value`, or `None` when a required field is missing.
    fn read(value: &Value) -> Option<Self>;
}

/// The string field `name` of `value`.
fn text(value: &Value, name: &str) -> Option<String> {
    value.get(name)?.as_str().map(str::to_owned)
}

struct Directory {
    new_nonce: String,
    new_account: String,
    new_order: String,
}

impl Object for Directory {
    fn read(value: &Value) -> Option<Directory> {
        Some(Directory {
            new_nonce: text(value, "newNonce")?,
            new_account: text(value, "newAccount")?,
            new_order: text(value, "newOrder")?,
        })
    }
}

struct Account {
    status: String,
}

impl Object for Account {
    fn read(value: &Value) -> Option<Account> {
        Some(Account {
            status: text(value, "status")?,
        })
    }
}

/// An order (§7.1.3).
pub(super) struct Order {
    pub(super) status: String,
    pub(super) authorizations: Vec<String>,
    pub(super) finalize: String,
    pub(super) certificate: Option<String>,
    /// Why it is invalid, when it is.
    pub(super) error: Option<Problem>,
}

impl Object for Order {
    fn read(value: &Value) -> Option<Order> {
        let authorizations = match value.get("authorizations") {
            Some(urls) => urls
                .as_array()?
                .iter()
                .map(|url| url.as_str().map(str::to_owned))
                .collect::<Option<_>>()?,
            None => Vec::new(),
        };
        Some(Order {
            status: text(value, "status")?,
            authorizations,
            finalize: text(value, "finalize")?,
            certificate: text(value, "certificate"),
            error: value.get("error").and_then(read_problem),
        })
    }
}

/// An authorization (§7.1.4).
pub(super) struct Authorization {
    /// The DNS name it is for.
    pub(super) domain: String,
    pub(super) status: String,
    pub(super) challenges: Vec<ChallengeObject>,
}

impl Object for Authorization {
    fn read(value: &Value) -> Option<Authorization> {
        let challenges = match value.get("challenges") {
            Some(challenges) => challenges
                .as_array()?
                .iter()
                .map(ChallengeObject::read)
                .collect::<Option<_>>()?,
            None => Vec::new(),
        };
        Some(Authorization {
            domain: text(value.get("identifier")?, "value")?,
            status: text(value, "status")?,
            challenges,
        })
    }
}

impl Authorization {
    /// The problem of the challenge of `kind`, which says why validation
    /// failed.
    pub(super) fn problem_of(self, kind: &str) -> Option<Problem> {
        self.challenges
            .into_iter()
            .find(|challenge| challenge.kind == kind)
            .and_then(|challenge| challenge.error)
    }
}

/// A challenge (§7.1.5, §8).
pub(super) struct ChallengeObject {
    pub(super) kind: String,
    pub(super) url: String,
    /// Empty for challenge types without one.
    pub(super) token: String,
    error: Option<Problem>,
}

impl Object for ChallengeObject {
    fn read(value: &Value) -> Option<ChallengeObject> {
        Some(ChallengeObject {
            kind: text(value, "type")?,
            url: text(value, "url")?,
            token: text(value, "token").unwrap_or_default(),
            error: value.get("error").and_then(read_problem),
        })
    }
}

/// A problem document (§6.7), as a body or inside an object, with its
/// subproblems' details after its own (§6.7.1).
fn read_problem(value: &Value) -> Option<Problem> {
    let kind = text(value, "type").filter(|kind| !kind.is_empty())?;
    let mut detail = text(value, "detail").unwrap_or_default();
    let subproblems = value.get("subproblems").and_then(Value::as_array);
    for sub in subproblems.into_iter().flatten() {
        let name = sub
            .get("identifier")
            .and_then(|identifier| text(identifier, "value"))
            .unwrap_or_default();
        let sub_kind = text(sub, "type").unwrap_or_default();
        let sub_detail = text(sub, "detail").unwrap_or_default();
        detail.push_str(&format!("; {name}: {sub_detail} ({sub_kind})"));
    }
    Some(Problem { kind, detail })
}

/// One answer from the CA, read whole (within [`MAX_ANSWER_BYTES`]).
struct Answer {
    status: u16,
    nonce: Option<String>,
    location: Option<String>,
    retry_after: Option<Duration>,
    body: String,
}

impl Answer {
    fn problem(&self) -> Option<Problem> {
        let value = serde_json::from_slice::<Value>(self.body.as_bytes()).ok()?;
        read_problem(&value)
    }

    fn json<T: Object>(&self, step: Step, url: &str) -> Result<T, AcmeError> {
        let not_rfc = |why: String| {
            AcmeError::new(
                step,
                format!("the CA's answer is not what RFC 8555 says ({why})"),
            )
            .at(url)
        };
        let value = serde_json::from_slice::<Value>(self.body.as_bytes())
            .map_err(|err| not_rfc(err.to_string()))?;
        T::read(&value).ok_or_else(|| not_rfc("a field is missing or of the wrong type".into()))
    }
}

enum Method {
    Get,
    Head,
    Post {
        body: String,
        accept: Option<&'static str>,
    },
}

/// A session with the CA for one account key.
pub(super) struct Client<'k> {
    agent: ureq::Agent,
    directory: Directory,
    key: &'k AccountKey,
    nonce: Option<String>,
    /// The account URL (`kid`) once registered.
    account: Option<String>,
}

impl<'k> Client<'k> {
    /// Reads the directory at `directory_url`, over TLS trusting exactly
    /// the roots in `ca_root` when given, else the bundled web PKI roots.
    pub(super) fn connect(
        directory_url: &str,
        ca_root: Option<&Path>,
        key: &'k AccountKey,
    ) -> Result<Client<'k>, AcmeError> {
        let tls = match ca_root {
            Some(path) => TlsConfig::builder()
                .root_certs(RootCerts::new_with_certs(&roots(path)?))
                .build(),
            None => TlsConfig::default(),
        };
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            // Error statuses carry problem documents to read.
            .http_status_as_error(false)
            // A redirect would drop the signed body; none is expected.
            .max_redirects(0)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .timeout_resolve(Some(CONNECT_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(IO_TIMEOUT))
            .timeout_per_write(Some(IO_TIMEOUT))
            .user_agent(concat!("wren/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let answer = send(&agent, Step::Directory, directory_url, Method::Get)?;
        if answer.status != 200 {
            return Err(refused(Step::Directory, directory_url, &answer));
        }
        Ok(Client {
            directory: answer.json(Step::Directory, directory_url)?,
            nonce: answer.nonce,
            agent,
            key,
            account: None,
        })
    }

    /// Finds or creates the account for the key (§7.3): an existing one
    /// answers 200, a new one 201, both with the account URL.
    pub(super) fn register(&mut self, email: Option<&str>) -> Result<(), AcmeError> {
        let mut payload = json!({ "termsOfServiceAgreed": true });
        if let Some(email) = email {
            payload["contact"] = json!([format!("mailto:{email}")]);
        }
        let url = self.directory.new_account.clone();
        self.account = None;
        let answer = self.post(Step::Account, &url, Some(&payload), None)?;
        let account: Account = answer.json(Step::Account, &url)?;
        if account.status != "valid" {
            return Err(AcmeError::new(
                Step::Account,
                format!("the account is {}", account.status),
            )
            .at(&url));
        }
        let location = answer
            .location
            .ok_or_else(|| AcmeError::new(Step::Account, "the CA sent no account URL").at(&url))?;
        self.account = Some(location);
        Ok(())
    }

    /// Places an order for `domains` (§7.4); returns its URL and itself.
    pub(super) fn new_order(&mut self, domains: &[&str]) -> Result<(String, Order), AcmeError> {
        let identifiers: Vec<Value> = domains
            .iter()
            .map(|domain| json!({ "type": "dns", "value": domain }))
            .collect();
        let payload = json!({ "identifiers": identifiers });
        let url = self.directory.new_order.clone();
        let answer = self.post(Step::Order, &url, Some(&payload), None)?;
        let order = answer.json(Step::Order, &url)?;
        let location = answer
            .location
            .ok_or_else(|| AcmeError::new(Step::Order, "the CA sent no order URL").at(&url))?;
        Ok((location, order))
    }

    pub(super) fn authorization(&mut self, url: &str) -> Result<Authorization, AcmeError> {
        let answer = self.post(Step::Authorization, url, None, None)?;
        answer.json(Step::Authorization, url)
    }

    /// Tells the CA the challenge at `url` is ready to be checked (§7.5.1).
    pub(super) fn respond(&mut self, url: &str) -> Result<(), AcmeError> {
        self.post(Step::Challenge, url, Some(&json!({})), None)?;
        Ok(())
    }

    /// Polls the authorization at `url` while it is pending.
    pub(super) fn settle_authorization(&mut self, url: &str) -> Result<Authorization, AcmeError> {
        self.poll(Step::Authorization, url, |authorization: &Authorization| {
            authorization.status == "pending"
        })
    }

    /// Polls the order at `url` while its status is one of `waiting`.
    pub(super) fn settle_order(&mut self, url: &str, waiting: &[&str]) -> Result<Order, AcmeError> {
        self.poll(Step::Order, url, |order: &Order| {
            waiting.contains(&order.status.as_str())
        })
    }

    /// Sends the CSR (DER) to the order's finalize URL (§7.4).
    pub(super) fn finalize(&mut self, url: &str, csr: &[u8]) -> Result<Order, AcmeError> {
        let payload = json!({ "csr": base64url(csr) });
        let answer = self.post(Step::Finalize, url, Some(&payload), None)?;
        answer.json(Step::Finalize, url)
    }

    /// The certificate chain at `url`, PEM, leaf first (§7.4.2).
    pub(super) fn download(&mut self, url: &str) -> Result<String, AcmeError> {
        let answer = self.post(Step::Download, url, None, Some(PEM_CHAIN))?;
        Ok(answer.body)
    }

    /// POST-as-GET of `url` until `waiting` says no more.
    fn poll<T: Object>(
        &mut self,
        step: Step,
        url: &str,
        waiting: impl Fn(&T) -> bool,
    ) -> Result<T, AcmeError> {
        let started = Instant::now();
        for poll in 0.. {
            let answer = self.post(step, url, None, None)?;
            let object: T = answer.json(step, url)?;
            if !waiting(&object) {
                return Ok(object);
            }
            let delay = poll_delay(poll, answer.retry_after);
            if poll + 1 >= MAX_POLLS || started.elapsed() + delay > MAX_POLL_TIME {
                break;
            }
            thread::sleep(delay);
        }
        Err(AcmeError::new(
            step,
            format!("still pending after {} s", started.elapsed().as_secs()),
        )
        .at(url))
    }

    /// A signed POST of `payload` (a POST-as-GET when `None`) to `url`;
    /// a refusal other than `badNonce` is an error with the CA's problem.
    fn post(
        &mut self,
        step: Step,
        url: &str,
        payload: Option<&Value>,
        accept: Option<&'static str>,
    ) -> Result<Answer, AcmeError> {
        let mut bad_nonces = 0;
        loop {
            let nonce = match self.nonce.take() {
                Some(nonce) => nonce,
                None => self.fresh_nonce()?,
            };
            let signer = match &self.account {
                Some(account) => Signer::Kid(account),
                None => Signer::Jwk,
            };
            let body = self
                .key
                .sign(url, &nonce, &signer, payload)
                .map_err(|reason| AcmeError::new(step, reason))?;
            let answer = self.send(step, url, Method::Post { body, accept })?;
            if (200..300).contains(&answer.status) {
                return Ok(answer);
            }
            let problem = answer.problem();
            let bad_nonce = problem
                .as_ref()
                .is_some_and(|problem| problem.kind == BAD_NONCE);
            if bad_nonce && bad_nonces < MAX_BAD_NONCE_RETRIES {
                bad_nonces += 1;
                continue;
            }
            return Err(refused(step, url, &answer));
        }
    }

    /// A nonce from newNonce (§7.2).
    fn fresh_nonce(&mut self) -> Result<String, AcmeError> {
        let url = self.directory.new_nonce.clone();
        let answer = self.send(Step::Nonce, &url, Method::Head)?;
        if !(200..300).contains(&answer.status) {
            return Err(refused(Step::Nonce, &url, &answer));
        }
        self.nonce
            .take()
            .ok_or_else(|| AcmeError::new(Step::Nonce, "the CA sent no Replay-Nonce").at(&url))
    }

    /// Sends one request and reads its answer, keeping its nonce.
    fn send(&mut self, step: Step, url: &str, method: Method) -> Result<Answer, AcmeError> {
        let answer = send(&self.agent, step, url, method)?;
        if answer.nonce.is_some() {
            self.nonce.clone_from(&answer.nonce);
        }
        Ok(answer)
    }
}

/// Sends one request with `agent` and reads its answer.
fn send(agent: &ureq::Agent, step: Step, url: &str, method: Method) -> Result<Answer, AcmeError> {
    let result = match method {
        Method::Get => agent.get(url).call(),
        Method::Head => agent.head(url).call(),
        Method::Post { body, accept } => {
            let request = agent.post(url).header("Content-Type", JOSE_JSON);
            match accept {
                Some(accept) => request.header("Accept", accept).send(body),
                None => request.send(body),
            }
        }
    };
    let mut response = result
        .map_err(|err| AcmeError::new(step, format!("the CA cannot be reached: {err}")).at(url))?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let nonce = header("Replay-Nonce");
    let location = header("Location");
    let retry_after = header("Retry-After").and_then(|value| parse_retry_after(&value));
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_string()
        .map_err(|err| {
            AcmeError::new(step, format!("cannot read the CA's answer: {err}")).at(url)
        })?;
    Ok(Answer {
        status,
        nonce,
        location,
        retry_after,
        body,
    })
}

/// The error for an answer with an error status, with its problem.
fn refused(step: Step, url: &str, answer: &Answer) -> AcmeError {
    AcmeError::new(step, format!("the CA refused it (HTTP {})", answer.status))
        .at(url)
        .with_problem(answer.problem())
}

/// The roots in the PEM file at `path`.
fn roots(path: &Path) -> Result<Vec<Certificate<'static>>, AcmeError> {
    let failed = |reason: String| {
        AcmeError::new(
            Step::Setup,
            format!("cannot use the CA roots in {}: {reason}", path.display()),
        )
    };
    let text = std::fs::read(path).map_err(|err| failed(err.to_string()))?;
    let certificates = pem::certificates(&text).map_err(failed)?;
    Ok(certificates
        .iter()
        .map(|der| Certificate::from_der(der).to_owned())
        .collect())
}

/// A `Retry-After` value (RFC 9110 §10.2.3): seconds, or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// How long to wait before poll `poll + 1`: what the CA asked, within
/// bounds, or a doubling default.
fn poll_delay(poll: u32, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(asked) => asked.clamp(FIRST_POLL_DELAY, MAX_RETRY_AFTER),
        None => FIRST_POLL_DELAY
            .saturating_mul(1 << poll.min(16))
            .min(MAX_DEFAULT_POLL_DELAY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_follow_retry_after_within_bounds_or_double() {
        assert_eq!(poll_delay(0, None), FIRST_POLL_DELAY);
        assert_eq!(poll_delay(1, None), FIRST_POLL_DELAY * 2);
        assert_eq!(poll_delay(30, None), MAX_DEFAULT_POLL_DELAY);
        let seconds = Duration::from_secs;
        assert_eq!(poll_delay(0, Some(seconds(3))), seconds(3));
        assert_eq!(poll_delay(0, Some(seconds(0))), FIRST_POLL_DELAY);
        assert_eq!(poll_delay(0, Some(seconds(3600))), MAX_RETRY_AFTER);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn a_problem_document_reads_with_its_subproblems() {
        let answer = Answer {
            status: 400,
            nonce: None,
            location: None,
            retry_after: None,
            body: r#"{"type":"urn:ietf:params:acme:error:rejectedIdentifier",
                "detail":"no","subproblems":[{"type":"urn:x:caa","detail":"CAA forbids",
                "identifier":{"type":"dns","value":"b.example"}}]}"#
                .into(),
        };
        let problem = answer.problem().unwrap();
        assert_eq!(
            problem.kind,
            "urn:ietf:params:acme:error:rejectedIdentifier"
        );
        assert_eq!(problem.detail, "no; b.example: CAA forbids (urn:x:caa)");
        let not_a_problem = Answer {
            body: "{}".into(),
            ..answer
        };
        assert_eq!(not_a_problem.problem(), None);
    }
}

//! One issuance, start to end: the account, the order, the challenges, the
//! certificate key and request, the chain, and handing it over.
//!
//! Authorizations are worked one at a time: the challenge is presented by
//! the host, answered, polled to its end, and withdrawn whatever happened.
//! The chain the CA sends is checked before it is kept: its leaf must be
//! for the new key and name every requested domain.

use std::time::SystemTime;

use super::certs::{CertificateKey, certificate_request, challenge_certificate, read_certificate};
use super::client::{Client, Order};
use super::error::{AcmeError, Step};
use super::jws::key_authorization;
use super::{Challenge, ChallengeKind, Host, Issued, Settings, pem, store};
use crate::date::rfc3339_seconds;

/// The challenge `type` names of RFC 8555 §8.3 and RFC 8737 §3.
fn challenge_type(kind: ChallengeKind) -> &'static str {
    match kind {
        ChallengeKind::Http01 => "http-01",
        ChallengeKind::TlsAlpn01 => "tls-alpn-01",
    }
}

/// See [`super::obtain`].
pub(super) fn obtain(settings: &Settings, host: &dyn Host) -> Result<Issued, AcmeError> {
    let domains = checked_domains(&settings.domains)?;
    let names: Vec<&str> = domains.iter().map(String::as_str).collect();
    let account_key = store::account_key(&settings.dir)?;
    let mut client = Client::connect(
        &settings.directory,
        settings.ca_root.as_deref(),
        &account_key,
    )?;
    client.register(settings.email.as_deref())?;
    host.info(&format!(
        "ACME: ordering a certificate for {} from {}",
        names.join(", "),
        settings.directory
    ));
    let (order_url, order) = client.new_order(&names)?;
    let thumbprint = account_key.thumbprint();
    for url in &order.authorizations {
        authorize(&mut client, url, settings.challenge, &thumbprint, host)?;
    }

    let order = client.settle_order(&order_url, &["pending"])?;
    let order = expect_status(Step::Order, &order_url, order, "ready")?;
    let certificate_key =
        CertificateKey::generate().map_err(|reason| AcmeError::new(Step::Finalize, reason))?;
    let csr = certificate_request(&names, &certificate_key)
        .map_err(|reason| AcmeError::new(Step::Finalize, reason))?;
    client.finalize(&order.finalize, &csr)?;
    let order = client.settle_order(&order_url, &["ready", "processing"])?;
    let order = expect_status(Step::Finalize, &order_url, order, "valid")?;
    let certificate_url = order.certificate.ok_or_else(|| {
        AcmeError::new(Step::Finalize, "the valid order names no certificate").at(&order_url)
    })?;

    let chain_pem = client.download(&certificate_url)?;
    let leaf = pem::certificates(chain_pem.as_bytes())
        .and_then(|chain| {
            read_certificate(&chain[0]).ok_or_else(|| "its leaf is not a certificate".to_owned())
        })
        .map_err(|reason| {
            AcmeError::new(Step::Download, format!("unusable chain: {reason}")).at(&certificate_url)
        })?;
    if leaf.public_key != certificate_key.public_key() {
        return Err(
            AcmeError::new(Step::Download, "the leaf is not for the key sent").at(&certificate_url),
        );
    }
    if !same_names(&leaf.names, &domains) {
        return Err(AcmeError::new(
            Step::Download,
            format!(
                "the leaf names {}, not the names ordered",
                leaf.names.join(", ")
            ),
        )
        .at(&certificate_url));
    }

    let key_pem = pem::encode(pem::PRIVATE_KEY, certificate_key.pkcs8());
    store::save_certificate(&settings.dir, &chain_pem, &key_pem)?;
    host.install(&chain_pem, &key_pem)
        .map_err(|reason| AcmeError::new(Step::Install, reason))?;
    host.info(&format!(
        "ACME: serving a new certificate for {}, valid until {}",
        names.join(", "),
        log_time(leaf.not_after)
    ));
    Ok(Issued {
        names: leaf.names,
        not_before: leaf.not_before,
        not_after: leaf.not_after,
        chain_pem,
    })
}

/// Whether `names` are `expected`, in any order and case.
pub(super) fn same_names(names: &[String], expected: &[String]) -> bool {
    let normalized = |names: &[String]| {
        let mut names: Vec<String> = names.iter().map(|name| name.to_ascii_lowercase()).collect();
        names.sort();
        names.dedup();
        names
    };
    normalized(names) == normalized(expected)
}

/// RFC 3339 for a log line.
pub(super) fn log_time(at: SystemTime) -> String {
    let seconds = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    rfc3339_seconds(i64::try_from(seconds).unwrap_or(i64::MAX))
}

/// The names to order: lowercase, without repeats, each a plausible DNS
/// name (CAs judge the rest). Non-ASCII names must come as A-labels, and
/// wildcards need DNS-01, which wren does not answer.
fn checked_domains(domains: &[String]) -> Result<Vec<String>, AcmeError> {
    let mut checked: Vec<String> = Vec::with_capacity(domains.len());
    for domain in domains {
        let domain = domain.trim().to_ascii_lowercase();
        let plausible = !domain.is_empty()
            && domain
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-.".contains(&byte));
        if !plausible {
            return Err(AcmeError::new(
                Step::Settings,
                format!(
                    "{domain:?} is not a DNS name wren can validate (IDNs are written as \
                     A-labels, xn--…; wildcards need DNS-01)"
                ),
            ));
        }
        if !checked.contains(&domain) {
            checked.push(domain);
        }
    }
    if checked.is_empty() {
        return Err(AcmeError::new(
            Step::Settings,
            "no domain to order a certificate for",
        ));
    }
    Ok(checked)
}

/// The order if it reached `status`, else the error with the CA's reason.
fn expect_status(step: Step, url: &str, order: Order, status: &str) -> Result<Order, AcmeError> {
    if order.status == status {
        return Ok(order);
    }
    let reason = format!("the order is {}, not {status}", order.status);
    Err(AcmeError::new(step, reason)
        .at(url)
        .with_problem(order.error))
}

/// Gets the authorization at `url` valid, unless it already is.
fn authorize(
    client: &mut Client<'_>,
    url: &str,
    kind: ChallengeKind,
    thumbprint: &str,
    host: &dyn Host,
) -> Result<(), AcmeError> {
    let authorization = client.authorization(url)?;
    let domain = authorization.domain.clone();
    match authorization.status.as_str() {
        "valid" => return Ok(()),
        "pending" => {}
        status => {
            return Err(AcmeError::new(
                Step::Authorization,
                format!("the authorization for {domain} is {status}"),
            )
            .at(url));
        }
    }
    let wanted = challenge_type(kind);
    let Some(challenge) = authorization
        .challenges
        .iter()
        .find(|challenge| challenge.kind == wanted)
    else {
        return Err(AcmeError::new(
            Step::Authorization,
            format!("the CA offers no {wanted} challenge for {domain}"),
        )
        .at(url));
    };
    // The token goes into a URL path and a file-like name on the host:
    // RFC 8555 §8.1 makes it base64url, and nothing else is accepted.
    let token = &challenge.token;
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return Err(AcmeError::new(
            Step::Challenge,
            format!("the {wanted} token for {domain} is not base64url"),
        )
        .at(&challenge.url));
    }
    let key_authorization = key_authorization(token, thumbprint);
    // TLS-ALPN-01's certificate and its key, which the challenge borrows.
    let tls_alpn;
    let presented = match kind {
        ChallengeKind::Http01 => Challenge::Http {
            token,
            key_authorization: &key_authorization,
        },
        ChallengeKind::TlsAlpn01 => {
            let failed = |reason: String| AcmeError::new(Step::Challenge, reason);
            let key = CertificateKey::generate().map_err(failed)?;
            let certificate =
                challenge_certificate(&domain, &key_authorization, &key, SystemTime::now())
                    .map_err(failed)?;
            tls_alpn = (certificate, key);
            Challenge::TlsAlpn {
                domain: &domain,
                certificate_der: &tls_alpn.0,
                private_key_der: tls_alpn.1.pkcs8(),
                key_authorization: &key_authorization,
            }
        }
    };
    answer(
        client,
        host,
        &presented,
        &challenge.url,
        url,
        wanted,
        &domain,
    )
}

/// Presents `challenge`, asks the CA to check it and waits for the
/// verdict on the authorization, then withdraws it whatever happened.
fn answer(
    client: &mut Client<'_>,
    host: &dyn Host,
    challenge: &Challenge<'_>,
    challenge_url: &str,
    authorization_url: &str,
    kind: &str,
    domain: &str,
) -> Result<(), AcmeError> {
    host.present(challenge);
    let verdict = client.respond(challenge_url).and_then(|()| {
        let authorization = client.settle_authorization(authorization_url)?;
        if authorization.status == "valid" {
            return Ok(());
        }
        let reason = format!(
            "{domain} was not validated over {kind} (the authorization is {})",
            authorization.status
        );
        Err(AcmeError::new(Step::Authorization, reason)
            .at(authorization_url)
            .with_problem(authorization.problem_of(kind)))
    });
    host.withdraw(challenge);
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_lowercased_deduplicated_and_checked() {
        let domains = |names: &[&str]| {
            checked_domains(
                &names
                    .iter()
                    .map(|name| name.to_string())
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            domains(&["A.example", "a.example", " b.example "]).unwrap(),
            ["a.example", "b.example"]
        );
        assert_eq!(domains(&[]).unwrap_err().step(), Step::Settings);
        assert!(domains(&["bücher.example"]).is_err());
        assert!(domains(&["a.example/x"]).is_err());
        assert!(domains(&["*.example"]).is_err());
        assert!(domains(&[""]).is_err());
    }

    #[test]
    fn names_compare_as_sets_ignoring_case() {
        let names = |list: &[&str]| list.iter().map(|name| name.to_string()).collect::<Vec<_>>();
        assert!(same_names(
            &names(&["b.example", "A.example"]),
            &names(&["a.example", "b.example"])
        ));
        assert!(!same_names(
            &names(&["a.example"]),
            &names(&["a.example", "b.example"])
        ));
        assert!(!same_names(
            &names(&["a.example", "c.example"]),
            &names(&["a.example"])
        ));
    }
}

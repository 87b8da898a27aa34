//! Who is calling, and whether they may: the HTTP side of `crate::auth`.
//!
//! Every route in `routes.rs` declares an [`Access`] rule beside its
//! handler, and the router asks [`admit`] before the handler runs, so this
//! file is the one place where credentials are read and access decided.
//! A caller with valid credentials is a [`Principal`]: a signed-in account
//! (a session token, as `Authorization: Bearer …` or the session cookie)
//! with its role as stored now, or an API key (`Authorization: Bearer
//! wren_…` or `X-API-Key: wren_…`) with its scopes.

use std::time::Instant;

use crate::App;
use crate::auth::keys;
use crate::auth::tokens::{Claims, TokenError};
use crate::auth::{Role, Scope};
use crate::handlers::rate;
use crate::http::{ApiError, Request};
use crate::router::Headers;
use crate::store::{Account, ApiKey};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "wren_session";

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: credentials are not even read (the seeds' open routes).
    Open,
    /// A signed-in account of any role. API keys act for no one here.
    Account,
    /// The caller's own files: a signed-in account's, or those of the
    /// account a key with the `files` scope is bound to.
    OwnFiles,
    /// An admin account, or an API key with this scope.
    AdminOrKey(Scope),
    /// `/metrics` under `WREN_METRICS_TOKEN`: that token as
    /// `Authorization: Bearer`; no account or API key opens it.
    MetricsToken,
}

impl Access {
    /// Whether `principal` may call a route with this rule.
    pub fn permits(self, principal: &Principal) -> bool {
        match (self, principal) {
            (Access::Open, _) => true,
            (Access::Account | Access::OwnFiles, Principal::Account { .. }) => true,
            (Access::Account, Principal::Key { .. }) => false,
            (Access::OwnFiles, Principal::Key { key, .. }) => key.scopes.contains(&Scope::Files),
            (Access::AdminOrKey(_), Principal::Account { account, .. }) => {
                account.role == Role::Admin
            }
            (Access::AdminOrKey(scope), Principal::Key { key, .. }) => key.scopes.contains(&scope),
            (Access::MetricsToken, _) => false,
        }
    }

    /// Who the rule lets through, for the `403` of anyone else.
    fn wants(self) -> String {
        match self {
            Access::Open => "nothing".to_owned(),
            Access::Account => "a signed-in account; API keys cannot call it".to_owned(),
            Access::OwnFiles => {
                "a signed-in account, or an API key with the files scope".to_owned()
            }
            Access::AdminOrKey(scope) => format!(
                "an admin account, or an API key with the {} scope",
                scope.as_str()
            ),
            Access::MetricsToken => "the metrics token".to_owned(),
        }
    }
}

/// A caller whose credentials checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A signed-in account, as stored now (its role included), and the
    /// claims of its session token.
    Account { account: Account, session: Claims },
    /// An API key, and the account it acts for when it has the `files`
    /// scope.
    Key {
        key: ApiKey,
        account: Option<Account>,
    },
}

/// The router's gate: lets a request through to a route with rule
/// `access`, or answers `401` (no valid credentials), `429` (the caller's
/// rate limit, `handlers::rate`) or `403` (valid ones the rule does not
/// admit). A signed-in caller's every request counts against its limit,
/// a refused one too, and its answer carries the limit's headers.
pub fn admit(app: &App, access: &Access, request: &Request<'_>) -> Result<Headers, ApiError> {
    match access {
        Access::Open => return Ok(Vec::new()),
        Access::MetricsToken => return metrics_token(app, request).map(|()| Vec::new()),
        _ => {}
    }
    let principal = authenticate(app, request)?;
    let headers = rate::admit(app, &principal)?;
    match require(*access, &principal) {
        Ok(()) => Ok(headers),
        Err(refused) => Err(headers.into_iter().fold(refused, |error, (name, value)| {
            error.with_header(name, value)
        })),
    }
}

/// The caller, from the first credentials the request carries:
/// `Authorization: Bearer`, else `X-API-Key`, else the session cookie.
/// `401` when there are none or they are not (or no longer) valid.
pub fn authenticate(app: &App, request: &Request<'_>) -> Result<Principal, ApiError> {
    if let Some(credential) = bearer(request) {
        return if keys::is_key(credential) {
            key_principal(app, credential)
        } else {
            token_principal(app, credential)
        };
    }
    if let Some(key) = request.header("x-api-key") {
        return key_principal(app, key.trim());
    }
    match session_cookie(request) {
        Some(token) => token_principal(app, token),
        None => Err(unauthorized(
            "sign in first, or send an API key: no bearer token, X-API-Key or session cookie",
        )),
    }
}

/// `Access::MetricsToken`: the request's bearer token is the metrics
/// token, compared in constant time (as SHA-256 digests, so that neither
/// the bytes nor the length of the token leak through timing).
fn metrics_token(app: &App, request: &Request<'_>) -> Result<(), ApiError> {
    let wanted = app.config.metrics.token.as_deref();
    match (bearer(request), wanted) {
        (Some(given), Some(wanted)) if same_secret(given, wanted) => Ok(()),
        _ => Err(unauthorized(
            "this route wants the metrics token as Authorization: Bearer",
        )),
    }
}

/// Whether `a` and `b` are the same, in time independent of where they
/// differ.
fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |diff, (x, y)| diff | (x ^ y))
        == 0
}

/// The signed-in account and its session token's claims; `403` for an API
/// key (signing out and managing keys need an account, [`Access::Account`]).
pub fn signed_in(app: &App, request: &Request<'_>) -> Result<(Claims, Account), ApiError> {
    match authenticate(app, request)? {
        Principal::Account { account, session } => Ok((session, account)),
        Principal::Key { .. } => Err(refusal(Access::Account)),
    }
}

/// The account whose files the caller reaches ([`Access::OwnFiles`]): the
/// signed-in account, or the account a `files` key is bound to.
pub fn files_account(app: &App, request: &Request<'_>) -> Result<Account, ApiError> {
    let principal = authenticate(app, request)?;
    require(Access::OwnFiles, &principal)?;
    match principal {
        Principal::Account { account, .. }
        | Principal::Key {
            account: Some(account),
            ..
        } => Ok(account),
        // Possible only in a database edited by hand: `files` keys are made
        // bound to an account.
        Principal::Key { account: None, .. } => {
            Err(forbidden("this files key acts for no account"))
        }
    }
}

fn require(access: Access, principal: &Principal) -> Result<(), ApiError> {
    if access.permits(principal) {
        Ok(())
    } else {
        Err(refusal(access))
    }
}

/// The `403` of a caller `access` does not admit.
fn refusal(access: Access) -> ApiError {
    forbidden(&format!("this route needs {}", access.wants()))
}

/// A session token, valid now: signed by this server, unexpired,
/// unrevoked, its account still there and still in the role it was issued
/// for (a demoted admin's tokens stop working at once), and issued since the
/// account's password last changed (or since it was created: a token of a
/// deleted account never opens a new one of the same name).
fn token_principal(app: &App, token: &str) -> Result<Principal, ApiError> {
    let session = app.tokens.verify(token).map_err(|err| match err {
        TokenError::Expired => unauthorized("the session token has expired; sign in again"),
        TokenError::Invalid => unauthorized("the session token is not valid"),
    })?;
    if app.store.is_token_revoked(&session.jti)? {
        return Err(unauthorized("the session token was revoked; sign in again"));
    }
    let account = app
        .store
        .find_account(&session.sub)?
        .ok_or_else(|| unauthorized("the account no longer exists"))?;
    if account.role != session.role {
        return Err(unauthorized(
            "the account's role has changed since this token was issued; sign in again",
        ));
    }
    if i64::try_from(session.iat).unwrap_or(i64::MAX) < account.sessions_from {
        return Err(unauthorized(
            "the account's password has changed since this token was issued; sign in again",
        ));
    }
    Ok(Principal::Account { account, session })
}

/// An API key that exists (created, not revoked), with the account it is
/// bound to, which must still exist. Its use is written down at most once a
/// minute.
fn key_principal(app: &App, key: &str) -> Result<Principal, ApiError> {
    let hash = keys::hash(key);
    let found = app
        .store
        .find_key(&hash)?
        .ok_or_else(|| unauthorized("the API key is not valid: unknown or revoked"))?;
    let account = match &found.account {
        None => None,
        Some(name) => Some(
            app.store
                .find_account(name)?
                .ok_or_else(|| unauthorized("the API key's account no longer exists"))?,
        ),
    };
    // Bookkeeping, never a reason to refuse a valid key: a write that fails
    // (the database busy, the disk full) leaves `last used` a minute
    // behind, and the next due use tries again.
    if app.key_use.due(&hash, Instant::now()) {
        let _ = app
            .store
            .record_key_use(&hash, crate::date::unix_seconds_now());
    }
    Ok(Principal::Key {
        key: found,
        account,
    })
}

pub fn unauthorized(message: &str) -> ApiError {
    ApiError::new(401, message).with_header("WWW-Authenticate", "Bearer")
}

fn forbidden(message: &str) -> ApiError {
    ApiError::new(403, message)
}

fn bearer<'r>(request: &'r Request<'_>) -> Option<&'r str> {
    let value = request.header("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn session_cookie<'r>(request: &'r Request<'_>) -> Option<&'r str> {
    request
        .header("cookie")?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// `Set-Cookie` for a new session (`max_age` seconds), or to clear it (0).
pub fn session_cookie_header(value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={value}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::test_app;
    use crate::http::Request;
    use crate::store::KeyCreated;

    fn with_bearer(token: &str) -> Request<'static> {
        Request::new("GET", "/").with_header("Authorization", &format!("Bearer {token}"))
    }

    /// A stored account in `role` and a session token for it.
    fn account_token(app: &App, name: &str, role: Role) -> String {
        app.store
            .upsert_account(name, "$argon2id$hash", role)
            .unwrap();
        app.tokens.issue(name, role).unwrap().0
    }

    /// A stored key with `scopes` (bound to `account`); returns the key.
    fn key(app: &App, name: &str, scopes: &[Scope], account: Option<&str>) -> String {
        let secret = keys::generate().unwrap();
        let record = ApiKey {
            name: name.into(),
            scopes: scopes.to_vec(),
            account: account.map(str::to_owned),
            created_at: 0,
            last_used: None,
        };
        let created = app
            .store
            .create_key(&record, &keys::hash(&secret), 10)
            .unwrap();
        assert_eq!(created, KeyCreated::Created);
        secret
    }

    fn status(result: Result<impl Sized, ApiError>) -> u16 {
        result.map_or_else(|err| err.status(), |_| 200)
    }

    #[test]
    fn tokens_are_taken_from_the_header_or_the_cookie() {
        let app = test_app();
        let token = account_token(&app, "ann", Role::User);
        let (claims, account) = signed_in(&app, &with_bearer(&token)).unwrap();
        assert_eq!((claims.sub.as_str(), account.role), ("ann", Role::User));
        let by_cookie = Request::new("GET", "/")
            .with_header("Cookie", &format!("a=b; {SESSION_COOKIE}={token}"));
        assert_eq!(signed_in(&app, &by_cookie).unwrap().0.sub, "ann");
        let none = authenticate(&app, &Request::new("GET", "/")).unwrap_err();
        assert_eq!(none.status(), 401);
        assert_eq!(
            none.into_response().header("www-authenticate"),
            Some("Bearer")
        );
    }

    #[test]
    fn revoked_tokens_are_refused() {
        let app = test_app();
        let token = account_token(&app, "ann", Role::User);
        let claims = app.tokens.verify(&token).unwrap();
        app.store
            .revoke_token(&claims.jti, claims.exp as i64)
            .unwrap();
        let refused = authenticate(&app, &with_bearer(&token)).unwrap_err();
        assert!(
            refused.message().contains("revoked"),
            "{}",
            refused.message()
        );
    }

    #[test]
    fn a_token_outlives_no_change_of_role_and_no_deleted_account() {
        let app = test_app();
        let token = account_token(&app, "root", Role::Admin);
        let alerts = Access::AdminOrKey(Scope::Alerts);
        assert_eq!(status(admit(&app, &alerts, &with_bearer(&token))), 200);
        app.store
            .upsert_account("root", "$argon2id$hash", Role::User)
            .unwrap();
        let demoted = admit(&app, &alerts, &with_bearer(&token)).unwrap_err();
        assert_eq!(demoted.status(), 401);
        assert!(demoted.message().contains("role has changed"));
        // A token for an account that is not there.
        let orphan = app.tokens.issue("ghost", Role::User).unwrap().0;
        let gone = authenticate(&app, &with_bearer(&orphan)).unwrap_err();
        assert_eq!(
            (gone.status(), gone.message()),
            (401, "the account no longer exists")
        );
    }

    #[test]
    fn keys_are_taken_from_the_bearer_header_or_x_api_key() {
        let app = test_app();
        let secret = key(&app, "ci", &[Scope::Events], None);
        for request in [
            with_bearer(&secret),
            Request::new("GET", "/").with_header("X-API-Key", &secret),
        ] {
            match authenticate(&app, &request).unwrap() {
                Principal::Key { key, account } => {
                    assert_eq!((key.name.as_str(), account), ("ci", None));
                }
                other => panic!("{other:?}"),
            }
        }
        let unknown = format!("{}x", &secret[..secret.len() - 1]);
        assert_eq!(status(authenticate(&app, &with_bearer(&unknown))), 401);
        let garbage = Request::new("GET", "/").with_header("X-API-Key", "letmein");
        assert_eq!(status(authenticate(&app, &garbage)), 401);
        assert!(app.store.delete_key("ci", None).unwrap());
        assert_eq!(status(authenticate(&app, &with_bearer(&secret))), 401);
    }

    #[test]
    fn a_key_s_first_use_is_recorded() {
        let app = test_app();
        let secret = key(&app, "ci", &[Scope::Events], None);
        let stored = || app.store.find_key(&keys::hash(&secret)).unwrap().unwrap();
        assert_eq!(stored().last_used, None);
        authenticate(&app, &with_bearer(&secret)).unwrap();
        assert!(stored().last_used.is_some_and(|at| at > 1_700_000_000));
    }

    #[test]
    fn each_rule_admits_exactly_its_callers() {
        let app = test_app();
        let user = with_bearer(&account_token(&app, "ann", Role::User));
        let admin = with_bearer(&account_token(&app, "root", Role::Admin));
        let alerts_key = with_bearer(&key(&app, "watch", &[Scope::Alerts], None));
        let files_key = with_bearer(&key(&app, "sync", &[Scope::Files], Some("ann")));
        let nobody = Request::new("GET", "/");
        let alerts = Access::AdminOrKey(Scope::Alerts);
        let events = Access::AdminOrKey(Scope::Events);
        // (rule, [nobody, user, admin, alerts key, files key])
        for (access, expected) in [
            (Access::Open, [200, 200, 200, 200, 200]),
            (Access::Account, [401, 200, 200, 403, 403]),
            (Access::OwnFiles, [401, 200, 200, 403, 200]),
            (alerts, [401, 403, 200, 200, 403]),
            (events, [401, 403, 200, 403, 403]),
        ] {
            let got = [&nobody, &user, &admin, &alerts_key, &files_key]
                .map(|request| status(admit(&app, &access, request)));
            assert_eq!(got, expected, "{access:?}");
        }
        let refused = admit(&app, &alerts, &user).unwrap_err();
        assert_eq!(refused.code(), "forbidden");
        assert_eq!(
            refused.message(),
            "this route needs an admin account, or an API key with the alerts scope"
        );
    }

    #[test]
    fn a_files_key_reaches_its_own_account_and_stops_with_it() {
        let app = test_app();
        account_token(&app, "ann", Role::User);
        let secret = key(&app, "sync", &[Scope::Files], Some("ann"));
        let account = files_account(&app, &with_bearer(&secret)).unwrap();
        assert_eq!(account.username, "ann");
        let events_key = key(&app, "ci", &[Scope::Events], None);
        assert_eq!(status(files_account(&app, &with_bearer(&events_key))), 403);
        assert_eq!(status(signed_in(&app, &with_bearer(&secret))), 403);
    }
}

//! Accounts and authentication: password hashing, tokens, the server
//! secret, the guard that routes needing an account call, and brute-force
//! limits on failed logins.

pub mod limiter;
pub mod password;
pub mod seal;
pub mod secret;
pub mod tokens;

use crate::App;
use crate::http::{ApiError, Request};
use tokens::{Claims, TokenError};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "wren_session";

/// The one check every route needing an account makes: a valid, unexpired,
/// unrevoked token as `Authorization: Bearer …` or the session cookie.
pub fn require_user(app: &App, request: &Request<'_>) -> Result<Claims, ApiError> {
    let token = bearer_token(request)
        .or_else(|| session_cookie(request))
        .ok_or_else(|| unauthorized("sign in first: no bearer token or session cookie"))?;
    let claims = app.tokens.verify(token).map_err(|err| match err {
        TokenError::Expired => unauthorized("the session token has expired; sign in again"),
        TokenError::Invalid => unauthorized("the session token is not valid"),
    })?;
    if app.store.is_token_revoked(&claims.jti)? {
        return Err(unauthorized("the session token was revoked; sign in again"));
    }
    Ok(claims)
}

pub fn unauthorized(message: &str) -> ApiError {
    ApiError::new(401, message).with_header("WWW-Authenticate", "Bearer")
}

fn bearer_token<'r>(request: &'r Request<'_>) -> Option<&'r str> {
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

/// The longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;

/// The username rule, for sign-up and for `--user` accounts alike: 1 to 64
/// letters, digits, `.`, `_` and `-`. The error is the rule broken.
pub fn check_username(name: &str) -> Result<(), &'static str> {
    let count = name.chars().count();
    if count > MAX_USERNAME_CHARS {
        return Err("must be at most 64 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err("may hold only letters, digits, '.', '_' and '-'");
    }
    // The name is also the account's folder and key prefix for its files:
    // `.` and `..` must never be one.
    if !name.chars().any(|c| c.is_ascii_alphanumeric()) {
        return Err("must hold at least one letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::test_app;

    #[test]
    fn tokens_are_taken_from_the_header_or_the_cookie() {
        let app = test_app();
        let (token, _) = app.tokens.issue("ann").unwrap();
        let by_header =
            Request::new("GET", "/").with_header("Authorization", &format!("Bearer {token}"));
        assert_eq!(require_user(&app, &by_header).unwrap().sub, "ann");
        let by_cookie = Request::new("GET", "/")
            .with_header("Cookie", &format!("a=b; {SESSION_COOKIE}={token}"));
        assert_eq!(require_user(&app, &by_cookie).unwrap().sub, "ann");
        let none = require_user(&app, &Request::new("GET", "/")).unwrap_err();
        assert_eq!(none.status(), 401);
        assert_eq!(
            none.into_response().header("www-authenticate"),
            Some("Bearer")
        );
    }

    #[test]
    fn revoked_tokens_are_refused() {
        let app = test_app();
        let (token, claims) = app.tokens.issue("ann").unwrap();
        app.store
            .revoke_token(&claims.jti, claims.exp as i64)
            .unwrap();
        let request =
            Request::new("GET", "/").with_header("Authorization", &format!("Bearer {token}"));
        assert!(
            require_user(&app, &request)
                .unwrap_err()
                .message()
                .contains("revoked")
        );
    }
}

//! The session guard every route needing an account calls, and the session
//! cookie: the HTTP side of `crate::auth`.

use crate::App;
use crate::auth::tokens::{Claims, TokenError};
use crate::http::{ApiError, Request};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::test_app;
    use crate::http::Request;

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

//! Accounts: the BeCode challenge's `POST /login` and the cloud storage
//! service's `/api/sign_up`, `/api/sign_in` and `/api/logout`, on one
//! account system. The seeds' messages and body shapes are kept; the HTTP
//! statuses are real (the cloud service always said 200).

use std::time::Duration;

use serde_json::json;

use crate::App;
use crate::auth::limiter::Charge;
use crate::auth::{Role, check_username};
use crate::blob::{BlobError, UserCredentials};
use crate::handlers::rate::client_ip;
use crate::handlers::session::{self, session_cookie_header};
use crate::http::{ApiError, Fields, Request, Response};
use crate::http::{Problem, Problems};
use crate::store::{Account, AccountDone, S3Credentials, StoreError};

/// The longest password accepted, in bytes (argon2 takes any length; this
/// bounds the work one request can ask for).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// `POST /login`: `username` and `password` (or the HTML form's `user` and
/// `pass`) from JSON, a form or the query string.
pub fn login(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let fields = Fields::from_request(request)?;
    let (username, password) = credentials(&fields, &["username", "user"], &["password", "pass"])?;
    let (token, expires_in) = authenticate(app, request, username, password)?;
    let message = format!(
        "Login success for user {username} with password of length: {}!",
        password.chars().count()
    );
    let response = if request.wants_json() {
        Response::json(
            200,
            &json!({"message": message, "token": token, "token_type": "Bearer", "expires_in": expires_in}),
        )
    } else {
        Response::text(200, message)
    };
    Ok(with_session(app, response, &token, expires_in))
}

/// `POST /api/sign_in`: `login` and `password`.
pub fn sign_in(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let fields = Fields::from_request(request)?;
    let (login, password) = credentials(&fields, &["login"], &["password"])?;
    let (token, expires_in) = authenticate(app, request, login, password)?;
    let response = Response::json(
        200,
        &json!({
            "status_code": 200,
            "message": "You have successfully logged in",
            "token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
        }),
    );
    Ok(with_session(app, response, &token, expires_in))
}

/// `POST /api/sign_up`: `login`, `password`, and optionally the user's own
/// S3 keys (`access_key_id` with `secret_access_key`, and `bucket`). The
/// answer to a valid sign-up is given later, once the commit holding the
/// account is durable: waiting for it holds no thread (see `group_commit`).
pub fn sign_up(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    if !app.config.auth.signup {
        return Err(ApiError::new(403, "sign-up is turned off on this server"));
    }
    let fields = Fields::from_request(request)?;
    let mut problems = Problems::default();
    let login = fields.get("login").unwrap_or("");
    let password = fields.get("password").unwrap_or("");
    if login.is_empty() {
        problems.add(|| Problem::field("login", "is missing or empty"));
    } else if let Err(rule) = check_username(login) {
        problems.add(|| Problem::field("login", rule));
    }
    let min = app.config.auth.min_password_length;
    if password.is_empty() {
        problems.add(|| Problem::field("password", "is missing or empty"));
    } else if password.chars().count() < min {
        problems.add(|| Problem::field("password", format!("must be at least {min} characters")));
    } else if password.len() > MAX_PASSWORD_BYTES {
        problems.add(|| {
            Problem::field(
                "password",
                format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
            )
        });
    }
    let access_key = fields.get("access_key_id").filter(|v| !v.is_empty());
    let secret_key = fields.get("secret_access_key").filter(|v| !v.is_empty());
    let bucket = fields.get("bucket").filter(|v| !v.is_empty());
    let own_keys = match (access_key, secret_key) {
        (None, None) => None,
        (Some(_), None) => {
            problems.add(|| Problem::field("secret_access_key", "is required with access_key_id"));
            None
        }
        (None, Some(_)) => {
            problems.add(|| Problem::field("access_key_id", "is required with secret_access_key"));
            None
        }
        (Some(_), Some(_)) if !app.storage.takes_user_keys() => {
            problems.add(|| {
                Problem::field(
                    "access_or_secret_key",
                    "this server has no S3 endpoint configured, so it cannot use your own S3 keys",
                )
            });
            None
        }
        (Some(access_key), Some(secret_key)) => Some(UserCredentials {
            access_key_id: access_key.to_owned(),
            secret_access_key: secret_key.to_owned(),
            bucket: bucket.map(str::to_owned),
        }),
    };
    if let Some(Err(rule)) = bucket.map(crate::blob::s3::check_bucket_name) {
        problems.add(|| Problem::field("bucket", rule));
    }
    if bucket.is_some() && own_keys.is_none() && problems.is_empty() {
        problems.add(|| {
            Problem::field(
                "bucket",
                "is only taken with access_key_id and secret_access_key",
            )
        });
    }
    if !problems.is_empty() {
        return Err(invalid_fields(problems));
    }
    // The address's token is taken before the work a sign-up costs (a call
    // to the user's S3 endpoint, a password hash), so a flood cannot start
    // more of it at once than the burst allows.
    let charge = app
        .signup_limiter
        .attempt(client_ip(app, request))
        .map_err(|wait| too_many(wait, "too many sign-ups from this address; try again later"))?;
    let account = match new_account(app, login, password, own_keys) {
        Ok(account) => account,
        Err(err) => {
            settle(charge, err.status());
            return Err(err);
        }
    };
    // The store's writer commits the account with whatever else is queued
    // (a burst of sign-ups shares fsyncs), and the answer waits for that
    // commit holding no thread; the charge goes with it, to be settled on
    // the answer.
    let (stand_in, reply) = Response::later();
    let login = login.to_owned();
    let done: AccountDone = Box::new(move |created| {
        let answer = match created {
            Ok(()) => Response::json(
                201,
                &json!({"status_code": 201, "message": "You have successfully signed up", "login": login}),
            ),
            Err(StoreError::Conflict) => {
                ApiError::new(409, format!("the login '{login}' is already taken")).into_response()
            }
            Err(other) => ApiError::from(other).into_response(),
        };
        settle(charge, answer.status());
        reply.send(answer);
    });
    app.store.create_account(account, done);
    Ok(stand_in)
}

/// A sign-up counts whatever its answer, unless the server failed to serve
/// it (5xx): then its token is given back for the retry.
fn settle(charge: Charge, status: u16) {
    if status < 500 {
        charge.keep();
    }
}

/// The work of a valid sign-up before it is stored: checks the user's own
/// S3 keys and hashes the password (on the worker: argon2 is CPU work, and
/// the store's writer must only write).
fn new_account(
    app: &App,
    login: &str,
    password: &str,
    own_keys: Option<UserCredentials>,
) -> Result<Account, ApiError> {
    // The seed checked the keys by listing buckets; wren asks the bucket the
    // files will go to, with a signed request.
    let s3 = match own_keys {
        None => None,
        Some(keys) => {
            match app.storage.check_credentials(&keys) {
                Ok(()) => {}
                Err(BlobError::Credentials { reason, detail }) => {
                    // The seed's words, the store's code beside them, and
                    // what the store said in the log.
                    let refused =
                        Problem::field("access_or_secret_key", "Not correct").with_reason(reason);
                    return Err(invalid_fields(Problems::one(refused))
                        .with_cause(format!("object store refused the keys: {detail}")));
                }
                Err(other) => return Err(other.into()),
            }
            let sealed_secret = app
                .sealer
                .seal(login, keys.secret_access_key.as_bytes())
                .map_err(|err| {
                    ApiError::new(503, "cannot store the S3 keys now").with_cause(err)
                })?;
            Some(S3Credentials {
                access_key_id: keys.access_key_id,
                sealed_secret,
                bucket: keys.bucket,
            })
        }
    };
    Ok(Account {
        username: login.to_owned(),
        password_hash: app.hashers.hash(password)?,
        role: Role::User,
        sessions_from: crate::date::unix_seconds_now(),
        s3,
    })
}

/// `POST /api/logout`: revokes the token and clears the cookie.
pub fn logout(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let (claims, _) = session::signed_in(app, request)?;
    app.store
        .revoke_token(&claims.jti, i64::try_from(claims.exp).unwrap_or(i64::MAX))?;
    let response = Response::json(
        200,
        &json!({"status_code": 200, "message": "You have successfully logged out"}),
    );
    let clear = session_cookie_header("", 0, app.config.auth.cookie_secure);
    Ok(response
        .with_header("Set-Cookie", clear)
        .with_header("Cache-Control", "no-store"))
}

/// Both credentials, or `400` naming each one missing.
fn credentials<'f>(
    fields: &'f Fields,
    user_names: &[&str],
    password_names: &[&str],
) -> Result<(&'f str, &'f str), ApiError> {
    let user = fields.first_of(user_names).filter(|v| !v.is_empty());
    let password = fields.first_of(password_names).filter(|v| !v.is_empty());
    match (user, password) {
        (Some(user), Some(password)) => Ok((user, password)),
        _ => {
            let mut problems = Problems::default();
            if user.is_none() {
                problems.add(|| Problem::field(user_names[0], "is missing or empty"));
            }
            if password.is_none() {
                problems.add(|| Problem::field(password_names[0], "is missing or empty"));
            }
            Err(invalid_fields(problems))
        }
    }
}

/// Checks a password within the brute-force limits; returns a new token
/// and its lifetime in seconds.
fn authenticate(
    app: &App,
    request: &Request<'_>,
    username: &str,
    password: &str,
) -> Result<(String, u64), ApiError> {
    // The attempt's tokens are taken before the password is checked, so
    // concurrent guesses cannot all pass one check: no more than the burst
    // is ever evaluated. An error below (busy hashers, the store) drops the
    // attempt unsettled, which gives the tokens back. A name no account can
    // have gets no bucket of its own: the client chose it; the address's
    // bucket still counts it.
    let bucketed = check_username(username).is_ok().then_some(username);
    let attempt = app
        .login_limiter
        .attempt(bucketed, client_ip(app, request))
        .map_err(|wait| {
            app.metrics.login_rate_limited();
            too_many(wait, "too many failed logins; try again later")
        })?;
    // The role of the account the password opens, which its token carries.
    let opened = if password.len() > MAX_PASSWORD_BYTES {
        None
    } else {
        // A name no account can have is not looked up: it is unknown, and
        // a store may refuse it (PostgreSQL takes no NUL in text).
        let account = match bucketed {
            Some(username) => app.store.find_account(username)?,
            None => None,
        };
        match account {
            Some(account) => app
                .hashers
                .verify(&account.password_hash, password)?
                .then_some(account.role),
            None => {
                app.hashers.verify_unknown_user(password)?;
                None
            }
        }
    };
    let Some(role) = opened else {
        attempt.failed();
        app.metrics.login_failed();
        // The same answer for an unknown user and a wrong password.
        return Err(session::unauthorized("invalid username or password"));
    };
    attempt.succeeded();
    let (token, _) = app
        .tokens
        .issue(username, role)
        .map_err(|err| ApiError::new(503, "cannot issue a session token now").with_cause(err))?;
    Ok((token, app.tokens.ttl().as_secs()))
}

/// `429` with the whole seconds until the limiter has a token again.
fn too_many(wait: Duration, message: &'static str) -> ApiError {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    ApiError::new(429, message).with_header("Retry-After", seconds.to_string())
}

fn with_session(app: &App, response: Response, token: &str, expires_in: u64) -> Response {
    let cookie = session_cookie_header(token, expires_in, app.config.auth.cookie_secure);
    response
        .with_header("Set-Cookie", cookie)
        .with_header("Cache-Control", "no-store")
}

/// How the accounts routes answer field problems: they are the seeds'
/// routes, so a `400` whose message names each field, as their clients expect.
fn invalid_fields(problems: Problems) -> ApiError {
    problems.into_bad_request("invalid_fields")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::test_app;
    use crate::http::Body;

    fn post(target: &str, json_body: &str) -> Request<'static> {
        Request::new("POST", target)
            .with_header("Content-Type", "application/json")
            .with_body(Body::from_bytes(json_body.as_bytes().to_vec()))
    }

    fn text(response: &Response) -> String {
        String::from_utf8(response.body_bytes().unwrap().to_vec()).unwrap()
    }

    #[test]
    fn sign_up_then_login_speaks_the_seed_sentence() {
        let app = test_app();
        let created = sign_up(
            &app,
            &mut post("/api/sign_up", r#"{"login":"ann","password":"pässword1"}"#),
        )
        .map(Response::answered)
        .unwrap();
        assert_eq!(created.status(), 201);
        let response = login(
            &app,
            &mut post("/login", r#"{"username":"ann","password":"pässword1"}"#),
        )
        .unwrap();
        assert_eq!(
            text(&response),
            "Login success for user ann with password of length: 9!"
        );
        assert!(
            response
                .header("set-cookie")
                .unwrap()
                .starts_with("wren_session=")
        );
    }

    #[test]
    fn missing_fields_are_named() {
        let app = test_app();
        let err = login(&app, &mut post("/login", r#"{"username":"ann"}"#)).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.message().contains("'password'"));
        let err = sign_up(&app, &mut post("/api/sign_up", "{}")).unwrap_err();
        assert!(err.message().contains("'login'") && err.message().contains("'password'"));
    }

    #[test]
    fn sign_up_rules() {
        let app = test_app();
        for (body, field) in [
            (r#"{"login":"a b","password":"longenough"}"#, "login"),
            (r#"{"login":"ann","password":"short"}"#, "password"),
            (
                r#"{"login":"ann","password":"longenough","access_key_id":"AK"}"#,
                "secret_access_key",
            ),
            (
                r#"{"login":"ann","password":"longenough","access_key_id":"AK","secret_access_key":"S"}"#,
                "access_or_secret_key",
            ),
        ] {
            let err = sign_up(&app, &mut post("/api/sign_up", body)).unwrap_err();
            assert_eq!(err.status(), 400, "{body}");
            assert!(err.message().contains(field), "{body}: {}", err.message());
        }
        let long = "x".repeat(65);
        assert!(check_username(&long).is_err());
        assert!(check_username("a.b_c-9").is_ok());
        for no_letter_or_digit in ["", ".", "..", "_-.", "---"] {
            assert!(
                check_username(no_letter_or_digit).is_err(),
                "{no_letter_or_digit:?}"
            );
        }
    }

    #[test]
    fn impossible_usernames_get_no_limiter_bucket() {
        let app = test_app();
        let long = "x".repeat(100_000);
        let body = format!(r#"{{"username":"{long}","password":"nope"}}"#);
        let err = login(&app, &mut post("/login", &body)).unwrap_err();
        assert_eq!(err.status(), 401);
        // Only the address is tracked.
        assert_eq!(app.login_limiter.tracked(), 1);
        login(
            &app,
            &mut post("/login", r#"{"username":"zed","password":"nope"}"#),
        )
        .unwrap_err();
        // A possible name adds its (name, address) and its own bucket.
        assert_eq!(app.login_limiter.tracked(), 3);
    }

    /// A sign-up's answer, waited for.
    fn sign_up_answer(app: &App, login: &str) -> Response {
        let body = format!(r#"{{"login":"{login}","password":"longenough"}}"#);
        sign_up(app, &mut post("/api/sign_up", &body))
            .map_or_else(ApiError::into_response, Response::answered)
    }

    #[test]
    fn a_taken_login_is_409_and_counts_against_the_address() {
        let mut app = test_app();
        app.signup_limiter = crate::auth::limiter::SignupLimiter::new(1, 2);
        assert_eq!(sign_up_answer(&app, "ann").status(), 201);
        let taken = sign_up_answer(&app, "ann");
        assert_eq!(taken.status(), 409);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(taken.body_bytes().unwrap()).unwrap()["message"],
            "the login 'ann' is already taken"
        );
        assert_eq!(sign_up_answer(&app, "bob").status(), 429);
    }

    #[test]
    fn a_sign_up_the_store_fails_gives_its_token_back() {
        let mut app = test_app();
        app.signup_limiter = crate::auth::limiter::SignupLimiter::new(1, 1);
        // The database refuses ann's account, as a failing disk would.
        rusqlite::Connection::open(app.config.data_dir.join("wren.db"))
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER refuse_ann BEFORE INSERT ON accounts
                 WHEN new.username = 'ann' BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        let failed = sign_up_answer(&app, "ann");
        assert_eq!(failed.status(), 503);
        // The failure did not count: the burst of one is still there.
        assert_eq!(sign_up_answer(&app, "bob").status(), 201);
        assert_eq!(sign_up_answer(&app, "carl").status(), 429);
    }

    #[test]
    fn wrong_and_unknown_look_the_same() {
        let app = test_app();
        let created = sign_up(
            &app,
            &mut post("/api/sign_up", r#"{"login":"ann","password":"longenough"}"#),
        )
        .map(Response::answered)
        .unwrap();
        assert_eq!(created.status(), 201);
        let wrong = login(
            &app,
            &mut post("/login", r#"{"username":"ann","password":"nope"}"#),
        )
        .unwrap_err();
        let unknown = login(
            &app,
            &mut post("/login", r#"{"username":"zed","password":"nope"}"#),
        )
        .unwrap_err();
        assert_eq!(wrong.status(), 401);
        assert_eq!(wrong.message(), unknown.message());
    }
}

//! API keys over HTTP: `POST /api/v1/keys`, `GET /api/v1/keys`,
//! `DELETE /api/v1/keys/{name}` (the same keys `wren keys` manages).
//!
//! Admins create keys with any scopes and see and revoke every key. Any
//! other account may create keys with the `files` scope only; such a key
//! acts for the account that created it, which sees and revokes its own
//! keys and no one else's. A key is shown once, in the `201`.

use serde_json::{Value, json};

use crate::App;
use crate::auth::keys::{self, MAX_KEYS_PER_ACCOUNT};
use crate::auth::{Role, Scope};
use crate::date::rfc3339_seconds;
use crate::handlers::session;
use crate::http::{ApiError, Problem, Problems, Request, Response};
use crate::store::{Account, ApiKey, KeyCreated};

/// `POST /api/v1/keys`: `{"name": "...", "scopes": ["files", ...]}`.
pub fn create(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let (_, me) = session::signed_in(app, request)?;
    let (name, scopes) = new_key_fields(request.body().read_json()?)?;
    if me.role != Role::Admin && scopes != [Scope::Files] {
        return Err(ApiError::new(
            403,
            "only admins may create keys with scopes other than files",
        ));
    }
    let account = scopes.contains(&Scope::Files).then(|| me.username.clone());
    let secret = keys::generate()
        .map_err(|err| ApiError::new(503, "cannot make a key now").with_cause(err))?;
    let key = ApiKey {
        name,
        scopes,
        account,
        created_at: crate::date::unix_seconds_now(),
        last_used: None,
    };
    match app
        .store
        .create_key(&key, &keys::hash(&secret), MAX_KEYS_PER_ACCOUNT)?
    {
        KeyCreated::Created => {}
        KeyCreated::NameTaken => {
            return Err(ApiError::new(
                409,
                format!("a key named '{}' already exists", key.name),
            ));
        }
        KeyCreated::AccountFull => {
            return Err(ApiError::new(
                409,
                format!(
                    "the account '{}' already has {MAX_KEYS_PER_ACCOUNT} keys; revoke one first",
                    me.username
                ),
            )
            .with_code("too_many_keys"));
        }
        KeyCreated::NoSuchAccount => {
            return Err(session::unauthorized("the account no longer exists"));
        }
    }
    let mut shown = describe(&key);
    shown["key"] = Value::String(secret);
    // The key is in the answer: no cache may keep it.
    Ok(Response::json(201, &shown).with_header("Cache-Control", "no-store"))
}

/// The name and scopes of a new key, or a `422` naming each problem.
fn new_key_fields(body: Value) -> Result<(String, Vec<Scope>), ApiError> {
    let invalid = |problems: Problems| problems.into_unprocessable("the key", "invalid_api_key");
    let Value::Object(fields) = body else {
        let not_object =
            Problem::new("the body must be a JSON object: {\"name\": ..., \"scopes\": [...]}");
        return Err(invalid(Problems::one(not_object)));
    };
    let mut problems = Problems::default();
    let name = match fields.get("name") {
        Some(Value::String(name)) => match keys::check_name(name) {
            Ok(()) => Some(name.clone()),
            Err(rule) => {
                problems.add(|| Problem::field("name", rule));
                None
            }
        },
        _ => {
            problems.add(|| Problem::field("name", "must be a string naming the key"));
            None
        }
    };
    let scope_names: Option<Vec<&str>> = match fields.get("scopes") {
        Some(Value::Array(items)) => items.iter().map(Value::as_str).collect(),
        _ => None,
    };
    let scopes = match scope_names.map(keys::parse_scopes) {
        Some(Ok(scopes)) => Some(scopes),
        Some(Err(problem)) => {
            problems.add(|| Problem::field("scopes", problem));
            None
        }
        None => {
            problems.add(|| Problem::field("scopes", "must be an array of scope names"));
            None
        }
    };
    for other in fields
        .keys()
        .filter(|k| !["name", "scopes"].contains(&k.as_str()))
    {
        problems.add(|| {
            Problem::field(
                crate::text::excerpt(other, 64),
                "is not a key field; the fields are name and scopes",
            )
        });
    }
    match (name, scopes) {
        (Some(name), Some(scopes)) if problems.is_empty() => Ok((name, scopes)),
        _ => Err(invalid(problems)),
    }
}

/// `GET /api/v1/keys`: every key for an admin, an account's own otherwise;
/// never a key itself.
pub fn list(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let (_, me) = session::signed_in(app, request)?;
    let listed: Vec<Value> = app
        .store
        .keys(managed_by(&me))?
        .iter()
        .map(describe)
        .collect();
    Ok(Response::json(200, &json!({"keys": listed})).with_header("Cache-Control", "no-store"))
}

/// `DELETE /api/v1/keys/{name}`: revokes the key at once. Another
/// account's key is as missing as one that never was.
pub fn revoke(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let (_, me) = session::signed_in(app, request)?;
    let name = request.param_str("name")?;
    // A name no key can have is missing without asking the store, which
    // may refuse it (PostgreSQL takes no NUL in text).
    if keys::check_name(name).is_err() || !app.store.delete_key(name, managed_by(&me))? {
        return Err(ApiError::not_found(format!(
            "no key named '{}'",
            crate::text::excerpt(name, 64)
        )));
    }
    Ok(Response::json(
        200,
        &json!({"status_code": 200, "message": format!("key '{name}' revoked")}),
    )
    .with_header("Cache-Control", "no-store"))
}

/// Whose keys `account` may see and revoke: an admin every key (`None`),
/// another account those bound to it.
fn managed_by(account: &Account) -> Option<&str> {
    (account.role != Role::Admin).then_some(account.username.as_str())
}

/// A key's details as the API shows them.
fn describe(key: &ApiKey) -> Value {
    let scopes: Vec<&str> = key.scopes.iter().map(|scope| scope.as_str()).collect();
    json!({
        "name": key.name,
        "scopes": scopes,
        "account": key.account,
        "created": rfc3339_seconds(key.created_at),
        "last_used": key.last_used.map(rfc3339_seconds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::test_app;
    use crate::http::{Body, Param};

    fn as_account(app: &App, name: &str, role: Role, method: &str, body: &str) -> Request<'static> {
        app.store
            .upsert_account(name, "$argon2id$hash", role)
            .unwrap();
        let (token, _) = app.tokens.issue(name, role).unwrap();
        Request::new(method, "/api/v1/keys")
            .with_header("Authorization", &format!("Bearer {token}"))
            .with_body(Body::from_bytes(body.as_bytes().to_vec()))
    }

    fn body(response: &Response) -> Value {
        serde_json::from_slice(response.body_bytes().unwrap()).unwrap()
    }

    #[test]
    fn an_admin_creates_any_scopes_and_sees_the_key_once() {
        let app = test_app();
        let mut request = as_account(
            &app,
            "root",
            Role::Admin,
            "POST",
            r#"{"name": "ci", "scopes": ["events", "alerts"]}"#,
        );
        let created = create(&app, &mut request).unwrap();
        assert_eq!(created.status(), 201);
        assert_eq!(created.header("cache-control"), Some("no-store"));
        let shown = body(&created);
        assert_eq!(shown["scopes"], json!(["events", "alerts"]));
        assert_eq!(shown["account"], Value::Null);
        let secret = shown["key"].as_str().unwrap();
        assert!(secret.starts_with("wren_"));
        let stored = app.store.find_key(&keys::hash(secret)).unwrap().unwrap();
        assert_eq!(stored.name, "ci");

        let mut listing = as_account(&app, "root", Role::Admin, "GET", "");
        let listed = body(&list(&app, &mut listing).unwrap());
        assert_eq!(listed["keys"][0]["name"], "ci");
        assert!(!listed.to_string().contains(secret));
    }

    #[test]
    fn other_accounts_make_files_keys_for_themselves_only() {
        let app = test_app();
        let post = |body: &str| {
            let mut request = as_account(&app, "ann", Role::User, "POST", body);
            create(&app, &mut request)
        };
        let refused = post(r#"{"name": "spy", "scopes": ["alerts"]}"#).unwrap_err();
        assert_eq!((refused.status(), refused.code()), (403, "forbidden"));
        let mixed = post(r#"{"name": "spy", "scopes": ["files", "events"]}"#).unwrap_err();
        assert_eq!(mixed.status(), 403);
        let created = body(&post(r#"{"name": "sync", "scopes": ["files"]}"#).unwrap());
        assert_eq!(created["account"], "ann");
        assert_eq!(
            post(r#"{"name": "sync", "scopes": ["files"]}"#)
                .unwrap_err()
                .status(),
            409
        );
        // Bob sees and revokes only his own keys.
        let mut bobs_list = as_account(&app, "bob", Role::User, "GET", "");
        assert_eq!(
            body(&list(&app, &mut bobs_list).unwrap())["keys"],
            json!([])
        );
        let mut bobs_revoke = as_account(&app, "bob", Role::User, "DELETE", "");
        bobs_revoke.set_params(vec![("name", Param::Decoded("sync".into()))]);
        assert_eq!(revoke(&app, &mut bobs_revoke).unwrap_err().status(), 404);
        let mut anns_revoke = as_account(&app, "ann", Role::User, "DELETE", "");
        anns_revoke.set_params(vec![("name", Param::Decoded("sync".into()))]);
        assert_eq!(revoke(&app, &mut anns_revoke).unwrap().status(), 200);
        assert_eq!(revoke(&app, &mut anns_revoke).unwrap_err().status(), 404);
    }

    #[test]
    fn bad_fields_are_422_naming_each() {
        let app = test_app();
        let post = |body: &str| {
            let mut request = as_account(&app, "root", Role::Admin, "POST", body);
            create(&app, &mut request).unwrap_err()
        };
        let err = post(r#"{"name": "a b", "scopes": ["events", "root"], "ttl": 3}"#);
        assert_eq!((err.status(), err.code()), (422, "invalid_api_key"));
        let details = body(&err.into_response())["details"].clone();
        for (n, field) in ["name", "scopes", "ttl"].into_iter().enumerate() {
            assert_eq!(details[n]["field"], field, "{details}");
        }
        assert_eq!(post(r#"{"name": "ci"}"#).status(), 422);
        assert_eq!(post(r#"{"name": "ci", "scopes": []}"#).status(), 422);
        assert_eq!(post(r#"{"name": "ci", "scopes": [1]}"#).status(), 422);
        assert_eq!(post("[]").status(), 422);
        assert_eq!(post("{oops").status(), 400);
    }

    #[test]
    fn an_account_holds_at_most_its_share_of_keys() {
        let app = test_app();
        for n in 0..MAX_KEYS_PER_ACCOUNT {
            let body = format!(r#"{{"name": "k{n}", "scopes": ["files"]}}"#);
            let mut request = as_account(&app, "ann", Role::User, "POST", &body);
            create(&app, &mut request).unwrap();
        }
        let mut one_more = as_account(
            &app,
            "ann",
            Role::User,
            "POST",
            r#"{"name": "extra", "scopes": ["files"]}"#,
        );
        let err = create(&app, &mut one_more).unwrap_err();
        assert_eq!((err.status(), err.code()), (409, "too_many_keys"));
    }
}

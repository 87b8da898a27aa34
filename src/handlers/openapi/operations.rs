//! Each route's description in the API document: what it takes and every
//! answer it gives, read off its handler. The route table names one of
//! these functions beside each handler; `super::document` adds what follows
//! from the table itself (path parameters, security, the gate's and the
//! router's answers, the body's limit).

use serde_json::{Value, json};

use super::{Context, Operation, RequestBody, error, feature_schema, json_response, schema_ref};
use crate::alerts::{MAX_COUNT, MAX_WINDOW_SECONDS};
use crate::auth::Scope;
use crate::blob::MAX_KEY_BYTES;
use crate::handlers::alerts::MAX_EVENTS_PAGE;
use crate::handlers::files::MAX_PAGE;
use crate::handlers::predict::LEGACY_FEATURES;

/// The image types the image routes store and serve.
const IMAGE_MEDIA_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// `{"status_code", "message"}`: the seeds' success shape.
fn message(status: u16) -> Value {
    json!({
        "type": "object",
        "required": ["status_code", "message"],
        "properties": {"status_code": {"const": status}, "message": {"type": "string"}},
    })
}

fn with_headers(mut response: Value, headers: &[(&str, &str)]) -> Value {
    for (name, description) in headers {
        response["headers"][*name] =
            json!({"description": description, "schema": {"type": "string"}});
    }
    response
}

/// `429` from the login and sign-up limiters.
fn too_many() -> Value {
    with_headers(
        error(
            "Too many attempts from this address (or for this account); wait as Retry-After says",
        ),
        &[(
            "Retry-After",
            "Whole seconds until an attempt is taken again",
        )],
    )
}

/// `503` of routes that read or write the store (or hash a password).
fn unavailable(what: &str) -> Value {
    with_headers(
        error(&format!("{what}; try again (Retry-After when it is known)")),
        &[("Retry-After", "Seconds to wait, when the server knows")],
    )
}

/// The object store's failures, on the file routes.
fn storage_errors() -> [(u16, Value); 3] {
    [
        (500, error("The server's own file storage failed")),
        (
            502,
            error("The object store failed or refused this account's S3 keys"),
        ),
        (
            503,
            unavailable(
                "Storage is busy or unavailable, or the account's S3 keys cannot be read now",
            ),
        ),
    ]
}

fn header_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "header", "required": false, "description": description, "schema": {"type": "string"}})
}

fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn limit_param(default: usize, max: usize) -> Value {
    query_param(
        "limit",
        "The page size",
        json!({"type": "integer", "minimum": 1, "maximum": max, "default": default}),
    )
}

pub fn status(_: &Context) -> Operation {
    let alive = json!({"type": "object", "required": ["status"], "additionalProperties": false,
        "properties": {"status": {"const": "Alive!"}}});
    Operation::new("Liveness: `Alive!` as text, or as JSON when Accept asks for it").respond(
        200,
        json!({"description": "The server is up", "content": {
            "text/plain": {"schema": {"const": "Alive!"}},
            "application/json": {"schema": alive},
        }}),
    )
}

/// A validator's answer, for routes that carry an `ETag`.
fn not_modified() -> Value {
    with_headers(
        json!({"description": "The copy named in If-None-Match is current"}),
        &[("ETag", "The representation's tag")],
    )
}

pub fn index(_: &Context) -> Operation {
    let index = json!({"type": "object", "required": ["name", "version", "links"],
        "additionalProperties": false, "properties": {
        "name": {"const": "wren"}, "version": {"type": "string"},
        "links": {"type": "object", "additionalProperties": {"type": "string"},
            "description": "Where to go next: status, livez, readyz, docs and openapi unless --no-docs, metrics unless --no-metrics"},
    }});
    Operation::new("What this server is, and where to go next; browsers asking for HTML get the docs page")
        .respond(
            200,
            with_headers(
                json!({"description": "The index, or the docs page for `Accept: text/html`", "content": {
                    "application/json": {"schema": index},
                    "text/html": {"schema": {"type": "string"}},
                }}),
                &[("ETag", "The build's tag of the index")],
            ),
        )
        .respond(304, not_modified())
}

pub fn metrics(_: &Context) -> Operation {
    Operation::new(
        "Metrics for Prometheus: requests by route and status, latency, connections, \
         events, alerts, predictions, files, logins",
    )
    .respond(
        200,
        json!({"description": "The metrics in the Prometheus text format 0.0.4", "content": {
            "text/plain": {"schema": {"type": "string"}},
        }}),
    )
}

pub fn livez(_: &Context) -> Operation {
    Operation::new("Liveness for orchestrators: the process serves; nothing else is checked")
        .respond(
            200,
            json!({"description": "Alive", "content": {"text/plain": {"schema": {"const": "ok"}}}}),
        )
}

pub fn readyz(_: &Context) -> Operation {
    let check = json!({"enum": ["ok", "failing"]});
    let ready = json!({"type": "object", "required": ["status", "checks"],
        "additionalProperties": false, "properties": {
        "status": {"const": "ready"},
        "checks": {"type": "object", "required": ["store", "storage"], "additionalProperties": false,
            "properties": {"store": check, "storage": check}},
    }});
    Operation::new(
        "Readiness: the store answers a query and the file storage a cheap request, within 1 s each",
    )
    .respond(200, json_response("Ready", ready))
    .respond(
        503,
        unavailable("Not ready: `details` names each failing check (`store`, `storage`)"),
    )
}

pub fn docs_page(_: &Context) -> Operation {
    Operation::new("Swagger UI for this document")
        .respond(
            200,
            with_headers(
                json!({"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}),
                &[("ETag", "The build's tag of the page")],
            ),
        )
        .respond(304, not_modified())
}

pub fn docs_asset(_: &Context) -> Operation {
    Operation::new("A file of Swagger UI, when served locally (--docs-assets)")
        .respond(
            200,
            json!({"description": "The file", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}),
        )
        .respond(
            404,
            error("No such asset, or Swagger UI comes from a CDN here"),
        )
}

pub fn openapi(_: &Context) -> Operation {
    Operation::new("This document: every route, built from the route table and the served model")
        .respond(
            200,
            json_response("The OpenAPI 3.1 document", json!({"type": "object"})),
        )
}

/// A session's answer headers, after a login.
fn session_headers(response: Value) -> Value {
    with_headers(
        response,
        &[
            (
                "Set-Cookie",
                "The session cookie, `wren_session`, holding the token",
            ),
            ("Cache-Control", "`no-store`: the answer holds a token"),
        ],
    )
}

fn session_token() -> Value {
    json!({
        "token": {"type": "string", "description": "A session token for `Authorization: Bearer`"},
        "token_type": {"const": "Bearer"},
        "expires_in": {"type": "integer", "minimum": 0, "description": "Seconds the token lives"},
    })
}

/// The answers of the routes that check a password.
fn password_check(operation: Operation) -> Operation {
    operation
        .respond(
            400,
            error("A credential is missing or empty, each named in `details`"),
        )
        .respond(
            401,
            with_headers(
                error("Invalid username or password (the same answer for both)"),
                &[("WWW-Authenticate", "`Bearer`")],
            ),
        )
        .respond(429, too_many())
        .respond(
            503,
            unavailable("The password hashers are busy, or storage is unavailable"),
        )
}

pub fn login(_: &Context) -> Operation {
    let mut body = session_token();
    body["message"] = json!({"type": "string"});
    let answer = json!({"type": "object", "required": ["message", "token", "token_type", "expires_in"],
        "properties": body});
    let ok = session_headers(
        json!({"description": "Signed in; text unless Accept asks for JSON", "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/json": {"schema": answer},
        }}),
    );
    let op = Operation::new("The BeCode challenge's login: a session token and cookie")
        .describe("`username` and `password`, or the HTML form's `user` and `pass`, from JSON, a form or the query string.")
        .body(RequestBody::fields(json!({"type": "object", "properties": {
            "username": {"type": "string"}, "user": {"type": "string"},
            "password": {"type": "string"}, "pass": {"type": "string"},
        }})))
        .respond(200, ok);
    password_check(op)
}

pub fn sign_in(_: &Context) -> Operation {
    let mut body = session_token();
    body["status_code"] = json!({"const": 200});
    body["message"] = json!({"type": "string"});
    let answer = json!({"type": "object",
        "required": ["status_code", "message", "token", "token_type", "expires_in"], "properties": body});
    let op = Operation::new("The cloud service's sign-in: a session token and cookie")
        .describe("`login` and `password`, from JSON, a form or the query string.")
        .body(RequestBody::fields(credentials()))
        .respond(200, session_headers(json_response("Signed in", answer)));
    password_check(op)
}

fn credentials() -> Value {
    json!({"type": "object", "required": ["login", "password"], "properties": {
        "login": {"type": "string"}, "password": {"type": "string"},
    }})
}

pub fn sign_up(_: &Context) -> Operation {
    let mut schema = credentials();
    for field in ["access_key_id", "secret_access_key", "bucket"] {
        schema["properties"][field] = json!({"type": "string"});
    }
    let answer = json!({"type": "object", "required": ["status_code", "message", "login"], "properties": {
        "status_code": {"const": 201}, "message": {"type": "string"}, "login": {"type": "string"},
    }});
    Operation::new("Creates an account (optionally with its own S3 keys and bucket)")
        .describe("`login` and `password`, and optionally `access_key_id` with `secret_access_key` and `bucket`, from JSON, a form or the query string.")
        .body(RequestBody::fields(schema))
        .respond(201, json_response("The account was created", answer))
        .respond(400, error("Fields with problems, each named in `details` (the S3 keys refused: `access_or_secret_key`)"))
        .respond(403, error("Sign-up is turned off on this server"))
        .respond(409, error("The login is already taken"))
        .respond(429, too_many())
        .respond(502, error("The object store could not be asked about the S3 keys"))
        .respond(503, unavailable("The password hashers are busy, or storage is unavailable"))
}

pub fn logout(_: &Context) -> Operation {
    Operation::new("Signs out: revokes the session token and clears the cookie")
        .respond(
            200,
            with_headers(
                json_response("Signed out", message(200)),
                &[("Set-Cookie", "Clears the session cookie")],
            ),
        )
        .respond(503, unavailable("Storage is unavailable"))
}

/// A key as the API shows it (never the key itself, but in the `201`).
pub fn api_key_schema() -> Value {
    json!({"type": "object", "required": ["name", "scopes", "account", "created", "last_used"],
        "additionalProperties": false, "properties": {
        "name": {"type": "string"},
        "scopes": {"type": "array", "items": {"$ref": "#/components/schemas/Scope"}},
        "account": {"type": ["string", "null"], "description": "The account a files key acts for"},
        "created": {"type": "string", "format": "date-time"},
        "last_used": {"type": ["string", "null"], "format": "date-time",
            "description": "Written at most once a minute"},
    }})
}

pub fn create_key(_: &Context) -> Operation {
    let request = json!({"type": "object", "required": ["name", "scopes"], "additionalProperties": false,
    "properties": {
        "name": {"type": "string", "description": "The key's name, unique on this server"},
        "scopes": {"type": "array", "items": {"$ref": "#/components/schemas/Scope"}},
    }});
    let mut created = api_key_schema();
    created["properties"]["key"] =
        json!({"type": "string", "pattern": "^wren_", "description": "The key: shown this once"});
    if let Some(required) = created["required"].as_array_mut() {
        required.push(json!("key"));
    }
    Operation::new(
        "Creates an API key (admins: any scopes; other accounts: `files` only, for themselves)",
    )
    .body(RequestBody::json(request))
    .respond(
        201,
        with_headers(
            json_response("The key, shown once", created),
            &[("Cache-Control", "`no-store`: the answer holds the key")],
        ),
    )
    .respond(
        403,
        error("Only admins create keys with scopes other than files; or an API key called"),
    )
    .respond(
        409,
        error("A key of that name exists, or the account has as many keys as it may"),
    )
    .respond(
        422,
        error("The name or scopes have problems, each in `details`"),
    )
    .respond(
        503,
        unavailable("Storage is unavailable, or no randomness for a key"),
    )
}

pub fn list_keys(_: &Context) -> Operation {
    let keys = json!({"type": "object", "required": ["keys"], "additionalProperties": false,
        "properties": {"keys": {"type": "array", "items": schema_ref("ApiKey")}}});
    Operation::new(
        "The keys the caller manages: every key for an admin, an account's own otherwise",
    )
    .respond(200, json_response("The keys, never a key's secret", keys))
    .respond(503, unavailable("Storage is unavailable"))
}

pub fn revoke_key(_: &Context) -> Operation {
    Operation::new("Revokes a key at once")
        .respond(200, json_response("The key is revoked", message(200)))
        .respond(404, error("No key of that name that the caller manages"))
        .respond(503, unavailable("Storage is unavailable"))
}

/// A legacy prediction's answer: an integer as text, or JSON.
fn legacy_prediction(description: &str) -> Value {
    let answer = json!({"type": "object", "required": ["prediction", "model", "version"], "properties": {
        "prediction": {"type": "number"}, "model": {"type": "string"}, "version": {"type": "string"},
    }});
    let response = json!({"description": description, "content": {
        "text/plain": {"schema": {"type": "string"}},
        "application/json": {"schema": answer},
    }});
    with_headers(
        response,
        &[
            ("ETag", "When the model is deterministic"),
            (
                "Cache-Control",
                "Cacheable when the model is deterministic, else `no-store`",
            ),
        ],
    )
}

/// The answers both legacy routes give to the model's inputs.
fn legacy_errors(operation: Operation) -> Operation {
    operation
        .respond(
            409,
            error("The served model does not take these three features"),
        )
        .respond(
            422,
            error("The model gives no finite prediction for these inputs"),
        )
}

pub fn predict_path(context: &Context) -> Operation {
    let parameters = LEGACY_FEATURES.iter().map(|name| {
        let schema = context
            .model
            .feature(name)
            .map_or(json!({"type": "string"}), |(_, feature)| {
                feature_schema(&feature.kind)
            });
        json!({"name": name, "in": "path", "required": true, "schema": schema})
    });
    let op = Operation::new(
        "The BeCode challenge's prediction: one integer as text (JSON when Accept asks)",
    )
    .parameters(parameters)
    .parameter(header_param("If-None-Match", "The ETag of a cached answer"))
    .respond(200, legacy_prediction("The prediction"))
    .respond(
        304,
        json!({"description": "If-None-Match names the current answer"}),
    )
    .respond(
        400,
        error("Segments that do not parse, each named in `details`"),
    );
    legacy_errors(op)
}

pub fn predict_form(context: &Context) -> Operation {
    let mut schema = json!({"type": "object", "properties": {}});
    for name in LEGACY_FEATURES {
        if let Some((_, feature)) = context.model.feature(name) {
            schema["properties"][name] = feature_schema(&feature.kind);
        }
    }
    schema["properties"]["seller_avaible"] =
        json!({"description": "The BeCode form's spelling of seller_available"});
    let op = Operation::new("The BeCode challenge's prediction form: the same three fields")
        .describe("`seller_available`, `month` and `customer_visiting_website` from JSON, a form or the query string.")
        .body(RequestBody::fields(schema))
        .respond(200, legacy_prediction("The prediction (never cached)"))
        .respond(400, error("Fields missing or not parsing, each named in `details`"));
    legacy_errors(op)
}

pub fn predict_batch(context: &Context) -> Operation {
    let instance = schema_ref("Instance");
    let batch = json!({"type": "object", "additionalProperties": false, "required": ["instances"],
        "properties": {"instances": {"type": "array", "minItems": 1, "maxItems": context.max_batch,
            "items": instance}}});
    let predictions = json!({"type": "object", "required": ["predictions", "model"], "properties": {
        "predictions": {"type": "array", "items": {"type": "number"}},
        "model": {"type": "object", "required": ["name", "version"], "properties": {
            "name": {"type": "string"}, "version": {"type": "string"}}},
    }});
    Operation::new("Predicts for one instance or a batch")
        .body(RequestBody::json(json!({"oneOf": [instance, batch]})))
        .respond(200, json_response("One prediction per instance, in input order", predictions))
        .respond(400, error("The body is not JSON"))
        .respond(
            422,
            error("Instances with problems, each listed in `details` with its instance, field and problem"),
        )
}

pub fn model_info(_: &Context) -> Operation {
    let info = json!({"type": "object",
    "required": ["name", "version", "kind", "deterministic", "features", "training", "max_batch"],
    "properties": {
        "name": {"type": "string"}, "version": {"type": "string"}, "kind": {"type": "string"},
        "deterministic": {"type": "boolean"},
        "features": {"type": "array", "items": {"type": "object", "required": ["name", "type"],
            "properties": {"name": {"type": "string"},
                "type": {"enum": ["integer", "number", "category"]}}}},
        "training": {"type": ["object", "null"]},
        "max_batch": {"type": "integer", "minimum": 1},
    }});
    Operation::new(
        "The served model: name, version, features with their types and ranges, training metrics",
    )
    .respond(
        200,
        with_headers(
            json_response("The model's metadata", info),
            &[("ETag", "The model file's digest and the build")],
        ),
    )
    .respond(304, not_modified())
}

/// A decimal amount as the alert routes read it: a plain decimal string
/// (no exponent) or a JSON number.
fn amount(minimum: &str) -> Value {
    json!({"oneOf": [
        {"type": "string", "pattern": r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$"},
        {"type": "number"},
    ], "description": format!("A decimal, {minimum}")})
}

pub fn event(_: &Context) -> Operation {
    let alert_codes: Vec<u16> = crate::alerts::RULES.iter().map(|(code, _)| *code).collect();
    let event = json!({"type": "object", "required": ["type", "amount", "user_id", "time"], "properties": {
        "type": {"type": "string", "pattern": "^([Dd][Ee][Pp][Oo][Ss][Ii][Tt]|[Ww][Ii][Tt][Hh][Dd][Rr][Aa][Ww])$",
            "description": "deposit or withdraw, in any case"},
        "amount": amount("greater than 0"),
        "user_id": {"type": "integer", "minimum": 0},
        "time": {"type": "integer", "minimum": 0, "description": "No earlier than the user's latest event"},
    }});
    let fired = json!({"type": "object", "required": ["alert", "alert_codes", "user_id"],
        "additionalProperties": false, "properties": {
        "alert": {"type": "boolean"},
        "alert_codes": {"type": "array", "items": {"enum": alert_codes}},
        "user_id": {"type": "integer", "minimum": 0},
    }});
    Operation::new("Practice Flask's event: stores it and answers which alert codes fired")
        .describe("Open while wren listens only on loopback (or with `--open-events`), else an admin's or an `events` key's: `security` says which applies to this server.")
        .body(RequestBody::json(event))
        .respond(200, json_response("The event is stored", fired))
        .respond(400, error("Not a JSON object, or fields with problems, each named in `details`"))
        .respond(409, error("`time` is earlier than the user's latest event"))
        .respond(503, unavailable("Storage is unavailable"))
}

fn user_id_param() -> Value {
    json!({"name": "user_id", "in": "path", "required": true,
        "schema": {"type": "integer", "minimum": 0, "maximum": i64::MAX}})
}

fn thresholds(name: &str, all_required: bool) -> Value {
    let count = json!({"type": "integer", "minimum": 1, "maximum": MAX_COUNT});
    let window = json!({"type": "integer", "minimum": 0, "maximum": MAX_WINDOW_SECONDS});
    let mut properties = json!({
        "withdrawal_over": amount("at least 0"),
        "consecutive_withdrawals": count,
        "increasing_deposits": {"type": "integer", "minimum": 2, "maximum": MAX_COUNT},
        "window_deposit_total": amount("at least 0"),
        "deposit_window": window,
        "burst_count": count,
        "burst_window": window,
    });
    let names: Vec<String> = properties
        .as_object()
        .map_or(Vec::new(), |p| p.keys().cloned().collect());
    if all_required {
        // Answers carry amounts as strings.
        for field in ["withdrawal_over", "window_deposit_total"] {
            properties[field] = json!({"type": "string"});
        }
    }
    let mut schema = json!({"type": "object", "additionalProperties": false, "properties": properties,
        "description": name});
    if all_required {
        schema["required"] = json!(names);
    }
    schema
}

/// A profile as the alert-profile routes answer it.
pub fn profile_schema() -> Value {
    let mut overrides = thresholds("Per-user values that replace the rating's", false);
    for (_, property) in overrides["properties"]
        .as_object_mut()
        .into_iter()
        .flatten()
    {
        if property.get("oneOf").is_some() {
            *property = json!({"type": "string"});
        }
    }
    json!({"type": "object", "required": ["user_id", "risk", "overrides", "thresholds"],
        "additionalProperties": false, "properties": {
        "user_id": {"type": "integer", "minimum": 0},
        "risk": schema_ref("Risk"),
        "overrides": overrides,
        "thresholds": thresholds("The thresholds in force (windows in seconds)", true),
    }})
}

pub fn get_profile(_: &Context) -> Operation {
    Operation::new("A user's alert profile: risk rating, overrides, thresholds in force")
        .parameter(user_id_param())
        .respond(
            200,
            json_response(
                "The profile (the defaults for a user never set)",
                schema_ref("Profile"),
            ),
        )
        .respond(400, error("`user_id` is not a whole number of at least 0"))
}

pub fn put_profile(_: &Context) -> Operation {
    let mut overrides = thresholds("Per-user thresholds; null unsets one", false);
    for (_, property) in overrides["properties"]
        .as_object_mut()
        .into_iter()
        .flatten()
    {
        *property = json!({"oneOf": [property.clone(), {"type": "null"}]});
    }
    let update = json!({"type": "object", "additionalProperties": false, "properties": {
        "risk": schema_ref("Risk"), "overrides": overrides,
    }});
    Operation::new("Sets a user's risk rating and/or overrides; a field left out keeps its value")
        .parameter(user_id_param())
        .body(RequestBody::json(update))
        .respond(
            200,
            json_response("The profile as stored", schema_ref("Profile")),
        )
        .respond(
            400,
            error("`user_id` is not a whole number of at least 0, or the body is not JSON"),
        )
        .respond(422, error("Fields with problems, each in `details`"))
        .respond(503, unavailable("Storage is unavailable"))
}

pub fn list_events(_: &Context) -> Operation {
    let event = json!({"type": "object", "required": ["type", "amount", "time", "alert_codes"],
        "additionalProperties": false, "properties": {
        "type": {"enum": ["deposit", "withdraw"]},
        "amount": {"type": "string"},
        "time": {"type": "integer"},
        "alert_codes": {"type": "array", "items": {"type": "integer"}},
    }});
    let page = json!({"type": "object", "required": ["user_id", "events", "next_before"],
        "additionalProperties": false, "properties": {
        "user_id": {"type": "integer", "minimum": 0},
        "events": {"type": "array", "items": event},
        "next_before": {"type": ["integer", "null"], "description": "The `before` of the next page"},
    }});
    Operation::new("A user's events, newest first, a page at a time")
        .parameter(user_id_param())
        .parameter(limit_param(
            crate::handlers::alerts::DEFAULT_EVENTS_PAGE,
            MAX_EVENTS_PAGE,
        ))
        .parameter(query_param(
            "before",
            "A `next_before` value",
            json!({"type": "integer", "minimum": 1}),
        ))
        .respond(200, json_response("One page of events", page))
        .respond(
            400,
            error("`user_id`, `limit` or `before` is out of its range"),
        )
        .respond(503, unavailable("Storage is unavailable"))
}

fn key_param() -> Value {
    json!({"name": "key", "in": "path", "required": true,
        "description": format!("The file's key: up to {MAX_KEY_BYTES} bytes, and it may contain `/` (the route takes the rest of the path: `/api/file/a/b.txt` is the key `a/b.txt`)"),
        "schema": {"type": "string", "minLength": 1}})
}

/// The answer headers of a file's bytes.
fn object(response: Value) -> Value {
    with_headers(
        response,
        &[
            ("ETag", "The object's version"),
            ("Last-Modified", "When it was written"),
            ("Accept-Ranges", "`bytes`"),
        ],
    )
}

/// The answers of the routes that serve an object's bytes.
fn serving(operation: Operation, media_types: &[&str]) -> Operation {
    let bytes = |description: &str| {
        let content: serde_json::Map<String, Value> = media_types
            .iter()
            .map(|media_type| ((*media_type).to_owned(), json!({})))
            .collect();
        json!({"description": description, "content": content})
    };
    let mut partial = object(bytes("One byte range of the object"));
    partial["headers"]["Content-Range"] =
        json!({"description": "`bytes first-last/size`", "schema": {"type": "string"}});
    operation
        .parameter(header_param("Range", "One byte range: `bytes=first-last`"))
        .parameter(header_param(
            "If-Range",
            "Only the range of this version (ETag or Last-Modified)",
        ))
        .parameter(header_param("If-None-Match", "The ETag of a cached copy"))
        .respond(
            200,
            object(bytes("The object, with the media type it was stored with")),
        )
        .respond(206, partial)
        .respond(
            304,
            json!({"description": "If-None-Match names the current version"}),
        )
        .respond(404, error("No such object"))
        .respond(416, error("The range lies outside the object"))
        .respond_all(storage_errors())
}

pub fn put_file(_: &Context) -> Operation {
    let stored = json!({"type": "object", "required": ["status_code", "message", "key", "size", "etag"],
        "properties": {
        "status_code": {"enum": [200, 201]}, "message": {"type": "string"}, "key": {"type": "string"},
        "size": {"type": "integer", "minimum": 1}, "etag": {"type": "string"},
    }});
    let etag = |description: &str| {
        with_headers(
            json_response(description, stored.clone()),
            &[("ETag", "The new version")],
        )
    };
    Operation::new("Stores the body under the key, with its Content-Type")
        .parameter(key_param())
        .parameter(header_param(
            "If-None-Match",
            "`*`: create only, never replace",
        ))
        .parameter(header_param(
            "If-Match",
            "Replace only these versions (strong ETags)",
        ))
        .body(RequestBody::raw(&["*/*"], false))
        .respond(200, etag("The file was replaced"))
        .respond(201, etag("The file was created"))
        .respond(
            400,
            error("An invalid key or Content-Type, an empty body, or If-None-Match other than `*`"),
        )
        .respond(412, error("If-Match or If-None-Match does not hold"))
        .respond(
            507,
            error("The account's quota, or the server's disk, has no room for it"),
        )
        .respond_all(storage_errors())
}

pub fn get_file(_: &Context) -> Operation {
    let op = Operation::new("The file's bytes, whole or one range (HEAD: its headers)")
        .parameter(key_param())
        .respond(400, error("An invalid key"));
    serving(op, &["*/*"])
}

pub fn delete_file(_: &Context) -> Operation {
    Operation::new("Deletes the file")
        .parameter(key_param())
        .respond(200, json_response("The file is deleted", message(200)))
        .respond(400, error("An invalid key"))
        .respond(404, error("No such file"))
        .respond_all(storage_errors())
}

pub fn files_keys(_: &Context) -> Operation {
    let keys = json!({"type": "array", "items": {"type": "string"}});
    Operation::new("The cloud service's listing: every key of the account, as one JSON array")
        .respond(200, json_response("Every key, in key order", keys))
        .respond_all(storage_errors())
}

pub fn list_files(_: &Context) -> Operation {
    let file = json!({"type": "object", "required": ["key", "size", "etag", "content_type", "modified"],
        "additionalProperties": false, "properties": {
        "key": {"type": "string"}, "size": {"type": "integer", "minimum": 0}, "etag": {"type": "string"},
        "content_type": {"type": "string"}, "modified": {"type": "string", "format": "date-time"},
    }});
    let page = json!({"type": "object", "required": ["files", "truncated", "next_after"],
        "additionalProperties": false, "properties": {
        "files": {"type": "array", "items": file},
        "truncated": {"type": "boolean"},
        "next_after": {"type": ["string", "null"], "description": "The `after` of the next page"},
    }});
    Operation::new("One page of the account's files, in key order")
        .parameter(query_param(
            "prefix",
            "Only keys starting so",
            json!({"type": "string", "maxLength": MAX_KEY_BYTES}),
        ))
        .parameter(limit_param(100, MAX_PAGE))
        .parameter(query_param(
            "after",
            "A `next_after` value",
            json!({"type": "string"}),
        ))
        .respond(200, json_response("One page", page))
        .respond(400, error("`prefix` or `limit` is out of its range"))
        .respond_all(storage_errors())
}

pub fn account(_: &Context) -> Operation {
    let account = json!({"type": "object",
        "required": ["login", "role", "bytes_used", "files", "quota", "max_files"],
        "additionalProperties": false, "properties": {
        "login": {"type": "string"}, "role": {"enum": ["user", "admin"]},
        "bytes_used": {"type": "integer", "minimum": 0}, "files": {"type": "integer", "minimum": 0},
        "quota": {"type": ["integer", "null"], "description": "Bytes the account may store; null for no limit"},
        "max_files": {"type": ["integer", "null"], "description": "Files the account may store; null for no limit"},
    }});
    Operation::new("The signed-in account: its role, and what its files use of its limits")
        .respond(200, json_response("The account", account))
        .respond_all(storage_errors())
}

/// The answers of the image uploads.
fn image_upload(operation: Operation) -> Operation {
    let stored = json!({"type": "object", "required": ["server_path", "id", "url"],
        "additionalProperties": false, "properties": {
        "server_path": {"type": "string", "description": "Where it is stored: a path from the data folder, or s3://bucket/key"},
        "id": {"type": "string"}, "url": {"type": "string", "description": "Where GET finds it"},
    }});
    operation
        .respond(201, json_response("The image is stored", stored))
        .respond(400, error("No image: an empty body, or no `image` part"))
        .respond(
            507,
            error("The account's quota, or the server's disk, has no room for it"),
        )
        .respond_all(storage_errors())
}

fn image_form() -> Value {
    json!({"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "contentMediaType": "image/*",
            "description": "A PNG, JPEG, GIF or WebP image, its part's Content-Type saying which"},
    }})
}

pub fn add_image(_: &Context) -> Operation {
    let op = Operation::new(
        "The BeCode challenge's image upload: a raw image body, or a form's `image`",
    )
    .body(RequestBody::raw(&IMAGE_MEDIA_TYPES, true).or_multipart(image_form()))
    .respond(
        415,
        error("Not a PNG, JPEG, GIF or WebP image (by its Content-Type and its signature)"),
    );
    image_upload(op)
}

pub fn upload_image(_: &Context) -> Operation {
    let op = Operation::new("Uploads an image as a form's `image` field")
        .body(RequestBody::multipart(image_form()))
        .respond(
            415,
            error("Not a multipart form, or not a PNG, JPEG, GIF or WebP image"),
        );
    image_upload(op)
}

pub fn get_image(_: &Context) -> Operation {
    let id = json!({"name": "id", "in": "path", "required": true, "description": "An image's `id`",
        "schema": {"type": "string", "pattern": r"^[0-9a-f]{32}\.(png|jpg|gif|webp)$"}});
    let op = Operation::new("An uploaded image").parameter(id);
    serving(op, &IMAGE_MEDIA_TYPES)
}

/// The scopes an API key may have.
pub fn scope_schema() -> Value {
    let names: Vec<&str> = Scope::ALL.iter().map(|scope| scope.as_str()).collect();
    json!({"enum": names})
}

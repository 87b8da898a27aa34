//! The API document: `GET /openapi.json` (and `/api/v1/openapi.json`, the
//! same document), OpenAPI 3.1, built on each request from the route table
//! and the served model, so it names exactly the routes wren serves and the
//! instance schema of the model it serves now (across `--model` and
//! SIGHUP reloads).
//!
//! Each route's own part (summary, body, the answers its handler gives) is
//! a function in `operations.rs` that the table names beside the handler;
//! what follows from the table is added here, the same for every route:
//! path parameters from the pattern's typed segments, the security its
//! `Access` rule asks for, the gate's `401`/`403`, the router's `400`, and
//! for routes with a body the `408`, the `413` at the route's own limit and
//! the `415` where the media type is checked. Routes marked test-only
//! (feature `test-routes`) are left out.
//!
//! `{name:path}` parameters take the rest of the path, slashes included,
//! which OpenAPI cannot say: the document's path has `{name}` and the
//! parameter's description says so.

pub mod operations;

use serde_json::{Map, Value, json};

use sha2::{Digest as _, Sha256};

use crate::App;
use crate::handlers::rate;
use crate::handlers::session::{Access, SESSION_COOKIE};
use crate::http::{ApiError, Request, Response};
use crate::model::{FeatureKind, Model};
use crate::router::{RouteInfo, Router, Segment};
use crate::routes::{self, Doc, Rule};

/// What an operation's description may depend on besides its route.
pub struct Context<'a> {
    pub model: &'a Model,
    pub max_batch: usize,
    /// Whether request rate limits apply here (`--rate-limiting`): every
    /// route but the health checks may then answer `429`.
    pub rate_limited: bool,
}

/// A route's description in the document: a function of the context.
pub type Describe = fn(&Context) -> Operation;

/// One operation as its route describes it.
pub struct Operation {
    summary: &'static str,
    description: Option<&'static str>,
    /// Query and header parameters, and path parameters whose schema says
    /// more than the pattern's segment type (those replace the default).
    parameters: Vec<Value>,
    body: Option<RequestBody>,
    /// Status and Response Object, in the order given.
    responses: Vec<(u16, Value)>,
}

impl Operation {
    pub fn new(summary: &'static str) -> Self {
        Operation {
            summary,
            description: None,
            parameters: Vec::new(),
            body: None,
            responses: Vec::new(),
        }
    }

    pub fn describe(mut self, description: &'static str) -> Self {
        self.description = Some(description);
        self
    }

    pub fn parameter(mut self, parameter: Value) -> Self {
        self.parameters.push(parameter);
        self
    }

    pub fn parameters(mut self, parameters: impl IntoIterator<Item = Value>) -> Self {
        self.parameters.extend(parameters);
        self
    }

    pub fn body(mut self, body: RequestBody) -> Self {
        self.body = Some(body);
        self
    }

    pub fn respond(mut self, status: u16, response: Value) -> Self {
        self.responses.push((status, response));
        self
    }

    pub fn respond_all(self, responses: impl IntoIterator<Item = (u16, Value)>) -> Self {
        responses
            .into_iter()
            .fold(self, |op, (status, response)| op.respond(status, response))
    }

    fn responds(&self, status: u16) -> bool {
        self.responses.iter().any(|(s, _)| *s == status)
    }

    /// Adds `response` for `status` unless the route described its own.
    fn respond_unless_told(&mut self, status: u16, response: Value) {
        if !self.responds(status) {
            self.responses.push((status, response));
        }
    }
}

/// A request body: its media types, and whether others are refused (`415`).
pub struct RequestBody {
    content: Vec<(&'static str, Value)>,
    required: bool,
    checks_media_type: bool,
}

impl RequestBody {
    /// A JSON document. The handler parses the bytes whatever the
    /// `Content-Type` says, so there is no `415`.
    pub fn json(schema: Value) -> Self {
        RequestBody {
            content: vec![("application/json", json!({"schema": schema}))],
            required: true,
            checks_media_type: false,
        }
    }

    /// Named fields (`http::Fields`): a JSON object, a urlencoded or
    /// multipart form, or none (the query string may hold them); other
    /// media types are `415`. A form's values are text.
    pub fn fields(schema: Value) -> Self {
        let mut form = schema.clone();
        if let Some(properties) = form["properties"].as_object_mut() {
            for property in properties.values_mut() {
                let description = property.get("description").cloned();
                *property = json!({"type": "string"});
                if let Some(description) = description {
                    property["description"] = description;
                }
            }
        }
        RequestBody {
            content: vec![
                ("application/json", json!({"schema": schema})),
                (
                    "application/x-www-form-urlencoded",
                    json!({"schema": form.clone()}),
                ),
                ("multipart/form-data", json!({"schema": form})),
            ],
            required: false,
            checks_media_type: true,
        }
    }

    /// A `multipart/form-data` form; other media types are `415`.
    pub fn multipart(schema: Value) -> Self {
        RequestBody {
            content: vec![("multipart/form-data", json!({"schema": schema}))],
            required: true,
            checks_media_type: true,
        }
    }

    /// Raw bytes of `media_types` (OpenAPI 3.1: no schema); `checked` when
    /// others are refused with `415`.
    pub fn raw(media_types: &[&'static str], checked: bool) -> Self {
        RequestBody {
            content: media_types.iter().map(|t| (*t, json!({}))).collect(),
            required: true,
            checks_media_type: checked,
        }
    }

    /// These raw bytes, or a `multipart/form-data` form instead.
    pub fn or_multipart(mut self, schema: Value) -> Self {
        self.content
            .push(("multipart/form-data", json!({"schema": schema})));
        self
    }

    fn to_json(&self) -> Value {
        let content: Map<String, Value> = self
            .content
            .iter()
            .map(|(media_type, object)| ((*media_type).to_owned(), object.clone()))
            .collect();
        json!({"required": self.required, "content": content})
    }
}

/// A reference to a schema of the document's components.
pub fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A response in the one error shape.
pub fn error(description: &str) -> Value {
    json_response(description, schema_ref("Error"))
}

/// A JSON response with `schema`.
pub fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// `GET /openapi.json` and `GET /api/v1/openapi.json`.
pub fn openapi(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let model = app.model.get();
    let context = Context {
        model: &model,
        max_batch: app.config.model.max_batch,
        rate_limited: app.config.rate_limits.enabled(),
    };
    let body = document(&routes::table(app), &context).to_string();
    // The document follows the model (a SIGHUP may swap it) and the
    // settings; its own digest is the one tag that is always right.
    let mut etag = String::with_capacity(34);
    etag.push('"');
    crate::hex::push(&mut etag, &Sha256::digest(body.as_bytes())[..16]);
    etag.push('"');
    let response = if request.if_none_match(&etag) {
        Response::new(304)
    } else {
        Response::new(200)
            .with_header("Content-Type", "application/json")
            .with_body(body.into_bytes())
    };
    Ok(response
        .with_header("ETag", etag)
        .with_header("Cache-Control", "no-cache"))
}

/// The document of every route of `router` but the test-only ones.
pub fn document(router: &Router<App, Rule>, context: &Context) -> Value {
    let mut paths = Map::new();
    for route in router.routes() {
        let Doc::Operation(describe) = route.policy.doc else {
            continue;
        };
        let operation = operation(&route, describe(context), context);
        let item = paths
            .entry(spec_path(route.segments))
            .or_insert_with(|| json!({}));
        item[route.method.to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "wren",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Every route this server serves. Predictions come from the model '{}' version {}. \
                 Every error has the one JSON shape of `Error`. Besides the answers each operation lists, \
                 any request may be answered by the HTTP engine before it reaches a route: \
                 400 (a malformed request), 408 (a head or body too slow), 413, 414, 417, 431, 501, 505, \
                 and 503 when the server is at its connection limits. A path no route has is 404; a \
                 method a path does not take is 405 with `Allow`. HEAD is served wherever GET is, without \
                 the body.",
                context.model.name, context.model.version
            ),
        },
        "paths": paths,
        "components": components(context.model),
    })
}

/// The Operation Object of `route`: its own description and what its place
/// in the table adds.
fn operation(route: &RouteInfo<'_, Rule>, mut op: Operation, context: &Context) -> Value {
    let mut parameters = path_parameters(route.segments, &op.parameters);
    parameters.extend(op.parameters.iter().filter(|p| p["in"] != "path").cloned());
    op.respond_unless_told(
        400,
        error("A malformed request: a path or parameter that does not parse, or a malformed body"),
    );
    let access = route.policy.access;
    if access != Access::Open {
        op.respond_unless_told(
            401,
            json!({
                "description": "No credentials, or ones not (or no longer) valid",
                "headers": {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
                "content": {"application/json": {"schema": schema_ref("Error")}},
            }),
        );
    }
    // The metrics token is checked against the configuration, not the store.
    if access != Access::Open && access != Access::MetricsToken {
        op.respond_unless_told(
            403,
            error("Valid credentials that this route's rule does not admit"),
        );
        op.respond_unless_told(
            503,
            error("Storage is unavailable, so the credentials cannot be checked"),
        );
    }
    if context.rate_limited && !rate::HEALTH_PATHS.contains(&route.pattern) {
        let field =
            |description: &str| json!({"description": description, "schema": {"type": "string"}});
        op.respond_unless_told(
            429,
            json!({
                "description": "Past this client's request rate (its address, account or API key)",
                "headers": {
                    "Retry-After": field("Whole seconds until a request is taken again"),
                    "RateLimit-Policy": field("The limits that apply (draft-ietf-httpapi-ratelimit-headers)"),
                    "RateLimit": field("What is left of each limit, and when it refills"),
                },
                "content": {"application/json": {"schema": schema_ref("Error")}},
            }),
        );
    }
    if let Some(checks_media_type) = op.body.as_ref().map(|body| body.checks_media_type) {
        let limit = route.body_limit;
        op.respond_unless_told(408, error("The body arrived too slowly"));
        op.respond_unless_told(
            413,
            error(&format!(
                "The body is larger than this route's limit of {limit} bytes"
            )),
        );
        if checks_media_type {
            op.respond_unless_told(415, error("The body's Content-Type is not one listed"));
        }
    }
    let mut responses = Map::new();
    op.responses.sort_by_key(|(status, _)| *status);
    for (status, response) in op.responses {
        responses.insert(status.to_string(), response);
    }
    let mut object = json!({"summary": op.summary, "responses": responses});
    if let Some(description) = op.description {
        object["description"] = json!(description);
    }
    if !parameters.is_empty() {
        object["parameters"] = json!(parameters);
    }
    if let Some(body) = &op.body {
        object["requestBody"] = body.to_json();
    }
    if let Some(security) = security(access) {
        object["security"] = security;
    }
    object
}

/// The document's path of a pattern: each parameter as `{name}`.
fn spec_path(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|segment| match segment {
            Segment::Literal(text) => format!("/{text}"),
            Segment::Str(name) | Segment::Int(name) | Segment::Rest(name) => format!("/{{{name}}}"),
        })
        .collect()
}

/// The pattern's parameters, in path order: as the operation gave them, or
/// else from the segment's type.
fn path_parameters(segments: &[Segment], given: &[Value]) -> Vec<Value> {
    segments
        .iter()
        .filter_map(|segment| {
            let (name, schema, description) = match segment {
                Segment::Literal(_) => return None,
                Segment::Str(name) => (name, json!({"type": "string"}), None),
                Segment::Int(name) => (name, json!({"type": "integer", "format": "int64"}), None),
                Segment::Rest(name) => (
                    name,
                    json!({"type": "string"}),
                    Some("The rest of the path, which may contain `/`"),
                ),
            };
            let own = given
                .iter()
                .find(|p| p["in"] == "path" && p["name"] == *name);
            Some(own.cloned().unwrap_or_else(|| {
                let mut parameter =
                    json!({"name": name, "in": "path", "required": true, "schema": schema});
                if let Some(description) = description {
                    parameter["description"] = json!(description);
                }
                parameter
            }))
        })
        .collect()
}

/// The credentials a rule takes, as Security Requirements (any one
/// suffices); role names say what else the rule asks of them.
fn security(access: Access) -> Option<Value> {
    let account = |role: &[&str]| {
        vec![
            json!({"sessionToken": role}),
            json!({"sessionCookie": role}),
        ]
    };
    let key = |scope: &str| vec![json!({"apiKey": [scope]}), json!({"apiKeyBearer": [scope]})];
    let requirements = match access {
        Access::Open => return None,
        Access::Account => account(&[]),
        Access::OwnFiles => [account(&[]), key("files")].concat(),
        Access::AdminOrKey(scope) => [account(&["admin"]), key(scope.as_str())].concat(),
        Access::MetricsToken => vec![json!({"metricsToken": []})],
    };
    Some(json!(requirements))
}

fn components(model: &Model) -> Value {
    let properties: Map<String, Value> = model
        .features
        .iter()
        .map(|feature| (feature.name.clone(), feature_schema(&feature.kind)))
        .collect();
    let names: Vec<&str> = model.features.iter().map(|f| f.name.as_str()).collect();
    json!({
        "schemas": {
            "Instance": {
                "type": "object",
                "properties": properties,
                "required": names,
                "additionalProperties": false,
            },
            "Error": {
                "type": "object",
                "required": ["status_code", "error", "message"],
                "additionalProperties": false,
                "properties": {
                    "status_code": {"type": "integer", "minimum": 400, "maximum": 599},
                    "error": {"type": "string", "description": "A machine-readable code"},
                    "message": {"type": "string"},
                    "details": {"type": "array", "items": schema_ref("Problem")},
                },
            },
            "Problem": {
                "type": "object",
                "required": ["problem"],
                "additionalProperties": false,
                "properties": {
                    "instance": {"type": "integer", "minimum": 0, "description": "The batch instance"},
                    "field": {"type": "string"},
                    "problem": {"type": "string"},
                    "reason": {"type": "string", "description": "Why, in another party's words"},
                },
            },
            "ApiKey": operations::api_key_schema(),
            "Scope": operations::scope_schema(),
            "Profile": operations::profile_schema(),
            "Risk": {"enum": ["low", "medium", "high"]},
        },
        "securitySchemes": {
            "sessionToken": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A session token from POST /login or /api/sign_in; it carries the account's role (`admin` where the requirement names it)",
            },
            "sessionCookie": {
                "type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                "description": "The session cookie the sign-in routes set",
            },
            "apiKey": {
                "type": "apiKey", "in": "header", "name": "X-API-Key",
                "description": "An API key (`wren_…`); the requirement names the scope it needs",
            },
            "apiKeyBearer": {
                "type": "http", "scheme": "bearer", "bearerFormat": "wren_…",
                "description": "An API key as `Authorization: Bearer wren_…`; the requirement names the scope it needs",
            },
            "metricsToken": {
                "type": "http", "scheme": "bearer",
                "description": "The server's WREN_METRICS_TOKEN, when it is set",
            },
        },
    })
}

/// A feature's JSON schema: what `POST /api/v1/predict` accepts for it.
pub fn feature_schema(kind: &FeatureKind) -> Value {
    match kind {
        FeatureKind::Integer { min, max } => {
            json!({"type": "integer", "minimum": min, "maximum": max})
        }
        FeatureKind::Number { min, max } => {
            let mut schema = json!({"type": "number"});
            if let Some(min) = min {
                schema["minimum"] = json!(min);
            }
            if let Some(max) = max {
                schema["maximum"] = json!(max);
            }
            schema
        }
        FeatureKind::Category {
            values, aliases, ..
        } => {
            let aliases: Vec<&str> = aliases.iter().map(|(alias, _)| alias.as_str()).collect();
            json!({
                "type": "string",
                "examples": values,
                "description": format!(
                    "one of {} (ASCII case ignored){}",
                    values.join(", "),
                    if aliases.is_empty() {
                        String::new()
                    } else {
                        format!(", or an alias: {}", aliases.join(", "))
                    }
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::*;
use crate::app::test_app;
use crate::handlers::predict::LEGACY_FEATURES;

fn served(app: &App, path: &str) -> Value {
    let response = openapi(app, &mut Request::new("GET", path)).unwrap();
    assert_eq!(response.header("content-type"), Some("application/json"));
    serde_json::from_slice(response.body_bytes().unwrap()).unwrap()
}

/// Every documented route as (METHOD, document path), and every route of
/// the table but the test-only ones, the same way.
fn both_sides(app: &App, document: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert(format!("{} {path}", method.to_ascii_uppercase()));
        }
    }
    let routed = routes::table(app)
        .routes()
        .filter(|route| !matches!(route.policy.doc, Doc::TestOnly))
        .map(|route| format!("{} {}", route.method, spec_path(route.segments)))
        .collect();
    (documented, routed)
}

#[test]
fn every_route_is_documented_and_every_operation_routed() {
    let app = test_app();
    let document = served(&app, "/openapi.json");
    let (documented, routed) = both_sides(&app, &document);
    let missing: Vec<&String> = routed.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    let unrouted: Vec<&String> = documented.difference(&routed).collect();
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );
    // Two routes on one method and path would share one operation.
    let table = routes::table(&app);
    let documented_routes = table
        .routes()
        .filter(|route| !matches!(route.policy.doc, Doc::TestOnly))
        .count();
    assert_eq!(documented_routes, routed.len());
    assert!(routed.contains("GET /api/file/{key}"), "{routed:?}");
    assert!(routed.contains("GET /openapi.json"));
}

#[cfg(feature = "test-routes")]
#[test]
fn test_routes_are_routed_but_never_documented() {
    let app = test_app();
    let table = routes::table(&app);
    assert!(
        table
            .routes()
            .any(|route| matches!(route.policy.doc, Doc::TestOnly))
    );
    let text = served(&app, "/openapi.json")["paths"].to_string();
    assert!(!text.contains("__test"), "{text}");
}

/// Every `$ref` in `value`.
fn refs<'v>(value: &'v Value, found: &mut Vec<&'v str>) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => found.push(target),
                    _ => refs(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
        _ => {}
    }
}

/// The value a local JSON pointer reference (`#/a/b`) names.
fn resolve<'v>(document: &'v Value, reference: &str) -> Option<&'v Value> {
    document.pointer(reference.strip_prefix('#')?)
}

#[test]
fn the_document_is_structurally_valid_openapi_3_1() {
    let app = test_app();
    let document = served(&app, "/openapi.json");
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["info"]["title"].is_string() && document["info"]["version"].is_string());
    let mut found = Vec::new();
    refs(&document, &mut found);
    assert!(found.len() > 10);
    for reference in found {
        assert!(
            resolve(&document, reference).is_some(),
            "unresolved $ref {reference}"
        );
    }
    let schemes = document["components"]["securitySchemes"]
        .as_object()
        .unwrap();
    let methods = ["get", "put", "post", "delete"];
    for (path, item) in document["paths"].as_object().unwrap() {
        assert!(path.starts_with('/'), "{path}");
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            assert!(methods.contains(&method.as_str()), "{at}");
            assert!(op["summary"].is_string(), "{at}: no summary");
            // Every templated name is declared once as a required path
            // parameter, and no other path parameter is.
            let parameters = op["parameters"].as_array().cloned().unwrap_or_default();
            let declared: Vec<&str> = parameters
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{at}: {p}");
                    p["name"].as_str().unwrap()
                })
                .collect();
            assert_eq!(declared.len(), templated.len(), "{at}: {declared:?}");
            assert_eq!(
                declared.into_iter().collect::<BTreeSet<_>>(),
                templated,
                "{at}"
            );
            for parameter in &parameters {
                assert!(
                    ["path", "query", "header", "cookie"]
                        .contains(&parameter["in"].as_str().unwrap())
                );
                assert!(parameter["schema"].is_object(), "{at}: {parameter}");
            }
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{at}: no responses");
            for (status, response) in responses {
                let code: u16 = status.parse().unwrap_or_else(|_| panic!("{at}: {status}"));
                assert!((100..600).contains(&code), "{at}: {status}");
                assert!(response["description"].is_string(), "{at} {status}");
                assert!(
                    responses.keys().any(|s| s.starts_with('2') || s == "304"),
                    "{at}: no success"
                );
                // Errors have the one shape.
                if code >= 400 {
                    assert_eq!(
                        response["content"]["application/json"]["schema"],
                        json!({"$ref": "#/components/schemas/Error"}),
                        "{at} {status}"
                    );
                }
            }
            for requirement in op["security"].as_array().into_iter().flatten() {
                for scheme in requirement.as_object().unwrap().keys() {
                    assert!(schemes.contains_key(scheme), "{at}: {scheme}");
                }
            }
            if let Some(body) = op.get("requestBody") {
                assert!(!body["content"].as_object().unwrap().is_empty(), "{at}");
                assert!(responses.contains_key("413"), "{at}");
            }
        }
    }
}

#[test]
fn both_addresses_serve_the_same_document() {
    let app = test_app();
    assert_eq!(
        served(&app, "/openapi.json"),
        served(&app, "/api/v1/openapi.json")
    );
}

#[test]
fn security_follows_each_route_s_access_rule() {
    let app = test_app();
    let document = served(&app, "/openapi.json");
    let op = |method: &str, path: &str| document["paths"][path][method].clone();
    let names = |op: &Value| -> Vec<String> {
        op["security"]
            .as_array()
            .map(|requirements| requirements.iter().map(|r| r.to_string()).collect())
            .unwrap_or_default()
    };
    assert!(op("get", "/status").get("security").is_none());
    assert!(
        !op("get", "/status")["responses"]
            .as_object()
            .unwrap()
            .contains_key("401")
    );
    assert_eq!(
        names(&op("get", "/api/v1/keys")),
        [r#"{"sessionToken":[]}"#, r#"{"sessionCookie":[]}"#]
    );
    assert_eq!(
        names(&op("get", "/api/v1/files")),
        [
            r#"{"sessionToken":[]}"#,
            r#"{"sessionCookie":[]}"#,
            r#"{"apiKey":["files"]}"#,
            r#"{"apiKeyBearer":["files"]}"#
        ]
    );
    assert_eq!(
        names(&op("put", "/api/v1/users/{user_id}/alert-profile")),
        [
            r#"{"sessionToken":["admin"]}"#,
            r#"{"sessionCookie":["admin"]}"#,
            r#"{"apiKey":["alerts"]}"#,
            r#"{"apiKeyBearer":["alerts"]}"#
        ]
    );
    let files = op("get", "/api/v1/files");
    for status in ["401", "403"] {
        assert!(files["responses"][status].is_object(), "{status}");
    }
    assert_eq!(
        document["components"]["securitySchemes"]["sessionCookie"]["name"],
        SESSION_COOKIE
    );
    // The test app listens on loopback: events are open there.
    assert!(op("post", "/event").get("security").is_none());
}

#[test]
fn parameters_come_from_the_typed_segments() {
    let app = test_app();
    let document = served(&app, "/openapi.json");
    let parameters =
        |method: &str, path: &str| document["paths"][path][method]["parameters"].clone();
    let key = &parameters("delete", "/api/file/{key}")[0];
    assert_eq!(key["schema"]["type"], "string");
    assert!(key["description"].as_str().unwrap().contains('/'));
    assert_eq!(
        parameters("get", "/api/v1/users/{user_id}/events")[0]["schema"]["type"],
        "integer"
    );
    assert_eq!(
        parameters("delete", "/api/v1/keys/{name}")[0]["schema"],
        json!({"type": "string"})
    );
    let put = &document["paths"]["/api/file/{key}"]["put"];
    assert_eq!(
        put["responses"]["413"]["description"],
        format!(
            "The body is larger than this route's limit of {} bytes",
            app.config.storage.max_object_size
        )
    );
    assert!(put["responses"].get("415").is_none());
    let image = &document["paths"]["/api/v1/images"]["post"];
    assert!(image["responses"]["415"].is_object());
}

#[test]
fn the_document_follows_the_model() {
    let app = test_app();
    let document = served(&app, "/api/v1/openapi.json");
    let instance = &document["components"]["schemas"]["Instance"];
    assert_eq!(instance["required"], json!(LEGACY_FEATURES));
    assert_eq!(
        instance["properties"]["seller_available"],
        json!({"type": "integer", "minimum": 0, "maximum": 1000})
    );
    let month = &instance["properties"]["month"];
    assert_eq!(month["type"], "string");
    assert_eq!(month["examples"][5], "june");
    assert!(month["description"].as_str().unwrap().contains("jun"));
    let batch = &document["paths"]["/api/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]["oneOf"][1];
    assert_eq!(batch["properties"]["instances"]["maxItems"], 1000);
    let legacy = &document["paths"]["/predict/{seller_available}/{month}/{customer_visiting_website}"]
        ["get"];
    assert_eq!(legacy["parameters"][2]["schema"]["maximum"], 1_000_000);
    assert_eq!(legacy["parameters"][2]["name"], "customer_visiting_website");
}

/// Whether `value` conforms to `schema`, for the keywords this document
/// uses (`$ref`, `type`, `const`, `enum`, `required`, `properties`,
/// `additionalProperties: false`, `items`, `oneOf`, `allOf`); the first
/// disagreement, with where it is.
fn conforms(document: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let target = resolve(document, reference).ok_or(format!("{at}: {reference}"))?;
        return conforms(document, target, value, at);
    }
    let fail = |what: &str| Err(format!("{at}: {what}, got {value}"));
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
            name => vec![name.as_str().unwrap_or("")],
        };
        let fits = types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => false,
        });
        if !fits {
            return fail(&format!("not of type {types:?}"));
        }
    }
    if schema.get("const").is_some_and(|c| c != value) {
        return fail("not the const");
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        return fail("not in the enum");
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        conforms(document, part, value, at)?;
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let matching = options
            .iter()
            .filter(|option| conforms(document, option, value, at).is_ok())
            .count();
        if matching != 1 {
            return fail(&format!("{matching} of oneOf match"));
        }
    }
    if let Value::Object(object) = value {
        for name in schema["required"].as_array().into_iter().flatten() {
            if !object.contains_key(name.as_str().unwrap_or("")) {
                return fail(&format!("'{name}' is missing"));
            }
        }
        for (name, inner) in object {
            match schema["properties"].get(name) {
                Some(property) => conforms(document, property, inner, &format!("{at}.{name}"))?,
                None if schema["additionalProperties"] == false => {
                    return fail(&format!("'{name}' is not documented"));
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(item)) = (value, schema.get("items")) {
        for (i, inner) in items.iter().enumerate() {
            conforms(document, item, inner, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Asserts that `response` is one `method path` documents: its status,
/// and its JSON body against the schema of that status.
fn assert_documented(document: &Value, method: &str, path: &str, response: Response) {
    let status = response.status().to_string();
    let documented = &document["paths"][path][method]["responses"][&status];
    assert!(
        documented.is_object(),
        "{method} {path} answered an undocumented {status}"
    );
    let schema = &documented["content"]["application/json"]["schema"];
    let body: Value = serde_json::from_slice(response.body_bytes().unwrap()).unwrap();
    if let Err(disagreement) = conforms(
        document,
        schema,
        &body,
        &format!("{method} {path} {status}"),
    ) {
        panic!("{disagreement}");
    }
}

#[test]
fn the_conformance_check_can_fail() {
    let document = json!({"components": {"schemas": {"A": {"type": "object", "required": ["a"],
        "additionalProperties": false, "properties": {"a": {"type": "integer"}}}}}});
    let schema = json!({"$ref": "#/components/schemas/A"});
    assert!(conforms(&document, &schema, &json!({"a": 1}), "").is_ok());
    assert!(conforms(&document, &schema, &json!({"a": "1"}), "").is_err());
    assert!(conforms(&document, &schema, &json!({"a": 1, "b": 2}), "").is_err());
    assert!(conforms(&document, &schema, &json!({}), "").is_err());
}

#[test]
fn real_answers_conform_to_the_document() {
    use crate::auth::Role;
    use crate::handlers::{accounts, alerts, basics, files, keys, predict};
    use crate::http::Body;

    let app = test_app();
    let document = served(&app, "/openapi.json");
    let check = |method: &str, path: &str, result: Result<Response, ApiError>| {
        let response = result.map_or_else(ApiError::into_response, Response::answered);
        let status = response.status();
        assert_documented(&document, method, path, response);
        status
    };
    let json_body = |method: &str, target: &str, body: Value| {
        Request::new(method, target)
            .with_header("Content-Type", "application/json")
            .with_body(Body::from_bytes(body.to_string().into_bytes()))
    };
    app.store
        .upsert_account("root", "$argon2id$hash", Role::Admin)
        .unwrap();
    let token = app.tokens.issue("root", Role::Admin).unwrap().0;
    let signed = |request: Request<'static>| {
        request.with_header("Authorization", &format!("Bearer {token}"))
    };

    let mut status = Request::new("GET", "/status").with_header("Accept", "application/json");
    assert_eq!(
        check("get", "/status", basics::status(&app, &mut status)),
        200
    );
    let mut created = signed(json_body(
        "POST",
        "/api/v1/keys",
        json!({"name": "ci", "scopes": ["alerts"]}),
    ));
    assert_eq!(
        check("post", "/api/v1/keys", keys::create(&app, &mut created)),
        201
    );
    let mut wrong = signed(json_body(
        "POST",
        "/api/v1/keys",
        json!({"name": "x", "colour": 1}),
    ));
    assert_eq!(
        check("post", "/api/v1/keys", keys::create(&app, &mut wrong)),
        422
    );
    let mut listed = signed(Request::new("GET", "/api/v1/keys"));
    assert_eq!(
        check("get", "/api/v1/keys", keys::list(&app, &mut listed)),
        200
    );
    let event = json!({"type": "Withdraw", "amount": "150.5", "user_id": 3, "time": 10});
    assert_eq!(
        check(
            "post",
            "/event",
            alerts::event(&app, &mut json_body("POST", "/event", event)),
        ),
        200
    );
    let bad_event = json!({"type": "gift", "amount": -1});
    assert_eq!(
        check(
            "post",
            "/event",
            alerts::event(&app, &mut json_body("POST", "/event", bad_event)),
        ),
        400
    );
    let path = "/api/v1/users/{user_id}/alert-profile";
    let with_user = |mut request: Request<'static>| {
        request.set_params(vec![("user_id", crate::http::request::Param::Int(3))]);
        request
    };
    let update = json!({"risk": "high", "overrides": {"burst_count": 9, "withdrawal_over": "75"}});
    let mut put = with_user(json_body("PUT", path, update));
    assert_eq!(check("put", path, alerts::put_profile(&app, &mut put)), 200);
    let mut get = with_user(Request::new("GET", path));
    assert_eq!(check("get", path, alerts::get_profile(&app, &mut get)), 200);
    let mut events = with_user(Request::new("GET", "/api/v1/users/3/events?limit=1"));
    assert_eq!(
        check(
            "get",
            "/api/v1/users/{user_id}/events",
            alerts::list_events(&app, &mut events),
        ),
        200
    );
    let mut model = Request::new("GET", "/api/v1/model");
    assert_eq!(
        check(
            "get",
            "/api/v1/model",
            predict::model_info(&app, &mut model),
        ),
        200
    );
    let instance =
        json!({"seller_available": 3, "month": "june", "customer_visiting_website": 120});
    let mut batch = json_body("POST", "/api/v1/predict", json!({"instances": [instance]}));
    assert_eq!(
        check(
            "post",
            "/api/v1/predict",
            predict::predict_batch(&app, &mut batch),
        ),
        200
    );
    let mut account = signed(Request::new("GET", "/api/v1/account"));
    assert_eq!(
        check("get", "/api/v1/account", files::account(&app, &mut account)),
        200
    );
    let mut page = signed(Request::new("GET", "/api/v1/files"));
    assert_eq!(
        check("get", "/api/v1/files", files::list_files(&app, &mut page)),
        200
    );
    let mut sign_in = json_body("POST", "/api/sign_in", json!({"login": "root"}));
    assert_eq!(
        check(
            "post",
            "/api/sign_in",
            accounts::sign_in(&app, &mut sign_in),
        ),
        400
    );
}

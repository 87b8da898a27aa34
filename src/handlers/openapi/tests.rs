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

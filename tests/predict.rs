//! Predictions and the inference API over real sockets.

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, Response, Server, temp_dir};
use serde_json::{Value, json};

const JSON: &str = "application/json";
const ACCEPT_JSON: &str = "Accept: application/json\r\n";

fn integer(response: &Response) -> i64 {
    assert_eq!(response.status, 200, "{}", response.text());
    response.text().parse().expect("an integer body")
}

fn predict_batch(server: &Server, body: &Value) -> Response {
    server.post("/api/v1/predict", JSON, &body.to_string(), "")
}

/// A linear model over the three sales features whose every answer is
/// `answer` (all coefficients zero), or over other features when
/// `features` is given.
fn constant_model(answer: f64, features: Option<Value>) -> Value {
    let features = features.unwrap_or_else(|| {
        json!([
            {"type": "integer", "name": "seller_available", "min": 0, "max": 1000},
            {"type": "category", "name": "month", "encoding": "ordinal",
             "values": ["january", "february", "march", "april", "may", "june", "july",
                        "august", "september", "october", "november", "december"]},
            {"type": "integer", "name": "customer_visiting_website", "min": 0, "max": 1000000}
        ])
    });
    let width = features.as_array().unwrap().len();
    json!({
        "format": "wren-model/1", "name": "constant", "version": answer.to_string(),
        "features": features,
        "model": {"kind": "linear", "intercept": answer, "coefficients": vec![0.0; width]},
        "output": {"round": true}
    })
}

fn write_model(path: &Path, model: &Value) {
    // Written beside and renamed, as a deployment would, so that a reload
    // never reads half a file.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, model.to_string()).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

#[test]
fn the_seed_route_answers_with_caching_headers() {
    let server = Server::start(&[]);
    let response = server.get("/predict/123/december/4");
    let value = integer(&response);
    assert!((2000..=5000).contains(&value));
    assert_eq!(response.header("cache-control"), Some("max-age=300"));
    assert_eq!(response.header("vary"), Some("Accept"));
    let etag = response.header("etag").unwrap().to_owned();

    // Same inputs in other spellings: same answer, same tag.
    for path in [
        "/predict/123/DEC/4",
        "/predict/123/12/4",
        "/predict/123/December/4",
    ] {
        let other = server.get(path);
        assert_eq!(integer(&other), value, "{path}");
        assert_eq!(other.header("etag"), Some(etag.as_str()), "{path}");
    }
    let not_modified = server.get_with(
        "/predict/123/december/4",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    assert!(not_modified.body.is_empty());
    let stale = server.get_with("/predict/123/december/4", "If-None-Match: \"other\"\r\n");
    assert_eq!(integer(&stale), value);

    let json = server.get_with("/predict/123/december/4", ACCEPT_JSON);
    let body = json.json();
    assert_eq!(body["prediction"], json!(value));
    assert_eq!(body["model"], "sales");
    assert!(body["version"].is_string());
    assert_ne!(
        json.header("etag"),
        Some(etag.as_str()),
        "one tag per representation"
    );

    // The largest inputs the route accepts are answered, clamped.
    let huge = integer(&server.get("/predict/1000/june/1000000"));
    assert!((2000..=5000).contains(&huge));
}

#[test]
fn each_bad_segment_gets_400_naming_it() {
    let server = Server::start(&[]);
    for (path, parameter) in [
        ("/predict/-1/may/4", "seller_available"),
        ("/predict/ten/may/4", "seller_available"),
        ("/predict/1001/may/4", "seller_available"),
        ("/predict/1/smarch/4", "month"),
        ("/predict/1/13/4", "month"),
        ("/predict/1/may/4.5", "customer_visiting_website"),
        ("/predict/1/may/1000001", "customer_visiting_website"),
    ] {
        let response = server.get(path);
        assert_eq!(response.status, 400, "{path}");
        let message = response.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(parameter), "{path}: {message}");
    }
    let message = server.get("/predict/1/smarch/4").json()["message"].clone();
    assert!(message.as_str().unwrap().contains("unknown month 'smarch'"));
    assert_eq!(server.get("/predict/1/may").status, 404);
}

#[test]
fn the_form_route_and_the_batch_api_give_the_same_integers() {
    let server = Server::start(&[]);
    let expected = integer(&server.get("/predict/7/march/250"));
    let form = server.post(
        "/predict",
        "application/x-www-form-urlencoded",
        "seller_avaible=7&month=mar&customer_visiting_website=250",
        "",
    );
    assert_eq!(integer(&form), expected);
    let json_form = server.post(
        "/predict",
        JSON,
        r#"{"seller_available": "7", "month": "March", "customer_visiting_website": 250}"#,
        "",
    );
    assert_eq!(integer(&json_form), expected);
    let missing = server.post("/predict", JSON, r#"{"month": "march"}"#, "");
    assert_eq!(missing.status, 400);
    assert!(missing.text().contains("seller_available"));

    let batch = predict_batch(
        &server,
        &json!({"instances": [
            {"seller_available": 7, "month": "march", "customer_visiting_website": 250},
            {"seller_available": 0, "month": "jul", "customer_visiting_website": 0}
        ]}),
    );
    assert_eq!(batch.status, 200, "{}", batch.text());
    let body = batch.json();
    assert_eq!(body["predictions"][0], json!(expected));
    assert_eq!(body["predictions"].as_array().unwrap().len(), 2);
    assert_eq!(body["model"]["name"], "sales");
    let single = predict_batch(
        &server,
        &json!({"seller_available": 7, "month": "march", "customer_visiting_website": 250}),
    );
    assert_eq!(single.json()["predictions"], json!([expected]));
}

#[test]
fn invalid_batches_get_422_with_every_problem_and_bad_json_400() {
    let server = Server::start(&["--max-batch", "3"]);
    let response = predict_batch(
        &server,
        &json!({"instances": [
            {"seller_available": 1, "month": "smarch", "customer_visiting_website": 5},
            {"seller_available": 1.5, "month": "may"},
            {"seller_available": 1, "month": "may", "customer_visiting_website": 5, "extra": true}
        ]}),
    );
    assert_eq!(response.status, 422, "{}", response.text());
    let details = response.json()["details"].as_array().unwrap().clone();
    let found: Vec<(i64, String)> = details
        .iter()
        .map(|d| {
            (
                d["instance"].as_i64().unwrap(),
                d["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (0, "month".to_owned()),
            (1, "seller_available".to_owned()),
            (1, "customer_visiting_website".to_owned()),
            (2, "extra".to_owned()),
        ]
    );
    assert!(
        details[0]["problem"]
            .as_str()
            .unwrap()
            .starts_with("unknown month 'smarch'")
    );
    assert_eq!(details[2]["problem"], "is missing");

    let instance = json!({"seller_available": 1, "month": "may", "customer_visiting_website": 5});
    let too_many = predict_batch(&server, &json!({"instances": vec![instance; 4]}));
    assert_eq!(too_many.status, 422);
    assert!(too_many.text().contains("1 to 3 instances"));
    assert_eq!(
        predict_batch(&server, &json!({"instances": []})).status,
        422
    );
    let wrong_type = predict_batch(
        &server,
        &json!({"seller_available": "1", "month": 5, "customer_visiting_website": null}),
    );
    assert_eq!(wrong_type.json()["details"].as_array().unwrap().len(), 3);

    let malformed = server.post("/api/v1/predict", JSON, "{\"instances\": [", "");
    assert_eq!(malformed.status, 400);
    assert!(
        malformed.json()["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
}

#[test]
fn the_model_route_describes_features_and_training() {
    let server = Server::start(&[]);
    let response = server.get("/api/v1/model");
    assert_eq!(response.status, 200);
    let body = response.json();
    assert_eq!(body["name"], "sales");
    let features = body["features"].as_array().unwrap();
    let names: Vec<&str> = features
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["seller_available", "month", "customer_visiting_website"]
    );
    assert_eq!(features[0]["type"], "integer");
    assert!(features[0]["max"].as_i64().unwrap() >= 1000);
    assert!(features[2]["max"].as_i64().unwrap() >= 1_000_000);
    assert_eq!(features[1]["values"].as_array().unwrap().len(), 12);
    assert!(body["training"]["metrics"]["r2"].is_number());
}

#[test]
fn the_random_placeholder_is_never_cached() {
    let server = Server::start(&["--model", "random"]);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let response = server.get("/predict/1/may/2");
        let value = integer(&response);
        assert!((2000..=5000).contains(&value));
        assert_eq!(response.header("cache-control"), Some("no-store"));
        assert_eq!(response.header("etag"), None);
        seen.insert(value);
    }
    assert!(seen.len() > 1, "twenty random answers were all {seen:?}");
    assert_eq!(server.get("/api/v1/model").json()["name"], "random");
}

#[test]
fn a_model_with_other_features_serves_the_batch_api_only() {
    let dir = temp_dir("model");
    let path = dir.join("other.json");
    let features = json!([{"type": "number", "name": "temperature", "min": -50.0, "max": 60.0}]);
    let mut model = constant_model(0.0, Some(features));
    model["model"]["coefficients"] = json!([2.0]);
    model.as_object_mut().unwrap().remove("output");
    write_model(&path, &model);
    let server = Server::start(&["--model", path.to_str().unwrap()]);
    let legacy = server.get("/predict/1/may/2");
    assert_eq!(legacy.status, 409);
    assert!(legacy.text().contains("temperature"));
    let batch = predict_batch(
        &server,
        &json!({"instances": [{"temperature": 21.25}, {"temperature": -3.5}]}),
    );
    assert_eq!(batch.json()["predictions"], json!([42.5, -7.0]));
    // The API description follows the served model.
    let openapi = server.get("/api/v1/openapi.json");
    assert_eq!(openapi.status, 200);
    assert_eq!(
        openapi.json()["components"]["schemas"]["Instance"]["properties"],
        json!({"temperature": {"type": "number", "minimum": -50.0, "maximum": 60.0}})
    );
}

#[test]
fn the_api_document_is_served_at_both_addresses() {
    let server = Server::start(&[]);
    let root = server.get("/openapi.json");
    assert_eq!(root.status, 200);
    assert_eq!(root.header("content-type"), Some("application/json"));
    let versioned = server.get("/api/v1/openapi.json");
    assert_eq!(versioned.status, 200);
    assert_eq!(root.json(), versioned.json());
    let document = root.json();
    assert_eq!(document["openapi"], "3.1.0");
    // Every route, not the prediction routes only.
    for path in ["/status", "/api/file/{key}", "/event", "/openapi.json"] {
        assert!(document["paths"][path].is_object(), "{path}");
    }
}

#[test]
fn sighup_reloads_a_good_file_and_keeps_the_model_on_a_bad_one() {
    let dir = temp_dir("model");
    let path = dir.join("model.json");
    write_model(&path, &constant_model(2500.0, None));
    let server = Server::start(&["--model", path.to_str().unwrap()]);
    assert_eq!(integer(&server.get("/predict/1/may/2")), 2500);
    let first_tag = server
        .get("/predict/1/may/2")
        .header("etag")
        .unwrap()
        .to_owned();

    write_model(&path, &constant_model(3100.0, None));
    server.signal(libc::SIGHUP);
    server.wait_for_log("model reloaded: constant 3100");
    let response = server.get("/predict/1/may/2");
    assert_eq!(integer(&response), 3100);
    assert_ne!(response.header("etag"), Some(first_tag.as_str()));

    let mut broken = constant_model(4000.0, None);
    broken["model"]["coefficients"] = json!([1.0]);
    write_model(&path, &broken);
    server.signal(libc::SIGHUP);
    let line = server.wait_for_log("model reload failed");
    assert!(line.contains("still serving constant 3100"), "{line}");
    assert!(line.contains("model.coefficients"), "{line}");
    assert_eq!(integer(&server.get("/predict/1/may/2")), 3100);
}

#[test]
fn a_bad_model_file_stops_the_start_with_its_problem() {
    let dir = temp_dir("model");
    let path = dir.join("bad.json");
    let mut model = constant_model(1.0, None);
    model["format"] = json!("onnx");
    write_model(&path, &model);
    let output = Command::new(BIN)
        .args(["--port", "0", "--model", path.to_str().unwrap()])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("format: expected \"wren-model/1\""),
        "{stderr}"
    );
}

#[test]
fn no_finite_prediction_is_422_and_problem_lists_are_capped() {
    let dir = temp_dir("model");
    let path = dir.join("huge.json");
    let features = json!([{"type": "number", "name": "x"}]);
    let mut model = constant_model(0.0, Some(features));
    model["model"]["coefficients"] = json!([1e300]);
    model.as_object_mut().unwrap().remove("output");
    write_model(&path, &model);
    let server = Server::start(&["--model", path.to_str().unwrap()]);
    let fine = predict_batch(&server, &json!({"x": 1.0}));
    assert_eq!(fine.json()["predictions"], json!([1e300]));
    let overflow = predict_batch(&server, &json!({"instances": [{"x": 1.0}, {"x": 1e10}]}));
    assert_eq!(overflow.status, 422, "{}", overflow.text());
    assert_eq!(overflow.json()["details"][0]["instance"], 1);

    let mut instance = serde_json::Map::new();
    for i in 0..150 {
        instance.insert(format!("extra{i}"), json!(1));
    }
    let many = predict_batch(&server, &Value::Object(instance));
    assert_eq!(many.status, 422);
    let body = many.json();
    assert_eq!(body["details"].as_array().unwrap().len(), 100);
    assert!(
        body["message"].as_str().unwrap().contains("151 problems"),
        "{body}"
    );
}

//! Predictions over the served model: the BeCode challenge's
//! `GET /predict/<seller_available>/<month>/<customer_visiting_website>` and
//! its form (`POST /predict`), and the JSON inference API
//! (`POST /api/v1/predict`, `GET /api/v1/model`).
//!
//! Features are named by the model file; only the legacy routes assume the
//! three sales features, and answer `409` when the model has others.

use serde_json::{Map, Value, json};

use crate::App;
use crate::http::{ApiError, Fields, Request, Response};
use crate::http::{Problem, Problems};
use crate::model::{Input, Model};
use crate::text::excerpt;

/// The features the legacy routes take, in their URL order.
pub const LEGACY_FEATURES: [&str; 3] = ["seller_available", "month", "customer_visiting_website"];

/// The BeCode form's misspelling, accepted by `POST /predict`.
const SELLER_ALIAS: &str = "seller_avaible";

/// `GET /predict/{seller_available}/{month}/{customer_visiting_website}`.
pub fn predict_path(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let model = app.model.get();
    let inputs = legacy_inputs(&model, |name| request.param_str(name).ok())?;
    legacy_answer(app, &model, &inputs, request, true)
}

/// `POST /predict`: the same three fields from a form or JSON.
pub fn predict_form(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let model = app.model.get();
    let fields = Fields::from_request(request)?;
    let inputs = legacy_inputs(&model, |name| {
        if name == LEGACY_FEATURES[0] {
            fields.first_of(&[name, SELLER_ALIAS])
        } else {
            fields.get(name)
        }
    })?;
    legacy_answer(app, &model, &inputs, request, false)
}

/// The model's inputs, in its feature order, from the legacy parameters.
fn legacy_inputs<'a>(
    model: &Model,
    value_of: impl Fn(&str) -> Option<&'a str>,
) -> Result<[Input; LEGACY_FEATURES.len()], ApiError> {
    let fits = model.features.len() == LEGACY_FEATURES.len()
        && LEGACY_FEATURES
            .iter()
            .all(|name| model.feature(name).is_some());
    if !fits {
        let names: Vec<&str> = model.features.iter().map(|f| f.name.as_str()).collect();
        return Err(ApiError::new(
            409,
            format!(
                "this route needs a model whose features are {}; the model '{}' takes {}: use POST /api/v1/predict",
                LEGACY_FEATURES.join(", "),
                model.name,
                names.join(", ")
            ),
        )
        .with_code("model_mismatch"));
    }
    let mut inputs = [Input::Number(0.0); LEGACY_FEATURES.len()];
    let mut problems = Problems::default();
    for (input, feature) in inputs.iter_mut().zip(&model.features) {
        match value_of(&feature.name).map(|text| feature.parse_text(text)) {
            Some(Ok(parsed)) => *input = parsed,
            Some(Err(problem)) => problems.add(|| Problem::field(&feature.name, problem)),
            None => problems.add(|| Problem::field(&feature.name, "is missing")),
        }
    }
    if problems.is_empty() {
        Ok(inputs)
    } else {
        // Path segments (and the form fields standing in for them) are the
        // request target, not a JSON body: a 400 naming each, as the seed
        // routes answer.
        Err(problems.into_bad_request("invalid_parameter"))
    }
}

/// The legacy answer: the integer as text, or JSON when asked. GET answers
/// are cacheable when the model is deterministic.
fn legacy_answer(
    app: &App,
    model: &Model,
    inputs: &[Input],
    request: &Request<'_>,
    cacheable: bool,
) -> Result<Response, ApiError> {
    let json = request.wants_json();
    // One representation per Accept choice, so each gets its own tag.
    let etag = (cacheable && model.is_deterministic())
        .then(|| model.etag(inputs, if json { 'j' } else { 't' }));
    let fresh = etag
        .as_deref()
        .is_some_and(|etag| request.if_none_match(etag));
    let response = if fresh {
        Response::new(304)
    } else {
        let prediction = model.predict_inputs(inputs);
        if !prediction.is_finite() {
            return Err(not_finite());
        }
        app.metrics.predictions_served(1);
        if json {
            Response::json(
                200,
                &json!({"prediction": number(model, prediction), "model": model.name, "version": model.version}),
            )
        } else {
            Response::text(200, text_number(model, prediction))
        }
    };
    Ok(match etag {
        Some(etag) => response
            .with_header("ETag", etag)
            .with_header("Cache-Control", app.predict_cache_control)
            .with_header("Vary", "Accept"),
        None => response.with_header("Cache-Control", "no-store"),
    })
}

/// A model may overflow on inputs its ranges allow (a linear model over an
/// unbounded number); that is no answer, and JSON has no infinity.
fn not_finite() -> ApiError {
    ApiError::new(422, "the model gives no finite prediction for these inputs")
        .with_code("no_prediction")
}

/// A prediction as an integer, when the model rounds and the value fits
/// exactly.
fn as_integer(model: &Model, value: f64) -> Option<i64> {
    (model.rounds() && value.abs() < 9.0e15).then_some(value as i64)
}

/// A prediction as text, as [`number`] shows it.
fn text_number(model: &Model, value: f64) -> String {
    as_integer(model, value).map_or_else(|| value.to_string(), |n| n.to_string())
}

/// A prediction as JSON: an integer when the model rounds.
fn number(model: &Model, value: f64) -> Value {
    as_integer(model, value).map_or_else(|| json!(value), |n| json!(n))
}

/// `POST /api/v1/predict`: `{"instances": [...]}` or one bare instance.
pub fn predict_batch(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let document = request.body().read_json()?;
    let model = app.model.get();
    let inputs = batch_inputs(&model, document, app.config.model.max_batch)?;
    let mut problems = Problems::default();
    let predictions: Vec<Value> = inputs
        .chunks_exact(model.features.len())
        .enumerate()
        .map(|(i, instance)| {
            let prediction = model.predict_inputs(instance);
            if !prediction.is_finite() {
                problems.add(|| Problem::new(not_finite().message()).in_instance(i));
            }
            number(&model, prediction)
        })
        .collect();
    if !problems.is_empty() {
        return Err(invalid_input(problems));
    }
    app.metrics.predictions_served(predictions.len() as u64);
    Ok(Response::json(
        200,
        &json!({
            "predictions": predictions,
            "model": {"name": model.name, "version": model.version},
        }),
    )
    .with_header("Cache-Control", "no-store"))
}

/// Every instance's inputs, flat in feature order (the loader makes sure a
/// model has features); or a `422` listing every problem found.
fn batch_inputs(model: &Model, document: Value, max_batch: usize) -> Result<Vec<Input>, ApiError> {
    let instances = match document {
        Value::Object(mut object) => match object.remove("instances") {
            Some(Value::Array(instances)) => instances,
            Some(_) => {
                let not_array = Problem::field("instances", "must be an array of instance objects");
                return Err(invalid_input(Problems::one(not_array)));
            }
            None => vec![Value::Object(object)],
        },
        _ => {
            let not_object =
                Problem::new("the body must be an object: {\"instances\": [...]} or one instance");
            return Err(invalid_input(Problems::one(not_object)));
        }
    };
    if instances.is_empty() || instances.len() > max_batch {
        let size = Problem::field(
            "instances",
            format!(
                "must hold 1 to {max_batch} instances, found {}",
                instances.len()
            ),
        );
        return Err(invalid_input(Problems::one(size)));
    }
    let mut inputs = Vec::with_capacity(instances.len() * model.features.len());
    let mut problems = Problems::default();
    for (i, instance) in instances.into_iter().enumerate() {
        let Value::Object(fields) = instance else {
            problems.add(|| Problem::new("must be an object").in_instance(i));
            continue;
        };
        instance_inputs(model, i, &fields, &mut inputs, &mut problems);
    }
    if problems.is_empty() {
        Ok(inputs)
    } else {
        Err(invalid_input(problems))
    }
}

fn instance_inputs(
    model: &Model,
    index: usize,
    fields: &Map<String, Value>,
    inputs: &mut Vec<Input>,
    problems: &mut Problems,
) {
    for feature in &model.features {
        match fields.get(&feature.name) {
            None => problems.add(|| Problem::field(&feature.name, "is missing").in_instance(index)),
            Some(value) => match feature.parse_json(value) {
                Ok(input) => inputs.push(input),
                Err(problem) => {
                    problems.add(|| Problem::field(&feature.name, problem).in_instance(index))
                }
            },
        }
    }
    for name in fields.keys() {
        if model.feature(name).is_none() {
            problems.add(|| {
                Problem::field(
                    excerpt(name, 64),
                    "is not a feature of this model (see GET /api/v1/model)",
                )
                .in_instance(index)
            });
        }
    }
}

/// How the inference API answers problems in its input: a `422` listing
/// each, for a client that fixes them from the details.
fn invalid_input(problems: Problems) -> ApiError {
    problems.into_unprocessable("the input", "invalid_input")
}

/// `GET /api/v1/model`: what the served model takes and how it was made.
pub fn model_info(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let model = app.model.get();
    // --max-batch is part of the document, fixed for the process.
    let etag = model.document_etag(&format!("model{}", app.config.model.max_batch));
    let response = if request.if_none_match(&etag) {
        Response::new(304)
    } else {
        Response::json(
            200,
            &json!({
                "name": model.name,
                "version": model.version,
                "kind": model.kind_name(),
                "deterministic": model.is_deterministic(),
                "features": model.features,
                "training": model.training,
                "max_batch": app.config.model.max_batch,
            }),
        )
    };
    // Revalidated at each use: a SIGHUP may swap the model any time.
    Ok(response
        .with_header("ETag", etag)
        .with_header("Cache-Control", "no-cache"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::test_app as app;
    use crate::http::Body;
    use crate::http::request::Param;

    #[test]
    fn model_metadata_is_revalidated_by_its_etag() {
        let app = app();
        let first = model_info(&app, &mut Request::new("GET", "/api/v1/model")).unwrap();
        assert_eq!(first.status(), 200);
        assert_eq!(first.header("cache-control"), Some("no-cache"));
        let etag = first.header("etag").unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let mut again = Request::new("GET", "/api/v1/model").with_header("If-None-Match", &etag);
        let revalidated = model_info(&app, &mut again).unwrap();
        assert_eq!(revalidated.status(), 304);
        assert_eq!(revalidated.header("etag"), Some(etag.as_str()));
        let mut stale = Request::new("GET", "/api/v1/model").with_header("If-None-Match", "\"x\"");
        assert_eq!(model_info(&app, &mut stale).unwrap().status(), 200);
    }

    fn get(path: [&str; 3], accept_json: bool) -> Result<Response, ApiError> {
        let mut request = Request::new("GET", "/predict");
        if accept_json {
            request = request.with_header("Accept", "application/json");
        }
        request.set_params(
            LEGACY_FEATURES
                .iter()
                .zip(path)
                .map(|(name, value)| (*name, Param::Decoded(value.to_owned())))
                .collect(),
        );
        predict_path(&app(), &mut request)
    }

    fn post_json(body: Value) -> Result<Response, ApiError> {
        let mut request = Request::new("POST", "/api/v1/predict")
            .with_body(Body::from_bytes(body.to_string().into_bytes()));
        predict_batch(&app(), &mut request)
    }

    fn body_json(response: &Response) -> Value {
        serde_json::from_slice(response.body_bytes().unwrap()).unwrap()
    }

    #[test]
    fn the_seed_route_answers_an_integer_between_2000_and_5000() {
        let response = get(["123", "december", "4"], false).unwrap();
        let text = std::str::from_utf8(response.body_bytes().unwrap()).unwrap();
        let value: i64 = text.parse().unwrap();
        assert!((2000..=5000).contains(&value));
        assert!(response.header("etag").is_some());
        // The other spellings of December give the same answer.
        for month in ["DEC", "12", "December"] {
            let other = get(["123", month, "4"], false).unwrap();
            assert_eq!(other.body_bytes(), response.body_bytes());
            assert_eq!(other.header("etag"), response.header("etag"));
        }
    }

    #[test]
    fn bad_segments_name_the_parameter() {
        let err = get(["-1", "may", "4"], false).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.message().starts_with("'seller_available' must be"));
        let err = get(["1", "smarch", "4"], false).unwrap_err();
        assert!(err.message().contains("unknown month 'smarch'"));
        let err = get(["1", "may", "lots"], false).unwrap_err();
        assert!(err.message().starts_with("'customer_visiting_website'"));
    }

    #[test]
    fn every_bad_parameter_is_named_at_once() {
        let err = get(["-1", "smarch", "lots"], false).unwrap_err();
        assert_eq!(err.code(), "invalid_parameter");
        let details = body_json(&err.into_response())["details"].clone();
        let fields: Vec<&str> = details
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, LEGACY_FEATURES);
        let mut form = Request::new("POST", "/predict")
            .with_header("Content-Type", "application/json")
            .with_body(Body::from_bytes(br#"{"month": "march"}"#.to_vec()));
        let err = predict_form(&app(), &mut form).unwrap_err();
        assert_eq!(err.status(), 400);
        assert_eq!(
            err.message(),
            "'seller_available' is missing; 'customer_visiting_website' is missing"
        );
    }

    #[test]
    fn batches_list_every_problem() {
        let err = post_json(json!({"instances": [
            {"seller_available": 3, "month": "june", "customer_visiting_website": 120},
            {"seller_available": "3", "month": "smarch", "customer_visiting_website": 120},
            {"month": "june", "customer_visiting_website": 120, "colour": "red"},
            7
        ]}))
        .unwrap_err();
        assert_eq!(err.status(), 422);
        let body = body_json(&err.into_response());
        let details = body["details"].as_array().unwrap();
        let summary: Vec<(u64, &str)> = details
            .iter()
            .map(|d| {
                (
                    d["instance"].as_u64().unwrap(),
                    d["field"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, "seller_available"),
                (1, "month"),
                (2, "seller_available"),
                (2, "colour"),
                (3, "")
            ]
        );
        assert_eq!(
            details[1]["problem"].as_str().unwrap().split(" (").next(),
            Some("unknown month 'smarch'")
        );
    }

    #[test]
    fn batches_and_the_seed_route_agree() {
        let response = post_json(json!({"instances": [
            {"seller_available": 123, "month": "december", "customer_visiting_website": 4},
            {"seller_available": 5, "month": "jun", "customer_visiting_website": 900}
        ]}))
        .unwrap();
        let body = body_json(&response);
        let legacy = get(["123", "december", "4"], false).unwrap();
        let legacy: i64 = std::str::from_utf8(legacy.body_bytes().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body["predictions"][0], json!(legacy));
        assert_eq!(body["model"]["name"], "sales");
        let single = post_json(
            json!({"seller_available": 123, "month": "december", "customer_visiting_website": 4}),
        )
        .unwrap();
        assert_eq!(body_json(&single)["predictions"], json!([legacy]));
    }

    #[test]
    fn empty_and_malformed_batches() {
        assert_eq!(
            post_json(json!({"instances": []})).unwrap_err().status(),
            422
        );
        assert_eq!(post_json(json!([1])).unwrap_err().status(), 422);
        assert_eq!(
            post_json(json!({"instances": {}})).unwrap_err().status(),
            422
        );
        let mut request =
            Request::new("POST", "/api/v1/predict").with_body(Body::from_bytes(b"{oops".to_vec()));
        assert_eq!(
            predict_batch(&app(), &mut request).unwrap_err().status(),
            400
        );
    }
}

//! Transaction alerts: the "Practice Flask" seed's `POST /event`, and the
//! per-user alert profiles and event history around it. The rules live in
//! `crate::alerts`; the store runs them inside each event's transaction.
//! Who may call each route is the route table's to say (`routes.rs`).

use serde_json::{Map, Value, json};

use std::sync::Arc;

use crate::App;
use crate::alerts::{self, AlertProfile, Event, Kind, Overrides, Risk};
use crate::http::{ApiError, Fields, Request, Response};
use crate::http::{Problem, Problems};
use crate::store::{EventDone, Recorded};

/// The default and largest page of `GET /api/v1/users/{id}/events`.
pub const DEFAULT_EVENTS_PAGE: usize = 50;
pub const MAX_EVENTS_PAGE: usize = 500;

/// `POST /event`: stores the event, answers which alert codes fired. The
/// answer is given later, once the commit holding the event is durable:
/// waiting for it holds no thread (see `group_commit`).
pub fn event(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let body = request.body().read_to_vec()?;
    let payload = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(payload)) => payload,
        _ => return Err(ApiError::bad_request("Request must be JSON").with_code("invalid_json")),
    };
    let (user_id, event) = parse_event(&payload)?;
    let (stand_in, reply) = Response::later();
    let metrics = Arc::clone(&app.metrics);
    let done: EventDone = Box::new(move |recorded| {
        let answer = match recorded {
            Ok(Recorded::Stored { codes, .. }) => {
                metrics.event_processed(&codes);
                Response::json(
                    200,
                    &EventAnswer {
                        alert: !codes.is_empty(),
                        alert_codes: &codes,
                        user_id,
                    },
                )
            }
            Ok(Recorded::OutOfOrder { latest }) => out_of_order(user_id, event.time, latest),
            Err(err) => ApiError::from(err).into_response(),
        };
        reply.send(answer);
    });
    app.store
        .record_event(user_id, &event, app.config.event_time_unit, done);
    Ok(stand_in)
}

/// The seed's answer to an event, serialized straight from here: a
/// `json!` value cost an allocation per key on the store's writer thread,
/// which answers every event of a commit.
#[derive(serde::Serialize)]
struct EventAnswer<'a> {
    alert: bool,
    alert_codes: &'a [u16],
    user_id: i64,
}

fn out_of_order(user_id: i64, time: i64, latest: i64) -> Response {
    ApiError::new(
        409,
        format!(
            "'time' {time} is earlier than user {user_id}'s latest event ({latest}); events must arrive in time order"
        ),
    )
    .with_code("out_of_order")
    .into_response()
}

/// The seed's payload. Every problem is reported, not just the first, as the
/// seed's `400` with its sentences (`'amount' must be greater than 0`).
fn parse_event(payload: &Map<String, Value>) -> Result<(i64, Event), ApiError> {
    let mut problems = Problems::default();
    let kind = match payload.get("type") {
        None | Some(Value::Null) => required("type", &mut problems),
        Some(value) => {
            let kind = value.as_str().and_then(Kind::parse);
            if kind.is_none() {
                problems.add(|| {
                    Problem::field("type", "must be one of these values (deposit, withdraw)")
                });
            }
            kind
        }
    };
    let amount = match payload.get("amount") {
        None | Some(Value::Null) => required("amount", &mut problems),
        Some(value) => match alerts::decimal_from_json(value) {
            None => {
                problems.add(|| Problem::field("amount", "must be a decimal number"));
                None
            }
            Some(amount) if amount <= rust_decimal::Decimal::ZERO => {
                problems.add(|| Problem::field("amount", "must be greater than 0"));
                None
            }
            Some(amount) => Some(amount),
        },
    };
    let user_id = non_negative_integer(payload, "user_id", &mut problems);
    let time = non_negative_integer(payload, "time", &mut problems);
    // A field is None exactly when it added a problem.
    match (kind, amount, user_id, time) {
        (Some(kind), Some(amount), Some(user_id), Some(time)) => {
            Ok((user_id, Event { kind, amount, time }))
        }
        _ => Err(problems.into_bad_request("invalid_payload")),
    }
}

fn required<T>(field: &'static str, problems: &mut Problems) -> Option<T> {
    problems.add(|| Problem::field(field, "is required"));
    None
}

fn non_negative_integer(
    payload: &Map<String, Value>,
    field: &'static str,
    problems: &mut Problems,
) -> Option<i64> {
    let problem = match payload.get(field) {
        None | Some(Value::Null) => return required(field, problems),
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => {
            match number.as_i64() {
                Some(n) if n >= 0 => return Some(n),
                Some(_) => "must be greater than or equal to 0".to_owned(),
                None => format!("must be at most {}", i64::MAX),
            }
        }
        Some(_) => "must be an integer".to_owned(),
    };
    problems.add(|| Problem::field(field, problem));
    None
}

/// `GET /api/v1/users/{user_id}/alert-profile`.
pub fn get_profile(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let user_id = path_user_id(request)?;
    let profile = app.store.alert_profile(user_id)?;
    Ok(profile_response(user_id, &profile))
}

/// `PUT /api/v1/users/{user_id}/alert-profile`: `risk` and/or `overrides`;
/// a field left out keeps its stored value.
pub fn put_profile(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let user_id = path_user_id(request)?;
    let body = request.body().read_json()?;
    let Value::Object(update) = body else {
        let not_object =
            Problem::new("the body must be a JSON object: {\"risk\": ..., \"overrides\": {...}}");
        return Err(invalid_profile(Problems::one(not_object)));
    };
    let mut profile = app.store.alert_profile(user_id)?;
    let mut problems = Problems::default();
    for (name, value) in &update {
        match (name.as_str(), value) {
            ("risk", Value::String(text)) if Risk::parse(text).is_some() => {
                profile.risk = Risk::parse(text).unwrap_or_default();
            }
            ("risk", _) => {
                problems.add(|| Problem::field("risk", "must be one of low, medium, high"))
            }
            ("overrides", Value::Object(object)) => {
                let mut report = |field: String, problem: String| {
                    problems.add(|| Problem::field(field, problem))
                };
                if let Some(overrides) = Overrides::from_json(object, &mut report) {
                    profile.overrides = overrides;
                }
            }
            ("overrides", _) => {
                problems.add(|| Problem::field("overrides", "must be an object of thresholds"))
            }
            (other, _) => problems.add(|| {
                Problem::field(
                    crate::text::excerpt(other, 64),
                    "is not a profile field; the fields are risk and overrides",
                )
            }),
        }
    }
    if !problems.is_empty() {
        return Err(invalid_profile(problems));
    }
    app.store.set_alert_profile(user_id, &profile)?;
    Ok(profile_response(user_id, &profile))
}

/// How the profile route answers problems in well-formed JSON: a `422`
/// listing each, as wren's own routes do.
fn invalid_profile(problems: Problems) -> ApiError {
    problems.into_unprocessable("the profile", "invalid_profile")
}

fn profile_response(user_id: i64, profile: &AlertProfile) -> Response {
    Response::json(
        200,
        &json!({
            "user_id": user_id,
            "risk": profile.risk.as_str(),
            "overrides": profile.overrides.to_json(),
            "thresholds": profile.thresholds().to_json(),
        }),
    )
    // A user's risk data: for the caller, never for a shared cache.
    .with_header("Cache-Control", "no-store")
}

/// `GET /api/v1/users/{user_id}/events?limit=&before=`: newest first.
pub fn list_events(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let user_id = path_user_id(request)?;
    let query = Fields::from_query(request)?;
    let limit = query.limit(DEFAULT_EVENTS_PAGE, MAX_EVENTS_PAGE)?;
    let before = match query.get("before") {
        None => None,
        Some(text) => Some(text.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            let problem = "must be a positive whole number (a next_before value)";
            Problems::one(Problem::field("before", problem)).into_bad_request("invalid_query")
        })?),
    };
    let events = app.store.events(user_id, before, limit)?;
    let next_before = (events.len() == limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    let events: Vec<Value> = events
        .iter()
        .map(|stored| {
            json!({
                "type": stored.event.kind.as_str(),
                "amount": stored.event.amount.to_string(),
                "time": stored.event.time,
                "alert_codes": stored.alert_codes,
            })
        })
        .collect();
    Ok(Response::json(
        200,
        &json!({"user_id": user_id, "events": events, "next_before": next_before}),
    )
    .with_header("Cache-Control", "no-store"))
}

fn path_user_id(request: &Request<'_>) -> Result<i64, ApiError> {
    let user_id = request.param_int("user_id")?;
    if user_id < 0 {
        let negative = Problem::field("user_id", "must be greater than or equal to 0");
        return Err(Problems::one(negative).into_bad_request("invalid_parameter"));
    }
    Ok(user_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::test_app as app;
    use crate::http::{Body, Param};

    fn post(app: &App, body: &str) -> Result<Response, ApiError> {
        let mut request =
            Request::new("POST", "/event").with_body(Body::from_bytes(body.as_bytes().to_vec()));
        event(app, &mut request).map(Response::answered)
    }

    /// A request for one of a user's routes, as the route table's gate
    /// lets it through.
    fn for_user(method: &str, target: &str, user_id: i64, body: &str) -> Request<'static> {
        let mut request =
            Request::new(method, target).with_body(Body::from_bytes(body.as_bytes().to_vec()));
        request.set_params(vec![("user_id", Param::Int(user_id))]);
        request
    }

    fn error_body(err: ApiError) -> Value {
        serde_json::from_slice(err.into_response().body_bytes().unwrap()).unwrap()
    }

    fn codes(response: &Response) -> Value {
        let body: Value = serde_json::from_slice(response.body_bytes().unwrap()).unwrap();
        body["alert_codes"].clone()
    }

    #[test]
    fn the_seed_example_fires_123_on_the_second_deposit() {
        let app = app();
        let first = post(
            &app,
            r#"{"type": "deposit", "amount": "100.00", "user_id": 1, "time": 0}"#,
        )
        .unwrap();
        assert_eq!(codes(&first), json!([]));
        let second = post(
            &app,
            r#"{"type": "DEPOSIT", "amount": 101, "user_id": 1, "time": 3}"#,
        )
        .unwrap();
        assert_eq!(codes(&second), json!([123]));
        let body: Value = serde_json::from_slice(second.body_bytes().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"alert": true, "alert_codes": [123], "user_id": 1})
        );
    }

    #[test]
    fn invalid_payloads_name_every_problem() {
        let app = app();
        let err = post(&app, r#"{"type": 1, "amount": "-9", "user_id": "a"}"#).unwrap_err();
        assert_eq!(err.status(), 400);
        assert_eq!(
            err.message(),
            "'type' must be one of these values (deposit, withdraw); 'amount' must be greater than 0; \
             'user_id' must be an integer; 'time' is required"
        );
        let body = error_body(err);
        assert_eq!(body["error"], "invalid_payload");
        assert_eq!(
            body["details"][3],
            json!({"field": "time", "problem": "is required"})
        );
        let err = post(&app, "not json").unwrap_err();
        assert_eq!(err.message(), "Request must be JSON");
        assert_eq!(
            post(&app, "[1]").unwrap_err().message(),
            "Request must be JSON"
        );
    }

    #[test]
    fn bad_path_and_query_parameters_are_400_naming_them() {
        let app = app();
        let list = |target: &str, user_id: i64| {
            list_events(&app, &mut for_user("GET", target, user_id, "")).unwrap_err()
        };
        let negative = list("/api/v1/users/-1/events", -1);
        assert_eq!(
            (negative.status(), negative.code(), negative.message()),
            (
                400,
                "invalid_parameter",
                "'user_id' must be greater than or equal to 0"
            )
        );
        let before = list("/api/v1/users/1/events?before=0", 1);
        assert_eq!((before.status(), before.code()), (400, "invalid_query"));
        assert!(before.message().starts_with("'before' must be a positive"));
    }

    #[test]
    fn a_profile_body_that_is_json_but_no_object_is_422() {
        let app = app();
        let put = |body: &str| {
            let mut request = for_user("PUT", "/api/v1/users/1/alert-profile", 1, body);
            put_profile(&app, &mut request).unwrap_err()
        };
        let not_object = put("[1]");
        assert_eq!(
            (not_object.status(), not_object.code()),
            (422, "invalid_profile")
        );
        assert!(
            error_body(not_object)["details"][0]["problem"]
                .as_str()
                .unwrap()
                .starts_with("the body must be a JSON object")
        );
        let not_json = put("{oops");
        assert_eq!(not_json.status(), 400);
        assert!(not_json.message().contains("not valid JSON"));
    }

    #[test]
    fn time_going_backwards_is_409_and_not_stored() {
        let app = app();
        post(
            &app,
            r#"{"type": "withdraw", "amount": "1", "user_id": 2, "time": 100}"#,
        )
        .unwrap();
        let refused = post(
            &app,
            r#"{"type": "withdraw", "amount": "1", "user_id": 2, "time": 99}"#,
        )
        .unwrap();
        assert_eq!(refused.status(), 409);
        let body: Value = serde_json::from_slice(refused.body_bytes().unwrap()).unwrap();
        assert_eq!(body["error"], "out_of_order", "{body}");
        assert_eq!(app.store.events(2, None, 10).unwrap().len(), 1);
        // Another user is not affected; the same time is fine.
        post(
            &app,
            r#"{"type": "withdraw", "amount": "1", "user_id": 3, "time": 5}"#,
        )
        .unwrap();
        post(
            &app,
            r#"{"type": "withdraw", "amount": "1", "user_id": 2, "time": 100}"#,
        )
        .unwrap();
    }
}

//! The operator's routes: what wren is (`GET /`), whether it lives
//! (`GET /livez`), whether it can serve (`GET /readyz`), in the forms
//! Kubernetes, BentoML and KServe users expect, and how it is doing
//! (`GET /metrics`, for Prometheus). Health answers are never cached
//! (`no-store`): a stale "ready" is worse than none.

use std::time::Duration;

use serde_json::json;

use crate::App;
use crate::blob::BlobError;
use crate::handlers::docs;
use crate::http::{ApiError, Request, Response};
use crate::metrics::CONTENT_TYPE;

/// How long each readiness check may take: a probe that waits longer than
/// this on a dependency is itself a sign of trouble.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(1);

/// `GET /`: the server's name and version, and where to go next; a
/// browser asking for HTML gets the docs page itself (`Vary: Accept`).
pub fn index(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let docs = app.config.docs.enabled;
    let metrics = app.config.metrics.enabled;
    if docs && request.wants_html() {
        return Ok(docs::page(app, request)?.with_header("Vary", "Accept"));
    }
    let mut links = json!({
        "status": "/status",
        "livez": "/livez",
        "readyz": "/readyz",
    });
    if docs {
        links["docs"] = "/docs".into();
        links["openapi"] = "/openapi.json".into();
    }
    if metrics {
        links["metrics"] = "/metrics".into();
    }
    // It changes with the build, --no-docs and --no-metrics only: a tag of
    // them lets caches revalidate it for nothing.
    let etag = format!(
        "\"index-{}{}{}\"",
        env!("CARGO_PKG_VERSION"),
        if docs { "-docs" } else { "" },
        if metrics { "-metrics" } else { "" },
    );
    let response = if request.if_none_match(&etag) {
        Response::new(304)
    } else {
        let index = json!({
            "name": "wren",
            "version": env!("CARGO_PKG_VERSION"),
            "links": links,
        });
        Response::json(200, &index)
    };
    Ok(response
        .with_header("ETag", etag)
        .with_header("Cache-Control", "no-cache")
        .with_header("Vary", "Accept"))
}

/// `GET /metrics`: every metric in the Prometheus text format; never
/// cached, since each scrape must see the figures of its moment.
pub fn metrics(app: &App, _request: &mut Request<'_>) -> Result<Response, ApiError> {
    let text = app.metrics.render(env!("CARGO_PKG_VERSION"));
    Ok(Response::new(200)
        .with_header("Content-Type", CONTENT_TYPE)
        .with_header("Cache-Control", "no-store")
        .with_body(text.into_bytes()))
}

/// `GET /livez`: the process serves requests; it checks nothing else, so
/// that a slow dependency never gets a live server restarted.
pub fn livez(_app: &App, _request: &mut Request<'_>) -> Result<Response, ApiError> {
    Ok(Response::text(200, "ok").with_header("Cache-Control", "no-store"))
}

/// `GET /readyz`: `200` when the store answers a query and the file
/// storage a cheap request, each within [`READINESS_TIMEOUT`]; `503`
/// naming what failed otherwise (its cause, which may name hosts, goes to
/// the log only).
pub fn readyz(app: &App, _request: &mut Request<'_>) -> Result<Response, ApiError> {
    let store = app.store.ping().map_err(|err| err.to_string());
    let storage = app
        .storage
        .ready(READINESS_TIMEOUT)
        .map_err(|err| match err {
            BlobError::Upstream(cause) | BlobError::Local(cause) => cause,
            BlobError::Credentials { detail, .. } => detail,
            other => format!("{other:?}"),
        });
    let verdict = |result: &Result<(), String>| if result.is_ok() { "ok" } else { "failing" };
    let checks = json!({"store": verdict(&store), "storage": verdict(&storage)});
    if store.is_ok() && storage.is_ok() {
        return Ok(
            Response::json(200, &json!({"status": "ready", "checks": checks}))
                .with_header("Cache-Control", "no-store"),
        );
    }
    let failed: Vec<&str> = [("store", &store), ("storage", &storage)]
        .into_iter()
        .filter(|(_, result)| result.is_err())
        .map(|(name, _)| name)
        .collect();
    let causes: Vec<String> = [("store", store), ("storage", storage)]
        .into_iter()
        .filter_map(|(name, result)| result.err().map(|err| format!("{name}: {err}")))
        .collect();
    Err(
        ApiError::new(503, format!("not ready: {} failing", failed.join(" and ")))
            .with_code("not_ready")
            .with_details(json!(
                failed
                    .iter()
                    .map(|name| json!({"field": name, "problem": "unavailable"}))
                    .collect::<Vec<_>>()
            ))
            .with_header("Cache-Control", "no-store")
            .with_header("Retry-After", "1")
            .with_cause(format!("not ready: {}", causes.join("; "))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::test_app as app;

    fn body(response: &Response) -> serde_json::Value {
        serde_json::from_slice(response.body_bytes().unwrap()).unwrap()
    }

    #[test]
    fn the_index_links_what_exists() {
        let response = index(&app(), &mut Request::new("GET", "/")).unwrap();
        let index = body(&response);
        assert_eq!(index["name"], "wren");
        assert_eq!(index["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(index["links"]["readyz"], "/readyz");
        assert_eq!(index["links"]["docs"], "/docs");
        let etag = response.header("etag").unwrap().to_owned();
        let mut again = Request::new("GET", "/").with_header("If-None-Match", &etag);
        assert_eq!(super::index(&app(), &mut again).unwrap().status(), 304);
        let mut browser = Request::new("GET", "/").with_header("Accept", "text/html");
        let page = super::index(&app(), &mut browser).unwrap();
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(page.header("vary"), Some("Accept"));
    }

    #[test]
    fn health_answers_are_never_stored() {
        let app = app();
        let live = livez(&app, &mut Request::new("GET", "/livez")).unwrap();
        assert_eq!(live.status(), 200);
        let ready = readyz(&app, &mut Request::new("GET", "/readyz")).unwrap();
        assert_eq!(ready.status(), 200, "{:?}", body(&ready));
        assert_eq!(body(&ready)["checks"]["store"], "ok");
        for response in [live, ready] {
            assert_eq!(response.header("cache-control"), Some("no-store"));
        }
    }
}

//! The route table: every route wren serves, in one place, each with who
//! may call it (an [`Access`] rule the router's gate, `session::admit`,
//! enforces before the handler runs). Reading this table tells who may call
//! what:
//!
//! - `Open`: anyone; credentials are not read (the seeds' open routes).
//! - `Account`: a signed-in account of any role (API keys act for no one).
//! - `OwnFiles`: a signed-in account, or a `files` key acting for the
//!   account it is bound to; either sees that account's files only.
//! - `AdminOrKey(scope)`: an admin account, or an API key with the scope.
//! - `MetricsToken`: `WREN_METRICS_TOKEN` as a bearer token (`/metrics`).
//!
//! Each route also names its description in the API document
//! (`handlers::openapi::operations`), which `GET /openapi.json` builds
//! from this table: a route cannot be added without one, and the document
//! holds no route that is not here.

use crate::App;
use crate::auth::Scope;
use crate::handlers::openapi::{self, Describe, operations as op};
use crate::handlers::session::{self, Access};
use crate::handlers::{accounts, alerts, basics, docs, files, keys, operator, predict};
use crate::http::{ApiError, Request};
use crate::router::{Headers, Router};

/// What the table says of each route besides its handler: who may call it,
/// and how the API document describes it.
#[derive(Clone, Copy)]
pub struct Rule {
    pub access: Access,
    pub doc: Doc,
}

/// A route's place in the API document.
#[derive(Clone, Copy)]
pub enum Doc {
    /// Described by this function.
    Operation(Describe),
    /// A route compiled only for the socket-level tests (feature
    /// `test-routes`), which the document leaves out.
    TestOnly,
}

/// A route's rule: `access`, described by `describe`.
fn rule(access: Access, describe: Describe) -> Rule {
    Rule {
        access,
        doc: Doc::Operation(describe),
    }
}

/// The router's gate: `session::admit` on the route's access rule.
fn admit(app: &App, rule: &Rule, request: &Request<'_>) -> Result<Headers, ApiError> {
    session::admit(app, &rule.access, request)
}

pub fn table(app: &App) -> Router<App, Rule> {
    use Access::{Account, AdminOrKey, Open, OwnFiles};
    let alerts_access = AdminOrKey(Scope::Alerts);
    let router = Router::new(app.config.limits.max_body, admit)
        .get("/status", rule(Open, op::status), basics::status)
        // The operator's: what this is, whether it lives, whether it can serve.
        .get("/", rule(Open, op::index), operator::index)
        .get("/livez", rule(Open, op::livez), operator::livez)
        .get("/readyz", rule(Open, op::readyz), operator::readyz)
        // Accounts: signing in and up is open; signing out needs the session.
        .post("/login", rule(Open, op::login), accounts::login)
        .post("/api/sign_up", rule(Open, op::sign_up), accounts::sign_up)
        .post("/api/sign_in", rule(Open, op::sign_in), accounts::sign_in)
        .post("/api/logout", rule(Account, op::logout), accounts::logout)
        // API keys: admins manage every key; other accounts make files keys
        // for themselves and manage those (the handlers tell them apart).
        .post("/api/v1/keys", rule(Account, op::create_key), keys::create)
        .get("/api/v1/keys", rule(Account, op::list_keys), keys::list)
        .delete(
            "/api/v1/keys/{name}",
            rule(Account, op::revoke_key),
            keys::revoke,
        )
        // Predictions: open, as the seeds serve them.
        .get(
            "/predict/{seller_available}/{month}/{customer_visiting_website}",
            rule(Open, op::predict_path),
            predict::predict_path,
        )
        .post(
            "/predict",
            rule(Open, op::predict_form),
            predict::predict_form,
        )
        .post(
            "/api/v1/predict",
            rule(Open, op::predict_batch),
            predict::predict_batch,
        )
        // A batch may hold --max-batch instances of up to ~1 KiB each.
        .body_limit(batch_body_limit(app))
        .get(
            "/api/v1/model",
            rule(Open, op::model_info),
            predict::model_info,
        )
        // Transaction alerts: events are open or protected by where wren
        // listens; profiles and histories are every user's, so admins' and
        // alerts keys' only.
        .post("/event", rule(event_access(app), op::event), alerts::event)
        .get(
            "/api/v1/users/{user_id:int}/alert-profile",
            rule(alerts_access, op::get_profile),
            alerts::get_profile,
        )
        .put(
            "/api/v1/users/{user_id:int}/alert-profile",
            rule(alerts_access, op::put_profile),
            alerts::put_profile,
        )
        .get(
            "/api/v1/users/{user_id:int}/events",
            rule(alerts_access, op::list_events),
            alerts::list_events,
        )
        // Files and images: the caller's own account's.
        .put(
            "/api/file/{key:path}",
            rule(OwnFiles, op::put_file),
            files::put_file,
        )
        .body_limit(app.config.storage.max_object_size)
        .get(
            "/api/file/{key:path}",
            rule(OwnFiles, op::get_file),
            files::get_file,
        )
        .delete(
            "/api/file/{key:path}",
            rule(OwnFiles, op::delete_file),
            files::delete_file,
        )
        .get(
            "/api/files_keys",
            rule(OwnFiles, op::files_keys),
            files::list_keys,
        )
        .get(
            "/api/v1/files",
            rule(OwnFiles, op::list_files),
            files::list_files,
        )
        .get(
            "/api/v1/account",
            rule(Account, op::account),
            files::account,
        )
        .post("/img/add", rule(OwnFiles, op::add_image), files::add_image)
        .body_limit(image_body_limit(app))
        .post(
            "/api/v1/images",
            rule(OwnFiles, op::upload_image),
            files::upload_image,
        )
        .body_limit(image_body_limit(app))
        .get(
            "/api/v1/images/{id}",
            rule(OwnFiles, op::get_image),
            files::get_image,
        );
    // The API document (at wren's path and the inference API's) and its
    // page, unless --no-docs.
    let router = if app.config.docs.enabled {
        router
            .get("/openapi.json", rule(Open, op::openapi), openapi::openapi)
            .get(
                "/api/v1/openapi.json",
                rule(Open, op::openapi),
                openapi::openapi,
            )
            .get("/docs", rule(Open, op::docs_page), docs::page)
            .get(
                "/docs/assets/{file}",
                rule(Open, op::docs_asset),
                docs::asset,
            )
    } else {
        router
    };
    // Prometheus's, unless --no-metrics (then nothing is timed either).
    let router = if app.config.metrics.enabled {
        router.get(
            "/metrics",
            rule(metrics_access(app), op::metrics),
            operator::metrics,
        )
    } else {
        router.without_metrics()
    };
    #[cfg(feature = "test-routes")]
    let router = crate::handlers::testing::routes(router);
    router
}

/// `GET /metrics`'s rule: the metrics token when `WREN_METRICS_TOKEN` is
/// set, else open.
fn metrics_access(app: &App) -> Access {
    if app.config.metrics.token.is_some() {
        Access::MetricsToken
    } else {
        Access::Open
    }
}

/// `POST /event`'s rule, by the protected mode decided at start
/// (`config::EventsMode`): open while wren listens only on loopback or
/// `--open-events` is set, else an admin or an `events` key.
fn event_access(app: &App) -> Access {
    if app.config.events.is_open() {
        Access::Open
    } else {
        Access::AdminOrKey(Scope::Events)
    }
}

/// The body limit of the image routes: the image, and room for a multipart
/// envelope around it (the image itself is held to its own limit).
fn image_body_limit(app: &App) -> u64 {
    app.config
        .storage
        .max_image_size
        .saturating_add(files::MULTIPART_OVERHEAD)
}

/// The body limit of `POST /api/v1/predict`: room for `--max-batch`
/// instances of 1 KiB, and never less than `--max-body`.
fn batch_body_limit(app: &App) -> u64 {
    let per_instance = 1024;
    (app.config.model.max_batch as u64)
        .saturating_mul(per_instance)
        .max(app.config.limits.max_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_builds() {
        table(&crate::app::test_app());
    }
}

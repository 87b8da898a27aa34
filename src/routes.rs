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

use crate::App;
use crate::auth::Scope;
use crate::handlers::session::{self, Access};
use crate::handlers::{accounts, alerts, basics, docs, files, keys, operator, predict};
use crate::router::Router;

pub fn table(app: &App) -> Router<App, Access> {
    use Access::{Account, AdminOrKey, Open, OwnFiles};
    let router = Router::new(app.config.limits.max_body, session::admit)
        .get("/status", Open, basics::status)
        // The operator's: what this is, whether it lives, whether it can serve.
        .get("/", Open, operator::index)
        .get("/livez", Open, operator::livez)
        .get("/readyz", Open, operator::readyz)
        // Accounts: signing in and up is open; signing out needs the session.
        .post("/login", Open, accounts::login)
        .post("/api/sign_up", Open, accounts::sign_up)
        .post("/api/sign_in", Open, accounts::sign_in)
        .post("/api/logout", Account, accounts::logout)
        // API keys: admins manage every key; other accounts make files keys
        // for themselves and manage those (the handlers tell them apart).
        .post("/api/v1/keys", Account, keys::create)
        .get("/api/v1/keys", Account, keys::list)
        .delete("/api/v1/keys/{name}", Account, keys::revoke)
        // Predictions: open, as the seeds serve them.
        .get(
            "/predict/{seller_available}/{month}/{customer_visiting_website}",
            Open,
            predict::predict_path,
        )
        .post("/predict", Open, predict::predict_form)
        .post("/api/v1/predict", Open, predict::predict_batch)
        // A batch may hold --max-batch instances of up to ~1 KiB each.
        .body_limit(batch_body_limit(app))
        .get("/api/v1/model", Open, predict::model_info)
        .get("/api/v1/openapi.json", Open, predict::openapi)
        // Transaction alerts: events are open or protected by where wren
        // listens; profiles and histories are every user's, so admins' and
        // alerts keys' only.
        .post("/event", event_access(app), alerts::event)
        .get(
            "/api/v1/users/{user_id:int}/alert-profile",
            AdminOrKey(Scope::Alerts),
            alerts::get_profile,
        )
        .put(
            "/api/v1/users/{user_id:int}/alert-profile",
            AdminOrKey(Scope::Alerts),
            alerts::put_profile,
        )
        .get(
            "/api/v1/users/{user_id:int}/events",
            AdminOrKey(Scope::Alerts),
            alerts::list_events,
        )
        // Files and images: the caller's own account's.
        .put("/api/file/{key:path}", OwnFiles, files::put_file)
        .body_limit(app.config.storage.max_object_size)
        .get("/api/file/{key:path}", OwnFiles, files::get_file)
        .delete("/api/file/{key:path}", OwnFiles, files::delete_file)
        .get("/api/files_keys", OwnFiles, files::list_keys)
        .get("/api/v1/files", OwnFiles, files::list_files)
        .get("/api/v1/account", Account, files::account)
        .post("/img/add", OwnFiles, files::add_image)
        .body_limit(image_body_limit(app))
        .post("/api/v1/images", OwnFiles, files::upload_image)
        .body_limit(image_body_limit(app))
        .get("/api/v1/images/{id}", OwnFiles, files::get_image);
    // The API documentation, unless --no-docs.
    let router = if app.config.docs.enabled {
        router
            .get("/docs", Open, docs::page)
            .get("/docs/assets/{file}", Open, docs::asset)
    } else {
        router
    };
    #[cfg(feature = "test-routes")]
    let router = crate::handlers::testing::routes(router);
    router
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

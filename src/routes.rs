//! The route table: every route wren serves, in one place.

use crate::App;
use crate::handlers::{accounts, alerts, basics, files, predict};
use crate::router::Router;

pub fn table(app: &App) -> Router<App> {
    let router = Router::new(app.config.limits.max_body)
        .get("/status", basics::status)
        .post("/login", accounts::login)
        .post("/api/sign_up", accounts::sign_up)
        .post("/api/sign_in", accounts::sign_in)
        .post("/api/logout", accounts::logout)
        .get(
            "/predict/{seller_available}/{month}/{customer_visiting_website}",
            predict::predict_path,
        )
        .post("/predict", predict::predict_form)
        .post("/api/v1/predict", predict::predict_batch)
        // A batch may hold --max-batch instances of up to ~1 KiB each.
        .body_limit(batch_body_limit(app))
        .get("/api/v1/model", predict::model_info)
        .get("/api/v1/openapi.json", predict::openapi)
        .post("/event", alerts::event)
        .get(
            "/api/v1/users/{user_id:int}/alert-profile",
            alerts::get_profile,
        )
        .put(
            "/api/v1/users/{user_id:int}/alert-profile",
            alerts::put_profile,
        )
        .get("/api/v1/users/{user_id:int}/events", alerts::list_events)
        .put("/api/file/{key:path}", files::put_file)
        .body_limit(app.config.storage.max_object_size)
        .get("/api/file/{key:path}", files::get_file)
        .delete("/api/file/{key:path}", files::delete_file)
        .get("/api/files_keys", files::list_keys)
        .get("/api/v1/files", files::list_files)
        .get("/api/v1/account", files::account)
        .post("/img/add", files::add_image)
        .body_limit(image_body_limit(app))
        .post("/api/v1/images", files::upload_image)
        .body_limit(image_body_limit(app))
        .get("/api/v1/images/{id}", files::get_image);
    #[cfg(feature = "test-routes")]
    let router = crate::handlers::testing::routes(router);
    router
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

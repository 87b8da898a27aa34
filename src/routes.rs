//! The route table: every route wren serves, in one place.

use crate::App;
use crate::handlers::{accounts, alerts, basics, predict};
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
        .post("/event", alerts::event)
        .get(
            "/api/v1/users/{user_id:int}/alert-profile",
            alerts::get_profile,
        )
        .put(
            "/api/v1/users/{user_id:int}/alert-profile",
            alerts::put_profile,
        )
        .get("/api/v1/users/{user_id:int}/events", alerts::list_events);
    #[cfg(feature = "test-routes")]
    let router = crate::handlers::testing::routes(router);
    router
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

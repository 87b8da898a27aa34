//! The route table: every route wren serves, in one place.

use crate::App;
use crate::handlers::basics;
use crate::router::Router;

pub fn table(app: &App) -> Router<App> {
    let router = Router::new(app.config.limits.max_body).get("/status", basics::status);
    #[cfg(feature = "test-routes")]
    let router = crate::handlers::testing::routes(router);
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_builds() {
        table(&crate::app::test_app());
    }
}

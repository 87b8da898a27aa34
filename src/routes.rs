//! The route table: every route wren serves, in one place.

use crate::App;
use crate::handlers::{accounts, basics};
use crate::router::Router;

pub fn table(app: &App) -> Router<App> {
    let router = Router::new(app.config.limits.max_body)
        .get("/status", basics::status)
        .post("/login", accounts::login)
        .post("/api/sign_up", accounts::sign_up)
        .post("/api/sign_in", accounts::sign_in)
        .post("/api/logout", accounts::logout);
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

//! The throwaway PostgreSQL server `scripts/with-postgres.sh` starts, for
//! the tests of the PostgreSQL store and of instances sharing it.

use std::time::Duration;

use wren::postgres::{Client, Config};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The test server's URL, or `None` (and a note) when there is none; a
/// failure instead when `WREN_TEST_POSTGRES=required`.
pub fn url(test: &str) -> Option<String> {
    let url = std::env::var("WREN_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty());
    if url.is_none() {
        assert!(
            std::env::var("WREN_TEST_POSTGRES").as_deref() != Ok("required"),
            "{test}: WREN_TEST_DATABASE_URL is not set, and WREN_TEST_POSTGRES=required"
        );
        eprintln!(
            "skipped {test} on PostgreSQL: WREN_TEST_DATABASE_URL is not set (run through \
             scripts/with-postgres.sh)"
        );
    }
    url
}

/// A fresh database for `test` on the test server (dropped first if a
/// run before left it): its config.
pub fn fresh_database(test: &str) -> Option<Config> {
    let mut config = Config::parse(&url(test)?).unwrap();
    let name = format!("wren_test_{}_{test}", std::process::id());
    let mut admin = Client::connect(&config, TIMEOUT).unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    config.database = name;
    Some(config)
}

/// `config` as a URL again, for `--database-url`.
pub fn url_of(config: &Config) -> String {
    format!(
        "postgres://{}:{}@{}:{}/{}",
        config.user,
        config.password.as_deref().unwrap_or(""),
        config.host,
        config.port,
        config.database
    )
}

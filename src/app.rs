//! The application state every handler receives.

use crate::config::Config;
use crate::store::Store;
use crate::store::sqlite::SqliteStore;

/// Shared, read-mostly state of a running server.
pub struct App {
    pub config: Config,
    pub store: Box<dyn Store>,
}

impl App {
    /// Opens the embedded store in the data folder.
    pub fn open(config: Config) -> Result<App, String> {
        let store = SqliteStore::open(&config.data_dir).map_err(|err| err.to_string())?;
        Ok(App {
            config,
            store: Box::new(store),
        })
    }
}

/// An `App` on default settings over a fresh data folder, for unit tests.
#[cfg(test)]
pub(crate) fn test_app() -> App {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wren-unit-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data_dir = dir.to_str().unwrap();
    let config = Config::parse("wren", &["--data-dir", data_dir], |_| None).unwrap();
    App::open(config).unwrap()
}

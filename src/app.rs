//! The application state every handler receives.

use crate::config::Config;

/// Shared, read-mostly state of a running server.
#[derive(Debug)]
pub struct App {
    pub config: Config,
}

impl App {
    pub fn new(config: Config) -> Self {
        App { config }
    }
}

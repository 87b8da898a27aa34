//! wren: one small, static, blocking HTTP server for the APIs small teams
//! keep rebuilding in Flask.
//!
//! A request travels: [`http`] (the engine: sockets, parsing, limits) →
//! [`router`] (the route table in [`routes`]) → a pure handler in
//! [`handlers`] → a [`http::Response`] written back by the engine. Handlers
//! are plain functions of ([`App`], request), so they are unit-tested
//! without sockets. See `docs/ARCHITECTURE.md` for the map.
//!
//! Comments say *seed* for one of the four small Flask projects whose
//! contracts (routes, fields, messages) wren keeps; the glossary in
//! `docs/ARCHITECTURE.md` lists them.

pub mod acme;
pub mod alerts;
pub mod app;
pub mod auth;
pub mod backup;
pub mod blob;
pub mod certificates;
pub mod commands;
pub mod config;
pub mod cors;
pub mod date;
#[cfg(any(test, fuzzing))]
pub mod fuzz;
pub mod group_commit;
pub mod handlers;
pub mod hex;
pub mod http;
pub mod metrics;
pub mod model;
pub mod peer;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod router;
pub mod routes;
pub mod sqlite;
pub mod store;
pub mod text;

pub use app::App;
pub use config::{Command, Config};

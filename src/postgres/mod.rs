//! A blocking PostgreSQL client, for running wren's state on PostgreSQL
//! when several instances share it.
//!
//! Why not the `postgres` crate: its blocking `Client` drives a tokio
//! runtime inside each connection, and wren keeps async runtimes out of
//! its serving path (see docs/ARCHITECTURE.md). `postgres-protocol`, from
//! the same project, is that crate's sans-IO layer: it builds and parses
//! every message and does SCRAM; what is left, moving bytes over a
//! `TcpStream` and keeping the protocol's turns, is [`client`]. TLS is
//! rustls with the ring provider, as everywhere else in wren.
//!
//! - [`config`]: the `postgres://` URL.
//! - [`client`]: one connection: connect, TLS, log in, query.
//! - [`tls`]: `sslmode`'s certificate checks.
//! - [`pool`]: connections shared by an instance's threads, and schema
//!   migrations.
//! - [`error`]: what can go wrong, as [`PgError`].

pub mod client;
pub mod config;
pub mod error;
pub mod pool;
mod tls;

pub use client::{Client, Param, Row};
pub use config::{Config, SslMode};
pub use error::PgError;
pub use pool::Pool;

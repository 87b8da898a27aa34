//! What can go wrong talking to PostgreSQL.

use std::fmt;
use std::io;

/// A failed connection or query.
#[derive(Debug)]
pub enum PgError {
    /// No server answered at the address (or the name did not resolve).
    Unreachable(String),
    /// The connection failed or timed out; it is unusable.
    Io(io::Error),
    /// TLS could not be set up as the URL asks.
    Tls(String),
    /// Logging in failed on wren's side (the server's refusals are `Db`).
    Auth(String),
    /// The server sent what the protocol does not allow here.
    Protocol(String),
    /// The server's error, with its SQLSTATE (`23505` a unique violation,
    /// `28P01` a wrong password…).
    Db {
        code: String,
        message: String,
        detail: Option<String>,
    },
}

impl PgError {
    /// The SQLSTATE of a server error.
    pub fn code(&self) -> Option<&str> {
        match self {
            PgError::Db { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::Unreachable(what) => f.write_str(what),
            PgError::Io(err) => write!(f, "connection to PostgreSQL failed: {err}"),
            PgError::Tls(what) => write!(f, "TLS to PostgreSQL: {what}"),
            PgError::Auth(what) => write!(f, "logging in to PostgreSQL: {what}"),
            PgError::Protocol(what) => write!(f, "PostgreSQL protocol: {what}"),
            PgError::Db {
                code,
                message,
                detail,
            } => {
                write!(f, "PostgreSQL: {message} (SQLSTATE {code})")?;
                if let Some(detail) = detail {
                    write!(f, ": {detail}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for PgError {}

//! Accounts and authentication: password hashing, tokens, the server
//! secret, the guard routes call, and brute-force limits.

pub mod password;
pub mod secret;
pub mod tokens;

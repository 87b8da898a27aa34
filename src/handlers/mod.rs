//! Request handlers, one module per API family. Each handler is a pure
//! function `fn(&App, &mut Request) -> Result<Response, ApiError>`; who may
//! call it is declared beside it in the route table and enforced by
//! `session`.

pub mod accounts;
pub mod alerts;
pub mod basics;
pub mod docs;
mod errors;
pub mod files;
pub mod keys;
pub mod openapi;
pub mod operator;
pub mod predict;
pub mod rate;
pub mod session;
#[cfg(feature = "test-routes")]
pub mod testing;

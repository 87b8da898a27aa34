//! Request handlers, one module per API family. Each handler is a pure
//! function `fn(&App, &mut Request) -> Result<Response, ApiError>`; who may
//! call it is declared beside it in the route table and enforced by
//! `session`. A handler whose answer waits on work it hands off (the
//! commit of an event or a sign-up) returns a stand-in and sends the
//! answer later (`Response::later`), holding no thread meanwhile.

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

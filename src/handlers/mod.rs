//! Request handlers, one module per API family. Each handler is a pure
//! function `fn(&App, &mut Request) -> Result<Response, ApiError>`.

pub mod accounts;
pub mod alerts;
pub mod basics;
pub mod files;
pub mod predict;
#[cfg(feature = "test-routes")]
pub mod testing;

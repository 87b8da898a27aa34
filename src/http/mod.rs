//! wren's HTTP/1.1 engine: blocking sockets, one thread per connection up
//! to a cap, and a deadline on every read and write.
//!
//! Why not tiny_http: version 0.12 aborts the process on a large
//! `Content-Length`, has no timeouts, starts unbounded threads, has no
//! header size limit and can stop accepting for good after one accept
//! error. This engine keeps its simplicity (blocking I/O, no async runtime)
//! and bounds everything: see [`limits`].
//!
//! The pieces, in the order a request meets them:
//! - [`server`]: listener, accept loop, connection cap, threads, shutdown;
//! - `conn`: one connection's request/response loop and response framing;
//! - `head`: request-head parsing (on `httparse`) and body framing rules;
//! - [`body`]: the chunked/length decoder and the handler-facing body;
//! - [`request`], [`response`], [`error`]: the types handlers work with;
//! - [`fields`], [`multipart`]: the parsers for what handlers read from bodies;
//! - [`log`]: the access log; `date`: timestamps.

pub mod body;
mod conn;
pub mod error;
pub mod fields;
mod head;
pub mod limits;
pub mod log;
pub mod multipart;
pub mod percent;
pub mod problems;
pub mod request;
pub mod response;
pub mod server;

pub use body::Body;
pub use error::ApiError;
pub use fields::Fields;
pub use limits::Limits;
pub use problems::Problems;
pub use request::{Param, Request};
pub use response::Response;
pub use server::{Server, Service};

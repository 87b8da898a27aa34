//! wren's HTTP/1.1 engine: a sans-IO connection machine, the socket layer
//! around it, parsing and limits. It knows HTTP and nothing of the
//! application: it serves any [`Service`].
//!
//! Why not tiny_http: version 0.12 aborts the process on a large
//! `Content-Length`, has no timeouts, starts unbounded threads, has no
//! header size limit and can stop accepting for good after one accept
//! error. This engine keeps its simplicity (blocking handlers, no async
//! runtime) and bounds everything: see [`limits`].
//!
//! The pieces, from the wire inwards:
//! - [`server`]: the listener, the accept loop and monitor, the worker
//!   threads (up to `--max-threads`) and graceful shutdown; `registry`:
//!   the open connections, parked in an epoll set or busy, and the caps on
//!   them in all and per client address;
//! - `connection`: one connection driven over a [`transport`] (a TCP
//!   socket, or a [`tls`] session over one): moves bytes
//!   between the socket and the machine, runs the service for each request
//!   (a panic becomes that request's `500`), writes the access log;
//! - `machine`: the connection as a pure state machine: phases, deadlines,
//!   keep-alive, pipelining, `100 Continue`, HEAD, framing of requests and
//!   answers; unit-tested byte for byte with a fake clock;
//! - `head`: request-head parsing (on `httparse`) and the framing rules;
//!   `decode`: the body decoder (length and chunked) over byte slices;
//! - [`request`], [`response`], [`body`], [`error`], [`problems`]: the types
//!   handlers work with, and `status`: the one status-code table;
//! - [`fields`], [`multipart`], [`percent`]: the parsers for what handlers
//!   read from requests;
//! - [`redirect`]: the plain listener beside a TLS one (`308` to HTTPS,
//!   ACME HTTP-01 challenges);
//! - [`log`]: the server's log and access log; [`stats`]: what the engine
//!   counts about itself (connections, requests in flight, refusals, TLS
//!   handshakes), for the application's metrics.

pub mod body;
mod connection;
mod decode;
pub mod error;
pub mod fields;
#[cfg(any(test, fuzzing))]
pub mod fuzz;
mod head;
pub mod limits;
pub mod log;
mod machine;
pub mod multipart;
pub mod percent;
pub mod problems;
pub mod redirect;
mod registry;
pub mod request;
pub mod response;
pub mod server;
pub mod stats;
mod status;
pub mod tls;
pub mod transport;

pub use body::Body;
pub use connection::{Service, Site};
pub use error::ApiError;
pub use fields::Fields;
pub use limits::Limits;
pub use problems::{Problem, Problems};
pub use request::{Param, Request};
pub use response::Response;
pub use server::{Endpoint, Server};

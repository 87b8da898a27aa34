//! Every bound the engine enforces, in one place. The ones an operator may
//! change are fields of [`Limits`] (each a command-line flag, see
//! `config/settings.rs`); the fixed ones are constants.

use std::time::Duration;

/// The largest request head (request line and header fields) accepted; past
/// it the request gets `431` (`414` when the request line alone is longer).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The most header fields one request may carry (`431` past it).
pub const MAX_HEADERS: usize = 100;

/// How much of a body the handler left unread the engine will read and throw
/// away to keep the connection alive; a larger remainder closes it instead.
pub const DRAIN_LIMIT: u64 = 64 * 1024;

/// The longest chunk-size line (size and extensions) in a chunked body.
pub const MAX_CHUNK_LINE: usize = 4096;

/// The most parts one `multipart/form-data` body may have.
pub const MAX_PARTS: usize = 100;

/// The largest head (the header fields) of one multipart part.
pub const MAX_PART_HEAD_BYTES: usize = 8 * 1024;

/// How long a connection that is being closed after an error keeps reading
/// what the client still sends, so that the error response is not lost to a
/// TCP reset ("lingering close").
pub const LINGER_TIMEOUT: Duration = Duration::from_millis(500);

/// The most a lingering close reads and drops before cutting the connection.
pub const LINGER_LIMIT: usize = 64 * 1024;

/// How long the accept loop pauses after an accept error such as running out
/// of file descriptors, so that it does not spin while the condition lasts.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a request body or an answer may move at any pace before the
/// minimum rate (`Limits::min_rate`) applies: room for TCP's slow start and
/// for a client that pauses once.
pub const MIN_RATE_GRACE: Duration = Duration::from_secs(5);

/// The bounds an operator can set.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Connections open at once; one more gets `503` with `Retry-After: 1`.
    pub max_connections: usize,
    /// Connections open at once from one address (an IPv6 client counts by
    /// its /64, which is what one host is usually given); one more gets
    /// `503` while other addresses are still served. `0`: no such limit.
    pub max_connections_per_address: usize,
    /// Worker threads waiting for ready connections. More are started while
    /// all are stuck in slow requests, up to `max_threads`, and leave when
    /// idle. More than one per core only adds wake-ups.
    pub threads: usize,
    /// The most worker threads ever running. When all are busy, ready
    /// connections wait their turn, under their deadlines.
    pub max_threads: usize,
    /// The slowest average pace, in bytes per second, of a request body or
    /// an answer after [`MIN_RATE_GRACE`]: a body slower than that gets
    /// `408`, an answer slower than that is cut, so that a client dripping a
    /// byte now and then cannot hold a worker for ever. `0`: no minimum.
    pub min_rate: u64,
    /// The whole request head must arrive within this time.
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this time.
    pub keep_alive_timeout: Duration,
    /// Each body read and each response write must make progress within this time.
    pub io_timeout: Duration,
    /// Default request-body limit for routes that do not set their own.
    pub max_body: u64,
    /// How long in-flight requests may take to finish after SIGTERM or SIGINT.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_address: 64,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_threads: 256,
            min_rate: 512,
            header_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(30),
            max_body: 1024 * 1024,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

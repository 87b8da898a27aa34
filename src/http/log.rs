//! The server's log on stderr: one line per request (the access log) and one
//! per server event, as text or JSON lines (`--log-format`).
//!
//! The access log records the path without the query string, which may
//! carry credentials (the seed clients send passwords there).
//!
//! Lines are appended to a shared buffer and written by one writer thread,
//! a batch per `write`: a locked `write(2)` per request cost about 2 µs of
//! CPU per request under load (measured with `make bench`), more than the
//! rest of a `/status` request. Call [`flush`] before the process exits.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::Duration;

use serde::Serialize;

use crate::date::{now_rfc3339, push_three_digits, write_rfc3339_now};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The least severe lines written (`--log-level`): `Info` writes the access
/// log and notable events, `Warn` only what needs attention (refusals at the
/// caps and worse), `Error` only failures, `Debug` also what a client did
/// wrong below HTTP (a TLS handshake that failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
}

/// One finished request.
pub struct AccessEntry<'a> {
    pub request_id: &'a str,
    pub peer: SocketAddr,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    /// Bytes written for the response, head included.
    pub bytes: u64,
    pub duration: Duration,
    /// The TLS version of the connection; `None` over plain TCP.
    pub tls: Option<&'static str>,
}

#[derive(Serialize)]
struct AccessLine<'a> {
    time: &'a str,
    level: &'static str,
    request_id: &'a str,
    peer: String,
    method: &'a str,
    path: &'a str,
    status: u16,
    bytes: u64,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<&'static str>,
}

#[derive(Serialize)]
struct EventLine<'a> {
    time: &'a str,
    level: &'a str,
    message: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub struct Logger {
    format: LogFormat,
    level: LogLevel,
}

impl Logger {
    pub fn new(format: LogFormat, level: LogLevel) -> Self {
        Logger { format, level }
    }

    pub fn access(&self, entry: &AccessEntry<'_>) {
        if self.level < LogLevel::Info {
            return;
        }
        let micros = entry.duration.as_micros();
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            match self.format {
                LogFormat::Text => text_access_line(&mut line, entry, micros),
                LogFormat::Json => {
                    let record = AccessLine {
                        time: &now_rfc3339(),
                        level: "info",
                        request_id: entry.request_id,
                        peer: entry.peer.to_string(),
                        method: entry.method,
                        path: entry.path,
                        status: entry.status,
                        bytes: entry.bytes,
                        duration_ms: micros as f64 / 1000.0,
                        tls: entry.tls,
                    };
                    let _ = serde_json::to_writer(&mut *line, &record);
                    line.push(b'\n');
                }
            }
            write_line(&line);
        });
    }

    pub fn debug(&self, message: &str) {
        self.event(LogLevel::Debug, message);
    }

    pub fn info(&self, message: &str) {
        self.event(LogLevel::Info, message);
    }

    pub fn warn(&self, message: &str) {
        self.event(LogLevel::Warn, message);
    }

    pub fn error(&self, message: &str) {
        self.event(LogLevel::Error, message);
    }

    fn event(&self, level: LogLevel, message: &str) {
        if level > self.level {
            return;
        }
        let level = match level {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        };
        let time = now_rfc3339();
        let line = match self.format {
            // One event, one line: a multi-line message (a panic's) is folded.
            LogFormat::Text => format!("{time} [{level}] {}\n", message.replace('\n', "\\n")),
            LogFormat::Json => json_line(&EventLine {
                time: &time,
                level,
                message,
            }),
        };
        write_line(line.as_bytes());
    }
}

/// Appends the text form of an access line:
/// `TIME ID PEER METHOD PATH STATUS BYTES MS.FRACms`. Written piece by
/// piece rather than through `write!`, whose formatting machinery was a
/// tenth of a `/status` request's user-space CPU (perf, `make bench`).
fn text_access_line(line: &mut Vec<u8>, entry: &AccessEntry<'_>, micros: u128) {
    let mut number = itoa::Buffer::new();
    write_rfc3339_now(line);
    for text in [" ", entry.request_id, " "] {
        line.extend_from_slice(text.as_bytes());
    }
    match entry.peer {
        SocketAddr::V4(peer) => {
            for (i, octet) in peer.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    line.push(b'.');
                }
                line.extend_from_slice(number.format(octet).as_bytes());
            }
            line.push(b':');
            line.extend_from_slice(number.format(peer.port()).as_bytes());
        }
        SocketAddr::V6(peer) => {
            let _ = write!(line, "{peer}");
        }
    }
    for text in [" ", entry.method, " ", entry.path, " "] {
        line.extend_from_slice(text.as_bytes());
    }
    line.extend_from_slice(number.format(entry.status).as_bytes());
    line.push(b' ');
    line.extend_from_slice(number.format(entry.bytes).as_bytes());
    line.push(b' ');
    line.extend_from_slice(number.format(micros / 1000).as_bytes());
    line.push(b'.');
    push_three_digits(line, (micros % 1000) as u32);
    line.extend_from_slice(b"ms\n");
}

thread_local! {
    /// Each thread formats its access lines in one reused buffer.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
}

fn json_line(record: &impl Serialize) -> String {
    let mut line = serde_json::to_string(record).unwrap_or_default();
    line.push('\n');
    line
}

/// Log bytes waiting for the writer; past this, request threads wait for it
/// (back-pressure from a slow stderr instead of unbounded memory).
const MAX_PENDING_LOG: usize = 1024 * 1024;

/// How long the writer gathers lines before writing them as one batch. A
/// line reaches stderr at most this much later than it was logged.
const LOG_BATCH_INTERVAL: Duration = Duration::from_millis(10);

struct LogBuffer {
    state: Mutex<Pending>,
    /// Signalled when lines arrive for a sleeping writer, and when a batch
    /// has been written (for threads waiting on a full buffer or a flush).
    changed: Condvar,
    /// No writer thread could be started: lines are written at once.
    direct: bool,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// The writer waits for lines and must be woken; while it is busy it
    /// comes back on its own, so loggers need not make a wake-up call.
    writer_asleep: bool,
    /// A batch taken by the writer and not yet written.
    writing: bool,
}

fn buffer() -> &'static LogBuffer {
    static BUFFER: OnceLock<LogBuffer> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let spawned = thread::Builder::new()
            .name("wren-log".into())
            .spawn(write_batches);
        LogBuffer {
            state: Mutex::new(Pending::default()),
            changed: Condvar::new(),
            direct: spawned.is_err(),
        }
    })
}

fn lock(buffer: &LogBuffer) -> std::sync::MutexGuard<'_, Pending> {
    buffer.state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn write_line(line: &[u8]) {
    let buffer = buffer();
    if buffer.direct {
        let _ = std::io::stderr().lock().write_all(line);
        return;
    }
    let mut pending = lock(buffer);
    while pending.bytes.len() > MAX_PENDING_LOG {
        pending = buffer
            .changed
            .wait(pending)
            .unwrap_or_else(PoisonError::into_inner);
    }
    pending.bytes.extend_from_slice(line);
    let wake = std::mem::take(&mut pending.writer_asleep);
    drop(pending);
    if wake {
        buffer.changed.notify_all();
    }
}

/// The writer thread: sleeps until lines arrive, then gathers for a batch
/// interval and writes everything at once.
fn write_batches() {
    let buffer = buffer();
    let mut batch = Vec::new();
    loop {
        {
            let mut pending = lock(buffer);
            while pending.bytes.is_empty() {
                pending.writer_asleep = true;
                pending = buffer
                    .changed
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        thread::sleep(LOG_BATCH_INTERVAL);
        {
            let mut pending = lock(buffer);
            std::mem::swap(&mut batch, &mut pending.bytes);
            pending.writing = true;
        }
        let _ = std::io::stderr().lock().write_all(&batch);
        batch.clear();
        lock(buffer).writing = false;
        buffer.changed.notify_all();
    }
}

/// Waits until every line logged so far has been written to stderr.
pub fn flush() {
    let buffer = buffer();
    let mut pending = lock(buffer);
    while !pending.bytes.is_empty() || pending.writing {
        let (next, timeout) = buffer
            .changed
            .wait_timeout(pending, Duration::from_secs(5))
            .unwrap_or_else(PoisonError::into_inner);
        pending = next;
        if timeout.timed_out() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_access_lines_read_as_the_format_says() {
        for (peer, micros) in [
            ("127.0.0.1:52814", 0u128),
            ("203.0.113.255:9", 1_234_567),
            ("[2001:db8::1]:443", 999),
            ("[::ffff:10.0.0.1]:8080", 1000),
        ] {
            let entry = AccessEntry {
                request_id: "a1b2c3",
                peer: peer.parse().unwrap(),
                method: "GET",
                path: "/status",
                status: 200,
                bytes: 1234,
                duration: Duration::from_micros(micros as u64),
                tls: None,
            };
            let mut line = Vec::new();
            text_access_line(&mut line, &entry, micros);
            let line = String::from_utf8(line).unwrap();
            let (time, rest) = line.split_once(' ').unwrap();
            assert!(time.len() == 24 && time.ends_with('Z'), "{time}");
            assert_eq!(
                rest,
                format!(
                    "a1b2c3 {peer} GET /status 200 1234 {}.{:03}ms\n",
                    micros / 1000,
                    micros % 1000
                )
            );
        }
    }
}

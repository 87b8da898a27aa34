//! The server's log on stderr: one line per request (the access log) and one
//! per server event, as text or JSON lines (`--log-format`).
//!
//! The access log records the path without the query string, which may
//! carry credentials (the seed clients send passwords there).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use super::date::now_rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("expected 'text' or 'json', got '{other}'")),
        }
    }
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
}

impl Logger {
    pub fn new(format: LogFormat) -> Self {
        Logger { format }
    }

    pub fn access(&self, entry: &AccessEntry<'_>) {
        let time = now_rfc3339();
        let duration_ms = entry.duration.as_secs_f64() * 1000.0;
        let mut line = String::with_capacity(160);
        match self.format {
            LogFormat::Text => {
                let _ = writeln!(
                    line,
                    "{time} {id} {peer} {method} {path} {status} {bytes} {duration_ms:.3}ms",
                    id = entry.request_id,
                    peer = entry.peer,
                    method = entry.method,
                    path = entry.path,
                    status = entry.status,
                    bytes = entry.bytes,
                );
            }
            LogFormat::Json => {
                let record = AccessLine {
                    time: &time,
                    level: "info",
                    request_id: entry.request_id,
                    peer: entry.peer.to_string(),
                    method: entry.method,
                    path: entry.path,
                    status: entry.status,
                    bytes: entry.bytes,
                    duration_ms: (duration_ms * 1000.0).round() / 1000.0,
                };
                line = json_line(&record);
            }
        }
        write_line(&line);
    }

    pub fn info(&self, message: &str) {
        self.event("info", message);
    }

    pub fn error(&self, message: &str) {
        self.event("error", message);
    }

    fn event(&self, level: &str, message: &str) {
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
        write_line(&line);
    }
}

fn json_line(record: &impl Serialize) -> String {
    let mut line = serde_json::to_string(record).unwrap_or_default();
    line.push('\n');
    line
}

/// One `write` per line, so lines from different threads never interleave.
fn write_line(line: &str) {
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_parses() {
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}

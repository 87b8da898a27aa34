//! Test harness: start the real `wren` binary on a free port, talk to it
//! over real sockets with a deliberately small HTTP client (so tests can
//! also send what no well-behaved client would), read its log.

#![allow(dead_code)] // each test file uses a different part of the harness

pub mod events;
pub mod https;
pub mod pebble;
#[cfg(feature = "postgres")]
pub mod postgres;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_wren");

/// Runs wren to completion with `args` and only the variables in `env`.
pub fn wren(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty folder under cargo's per-test temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::SeqCst);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        Server::start_with(args, |_| {})
    }

    /// Starts wren with `args` (plus `--port 0` and a fresh data dir unless
    /// given), letting `customize` adjust the command first.
    pub fn start_with(args: &[&str], customize: impl FnOnce(&mut Command)) -> Server {
        let data_dir = temp_dir("data");
        let mut command = Command::new(BIN);
        if !args.contains(&"--port") {
            command.args(["--port", "0"]);
        }
        if !args.contains(&"--data-dir") {
            command.arg("--data-dir").arg(&data_dir);
        }
        command
            .args(args)
            .env_remove("PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        customize(&mut command);
        let mut child = command.spawn().expect("start wren");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let listening = line.split("listening on http").nth(1);
                if let Some(addr) = listening.and_then(|rest| rest.split("://").nth(1)) {
                    let end = addr.find(['"', ' ']).unwrap_or(addr.len());
                    let _ = tx.send(addr[..end].to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wren did not start: {:?}", log.lock().unwrap());
        };
        Server {
            child,
            addr: addr.parse().unwrap(),
            data_dir,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
    }

    /// A connection from another loopback address (`127.0.0.2`, say), for
    /// tests of per-address limits: the socket is bound to `from` before it
    /// connects. The server must listen where `from` can reach it (any
    /// loopback address reaches `127.0.0.1`).
    pub fn connect_from(&self, from: std::net::Ipv4Addr) -> TcpStream {
        use std::os::fd::FromRawFd;
        let SocketAddr::V4(to) = self.addr else {
            panic!(
                "connect_from needs an IPv4 server address, got {}",
                self.addr
            );
        };
        let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: a new socket, bound and connected with valid sockaddr_in
        // structs that outlive the calls; the descriptor is handed to the
        // TcpStream, which owns it from then on.
        let stream = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let stream = TcpStream::from_raw_fd(fd);
            let local = sockaddr(from, 0);
            let bound = libc::bind(fd, (&raw const local).cast(), len);
            assert_eq!(bound, 0, "bind {from}: {}", std::io::Error::last_os_error());
            let remote = sockaddr(*to.ip(), to.port());
            let connected = libc::connect(fd, (&raw const remote).cast(), len);
            assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
            stream
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
    }

    /// Sends raw bytes on a new connection; returns the connection to read
    /// the answers from.
    pub fn send(&self, raw: &str) -> BufReader<TcpStream> {
        let mut stream = self.connect();
        stream.write_all(raw.as_bytes()).unwrap();
        BufReader::new(stream)
    }

    /// One request on a new connection.
    pub fn request(&self, raw: &str) -> Response {
        read_response(&mut self.send(raw), !raw.starts_with("HEAD "))
    }

    /// A POST with a body of the given type, plus extra header lines
    /// (each ending in CRLF).
    pub fn post(&self, target: &str, content_type: &str, body: &str, headers: &str) -> Response {
        self.request(&format!(
            "POST {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{headers}\r\n{body}",
            body.len()
        ))
    }

    /// A GET with extra header lines (each ending in CRLF).
    pub fn get_with(&self, path: &str, headers: &str) -> Response {
        self.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n"
        ))
    }

    pub fn get(&self, path: &str) -> Response {
        self.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        ))
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we started and a valid signal number.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, signal) }, 0);
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains `needle` (the log is written after
    /// the response, so a test may see the response first).
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.log().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}: {:#?}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// A field of /proc/PID/status, such as `Threads` or `VmHWM`.
    pub fn proc_status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }
}

/// Four keep-alive clients at once, each sending `requests` requests back
/// to back (`request(client, i)`, the raw bytes) on its own connection:
/// every answer must be a 200 within two seconds. A request the server
/// lost track of fails here instead of waiting for its idle timeout.
pub fn ask_back_to_back(server: &Server, requests: i64, request: fn(i64, i64) -> String) {
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let mut connection = server.send("GET /status HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(read_response(&mut connection, true).status, 200);
            thread::spawn(move || {
                connection
                    .get_ref()
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                for i in 0..requests {
                    let asked = Instant::now();
                    connection
                        .get_mut()
                        .write_all(request(client, i).as_bytes())
                        .unwrap();
                    let answer = read_response(&mut connection, true);
                    assert_eq!(answer.status, 200, "request {i} of client {client}");
                    assert!(
                        asked.elapsed() < Duration::from_secs(2),
                        "request {i} of client {client} took {:?}",
                        asked.elapsed()
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
}

/// Reads one response (skipping `100 Continue`); `with_body` is false for
/// the answer to a HEAD request.
pub fn read_response(reader: &mut impl BufRead, with_body: bool) -> Response {
    loop {
        let response = read_head(reader);
        if response.status == 100 {
            continue;
        }
        return read_body(reader, response, with_body);
    }
}

/// Reads a status line and headers only.
pub fn read_head(reader: &mut impl BufRead) -> Response {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read status line");
    assert!(line.starts_with("HTTP/1.1 "), "bad status line {line:?}");
    let status = line[9..12].parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Response {
        status,
        headers,
        body: Vec::new(),
    }
}

fn read_body(reader: &mut impl BufRead, mut response: Response, with_body: bool) -> Response {
    if !with_body || response.status == 304 || response.status == 204 {
        return response;
    }
    if let Some(len) = response.header("content-length") {
        let mut body = vec![0; len.parse().unwrap()];
        reader.read_exact(&mut body).unwrap();
        response.body = body;
    } else if response.header("transfer-encoding") == Some("chunked") {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            response.body.extend_from_slice(&chunk[..size]);
        }
    } else {
        reader.read_to_end(&mut response.body).unwrap();
    }
    response
}

/// True when the peer has closed the connection (reads end of stream).
pub fn is_closed(reader: &mut impl Read) -> bool {
    let mut byte = [0u8; 1];
    matches!(reader.read(&mut byte), Ok(0) | Err(_))
}

//! One blocking connection to PostgreSQL: `postgres-protocol` builds and
//! parses the messages, this file moves them over a `TcpStream` (in TLS
//! when the URL asks for it) and keeps the protocol's turns.
//!
//! Each query is one round trip of the extended protocol (Parse once per
//! connection for each SQL text, then Bind, Execute, Sync), parameters and
//! results in text format, which every column type has. A failed query
//! leaves the connection usable (the server skips to the Sync); an I/O
//! error does not ([`Client::is_broken`]), and its owner drops it.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::IsNull;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::{DataRowBody, ErrorResponseBody, Message};
use postgres_protocol::message::frontend;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::config::{Config, SslMode};
use super::error::PgError;
use super::tls;

/// A value bound to a `$n` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param<'a> {
    Null,
    Text(std::borrow::Cow<'a, str>),
    /// Sent in binary, for `bytea`.
    Bytes(&'a [u8]),
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(text: &'a str) -> Self {
        Param::Text(text.into())
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(text: &'a String) -> Self {
        Param::Text(text.as_str().into())
    }
}

impl From<i64> for Param<'_> {
    fn from(number: i64) -> Self {
        Param::Text(number.to_string().into())
    }
}

/// For `double precision`: Rust's shortest text that reads back exactly,
/// as PostgreSQL's own output is.
impl From<f64> for Param<'_> {
    fn from(number: f64) -> Self {
        Param::Text(number.to_string().into())
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Param::Bytes(bytes)
    }
}

impl<'a, T: Into<Param<'a>>> From<Option<T>> for Param<'a> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Param::Null, Into::into)
    }
}

/// A row of a result, its columns in text format.
pub struct Row {
    body: DataRowBody,
    columns: Vec<Option<std::ops::Range<usize>>>,
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let columns = (0..self.columns.len()).map(|at| self.text(at).ok().flatten());
        f.debug_list().entries(columns).finish()
    }
}

impl Row {
    /// Column `at` as text; `None` for SQL NULL.
    pub fn text(&self, at: usize) -> Result<Option<&str>, PgError> {
        let range = self
            .columns
            .get(at)
            .ok_or_else(|| PgError::Protocol(format!("no column {at} in a row")))?;
        range
            .clone()
            .map(|range| {
                std::str::from_utf8(&self.body.buffer()[range])
                    .map_err(|_| PgError::Protocol(format!("column {at} is not UTF-8")))
            })
            .transpose()
    }

    /// Column `at`, which must not be NULL, as text.
    pub fn str(&self, at: usize) -> Result<&str, PgError> {
        self.text(at)?
            .ok_or_else(|| PgError::Protocol(format!("column {at} is NULL")))
    }

    /// Column `at` as a whole number.
    pub fn i64(&self, at: usize) -> Result<i64, PgError> {
        let text = self.str(at)?;
        text.parse()
            .map_err(|_| PgError::Protocol(format!("column {at} is not a number: {text}")))
    }

    /// Column `at` as a `double precision`.
    pub fn f64(&self, at: usize) -> Result<f64, PgError> {
        let text = self.str(at)?;
        text.parse()
            .map_err(|_| PgError::Protocol(format!("column {at} is not a number: {text}")))
    }

    /// Column `at` as a `bytea` (text format: `\x` and hex); `None` for NULL.
    pub fn bytes(&self, at: usize) -> Result<Option<Vec<u8>>, PgError> {
        let Some(text) = self.text(at)? else {
            return Ok(None);
        };
        let hex = text
            .strip_prefix("\\x")
            .ok_or_else(|| PgError::Protocol(format!("column {at} is not bytea")))?;
        crate::hex::decode(hex)
            .map(Some)
            .ok_or_else(|| PgError::Protocol(format!("column {at} is not bytea")))
    }
}

/// A connection's byte stream.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

/// An open, authenticated connection.
pub struct Client {
    stream: Stream,
    /// Bytes read and not yet parsed into a message.
    incoming: BytesMut,
    outgoing: BytesMut,
    /// The name each SQL text was prepared under on this connection.
    prepared: HashMap<String, String>,
    /// Set by an I/O or protocol error: the connection's state is unknown.
    broken: bool,
    /// How long an answer may take, from the request to its last message.
    timeout: Duration,
    /// When the answer to the last request sent is overdue: a server that
    /// keeps the answer coming a trickle at a time is cut off there.
    deadline: Instant,
}

/// The longest message accepted from the server (a row, say), past which
/// the connection is broken rather than the buffer grown to what the
/// server claims: far beyond anything wren stores.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

impl Client {
    /// Connects, negotiates TLS as `config.ssl_mode` says, and logs in;
    /// each step waits at most `timeout` for the server.
    pub fn connect(config: &Config, timeout: Duration) -> Result<Client, PgError> {
        let tcp = open_tcp(config, timeout)?;
        let stream = match config.ssl_mode {
            SslMode::Disable => Stream::Plain(tcp),
            mode => negotiate_tls(tcp, config, mode)?,
        };
        let mut client = Client {
            stream,
            incoming: BytesMut::with_capacity(8192),
            outgoing: BytesMut::with_capacity(1024),
            prepared: HashMap::new(),
            broken: false,
            timeout,
            deadline: Instant::now() + timeout,
        };
        client.start_up(config)?;
        Ok(client)
    }

    /// Whether an I/O or protocol error left this connection unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Whether the server has spoken since the last answer, which marks the
    /// connection broken. Between queries a server says nothing unless it
    /// is going (a FATAL error at a shutdown or an administrator's
    /// termination, then the close), so an idle connection that has
    /// something to read, or has been closed, is dropped before a query is
    /// lost on it. One syscall: a peek that does not wait (`MSG_DONTWAIT`,
    /// so the socket stays blocking); no round trip. It is on every
    /// checkout from the pool, so per request.
    pub fn spoke_while_idle(&mut self) -> bool {
        if self.broken {
            return true;
        }
        let tcp = match &self.stream {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref(),
        };
        let mut byte = 0u8;
        // SAFETY: a one-byte buffer of our own, on a socket this client owns.
        let peeked = unsafe {
            libc::recv(
                std::os::fd::AsRawFd::as_raw_fd(tcp),
                (&raw mut byte).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        let quiet = peeked < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock;
        if !quiet || !self.incoming.is_empty() {
            self.broken = true;
        }
        self.broken
    }

    /// Runs `sql` (one or more statements, no parameters) with the simple
    /// protocol: for migrations, `BEGIN` and `COMMIT`.
    pub fn batch_execute(&mut self, sql: &str) -> Result<(), PgError> {
        // What a request that failed to encode (a NUL in its SQL) left.
        self.outgoing.clear();
        frontend::query(sql, &mut self.outgoing).map_err(PgError::Io)?;
        self.send()?;
        let mut failed = None;
        loop {
            match self.receive()? {
                Message::ReadyForQuery(_) => return failed.map_or(Ok(()), Err),
                Message::ErrorResponse(body) => failed = Some(db_error(&body)),
                _ => {}
            }
        }
    }

    /// Runs one statement with `params` for `$1`, `$2`…: its rows.
    pub fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, PgError> {
        Ok(self.run(sql, params)?.0)
    }

    /// Runs one statement with `params`: the rows it inserted, updated or
    /// deleted (0 for other statements).
    pub fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, PgError> {
        Ok(self.run(sql, params)?.1)
    }

    /// Runs `work` in a transaction: committed when it returns `Ok`,
    /// rolled back when it fails.
    pub fn transaction<T>(
        &mut self,
        work: impl FnOnce(&mut Client) -> Result<T, PgError>,
    ) -> Result<T, PgError> {
        self.batch_execute("BEGIN")?;
        match work(self) {
            Ok(done) => {
                self.batch_execute("COMMIT")?;
                Ok(done)
            }
            Err(err) => {
                if !self.broken {
                    // The error that matters is the first one.
                    let _ = self.batch_execute("ROLLBACK");
                }
                Err(err)
            }
        }
    }

    /// Sends a polite goodbye; the connection is closed when dropped.
    pub fn close(mut self) {
        frontend::terminate(&mut self.outgoing);
        let _ = self.send();
    }

    fn run(&mut self, sql: &str, params: &[Param<'_>]) -> Result<(Vec<Row>, u64), PgError> {
        self.outgoing.clear();
        let known = self.prepared.get(sql).cloned();
        let name = match &known {
            Some(name) => name.clone(),
            None => {
                let name = format!("s{}", self.prepared.len());
                frontend::parse(&name, sql, std::iter::empty(), &mut self.outgoing)
                    .map_err(PgError::Io)?;
                name
            }
        };
        let formats = params.iter().map(|param| match param {
            Param::Bytes(_) => 1,
            _ => 0,
        });
        let bound = frontend::bind(
            "",
            &name,
            formats,
            params,
            |param, buf| {
                match param {
                    Param::Null => return Ok(IsNull::Yes),
                    Param::Text(text) => buf.put_slice(text.as_bytes()),
                    Param::Bytes(bytes) => buf.put_slice(bytes),
                }
                Ok(IsNull::No)
            },
            [0],
            &mut self.outgoing,
        );
        if bound.is_err() {
            self.outgoing.clear();
            return Err(PgError::Protocol("cannot encode the parameters".into()));
        }
        frontend::execute("", 0, &mut self.outgoing).map_err(PgError::Io)?;
        frontend::sync(&mut self.outgoing);
        self.send()?;
        let (mut rows, mut affected, mut failed) = (Vec::new(), 0, None);
        loop {
            match self.receive()? {
                Message::ParseComplete => {
                    self.prepared.insert(sql.to_owned(), name.clone());
                }
                Message::DataRow(body) => {
                    let columns = body.ranges().collect().map_err(PgError::Io)?;
                    rows.push(Row { body, columns });
                }
                Message::CommandComplete(body) => {
                    let tag = body.tag().map_err(PgError::Io)?;
                    affected = tag
                        .rsplit(' ')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                }
                Message::ErrorResponse(body) => failed = Some(db_error(&body)),
                Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        match failed {
            Some(err) => Err(err),
            None => Ok((rows, affected)),
        }
    }

    fn start_up(&mut self, config: &Config) -> Result<(), PgError> {
        let parameters = [
            ("user", config.user.as_str()),
            ("database", config.database.as_str()),
            ("application_name", "wren"),
            ("client_encoding", "UTF8"),
        ];
        frontend::startup_message(parameters, &mut self.outgoing).map_err(PgError::Io)?;
        self.send()?;
        let password = || {
            config.password.as_deref().ok_or_else(|| {
                PgError::Auth("the server asks for a password and the URL has none".into())
            })
        };
        let mut scram = None;
        loop {
            match self.receive()? {
                Message::AuthenticationOk => {}
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password()?.as_bytes(), &mut self.outgoing)
                        .map_err(PgError::Io)?;
                    self.send()?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = postgres_protocol::authentication::md5_hash(
                        config.user.as_bytes(),
                        password()?.as_bytes(),
                        body.salt(),
                    );
                    frontend::password_message(hash.as_bytes(), &mut self.outgoing)
                        .map_err(PgError::Io)?;
                    self.send()?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut mechanisms = body.mechanisms();
                    let mut offered = false;
                    while let Some(mechanism) = mechanisms.next().map_err(PgError::Io)? {
                        offered |= mechanism == SCRAM_SHA_256;
                    }
                    if !offered {
                        return Err(PgError::Auth(
                            "the server offers no SASL mechanism wren speaks (SCRAM-SHA-256)"
                                .into(),
                        ));
                    }
                    let exchange =
                        ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(
                        SCRAM_SHA_256,
                        exchange.message(),
                        &mut self.outgoing,
                    )
                    .map_err(PgError::Io)?;
                    self.send()?;
                    scram = Some(exchange);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let exchange = scram.as_mut().ok_or_else(|| unexpected("SASL continue"))?;
                    exchange
                        .update(body.data())
                        .map_err(|err| PgError::Auth(format!("SCRAM: {err}")))?;
                    frontend::sasl_response(exchange.message(), &mut self.outgoing)
                        .map_err(PgError::Io)?;
                    self.send()?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    scram
                        .as_mut()
                        .ok_or_else(|| unexpected("SASL final"))?
                        .finish(body.data())
                        .map_err(|err| {
                            PgError::Auth(format!("the server failed SCRAM's proof: {err}"))
                        })?;
                }
                Message::ErrorResponse(body) => return Err(db_error(&body)),
                Message::ReadyForQuery(_) => return Ok(()),
                Message::BackendKeyData(_) | Message::ParameterStatus(_) => {}
                Message::NoticeResponse(_) => {}
                _ => {
                    return Err(PgError::Auth(
                        "the server asks for an authentication wren does not speak (use \
                         scram-sha-256, md5 or password)"
                            .into(),
                    ));
                }
            }
        }
    }

    /// Writes what is queued in `outgoing`.
    fn send(&mut self) -> Result<(), PgError> {
        self.deadline = Instant::now() + self.timeout;
        let sent = self
            .stream
            .write_all(&self.outgoing)
            .and_then(|()| self.stream.flush());
        self.outgoing.clear();
        sent.map_err(|err| self.break_on(PgError::Io(err)))
    }

    /// The next message from the server.
    fn receive(&mut self) -> Result<Message, PgError> {
        loop {
            // A message's length is in bytes 1 to 4 of its header, counting
            // itself; one longer than the cap is refused before any room is
            // made for it (parsing a partial message reserves room for all
            // of it).
            if let Some(header) = self.incoming.get(1..5) {
                let length = u32::from_be_bytes(header.try_into().expect("four bytes"));
                if length as usize > MAX_MESSAGE {
                    let refused = format!(
                        "the server sent a message of {length} bytes, over the {MAX_MESSAGE} \
                         accepted"
                    );
                    return Err(self.break_on(PgError::Protocol(refused)));
                }
            }
            match Message::parse(&mut self.incoming) {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => {}
                Err(err) => return Err(self.break_on(PgError::Protocol(err.to_string()))),
            }
            if Instant::now() >= self.deadline {
                let overdue = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the server's answer took longer than {} s",
                        self.timeout.as_secs()
                    ),
                );
                return Err(self.break_on(PgError::Io(overdue)));
            }
            let mut chunk = [0u8; 8192];
            let n = match self.stream.read(&mut chunk) {
                Ok(0) => {
                    let closed = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    );
                    return Err(self.break_on(PgError::Io(closed)));
                }
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(self.break_on(PgError::Io(err))),
            };
            self.incoming.extend_from_slice(&chunk[..n]);
        }
    }

    fn break_on(&mut self, err: PgError) -> PgError {
        self.broken = true;
        err
    }
}

fn unexpected(what: &str) -> PgError {
    PgError::Protocol(format!("unexpected {what} from the server"))
}

/// The server's error: its SQLSTATE, message and detail.
fn db_error(body: &ErrorResponseBody) -> PgError {
    let (mut code, mut message, mut detail) = (String::new(), String::new(), None);
    let mut fields = body.fields();
    while let Ok(Some(field)) = fields.next() {
        let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
        match field.type_() {
            b'C' => code = value,
            b'M' => message = value,
            b'D' => detail = Some(value),
            _ => {}
        }
    }
    PgError::Db {
        code,
        message,
        detail,
    }
}

fn open_tcp(config: &Config, timeout: Duration) -> Result<TcpStream, PgError> {
    let addresses = (config.host.as_str(), config.port)
        .to_socket_addrs()
        .map_err(|err| PgError::Unreachable(format!("cannot resolve {}: {err}", config.host)))?;
    let mut last = None;
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(tcp) => {
                tcp.set_read_timeout(Some(timeout))
                    .and_then(|()| tcp.set_write_timeout(Some(timeout)))
                    .and_then(|()| tcp.set_nodelay(true))
                    .map_err(PgError::Io)?;
                return Ok(tcp);
            }
            Err(err) => last = Some(err.to_string()),
        }
    }
    Err(PgError::Unreachable(format!(
        "cannot connect to {}:{}: {}",
        config.host,
        config.port,
        last.unwrap_or_else(|| "no address".into())
    )))
}

/// Asks the server for TLS (SSLRequest) and shakes hands when it agrees;
/// plain TCP when it refuses and `mode` allows that.
fn negotiate_tls(mut tcp: TcpStream, config: &Config, mode: SslMode) -> Result<Stream, PgError> {
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    tcp.write_all(&request).map_err(PgError::Io)?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).map_err(PgError::Io)?;
    match answer[0] {
        b'S' => {}
        b'N' if mode == SslMode::Prefer => return Ok(Stream::Plain(tcp)),
        b'N' => {
            return Err(PgError::Tls(format!(
                "sslmode={} but the server does not offer TLS",
                tls::mode_name(mode)
            )));
        }
        _ => return Err(unexpected("answer to the TLS request")),
    }
    let client_config: Arc<ClientConfig> = tls::client_config(config, mode)?;
    let name = ServerName::try_from(config.host.clone())
        .map_err(|err| PgError::Tls(format!("{} as a TLS server name: {err}", config.host)))?;
    let connection =
        ClientConnection::new(client_config, name).map_err(|err| PgError::Tls(err.to_string()))?;
    let mut stream = StreamOwned::new(connection, tcp);
    // The handshake now, so that a refused certificate is a TLS error
    // rather than a failed first message.
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|err| PgError::Tls(format!("handshake with {}: {err}", config.host)))?;
    }
    Ok(Stream::Tls(Box::new(stream)))
}

//! Command-line flags and environment variables, resolved into one
//! [`Config`]. Every setting is declared once, in [`settings`]; a flag wins
//! over its environment variables, which win over the default. A bad value
//! is a one-line error naming the flag (exit code 2). `wren keys …`,
//! `wren backup …` and `wren restore …` are [`Command`]s of their own, with
//! their flags in [`keys`] and [`backup`].

mod args;
pub mod backup;
mod help;
pub mod keys;
mod parse;
mod settings;
mod values;

use std::env;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::acme::{self, ChallengeKind};
use crate::alerts::TimeUnit;
use crate::backup::Location;
use crate::backup::schedule::Schedule;
use crate::blob::{Quota, S3Config, StorageConfig, StorageKind};
use crate::http::Limits;
use crate::http::log::{LogFormat, LogLevel};
use crate::model::ModelSource;
use backup::BackupCommand;
use keys::KeysCommand;
use parse::{CommandLine, Input};
use settings::Settings;
pub use settings::{Form, SETTINGS, Setting};

/// What the command line asks for: the server (`wren` with no command), or
/// one of the commands beside it.
#[derive(Debug)]
pub enum Command {
    /// Boxed, as the others: each is made once, and they differ in size.
    Serve(Box<Config>),
    Keys(Box<KeysCommand>),
    Backup(Box<BackupCommand>),
    Restore(Box<BackupCommand>),
}

impl Command {
    /// Reads `std::env::args()` and the environment.
    pub fn from_env() -> Result<Command, EarlyExit> {
        let args: Vec<String> = env::args().collect();
        let program = args.first().map_or("wren", String::as_str);
        let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
        Command::parse(program, &rest, |name| env::var(name).ok())
    }

    /// The command named by the first word, when it is one; otherwise the
    /// server's settings (where `help` and unknown commands are answered).
    pub fn parse(
        program: &str,
        args: &[&str],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Command, EarlyExit> {
        match args.split_first() {
            Some((&"keys", rest)) => {
                KeysCommand::parse(program, rest, &lookup).map(|keys| Command::Keys(Box::new(keys)))
            }
            Some((&"backup", rest)) => BackupCommand::backup(program, rest, &lookup)
                .map(|command| Command::Backup(Box::new(command))),
            Some((&"restore", rest)) => BackupCommand::restore(program, rest, &lookup)
                .map(|command| Command::Restore(Box::new(command))),
            _ => {
                Config::parse(program, args, lookup).map(|config| Command::Serve(Box::new(config)))
            }
        }
    }
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    /// HTTPS on `addr`, when wren serves it itself.
    pub tls: Option<TlsConfig>,
    pub data_dir: PathBuf,
    pub limits: Limits,
    pub log_format: LogFormat,
    pub log_level: LogLevel,
    pub auth: AuthConfig,
    pub model: ModelConfig,
    pub event_time_unit: TimeUnit,
    pub events: EventsMode,
    pub rate_limits: RateLimits,
    pub storage: StorageConfig,
    pub docs: DocsConfig,
    pub metrics: MetricsConfig,
    /// Browser origins allowed to call (`--cors-origin`); none by default.
    pub cors_origins: Vec<String>,
    /// The settings given rather than left at their defaults, secrets
    /// hidden, for the start-up log (`Input::given_settings`).
    pub given: Vec<String>,
    /// Backups made while serving (`--backup-every`), when asked for.
    pub backup: Option<Schedule>,
    /// The PostgreSQL database the store is in (`--database-url`); `None`:
    /// SQLite in the data folder.
    #[cfg(feature = "postgres")]
    pub database: Option<crate::postgres::Config>,
}

/// The files of Swagger UI the `/docs` page loads; a `--docs-assets` folder
/// must hold them.
pub const REQUIRED_DOCS_ASSETS: [&str; 2] = ["swagger-ui-bundle.js", "swagger-ui.css"];

/// The API documentation: `/docs` and the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocsConfig {
    pub enabled: bool,
    /// Swagger UI's files, served under `/docs/assets/`; `None`: a CDN.
    pub assets: Option<PathBuf>,
}

/// `GET /metrics`: whether it is served (and anything counted for it),
/// and the bearer token it wants. Its `Debug` output hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub token: Option<String>,
}

impl std::fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("enabled", &self.enabled)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// HTTPS served by wren itself.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub certificate: CertificateSource,
    /// The plain-HTTP listener that redirects to HTTPS.
    pub redirect_port: Option<u16>,
    /// The HTTPS port redirects name, when it is not the listener's own.
    pub redirect_https_port: Option<u16>,
    /// `Strict-Transport-Security: max-age`; `None`: no such header.
    pub hsts_max_age: Option<u64>,
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum CertificateSource {
    /// PEM files, read at start and on SIGHUP.
    Files { cert: PathBuf, key: PathBuf },
    /// An ACME CA, renewed in the background; its folder is
    /// `<data-dir>/acme`.
    Acme(acme::Settings),
}

/// Who may post events, decided at start from where wren listens, as
/// Redis's protected mode decides: a server only loopback clients can reach
/// keeps `POST /event` open, as the seed defines it; one other hosts can
/// reach wants an `events` key or an admin, unless `--open-events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventsMode {
    /// Listening on a loopback address: open.
    Loopback,
    /// Reachable from other hosts, and opened by `--open-events`.
    Opened,
    /// Reachable from other hosts: an `events` key or an admin.
    Protected,
}

impl EventsMode {
    fn decide(host: IpAddr, open_events: bool) -> EventsMode {
        if host.to_canonical().is_loopback() {
            EventsMode::Loopback
        } else if open_events {
            EventsMode::Opened
        } else {
            EventsMode::Protected
        }
    }

    /// Whether anyone may post events.
    pub fn is_open(self) -> bool {
        self != EventsMode::Protected
    }

    /// The start-up log line: which mode applies, and why.
    pub fn explain(self, host: IpAddr) -> String {
        match self {
            EventsMode::Loopback => format!(
                "POST /event is open: wren listens only on {host}, a loopback address other \
                 hosts cannot reach"
            ),
            EventsMode::Opened => format!(
                "POST /event is open to anyone (--open-events), though wren listens on {host}, \
                 which other hosts can reach"
            ),
            EventsMode::Protected => format!(
                "POST /event is protected: wren listens on {host}, which other hosts can reach, \
                 so it takes an API key with the events scope or an admin's token \
                 (--open-events opens it)"
            ),
        }
    }
}

/// `--rate-limiting`: whether the request rate limits apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimiting {
    /// On when wren listens beyond loopback, as the events mode decides.
    Auto,
    On,
    Off,
}

/// Whether the request rate limits apply, decided at start from
/// `--rate-limiting` and where wren listens: a server only loopback
/// clients can reach has one client (its own host, or a proxy on it), which
/// a per-address limit would only slow down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitMode {
    /// `auto`, listening on a loopback address: off.
    Loopback,
    /// `auto`, reachable from other hosts: on.
    Reachable,
    /// `--rate-limiting on` or `off`, wherever wren listens.
    Forced(bool),
}

/// The request rate limits: per client address on every route but the
/// health checks, and per account or API key on signed-in routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub mode: RateLimitMode,
    /// Requests a second, and at once, per client address.
    pub address_rate: u32,
    pub address_burst: u32,
    /// Requests a second, and at once, per account or API key.
    pub account_rate: u32,
    pub account_burst: u32,
    /// The client is the last `X-Forwarded-For` hop, not the socket peer.
    pub trust_proxy: bool,
}

impl RateLimits {
    /// Whether the limits apply.
    pub fn enabled(&self) -> bool {
        match self.mode {
            RateLimitMode::Loopback => false,
            RateLimitMode::Reachable => true,
            RateLimitMode::Forced(on) => on,
        }
    }

    /// The start-up log line: whether the limits apply, and why.
    pub fn explain(&self, host: IpAddr) -> String {
        let limits = format!(
            "{} requests a second per client address after a burst of {}, {} per account or \
             API key after a burst of {}",
            self.address_rate, self.address_burst, self.account_rate, self.account_burst
        );
        let client = if self.trust_proxy {
            "; the client address is the last X-Forwarded-For hop (--trust-proxy)"
        } else {
            ""
        };
        match self.mode {
            RateLimitMode::Loopback => format!(
                "rate limits are off: wren listens only on {host}, a loopback address other \
                 hosts cannot reach (--rate-limiting on turns them on)"
            ),
            RateLimitMode::Reachable => format!(
                "rate limits are on: wren listens on {host}, which other hosts can reach: \
                 {limits}{client}"
            ),
            RateLimitMode::Forced(true) => {
                format!("rate limits are on (--rate-limiting on): {limits}{client}")
            }
            RateLimitMode::Forced(false) => "rate limits are off (--rate-limiting off)".to_owned(),
        }
    }

    fn decide(s: &Settings) -> RateLimits {
        let mode = match s.rate_limiting {
            RateLimiting::On => RateLimitMode::Forced(true),
            RateLimiting::Off => RateLimitMode::Forced(false),
            RateLimiting::Auto if s.host.to_canonical().is_loopback() => RateLimitMode::Loopback,
            RateLimiting::Auto => RateLimitMode::Reachable,
        };
        RateLimits {
            mode,
            address_rate: s.rate_limit,
            address_burst: s.rate_burst,
            account_rate: s.account_rate_limit,
            account_burst: s.account_rate_burst,
            trust_proxy: s.trust_proxy,
        }
    }
}

/// Model-serving settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub source: ModelSource,
    pub max_batch: usize,
    pub max_age: Duration,
}

/// Account and session settings. Its `Debug` output hides the secret and
/// the bootstrap passwords, so a debug print can never leak them.
#[derive(Clone, PartialEq)]
pub struct AuthConfig {
    pub token_ttl: Duration,
    pub cookie_secure: bool,
    pub min_password_length: usize,
    /// Accounts to create or update at start, as users.
    pub users: Vec<(String, String)>,
    /// Accounts to create or update at start, as admins.
    pub admins: Vec<(String, String)>,
    pub signup: bool,
    pub login_rate_per_minute: u32,
    pub login_burst: u32,
    pub signup_rate_per_hour: u32,
    pub signup_burst: u32,
    /// Password hashes computed at once.
    pub max_concurrent_hashes: usize,
    /// How long a password that verified is remembered (zero: never).
    pub password_cache: Duration,
    /// WREN_SECRET, when set (never a flag: command lines are visible to
    /// every user of the host).
    pub secret: Option<String>,
}

/// Why the program stops before serving: help or version text for stdout
/// (exit 0), or a one-line error for stderr (exit 2).
#[derive(Debug)]
pub struct EarlyExit {
    pub output: String,
    pub code: u8,
}

impl EarlyExit {
    fn print(output: String) -> EarlyExit {
        EarlyExit { output, code: 0 }
    }

    /// A command line wren cannot use.
    fn usage(problem: &str) -> EarlyExit {
        EarlyExit {
            output: format!("error: {problem}"),
            code: 2,
        }
    }
}

/// A refused value, named by its flag (or environment variable).
fn bad_value(name: &str, problem: &str) -> EarlyExit {
    EarlyExit::usage(&format!("{name}: {problem}"))
}

impl Config {
    /// The start-up log's line of the settings in effect: those given, the
    /// rest being their defaults (`wren --help` lists them).
    pub fn explain_settings(&self) -> String {
        if self.given.is_empty() {
            return "settings: every one at its default".to_owned();
        }
        format!(
            "settings: {}; every other at its default",
            self.given.join(", ")
        )
    }

    /// Resolves flags, then environment variables (through `lookup`), then
    /// defaults. `program` is how wren was called, for `--help`.
    pub fn parse(
        program: &str,
        args: &[&str],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, EarlyExit> {
        let command_line = CommandLine::read(program, args)?;
        // `wren` with no command is the server; commands are matched here.
        if let Some(command) = command_line.command {
            return Err(EarlyExit::usage(&format!("unknown command '{command}'")));
        }
        let input = Input::new(command_line, &lookup);
        let settings = Settings::resolve(&input)?;
        let mut config = Config::from_settings(settings)?;
        config.given = input.given_settings();
        Ok(config)
    }

    /// Groups the settings into the sections their users take, checking the
    /// rules that span several settings.
    fn from_settings(s: Settings) -> Result<Config, EarlyExit> {
        if s.threads > s.max_threads {
            return Err(bad_value(
                "--threads",
                &format!(
                    "{} is more than --max-threads ({})",
                    s.threads, s.max_threads
                ),
            ));
        }
        if let Some((name, _)) = s
            .admins
            .iter()
            .find(|(admin, _)| s.users.iter().any(|(user, _)| user == admin))
        {
            return Err(bad_value(
                "--admin",
                &format!("'{name}' is also given to --user; an account has one role"),
            ));
        }
        let tls = tls_config(&s)?;
        let docs = docs_config(&s)?;
        if s.no_metrics && s.metrics_token.is_some() {
            return Err(bad_value(
                "WREN_METRICS_TOKEN",
                "--no-metrics serves no /metrics for it to guard",
            ));
        }
        let metrics = MetricsConfig {
            enabled: !s.no_metrics,
            token: s.metrics_token.clone(),
        };
        let rate_limits = RateLimits::decide(&s);
        let storage = storage_config(&s)?;
        let backup = backup_schedule(&s, &storage)?;
        #[cfg(feature = "postgres")]
        let database = database_config(&s)?;
        #[cfg(not(feature = "postgres"))]
        if let Some(none_can_be_named) = s.database_url {
            match none_can_be_named {}
        }
        Ok(Config {
            #[cfg(feature = "postgres")]
            database,
            storage,
            backup,
            addr: SocketAddr::new(s.host, s.port),
            data_dir: s.data_dir,
            limits: Limits {
                threads: s.threads,
                max_threads: s.max_threads,
                max_connections: s.max_connections,
                max_connections_per_address: s.max_connections_per_ip,
                min_rate: s.min_rate,
                header_timeout: s.header_timeout,
                keep_alive_timeout: s.keep_alive_timeout,
                io_timeout: s.io_timeout,
                max_body: s.max_body,
                shutdown_timeout: s.shutdown_timeout,
            },
            log_format: s.log_format,
            log_level: s.log_level,
            auth: AuthConfig {
                token_ttl: s.token_ttl,
                // A cookie sent over HTTPS only, whenever there is HTTPS.
                cookie_secure: s.cookie_secure || tls.is_some(),
                min_password_length: s.min_password_length,
                users: s.users,
                admins: s.admins,
                signup: !s.no_signup,
                login_rate_per_minute: s.login_rate,
                login_burst: s.login_burst,
                signup_rate_per_hour: s.signup_rate,
                signup_burst: s.signup_burst,
                max_concurrent_hashes: s.max_concurrent_hashes,
                password_cache: s.password_cache,
                secret: s.secret,
            },
            model: ModelConfig {
                source: s.model,
                max_batch: s.max_batch,
                max_age: s.predict_max_age,
            },
            event_time_unit: s.event_time_unit,
            events: EventsMode::decide(s.host, s.open_events),
            rate_limits,
            tls,
            docs,
            metrics,
            cors_origins: s.cors_origins,
            given: Vec::new(),
        })
    }
}

/// A database named by `--database-url`: PostgreSQL's connection settings;
/// in a build without PostgreSQL, none can be named.
#[cfg(feature = "postgres")]
pub type Database = crate::postgres::Config;
#[cfg(not(feature = "postgres"))]
pub type Database = std::convert::Infallible;

/// The PostgreSQL database, when one is named: its URL parsed, and the
/// settings several instances sharing it must agree on given.
#[cfg(feature = "postgres")]
fn database_config(s: &Settings) -> Result<Option<crate::postgres::Config>, EarlyExit> {
    let Some(config) = s.database_url.clone() else {
        return Ok(None);
    };
    if s.secret.is_none() {
        return Err(bad_value(
            "--database-url",
            "needs WREN_SECRET: every instance sharing the database must sign and check \
             tokens and seal S3 secrets with the same secret, which a generated one in each \
             data folder is not",
        ));
    }
    if !s.acme_domains.is_empty() {
        return Err(bad_value(
            "--acme-domain",
            "not with --database-url yet: instances sharing a database would each order \
             certificates for the domain; terminate TLS at the load balancer, or give each \
             instance --tls-cert/--tls-key",
        ));
    }
    if s.backup_every.is_some() {
        return Err(bad_value(
            "--backup-every",
            "not with --database-url: wren's backups copy the data folder's SQLite databases, \
             and the store is in PostgreSQL; back it up with the database's own tools \
             (pg_dump, or continuous archiving), and the files with the S3 store's",
        ));
    }
    Ok(Some(config))
}

/// The HTTPS section: a certificate from files or from ACME, never both;
/// a redirect listener only beside HTTPS, on a port of its own; HTTP-01
/// only with the redirect listener that answers it.
fn tls_config(s: &Settings) -> Result<Option<TlsConfig>, EarlyExit> {
    let certificate = match (&s.tls_cert, &s.tls_key) {
        (Some(_), _) | (_, Some(_)) if !s.acme_domains.is_empty() => {
            return Err(bad_value(
                "--acme-domain",
                "choose --tls-cert/--tls-key or --acme-domain, not both",
            ));
        }
        (Some(cert), Some(key)) => Some(CertificateSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        }),
        (Some(_), None) => return Err(bad_value("--tls-key", "--tls-cert needs its key")),
        (None, Some(_)) => return Err(bad_value("--tls-cert", "--tls-key needs its certificate")),
        (None, None) if s.acme_domains.is_empty() => None,
        (None, None) => Some(CertificateSource::Acme(acme::Settings {
            dir: s.data_dir.join(acme::FOLDER),
            domains: s.acme_domains.clone(),
            email: s.acme_email.clone(),
            directory: s.acme_directory.clone(),
            ca_root: s.acme_ca_root.clone(),
            challenge: s.acme_challenge,
            renew_at: s.acme_renew_at,
            retry_min: s.acme_retry_min,
            retry_max: s.acme_retry_max.max(s.acme_retry_min),
        })),
    };
    let Some(certificate) = certificate else {
        // ACME settings that would silently do nothing.
        if s.acme_email.is_some() || s.acme_ca_root.is_some() {
            let flag = if s.acme_email.is_some() {
                "--acme-email"
            } else {
                "--acme-ca-root"
            };
            return Err(bad_value(
                flag,
                "needs --acme-domain, the names to order for",
            ));
        }
        if s.redirect_port.is_some() {
            return Err(bad_value(
                "--redirect-port",
                "redirects to HTTPS, which needs --tls-cert/--tls-key or --acme-domain",
            ));
        }
        return Ok(None);
    };
    if let Some(redirect_port) = s.redirect_port
        && redirect_port == s.port
        && redirect_port != 0
    {
        return Err(bad_value(
            "--redirect-port",
            &format!("{redirect_port} is --port itself; HTTPS and the redirect need a port each"),
        ));
    }
    if let CertificateSource::Acme(acme) = &certificate
        && acme.challenge == ChallengeKind::Http01
        && s.redirect_port.is_none()
    {
        return Err(bad_value(
            "--acme-challenge",
            "http-01 is answered on --redirect-port, which is not set",
        ));
    }
    Ok(Some(TlsConfig {
        certificate,
        redirect_port: s.redirect_port,
        redirect_https_port: s.redirect_https_port,
        hsts_max_age: Some(s.hsts_max_age).filter(|&age| age > 0),
    }))
}

/// The docs section: a `--docs-assets` folder must hold what the page
/// loads, checked at start rather than at a visitor's first look.
fn docs_config(s: &Settings) -> Result<DocsConfig, EarlyExit> {
    if let Some(folder) = &s.docs_assets {
        if s.no_docs {
            return Err(bad_value(
                "--docs-assets",
                "--no-docs serves no docs to load them for",
            ));
        }
        if let Some(missing) = REQUIRED_DOCS_ASSETS
            .iter()
            .find(|name| !folder.join(name).is_file())
        {
            return Err(bad_value(
                "--docs-assets",
                &format!(
                    "{} holds no {missing}; give the folder of the npm package swagger-ui-dist",
                    folder.display()
                ),
            ));
        }
    }
    Ok(DocsConfig {
        enabled: !s.no_docs,
        assets: s.docs_assets.clone(),
    })
}

/// The storage section: S3 settings take effect only with an endpoint, and
/// `--storage s3` needs the endpoint, a bucket and the server's keys.
fn storage_config(s: &Settings) -> Result<StorageConfig, EarlyExit> {
    let s3 = match &s.s3_endpoint {
        None if s.storage == StorageKind::S3 => {
            return Err(bad_value("--s3-endpoint", "--storage s3 needs an endpoint"));
        }
        None => None,
        Some(endpoint) => Some(S3Config {
            endpoint: endpoint.clone(),
            region: s.s3_region.clone(),
            bucket: s.s3_bucket.clone(),
            prefix: s.s3_prefix.clone(),
            addressing: s.s3_addressing,
            access_key_id: s.s3_access_key_id.clone(),
            secret_access_key: s.s3_secret_access_key.clone(),
        }),
    };
    if let Some(config) = s3.as_ref().filter(|_| s.storage == StorageKind::S3) {
        if config.bucket.is_none() {
            return Err(bad_value("--s3-bucket", "--storage s3 needs a bucket"));
        }
        if config.access_key_id.is_none() || config.secret_access_key.is_none() {
            return Err(bad_value(
                "--storage",
                "--storage s3 needs S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY in the environment",
            ));
        }
    }
    Ok(StorageConfig {
        kind: s.storage,
        s3,
        max_object_size: s.max_object_size,
        max_image_size: s.max_image_size,
        quota: Quota {
            bytes: s.account_quota,
            files: s.account_max_files,
        },
        min_free_disk: s.min_free_disk,
    })
}

/// The backup schedule: `--backup-every` and `--backup-to` go together.
fn backup_schedule(s: &Settings, storage: &StorageConfig) -> Result<Option<Schedule>, EarlyExit> {
    match (&s.backup_to, s.backup_every) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(bad_value(
            "--backup-to",
            "needs --backup-every, how often to make a backup",
        )),
        (None, Some(_)) => Err(bad_value(
            "--backup-every",
            "needs --backup-to, where to put the backups",
        )),
        (Some(to), Some(every)) => {
            check_backup_location("--backup-to", to, storage)?;
            Ok(Some(Schedule {
                every,
                keep: s.backup_keep,
                to: to.clone(),
            }))
        }
    }
}

/// A backup on S3 needs the server's endpoint and keys, and a place of its
/// own: not among the accounts' files (`<--s3-prefix><account>/…` in the
/// server's bucket), where an account's keys could meet it.
fn check_backup_location(
    flag: &str,
    location: &Location,
    storage: &StorageConfig,
) -> Result<(), EarlyExit> {
    let Location::S3 { .. } = location else {
        return Ok(());
    };
    let Some(s3) = &storage.s3 else {
        return Err(bad_value(
            flag,
            &format!("{location} needs the server's S3 settings, starting with --s3-endpoint"),
        ));
    };
    if s3.access_key_id.is_none() || s3.secret_access_key.is_none() {
        return Err(bad_value(
            flag,
            &format!(
                "{location} needs the server's S3 keys: S3_ACCESS_KEY_ID and \
                 S3_SECRET_ACCESS_KEY in the environment"
            ),
        ));
    }
    if let Some(bucket) = &s3.bucket
        && location.overlaps(bucket, &s3.prefix)
    {
        return Err(bad_value(
            flag,
            &format!(
                "{location} lies among the accounts' files (s3://{bucket}/{}ACCOUNT/); give \
                 the backups a bucket or a prefix outside --s3-prefix",
                s3.prefix
            ),
        ));
    }
    Ok(())
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |accounts: &[(String, String)]| -> Vec<String> {
            accounts.iter().map(|(name, _)| name.clone()).collect()
        };
        f.debug_struct("AuthConfig")
            .field("token_ttl", &self.token_ttl)
            .field("cookie_secure", &self.cookie_secure)
            .field("min_password_length", &self.min_password_length)
            .field("users", &names(&self.users))
            .field("admins", &names(&self.admins))
            .field("signup", &self.signup)
            .field("login_rate_per_minute", &self.login_rate_per_minute)
            .field("login_burst", &self.login_burst)
            .field("signup_rate_per_hour", &self.signup_rate_per_hour)
            .field("signup_burst", &self.signup_burst)
            .field("max_concurrent_hashes", &self.max_concurrent_hashes)
            .field("password_cache", &self.password_cache)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests;

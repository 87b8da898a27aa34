//! Every setting wren has, declared once. An entry names the field it fills
//! and gives its flag (with the placeholder `--help` shows), its environment
//! variables in priority order, its default as users read it, its value
//! parser and its help line. The command-line reader, the resolution (flag,
//! then environment, then default), `--help`, and the test that keeps
//! README's configuration table in step all come from this one table.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::parse::Input;
use super::values::{self, one_of};
use super::{EarlyExit, RateLimiting};
use crate::acme::ChallengeKind;
use crate::alerts::TimeUnit;
use crate::auth::password;
use crate::backup::Location;
use crate::blob::{S3Addressing, StorageKind};
use crate::http::Limits;
use crate::http::log::{LogFormat, LogLevel};
use crate::model::ModelSource;

/// How a setting is given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `--flag VALUE`, at most once.
    Value,
    /// `--flag` alone, which turns it on; its environment variable takes
    /// `1`, `true`, `yes`, `on` or their opposites.
    Switch,
    /// `--flag VALUE`, repeatable; its environment variable holds a
    /// comma-separated list.
    List,
}

/// One setting as users meet it: in `--help`, in error messages and in
/// README's configuration table.
#[derive(Debug)]
pub struct Setting {
    pub form: Form,
    /// The flag with the placeholder of its value (`--port N`); `None` for a
    /// setting only the environment can give (secrets: command lines are
    /// visible to every user of the host).
    pub usage: Option<&'static str>,
    /// Environment variables in priority order: the first one set counts.
    pub env: &'static [&'static str],
    /// The default as shown to users; empty when there is none.
    pub default: &'static str,
    pub help: &'static str,
}

impl Setting {
    /// The flag without its placeholder (`--port`).
    pub fn flag(&self) -> Option<&'static str> {
        self.usage
            .map(|usage| usage.split_once(' ').map_or(usage, |(flag, _)| flag))
    }

    /// How messages name the setting: its flag, or else its first variable.
    pub fn name(&self) -> &'static str {
        self.flag().unwrap_or(self.env[0])
    }
}

/// Declares the settings: for each, `FORM field: Type { flag, env, default,
/// parse, help }`, where FORM is `value`, `switch` or `list` (see [`Form`];
/// a `list` parses each item), `flag` is left out for environment-only
/// settings, and `default: "shown"` is parsed like a given value unless
/// `=> expression` computes it. Yields the [`Settings`] struct with one
/// field per setting, [`SETTINGS`], and their resolution.
macro_rules! settings {
    (@setting $form:ident [$($usage:literal)?] [$($var:literal),+]
        $shown:literal $help:literal) => {
        Setting {
            form: settings!(@form $form),
            usage: settings!(@usage $($usage)?),
            env: &[$($var),+],
            default: $shown,
            help: $help,
        }
    };
    (@form value) => { Form::Value };
    (@form switch) => { Form::Switch };
    (@form list) => { Form::List };
    (@usage) => { None };
    (@usage $usage:literal) => { Some($usage) };
    (@computed) => { None };
    (@computed $computed:expr) => { Some(|| $computed) };
    ($(
        $form:ident $field:ident: $type:ty {
            $(flag: $usage:literal,)?
            env: [$($var:literal),+],
            default: $shown:literal $(=> $computed:expr)?,
            parse: $parse:expr,
            help: $help:literal $(,)?
        }
    )*) => {
        /// The value of every setting, resolved. Not `Debug`: it holds
        /// secrets.
        pub struct Settings {
            $(#[doc = $help] pub $field: $type,)*
        }

        /// Every setting, in the order `--help` lists them.
        pub const SETTINGS: &[Setting] = &[$(
            settings!(@setting $form [$($usage)?] [$($var),+] $shown $help),
        )*];

        impl Settings {
            /// Each setting from its flag, else its environment, else its default.
            pub fn resolve(input: &Input<'_>) -> Result<Settings, EarlyExit> {
                Ok(Settings {$(
                    $field: input.$form(
                        &settings!(@setting $form [$($usage)?] [$($var),+] $shown $help),
                        $parse,
                        settings!(@computed $($computed)?),
                    )?,
                )*})
            }
        }
    };
}

settings! {
    value host: IpAddr {
        flag: "--host ADDRESS",
        env: ["WREN_HOST"],
        default: "127.0.0.1",
        parse: values::host,
        help: "address to listen on: an IP address or `localhost`",
    }
    value port: u16 {
        flag: "--port N",
        env: ["PORT", "WREN_PORT"],
        default: "5000",
        parse: values::number,
        help: "port to listen on (0: any free port); PORT is the one Heroku-style platforms set",
    }
    value data_dir: PathBuf {
        flag: "--data-dir PATH",
        env: ["WREN_DATA_DIR"],
        default: "./data",
        parse: values::path,
        help: "folder for the database, stored files and the server secret",
    }
    value database_url: Option<super::Database> {
        flag: "--database-url postgres://USER:PASSWORD@HOST:PORT/DB",
        env: ["DATABASE_URL", "WREN_DATABASE_URL"],
        default: "none: SQLite in the data folder" => None,
        parse: values::database_url,
        help: "keep accounts, keys, revocations and events in PostgreSQL, shared by every \
               instance given the same URL (and the same WREN_SECRET, which it then needs); \
               `?sslmode=require` (or verify-full, with sslrootcert=FILE) for TLS; the \
               environment keeps the password off the command line",
    }
    value tls_cert: Option<PathBuf> {
        flag: "--tls-cert FILE",
        env: ["WREN_TLS_CERT"],
        default: "",
        parse: values::optional_path,
        help: "PEM certificate (chain after it) to serve HTTPS with on --port, TLS 1.3 and 1.2 \
               only; with --tls-key; reloaded on SIGHUP",
    }
    value tls_key: Option<PathBuf> {
        flag: "--tls-key FILE",
        env: ["WREN_TLS_KEY"],
        default: "",
        parse: values::optional_path,
        help: "PEM private key of --tls-cert",
    }
    list acme_domains: Vec<String> {
        flag: "--acme-domain NAME",
        env: ["WREN_ACME_DOMAINS"],
        default: "",
        parse: values::domain,
        help: "a name to get a certificate for from the ACME CA and serve HTTPS with on --port; \
               repeatable, comma-separated in the variable; the first is the certificate's \
               subject",
    }
    value acme_email: Option<String> {
        flag: "--acme-email ADDRESS",
        env: ["WREN_ACME_EMAIL"],
        default: "",
        parse: values::optional_email,
        help: "contact address of the ACME account (expiry notices)",
    }
    value acme_directory: String {
        flag: "--acme-directory URL",
        env: ["WREN_ACME_DIRECTORY"],
        default: "https://acme-v02.api.letsencrypt.org/directory",
        parse: values::https_url,
        help: "the ACME CA's directory URL",
    }
    value acme_ca_root: Option<PathBuf> {
        flag: "--acme-ca-root FILE",
        env: ["WREN_ACME_CA_ROOT"],
        default: "",
        parse: values::optional_path,
        help: "PEM root certificate(s) to trust for the directory's own HTTPS, instead of the \
               public roots (private or test CAs)",
    }
    value acme_challenge: ChallengeKind {
        flag: "--acme-challenge TYPE",
        env: ["WREN_ACME_CHALLENGE"],
        default: "tls-alpn-01",
        parse: |s| {
            one_of(s, &[("tls-alpn-01", ChallengeKind::TlsAlpn01), ("http-01", ChallengeKind::Http01)])
        },
        help: "how the CA checks wren holds the names: `tls-alpn-01` on --port (443) or \
               `http-01` on --redirect-port (80)",
    }
    value acme_renew_at: f64 {
        flag: "--acme-renew-at FRACTION",
        env: ["WREN_ACME_RENEW_AT"],
        default: "0.667",
        parse: values::fraction,
        help: "renew the certificate once this share of its lifetime has passed",
    }
    value acme_retry_min: Duration {
        flag: "--acme-retry-min SECONDS",
        env: ["WREN_ACME_RETRY_MIN"],
        default: "300",
        parse: values::seconds,
        help: "wait after a failed order before the next try; it doubles with each failure \
               (jittered), up to --acme-retry-max",
    }
    value acme_retry_max: Duration {
        flag: "--acme-retry-max SECONDS",
        env: ["WREN_ACME_RETRY_MAX"],
        default: "21600",
        parse: values::seconds,
        help: "longest wait between two tries of a failing order",
    }
    value redirect_port: Option<u16> {
        flag: "--redirect-port N",
        env: ["WREN_REDIRECT_PORT"],
        default: "",
        parse: values::optional_port,
        help: "also listen for plain HTTP on this port (80), answering 308 to the same path over \
               HTTPS, ACME HTTP-01 challenges, and GET /status; same limits as --port",
    }
    value redirect_https_port: Option<u16> {
        flag: "--redirect-https-port N",
        env: ["WREN_REDIRECT_HTTPS_PORT"],
        default: "--port" => None,
        parse: values::optional_port,
        help: "the HTTPS port redirects name (left out when 443); set it when a platform maps \
               443 to a high --port",
    }
    value hsts_max_age: u64 {
        flag: "--hsts-max-age SECONDS",
        env: ["WREN_HSTS_MAX_AGE"],
        default: "31536000",
        parse: values::number,
        help: "max-age of Strict-Transport-Security on HTTPS answers; 0: no such header",
    }
    value threads: usize {
        flag: "--threads N",
        env: ["WREN_THREADS"],
        default: "CPU cores" => Limits::default().threads,
        parse: values::at_least_one,
        help: "worker threads waiting for ready connections; more start while all are stuck \
               in slow requests or waiting for an event's commit (up to --max-threads) and leave \
               when idle",
    }
    value max_threads: usize {
        flag: "--max-threads N",
        env: ["WREN_MAX_THREADS"],
        default: "256",
        parse: values::at_least_one,
        help: "most worker threads ever running; when all are busy, ready connections wait \
               their turn under their deadlines",
    }
    value max_connections: usize {
        flag: "--max-connections N",
        env: ["WREN_MAX_CONNECTIONS"],
        default: "1024",
        parse: values::at_least_one,
        help: "connections open at once; one more gets 503 with Retry-After: 1",
    }
    value max_connections_per_ip: usize {
        flag: "--max-connections-per-ip N",
        env: ["WREN_MAX_CONNECTIONS_PER_IP"],
        default: "64",
        parse: values::number,
        help: "connections open at once from one address (IPv6: one /64); one more gets 503 \
               with Retry-After: 1 while other addresses are served; 0: no such limit",
    }
    value min_rate: u64 {
        flag: "--min-rate BYTES",
        env: ["WREN_MIN_RATE"],
        default: "512",
        parse: values::number,
        help: "slowest average pace in bytes per second of a request body (else 408) or an \
               answer (else cut): each must keep moving by 5 s from its start plus 1 s per \
               this many bytes moved; 0: no minimum",
    }
    value header_timeout: Duration {
        flag: "--header-timeout SECONDS",
        env: ["WREN_HEADER_TIMEOUT"],
        default: "10",
        parse: values::seconds,
        help: "seconds for the whole request head to arrive (else 408 and close)",
    }
    value keep_alive_timeout: Duration {
        flag: "--keep-alive-timeout SECONDS",
        env: ["WREN_KEEP_ALIVE_TIMEOUT"],
        default: "5",
        parse: values::seconds,
        help: "seconds an idle keep-alive connection stays open",
    }
    value io_timeout: Duration {
        flag: "--io-timeout SECONDS",
        env: ["WREN_IO_TIMEOUT"],
        default: "30",
        parse: values::seconds,
        help: "seconds each body read and response write may wait",
    }
    value max_body: u64 {
        flag: "--max-body BYTES",
        env: ["WREN_MAX_BODY"],
        default: "1048576",
        parse: values::number,
        help: "largest request body in bytes for JSON and form routes (413 past it); \
               upload routes set their own",
    }
    value shutdown_timeout: Duration {
        flag: "--shutdown-timeout SECONDS",
        env: ["WREN_SHUTDOWN_TIMEOUT"],
        default: "10",
        parse: values::seconds,
        help: "seconds in-flight requests get to finish after SIGTERM or SIGINT",
    }
    value log_level: LogLevel {
        flag: "--log-level LEVEL",
        env: ["WREN_LOG_LEVEL"],
        default: "info",
        parse: |s| {
            one_of(
                s,
                &[
                    ("error", LogLevel::Error),
                    ("warn", LogLevel::Warn),
                    ("info", LogLevel::Info),
                    ("debug", LogLevel::Debug),
                ],
            )
        },
        help: "least severe lines logged: `error`, `warn` (refusals at the caps, rate limits \
               tripped), `info` (the access log and notable events) or `debug` (failed TLS \
               handshakes too)",
    }
    value log_format: LogFormat {
        flag: "--log-format FORMAT",
        env: ["WREN_LOG_FORMAT"],
        default: "text",
        parse: |s| one_of(s, &[("text", LogFormat::Text), ("json", LogFormat::Json)]),
        help: "`text` or `json` lines on stderr",
    }
    value token_ttl: Duration {
        flag: "--token-ttl SECONDS",
        env: ["WREN_TOKEN_TTL"],
        default: "3600",
        parse: values::seconds,
        help: "seconds a session token stays valid",
    }
    switch cookie_secure: bool {
        flag: "--cookie-secure",
        env: ["WREN_COOKIE_SECURE"],
        default: "off",
        parse: values::switch,
        help: "mark the session cookie Secure (behind an HTTPS proxy; automatic when wren \
               serves HTTPS itself)",
    }
    value min_password_length: usize {
        flag: "--min-password-length N",
        env: ["WREN_MIN_PASSWORD_LENGTH"],
        default: "8",
        parse: values::number,
        help: "shortest password accepted at sign-up",
    }
    list users: Vec<(String, String)> {
        flag: "--user NAME:PASSWORD",
        env: ["WREN_USERS"],
        default: "",
        parse: values::user,
        help: "an account created or updated at start, with no password policy; repeatable, \
               comma-separated in the variable (prefer it: command lines are visible to other \
               users); an admin named here becomes a user",
    }
    list admins: Vec<(String, String)> {
        flag: "--admin NAME:PASSWORD",
        env: ["WREN_ADMINS"],
        default: "",
        parse: values::user,
        help: "an admin account created or updated at start, like --user but with the admin \
               role (every user's alerts, protected events, every API key); repeatable, \
               comma-separated in the variable",
    }
    switch no_signup: bool {
        flag: "--no-signup",
        env: ["WREN_NO_SIGNUP"],
        default: "off",
        parse: values::switch,
        help: "turn sign-up off (403)",
    }
    value login_rate: u32 {
        flag: "--login-rate N",
        env: ["WREN_LOGIN_RATE"],
        default: "5",
        parse: values::at_least_one,
        help: "failed logins allowed per minute for one username from one address, after the \
               burst; an address may fail twice as often, a username across all addresses five \
               times as often",
    }
    value login_burst: u32 {
        flag: "--login-burst N",
        env: ["WREN_LOGIN_BURST"],
        default: "10",
        parse: values::at_least_one,
        help: "failed logins allowed in a burst for one username from one address (twice that \
               per address, five times that per username across addresses)",
    }
    value signup_rate: u32 {
        flag: "--signup-rate N",
        env: ["WREN_SIGNUP_RATE"],
        default: "60",
        parse: values::at_least_one,
        help: "sign-ups allowed per hour from one address (an IPv6 /64), after the burst",
    }
    value signup_burst: u32 {
        flag: "--signup-burst N",
        env: ["WREN_SIGNUP_BURST"],
        default: "20",
        parse: values::at_least_one,
        help: "sign-ups allowed at once from one address: room for a class or an office behind \
               one NAT address, while a flood gets 429 after it",
    }
    value rate_limiting: RateLimiting {
        flag: "--rate-limiting MODE",
        env: ["WREN_RATE_LIMITING"],
        default: "auto",
        parse: |s| {
            one_of(s, &[("auto", RateLimiting::Auto), ("on", RateLimiting::On), ("off", RateLimiting::Off)])
        },
        help: "request rate limits: `auto` (on when wren listens beyond loopback, off while \
               only loopback clients can reach it), `on` or `off`",
    }
    value rate_limit: u32 {
        flag: "--rate-limit N",
        env: ["WREN_RATE_LIMIT"],
        default: "10",
        parse: values::at_least_one,
        help: "requests a second from one client address (an IPv6 /64) after the burst, on \
               every route but the health checks; past it 429 with Retry-After",
    }
    value rate_burst: u32 {
        flag: "--rate-burst N",
        env: ["WREN_RATE_BURST"],
        default: "20",
        parse: values::at_least_one,
        help: "requests allowed at once from one client address",
    }
    value account_rate_limit: u32 {
        flag: "--account-rate-limit N",
        env: ["WREN_ACCOUNT_RATE_LIMIT"],
        default: "20",
        parse: values::at_least_one,
        help: "requests a second on signed-in routes from one account or API key, from all \
               addresses together, after the burst",
    }
    value account_rate_burst: u32 {
        flag: "--account-rate-burst N",
        env: ["WREN_ACCOUNT_RATE_BURST"],
        default: "40",
        parse: values::at_least_one,
        help: "requests allowed at once on signed-in routes from one account or API key",
    }
    switch trust_proxy: bool {
        flag: "--trust-proxy",
        env: ["WREN_TRUST_PROXY"],
        default: "off",
        parse: values::switch,
        help: "behind a reverse proxy: the client is the last address of X-Forwarded-For \
               (the one the proxy added), for the rate limits and the login and sign-up \
               limiters; only set it when every request comes through the proxy",
    }
    value max_concurrent_hashes: usize {
        flag: "--max-concurrent-hashes N",
        env: ["WREN_MAX_CONCURRENT_HASHES"],
        default: "CPU cores + 1" => password::default_slots(),
        parse: values::at_least_one,
        help: "password hashes (argon2id, 19 MiB each) computed at once by sign-ups and logins; \
               one waiting over a second for its turn gets 503 with Retry-After",
    }
    value password_cache: Duration {
        flag: "--password-cache-seconds SECONDS",
        env: ["WREN_PASSWORD_CACHE_SECONDS"],
        default: "300",
        parse: values::whole_seconds,
        help: "seconds a password that verified is remembered (a keyed hash in memory only), \
               so the same account signing in again with it skips argon2id; 0 remembers none",
    }
    value secret: Option<String> {
        env: ["WREN_SECRET"],
        default: "generated" => None,
        parse: values::optional_text,
        help: "token-signing secret, at least 32 bytes; when unset, one is generated into \
               the data folder",
    }
    list cors_origins: Vec<String> {
        flag: "--cors-origin ORIGIN",
        env: ["WREN_CORS_ORIGINS"],
        default: "",
        parse: values::origin,
        help: "a browser origin (https://app.example) whose pages may call every route, \
               credentials included; `*`: any origin, open routes only; repeatable, \
               comma-separated in the variable; none by default",
    }
    switch no_docs: bool {
        flag: "--no-docs",
        env: ["WREN_NO_DOCS"],
        default: "off",
        parse: values::switch,
        help: "serve no API documentation: no /docs page, no OpenAPI spec",
    }
    switch no_metrics: bool {
        flag: "--no-metrics",
        env: ["WREN_NO_METRICS"],
        default: "off",
        parse: values::switch,
        help: "serve no /metrics for Prometheus, and time no requests for it",
    }
    value metrics_token: Option<String> {
        env: ["WREN_METRICS_TOKEN"],
        default: "",
        parse: values::optional_text,
        help: "a token /metrics wants as `Authorization: Bearer TOKEN`; when unset, \
               /metrics is open",
    }
    value docs_assets: Option<PathBuf> {
        flag: "--docs-assets DIR",
        env: ["WREN_DOCS_ASSETS"],
        default: "",
        parse: values::optional_path,
        help: "a copy of the npm package swagger-ui-dist for /docs to load Swagger UI from, \
               instead of a CDN (offline hosts, FROM scratch images)",
    }
    value model: ModelSource {
        flag: "--model FILE",
        env: ["WREN_MODEL"],
        default: "built-in sales model" => ModelSource::Embedded,
        parse: values::model,
        help: "a wren-model/1 file (reloaded on SIGHUP), or `random` for the seed's \
               placeholder answers",
    }
    value max_batch: usize {
        flag: "--max-batch N",
        env: ["WREN_MAX_BATCH"],
        default: "1000",
        parse: values::at_least_one,
        help: "most instances in one POST /api/v1/predict (its body limit is 1 KiB per \
               instance, at least --max-body)",
    }
    value predict_max_age: Duration {
        flag: "--predict-max-age SECONDS",
        env: ["WREN_PREDICT_MAX_AGE"],
        default: "300",
        parse: values::whole_seconds,
        help: "seconds GET /predict/... answers may be cached (Cache-Control max-age)",
    }
    value event_time_unit: TimeUnit {
        flag: "--event-time-unit UNIT",
        env: ["WREN_EVENT_TIME_UNIT"],
        default: "ms",
        parse: |s| one_of(s, &[("ms", TimeUnit::MILLISECONDS), ("s", TimeUnit::SECONDS)]),
        help: "unit of POST /event's `time`, `ms` or `s`; the alert windows scale with it",
    }
    switch open_events: bool {
        flag: "--open-events",
        env: ["WREN_OPEN_EVENTS"],
        default: "off",
        parse: values::switch,
        help: "keep POST /event open to anyone while listening beyond loopback, where it \
               otherwise needs an `events` key or an admin (protected mode)",
    }
    value storage: StorageKind {
        flag: "--storage KIND",
        env: ["WREN_STORAGE"],
        default: "local",
        parse: |s| one_of(s, &[("local", StorageKind::Local), ("s3", StorageKind::S3)]),
        help: "where files and images live: `local` (under the data folder) or `s3`",
    }
    value s3_endpoint: Option<String> {
        flag: "--s3-endpoint URL",
        env: ["S3_ENDPOINT", "WREN_S3_ENDPOINT"],
        default: "",
        parse: values::optional_http_url,
        help: "S3-compatible endpoint URL, e.g. https://s3.eu-west-1.amazonaws.com; needed by \
               --storage s3 and by accounts with their own keys",
    }
    value s3_region: String {
        flag: "--s3-region REGION",
        env: ["S3_REGION", "WREN_S3_REGION"],
        default: "us-east-1",
        parse: values::non_empty,
        help: "S3 region",
    }
    value s3_bucket: Option<String> {
        flag: "--s3-bucket NAME",
        env: ["S3_BUCKET", "WREN_S3_BUCKET"],
        default: "",
        parse: values::optional_text,
        help: "the server's bucket (and the default for accounts' own keys)",
    }
    value s3_prefix: String {
        flag: "--s3-prefix PREFIX",
        env: ["S3_PREFIX", "WREN_S3_PREFIX"],
        default: "none" => String::new(),
        parse: values::text,
        help: "prefix of every object key wren writes (then <account>/<key>), e.g. `wren/`",
    }
    value s3_addressing: S3Addressing {
        flag: "--s3-addressing STYLE",
        env: ["WREN_S3_ADDRESSING"],
        default: "path",
        parse: |s| {
            one_of(s, &[("path", S3Addressing::Path), ("virtual", S3Addressing::VirtualHost)])
        },
        help: "`path` (endpoint/bucket/key; MinIO, Garage) or `virtual` (bucket as host \
               name; AWS)",
    }
    value s3_access_key_id: Option<String> {
        env: ["S3_ACCESS_KEY_ID", "WREN_S3_ACCESS_KEY_ID"],
        default: "",
        parse: values::optional_text,
        help: "the server's S3 access key id",
    }
    value s3_secret_access_key: Option<String> {
        env: ["S3_SECRET_ACCESS_KEY", "WREN_S3_SECRET_ACCESS_KEY"],
        default: "",
        parse: values::optional_text,
        help: "the server's S3 secret key",
    }
    value max_object_size: u64 {
        flag: "--max-object-size BYTES",
        env: ["WREN_MAX_OBJECT_SIZE"],
        default: "1073741824",
        parse: values::at_least_one_byte,
        help: "largest file PUT /api/file/... takes, in bytes (413)",
    }
    value max_image_size: u64 {
        flag: "--max-image-size BYTES",
        env: ["WREN_MAX_IMAGE_SIZE"],
        default: "10485760",
        parse: values::at_least_one_byte,
        help: "largest image the image routes take, in bytes (413)",
    }
    value account_quota: Option<u64> {
        flag: "--account-quota BYTES",
        env: ["WREN_ACCOUNT_QUOTA"],
        default: "1073741824",
        parse: values::limit,
        help: "bytes of files and images each account may store (507 quota_exceeded past \
               it; a replaced file counts only the difference); 0: no limit",
    }
    value account_max_files: Option<u64> {
        flag: "--account-max-files N",
        env: ["WREN_ACCOUNT_MAX_FILES"],
        default: "100000",
        parse: values::limit,
        help: "files and images each account may store (507 quota_exceeded past it); \
               0: no limit",
    }
    value min_free_disk: u64 {
        flag: "--min-free-disk BYTES",
        env: ["WREN_MIN_FREE_DISK"],
        default: "268435456",
        parse: values::number,
        help: "bytes kept free on the data folder's filesystem, so the database can still \
               commit: uploads that would leave less get 507 insufficient_storage; 0: no floor",
    }
    value backup_every: Option<Duration> {
        flag: "--backup-every HOURS",
        env: ["WREN_BACKUP_EVERY"],
        default: "",
        parse: values::optional_hours,
        help: "make a backup of the data folder into --backup-to this often while serving \
               (fractions allowed: 0.5 is every 30 minutes), the first one an interval after \
               start; none when unset",
    }
    value backup_to: Option<Location> {
        flag: "--backup-to DIR",
        env: ["WREN_BACKUP_TO"],
        default: "",
        parse: values::optional_location,
        help: "where --backup-every puts its backups, each in a folder named by its time: a \
               folder, or s3://BUCKET/PREFIX with the server's S3 settings",
    }
    value backup_keep: usize {
        flag: "--backup-keep N",
        env: ["WREN_BACKUP_KEEP"],
        default: "7",
        parse: values::at_least_one,
        help: "scheduled backups kept in --backup-to: after each, older ones are removed",
    }
}

//! Command-line flags and environment variables, resolved into one
//! [`Config`]. Every flag can also be set by an environment variable; the
//! flag wins. A bad value is a one-line error naming the flag (exit code 2).

use std::env;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use argh::FromArgs;

use crate::alerts::TimeUnit;
use crate::blob::{S3Addressing, S3Config, StorageConfig, StorageKind};
use crate::http::Limits;
use crate::http::log::LogFormat;
use crate::model::ModelSource;

/// wren: one small static binary serving the HTTP APIs small teams keep
/// rebuilding in Flask. Every option can also be set by the environment
/// variable named in its description; the option wins.
#[derive(FromArgs, Debug)]
struct Args {
    /// address to listen on, an IP address or `localhost` (default
    /// 127.0.0.1; env WREN_HOST)
    #[argh(option)]
    host: Option<Host>,

    /// port to listen on, 0 for any free port (default 5000; env PORT, as
    /// Heroku sets it, then WREN_PORT)
    #[argh(option)]
    port: Option<u16>,

    /// folder for the database, stored files and the server secret
    /// (default ./data; env WREN_DATA_DIR)
    #[argh(option)]
    data_dir: Option<PathBuf>,

    /// worker threads waiting for ready connections; more start while all
    /// are busy in slow requests (default: one per CPU core; env
    /// WREN_THREADS)
    #[argh(option)]
    threads: Option<usize>,

    /// connections open at once; one more gets 503 with Retry-After
    /// (default 1024; env WREN_MAX_CONNECTIONS)
    #[argh(option)]
    max_connections: Option<usize>,

    /// seconds the whole request head may take to arrive (default 10; env
    /// WREN_HEADER_TIMEOUT)
    #[argh(option)]
    header_timeout: Option<Seconds>,

    /// seconds an idle keep-alive connection stays open (default 5; env
    /// WREN_KEEP_ALIVE_TIMEOUT)
    #[argh(option)]
    keep_alive_timeout: Option<Seconds>,

    /// seconds each body read and each response write may wait (default
    /// 30; env WREN_IO_TIMEOUT)
    #[argh(option)]
    io_timeout: Option<Seconds>,

    /// largest request body in bytes for JSON and form routes; upload routes
    /// have their own limits (default 1048576; env WREN_MAX_BODY)
    #[argh(option)]
    max_body: Option<u64>,

    /// seconds in-flight requests get to finish after SIGTERM or SIGINT
    /// (default 10; env WREN_SHUTDOWN_TIMEOUT)
    #[argh(option)]
    shutdown_timeout: Option<Seconds>,

    /// log format, `text` or `json` (default text; env WREN_LOG_FORMAT)
    #[argh(option)]
    log_format: Option<LogFormat>,

    /// seconds a session token stays valid (default 3600; env
    /// WREN_TOKEN_TTL)
    #[argh(option)]
    token_ttl: Option<Seconds>,

    /// mark the session cookie Secure, for deployments behind HTTPS (env
    /// WREN_COOKIE_SECURE=1)
    #[argh(switch)]
    cookie_secure: bool,

    /// shortest password accepted at sign-up (default 8; env
    /// WREN_MIN_PASSWORD_LENGTH)
    #[argh(option)]
    min_password_length: Option<usize>,

    /// an account created or updated at start, NAME:PASSWORD, repeatable;
    /// no password policy applies (env WREN_USERS, comma-separated)
    #[argh(option)]
    user: Vec<String>,

    /// turn sign-up off (env WREN_NO_SIGNUP=1)
    #[argh(switch)]
    no_signup: bool,

    /// failed logins allowed per minute, per username and per client
    /// address (default 5; env WREN_LOGIN_RATE)
    #[argh(option)]
    login_rate: Option<u32>,

    /// failed logins allowed in a burst before the rate applies (default
    /// 10; env WREN_LOGIN_BURST)
    #[argh(option)]
    login_burst: Option<u32>,

    /// the model behind the prediction routes: a wren-model/1 file
    /// (reloaded on SIGHUP), or `random` for the seed's placeholder answers
    /// (default: the sales model built into the binary; env WREN_MODEL)
    #[argh(option)]
    model: Option<ModelSource>,

    /// most instances in one POST /api/v1/predict (default 1000; env
    /// WREN_MAX_BATCH)
    #[argh(option)]
    max_batch: Option<usize>,

    /// seconds clients and caches may keep a prediction, sent as
    /// Cache-Control max-age (default 300; env WREN_PREDICT_MAX_AGE)
    #[argh(option)]
    predict_max_age: Option<u64>,

    /// unit of POST /event's `time`, `ms` or `s`; the alert windows scale
    /// with it (default ms; env WREN_EVENT_TIME_UNIT)
    #[argh(option)]
    event_time_unit: Option<EventTimeUnit>,

    /// where files and images live: `local` (under the data folder) or
    /// `s3` (default local; env WREN_STORAGE)
    #[argh(option)]
    storage: Option<StorageKind>,

    /// S3-compatible endpoint URL, e.g. https://s3.eu-west-1.amazonaws.com;
    /// needed by --storage s3 and by accounts that bring their own S3 keys
    /// (env S3_ENDPOINT, WREN_S3_ENDPOINT)
    #[argh(option)]
    s3_endpoint: Option<String>,

    /// S3 region (default us-east-1; env S3_REGION, WREN_S3_REGION)
    #[argh(option)]
    s3_region: Option<String>,

    /// bucket for --storage s3, and for accounts whose own keys came
    /// without a bucket (env S3_BUCKET, WREN_S3_BUCKET)
    #[argh(option)]
    s3_bucket: Option<String>,

    /// prefix of every object key wren writes, e.g. `wren/` (default none;
    /// env S3_PREFIX, WREN_S3_PREFIX)
    #[argh(option)]
    s3_prefix: Option<String>,

    /// S3 addressing: `path` (endpoint/bucket/key; MinIO, Garage) or
    /// `virtual` (bucket.endpoint/key; AWS) (default path; env
    /// WREN_S3_ADDRESSING)
    #[argh(option)]
    s3_addressing: Option<S3Addressing>,

    /// largest file PUT /api/file/{key} accepts, in bytes (default 1 GiB;
    /// env WREN_MAX_OBJECT_SIZE)
    #[argh(option)]
    max_object_size: Option<u64>,

    /// largest image the image routes accept, in bytes (default 10 MiB; env
    /// WREN_MAX_IMAGE_SIZE)
    #[argh(option)]
    max_image_size: Option<u64>,

    /// print the version and exit
    #[argh(switch)]
    version: bool,
}

/// The value named `s` among `choices`, or an error listing them.
fn one_of<T: Copy>(s: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<String> = choices
                .iter()
                .map(|(name, _)| format!("'{name}'"))
                .collect();
            format!("expected {}, got '{s}'", names.join(" or "))
        })
}

impl FromStr for StorageKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        one_of(s, &[("local", StorageKind::Local), ("s3", StorageKind::S3)])
    }
}

impl FromStr for S3Addressing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        one_of(
            s,
            &[
                ("path", S3Addressing::Path),
                ("virtual", S3Addressing::VirtualHost),
            ],
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct EventTimeUnit(TimeUnit);

impl FromStr for EventTimeUnit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        one_of(
            s,
            &[
                ("ms", EventTimeUnit(TimeUnit::MILLISECONDS)),
                ("s", EventTimeUnit(TimeUnit::SECONDS)),
            ],
        )
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
    /// Accounts to create or update at start.
    pub users: Vec<(String, String)>,
    pub signup: bool,
    pub login_rate_per_minute: u32,
    pub login_burst: u32,
    /// WREN_SECRET, when set (never a flag: command lines are visible to
    /// every user of the host).
    pub secret: Option<String>,
}

/// An address to bind: an IP address, or `localhost` (resolved here, since a
/// static binary in a scratch image has no resolver configuration).
#[derive(Debug, Clone, Copy)]
struct Host(IpAddr);

impl FromStr for Host {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("localhost") {
            return Ok(Host(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        }
        s.parse()
            .map(Host)
            .map_err(|_| format!("expected an IP address or 'localhost', got '{s}'"))
    }
}

/// A positive number of seconds, fractions allowed (`2`, `0.5`).
#[derive(Debug, Clone, Copy)]
struct Seconds(Duration);

impl FromStr for Seconds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value: f64 = s
            .parse()
            .map_err(|_| format!("expected a number of seconds, got '{s}'"))?;
        if !(value > 0.0 && value <= 86_400.0 * 365.0) {
            return Err(format!("expected a positive number of seconds, got '{s}'"));
        }
        Ok(Seconds(Duration::from_secs_f64(value)))
    }
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub limits: Limits,
    pub log_format: LogFormat,
    pub auth: AuthConfig,
    pub model: ModelConfig,
    pub event_time_unit: TimeUnit,
    pub storage: StorageConfig,
}

/// Why the program stops before serving: help or version text (exit 0) or
/// a bad argument (exit 2).
#[derive(Debug)]
pub struct EarlyExit {
    pub output: String,
    pub code: i32,
}

impl Config {
    /// Reads `std::env::args()` and the environment.
    pub fn from_env() -> Result<Config, EarlyExit> {
        let args: Vec<String> = env::args().collect();
        let command = args.first().map(String::as_str).unwrap_or("wren");
        let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
        Config::parse(command, &rest, |name| env::var(name).ok())
    }

    /// Resolves flags, then environment variables (through `lookup`), then
    /// defaults.
    pub fn parse(
        command: &str,
        args: &[&str],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, EarlyExit> {
        let args = Args::from_args(&[command], args).map_err(|exit| EarlyExit {
            output: exit.output,
            code: if exit.status.is_ok() { 0 } else { 2 },
        })?;
        if args.version {
            return Err(EarlyExit {
                output: format!("wren {}", env!("CARGO_PKG_VERSION")),
                code: 0,
            });
        }
        let env = Env { lookup: &lookup };
        let storage = storage_config(&args, &env)?;
        let defaults = Limits::default();
        let host = env.resolve(
            args.host,
            "--host",
            &["WREN_HOST"],
            Host(Ipv4Addr::LOCALHOST.into()),
        )?;
        let port = env.resolve(args.port, "--port", &["PORT", "WREN_PORT"], 5000)?;
        let data_dir = env.resolve(
            args.data_dir,
            "--data-dir",
            &["WREN_DATA_DIR"],
            PathBuf::from("./data"),
        )?;
        let limits = Limits {
            threads: env.resolve(
                args.threads,
                "--threads",
                &["WREN_THREADS"],
                defaults.threads,
            )?,
            max_connections: env.resolve(
                args.max_connections,
                "--max-connections",
                &["WREN_MAX_CONNECTIONS"],
                defaults.max_connections,
            )?,
            header_timeout: env
                .resolve(
                    args.header_timeout,
                    "--header-timeout",
                    &["WREN_HEADER_TIMEOUT"],
                    Seconds(defaults.header_timeout),
                )?
                .0,
            keep_alive_timeout: env
                .resolve(
                    args.keep_alive_timeout,
                    "--keep-alive-timeout",
                    &["WREN_KEEP_ALIVE_TIMEOUT"],
                    Seconds(defaults.keep_alive_timeout),
                )?
                .0,
            io_timeout: env
                .resolve(
                    args.io_timeout,
                    "--io-timeout",
                    &["WREN_IO_TIMEOUT"],
                    Seconds(defaults.io_timeout),
                )?
                .0,
            max_body: env.resolve(
                args.max_body,
                "--max-body",
                &["WREN_MAX_BODY"],
                defaults.max_body,
            )?,
            shutdown_timeout: env
                .resolve(
                    args.shutdown_timeout,
                    "--shutdown-timeout",
                    &["WREN_SHUTDOWN_TIMEOUT"],
                    Seconds(defaults.shutdown_timeout),
                )?
                .0,
        };
        if limits.threads == 0 {
            return Err(bad_value("--threads", "must be at least 1"));
        }
        if limits.max_connections == 0 {
            return Err(bad_value("--max-connections", "must be at least 1"));
        }
        let log_format = env.resolve(
            args.log_format,
            "--log-format",
            &["WREN_LOG_FORMAT"],
            LogFormat::Text,
        )?;
        let auth = AuthConfig {
            token_ttl: env
                .resolve(
                    args.token_ttl,
                    "--token-ttl",
                    &["WREN_TOKEN_TTL"],
                    Seconds(Duration::from_secs(3600)),
                )?
                .0,
            cookie_secure: args.cookie_secure || env.flag("WREN_COOKIE_SECURE"),
            min_password_length: env.resolve(
                args.min_password_length,
                "--min-password-length",
                &["WREN_MIN_PASSWORD_LENGTH"],
                8,
            )?,
            users: parse_users(&args.user, (env.lookup)("WREN_USERS"))?,
            signup: !(args.no_signup || env.flag("WREN_NO_SIGNUP")),
            login_rate_per_minute: env.resolve(
                args.login_rate,
                "--login-rate",
                &["WREN_LOGIN_RATE"],
                5,
            )?,
            login_burst: env.resolve(
                args.login_burst,
                "--login-burst",
                &["WREN_LOGIN_BURST"],
                10,
            )?,
            secret: (env.lookup)("WREN_SECRET").filter(|s| !s.is_empty()),
        };
        if auth.login_rate_per_minute == 0 || auth.login_burst == 0 {
            return Err(bad_value(
                "--login-rate",
                "the login rate and burst must be at least 1",
            ));
        }
        let model = ModelConfig {
            source: env.resolve(
                args.model,
                "--model",
                &["WREN_MODEL"],
                ModelSource::Embedded,
            )?,
            max_batch: env.resolve(args.max_batch, "--max-batch", &["WREN_MAX_BATCH"], 1000)?,
            max_age: Duration::from_secs(env.resolve(
                args.predict_max_age,
                "--predict-max-age",
                &["WREN_PREDICT_MAX_AGE"],
                300,
            )?),
        };
        if model.max_batch == 0 {
            return Err(bad_value("--max-batch", "must be at least 1"));
        }
        Ok(Config {
            addr: SocketAddr::new(host.0, port),
            data_dir,
            limits,
            log_format,
            auth,
            model,
            event_time_unit: env
                .resolve(
                    args.event_time_unit,
                    "--event-time-unit",
                    &["WREN_EVENT_TIME_UNIT"],
                    EventTimeUnit(TimeUnit::MILLISECONDS),
                )?
                .0,
            storage,
        })
    }
}

fn storage_config(args: &Args, env: &Env<'_>) -> Result<StorageConfig, EarlyExit> {
    let kind = env.resolve(
        args.storage,
        "--storage",
        &["WREN_STORAGE"],
        StorageKind::Local,
    )?;
    // The flag, else the first environment variable set; never empty.
    let text = |flag_value: &Option<String>, vars: &[&str]| -> Option<String> {
        flag_value
            .clone()
            .or_else(|| vars.iter().find_map(|var| (env.lookup)(var)))
            .filter(|v| !v.is_empty())
    };
    let endpoint = text(&args.s3_endpoint, &["S3_ENDPOINT", "WREN_S3_ENDPOINT"]);
    let bucket = text(&args.s3_bucket, &["S3_BUCKET", "WREN_S3_BUCKET"]);
    let s3 = match endpoint {
        None if kind == StorageKind::S3 => {
            return Err(bad_value("--s3-endpoint", "--storage s3 needs an endpoint"));
        }
        None => None,
        Some(endpoint) => {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(bad_value(
                    "--s3-endpoint",
                    &format!("expected an http:// or https:// URL, got '{endpoint}'"),
                ));
            }
            let config = S3Config {
                endpoint,
                region: text(&args.s3_region, &["S3_REGION", "WREN_S3_REGION"])
                    .unwrap_or_else(|| "us-east-1".to_owned()),
                bucket,
                prefix: text(&args.s3_prefix, &["S3_PREFIX", "WREN_S3_PREFIX"]).unwrap_or_default(),
                addressing: env.resolve(
                    args.s3_addressing,
                    "--s3-addressing",
                    &["WREN_S3_ADDRESSING"],
                    S3Addressing::Path,
                )?,
                access_key_id: text(&None, &["S3_ACCESS_KEY_ID", "WREN_S3_ACCESS_KEY_ID"]),
                secret_access_key: text(
                    &None,
                    &["S3_SECRET_ACCESS_KEY", "WREN_S3_SECRET_ACCESS_KEY"],
                ),
            };
            if kind == StorageKind::S3 {
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
            Some(config)
        }
    };
    let storage = StorageConfig {
        kind,
        s3,
        max_object_size: env.resolve(
            args.max_object_size,
            "--max-object-size",
            &["WREN_MAX_OBJECT_SIZE"],
            1 << 30,
        )?,
        max_image_size: env.resolve(
            args.max_image_size,
            "--max-image-size",
            &["WREN_MAX_IMAGE_SIZE"],
            10 << 20,
        )?,
    };
    if storage.max_object_size == 0 || storage.max_image_size == 0 {
        return Err(bad_value(
            "--max-object-size",
            "the object and image size limits must be at least 1 byte",
        ));
    }
    Ok(storage)
}

struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// The flag's value, else the first environment variable set (and not
    /// empty), else the default.
    fn resolve<T: FromStr>(
        &self,
        flag_value: Option<T>,
        flag: &str,
        vars: &[&str],
        default: T,
    ) -> Result<T, EarlyExit>
    where
        T::Err: std::fmt::Display,
    {
        if let Some(value) = flag_value {
            return Ok(value);
        }
        for var in vars {
            if let Some(raw) = (self.lookup)(var).filter(|v| !v.is_empty()) {
                return raw.parse().map_err(|err| {
                    bad_value(flag, &format!("invalid value '{raw}' in {var}: {err}"))
                });
            }
        }
        Ok(default)
    }

    /// A switch set by an environment variable (`1`, `true`, `yes`).
    fn flag(&self, var: &str) -> bool {
        (self.lookup)(var)
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&str> = self.users.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("AuthConfig")
            .field("token_ttl", &self.token_ttl)
            .field("cookie_secure", &self.cookie_secure)
            .field("min_password_length", &self.min_password_length)
            .field("users", &users)
            .field("signup", &self.signup)
            .field("login_rate_per_minute", &self.login_rate_per_minute)
            .field("login_burst", &self.login_burst)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `NAME:PASSWORD` pairs from `--user` flags, or else from `WREN_USERS`.
fn parse_users(
    flags: &[String],
    from_env: Option<String>,
) -> Result<Vec<(String, String)>, EarlyExit> {
    let entries: Vec<String> = if flags.is_empty() {
        from_env
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        flags.to_vec()
    };
    entries
        .iter()
        .map(|entry| match entry.split_once(':') {
            Some((name, password)) if !name.is_empty() && !password.is_empty() => {
                // A name sign-up would refuse could never sign in through it
                // (nor get a limiter bucket).
                crate::auth::check_username(name)
                    .map_err(|rule| bad_value("--user", &format!("a user name {rule}")))?;
                Ok((name.to_owned(), password.to_owned()))
            }
            // Never echo the entry: it may hold a password.
            _ => Err(bad_value(
                "--user",
                "expected NAME:PASSWORD with neither part empty",
            )),
        })
        .collect()
}

fn bad_value(flag: &str, problem: &str) -> EarlyExit {
    EarlyExit {
        output: format!("error: {flag}: {problem}"),
        code: 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, EarlyExit> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse("wren", args, |name| env.get(name).cloned())
    }

    #[test]
    fn storage_settings() {
        let local = parse(&[], &[]).unwrap().storage;
        assert_eq!(local.kind, StorageKind::Local);
        assert_eq!(local.s3, None);
        assert_eq!(local.max_object_size, 1 << 30);
        assert_eq!(local.max_image_size, 10 << 20);

        let keys = [("S3_ACCESS_KEY_ID", "AK"), ("S3_SECRET_ACCESS_KEY", "SK")];
        let s3 = parse(
            &[
                "--storage",
                "s3",
                "--s3-bucket",
                "b",
                "--s3-addressing",
                "virtual",
            ],
            &[&keys[..], &[("WREN_S3_ENDPOINT", "https://s3.example.com")]].concat(),
        )
        .unwrap()
        .storage;
        let s3_config = s3.s3.unwrap();
        assert_eq!(s3_config.endpoint, "https://s3.example.com");
        assert_eq!(s3_config.region, "us-east-1");
        assert_eq!(s3_config.addressing, S3Addressing::VirtualHost);
        assert_eq!(s3_config.access_key_id.as_deref(), Some("AK"));
        assert!(
            !format!("{s3_config:?}").contains("SK"),
            "Debug hides the secret"
        );

        let refused = |args: &[&str], env: &[(&str, &str)], needle: &str| {
            let exit = parse(args, env).unwrap_err();
            assert_eq!(exit.code, 2);
            assert!(exit.output.contains(needle), "{}", exit.output);
        };
        refused(&["--storage", "s3"], &keys, "needs an endpoint");
        let endpoint = ("S3_ENDPOINT", "http://127.0.0.1:3900");
        refused(
            &["--storage", "s3"],
            &[keys[0], keys[1], endpoint],
            "needs a bucket",
        );
        refused(
            &["--storage", "s3", "--s3-bucket", "b"],
            &[endpoint],
            "S3_ACCESS_KEY_ID",
        );
        refused(&["--s3-endpoint", "s3.example.com"], &[], "http://");
        refused(&["--storage", "disk"], &[], "expected 'local' or 's3'");
        refused(&["--max-image-size", "0"], &[], "at least 1 byte");
        // An endpoint alone serves accounts with their own keys.
        let endpoint_only = parse(&[], &[endpoint]).unwrap().storage;
        assert_eq!(endpoint_only.kind, StorageKind::Local);
        assert_eq!(endpoint_only.s3.unwrap().bucket, None);
    }

    #[test]
    fn bootstrap_users_follow_the_username_rule() {
        let ok = parse(&["--user", "orhan:12345"], &[]).unwrap();
        assert_eq!(ok.auth.users, [("orhan".to_owned(), "12345".to_owned())]);
        let bad = parse(&["--user", "a b:secret-pw"], &[]).unwrap_err();
        assert_eq!(bad.code, 2);
        assert!(
            bad.output.contains("a user name may hold only"),
            "{}",
            bad.output
        );
        assert!(!bad.output.contains("secret-pw"));
    }

    #[test]
    fn defaults() {
        let config = parse(&[], &[]).unwrap();
        assert_eq!(config.addr, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.log_format, LogFormat::Text);
    }

    #[test]
    fn flags_beat_environment_which_beats_defaults() {
        let env = [
            ("PORT", "8000"),
            ("WREN_PORT", "9000"),
            ("WREN_HOST", "0.0.0.0"),
        ];
        let config = parse(&[], &env).unwrap();
        assert_eq!(config.addr, "0.0.0.0:8000".parse().unwrap());
        let config = parse(&["--port", "7000"], &env).unwrap();
        assert_eq!(config.addr.port(), 7000);
        let config = parse(&[], &[("WREN_PORT", "9000")]).unwrap();
        assert_eq!(config.addr.port(), 9000);
    }

    #[test]
    fn fractional_seconds() {
        let config = parse(&["--header-timeout", "0.5"], &[("WREN_IO_TIMEOUT", "2")]).unwrap();
        assert_eq!(config.limits.header_timeout, Duration::from_millis(500));
        assert_eq!(config.limits.io_timeout, Duration::from_secs(2));
    }

    #[test]
    fn bad_values_exit_2_naming_the_flag() {
        for (args, env, flag) in [
            (vec!["--port", "http"], vec![], "--port"),
            (vec!["--header-timeout", "-1"], vec![], "--header-timeout"),
            (vec!["--log-format", "xml"], vec![], "--log-format"),
            (vec![], vec![("WREN_IO_TIMEOUT", "soon")], "--io-timeout"),
            (vec![], vec![("WREN_HOST", "example.com")], "--host"),
            (vec!["--max-connections", "0"], vec![], "--max-connections"),
        ] {
            let exit = parse(&args, &env).unwrap_err();
            assert_eq!(exit.code, 2, "{args:?} {env:?}");
            assert!(exit.output.contains(flag), "{}", exit.output);
            assert_eq!(exit.output.trim().lines().count(), 1, "{}", exit.output);
        }
    }

    #[test]
    fn auth_settings() {
        let config = parse(&[], &[]).unwrap();
        assert_eq!(config.auth.token_ttl, Duration::from_secs(3600));
        assert!(config.auth.signup && !config.auth.cookie_secure);
        assert!(config.auth.users.is_empty());
        let env = [
            ("WREN_USERS", "orhan:12345, dustybot:1234567"),
            ("WREN_NO_SIGNUP", "1"),
        ];
        let config = parse(&[], &env).unwrap();
        assert_eq!(
            config.auth.users,
            vec![
                ("orhan".into(), "12345".into()),
                ("dustybot".into(), "1234567".into())
            ]
        );
        assert!(!config.auth.signup);
        let config = parse(&["--user", "a:b:c", "--cookie-secure"], &env).unwrap();
        assert_eq!(config.auth.users, vec![("a".into(), "b:c".into())]);
        assert!(config.auth.cookie_secure);
        let secret = "s".repeat(40);
        let config = parse(&["--user", "ann:hunter22"], &[("WREN_SECRET", &secret)]).unwrap();
        let printed = format!("{config:?}");
        assert!(
            printed.contains("ann") && printed.contains("<redacted>"),
            "{printed}"
        );
        assert!(
            !printed.contains("hunter22") && !printed.contains(&secret),
            "{printed}"
        );
        let exit = parse(&["--user", "nopassword"], &[]).unwrap_err();
        assert_eq!(exit.code, 2);
        assert!(!exit.output.contains("nopassword"));
    }

    #[test]
    fn help_and_version_exit_0() {
        let help = parse(&["--help"], &[]).unwrap_err();
        assert_eq!(help.code, 0);
        assert!(help.output.contains("WREN_MAX_CONNECTIONS"));
        let version = parse(&["--version"], &[]).unwrap_err();
        assert_eq!(version.code, 0);
        assert_eq!(
            version.output,
            format!("wren {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

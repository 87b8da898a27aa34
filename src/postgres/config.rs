//! Where a PostgreSQL server is and how to reach it, from a
//! `postgres://user:password@host:port/database?sslmode=…` URL (the form
//! libpq and every hosting provider give out).

use std::fmt;
use std::path::PathBuf;

/// The default port, as libpq's.
const DEFAULT_PORT: u16 = 5432;

/// A parsed database URL. Its `Debug` leaves the password out, so a config
/// can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    pub ssl_mode: SslMode,
    /// Certificates (PEM) to trust for the server instead of the bundled
    /// web roots (`sslrootcert`).
    pub root_cert: Option<PathBuf>,
}

/// libpq's `sslmode`s, with their meaning there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, else plain TCP (libpq's default).
    Prefer,
    /// TLS or nothing; the certificate is checked against `sslrootcert`
    /// when it is given, else not at all (as libpq does).
    Require,
    /// TLS with a certificate from a trusted authority.
    VerifyCa,
    /// TLS with a trusted certificate for the host named in the URL.
    VerifyFull,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("database", &self.database)
            .field("ssl_mode", &self.ssl_mode)
            .field("root_cert", &self.root_cert)
            .finish()
    }
}

impl Config {
    /// Parses a `postgres://` or `postgresql://` URL; the error says what
    /// is wrong with it, never repeating the password.
    pub fn parse(text: &str) -> Result<Config, String> {
        let url = url::Url::parse(text).map_err(|err| format!("not a URL: {err}"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "the scheme must be postgres:// or postgresql://, not {}://",
                url.scheme()
            ));
        }
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => host.trim_matches(['[', ']']).to_owned(),
            _ => return Err("no host: postgres://user:password@HOST:port/database".into()),
        };
        let user = decode(url.username(), "user name")?;
        if user.is_empty() {
            return Err("no user: postgres://USER:password@host:port/database".into());
        }
        let password = url
            .password()
            .map(|password| decode(password, "password"))
            .transpose()?;
        let database = decode(url.path().trim_start_matches('/'), "database name")?;
        let mut config = Config {
            port: url.port().unwrap_or(DEFAULT_PORT),
            host,
            database: if database.is_empty() {
                user.clone()
            } else {
                database
            },
            user,
            password,
            ssl_mode: SslMode::Prefer,
            root_cert: None,
        };
        for (name, value) in url.query_pairs() {
            match &*name {
                "sslmode" => {
                    config.ssl_mode = match &*value {
                        "disable" => SslMode::Disable,
                        "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        other => {
                            return Err(format!(
                                "sslmode={other}: use disable, prefer, require, verify-ca or \
                                 verify-full"
                            ));
                        }
                    }
                }
                "sslrootcert" => config.root_cert = Some(PathBuf::from(&*value)),
                // Set by wren itself.
                "application_name" | "connect_timeout" => {}
                other => return Err(format!("unknown URL parameter {other}")),
            }
        }
        Ok(config)
    }
}

/// `text` with its `%XX` escapes undone; the error names `what` it is.
fn decode(text: &str, what: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| format!("the {what} is not valid percent-encoded UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_url_gives_every_part() {
        let config = Config::parse(
            "postgres://wren:p%40ss%2Fword@db.example:6543/app?sslmode=verify-full&sslrootcert=/ca.pem",
        )
        .unwrap();
        assert_eq!(config.host, "db.example");
        assert_eq!(config.port, 6543);
        assert_eq!(config.user, "wren");
        assert_eq!(config.password.as_deref(), Some("p@ss/word"));
        assert_eq!(config.database, "app");
        assert_eq!(config.ssl_mode, SslMode::VerifyFull);
        assert_eq!(config.root_cert, Some(PathBuf::from("/ca.pem")));
        assert!(!format!("{config:?}").contains("p@ss"));
    }

    #[test]
    fn defaults_are_libpq_s() {
        let config = Config::parse("postgresql://ann@127.0.0.1").unwrap();
        assert_eq!(config.port, 5432);
        assert_eq!(config.database, "ann");
        assert_eq!(config.password, None);
        assert_eq!(config.ssl_mode, SslMode::Prefer);
        let v6 = Config::parse("postgres://ann@[::1]:5433/x").unwrap();
        assert_eq!(v6.host, "::1");
    }

    #[test]
    fn bad_urls_say_what_is_wrong_without_the_password() {
        for (url, says) in [
            ("mysql://a:secret@h/d", "scheme"),
            ("postgres://:secret@h/d", "no user"),
            ("postgres://a:secret@h/d?sslmode=always", "sslmode=always"),
            (
                "postgres://a:secret@h/d?pool=3",
                "unknown URL parameter pool",
            ),
            ("postgres://a:se%FF@h/d", "password"),
            ("not a url", "not a URL"),
        ] {
            let err = Config::parse(url).unwrap_err();
            assert!(err.contains(says), "{url}: {err}");
            assert!(!err.contains("secret"), "{url}: {err}");
        }
    }
}

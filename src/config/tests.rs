//! The settings table as `Config::parse` resolves it, and README's
//! configuration table held to it.

use std::collections::HashMap;

use super::help::Action;
use super::*;
use crate::blob::S3Addressing;

fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, EarlyExit> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::parse("wren", args, |name| env.get(name).cloned())
}

#[test]
fn quota_settings_take_zero_for_no_limit() {
    let storage = parse(
        &["--account-quota", "0", "--min-free-disk", "0"],
        &[("WREN_ACCOUNT_MAX_FILES", "0")],
    )
    .unwrap()
    .storage;
    assert_eq!(storage.quota, Quota::default());
    assert_eq!(storage.min_free_disk, 0);
    let storage = parse(
        &["--account-quota", "1000000"],
        &[("WREN_ACCOUNT_MAX_FILES", "3")],
    )
    .unwrap()
    .storage;
    assert_eq!(
        storage.quota,
        Quota {
            bytes: Some(1_000_000),
            files: Some(3)
        }
    );
    let exit = parse(&["--account-quota", "1GB"], &[]).unwrap_err();
    assert!(exit.output.contains("--account-quota"), "{}", exit.output);
}

#[test]
fn storage_settings() {
    let local = parse(&[], &[]).unwrap().storage;
    assert_eq!(local.kind, StorageKind::Local);
    assert_eq!(local.s3, None);
    assert_eq!(local.max_object_size, 1 << 30);
    assert_eq!(local.max_image_size, 10 << 20);
    assert_eq!(
        local.quota,
        Quota {
            bytes: Some(1 << 30),
            files: Some(100_000)
        }
    );
    assert_eq!(local.min_free_disk, 256 << 20);

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
fn log_formats_parse() {
    // Moved from http/log.rs when LogFormat's FromStr went with argh.
    for (name, format) in [("text", LogFormat::Text), ("json", LogFormat::Json)] {
        let config = parse(&["--log-format", name], &[]).unwrap();
        assert_eq!(config.log_format, format);
    }
    assert!(parse(&["--log-format", "xml"], &[]).is_err());
}

#[test]
fn log_levels_parse_in_order_of_severity() {
    assert_eq!(parse(&[], &[]).unwrap().log_level, LogLevel::Info);
    for (name, level) in [
        ("error", LogLevel::Error),
        ("warn", LogLevel::Warn),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
    ] {
        assert_eq!(parse(&["--log-level", name], &[]).unwrap().log_level, level);
    }
    assert!(LogLevel::Error < LogLevel::Warn && LogLevel::Info < LogLevel::Debug);
    assert!(parse(&["--log-level", "trace"], &[]).is_err());
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
fn the_settings_given_are_listed_with_secrets_hidden() {
    let none = parse(&[], &[]).unwrap();
    assert_eq!(
        none.explain_settings(),
        "settings: every one at its default"
    );
    let env = [
        ("WREN_PORT", "9000"),
        ("WREN_SECRET", "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"),
        ("S3_SECRET_ACCESS_KEY", "the-s3-secret"),
        ("WREN_METRICS_TOKEN", "the-metrics-token"),
        ("WREN_USERS", "carol:carolpassword"),
    ];
    let args = [
        "--data-dir",
        "/srv/wren",
        "--user",
        "alice:alicepassword",
        "--no-signup",
        "--cors-origin",
        "https://a.example",
        "--cors-origin",
        "https://b.example",
    ];
    let line = parse(&args, &env).unwrap().explain_settings();
    assert_eq!(
        line,
        "settings: --port 9000 (from WREN_PORT), --data-dir /srv/wren, --user (hidden), \
         --no-signup, WREN_SECRET (hidden), --cors-origin https://a.example,https://b.example, \
         WREN_METRICS_TOKEN (hidden), S3_SECRET_ACCESS_KEY (hidden); every other at its \
         default"
    );
    for secret in ["s3cr3t", "the-s3-secret", "the-metrics-token", "password"] {
        assert!(!line.contains(secret), "{line}");
    }
}

#[test]
fn fair_share_settings_reach_the_limits() {
    let config = parse(
        &["--max-connections-per-ip", "0", "--min-rate", "100"],
        &[("WREN_MAX_THREADS", "16")],
    )
    .unwrap();
    assert_eq!(config.limits.max_connections_per_address, 0);
    assert_eq!(config.limits.min_rate, 100);
    assert_eq!(config.limits.max_threads, 16);
}

#[test]
fn fractional_seconds() {
    let config = parse(&["--header-timeout", "0.5"], &[("WREN_IO_TIMEOUT", "2")]).unwrap();
    assert_eq!(config.limits.header_timeout, Duration::from_millis(500));
    assert_eq!(config.limits.io_timeout, Duration::from_secs(2));
}

#[test]
fn durations_in_seconds_and_hours_stay_within_a_year() {
    use super::values::{optional_hours, seconds};
    assert_eq!(
        optional_hours("0.5").unwrap(),
        Some(Duration::from_secs(1800))
    );
    assert_eq!(optional_hours("").unwrap(), None);
    assert_eq!(seconds("2").unwrap(), Duration::from_secs(2));
    let too_long = optional_hours("8761").unwrap_err();
    assert!(too_long.contains("at most a year: 8760"), "{too_long}");
    let too_long = seconds("31536001").unwrap_err();
    assert!(too_long.contains("at most a year: 31536000"), "{too_long}");
    for bad in ["0", "-1", "NaN", "inf", "soon"] {
        assert!(optional_hours(bad).is_err(), "{bad}");
        assert!(seconds(bad).is_err(), "{bad}");
    }
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
        (vec!["--max-threads", "0"], vec![], "--max-threads"),
        (
            vec!["--threads", "8", "--max-threads", "4"],
            vec![],
            "--threads",
        ),
        (vec!["--min-rate", "fast"], vec![], "--min-rate"),
        (
            vec![],
            vec![("WREN_MAX_CONNECTIONS_PER_IP", "-1")],
            "--max-connections-per-ip",
        ),
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

#[test]
fn environment_errors_name_the_flag_and_the_variable() {
    let exit = parse(&[], &[("WREN_PORT", "eighty")]).unwrap_err();
    assert_eq!(
        exit.output,
        "error: --port (from WREN_PORT): expected a whole number, got 'eighty' \
         (invalid digit found in string)"
    );
    // The first variable set counts, the empty one is not set.
    let exit = parse(&[], &[("PORT", ""), ("WREN_PORT", "x")]).unwrap_err();
    assert!(exit.output.contains("(from WREN_PORT)"), "{}", exit.output);
    // A bad bootstrap account names the variable, never the password.
    let exit = parse(&[], &[("WREN_USERS", "ann:ok-pw, nopassword")]).unwrap_err();
    assert_eq!(exit.code, 2);
    assert!(
        exit.output
            .starts_with("error: --user (from WREN_USERS): expected NAME:PASSWORD"),
        "{}",
        exit.output
    );
    assert!(!exit.output.contains("ok-pw") && !exit.output.contains("nopassword"));
}

#[test]
fn switches_take_a_flag_or_a_clear_word() {
    for (value, on) in [
        ("1", true),
        ("yes", true),
        ("TRUE", true),
        ("0", false),
        ("off", false),
    ] {
        let config = parse(&[], &[("WREN_NO_SIGNUP", value)]).unwrap();
        assert_eq!(config.auth.signup, !on, "WREN_NO_SIGNUP={value}");
    }
    // A word that is neither stops wren rather than leaving sign-up open.
    let exit = parse(&[], &[("WREN_NO_SIGNUP", "please")]).unwrap_err();
    assert!(
        exit.output.contains("--no-signup (from WREN_NO_SIGNUP)"),
        "{}",
        exit.output
    );
    // The flag wins over a variable that says off.
    let config = parse(&["--no-signup"], &[("WREN_NO_SIGNUP", "0")]).unwrap();
    assert!(!config.auth.signup);
    let exit = parse(&["--no-signup=1"], &[]).unwrap_err();
    assert_eq!(
        exit.output,
        "error: --no-signup: is a switch and takes no value"
    );
}

#[test]
fn command_line_shapes() {
    let config = parse(&["--port=7000", "--host", "localhost"], &[]).unwrap();
    assert_eq!(config.addr, "127.0.0.1:7000".parse().unwrap());
    let config = parse(&["--user", "ann:pw-one", "--user=bob:pw-two"], &[]).unwrap();
    assert_eq!(config.auth.users.len(), 2);
    for (args, message) in [
        (&["--port"][..], "error: --port: no value given"),
        (
            &["--port", "1", "--port", "2"],
            "error: --port: given more than once",
        ),
        (&["--no-such-flag"], "error: unknown flag '--no-such-flag'"),
        (
            &["--port", "1", "extra"],
            "error: unexpected argument 'extra'",
        ),
        (&["serve"], "error: unknown command 'serve'"),
        (&["-p", "1"], "error: unexpected argument '-p'"),
    ] {
        let exit = parse(args, &[]).unwrap_err();
        assert_eq!((exit.code, exit.output.as_str()), (2, message), "{args:?}");
    }
    let help = parse(&["help"], &[]).unwrap_err();
    assert_eq!(help.code, 0);
    assert!(help.output.starts_with("wren: "), "{}", help.output);
}

#[test]
fn environment_only_settings() {
    let keys = [
        ("WREN_S3_ACCESS_KEY_ID", "AK"),
        ("WREN_S3_SECRET_ACCESS_KEY", "SK"),
        ("S3_ENDPOINT", "http://127.0.0.1:3900"),
    ];
    let s3 = parse(&[], &keys).unwrap().storage.s3.unwrap();
    assert_eq!(s3.access_key_id.as_deref(), Some("AK"));
    assert_eq!(s3.secret_access_key.as_deref(), Some("SK"));
    // Secrets are never flags.
    for flag in ["--secret", "--s3-access-key-id", "--s3-secret-access-key"] {
        let exit = parse(&[flag, "x"], &[]).unwrap_err();
        assert_eq!(exit.output, format!("error: unknown flag '{flag}'"));
    }
}

#[test]
fn metrics_settings() {
    let on = parse(&[], &[]).unwrap().metrics;
    assert_eq!((on.enabled, on.token), (true, None));
    let token = [("WREN_METRICS_TOKEN", "scrape me")];
    let guarded = parse(&[], &token).unwrap().metrics;
    assert_eq!(guarded.token.as_deref(), Some("scrape me"));
    assert!(!format!("{guarded:?}").contains("scrape me"));
    assert!(!parse(&["--no-metrics"], &[]).unwrap().metrics.enabled);
    let exit = parse(&["--no-metrics"], &token).unwrap_err();
    assert_eq!(exit.code, 2);
    assert!(
        exit.output.contains("WREN_METRICS_TOKEN"),
        "{}",
        exit.output
    );
    let exit = parse(&["--metrics-token", "x"], &[]).unwrap_err();
    assert_eq!(exit.output, "error: unknown flag '--metrics-token'");
}

/// One row of README's configuration table: flag, variables, default.
struct Row<'a> {
    usage: &'a str,
    env: Vec<&'a str>,
    default: String,
}

/// The rows of the table under README's "## Configuration".
fn readme_rows(readme: &str) -> Vec<Row<'_>> {
    let section = readme
        .split_once("\n## Configuration\n")
        .expect("README has a Configuration section")
        .1;
    let section = section.split("\n#").next().unwrap();
    section
        .lines()
        .filter(|line| {
            line.starts_with("| ") && !line.starts_with("| flag") && !line.starts_with("| ---")
        })
        .map(|line| {
            let cells: Vec<&str> = line.splitn(5, '|').map(str::trim).collect();
            Row {
                usage: cells[1].trim_matches('`'),
                // `PORT`, then `WREN_PORT`; `WREN_COOKIE_SECURE=1`
                env: cells[2]
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(|var| var.split('=').next().unwrap())
                    .collect(),
                default: cells[3].replace('`', ""),
            }
        })
        .collect()
}

/// Whether `row` is about `setting`: the same flag, or for an
/// environment-only setting, no flag and the same first variable.
fn describes(row: &Row<'_>, setting: &Setting) -> bool {
    match setting.usage {
        Some(usage) => row.usage == usage,
        None => row.usage.is_empty() && row.env.first() == setting.env.first(),
    }
}

#[test]
fn readme_lists_every_setting_and_nothing_else() {
    let rows = readme_rows(include_str!("../../README.md"));
    for setting in SETTINGS {
        let row = rows
            .iter()
            .find(|row| describes(row, setting))
            .unwrap_or_else(|| panic!("README lacks a row for {}", setting.name()));
        assert_eq!(
            row.env,
            setting.env,
            "README's variables for {}",
            setting.name()
        );
        assert_eq!(
            row.default,
            setting.default,
            "README's default for {}",
            setting.name()
        );
    }
    for row in &rows {
        let is_setting = SETTINGS.iter().any(|setting| describes(row, setting));
        let is_action = Action::ALL.iter().any(|action| row.usage == action.flag());
        assert!(
            is_setting || is_action,
            "README lists '{}' {:?}, which is no setting",
            row.usage,
            row.env
        );
    }
}

#[test]
fn admins_are_bootstrap_accounts_with_one_role_each() {
    let config = parse(
        &["--admin", "root:root-pw", "--user", "ann:ann-pw"],
        &[("WREN_ADMINS", "ignored:flag-wins")],
    )
    .unwrap();
    assert_eq!(config.auth.admins, [("root".into(), "root-pw".into())]);
    let from_env = parse(&[], &[("WREN_ADMINS", "root:a, ops:b")]).unwrap();
    assert_eq!(from_env.auth.admins.len(), 2);
    let printed = format!("{:?}", config.auth);
    assert!(
        printed.contains("root") && !printed.contains("root-pw"),
        "{printed}"
    );
    let both = parse(&["--admin", "ann:x", "--user", "ann:y"], &[]).unwrap_err();
    assert_eq!(
        (both.code, both.output.as_str()),
        (
            2,
            "error: --admin: 'ann' is also given to --user; an account has one role"
        )
    );
}

#[test]
fn events_are_protected_exactly_when_other_hosts_can_reach_wren() {
    let mode = |args: &[&str], env: &[(&str, &str)]| parse(args, env).unwrap().events;
    for loopback in [
        "127.0.0.1",
        "localhost",
        "127.0.0.2",
        "::1",
        "::ffff:127.0.0.1",
    ] {
        assert_eq!(
            mode(&["--host", loopback], &[]),
            EventsMode::Loopback,
            "{loopback}"
        );
    }
    for reachable in ["0.0.0.0", "::", "192.168.1.10"] {
        assert_eq!(
            mode(&["--host", reachable], &[]),
            EventsMode::Protected,
            "{reachable}"
        );
        assert_eq!(
            mode(&["--host", reachable, "--open-events"], &[]),
            EventsMode::Opened
        );
    }
    assert_eq!(
        mode(&[], &[("WREN_HOST", "0.0.0.0"), ("WREN_OPEN_EVENTS", "1")]),
        EventsMode::Opened
    );
    assert!(EventsMode::Loopback.is_open() && EventsMode::Opened.is_open());
    assert!(!EventsMode::Protected.is_open());
    let why = EventsMode::Protected.explain("0.0.0.0".parse().unwrap());
    assert!(
        why.contains("protected") && why.contains("0.0.0.0") && why.contains("--open-events"),
        "{why}"
    );
}

#[test]
fn rate_limits_are_on_exactly_when_other_hosts_can_reach_wren_unless_forced() {
    let limits = |args: &[&str]| parse(args, &[]).unwrap().rate_limits;
    for loopback in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
        let off = limits(&["--host", loopback]);
        assert_eq!(off.mode, RateLimitMode::Loopback);
        assert!(!off.enabled());
        assert!(limits(&["--host", loopback, "--rate-limiting", "on"]).enabled());
    }
    for reachable in ["0.0.0.0", "::", "192.168.1.10"] {
        let on = limits(&["--host", reachable]);
        assert_eq!(on.mode, RateLimitMode::Reachable);
        assert!(on.enabled());
        assert!(!limits(&["--host", reachable, "--rate-limiting", "off"]).enabled());
    }
    let defaults = limits(&[]);
    assert_eq!(
        (defaults.address_rate, defaults.address_burst),
        (10, 20),
        "nginx's documented limit_req example"
    );
    assert_eq!((defaults.account_rate, defaults.account_burst), (20, 40));
    assert!(!defaults.trust_proxy);
    let why = limits(&["--host", "0.0.0.0", "--trust-proxy"]).explain("0.0.0.0".parse().unwrap());
    assert!(
        why.contains("rate limits are on")
            && why.contains("0.0.0.0")
            && why.contains("X-Forwarded-For"),
        "{why}"
    );
    let why = defaults.explain("127.0.0.1".parse().unwrap());
    assert!(
        why.contains("off") && why.contains("--rate-limiting on"),
        "{why}"
    );
    assert!(parse(&["--rate-limiting", "sometimes"], &[]).is_err());
    assert!(parse(&["--rate-limit", "0"], &[]).is_err());
}

#[test]
fn the_first_word_picks_the_command() {
    let command = |args: &[&str]| Command::parse("wren", args, |_| None);
    assert!(matches!(command(&[]), Ok(Command::Serve(_))));
    assert!(matches!(command(&["--port", "1"]), Ok(Command::Serve(_))));
    assert!(matches!(command(&["keys", "list"]), Ok(Command::Keys(_))));
    assert!(matches!(
        command(&["backup", "--to", "/b"]),
        Ok(Command::Backup(_))
    ));
    assert!(matches!(
        command(&["restore", "--from", "/b", "--data-dir", "/new"]),
        Ok(Command::Restore(_))
    ));
    let unknown = command(&["key", "list"]).unwrap_err();
    assert_eq!(unknown.output, "error: unknown command 'key'");
    // The server's flags are not the keys commands'.
    let exit = command(&["keys", "list", "--port", "1"]).unwrap_err();
    assert_eq!(exit.output, "error: unknown flag '--port' for keys list");
    let help = command(&["--help"]).unwrap_err().output;
    assert!(help.contains("keys create|list|revoke"), "{help}");
    assert!(help.contains("backup|restore ..."), "{help}");
}

#[test]
fn https_from_files_or_acme_with_its_rules() {
    let files = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"], &[]).unwrap();
    let tls = files.tls.expect("HTTPS on");
    let CertificateSource::Files { cert, key } = &tls.certificate else {
        panic!("{tls:?}");
    };
    assert_eq!(
        (cert.to_str(), key.to_str()),
        (Some("c.pem"), Some("k.pem"))
    );
    assert_eq!(tls.hsts_max_age, Some(31_536_000));
    assert_eq!((tls.redirect_port, tls.redirect_https_port), (None, None));
    assert!(files.auth.cookie_secure, "HTTPS makes the cookie Secure");
    assert!(parse(&[], &[]).unwrap().tls.is_none());
    assert!(!parse(&[], &[]).unwrap().auth.cookie_secure);

    let acme = parse(
        &[
            "--acme-domain",
            "Example.ORG.",
            "--redirect-port",
            "80",
            "--acme-challenge",
            "http-01",
            "--hsts-max-age",
            "0",
        ],
        &[("WREN_ACME_EMAIL", "ops@example.org")],
    )
    .unwrap()
    .tls
    .unwrap();
    let CertificateSource::Acme(settings) = &acme.certificate else {
        panic!("{acme:?}");
    };
    assert_eq!(settings.domains, ["example.org"]);
    assert_eq!(settings.email.as_deref(), Some("ops@example.org"));
    assert_eq!(
        settings.directory,
        "https://acme-v02.api.letsencrypt.org/directory"
    );
    assert_eq!(settings.challenge, ChallengeKind::Http01);
    assert_eq!(settings.dir, PathBuf::from("./data/acme"));
    assert_eq!(settings.renew_at, 0.667);
    assert_eq!(
        (settings.retry_min, settings.retry_max),
        (Duration::from_secs(300), Duration::from_secs(21_600))
    );
    assert_eq!(acme.redirect_port, Some(80));
    assert_eq!(acme.hsts_max_age, None);

    let listed = parse(&[], &[("WREN_ACME_DOMAINS", "a.example,b.example")]).unwrap();
    let Some(TlsConfig {
        certificate: CertificateSource::Acme(settings),
        ..
    }) = listed.tls
    else {
        panic!("ACME from the environment");
    };
    assert_eq!(settings.domains, ["a.example", "b.example"]);
}

#[test]
fn https_settings_that_cannot_work_exit_2_naming_the_flag() {
    for (args, flag) in [
        (vec!["--tls-cert", "c.pem"], "--tls-key"),
        (vec!["--tls-key", "k.pem"], "--tls-cert"),
        (
            vec![
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
                "--acme-domain",
                "a.example",
            ],
            "--acme-domain",
        ),
        (vec!["--redirect-port", "80"], "--redirect-port"),
        (
            vec![
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
                "--port",
                "443",
                "--redirect-port",
                "443",
            ],
            "--redirect-port",
        ),
        (
            vec!["--acme-domain", "a.example", "--acme-challenge", "http-01"],
            "--acme-challenge",
        ),
        (vec!["--acme-domain", "*.example.org"], "--acme-domain"),
        (vec!["--acme-domain", "localhost"], "--acme-domain"),
        (vec!["--acme-domain", "10.0.0.1"], "--acme-domain"),
        (
            vec!["--acme-directory", "http://ca.test/dir"],
            "--acme-directory",
        ),
        (vec!["--acme-email", "nobody"], "--acme-email"),
        (vec!["--acme-email", "ops@example.org"], "--acme-email"),
        (vec!["--acme-ca-root", "ca.pem"], "--acme-ca-root"),
        (vec!["--acme-renew-at", "0"], "--acme-renew-at"),
        (vec!["--acme-renew-at", "1.5"], "--acme-renew-at"),
        (vec!["--acme-challenge", "dns-01"], "--acme-challenge"),
    ] {
        let exit = parse(&args, &[]).unwrap_err();
        assert_eq!(exit.code, 2, "{args:?}");
        assert!(exit.output.contains(flag), "{args:?}: {}", exit.output);
        assert_eq!(exit.output.trim().lines().count(), 1, "{}", exit.output);
    }
}

#[test]
fn cors_origins_are_origins() {
    let config = parse(
        &[
            "--cors-origin",
            "https://App.example:8443",
            "--cors-origin",
            "*",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(config.cors_origins, ["https://app.example:8443", "*"]);
    for bad in [
        "app.example",
        "https://app.example/path",
        "ftp://x",
        "https://",
    ] {
        let exit = parse(&["--cors-origin", bad], &[]).unwrap_err();
        assert!(
            exit.output.contains("--cors-origin"),
            "{bad}: {}",
            exit.output
        );
    }
}

#[test]
fn backups_on_schedule_take_an_interval_in_hours_and_a_place() {
    assert!(parse(&[], &[]).unwrap().backup.is_none());
    let schedule = parse(
        &["--backup-every", "0.5", "--backup-to", "/srv/backups"],
        &[("WREN_BACKUP_KEEP", "3")],
    )
    .unwrap()
    .backup
    .unwrap();
    assert_eq!(
        schedule,
        Schedule {
            every: Duration::from_secs(1800),
            keep: 3,
            to: Location::Dir("/srv/backups".into()),
        }
    );
    assert_eq!(
        parse(&["--backup-every", "24", "--backup-to", "b"], &[])
            .unwrap()
            .backup
            .unwrap()
            .keep,
        7
    );
    let refused = |args: &[&str], env: &[(&str, &str)], needle: &str| {
        let exit = parse(args, env).unwrap_err();
        assert!(exit.output.contains(needle), "{args:?}: {}", exit.output);
    };
    refused(
        &["--backup-every", "1"],
        &[],
        "--backup-every: needs --backup-to",
    );
    refused(
        &["--backup-to", "b"],
        &[],
        "--backup-to: needs --backup-every",
    );
    for bad in ["0", "-1", "soon", "8761"] {
        refused(
            &["--backup-every", bad, "--backup-to", "b"],
            &[],
            "--backup-every: expected a",
        );
    }
    refused(
        &["--backup-every", "1", "--backup-to", "s3://b-1/x"],
        &[],
        "needs the server's S3 settings",
    );
    let s3 = [
        ("S3_ENDPOINT", "http://127.0.0.1:3900"),
        ("S3_ACCESS_KEY_ID", "AK"),
        ("S3_SECRET_ACCESS_KEY", "SK"),
        ("S3_BUCKET", "files"),
    ];
    refused(
        &["--backup-every", "1", "--backup-to", "s3://files/backups"],
        &s3,
        "among the accounts' files",
    );
    let on_s3 = parse(
        &["--backup-every", "1", "--backup-to", "s3://other/daily"],
        &s3,
    )
    .unwrap()
    .backup
    .unwrap();
    assert_eq!(
        on_s3.to,
        Location::S3 {
            bucket: "other".into(),
            prefix: "daily".into()
        }
    );
}

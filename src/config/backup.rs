//! `wren backup` and `wren restore`: their command lines, beside the
//! server's. Each has a flag of its own (`--to`, `--from`); the data
//! folder, the S3 settings an `s3://` location is reached with (and which
//! tell where the server keeps files on S3), and the log's format and level
//! are the server's settings, taken from the same table, flags and
//! environment: a command run beside a server finds what the server finds.

use std::path::PathBuf;

use super::args::{Args, asks_for_help, server_setting};
use super::parse::{CommandLine, Input};
use super::settings::Settings;
use super::{Config, EarlyExit, bad_value, check_backup_location};
use crate::backup::Location;
use crate::blob::S3Config;
use crate::http::log::{LogFormat, LogLevel};

/// `wren backup --to LOCATION` or `wren restore --from LOCATION`: the
/// location its flag names, and the server's settings it works with.
#[derive(Debug, Clone)]
pub struct BackupCommand {
    /// Where the backup goes (`--to`), or comes from (`--from`).
    pub location: Location,
    /// The data folder backed up, or the new one restored into.
    pub data_dir: PathBuf,
    /// The server's S3 settings, when an endpoint is configured.
    pub s3: Option<S3Config>,
    pub log_format: LogFormat,
    pub log_level: LogLevel,
}

/// The server's settings these commands read, by flag.
const SERVER_FLAGS: [&str; 8] = [
    "--data-dir",
    "--s3-endpoint",
    "--s3-region",
    "--s3-bucket",
    "--s3-prefix",
    "--s3-addressing",
    "--log-format",
    "--log-level",
];

impl BackupCommand {
    /// Reads the words after `backup`. `--help` (or `help`) prints its
    /// usage (exit 0); anything wrong is a one-line error (exit 2).
    pub(super) fn backup(
        program: &str,
        args: &[&str],
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<BackupCommand, EarlyExit> {
        BackupCommand::read("backup", "--to", program, args, lookup)
    }

    /// Reads the words after `restore`, as [`BackupCommand::backup`] does.
    pub(super) fn restore(
        program: &str,
        args: &[&str],
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<BackupCommand, EarlyExit> {
        BackupCommand::read("restore", "--from", program, args, lookup)
    }

    /// Reads `command`'s words: the location its `own` flag names, and the
    /// server's configuration, resolved and checked as the server does
    /// (so a command refuses what the server would).
    fn read(
        command: &str,
        own: &str,
        program: &str,
        args: &[&str],
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<BackupCommand, EarlyExit> {
        if asks_for_help(args) {
            return Err(EarlyExit::print(help(program, command)));
        }
        let known: Vec<&str> = std::iter::once(own).chain(SERVER_FLAGS).collect();
        let args = Args::read(command, args, &known)?;
        args.no_words()?;
        let location = args.one(own)?.ok_or_else(|| {
            bad_value(
                own,
                "is required: a folder, or s3://BUCKET/PREFIX with the server's S3 settings",
            )
        })?;
        let location = Location::parse(location).map_err(|problem| bad_value(own, &problem))?;
        let mut given = Vec::new();
        for flag in SERVER_FLAGS {
            if let Some(value) = args.one(flag)? {
                given.push((server_setting(flag), value));
            }
        }
        let settings = Settings::resolve(&Input::new(CommandLine::giving_each(&given), lookup))?;
        let config = Config::from_settings(settings)?;
        check_backup_location(own, &location, &config.storage)?;
        Ok(BackupCommand {
            location,
            data_dir: config.data_dir,
            s3: config.storage.s3,
            log_format: config.log_format,
            log_level: config.log_level,
        })
    }
}

/// `wren backup --help` and `wren restore --help`.
fn help(program: &str, command: &str) -> String {
    let usage = match command {
        "backup" => format!(
            "wren backup: a copy of a data folder at one moment, taken while the server
runs: every database, the stored files, the secret and the ACME folder, and
a manifest of their sizes and SHA-256. Files kept on S3 stay there.

Usage: {program} backup --to LOCATION [--data-dir PATH]

  --to LOCATION
      where the backup goes: a new or empty folder (DIR), or a prefix in a
      bucket (s3://BUCKET/PREFIX) reached with the server's S3 settings; it
      appears only when complete
"
        ),
        _ => format!(
            "wren restore: lays a backup out as a new data folder, every file checked
against the manifest first; `wren --data-dir NEW` then serves the backed-up
state.

Usage: {program} restore --from LOCATION --data-dir NEW

  --from LOCATION
      the backup: a folder (DIR), or a prefix in a bucket
      (s3://BUCKET/PREFIX) reached with the server's S3 settings
  --data-dir NEW
      the new data folder; it must not exist or be empty
"
        ),
    };
    let data_dir = server_setting("--data-dir");
    format!(
        "{usage}
--data-dir (env: {env}; default: {default}), the S3 settings
(--s3-endpoint, --s3-region, --s3-bucket, --s3-prefix, --s3-addressing, and
S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY in the environment) and --log-format,
--log-level are the server's, from flags or the environment as `{program}
--help` lists them. On a terminal, progress shows in place (bytes and files
done of the total); otherwise one log line per phase.
",
        env = data_dir.env.join(", then "),
        default = data_dir.default,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(env: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn backup(args: &[&str], env: &[(&str, &str)]) -> Result<BackupCommand, EarlyExit> {
        BackupCommand::backup("wren", args, &lookup(env))
    }

    fn restore(args: &[&str], env: &[(&str, &str)]) -> Result<BackupCommand, EarlyExit> {
        BackupCommand::restore("wren", args, &lookup(env))
    }

    fn refusal(result: Result<impl std::fmt::Debug, EarlyExit>) -> String {
        let exit = result.unwrap_err();
        assert_eq!(exit.code, 2, "{}", exit.output);
        assert_eq!(exit.output.lines().count(), 1, "{}", exit.output);
        exit.output
    }

    const S3_ENV: [(&str, &str); 3] = [
        ("S3_ENDPOINT", "http://127.0.0.1:3900"),
        ("S3_ACCESS_KEY_ID", "AK"),
        ("S3_SECRET_ACCESS_KEY", "SK"),
    ];

    #[test]
    fn the_data_folder_and_s3_settings_are_the_servers() {
        let command = backup(
            &["--to", "/srv/backups/today"],
            &[("WREN_DATA_DIR", "/srv/wren"), ("WREN_LOG_FORMAT", "json")],
        )
        .unwrap();
        assert_eq!(command.data_dir, PathBuf::from("/srv/wren"));
        assert_eq!(command.location, Location::Dir("/srv/backups/today".into()));
        assert!(command.s3.is_none());
        assert_eq!(command.log_format, LogFormat::Json);
        let flagged = backup(&["--to=b", "--data-dir", "/d"], &[("WREN_DATA_DIR", "/e")]).unwrap();
        assert_eq!(flagged.data_dir, PathBuf::from("/d"));

        let to_s3 = backup(
            &["--to", "s3://wren-backups/daily", "--s3-region", "eu-1"],
            &S3_ENV,
        )
        .unwrap();
        let s3 = to_s3.s3.unwrap();
        assert_eq!(
            (s3.endpoint.as_str(), s3.region.as_str()),
            ("http://127.0.0.1:3900", "eu-1")
        );
        let command = restore(
            &["--from", "s3://wren-backups/daily", "--data-dir", "new"],
            &S3_ENV,
        )
        .unwrap();
        assert_eq!(command.data_dir, PathBuf::from("new"));
        assert_eq!(
            command.location,
            Location::S3 {
                bucket: "wren-backups".into(),
                prefix: "daily".into()
            }
        );
    }

    #[test]
    fn each_refusal_names_what_was_wrong() {
        assert_eq!(
            refusal(backup(&[], &[])),
            "error: --to: is required: a folder, or s3://BUCKET/PREFIX with the server's S3 \
             settings"
        );
        assert_eq!(
            refusal(restore(&["--to", "x"], &[])),
            "error: unknown flag '--to' for restore"
        );
        assert_eq!(
            refusal(backup(&["--to", "x", "--port", "1"], &[])),
            "error: unknown flag '--port' for backup"
        );
        assert_eq!(
            refusal(backup(&["--to", "x", "extra"], &[])),
            "error: unexpected argument 'extra'"
        );
        assert_eq!(
            refusal(backup(&["--to", "a", "--to", "b"], &[])),
            "error: --to: given more than once"
        );
        assert!(refusal(backup(&["--to", "s3://wren-backups"], &[])).contains("needs a prefix"));
        assert!(
            refusal(backup(&["--to", "s3://wren-backups/x"], &[]))
                .contains("needs the server's S3 settings")
        );
        assert!(
            refusal(backup(&["--to", "s3://wren-backups/x"], &S3_ENV[..1]))
                .contains("S3_ACCESS_KEY_ID")
        );
        // Among the accounts' files of the server's bucket: refused.
        let shared = [&S3_ENV[..], &[("S3_BUCKET", "files")]].concat();
        assert!(
            refusal(backup(&["--to", "s3://files/backups"], &shared))
                .contains("among the accounts' files")
        );
        backup(
            &["--to", "s3://files/backups", "--s3-prefix", "wren/"],
            &shared,
        )
        .unwrap();
        assert!(
            refusal(backup(&["--to", "x"], &[("WREN_LOG_LEVEL", "loud")]))
                .starts_with("error: --log-level (from WREN_LOG_LEVEL): ")
        );
    }

    #[test]
    fn help_says_how_within_80_columns() {
        for (args, needle) in [
            (&["--help"][..], "backup --to LOCATION"),
            (&["help"], "backup --to"),
        ] {
            let exit = backup(args, &[]).unwrap_err();
            assert_eq!(exit.code, 0);
            assert!(exit.output.contains(needle), "{}", exit.output);
            assert!(
                exit.output.lines().all(|line| line.len() <= 80),
                "{}",
                exit.output
            );
        }
        let exit = restore(&["--from", "x", "--help"], &[]).unwrap_err();
        assert!(exit.output.contains("restore --from"), "{}", exit.output);
        assert!(
            exit.output.lines().all(|line| line.len() <= 80),
            "{}",
            exit.output
        );
    }
}

//! `wren keys`: the command line of the API key commands, beside the
//! server's. Each command has flags of its own; `--data-dir` is resolved as
//! the server resolves it (the flag, then `WREN_DATA_DIR`, then `./data`),
//! from the same entry of the settings table.

use std::path::PathBuf;

use super::args::{Args, asks_for_help, server_setting};
use super::parse::{CommandLine, Input};
use super::{EarlyExit, bad_value, values};
use crate::auth::keys::{self, Scope};

/// A `wren keys` command and the data folder it works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysCommand {
    pub data_dir: PathBuf,
    /// The server's PostgreSQL database, when it keeps its store there
    /// (`--database-url`, as the server resolves it).
    pub database_url: Option<super::Database>,
    pub action: KeysAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysAction {
    /// Make a key, store its hash and print it.
    Create {
        name: String,
        scopes: Vec<Scope>,
        /// The account a `files` key acts for; given exactly when the
        /// scopes hold `files`.
        account: Option<String>,
    },
    /// Print every key's details, never a key.
    List,
    /// Delete the named key.
    Revoke { name: String },
}

/// The flags each command takes (every one with a value).
fn flags_of(command: &str) -> Option<&'static [&'static str]> {
    match command {
        "create" => Some(&[
            "--name",
            "--scope",
            "--account",
            "--data-dir",
            "--database-url",
        ]),
        "list" | "revoke" => Some(&["--data-dir", "--database-url"]),
        _ => None,
    }
}

impl KeysCommand {
    /// Reads the words after `keys`. `--help` (or `help`) prints the
    /// commands (exit 0); anything wrong is a one-line error (exit 2).
    pub(super) fn parse(
        program: &str,
        args: &[&str],
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<KeysCommand, EarlyExit> {
        if asks_for_help(args) {
            return Err(EarlyExit::print(help(program)));
        }
        let Some((&command, rest)) = args.split_first() else {
            return Err(EarlyExit::usage(
                "keys needs a command: create, list or revoke",
            ));
        };
        let Some(known) = flags_of(command) else {
            return Err(EarlyExit::usage(&format!(
                "unknown keys command '{}'; the commands are create, list and revoke",
                crate::text::excerpt(command, 64)
            )));
        };
        let args = Args::read(&format!("keys {command}"), rest, known)?;
        let data_dir = data_dir(args.one("--data-dir")?, lookup)?;
        let setting = server_setting("--database-url");
        let database_url = Input::new(
            CommandLine::giving(setting, args.one("--database-url")?),
            lookup,
        )
        .value(setting, values::database_url, Some(|| None))?;
        let action = match command {
            "create" => {
                args.no_words()?;
                create(&args)?
            }
            "list" => {
                args.no_words()?;
                KeysAction::List
            }
            _ => KeysAction::Revoke {
                name: args.only_word("keys revoke needs the NAME of the key to revoke")?,
            },
        };
        Ok(KeysCommand {
            data_dir,
            database_url,
            action,
        })
    }
}

/// `keys create`'s flags, checked against the key rules.
fn create(args: &Args<'_>) -> Result<KeysAction, EarlyExit> {
    let name = args
        .one("--name")?
        .ok_or_else(|| bad_value("--name", "is required: the key's name"))?;
    keys::check_name(name).map_err(|rule| bad_value("--name", &format!("a key name {rule}")))?;
    let scopes = keys::parse_scopes(
        args.all("--scope")
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|scope| !scope.is_empty()),
    )
    .map_err(|problem| bad_value("--scope", &problem))?;
    let account = args.one("--account")?;
    match (scopes.contains(&Scope::Files), account) {
        (true, None) => {
            return Err(bad_value(
                "--account",
                "a key with the files scope acts for one account: name it with --account NAME",
            ));
        }
        (false, Some(_)) => {
            return Err(bad_value(
                "--account",
                "only a key with the files scope acts for an account",
            ));
        }
        (_, Some(account)) => crate::auth::check_username(account)
            .map_err(|rule| bad_value("--account", &format!("an account name {rule}")))?,
        (false, None) => {}
    }
    Ok(KeysAction::Create {
        name: name.to_owned(),
        scopes,
        account: account.map(str::to_owned),
    })
}

/// The data folder, from the flag's value, else as the server finds it.
fn data_dir(
    given: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, EarlyExit> {
    let setting = server_setting("--data-dir");
    Input::new(CommandLine::giving(setting, given), lookup).value(setting, values::path, None)
}

/// `wren keys --help`.
fn help(program: &str) -> String {
    let data_dir = server_setting("--data-dir");
    format!(
        "wren keys: API keys for services, kept in the data folder's database.

Usage: {program} keys create --name NAME --scope SCOPE[,SCOPE] [--account NAME]
       {program} keys list
       {program} keys revoke NAME

Each also takes --data-dir PATH (env: {env}; default: {default}), as the
server does, and --database-url URL (env: DATABASE_URL) when the server
keeps its store in PostgreSQL.

  create
      Makes a key and prints it, and nothing else, on one line. It is shown
      this once: only its SHA-256 is kept.
      --name NAME     1 to 64 letters, digits, '.', '_' and '-'; unique
      --scope SCOPE   events, alerts, predict or files; comma-separated or
                      repeated
      --account NAME  the account a files key acts for (needed with files)
  list
      Prints each key's name, scopes, account, creation and last use (to the
      minute); never a key.
  revoke NAME
      Deletes the key: it stops working at once, on a running server too.
",
        env = data_dir.env.join(", then "),
        default = data_dir.default,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<KeysCommand, EarlyExit> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        KeysCommand::parse("wren", args, &lookup)
    }

    fn refusal(args: &[&str]) -> String {
        let exit = parse(args, &[]).unwrap_err();
        assert_eq!(exit.code, 2, "{args:?}: {}", exit.output);
        exit.output
    }

    #[test]
    fn create_takes_a_name_scopes_and_an_account_for_files() {
        let command = parse(
            &[
                "create",
                "--name",
                "sync",
                "--scope",
                "files,events",
                "--account=ann",
                "--data-dir",
                "/srv/wren",
            ],
            &[("WREN_DATA_DIR", "/elsewhere")],
        )
        .unwrap();
        assert_eq!(
            command,
            KeysCommand {
                data_dir: "/srv/wren".into(),
                database_url: None,
                action: KeysAction::Create {
                    name: "sync".into(),
                    scopes: vec![Scope::Events, Scope::Files],
                    account: Some("ann".into()),
                },
            }
        );
        let repeated = parse(
            &[
                "create", "--name", "ci", "--scope", "alerts", "--scope", "events",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            repeated.action,
            KeysAction::Create {
                name: "ci".into(),
                scopes: vec![Scope::Events, Scope::Alerts],
                account: None,
            }
        );
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn the_database_is_found_as_the_server_finds_it() {
        assert_eq!(parse(&["list"], &[]).unwrap().database_url, None);
        let url = "postgres://wren@db/wren";
        let parsed = crate::postgres::Config::parse(url).unwrap();
        let from_env = parse(&["list"], &[("DATABASE_URL", url)]).unwrap();
        assert_eq!(from_env.database_url.as_ref(), Some(&parsed));
        let flag = parse(&["revoke", "old", "--database-url", url], &[]).unwrap();
        assert_eq!(flag.database_url.as_ref(), Some(&parsed));
        // A bad URL is refused with the command line, as the server's is.
        let bad = refusal(&["list", "--database-url", "mysql://a@b/c"]);
        assert!(bad.contains("--database-url"), "{bad}");
    }

    #[test]
    fn the_data_folder_is_found_as_the_server_finds_it() {
        assert_eq!(
            parse(&["list"], &[]).unwrap().data_dir,
            PathBuf::from("./data")
        );
        let from_env = parse(&["list"], &[("WREN_DATA_DIR", "/var/lib/wren")]).unwrap();
        assert_eq!(from_env.data_dir, PathBuf::from("/var/lib/wren"));
        let exit = parse(&["list"], &[("WREN_DATA_DIR", "")]).unwrap();
        assert_eq!(exit.data_dir, PathBuf::from("./data"), "empty is unset");
        assert_eq!(
            refusal(&["list", "--data-dir", ""]),
            "error: --data-dir: expected a path, got nothing"
        );
    }

    #[test]
    fn revoke_takes_one_name() {
        assert_eq!(
            parse(&["revoke", "ci"], &[]).unwrap().action,
            KeysAction::Revoke { name: "ci".into() }
        );
        assert_eq!(
            refusal(&["revoke"]),
            "error: keys revoke needs the NAME of the key to revoke"
        );
        assert_eq!(
            refusal(&["revoke", "a", "b"]),
            "error: unexpected argument 'b'"
        );
    }

    #[test]
    fn each_refusal_names_what_was_wrong() {
        for (args, expected) in [
            (
                &[][..],
                "error: keys needs a command: create, list or revoke",
            ),
            (
                &["make"],
                "error: unknown keys command 'make'; the commands are create, list and revoke",
            ),
            (
                &["list", "--name", "x"],
                "error: unknown flag '--name' for keys list",
            ),
            (&["list", "extra"], "error: unexpected argument 'extra'"),
            (
                &["create", "--scope", "events"],
                "error: --name: is required",
            ),
            (
                &["create", "--name", "a b", "--scope", "events"],
                "error: --name: a key name may hold only",
            ),
            (
                &["create", "--name", "ci", "--scope", "events,root"],
                "error: --scope: unknown scope 'root'; the scopes are events,alerts,predict,files",
            ),
            (
                &["create", "--name", "ci"],
                "error: --scope: a key needs at least one scope",
            ),
            (
                &["create", "--name", "ci", "--scope", "files"],
                "error: --account: a key with the files scope acts for one account",
            ),
            (
                &[
                    "create",
                    "--name",
                    "ci",
                    "--scope",
                    "events",
                    "--account",
                    "ann",
                ],
                "error: --account: only a key with the files scope acts for an account",
            ),
            (
                &["create", "--name", "a", "--name", "b", "--scope", "events"],
                "error: --name: given more than once",
            ),
            (&["create", "--name"], "error: --name: no value given"),
        ] {
            let message = refusal(args);
            assert!(message.starts_with(expected), "{args:?}: {message}");
            assert_eq!(message.lines().count(), 1, "{message}");
        }
    }

    #[test]
    fn help_lists_the_commands_within_80_columns() {
        for args in [&["--help"][..], &["help"], &["create", "--help"]] {
            let exit = parse(args, &[]).unwrap_err();
            assert_eq!(exit.code, 0);
            assert!(exit.output.contains("keys revoke NAME"), "{}", exit.output);
            assert!(exit.output.contains("WREN_DATA_DIR"), "{}", exit.output);
            assert!(
                exit.output.lines().all(|line| line.len() <= 80),
                "{}",
                exit.output
            );
        }
    }
}

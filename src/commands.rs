//! The commands beside the server: `wren keys create|list|revoke`, run on
//! the server's store (the data folder's, or its PostgreSQL database's with
//! `--database-url`; a running server sees their effect at its
//! next request, since it keeps no copy of the keys), and `wren backup` and
//! `wren restore` ([`crate::backup`]), which show their progress on a
//! terminal in place, or else in the log.

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::auth::keys::{self, MAX_KEYS_PER_ACCOUNT};
use crate::backup::progress::{Amount, Bytes, Phase, Report};
use crate::backup::{self, BackupError};
use crate::config::backup::BackupCommand;
use crate::config::keys::{KeysAction, KeysCommand};
use crate::http::log::{LogFormat, LogLevel, Logger};
use crate::store::sqlite::{DATABASE_FILE, SqliteStore};
use crate::store::{ApiKey, KeyCreated, Store};

/// Runs a `wren keys` command: what it prints on stdout, or the error line
/// (without its `error: `) that ends it with exit code 2.
pub fn keys(command: &KeysCommand) -> Result<String, String> {
    let store = keys_store(command)?;
    match &command.action {
        KeysAction::Create {
            name,
            scopes,
            account,
        } => {
            let secret = keys::generate()?;
            let key = ApiKey {
                name: name.clone(),
                scopes: scopes.clone(),
                account: account.clone(),
                created_at: crate::date::unix_seconds_now(),
                last_used: None,
            };
            let account = account.as_deref().unwrap_or_default();
            match stored(store.create_key(&key, &keys::hash(&secret), MAX_KEYS_PER_ACCOUNT))? {
                KeyCreated::Created => Ok(secret),
                KeyCreated::NameTaken => {
                    Err(format!("--name: a key named '{name}' already exists"))
                }
                KeyCreated::AccountFull => Err(format!(
                    "--account: the account '{account}' already has {MAX_KEYS_PER_ACCOUNT} keys; \
                     revoke one first"
                )),
                KeyCreated::NoSuchAccount => {
                    Err(format!("--account: there is no account named '{account}'"))
                }
            }
        }
        KeysAction::List => Ok(table(&stored(store.keys(None))?)),
        KeysAction::Revoke { name } => {
            if stored(store.delete_key(name, None))? {
                Ok(format!("revoked the key '{name}'"))
            } else {
                Err(format!(
                    "there is no key named '{}'",
                    crate::text::excerpt(name, 64)
                ))
            }
        }
    }
}

/// The store the keys are in: the server's PostgreSQL database when it has
/// one, else the data folder's SQLite database, which must exist.
fn keys_store(command: &KeysCommand) -> Result<Box<dyn Store>, String> {
    if let Some(database) = &command.database_url {
        #[cfg(feature = "postgres")]
        {
            let store = crate::store::postgres::PgStore::open(database, 1)
                .map_err(|err| format!("--database-url: {err}"))?;
            return Ok(Box::new(store));
        }
        #[cfg(not(feature = "postgres"))]
        match *database {}
    }
    if !command.data_dir.is_dir() {
        return Err(format!(
            "--data-dir: there is no folder at {}",
            command.data_dir.display()
        ));
    }
    // A folder without the server's database is the wrong folder: making
    // an empty database there would only hide the mistake.
    let database = command.data_dir.join(DATABASE_FILE);
    if !database.is_file() {
        return Err(format!(
            "--data-dir: {} holds no wren database ({DATABASE_FILE}); start the server there first",
            command.data_dir.display()
        ));
    }
    let store = SqliteStore::open(&command.data_dir).map_err(|err| err.to_string())?;
    Ok(Box::new(store))
}

/// Runs `wren backup`: the summary for stdout, or why not.
pub fn backup(command: &BackupCommand) -> Result<String, BackupError> {
    let progress = Progress::new("backup", command.log_format, command.log_level);
    let outcome = backup::backup(
        &command.data_dir,
        &command.location,
        "--to",
        command.s3.as_ref(),
        &|report| progress.show(report),
    );
    progress.end();
    outcome
}

/// Runs `wren restore`: the summary for stdout, or why not.
pub fn restore(command: &BackupCommand) -> Result<String, BackupError> {
    let progress = Progress::new("restore", command.log_format, command.log_level);
    let outcome = backup::restore(
        &command.location,
        &command.data_dir,
        command.s3.as_ref(),
        &|report| progress.show(report),
    );
    progress.end();
    outcome
}

/// How often the line on a terminal is redrawn at most.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// Where a backup's or a restore's progress shows: a line on a terminal,
/// redrawn in place with the bytes and files done of the phase's total; or,
/// when stderr is not a terminal, one log line per phase.
enum Progress {
    Terminal {
        phase: Cell<Option<(Phase, Amount)>>,
        drawn: Cell<Option<Instant>>,
    },
    Log {
        task: &'static str,
        logger: Logger,
    },
}

impl Progress {
    fn new(task: &'static str, format: LogFormat, level: LogLevel) -> Progress {
        if std::io::stderr().is_terminal() {
            Progress::Terminal {
                phase: Cell::new(None),
                drawn: Cell::new(None),
            }
        } else {
            Progress::Log {
                task,
                logger: Logger::new(format, level),
            }
        }
    }

    /// Ends a progress line a failure left open, so that the error is a
    /// line of its own.
    fn end(&self) {
        if let Progress::Terminal { phase, .. } = self
            && phase.take().is_some()
        {
            eprintln!();
        }
    }

    fn show(&self, report: Report<'_>) {
        let (phase, drawn) = match self {
            Progress::Log { task, logger } => {
                if let Some(line) = report.log_line(task) {
                    logger.info(&line);
                }
                return;
            }
            Progress::Terminal { phase, drawn } => (phase, drawn),
        };
        match report {
            Report::Phase { phase: next, total } => {
                if phase.get().is_some() {
                    eprintln!();
                }
                phase.set(Some((next, total)));
                draw(next, Amount::default(), total);
                drawn.set(Some(Instant::now()));
            }
            Report::Progress(done) => {
                let Some((current, total)) = phase.get() else {
                    return;
                };
                let due = drawn.get().is_none_or(|at| at.elapsed() >= REDRAW_EVERY);
                if due || done == total {
                    draw(current, done, total);
                    drawn.set(Some(Instant::now()));
                }
            }
            Report::Finished(_) => {
                if let Some((current, total)) = phase.take() {
                    draw(current, total, total);
                    eprintln!();
                }
            }
        }
    }
}

/// The progress line, over whatever the line held.
fn draw(phase: Phase, done: Amount, total: Amount) {
    let mut stderr = std::io::stderr().lock();
    let _ = write!(
        stderr,
        "\r\x1b[2K{}: {} of {}, {} of {} files",
        phase.describe(),
        Bytes(done.bytes),
        Bytes(total.bytes),
        done.files,
        total.files
    );
    let _ = stderr.flush();
}

fn stored<T>(result: crate::store::StoreResult<T>) -> Result<T, String> {
    result.map_err(|err| err.to_string())
}

/// The keys as aligned columns under a heading; never a key itself.
fn table(keys: &[ApiKey]) -> String {
    let mut rows = vec![[
        "NAME".to_owned(),
        "SCOPES".to_owned(),
        "ACCOUNT".to_owned(),
        "CREATED".to_owned(),
        "LAST USED".to_owned(),
    ]];
    let time = crate::date::rfc3339_seconds;
    rows.extend(keys.iter().map(|key| {
        [
            key.name.clone(),
            keys::scope_list(&key.scopes),
            key.account.clone().unwrap_or_else(|| "-".to_owned()),
            time(key.created_at),
            key.last_used.map_or_else(|| "never".to_owned(), time),
        ]
    }));
    let widths: Vec<usize> = (0..5)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scope;

    #[test]
    fn the_table_aligns_columns_and_says_never_for_unused_keys() {
        let keys = [
            ApiKey {
                name: "billing-sync".into(),
                scopes: vec![Scope::Events, Scope::Files],
                account: Some("ann".into()),
                created_at: 0,
                last_used: Some(60),
            },
            ApiKey {
                name: "ci".into(),
                scopes: vec![Scope::Alerts],
                account: None,
                created_at: 0,
                last_used: None,
            },
        ];
        assert_eq!(
            table(&keys),
            "NAME          SCOPES        ACCOUNT  CREATED                   LAST USED\n\
             billing-sync  events,files  ann      1970-01-01T00:00:00.000Z  1970-01-01T00:01:00.000Z\n\
             ci            alerts        -        1970-01-01T00:00:00.000Z  never\n"
        );
    }
}

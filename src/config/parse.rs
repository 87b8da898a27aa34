//! Reading the command line against the settings table, and resolving each
//! setting from its flag, else the first of its environment variables that
//! is set, else its default.

use std::collections::HashMap;

use super::help::Action;
use super::settings::{Form, SETTINGS, Setting};
use super::{EarlyExit, bad_value};

/// The command line, read but not yet parsed into values.
pub struct CommandLine<'a> {
    /// The first argument when it is a word rather than a flag: a command.
    pub command: Option<&'a str>,
    /// The raw values given for each flag, by flag (none for a switch).
    given: HashMap<&'static str, Vec<&'a str>>,
}

impl<'a> CommandLine<'a> {
    /// Reads `args` (the program name left out). `--help` and `--version`
    /// end the reading with their output (exit 0); an unknown flag, a
    /// missing value or a one-value flag given twice, with an error (exit 2).
    pub fn read(program: &str, args: &[&'a str]) -> Result<CommandLine<'a>, EarlyExit> {
        let mut line = CommandLine {
            command: None,
            given: HashMap::new(),
        };
        let mut args = args.iter().copied().peekable();
        if let Some(word) = args.next_if(|arg| !arg.starts_with('-')) {
            if word == "help" {
                return Err(EarlyExit::print(Action::Help.output(program)));
            }
            // Commands have flags of their own: the server's reading stops
            // here, and the command is answered by name.
            line.command = Some(word);
            return Ok(line);
        }
        while let Some(arg) = args.next() {
            if let Some(action) = Action::ALL.into_iter().find(|a| a.flag() == arg) {
                return Err(EarlyExit::print(action.output(program)));
            }
            if !arg.starts_with("--") {
                return Err(EarlyExit::usage(&format!("unexpected argument '{arg}'")));
            }
            let (flag, inline_value) = match arg.split_once('=') {
                Some((flag, value)) => (flag, Some(value)),
                None => (arg, None),
            };
            let Some(setting) = SETTINGS.iter().find(|s| s.flag() == Some(flag)) else {
                return Err(EarlyExit::usage(&format!("unknown flag '{flag}'")));
            };
            let values = line.given.entry(setting.name()).or_default();
            match setting.form {
                Form::Switch if inline_value.is_some() => {
                    return Err(bad_value(flag, "is a switch and takes no value"));
                }
                Form::Switch => {}
                Form::Value if !values.is_empty() => {
                    return Err(bad_value(flag, "given more than once"));
                }
                Form::Value | Form::List => {
                    let Some(value) = inline_value.or_else(|| args.next()) else {
                        return Err(bad_value(flag, "no value given"));
                    };
                    values.push(value);
                }
            }
        }
        Ok(line)
    }

    /// A command line that gives `value` to `setting` and nothing else: for
    /// a command that reads one of the server's settings beside flags of its
    /// own, so that it resolves it as the server would.
    pub fn giving(setting: &Setting, value: Option<&'a str>) -> CommandLine<'a> {
        match value {
            Some(value) => CommandLine::giving_each(&[(setting, value)]),
            None => CommandLine::giving_each(&[]),
        }
    }

    /// A command line that gives each of these settings its value and
    /// nothing else, as [`CommandLine::giving`] does one.
    pub fn giving_each(values: &[(&Setting, &'a str)]) -> CommandLine<'a> {
        CommandLine {
            command: None,
            given: values
                .iter()
                .map(|(setting, value)| (setting.name(), vec![*value]))
                .collect(),
        }
    }
}

/// Where settings come from: the command line, then the environment.
pub struct Input<'a> {
    command_line: CommandLine<'a>,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Input<'a> {
    pub fn new(
        command_line: CommandLine<'a>,
        lookup: &'a dyn Fn(&str) -> Option<String>,
    ) -> Input<'a> {
        Input {
            command_line,
            lookup,
        }
    }

    /// A [`Form::Value`] setting. `computed` is the default when it is not
    /// the setting's shown default parsed.
    pub fn value<T>(
        &self,
        setting: &Setting,
        parse: fn(&str) -> Result<T, String>,
        computed: Option<fn() -> T>,
    ) -> Result<T, EarlyExit> {
        if let Some(raw) = self.given(setting).first() {
            return parse(raw).map_err(|problem| bad_value(setting.name(), &problem));
        }
        if let Some((var, raw)) = self.environment(setting) {
            return parse(&raw).map_err(|problem| bad_env_value(setting, var, &problem));
        }
        Ok(computed.map_or_else(|| parse_default(setting, parse, setting.default), |f| f()))
    }

    /// A [`Form::Switch`] setting: on when its flag is given, else as its
    /// environment or default says.
    pub fn switch(
        &self,
        setting: &Setting,
        parse: fn(&str) -> Result<bool, String>,
        computed: Option<fn() -> bool>,
    ) -> Result<bool, EarlyExit> {
        if self.command_line.given.contains_key(setting.name()) {
            return Ok(true);
        }
        self.value(setting, parse, computed)
    }

    /// A [`Form::List`] setting: every value of its repeated flag, or else the
    /// comma-separated items of its environment variable.
    pub fn list<T>(
        &self,
        setting: &Setting,
        parse: fn(&str) -> Result<T, String>,
        computed: Option<fn() -> Vec<T>>,
    ) -> Result<Vec<T>, EarlyExit> {
        let given = self.given(setting);
        if !given.is_empty() {
            return given
                .iter()
                .map(|raw| parse(raw).map_err(|problem| bad_value(setting.name(), &problem)))
                .collect();
        }
        if let Some((var, raw)) = self.environment(setting) {
            return items(&raw)
                .map(|item| parse(item).map_err(|problem| bad_env_value(setting, var, &problem)))
                .collect();
        }
        Ok(computed.map_or_else(
            || {
                items(setting.default)
                    .map(|item| parse_default(setting, parse, item))
                    .collect()
            },
            |f| f(),
        ))
    }

    /// The settings given on the command line or in the environment, as
    /// the start-up log shows them (`--port 8080`, `--data-dir /srv (from
    /// WREN_DATA_DIR)`), in the table's order. A secret one shows only that
    /// it was given: one set only in the environment (server secrets,
    /// tokens), or one whose value carries a password (`--user`).
    pub fn given_settings(&self) -> Vec<String> {
        SETTINGS
            .iter()
            .filter_map(|setting| {
                let secret = setting.usage.is_none_or(|usage| usage.contains("PASSWORD"));
                // A switch given on the command line has an entry with no values.
                let (value, from) = if self.command_line.given.contains_key(setting.name()) {
                    (self.given(setting).join(","), None)
                } else {
                    let (var, raw) = self.environment(setting)?;
                    (raw, Some(var))
                };
                let mut shown = setting.name().to_owned();
                if secret {
                    shown.push_str(" (hidden)");
                } else if !value.is_empty() {
                    shown.push(' ');
                    shown.push_str(&value);
                }
                if let Some(var) = from.filter(|var| *var != setting.name()) {
                    shown.push_str(&format!(" (from {var})"));
                }
                Some(shown)
            })
            .collect()
    }

    fn given(&self, setting: &Setting) -> &[&'a str] {
        self.command_line
            .given
            .get(setting.name())
            .map_or(&[], Vec::as_slice)
    }

    /// The first of the setting's variables that is set and not empty, with
    /// its value.
    fn environment(&self, setting: &Setting) -> Option<(&'static str, String)> {
        setting.env.iter().find_map(|&var| {
            (self.lookup)(var)
                .filter(|raw| !raw.is_empty())
                .map(|raw| (var, raw))
        })
    }
}

/// The items of a comma-separated list, trimmed, empty ones skipped.
fn items(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// A default from the table. It must parse: the `defaults` test resolves
/// every setting with nothing given, so a bad one never ships.
fn parse_default<T>(setting: &Setting, parse: fn(&str) -> Result<T, String>, shown: &str) -> T {
    parse(shown).unwrap_or_else(|problem| {
        panic!(
            "the default of {} does not parse: {problem}",
            setting.name()
        )
    })
}

/// An environment variable's bad value, named by the flag it stands for and
/// the variable that held it.
fn bad_env_value(setting: &Setting, var: &str, problem: &str) -> EarlyExit {
    match setting.flag() {
        Some(flag) => bad_value(&format!("{flag} (from {var})"), problem),
        None => bad_value(var, problem),
    }
}

//! The words after a command beside the server (`wren keys create …`,
//! `wren backup …`): its own flags, each with a value (`--flag VALUE` or
//! `--flag=VALUE`), and plain words.

use super::settings::{SETTINGS, Setting};
use super::{EarlyExit, bad_value};

/// Whether a command's words ask for its help: `--help` anywhere, or
/// `help` first.
pub(super) fn asks_for_help(args: &[&str]) -> bool {
    args.contains(&"--help") || args.first() == Some(&"help")
}

/// The server's setting with `flag`, which a command reads beside its own
/// flags, resolving it as the server does.
pub(super) fn server_setting(flag: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|setting| setting.flag() == Some(flag))
        .expect("the commands name only flags of the settings table")
}

/// A command's flags and other words, as given.
pub(super) struct Args<'a> {
    flags: Vec<(&'a str, &'a str)>,
    words: Vec<&'a str>,
}

impl<'a> Args<'a> {
    /// Reads `args`, refusing a flag not in `known` (naming `command`, as
    /// in "unknown flag '--x' for keys list") and a flag without a value.
    pub(super) fn read(
        command: &str,
        args: &[&'a str],
        known: &[&str],
    ) -> Result<Args<'a>, EarlyExit> {
        let mut read = Args {
            flags: Vec::new(),
            words: Vec::new(),
        };
        let mut args = args.iter().copied();
        while let Some(arg) = args.next() {
            if !arg.starts_with('-') {
                read.words.push(arg);
                continue;
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag, Some(value)),
                None => (arg, None),
            };
            if !known.contains(&flag) {
                return Err(EarlyExit::usage(&format!(
                    "unknown flag '{}' for {command}",
                    crate::text::excerpt(flag, 64)
                )));
            }
            let Some(value) = inline.or_else(|| args.next()) else {
                return Err(bad_value(flag, "no value given"));
            };
            read.flags.push((flag, value));
        }
        Ok(read)
    }

    /// The value of a flag given at most once.
    pub(super) fn one(&self, flag: &str) -> Result<Option<&'a str>, EarlyExit> {
        let mut values = self.all(flag);
        let first = values.next();
        if values.next().is_some() {
            return Err(bad_value(flag, "given more than once"));
        }
        Ok(first)
    }

    pub(super) fn all<'s>(&'s self, flag: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.flags
            .iter()
            .filter(move |(name, _)| *name == flag)
            .map(|(_, value)| *value)
    }

    pub(super) fn no_words(&self) -> Result<(), EarlyExit> {
        match self.words.first() {
            None => Ok(()),
            Some(word) => Err(unexpected(word)),
        }
    }

    /// The one word a command takes, or `missing` as the error.
    pub(super) fn only_word(&self, missing: &str) -> Result<String, EarlyExit> {
        match self.words.as_slice() {
            [word] => Ok((*word).to_owned()),
            [] => Err(EarlyExit::usage(missing)),
            [_, extra, ..] => Err(unexpected(extra)),
        }
    }
}

fn unexpected(word: &str) -> EarlyExit {
    EarlyExit::usage(&format!(
        "unexpected argument '{}'",
        crate::text::excerpt(word, 64)
    ))
}

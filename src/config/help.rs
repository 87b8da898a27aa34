//! `--help`, written from the settings table, and the other flag that only
//! prints: `--version`.

use super::settings::{Form, SETTINGS, Setting};

/// Flags that are not settings: each prints something and ends the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Help,
    Version,
}

impl Action {
    pub const ALL: [Action; 2] = [Action::Help, Action::Version];

    pub fn flag(self) -> &'static str {
        match self {
            Action::Help => "--help",
            Action::Version => "--version",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Action::Help => "print this help",
            Action::Version => "print the version",
        }
    }

    /// What the action prints; `program` is how wren was called.
    pub fn output(self, program: &str) -> String {
        match self {
            Action::Help => text(program),
            Action::Version => format!("wren {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Lines are wrapped to fit this many columns.
const WIDTH: usize = 80;

/// Descriptions sit under their flag, this far in.
const INDENT: &str = "      ";

fn text(program: &str) -> String {
    let mut out = String::new();
    paragraph(
        &mut out,
        "",
        "wren: one small static binary serving the HTTP APIs small teams keep rebuilding in \
         Flask.",
    );
    out.push_str(&format!(
        "\nUsage: {program} [OPTIONS]\n       {program} keys create|list|revoke ...\n       \
         {program} backup|restore ...\n\n"
    ));
    paragraph(
        &mut out,
        "",
        "Every option can also be set by the environment variables shown with it (the first \
         one set counts); the option wins. Durations are seconds, fractions allowed. In the \
         environment a switch takes 1, true, yes or on.",
    );
    out.push_str("\nOptions:\n");
    for setting in SETTINGS {
        if let Some(usage) = setting.usage {
            entry(&mut out, usage, setting);
        }
    }
    out.push_str("\nEnvironment only (command lines are visible to every user of the host):\n");
    for setting in SETTINGS.iter().filter(|s| s.usage.is_none()) {
        entry(&mut out, &setting.env.join(", "), setting);
    }
    out.push_str("\nCommands:\n  keys\n");
    paragraph(
        &mut out,
        INDENT,
        "create, list and revoke API keys for services in the data folder; \
         `wren keys --help` says how",
    );
    out.push_str("  backup\n");
    paragraph(
        &mut out,
        INDENT,
        "copy the data folder at one moment, while the server runs, to a folder or to S3; \
         `wren backup --help` says how",
    );
    out.push_str("  restore\n");
    paragraph(
        &mut out,
        INDENT,
        "lay a backup out as a new data folder, checked against its manifest; \
         `wren restore --help` says how",
    );
    out.push('\n');
    for action in Action::ALL {
        out.push_str(&format!("  {}\n", action.flag()));
        paragraph(&mut out, INDENT, action.help());
    }
    out
}

/// A setting: its heading, its help, then where else it comes from and
/// its default.
fn entry(out: &mut String, heading: &str, setting: &Setting) {
    out.push_str(&format!("  {heading}\n"));
    paragraph(out, INDENT, setting.help);
    let mut sources = Vec::new();
    if setting.usage.is_some() {
        let vars = setting.env.join(", then ");
        sources.push(match setting.form {
            Form::Switch => format!("env: {vars}=1"),
            Form::Value | Form::List => format!("env: {vars}"),
        });
    }
    if !setting.default.is_empty() {
        sources.push(format!("default: {}", setting.default));
    }
    if !sources.is_empty() {
        paragraph(out, INDENT, &format!("[{}]", sources.join("; ")));
    }
}

/// `text` wrapped at word boundaries to [`WIDTH`], each line starting with
/// `indent`.
fn paragraph(out: &mut String, indent: &str, text: &str) {
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line.truncate(indent.len());
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

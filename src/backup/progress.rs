//! What a backup or a restore tells as it goes: the phase it is in, with
//! the work ahead of it, and how much is done. Whoever runs it decides how
//! to show that: a line updated in place on a terminal, one log line per
//! phase otherwise (`commands.rs`, and the server's log for the schedule).

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest, Sha256};

/// Bytes and files, done or to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amount {
    pub bytes: u64,
    pub files: u64,
}

/// The phases of a backup and of a restore, in their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Copying each database at one moment, and holding the files the
    /// file index names at that moment.
    Snapshot,
    /// Writing the backup into its folder.
    Copy,
    /// Writing the backup to S3.
    Upload,
    /// Reading a backup back, checking each file against the manifest
    /// while laying it out.
    Verify,
}

impl Phase {
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Snapshot => "snapshot databases",
            Phase::Copy => "copy files",
            Phase::Upload => "upload files",
            Phase::Verify => "verify and lay out files",
        }
    }
}

/// One thing a backup or a restore reports.
#[derive(Debug, Clone, Copy)]
pub enum Report<'a> {
    /// A phase begins, with the work it has ahead.
    Phase { phase: Phase, total: Amount },
    /// How much of the current phase is done.
    Progress(Amount),
    /// Finished: what was done, in one line.
    Finished(&'a str),
}

impl Report<'_> {
    /// The log line this report makes for `task` (`backup`, `restore`), if
    /// any: one a phase, and the summary; progress within a phase is for
    /// terminals only.
    pub fn log_line(&self, task: &str) -> Option<String> {
        match self {
            Report::Phase { phase, total } => Some(format!(
                "{task}: {}: {} in {} {}",
                phase.describe(),
                Bytes(total.bytes),
                total.files,
                plural(total.files, "file", "files"),
            )),
            Report::Progress(_) => None,
            Report::Finished(summary) => Some(format!("{task}: done: {summary}")),
        }
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `12.0 MiB`.
#[derive(Debug, Clone, Copy)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}

pub fn plural(count: u64, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 { one } else { many }
}

/// A reader that hashes (SHA-256) and counts what passes through it, ends
/// after `limit` bytes, and tells `seen` of each read's size. The one
/// reader type the copies go through: each type read as `dyn Read` brings
/// its own copy of the trait's provided methods.
pub(super) struct Tally<'a> {
    inner: &'a mut dyn Read,
    limit: u64,
    hasher: Sha256,
    bytes: u64,
    seen: &'a mut dyn FnMut(u64),
}

impl<'a> Tally<'a> {
    pub(super) fn new(
        inner: &'a mut dyn Read,
        limit: u64,
        seen: &'a mut dyn FnMut(u64),
    ) -> Tally<'a> {
        Tally {
            inner,
            limit,
            hasher: Sha256::new(),
            bytes: 0,
            seen,
        }
    }

    /// The bytes read and their SHA-256, in lower-case hex.
    pub(super) fn finish(self) -> (u64, String) {
        (self.bytes, crate::hex::encode(&self.hasher.finalize()))
    }
}

impl Read for Tally<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.limit - self.bytes).unwrap_or(usize::MAX);
        let wanted = buf.len().min(left);
        let n = self.inner.read(&mut buf[..wanted])?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        (self.seen)(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(Bytes(0).to_string(), "0 B");
        assert_eq!(Bytes(1023).to_string(), "1023 B");
        assert_eq!(Bytes(1536).to_string(), "1.5 KiB");
        assert_eq!(Bytes(12 * 1024 * 1024).to_string(), "12.0 MiB");
        assert_eq!(Bytes(3 << 40).to_string(), "3.0 TiB");
    }

    #[test]
    fn a_tally_hashes_counts_and_tells_each_read_up_to_its_limit() {
        let mut told = 0;
        let mut seen = |n: u64| told += n;
        let mut input = &b"abcdef"[..];
        let mut tally = Tally::new(&mut input, 3, &mut seen);
        let mut out = Vec::new();
        tally.read_to_end(&mut out).unwrap();
        let (bytes, sha256) = tally.finish();
        // Up to the limit, no further.
        assert_eq!((bytes, out.as_slice()), (3, &b"abc"[..]));
        assert_eq!(
            sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(told, 3);
    }

    #[test]
    fn phases_and_the_summary_make_log_lines_and_progress_does_not() {
        let phase = Report::Phase {
            phase: Phase::Copy,
            total: Amount {
                bytes: 2048,
                files: 1,
            },
        };
        assert_eq!(
            phase.log_line("backup").unwrap(),
            "backup: copy files: 2.0 KiB in 1 file"
        );
        assert!(
            Report::Progress(Amount::default())
                .log_line("backup")
                .is_none()
        );
        assert_eq!(
            Report::Finished("all of it").log_line("restore").unwrap(),
            "restore: done: all of it"
        );
    }
}

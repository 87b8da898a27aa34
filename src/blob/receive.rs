//! Streaming an upload into a new file: its bytes written and synced, its
//! size and SHA-256 (the local backend's ETag) taken on the way.
//!
//! Two choices make a large upload cost little more than the disk's own
//! speed (measured with `make bench`'s 200 MiB upload: from 0.36 of
//! `dd conv=fsync`'s throughput to about 0.75, see the commit that brought
//! them in):
//! - The bytes move in large buffers, each filled before it is hashed and
//!   written: a 64 KiB buffer, hashed and written after every read, took
//!   half again as much CPU for the same bytes.
//! - Every [`WRITEBACK_EVERY`] bytes the kernel is asked to start writing
//!   back what is already in, so the fsync at the end finds little left
//!   to do instead of the whole file.
//!
//! Large buffers are bounded: at most [`LARGE_BUFFERS`] exist at once, and
//! an upload that finds none free streams through a small one, as fast as
//! a machine that busy allows anyway.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use super::local::local_error;
use super::{BlobError, fill};

/// An upload's buffer while no large one is free.
const SMALL_BUFFER: usize = 64 << 10;
/// An upload's buffer when one is free.
const LARGE_BUFFER: usize = 1 << 20;
/// The most large buffers in use at once: 8 MiB in all.
const LARGE_BUFFERS: usize = 8;
/// Bytes written between two requests to start writeback.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Large buffers in use.
static LARGE_IN_USE: AtomicUsize = AtomicUsize::new(0);

/// Streams `body` into `file` (new and empty, at `path`, named in errors)
/// and syncs it: the size and the first 128 bits of the SHA-256, in hex.
pub(super) fn receive(
    mut file: File,
    path: &Path,
    body: &mut dyn Read,
) -> Result<(u64, String), BlobError> {
    let mut buffer = Buffer::take();
    let mut hasher = Sha256::new();
    let (mut written, mut writeback_from) = (0u64, 0u64);
    loop {
        let n = fill(body, &mut buffer.bytes).map_err(BlobError::Body)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer.bytes[..n]);
        file.write_all(&buffer.bytes[..n])
            .map_err(|err| local_error("cannot write", path, err))?;
        written += n as u64;
        if written - writeback_from >= WRITEBACK_EVERY {
            start_writeback(&file, writeback_from, written);
            writeback_from = written;
        }
    }
    file.sync_all()
        .map_err(|err| local_error("cannot sync", path, err))?;
    Ok((written, crate::hex::encode(&hasher.finalize()[..16])))
}

/// An upload's buffer: large when one of the [`LARGE_BUFFERS`] is free.
struct Buffer {
    bytes: Vec<u8>,
}

impl Buffer {
    fn take() -> Buffer {
        let large = LARGE_IN_USE
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |in_use| {
                (in_use < LARGE_BUFFERS).then_some(in_use + 1)
            })
            .is_ok();
        let size = if large { LARGE_BUFFER } else { SMALL_BUFFER };
        Buffer {
            bytes: vec![0; size],
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if self.bytes.len() == LARGE_BUFFER {
            LARGE_IN_USE.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Asks the kernel to start writing bytes `from..to` of `file` to disk
/// without waiting for it. Only a head start for the fsync that follows,
/// which is what makes the file durable: a file system that does not
/// support it (an error) loses nothing.
fn start_writeback(file: &File, from: u64, to: u64) {
    let (Ok(offset), Ok(length)) = (i64::try_from(from), i64::try_from(to - from)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its arguments; the descriptor is
    // open for as long as `file` is borrowed.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset,
            length,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    /// A body that comes in pieces of a few odd sizes.
    struct Dribble<'a> {
        bytes: &'a [u8],
        turn: usize,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            const SIZES: [usize; 4] = [1, 7000, 65_536, 300_001];
            let n = SIZES[self.turn % SIZES.len()]
                .min(buffer.len())
                .min(self.bytes.len());
            self.turn += 1;
            buffer[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    /// A body that fails after `good` bytes.
    struct Failing {
        good: usize,
    }

    impl Read for Failing {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            if self.good == 0 {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer gone"));
            }
            let n = self.good.min(buffer.len());
            buffer[..n].fill(7);
            self.good -= n;
            Ok(n)
        }
    }

    fn temp_file(name: &str) -> (File, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("wren-receive-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        (File::create(&path).unwrap(), path)
    }

    #[test]
    fn bodies_of_every_size_around_the_buffers_and_writeback_are_stored_and_hashed_whole() {
        let most = WRITEBACK_EVERY as usize + LARGE_BUFFER + 5;
        let bytes: Vec<u8> = (0..most).map(|i| (i * 31 % 251) as u8).collect();
        let sizes = [
            0,
            1,
            SMALL_BUFFER - 1,
            SMALL_BUFFER,
            SMALL_BUFFER + 1,
            LARGE_BUFFER,
            LARGE_BUFFER + 1,
            WRITEBACK_EVERY as usize,
            most,
        ];
        for size in sizes {
            let (file, path) = temp_file("sizes");
            let body = &bytes[..size];
            let mut dribble = Dribble {
                bytes: body,
                turn: 0,
            };
            let (written, etag) = receive(file, &path, &mut dribble).unwrap();
            assert_eq!(written, size as u64, "size {size}");
            assert_eq!(
                etag,
                crate::hex::encode(&Sha256::digest(body)[..16]),
                "size {size}"
            );
            assert_eq!(std::fs::read(&path).unwrap(), body, "size {size}");
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn a_body_that_fails_midway_fails_the_write() {
        for good in [10, LARGE_BUFFER + LARGE_BUFFER / 2] {
            let (file, path) = temp_file("fails");
            let failed = receive(file, &path, &mut Failing { good });
            assert!(matches!(failed, Err(BlobError::Body(_))), "after {good}");
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn large_buffers_are_bounded_and_given_back() {
        // Other tests may hold some meanwhile: at most all are taken here.
        let held: Vec<Buffer> = (0..LARGE_BUFFERS + 1).map(|_| Buffer::take()).collect();
        assert!(held.iter().any(|buffer| buffer.bytes.len() == SMALL_BUFFER));
        assert!(LARGE_IN_USE.load(Ordering::SeqCst) <= LARGE_BUFFERS);
        drop(held);
        assert_eq!(Buffer::take().bytes.len(), LARGE_BUFFER);
    }
}

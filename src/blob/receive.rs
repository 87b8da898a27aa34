//! Streaming an upload into a new file: its bytes written and synced, its
//! size and BLAKE3 (whose first 128 bits are the local backend's ETag)
//! taken on the way.
//!
//! Three choices make a large upload cost little more than the disk's own
//! speed (measured with `make bench`'s 200 MiB upload; see the commits that
//! brought them in):
//! - The bytes move in large buffers, each filled before it is hashed and
//!   written: a 64 KiB buffer, hashed and written after every read, took
//!   half again as much CPU for the same bytes.
//! - Every [`WRITEBACK_EVERY`] bytes the kernel is asked to start writing
//!   back what is already in, so the fsync at the end finds little left
//!   to do instead of the whole file.
//! - The hash is BLAKE3, not SHA-256: 8.3 GB/s on one core of the bench
//!   machine against SHA-256's 1.9 (with the CPU's SHA instructions; a
//!   fraction of that without), so it is taken in line, and a 200 MiB
//!   upload cost wren 0.09 s of CPU instead of 0.22 (SHA-256 had a thread
//!   of its own, and still set the pace). An ETag is only ever compared
//!   for equality, so files stored before keep theirs.
//!
//! Large buffers are bounded: at most [`LARGE_BUFFERS`] exist at once. An
//! upload that finds none free streams through a small one.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

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
/// and syncs it: the size and the first 128 bits of the BLAKE3, in hex.
pub(super) fn receive(
    file: File,
    path: &Path,
    body: &mut dyn Read,
) -> Result<(u64, String), BlobError> {
    let mut sink = Sink::new(file, path);
    let mut buffer = Buffer::take();
    let mut hasher = blake3::Hasher::new();
    loop {
        let n = fill(body, &mut buffer.bytes).map_err(BlobError::Body)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer.bytes[..n]);
        sink.write(&buffer.bytes[..n])?;
    }
    sink.sync()?;
    let digest = hasher.finalize();
    Ok((sink.written, crate::hex::encode(&digest.as_bytes()[..16])))
}

/// The file an upload is written to, with its writeback kept going.
struct Sink<'p> {
    file: File,
    path: &'p Path,
    written: u64,
    writeback_from: u64,
}

impl<'p> Sink<'p> {
    fn new(file: File, path: &'p Path) -> Self {
        Sink {
            file,
            path,
            written: 0,
            writeback_from: 0,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.file
            .write_all(bytes)
            .map_err(|err| local_error("cannot write", self.path, err))?;
        self.written += bytes.len() as u64;
        if self.written - self.writeback_from >= WRITEBACK_EVERY {
            start_writeback(&self.file, self.writeback_from, self.written);
            self.writeback_from = self.written;
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), BlobError> {
        self.file
            .sync_all()
            .map_err(|err| local_error("cannot sync", self.path, err))
    }
}

/// An upload's buffer: large when one of the [`LARGE_BUFFERS`] is free.
struct Buffer {
    bytes: Vec<u8>,
}

impl Buffer {
    /// A large buffer when one is free, else a small one.
    fn take() -> Buffer {
        Buffer::take_large().unwrap_or_else(|| Buffer {
            bytes: vec![0; SMALL_BUFFER],
        })
    }

    /// A large buffer, when one is free.
    fn take_large() -> Option<Buffer> {
        LARGE_IN_USE
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |in_use| {
                (in_use < LARGE_BUFFERS).then_some(in_use + 1)
            })
            .ok()?;
        Some(Buffer {
            bytes: vec![0; LARGE_BUFFER],
        })
    }

    fn is_large(&self) -> bool {
        self.bytes.len() == LARGE_BUFFER
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if self.is_large() {
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

    /// The ETag of `bytes`, from the reference implementation's one-shot
    /// hash.
    fn etag_of(bytes: &[u8]) -> String {
        crate::hex::encode(&blake3::hash(bytes).as_bytes()[..16])
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
            assert_eq!(etag, etag_of(body), "size {size}");
            assert_eq!(std::fs::read(&path).unwrap(), body, "size {size}");
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn a_body_of_several_buffers_is_stored_and_hashed_whole_when_no_large_one_is_free() {
        let held: Vec<Buffer> = (0..LARGE_BUFFERS)
            .filter_map(|_| Buffer::take_large())
            .collect();
        let bytes: Vec<u8> = (0..3 * LARGE_BUFFER + 17)
            .map(|i| (i % 253) as u8)
            .collect();
        let (file, path) = temp_file("small");
        let mut dribble = Dribble {
            bytes: &bytes,
            turn: 0,
        };
        let (written, etag) = receive(file, &path, &mut dribble).unwrap();
        drop(held);
        assert_eq!(written, bytes.len() as u64);
        assert_eq!(etag, etag_of(&bytes));
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_body_that_fails_midway_fails_the_write() {
        for good in [10, LARGE_BUFFER + LARGE_BUFFER / 2, 5 * LARGE_BUFFER + 3] {
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

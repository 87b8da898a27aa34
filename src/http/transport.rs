//! What the connection layer reads from and writes to: a non-blocking byte
//! stream with a descriptor to wait on. A plain TCP socket is one; a TLS
//! session over a socket is another (a byte transformer between the socket
//! and the connection machine), so nothing above this module knows which.
//!
//! Waiting is explicit: reads and writes never block on their own, and
//! [`read_by`] / [`write_by`] wait with `poll(2)` until a deadline the
//! connection layer sets (`--io-timeout` per wait, sooner when a body or an
//! answer falls behind `--min-rate`, at once when the monitor answers an
//! expired connection).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

/// A non-blocking byte stream.
pub trait Transport: Send {
    /// Reads what has arrived; `WouldBlock` when nothing has, `Ok(0)` when
    /// the peer closed its side.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes what fits now; `WouldBlock` when nothing does.
    fn write(&mut self, data: &[u8]) -> io::Result<usize>;
    /// Sends what the transport holds back from earlier writes (a TLS
    /// record the socket had no room for); `WouldBlock` while it can't.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Whether input has arrived that a read would return but the
    /// descriptor no longer shows (plaintext TLS decrypted ahead).
    fn holds_input(&self) -> bool {
        false
    }
    /// Ends the sending side (what was written still goes out).
    fn shutdown_write(&mut self);
    /// The descriptor that becomes readable or writable.
    fn fd(&self) -> RawFd;
    /// The TLS version spoken, for the access log; `None` for plain TCP.
    fn tls_version(&self) -> Option<&'static str> {
        None
    }
}

impl Transport for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(self, buf)
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        Write::write(self, data)
    }

    fn shutdown_write(&mut self) {
        // The peer may be gone already; there is nothing left to tell it.
        let _ = self.shutdown(Shutdown::Write);
    }

    fn fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

/// Reads into `buf`, waiting until `deadline` at the latest for something
/// to arrive (`TimedOut` then).
pub fn read_by(
    transport: &mut impl Transport,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<usize> {
    loop {
        match transport.read(buf) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                wait(transport.fd(), libc::POLLIN, deadline)?
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

/// Writes what fits of `data`, waiting until `deadline()` at the latest
/// for room (`TimedOut` then). The deadline is asked for only when there is
/// no room, since most answers go out without a wait. Returns how many bytes
/// went out, at least one.
pub fn write_by(
    transport: &mut impl Transport,
    data: &[u8],
    deadline: impl Fn() -> Instant,
) -> io::Result<usize> {
    let mut due = None;
    loop {
        match transport.write(data) {
            Ok(0) if !data.is_empty() => return Err(io::ErrorKind::WriteZero.into()),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                let due = *due.get_or_insert_with(&deadline);
                wait(transport.fd(), libc::POLLOUT, due)?
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

/// Sends what the transport holds back, waiting until `deadline()` at
/// the latest for room (`TimedOut` then).
pub fn flush_by(transport: &mut impl Transport, deadline: impl Fn() -> Instant) -> io::Result<()> {
    let mut due = None;
    loop {
        match transport.flush() {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                let due = *due.get_or_insert_with(&deadline);
                wait(transport.fd(), libc::POLLOUT, due)?
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

/// Waits until `fd` is ready for `events` or `deadline` passes
/// (`TimedOut`).
fn wait(fd: RawFd, events: libc::c_short, deadline: Instant) -> io::Result<()> {
    let mut pollfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd that outlives the call.
        match unsafe { libc::poll(&mut pollfd, 1, ms) } {
            0 => return Err(io::ErrorKind::TimedOut.into()),
            n if n > 0 => return Ok(()),
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

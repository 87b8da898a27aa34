//! What the connection layer reads from and writes to: a non-blocking byte
//! stream with a descriptor to wait on. A plain TCP socket is one; a TLS
//! session over a socket is another (a byte transformer between the socket
//! and the connection machine), so nothing above this module knows which.
//!
//! Waiting is explicit: reads and writes never block on their own, and
//! [`read_within`] / [`write_all_within`] wait with `poll(2)` for at most a
//! given time per call (`--io-timeout` inside a request, nothing at all
//! when the monitor answers an expired connection).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// A non-blocking byte stream.
pub trait Transport: Send {
    /// Reads what has arrived; `WouldBlock` when nothing has, `Ok(0)` when
    /// the peer closed its side.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes what fits now; `WouldBlock` when nothing does.
    fn write(&mut self, data: &[u8]) -> io::Result<usize>;
    /// Ends the sending side (what was written still goes out).
    fn shutdown_write(&mut self);
    /// The descriptor that becomes readable or writable.
    fn fd(&self) -> RawFd;
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

/// Reads into `buf`, waiting up to `timeout` for something to arrive.
pub fn read_within(
    transport: &mut impl Transport,
    buf: &mut [u8],
    timeout: Duration,
) -> io::Result<usize> {
    let deadline = Instant::now() + timeout;
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

/// Writes all of `data`, each wait for room taking up to `timeout`. On
/// failure, the error comes with how many bytes did go out.
pub fn write_all_within(
    transport: &mut impl Transport,
    data: &[u8],
    timeout: Duration,
) -> Result<(), (usize, io::Error)> {
    let mut written = 0;
    while written < data.len() {
        match transport.write(&data[written..]) {
            Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                let deadline = Instant::now() + timeout;
                wait(transport.fd(), libc::POLLOUT, deadline).map_err(|err| (written, err))?
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err((written, err)),
        }
    }
    Ok(())
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

//! What the engine counts about itself, for whoever reports on it (the
//! application's `/metrics`): connections open, requests in flight,
//! connections refused at each cap, TLS handshakes done and failed.
//!
//! Plain atomics, so the hot path takes no lock for them: the server hands
//! out one [`Stats`] per server ([`super::Server::stats`]) and bumps it from
//! the accept loop, the registry, the workers and the TLS streams.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The cap a refused connection hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// `--max-connections`: open connections in all.
    Total,
    /// `--max-connections-per-ip`: open connections from one address.
    PerAddress,
}

impl Cap {
    /// Every cap, in the order reports list them.
    pub const ALL: [Cap; 2] = [Cap::Total, Cap::PerAddress];

    /// The cap as a report names it: the setting that sets it.
    pub fn name(self) -> &'static str {
        match self {
            Cap::Total => "max_connections",
            Cap::PerAddress => "max_connections_per_ip",
        }
    }
}

/// The engine's counters and gauges. Relaxed ordering throughout: each
/// figure is read on its own, never used to order other memory.
#[derive(Debug, Default)]
pub struct Stats {
    open_connections: AtomicUsize,
    in_flight: AtomicUsize,
    refused_total: AtomicU64,
    refused_per_address: AtomicU64,
    tls_handshakes: AtomicU64,
    tls_handshake_failures: AtomicU64,
}

impl Stats {
    /// Connections registered now, parked or busy.
    pub fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// Requests being served now: from the service's call to the end of
    /// the answer's bytes.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Connections refused at `cap` since start.
    pub fn refused(&self, cap: Cap) -> u64 {
        match cap {
            Cap::Total => &self.refused_total,
            Cap::PerAddress => &self.refused_per_address,
        }
        .load(Ordering::Relaxed)
    }

    /// TLS handshakes completed since start.
    pub fn tls_handshakes(&self) -> u64 {
        self.tls_handshakes.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed (not TLS, no common version or cipher,
    /// no certificate yet) since start.
    pub fn tls_handshake_failures(&self) -> u64 {
        self.tls_handshake_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn connection_opened(&self) {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn request_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn refused_at(&self, cap: Cap) {
        match cap {
            Cap::Total => &self.refused_total,
            Cap::PerAddress => &self.refused_per_address,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handshake_done(&self) {
        self.tls_handshakes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handshake_failed(&self) {
        self.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
    }
}

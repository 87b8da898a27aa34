//! The open connections and the caps on them: how many at once in all
//! (`--max-connections`) and from one client address
//! (`--max-connections-per-ip`, after nginx's `limit_conn`), so that one
//! client holding connections open cannot take every slot from the others.
//!
//! A connection is registered when it is accepted and stays until it
//! closes, *parked* (waiting for input in the epoll set, no thread),
//! *busy* (a worker, or the monitor, is serving it) or *awaiting* (its
//! handler answers later; no thread). Whoever turns an entry busy owns the
//! connection until it parks it again, hands it to its later answer, or
//! removes it.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use super::stats::{Cap, Stats};

/// Who a connection counts against: its IPv4 address or IPv6 /64, as
/// [`crate::peer::client_address`] gives it.
pub(crate) type Address = IpAddr;

/// A connection's place in the registry.
pub(crate) enum State<C> {
    Parked(Box<C>),
    /// Being served since the given instant. `woke`: its readiness event
    /// came while it was still busy (re-armed, not yet marked parked), and
    /// was spent on finding it busy.
    Busy {
        since: Instant,
        woke: bool,
    },
    /// Waiting for its handler's later answer, held by that answer (and
    /// then by the worker writing it). `woke` as for `Busy`.
    Awaiting {
        woke: bool,
    },
}

struct Slot<C> {
    address: Address,
    /// The connection's descriptor, for shutdown to cut a busy one.
    fd: RawFd,
    state: State<C>,
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Full,
    AddressFull,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Full => "too many open connections",
            Refusal::AddressFull => "too many open connections from your address",
        }
    }

    /// The cap the connection hit, as the engine's stats count it.
    pub fn cap(&self) -> Cap {
        match self {
            Refusal::Full => Cap::Total,
            Refusal::AddressFull => Cap::PerAddress,
        }
    }
}

/// The registry of open connections (`C` is the connection type).
pub(crate) struct Registry<C> {
    slots: HashMap<u64, Slot<C>>,
    per_address: HashMap<Address, usize>,
    max_connections: usize,
    /// `0`: no per-address cap.
    max_per_address: usize,
    /// Where the count of open connections is published.
    stats: Arc<Stats>,
}

impl<C> Registry<C> {
    pub fn new(max_connections: usize, max_per_address: usize, stats: Arc<Stats>) -> Self {
        Registry {
            slots: HashMap::new(),
            per_address: HashMap::new(),
            max_connections,
            max_per_address,
            stats,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether a connection from `address` fits under both caps.
    pub fn check(&self, address: Address) -> Result<(), Refusal> {
        if self.slots.len() >= self.max_connections {
            return Err(Refusal::Full);
        }
        let held = self.per_address.get(&address).copied().unwrap_or(0);
        if self.max_per_address > 0 && held >= self.max_per_address {
            return Err(Refusal::AddressFull);
        }
        Ok(())
    }

    /// Registers a new connection, parked. The caller has checked it fits.
    pub fn admit(&mut self, id: u64, address: Address, fd: RawFd, conn: Box<C>) {
        *self.per_address.entry(address).or_insert(0) += 1;
        self.stats.connection_opened();
        let state = State::Parked(conn);
        self.slots.insert(id, Slot { address, fd, state });
    }

    /// Parks a busy connection again, whose readiness event its owner has
    /// re-armed; `true` when that event already came (see [`Registry::take`])
    /// and nobody will be told of it again: the caller must see it served.
    pub fn park(&mut self, id: u64, conn: Box<C>) -> bool {
        let Some(slot) = self.slots.get_mut(&id) else {
            return false;
        };
        let woke = matches!(
            slot.state,
            State::Busy { woke: true, .. } | State::Awaiting { woke: true }
        );
        slot.state = State::Parked(conn);
        woke
    }

    /// Takes a parked connection to serve it; `None` when it is not parked
    /// (gone, being served, or awaiting an answer). A busy or awaiting one
    /// is marked woken: its owner re-arms its event before parking it, so
    /// the event may come first.
    pub fn take(&mut self, id: u64, now: Instant) -> Option<Box<C>> {
        let slot = self.slots.get_mut(&id)?;
        let busy = State::Busy {
            since: now,
            woke: false,
        };
        match std::mem::replace(&mut slot.state, busy) {
            State::Parked(conn) => Some(conn),
            State::Busy { since, .. } => {
                slot.state = State::Busy { since, woke: true };
                None
            }
            State::Awaiting { .. } => {
                slot.state = State::Awaiting { woke: true };
                None
            }
        }
    }

    /// Marks a busy connection as awaiting its handler's later answer. It
    /// stays so while that answer is written (and any request pipelined
    /// behind it served), until it is parked again or removed: marking it
    /// busy again would cost every later answer a lock, and the monitor
    /// then misses only a stall behind a pipelined request.
    pub fn set_awaiting(&mut self, id: u64) {
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.state = State::Awaiting { woke: false };
        }
    }

    /// Forgets a connection that closed.
    pub fn remove(&mut self, id: u64) {
        if let Some(slot) = self.slots.remove(&id) {
            self.release(slot.address);
        }
    }

    /// Closes (drops) every parked connection `keep` does not want.
    pub fn retain_parked(&mut self, mut keep: impl FnMut(&C) -> bool) {
        let mut released = Vec::new();
        self.slots.retain(|_, slot| match &slot.state {
            State::Parked(conn) if !keep(conn) => {
                released.push(slot.address);
                false
            }
            _ => true,
        });
        for address in released {
            self.release(address);
        }
    }

    fn release(&mut self, address: Address) {
        self.stats.connection_closed();
        if let MapEntry::Occupied(mut held) = self.per_address.entry(address) {
            *held.get_mut() -= 1;
            if *held.get() == 0 {
                held.remove();
            }
        }
    }

    pub fn states(&self) -> impl Iterator<Item = (u64, &State<C>)> {
        self.slots.iter().map(|(id, slot)| (*id, &slot.state))
    }

    /// The descriptors of the connections inside a request (being served
    /// or awaiting an answer).
    pub fn busy_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.slots
            .values()
            .filter(|slot| !matches!(slot.state, State::Parked(_)))
            .map(|slot| slot.fd)
    }

    /// How many connections `address` holds (for tests).
    #[cfg(test)]
    fn held_by(&self, address: Address) -> usize {
        self.per_address.get(&address).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::client_address;

    fn ip(text: &str) -> Address {
        client_address(text.parse().unwrap())
    }

    #[test]
    fn caps_in_all_and_per_address() {
        let mut registry: Registry<()> = Registry::new(4, 2, Arc::default());
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for id in 0..2 {
            assert_eq!(registry.check(a), Ok(()));
            registry.admit(id, a, 3, Box::new(()));
        }
        assert_eq!(registry.check(a), Err(Refusal::AddressFull));
        registry.admit(2, b, 3, Box::new(()));
        registry.admit(3, b, 3, Box::new(()));
        assert_eq!(registry.check(ip("10.0.0.3")), Err(Refusal::Full));
        registry.remove(0);
        assert_eq!(registry.check(a), Ok(()));
        assert_eq!(registry.held_by(a), 1);
    }

    #[test]
    fn counts_follow_connections_through_every_exit() {
        let stats = Arc::new(Stats::default());
        let mut registry: Registry<u8> = Registry::new(100, 0, Arc::clone(&stats));
        let a = ip("10.0.0.1");
        for id in 0..5 {
            registry.admit(id, a, id as RawFd, Box::new(id as u8));
        }
        // Busy and parked again: still held.
        let conn = registry.take(1, Instant::now()).unwrap();
        assert!(registry.take(1, Instant::now()).is_none());
        assert_eq!(registry.busy_fds().collect::<Vec<_>>(), [1]);
        // Awaiting an answer: still inside a request, not for the taking;
        // its answer's writer re-arms it before parking it.
        registry.set_awaiting(1);
        assert_eq!(registry.busy_fds().collect::<Vec<_>>(), [1]);
        assert!(registry.take(1, Instant::now()).is_none());
        assert!(registry.park(1, conn), "woken while awaiting");
        assert_eq!(registry.held_by(a), 5);
        // An event for a busy one marks it woken, which its parking says.
        let conn = registry.take(2, Instant::now()).unwrap();
        assert!(registry.take(2, Instant::now()).is_none());
        assert!(registry.park(2, conn), "woken while busy");
        let conn = registry.take(2, Instant::now()).unwrap();
        assert!(!registry.park(2, conn), "once");
        registry.remove(4);
        registry.retain_parked(|conn| *conn % 2 == 0);
        assert_eq!(registry.held_by(a), 2);
        assert_eq!(registry.len(), 2);
        assert_eq!(stats.open_connections(), 2);
        // No per-address cap with 0.
        assert_eq!(registry.check(a), Ok(()));
    }
}

//! The store writer's copy of each active user's last events.
//!
//! Judging an event starts with the user's last few events (as many as the
//! thresholds need). The writer is the only one that stores events, so
//! once it has read or stored a user's last events it knows them until its
//! next insert for that user, which it makes itself: it keeps them here
//! and skips that read (a quarter of the writer's CPU per event under
//! `make bench`). A tail is only ever a copy of committed rows plus the
//! rows of the batch being written; a batch that does not commit takes
//! every tail with it ([`Tails::begin_batch`], [`Tails::committed`]).
//!
//! Bounded by [`MAX_HELD_EVENTS`] events in all: past it, the tails are
//! dropped and refilled from the database as users come back.

use std::collections::{HashMap, VecDeque};

use crate::alerts::{Event, Total};

/// The most events all tails hold together: about 64 bytes each, so at
/// most 4 MiB, whatever the thresholds (a tail holds up to
/// `alerts::MAX_COUNT` + 1 events under the largest ones).
pub const MAX_HELD_EVENTS: usize = 65_536;

#[derive(Default)]
pub struct Tails {
    users: HashMap<i64, Tail>,
    /// Events held in all tails.
    held: usize,
    /// Set while a batch is being written: still set when the next one
    /// begins means the last one never reached its commit (it panicked).
    in_batch: bool,
}

struct Tail {
    /// The user's last events with the running deposit total after each,
    /// oldest first.
    events: VecDeque<(Event, Total)>,
    /// Whether `events` is the user's whole history.
    whole: bool,
    /// How many events to keep: what the last judgement needed.
    keep: usize,
}

/// A user's last events as judging needs them.
pub struct Held {
    /// Oldest first.
    pub events: Vec<Event>,
    /// The running deposit total after each event.
    pub totals: Vec<Total>,
}

impl Tails {
    /// A batch begins. Tails left by a batch that never committed are
    /// dropped: they may hold its events.
    pub fn begin_batch(&mut self) {
        if self.in_batch {
            self.clear();
        }
        self.in_batch = true;
    }

    /// The batch committed (`true`) or failed (`false`, and every tail it
    /// touched may be wrong: all are dropped).
    pub fn end_batch(&mut self, committed: bool) {
        self.in_batch = false;
        if !committed {
            self.clear();
        }
    }

    /// The user's last `n` events, or fewer when that is the whole history;
    /// `None` when the tail does not hold them.
    pub fn last(&self, user_id: i64, n: usize) -> Option<Held> {
        let tail = self.users.get(&user_id)?;
        if tail.events.len() < n && !tail.whole {
            return None;
        }
        let start = tail.events.len().saturating_sub(n);
        let (events, totals) = tail.events.range(start..).copied().unzip();
        Some(Held { events, totals })
    }

    /// Remembers what a read of the user's last `keep` events found:
    /// `held`, the whole history when fewer than `keep`.
    pub fn fill(&mut self, user_id: i64, held: &Held, keep: usize) {
        if let Some(old) = self.users.remove(&user_id) {
            self.held -= old.events.len();
        }
        if self.held + held.events.len() > MAX_HELD_EVENTS {
            self.clear();
        }
        let events: VecDeque<(Event, Total)> = held
            .events
            .iter()
            .copied()
            .zip(held.totals.iter().copied())
            .collect();
        self.held += events.len();
        let whole = events.len() < keep;
        self.users.insert(
            user_id,
            Tail {
                events,
                whole,
                keep,
            },
        );
    }

    /// The user's `event` was stored, with `total` as its running deposit
    /// total.
    pub fn stored(&mut self, user_id: i64, event: Event, total: Total) {
        let Some(tail) = self.users.get_mut(&user_id) else {
            return;
        };
        tail.events.push_back((event, total));
        self.held += 1;
        while tail.events.len() > tail.keep.max(1) {
            tail.events.pop_front();
            tail.whole = false;
            self.held -= 1;
        }
        if self.held > MAX_HELD_EVENTS {
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.users.clear();
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Kind;
    use rust_decimal::Decimal;

    fn event(time: i64) -> Event {
        Event {
            kind: Kind::Deposit,
            amount: Decimal::ONE,
            time,
        }
    }

    fn held(times: &[i64]) -> Held {
        Held {
            events: times.iter().map(|&t| event(t)).collect(),
            totals: times.iter().map(|_| Total::ZERO).collect(),
        }
    }

    fn times(held: Option<Held>) -> Option<Vec<i64>> {
        held.map(|held| held.events.iter().map(|e| e.time).collect())
    }

    #[test]
    fn a_short_history_is_whole_and_answers_any_need() {
        let mut tails = Tails::default();
        assert!(tails.last(1, 3).is_none());
        tails.fill(1, &held(&[1, 2]), 3);
        assert_eq!(times(tails.last(1, 3)), Some(vec![1, 2]));
        assert_eq!(times(tails.last(1, 10)), Some(vec![1, 2]));
        tails.stored(1, event(3), Total::ZERO);
        assert_eq!(times(tails.last(1, 3)), Some(vec![1, 2, 3]));
        // A fourth event pushes the first out: no longer the whole history.
        tails.stored(1, event(4), Total::ZERO);
        assert_eq!(times(tails.last(1, 3)), Some(vec![2, 3, 4]));
        assert_eq!(times(tails.last(1, 2)), Some(vec![3, 4]));
        assert!(tails.last(1, 4).is_none(), "needs a read");
    }

    #[test]
    fn a_full_read_is_not_the_whole_history() {
        let mut tails = Tails::default();
        tails.fill(1, &held(&[5, 6, 7]), 3);
        assert_eq!(times(tails.last(1, 3)), Some(vec![5, 6, 7]));
        assert!(tails.last(1, 4).is_none());
        // Only users already held are followed.
        tails.stored(2, event(1), Total::ZERO);
        assert!(tails.last(2, 1).is_none());
    }

    #[test]
    fn a_batch_that_does_not_commit_drops_every_tail() {
        let mut tails = Tails::default();
        tails.begin_batch();
        tails.fill(1, &held(&[1]), 6);
        tails.end_batch(true);
        assert!(tails.last(1, 6).is_some());
        tails.begin_batch();
        tails.stored(1, event(2), Total::ZERO);
        tails.end_batch(false);
        assert!(tails.last(1, 6).is_none());
        // A batch that never ended (it panicked) is as good as failed.
        tails.fill(1, &held(&[1]), 6);
        tails.begin_batch();
        tails.stored(1, event(2), Total::ZERO);
        tails.begin_batch();
        assert!(tails.last(1, 6).is_none());
    }

    #[test]
    fn held_events_stay_within_the_bound() {
        let mut tails = Tails::default();
        let many: Vec<i64> = (0..1001).collect();
        for user_id in 0..200 {
            tails.fill(user_id, &held(&many), 1001);
            assert!(tails.held <= MAX_HELD_EVENTS);
        }
        let counted: usize = tails.users.values().map(|tail| tail.events.len()).sum();
        assert_eq!(counted, tails.held);
    }
}

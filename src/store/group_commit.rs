//! Group commit: writes that arrive together share one transaction, and so
//! one fsync, each acknowledged only once that transaction has committed.
//!
//! A thread with a write to make queues it ([`GroupCommit::enqueue`], which
//! gives a ticket) and waits for its outcome ([`GroupCommit::wait`]). While
//! no batch is being written, a waiting thread becomes the writer: it takes
//! what is queued, in arrival order and at most [`MAX_BATCH`] of it, writes
//! it with the function every waiter brings, hands each outcome to its
//! ticket and wakes the waiters; one of them writes the next batch, made of
//! whatever queued meanwhile. There is no timer: a write that finds the
//! queue idle is written at once, so a quiet server answers as fast as
//! before, and under load a batch is as large as what piled up during one
//! commit (PostgreSQL's `commit_delay` without the delay).
//!
//! The queue knows nothing of SQL: the write function gets the batch and
//! returns one outcome per write, in the batch's order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::{self, Thread};

/// The most writes one transaction takes: a bound on how long one commit
/// holds SQLite's single writer (and how long the last write of a batch
/// waits for the first ones), far above what piles up during one fsync on
/// the servers wren is made for.
pub const MAX_BATCH: usize = 128;

/// A queued write's place, to wait for its outcome with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// The queue of writes `W` and their outcomes `O`.
pub struct GroupCommit<W, O> {
    state: Mutex<State<W, O>>,
    /// The outcome of a write whose batch's writer panicked.
    lost: fn() -> O,
}

/// A queued write and the thread waiting for it: each waiter is woken
/// alone (`Thread::unpark`) when its outcome is in or the queue wants a
/// writer, never all of them at every commit.
struct Queued<W> {
    ticket: Ticket,
    write: W,
    waiter: Thread,
}

struct State<W, O> {
    queued: VecDeque<Queued<W>>,
    /// Whether a thread is writing a batch.
    writing: bool,
    next: u64,
    /// Outcomes of written batches not yet taken by their waiters.
    outcomes: HashMap<Ticket, O>,
}

impl<W, O> GroupCommit<W, O> {
    /// An idle queue; `lost` is the outcome of writes whose batch's writer
    /// panicked (nothing of that batch is committed: the transaction rolls
    /// back as the panic unwinds through it).
    pub fn new(lost: fn() -> O) -> Self {
        GroupCommit {
            state: Mutex::new(State {
                queued: VecDeque::new(),
                writing: false,
                next: 0,
                outcomes: HashMap::new(),
            }),
            lost,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<W, O>> {
        // Every change to the state is made whole under the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `write` behind those queued before it; the calling thread is
    /// the one to [`GroupCommit::wait`] for it.
    pub fn enqueue(&self, write: W) -> Ticket {
        let mut state = self.lock();
        let ticket = Ticket(state.next);
        state.next += 1;
        state.queued.push_back(Queued {
            ticket,
            write,
            waiter: thread::current(),
        });
        ticket
    }

    /// Waits for `ticket`'s outcome, writing batches with `write` (one
    /// outcome per write, in order) whenever no one else is.
    pub fn wait(&self, ticket: Ticket, mut write: impl FnMut(Vec<W>) -> Vec<O>) -> O {
        let mut state = self.lock();
        loop {
            if let Some(outcome) = state.outcomes.remove(&ticket) {
                return outcome;
            }
            if state.writing || state.queued.is_empty() {
                drop(state);
                // Woken by the writer of this write's batch, or of the one
                // before when this write heads the queue; a wake-up meant
                // for an earlier wait, or a spurious one, only loops.
                thread::park();
                state = self.lock();
                continue;
            }
            state.writing = true;
            let take = state.queued.len().min(MAX_BATCH);
            let mut writer = Writer {
                queue: self,
                tickets: Vec::with_capacity(take),
                waiters: Vec::with_capacity(take),
            };
            let batch: Vec<W> = state
                .queued
                .drain(..take)
                .map(|queued| {
                    writer.tickets.push(queued.ticket);
                    writer.waiters.push(queued.waiter);
                    queued.write
                })
                .collect();
            drop(state);
            let outcomes = write(batch);
            state = writer.finish(outcomes);
        }
    }
}

/// The thread writing a batch. Finishing hands out the outcomes; dropped
/// unfinished (the write panicked), it gives each write the `lost` outcome,
/// so no waiter waits forever and another thread can write.
struct Writer<'q, W, O> {
    queue: &'q GroupCommit<W, O>,
    tickets: Vec<Ticket>,
    waiters: Vec<Thread>,
}

impl<'q, W, O> Writer<'q, W, O> {
    fn finish(&mut self, outcomes: Vec<O>) -> MutexGuard<'q, State<W, O>> {
        assert_eq!(outcomes.len(), self.tickets.len(), "one outcome per write");
        let mut state = self.queue.lock();
        state.outcomes.extend(self.tickets.drain(..).zip(outcomes));
        self.hand_over(&mut state);
        state
    }

    /// Ends the batch: its waiters are woken to take their outcomes, and
    /// the head of the queue to write the next batch.
    fn hand_over(&mut self, state: &mut State<W, O>) {
        state.writing = false;
        for waiter in self.waiters.drain(..) {
            waiter.unpark();
        }
        if let Some(next) = state.queued.front() {
            next.waiter.unpark();
        }
    }
}

impl<W, O> Drop for Writer<'_, W, O> {
    fn drop(&mut self) {
        if self.tickets.is_empty() {
            return;
        }
        let mut state = self.queue.lock();
        let lost = self.queue.lost;
        state
            .outcomes
            .extend(self.tickets.drain(..).map(|ticket| (ticket, lost())));
        self.hand_over(&mut state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};
    use std::thread;

    type Queue = GroupCommit<u32, Result<u32, &'static str>>;

    fn queue() -> Arc<Queue> {
        Arc::new(GroupCommit::new(|| Err("lost")))
    }

    #[test]
    fn a_lone_write_is_written_at_once_by_its_own_thread() {
        let queue = queue();
        let ticket = queue.enqueue(7);
        let mut batches = Vec::new();
        let outcome = queue.wait(ticket, |batch| {
            batches.push(batch.clone());
            batch.into_iter().map(|n| Ok(n * 2)).collect()
        });
        assert_eq!(outcome, Ok(14));
        assert_eq!(batches, [vec![7]]);
    }

    #[test]
    fn writes_queued_together_share_a_batch_in_arrival_order() {
        let queue = queue();
        let tickets: Vec<Ticket> = (0..5).map(|n| queue.enqueue(n)).collect();
        let mut batches = Vec::new();
        let mut write = |batch: Vec<u32>| {
            batches.push(batch.clone());
            batch.into_iter().map(|n| Ok(n + 100)).collect()
        };
        // The last to queue writes them all; the others find theirs done.
        assert_eq!(queue.wait(tickets[4], &mut write), Ok(104));
        for (n, ticket) in tickets.iter().enumerate().take(4) {
            assert_eq!(queue.wait(*ticket, &mut write), Ok(n as u32 + 100));
        }
        assert_eq!(batches, [vec![0, 1, 2, 3, 4]]);
    }

    #[test]
    fn a_batch_is_at_most_max_batch_writes() {
        let queue = queue();
        let tickets: Vec<Ticket> = (0..MAX_BATCH as u32 + 3)
            .map(|n| queue.enqueue(n))
            .collect();
        let mut sizes = Vec::new();
        let last = *tickets.last().unwrap();
        let outcome = queue.wait(last, |batch| {
            sizes.push(batch.len());
            batch.into_iter().map(Ok).collect()
        });
        assert_eq!(outcome, Ok(MAX_BATCH as u32 + 2));
        assert_eq!(sizes, [MAX_BATCH, 3]);
    }

    #[test]
    fn writes_queued_during_a_commit_form_the_next_batch() {
        let queue = queue();
        let in_commit = Arc::new(Barrier::new(2));
        let first = {
            let (queue, in_commit) = (queue.clone(), in_commit.clone());
            thread::spawn(move || {
                let ticket = queue.enqueue(1);
                queue.wait(ticket, |batch| {
                    // Others queue while this batch is being committed.
                    in_commit.wait();
                    in_commit.wait();
                    batch.into_iter().map(Ok).collect()
                })
            })
        };
        in_commit.wait();
        let later: Vec<Ticket> = (2..5).map(|n| queue.enqueue(n)).collect();
        in_commit.wait();
        assert_eq!(first.join().unwrap(), Ok(1));
        let mut batches = Vec::new();
        for (ticket, n) in later.into_iter().zip(2..) {
            let outcome = queue.wait(ticket, |batch| {
                batches.push(batch.clone());
                batch.into_iter().map(Ok).collect()
            });
            assert_eq!(outcome, Ok(n));
        }
        assert_eq!(batches, [vec![2, 3, 4]]);
    }

    #[test]
    fn a_writer_that_panics_loses_its_batch_and_frees_the_queue() {
        let queue = queue();
        let tickets: Vec<Ticket> = (0..3).map(|n| queue.enqueue(n)).collect();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            queue.wait(tickets[0], |_| panic!("a bug"))
        }));
        assert!(panicked.is_err());
        let never = |_: Vec<u32>| -> Vec<Result<u32, &'static str>> { unreachable!() };
        assert_eq!(queue.wait(tickets[1], never), Err("lost"));
        // The queue writes again.
        let ticket = queue.enqueue(9);
        assert_eq!(
            queue.wait(ticket, |b| b.into_iter().map(Ok).collect()),
            Ok(9)
        );
    }

    #[test]
    fn many_threads_each_get_their_own_outcome() {
        let queue = queue();
        let batches = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..16u32)
            .map(|n| {
                let (queue, batches) = (queue.clone(), batches.clone());
                thread::spawn(move || {
                    (0..50u32)
                        .map(|i| {
                            let write = n * 1000 + i;
                            let ticket = queue.enqueue(write);
                            let outcome = queue.wait(ticket, |batch| {
                                batches.lock().unwrap().push(batch.len());
                                thread::yield_now();
                                batch.into_iter().map(|w| Ok(w * 10)).collect()
                            });
                            assert_eq!(outcome, Ok(write * 10));
                        })
                        .count()
                })
            })
            .collect();
        let done: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(done, 800);
        let sizes = batches.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 800);
        assert!(queue.lock().outcomes.is_empty() && queue.lock().queued.is_empty());
    }
}

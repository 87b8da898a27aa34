//! Group commit: writes that arrive together share one transaction, and so
//! one fsync, each acknowledged only once that transaction has committed.
//!
//! A [`GroupCommit`] owns a writer thread and the one connection it writes
//! with. A write is queued with what to do with its outcome
//! ([`GroupCommit::submit`]); the thread that queued it goes on with other
//! work at once. The writer takes what is queued, in arrival order and at
//! most [`MAX_BATCH`] of it, writes it with its batch function, and hands
//! each outcome to its write's `done`; then it takes whatever queued
//! meanwhile. There is no timer: a write that finds the writer idle is
//! written at once, so a quiet server answers as fast as before, and under
//! load a batch is as large as what piled up during one commit
//! (PostgreSQL's `commit_delay` without the delay).
//!
//! Nobody waits on the writer with a thread of their own: a server answers
//! an event from `done`, so a thousand events in flight hold no thousand
//! threads, and a batch costs the writer one wake-up, not one per write.
//!
//! The queue knows nothing of SQL: the batch function gets the batch and
//! returns one outcome per write, in the batch's order.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

/// The most writes one transaction takes: a bound on how long one commit
/// holds SQLite's single writer (and how long the last write of a batch
/// waits for the first ones), far above what piles up during one fsync on
/// the servers wren is made for.
pub const MAX_BATCH: usize = 128;

/// What becomes of a write's outcome: called once, on the writer thread.
type Done<O> = Box<dyn FnOnce(O) + Send>;

/// The writes of one batch, and what becomes of each outcome.
type Batch<W, O> = (Vec<W>, Vec<Done<O>>);

/// The queue of writes `W` and their outcomes `O`, and its writer thread.
pub struct GroupCommit<W, O> {
    shared: Arc<Shared<W, O>>,
    writer: Option<JoinHandle<()>>,
}

struct Shared<W, O> {
    state: Mutex<State<W, O>>,
    /// Signalled when a write is queued for an idle writer, or on close.
    queued: Condvar,
}

struct State<W, O> {
    queue: VecDeque<(W, Done<O>)>,
    /// Whether the writer is asleep waiting for work: only then does a new
    /// write cost a wake-up (a system call).
    idle: bool,
    /// Set when the queue is dropped: the writer drains what is queued and
    /// leaves.
    closed: bool,
}

impl<W: Send + 'static, O: Send + 'static> GroupCommit<W, O> {
    /// Starts the writer thread (named `name`), which writes each batch
    /// with `write_batch` (one outcome per write, in order). A batch whose
    /// `write_batch` panics, or answers another number of outcomes, gets
    /// `lost()` for each of its writes; on a panic nothing of it is
    /// committed, since a transaction rolls back as the panic unwinds
    /// through it.
    pub fn start(
        name: &str,
        mut write_batch: impl FnMut(Vec<W>) -> Vec<O> + Send + 'static,
        lost: fn() -> O,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                idle: false,
                closed: false,
            }),
            queued: Condvar::new(),
        });
        let writer = {
            let shared = Arc::clone(&shared);
            thread::Builder::new().name(name.into()).spawn(move || {
                while let Some((writes, dones)) = shared.next_batch() {
                    let count = writes.len();
                    // A batch function that panicked, or (a bug) answered
                    // the wrong number of writes, loses the batch rather
                    // than the writer: a dead writer would leave every
                    // write queued after it unanswered.
                    let outcomes = panic::catch_unwind(AssertUnwindSafe(|| write_batch(writes)))
                        .ok()
                        .filter(|outcomes| outcomes.len() == count)
                        .unwrap_or_else(|| (0..count).map(|_| lost()).collect());
                    for (done, outcome) in dones.into_iter().zip(outcomes) {
                        // A `done` that panics loses its own outcome, not
                        // the writer: the writes queued behind it still
                        // need one.
                        let _ = panic::catch_unwind(AssertUnwindSafe(|| done(outcome)));
                    }
                }
            })?
        };
        Ok(GroupCommit {
            shared,
            writer: Some(writer),
        })
    }

    /// Queues `write` behind those queued before it; `done` gets its
    /// outcome, on the writer thread, once the batch holding it is written.
    pub fn submit(&self, write: W, done: impl FnOnce(O) + Send + 'static) {
        let mut state = self.shared.lock();
        state.queue.push_back((write, Box::new(done)));
        if state.idle {
            state.idle = false;
            self.shared.queued.notify_one();
        }
    }
}

impl<W, O> Shared<W, O> {
    fn lock(&self) -> MutexGuard<'_, State<W, O>> {
        // Every change to the state is made whole under the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next batch, waiting for one; `None` once closed and drained.
    fn next_batch(&self) -> Option<Batch<W, O>> {
        let mut state = self.lock();
        while state.queue.is_empty() {
            if state.closed {
                return None;
            }
            state.idle = true;
            state = self
                .queued
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.idle = false;
        let take = state.queue.len().min(MAX_BATCH);
        Some(state.queue.drain(..take).unzip())
    }
}

impl<W, O> Drop for GroupCommit<W, O> {
    /// Writes what is queued, then stops the writer.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.queued.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Barrier, mpsc};

    type Outcome = Result<u32, &'static str>;

    /// Queues `write` and waits for its outcome.
    fn write_and_wait(queue: &GroupCommit<u32, Outcome>, write: u32) -> Outcome {
        let (sender, outcome) = mpsc::sync_channel(1);
        queue.submit(write, move |result| sender.send(result).unwrap());
        outcome.recv().unwrap()
    }

    /// The batches a queue wrote, in order.
    type Batches = Arc<Mutex<Vec<Vec<u32>>>>;

    /// A queue whose batches double each write and are recorded.
    fn doubling() -> (GroupCommit<u32, Outcome>, Batches) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&batches);
        let queue = GroupCommit::start(
            "test-writer",
            move |batch: Vec<u32>| {
                seen.lock().unwrap().push(batch.clone());
                batch.into_iter().map(|n| Ok(n * 2)).collect()
            },
            || Err("lost"),
        )
        .unwrap();
        (queue, batches)
    }

    #[test]
    fn a_lone_write_is_written_at_once() {
        let (queue, batches) = doubling();
        assert_eq!(write_and_wait(&queue, 7), Ok(14));
        assert_eq!(*batches.lock().unwrap(), [vec![7]]);
    }

    #[test]
    fn writes_queued_during_a_commit_form_the_next_batch_in_order() {
        let in_commit = Arc::new(Barrier::new(2));
        let batches = Arc::new(Mutex::new(Vec::new()));
        let queue = {
            let (in_commit, batches) = (Arc::clone(&in_commit), Arc::clone(&batches));
            GroupCommit::start(
                "test-writer",
                move |batch: Vec<u32>| {
                    if batch == [1] {
                        // Others queue while this batch is being committed.
                        in_commit.wait();
                        in_commit.wait();
                    }
                    batches.lock().unwrap().push(batch.clone());
                    batch.into_iter().map(Ok).collect::<Vec<Outcome>>()
                },
                || Err("lost"),
            )
            .unwrap()
        };
        let (sender, outcomes) = mpsc::channel();
        let send = |sender: &mpsc::Sender<Outcome>| {
            let sender = sender.clone();
            move |outcome| sender.send(outcome).unwrap()
        };
        queue.submit(1, send(&sender));
        in_commit.wait();
        for n in 2..5 {
            queue.submit(n, send(&sender));
        }
        in_commit.wait();
        let got: Vec<Outcome> = outcomes.iter().take(4).collect();
        assert_eq!(got, [Ok(1), Ok(2), Ok(3), Ok(4)]);
        assert_eq!(*batches.lock().unwrap(), [vec![1], vec![2, 3, 4]]);
    }

    #[test]
    fn a_batch_is_at_most_max_batch_writes() {
        let gate = Arc::new(Barrier::new(2));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let queue = {
            let (gate, sizes) = (Arc::clone(&gate), Arc::clone(&sizes));
            GroupCommit::start(
                "test-writer",
                move |batch: Vec<u32>| {
                    if batch == [u32::MAX] {
                        // Inside the first batch; then held until the
                        // rest are queued.
                        gate.wait();
                        gate.wait();
                    }
                    sizes.lock().unwrap().push(batch.len());
                    batch.into_iter().map(Ok).collect::<Vec<Outcome>>()
                },
                || Err("lost"),
            )
            .unwrap()
        };
        // The writer is held in a first batch while the rest queue.
        queue.submit(u32::MAX, drop);
        gate.wait();
        for n in 0..MAX_BATCH as u32 + 3 {
            queue.submit(n, drop);
        }
        gate.wait();
        drop(queue);
        assert_eq!(*sizes.lock().unwrap(), [1, MAX_BATCH, 3]);
    }

    #[test]
    fn a_batch_that_panics_is_lost_and_the_writer_goes_on() {
        let queue = GroupCommit::start(
            "test-writer",
            |batch: Vec<u32>| {
                assert!(!batch.contains(&13), "a bug");
                batch.into_iter().map(Ok).collect::<Vec<Outcome>>()
            },
            || Err("lost"),
        )
        .unwrap();
        assert_eq!(write_and_wait(&queue, 13), Err("lost"));
        assert_eq!(write_and_wait(&queue, 9), Ok(9));
    }

    #[test]
    fn a_batch_answering_the_wrong_count_is_lost_and_the_writer_goes_on() {
        let queue = GroupCommit::start(
            "test-writer",
            |batch: Vec<u32>| {
                let answered = if batch.contains(&13) { 0 } else { batch.len() };
                batch
                    .into_iter()
                    .take(answered)
                    .map(Ok)
                    .collect::<Vec<Outcome>>()
            },
            || Err("lost"),
        )
        .unwrap();
        assert_eq!(write_and_wait(&queue, 13), Err("lost"));
        assert_eq!(write_and_wait(&queue, 9), Ok(9));
    }

    #[test]
    fn a_done_that_panics_does_not_stop_the_writer() {
        let (queue, _) = doubling();
        queue.submit(1, |_| panic!("a bug in a callback"));
        let (sender, outcome) = mpsc::sync_channel(1);
        queue.submit(2, move |result| sender.send(result).unwrap());
        let outcome = outcome.recv_timeout(std::time::Duration::from_secs(30));
        assert_eq!(outcome, Ok(Ok(4)), "the writer stopped");
    }

    #[test]
    fn dropping_the_queue_writes_what_is_queued() {
        let (queue, batches) = doubling();
        let (sender, outcomes) = mpsc::channel();
        for n in 0..10 {
            let sender = sender.clone();
            queue.submit(n, move |outcome| sender.send(outcome).unwrap());
        }
        drop(queue);
        assert_eq!(outcomes.try_iter().count(), 10);
        let written: usize = batches.lock().unwrap().iter().map(Vec::len).sum();
        assert_eq!(written, 10);
    }

    #[test]
    fn many_threads_each_get_their_own_outcome() {
        let (queue, batches) = doubling();
        let queue = Arc::new(queue);
        let threads: Vec<_> = (0..16u32)
            .map(|n| {
                let queue = Arc::clone(&queue);
                thread::spawn(move || {
                    for i in 0..50u32 {
                        let write = n * 1000 + i;
                        assert_eq!(write_and_wait(&queue, write), Ok(write * 2));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let written: usize = batches.lock().unwrap().iter().map(Vec::len).sum();
        assert_eq!(written, 800);
        assert!(queue.shared.lock().queue.is_empty());
    }
}

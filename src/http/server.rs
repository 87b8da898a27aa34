//! The listener, the accept loop, the bounded thread-per-connection model and
//! graceful shutdown.
//!
//! Each open connection has a thread of its own, so a slow or idle client
//! never delays another; the number of connections (and so of threads) is
//! capped by `max_connections`, and one more is answered `503` and closed.
//! Finished threads wait for the next connection (up to `threads` of them),
//! so a busy server does not pay a thread start per connection.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use super::conn;
use super::limits::{ACCEPT_BACKOFF, Limits};
use super::log::Logger;
use super::request::Request;
use super::response::Response;

/// What the engine serves: a function from a request to its response.
pub trait Service: Send + Sync + 'static {
    fn call(&self, request: &mut Request<'_>) -> Response;
}

impl<F> Service for F
where
    F: Fn(&mut Request<'_>) -> Response + Send + Sync + 'static,
{
    fn call(&self, request: &mut Request<'_>) -> Response {
        self(request)
    }
}

/// Connection threads get a modest stack: handlers keep their data on the
/// heap, and a thousand connections should not reserve gigabytes.
const CONNECTION_STACK: usize = 512 * 1024;

const IDLE: u8 = 0;
const BUSY: u8 = 1;
const CLOSED: u8 = 2;

/// An open connection, shared between its thread and the shutdown logic
/// (which closes it when it is idle between requests).
pub(crate) struct Slot {
    pub stream: TcpStream,
    state: AtomicU8,
}

impl Slot {
    /// Between requests. Returns false when the server is shutting down and
    /// the connection should close instead of waiting for another request.
    pub fn mark_idle(&self, shared: &Shared) -> bool {
        self.state.store(IDLE, Ordering::SeqCst);
        !shared.shutting_down.load(Ordering::SeqCst)
    }

    /// A request has started arriving. Returns false when shutdown closed the
    /// connection first.
    pub fn mark_busy(&self) -> bool {
        self.state
            .compare_exchange(IDLE, BUSY, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// State shared by the accept loop and every connection thread.
pub(crate) struct Shared {
    pub limits: Limits,
    pub logger: Logger,
    pub service: Box<dyn Service>,
    pub shutting_down: AtomicBool,
    connections: Mutex<HashMap<u64, Arc<Slot>>>,
    /// Signalled whenever a connection ends, for shutdown to wait on.
    connection_ended: Condvar,
    /// Threads waiting for a connection to serve.
    idle_threads: AtomicUsize,
}

struct Job {
    id: u64,
    slot: Arc<Slot>,
    peer: SocketAddr,
    accepted: Instant,
}

pub struct Server {
    listener: TcpListener,
    limits: Limits,
    logger: Logger,
}

impl Server {
    pub fn bind(addr: SocketAddr, limits: Limits, logger: Logger) -> io::Result<Server> {
        raise_fd_limit(&logger);
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener,
            limits,
            logger,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully: stops
    /// accepting, closes idle connections and gives in-flight requests up to
    /// the shutdown timeout to finish.
    pub fn run(self, service: impl Service) -> io::Result<()> {
        let (signal_read, signal_write) = UnixStream::pair()?;
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::low_level::pipe::register(signal, signal_write.try_clone()?)?;
        }
        drop(signal_write);

        let shared = Arc::new(Shared {
            limits: self.limits,
            logger: self.logger,
            service: Box::new(service),
            shutting_down: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
            connection_ended: Condvar::new(),
            idle_threads: AtomicUsize::new(0),
        });
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..shared.limits.threads {
            if !become_idle(&shared) {
                break;
            }
            let (shared, queue) = (shared.clone(), queue.clone());
            spawn_worker(move || wait_for_jobs(&shared, &queue))?;
        }

        accept_loop(&self.listener, &signal_read, &shared, &jobs, &queue);

        drop(self.listener);
        drop(jobs);
        shutdown(&shared);
        Ok(())
    }
}

fn accept_loop(
    listener: &TcpListener,
    signals: &UnixStream,
    shared: &Arc<Shared>,
    jobs: &Sender<Job>,
    queue: &Arc<Mutex<Receiver<Job>>>,
) {
    let mut next_id = 0u64;
    let mut fds = [
        libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: signals.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a valid array of two pollfd structs that outlives the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                shared.logger.error(&format!("poll failed: {err}"));
                thread::sleep(ACCEPT_BACKOFF);
            }
            continue;
        }
        if fds[1].revents != 0 {
            shared.logger.info("shutting down");
            return;
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                next_id += 1;
                dispatch(shared, jobs, queue, stream, peer, next_id);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                // Out of descriptors or memory, or a connection aborted before
                // it was accepted: log it, pause, and go on serving.
                shared.logger.error(&format!("accept failed: {err}"));
                thread::sleep(ACCEPT_BACKOFF);
            }
        }
    }
}

fn dispatch(
    shared: &Arc<Shared>,
    jobs: &Sender<Job>,
    queue: &Arc<Mutex<Receiver<Job>>>,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
) {
    let accepted = Instant::now();
    // Accepted sockets do not inherit the listener's non-blocking mode on
    // Linux, but say so rather than rely on it.
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let slot = {
        let mut connections = lock(&shared.connections);
        if connections.len() >= shared.limits.max_connections {
            drop(connections);
            conn::refuse(shared, stream, peer, "too many open connections");
            return;
        }
        let slot = Arc::new(Slot {
            stream,
            state: AtomicU8::new(BUSY),
        });
        connections.insert(id, slot.clone());
        slot
    };
    let job = Job {
        id,
        slot,
        peer,
        accepted,
    };
    if take_idle_thread(shared) {
        // An idle worker counted in `idle_threads` is blocked on (or about to
        // block on) the queue, so the job is picked up at once.
        if let Err(mpsc::SendError(job)) = jobs.send(job) {
            end_connection(shared, job.id);
        }
        return;
    }
    let (worker_shared, worker_queue) = (shared.clone(), queue.clone());
    let job_id = job.id;
    let spawned = spawn_worker(move || {
        run_job(&worker_shared, job);
        if become_idle(&worker_shared) {
            wait_for_jobs(&worker_shared, &worker_queue);
        }
    });
    if let Err(err) = spawned {
        shared
            .logger
            .error(&format!("could not start a connection thread: {err}"));
        if let Some(slot) = lock(&shared.connections).remove(&job_id) {
            let _ = slot.stream.shutdown(Shutdown::Both);
        }
    }
}

fn spawn_worker(work: impl FnOnce() + Send + 'static) -> io::Result<()> {
    thread::Builder::new()
        .name("wren-conn".into())
        .stack_size(CONNECTION_STACK)
        .spawn(work)
        .map(drop)
}

fn run_job(shared: &Shared, job: Job) {
    conn::serve(shared, &job.slot, job.peer, job.accepted);
    end_connection(shared, job.id);
}

fn end_connection(shared: &Shared, id: u64) {
    lock(&shared.connections).remove(&id);
    shared.connection_ended.notify_all();
}

/// An idle worker: serve jobs from the queue until the server stops.
fn wait_for_jobs(shared: &Shared, queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = lock(queue).recv();
        let Ok(job) = job else { return };
        run_job(shared, job);
        if !become_idle(shared) {
            return;
        }
    }
}

/// Counts this thread as idle unless `threads` already are.
fn become_idle(shared: &Shared) -> bool {
    shared
        .idle_threads
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |idle| {
            (idle < shared.limits.threads).then_some(idle + 1)
        })
        .is_ok()
}

/// Claims an idle worker, if there is one.
fn take_idle_thread(shared: &Shared) -> bool {
    shared
        .idle_threads
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |idle| {
            idle.checked_sub(1)
        })
        .is_ok()
}

fn shutdown(shared: &Shared) {
    shared.shutting_down.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + shared.limits.shutdown_timeout;
    let mut connections = lock(&shared.connections);
    for slot in connections.values() {
        // An idle connection is waiting for a request that should not come.
        if slot
            .state
            .compare_exchange(IDLE, CLOSED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            let _ = slot.stream.shutdown(Shutdown::Both);
        }
    }
    while !connections.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            shared.logger.error(&format!(
                "shutdown timeout reached; cutting {} connection(s)",
                connections.len()
            ));
            for slot in connections.values() {
                let _ = slot.stream.shutdown(Shutdown::Both);
            }
            return;
        }
        connections = shared
            .connection_ended
            .wait_timeout(connections, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    shared.logger.info("all connections closed");
}

/// A panic in one connection thread must not take the server down with it,
/// so a poisoned lock is used as it is: the data behind these locks (a map of
/// connections, a queue) stays consistent whatever a thread panicked in.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Each connection holds a descriptor; the default soft limit (often 1024)
/// would cap the server below `--max-connections`. Raise it to the hard
/// limit, as Go's runtime and nginx's `worker_rlimit_nofile` do.
fn raise_fd_limit(logger: &Logger) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                logger.error("could not raise the open-file limit");
            }
        }
    }
}

//! The listener, the accept loop, the connection registry, the worker
//! threads and graceful shutdown.
//!
//! Threads are spent on requests, not on connections. A connection waiting
//! for a request (idle between keep-alive requests, or a head still arriving)
//! is *parked*: registered one-shot in an epoll set, holding no thread. A few
//! worker threads (`--threads`, one per core by default) wait on that set and
//! serve whichever connection becomes readable, inline, with blocking reads
//! and writes under deadlines; then they park it again.
//!
//! Handlers may block (a slow upload, a database call). The accept thread is
//! also the monitor: when every worker has been inside one request for more
//! than [`STALL_THRESHOLD`], it starts another, so a slow handler never holds
//! up other clients for longer than that. Extra workers leave after
//! `IDLE_WORKER_EXIT` without work.
//!
//! A handler whose answer waits on something other than the CPU (an
//! event's turn in a group commit) answers later instead
//! ([`Response::later`](super::Response::later)): its connection is set
//! aside, *awaiting*, and its worker goes on. Whoever sends the answer
//! queues it for the workers, waking one through an eventfd in the epoll
//! set when all are asleep; a worker takes queued answers before it waits
//! for readiness, writes each and serves its connection on. So a thousand
//! events waiting for one commit hold no thread, and a busy worker answers
//! a whole batch without a single wake-up.
//!
//! A worker takes up to [`READY_PER_WAIT`] ready connections from one
//! `epoll_wait`, serves the first and queues the others beside the later
//! answers, where whichever worker is free first takes them: under load a
//! wait serves several requests (measured with `make bench`: about a tenth
//! less CPU per `/status`), and a slow request holds up no connection but
//! its own, since the ones that came with it are not kept by its worker.
//!
//! Why not a thread per connection: measured with `make bench`, blocking in
//! `recv` between requests costs a context switch per request; with only
//! about one waiting thread per core, a busy server picks ready connections
//! up without sleeping (4.3 µs of CPU per request against 7.4 in a bare
//! prototype of each).

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection};

use super::connection::{self, Awaiting, Connection, Context, Next, Site, Taken};
use super::limits::{ACCEPT_BACKOFF, Limits};
use super::log::Logger;
use super::registry::{Registry, State};
use super::response::Response;
use super::stats::Stats;
use super::tls::TlsStream;
use super::transport::Transport;
use crate::peer::client_address;

/// A connection of any listener.
type Conn = Connection<Stream>;

/// A connection's byte stream: plain TCP, or TLS over TCP.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Transport for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => Transport::read(tcp, buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => Transport::write(tcp, data),
            Stream::Tls(tls) => tls.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(tls) => tls.flush(),
        }
    }

    fn holds_input(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(tls) => tls.holds_input(),
        }
    }

    fn shutdown_write(&mut self) {
        match self {
            Stream::Plain(tcp) => tcp.shutdown_write(),
            Stream::Tls(tls) => tls.shutdown_write(),
        }
    }

    fn fd(&self) -> RawFd {
        match self {
            Stream::Plain(tcp) => tcp.as_raw_fd(),
            Stream::Tls(tls) => tls.fd(),
        }
    }

    fn tls_version(&self) -> Option<&'static str> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => tls.tls_version(),
        }
    }
}

/// Where the server listens, and whether it speaks TLS there.
pub struct Endpoint {
    pub addr: SocketAddr,
    pub tls: Option<Arc<ServerConfig>>,
}

/// A bound listener.
struct Listener {
    socket: TcpListener,
    tls: Option<Arc<ServerConfig>>,
}

/// How long all workers may be inside requests before another is started.
pub const STALL_THRESHOLD: Duration = Duration::from_millis(50);

/// How precisely the monitor keeps deadlines: it wakes at most this often.
const MONITOR_RESOLUTION: Duration = Duration::from_millis(10);

/// The longest the monitor sleeps while connections are open. Workers set
/// new deadlines as they park connections without waking it (that would
/// cost a system call per request), so it looks again at least this often.
const MONITOR_MAX_SLEEP: Duration = Duration::from_millis(100);

/// The most connections accepted between two monitor rounds.
const ACCEPT_BATCH: usize = 64;

/// How long a worker beyond `--threads` waits for work before it exits.
const IDLE_WORKER_EXIT: Duration = Duration::from_secs(10);

/// The most ready connections a worker takes from one `epoll_wait`; all but
/// the first are queued for any worker.
const READY_PER_WAIT: usize = 8;

/// Worker stacks: handlers keep their data on the heap.
const WORKER_STACK: usize = 512 * 1024;

/// State shared by the accept thread and the workers.
struct Shared {
    context: Context,
    epoll: OwnedFd,
    connections: Mutex<Registry<Conn>>,
    /// Signalled whenever a connection ends, for shutdown to wait on.
    connection_ended: Condvar,
    /// Work for whichever worker is free, oldest first: later answers in,
    /// and ready connections that came with another in one `epoll_wait`.
    work: Mutex<VecDeque<Work>>,
    /// An eventfd in the epoll set (as [`WAKE`]), written to wake a worker
    /// when work is queued while all are waiting for readiness.
    wake: OwnedFd,
    /// Whether `wake` has been written and no worker has taken the wake-up
    /// yet: a second write would wake nobody more (the descriptor is
    /// one-shot), so it is spared, a system call per answer under load.
    wake_pending: AtomicBool,
    /// Workers waiting for readiness (in `epoll_wait`, or about to be).
    /// Counted up under the `work` lock, so work queued meanwhile is never
    /// missed.
    waiting: AtomicUsize,
    /// Workers alive.
    workers: AtomicUsize,
}

/// The epoll id of [`Shared::wake`]; connection ids count up from 0.
const WAKE: u64 = u64::MAX;

/// What a worker takes from the queue.
enum Work {
    Answer(Answer),
    /// The id of a connection found ready.
    Ready(u64),
}

/// A later answer in, with the connection it is for.
struct Answer {
    id: u64,
    conn: Box<Conn>,
    taken: Taken,
    response: Response,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Registry<Conn>> {
        // A panic elsewhere must not take the server down; the map stays
        // consistent whatever a thread panicked in.
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Re-arms the one-shot readiness event of `conn`, which the caller
    /// serves (busy in the registry), then parks it. Re-armed while still
    /// busy: nobody else closes a busy connection's descriptor, so a
    /// reused descriptor number can never be re-armed, and the system call
    /// stays outside the registry lock, which every request takes. An
    /// event that comes before the connection is marked parked finds it
    /// busy and is spent; the registry then says so, and the connection is
    /// queued as ready.
    fn park(&self, id: u64, conn: Box<Conn>) {
        if epoll_ctl(&self.epoll, libc::EPOLL_CTL_MOD, conn.fd(), id).is_err() {
            self.lock().remove(id);
            self.connection_ended.notify_all();
            return;
        }
        let woke = self.lock().park(id, conn);
        if woke {
            self.queue(std::iter::once(Work::Ready(id)));
        }
    }

    /// Serves the parked connection `id`, found ready, until it would wait
    /// again; nothing when the monitor took it first (expired) or it is
    /// gone.
    fn serve_ready(self: &Arc<Self>, id: u64) {
        let Some(conn) = self.lock().take(id, Instant::now()) else {
            return;
        };
        let next = connection::serve(&self.context, conn, self.context.limits.io_timeout);
        self.settle(id, next);
    }

    /// After a turn of serving: parks the connection again, hands it to
    /// the later answer it awaits, or forgets it.
    fn settle(self: &Arc<Self>, id: u64, next: Next<Stream>) {
        match next {
            Next::Park(conn) => self.park(id, conn),
            Next::Await(conn, Awaiting { later, taken }) => {
                self.lock().set_awaiting(id);
                let shared = Arc::clone(self);
                later.attach(connection::failed_answer, move |response| {
                    shared.answered(Answer {
                        id,
                        conn,
                        taken,
                        response,
                    })
                });
            }
            Next::Close(conn) => {
                // Out of the registry first: shutdown's timeout path shuts
                // busy entries' descriptors down by number.
                self.lock().remove(id);
                drop(conn);
                self.connection_ended.notify_all();
            }
        }
    }

    fn lock_work(&self) -> MutexGuard<'_, VecDeque<Work>> {
        self.work.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a later answer for the workers.
    fn answered(&self, answer: Answer) {
        self.queue(std::iter::once(Work::Answer(answer)));
    }

    /// Queues `work`; wakes one worker if any is waiting for readiness
    /// ([`Shared::wake_one`] spares the call when one is being woken
    /// already; whoever takes work wakes the next, see
    /// [`Shared::next_work_or_wait`]).
    fn queue(&self, work: impl IntoIterator<Item = Work>) {
        let wake = {
            let mut queue = self.lock_work();
            queue.extend(work);
            !queue.is_empty() && self.waiting.load(Ordering::SeqCst) > 0
        };
        if wake {
            self.wake_one();
        }
    }

    /// Wakes one worker waiting for readiness, through the eventfd, unless
    /// one is being woken already.
    fn wake_one(&self) {
        if self.wake_pending.swap(true, Ordering::SeqCst) {
            return;
        }
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to the eventfd. It
        // cannot fail but by overflowing a counter that workers reset.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// The oldest work queued; `None` counts the caller as waiting for
    /// readiness (it must then `epoll_wait`, and count itself out after).
    /// Taking some while more waits wakes a sleeping worker for it: this
    /// one may wait on a slow client, and the work behind it must not wait
    /// with it while a worker sleeps.
    fn next_work_or_wait(&self) -> Option<Work> {
        let (work, more) = {
            let mut queue = self.lock_work();
            let work = queue.pop_front();
            if work.is_none() {
                self.waiting.fetch_add(1, Ordering::SeqCst);
            }
            (work, !queue.is_empty())
        };
        if work.is_some() && more && self.waiting.load(Ordering::SeqCst) > 0 {
            self.wake_one();
        }
        work
    }

    /// Writes a later answer and serves its connection on.
    fn resume(self: &Arc<Self>, answer: Answer) {
        let Answer {
            id,
            conn,
            taken,
            response,
        } = answer;
        let io_timeout = self.context.limits.io_timeout;
        let next = connection::resume(&self.context, conn, taken, response, io_timeout);
        self.settle(id, next);
    }

    /// Empties the wake eventfd and re-arms it for the next wake-up. The
    /// caller then takes the queued work, so a wake-up spared before
    /// `wake_pending` is cleared here loses none.
    fn rearm_wake(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer; reading an
        // eventfd already emptied fails with EAGAIN, which is fine.
        unsafe {
            libc::read(
                self.wake.as_raw_fd(),
                count.as_mut_ptr().cast(),
                count.len(),
            )
        };
        let fd = self.wake.as_raw_fd();
        if let Err(err) = epoll_ctl(&self.epoll, libc::EPOLL_CTL_MOD, fd, WAKE) {
            self.context
                .logger
                .error(&format!("cannot re-arm the workers' wake-up: {err}"));
        }
        self.wake_pending.store(false, Ordering::SeqCst);
    }
}

/// The listeners, with the limits and log every connection of any of them
/// shares (the connection caps count them all together).
pub struct Server {
    listeners: Vec<Listener>,
    limits: Limits,
    logger: Logger,
    stats: Arc<Stats>,
}

impl Server {
    /// Binds every endpoint, or fails with the address that could not be
    /// bound.
    pub fn bind(
        endpoints: Vec<Endpoint>,
        limits: Limits,
        logger: Logger,
    ) -> Result<Server, (SocketAddr, io::Error)> {
        raise_fd_limit(&logger);
        let mut listeners = Vec::with_capacity(endpoints.len());
        for Endpoint { addr, tls } in endpoints {
            let socket = TcpListener::bind(addr)
                .and_then(|socket| socket.set_nonblocking(true).map(|()| socket))
                .map_err(|err| (addr, err))?;
            listeners.push(Listener { socket, tls });
        }
        Ok(Server {
            listeners,
            limits,
            logger,
            stats: Arc::default(),
        })
    }

    /// The engine's counters for this server, to report on while it runs.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// The addresses bound, in the order of the endpoints (a port `0` now
    /// the one the system chose).
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.listeners
            .iter()
            .map(|listener| listener.socket.local_addr())
            .collect()
    }

    /// Serves `sites`, one per endpoint in the same order, until SIGTERM or
    /// SIGINT, then shuts down gracefully: stops accepting, closes idle
    /// connections and gives in-flight requests up to the shutdown timeout
    /// to finish.
    pub fn run(self, sites: Vec<Site>) -> io::Result<()> {
        if sites.len() != self.listeners.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "one site per listener",
            ));
        }
        let (signal_read, signal_write) = UnixStream::pair()?;
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::low_level::pipe::register(signal, signal_write.try_clone()?)?;
        }
        drop(signal_write);

        let registry = Registry::new(
            self.limits.max_connections,
            self.limits.max_connections_per_address,
            Arc::clone(&self.stats),
        );
        let shared = Arc::new(Shared {
            context: Context {
                limits: self.limits,
                logger: self.logger,
                sites,
                shutting_down: AtomicBool::new(false),
                stats: self.stats,
            },
            epoll: epoll_create()?,
            connections: Mutex::new(registry),
            connection_ended: Condvar::new(),
            work: Mutex::new(VecDeque::new()),
            wake: eventfd()?,
            wake_pending: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            workers: AtomicUsize::new(0),
        });
        epoll_ctl(
            &shared.epoll,
            libc::EPOLL_CTL_ADD,
            shared.wake.as_raw_fd(),
            WAKE,
        )?;
        let limits = &shared.context.limits;
        for _ in 0..limits.threads.clamp(1, limits.max_threads.max(1)) {
            start_worker(&shared)?;
        }
        accept_loop(&self.listeners, &signal_read, &shared);
        drop(self.listeners);
        shutdown(&shared);
        Ok(())
    }
}

fn accept_loop(listeners: &[Listener], signals: &UnixStream, shared: &Arc<Shared>) {
    let mut next_id = 0u64;
    let pollfd = |fd: RawFd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // The signal pipe first, then the listeners in order.
    let mut fds: Vec<libc::pollfd> = std::iter::once(signals.as_raw_fd())
        .chain(listeners.iter().map(|listener| listener.socket.as_raw_fd()))
        .map(pollfd)
        .collect();
    // Whether the memory left free by the last connections went back.
    let mut trimmed = true;
    loop {
        let timeout = monitor(shared);
        if shared.lock().is_empty() {
            if !trimmed {
                release_free_memory();
                trimmed = true;
            }
        } else {
            trimmed = false;
        }
        // SAFETY: `fds` is a valid array of pollfd structs that outlives the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                shared.context.logger.error(&format!("poll failed: {err}"));
                thread::sleep(ACCEPT_BACKOFF);
            }
            continue;
        }
        if fds[0].revents != 0 {
            shared.context.logger.info("shutting down");
            return;
        }
        for (site, listener) in listeners.iter().enumerate() {
            if fds[site + 1].revents != 0 {
                accept_burst(listener, site, &mut next_id, shared);
            }
        }
    }
}

/// Gives the system back the memory malloc holds free, in every thread's
/// arena, once the last connection has closed: freed buffers otherwise stay
/// resident until the next load reuses them (measured after `make bench`'s
/// `/status` sweep: about half a MiB, more or less by how the load spread
/// over the arenas). Only on going idle, so it never costs a busy server.
fn release_free_memory() {
    // SAFETY: malloc_trim only walks malloc's own free lists.
    unsafe { libc::malloc_trim(0) };
}

/// Takes what a burst brought to `listener` in one go, rather than one
/// connection per monitor round.
fn accept_burst(listener: &Listener, site: usize, next_id: &mut u64, shared: &Shared) {
    for _ in 0..ACCEPT_BATCH {
        match listener.socket.accept() {
            Ok((stream, peer)) => {
                *next_id += 1;
                admit(shared, listener, site, stream, peer, *next_id);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                // Out of descriptors or memory, or a connection aborted
                // before it was accepted: log it, pause, go on serving.
                shared
                    .context
                    .logger
                    .error(&format!("accept failed: {err}"));
                thread::sleep(ACCEPT_BACKOFF);
                return;
            }
        }
    }
}

/// Registers a new connection, parked until its first bytes arrive, or
/// refuses it when the connection cap is reached. A TLS connection's
/// handshake happens there too, as its first input, under the same
/// deadline and caps as a request head.
fn admit(
    shared: &Shared,
    listener: &Listener,
    site: usize,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
) {
    // Non-blocking, for parking; small answers go out in one write, which
    // Nagle would only delay.
    if let Err(err) = stream
        .set_nonblocking(true)
        .and_then(|()| stream.set_nodelay(true))
    {
        shared
            .context
            .logger
            .error(&format!("cannot set up a connection: {err}"));
        return;
    }
    let address = client_address(peer.ip());
    let mut connections = shared.lock();
    if let Err(refusal) = connections.check(address) {
        drop(connections);
        shared.context.stats.refused_at(refusal.cap());
        let reason = refusal.reason();
        shared
            .context
            .logger
            .warn(&format!("refused a connection from {peer}: {reason}"));
        // A plain one is told why (503); a TLS one is closed, since no
        // answer can be read before a handshake, which the cap is there to
        // spare.
        if listener.tls.is_none() {
            connection::refuse(&shared.context, stream, peer, site, reason);
        }
        return;
    }
    let stream = match &listener.tls {
        None => Stream::Plain(stream),
        Some(config) => match ServerConnection::new(Arc::clone(config)) {
            Ok(tls) => Stream::Tls(Box::new(TlsStream::new(
                stream,
                tls,
                Arc::clone(&shared.context.stats),
            ))),
            Err(err) => {
                drop(connections);
                shared
                    .context
                    .logger
                    .error(&format!("cannot start TLS: {err}"));
                return;
            }
        },
    };
    let conn = Conn::new(stream, peer, site, &shared.context.limits);
    let fd = conn.fd();
    connections.admit(id, address, fd, conn);
    if let Err(err) = epoll_ctl(&shared.epoll, libc::EPOLL_CTL_ADD, fd, id) {
        connections.remove(id);
        shared
            .context
            .logger
            .error(&format!("cannot watch a connection: {err}"));
    }
}

/// The monitor's rounds, between accepts: closes parked connections whose
/// deadline passed and starts a worker when all are stuck in requests.
/// Returns the poll timeout until the next round is due (ms, -1: none).
fn monitor(shared: &Arc<Shared>) -> i32 {
    let now = Instant::now();
    let mut next_due: Option<Instant> = None;
    let mut stalled = 0usize;
    // Expired connections are taken as a worker takes a ready one.
    let expired: Vec<(u64, Box<Conn>)> = {
        let mut connections = shared.lock();
        let mut expired_ids = Vec::new();
        for (id, state) in connections.states() {
            let due = match state {
                State::Parked(conn) if conn.deadline() <= now => {
                    expired_ids.push(id);
                    continue;
                }
                State::Parked(conn) => conn.deadline(),
                State::Busy { since, .. } => {
                    if now.duration_since(*since) >= STALL_THRESHOLD {
                        stalled += 1;
                    }
                    now + STALL_THRESHOLD
                }
                // Holds no worker, and its answer comes when it comes.
                State::Awaiting { .. } => continue,
            };
            next_due = Some(next_due.map_or(due, |d| d.min(due)));
        }
        expired_ids
            .into_iter()
            .filter_map(|id| Some((id, connections.take(id, now)?)))
            .collect()
    };
    for (id, conn) in expired {
        // The monitor must never wait on one client: an answer (a 408) gets
        // what fits in the send buffer now, or nothing.
        let next = connection::serve(&shared.context, conn, Duration::ZERO);
        if let Next::Park(lingering) = &next {
            next_due = Some(next_due.map_or(lingering.deadline(), |d| d.min(lingering.deadline())));
        }
        shared.settle(id, next);
    }
    // Only when every worker is stuck: one slow request among busy workers
    // is not a reason for another thread.
    let workers = shared.workers.load(Ordering::SeqCst);
    if stalled > 0
        && stalled >= workers
        && shared.waiting.load(Ordering::SeqCst) == 0
        && workers < shared.context.limits.max_threads
        && let Err(err) = start_worker(shared)
    {
        shared
            .context
            .logger
            .error(&format!("could not start a worker thread: {err}"));
    }
    // Rounds at most every MONITOR_RESOLUTION, however many deadlines, and
    // none at all while no connection is open.
    match next_due {
        None => -1,
        Some(due) => due
            .saturating_duration_since(Instant::now())
            .clamp(MONITOR_RESOLUTION, MONITOR_MAX_SLEEP)
            .as_millis() as i32,
    }
}

fn start_worker(shared: &Arc<Shared>) -> io::Result<()> {
    shared.workers.fetch_add(1, Ordering::SeqCst);
    let for_worker = shared.clone();
    let spawned = thread::Builder::new()
        .name("wren-worker".into())
        .stack_size(WORKER_STACK)
        .spawn(move || worker(&for_worker));
    if spawned.is_err() {
        shared.workers.fetch_sub(1, Ordering::SeqCst);
    }
    spawned.map(drop)
}

/// A worker: take queued work (a later answer to write, a ready connection),
/// else wait for ready connections, serve the first and queue the others;
/// serve each until it would wait again, then park it (or close it, or set
/// it aside for its later answer); repeat.
fn worker(shared: &Arc<Shared>) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; READY_PER_WAIT];
    loop {
        match shared.next_work_or_wait() {
            Some(Work::Answer(answer)) => {
                shared.resume(answer);
                continue;
            }
            Some(Work::Ready(id)) => {
                shared.serve_ready(id);
                continue;
            }
            None => {}
        }
        // More than one only when no other worker waits (this one counts
        // itself): one that does takes the next ready connection straight
        // from the kernel, cheaper than through the queue and a wake-up.
        let most = if shared.waiting.load(Ordering::SeqCst) > 1 {
            1
        } else {
            READY_PER_WAIT
        };
        // SAFETY: a buffer of READY_PER_WAIT >= `most` events to fill, on
        // an epoll descriptor that lives as long as `shared`.
        let ready = unsafe {
            libc::epoll_wait(
                shared.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                most as i32,
                IDLE_WORKER_EXIT.as_millis() as i32,
            )
        };
        shared.waiting.fetch_sub(1, Ordering::SeqCst);
        if ready == 0 {
            // No work for a while: workers beyond --threads leave.
            let surplus = shared
                .workers
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n > shared.context.limits.threads.max(1)).then(|| n - 1)
                })
                .is_ok();
            if surplus {
                return;
            }
            continue;
        }
        let Ok(ready) = usize::try_from(ready) else {
            continue;
        };
        let batch = &events[..ready];
        let woken = batch.iter().any(|event| event.u64 == WAKE);
        let mut ready_ids = batch.iter().map(|event| event.u64).filter(|&id| id != WAKE);
        // Woken for queued work, which goes first: this worker takes it at
        // the top of the loop, with the connections queued behind it (and
        // wakes another for what it cannot take); else it serves the first
        // connection itself.
        let first = if woken {
            shared.rearm_wake();
            None
        } else {
            ready_ids.next()
        };
        let mut rest = ready_ids.map(Work::Ready).peekable();
        if rest.peek().is_some() {
            shared.queue(rest);
        }
        if let Some(id) = first {
            shared.serve_ready(id);
        }
    }
}

fn shutdown(shared: &Shared) {
    shared.context.shutting_down.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + shared.context.limits.shutdown_timeout;
    let mut connections = shared.lock();
    loop {
        // Parked connections are between requests, or waiting for a head that
        // will not be served: close them. A lingering one gets the rest of
        // its short linger, so its last response is not lost to a reset.
        let now = Instant::now();
        connections.retain_parked(|conn| conn.is_lingering() && conn.deadline() > now);
        if connections.is_empty() {
            break;
        }
        if now >= deadline {
            shared.context.logger.error(&format!(
                "shutdown timeout reached; cutting {} connection(s)",
                connections.len()
            ));
            for fd in connections.busy_fds() {
                // SAFETY: a busy entry's descriptor stays open until its
                // worker removes the entry, which needs this lock.
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            }
            return;
        }
        let wait = (deadline - now).min(MONITOR_MAX_SLEEP);
        connections = shared
            .connection_ended
            .wait_timeout(connections, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    shared.context.logger.info("all connections closed");
}

fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 returns a new descriptor or -1.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Adds or re-arms `fd` as a one-shot readiness event carrying `id`.
fn epoll_ctl(epoll: &OwnedFd, op: libc::c_int, fd: RawFd, id: u64) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32,
        u64: id,
    };
    // SAFETY: valid descriptors and a valid event struct.
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut event) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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

"""Soak under hostile clients (issue 16): wren keeps serving well-behaved
clients, with flat memory, descriptors and threads, while hostile clients
do their worst at the same time.

The tool starts the given wren binary itself, on a fresh temporary data
folder and a free loopback port (`--port 0`, the port read from the
start-up log, as tools/chaos.py does), makes its accounts through the API,
and runs for `--seconds`:

- well-behaved load: WELL_BEHAVED_THREADS client threads, each on one
  keep-alive connection from 127.0.0.1 at a steady WELL_BEHAVED_RATE
  requests a second, send `GET /status`, `GET /predict/<int>/<month>/<int>`,
  `POST /event` (users of their own, times never going back),
  `POST /api/sign_in` (an account each, made at start) and small file round
  trips (`PUT /api/file/<key>` then `GET`, the bytes compared). Each
  request's latency and outcome is recorded.
- hostile clients, each kind from its own source address (127.0.0.2 and
  up, sockets bound to it; any 127/8 address reaches a wren listening on
  127.0.0.1), so that the per-address cap falls on them, never on the
  well-behaved address:
  - per-address cap (127.0.0.2): holds `--max-connections-per-ip`
    connections idle, opening a new one for each the server closes, and
    probes one more every 2 s, which must be refused;
  - global cap (127.0.0.16 to .47, at most 15 connections each): holds two
    thirds of `--max-connections` idle all the time, and every 20 s opens
    more until the server refuses connections at the global cap, holding
    them 3 s. Only then can a well-behaved client be refused too: a
    deliberate refusal, counted, never an error;
  - slowloris (127.0.0.3): connections dripping a request head a byte
    every half second, never ending it (cut by `--header-timeout`);
  - stalled bodies (127.0.0.4): bodies declared (`Content-Length` or
    chunked) then left unsent, or dripped below `--min-rate`, on
    `POST /event` and on a signed-in 64 MiB `PUT /api/file/...`; and a
    `Content-Length` of 10^15, which must be refused at once (`413`);
  - garbage and `HTTP/2.0` (127.0.0.5): random bytes, a head over 16 KiB,
    junk after a request, `GET / HTTP/2.0` and the HTTP/2 preface (`505`);
  - sign-up flood (127.0.0.6): bursts of 40 sign-ups every 10 s, which
    must meet `429` from the sign-up limiter once its burst is spent;
  - with `--tls`, half TLS handshakes (127.0.0.7): part of a ClientHello,
    a whole one never followed up, one cut by a reset, one followed by a
    junk record, plain HTTP to the TLS port. The other kinds then speak
    TLS too (the cap fillers stay idle below it).
- each second: the server's RSS and threads (/proc/PID/status) and open
  descriptors (/proc/PID/fd), and its open connections (`/metrics`, asked
  from 127.0.0.8).

wren runs with its defaults (timeouts: head 10 s, keep-alive 5 s, I/O 30 s,
bodies 5 s plus one for every 512 bytes; sign-ups 20 at once, then 60 an
hour, per address; `--threads` one per core), except for:
`--max-connections 192 --max-connections-per-ip 16`, so that both caps are
reachable from one machine; `--rate-limiting on --rate-limit 1000
--rate-burst 2000`, so that the rate limiter runs on every request as it
would on a server facing the network (loopback-only servers turn it off),
while the well-behaved address, sending 60 requests a second, stays under
it; `--max-concurrent-hashes 3` (a 2-core machine's default, named so that
every machine runs the same soak); and, with `--tls`, a self-signed
certificate made with `openssl`, or with Python's `cryptography` when it
can be imported; with neither, the soak runs over plain HTTP and says so.
Each hashing slot keeps its 19 MiB argon2 workspace once made, so before
the load the tool has all three made (see `warm_hash_slots`): the baseline
is then the warm server, not whenever three hashes first overlapped.

The report: well-behaved requests served and their p50/p99 latency (also
by route, and the p99 of each tenth of the run); their errors: anything
but the expected answer, apart from `429`s and deliberate `503`s at caps,
which are counted apart (a `503` naming the connection cap or the hashing
slots, or a request that failed while the server's log shows it refusing
a 127.0.0.1 connection at a cap: a refused TLS connection is closed
unanswered, and a plain one may be reset before its `503` is read); what
the hostile clients met and how long the server let their connections
live; the server's RSS, descriptors and threads (also once the clients
have left, and 12 s later, when the workers started beyond `--threads`
should have left); and their growth from the baseline (minute 1; a third
of the run when it is shorter than 3 minutes) to the end: the median of
the last 10% of samples against the median of as many around the
baseline, so that one spike decides nothing. Every sample is written to
`samples.csv` beside the data folder (kept, with the log, when the soak
fails or with `--keep`). Last line:

    served: N, errors: N, rss_growth: X%, fd_growth: X%, threads_max: N

It exits 1, saying why, when a well-behaved client saw an error, RSS or
descriptors grew over 10%, the server died or did not exit 0 on SIGTERM,
nothing was served; or when the hostile clients show that wren did not
bound them (a connection living past its deadline, a `500`, an upload's
temporary file left behind, connections left open after the clients left)
or that the soak missed what it tests (either cap never reached, no `429`
from the sign-up limiter); or when the tool itself failed. 2 on bad
arguments.

    .venv/bin/python tools/soak.py target/debug/wren [--seconds N] [--tls] [--seed N] [--keep]
    (or: make soak, SOAK_SECONDS=N)
"""

import argparse
import bisect
import collections
import datetime
import os
import random
import re
import select
import selectors
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

import wren_process

DEFAULT_SECONDS = 600

# --- the server's settings ----------------------------------------------------

MAX_CONNECTIONS = 192
MAX_CONNECTIONS_PER_IP = 16
#: Password-hashing slots; each keeps a 19 MiB argon2 workspace once made.
HASH_SLOTS = 3
WORKSPACE_KIB = 19 * 1024
#: Sign-ins sent at once to make every slot's workspace, and how many
#: times at most.
WARM_SIGN_INS = 2 * HASH_SLOTS
WARM_ROUNDS = 10
SERVER_FLAGS = [
    "--max-connections", str(MAX_CONNECTIONS),
    "--max-connections-per-ip", str(MAX_CONNECTIONS_PER_IP),
    "--rate-limiting", "on", "--rate-limit", "1000", "--rate-burst", "2000",
    "--max-concurrent-hashes", str(HASH_SLOTS),
]
#: wren's defaults, which the hostile clients' deadlines are reckoned from.
HEADER_TIMEOUT = 10.0
BODY_GRACE = 5.0
#: How long a worker beyond --threads waits for work before it leaves (a
#: constant in src/http/server.rs).
WORKER_IDLE_EXIT = 10.0
MIN_RATE = 512
SIGNUP_BURST = 20
SIGNUP_RATE_PER_HOUR = 60
#: How late past its deadline a hostile connection may be cut: the
#: server's monitor wakes in steps, the tool notices a close in steps, and
#: the machine is shared.
DEADLINE_SLACK = 5.0

# --- the clients ----------------------------------------------------------------

WELL_BEHAVED = "127.0.0.1"
WELL_BEHAVED_THREADS = 4
#: Requests a second each well-behaved thread sends (a file round trip is
#: two).
WELL_BEHAVED_RATE = 15
#: What each well-behaved thread does, by weight.
OPERATIONS = {"status": 30, "predict": 25, "event": 25, "sign-in": 5, "file": 15}
#: Event users per thread (a fixed population, as a real feed has) and
#: file keys per thread (replaced, so that storage keeps its size).
USERS_PER_THREAD = 16
KEYS_PER_THREAD = 8
MONTHS = "january february march april may june july august september october november december".split()
REQUEST_TIMEOUT = (5, 30)

PER_ADDRESS_FILLER = "127.0.0.2"
SLOWLORIS = "127.0.0.3"
STALLER = "127.0.0.4"
JUNK = "127.0.0.5"
SIGNUP_FLOOD = "127.0.0.6"
HALF_TLS = "127.0.0.7"
SAMPLER = "127.0.0.8"
GLOBAL_FILLERS = [f"127.0.0.{n}" for n in range(16, 48)]

#: The global-cap filler holds this many idle connections all the time,
#: leaving room for the rest (well-behaved clients, the sampler and the
#: other hostile kinds use about 40), and every GLOBAL_PUSH_EVERY seconds
#: pushes to the cap for GLOBAL_PUSH_HOLD seconds.
GLOBAL_STEADY = MAX_CONNECTIONS * 2 // 3
GLOBAL_PUSH_EVERY = 20.0
GLOBAL_PUSH_HOLD = 3.0
#: Under the per-address cap, so that the filler meets only the global one.
GLOBAL_PER_ADDRESS = MAX_CONNECTIONS_PER_IP - 1
#: A connection the server closes this soon after it opened was refused.
REFUSED_WITHIN = 1.0
PROBE_EVERY = 2.0
SLOWLORIS_CONNECTIONS = 6
SLOWLORIS_DRIP = 0.5
STALLER_THREADS = 3
#: The upload the stallers declare: within the quotas and the free-disk
#: floor, so that only its pace can get it refused.
STALLED_UPLOAD = 64 << 20
#: Bytes a second the dripping staller sends: a fifth of --min-rate.
DRIP_RATE = 100
SIGNUP_FLOOD_EVERY = 10.0
SIGNUP_FLOOD_BURST = 40
HALF_TLS_THREADS = 2
JUNK_PAUSE = 0.25

#: What the server's refusals say.
CONNECTION_CAP_MESSAGE = "too many open connections"
PER_ADDRESS_MESSAGE = "too many open connections from your address"
HASH_SLOTS_MESSAGE = "busy checking passwords"
SIGNUP_LIMIT_MESSAGE = "too many sign-ups"
REFUSED_LINE = re.compile(r"^(\S+) \[warn\] refused a connection from ([0-9.]+):\d+: ")
MAX_GROWTH = 10.0


class Abort(Exception):
    """The soak cannot go on: the server would not start, say."""


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def ms(seconds):
    return f"{seconds * 1000:.1f} ms"


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


# --- the server ---------------------------------------------------------------------


class Server:
    """The wren under test: its process, data folder and log."""

    def __init__(self, binary, workdir, tls_files):
        self.binary = binary
        self.data_dir = workdir / "data"
        self.log_path = workdir / "wren.log"
        self.tls_files = tls_files
        self.scheme = "https" if tls_files else "http"
        self.process = None
        self.port = None
        self.settings = list(SERVER_FLAGS)
        if tls_files:
            self.settings += ["--tls-cert", str(tls_files[0]), "--tls-key", str(tls_files[1])]

    def start(self):
        command = [str(self.binary), "--host", "127.0.0.1", "--port", "0", "--data-dir", str(self.data_dir)]
        env = {name: value for name, value in os.environ.items() if not name.startswith(("S3_", "WREN_"))}
        try:
            self.process, self.port, _ = wren_process.start(command + self.settings, self.log_path, env)
        except wren_process.StartFailed as failure:
            raise Abort(str(failure)) from None

    @property
    def base(self):
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def sample(self):
        """(RSS in KiB, open descriptors, threads), or None once it is gone."""
        pid = self.process.pid
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (FileNotFoundError, ProcessLookupError):
            return None
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if "VmRSS" not in fields:  # a zombie: exited, not yet reaped
            return None
        return int(fields["VmRSS"].split()[0]), fds, int(fields["Threads"])

    def stop(self):
        """SIGTERM; the exit status, or None when it had to be killed."""
        if not self.alive():
            return self.process.returncode if self.process else None
        self.process.terminate()
        try:
            return self.process.wait(timeout=25)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def log_tail(self):
        return wren_process.log_tail(self.log_path)

    def refusals(self, address):
        """When the server logged refusing a connection from `address` at a
        cap: sorted wall-clock times."""
        times = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            match = REFUSED_LINE.match(line)
            if match and match.group(2) == address:
                times.append(datetime.datetime.fromisoformat(match.group(1)).timestamp())
        return sorted(times)

    def leftover_uploads(self):
        return sorted(str(path) for path in (self.data_dir / "files").rglob(".*.tmp"))


def make_certificate(workdir):
    """A self-signed certificate for localhost and 127.0.0.1, as (cert, key)
    paths; None, saying why, when nothing here can make one."""
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    if shutil.which("openssl"):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True,
        )
        return cert, key
    try:
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        print("TLS skipped: neither openssl nor Python's cryptography is here; the soak runs over plain HTTP")
        return None
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key


class SourceAdapter(HTTPAdapter):
    """Connections from one source address, one kept alive, never retried
    (each failure is seen)."""

    def __init__(self, source):
        self.source = source
        super().__init__(pool_connections=1, pool_maxsize=1, max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def session_from(source, server):
    session = requests.Session()
    # Neither the environment's CA bundle (it would win over `verify`) nor
    # its proxies: the server is on this machine, with its own certificate.
    session.trust_env = False
    session.mount(f"{server.scheme}://", SourceAdapter(source))
    if server.tls_files:
        session.verify = str(server.tls_files[0])
    return session


# --- what was seen ---------------------------------------------------------------------


class WellBehavedReport:
    """Every well-behaved request's outcome."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = collections.defaultdict(list)  # route -> seconds, of those served
        self.timeline = []  # (when it was sent, seconds it took), of those served
        self.limited = collections.Counter()  # route -> 429s
        self.cap_answers = []  # (start, end) of 503s naming the connection cap
        self.hash_busy = collections.Counter()  # route -> 503s naming the hashing slots
        self.errors = []  # (seconds into the run, route, what was seen)
        self.failed = []  # (route, start, end, what) of requests without an answer
        self.started = time.time()

    def served(self):
        return sum(len(values) for values in self.latencies.values())

    def serve(self, route, start, seconds):
        with self.lock:
            self.latencies[route].append(seconds)
            self.timeline.append((start, seconds))

    def error(self, route, start, what):
        with self.lock:
            self.errors.append((start - self.started, route, what))

    def unanswered(self, route, start, what):
        with self.lock:
            self.failed.append((route, start, time.time(), what))

    def refused(self, route, start, answer):
        """An answer that is not the one asked for: a deliberate refusal,
        or an error."""
        with self.lock:
            if answer.status_code == 429:
                self.limited[route] += 1
                return
            if answer.status_code == 503 and CONNECTION_CAP_MESSAGE in answer.text:
                self.cap_answers.append((start, time.time()))
                return
            if answer.status_code == 503 and HASH_SLOTS_MESSAGE in answer.text:
                self.hash_busy[route] += 1
                return
        request_id = answer.headers.get("X-Request-Id", "-")
        self.error(route, start, f"{answer.status_code} {answer.text[:200]!r} (request id {request_id})")

    def reconcile(self, refusal_times):
        """Each refusal the server logged explains one `503` at the cap or
        one request that failed while it happened; the failures it does not
        explain become errors. Returns how many it explained."""
        unused = list(refusal_times)

        def explained(start, end):
            # A refusal is at once: a request that failed after waiting
            # (a timeout, say) was not refused, whatever the log shows.
            if end - start > REFUSED_WITHIN:
                return False
            at = bisect.bisect_left(unused, start - 0.5)
            if at < len(unused) and unused[at] <= end + 0.5:
                unused.pop(at)
                return True
            return False

        for start, end in self.cap_answers:
            explained(start, end)
        refused = 0
        for route, start, end, what in self.failed:
            if explained(start, end):
                refused += 1
            else:
                self.error(route, start, what)
        return refused


class HostileReport:
    """What each hostile kind met (outcomes counted, how long the server
    let its connections live), what broke the rules, and the tool's own
    failures."""

    def __init__(self):
        self.lock = threading.Lock()
        self.outcomes = collections.defaultdict(collections.Counter)
        self.lived = collections.defaultdict(list)  # kind -> seconds until the server ended it
        self.violations = []
        self.tool_problems = []
        self.most = collections.Counter()

    def count(self, kind, outcome, lived=None, times=1):
        with self.lock:
            self.outcomes[kind][outcome] += times
            if lived is not None:
                self.lived[kind].append(lived)

    def violate(self, message):
        with self.lock:
            self.violations.append(message)

    def tool_problem(self, message):
        with self.lock:
            self.tool_problems.append(message)

    def at_most(self, name, value):
        with self.lock:
            self.most[name] = max(self.most[name], value)


# --- raw connections for the hostile clients ---------------------------------------------


def client_context():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def raw_socket(source, port, timeout=5.0):
    """A TCP connection from `source` to the server; OSError when it fails."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # The source port is left to connect(), so that short connections
        # from one address share ports across destinations.
        sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24), 1)
        sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def hostile_socket(server, source, timeout=5.0):
    """A connection from `source`, TLS when the server speaks it; OSError
    (ssl.SSLError too) when it is refused or cut."""
    sock = raw_socket(source, server.port, timeout)
    if not server.tls_files:
        return sock
    try:
        return client_context().wrap_socket(sock, server_hostname="localhost")
    except OSError:
        sock.close()
        raise


def reset_close(sock):
    """Closes with a reset (SO_LINGER 0), as a client that crashes does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    sock.close()


def send_all(sock, data):
    """Sends, or False when the server has closed the connection."""
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def server_spoke(sock, timeout):
    """What the server sent within `timeout`: None for nothing (over TLS,
    records without data, such as session tickets, are nothing), b"" when
    it closed or reset the connection, else the bytes."""
    if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
        ready, _, _ = select.select([sock], [], [], timeout)
        if not ready:
            return None
    sock.settimeout(0.0)
    try:
        return sock.recv(65536)
    except (ssl.SSLWantReadError, BlockingIOError):
        return None
    except OSError:
        return b""
    finally:
        sock.settimeout(5.0)


def answer_complete(data):
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", data[:end], re.IGNORECASE)
    return len(data) >= end + 4 + (int(match.group(1)) if match else 0)


def read_answer(sock, deadline, stop, data=b""):
    """One answer, or the end of the connection: (status or None, how,
    bytes read, after `data` already read); `how` is "answered", "closed",
    "reset", "tls alert", "timeout" or "stopped"."""
    while not answer_complete(data):
        if stop.is_set():
            return None, "stopped", data
        left = deadline - time.monotonic()
        if left <= 0:
            return None, "timeout", data
        sock.settimeout(min(left, 0.5))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, socket.timeout):
            continue
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            chunk = b""
        except ssl.SSLError:
            return None, "tls alert", data
        except OSError:
            return None, "reset", data
        if not chunk:
            break
        data += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    if match:
        return int(match.group(1)), "answered", data
    return None, "closed", data


def outcome_name(status, how, data):
    if status is None:
        return f"{how} unanswered" if how in ("closed", "reset") else how
    if status == 503 and PER_ADDRESS_MESSAGE.encode() in data:
        return "503 per-address cap"
    if status == 503 and CONNECTION_CAP_MESSAGE.encode() in data:
        return "503 connection cap"
    return str(status)


class Hostile(threading.Thread):
    """A hostile client's loop, run until `stop`; a failure of the tool
    itself is reported, then the loop goes on."""

    def __init__(self, name, server, report, stop, rng):
        super().__init__(name=name, daemon=True)
        self.server, self.report, self.stop, self.rng = server, report, stop, rng

    def run(self):
        while not self.stop.is_set():
            try:
                self.step()
            except Exception:
                self.report.tool_problem(f"{self.name}: {traceback.format_exc()}")
                self.stop.wait(1.0)

    def open(self, kind, source):
        """A connection, or None when the server refused it (counted)."""
        try:
            return hostile_socket(self.server, source)
        except OSError as err:
            self.report.count(kind, f"refused or cut before a request ({type(err).__name__})")
            self.stop.wait(0.2)
            return None

    def finish(self, kind, sock, opened, deadline, deadline_name, data=b""):
        """Reads until the server answers or ends the connection (after
        `data`, read already); counts the outcome and flags a 500 or a
        connection that outlived `deadline` seconds."""
        status, how, data = read_answer(sock, opened + deadline + DEADLINE_SLACK + 5.0, self.stop, data)
        sock.close()
        if how == "stopped":
            return
        lived = time.monotonic() - opened
        outcome = outcome_name(status, how, data)
        self.report.count(kind, outcome, lived)
        if status == 500:
            self.report.violate(f"{kind}: answered 500: {data[:300]!r}")
        if status == 503:
            self.stop.wait(0.2)  # refused at a cap: not at once again
        if how == "timeout" or lived > deadline + DEADLINE_SLACK:
            self.report.violate(
                f"{kind}: the connection lived {lived:.1f}s, past {deadline_name} ({deadline:.1f}s): {outcome}"
            )


class Idlers:
    """Idle connections in a selector; those the server ends are counted
    with how long they lived, unless the caller judges them."""

    def __init__(self, kind, report):
        self.kind, self.report = kind, report
        self.selector = selectors.DefaultSelector()
        self.opened = {}  # socket -> (monotonic time, source)

    def add(self, sock, source):
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ)
        self.opened[sock] = (time.monotonic(), source)

    def by_source(self):
        return collections.Counter(source for _, source in self.opened.values())

    def drop(self, sock):
        self.selector.unregister(sock)
        del self.opened[sock]
        sock.close()

    def poll(self, timeout):
        """Waits up to `timeout` for the server to end some; returns them as
        (socket, what it sent (None: reset), seconds lived), closed."""
        ended = []
        for key, _ in self.selector.select(timeout):
            sock = key.fileobj
            try:
                data = sock.recv(4096)
            except OSError:
                data = None
            ended.append((sock, data, time.monotonic() - self.opened[sock][0]))
            self.drop(sock)
        now = time.monotonic()
        for sock, (opened, _) in list(self.opened.items()):
            if now - opened > HEADER_TIMEOUT + DEADLINE_SLACK + 5.0:
                self.report.violate(f"{self.kind}: an idle connection still open after {now - opened:.1f}s")
                self.drop(sock)
        return ended

    def count(self, ended):
        for _, data, lived in ended:
            how = "reset by the server" if data is None else "closed by the server" if not data else "answered"
            self.report.count(self.kind, how, lived)
            if lived > HEADER_TIMEOUT + DEADLINE_SLACK:
                self.report.violate(f"{self.kind}: an idle connection lived {lived:.1f}s, past --header-timeout")

    def wait(self, seconds, stop):
        """Keeps counting what the server ends for `seconds`."""
        until = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < until:
            self.count(self.poll(min(0.25, max(0.0, until - time.monotonic()))))

    def close_all(self):
        for sock in list(self.opened):
            self.drop(sock)


class PerAddressFiller(Hostile):
    """Holds the per-address cap's worth of idle connections from one
    address, and probes one more every PROBE_EVERY seconds."""

    def __init__(self, *args):
        super().__init__(*args)
        self.idlers = Idlers("per-address cap: held connections", self.report)
        self.next_probe = time.monotonic() + PROBE_EVERY

    def run(self):
        try:
            super().run()
        finally:
            self.idlers.close_all()

    def step(self):
        while len(self.idlers.opened) < MAX_CONNECTIONS_PER_IP and not self.stop.is_set():
            try:
                self.idlers.add(raw_socket(PER_ADDRESS_FILLER, self.server.port), PER_ADDRESS_FILLER)
            except OSError as err:
                self.report.count(self.idlers.kind, f"connect failed ({err})")
                break
        self.report.at_most("connections held from the per-address filler's address", len(self.idlers.opened))
        if time.monotonic() >= self.next_probe:
            self.next_probe = time.monotonic() + PROBE_EVERY
            self.probe()
        self.idlers.wait(0.25, self.stop)

    def probe(self):
        """One connection more: a plain one must get its 503, a TLS one be
        closed unanswered."""
        try:
            sock = raw_socket(PER_ADDRESS_FILLER, self.server.port)
        except OSError as err:
            self.report.count("per-address cap: probes", f"connect failed ({err})")
            return
        status, how, data = read_answer(sock, time.monotonic() + REFUSED_WITHIN, self.stop)
        if how == "timeout":
            # A held one had just been closed, unseen yet: this one is
            # held in its place.
            self.report.count("per-address cap: probes", "admitted (a held one had just been closed)")
            self.idlers.add(sock, PER_ADDRESS_FILLER)
            return
        sock.close()
        if how != "stopped":
            self.report.count("per-address cap: probes", outcome_name(status, how, data))


class GlobalFiller(Hostile):
    """Holds GLOBAL_STEADY idle connections over many addresses, opening a
    new one for each the server ends (a few at a time at first, so that
    their deadlines spread); every GLOBAL_PUSH_EVERY seconds opens more
    until the server refuses at the global cap, and holds them
    GLOBAL_PUSH_HOLD seconds."""

    #: Connections opened a step while ramping up to GLOBAL_STEADY over
    #: most of --header-timeout.
    RAMP = 4

    def __init__(self, *args):
        super().__init__(*args)
        self.idlers = Idlers("global cap: held connections", self.report)
        self.ramping = True
        self.next_push = time.monotonic() + GLOBAL_PUSH_EVERY * 0.75

    def run(self):
        try:
            super().run()
        finally:
            self.idlers.close_all()

    def connect(self):
        """One more idle connection, from an address with room under the
        per-address cap; the socket, or None."""
        counts = self.idlers.by_source()
        source = next((source for source in GLOBAL_FILLERS if counts[source] < GLOBAL_PER_ADDRESS), None)
        if source is None:
            self.report.tool_problem("global cap: GLOBAL_FILLERS has too few addresses")
            return None
        try:
            sock = raw_socket(source, self.server.port)
        except OSError as err:
            self.report.count(self.idlers.kind, f"connect failed ({err})")
            return None
        self.idlers.add(sock, source)
        return sock

    def step(self):
        missing = GLOBAL_STEADY - len(self.idlers.opened)
        self.ramping = self.ramping and missing > 0
        for _ in range(min(missing, self.RAMP) if self.ramping else missing):
            if self.stop.is_set():
                break
            self.connect()
        if time.monotonic() >= self.next_push and not self.stop.is_set():
            self.next_push = time.monotonic() + GLOBAL_PUSH_EVERY
            self.push()
        self.idlers.wait(0.25, self.stop)

    def push(self):
        extra = {self.connect() for _ in range(MAX_CONNECTIONS - GLOBAL_STEADY + 32)} - {None}
        # Those refused are answered (over TLS, closed) at once.
        refused = 0
        until = time.monotonic() + REFUSED_WITHIN
        while time.monotonic() < until and not self.stop.is_set():
            ended = self.idlers.poll(0.1)
            for sock, data, _ in ended:
                if sock in extra:
                    refused += 1
                    if data and PER_ADDRESS_MESSAGE.encode() in data:
                        self.report.violate("global cap: a filler connection met the per-address cap")
            self.idlers.count([end for end in ended if end[0] not in extra])
        self.report.count("global cap: pushes", "reached the cap" if refused else "no connection refused")
        self.report.count("global cap: pushes", "connections refused at the push", times=refused)
        self.report.at_most("connections held by the global filler at a push", len(self.idlers.opened))
        # No new ones while the cap is full: they would only be refused.
        self.idlers.wait(GLOBAL_PUSH_HOLD, self.stop)
        for sock in extra:
            if sock in self.idlers.opened:
                self.idlers.drop(sock)


class Slowloris(Hostile):
    """A connection at a time dripping a request head, a byte every
    SLOWLORIS_DRIP seconds, never ending it."""

    KIND = "slowloris"
    DRIP = b"".join(b"X-Drip-%d: aaaaaaaa\r\n" % n for n in range(400))

    def step(self):
        sock = self.open(self.KIND, SLOWLORIS)
        if sock is None:
            return
        opened = time.monotonic()
        position, spoke = 0, None
        if send_all(sock, b"GET /status HTTP/1.1\r\nHost: soak\r\n"):
            # Until the server says something (its 408) or closes.
            while not self.stop.is_set() and spoke is None:
                if not send_all(sock, self.DRIP[position : position + 1]):
                    break
                position = (position + 1) % len(self.DRIP)
                spoke = server_spoke(sock, SLOWLORIS_DRIP)
        self.finish(self.KIND, sock, opened, HEADER_TIMEOUT, "--header-timeout", spoke or b"")


class Staller(Hostile):
    """Declares a body, then stalls or drips it below --min-rate, or
    declares one no limit takes."""

    VARIANTS = ("event body stalled", "event body chunked and stalled", "upload stalled", "upload dripped",
                "huge Content-Length")

    def __init__(self, *args, token):
        super().__init__(*args)
        self.token = token

    def step(self):
        variant = self.rng.choice(self.VARIANTS)
        kind = f"stalled body: {variant}"
        sock = self.open(kind, STALLER)
        if sock is None:
            return
        opened = time.monotonic()
        key = f"stall/{self.name}-{self.rng.randrange(4)}".encode()
        upload = (
            b"PUT /api/file/%s HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"
            % (key, self.token.encode(), STALLED_UPLOAD)
        )
        event = b"POST /event HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
        drip = None
        if variant == "event body stalled":
            head, first = event + b"Content-Length: 1000000\r\n\r\n", b'{"type": "deposit", '
        elif variant == "event body chunked and stalled":
            head, first = event + b"Transfer-Encoding: chunked\r\n\r\n", b'f4240\r\n{"type": '
        elif variant == "upload stalled":
            head, first = upload, b"\0" * 4096
        elif variant == "upload dripped":
            head, first, drip = upload, b"\0" * DRIP_RATE, b"\0" * (DRIP_RATE // 2)
        else:
            head, first = event + b"Content-Length: 1000000000000000\r\n\r\n", b"{"
        # A body has BODY_GRACE seconds, and one more for every MIN_RATE
        # bytes received (as Apache's mod_reqtimeout counts its MinRate).
        if variant == "huge Content-Length":
            deadline = REFUSED_WITHIN
        elif drip is None:
            deadline = BODY_GRACE + len(first) / MIN_RATE
        else:
            deadline = BODY_GRACE / (1 - DRIP_RATE / MIN_RATE)
        spoke = None
        if send_all(sock, head) and send_all(sock, first):
            while drip is not None and not self.stop.is_set():
                spoke = server_spoke(sock, 0.5)
                if spoke is not None or not send_all(sock, drip):
                    break
        self.finish(kind, sock, opened, deadline, "the body's deadline", spoke or b"")


class Junk(Hostile):
    """Garbage bytes, a head too large, junk after a request, and HTTP/2
    request lines."""

    def step(self):
        self.stop.wait(JUNK_PAUSE)
        rng = self.rng
        choice = rng.randrange(8)
        status_request = b"GET /status HTTP/1.1\r\nHost: soak\r\n"
        if choice == 0:
            kind, data = "HTTP/2.0: GET / HTTP/2.0", b"GET / HTTP/2.0\r\nHost: soak\r\n\r\n"
        elif choice == 1:
            # The HTTP/2 connection preface and an empty SETTINGS frame.
            kind, data = "HTTP/2.0: preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04" + b"\x00" * 5
        elif choice == 2:
            kind, data = "garbage: random bytes", rng.randbytes(rng.randint(1, 4096))
        elif choice == 3:
            kind = "garbage: random bytes, then a blank line"
            data = rng.randbytes(rng.randint(1, 2048)) + b"\r\n\r\n"
        elif choice == 4:
            kind = "garbage: a printable junk line"
            data = bytes(rng.randrange(33, 127) for _ in range(rng.randint(1, 300))) + b"\r\n\r\n"
        elif choice == 5:
            kind, data = "garbage: a head over 16 KiB", status_request + b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n"
        elif choice == 6:
            kind = "garbage: a request, then junk on its connection"
            data = status_request + b"\r\n" + rng.randbytes(rng.randint(1, 512)) + b"\r\n\r\n"
        else:
            kind, data = "garbage: NUL bytes", b"\0" * rng.randint(1, 4096)
        sock = self.open(kind, JUNK)
        if sock is None:
            return
        opened = time.monotonic()
        if not send_all(sock, data):
            self.report.count(kind, "closed while sending")
            sock.close()
            return
        if choice != 6:
            self.finish(kind, sock, opened, HEADER_TIMEOUT, "--header-timeout")
            return
        # Two answers: the status's, then the junk's.
        data, how = b"", "answered"
        while how == "answered" and len(re.findall(rb"HTTP/1\.[01] \d{3}", data)) < 2:
            _, how, more = read_answer(sock, opened + HEADER_TIMEOUT + DEADLINE_SLACK, self.stop)
            data += more
        sock.close()
        if how == "stopped":
            return
        statuses = [int(status) for status in re.findall(rb"HTTP/1\.[01] (\d{3})", data)]
        outcome = " then ".join(map(str, statuses)) + ("" if len(statuses) == 2 else f", then {how}")
        self.report.count(kind, outcome, time.monotonic() - opened)
        if 500 in statuses:
            self.report.violate(f"{kind}: answered 500: {data[:300]!r}")
        if how == "timeout":
            self.report.violate(f"{kind}: the connection outlived --header-timeout ({HEADER_TIMEOUT:g}s)")


class SignupFlood(Hostile):
    """A burst of sign-ups from one address every SIGNUP_FLOOD_EVERY
    seconds: once the sign-up limiter's burst is spent, each gets a 429."""

    KIND = "sign-up flood"

    def __init__(self, *args):
        super().__init__(*args)
        self.session = session_from(SIGNUP_FLOOD, self.server)
        self.number = 0

    def run(self):
        try:
            super().run()
        finally:
            self.session.close()

    def step(self):
        for _ in range(SIGNUP_FLOOD_BURST):
            if self.stop.is_set():
                return
            self.number += 1
            try:
                answer = self.session.post(
                    f"{self.server.base}/api/sign_up",
                    json={"login": f"flood{self.number}", "password": f"flood-password-{self.number}"},
                    timeout=REQUEST_TIMEOUT,
                )
            except requests.RequestException as err:
                self.report.count(self.KIND, f"failed: {type(err).__name__}")
                continue
            outcome = str(answer.status_code)
            if answer.status_code == 429:
                outcome += " sign-up limiter" if SIGNUP_LIMIT_MESSAGE in answer.text else f" {answer.text[:80]}"
            elif answer.status_code == 503 and CONNECTION_CAP_MESSAGE in answer.text:
                outcome += " connection cap"
            self.report.count(self.KIND, outcome)
            if answer.status_code >= 500 and answer.status_code != 503:
                self.report.violate(f"{self.KIND}: {answer.status_code} {answer.text[:200]}")
        self.stop.wait(SIGNUP_FLOOD_EVERY)


def client_hello():
    """The bytes of a fresh TLS ClientHello."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class HalfTls(Hostile):
    """TLS handshakes begun and never finished, and plain HTTP to the TLS
    port."""

    VARIANTS = ("part of a ClientHello", "a ClientHello, then silence", "a ClientHello, then a reset",
                "a ClientHello, then a junk record", "plain HTTP to the TLS port")

    def step(self):
        variant = self.rng.choice(self.VARIANTS)
        kind = f"half TLS: {variant}"
        try:
            sock = raw_socket(HALF_TLS, self.server.port)
        except OSError as err:
            self.report.count(kind, f"connect failed ({err})")
            self.stop.wait(0.5)
            return
        opened = time.monotonic()
        hello = client_hello()
        if variant == "part of a ClientHello":
            sent = send_all(sock, hello[: self.rng.randint(1, len(hello) - 1)])
        elif variant == "a ClientHello, then silence":
            sent = send_all(sock, hello)
        elif variant == "a ClientHello, then a reset":
            send_all(sock, hello)
            self.stop.wait(self.rng.uniform(0, 0.2))
            reset_close(sock)
            self.report.count(kind, "reset by the client")
            self.stop.wait(0.5)
            return
        elif variant == "a ClientHello, then a junk record":
            sent = send_all(sock, hello + b"\x17\x03\x03\x00\x10" + self.rng.randbytes(16))
        else:
            sent = send_all(sock, b"GET /status HTTP/1.1\r\nHost: soak\r\n\r\n")
        if not sent:
            self.report.count(kind, "closed while sending")
            sock.close()
            return
        # The server's flight or alert is read and dropped: what counts is
        # when it gives up on the connection.
        while not self.stop.is_set() and time.monotonic() - opened < HEADER_TIMEOUT + DEADLINE_SLACK + 5.0:
            try:
                sock.settimeout(0.5)
                if not sock.recv(65536):
                    break
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                break
        sock.close()
        if self.stop.is_set():
            return
        lived = time.monotonic() - opened
        self.report.count(kind, "ended by the server", lived)
        if lived > HEADER_TIMEOUT + DEADLINE_SLACK:
            self.report.violate(f"{kind}: the connection lived {lived:.1f}s, past --header-timeout")


def hostile_clients(server, report, stop, rng, token):
    common = (server, report, stop)

    def seeded():
        return random.Random(rng.getrandbits(64))

    clients = [PerAddressFiller("per-address", *common, seeded()), GlobalFiller("global", *common, seeded())]
    clients += [Slowloris(f"slowloris-{n}", *common, seeded()) for n in range(SLOWLORIS_CONNECTIONS)]
    clients += [Staller(f"staller-{n}", *common, seeded(), token=token) for n in range(STALLER_THREADS)]
    clients += [Junk("junk", *common, seeded()), SignupFlood("sign-up flood", *common, seeded())]
    if server.tls_files:
        clients += [HalfTls(f"half-tls-{n}", *common, seeded()) for n in range(HALF_TLS_THREADS)]
    return clients


# --- the well-behaved clients --------------------------------------------------------------


class WellBehaved(threading.Thread):
    """One client on one keep-alive connection, WELL_BEHAVED_RATE requests
    a second."""

    def __init__(self, number, server, report, hostile, stop, account, seed):
        super().__init__(name=f"well-behaved-{number}", daemon=True)
        self.number, self.server, self.report, self.stop = number, server, report, stop
        self.hostile = hostile  # where a failure of the tool itself goes
        self.login, self.password = account
        self.rng = random.Random(seed)
        self.session = session_from(WELL_BEHAVED, server)
        self.token = None
        self.users = [number * 1000 + user for user in range(1, USERS_PER_THREAD + 1)]
        self.clock = dict.fromkeys(self.users, 1000)
        self.next_at = time.monotonic()

    def run(self):
        operations, weights = zip(*OPERATIONS.items())
        try:
            while not self.stop.is_set():
                operation = self.rng.choices(operations, weights)[0]
                if operation == "sign-in" or self.token is None:
                    self.sign_in()
                elif operation == "status":
                    self.status()
                elif operation == "predict":
                    self.predict()
                elif operation == "event":
                    self.event()
                else:
                    self.file()
        except Exception:
            self.hostile.tool_problem(f"{self.name}: {traceback.format_exc()}")
        finally:
            self.session.close()

    def pace(self):
        self.next_at += 1.0 / WELL_BEHAVED_RATE
        now = time.monotonic()
        if self.next_at < now - 1.0:
            self.next_at = now  # fell behind (a slow answer): no burst to catch up
        self.stop.wait(max(0.0, self.next_at - now))

    def call(self, route, method, path, expect, check, **kwargs):
        """One request, at the thread's pace: the answer when its status is
        in `expect` and `check` finds no problem in it (served), else None
        (counted as what it was)."""
        self.pace()
        if self.stop.is_set():
            return None
        start, began = time.time(), time.perf_counter()
        try:
            answer = self.session.request(method, self.server.base + path, timeout=REQUEST_TIMEOUT, **kwargs)
        except requests.RequestException as err:
            self.report.unanswered(route, start, f"{type(err).__name__}: {str(err)[:300]}")
            return None
        took = time.perf_counter() - began
        if answer.status_code not in expect:
            self.report.refused(route, start, answer)
            return None
        try:
            problem = check(answer)
        except ValueError as err:  # not JSON
            problem = f"an unreadable answer ({err}): {answer.text[:200]!r}"
        if problem is not None:
            self.report.error(route, start, f"{answer.status_code}, but {problem}")
            return None
        self.report.serve(route, start, took)
        return answer

    def sign_in(self):
        answer = self.call(
            "POST /api/sign_in", "POST", "/api/sign_in", (200,),
            lambda a: None if a.json().get("token") else f"no token in {a.text[:200]!r}",
            json={"login": self.login, "password": self.password},
        )
        if answer is not None:
            self.token = answer.json()["token"]

    def status(self):
        self.call("GET /status", "GET", "/status", (200,), lambda a: None if a.text == "Alive!" else repr(a.text))

    def predict(self):
        path = f"/predict/{self.rng.randint(0, 60)}/{self.rng.choice(MONTHS)}/{self.rng.randint(0, 600)}"
        self.call(
            "GET /predict", "GET", path, (200,), lambda a: None if a.text.strip().isdigit() else repr(a.text[:200])
        )

    def event(self):
        user = self.rng.choice(self.users)
        # Now and then at the same time as the user's last, which is allowed.
        self.clock[user] += 0 if self.rng.random() < 0.1 else self.rng.randint(1, 20_000)
        body = {
            "type": self.rng.choice(("deposit", "withdraw")),
            "amount": f"{self.rng.randint(1, 300)}.{self.rng.randrange(100):02d}",
            "user_id": user,
            "time": self.clock[user],
        }

        def check(answer):
            got = answer.json()
            if got.get("user_id") != user or not isinstance(got.get("alert"), bool):
                return f"an answer not about this event: {answer.text[:200]!r}"
            return None

        self.call("POST /event", "POST", "/event", (200,), check, json=body)

    def file(self):
        key = f"soak/w{self.number}/{self.rng.randrange(KEYS_PER_THREAD)}"
        data = self.rng.randbytes(self.rng.randint(256, 16 * 1024))
        auth = {"Authorization": f"Bearer {self.token}"}
        put = self.call(
            "PUT /api/file", "PUT", f"/api/file/{key}", (200, 201),
            lambda a: None if a.json().get("size") == len(data) else f"{a.text[:200]!r} for {len(data)} bytes",
            data=data, headers={**auth, "Content-Type": "application/octet-stream"},
        )
        if put is not None:
            self.call(
                "GET /api/file", "GET", f"/api/file/{key}", (200,),
                lambda a: None if a.content == data else f"{len(a.content)} bytes, not the {len(data)} stored",
                headers=auth,
            )


# --- sampling and figures --------------------------------------------------------------------


class Sampler(threading.Thread):
    """The server's RSS, descriptors, threads and open connections, each
    second from `began`, the run's clock."""

    OPEN = re.compile(r"^wren_open_connections (\d+)$", re.MULTILINE)

    def __init__(self, server, stop, began):
        super().__init__(name="sampler", daemon=True)
        self.server, self.stop, self.began = server, stop, began
        self.samples = []  # (seconds into the run, RSS KiB, fds, threads, open connections or None)
        self.session = session_from(SAMPLER, server)
        self.died_at = None

    def open_connections(self):
        try:
            text = self.session.get(f"{self.server.base}/metrics", timeout=(0.5, 0.5)).text
        except requests.RequestException:  # refused at the cap, say: a gap, not a failure
            return None
        match = self.OPEN.search(text)
        return int(match.group(1)) if match else None

    def run(self):
        tick = self.began
        try:
            while not self.stop.is_set():
                tick += 1.0
                self.stop.wait(max(0.0, tick - time.monotonic()))
                sample = self.server.sample()
                if sample is None or not self.server.alive():
                    self.died_at = time.monotonic() - self.began
                    return
                self.samples.append((time.monotonic() - self.began, *sample, self.open_connections()))
        finally:
            self.session.close()


def growth(samples, column, seconds):
    """(baseline, end, growth in %) of one column of the samples: the median
    of the last 10% against the median of as many around the baseline
    (minute 1, or a third of a run shorter than 3 minutes); None when there
    are too few samples."""
    window = max(3, len(samples) // 10)
    if len(samples) < 2 * window:
        return None
    baseline_at = 60.0 if seconds >= 180 else seconds / 3
    nearest = min(range(len(samples)), key=lambda index: abs(samples[index][0] - baseline_at))
    first = max(0, min(nearest - window // 2, len(samples) - 2 * window))
    baseline = statistics.median(sample[column] for sample in samples[first : first + window])
    end = statistics.median(sample[column] for sample in samples[-window:])
    return baseline, end, (end - baseline) / baseline * 100.0


def metrics(server):
    """The server's metrics now, by series, or {} when they cannot be read."""
    try:
        with session_from(SAMPLER, server) as session:
            text = session.get(f"{server.base}/metrics", timeout=(2, 5)).text
    except requests.RequestException:
        return {}
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def wait_drained(server, timeout):
    """Waits until the server holds no connection but the one asking; the
    number it still held."""
    deadline = time.monotonic() + timeout
    while True:
        held = metrics(server).get("wren_open_connections")
        if (held is not None and held <= 1) or time.monotonic() > deadline:
            return held
        time.sleep(0.5)


# --- the run ----------------------------------------------------------------------------------


def sign_up(server, source, login, password):
    """Makes an account; its first session token."""
    with session_from(source, server) as session:
        credentials = {"login": login, "password": password}
        answer = session.post(f"{server.base}/api/sign_up", json=credentials, timeout=REQUEST_TIMEOUT)
        if answer.status_code != 201:
            raise Abort(f"sign-up of {login} answered {answer.status_code} {answer.text[:200]}")
        answer = session.post(f"{server.base}/api/sign_in", json=credentials, timeout=REQUEST_TIMEOUT)
        if answer.status_code != 200:
            raise Abort(f"sign-in of {login} answered {answer.status_code} {answer.text[:200]}")
        return answer.json()["token"]


def warm_hash_slots(server, accounts, fresh_rss):
    """Makes every hashing slot make its workspace (at a slot's first hash;
    then kept), so that RSS is warm before the baseline; returns the RSS
    grown since start, in KiB.

    Three hashes run at once only on three workers, and the server starts
    a worker beyond --threads only when all have been stuck in requests for
    50 ms (a hash takes less): so bodies left unsent first hold the workers
    until more start, then go, and WARM_SIGN_INS sign-ins arrive at once to
    find the idle workers, until RSS shows the workspaces."""
    grown = 0
    for _ in range(WARM_ROUNDS):
        stallers = []
        for _ in range(HASH_SLOTS + 1):
            sock = hostile_socket(server, STALLER)
            sock.sendall(b"POST /event HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{")
            stallers.append(sock)
        time.sleep(0.1 * (HASH_SLOTS + 2))
        for sock in stallers:
            sock.close()
        barrier = threading.Barrier(WARM_SIGN_INS)

        def sign_in(login, password):
            with session_from(WELL_BEHAVED, server) as session:
                barrier.wait()
                credentials = {"login": login, "password": password}
                session.post(f"{server.base}/api/sign_in", json=credentials, timeout=REQUEST_TIMEOUT)

        threads = [
            threading.Thread(target=sign_in, args=accounts[number % len(accounts)])
            for number in range(WARM_SIGN_INS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        grown = server.sample()[0] - fresh_rss
        if grown >= (HASH_SLOTS - 0.5) * WORKSPACE_KIB:
            break
    return grown


def soak(seconds, report, sampler, clients):
    """Runs the clients for `seconds` (less when the server dies), printing
    progress; returns the seconds run."""
    sampler.start()
    for client in clients:
        client.start()
    progress_every = max(10.0, seconds / 10)
    next_progress = sampler.began + progress_every
    while time.monotonic() - sampler.began < seconds and sampler.is_alive():
        time.sleep(0.25)
        if time.monotonic() >= next_progress:
            next_progress += progress_every
            line = f"{time.monotonic() - sampler.began:4.0f}s: served {report.served()}, errors so far "
            line += f"{len(report.errors)}, requests unanswered {len(report.failed)}"
            if sampler.samples:
                _, rss, fds, threads, open_connections = sampler.samples[-1]
                line += f"; RSS {mib(rss)}, fds {fds}, threads {threads}, open connections {open_connections}"
            print(line, flush=True)
    return time.monotonic() - sampler.began


def run(args, workdir):
    tls_files = make_certificate(workdir) if args.tls else None
    server = Server(args.binary, workdir, tls_files)
    report = WellBehavedReport()
    hostile = HostileReport()
    stop = threading.Event()
    server.start()
    print(f"wren (pid {server.process.pid}) on {server.base} with {' '.join(server.settings)}", flush=True)
    clients = []
    try:
        fresh = server.sample()
        accounts = [(f"soak{number}", f"soak-password-{number}") for number in range(WELL_BEHAVED_THREADS)]
        for login, password in accounts:
            sign_up(server, WELL_BEHAVED, login, password)
        hostile_token = sign_up(server, STALLER, "hostile", "hostile-password")
        grown = warm_hash_slots(server, accounts, fresh[0])
        print(
            f"password-hashing slots warmed: RSS {mib(fresh[0])} at start, {mib(fresh[0] + grown)} after "
            f"concurrent sign-ins ({HASH_SLOTS} workspaces of {mib(WORKSPACE_KIB)} expected)",
            flush=True,
        )
        if grown < (HASH_SLOTS - 0.5) * WORKSPACE_KIB:
            print(
                f"  note: fewer than {HASH_SLOTS} workspaces after {WARM_ROUNDS} rounds; one made during the run "
                "will show as RSS growth",
                flush=True,
            )
        wait_drained(server, 5.0)
        idle = server.sample()
        rng = random.Random(args.seed)
        clients = [
            WellBehaved(number, server, report, hostile, stop, accounts[number], rng.getrandbits(64))
            for number in range(WELL_BEHAVED_THREADS)
        ]
        clients += hostile_clients(server, hostile, stop, rng, hostile_token)
        sampler = Sampler(server, stop, time.monotonic())
        report.started = time.time()
        seconds_run = soak(args.seconds, report, sampler, clients)
    except BaseException:
        server.stop()
        raise
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=40)
            if client.is_alive():
                hostile.tool_problem(f"{client.name} did not stop")
    sampler.join(timeout=5)
    drained, rested, counters = None, None, {}
    if server.alive():
        left_open = wait_drained(server, HEADER_TIMEOUT + DEADLINE_SLACK)
        if left_open is not None and left_open > 1:
            waited = HEADER_TIMEOUT + DEADLINE_SLACK
            hostile.violate(f"{left_open:.0f} connections still open {waited:g}s after the clients left")
        drained = server.sample()
        counters = metrics(server)
        # The workers started beyond --threads leave after 10 s without work.
        time.sleep(WORKER_IDLE_EXIT + 2.0)
        rested = server.sample()
    exit_status = server.stop()
    write_samples(workdir / "samples.csv", sampler.samples)
    failures = well_behaved_summary(server, report, seconds_run)
    failures += hostile_summary(server, hostile, counters, seconds_run)
    (rss_growth, fd_growth, threads_max), more = server_summary(
        server, sampler, (fresh, idle, drained, rested), exit_status, seconds_run
    )
    failures += more
    if not report.served():
        failures.append("no well-behaved request was served")
    print()
    for failure in failures:
        print(f"FAILED: {failure}")
    if not failures:
        print("ok: every check passed")
    print(
        f"served: {report.served()}, errors: {len(report.errors)}, rss_growth: {rss_growth:.1f}%, "
        f"fd_growth: {fd_growth:.1f}%, threads_max: {threads_max}",
        flush=True,
    )
    return 1 if failures else 0


def write_samples(path, samples):
    with open(path, "w") as out:
        out.write("seconds,rss_kib,fds,threads,open_connections\n")
        for seconds, rss, fds, threads, open_connections in samples:
            known = "" if open_connections is None else open_connections
            out.write(f"{seconds:.1f},{rss},{fds},{threads},{known}\n")


def well_behaved_summary(server, report, seconds_run):
    """Prints what the well-behaved clients saw; returns the failures."""
    refused = report.reconcile(server.refusals(WELL_BEHAVED))
    served = report.served()
    everything = [latency for values in report.latencies.values() for latency in values]
    print(f"\nwell-behaved clients ({WELL_BEHAVED_THREADS} threads from {WELL_BEHAVED}, {server.scheme}):")
    for route in sorted(report.latencies):
        values = report.latencies[route]
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        print(f"  {route}: {len(values)} served, p50 {ms(p50)}, p99 {ms(p99)}")
    if everything:
        print(
            f"  all: {served} served in {seconds_run:.0f}s ({served / seconds_run:.1f}/s), "
            f"p50 {ms(percentile(everything, 0.5))}, p99 {ms(percentile(everything, 0.99))}, "
            f"max {ms(max(everything))}"
        )
    if report.timeline:
        tenths = collections.defaultdict(list)
        for start, took in report.timeline:
            tenths[min(9, int((start - report.started) * 10 / seconds_run))].append(took)
        p99s = ", ".join(ms(percentile(tenths[tenth], 0.99)) if tenths[tenth] else "-" for tenth in range(10))
        print(f"  p99 by tenth of the run: {p99s}")
    limited = f" ({', '.join(f'{route}: {n}' for route, n in report.limited.items())})" if report.limited else ""
    print(
        f"  deliberate refusals: 429 {sum(report.limited.values())}{limited}; 503 at the connection cap "
        f"{len(report.cap_answers)}; connections the server's log shows refused at a cap {refused}; "
        f"503 with the password-hashing slots busy {sum(report.hash_busy.values())}"
    )
    print(f"  errors: {len(report.errors)}")
    report.errors.sort()
    kinds = collections.Counter(
        (route, re.sub(r"request id \w+", "request id …", what)) for _, route, what in report.errors
    )
    for (route, what), count in kinds.most_common(20):
        print(f"    {count}x {route}: {what}")
    for at, route, what in report.errors[:10]:
        print(f"    first ones: at {at:.1f}s, {route}: {what}")
    return [f"well-behaved clients saw {len(report.errors)} error(s)"] if report.errors else []


def hostile_summary(server, hostile, counters, seconds_run):
    """Prints what the hostile clients met; returns the failures."""
    print("\nhostile clients (outcome: count; how long the server let their connections live):")
    for kind in sorted(hostile.outcomes):
        outcomes = ", ".join(f"{outcome}: {count}" for outcome, count in hostile.outcomes[kind].most_common())
        lived = hostile.lived.get(kind)
        if lived:
            outcomes += f"; lived p50 {percentile(lived, 0.5):.1f}s, max {max(lived):.1f}s"
        print(f"  {kind}: {outcomes}")
    for name, value in sorted(hostile.most.items()):
        print(f"  most {name}: {value}")
    failures = []
    if counters:  # the server outlived the clients
        at_total = counters.get('wren_connections_refused_total{cap="max_connections"}', 0)
        at_address = counters.get('wren_connections_refused_total{cap="max_connections_per_ip"}', 0)
        line = f"  the server's counts: connections refused at --max-connections {at_total:.0f}, at "
        line += f"--max-connections-per-ip {at_address:.0f}; requests refused by the rate limits "
        line += f"{counters.get('wren_rate_limited_total', 0):.0f}"
        if server.tls_files:
            line += f"; TLS handshakes {counters.get('wren_tls_handshakes_total', 0):.0f}, failed "
            line += f"{counters.get('wren_tls_handshake_failures_total', 0):.0f}"
        print(line)
        if not at_total:
            failures.append("the global connection cap was never reached")
        if not at_address:
            failures.append("the per-address connection cap was never reached")
        # (A server that died leaves its uploads' files to its next start.)
        leftovers = server.leftover_uploads()
        if leftovers:
            failures.append(f"{len(leftovers)} upload temporary file(s) left behind: {', '.join(leftovers[:5])}")
    flood = hostile.outcomes[SignupFlood.KIND]
    allowed = SIGNUP_BURST + SIGNUP_RATE_PER_HOUR * seconds_run / 3600 + 1
    if not flood["429 sign-up limiter"]:
        failures.append("the sign-up flood never met the sign-up limiter's 429")
    if flood["201"] > allowed:
        created = flood["201"]
        failures.append(f"the sign-up limiter let {created} sign-ups from one address through, over {allowed:.0f}")
    failures += [f"hostile: {violation}" for violation in hostile.violations[:30]]
    if len(hostile.violations) > 30:
        failures.append(f"hostile: {len(hostile.violations) - 30} more like those")
    failures += [f"the tool failed (a bug of soak.py): {problem}" for problem in hostile.tool_problems[:5]]
    return failures


def server_summary(server, sampler, moments, exit_status, seconds_run):
    """Prints the server's resources over the run and at `moments` (samples
    at start, before the load, once the clients had left, and once extra
    workers could leave); returns ((RSS growth, descriptor growth, most
    threads), failures)."""
    fresh, idle, drained, rested = moments
    samples = sampler.samples
    print(f"\nserver (pid {server.process.pid}), {len(samples)} samples:")
    grew = {}
    for column, name, show in ((1, "RSS", mib), (2, "descriptors", str), (3, "threads", str)):
        values = [sample[column] for sample in samples]
        measured = growth(samples, column, seconds_run)
        if measured:
            baseline, end, grew[name] = measured
            print(
                f"  {name}: idle before the load {show(idle[column - 1])}, baseline {show(baseline)}, "
                f"end {show(end)} ({grew[name]:+.1f}%), min {show(min(values))}, max {show(max(values))}"
            )
    open_counts = [sample[4] for sample in samples if sample[4] is not None]
    if open_counts:
        median = statistics.median(open_counts)
        print(f"  open connections (the server's count): median {median:.0f}, max {max(open_counts)}")
    if drained:
        print(
            f"  once the clients had left: descriptors {drained[1]} (idle before the load: {idle[1]}), "
            f"RSS {mib(drained[0])}, threads {drained[2]}"
        )
    if rested:
        print(
            f"  {WORKER_IDLE_EXIT + 2:g}s later: threads {rested[2]} (at start: {fresh[2]}), "
            f"descriptors {rested[1]}, RSS {mib(rested[0])}"
        )
    failures = []
    if sampler.died_at is not None:
        failures.append(f"the server died {sampler.died_at:.0f}s into the run:\n{server.log_tail()}")
    elif exit_status != 0:
        failures.append(f"the server did not exit 0 on SIGTERM (status {exit_status}):\n{server.log_tail()}")
    for name in ("RSS", "descriptors"):
        if name not in grew:
            failures.append(f"too few samples to measure the growth of {name}")
        elif grew[name] > MAX_GROWTH:
            failures.append(f"{name} grew {grew[name]:.1f}%, over {MAX_GROWTH:g}%")
    threads_max = max((sample[3] for sample in samples), default=0)
    return (grew.get("RSS", float("nan")), grew.get("descriptors", float("nan")), threads_max), failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", type=Path)
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ.get("SOAK_SECONDS", DEFAULT_SECONDS)),
        help="how long the load runs (default: SOAK_SECONDS, else 600)",
    )
    parser.add_argument("--tls", action="store_true", help="serve HTTPS, with a self-signed certificate")
    parser.add_argument(
        "--seed",
        type=int,
        default=int(os.environ.get("SOAK_SEED", random.randrange(1 << 32))),
        help="the clients' random choices (default: SOAK_SEED, else random; each run prints its own)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data folder and log even when all passed")
    args = parser.parse_args()
    args.binary = args.binary.resolve()
    if not (args.binary.is_file() and os.access(args.binary, os.X_OK)):
        print(f"{sys.argv[0]}: {args.binary} is not an executable file", file=sys.stderr)
        return 2
    if args.seconds < 10:
        print(f"{sys.argv[0]}: --seconds must be at least 10", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="wren-soak-"))
    print(f"soak: {args.seconds:g}s, seed {args.seed} (SOAK_SEED), data folder and log in {workdir}", flush=True)
    # Killed by a timeout, the tool still stops its server (finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    status = 1
    try:
        status = run(args, workdir)
    except (Abort, requests.RequestException, subprocess.CalledProcessError) as err:
        print(f"FAILED: {err}")
        print("served: 0, errors: 0, rss_growth: nan%, fd_growth: nan%, threads_max: 0", flush=True)
    finally:
        if status == 0 and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"data folder and log kept in {workdir}", file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

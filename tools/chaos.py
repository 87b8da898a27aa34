"""Crash-proof check (issue 15): wren killed at random keeps every write it
acknowledged, and nothing it did not acknowledge is half there.

Each round, several client threads send writes to a running wren: events
(`POST /event`) for a set of users, sign-ups (each followed by a sign-in and
a small file), and file uploads to a few shared accounts, small and
multi-megabyte (some chunked), with deletes among them. Each thread writes
its own keys, one request at a time, so what a key holds is decided by the
order the thread sent them. A write is acknowledged when its 2xx answer
came in full; the driver keeps what was acknowledged (an event's alert
codes, an account's password, a file's BLAKE3 and size) and what was sent
without an answer. At a random moment within the traffic the server gets
SIGKILL. Then, before it restarts:

- `PRAGMA integrity_check` says ok on every SQLite database in the data
  folder (opened read-only, as the kill left them);
- each account's `usage` row equals the sums over its objects (files index,
  S3 size record), and each event's stored running deposit total is the
  exact sum of its user's deposits so far.

Then wren restarts on the same data folder, and through its API:

- every acknowledged write of every round so far is there: each event with
  the codes its answer gave (a user's history read back as an admin), each
  account signs in, each file downloads whole with the BLAKE3 and size
  acknowledged, and is listed (both listings);
- a write sent without an answer is wholly there or wholly absent: a file
  listed downloads completely as one of the versions sent for its key, an
  account present signs in with its password, and an event present has its
  codes; events refused with `409` are absent, and each had a reason: a
  later event of its user, not itself refused, sent before the refusal
  came back;
- every stored event's codes are the ones the alert rules give over the
  stored history (replayed here with the default thresholds), so an event
  stored without its codes, or a history missing an event, shows;
- each account's usage (`GET /api/v1/account`) equals the sum of the sizes
  of its files, and their count.

What an unanswered write turned out to be becomes what later rounds expect.
With the S3 settings `scripts/with-garage.sh` exports in the environment,
rounds alternate between a wren on local storage and one on S3; without
them the output says S3 was skipped. On S3 the size record follows the
bucket (S3 has no transactions to share), so a key written at the kill may
keep its old size in the record until its next write: such drift on a key
that was in flight is reported as documented and repaired by writing the
key again; drift on any other key is corruption.

A SIGKILL stops the process, not the machine: what was written reaches the
disk even unsynced, so this proves answers wait for their commit and
commits are whole, not that fsync is called.

    .venv/bin/python tools/chaos.py target/debug/wren [--rounds N] [--seed N]
    (or: make chaos, CHAOS_ROUNDS=N)

One line per round, each problem named, and as the last line
`rounds: N, acknowledged: N, lost: N, corrupt: N`; exits 1 when anything
was lost or corrupt or a check failed.
"""

import argparse
import collections
import concurrent.futures
import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from decimal import Decimal
from pathlib import Path

import blake3
import requests

import wren_process

DEFAULT_ROUNDS = 20
#: Client threads per round, and so key slots per shared file account.
THREADS = 6
#: Event users per server (ids 1..USERS): few, so that events of one user
#: often arrive together (and some refused as out of order, 409).
USERS = 8
#: Accounts made before the first round that every thread uploads to.
SHARED_ACCOUNTS = 2
#: Each thread's keys in a shared account: small files and large ones.
SMALL_KEYS = 4
LARGE_KEYS = 2
SMALL_MAX = 64 * 1024
#: Large files straddle the S3 backend's 8 MiB multipart threshold.
LARGE_MIN = 1 << 20
LARGE_MAX = 12 << 20
#: Share of uploads sent chunked (no Content-Length).
CHUNKED_SHARE = 0.3
CHUNK = 256 * 1024
#: The kill lands this many seconds after the traffic started.
KILL_AFTER = (0.4, 3.5)
#: What each thread does, by weight.
OPERATIONS = {"event": 55, "sign-up": 5, "small upload": 22, "large upload": 10, "delete": 8}
REQUEST_TIMEOUT = (5, 120)
ADMIN = ("chaos-admin", "chaos-admin-password")
#: Limits that would refuse the driver's own traffic: sign-ups and failed
#: sign-ins (absent accounts are checked each round) from one address.
LIMIT_FLAGS = (
    "--rate-limiting off --signup-burst 1000000 --signup-rate 1000000 --login-burst 1000000 --login-rate 1000000"
).split()
S3_VARIABLES = ("S3_ENDPOINT", "S3_BUCKET", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY")
#: The alert rules' default thresholds (src/alerts/profile.rs, risk medium),
#: times in milliseconds (`--event-time-unit ms`).
WITHDRAWAL_OVER = Decimal(100)
CONSECUTIVE_WITHDRAWALS = 3
INCREASING_DEPOSITS = 3
WINDOW_DEPOSIT_TOTAL = Decimal(200)
DEPOSIT_WINDOW = 30_000
BURST_COUNT = 5
BURST_WINDOW = 60_000
#: A running deposit total is stored as a count of 10^-28 units.
TOTAL_SCALE = 28


class Abort(Exception):
    """A check that cannot go on: the server would not start, say."""


def mib(size):
    return f"{size / (1 << 20):.1f} MiB"


def digest(data):
    """The hash files are told apart by: BLAKE3, as wren's local ETags."""
    return blake3.blake3(data).hexdigest()


class Report:
    """What was found, counted once per write (a problem seen again in a
    later round is told once). Lines wait for `flush`, so that a round's
    problems print under its line."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acknowledged = 0
        self.lost = 0
        self.corrupt = 0
        self.failed = 0
        self.seen = set()
        self.pending = []

    def _note(self, kind, key, message):
        with self.lock:
            if key is not None:
                if key in self.seen:
                    return
                self.seen.add(key)
            setattr(self, kind, getattr(self, kind) + 1)
            self.pending.append(f"  {kind.upper()}: {message}")

    def lose(self, key, message):
        self._note("lost", key, message)

    def spoil(self, key, message):
        self._note("corrupt", key, message)

    def fail(self, message):
        self._note("failed", None, message)

    def info(self, message):
        with self.lock:
            self.pending.append(f"  note: {message}")

    def problems(self):
        return self.lost + self.corrupt + self.failed

    def flush(self):
        with self.lock:
            lines, self.pending = self.pending, []
        for line in lines:
            print(line, flush=True)


# --- the ledger: what was sent, and what each write must be now -----------


class EventRecord:
    """One event sent. `state`: "present" (acknowledged, or seen after a
    restart) with `codes`, "absent" (refused, or not there after a restart),
    or "maybe" (sent without an answer)."""

    def __init__(self, user, kind, amount, time_):
        self.user, self.kind, self.amount, self.time = user, kind, amount, time_
        self.state = "maybe"
        self.codes = None
        self.acknowledged = False
        self.sent_at = time.monotonic()  # made just before it is sent
        self.refused_at = None  # when a 409 (nothing stored) came back

    def describe(self):
        return f"event user {self.user} {self.kind} {self.amount} at {self.time}"


class FileRecord:
    """One key of one account: `current` is what it must hold (None for
    nothing, else (digest, size)); `maybes` what unanswered writes since may
    have left instead; `uncertain` stops the round's writer from touching it
    after an unanswered write."""

    def __init__(self):
        self.current = None
        self.maybes = []
        self.uncertain = False
        self.acknowledged_in = None  # the round of the last acknowledged write


class Account:
    def __init__(self, login, password):
        self.login, self.password = login, password
        self.state = "maybe"
        self.files = collections.defaultdict(FileRecord)
        self.token = None


class Server:
    """One wren and everything sent to it: its data folder, its process,
    and the ledger of its writes."""

    def __init__(self, name, binary, workdir, extra_args, env):
        self.name = name
        self.is_s3 = "--storage" in extra_args
        self.binary = binary
        self.data_dir = workdir / name
        self.data_dir.mkdir()
        self.log_path = workdir / f"{name}.log"
        self.extra_args = extra_args
        self.env = env
        self.process = None
        self.base = None
        self.lock = threading.Lock()
        self.events = collections.defaultdict(dict)  # user -> {Decimal amount: EventRecord}
        self.clock = collections.defaultdict(int)  # user -> latest time handed out
        self.nonce = collections.defaultdict(int)
        self.accounts = {}  # login -> Account
        self.shared = []  # the accounts every thread uploads to
        self.logins = 0
        self.recorded_sizes = {}  # S3: (login, key) -> size in the record at the kill
        self.unindexed = 0  # local: stored files the index does not name
        self.databases = []  # those checked after the last kill

    def start(self):
        command = [str(self.binary), "--host", "127.0.0.1", "--port", "0"]
        command += ["--data-dir", str(self.data_dir), *LIMIT_FLAGS, *self.extra_args]
        try:
            self.process, _, self.base = wren_process.start(command, self.log_path, self.env)
        except wren_process.StartFailed as failure:
            raise Abort(f"{self.name}: {failure}") from None

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self):
        return wren_process.log_tail(self.log_path)

    def url(self, path):
        return self.base + path

    def new_event(self, user, kind, whole):
        """An event with an amount unique for its user (its id in the
        history) and a time that never goes back in the order handed out."""
        with self.lock:
            self.nonce[user] += 1
            amount = Decimal(f"{whole}.{self.nonce[user]:06d}")
            # Now and then at the same time as the last, which is allowed.
            self.clock[user] += 0 if random.random() < 0.2 else random.randint(1, 12_000)
            record = EventRecord(user, kind, amount, self.clock[user])
            self.events[user][amount] = record
            return record

    def new_account(self):
        with self.lock:
            self.logins += 1
            login = f"{self.name}-u{self.logins}"
        account = Account(login, f"pw-{random.getrandbits(64):016x}")
        with self.lock:
            self.accounts[login] = account
        return account


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def file_url(server, key):
    return server.url("/api/file/" + urllib.parse.quote(key, safe="/"))


def sign_in(server, login, password, attempts=20):
    """The session token, or None when the credentials are refused (401)."""
    for _ in range(attempts):
        answer = requests.post(
            server.url("/api/sign_in"), json={"login": login, "password": password}, timeout=REQUEST_TIMEOUT
        )
        if answer.status_code == 200:
            return answer.json()["token"]
        if answer.status_code == 401:
            return None
        if answer.status_code in (429, 503):
            time.sleep(0.2)
            continue
        raise Abort(f"{server.name}: sign-in of {login} answered {answer.status_code} {answer.text[:200]}")
    raise Abort(f"{server.name}: sign-in of {login} kept answering {answer.status_code}")


# --- a round: traffic, then the kill ---------------------------------------


class Round:
    def __init__(self, number, server, report):
        self.number = number
        self.server = server
        self.report = report
        self.killed = threading.Event()
        self.lock = threading.Lock()
        self.sent = collections.Counter()
        self.acknowledged = collections.Counter()
        self.refused = collections.Counter()
        self.unanswered = collections.Counter()
        # Thread slot -> what it is sending; every slot is there from the
        # start, so the kill can read the map while threads write to it.
        self.in_flight = dict.fromkeys(range(THREADS))

    def count(self, counter, what):
        with self.lock:
            counter[what] += 1

    def acknowledge(self, what):
        self.count(self.acknowledged, what)
        with self.report.lock:
            self.report.acknowledged += 1

    def send(self, slot, what, label, call):
        """Runs one request; returns its answer, or None when it went
        unanswered (then it is counted so, and a failure unless the kill
        explains it)."""
        if self.killed.is_set():
            # Not sent: the server is gone (a sign-up's follow-up, say).
            return None
        self.count(self.sent, what)
        self.in_flight[slot] = label
        try:
            # requests reads the whole body before it returns (or raises
            # when the connection ends first).
            return call()
        except requests.RequestException as err:
            self.count(self.unanswered, what)
            if not self.killed.is_set():
                self.report.fail(f"{self.server.name}: {label} failed while the server was up: {err}")
            return None
        finally:
            self.in_flight[slot] = None

    def unexpected(self, label, answer):
        self.report.fail(f"{self.server.name}: {label} answered {answer.status_code}: {answer.text[:300]}")


def post_event(rnd, slot, rng):
    server = rnd.server
    kind = "deposit" if rng.random() < 0.6 else "withdraw"
    record = server.new_event(rng.randint(1, USERS), kind, rng.randint(1, 260))
    label = record.describe()
    body = {"type": kind, "amount": str(record.amount), "user_id": record.user, "time": record.time}
    answer = rnd.send(
        slot, "events", label, lambda: requests.post(server.url("/event"), json=body, timeout=REQUEST_TIMEOUT)
    )
    if answer is None:
        return
    if answer.status_code == 200:
        record.state, record.codes, record.acknowledged = "present", answer.json()["alert_codes"], True
        rnd.acknowledge("events")
    elif answer.status_code == 409:
        # Another thread's later event of this user came first: refused,
        # and nothing stored.
        record.state, record.refused_at = "absent", time.monotonic()
        rnd.count(rnd.refused, "events")
    else:
        rnd.unexpected(label, answer)


def sign_up(rnd, slot, rng):
    server = rnd.server
    account = server.new_account()
    label = f"sign-up {account.login}"
    body = {"login": account.login, "password": account.password}
    answer = rnd.send(
        slot,
        "sign-ups",
        label,
        lambda: requests.post(server.url("/api/sign_up"), json=body, timeout=REQUEST_TIMEOUT),
    )
    if answer is None:
        return
    if answer.status_code == 503:
        # Every password-hashing slot was busy for a second: overload, not
        # a fault. Whether it was stored is left to the next check.
        rnd.count(rnd.refused, "sign-ups")
        return
    if answer.status_code != 201:
        rnd.unexpected(label, answer)
        return
    account.state = "present"
    rnd.acknowledge("sign-ups")
    try:
        account.token = sign_in(server, account.login, account.password)
    except (requests.RequestException, Abort) as err:
        if not rnd.killed.is_set():
            rnd.report.fail(f"{server.name}: sign-in after {label}: {err}")
        return
    if account.token is None:
        rnd.report.lose(
            ("account", server.name, account.login),
            f"{server.name}: {label} was acknowledged but its sign-in was refused",
        )
        return
    upload(rnd, slot, account, "welcome.txt", rng.randint(1, 2000), chunked=False, what="welcome files")


def upload(rnd, slot, account, key, size, chunked, what):
    server = rnd.server
    record = account.files[key]
    data = os.urandom(size)
    version = (digest(data), size)
    how = " chunked" if chunked else ""
    label = f"PUT {account.login}/{key} ({mib(size) if size >= 1 << 20 else f'{size} B'}{how})"
    body = (data[i : i + CHUNK] for i in range(0, size, CHUNK)) if chunked else data
    answer = rnd.send(
        slot,
        what,
        label,
        lambda: requests.put(
            file_url(server, key), data=body, headers=bearer(account.token), timeout=REQUEST_TIMEOUT
        ),
    )
    if answer is None:
        record.maybes.append(version)
        record.uncertain = True
        return
    if answer.status_code in (200, 201):
        stated = answer.json()
        if stated.get("size") != size:
            rnd.report.spoil(None, f"{server.name}: {label} acknowledged size {stated.get('size')}")
        record.current, record.maybes = version, []
        record.acknowledged_in = rnd.number
        rnd.acknowledge(what)
    else:
        rnd.unexpected(label, answer)
        record.maybes.append(version)
        record.uncertain = True


def upload_shared(rnd, slot, rng, large):
    account = rng.choice(rnd.server.shared)
    if large:
        key = f"t{slot}/large-{rng.randrange(LARGE_KEYS)}.bin"
        size = rng.randint(LARGE_MIN, LARGE_MAX)
    else:
        key = f"t{slot}/small-{rng.randrange(SMALL_KEYS)}.bin"
        size = rng.randint(1, SMALL_MAX)
    if account.files[key].uncertain:
        return
    upload(
        rnd,
        slot,
        account,
        key,
        size,
        chunked=rng.random() < CHUNKED_SHARE,
        what="large uploads" if large else "small uploads",
    )


def delete(rnd, slot, rng):
    server = rnd.server
    account = rng.choice(server.shared)
    mine = [
        key
        for key, record in list(account.files.items())
        if key.startswith(f"t{slot}/") and record.current is not None and not record.uncertain
    ]
    if not mine:
        return
    key = rng.choice(mine)
    record = account.files[key]
    label = f"DELETE {account.login}/{key}"
    answer = rnd.send(
        slot,
        "deletes",
        label,
        lambda: requests.delete(
            file_url(server, key), headers=bearer(account.token), timeout=REQUEST_TIMEOUT
        ),
    )
    if answer is None:
        record.maybes.append(None)
        record.uncertain = True
        return
    if answer.status_code == 200:
        record.current, record.maybes = None, []
        record.acknowledged_in = rnd.number
        rnd.acknowledge("deletes")
    elif answer.status_code == 404:
        rnd.report.lose(
            ("file", server.name, f"{account.login}/{key}", record.current),
            f"{server.name}: {label}: 404, but it held {record.current[0][:16]}… ({record.current[1]} B)",
        )
        record.current = None
    else:
        rnd.unexpected(label, answer)
        record.maybes.append(None)
        record.uncertain = True


def client(rnd, slot, seed):
    rng = random.Random(seed)
    names, weights = list(OPERATIONS), list(OPERATIONS.values())
    while not rnd.killed.is_set():
        operation = rng.choices(names, weights)[0]
        try:
            if operation == "event":
                post_event(rnd, slot, rng)
            elif operation == "sign-up":
                sign_up(rnd, slot, rng)
            elif operation == "delete":
                delete(rnd, slot, rng)
            else:
                upload_shared(rnd, slot, rng, large=operation == "large upload")
        except Exception as err:  # a bug here must not pass for a quiet thread
            rnd.report.fail(f"{rnd.server.name}: client thread {slot}: {type(err).__name__}: {err}")
            return


def traffic(rnd, rng):
    """Runs the clients and kills the server at a random moment among
    them; returns when it was killed and what was in flight."""
    threads = [
        threading.Thread(target=client, args=(rnd, slot, rng.getrandbits(64)), daemon=True)
        for slot in range(THREADS)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(rng.uniform(*KILL_AFTER))
    rnd.killed.set()
    in_flight = [label for label in list(rnd.in_flight.values()) if label]
    killed_at = time.monotonic() - started
    rnd.server.kill()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT[1])
        if thread.is_alive():
            rnd.report.fail(f"{rnd.server.name}: a client thread still waits after the kill")
    return killed_at, in_flight


# --- after the kill: the databases as it left them -------------------------


def read_only(path):
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def check_databases(server, report):
    """integrity_check on every database in the data folder, the usage rows
    against their objects, the events' running deposit totals; and, for S3,
    the size record as the kill left it."""
    databases = sorted(server.data_dir.rglob("*.db"))
    if not databases:
        report.fail(f"{server.name}: no SQLite database in {server.data_dir}")
    server.databases = [str(path.relative_to(server.data_dir)) for path in databases]
    checked = set()  # the checks below run on the tables they find
    for path in databases:
        name = path.relative_to(server.data_dir)
        try:
            conn = read_only(path)
            try:
                verdict = [row[0] for row in conn.execute("PRAGMA integrity_check")]
                if verdict != ["ok"]:
                    report.spoil(
                        ("integrity", server.name, str(name), tuple(verdict)),
                        f"{server.name}: {name}: integrity_check says {verdict[:5]}",
                    )
                tables = {
                    row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")
                }
                if {"objects", "usage"} <= tables:
                    check_usage_rows(server, name, conn, report)
                    checked.add("usage rows")
                if "alert_events" in tables:
                    check_deposit_totals(server, name, conn, report)
                    checked.add("running deposit totals")
                if server.is_s3 and path.name == "s3-index.db":
                    server.recorded_sizes = {
                        (namespace, key): size
                        for namespace, key, size in conn.execute("SELECT namespace, key, size FROM objects")
                    }
                if path.name == "index.db":
                    count_unindexed(server, conn, report)
            finally:
                conn.close()
        except sqlite3.Error as err:
            report.spoil(("sqlite", server.name, str(name), str(err)), f"{server.name}: {name}: {err}")
    # A renamed table must not turn its check off unseen.
    unchecked = [what for what in ("usage rows", "running deposit totals") if what not in checked]
    if databases and unchecked:
        report.fail(
            f"{server.name}: no database has the tables of the {' or '.join(unchecked)} "
            f"({', '.join(server.databases)}), not checked"
        )


def check_usage_rows(server, name, conn, report):
    sums = {
        namespace: (total, count)
        for namespace, total, count in conn.execute(
            "SELECT namespace, SUM(size), COUNT(*) FROM objects GROUP BY namespace"
        )
    }
    rows = {
        namespace: (total, count)
        for namespace, total, count in conn.execute("SELECT namespace, bytes, files FROM usage")
    }
    for namespace in set(sums) | set(rows):
        expected = sums.get(namespace, (0, 0))
        row = rows.get(namespace, (0, 0))
        if row != expected:
            # Keyed by the difference: one wrong row is told once, however
            # the account's files change after.
            difference = (row[0] - expected[0], row[1] - expected[1])
            report.spoil(
                ("usage-row", server.name, str(name), namespace, difference),
                f"{server.name}: {name}: usage of {namespace} is {rows.get(namespace)} (bytes, files), "
                f"its objects sum to {expected}",
            )


def check_deposit_totals(server, name, conn, report):
    running, wrong = {}, collections.defaultdict(list)
    query = "SELECT user_id, seq, kind, amount, deposit_total FROM alert_events ORDER BY user_id, seq"
    for user, seq, kind, amount, stored in conn.execute(query):
        total = running.get(user, 0)
        if kind == "deposit":
            total += int(Decimal(amount).scaleb(TOTAL_SCALE))
        running[user] = total
        if stored is None or int.from_bytes(stored, "big", signed=True) != total:
            wrong[user].append((seq, stored, total))
    # The first wrong event of a user makes every later one wrong too.
    for user, events in wrong.items():
        seq, stored, total = events[0]
        shown = "nothing" if stored is None else int.from_bytes(stored, "big", signed=True)
        later = f" (and {len(events) - 1} later events of the user)" if len(events) > 1 else ""
        report.spoil(
            ("deposit-total", server.name, user, seq),
            f"{server.name}: {name}: event {seq} of user {user} stores a running deposit total of {shown} "
            f"(10^-{TOTAL_SCALE} units), its user's deposits sum to {total}{later}",
        )


def count_unindexed(server, conn, report):
    """Files the local index does not name: a crash between an upload's
    rename and its commit, or between a replace's commit and the old file's
    removal, leaves one (documented: kept, not swept)."""
    named = {(namespace, file) for namespace, file in conn.execute("SELECT namespace, file FROM objects")}
    accounts = server.data_dir / "files" / "accounts"
    unindexed = [
        path
        for path in accounts.glob("*/*")
        if not path.name.startswith(".") and (path.parent.name, path.name) not in named
    ]
    if len(unindexed) > server.unindexed:
        report.info(
            f"{server.name}: {len(unindexed) - server.unindexed} more stored file(s) no index entry names "
            f"({len(unindexed)} in all): left by a kill between an upload's rename and its commit, or a "
            "replace's commit and the old file's removal, as documented"
        )
    server.unindexed = len(unindexed)


def check_swept(server, report):
    """At start wren removes the temporary files of interrupted uploads."""
    left = list((server.data_dir / "files" / "accounts").glob("*/.*.tmp"))
    if left:
        report.fail(f"{server.name}: {len(left)} temporary upload file(s) left after restart, e.g. {left[0]}")


# --- after the restart: every write as the API shows it --------------------


def replayed_codes(history):
    """The codes the alert rules give each event of a history (oldest
    first), with the default thresholds: src/alerts/mod.rs in Python."""
    codes = []
    window = collections.deque()  # deposits (time, amount) within the window
    window_total = Decimal(0)
    deposits = []
    for i, (kind, amount, at) in enumerate(history):
        fired = []
        last = history[max(0, i - CONSECUTIVE_WITHDRAWALS + 1) : i + 1]
        if len(last) == CONSECUTIVE_WITHDRAWALS and all(k == "withdraw" for k, _, _ in last):
            fired.append(30)
        if kind == "deposit":
            window.append((at, amount))
            window_total += amount
            deposits.append(amount)
        while window and window[0][0] < at - DEPOSIT_WINDOW:
            window_total -= window.popleft()[1]
        if kind == "deposit" and window_total > WINDOW_DEPOSIT_TOTAL:
            fired.append(123)
        recent = deposits[-INCREASING_DEPOSITS:]
        if (
            kind == "deposit"
            and len(recent) == INCREASING_DEPOSITS
            and all(a < b for a, b in itertools.pairwise(recent))
        ):
            fired.append(300)
        if i >= BURST_COUNT and at - history[i - BURST_COUNT][2] <= BURST_WINDOW:
            fired.append(500)
        if kind == "withdraw" and amount > WITHDRAWAL_OVER:
            fired.append(1100)
        codes.append(fired)
    return codes


def get_json(server, token, path, login=None):
    """The JSON of a GET that must answer 200 (else Abort), with the token
    of `login`, when given, for the message."""
    answer = requests.get(server.url(path), headers=bearer(token), timeout=REQUEST_TIMEOUT)
    if answer.status_code != 200:
        who = f" as {login}" if login else ""
        raise Abort(f"{server.name}: GET {path}{who}: {answer.status_code} {answer.text[:200]}")
    return answer.json()


def stored_events(server, token, user):
    events, before = [], None
    while True:
        query = "?limit=500" + (f"&before={before}" if before else "")
        page = get_json(server, token, f"/api/v1/users/{user}/events{query}")
        events += page["events"]
        before = page["next_before"]
        if before is None:
            return events[::-1]


def verify_events(server, token, user, report):
    """Returns how many event records were checked."""
    name = server.name
    stored = stored_events(server, token, user)
    sent = server.events[user]
    seen = set()
    history = []
    for position, event in enumerate(stored):
        amount = Decimal(event["amount"])
        history.append((event["type"], amount, event["time"]))
        if position and event["time"] < stored[position - 1]["time"]:
            report.spoil(
                ("order", name, user, amount),
                f"{name}: user {user}'s stored events go back in time at {amount}",
            )
        record = sent.get(amount)
        if record is None:
            report.spoil(
                ("phantom", name, user, amount), f"{name}: user {user} has an event no one sent: {event}"
            )
            continue
        if amount in seen:
            report.spoil(("twice", name, user, amount), f"{name}: {record.describe()} is stored twice")
            continue
        seen.add(amount)
        if (event["type"], event["time"]) != (record.kind, record.time):
            report.spoil(("fields", name, user, amount), f"{name}: {record.describe()} is stored as {event}")
        if record.state == "absent":
            why = "was refused (409)" if record.refused_at is not None else "was absent after an earlier restart"
            report.spoil(
                ("resurrected", name, user, amount), f"{name}: {record.describe()} {why} but is stored"
            )
        elif record.state == "present" and event["alert_codes"] != record.codes:
            report.spoil(
                ("codes", name, user, amount),
                f"{name}: {record.describe()} answered codes {record.codes}, stored with {event['alert_codes']}",
            )
        record.state, record.codes = "present", event["alert_codes"]
    for amount, record in sent.items():
        if amount in seen:
            continue
        if record.state == "present":
            what = "acknowledged" if record.acknowledged else "seen after an earlier restart"
            report.lose(
                ("event", name, user, amount),
                f"{name}: {record.describe()} ({what}, codes {record.codes}) is gone",
            )
        record.state = "absent"
    for amount, record in sent.items():
        if record.refused_at is not None and not any(
            other.time > record.time and other.refused_at is None and other.sent_at < record.refused_at
            for other in sent.values()
        ):
            report.spoil(
                ("refused", name, user, amount),
                f"{name}: {record.describe()} was refused (409), but no later event of the user had been sent",
            )
    for (kind, amount, at), event, codes in zip(history, stored, replayed_codes(history), strict=True):
        if event["alert_codes"] != codes:
            report.spoil(
                ("replay", name, user, amount),
                f"{name}: event user {user} {kind} {amount} at {at} is stored with codes {event['alert_codes']}; "
                f"the rules over the stored history give {codes}",
            )
    return len(sent)


def list_files(server, token):
    """{key: (size, etag)} by GET /api/v1/files, and the keys of
    GET /api/files_keys."""
    listed, after = {}, ""
    while True:
        query = urllib.parse.urlencode({"limit": 1000, "after": after})
        page = get_json(server, token, f"/api/v1/files?{query}")
        for entry in page["files"]:
            listed[entry["key"]] = (entry["size"], entry["etag"])
        after = page["next_after"]
        if not after:
            break
    return listed, set(get_json(server, token, "/api/files_keys"))


def download(server, token, key, listed_size, report, where):
    """(digest, size) of the file as served, or "broken" when it is listed
    but does not come whole."""
    answer = requests.get(file_url(server, key), headers=bearer(token), timeout=REQUEST_TIMEOUT)
    if answer.status_code != 200:
        report.spoil(
            ("broken", server.name, where),
            f"{server.name}: {where} is listed ({listed_size} B) but GET answers {answer.status_code}: "
            f"{answer.text[:200]}",
        )
        return "broken"
    data = answer.content
    declared = answer.headers.get("Content-Length")
    if len(data) != listed_size or (declared is not None and int(declared) != listed_size):
        report.spoil(
            ("partial", server.name, where, len(data)),
            f"{server.name}: {where} is listed at {listed_size} B, served {len(data)} B (Content-Length {declared})",
        )
    return (digest(data), len(data))


def verify_files(server, account, report):
    """The account's files against the ledger, and its usage against them.
    Returns how many file records were checked."""
    listed, seed_keys = list_files(server, account.token)
    if seed_keys != set(listed):
        differ = sorted(seed_keys ^ set(listed))
        report.spoil(
            ("listings", server.name, account.login, tuple(differ)),
            f"{server.name}: {account.login}'s two listings differ: {differ[:5]}",
        )
    drifted = []
    for key in sorted(set(listed) | set(account.files)):
        record = account.files[key]
        in_flight = bool(record.maybes)
        observed = verify_file(server, account, key, listed.get(key), report)
        if server.is_s3:
            recorded = server.recorded_sizes.get((account.login, key))
            actual = None if observed in (None, "broken") else observed[1]
            if recorded == actual:
                pass
            elif in_flight:
                drifted.append((key, recorded, actual))
            else:
                where = f"{account.login}/{key}"
                report.spoil(
                    ("record", server.name, where, recorded, actual),
                    f"{server.name}: the S3 size record has {where} at {recorded} B, the bucket at {actual} B",
                )
    if drifted:
        rewrite_drifted(server, account, drifted, report)
        listed, _ = list_files(server, account.token)
    check_usage(server, account, listed, report)
    return len(account.files)


def verify_file(server, account, key, listing, report):
    """One key as served against what was sent to it; what it holds becomes
    what it must hold. Returns that: None, (digest, size) or "broken"."""
    name, record = server.name, account.files[key]
    where = f"{account.login}/{key}"
    observed = None
    if listing is not None:
        size, etag = listing
        observed = download(server, account.token, key, size, report, where)
    allowed = [record.current, *record.maybes]
    if observed == "broken" or observed in allowed:
        # The local ETag is the BLAKE3's first half; S3's is the store's.
        if observed not in (None, "broken") and not server.is_s3 and etag != f'"{observed[0][:32]}"':
            report.spoil(
                ("etag", name, where, etag),
                f"{name}: {where} has ETag {etag}, its bytes hash to {observed[0][:32]}",
            )
    elif observed is None:
        was = "acknowledged" if record.acknowledged_in else "seen after an earlier restart"
        report.lose(
            ("file", name, where, record.current),
            f"{name}: {where} ({was}, BLAKE3 {record.current[0][:16]}…, {record.current[1]} B) is gone",
        )
    elif record.current is None and not record.maybes:
        report.spoil(
            ("phantom-file", name, where, observed),
            f"{name}: {where} is stored ({observed[1]} B) but no write of it is pending",
        )
    else:
        versions = ", ".join("nothing" if v is None else f"{v[0][:16]}… ({v[1]} B)" for v in allowed)
        report.spoil(
            ("file-bytes", name, where, observed),
            f"{name}: {where} serves {observed[0][:16]}… ({observed[1]} B), none of the versions sent: {versions}",
        )
    record.current = None if observed == "broken" else observed
    record.maybes, record.uncertain = [], False
    return observed


def rewrite_drifted(server, account, drifted, report):
    """The S3 size record repairs a key's size at its next write."""
    sizes = "; ".join(
        f"{account.login}/{key}: record {recorded} B, bucket {actual} B" for key, recorded, actual in drifted
    )
    report.info(
        f"{server.name}: the S3 size record lagged the bucket on keys written at the kill ({sizes}), "
        "as documented; writing them again"
    )
    for key, _, _ in drifted:
        data = os.urandom(random.randint(1, SMALL_MAX))
        answer = requests.put(
            file_url(server, key), data=data, headers=bearer(account.token), timeout=REQUEST_TIMEOUT
        )
        if answer.status_code not in (200, 201):
            raise Abort(
                f"{server.name}: rewriting {account.login}/{key}: {answer.status_code} {answer.text[:200]}"
            )
        account.files[key].current = (digest(data), len(data))


def check_usage(server, account, listed, report):
    usage = get_json(server, account.token, "/api/v1/account", account.login)
    stored = (sum(size for size, _ in listed.values()), len(listed))
    if (usage["bytes_used"], usage["files"]) != stored:
        report.spoil(
            (
                "quota",
                server.name,
                account.login,
                usage["bytes_used"] - stored[0],
                usage["files"] - stored[1],
            ),
            f"{server.name}: {account.login} uses {usage['bytes_used']} B in {usage['files']} files by "
            f"/api/v1/account, its files add up to {stored[0]} B in {stored[1]}",
        )


def verify_account(server, account, report):
    """Signs the account in (and so checks it), then its files."""
    token = sign_in(server, account.login, account.password)
    name = server.name
    if token is None:
        if account.state == "present":
            report.lose(
                ("account", name, account.login), f"{name}: account {account.login} no longer signs in"
            )
        account.state = "absent"
        return 1
    if account.state == "absent":
        report.spoil(
            ("account-back", name, account.login), f"{name}: account {account.login} was absent, now signs in"
        )
    account.state = "present"
    account.token = token
    return 1 + verify_files(server, account, report)


def verify(server, report):
    """Everything sent to the server so far, as its API shows it now.
    Returns how many records were checked."""
    admin = sign_in(server, *ADMIN)
    if admin is None:
        raise Abort(f"{server.name}: the admin account given at start cannot sign in")
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        accounts = [
            pool.submit(verify_account, server, account, report) for account in list(server.accounts.values())
        ]
        events = [pool.submit(verify_events, server, admin, user, report) for user in sorted(server.events)]
        return sum(future.result() for future in accounts + events)


# --- the run ----------------------------------------------------------------


def setup(server, report):
    """Starts the server and makes the shared file accounts."""
    server.start()
    for _ in range(SHARED_ACCOUNTS):
        account = server.new_account()
        answer = requests.post(
            server.url("/api/sign_up"),
            json={"login": account.login, "password": account.password},
            timeout=REQUEST_TIMEOUT,
        )
        if answer.status_code != 201:
            raise Abort(
                f"{server.name}: sign-up of {account.login}: {answer.status_code} {answer.text[:200]}"
            )
        account.state = "present"
        account.token = sign_in(server, account.login, account.password)
        server.shared.append(account)
        report.acknowledged += 1


def play_round(number, rounds, server, report, rng):
    rnd = Round(number, server, report)
    problems_before = report.problems()
    killed_at, in_flight = traffic(rnd, rng)
    check_databases(server, report)
    server.start()
    check_swept(server, report)
    started = time.monotonic()
    checked = verify(server, report)
    took = time.monotonic() - started
    found = report.problems() - problems_before
    kinds = ", ".join(f"{what} {rnd.acknowledged[what]}" for what in sorted(rnd.sent))
    print(
        f"round {number}/{rounds} {server.name}: {sum(rnd.sent.values())} writes sent, "
        f"{sum(rnd.acknowledged.values())} acknowledged ({kinds}), {sum(rnd.refused.values())} refused, "
        f"{sum(rnd.unanswered.values())} unanswered; killed at {killed_at:.2f}s with {len(in_flight)} in flight"
        f"{': ' + '; '.join(sorted(in_flight)) if in_flight else ''}; checked {', '.join(server.databases)}, "
        f"then {checked} records verified in {took:.1f}s: "
        f"{'ok' if not found else f'{found} problem(s)'}",
        flush=True,
    )
    report.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", type=Path)
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("CHAOS_ROUNDS", DEFAULT_ROUNDS)))
    parser.add_argument(
        "--seed", type=int, default=int(os.environ.get("CHAOS_SEED", random.randrange(1 << 32)))
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the data folders and logs even when all passed"
    )
    args = parser.parse_args()
    binary = args.binary.resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        print(f"{sys.argv[0]}: {binary} is not an executable file", file=sys.stderr)
        return 2
    random.seed(args.seed)
    rng = random.Random(args.seed)
    report = Report()
    workdir = Path(tempfile.mkdtemp(prefix="wren-chaos-"))
    env = {name: value for name, value in os.environ.items() if not name.startswith(("S3_", "WREN_"))}
    env["WREN_ADMINS"] = f"{ADMIN[0]}:{ADMIN[1]}"
    servers = [Server("local", binary, workdir, [], env)]
    missing = [name for name in S3_VARIABLES if not os.environ.get(name)]
    if missing:
        print(
            f"S3 skipped: {', '.join(missing)} not set (make chaos runs under scripts/with-garage.sh)",
            flush=True,
        )
    else:
        s3_env = {**env, **{name: value for name, value in os.environ.items() if name.startswith("S3_")}}
        prefix = f"chaos-{args.seed:08x}-{os.getpid()}"
        servers.append(Server("s3", binary, workdir, ["--storage", "s3", "--s3-prefix", prefix], s3_env))
        print(
            f"S3: rounds alternate with a wren on {os.environ['S3_ENDPOINT']} "
            f"(bucket {os.environ['S3_BUCKET']}, prefix {prefix})",
            flush=True,
        )
    print(
        f"seed {args.seed} (CHAOS_SEED), {args.rounds} rounds, {THREADS} clients, data in {workdir}",
        flush=True,
    )
    rounds_run = 0
    started = time.monotonic()
    # Killed by a timeout, the driver still stops its servers (finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for server in servers:
            setup(server, report)
        for number in range(1, args.rounds + 1):
            play_round(number, args.rounds, servers[(number - 1) % len(servers)], report, rng)
            rounds_run = number
    except (Abort, requests.RequestException) as err:
        report.fail(str(err))
    finally:
        for server in servers:
            server.stop()
        report.flush()
    elapsed = time.monotonic() - started
    passed = not (report.lost or report.corrupt or report.failed)
    if passed and not args.keep:
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
    else:
        print(f"data folders and logs kept in {workdir}", flush=True)
    if report.failed:
        print(f"FAILED: {report.failed} check(s) failed (see above)", flush=True)
    print(f"{rounds_run} rounds in {elapsed:.0f}s ({elapsed / max(rounds_run, 1):.1f}s a round)", flush=True)
    print(
        f"rounds: {rounds_run}, acknowledged: {report.acknowledged}, lost: {report.lost}, corrupt: {report.corrupt}",
        flush=True,
    )
    return 0 if passed and rounds_run == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())

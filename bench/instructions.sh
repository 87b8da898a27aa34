#!/usr/bin/env bash
# Counts the instructions wren runs in user space per keep-alive GET, under
# valgrind's callgrind, with metrics and rate limits both off and both on
# (limits far above what is sent, so that every request pays for its
# token): what make bench's "within 10%" targets compare, but exact. The
# CPU figures wrk gives move by more than that on a machine shared with
# builds; these do not. What they leave out is the kernel's share (the
# socket calls, the same in both) and what instructions do not show
# (cache misses, waiting on a lock).
#
# Each figure is (instructions for N requests - instructions for none) / N
# on one connection, so start-up and shutdown cancel out. With
# KEEP=DIR the callgrind files stay in DIR, for callgrind_annotate (on a
# binary with symbols: CARGO_PROFILE_RELEASE_STRIP=false).
#
# Usage: bench/instructions.sh PATH/TO/wren [N]     (N default 2000)
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 || ! -x $1 ]]; then
    echo "usage: $0 PATH/TO/wren [REQUESTS]" >&2
    exit 2
fi
WREN_BIN=$(realpath "$1")
REQUESTS=${2:-2000}
if ! [[ $REQUESTS =~ ^[1-9][0-9]*$ ]]; then
    echo "REQUESTS must be a whole number, got '$REQUESTS'" >&2
    exit 2
fi
if ! command -v valgrind >/dev/null; then
    echo "valgrind is missing (apt-get install valgrind)" >&2
    exit 2
fi

# free_port, start_server, stop_server
source "$(dirname "$0")/lib.sh"
# Under callgrind wren runs tens of times slower: longer to answer at
# start, and to write its counts at exit.
START_SECONDS=30
STOP_SECONDS=30

WORKDIR=$(mktemp -d /tmp/wren-instructions.XXXXXX)
KEEP=${KEEP:-}
# The servers run in count's subshells, which stop them.
trap 'rm -rf "$WORKDIR"' EXIT

# requests PORT PATH N: N GETs of PATH, one after another on one
# connection, each answered 200 before the next is sent. A server that
# stops answering fails it (after 30 s, callgrind's pace allowed for).
requests() {
    python3 - "$@" <<'PY'
import socket, sys

port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def receive(sock):
    chunk = sock.recv(65536)
    if not chunk:
        sys.exit("the server closed the connection")
    return chunk


with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
    buf = b""
    for _ in range(n):
        sock.sendall(request)
        while b"\r\n\r\n" not in buf:
            buf += receive(sock)
        head, _, buf = buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            sys.exit(f"not a 200: {head.decode(errors='replace')}")
        lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")]
        length = int(lengths[0]) if lengths else 0
        while len(buf) < length:
            buf += receive(sock)
        buf = buf[length:]
PY
}

# count NAME PATH N ARGS...: the instructions of a wren started with ARGS
# that serves N requests for PATH, from start to exit.
count() {
    local name=$1 path=$2 n=$3 port out
    shift 3
    # This runs in a subshell ($(count ...)): end its server however it
    # ends.
    trap stop_servers EXIT
    free_port port
    out=$WORKDIR/$name.$n.callgrind
    rm -rf "$WORKDIR/data"
    # Ready once it answers (it listens before it has opened everything):
    # one GET /status in every run, which the subtraction cancels.
    start_server "$name" "$port" valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$WREN_BIN" --port "$port" --host 127.0.0.1 --data-dir "$WORKDIR/data" --threads 1 "$@"
    requests "$port" "$path" "$n"
    stop_server "$SERVER_PID"
    # One file per process; a thread's counts are in its process's file.
    awk '/^summary:/ { total += $2 } END { print total }' "$out"*
    if [[ -n $KEEP ]]; then
        mkdir -p "$KEEP"
        cp "$out"* "$KEEP/"
    fi
}

# per_request NAME PATH ARGS...: instructions per request.
per_request() {
    local name=$1 path=$2 none some
    shift 2
    none=$(count "$name" "$path" 0 "$@")
    some=$(count "$name" "$path" "$REQUESTS" "$@")
    echo $(((some - none) / REQUESTS))
}

echo "== instructions per keep-alive GET (callgrind, $REQUESTS requests, user space only)"
for path in /status /predict/123/december/4; do
    slug=$(tr -c 'a-z0-9\n' '-' <<<"${path#/}")
    off=$(per_request "off-$slug" "$path" --no-metrics --rate-limiting off)
    on=$(per_request "on-$slug" "$path" --rate-limiting on \
        --rate-limit 100000000 --rate-burst 100000000)
    awk -v path="$path" -v off="$off" -v on="$on" 'BEGIN {
        printf "  %s: off %d, on %d instructions/request (ratio %.3f)\n", path, off, on, on / off
    }'
done

# Sourced by bench/run.sh and bench/instructions.sh: loopback ports, and
# servers run in the background until they answer GET /status, then
# stopped. The caller sets WORKDIR (a server's output goes to
# $WORKDIR/NAME.out) and stops every server in PIDS from its EXIT trap;
# with COMMAND_LOG set, each server's command line is appended to that file
# (NAME, a tab, the command), for a report to quote.

PIDS=()       # every server started
USED_PORTS=() # so two servers never get the same port
# How long a server has to answer GET /status, and to exit after SIGTERM
# (bench/instructions.sh gives valgrind longer).
START_SECONDS=10
STOP_SECONDS=5
# Pause between two GET /status tries while a server starts; 0 polls in a
# tight loop (each try still forks a subshell: about a millisecond), for
# timing a start.
POLL_SECONDS=0.1

# log_command NAME COMMAND...: with COMMAND_LOG set, appends NAME, a tab
# and the command to it, for a report to quote.
log_command() {
    local name=$1
    shift
    if [[ -n ${COMMAND_LOG:-} ]]; then
        printf '%s\t%s\n' "$name" "$*" >>"$COMMAND_LOG"
    fi
}

# free_port VAR: sets VAR to a free loopback port: nothing answers a
# connect to it. Good enough on a quiet bench machine, and avoids needing
# ss or python. Taken below Linux's ephemeral range (32768 up), where
# wrk's closed connections leave their ports in TIME_WAIT, thousands of
# them against a server that closes after each answer; such a port refuses
# a bind though nothing listens on it. Not echoed: in a $(...) subshell
# the port would never reach USED_PORTS.
free_port() {
    local candidate # not "port", which callers pass as VAR
    while true; do
        candidate=$((20000 + RANDOM % 12000))
        [[ " ${USED_PORTS[*]} " == *" $candidate "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
            USED_PORTS+=("$candidate")
            printf -v "$1" '%s' "$candidate"
            return
        fi
    done
}

# status_ok PORT [https]: true once GET /status on PORT answers 200; over
# TLS (any certificate) with https. A subshell, so that the socket closes
# with it.
status_ok() (
    local port=$1 line
    if [[ ${2:-} == https ]]; then
        exec curl -skf -o /dev/null --max-time 5 "https://localhost:$port/status"
    fi
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
    read -r -t 5 line <&3 || exit 1
    [[ $line == "HTTP/1."?" 200 "* ]]
) 2>/dev/null

# start_server [--https] NAME PORT CMD...: runs CMD in the background, its
# stdout and stderr into $WORKDIR/NAME.out, and waits until /status on PORT
# answers (over TLS with --https). Sets SERVER_PID. Exits when it does not
# answer within START_SECONDS.
start_server() {
    local scheme=http name port deadline
    if [[ $1 == --https ]]; then
        scheme=https
        shift
    fi
    name=$1 port=$2
    shift 2
    log_command "$name" "$@"
    "$@" >"$WORKDIR/$name.out" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    deadline=$((SECONDS + START_SECONDS))
    until status_ok "$port" "$scheme"; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "$name exited before answering; its output:" >&2
            tail -n 20 "$WORKDIR/$name.out" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "$name did not answer GET /status on port $port within $START_SECONDS s" >&2
            exit 1
        fi
        [[ $POLL_SECONDS == 0 ]] || sleep "$POLL_SECONDS"
    done
}

# SIGTERM, then SIGKILL (and a word on stderr) if it lingers past
# STOP_SECONDS. nginx's master takes its workers along.
stop_server() {
    local pid=$1 deadline
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_SECONDS))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            echo "process $pid still runs $STOP_SECONDS s after SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
}

# Every server still running, as an EXIT trap does.
stop_servers() {
    local pid
    for pid in "${PIDS[@]}"; do
        stop_server "$pid"
    done
}

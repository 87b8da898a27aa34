#!/usr/bin/env bash
# Benchmarks wren on loopback against tiny_http, nginx and the seed projects'
# stack (Flask under gunicorn): requests/s, p50/p99 latency, the server's CPU
# time per request and its peak RSS for GET /status (at several
# concurrencies), over HTTP and HTTPS (and the cost of a TLS handshake),
# GET /predict, POST /login and POST /event; model evaluation speed; a
# 200 MiB file uploaded and downloaded (beside nginx and dd); and wren's
# footprint (idle RSS, binary and image size, start-up time).
# Prints figures and PASS/MISS lines, then writes them all into one report,
# BENCHMARKS.md with its chart bench/report.svg (bench/report.py); never
# fails on a missed target, since timings depend on the machine.
#
# Usage: bench/run.sh PATH/TO/wren
#   BENCH_SECONDS  seconds of each timed wrk run (default 8)
#   BENCH_ONLY     the sections to run (default: all of
#                  "status https login model event scale file footprint"); a run
#                  of some sections writes its report under target/bench/report
#                  instead, so that it never replaces the whole one
#   BENCH_NOTE     a sentence for the report's head (e.g. what else ran)
#   WREN_PG_BIN    a wren built with the cargo feature postgres, for the
#                  scale section (default: PATH/TO/wren, which must then
#                  have it)
set -euo pipefail

if [[ $# -ne 1 || ! -x $1 ]]; then
    echo "usage: $0 PATH/TO/wren" >&2
    exit 2
fi
WREN_BIN=$(realpath "$1")
WREN_PG_BIN=$(realpath "${WREN_PG_BIN:-$1}")
BENCH_SECONDS=${BENCH_SECONDS:-8}
if ! [[ $BENCH_SECONDS =~ ^[1-9][0-9]*$ ]]; then
    echo "BENCH_SECONDS must be a whole number of seconds, got '$BENCH_SECONDS'" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
# free_port, start_server, stop_server
source bench/lib.sh

ALL_SECTIONS="status https login model event scale file footprint"
SECTIONS=${BENCH_ONLY:-$ALL_SECTIONS}
for section in $SECTIONS; do
    if [[ " $ALL_SECTIONS " != *" $section "* ]]; then
        echo "BENCH_ONLY: no section '$section' (sections: $ALL_SECTIONS)" >&2
        exit 2
    fi
done
if [[ -z ${BENCH_ONLY:-} ]]; then
    REPORT_MD=BENCHMARKS.md REPORT_SVG=bench/report.svg
else
    REPORT_MD=target/bench/report/BENCHMARKS.md REPORT_SVG=target/bench/report/report.svg
fi

# The main figures' concurrency, and the sweep of GET /status.
MAIN_CONNECTIONS=50
SWEEP_CONNECTIONS=(1 10 50 200)
WRK_ARGS=(-t2 -c"$MAIN_CONNECTIONS")
CLK_TCK=$(getconf CLK_TCK)
CORES=$(getconf _NPROCESSORS_ONLN)
WORKDIR=$(mktemp -d /tmp/wren-bench.XXXXXX)

# What the report is made of (bench/report.py reads them): tab-separated
# files of one row per wrk run, single figures by key, the PASS/MISS lines
# and each command that started a server or moved a file; and what the
# sections without sockets printed.
FIGURES=$WORKDIR/figures.tsv
FACTS=$WORKDIR/facts.tsv
TARGETS=$WORKDIR/targets.tsv
COMMAND_LOG=$WORKDIR/commands.tsv
MODEL_BENCH=$WORKDIR/model-bench.txt
SECTION=

SAMPLER_PID=
# The scale section's PostgreSQL server, in a folder of its own (as root
# the cluster belongs to the user postgres, who cannot enter WORKDIR).
PG_DIR=
cleanup() {
    [[ -z $SAMPLER_PID ]] || stop_server "$SAMPLER_PID"
    stop_servers
    if [[ -n $PG_DIR ]]; then
        scripts/postgres.sh stop "$PG_DIR" 2>/dev/null || true
        rm -rf "$PG_DIR"
    fi
    rm -rf "$WORKDIR"
}
trap cleanup EXIT

# --- setup -------------------------------------------------------------------

# A fresh machine may lack them; apt-get update only when something is missing.
install_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    nginx_bin >/dev/null || missing+=(nginx-light)
    [[ ${#missing[@]} -eq 0 ]] && return
    echo "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    if ! apt-get install -y -q "${missing[@]}"; then
        # Newer Debian releases dropped the nginx-light flavour.
        apt-get install -y -q "${missing[@]/nginx-light/nginx}"
    fi
}

# /usr/sbin is not on every user's PATH.
nginx_bin() {
    command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; }
}

# The seeds' stack: Flask, gunicorn and scikit-learn in a venv of their own,
# rebuilt from scratch only when the pins change; then the model behind its
# /predict, fitted and pickled for this run (a few seconds).
install_flask() {
    local venv=target/bench/flask-venv req=bench/flask-seed/requirements.txt
    if [[ ! $venv/.installed -nt $req ]]; then
        echo "installing Flask, gunicorn and scikit-learn into $venv"
        python3 -m venv --clear "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
        touch "$venv/.installed"
    fi
    GUNICORN_BIN=$venv/bin/gunicorn
    SEED_MODEL=$WORKDIR/seed-model.pickle
    "$venv/bin/python" bench/flask-seed/train_model.py "$SEED_MODEL" | sed 's/^/  /'
}

build_tinyhttp() {
    cargo build --release --quiet \
        --manifest-path bench/tinyhttp-status/Cargo.toml --target-dir target/bench
    TINYHTTP_BIN=target/bench/release/tinyhttp-status
}

# --- servers -----------------------------------------------------------------

# Direct children of PID, from /proc so that procps is not needed.
children_of() {
    local parent=$1 f stat fields
    for f in /proc/[0-9]*/stat; do
        read -r stat 2>/dev/null <"$f" || continue
        read -ra fields <<<"${stat##*) }" # fields[1] is the ppid
        [[ ${fields[1]} == "$parent" ]] && echo "${f//[^0-9]/}"
    done
    return 0
}

# cpu_ticks PID...: utime + stime summed over the processes (all their
# threads included), in clock ticks.
cpu_ticks() {
    local pid stat fields total=0
    for pid in "$@"; do
        stat=$(<"/proc/$pid/stat")
        # The command name may hold spaces; fields after it start at field 3.
        read -ra fields <<<"${stat##*) }"
        total=$((total + fields[11] + fields[12])) # fields 14 and 15
    done
    echo "$total"
}

# --- measuring ---------------------------------------------------------------

# status_kib VAR PID FIELD: sets VAR to FIELD (VmRSS, VmHWM) of
# /proc/PID/status in KiB, 0 when the process is gone. No fork, so a sampler
# can call it often.
status_kib() {
    local key value unit
    printf -v "$1" 0
    while read -r key value unit; do
        if [[ $key == "$3:" ]]; then
            printf -v "$1" '%s' "$value"
            return
        fi
    done <"/proc/$2/status" 2>/dev/null || true
}

# sample_rss OUT PID...: every 0.1 s, the VmRSS of the processes summed
# (pages they share count once per process); on SIGTERM, writes the largest
# seen, in KiB, to OUT and exits. Start it in the background.
sample_rss() {
    local out=$1 peak=0 total rss pid
    shift
    # Written once, at the end: a kill during a write could leave OUT empty.
    trap 'echo "$peak" >"$out"; exit 0' TERM
    while true; do
        total=0
        for pid in "$@"; do
            status_kib rss "$pid" VmRSS
            total=$((total + rss))
        done
        ((total > peak)) && peak=$total
        sleep 0.1
    done
}

# start_sampler PID... and stop_sampler: sample_rss in the background;
# stop_sampler sets PEAK_RSS_KIB.
start_sampler() {
    SAMPLER_OUT=$WORKDIR/rss-peak
    rm -f "$SAMPLER_OUT"
    sample_rss "$SAMPLER_OUT" "$@" &
    SAMPLER_PID=$!
}
stop_sampler() {
    stop_server "$SAMPLER_PID"
    SAMPLER_PID=
    PEAK_RSS_KIB=$(cat "$SAMPLER_OUT" 2>/dev/null || echo 0)
}

# kib_to_mib KIB: in MiB, two decimals.
kib_to_mib() {
    awk -v k="$1" 'BEGIN { printf "%.2f", k / 1024 }'
}

# latency_ms PERCENTILE: from wrk --latency output on stdin, that line of its
# latency distribution (e.g. 99%) in milliseconds.
latency_ms() {
    awk -v q="$1" '/Latency Distribution/ { on = 1; next }
        on && $1 == q {
            v = $2; unit = v; sub(/^[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
            scale = unit == "us" ? 0.001 : unit == "ms" ? 1 : unit == "s" ? 1000 : unit == "m" ? 60000 : 0
            printf "%.3f", v * scale; exit
        }'
}

# run_wrk URL [WRK ARGS...]: one timed wrk run. Sets WRK_REQUESTS, WRK_RPS,
# WRK_P50 and WRK_P99 (ms), WRK_ERRORS (socket errors and non-2xx/3xx
# answers), WRK_COMMAND and WRK_OUTPUT (what a script's done() printed is
# in it), and warns about errors, which skew the figures.
run_wrk() {
    local url=$1 out
    shift
    # Quoted as a shell would need it (-H 'Connection: close').
    WRK_COMMAND=$(printf '%q ' wrk "${WRK_ARGS[@]}" --latency -d"${BENCH_SECONDS}s" "$@" "$url")
    WRK_COMMAND=${WRK_COMMAND% }
    out=$(wrk "${WRK_ARGS[@]}" --latency -d"${BENCH_SECONDS}s" "$@" "$url")
    WRK_OUTPUT=$out
    WRK_REQUESTS=$(awk '/ requests in /{print $1}' <<<"$out")
    WRK_RPS=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
    WRK_P50=$(latency_ms 50% <<<"$out")
    WRK_P99=$(latency_ms 99% <<<"$out")
    WRK_ERRORS=$(awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { n += $NF } END { print n + 0 }' <<<"$out")
    WRK_REQUESTS=${WRK_REQUESTS:-0} WRK_RPS=${WRK_RPS:-0} WRK_P50=${WRK_P50:-0} WRK_P99=${WRK_P99:-0}
    if grep -qE 'Socket errors|Non-2xx' <<<"$out"; then
        echo "  warning, from wrk:" $(grep -E 'Socket errors|Non-2xx' <<<"$out")
    fi
}

# measure NAME URL PID...: warm-up, then a timed run with the CPU time of the
# given processes read around it and their RSS sampled through it. Appends
# a row to RESULTS, which each section empties before its first measure and
# prints with report, and one to FIGURES for the report.
RESULTS=()
measure() {
    local name=$1 url=$2 before after us rss_mib connections
    shift 2
    wrk "${WRK_ARGS[@]}" -d1s "$url" >/dev/null
    start_sampler "$@"
    before=$(cpu_ticks "$@")
    run_wrk "$url"
    after=$(cpu_ticks "$@")
    stop_sampler
    us=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$WRK_REQUESTS" \
        'BEGIN { printf "%.2f", (n > 0 ? t / hz * 1e6 / n : 0) }')
    rss_mib=$(kib_to_mib "$PEAK_RSS_KIB")
    connections=$(sed -n 's/.*-c\([0-9]*\).*/\1/p' <<<"${WRK_ARGS[*]}")
    RESULTS+=("$name $WRK_RPS $WRK_REQUESTS $us $WRK_P50 $WRK_P99 $rss_mib")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$SECTION" "$name" "$url" \
        "$connections" "$WRK_RPS" "$WRK_REQUESTS" "$us" "$WRK_P50" "$WRK_P99" "$rss_mib" \
        "$WRK_ERRORS" "$WRK_COMMAND" >>"$FIGURES"
    printf '  %s: %s req/s, %s requests, %s ticks of CPU, p99 %s ms\n' \
        "$name" "$WRK_RPS" "$WRK_REQUESTS" $((after - before)) "$WRK_P99"
}

# sweep NAME URL PID...: measure at each of SWEEP_CONNECTIONS, as NAME at
# MAIN_CONNECTIONS (the main figure) and as NAME-cN at N connections.
sweep() {
    local name=$1 url=$2 c label
    shift 2
    for c in "${SWEEP_CONNECTIONS[@]}"; do
        label=$name
        [[ $c == "$MAIN_CONNECTIONS" ]] || label=$name-c$c
        # Dynamic scoping: measure and run_wrk see this WRK_ARGS; wrk wants
        # no more threads than connections.
        local WRK_ARGS=(-t$((c < 2 ? c : 2)) -c"$c")
        measure "$label" "$url" "$@"
    done
}

# fact KEY VALUE [TEXT]: a single figure for the report, printed as
# "TEXT: VALUE" when TEXT is given.
fact() {
    printf '%s\t%s\t%s\n' "$SECTION" "$1" "$2" >>"$FACTS"
    [[ -z ${3:-} ]] || printf '  %s: %s\n' "$3" "$2"
}

# Lines at warning level or worse in a server's log, so that a fast but
# failing server does not go unnoticed. Any case: gunicorn writes [ERROR].
log_problems() {
    local name=$1 file=$2 count
    count=$(grep -ciE '\[(warn|warning|error|crit|critical|alert|emerg)\]' "$file" || true)
    if [[ $count -gt 0 ]]; then
        echo "  warning: $count problem lines in $name's log; the last ones:"
        grep -iE '\[(warn|warning|error|crit|critical|alert|emerg)\]' "$file" | tail -n 5 | sed 's/^/    /'
    fi
}

# result NAME FIELD: field FIELD of NAME's row in RESULTS (1 req/s, 3 CPU
# µs/req), or 0 when there is none.
result() {
    local row fields
    for row in "${RESULTS[@]}"; do
        read -r -a fields <<<"$row"
        [[ ${fields[0]} == "$1" ]] && echo "${fields[$2]}" && return
    done
    echo 0
}

# verdict LABEL PASS|MISS DETAIL: a target's line, printed and kept for the
# report.
verdict() {
    printf '%s: %s (%s)\n' "$1" "$2" "$3"
    printf '%s\t%s\t%s\t%s\n' "$SECTION" "$1" "$2" "$3" >>"$TARGETS"
}

# judge_ratio LABEL OURS THEIRS LIMIT le|ge: PASS when OURS / THEIRS is at
# most (le) or at least (ge) LIMIT.
judge_ratio() {
    local line
    line=$(awk -v a="$2" -v b="$3" -v lim="$4" -v op="$5" 'BEGIN {
        if (a <= 0 || b <= 0) { print "MISS\tno figure for the comparison"; exit }
        r = a / b
        printf "%s\tratio %.3f\n", ((op == "le" ? r <= lim : r >= lim) ? "PASS" : "MISS"), r
    }')
    verdict "$1" "${line%%$'\t'*}" "${line#*$'\t'}"
}

# judge_below LABEL VALUE LIMIT UNIT: PASS when 0 < VALUE < LIMIT.
judge_below() {
    local verdict=MISS
    awk -v v="$2" -v lim="$3" 'BEGIN { exit !(v > 0 && v < lim) }' && verdict=PASS
    verdict "$1" "$verdict" "$2 $4"
}

# target LABEL NAME OTHER LIMIT: PASS when NAME's CPU/req <= LIMIT x OTHER's.
target() {
    judge_ratio "$1" "$(result "$2" 3)" "$(result "$3" 3)" "$4" le
}

# target_rate LABEL NAME OTHER FACTOR: PASS when NAME serves at least
# FACTOR x OTHER's requests/s.
target_rate() {
    judge_ratio "$1" "$(result "$2" 1)" "$(result "$3" 1)" "$4" ge
}

report() {
    local row name rps requests us p50 p99 rss
    echo
    # One column wider for µs, two bytes but one character.
    printf '%-17s %12s %10s %15s %10s %10s %9s\n' server req/s requests 'CPU µs/req' \
        'p50 ms' 'p99 ms' 'RSS MiB'
    for row in "${RESULTS[@]}"; do
        read -r name rps requests us p50 p99 rss <<<"$row"
        printf '%-17s %12s %10s %14s %10s %10s %9s\n' "$name" "$rps" "$requests" "$us" \
            "$p50" "$p99" "$rss"
    done
    echo
}

# --- sections ----------------------------------------------------------------

# nginx_conf DIR PORT [LINES]: nginx's configuration, running in DIR and
# answering GET /status on PORT, with LINES added to its server block.
nginx_conf() {
    local dir=$1 port=$2 lines=${3:-}
    # As root, nginx would hand its workers to nobody, who cannot enter the
    # private temp dir; keep them as the current user either way.
    [[ $EUID -eq 0 ]] && echo "user $(id -un) $(id -gn);"
    cat <<EOF
worker_processes 2;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
    # Logged like wren, which writes an access-log line per request; turning
    # it off would flatter nginx.
    access_log $dir/access.log;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    default_type text/plain;
    server {
        listen 127.0.0.1:$port;
        location = /status { return 200 "Alive!"; }
        $lines
    }
}
EOF
}

# start_flask NAME PORT: the seeds' Flask app under gunicorn, its account
# the one wren's login section has. Sets SERVER_PID (the master) and
# SERVER_PIDS (the master and both workers, to count their CPU time).
# Threaded workers keep connections alive as wren does; sync workers close
# after each answer and cost more CPU per request. --preload imports the app
# (scikit-learn: seconds) once, before forking, so that no worker is still
# importing when the timed run starts. --no-control-socket: gunicorn 27
# would otherwise open one under ~/.gunicorn.
start_flask() {
    local name=$1 port=$2 dir=$WORKDIR/$1 i pids
    # Dynamic scoping: start_server sees this; the import takes seconds.
    local START_SECONDS=60
    mkdir -p "$dir"
    start_server "$name" "$port" env SEED_USER=bench:bench-password SEED_MODEL="$SEED_MODEL" \
        "$GUNICORN_BIN" --chdir bench/flask-seed --preload \
        --bind "127.0.0.1:$port" --workers 2 --worker-class gthread --threads 4 \
        --access-logfile "$dir/access.log" --no-control-socket app:app
    # It answers once its first worker is up; wait for both, to count both.
    for ((i = 0; i < 100; i++)); do
        mapfile -t pids < <(children_of "$SERVER_PID")
        [[ ${#pids[@]} -ge 2 ]] && break
        sleep 0.1
    done
    SERVER_PIDS=("$SERVER_PID" "${pids[@]}")
}

# start_nginx [--https] NAME PORT: nginx with the configuration
# $WORKDIR/NAME/nginx.conf, in that folder. Sets SERVER_PID and SERVER_PIDS
# (master and workers).
start_nginx() {
    local https=() dir pids
    if [[ $1 == --https ]]; then
        https=(--https)
        shift
    fi
    dir=$WORKDIR/$1
    start_server "${https[@]}" "$1" "$2" "$(nginx_bin)" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
    mapfile -t pids < <(children_of "$SERVER_PID")
    SERVER_PIDS=("$SERVER_PID" "${pids[@]}")
}

# GET /status over keep-alive: the cost of the request path itself, at each
# of SWEEP_CONNECTIONS for each server (the figures at MAIN_CONNECTIONS are
# the main ones); GET /predict on wren and on the Flask seed; and wren's
# resident memory idle, after start and after that load.
bench_status() {
    local port wren_answer flask_answer rss idle_start idle_after predict=/predict/123/december/4
    RESULTS=()
    echo "== GET /status: wrk -d${BENCH_SECONDS}s at ${SWEEP_CONNECTIONS[*]} connections (2 threads, 1 for 1), keep-alive, after a 1 s warm-up each"

    free_port port
    mkdir -p "$WORKDIR/wren-data"
    # No per-address cap: the sweep's 200 connections all come from
    # 127.0.0.1, past the default 64.
    start_server wren "$port" "$WREN_BIN" --port "$port" --host 127.0.0.1 \
        --data-dir "$WORKDIR/wren-data" --max-connections-per-ip 0
    sleep 1
    status_kib rss "$SERVER_PID" VmRSS
    idle_start=$(kib_to_mib "$rss")
    fact wren_idle_rss_start_mib "$idle_start" "wren's RSS, idle 1 s after start (MiB)"
    sweep wren "http://127.0.0.1:$port/status" "$SERVER_PID"
    # The seed's prediction route on the embedded model, same server.
    measure wren-predict "http://127.0.0.1:$port$predict" "$SERVER_PID"
    wren_answer=$(curl -s "http://127.0.0.1:$port$predict")
    sleep 2
    status_kib rss "$SERVER_PID" VmRSS
    idle_after=$(kib_to_mib "$rss")
    fact wren_idle_rss_after_load_mib "$idle_after" "wren's RSS, idle 2 s after that load (MiB)"
    stop_server "$SERVER_PID"
    log_problems wren "$WORKDIR/wren.out"

    # What /metrics and the rate limits cost: both off, then both on (limits
    # far above what wrk sends, so that nothing is refused and each request
    # pays for its token), in the same run. /status is a health check,
    # which the limits skip; /predict pays for both.
    bench_wren_with off "$WORKDIR/wren-off" --no-metrics --rate-limiting off
    bench_wren_with on "$WORKDIR/wren-on" --rate-limiting on \
        --rate-limit 100000000 --rate-burst 100000000

    free_port port
    start_server tiny_http "$port" "$TINYHTTP_BIN" "$port"
    sweep tiny_http "http://127.0.0.1:$port/status" "$SERVER_PID"
    stop_server "$SERVER_PID"

    free_port port
    mkdir -p "$WORKDIR/nginx"
    nginx_conf "$WORKDIR/nginx" "$port" >"$WORKDIR/nginx/nginx.conf"
    start_nginx nginx "$port"
    sweep nginx "http://127.0.0.1:$port/status" "${SERVER_PIDS[@]}"
    stop_server "$SERVER_PID"
    log_problems nginx "$WORKDIR/nginx/error.log"

    free_port port
    start_flask flask "$port"
    sweep flask "http://127.0.0.1:$port/status" "${SERVER_PIDS[@]}"
    measure flask-predict "http://127.0.0.1:$port$predict" "${SERVER_PIDS[@]}"
    flask_answer=$(curl -s "http://127.0.0.1:$port$predict")
    stop_server "$SERVER_PID"
    log_problems flask "$WORKDIR/flask.out"
    fact predict_answers "wren $wren_answer, Flask $flask_answer" "GET $predict answered"
    if [[ $wren_answer != "$flask_answer" ]]; then
        echo "  warning: wren and the Flask seed predict differently; the comparison is off"
    fi

    report
    target "wren /status CPU/req <= 1.2x nginx's" wren nginx 1.2
    target "wren /status CPU/req <= 0.6x tiny_http's" wren tiny_http 0.6
    target "wren /status CPU/req <= 1/20 of Flask's" wren flask 0.05
    target "wren /predict CPU/req <= 1/20 of Flask's" wren-predict flask-predict 0.05
    target "wren /predict CPU/req <= 1.5x /status" wren-predict wren 1.5
    target "wren /status CPU/req, metrics and rate limits on, within 10% of both off" \
        wren-on wren-off 1.1
    target "wren /predict CPU/req, metrics and rate limits on, within 10% of both off" \
        wren-on-predict wren-off-predict 1.1
    judge_below "wren idle RSS after start < 8 MiB" "$idle_start" 8 MiB
    judge_below "wren idle RSS after the load < 8 MiB" "$idle_after" 8 MiB
}

# bench_wren_with LABEL DATA-DIR ARGS...: wren with ARGS, measured on
# /status as wren-LABEL and on /predict as wren-LABEL-predict.
bench_wren_with() {
    local label=$1 data=$2 port
    shift 2
    free_port port
    mkdir -p "$data"
    start_server "wren-$label" "$port" "$WREN_BIN" --port "$port" --host 127.0.0.1 \
        --data-dir "$data" "$@"
    measure "wren-$label" "http://127.0.0.1:$port/status" "$SERVER_PID"
    measure "wren-$label-predict" "http://127.0.0.1:$port/predict/123/december/4" "$SERVER_PID"
    stop_server "$SERVER_PID"
    log_problems "wren-$label" "$WORKDIR/wren-$label.out"
}

# nginx serving /status over TLS with CERT and KEY: the peer for HTTPS.
nginx_tls_conf() {
    local dir=$1 port=$2 cert=$3 key=$4
    nginx_conf "$dir" "$port" | sed "s|listen 127.0.0.1:$port;|listen 127.0.0.1:$port ssl;\n        ssl_certificate $cert;\n        ssl_certificate_key $key;\n        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_session_tickets off;\n        ssl_session_cache off;|"
}

# measure, with a new connection for every request (wrk reconnects when
# the server closes; it does not resume TLS sessions).
measure_handshakes() {
    # Dynamic scoping: measure and run_wrk see this WRK_ARGS.
    local WRK_ARGS=("${WRK_ARGS[@]}" -H 'Connection: close')
    measure "$@"
}

# GET /status over HTTPS: the cost of TLS once a connection is up (the same
# server answers the same route over plain HTTP on its redirect listener,
# so the two figures differ by TLS alone), and the cost of a TLS 1.3
# handshake (one new connection per request, no session resumption).
bench_https() {
    local port plain dir cert key
    RESULTS=()
    echo "== GET /status over HTTPS (TLS 1.3, P-256 certificate): wrk ${WRK_ARGS[*]} -d${BENCH_SECONDS}s"
    cert=$WORKDIR/tls.pem key=$WORKDIR/tls.key
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$key" -out "$cert" -days 2 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost 2>/dev/null

    free_port port
    free_port plain
    mkdir -p "$WORKDIR/wren-tls-data"
    # No per-address cap: wrk's 50 connections all come from 127.0.0.1, and
    # with a new one per request, closing ones still count for a moment.
    start_server wren-tls "$plain" "$WREN_BIN" --port "$port" --redirect-port "$plain" \
        --host 127.0.0.1 --tls-cert "$cert" --tls-key "$key" --data-dir "$WORKDIR/wren-tls-data" \
        --max-connections-per-ip 0
    measure wren-http "http://127.0.0.1:$plain/status" "$SERVER_PID"
    measure wren-https "https://localhost:$port/status" "$SERVER_PID"
    measure_handshakes wren-hs "https://localhost:$port/status" "$SERVER_PID"
    stop_server "$SERVER_PID"
    log_problems wren "$WORKDIR/wren-tls.out"

    free_port port
    dir=$WORKDIR/nginx-tls
    mkdir -p "$dir"
    nginx_tls_conf "$dir" "$port" "$cert" "$key" >"$dir/nginx.conf"
    start_nginx --https nginx-tls "$port"
    measure nginx-https "https://localhost:$port/status" "${SERVER_PIDS[@]}"
    measure_handshakes nginx-hs "https://localhost:$port/status" "${SERVER_PIDS[@]}"
    stop_server "$SERVER_PID"
    log_problems nginx "$dir/error.log"

    report
    echo "  (-hs rows: a TLS 1.3 handshake per request; req/s is new connections/s)"
    target "wren HTTPS CPU/req <= 1.5x plain HTTP, after the handshake" wren-https wren-http 1.5
    target "wren HTTPS CPU/req <= 1.5x nginx HTTPS" wren-https nginx-https 1.5
    target "wren CPU/handshake <= 1.5x nginx's" wren-hs nginx-hs 1.5
}

# A successful POST /login, one client at a time (latency) and one per core
# (throughput; the main figure), on wren and on the Flask seed. wren's cost
# is the argon2id hash check (m=19 MiB, t=2, p=1) by design; the seeds
# compare the password in plain text.
bench_login() {
    local port script
    RESULTS=()
    script=$WORKDIR/login.lua
    cat >"$script" <<'LUA'
wrk.method = "POST"
wrk.body = '{"username":"bench","password":"bench-password"}'
wrk.headers["Content-Type"] = "application/json"
LUA
    # Dynamic scoping: measure and run_wrk see this WRK_ARGS.
    local WRK_ARGS
    echo "== POST /login (JSON, an account given at start): wrk -d${BENCH_SECONDS}s, 1 and $MAIN_CONNECTIONS connections"
    echo "   wren checks the password with argon2id (15 ms) and then remembers it for"
    echo "   --password-cache-seconds (300): these logins repeat one, as a client signing in"
    echo "   again does; wren-argon2 ($CORES connections) remembers none, so every login is a"
    echo "   first one. The Flask seed compares plain text."

    free_port port
    mkdir -p "$WORKDIR/wren-login"
    start_server wren-login "$port" "$WREN_BIN" --port "$port" --host 127.0.0.1 \
        --data-dir "$WORKDIR/wren-login" --user "bench:bench-password"
    WRK_ARGS=(-t1 -c1 -s "$script")
    measure wren-1client "http://127.0.0.1:$port/login" "$SERVER_PID"
    WRK_ARGS=(-t2 -c"$MAIN_CONNECTIONS" -s "$script")
    measure wren "http://127.0.0.1:$port/login" "$SERVER_PID"
    stop_server "$SERVER_PID"
    log_problems wren-login "$WORKDIR/wren-login.out"

    # Every core busy hashing: more connections would only queue.
    free_port port
    start_server wren-login-argon2 "$port" "$WREN_BIN" --port "$port" --host 127.0.0.1 \
        --data-dir "$WORKDIR/wren-login" --user "bench:bench-password" --password-cache-seconds 0
    WRK_ARGS=(-t"$CORES" -c"$CORES" -s "$script")
    measure wren-argon2 "http://127.0.0.1:$port/login" "$SERVER_PID"
    stop_server "$SERVER_PID"
    log_problems wren-login-argon2 "$WORKDIR/wren-login-argon2.out"

    free_port port
    start_flask flask-login "$port"
    WRK_ARGS=(-t1 -c1 -s "$script")
    measure flask-1client "http://127.0.0.1:$port/login" "${SERVER_PIDS[@]}"
    WRK_ARGS=(-t2 -c"$MAIN_CONNECTIONS" -s "$script")
    measure flask "http://127.0.0.1:$port/login" "${SERVER_PIDS[@]}"
    stop_server "$SERVER_PID"
    log_problems flask "$WORKDIR/flask-login.out"

    report
    target "wren POST /login CPU/req <= 1/20 of Flask's, $MAIN_CONNECTIONS clients (a password remembered after its argon2id check)" \
        wren flask 0.05
}

# Without sockets: model evaluation (single rows and 1000-row batches), and
# what routing and handling cost per route.
# Their output goes into the report as it is.
bench_model() {
    echo "== model evaluation and dispatch, without sockets: cargo bench"
    RUSTFLAGS='-C target-feature=+crt-static' cargo bench --quiet \
        --target x86_64-unknown-linux-gnu --bench model_eval --bench dispatch | tee "$MODEL_BENCH"
}

# event_script BLOCKS_FILE: the wrk script for POST /event. Each user sends
# the 8 events of its pattern, 1000 ms apart, which make every rule fire.
# A user's next event leaves only once the answer to its previous one is back
# (response() reads the user_id in it): wrk sends a thread's consecutive
# requests on different connections, which a server may handle in either
# order, and wren answers 409 when a user's times go backwards. For the same
# reason every wrk thread, of the warm-up as of the timed run, takes its own
# block of a million user ids from the counter in BLOCKS_FILE.
event_script() {
    printf 'local blocks_file = "%s"\n' "$1"
    cat <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

-- Types and amounts in cents. Per user: 1100 once (event 4), 30 once (6),
-- 300 once (7), 123 twice (7, 8), 500 three times (6 to 8).
local pattern = {
   {"deposit", 6000}, {"withdraw", 3000}, {"deposit", 7000}, {"withdraw", 15000},
   {"withdraw", 2000}, {"withdraw", 1000}, {"deposit", 8000}, {"deposit", 4000},
}

-- Main state: hands out the id blocks, then sums the threads' counts.
local threads = {}

function setup(thread)
   local f = io.open(blocks_file, "r")
   local block = f and tonumber(f:read("*a")) or 0
   if f then f:close() end
   f = assert(io.open(blocks_file, "w"))
   f:write(block + 1)
   f:close()
   thread:set("next_user", block * 1000000 + 1)
   table.insert(threads, thread)
end

-- Thread state: sent[user] counts the events sent for each user in flight,
-- ready holds the users whose answer is back.
local sent, ready = {}, {}
answers, fired = 0, {}

function request()
   local user = table.remove(ready)
   if not user then
      user, next_user = next_user, next_user + 1
      sent[user] = 0
   end
   local n = sent[user] + 1
   sent[user] = n
   -- A few cents more for some users: amounts vary, which rules fire does not.
   local cents = pattern[n][2] + user % 50
   return wrk.format(nil, nil, nil, string.format(
      '{"type":"%s","amount":"%d.%02d","user_id":%d,"time":%d}',
      pattern[n][1], math.floor(cents / 100), cents % 100, user, n * 1000))
end

function response(status, headers, body)
   local user = tonumber(body:match('"user_id":%s*(%d+)'))
   -- wrk counts non-2xx answers; such a user is dropped.
   if status ~= 200 or not sent[user] then return end
   if sent[user] < #pattern then
      table.insert(ready, user)
   else
      sent[user] = nil
   end
   answers = answers + 1
   local codes = body:match('"alert_codes":%s*%[([^%]]*)%]') or ""
   for code in codes:gmatch("%d+") do
      fired[code] = (fired[code] or 0) + 1
   end
end

function done(summary, latency, requests)
   local total, counts = 0, {}
   for _, thread in ipairs(threads) do
      total = total + thread:get("answers")
      for code, count in pairs(thread:get("fired")) do
         counts[code] = (counts[code] or 0) + count
      end
   end
   local line = "alerts per 1000 answers:"
   for _, code in ipairs({"30", "123", "300", "500", "1100"}) do
      line = line .. string.format(" %s=%.0f", code, (counts[code] or 0) * 1000 / math.max(total, 1))
   end
   print(line)
end
LUA
}

# POST /event: wren against the seed's stack, Flask under gunicorn, both with
# an access log written to a file.
bench_event() {
    local port script
    RESULTS=()
    script=$WORKDIR/event.lua
    event_script "$WORKDIR/event-blocks" >"$script"
    # Dynamic scoping: measure and run_wrk see this WRK_ARGS.
    local WRK_ARGS=(-t2 -c"$MAIN_CONNECTIONS" -s "$script")
    echo "== POST /event: wrk ${WRK_ARGS[*]:0:2} -d${BENCH_SECONDS}s, keep-alive, after a 1 s warm-up"
    # Users cut short by the end of the run make the shares a little lower.
    echo "   8 events per user; a server that sees each user's whole history fires, per 1000"
    echo "   answers, about 30=125 123=250 300=125 500=375 1100=125"
    echo "   durability: wren stores events in SQLite, WAL mode, synchronous = FULL: each answer"
    echo "   comes after the fsync of the commit holding its event (events waiting together"
    echo "   share one commit); the Flask seed keeps history in process memory only"

    free_port port
    mkdir -p "$WORKDIR/wren-event"
    # No per-address cap: the warm-up's 50 connections, some still inside
    # an fsync when wrk drops them, count until they finish, while the
    # timed run's 50 arrive from the same 127.0.0.1 (seen: 150-300 of the
    # timed run's requests refused with 503 at the default cap of 64).
    start_server wren-event "$port" "$WREN_BIN" --port "$port" --host 127.0.0.1 \
        --data-dir "$WORKDIR/wren-event" --max-connections-per-ip 0
    measure wren "http://127.0.0.1:$port/event" "$SERVER_PID"
    fact event_alerts_wren "$(sed -n 's/^alerts per 1000 answers: //p' <<<"$WRK_OUTPUT")" \
        "wren's alerts per 1000 answers"
    # One client alone: nothing to share a commit with, so its latency is
    # one judgement and one fsync; a batch must never make it wait.
    WRK_ARGS=(-t1 -c1 -s "$script")
    measure wren-1client "http://127.0.0.1:$port/event" "$SERVER_PID"
    WRK_ARGS=(-t2 -c"$MAIN_CONNECTIONS" -s "$script")
    stop_server "$SERVER_PID"
    log_problems wren "$WORKDIR/wren-event.out"

    free_port port
    start_flask flask-event "$port"
    measure flask "http://127.0.0.1:$port/event" "${SERVER_PIDS[@]}"
    fact event_alerts_flask "$(sed -n 's/^alerts per 1000 answers: //p' <<<"$WRK_OUTPUT")" \
        "Flask's alerts per 1000 answers"
    stop_server "$SERVER_PID"
    log_problems flask "$WORKDIR/flask-event.out"

    report
    target "wren POST /event CPU/event <= 1/20 of Flask's, $MAIN_CONNECTIONS clients" wren flask 0.05
    target_rate "wren POST /event throughput >= 5x Flask's, $MAIN_CONNECTIONS clients" wren flask 5
}

# nginx as the load balancer in front of wren instances on PORTS...: round
# robin per request over keep-alive upstream connections.
nginx_balancer_conf() {
    local dir=$1 port=$2 upstream
    shift 2
    upstream="upstream wren { $(printf 'server 127.0.0.1:%s; ' "$@") keepalive 64; }"
    nginx_conf "$dir" "$port" "location / { proxy_pass http://wren; proxy_http_version 1.1; proxy_set_header Connection \"\"; }" |
        sed "s|^http {|http {\n    $upstream|"
}

# The PostgreSQL server's processes (the postmaster and its children: the
# backends the instances' pools opened, the writer, the WAL writer...).
postgres_pids() {
    local postmaster
    postmaster=$(head -n 1 "$PG_DIR/data/postmaster.pid")
    echo "$postmaster"
    children_of "$postmaster"
}

# POST /event as instances scale out: one wren on SQLite (the embedded
# default), one on PostgreSQL, and three on PostgreSQL behind nginx, the
# load balancer (round robin per request, so one user's events reach every
# instance), in one run, with the event section's load. Every setup
# commits each event durably before answering: SQLite with synchronous =
# FULL; PostgreSQL with its defaults (fsync, synchronous_commit = on). CPU
# per event counts every process that serves it: the wren instances, the
# PostgreSQL server's, and nginx.
bench_scale() {
    local port script url ports=() pids=() pg=() i dir
    RESULTS=()
    script=$WORKDIR/scale.lua
    event_script "$WORKDIR/scale-blocks" >"$script"
    # Dynamic scoping: measure and run_wrk see this WRK_ARGS.
    local WRK_ARGS=(-t2 -c"$MAIN_CONNECTIONS" -s "$script")
    echo "== POST /event on 1 and 3 instances: wrk ${WRK_ARGS[*]:0:2} -d${BENCH_SECONDS}s, keep-alive"
    echo "   CPU/event: every serving process (wren, PostgreSQL's, nginx's)"

    free_port port
    mkdir -p "$WORKDIR/scale-sqlite"
    start_server scale-sqlite "$port" "$WREN_PG_BIN" --port "$port" --host 127.0.0.1 \
        --data-dir "$WORKDIR/scale-sqlite" --max-connections-per-ip 0
    measure wren-sqlite "http://127.0.0.1:$port/event" "$SERVER_PID"
    stop_server "$SERVER_PID"
    log_problems wren-sqlite "$WORKDIR/scale-sqlite.out"

    PG_DIR=$(mktemp -d /tmp/wren-bench-pg.XXXXXX)
    url=$(scripts/postgres.sh start "$PG_DIR" 2>"$WORKDIR/postgres-start.log") || {
        cat "$WORKDIR/postgres-start.log" >&2
        exit 1
    }
    fact scale_postgres "$(sed -n 's/^postgres.sh: \(PostgreSQL [0-9.]*\) at .*/\1/p' \
        "$WORKDIR/postgres-start.log")" "database"
    for i in 1 2 3; do
        free_port port
        ports+=("$port")
        mkdir -p "$WORKDIR/scale-pg$i"
        # The URL and secret through the environment, as deployments pass
        # them (and so the report's commands hold no password).
        DATABASE_URL=$url WREN_SECRET=bench-shared-secret-of-at-least-32-bytes \
            start_server "scale-pg$i" "$port" "$WREN_PG_BIN" --port "$port" --host 127.0.0.1 \
            --data-dir "$WORKDIR/scale-pg$i" --max-connections-per-ip 0
        pids+=("$SERVER_PID")
        if [[ $i == 1 ]]; then
            # One instance alone first; its PostgreSQL backends open in the
            # warm-up, so their ids are read after one.
            wrk "${WRK_ARGS[@]}" -d1s "http://127.0.0.1:$port/event" >/dev/null
            mapfile -t pg < <(postgres_pids)
            measure wren-pg "http://127.0.0.1:$port/event" "$SERVER_PID" "${pg[@]}"
        fi
    done

    free_port port
    dir=$WORKDIR/scale-nginx
    mkdir -p "$dir"
    nginx_balancer_conf "$dir" "$port" "${ports[@]}" >"$dir/nginx.conf"
    start_nginx scale-nginx "$port"
    wrk "${WRK_ARGS[@]}" -d1s "http://127.0.0.1:$port/event" >/dev/null
    mapfile -t pg < <(postgres_pids)
    measure wren-pg-x3 "http://127.0.0.1:$port/event" "${pids[@]}" "${pg[@]}" "${SERVER_PIDS[@]}"
    stop_server "$SERVER_PID"
    log_problems nginx "$dir/error.log"
    for i in 1 2 3; do
        stop_server "${pids[$((i - 1))]}"
        log_problems "wren-pg$i" "$WORKDIR/scale-pg$i.out"
    done
    scripts/postgres.sh stop "$PG_DIR" 2>/dev/null
    rm -rf "$PG_DIR"
    PG_DIR=

    report
    echo "  (the machine has $CORES cores: three instances, PostgreSQL and nginx share them)"
}

# median: the middle of the numbers on stdin, one a line (the lower of the
# two middle ones for an even count).
median() {
    sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# mb_per_s BYTES SECONDS: 10^6 bytes a second, as dd counts.
mb_per_s() {
    awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", (s > 0 ? b / s / 1e6 : 0) }'
}

# timed_curl CODE ARGS...: curl ARGS, one transfer; sets CURL_SECONDS to
# its time (curl's time_total). Another answer than CODE, or a failed
# transfer, is printed and leaves CURL_SECONDS empty.
timed_curl() {
    local code=$1 out
    shift
    out=$(curl -sS -w '%{http_code} %{time_total}' "$@" 2>&1) || true
    CURL_SECONDS=
    if [[ $out =~ ^$code\ ([0-9.]+)$ ]]; then
        CURL_SECONDS=${BASH_REMATCH[1]}
    else
        echo "  warning: curl $* answered: $out"
    fi
}

# median_mbps BYTES SECONDS...: MB/s of the median time; a failed round
# (an empty time) counts as no time at all, so the median of one failure in
# three is the slower of the two others.
median_mbps() {
    local bytes=$1 times
    shift
    times=$(printf '%s\n' "$@" | awk '{ print ($1 == "" ? "inf" : $1) }' | median)
    [[ $times == inf ]] && times=0
    mb_per_s "$bytes" "$times"
}

FILE_MIB=200
FILE_ROUNDS=5

# cpu_seconds_each TICKS: TICKS of CPU time shared by FILE_ROUNDS
# transfers, in seconds each.
cpu_seconds_each() {
    awk -v t="$1" -v hz="$CLK_TCK" -v n="$FILE_ROUNDS" 'BEGIN { printf "%.3f", t / hz / n }'
}

# A FILE_MIB MiB file of random bytes, FILE_ROUNDS times each: uploaded to
# wren by a signed-up account (PUT /api/file/{key}, a new key each time)
# beside dd writing as much with conv=fsync to the same file system (wren
# fsyncs each upload before answering), the two taking turns, and downloaded from wren beside
# nginx serving the same file (sendfile on, as Debian's nginx.conf has it).
# MB/s of the median time; wren's peak RSS is its VmHWM after the round trip
# (and the largest VmRSS sampled during it).
bench_file() {
    local bytes=$((FILE_MIB * 1024 * 1024)) big=$WORKDIR/big.bin url port token i seconds rss hwm ticks upload_ticks
    local dd_times=() put_times=() get_times=() nginx_times=() dd_mbps put_mbps get_mbps nginx_mbps
    echo "== a $FILE_MIB MiB file, $FILE_ROUNDS rounds: PUT and GET on wren, GET on nginx (curl), dd conv=fsync"
    head -c "$bytes" /dev/urandom >"$big"
    fact file_system "$(df -PT "$WORKDIR" | awk 'NR == 2 { print $1 " (" $2 ")" }')" "file system"

    log_command dd dd if=/dev/zero of="$WORKDIR/dd.bin" bs=1M count="$FILE_MIB" conv=fsync
    free_port port
    mkdir -p "$WORKDIR/wren-file"
    start_server wren-file "$port" "$WREN_BIN" --port "$port" --host 127.0.0.1 \
        --data-dir "$WORKDIR/wren-file"
    url=http://127.0.0.1:$port
    curl -sS -o /dev/null -X POST "$url/api/sign_up" -H 'Content-Type: application/json' \
        -d '{"login": "bench", "password": "bench-password"}'
    token=$(curl -sS -X POST "$url/api/sign_in" -d login=bench -d password=bench-password |
        sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
    # The sign-up and sign-in hashed a password (argon2id, 19 MiB): VmHWM
    # holds that peak too, so say what wren held before the transfers.
    status_kib rss "$SERVER_PID" VmRSS
    fact file_rss_before_mib "$(kib_to_mib "$rss")" "wren's RSS before the transfers, after sign-up and sign-in, MiB"
    start_sampler "$SERVER_PID"
    log_command wren-upload curl -T "$big" -H "'Authorization: Bearer \$TOKEN'" \
        -H "'Content-Type: application/octet-stream'" "$url/api/file/big-N.bin"
    # dd and wren take turns, each after a sync: a virtual disk can slow
    # down as writes pile up (seen here: 0.14 s per 200 MiB for dd on a
    # rested disk, 0.6 s a few rounds later, dd and wren alike), and
    # whichever wrote second would be measured on the slower disk.
    upload_ticks=0
    for ((i = 0; i < FILE_ROUNDS; i++)); do
        sync
        seconds=$(LC_ALL=C dd if=/dev/zero of="$WORKDIR/dd.bin" bs=1M count="$FILE_MIB" conv=fsync 2>&1 |
            awk '/copied/ { for (f = 2; f <= NF; f++) if ($f == "s,") print $(f - 1) }')
        rm -f "$WORKDIR/dd.bin"
        dd_times+=("$seconds")
        sync
        ticks=$(cpu_ticks "$SERVER_PID")
        timed_curl 201 -o "$WORKDIR/put.out" -T "$big" -H "Authorization: Bearer $token" \
            -H 'Content-Type: application/octet-stream' "$url/api/file/big-$i.bin"
        upload_ticks=$((upload_ticks + $(cpu_ticks "$SERVER_PID") - ticks))
        put_times+=("$CURL_SECONDS")
    done
    fact file_upload_cpu_s "$(cpu_seconds_each "$upload_ticks")" "wren's CPU time per upload, s"
    log_command wren-download curl -o /dev/null -H "'Authorization: Bearer \$TOKEN'" "$url/api/file/big-0.bin"
    ticks=$(cpu_ticks "$SERVER_PID")
    for ((i = 0; i < FILE_ROUNDS; i++)); do
        timed_curl 200 -o /dev/null -H "Authorization: Bearer $token" "$url/api/file/big-0.bin"
        get_times+=("$CURL_SECONDS")
    done
    fact file_download_cpu_s "$(cpu_seconds_each $(($(cpu_ticks "$SERVER_PID") - ticks)))" \
        "wren's CPU time per download, s"
    if ! curl -sS -H "Authorization: Bearer $token" "$url/api/file/big-0.bin" | cmp -s - "$big"; then
        echo "  warning: the file downloaded from wren is not the one uploaded"
    fi
    stop_sampler
    status_kib hwm "$SERVER_PID" VmHWM
    stop_server "$SERVER_PID"
    log_problems wren-file "$WORKDIR/wren-file.out"

    free_port port
    mkdir -p "$WORKDIR/nginx-file"
    nginx_conf "$WORKDIR/nginx-file" "$port" "sendfile on; location = /big.bin { alias $big; }" \
        >"$WORKDIR/nginx-file/nginx.conf"
    start_nginx nginx-file "$port"
    log_command nginx-download curl -o /dev/null "http://127.0.0.1:$port/big.bin"
    ticks=$(cpu_ticks "${SERVER_PIDS[@]}")
    for ((i = 0; i < FILE_ROUNDS; i++)); do
        timed_curl 200 -o /dev/null "http://127.0.0.1:$port/big.bin"
        nginx_times+=("$CURL_SECONDS")
    done
    fact file_nginx_cpu_s "$(cpu_seconds_each $(($(cpu_ticks "${SERVER_PIDS[@]}") - ticks)))" \
        "nginx's CPU time per download, s"
    stop_server "$SERVER_PID"
    log_problems nginx "$WORKDIR/nginx-file/error.log"

    dd_mbps=$(median_mbps "$bytes" "${dd_times[@]}")
    put_mbps=$(median_mbps "$bytes" "${put_times[@]}")
    get_mbps=$(median_mbps "$bytes" "${get_times[@]}")
    nginx_mbps=$(median_mbps "$bytes" "${nginx_times[@]}")
    fact file_dd_mbps "$dd_mbps" "dd conv=fsync, MB/s (seconds: ${dd_times[*]})"
    fact file_upload_mbps "$put_mbps" "wren upload, MB/s (seconds: ${put_times[*]})"
    fact file_download_mbps "$get_mbps" "wren download, MB/s (seconds: ${get_times[*]})"
    fact file_nginx_mbps "$nginx_mbps" "nginx download, MB/s (seconds: ${nginx_times[*]})"
    fact file_peak_rss_mib "$(kib_to_mib "$hwm")" "wren's peak RSS (VmHWM), MiB"
    fact file_sampled_rss_mib "$(kib_to_mib "$PEAK_RSS_KIB")" \
        "wren's largest RSS sampled during the transfers, MiB"

    judge_ratio "download from wren >= 0.8x nginx's throughput" "$get_mbps" "$nginx_mbps" 0.8 ge
    judge_ratio "upload to wren >= 0.7x dd conv=fsync's throughput" "$put_mbps" "$dd_mbps" 0.7 ge
    judge_below "wren's peak RSS during the file round trip < 64 MiB" "$(kib_to_mib "$hwm")" 64 MiB
}

STARTS=9

# Footprint: the binary's size, the image's (scripts/image.sh packs
# target/x86_64-unknown-linux-gnu/release/wren: only when that is the
# binary measured), and the time from starting wren to the first 200 from
# GET /status, polled in a tight loop: once on an empty data folder, then
# the median of STARTS starts on it.
bench_footprint() {
    local data=$WORKDIR/wren-start port i t0 ms first out size= times=() startup
    echo "== footprint: binary and image size, start-up time"
    fact binary_bytes "$(stat -c %s "$WREN_BIN")" "static binary, bytes"
    if [[ $(realpath -e target/x86_64-unknown-linux-gnu/release/wren 2>/dev/null) != "$WREN_BIN" ]]; then
        fact image_bytes "not built: scripts/image.sh packs target/x86_64-unknown-linux-gnu/release/wren, not the binary measured here" image
    elif out=$(scripts/image.sh build 2>&1) && size=$(scripts/image.sh size 2>&1); then
        fact image_bytes "$size" "image (wren:latest), bytes"
    else
        fact image_bytes "not built on this machine: $(tail -n 1 <<<"${size:-$out}")" image
    fi

    # Dynamic scoping: start_server sees this.
    local POLL_SECONDS=0
    mkdir -p "$data"
    for ((i = 0; i <= STARTS; i++)); do
        free_port port
        t0=$EPOCHREALTIME
        start_server wren-start "$port" "$WREN_BIN" --port "$port" --host 127.0.0.1 --data-dir "$data"
        ms=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
        stop_server "$SERVER_PID"
        if ((i == 0)); then
            first=$ms
        else
            times+=("$ms")
        fi
    done
    startup=$(printf '%s\n' "${times[@]}" | median)
    fact startup_first_ms "$first" "start-up on an empty data folder, ms"
    fact startup_ms "$startup" "start-up, median of $STARTS, ms (each: ${times[*]})"
    judge_below "wren's start-up to the first 200 from /status < 50 ms" "$startup" 50 ms
}

install_tools
install_flask
build_tinyhttp
fact load_start "$(cut -d ' ' -f 1-3 /proc/loadavg)"
for SECTION in $SECTIONS; do
    "bench_$SECTION"
done
fact load_end "$(cut -d ' ' -f 1-3 /proc/loadavg)"
mkdir -p "$(dirname "$REPORT_MD")" "$(dirname "$REPORT_SVG")"
python3 bench/report.py --workdir "$WORKDIR" --markdown "$REPORT_MD" --svg "$REPORT_SVG" \
    --binary "$WREN_BIN" --seconds "$BENCH_SECONDS" --sections "$SECTIONS" --note "${BENCH_NOTE:-}"
echo "report: $REPORT_MD, chart: $REPORT_SVG"

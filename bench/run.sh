#!/usr/bin/env bash
# Benchmarks wren against tiny_http and nginx on loopback: requests/s and the
# server's CPU time per request for GET /status, over HTTP and HTTPS (and
# the cost of a TLS handshake); then the latency of a
# successful POST /login (the argon2id cost), model evaluation speed, and
# POST /event against the seed's stack (Flask under gunicorn).
# Prints figures and PASS/MISS lines; never fails on a missed target, since
# timings depend on the machine.
#
# Usage: bench/run.sh PATH/TO/wren     (env BENCH_SECONDS, default 8;
#        BENCH_ONLY="status https login model event", the sections to run)
set -euo pipefail

if [[ $# -ne 1 || ! -x $1 ]]; then
    echo "usage: $0 PATH/TO/wren" >&2
    exit 2
fi
WREN_BIN=$(realpath "$1")
BENCH_SECONDS=${BENCH_SECONDS:-8}
if ! [[ $BENCH_SECONDS =~ ^[1-9][0-9]*$ ]]; then
    echo "BENCH_SECONDS must be a whole number of seconds, got '$BENCH_SECONDS'" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
# free_port, start_server, stop_server
source bench/lib.sh

WRK_ARGS=(-t2 -c50)
CLK_TCK=$(getconf CLK_TCK)
WORKDIR=$(mktemp -d /tmp/wren-bench.XXXXXX)

cleanup() {
    stop_servers
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

# run_wrk URL [WRK ARGS...]: one timed wrk run. Sets WRK_REQUESTS, WRK_RPS
# and WRK_OUTPUT (what a script's done() printed is in it), and warns about
# socket errors or non-2xx answers, which skew the figures.
run_wrk() {
    local url=$1 out
    shift
    out=$(wrk "${WRK_ARGS[@]}" -d"${BENCH_SECONDS}s" "$@" "$url")
    WRK_OUTPUT=$out
    WRK_REQUESTS=$(awk '/ requests in /{print $1}' <<<"$out")
    WRK_RPS=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
    WRK_REQUESTS=${WRK_REQUESTS:-0} WRK_RPS=${WRK_RPS:-0}
    if grep -qE 'Socket errors|Non-2xx' <<<"$out"; then
        echo "  warning, from wrk:" $(grep -E 'Socket errors|Non-2xx' <<<"$out")
    fi
}

# measure NAME URL PID...: warm-up, then a timed run with the CPU time of the
# given processes read around it. Appends a row to RESULTS, which each
# section empties before its first measure and prints with report.
RESULTS=()
measure() {
    local name=$1 url=$2 before after us
    shift 2
    wrk "${WRK_ARGS[@]}" -d1s "$url" >/dev/null
    before=$(cpu_ticks "$@")
    run_wrk "$url"
    after=$(cpu_ticks "$@")
    us=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$WRK_REQUESTS" \
        'BEGIN { printf "%.2f", (n > 0 ? t / hz * 1e6 / n : 0) }')
    RESULTS+=("$name $WRK_RPS $WRK_REQUESTS $us")
    printf '  %s: %s req/s, %s requests, %s ticks of CPU\n' \
        "$name" "$WRK_RPS" "$WRK_REQUESTS" $((after - before))
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

# target_rate LABEL NAME OTHER FACTOR: PASS when NAME serves at least
# FACTOR x OTHER's requests/s.
target_rate() {
    awk -v a="$(result "$2" 1)" -v b="$(result "$3" 1)" -v min="$4" -v label="$1" 'BEGIN {
        if (b <= 0) { printf "%s: MISS (no rate for the comparison)\n", label; exit }
        r = a / b
        printf "%s: %s (ratio %.2f)\n", label, (r >= min ? "PASS" : "MISS"), r
    }'
}

# target LABEL NAME OTHER LIMIT: PASS when NAME's CPU/req <= LIMIT x OTHER's.
target() {
    local label=$1 ours theirs
    ours=$(result "$2" 3)
    theirs=$(result "$3" 3)
    awk -v a="$ours" -v b="$theirs" -v lim="$4" -v label="$label" 'BEGIN {
        if (b <= 0) { printf "%s: MISS (no CPU figure for the comparison)\n", label; exit }
        r = a / b
        printf "%s: %s (ratio %.2f)\n", label, (r <= lim ? "PASS" : "MISS"), r
    }'
}

report() {
    local row name rps requests us
    echo
    # One column wider for µs, two bytes but one character.
    printf '%-17s %12s %10s %15s\n' server req/s requests 'CPU µs/req'
    for row in "${RESULTS[@]}"; do
        read -r name rps requests us <<<"$row"
        printf '%-17s %12s %10s %14s\n' "$name" "$rps" "$requests" "$us"
    done
    echo
}

# --- sections ----------------------------------------------------------------

nginx_conf() {
    local dir=$1 port=$2
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
    }
}
EOF
}

# GET /status over keep-alive: the cost of the request path itself.
bench_status() {
    local port dir pids
    RESULTS=()
    echo "== GET /status: wrk ${WRK_ARGS[*]} -d${BENCH_SECONDS}s, keep-alive, after a 1 s warm-up"

    free_port port
    mkdir -p "$WORKDIR/wren-data"
    start_server wren "$port" "$WREN_BIN" --port "$port" --host 127.0.0.1 \
        --data-dir "$WORKDIR/wren-data"
    measure wren "http://127.0.0.1:$port/status" "$SERVER_PID"
    # The seed's prediction route on the embedded model, same server.
    measure wren-predict "http://127.0.0.1:$port/predict/123/december/4" "$SERVER_PID"
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
    measure tiny_http "http://127.0.0.1:$port/status" "$SERVER_PID"
    stop_server "$SERVER_PID"

    free_port port
    dir=$WORKDIR/nginx
    mkdir -p "$dir"
    nginx_conf "$dir" "$port" >"$dir/nginx.conf"
    start_server nginx "$port" "$(nginx_bin)" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
    mapfile -t pids < <(children_of "$SERVER_PID")
    measure nginx "http://127.0.0.1:$port/status" "$SERVER_PID" "${pids[@]}"
    stop_server "$SERVER_PID"
    log_problems nginx "$dir/error.log"

    report
    target "wren CPU/req <= 1.5x nginx" wren nginx 1.5
    target "wren CPU/req <= 0.6x tiny_http" wren tiny_http 0.6
    target "wren /predict CPU/req <= 1.5x /status" wren-predict wren 1.5
    target "wren /status CPU/req, metrics and rate limits on, within 10% of both off" \
        wren-on wren-off 1.1
    target "wren /predict CPU/req, metrics and rate limits on, within 10% of both off" \
        wren-on-predict wren-off-predict 1.1
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
    local port plain dir pids cert key
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
    start_server --https nginx-tls "$port" "$(nginx_bin)" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
    mapfile -t pids < <(children_of "$SERVER_PID")
    measure nginx-https "https://localhost:$port/status" "$SERVER_PID" "${pids[@]}"
    measure_handshakes nginx-hs "https://localhost:$port/status" "$SERVER_PID" "${pids[@]}"
    stop_server "$SERVER_PID"
    log_problems nginx "$dir/error.log"

    report
    echo "  (-hs rows: a TLS 1.3 handshake per request; req/s is new connections/s)"
    target "wren HTTPS CPU/req <= 1.5x plain HTTP, after the handshake" wren-https wren-http 1.5
    target "wren HTTPS CPU/req <= 1.5x nginx HTTPS" wren-https nginx-https 1.5
    target "wren CPU/handshake <= 1.5x nginx's" wren-hs nginx-hs 1.5
}

# A successful POST /login: its cost is the argon2id hash check (m=19 MiB,
# t=2, p=1) by design, so it is reported as latency, one client at a time,
# and as throughput with one client per core.
bench_login() {
    local port script out p50 rps clients c
    clients=$(getconf _NPROCESSORS_ONLN)
    echo "== POST /login (JSON, a --user account): wrk -t1 --latency -d${BENCH_SECONDS}s"
    free_port port
    mkdir -p "$WORKDIR/wren-login"
    start_server wren-login "$port" "$WREN_BIN" --port "$port" --host 127.0.0.1 \
        --data-dir "$WORKDIR/wren-login" --user "bench:bench-password"
    script=$WORKDIR/login.lua
    cat >"$script" <<'LUA'
wrk.method = "POST"
wrk.body = '{"username":"bench","password":"bench-password"}'
wrk.headers["Content-Type"] = "application/json"
LUA
    for c in 1 "$clients"; do
        out=$(wrk -t1 -c"$c" -d"${BENCH_SECONDS}s" --latency -s "$script" \
            "http://127.0.0.1:$port/login")
        if grep -qE 'Socket errors|Non-2xx' <<<"$out"; then
            echo "  warning, from wrk:" $(grep -E 'Socket errors|Non-2xx' <<<"$out")
        fi
        p50=$(awk '/Latency Distribution/ { on = 1; next } on && $1 == "50%" { print $2; exit }' <<<"$out")
        rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
        printf '  %s client(s): p50 %s, %s logins/s\n' "$c" "$p50" "$rps"
    done
    stop_server "$SERVER_PID"
    log_problems wren-login "$WORKDIR/wren-login.out"
}

# Without sockets: model evaluation (single rows and 1000-row batches), and
# what routing and handling cost per route.
bench_model() {
    RUSTFLAGS='-C target-feature=+crt-static' cargo bench --quiet \
        --target x86_64-unknown-linux-gnu --bench model_eval --bench dispatch
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
    local port dir pids script i
    RESULTS=()
    script=$WORKDIR/event.lua
    event_script "$WORKDIR/event-blocks" >"$script"
    # Dynamic scoping: measure and run_wrk see this WRK_ARGS.
    local WRK_ARGS=(-t2 -c50 -s "$script")
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
    echo "  $(grep '^alerts' <<<"$WRK_OUTPUT")"
    # One client alone: nothing to share a commit with, so its latency is
    # one judgement and one fsync; a batch must never make it wait.
    WRK_ARGS=(-t1 -c1 -s "$script" --latency)
    measure wren-1client "http://127.0.0.1:$port/event" "$SERVER_PID"
    echo "  one client, latency: $(awk '$1 == "50%" {p50 = $2} $1 == "99%" {p99 = $2}
        END {printf "p50 %s, p99 %s", p50, p99}' <<<"$WRK_OUTPUT")"
    WRK_ARGS=(-t2 -c50 -s "$script")
    stop_server "$SERVER_PID"
    log_problems wren "$WORKDIR/wren-event.out"

    # Threaded workers keep connections alive as wren does; sync workers close
    # after each answer and cost more CPU per request. --no-control-socket:
    # gunicorn 27 would otherwise open one under ~/.gunicorn.
    free_port port
    dir=$WORKDIR/gunicorn
    mkdir -p "$dir"
    start_server gunicorn "$port" env SEED_USER=bench:bench-password SEED_MODEL="$SEED_MODEL" \
        "$GUNICORN_BIN" --chdir bench/flask-seed \
        --bind "127.0.0.1:$port" --workers 2 --worker-class gthread --threads 4 \
        --access-logfile "$dir/access.log" --no-control-socket app:app
    # It answers once its first worker is up; wait for both, to count both.
    for ((i = 0; i < 100; i++)); do
        mapfile -t pids < <(children_of "$SERVER_PID")
        [[ ${#pids[@]} -ge 2 ]] && break
        sleep 0.1
    done
    measure flask "http://127.0.0.1:$port/event" "$SERVER_PID" "${pids[@]}"
    echo "  $(grep '^alerts' <<<"$WRK_OUTPUT")"
    stop_server "$SERVER_PID"
    log_problems gunicorn "$WORKDIR/gunicorn.out"

    report
    target "wren POST /event CPU/event <= 1/20 of Flask's, 50 clients" wren flask 0.05
    target_rate "wren POST /event throughput >= 5x Flask's, 50 clients" wren flask 5
}

install_tools
install_flask
build_tinyhttp
for section in ${BENCH_ONLY:-status https login model event}; do
    "bench_$section"
done

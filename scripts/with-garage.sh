#!/usr/bin/env bash
# Run a command with a throwaway Garage S3 node, so that the S3 half of the
# file tests (tests/files.rs) and the S3 backend's own suite
# (tests/s3_store.rs) run against a real object store instead of being
# skipped.
#
# usage: scripts/with-garage.sh COMMAND [ARG...]
#   e.g. scripts/with-garage.sh cargo test --features test-routes
#
# What it does:
#   - starts a single-node Garage (scripts/garage.sh up) in a fresh temp
#     folder, on a free loopback port (tried at random in 20000-59999, so two
#     runs on one machine do not collide), and exports what it prints:
#     S3_ENDPOINT, S3_REGION, S3_BUCKET, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY;
#   - creates a second key with its own bucket (scripts/garage.sh key),
#     for the accounts that sign up with their own S3 keys, and exports it as
#     WREN_TEST_USER_KEY_ID, WREN_TEST_USER_KEY_SECRET, WREN_TEST_USER_BUCKET
#     (the server's own key cannot reach that bucket, so a round trip there
#     proves the user's keys were used);
#   - exports WREN_TEST_S3=required: with it, an S3 test that finds no
#     endpoint fails instead of skipping, so a run through this script never
#     silently leaves S3 untested;
#   - runs COMMAND and exits with its status; Garage is stopped and the temp
#     folder removed however the script ends (EXIT/INT/TERM trap).
#
# Nothing outlives a run and nothing is shared between runs, so it can be run
# again (or twice at once) freely. The garage binary is found as garage.sh
# finds it ($GARAGE_BIN, PATH, else built once into ~/.cache/garage).
set -euo pipefail

if [[ $# -eq 0 ]]; then
  echo "usage: $0 COMMAND [ARG...]" >&2
  exit 2
fi

garage=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/garage.sh
# Build (or find) the binary first, outside the port-racing loop below.
"$garage" install >/dev/null

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wren-garage.XXXXXX")
garage_pid=

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n $garage_pid ]] && kill -0 "$garage_pid" 2>/dev/null; then
    kill "$garage_pid" 2>/dev/null || true
    # Not our child (garage.sh started it), so poll rather than `wait`.
    for _ in $(seq 1 50); do
      kill -0 "$garage_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$garage_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# True when something accepts connections on 127.0.0.1:$1.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# garage.sh uses BASE (S3 API), BASE+1 (RPC) and BASE+3 (admin).
started=
for attempt in 1 2 3 4 5; do
  base=$((20000 + RANDOM % 40000))
  if port_taken "$base" || port_taken $((base + 1)) || port_taken $((base + 3)); then
    continue
  fi
  node=$tmp/node-$attempt
  if exports=$("$garage" up "$node" "$base" 2>"$tmp/garage-up.log"); then
    eval "$exports"
    garage_pid=$GARAGE_PID
    started=yes
    break
  fi
  # Most likely a port race; stop whatever half-started and try elsewhere.
  pid=$(pgrep -f -- "-c $node/garage.toml server" || true)
  if [[ -n $pid ]]; then kill $pid 2>/dev/null || true; fi
  echo "with-garage: garage.sh up failed on port $base (attempt $attempt):" >&2
  tail -n 20 "$tmp/garage-up.log" >&2 || true
  tail -n 20 "$node/garage.log" >&2 2>/dev/null || true
done
if [[ -z $started ]]; then
  echo "with-garage: could not start Garage" >&2
  exit 1
fi

user_bucket=wren-test-user-bucket
user_exports=$("$garage" key "$node" wren-test-user "$user_bucket" 2>>"$tmp/garage-up.log") || {
  echo "with-garage: garage.sh key failed:" >&2
  tail -n 20 "$tmp/garage-up.log" >&2 || true
  exit 1
}
eval "$user_exports"
export WREN_TEST_USER_KEY_ID=$KEY_ID
export WREN_TEST_USER_KEY_SECRET=$KEY_SECRET
export WREN_TEST_USER_BUCKET=$user_bucket
unset KEY_ID KEY_SECRET GARAGE_PID
export WREN_TEST_S3=required

echo "with-garage: Garage at $S3_ENDPOINT (bucket $S3_BUCKET, user bucket $user_bucket)" >&2
# Not exec: the trap must still stop Garage when COMMAND ends.
status=0
"$@" || status=$?
exit "$status"

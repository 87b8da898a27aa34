#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL server, so that the tests of
# wren's PostgreSQL client and store run against a real server instead of
# being skipped.
#
# usage: scripts/with-postgres.sh COMMAND [ARG...]
#   e.g. scripts/with-postgres.sh cargo test --features test-routes,postgres
#
# What it does:
#   - starts a server (scripts/postgres.sh start) in a fresh temp folder on
#     a free loopback port, and exports WREN_TEST_DATABASE_URL (the role
#     wren, owner of the database wren, with a password; SCRAM) and
#     WREN_TEST_DATABASE_CA (the authority its TLS certificate comes from);
#   - exports WREN_TEST_POSTGRES=required: with it, a PostgreSQL test that
#     finds no URL fails instead of skipping, so a run through this script
#     never silently leaves PostgreSQL untested;
#   - runs COMMAND and exits with its status; the server is stopped and the
#     temp folder removed however the script ends (EXIT/INT/TERM trap).
set -euo pipefail

if [[ $# -eq 0 ]]; then
  echo "usage: $0 COMMAND [ARG...]" >&2
  exit 2
fi

postgres=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/postgres.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wren-pg.XXXXXX")

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  "$postgres" stop "$tmp" >/dev/null 2>&1 || true
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

WREN_TEST_DATABASE_URL=$("$postgres" start "$tmp")
export WREN_TEST_DATABASE_URL
export WREN_TEST_DATABASE_CA=$tmp/ca.pem
export WREN_TEST_POSTGRES=required

"$@"

#!/usr/bin/env bash
# A single-node Garage (a real, distributed S3-compatible object store) on
# loopback, for the S3 half of the tests and for trying `--storage s3` by
# hand. Garage comes from crates.io: built once with `cargo install` into
# ~/.cache/garage (about 20 minutes on two cores; later runs reuse it).
#
# usage:
#   scripts/garage.sh up DIR [BASE_PORT]
#       Starts a node with its config, metadata, data and log in DIR: S3 API
#       on BASE_PORT (default 3900), RPC on +1, admin on +3; one access key
#       and one bucket. Prints shell `export` lines (S3_ENDPOINT, S3_REGION,
#       S3_BUCKET, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, GARAGE_PID) on
#       stdout; everything else goes to stderr. Stop it: kill "$GARAGE_PID".
#   scripts/garage.sh key DIR NAME [BUCKET]
#       Adds an access key NAME with read, write and owner rights on BUCKET
#       (created if missing; default test-bucket) to the node in DIR. Prints
#       `export KEY_ID=…` and `export KEY_SECRET=…`.
#   scripts/garage.sh install
#       Only makes sure the garage binary exists, and prints its path.
#
# The binary is $GARAGE_BIN, else `garage` on PATH, else the cached build.
set -euo pipefail

GARAGE_VERSION=2.5.0
cache=${GARAGE_CACHE:-$HOME/.cache/garage}

garage_binary() {
  if [[ -n ${GARAGE_BIN:-} ]]; then
    echo "$GARAGE_BIN"
  elif command -v garage >/dev/null; then
    command -v garage
  else
    if [[ ! -x $cache/bin/garage ]]; then
      echo "garage.sh: building garage $GARAGE_VERSION once into $cache (slow the first time)" >&2
      cargo install garage --version "$GARAGE_VERSION" --locked --root "$cache" >&2
    fi
    echo "$cache/bin/garage"
  fi
}

# Reads "Key ID" and "Secret key" from `garage key info --show-secret`.
print_key() {
  local info=$1 prefix=$2
  echo "export ${prefix}_ID=$(awk '/Key ID/ {print $3}' <<<"$info")"
  echo "export ${prefix}_SECRET=$(awk '/Secret key/ {print $3}' <<<"$info")"
}

# The status of an unsigned GET of the test bucket on 127.0.0.1:PORT, or
# nothing when no answer comes.
s3_status() (
  exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
  printf 'GET /test-bucket HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
  local line
  read -r -t 2 line <&3 || exit 0
  line=${line%$'\r'}
  echo "${line#* }" | cut -d' ' -f1
) 2>/dev/null

up() {
  local dir=${1:?usage: garage.sh up DIR [BASE_PORT]} base=${2:-3900}
  local garage
  garage=$(garage_binary)
  mkdir -p "$dir/meta" "$dir/data"
  dir=$(cd "$dir" && pwd)
  local secret
  secret=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$((base + 1))"
rpc_public_addr = "127.0.0.1:$((base + 1))"
rpc_secret = "$secret"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$base"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$((base + 3))"
EOF
  g() { "$garage" -c "$dir/garage.toml" "$@"; }
  "$garage" -c "$dir/garage.toml" server >"$dir/garage.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do
    if g status >/dev/null 2>&1; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "garage.sh: the server exited; see $dir/garage.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  local node
  node=$(g node id -q 2>/dev/null | cut -d@ -f1)
  g layout assign -z dc1 -c 1G "$node" >&2
  g layout apply --version 1 >&2
  g key create test-key >&2
  g bucket create test-bucket >&2
  g bucket allow --read --write --owner test-bucket --key test-key >&2
  local keys
  keys=$(print_key "$(g key info test-key --show-secret)" S3_KEY)
  eval "$keys"
  # Wait until the S3 API serves requests, not only accepts connections:
  # an unsigned request is refused (403) once the node has applied its
  # layout, and before that gets a 5xx or nothing.
  local ready=
  for _ in $(seq 1 200); do
    if [[ $(s3_status "$base") == 403 ]]; then ready=yes; break; fi
    sleep 0.1
  done
  if [[ -z $ready ]]; then
    echo "garage.sh: the S3 API on port $base did not come up; see $dir/garage.log" >&2
    exit 1
  fi
  cat <<EOF
export S3_ENDPOINT=http://127.0.0.1:$base
export S3_REGION=garage
export S3_BUCKET=test-bucket
export S3_ACCESS_KEY_ID=$S3_KEY_ID
export S3_SECRET_ACCESS_KEY=$S3_KEY_SECRET
export GARAGE_PID=$pid
EOF
}

key() {
  local dir name bucket garage
  dir=$(cd "${1:?usage: garage.sh key DIR NAME [BUCKET]}" && pwd)
  name=${2:?usage: garage.sh key DIR NAME [BUCKET]}
  bucket=${3:-test-bucket}
  garage=$(garage_binary)
  g() { "$garage" -c "$dir/garage.toml" "$@"; }
  g key create "$name" >&2
  g bucket info "$bucket" >/dev/null 2>&1 || g bucket create "$bucket" >&2
  g bucket allow --read --write --owner "$bucket" --key "$name" >&2
  print_key "$(g key info "$name" --show-secret)" KEY
}

case ${1:-} in
  up) shift; up "$@" ;;
  key) shift; key "$@" ;;
  install) garage_binary ;;
  *)
    echo "usage: $0 up DIR [BASE_PORT] | key DIR NAME [BUCKET] | install" >&2
    exit 2
    ;;
esac

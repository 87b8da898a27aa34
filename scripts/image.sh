#!/usr/bin/env bash
# Builds wren's FROM scratch image, and checks it.
#
# usage: scripts/image.sh build|size|check
#   build  assemble the build context (static binary + empty data folder)
#          and build the image `wren:latest` with $CONTAINER_ENGINE
#          (default: podman, installed from Debian's packages if missing;
#          `docker` works the same where an engine runs).
#   size   print the size in bytes of the image built last (the engine's
#          figure: its layers, uncompressed), for bench/run.sh's report.
#          WREN_IMAGE_BINARY and WREN_IMAGE choose another static build
#          and tag (`make image-postgres`: the build with the PostgreSQL
#          store, as wren:postgres).
#   check  build, then prove the image holds everything wren needs without
#          starting a container (no container can run on these machines):
#          export the image, unpack its layers into an empty folder, start
#          the binary there under chroot with an empty environment plus the
#          image's own ENV, as the image's USER, and ask it for /status.
set -euo pipefail

# Set by check(), read by its EXIT trap.
work=
pid=

cd "$(dirname "$0")/.."
binary=${WREN_IMAGE_BINARY:-target/x86_64-unknown-linux-gnu/release/wren}
image=${WREN_IMAGE:-wren:latest}
engine=${CONTAINER_ENGINE:-podman}

ensure_engine() {
  if ! command -v "$engine" >/dev/null; then
    if [[ $engine != podman ]]; then
      echo "image.sh: $engine not found" >&2
      exit 1
    fi
    echo "image.sh: installing podman" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman >/dev/null
  fi
  engine_cmd=("$engine")
  # The vfs storage driver needs no kernel overlay support, so builds work
  # inside sandboxes and CI machines too.
  [[ $engine == podman ]] && engine_cmd+=(--storage-driver vfs)
  return 0
}

build() {
  [[ -x $binary ]] || { echo "image.sh: $binary missing; run make static" >&2; exit 1; }
  ensure_engine
  local context
  context=$(mktemp -d)
  cp "$binary" "$context/wren"
  mkdir "$context/data"
  cp Dockerfile "$context/Dockerfile"
  "${engine_cmd[@]}" build -q -t "$image" "$context" >/dev/null
  rm -rf "$context"
  echo "image.sh: built $image"
}

size() {
  ensure_engine
  "${engine_cmd[@]}" image inspect --format '{{.Size}}' "$image"
}

check() {
  build
  local port config
  work=$(mktemp -d)
  pid=
  trap 'if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi; [[ -z $work ]] || rm -rf "$work"' EXIT
  "${engine_cmd[@]}" image save -q --format docker-dir -o "$work/export" "$image" >/dev/null
  mkdir "$work/rootfs"
  # Layers in manifest order, then the image's config (ENV, USER, ENTRYPOINT).
  config=$(python3 - "$work/export" <<'PY'
import json, sys
root = sys.argv[1]
manifest = json.load(open(f"{root}/manifest.json"))
for layer in manifest["layers"]:
    print("layer", layer["digest"].split(":")[1])
config = json.load(open(f"{root}/" + manifest["config"]["digest"].split(":")[1]))["config"]
print("user", config.get("User", "0:0"))
for var in config.get("Env", []):
    print("env", var)
print("entrypoint", " ".join(config.get("Entrypoint") or []))
PY
)
  local user= entrypoint= env_vars=()
  while read -r kind value; do
    case $kind in
      layer) tar -xf "$work/export/$value" -C "$work/rootfs" ;;
      user) user=$value ;;
      env) env_vars+=("$value") ;;
      entrypoint) entrypoint=$value ;;
    esac
  done <<<"$config"
  echo "image.sh: image holds: $(cd "$work/rootfs" && find . -mindepth 1 | sort | tr '\n' ' ')"
  [[ $(stat -c %u "$work/rootfs/data") == "${user%%:*}" ]] \
    || { echo "image.sh: /data is not owned by the image user $user" >&2; exit 1; }

  # The image's own environment, with a free port in place of 50505 so the
  # check never collides with anything else on the machine.
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  env -i "${env_vars[@]}" PORT="$port" \
    chroot --userspec="$user" "$work/rootfs" $entrypoint >"$work/log" 2>&1 &
  pid=$!
  local answer=
  for _ in $(seq 1 100); do
    answer=$(curl -s --max-time 2 "http://127.0.0.1:$port/status" || true)
    [[ $answer == "Alive!" ]] && break
    sleep 0.1
  done
  if [[ $answer != "Alive!" ]]; then
    echo "image.sh: the image did not serve /status; its log:" >&2
    cat "$work/log" >&2
    exit 1
  fi
  # Routes that exist only for the test suite must not ship.
  local test_route
  test_route=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/__test/panic")
  if [[ $test_route != 404 ]]; then
    echo "image.sh: the release binary serves a test-only route (/__test/panic: $test_route)" >&2
    exit 1
  fi
  kill -TERM "$pid"
  local status=0
  wait "$pid" || status=$?
  pid=
  [[ $status == 0 ]] || { echo "image.sh: wren exited $status on SIGTERM" >&2; cat "$work/log" >&2; exit 1; }
  echo "image.sh: chroot check passed: /status answered '$answer' as user $user, no test routes, clean exit on SIGTERM"
}

case ${1:-} in
  build) build ;;
  size) size ;;
  check) check ;;
  *) echo "usage: $0 build|size|check" >&2; exit 2 ;;
esac

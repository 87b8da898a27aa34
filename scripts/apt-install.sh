#!/usr/bin/env bash
# Installs Debian packages when a command they provide is missing, and only
# then updates the package lists first: what the test scripts need beyond
# the Rust toolchain (scripts/pebble.sh, scripts/browser.sh,
# scripts/postgres.sh).
#
# usage: scripts/apt-install.sh COMMAND PACKAGE [PACKAGE...]
#   e.g. scripts/apt-install.sh /usr/bin/pebble pebble
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 COMMAND PACKAGE [PACKAGE...]" >&2
  exit 2
fi
command=$1
shift
[[ -x $command ]] && exit 0
sudo=()
if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
echo "apt-install.sh: installing the Debian package(s) $*" >&2
"${sudo[@]}" apt-get update >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "$@" >&2

#!/usr/bin/env bash
# Pebble, Let's Encrypt's small ACME test CA, and pebble-challtestsrv (its
# challenge and mock DNS server), for tests/acme.rs and tests/acme_client.rs
# (their harness: tests/common/pebble.rs). Both come in the
# Debian package `pebble`. The tests start them themselves, on free ports,
# with a generated configuration; this script only makes sure they exist.
#
# usage:
#   scripts/pebble.sh install
#       Installs the package `pebble` with apt-get when /usr/bin/pebble or
#       /usr/bin/pebble-challtestsrv is missing (and only then updates the
#       package lists first). Prints the path of pebble.
set -euo pipefail

PEBBLE=/usr/bin/pebble
CHALLTESTSRV=/usr/bin/pebble-challtestsrv

install() {
  if [[ ! -x $PEBBLE || ! -x $CHALLTESTSRV ]]; then
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
    echo "pebble.sh: installing the Debian package pebble" >&2
    "${sudo[@]}" apt-get update >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends pebble >&2
  fi
  echo "$PEBBLE"
}

case ${1:-} in
  install) install ;;
  *)
    echo "usage: scripts/pebble.sh install" >&2
    exit 2
    ;;
esac

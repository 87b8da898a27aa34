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
  local here
  here=$(dirname "${BASH_SOURCE[0]}")
  # Both binaries come in the one package.
  "$here/apt-install.sh" "$PEBBLE" pebble
  "$here/apt-install.sh" "$CHALLTESTSRV" pebble
  echo "$PEBBLE"
}

case ${1:-} in
  install) install ;;
  *)
    echo "usage: scripts/pebble.sh install" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# What the /docs test needs: Debian's Chromium (headless, --dump-dom) and
# Swagger UI's files from the npm package swagger-ui-dist, the copy
# `--docs-assets` serves.
#
# usage:
#   scripts/browser.sh install
#       Installs the Debian package chromium when /usr/bin/chromium is
#       missing (updating the package lists first only then), and
#       swagger-ui-dist@$SWAGGER_UI_VERSION into ~/.cache/wren/swagger-ui
#       when it is not there yet. Prints the assets folder.
set -euo pipefail

SWAGGER_UI_VERSION=5.35.0
cache=${WREN_CACHE:-$HOME/.cache/wren}/swagger-ui-$SWAGGER_UI_VERSION

install() {
  "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" /usr/bin/chromium chromium
  local assets=$cache/node_modules/swagger-ui-dist
  if [[ ! -f $assets/swagger-ui-bundle.js ]]; then
    echo "browser.sh: installing swagger-ui-dist@$SWAGGER_UI_VERSION from npm" >&2
    mkdir -p "$cache"
    npm install --prefix "$cache" --no-audit --no-fund --silent \
      "swagger-ui-dist@$SWAGGER_UI_VERSION" >&2
  fi
  echo "$assets"
}

case ${1:-} in
  install) install ;;
  *)
    echo "usage: scripts/browser.sh install" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Installs what Sluice needs on Debian 12, only what is missing, then the npm test clients.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs="build-essential pkg-config libuv1-dev libluajit-5.1-dev luajit libwslay-dev libcjson-dev
      libyaml-dev libhttp-parser-dev libssl-dev libsystemd-dev libhiredis-dev libmsgpack-dev redis-server
      curl clang libclang-rt-14-dev nodejs npm
      chromium"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# nodejs/npm may come from elsewhere on the image; only install them when the commands are absent.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=$(echo "$missing" | tr ' ' '\n' | grep -vx -e nodejs -e npm | tr '\n' ' ')
fi
if [ -n "$(echo "$missing" | tr -d ' ')" ]; then
  echo "deps: installing$missing"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
if [ -f package-lock.json ]; then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "deps: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  fi
fi

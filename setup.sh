#!/usr/bin/env bash
# Install ClusterLink into ./.venv (and the Debian packages its tests and benchmarks use).
# Safe to re-run: it only adds what is missing. Usage: ./setup.sh [--no-apt]
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(python3-venv iproute2 procps socat iperf3 stunnel4 haproxy openssl gcc libc6-dev
              chromium chromium-driver nftables dnsmasq dnsutils)
PYTHON=${PYTHON:-python3}

log() { printf '[setup] %s\n' "$*"; }

install_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then sudo="sudo"; else
      log "missing Debian packages: ${missing[*]} (run as root or install them; continuing)"
      return 0
    fi
  fi
  log "installing Debian packages: ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ "${1:-}" != "--no-apt" ] && command -v apt-get >/dev/null; then
  install_apt
fi

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  log "need Python >= 3.11 as '$PYTHON' (set PYTHON=/path/to/python3.11)"; exit 1
fi
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
log "installing clusterlink and its development tools into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
log "done: run .venv/bin/clusterlink (or '. .venv/bin/activate' first)"

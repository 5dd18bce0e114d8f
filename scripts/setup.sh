#!/usr/bin/env bash
# Installs what crms needs on a Debian machine, idempotently:
#   scripts/setup.sh        etcd (Debian's etcd-server) and npm dependencies
#   scripts/setup.sh test   also grpcurl and PostgreSQL (history tests), for the tests
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  echo "setup: installing etcd (Debian's etcd-server, etcd-client)"
  apt_install etcd-server etcd-client
fi
# Debian starts an etcd service on install; crms runs its own, on other ports.

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi

# The run shim (clients/go/cmd/crms-shim): a small static helper that owns each run's process group,
# so runs outlive a worker restart. Without it workers run jobs as their own children (and say so).
if command -v go >/dev/null; then
  if [ ! -x bin/crms-shim ] || [ -n "$(find clients/go/cmd/crms-shim -newer bin/crms-shim -name '*.go' 2>/dev/null)" ]; then
    echo "setup: building bin/crms-shim (go build)"
    (cd clients/go && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o ../../bin/crms-shim ./cmd/crms-shim)
  fi
else
  echo "setup: go not found; bin/crms-shim not built (install Go, then run this again): workers cannot re-adopt runs" >&2
fi

# Compiled JavaScript for bin/crms.js (it falls back to the sources when they are newer).
echo "setup: compiling the TypeScript (npm run build)"
npm run --silent build

if [ "${1:-}" = "test" ]; then
  if ! command -v openssl >/dev/null; then
    echo "setup: installing openssl, for the TLS tests' certificates"
    apt_install openssl
  fi
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "setup: installing postgresql (Debian's), for the job history tests"
    apt_install postgresql
  fi
  if [ ! -x /usr/bin/chromium ]; then
    echo "setup: installing chromium (Debian's), for the web page tests"
    apt_install chromium
  fi
  export PATH="$PATH:$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"
  if ! command -v grpcurl >/dev/null; then
    echo "setup: installing grpcurl (go install)"
    go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3
  fi
fi

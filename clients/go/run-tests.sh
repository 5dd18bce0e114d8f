#!/usr/bin/env bash
# Vets and tests the Go client and worker (clients/go). The tests of package
# crms start their own cluster (`node bin/crms.js dev` on free ports, plus the
# Go worker), so they need node with the repository's npm dependencies
# installed (scripts/setup.sh) and etcd on PATH. Installs nothing beyond the
# Go modules (go mod download).
set -euo pipefail
cd "$(dirname "$0")"

missing=""
command -v node >/dev/null || missing="$missing node"
command -v etcd >/dev/null || [ -x /usr/bin/etcd ] || [ -n "${ETCD_BIN:-}" ] || missing="$missing etcd"
[ -d ../../node_modules ] || missing="$missing node_modules(npm ci)"
if [ -n "$missing" ]; then
  echo "clients/go/run-tests.sh: missing:$missing (run scripts/setup.sh from the repository root)" >&2
  exit 1
fi

go mod download
go vet ./...
go test -count=1 ./... "$@"

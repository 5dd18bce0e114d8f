#!/usr/bin/env bash
# The whole test suite: installs what it needs, then TypeScript tests (ava),
# the etcd load tests, and the Python and Go clients' tests against live clusters.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export PATH="$PATH:$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"
# ava includes test/conformance.test.ts, which builds the Python client's venv
# (clients/python/setup-venv.sh) and the Go conformance program itself.
npx ava
# etcd at a 16 MiB quota: 50,000 jobs through with compaction and retention,
# and NOSPACE then `crms admin recover` without them (about 2 minutes, serial).
npm run test:load
bash clients/python/run-tests.sh
bash clients/go/run-tests.sh

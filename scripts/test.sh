#!/usr/bin/env bash
# The whole test suite: installs what it needs, then TypeScript tests (ava),
# and the Python and Go clients' tests against live clusters.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export PATH="$PATH:$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"
# ava includes test/conformance.test.ts, which builds the Python client's venv
# (clients/python/setup-venv.sh) and the Go conformance program itself.
npx ava
bash clients/python/run-tests.sh
bash clients/go/run-tests.sh

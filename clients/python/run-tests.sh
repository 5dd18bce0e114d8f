#!/usr/bin/env bash
# Installs the Python client (with its test extra) into clients/python/.venv
# (setup-venv.sh) and runs its tests against a live dev cluster that the tests
# start themselves (node bin/crms.js dev: needs `npm ci` done and etcd installed).
#
#   bash clients/python/run-tests.sh [pytest args...]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="$(bash "$here/setup-venv.sh" test | tail -n 1)"

cd "$here"
CRMS_REPO="$root" "$python" -m pytest tests "$@"

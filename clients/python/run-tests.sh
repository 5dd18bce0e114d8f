#!/usr/bin/env bash
# Installs the Python client (with its test extra) into clients/python/.venv and
# runs its tests against a live dev cluster that the tests start themselves
# (node bin/crms.js dev: needs `npm ci` done and etcd installed).
#
#   bash clients/python/run-tests.sh [pytest args...]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${CRMS_PYTHON_VENV:-$here/.venv}"

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi

rm -rf "$here/build"  # setuptools leaves it; stale files there would be packaged
# A regular (not editable) install, so the tests use the package as pip builds it.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$here[test]"

cd "$here"
CRMS_REPO="$root" "$venv/bin/python" -m pytest tests "$@"

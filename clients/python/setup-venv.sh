#!/usr/bin/env bash
# Builds (if missing) the Python client's virtualenv, clients/python/.venv (or
# $CRMS_PYTHON_VENV), and installs the client into it as pip builds it (a
# regular, not editable, install, so it is always the current source).
#
#   bash clients/python/setup-venv.sh         the client
#   bash clients/python/setup-venv.sh test    the client with its test extra
#
# Prints the venv's python on its last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${CRMS_PYTHON_VENV:-$here/.venv}"
extra="${1:+[$1]}"

if ! command -v python3 >/dev/null; then
  echo "clients/python/setup-venv.sh: python3 is not installed" >&2
  exit 1
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >&2
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi

rm -rf "$here/build"  # setuptools leaves it; stale files there would be packaged
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$here$extra" >&2
echo "$venv/bin/python"

#!/usr/bin/env bash
# Regenerates the Python client's code (src/crms/v1) from proto/crms/v1.
#
#   bash clients/python/generate.sh      (from anywhere)
#
# Installs what generation needs, then runs, from the repository root:
#   npx buf generate --template clients/python/buf.gen.yaml
# buf (from the repo's npm devDependencies) runs the local plugin
# clients/python/tools/protoc-gen-crms-python, which writes the *_pb2.py and
# *_pb2_grpc.py modules itself (messages built at import from the descriptors,
# for protobuf 5-7) and takes the *_pb2.pyi type stubs from the protoc bundled
# in grpcio-tools, installed here at a pinned version into clients/python/.venv.
# The result is committed; CI runs this and checks that `git diff` is empty.
set -euo pipefail

# Only the .pyi stubs come from it; the runtime floors in pyproject.toml do not follow it.
GRPCIO_TOOLS_VERSION=1.85.1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
cd "$root"

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

command -v python3 >/dev/null || apt_install python3
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  apt_install python3-venv
fi
if ! command -v npx >/dev/null; then
  apt_install nodejs npm
fi
if [ ! -x node_modules/.bin/buf ]; then
  npm ci --no-audit --no-fund
fi

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import grpc_tools, importlib.metadata as m, sys; sys.exit(m.version('grpcio-tools') != '$GRPCIO_TOOLS_VERSION')" >/dev/null 2>&1; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "grpcio-tools==$GRPCIO_TOOLS_VERSION"
fi

# The plugin runs as `python3 ...`: put the venv's python3 first on PATH.
PATH="$venv/bin:$PATH" npx buf generate --template clients/python/buf.gen.yaml
echo "generated: $(cd "$root" && ls clients/python/src/crms/v1 | tr '\n' ' ')"

#!/usr/bin/env bash
# Regenerates the Go stubs in clients/go/gen from proto/crms/v1/*.proto.
# Installs the pinned protoc plugins into $(go env GOPATH)/bin, puts that on
# PATH, and runs buf (from the repository's npm dependencies) with
# clients/go/buf.gen.yaml from the repository root. CI runs this and then
# checks that `git diff` is empty.
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"

installed_version() {
  # Prints the module version a Go binary was built from, or nothing.
  go version -m "$1" 2>/dev/null | awk '$1 == "mod" { print $3; exit }'
}

install_plugin() {
  local bin="$1" pkg="$2" version="$3"
  if [ "$(installed_version "$gobin/$bin")" != "$version" ]; then
    echo "generate: installing $pkg@$version" >&2
    GOBIN="$gobin" go install "$pkg@$version"
  fi
}

install_plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install_plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

cd "$root"
if [ ! -x node_modules/.bin/buf ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npx buf generate --template clients/go/buf.gen.yaml
echo "generate: Go stubs written to clients/go/gen/crms/v1" >&2

#!/usr/bin/env bash
# Installs each client the way a user does, from outside the clone, and runs
# the quick start of its README (the block after `<!-- quickstart -->`) against
# a live `crms dev` cluster started here:
#
#   TypeScript  npm pack clients/typescript; npm install the .tgz into a new
#               project (node_modules must stay <= 20 MB); tsc --strict on the
#               README's block; node runs it.
#   Python      python -m build (wheel and sdist); the wheel installed into three
#               venvs: the lowest pins (protobuf 5.26.1, grpcio 1.66.0),
#               protobuf 6, and the newest; each runs the README's block, the
#               first two also the client's tests (clients/python/tests, against
#               the wheel; npm test runs them with the newest releases).
#   Go          the README's block as main.go of a new module at go 1.24.0 that
#               requires the client (replace: the checkout); go mod tidy must
#               leave go 1.24.0; GOTOOLCHAIN=local go build; run.
#
#   crms        npm pack of the repository itself (only dist/, bin/, proto/,
#               web/dist/); installed into a new project without tsx or esbuild,
#               its `crms submit --wait` runs a job.
#
#   bash scripts/test-clients-outside.sh [ts|python|go|root ...]   (default: all)
#
# Needs node with the repository's npm ci done, etcd, python3 (venv) and go;
# npm, pip and the Go module proxy must be reachable.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -gt 0 ]; then parts=("$@"); else parts=(ts python go root); fi
started=$(date +%s)
step() { echo "--- $* ($(( $(date +%s) - started ))s)"; }
fail() { echo "test-clients-outside: $*" >&2; exit 1; }

for tool in node npm python3 go; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (run scripts/setup.sh)"
done
command -v etcd >/dev/null || fail "etcd is not installed (run scripts/setup.sh: Debian's etcd-server)"
python3 -c 'import venv, ensurepip' 2>/dev/null || fail "python3 cannot make venvs: apt-get install python3-venv"

tmp="$(mktemp -d /tmp/crms-outside.XXXXXX)"
dev_pid=""
cleanup() {
  if [ -n "$dev_pid" ] && kill -0 "$dev_pid" 2>/dev/null; then
    kill -INT -- "-$dev_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$dev_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$dev_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# The block after `<!-- quickstart -->` in a README, without its fences.
quickstart() {
  awk '/<!-- quickstart -->/ { f = 1; next } f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' "$1"
}

# Free TCP ports: one for the control plane, two in a row for etcd (client, peer).
free_ports() {
  python3 - <<'EOF'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
while True:
    a, b = random.randrange(20000, 32000), random.randrange(20000, 32000)
    if abs(a - b) > 2 and free(a) and free(b) and free(b + 1):
        print(a, b); break
EOF
}

start_cluster() {
  step "a crms dev cluster"
  local attempt
  for attempt in 1 2 3; do
    read -r port etcd_port < <(free_ports)
    mkdir -p "$tmp/dev-$attempt"
    setsid node "$root/bin/crms.js" dev --port "$port" --etcd-port "$etcd_port" --http-port 0 \
      --data-dir "$tmp/dev-$attempt" >"$tmp/dev-$attempt.log" 2>&1 &
    dev_pid=$!
    for _ in $(seq 1 900); do
      grep -q "crms dev cluster is up:" "$tmp/dev-$attempt.log" && break
      kill -0 "$dev_pid" 2>/dev/null || break
      sleep 0.1
    done
    grep -q "crms dev cluster is up:" "$tmp/dev-$attempt.log" && break
    kill -INT -- "-$dev_pid" 2>/dev/null || true
    wait "$dev_pid" 2>/dev/null || true
    [ "$attempt" = 3 ] && { tail -n 40 "$tmp/dev-$attempt.log" >&2; fail "crms dev did not come up"; }
  done
  export CRMS_SERVER="localhost:$port"
  echo "cluster at $CRMS_SERVER"
}

# Runs a quick start and checks it printed the finished job.
expect_hello() {
  local what="$1"; shift
  local out
  out="$("$@" 2>&1)" || { echo "$out" >&2; fail "$what: the quick start failed"; }
  echo "$what: $out"
  [[ "$out" == *"SUCCEEDED hello"* ]] || fail "$what: expected 'SUCCEEDED hello', got: $out"
}

test_ts() {
  step "TypeScript: npm pack clients/typescript"
  local tgz app="$tmp/ts-app"
  tgz="$(cd "$root/clients/typescript" && npm pack --silent --pack-destination "$tmp" | tail -n 1)"
  tar -tzf "$tmp/$tgz" | sed 's#^package/##' | sort >"$tmp/ts-files"
  grep -q '^dist/clients/typescript/src/index.d.ts$' "$tmp/ts-files" || fail "the package has no declarations"
  ! grep -qvE '^(dist/|package.json$|README.md$)' "$tmp/ts-files" || fail "the package carries more than dist/: $(grep -vE '^(dist/|package.json$|README.md$)' "$tmp/ts-files" | head -5)"

  step "TypeScript: npm install $tgz into a new project"
  mkdir -p "$app"
  printf '{ "name": "crms-outside-ts", "private": true, "type": "module" }\n' >"$app/package.json"
  (cd "$app" && npm install --no-audit --no-fund --loglevel=error "$tmp/$tgz")
  local mb deps
  mb="$(du -sm "$app/node_modules" | cut -f1)"
  deps="$(node -p 'Object.keys(require(process.argv[1]).dependencies).join(" ")' "$app/node_modules/@crms/client/package.json")"
  echo "node_modules: ${mb} MB; @crms/client depends on: $deps"
  [ "$mb" -le 20 ] || fail "node_modules of an app with only @crms/client is ${mb} MB (budget 20 MB)"
  [ "$deps" = "@bufbuild/protobuf @grpc/grpc-js" ] || fail "@crms/client depends on more than @bufbuild/protobuf and @grpc/grpc-js: $deps"

  step "TypeScript: tsc --strict on the README's quick start, then run it"
  quickstart "$root/clients/typescript/README.md" >"$app/main.ts"
  [ -s "$app/main.ts" ] || fail "no quick start in clients/typescript/README.md"
  # The repository's typescript and @types/node, so nothing more is downloaded.
  cat >"$app/tsconfig.json" <<EOF
{
  "compilerOptions": {
    "strict": true, "target": "ES2022", "module": "NodeNext", "moduleResolution": "NodeNext",
    "skipLibCheck": false, "types": ["node"], "typeRoots": ["$root/node_modules/@types"], "outDir": "out"
  },
  "files": ["main.ts"]
}
EOF
  (cd "$app" && node "$root/node_modules/typescript/bin/tsc" -p tsconfig.json)
  expect_hello "TypeScript" node "$app/out/main.js"
}

test_python() {
  step "Python: python -m build (wheel and sdist)"
  python3 -m venv "$tmp/py-build"
  "$tmp/py-build/bin/pip" install --quiet --disable-pip-version-check build
  rm -rf "$root/clients/python/build"
  "$tmp/py-build/bin/python" -m build --outdir "$tmp/py-dist" "$root/clients/python" >"$tmp/py-build.log" 2>&1 ||
    { tail -n 30 "$tmp/py-build.log" >&2; fail "python -m build failed"; }
  rm -rf "$root/clients/python/build"
  local wheel sdist
  wheel="$(ls "$tmp"/py-dist/crms-*.whl)"
  sdist="$(ls "$tmp"/py-dist/crms-*.tar.gz)"
  echo "built $(basename "$wheel") $(basename "$sdist")"
  python3 -c 'import sys, zipfile; names = set(zipfile.ZipFile(sys.argv[1]).namelist()); sys.exit(not {"crms/py.typed", "crms/v1/job_pb2.pyi", "crms/_descriptors.py"} <= names)' "$wheel" ||
    fail "the wheel lacks crms/py.typed, the .pyi stubs or crms/_descriptors.py"
  quickstart "$root/clients/python/README.md" >"$tmp/quickstart.py"
  [ -s "$tmp/quickstart.py" ] || fail "no quick start in clients/python/README.md"

  local env pins
  for env in "lowest:protobuf==5.26.1 grpcio==1.66.0" "protobuf6:protobuf>=6,<7" "newest:"; do
    pins="${env#*:}"
    env="${env%%:*}"
    step "Python ($env${pins:+: $pins}): install the wheel"
    python3 -m venv "$tmp/py-$env"
    # shellcheck disable=SC2086 # pins are separate requirements
    "$tmp/py-$env/bin/pip" install --quiet --disable-pip-version-check "$wheel[test]" $pins
    # Each venv must hold the versions it stands for (pip could have moved them).
    "$tmp/py-$env/bin/python" - "$env" <<'EOF'
import sys, crms, google.protobuf, grpc
env, pb, rpc = sys.argv[1], google.protobuf.__version__, grpc.__version__
print("crms from", crms.__file__, "protobuf", pb, "grpcio", rpc)
if (env == "lowest" and (pb, rpc) != ("5.26.1", "1.66.0")) or (env == "protobuf6" and not pb.startswith("6.")):
    sys.exit(f"{env}: protobuf {pb}, grpcio {rpc} is not what this venv tests")
EOF
    expect_hello "Python ($env)" bash -c "cd '$tmp' && '$tmp/py-$env/bin/python' quickstart.py"
    # The newest releases run the whole suite in npm test already (clients/python/run-tests.sh).
    [ "$env" != newest ] || continue
    step "Python ($env): the client's tests against the installed wheel"
    (cd "$root/clients/python" && env -u CRMS_SERVER CRMS_REPO="$root" "$tmp/py-$env/bin/python" -m pytest tests -q -p no:cacheprovider)
  done
}

test_go() {
  step "Go: the README's quick start in a new module that requires the client"
  local app="$tmp/go-app" line
  mkdir -p "$app"
  quickstart "$root/clients/go/README.md" >"$app/main.go"
  [ -s "$app/main.go" ] || fail "no quick start in clients/go/README.md"
  (
    cd "$app"
    export GOTOOLCHAIN=local GOFLAGS=-mod=mod
    go mod init example.com/crms-outside >/dev/null 2>&1
    go mod edit -go=1.24.0 \
      -require=github.com/crms-dev/crms/clients/go@v0.0.0 \
      -replace=github.com/crms-dev/crms/clients/go="$root/clients/go"
    go mod tidy
    line="$(awk '$1 == "go" { print $2 }' go.mod)"
    [ "$line" = "1.24.0" ] || fail "go mod tidy raised the module's go line to $line: the client or what it requires needs a newer Go than 1.24"
    grep -E '^\s+google.golang.org/(grpc|protobuf) ' go.mod | sed 's/^/  /'
    go build -o app .
  )
  expect_hello "Go" "$app/app"
}

# Before the cluster starts: prepack rebuilds the dist/ that bin/crms.js runs.
pack_root() {
  step "crms: npm pack (prepack builds dist/ and web/dist/)"
  root_tgz="$(cd "$root" && npm pack --silent --pack-destination "$tmp" | tail -n 1)"
}

test_root() {
  step "crms: npm install the packed crms into a new project"
  local tgz="$root_tgz" app="$tmp/root-app" extra
  extra="$(tar -tzf "$tmp/$tgz" | sed 's#^package/##' | grep -vE '^(dist/|bin/|proto/|web/dist/|package.json$|README.md$|LICENSE)' || true)"
  [ -z "$extra" ] || fail "the crms package carries more than dist/, bin/, proto/, web/dist/: $(echo "$extra" | head -5)"
  mkdir -p "$app"
  printf '{ "name": "crms-outside-root", "private": true }\n' >"$app/package.json"
  (cd "$app" && npm install --no-audit --no-fund --loglevel=error "$tmp/$tgz")
  for dev in tsx esbuild typescript; do
    [ ! -e "$app/node_modules/$dev" ] || fail "installing crms installs $dev, a development tool"
  done
  echo "node_modules: $(du -sm "$app/node_modules" | cut -f1) MB"
  local out
  out="$("$app/node_modules/.bin/crms" submit --wait -- echo hello 2>&1)" || { echo "$out" >&2; fail "the packed crms could not submit"; }
  echo "$out"
  [[ "$out" == *"SUCCEEDED"* ]] || fail "the packed crms: expected SUCCEEDED, got: $out"
}

root_tgz=""
if [[ " ${parts[*]} " == *" root "* ]]; then pack_root; fi
start_cluster
for part in "${parts[@]}"; do
  case "$part" in
    root) test_root ;;
    ts) test_ts ;;
    python) test_python ;;
    go) test_go ;;
    *) fail "unknown part $part (ts, python, go or root)" ;;
  esac
done
step "done: clients installed from outside and run against a live cluster"

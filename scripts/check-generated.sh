#!/usr/bin/env bash
# Fails when generated code differs from what `buf generate` produces now.
set -euo pipefail
cd "$(dirname "$0")/.."
npx buf generate
if [ -x clients/python/generate.sh ]; then bash clients/python/generate.sh; fi
if [ -x clients/go/generate.sh ]; then bash clients/go/generate.sh; fi
if ! git diff --exit-code --stat -- gen clients || [ -n "$(git status --porcelain -- gen clients | grep '^??' || true)" ]; then
  echo "generated code is out of date: run npx buf generate and commit" >&2
  exit 1
fi
echo "generated code is current"

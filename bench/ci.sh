#!/usr/bin/env bash
# Runs every benchmark scenario at --size small. Fails only when a scenario
# crashes (non-zero exit or no JSON result line); speed is never asserted.
# Results: one JSON line per scenario on stdout, and in $BENCH_OUT if set.
set -uo pipefail
cd "$(dirname "$0")/.."

out="${BENCH_OUT:-/dev/null}"
[[ "$out" == /dev/null ]] || : >"$out"
scenarios=(ceiling throughput latency workers gocrms history real paced backlog fairshare)
failed=()
for s in "${scenarios[@]}"; do
  echo "=== bench $s (--size small)" >&2
  log="$(mktemp)"
  # Each scenario stops itself (watchdog 180 s at small size); timeout(1) is the backstop.
  if timeout --kill-after=10 300 npx tsx bench/run.ts "$s" --size small >"$log"; then
    line="$(tail -n 1 "$log")"
    if [[ "$line" == \{* ]] && ! grep -q '"error"' <<<"$line"; then
      echo "$line"
      echo "$line" >>"$out"
      cat "$log" | sed '$d' >&2
    else
      echo "bench $s: no result line" >&2
      cat "$log" >&2
      failed+=("$s")
    fi
  else
    echo "bench $s: exited with status $?" >&2
    cat "$log" >&2
    failed+=("$s")
  fi
  rm -f "$log"
done

if ((${#failed[@]})); then
  echo "bench: crashed: ${failed[*]}" >&2
  exit 1
fi
echo "bench: all ${#scenarios[@]} scenarios ran" >&2

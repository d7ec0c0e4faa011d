#!/usr/bin/env bash
# Runs the package tests (after `npm run release`) and prints one summary line.
set -uo pipefail
dir=$(dirname "$0")
passed=0; failed=0
for t in install.sh arm64-replay.sh; do
  echo "== packaging/test/$t"
  out=$(bash "$dir/$t" 2>&1); status=$?
  echo "$out"
  line=$(grep -E '^packaging: [0-9]+ passed, [0-9]+ failed$' <<<"$out" | tail -1)
  if [ -n "$line" ]; then
    passed=$((passed + $(sed -E 's/^packaging: ([0-9]+) passed.*/\1/' <<<"$line")))
    failed=$((failed + $(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$line")))
  fi
  [ "$status" -eq 0 ] || [ -n "$line" ] || failed=$((failed + 1))
done
echo "packaging: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# `npm test`: set everything up, check types (the build), lint, check the
# layering rules, then run the whole suite with Node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian's prometheus and prometheus-node-exporter: test/cluster/prometheus.test.ts compares a real Prometheus.
HQTS_APT_EXTRA="${HQTS_APT_EXTRA:-} prometheus prometheus-node-exporter" bash scripts/setup.sh
echo "test: lint" >&2
npx eslint .
node scripts/check-layers.mjs
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
if [ ${#files[@]} -eq 0 ]; then
  echo "test: no test files found under dist/test" >&2
  exit 1
fi
echo "test: running ${#files[@]} test files" >&2
exec node --test --test-concurrency=2 --test-timeout=600000 "${files[@]}"

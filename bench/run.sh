#!/usr/bin/env bash
# HQ-TS vs VictoriaMetrics benchmark (npm run bench -- [options]).
# Installs victoria-metrics if missing (fresh CI machines), builds HQ-TS,
# then runs bench/ingest.ts; options pass through (see bench/README.md).
# `npm run bench -- write [options]`, or a first option --shape, runs the
# write-shapes benchmark (bench/write-shapes.ts) instead.
# BENCH_SKIP_BUILD=1 skips the build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "bench: need root to run: $*" >&2; return 1
  fi
}

if ! command -v victoria-metrics >/dev/null 2>&1 && [ ! -x /usr/bin/victoria-metrics ]; then
  echo "bench: victoria-metrics not installed; installing the Debian package" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! as_root apt-get install -y victoria-metrics; then
    as_root apt-get update
    as_root apt-get install -y victoria-metrics
  fi
fi

if [ "${BENCH_SKIP_BUILD:-0}" != "1" ]; then
  echo "bench: building (npx tsc -p tsconfig.json)" >&2
  mkdir -p bench/out
  # tsc emits even when it reports errors; a half-written src/ must not stop the
  # VictoriaMetrics half, and the harness reports HQ-TS as failed if its CLI is missing.
  if ! npx tsc -p tsconfig.json > bench/out/tsc.log 2>&1; then
    echo "bench: WARNING: tsc reported $(grep -c 'error TS' bench/out/tsc.log || true) errors (bench/out/tsc.log); continuing with what it emitted" >&2
  fi
fi

# One process (no npm/tsx wrapper in between), so SIGINT/SIGTERM reach the
# harness, which then stops the databases it started.
case "${1:-}" in
  write) shift; exec node --import tsx bench/write-shapes.ts "$@" ;;
  --shape|--shape=*) exec node --import tsx bench/write-shapes.ts "$@" ;;
esac
exec node --import tsx bench/ingest.ts "$@"

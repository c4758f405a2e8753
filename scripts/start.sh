#!/usr/bin/env bash
# `npm start`: set everything up, then run the database in the foreground.
# Standalone node with its data under ./data (the 3-node playground replaces
# this once the cluster lands). Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
HTTP="${HQTS_HTTP:-127.0.0.1:8428}"
mkdir -p data/standalone
exec node dist/src/cli/main.js node --data data/standalone --http "$HTTP" "$@"

#!/usr/bin/env bash
# `npm start`: set everything up, then run the 3-node playground in the
# foreground: 3 etcd members and 3 HQ-TS nodes on this machine, data under
# ./data/playground (docs/playground.md). Node n1 serves on 127.0.0.1:8428
# (n2 8429, n3 8430; etcd clients 8438-8440, peers 8448-8450). Set
# HQTS_BASE_PORT to move the whole range. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/src/cli/main.js cluster up --nodes 3 --dir data/playground --base-port "${HQTS_BASE_PORT:-8428}" "$@"

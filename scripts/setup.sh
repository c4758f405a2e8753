#!/usr/bin/env bash
# Sets up HQ-TS on a fresh Debian machine that has Node 20 and nothing else:
# system packages (etcd from Debian's etcd-server), npm packages exactly as the
# lockfile pins them, then the TypeScript build. Idempotent and quick when
# nothing changed. Extra Debian packages can be asked for in HQTS_APT_EXTRA.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=()
command -v etcd >/dev/null 2>&1 || apt_pkgs+=(etcd-server)
for p in ${HQTS_APT_EXTRA:-}; do
  dpkg -s "$p" >/dev/null 2>&1 || apt_pkgs+=("$p")
done
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${apt_pkgs[*]}" >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi

stamp=node_modules/.hqts-lockfile-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing npm packages from the lockfile" >&2
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
fi

echo "setup: building" >&2
npx tsc -p tsconfig.json

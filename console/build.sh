#!/usr/bin/env bash
# Builds the web console into console/dist (embedded by the coordinator at compile time):
# npm ci from the lock file, type check, vite build. Needs Node 20+ and npm; run it before
# `cargo build` (deploy/local/up.sh and .ci/run do). Without it, the coordinator still compiles
# and serves a page saying the console was not built.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
command -v npm >/dev/null || { echo "console/build.sh: npm is not installed (Node 20 or later: apt-get install nodejs npm)" >&2; exit 1; }
# npm ci is slow; skip it when node_modules matches the lock file already.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
    # No install scripts: esbuild finds its platform binary (an optional dependency) without its
    # postinstall, and nothing else needs one.
    npm ci --no-audit --no-fund --ignore-scripts
fi
npx tsc --noEmit
npx vite build --logLevel warn
echo "console built: $(pwd)/dist"

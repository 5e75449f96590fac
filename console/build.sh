#!/usr/bin/env bash
# Builds the web console into console/dist (embedded by the coordinator at compile time):
# npm ci from the lock file, type check, vite build. Needs Node 20+ and npm; run it before
# `cargo build` (deploy/local/up.sh and .ci/run do). Without it, the coordinator still compiles
# and serves a page saying the console was not built.
#
# Only when something changed, so that running it before every `cargo build` costs nothing:
# - when the sources (src/, index.html, the package, lock, TypeScript and Vite files, this script)
#   hash to what dist/.sources-sha256 recorded, dist is left as it is ("up to date");
# - otherwise Vite builds into a scratch directory and only the files whose bytes differ are
#   copied into dist (files Vite no longer makes are removed). When any file of dist changed,
#   dist/.content-sha256 is removed: the coordinator's build script watches that file alone,
#   embeds dist by content and writes it again (coordinator/build.rs). Unchanged output leaves it,
#   and the coordinator is not compiled again.
# FORCE=1 builds even when the sources did not change.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
command -v npm >/dev/null || { echo "console/build.sh: npm is not installed (Node 20 or later: apt-get install nodejs npm)" >&2; exit 1; }

# The hex SHA-256 of the console's sources: every file's hash and path, sorted by path.
sources_hash() {
    find src index.html package.json package-lock.json tsconfig.json vite.config.ts build.sh -type f -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

sources=$(sources_hash)
if [[ ${FORCE:-0} != 1 && -f dist/index.html && -f dist/.sources-sha256 && $(<dist/.sources-sha256) == "$sources" ]] \
    && ! grep -q "the console was not built" dist/index.html; then
    echo "console up to date (sources unchanged since the last build): $(pwd)/dist"
    exit 0
fi

# npm ci is slow; skip it when node_modules matches the lock file already.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
    # No install scripts: esbuild finds its platform binary (an optional dependency) without its
    # postinstall, and nothing else needs one.
    npm ci --no-audit --no-fund --ignore-scripts
fi
npx tsc --noEmit

scratch=$(mktemp -d "${TMPDIR:-/tmp}/baton-console.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
npx vite build --logLevel warn --outDir "$scratch" --emptyOutDir

# Copy into dist only what changed; remove what Vite no longer makes (the stamps stay).
mkdir -p dist
changed=0
while IFS= read -r -d '' f; do
    rel=${f#"$scratch"/}
    if ! cmp -s "$f" "dist/$rel"; then
        mkdir -p "dist/$(dirname "$rel")"
        cp "$f" "dist/$rel"
        changed=1
    fi
done < <(find "$scratch" -type f -print0)
while IFS= read -r -d '' f; do
    rel=${f#dist/}
    if [[ ! -e $scratch/$rel ]]; then
        rm -f "$f"
        changed=1
    fi
done < <(find dist -type f ! -name '.*' -print0)
find dist -mindepth 1 -type d -empty -delete

if ((changed)); then
    rm -f dist/.content-sha256
    echo "console built: $(pwd)/dist"
else
    echo "console built; dist is unchanged: $(pwd)/dist"
fi
[[ -f dist/.sources-sha256 && $(<dist/.sources-sha256) == "$sources" ]] || printf '%s\n' "$sources" >dist/.sources-sha256

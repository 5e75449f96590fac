#!/usr/bin/env bash
# Builds the Baton book (docs/, mdBook) into target/book/ and checks its links:
#
#   1. mdBook MDBOOK_VERSION is installed with `cargo install --locked` (from crates.io, into
#      cargo's bin directory) unless that version is already there; only the `search` feature
#      (no `serve`/`watch`), so it compiles in a few minutes once and is reused after;
#   2. `mdbook build docs`;
#   3. links that leave the book (../examples/..., ../deploy/README.md) are pointed at the
#      repository's files, two levels up from target/book/, so the built book opened from disk
#      reaches them (mdBook turns `.md` into `.html`, which only holds for the book's own pages);
#   4. .ci/check_book_links.py: every relative href and src of the built pages resolves to a file,
#      and every #anchor to an id of its page. A broken link or anchor fails, naming page and link.
#
# The Markdown itself (README.md, docs/, deploy/README.md, ...) is checked too, with the same rules
# and the repository's files, by tests/tests/docs.rs (cargo test -p baton-tests --test docs).
#
#   bash .ci/docs.sh              # then open target/book/index.html
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MDBOOK_VERSION=0.5.4
MDBOOK=${MDBOOK:-mdbook}
if ! "$MDBOOK" --version 2>/dev/null | grep -qx "mdbook v$MDBOOK_VERSION"; then
    echo "docs: installing mdBook $MDBOOK_VERSION (cargo install, once)" >&2
    cargo install --locked --quiet "mdbook@$MDBOOK_VERSION" --no-default-features --features search
    MDBOOK=$(dirname "$(command -v cargo)")/mdbook
fi

rm -rf target/book
"$MDBOOK" build docs
python3 .ci/check_book_links.py target/book
echo "docs: target/book/index.html"

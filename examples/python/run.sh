#!/usr/bin/env bash
# Runs one of the Python SDK examples (expense_approval, nightly_report) against the coordinator
# ./deploy/local/up.sh started, in a virtualenv (.baton/py-venv) with ./sdk/python installed; the
# venv is made on first use (pip fetches the SDK's dependencies from PyPI) and reused.
#
#   ./examples/python/run.sh expense_approval [--reject | --interactive]
#   ./examples/python/run.sh nightly_report [--sleep 5s] [--schedule]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
name=${1:?usage: run.sh expense_approval|nightly_report [args]}
shift
script=$ROOT/examples/python/$name.py
[[ -f $script ]] || { echo "run.sh: no example $name (expense_approval, nightly_report)" >&2; exit 2; }
VENV=${BATON_EXAMPLES_VENV:-$ROOT/.baton/py-venv}
stamp=$VENV/.sdk-stamp
want=$(cat "$ROOT"/sdk/python/pyproject.toml "$ROOT"/sdk/python/setup.py "$ROOT"/proto/baton/v1/*.proto \
    "$ROOT"/sdk/python/src/baton/*.py "$ROOT"/sdk/python/src/baton/worker/*.py | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]] || ! "$VENV/bin/python" -c 'import baton' 2>/dev/null; then
    echo "run.sh: installing ./sdk/python into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$ROOT/sdk/python"
    echo "$want" >"$stamp"
fi
exec "$VENV/bin/python" "$script" "$@"

#!/usr/bin/env bash
# Makes sure the project's Python virtualenv exists with exactly .ci/requirements.txt, and prints
# its directory. Used by .ci/run, deploy/validate.sh and tests/tests/reflection.rs; safe to run
# any number of times: when the venv was built from the same requirements file (its SHA-256 is kept
# in the venv) and its python runs, it does nothing. Otherwise it (re)creates it with `python3 -m
# venv` and installs the pinned packages from PyPI. Callers at the same time wait for each other
# (`flock` on `<venv>.lock`).
#
#   VENV=$(bash .ci/python-venv.sh)           # default .ci/venv; BATON_CI_VENV=DIR for another
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${BATON_CI_VENV:-$PWD/.ci/venv}
REQUIREMENTS=$PWD/.ci/requirements.txt
STAMP=$VENV/.requirements.sha256
want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)

# One maker at a time: tests that need the venv run in parallel, and two of them making it at once
# fail ("File exists"). The others wait here, then find it made.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9

if [[ -f $STAMP && $(cat "$STAMP") == "$want" ]] && "$VENV/bin/python" -c '' 2>/dev/null; then
    echo "$VENV"
    exit 0
fi

PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || {
    echo "python-venv: $PYTHON not found (install python3 and python3-venv)" >&2
    exit 1
}
echo "python-venv: creating $VENV from .ci/requirements.txt" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --requirement "$REQUIREMENTS" >&2
echo "$want" >"$STAMP"
echo "$VENV"

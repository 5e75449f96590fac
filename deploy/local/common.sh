# shellcheck shell=bash
# Helpers shared by the scripts of deploy/local (sourced, not run). Expects the current directory to
# be the repository root.

STATE_DIR=.baton
BIN_DIR=target/release

log() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# secs START END: the seconds from START to END (two `date +%s.%N`), with one decimal.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# pid_of NAME: the pid recorded in .baton/NAME.pid, if that process is alive and still runs the
# program we started (a pid file left by a crash may name a pid the system has reused since).
pid_of() {
    local file="$STATE_DIR/$1.pid" pid
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/cmdline ]]; then
        local expected
        expected=$(cat "$STATE_DIR/$1.cmd" 2>/dev/null || true)
        if [[ -n $expected ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$expected"; then
            return 1
        fi
    fi
    printf '%s\n' "$pid"
}

# use_baton: exports BATON_ADDR, the coordinator's address (default http://127.0.0.1:7450), as a URL
# (the CLI also takes host:port; the workers need a URL), and sets BATON, the path of the CLI.
use_baton() {
    export BATON_ADDR=${BATON_ADDR:-http://127.0.0.1:7450}
    [[ $BATON_ADDR == *://* ]] || BATON_ADDR=http://$BATON_ADDR
    BATON=$PWD/$BIN_DIR/baton
}

# --- JSON: jq when installed, else python3 ----------------------------------------------------

# use_json: sets JSON to the tool the json_* helpers use, jq when installed, else python3; dies when
# there is neither. Call it once before any of them.
use_json() {
    if have jq; then
        JSON=jq
    elif have python3; then
        JSON=python3
    else
        die "need jq or python3 to read the CLI's JSON output"
    fi
}

# json_string VALUE: VALUE as a JSON string literal.
json_string() {
    if [[ $JSON == jq ]]; then
        jq -cn --arg v "$1" '$v'
    else
        python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"
    fi
}

# json_get JSON PATH: the value at PATH in the JSON document, a string as it is, anything else as
# compact JSON, nothing when it is missing or null. PATH is keys separated by dots; in an array, a
# number is an index, `k=v` the first object whose field k is v, and a plain word the first object
# whose `id` is that word: `steps.approve.status`, `run_id=<id>.step_id`,
# `runs.parent_run_id=<id>.id`.
json_get() {
    if [[ $JSON == jq ]]; then
        jq -r --arg path "$2" '
          reduce ($path | split("."))[] as $k (.;
            if type == "array" then
              if ($k | test("^[0-9]+$")) then .[$k | tonumber]
              elif ($k | contains("=")) then
                ($k | split("=")) as [$f, $v] | map(select(type == "object" and (.[$f] | tostring) == $v)) | first
              else map(select(type == "object" and .id == $k)) | first end
            elif type == "object" then .[$k]
            else null end)
          | if . == null then "" elif type == "string" then . else tojson end' <<<"$1" 2>/dev/null || true
    else
        python3 -c '
import json, sys
try:
    v = json.loads(sys.stdin.read())
except ValueError:
    sys.exit(0)
for k in sys.argv[1].split("."):
    if isinstance(v, list):
        if k.isdigit():
            v = v[int(k)] if int(k) < len(v) else None
        else:
            f, _, want = k.partition("=") if "=" in k else ("id", "", k)
            v = next((o for o in v if isinstance(o, dict) and str(o.get(f)) == want), None)
    elif isinstance(v, dict):
        v = v.get(k)
    else:
        v = None
if v is not None:
    print(v if isinstance(v, str) else json.dumps(v, separators=(",", ":")))
' "$2" <<<"$1" || true
    fi
}

# --- The coordinator and a run (with BATON, the path of the CLI, set) -----------------------------

# check_coordinator WHAT: dies unless the CLI is built and the coordinator answers at $BATON_ADDR;
# warns when no docs-worker started by ./deploy/local/up.sh runs (WHAT waits until one does).
check_coordinator() {
    local out f workers=0
    [[ -x $BATON ]] || die "$BIN_DIR/baton is missing: run ./deploy/local/up.sh first (it builds and starts everything)"
    if ! out=$("$BATON" workflow list 2>&1); then
        die "the coordinator does not answer at $BATON_ADDR; start it with ./deploy/local/up.sh
$out"
    fi
    for f in "$STATE_DIR"/worker-*.pid; do
        [[ -e $f ]] && pid_of "$(basename "$f" .pid)" >/dev/null && workers=$((workers + 1))
    done
    ((workers > 0)) || warn "no docs-worker started by ./deploy/local/up.sh runs: $1 until one does"
}

# apply_definitions FILE...: `baton workflow apply -f` each FILE in turn (a no-op for a definition
# registered already); dies at the first that fails.
apply_definitions() {
    local def out
    for def in "$@"; do
        out=$("$BATON" workflow apply -f "$def" 2>&1) || die "baton workflow apply -f $def failed (a changed
definition needs a new \`version:\`):
$out"
        log "applied $def: $(head -n1 <<<"$out")"
    done
}

# get_run: the run $run as JSON into $run_json, its status into $status.
# shellcheck disable=SC2154 # run: the caller's
get_run() {
    run_json=$("$BATON" --output json run get "$run" 2>&1) || die "baton run get $run failed:
$run_json"
    status=$(json_get "$run_json" status)
}
# finished: whether $status is a final one.
finished() { [[ $status =~ ^(succeeded|failed|cancelled|timed_out)$ ]]; }

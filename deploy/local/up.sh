#!/usr/bin/env bash
# Brings up a local Baton and runs the `documents` example on every file of
# /usr/share/common-licenses:
#   1. makes sure Redis (127.0.0.1:6379), RabbitMQ (127.0.0.1:5672) and PostgreSQL (127.0.0.1:5432) run (deploy/local/services.sh:
#      uses running ones, else starts installed ones, else, as root, installs them with apt-get);
#   2. builds the web console (console/build.sh, when npm is installed: nothing to do when its
#      sources did not change) and the workspace binaries (cargo build --release --bins: the
#      coordinator embeds the console by content, so an unchanged console compiles nothing again);
#   3. starts one coordinator and two docs-workers in the background (pid files and logs in .baton/),
#      unless they already run;
#   4. applies every definition in examples/workflows (scan.yaml declares the schedule
#      doc-scan/every-15-minutes, which from then on scans /usr/share/doc every 15 minutes and runs
#      `documents` on each new or changed file; ./deploy/local/scan.sh runs a scan at once);
#   5. submits one `documents` run per file, waits for all of them, and prints a summary.
#
# Idempotent: run it again and it starts only what is not running; files that did not change are
# not processed again (the idempotency key <path>@<sha256> answers the run made before). The summary
# counts only the runs this invocation created: runs answered by an idempotency key belong to an
# earlier invocation and are neither waited for nor counted.
# Stop everything it started with ./deploy/local/down.sh (Redis and RabbitMQ are left running).
#
# Environment:
#   BATON_ADDR          coordinator address for the CLI and workers (default http://127.0.0.1:7450);
#                       the coordinator listens on its host:port unless BATON_LISTEN is set
#   DOCS_DIR            directory of documents to process (default /usr/share/common-licenses)
#   DOCS_WORKERS        number of docs-workers (default 2)
#   DOCS_FAILURE_RATE   fraction of `analyze` attempts that fail on purpose (default 0.3)
#   WAIT_TIMEOUT        seconds to wait for the runs to finish (default 300)
#   SKIP_BUILD=1        use the binaries already in target/release
#   METRICS_ADDR        the coordinator's Prometheus /metrics address (default 127.0.0.1:9464;
#                       empty: none); worker i serves its own at 127.0.0.1:(9464+i) unless
#                       WORKER_METRICS=0
#   HTTP_ADDR           the coordinator's HTTP JSON API and web console address (default
#                       127.0.0.1:8080; empty: none)
#   ARCHIVE_URL         the archive of finished runs (PostgreSQL; default
#                       postgres://postgres@127.0.0.1:5432/postgres, which services.sh starts;
#                       empty: no archive)
#   BATON_TOKEN         bearer token of the CLI and the workers; when set (and neither
#                       BATON_AUTH_TOKENS nor BATON_AUTH_TOKENS_FILE is), the coordinator starts
#                       with auth on and this one token as admin (token: 16 characters or more)
# Other BATON_* variables (BATON_REDIS_URL, BATON_NAMESPACE, ...) reach the coordinator as usual;
# the Redis/RabbitMQ checks of step 1 are for the local defaults only.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
# shellcheck source=deploy/local/common.sh
source deploy/local/common.sh

SCRIPT_START=$(date +%s.%N)
use_baton
DOCS_DIR=${DOCS_DIR:-/usr/share/common-licenses}
DOCS_WORKERS=${DOCS_WORKERS:-2}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-300}

[[ $DOCS_WORKERS =~ ^[1-9][0-9]*$ ]] || die "DOCS_WORKERS=$DOCS_WORKERS is not a positive number"
[[ $WAIT_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "WAIT_TIMEOUT=$WAIT_TIMEOUT is not a positive number of seconds"
mkdir -p "$STATE_DIR"

# --- JSON: jq when installed, else python3 ----------------------------------------------------

use_json

# submit_fields: reads the answer of `baton --output json run submit` on stdin and prints
# "<run id> <created>" (created: true/false/unknown). Defensive about the exact shape.
submit_fields() {
    local text id created
    text=$(cat)
    if [[ $JSON == jq ]]; then
        id=$(jq -r '(.run_id // .id // .run.id // empty)' <<<"$text" 2>/dev/null || true)
        created=$(jq -r 'if has("created") then .created else "unknown" end' <<<"$text" 2>/dev/null || true)
    else
        read -r id created < <(python3 -c '
import json, sys
try:
    v = json.loads(sys.stdin.read())
except ValueError:
    sys.exit(0)
if isinstance(v, dict):
    rid = v.get("run_id") or v.get("id") or (v.get("run") or {}).get("id") or ""
    c = v.get("created")
    print(rid, "unknown" if c is None else str(c).lower())
' <<<"$text" || true) || true
    fi
    if [[ -z ${id:-} ]]; then
        # Not the JSON we expected: take the first UUID in the output.
        id=$(grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' <<<"$text" | head -n1 || true)
        created=unknown
    fi
    printf '%s %s\n' "$id" "${created:-unknown}"
}

# run_status: reads a run as JSON (`baton --output json run get`) on stdin, prints its status word.
run_status() {
    if [[ $JSON == jq ]]; then
        jq -r '(.status // .run.status // "unknown") | ascii_downcase' 2>/dev/null || echo unknown
    else
        python3 -c '
import json, sys
try:
    v = json.load(sys.stdin)
    print(str(v.get("status") or (v.get("run") or {}).get("status") or "unknown").lower())
except Exception:
    print("unknown")
'
    fi
}

# --- 1. Redis and RabbitMQ -------------------------------------------------------------------

deploy/local/services.sh

# --- 2. Build ----------------------------------------------------------------------------------

if [[ ${SKIP_BUILD:-0} == 1 ]]; then
    log "SKIP_BUILD=1: using the binaries in $BIN_DIR"
else
    have cargo || die "cargo is not installed (https://rustup.rs)"
    # The web console first: the coordinator embeds console/dist when it is compiled.
    if have npm; then
        log "building the web console: console/build.sh"
        console/build.sh
    else
        warn "npm is not installed: the coordinator will serve a page saying the console was not built
    (install Node 20 and npm, then run ./deploy/local/up.sh again)"
    fi
    log "building: cargo build --release --bins"
    cargo build --release --bins
fi
for b in baton-coordinator docs-worker baton; do
    [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b is missing: the build did not produce it"
done

# --- 3. Coordinator and workers ------------------------------------------------------------------

# start NAME LOG PROGRAM [ENV=VALUE...]: starts PROGRAM in its own session unless NAME runs.
start() {
    local name=$1 logfile=$2 program=$3 pid
    shift 3
    if pid=$(pid_of "$name"); then
        log "$name: already running (pid $pid)"
        if [[ $program -nt $STATE_DIR/$name.pid ]]; then
            warn "$name runs a binary older than the one just built; to restart everything:
    ./deploy/local/down.sh && ./deploy/local/up.sh"
        fi
        return
    fi
    printf '%s\n' "$program" >"$STATE_DIR/$name.cmd"
    printf '\n--- %s: started by deploy/local/up.sh\n' "$(date -Is)" >>"$logfile"
    # setsid: its own session, so that a Ctrl-C in this terminal does not reach it.
    setsid nohup env NO_COLOR=1 "$@" "$program" >>"$logfile" 2>&1 </dev/null &
    echo $! >"$STATE_DIR/$name.pid"
    sleep 0.3
    pid=$(pid_of "$name") || die "$name exited at once; the end of $logfile:
$(tail -n 20 "$logfile")"
    log "$name: started (pid $pid, log $logfile)"
}

# The coordinator listens where the CLI and the workers look for it, unless told otherwise.
addr_hostport=${BATON_ADDR#*://}
addr_hostport=${addr_hostport%%/*}
auth_env=()
if [[ -n ${BATON_TOKEN:-} && -z ${BATON_AUTH_TOKENS:-} && -z ${BATON_AUTH_TOKENS_FILE:-} ]]; then
    # The CLI and the workers read BATON_TOKEN from the environment they inherit.
    auth_env=("BATON_AUTH_TOKENS=admin::$BATON_TOKEN")
    log "auth on: BATON_TOKEN is the coordinator's admin token"
fi
METRICS_ADDR=${METRICS_ADDR-127.0.0.1:9464}
HTTP_ADDR=${HTTP_ADDR-127.0.0.1:8080}
ARCHIVE_URL=${ARCHIVE_URL-${BATON_ARCHIVE_URL:-postgres://postgres@127.0.0.1:5432/postgres}}
start coordinator "$STATE_DIR/coordinator.log" "$ROOT/$BIN_DIR/baton-coordinator" \
    "BATON_LISTEN=${BATON_LISTEN:-$addr_hostport}" \
    ${ARCHIVE_URL:+"BATON_ARCHIVE_URL=$ARCHIVE_URL"} \
    ${METRICS_ADDR:+"BATON_METRICS_ADDR=$METRICS_ADDR"} \
    ${HTTP_ADDR:+"BATON_HTTP_ADDR=$HTTP_ADDR"} \
    "BATON_DEFINITIONS_DIR=${BATON_DEFINITIONS_DIR:-$ROOT/examples/workflows}" \
    ${auth_env[@]+"${auth_env[@]}"}

coordinator_answers() { "$BATON" workflow list >/dev/null 2>&1; }
deadline=$((SECONDS + 30))
until coordinator_answers; do
    pid_of coordinator >/dev/null || die "the coordinator stopped; the end of $STATE_DIR/coordinator.log:
$(tail -n 30 "$STATE_DIR/coordinator.log")"
    ((SECONDS < deadline)) || die "the coordinator does not answer at $BATON_ADDR after 30 s; see $STATE_DIR/coordinator.log"
    sleep 0.5
done
log "coordinator answers at $BATON_ADDR"
[[ -z $HTTP_ADDR ]] || log "HTTP API and web console at http://$HTTP_ADDR/"

mkdir -p "$STATE_DIR/store"
for i in $(seq 1 "$DOCS_WORKERS"); do
    worker_metrics=()
    [[ ${WORKER_METRICS:-1} == 0 ]] || worker_metrics=("BATON_METRICS_ADDR=127.0.0.1:$((9464 + i))")
    start "worker-$i" "$STATE_DIR/worker-$i.log" "$ROOT/$BIN_DIR/docs-worker" \
        "BATON_COORDINATOR=$BATON_ADDR" \
        "BATON_WORKER_ID=worker-$i" \
        ${worker_metrics[@]+"${worker_metrics[@]}"} \
        "DOCS_STORE_DIR=$ROOT/$STATE_DIR/store" \
        "DOCS_FAILURE_RATE=${DOCS_FAILURE_RATE:-0.3}"
done

# --- 4. Definitions ------------------------------------------------------------------------------

shopt -s nullglob
for def in examples/workflows/*.yaml examples/workflows/*.yml examples/workflows/*.json; do
    out=$("$BATON" workflow apply -f "$def" 2>&1) || die "baton workflow apply -f $def failed:
$out"
    log "applied $def: $(head -n1 <<<"$out")"
done
if schedules=$("$BATON" schedule list 2>&1) && (($(wc -l <<<"$schedules") > 1)); then
    log "schedules (pause one with: $BIN_DIR/baton schedule pause ID):"
    printf '%s\n' "$schedules" | sed 's/^/    /'
fi

# --- 5. Runs -------------------------------------------------------------------------------------

[[ -d $DOCS_DIR ]] || die "DOCS_DIR=$DOCS_DIR is not a directory"
docs=()
for f in "$DOCS_DIR"/*; do
    [[ -f $f && -r $f ]] && docs+=("$(readlink -f -- "$(dirname -- "$f")")/$(basename -- "$f")")
done
((${#docs[@]} > 0)) || die "no readable files in $DOCS_DIR"

log "submitting ${#docs[@]} runs of 'documents' (one per file of $DOCS_DIR)"
RUNS_START=$(date +%s.%N)
# ids: the runs this invocation created (waited for and counted); reused: runs of earlier
# invocations answered by the idempotency key (listed, not counted).
ids=()
reused_ids=()
for path in "${docs[@]}"; do
    sha=$(sha256sum -- "$path" | cut -d' ' -f1)
    out=$("$BATON" --output json run submit documents --input "{\"path\":$(json_string "$path")}" \
        --idempotency-key "$path@$sha" 2>&1) || die "submitting $path failed:
$out"
    read -r id created < <(submit_fields <<<"$out")
    [[ -n $id ]] || die "could not find the run id in the answer to run submit: $out"
    case $created in
        false) reused_ids+=("$id") && state="already submitted (unchanged)" ;;
        *) ids+=("$id") && state="new" ;;
    esac
    printf '    %-36s  %-28s  %s\n' "$id" "$state" "$path"
done
log "${#ids[@]} new runs, ${#reused_ids[@]} already submitted before (same file content; not counted below)"

((${#ids[@]} == 0)) || log "waiting for the ${#ids[@]} new runs to finish (up to ${WAIT_TIMEOUT}s)"
declare -A done_json=()
deadline=$((SECONDS + WAIT_TIMEOUT))
while ((${#ids[@]} > 0)); do
    pending=0
    for id in "${ids[@]}"; do
        [[ -n ${done_json[$id]:-} ]] && continue
        if json=$("$BATON" --output json run get "$id" 2>/dev/null); then
            case $(run_status <<<"$json") in
                succeeded | failed | cancelled | timed_out) done_json[$id]=$(tr -d '\n' <<<"$json") ;;
                *) pending=$((pending + 1)) ;;
            esac
        else
            pending=$((pending + 1))
        fi
    done
    ((pending == 0)) && break
    if ((SECONDS >= deadline)); then
        warn "$pending runs still unfinished after ${WAIT_TIMEOUT}s (see $STATE_DIR/*.log)"
        break
    fi
    sleep 1
done
RUNS_END=$(date +%s.%N)

# --- Summary -------------------------------------------------------------------------------------

all_json=$STATE_DIR/last-runs.jsonl
: >"$all_json"
for id in "${ids[@]}"; do
    [[ -n ${done_json[$id]:-} ]] && printf '%s\n' "${done_json[$id]}" >>"$all_json"
done

summarize() {
    if [[ $JSON == jq ]]; then
        jq -rs --argjson total "${#ids[@]}" '
          def attempts: if (.attempts | length) > 0 then (.attempts | length) else (.attempt // 0) end;
          (map(.status) | group_by(.) | map({key: .[0], value: length}) | from_entries) as $by
          | ([.[].steps[]? | attempts] | add // 0) as $executed
          | ([.[].steps[]? | (attempts - 1) | if . > 0 then . else 0 end] | add // 0) as $retries
          | ([.[].steps[]? | select(.id == "analyze") | (attempts - 1) | if . > 0 then . else 0 end] | add // 0) as $analyze
          | "runs:           \($total) new (succeeded \($by.succeeded // 0), failed \($by.failed // 0), timed out \($by.timed_out // 0), cancelled \($by.cancelled // 0), unfinished \($total - length))",
            "steps executed: \($executed) attempts",
            "retries:        \($retries) (attempts beyond the first; \($analyze) of them in the flaky analyze step)",
            (.[] | select(.status != "succeeded") | "failed run:     \(.id) \(.input.path // "") \(.status): \(.error // "")")
        ' "$all_json"
    else
        python3 - "$all_json" "${#ids[@]}" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
total = int(sys.argv[2])
def attempts(s):
    return len(s.get("attempts") or []) or s.get("attempt") or 0
by = {}
for r in runs:
    by[r.get("status")] = by.get(r.get("status"), 0) + 1
steps = [s for r in runs for s in r.get("steps") or []]
print(f"runs:           {total} new (succeeded {by.get('succeeded', 0)}, failed {by.get('failed', 0)}, "
      f"timed out {by.get('timed_out', 0)}, cancelled {by.get('cancelled', 0)}, unfinished {total - len(runs)})")
print(f"steps executed: {sum(attempts(s) for s in steps)} attempts")
retries = sum(max(attempts(s) - 1, 0) for s in steps)
analyze = sum(max(attempts(s) - 1, 0) for s in steps if s.get("id") == "analyze")
print(f"retries:        {retries} (attempts beyond the first; {analyze} of them in the flaky analyze step)")
for r in runs:
    if r.get("status") != "succeeded":
        print(f"failed run:     {r.get('id')} {(r.get('input') or {}).get('path', '')} {r.get('status')}: {r.get('error') or ''}")
PY
    fi
}

first_id=${ids[0]:-${reused_ids[0]}}
echo
echo "================================ summary ================================"
if ((${#ids[@]} > 0)); then
    summarize
    echo "wall time:      $(secs "$RUNS_START" "$RUNS_END") s from the first submit to the last run finished ($(secs "$SCRIPT_START" "$RUNS_END") s for the whole script)"
else
    echo "runs:           0 new (every file is unchanged since an earlier run processed it)"
fi
((${#reused_ids[@]} == 0)) || echo "not counted:    ${#reused_ids[@]} runs of earlier invocations (unchanged files; list them with: $BIN_DIR/baton run list --workflow documents)"
echo "store:          $STATE_DIR/store/ ($(find "$STATE_DIR/store" -maxdepth 1 -name '*.json' | wc -l) records)"
echo "logs:           $STATE_DIR/coordinator.log $(for i in $(seq 1 "$DOCS_WORKERS"); do printf '%s ' "$STATE_DIR/worker-$i.log"; done)"
echo
echo "Watch a run:    $BIN_DIR/baton run watch $first_id"
echo "Inspect a run:  $BIN_DIR/baton run get $first_id"
echo "List runs:      $BIN_DIR/baton run list --workflow documents"
[[ -z $METRICS_ADDR ]] || echo "Metrics:        http://$METRICS_ADDR/metrics (Prometheus text; workers: $(for i in $(seq 1 "$DOCS_WORKERS"); do [[ ${WORKER_METRICS:-1} == 0 ]] || printf 'http://127.0.0.1:%s/metrics ' $((9464 + i)); done))"
[[ -z $HTTP_ADDR ]] || echo "Console:        http://$HTTP_ADDR/   (HTTP API: http://$HTTP_ADDR/v1/..., OpenAPI: http://$HTTP_ADDR/v1/openapi.json)"
echo "Workers:        $BIN_DIR/baton worker list    Queues: $BIN_DIR/baton queue list"
echo "Scan now:       ./deploy/local/scan.sh   (the doc-scan schedule, on /usr/share/doc)"
echo "Stop:           ./deploy/local/down.sh   (Redis and RabbitMQ keep running)"
echo "========================================================================="
unfinished=$((${#ids[@]} - ${#done_json[@]}))
((unfinished == 0)) || exit 1

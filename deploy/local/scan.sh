#!/usr/bin/env bash
# Runs the `doc-scan` example (examples/workflows/scan.yaml) once on the local Baton that
# ./deploy/local/up.sh brought up (coordinator and docs-workers running):
#   1. checks that the coordinator answers, and applies documents.yaml and scan.yaml (a no-op when
#      they are registered already; up.sh registers them too, and with them the schedule
#      doc-scan/every-15-minutes, which scans /usr/share/doc every 15 minutes on its own);
#   2. starts a scan now: triggers that schedule (`baton schedule trigger`), or, with SCAN_DIR or
#      SCAN_LIMIT, submits a `doc-scan` run with that input (a schedule's input is the one its
#      definition declares);
#   3. follows the scan run: every PROGRESS_INTERVAL seconds, the `documents` runs its `scan` step
#      emitted (pending, running, ok, failed), and a `store` step waiting for its concurrency slot
#      when one shows;
#   4. prints the scan's figures: files found, unchanged, emitted, succeeded, failed, skipped, the
#      wall time, and the commands to look further.
#
# Run it twice: the second scan finds every file unchanged and emits nothing, but for the files whose
# `documents` run failed the first time (they have no record in the store yet). A scan started while
# another one runs (the schedule's own tick, say) waits for it, pending: doc-scan allows one
# unfinished run at a time.
#
# Exit status: 0 when the scan run succeeded (its emitted runs may have failed: they are counted,
# and the next scan tries them again), 1 otherwise.
#
# Environment:
#   BATON_ADDR          coordinator address (default http://127.0.0.1:7450)
#   SCAN_DIR            directory to scan (default /usr/share/doc, the schedule's input)
#   SCAN_LIMIT          at most this many runs per scan, the first new or changed files in path
#                       order; the others are left for the next scan (default: no limit)
#   PROGRESS_INTERVAL   seconds between progress lines (default 5)
#   WAIT_TIMEOUT        seconds to wait for the scan run to finish (default 900)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=deploy/local/common.sh
source deploy/local/common.sh

SCRIPT_START=$(date +%s.%N)
use_baton
DEFAULT_DIR=/usr/share/doc
SCAN_DIR=${SCAN_DIR:-$DEFAULT_DIR}
SCAN_LIMIT=${SCAN_LIMIT:-}
PROGRESS_INTERVAL=${PROGRESS_INTERVAL:-5}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-900}
SCHEDULE=doc-scan/every-15-minutes

[[ -z $SCAN_LIMIT || $SCAN_LIMIT =~ ^[1-9][0-9]*$ ]] || die "SCAN_LIMIT=$SCAN_LIMIT is not a positive number"
[[ $PROGRESS_INTERVAL =~ ^[1-9][0-9]*$ ]] || die "PROGRESS_INTERVAL=$PROGRESS_INTERVAL is not a positive number of seconds"
[[ $WAIT_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "WAIT_TIMEOUT=$WAIT_TIMEOUT is not a positive number of seconds"
[[ -d $SCAN_DIR ]] || die "SCAN_DIR=$SCAN_DIR is not a directory"
SCAN_DIR=$(readlink -f -- "$SCAN_DIR")

# --- JSON: jq when installed, else python3 ----------------------------------------------------

use_json

# json_len JSON: the length of a JSON list (0 when it is not one).
json_len() {
    local n
    if [[ $JSON == jq ]]; then
        n=$(jq -r 'if type == "array" then length else 0 end' <<<"$1" 2>/dev/null || true)
    else
        n=$(python3 -c '
import json, sys
try:
    v = json.loads(sys.stdin.read())
except ValueError:
    v = None
print(len(v) if isinstance(v, list) else 0)
' <<<"$1" || true)
    fi
    printf '%s\n' "${n:-0}"
}

# json_lines JSON FIELDS...: one line per element of a JSON list, its FIELDS separated by tabs.
json_lines() {
    local list=$1
    shift
    if [[ $JSON == jq ]]; then
        jq -r --args '.[]? | [.[$ARGS.positional[]] | if . == null then "" else tostring end] | join("\t")' "$@" <<<"$list" 2>/dev/null || true
    else
        python3 -c '
import json, sys
try:
    v = json.loads(sys.stdin.read())
except ValueError:
    v = []
for o in v if isinstance(v, list) else []:
    print("\t".join(str(o.get(f, "")) for f in sys.argv[1:]))
' "$@" <<<"$list" || true
    fi
}

# json_join JSON_LIST: the strings of a JSON list, comma separated.
json_join() {
    if [[ $JSON == jq ]]; then
        jq -r '(. // []) | map(tostring) | join(", ")' <<<"$1" 2>/dev/null || true
    else
        python3 -c '
import json, sys
try:
    print(", ".join(str(x) for x in json.loads(sys.stdin.read()) or []))
except (ValueError, TypeError):
    pass
' <<<"$1" || true
    fi
}

num() { printf '%s\n' "${1:-0}"; }

# --- 1. Coordinator and definitions --------------------------------------------------------------

check_coordinator "the scan waits"

# documents first: the scan emits runs of its latest version.
apply_definitions examples/workflows/documents.yaml examples/workflows/scan.yaml
schedule=$("$BATON" --output json schedule get "$SCHEDULE" 2>&1) || die "baton schedule get $SCHEDULE failed:
$schedule"
log "schedule $SCHEDULE: cron '$(json_get "$schedule" cron)' $(json_get "$schedule" timezone), overlap $(json_get "$schedule" overlap), next tick $(json_get "$schedule" next_tick_at)$([[ $(json_get "$schedule" paused) == true ]] && echo ' (paused)')"

# --- 2. Start a scan ------------------------------------------------------------------------------

if [[ $SCAN_DIR == "$DEFAULT_DIR" && -z $SCAN_LIMIT ]]; then
    out=$("$BATON" --output json schedule trigger "$SCHEDULE" 2>&1) || die "baton schedule trigger $SCHEDULE failed:
$out"
    run=$(json_get "$out" run_id)
    [[ -n $run ]] || die "could not find the run id in the answer to schedule trigger: $out"
    log "triggered $SCHEDULE: tick $(json_get "$out" tick_at), $(json_get "$out" outcome), run $run"
else
    input="{\"dir\":$(json_string "$SCAN_DIR")${SCAN_LIMIT:+,\"limit\":$SCAN_LIMIT}}"
    out=$("$BATON" --output json run submit doc-scan --input "$input" 2>&1) || die "baton run submit doc-scan failed:
$out"
    run=$(json_get "$out" run_id)
    [[ -n $run ]] || die "could not find the run id in the answer to run submit: $out"
    log "submitted doc-scan run $run with input $input (not through the schedule: its input is fixed)"
fi
RUN_START=$(date +%s.%N)
log "follow it with: $BIN_DIR/baton run get $run"

# --- 3. Follow it ---------------------------------------------------------------------------------

# slot_line: a `documents` run of this scan whose `store` step waits for its concurrency slot, and
# who holds the slots, if one of the running ones does (it takes a few `run get`s to find one).
slot_line() {
    local list ids id child holders
    list=$("$BATON" --output json run list --workflow documents --status running --limit 20 2>/dev/null) || return 0
    ids=$(json_lines "$(json_get "$list" runs)" id parent_run_id | awk -F'\t' -v run="$run" '$2 == run { print $1 }' | head -n 8)
    for id in $ids; do
        child=$("$BATON" --output json run get "$id" 2>/dev/null) || continue
        [[ $(json_get "$child" steps.store.status) == waiting ]] || continue
        [[ -n $(json_get "$child" steps.store.slot) ]] || continue
        holders=$(json_join "$(json_get "$child" steps.store.slot_holders)")
        printf 'run %s: store waits for slot %s, held by %s\n' "$id" "$(json_get "$child" steps.store.slot)" "${holders:-nobody at that instant (a slot was being handed over)}"
        return 0
    done
}

log "waiting for the scan to finish (up to ${WAIT_TIMEOUT}s), progress every ${PROGRESS_INTERVAL}s"
deadline=$((SECONDS + WAIT_TIMEOUT))
next_progress=$SECONDS
slots_seen=0
get_run
until finished; do
    ((SECONDS < deadline)) || die "the scan is still $status after ${WAIT_TIMEOUT}s; see $BIN_DIR/baton run get $run and $STATE_DIR/*.log"
    if ((SECONDS >= next_progress)); then
        elapsed=$(secs "$RUN_START" "$(date +%s.%N)")
        scan_status=$(json_get "$run_json" steps.scan.status)
        emitted=$(json_get "$run_json" steps.scan.emitted)
        if [[ $status == pending ]]; then
            line="pending: $(json_get "$run_json" waiting_for)"
        elif [[ -n $emitted ]]; then
            line="scan $scan_status: emitted $(json_get "$emitted" total): $(num "$(json_get "$emitted" pending)") pending, $(num "$(json_get "$emitted" running)") running, $(json_get "$emitted" succeeded) ok, $(json_get "$emitted" failed) failed"
        else
            line="scan ${scan_status:-pending}"
        fi
        printf '    %6ss  %s\n' "$elapsed" "$line"
        if [[ -n $emitted && $(num "$(json_get "$emitted" running)") -gt 0 ]]; then
            slot=$(slot_line || true)
            [[ -n $slot ]] && printf '             %s\n' "$slot" && slots_seen=$((slots_seen + 1))
        fi
        next_progress=$((SECONDS + PROGRESS_INTERVAL))
    fi
    sleep 0.5
    get_run
done
RUN_END=$(date +%s.%N)

# --- Summary --------------------------------------------------------------------------------------

scan_out=$(json_get "$run_json" steps.scan.output)
emitted=$(json_get "$run_json" steps.scan.emitted)
summary=$(json_get "$run_json" steps.summary.output)
total=$(num "$(json_get "$emitted" total)")
ok=$(num "$(json_get "$emitted" succeeded)")
failed=$(num "$(json_get "$emitted" failed)")
elapsed=$(secs "$RUN_START" "$RUN_END")

echo
"$BATON" run get "$run"
echo
echo "================================ scan =================================="
echo "run:            $run $status ($elapsed s from start to end, $(secs "$SCRIPT_START" "$RUN_END") s for the whole script)"
if [[ -n $scan_out ]]; then
    skipped=$(json_get "$scan_out" skipped)
    echo "directory:      $(json_get "$scan_out" dir)"
    echo "files found:    $(json_get "$scan_out" found) ($(json_get "$scan_out" new) new, $(json_get "$scan_out" changed) changed, $(json_get "$scan_out" unchanged) unchanged, $(json_len "$skipped") skipped, $(json_get "$scan_out" deferred) left for the next scan)"
    rate=""
    ((total >= 10)) && rate=$(awk -v n="$total" -v t="$elapsed" 'BEGIN { if (t > 0) printf ", %.1f runs/s", n / t }')
    echo "emitted:        $total runs of documents: $ok succeeded, $failed failed$rate"
    if [[ -n $summary ]] && ((total > 0)); then
        echo "stored:         $(json_get "$summary" stored) of the $(json_get "$summary" emitted) files have their record in $STATE_DIR/store/ now"
    fi
    json_lines "$skipped" path error_type | head -n 5 | awk -F'\t' '{ printf "skipped:        %s (%s)\n", $1, $2 }'
    (($(json_len "$skipped") > 5)) && echo "                ... $(($(json_len "$skipped") - 5)) more: $BIN_DIR/baton run get $run"
    (($(json_len "$(json_get "$scan_out" unlisted)") > 0)) && echo "unlisted dirs:  $(json_len "$(json_get "$scan_out" unlisted)") (see the scan step's output)"
else
    echo "scan:           no output ($(json_get "$run_json" steps.scan.error))"
fi
if ((failed > 0)); then
    list=$("$BATON" --output json run list --parent "$run" --status failed --limit 5 2>/dev/null || true)
    json_lines "$(json_get "$list" runs)" id error | awk -F'\t' '{ printf "failed run:     %s %s\n", $1, $2 }'
    echo "                (no record was stored for them: the next scan emits them again)"
fi
((slots_seen > 0)) && echo "slots:          a store step was seen waiting for its slot $slots_seen times (documents/store allows 2 at once)"
child=""
if ((total > 0)); then
    list=$("$BATON" --output json run list --parent "$run" --limit 1 2>/dev/null || true)
    child=$(json_get "$list" "runs.0.id")
fi
echo
echo "The schedule:   $BIN_DIR/baton schedule get $SCHEDULE"
echo "Its ticks:      $BIN_DIR/baton schedule history $SCHEDULE"
echo "The scan run:   $BIN_DIR/baton run get $run"
echo "Its runs:       $BIN_DIR/baton run list --parent $run"
[[ -n $child ]] && echo "One of them:    $BIN_DIR/baton run get $child"
echo "Pause it:       $BIN_DIR/baton schedule pause $SCHEDULE"
echo "========================================================================"
[[ $status == succeeded ]]

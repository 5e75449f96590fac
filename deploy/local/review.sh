#!/usr/bin/env bash
# Runs the `review` example (examples/workflows/review.yaml) once on the local Baton that
# ./deploy/local/up.sh brought up (coordinator and docs-workers running):
#   1. checks that the coordinator answers, and applies documents.yaml and review.yaml (a no-op when
#      they are registered already; `review` runs `documents` as a child run);
#   2. submits a `review` run over DOCS_DIR (at most REVIEW_LIMIT files);
#   3. waits until its `approve` task is open in `baton task list` (or the run ends: when no document
#      is copyleft, `approve` is skipped and there is nothing to approve), and prints it;
#   4. completes the task as $USER: approved, or rejected with REVIEW_DECISION=reject; with
#      REVIEW_DECISION=manual it prints the commands to complete it yourself, and stops there;
#   5. waits for the run, prints it (`baton run get`), its `documents` child run, and where the
#      review report was written.
#
# Every call submits a new run. Exit status: 0 when the run succeeded (or was left to you with
# REVIEW_DECISION=manual), 1 otherwise.
#
# Environment:
#   BATON_ADDR        coordinator address (default http://127.0.0.1:7450)
#   DOCS_DIR          directory to review (default /usr/share/common-licenses)
#   REVIEW_LIMIT      review at most this many files, the first ones in name order (default 50)
#   REVIEW_DECISION   approve (default), reject, or manual
#   REVIEW_COMMENT    the reviewer's comment (default: says this script decided)
#   USER              who completes the task (default reviewer)
#   WAIT_TIMEOUT      seconds to wait for the task, then for the end of the run (default 300)
#   HTTP_ADDR         the coordinator's HTTP address, for the console link (default 127.0.0.1:8080)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=deploy/local/common.sh
source deploy/local/common.sh

SCRIPT_START=$(date +%s.%N)
use_baton
DOCS_DIR=${DOCS_DIR:-/usr/share/common-licenses}
REVIEW_LIMIT=${REVIEW_LIMIT:-50}
REVIEW_DECISION=${REVIEW_DECISION:-approve}
REVIEWER=${USER:-reviewer}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-300}

case $REVIEW_DECISION in
    approve) REVIEW_COMMENT=${REVIEW_COMMENT:-approved by deploy/local/review.sh} ;;
    reject) REVIEW_COMMENT=${REVIEW_COMMENT:-rejected by deploy/local/review.sh (REVIEW_DECISION=reject)} ;;
    manual) ;;
    *) die "REVIEW_DECISION=$REVIEW_DECISION: give approve, reject or manual" ;;
esac
[[ $REVIEW_LIMIT =~ ^[1-9][0-9]*$ ]] && ((REVIEW_LIMIT <= 1000)) ||
    die "REVIEW_LIMIT=$REVIEW_LIMIT is not a number from 1 to 1000"
[[ $WAIT_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "WAIT_TIMEOUT=$WAIT_TIMEOUT is not a positive number of seconds"
[[ -d $DOCS_DIR ]] || die "DOCS_DIR=$DOCS_DIR is not a directory"
DOCS_DIR=$(readlink -f -- "$DOCS_DIR")

# --- JSON: jq when installed, else python3 ----------------------------------------------------

use_json

# json_names JSON_LIST: the base names of a JSON list of paths, comma separated; `none` when empty.
json_names() {
    local names
    if [[ $JSON == jq ]]; then
        names=$(jq -r '(. // []) | map(split("/") | last) | join(", ")' <<<"$1" 2>/dev/null || true)
    else
        names=$(python3 -c '
import json, sys
try:
    print(", ".join(p.rsplit("/", 1)[-1] for p in json.loads(sys.stdin.read()) or []))
except (ValueError, TypeError, AttributeError):
    pass
' <<<"$1" || true)
    fi
    printf '%s\n' "${names:-none}"
}

# --- 1. Coordinator and definitions --------------------------------------------------------------

check_coordinator "the run's steps wait"
apply_definitions examples/workflows/documents.yaml examples/workflows/review.yaml

# --- 2. Submit ----------------------------------------------------------------------------------

input="{\"dir\":$(json_string "$DOCS_DIR"),\"limit\":$REVIEW_LIMIT}"
out=$("$BATON" --output json run submit review --input "$input" 2>&1) || die "baton run submit review failed:
$out"
run=$(json_get "$out" run_id)
[[ -n $run ]] || die "could not find the run id in the answer to run submit: $out"
RUN_START=$(date +%s.%N)
log "submitted review run $run over $DOCS_DIR (at most $REVIEW_LIMIT files)"
log "follow it with: $BIN_DIR/baton run watch $run"

# --- 3. Wait for the approval task ----------------------------------------------------------------

log "waiting for its approve task (up to ${WAIT_TIMEOUT}s)"
deadline=$((SECONDS + WAIT_TIMEOUT))
task=open
last=""
while :; do
    get_run
    finished && task=none && break
    approve=$(json_get "$run_json" steps.approve.status)
    [[ $approve == skipped ]] && task=none && break
    if [[ $approve == waiting ]]; then
        tasks=$("$BATON" --output json task list --workflow review --status open --limit 1000 2>/dev/null || true)
        [[ $(json_get "$tasks" "run_id=$run.step_id") == approve ]] && break
    fi
    # One line each time the progress changes: the fan-out's, then the child run's.
    now="classify $(json_get "$run_json" steps.classify.status)"
    items=$(json_get "$run_json" steps.classify.items)
    [[ -n $items ]] && now+=" $(json_get "$items" succeeded)/$(json_get "$items" total) files"
    largest=$(json_get "$run_json" steps.largest.status)
    [[ -n $largest && $largest != pending ]] && now+=", largest $largest"
    [[ $now != "$last" ]] && printf '    %s\n' "$now" && last=$now
    ((SECONDS < deadline)) || die "no approve task after ${WAIT_TIMEOUT}s; see $BIN_DIR/baton run get $run and $STATE_DIR/*.log"
    sleep 0.5
done

summary=$(json_get "$run_json" steps.summarize.output)
if [[ -n $summary ]]; then
    log "summary: $(json_get "$summary" count) documents, $(json_get "$summary" copyleft_count) copyleft, $(json_get "$summary" words) words; largest $(json_get "$summary" largest)"
fi

# --- 4. Complete it -------------------------------------------------------------------------------

if [[ $task == open ]]; then
    log "the approve task is open:"
    "$BATON" task list --workflow review --status open | awk -v run="$run" 'NR == 1 || index($0, run)'
    log "copyleft documents to approve: $(json_names "$(json_get "$summary" copyleft)")"
    if [[ $REVIEW_DECISION == manual ]]; then
        cat <<EOF

The run waits for you. In the web console (when the coordinator serves HTTP; up.sh's default):
    http://${HTTP_ADDR:-127.0.0.1:8080}/#/tasks/$run/approve
or see what there is to approve (the output of the step summarize):
    $BIN_DIR/baton run get $run
then approve, or reject:
    $BIN_DIR/baton task complete $run approve --data '{"approved": true, "comment": "fine"}' --user $REVIEWER
    $BIN_DIR/baton task complete $run approve --data '{"approved": false, "comment": "not this one"}' --user $REVIEWER
and follow the run to its end:
    $BIN_DIR/baton run watch $run
EOF
        exit 0
    fi
    approved=true
    [[ $REVIEW_DECISION == reject ]] && approved=false
    data="{\"approved\":$approved,\"comment\":$(json_string "$REVIEW_COMMENT")}"
    log "completing it: $BIN_DIR/baton task complete $run approve --data '$data' --user $REVIEWER"
    out=$("$BATON" task complete "$run" approve --data "$data" --user "$REVIEWER" 2>&1) ||
        die "baton task complete failed:
$out"
    printf '%s\n' "$out" | sed 's/^/    /'
elif [[ $(json_get "$run_json" steps.approve.status) == skipped ]]; then
    log "no document is copyleft: approve was skipped, there is nothing to approve"
else
    log "the run ended ($status) before any approve task"
fi

# --- 5. Wait for the run --------------------------------------------------------------------------

log "waiting for the run to finish (up to ${WAIT_TIMEOUT}s)"
deadline=$((SECONDS + WAIT_TIMEOUT))
until finished; do
    ((SECONDS < deadline)) || die "the run is still $status after ${WAIT_TIMEOUT}s; see $BIN_DIR/baton run get $run"
    sleep 0.5
    get_run
done
RUN_END=$(date +%s.%N)

echo
"$BATON" run get "$run"
child=$(json_get "$run_json" steps.largest.child_run_id)
if [[ -n $child ]]; then
    echo
    log "the child run of step largest (the documents workflow on the largest file):"
    "$BATON" run get "$child"
fi

# --- Summary --------------------------------------------------------------------------------------

decision=""
for step in report rejected; do
    output=$(json_get "$run_json" "steps.$step.output")
    if [[ -n $output ]]; then
        decision=$(json_get "$output" decision)
        report_file=$(json_get "$output" file)
        report_sha=$(json_get "$output" sha256)
        report_step=$step
        report_written=$(json_get "$output" written)
    fi
done
echo
echo "================================ review ================================"
echo "run:            $run $status ($(secs "$RUN_START" "$RUN_END") s from submit to end, $(secs "$SCRIPT_START" "$RUN_END") s for the whole script)"
if [[ -n $summary ]]; then
    echo "documents:      $(json_get "$summary" count) read, $(json_get "$summary" words) words; unreadable: $(json_names "$(json_get "$summary" unreadable)")"
    echo "copyleft:       $(json_get "$summary" copyleft_count): $(json_names "$(json_get "$summary" copyleft)")"
    echo "largest:        $(json_get "$summary" largest)"
fi
[[ -n $child ]] && echo "child run:      $child ($(json_get "$("$BATON" --output json run get "$child" 2>/dev/null || true)" status))"
if [[ -n $decision ]]; then
    echo "decision:       $decision (step $report_step)"
    echo "report:         $report_file (sha256 $report_sha, written by this run: $report_written)"
    if [[ -f $report_file ]]; then
        actual=$(sha256sum -- "$report_file" | cut -d' ' -f1)
        [[ $actual == "$report_sha" ]] || warn "the report's sha256 is $actual now: it changed since"
    fi
else
    echo "report:         none ($(json_get "$run_json" error))"
fi
echo
echo "Watch the run:  $BIN_DIR/baton run watch $run"
echo "Inspect it:     $BIN_DIR/baton run get $run"
[[ -n $child ]] && echo "Child run:      $BIN_DIR/baton run get $child"
echo "Tasks:          $BIN_DIR/baton task list --workflow review"
echo "========================================================================"
[[ $status == succeeded ]]

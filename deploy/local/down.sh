#!/usr/bin/env bash
# Stops what deploy/local/up.sh started: the docs-workers first (they finish the steps in flight),
# then the coordinator. SIGTERM through the pid files in .baton/, waits, removes the pid files.
# Redis and RabbitMQ are left running.
#
# Environment: STOP_TIMEOUT  seconds to wait for each process before SIGKILL (default 30)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=deploy/local/common.sh
source deploy/local/common.sh

STOP_TIMEOUT=${STOP_TIMEOUT:-30}
[[ $STOP_TIMEOUT =~ ^[0-9]+$ ]] || die "STOP_TIMEOUT=$STOP_TIMEOUT is not a number of seconds"

# stop NAME: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL.
stop() {
    local name=$1 pid
    if ! pid=$(pid_of "$name"); then
        log "$name: not running"
        rm -f "$STATE_DIR/$name.pid" "$STATE_DIR/$name.cmd"
        return
    fi
    log "$name: stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            warn "$name (pid $pid) did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    rm -f "$STATE_DIR/$name.pid" "$STATE_DIR/$name.cmd"
    log "$name: stopped"
}

shopt -s nullglob
workers=()
for f in "$STATE_DIR"/worker-*.pid; do
    name=$(basename "$f" .pid)
    workers+=("$name")
done

# Workers stop in parallel (each finishes its steps in flight and reports them to the coordinator,
# which must still be up), then the coordinator.
pids=()
for w in "${workers[@]}"; do
    stop "$w" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done
if [[ -f $STATE_DIR/coordinator.pid ]]; then
    stop coordinator
elif ((${#workers[@]} == 0)); then
    log "nothing to stop (no pid files in $STATE_DIR/)"
fi

#!/usr/bin/env bash
# A local Redis Cluster of 6 nodes (3 primaries, 3 replicas) for trying Baton on a cluster and for
# the end-to-end tests (tests/tests/cluster.rs); CLUSTER_REPLICAS=2 gives each primary two replicas
# (9 nodes), which `durability = "replicated"` needs to stay writable after losing one node.
#
#   deploy/local/cluster.sh up [BASE_PORT]    start nodes on BASE_PORT..BASE_PORT+5 (default 7000),
#                                             or +8 with CLUSTER_REPLICAS=2,
#                                             create the cluster, wait until every node says
#                                             cluster_state:ok, print the redis+cluster:// URL
#   deploy/local/cluster.sh down [BASE_PORT]  stop them (SHUTDOWN NOSAVE, then SIGKILL)
#
# Each node runs `redis-server --cluster-enabled yes --cluster-node-timeout 2000 --appendonly yes`
# in its own directory under $CLUSTER_DIR (default .baton/cluster-BASE_PORT), which `up` empties
# first. Environment: CLUSTER_DIR, CLUSTER_REPLICAS (replicas per primary, 1 or 2, default 1),
# CLUSTER_NODE_TIMEOUT (ms, default 2000), CLUSTER_WAIT (seconds to wait for cluster_state:ok,
# default 60).
set -euo pipefail

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}
log() { printf '==> %s\n' "$*" >&2; }

command -v redis-server >/dev/null || die "redis-server is not installed"
command -v redis-cli >/dev/null || die "redis-cli is not installed"

cmd=${1:-}
base=${2:-7000}
[[ $base =~ ^[0-9]+$ ]] && ((base >= 1024 && base <= 65535 - 10005)) ||
    die "BASE_PORT=$base: give a port from 1024 to 55530 (the cluster bus uses port + 10000)"
dir=${CLUSTER_DIR:-.baton/cluster-$base}
node_timeout=${CLUSTER_NODE_TIMEOUT:-2000}
[[ $node_timeout =~ ^[0-9]+$ ]] || die "CLUSTER_NODE_TIMEOUT=$node_timeout is not a number of ms"
wait_s=${CLUSTER_WAIT:-60}
[[ $wait_s =~ ^[0-9]+$ ]] || die "CLUSTER_WAIT=$wait_s is not a number of seconds"
replicas=${CLUSTER_REPLICAS:-1}
[[ $replicas == 1 || $replicas == 2 ]] || die "CLUSTER_REPLICAS=$replicas: give 1 or 2"
count=$((3 * (1 + replicas)))
ports=()
for ((i = 0; i < count; i++)); do ports+=($((base + i))); done
last=${ports[$((count - 1))]}

down() {
    # The nodes this script started in $dir (by their pid files), whatever CLUSTER_REPLICAS was.
    local stopped=0
    for ((i = 0; i < 9; i++)); do
        local p=$((base + i)) pid_file="$dir/$((base + i))/redis.pid" pid
        [[ -f $pid_file ]] || continue
        pid=$(<"$pid_file")
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            redis-cli -p "$p" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
            local deadline=$((SECONDS + 5))
            while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$pid_file"
        stopped=$((stopped + 1))
    done
    log "cluster on ports from $base: $stopped node(s) stopped"
}

up() {
    for p in "${ports[@]}"; do
        if redis-cli -p "$p" PING >/dev/null 2>&1; then
            die "port $p answers already: stop that Redis first (deploy/local/cluster.sh down $base)"
        fi
    done
    mkdir -p "$dir"
    for p in "${ports[@]}"; do
        rm -rf "${dir:?}/$p"
        mkdir -p "$dir/$p"
        (cd "$dir/$p" && redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
            --cluster-config-file nodes.conf --cluster-node-timeout "$node_timeout" \
            --appendonly yes --save '' --daemonize yes --pidfile "$PWD/redis.pid" \
            --logfile "$PWD/redis.log" --dir "$PWD") || die "redis-server on port $p did not start"
    done
    for p in "${ports[@]}"; do
        local deadline=$((SECONDS + 10))
        until redis-cli -p "$p" PING >/dev/null 2>&1; do
            ((SECONDS < deadline)) || die "redis-server on port $p does not answer (see $dir/$p/redis.log)"
            sleep 0.1
        done
    done
    local nodes=()
    for p in "${ports[@]}"; do nodes+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas "$replicas" --cluster-yes >"$dir/create.log" 2>&1 ||
        die "redis-cli --cluster create failed (see $dir/create.log)"
    local deadline=$((SECONDS + wait_s))
    for p in "${ports[@]}"; do
        until redis-cli -p "$p" CLUSTER INFO 2>/dev/null | grep -q '^cluster_state:ok'; do
            ((SECONDS < deadline)) || die "node $p is not cluster_state:ok after ${wait_s}s"
            sleep 0.2
        done
    done
    # Every replica has finished its first sync (so that WAIT can count it at once).
    for p in "${ports[@]}"; do
        if redis-cli -p "$p" ROLE 2>/dev/null | head -1 | grep -q slave; then
            until redis-cli -p "$p" INFO replication 2>/dev/null | grep -q '^master_link_status:up'; do
                ((SECONDS < deadline)) || die "replica $p has not synced after ${wait_s}s"
                sleep 0.2
            done
        fi
    done
    log "cluster up on ports ${ports[0]}-$last (state in $dir)"
    local url="redis+cluster://"
    local sep=""
    for n in "${nodes[@]:0:3}"; do
        url+="$sep$n"
        sep=","
    done
    printf '%s\n' "$url"
}

case $cmd in
up) up ;;
down) down ;;
*) die "usage: $0 up|down [BASE_PORT]" ;;
esac

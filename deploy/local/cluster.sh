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
# default 60), CLUSTER_TLS (1: the nodes speak only TLS, to clients, to each other and to their
# replicas; `up` makes a CA, a node certificate for 127.0.0.1 and a client certificate with openssl
# in $CLUSTER_DIR/tls (ca.crt, client.crt, client.key) and prints a rediss+cluster:// URL: give
# them to the coordinator as redis_tls_ca, redis_tls_cert and redis_tls_key).
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
tls=${CLUSTER_TLS:-0}
[[ $tls == 0 || $tls == 1 ]] || die "CLUSTER_TLS=$tls: give 0 or 1"
tls_dir=$dir/tls
replicas=${CLUSTER_REPLICAS:-1}
[[ $replicas == 1 || $replicas == 2 ]] || die "CLUSTER_REPLICAS=$replicas: give 1 or 2"
count=$((3 * (1 + replicas)))
ports=()
for ((i = 0; i < count; i++)); do ports+=($((base + i))); done
last=${ports[$((count - 1))]}

# redis-cli, over TLS with the cluster's certificates when it has them.
cli() {
    if [[ -f $tls_dir/ca.crt ]]; then
        redis-cli --tls --cacert "$tls_dir/ca.crt" --cert "$tls_dir/client.crt" --key "$tls_dir/client.key" "$@"
    else
        redis-cli "$@"
    fi
}

# A CA, a certificate for the nodes (127.0.0.1 and localhost, for serving and for the cluster bus)
# and one for clients, valid 30 days, in $tls_dir.
make_certs() {
    command -v openssl >/dev/null || die "CLUSTER_TLS=1 needs openssl"
    rm -rf "$tls_dir"
    mkdir -p "$tls_dir"
    (
        cd "$tls_dir"
        local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
        openssl req -x509 "${ec[@]}" -days 30 -subj "/CN=Baton local cluster CA" \
            -keyout ca.key -out ca.crt 2>/dev/null
        openssl req "${ec[@]}" -subj "/CN=localhost" -keyout node.key -out node.csr 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >node.ext
        openssl x509 -req -in node.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
            -extfile node.ext -out node.crt 2>/dev/null
        openssl req "${ec[@]}" -subj "/CN=baton" -keyout client.key -out client.csr 2>/dev/null
        printf 'extendedKeyUsage=clientAuth\n' >client.ext
        openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
            -extfile client.ext -out client.crt 2>/dev/null
        rm -f ./*.csr ./*.ext ca.srl
    ) || die "openssl could not make the cluster's certificates in $tls_dir"
}

down() {
    # The nodes this script started in $dir (by their pid files), whatever CLUSTER_REPLICAS was.
    local stopped=0
    for ((i = 0; i < 9; i++)); do
        local p=$((base + i)) pid_file="$dir/$((base + i))/redis.pid" pid
        [[ -f $pid_file ]] || continue
        pid=$(<"$pid_file")
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            cli -p "$p" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
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
        if redis-cli -p "$p" PING >/dev/null 2>&1 || cli -p "$p" PING >/dev/null 2>&1; then
            die "port $p answers already: stop that Redis first (deploy/local/cluster.sh down $base)"
        fi
    done
    mkdir -p "$dir"
    local listen=()
    if ((tls)); then
        make_certs
        listen=(--port 0 --tls-port)
    else
        rm -rf "$tls_dir"
        listen=(--port)
    fi
    local tls_args=()
    if ((tls)); then
        tls_args=(--tls-cert-file "$tls_dir/node.crt" --tls-key-file "$tls_dir/node.key"
            --tls-ca-cert-file "$tls_dir/ca.crt" --tls-cluster yes --tls-replication yes)
    fi
    for p in "${ports[@]}"; do
        rm -rf "${dir:?}/$p"
        mkdir -p "$dir/$p"
        (cd "$dir/$p" && redis-server "${listen[@]}" "$p" "${tls_args[@]}" --bind 127.0.0.1 --cluster-enabled yes \
            --cluster-config-file nodes.conf --cluster-node-timeout "$node_timeout" \
            --appendonly yes --save '' --daemonize yes --pidfile "$PWD/redis.pid" \
            --logfile "$PWD/redis.log" --dir "$PWD") || die "redis-server on port $p did not start"
    done
    for p in "${ports[@]}"; do
        local deadline=$((SECONDS + 10))
        until cli -p "$p" PING >/dev/null 2>&1; do
            ((SECONDS < deadline)) || die "redis-server on port $p does not answer (see $dir/$p/redis.log)"
            sleep 0.1
        done
    done
    local nodes=()
    for p in "${ports[@]}"; do nodes+=("127.0.0.1:$p"); done
    cli --cluster create "${nodes[@]}" --cluster-replicas "$replicas" --cluster-yes >"$dir/create.log" 2>&1 ||
        die "redis-cli --cluster create failed (see $dir/create.log)"
    local deadline=$((SECONDS + wait_s))
    for p in "${ports[@]}"; do
        until cli -p "$p" CLUSTER INFO 2>/dev/null | grep -q '^cluster_state:ok'; do
            ((SECONDS < deadline)) || die "node $p is not cluster_state:ok after ${wait_s}s"
            sleep 0.2
        done
    done
    # Every replica has finished its first sync (so that WAIT can count it at once).
    for p in "${ports[@]}"; do
        if cli -p "$p" ROLE 2>/dev/null | head -1 | grep -q slave; then
            until cli -p "$p" INFO replication 2>/dev/null | grep -q '^master_link_status:up'; do
                ((SECONDS < deadline)) || die "replica $p has not synced after ${wait_s}s"
                sleep 0.2
            done
        fi
    done
    log "cluster up on ports ${ports[0]}-$last (state in $dir)"
    local url="redis+cluster://"
    ((tls)) && url="rediss+cluster://"
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

#!/usr/bin/env bash
# Makes sure Redis (127.0.0.1:6379), RabbitMQ (127.0.0.1:5672) and PostgreSQL (127.0.0.1:5432, the
# archive of finished runs) run, for local development and for the tests (`cargo test --workspace`
# needs all three): uses running ones, else starts the installed
# ones, else (as root, with apt-get) installs and starts them. Waits until each answers, or says
# clearly why it cannot. Used by deploy/local/up.sh and .ci/run; safe to run any number of times.
#
# The Redis it starts has persistence off (a dev and test instance: a restart loses its data).
# Stop them yourself if you want them gone (`redis-cli shutdown`, `rabbitmqctl stop`);
# deploy/local/down.sh leaves them running.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
# shellcheck source=deploy/local/common.sh
source deploy/local/common.sh

REDIS_PORT=6379
AMQP_PORT=5672
PG_PORT=5432
mkdir -p "$STATE_DIR"

port_open() { timeout 2 bash -c "</dev/tcp/$1/$2" 2>/dev/null; }

redis_up() {
    if have redis-cli; then
        [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
    else
        port_open 127.0.0.1 "$REDIS_PORT"
    fi
}

rabbit_up() { port_open 127.0.0.1 "$AMQP_PORT"; }

# Whether the broker answers an AMQP 0-9-1 protocol header with its connection.start (a broker can
# hold its port open while wedged, and then every client hangs).
rabbit_answers() {
    timeout 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$AMQP_PORT; printf 'AMQP\\x00\\x00\\x09\\x01' >&3; head -c 7 <&3 | grep -q ." 2>/dev/null
}

APT_DONE=0
apt_install() {
    [[ $(id -u) -eq 0 ]] || return 1
    have apt-get || return 1
    if [[ $APT_DONE -eq 0 ]]; then
        log "installing redis-server and rabbitmq-server with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q && apt-get install -y -q redis-server rabbitmq-server || return 1
        APT_DONE=1
    fi
}

# wait_for WHAT SECONDS CHECK...: polls CHECK every half second.
wait_for() {
    local what=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
    log "$what is up"
}

ensure_redis() {
    if redis_up; then
        log "Redis: using the one running on 127.0.0.1:$REDIS_PORT"
        return
    fi
    if ! have redis-server; then
        apt_install || die "Redis is not running on 127.0.0.1:$REDIS_PORT and redis-server is not installed.
Start one, or install it (apt-get install redis-server), or run this script as root to let it install it."
        redis_up && return
    fi
    log "Redis: starting redis-server on 127.0.0.1:$REDIS_PORT (no persistence: a dev instance)"
    # The CI's flags when the packaged directories exist, else a private directory under .baton/.
    if [[ -d /var/lib/redis && -w /var/lib/redis && -d /var/log/redis && -w /var/log/redis ]] &&
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
            --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log; then
        :
    else
        mkdir -p "$STATE_DIR/redis"
        redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
            --dir "$ROOT/$STATE_DIR/redis" --logfile "$ROOT/$STATE_DIR/redis.log" ||
            die "redis-server did not start (see $STATE_DIR/redis.log)"
    fi
    wait_for "Redis" 15 redis_up || die "Redis did not answer PING on 127.0.0.1:$REDIS_PORT within 15 s
(logs: /var/log/redis/ci.log or $STATE_DIR/redis.log)"
}

ensure_rabbitmq() {
    if rabbit_up && rabbit_answers; then
        log "RabbitMQ: using the one running on 127.0.0.1:$AMQP_PORT"
        return
    fi
    if rabbit_up; then
        [[ $(id -u) -eq 0 ]] || die "RabbitMQ holds 127.0.0.1:$AMQP_PORT but does not answer AMQP; restart it (rabbitmqctl stop; rabbitmq-server -detached)"
        warn "RabbitMQ holds 127.0.0.1:$AMQP_PORT but does not answer AMQP; restarting it"
        timeout 30 rabbitmqctl stop >/dev/null 2>&1 || pkill -9 -u rabbitmq -f beam.smp || true
        wait_for "RabbitMQ to stop" 30 bash -c "! timeout 2 bash -c '</dev/tcp/127.0.0.1/$AMQP_PORT' 2>/dev/null" ||
            die "RabbitMQ did not stop"
    fi
    if ! have rabbitmq-server; then
        apt_install || die "RabbitMQ is not running on 127.0.0.1:$AMQP_PORT and rabbitmq-server is not installed.
Start one, or install it (apt-get install rabbitmq-server), or run this script as root to let it install it."
        rabbit_up && return
    fi
    log "RabbitMQ: starting rabbitmq-server (this takes 10-20 s)"
    rabbitmq-server -detached >"$STATE_DIR/rabbitmq-start.log" 2>&1 ||
        die "rabbitmq-server -detached failed: $(cat "$STATE_DIR/rabbitmq-start.log")"
    wait_for "RabbitMQ" 90 rabbit_answers || die "RabbitMQ did not open 127.0.0.1:$AMQP_PORT within 90 s
(logs: /var/log/rabbitmq/, $STATE_DIR/rabbitmq-start.log)"
    if have rabbitmqctl; then
        timeout 60 rabbitmqctl await_startup >/dev/null 2>&1 || warn "rabbitmqctl await_startup did not confirm the start; continuing"
    fi
}

pg_up() {
    if have pg_isready; then
        pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -t 2
    else
        port_open 127.0.0.1 "$PG_PORT"
    fi
}

# PostgreSQL: Debian's cluster (pg_ctlcluster), else the service, else installed with apt-get (as
# root). The tests and deploy/local connect as `postgres` over 127.0.0.1 and need the database
# `test`, created here when missing.
ensure_postgres() {
    if ! pg_up; then
        if ! have pg_ctlcluster && ! have pg_ctl; then
            [[ $(id -u) -eq 0 ]] && have apt-get ||
                die "PostgreSQL is not running on 127.0.0.1:$PG_PORT and is not installed.
Start one, or install it (apt-get install postgresql), or run this script as root to let it install it."
            log "installing postgresql with apt-get"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -q && apt-get install -y -q postgresql || die "apt-get install postgresql failed"
        fi
        log "PostgreSQL: starting it"
        local version
        version=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1 {print $1}')
        if [[ -n $version ]]; then
            pg_ctlcluster "$version" main start || service postgresql start || true
        else
            service postgresql start || true
        fi
        wait_for "PostgreSQL" 60 pg_up || die "PostgreSQL did not answer on 127.0.0.1:$PG_PORT within 60 s
(logs: /var/log/postgresql/)"
    else
        log "PostgreSQL: using the one running on 127.0.0.1:$PG_PORT"
    fi
    if have psql && ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d test -Atc 'SELECT 1' >/dev/null 2>&1; then
        psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atc 'CREATE DATABASE test' >/dev/null 2>&1 ||
            warn "could not create the database test as postgres on 127.0.0.1:$PG_PORT (trust auth expected)"
    fi
}

ensure_redis
ensure_rabbitmq
ensure_postgres

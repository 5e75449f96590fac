# Helpers shared by up.sh and down.sh (sourced, not run). Expects the current directory to be the
# repository root.

STATE_DIR=.baton
BIN_DIR=target/release

log() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

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

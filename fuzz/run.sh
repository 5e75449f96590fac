#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 60) and fails on the first crash.
#
#   fuzz/run.sh [SECONDS]
#
# Targets: `definition` (a workflow definition parsed and validated), `cel` (a CEL expression
# compiled and evaluated against a JSON input, within the cost budget), `task` (a RabbitMQ
# delivery decoded as the worker's StepTask), `query` (a run search filter parsed, printed back and
# written as SQL). Seeds are in fuzz/corpus/<target>/ (committed); what
# a run finds goes to a scratch directory, so the committed corpus only changes by hand. A crash
# leaves its input in fuzz/artifacts/<target>/ and this script exits non-zero.
#
# Why `--sanitizer none`: cargo-fuzz's default AddressSanitizer needs `-Zsanitizer=address`, a
# nightly-only flag, and only the stable toolchain is installed here. Without a sanitizer the build
# uses only stable flags (`-Cpasses=sancov-module` and `-Cllvm-args=-sanitizer-coverage-*` for
# libFuzzer's coverage), so no RUSTC_BOOTSTRAP is needed. The crate forbids `unsafe` code, so
# AddressSanitizer would add little: what we look for is panics, stack overflows, timeouts and
# memory blow-ups, which libFuzzer catches by itself (`-timeout`, `-rss_limit_mb`).
set -euo pipefail

seconds="${1:-60}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

targets=(definition cel task query)
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

cargo fuzz build --sanitizer none -O

status=0
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target" "corpus/$target"
    echo "== fuzzing $target for ${seconds}s"
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: 2 GiB is a memory blow-up.
    # libFuzzer prints a line per new input: keep that in a log and show its end.
    log="$scratch/$target.log"
    if cargo fuzz run --sanitizer none -O "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 \
        >"$log" 2>&1; then
        grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || tail -n 5 "$log"
    else
        tail -n 80 "$log" >&2
        echo "!! $target crashed: see fuzz/artifacts/$target/" >&2
        status=1
    fi
done
exit "$status"

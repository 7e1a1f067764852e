#!/usr/bin/env bash
# Fuzzes every target of fuzz/ (cargo-fuzz, libFuzzer, AddressSanitizer; needs a nightly
# toolchain) for SECONDS each (default 600), JOBS targets at a time (default 2), each growing
# its committed corpus fuzz/corpus/TARGET, which is then minimized (cargo fuzz cmin). A crash
# stops that target and leaves the input in fuzz/artifacts/TARGET/; the script then fails.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]        (JOBS=2)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_EACH="${1:-600}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(range put delete_range txn watch lease)
JOBS="${JOBS:-2}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
cargo +nightly fuzz build -O

run() {
    local target="$1"
    mkdir -p "corpus/$target"
    cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" -max_len=4096 -rss_limit_mb=4096 -print_final_stats=1 \
        >"/tmp/fuzz-$target.log" 2>&1
}

status=0
pids=()
for target in "${TARGETS[@]}"; do
    run "$target" &
    pids+=("$!:$target")
    if [ ${#pids[@]} -ge "$JOBS" ]; then
        entry="${pids[0]}"
        pids=("${pids[@]:1}")
        wait "${entry%%:*}" || { echo "fuzz target ${entry#*:} failed: /tmp/fuzz-${entry#*:}.log" >&2; status=1; }
    fi
done
for entry in "${pids[@]}"; do
    wait "${entry%%:*}" || { echo "fuzz target ${entry#*:} failed: /tmp/fuzz-${entry#*:}.log" >&2; status=1; }
done
for target in "${TARGETS[@]}"; do
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "/tmp/fuzz-$target.log" |
        sed "s/^/$target: /" || true
    cargo +nightly fuzz cmin -O "$target" "corpus/$target" >/dev/null 2>&1 || status=1
    echo "$target: $(ls "corpus/$target" | wc -l) corpus inputs after minimizing"
done
exit "$status"

#!/usr/bin/env bash
# Before and after: the workloads of the 100k table (scripts/bench-vs-etcd.sh) against two
# etcdshim binaries on the same datastores, alternating (old, new, old, new, ...) so that the
# machine's drift hits both alike, then the table of medians with each new/old ratio.
#
#   scripts/ab.sh OLD_BINARY NEW_BINARY [TARGET...]     (default targets: sqlite postgres)
#   ROUNDS=2 (default) rounds of every target with each binary.
#   CASES="put txn-put" runs only those workloads (scripts/lib.sh, small_cases).
#
# Results go to $RESULTS (default /tmp/etcdshim-bench/ab.jsonl, replaced each run), tagged
# TARGET@old and TARGET@new. The new binary is also the bench client of both sides.
source "$(dirname "$0")/lib.sh"

[ $# -ge 2 ] || { echo "usage: scripts/ab.sh OLD_BINARY NEW_BINARY [TARGET...]" >&2; exit 2; }
OLD="$(realpath "$1")"
NEW="$(realpath "$2")"
shift 2
ROUNDS="${ROUNDS:-2}"
ETCDSHIM="$NEW"
prepare ab sqlite postgres -- "$@"

for round in $(seq 1 "$ROUNDS"); do
    for target in "${TARGETS[@]}"; do
        for side in old new; do
            echo "== round $round: $target, $side" >&2
            if [ "$side" = old ]; then SERVER_BIN="$OLD"; else SERVER_BIN="$NEW"; fi
            wipe "$target"
            start "$target@$side"
            small_cases "$target@$side"
            stop
            wipe "$target"
        done
    done
done

for target in "${TARGETS[@]}"; do
    echo
    echo "### $target: new / old"
    grep -E "\"target\":\"$target@(old|new)\"" "$RESULTS" >"$WORK/ab-$target.jsonl"
    python3 "$ROOT/scripts/table.py" "$WORK/ab-$target.jsonl" --reference "$target@old"
done

#!/usr/bin/env bash
# Before and after for large pages: one store of $PROBE keys of 1 KiB (default 1,000,000, loaded
# once by the new binary), served in turn by two etcdshim binaries (old, new, old, new, ...),
# each listing it whole $LISTS times in pages of 500 and of 10,000. Then the table of medians
# over the rounds with each new/old ratio, and each side's page of 10,000 over its page of 500.
#
#   scripts/pages-ab.sh OLD_BINARY NEW_BINARY [TARGET...]     (default target: sqlite)
#   ROUNDS=3 (default), LISTS=5 (default), PROBE=1000000 (default)
#
# Results go to $RESULTS (default /tmp/etcdshim-bench/pages-ab.jsonl), tagged TARGET@old and
# TARGET@new. The new binary loads the store and is the bench client of both sides, so the old
# binary must open the new one's schema. Each round runs old before new.
source "$(dirname "$0")/lib.sh"
# Every list runs: lib.sh's `bench` would skip cases not named in $CASES.
unset CASES

[ $# -ge 2 ] || { echo "usage: scripts/pages-ab.sh OLD_BINARY NEW_BINARY [TARGET...]" >&2; exit 2; }
OLD="$(realpath "$1")"
NEW="$(realpath "$2")"
shift 2
ROUNDS="${ROUNDS:-3}"
LISTS="${LISTS:-5}"
PROBE="${PROBE:-1000000}"
PREFIX=/registry/scale-probes/
ETCDSHIM="$NEW"
prepare pages-ab sqlite -- "$@"

for target in "${TARGETS[@]}"; do
    echo "== $target: loading $PROBE keys" >&2
    wipe "$target"
    SERVER_BIN="$NEW"
    start "$target@load"
    bench "$target@load" load-probe --clients 200 --conns 10 --val-size 1024 --key-size 64 \
        --total "$PROBE" --prefix "$PREFIX" put >/dev/null
    stop
    if [ "$target" = postgres ]; then
        psql -q -h 127.0.0.1 -U postgres -d etcdshim_bench -c 'VACUUM ANALYZE'
    fi
    for round in $(seq 1 "$ROUNDS"); do
        for side in old new; do
            echo "== round $round: $target, $side" >&2
            if [ "$side" = old ]; then SERVER_BIN="$OLD"; else SERVER_BIN="$NEW"; fi
            start "$target@$side"
            # One list to warm the caches, not recorded.
            "$ETCDSHIM" bench --endpoints "$ENDPOINT" --json --clients 1 --conns 1 --total 1 \
                --prefix "$PREFIX" list --keys 0 --page-size 10000 >/dev/null
            for size in 500 10000; do
                bench "$target@$side" "list-$size" --clients 1 --conns 1 --total "$LISTS" \
                    --prefix "$PREFIX" list --keys 0 --page-size "$size" >/dev/null
            done
            stop
        done
    done
    wipe "$target"
done

for target in "${TARGETS[@]}"; do
    echo
    echo "### $target: new / old"
    grep -E "\"target\":\"$target@(old|new)\"" "$RESULTS" >"$WORK/pages-ab-$target.jsonl"
    python3 "$ROOT/scripts/table.py" "$WORK/pages-ab-$target.jsonl" --reference "$target@old"
    python3 - "$WORK/pages-ab-$target.jsonl" "$target" <<'PY'
import json, sys
pages = {}
for line in open(sys.argv[1]):
    row = json.loads(line)
    pages.setdefault((row["target"], row["case"]), []).append(row["report"]["page_p50_ms"])
for side in (f"{sys.argv[2]}@new", f"{sys.argv[2]}@old"):
    small, big = pages[(side, "list-500")], pages[(side, "list-10000")]
    if len(small) != len(big):
        sys.exit(f"{side}: {len(small)} runs in pages of 500 but {len(big)} in pages of 10,000")
    ratios = [b / s for s, b in zip(small, big)]
    print(f"{side}: page of 10,000 over page of 500 (p50s), by round: " + ", ".join(f"{r:.1f}" for r in ratios))
PY
done

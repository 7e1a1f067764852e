#!/usr/bin/env bash
# The side-by-side table of docs/benchmarks.md: the same `etcdshim bench` workloads against
# real etcd and against etcdshim on each datastore, one after another on this machine, then
# the table of ratios (scripts/table.py).
#
#   scripts/bench-vs-etcd.sh [TARGET...]      (default: etcd sqlite postgres mysql)
#
# Results go to $RESULTS (default /tmp/etcdshim-bench/small.jsonl, replaced each run).
source "$(dirname "$0")/lib.sh"

prepare small etcd sqlite postgres mysql -- "$@"

for target in "${TARGETS[@]}"; do
    echo "== $target" >&2
    wipe "$target"
    start "$target"
    small_cases "$target"
    stop
    wipe "$target"
done

python3 "$ROOT/scripts/table.py" "$RESULTS"

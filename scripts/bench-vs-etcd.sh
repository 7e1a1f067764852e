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
    bench "$target" put --clients 100 --conns 10 --total 50000 put
    bench "$target" txn-put --clients 100 --conns 10 --total 50000 txn-put
    bench "$target" range --clients 100 --conns 10 --total 100000 range --keys 10000
    bench "$target" watch-1 --clients 50 --conns 10 --total 20000 watch --watchers 1
    bench "$target" watch-1000 --clients 50 --conns 10 --total 2000 watch --watchers 1000
    bench "$target" list-100k-500 --clients 1 --conns 1 --total 3 --prefix /list/ list --keys 100000 --page-size 500
    bench "$target" list-100k-10000 --clients 1 --conns 1 --total 3 --prefix /list/ list --keys 0 --page-size 10000
    bench "$target" count-100k --clients 1 --conns 1 --total 20 --prefix /list/ count
    stop
    wipe "$target"
done

python3 "$ROOT/scripts/table.py" "$RESULTS"

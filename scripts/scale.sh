#!/usr/bin/env bash
# The scale run of docs/benchmarks.md: fill each target with N Fleet-shaped objects of 1 KiB
# (`bench load`), then measure full paged lists (pages of 500 and 10,000, with the first and
# last page times), count_only, the Fleet simulator, resident memory, and the time from a
# restart to serving.
#
#   OBJECTS=1000000 scripts/scale.sh [TARGET...]      (default: sqlite postgres etcd)
#
# Results go to $RESULTS (default /tmp/etcdshim-bench/scale.jsonl, replaced each run).
source "$(dirname "$0")/lib.sh"

OBJECTS="${OBJECTS:-1000000}"
prepare scale sqlite postgres etcd -- "$@"

for target in "${TARGETS[@]}"; do
    echo "== $target" >&2
    wipe "$target"
    start "$target"
    bench "$target" load --clients 200 --conns 10 --val-size 1024 load --objects "$OBJECTS"
    note "$target" rss-after-load rss_mib "$(rss_mib)"
    # One list each: etcd 3.4 counts the rest of the range for every page, so its list in
    # pages of 500 grows with the square of the objects (minutes at 1M).
    bench "$target" list-500 --clients 1 --conns 1 --total 1 --prefix /registry/ list --keys 0 --page-size 500
    bench "$target" list-10000 --clients 1 --conns 1 --total 1 --prefix /registry/ list --keys 0 --page-size 10000
    bench "$target" count --clients 1 --conns 1 --total 10 --prefix /registry/ count
    # The Fleet simulator on top: 5,000 more clusters register and report status while the
    # manager lists every cluster record (100,000 loaded + the new ones) and reloads its cache.
    bench "$target" fleet --clients 100 --conns 10 --val-size 1024 \
        fleet --clusters 5000 --updates 5 --page-size 500 --reload-every 5s
    stop
    began=$(date +%s%N)
    start "$target"
    note "$target" restart restart_to_serving_ms $((($(date +%s%N) - began) / 1000000))
    note "$target" rss-after-restart rss_mib "$(rss_mib)"
    bench "$target" list-after-restart --clients 1 --conns 1 --total 1 --prefix /registry/ list --keys 0 --page-size 10000
    note "$target" rss-after-list rss_mib "$(rss_mib)"
    stop
    case "$target" in
        etcd | sqlite) note "$target" disk disk_mib "$(du -sm "$WORK/$target" | cut -f1)" ;;
        postgres) note "$target" disk disk_mib "$(psql -qtA -h 127.0.0.1 -U postgres -d test -c "SELECT pg_database_size('etcdshim_bench') / 1048576")" ;;
    esac
    wipe "$target"
done

python3 "$ROOT/scripts/table.py" "$RESULTS"

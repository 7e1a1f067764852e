#!/usr/bin/env bash
# The scale run of docs/benchmarks.md: grow each target to every size in $SIZES objects of
# 1 KiB and measure, at each size, what must not grow with the store: a full list of one
# resource of $PROBE objects in pages of 500 and of 10,000 (first, middle and last page, each
# the mean of $LISTS lists; every page's p99), count_only of it, a limit=1 range over it, the
# Fleet simulator on top (the manager's page p99/p99.9 while 100 clusters write), restart to
# serving, resident memory and bytes on disk per object (with COMPACTED_DISK=1, also after a
# compaction at the head and a defragment; on PostgreSQL a VACUUM FULL), and the disk reads
# during each list case (a list that reads the disk ran on a cold page cache).
#
#   SIZES="1000000 5000000 10000000 20000000" PROBE=1000000 scripts/scale.sh [TARGET...]
#   (default targets: sqlite postgres etcd)
#
# The probe resource (/registry/scale-probes/, $PROBE objects) is written first; the rest of each
# size is Fleet-shaped objects (`bench load`, ten per simulated cluster). On PostgreSQL every
# measurement is taken twice per size: right after the load, before any VACUUM or ANALYZE has
# run (this machine's PostgreSQL has autovacuum off), with cases named *-unvacuumed, and after
# `VACUUM ANALYZE`, as production runs it. etcd is 3.5.16 (scripts/etcd35.sh) with its largest
# quota, 8 GiB; it is grown only as far as it holds.
#
# Results go to $RESULTS (default /tmp/etcdshim-bench/scale.jsonl, replaced each run), tagged
# TARGET@SIZE; a table per target follows, each size's ratio to the first.
source "$(dirname "$0")/lib.sh"

SIZES="${SIZES:-1000000 5000000 10000000 20000000}"
PROBE="${PROBE:-1000000}"
# Full lists per page size, one after another: the first, middle and last page are each the
# mean of this many samples. Ten: with three, one slow first page moved the first/middle ratio
# past 2 at some sizes; ten lists of fresh 1M stores stayed under 2 on both databases
# (docs/benchmarks.md, "PostgreSQL to 20M").
LISTS="${LISTS:-10}"
# Its own resource: no Fleet object of `bench load` falls under it.
PROBE_PREFIX=/registry/scale-probes/
ETCD_BIN="${ETCD_BIN:-$("$ROOT/scripts/etcd35.sh")/etcd}"
ETCDCTL="${ETCDCTL:-$(dirname "$ETCD_BIN")/etcdctl}"
# 1: at each size, also the bytes on disk per object after a compaction at the head and a
# defragment (on SQLite VACUUM rewrites the file: it needs as much free disk again).
COMPACTED_DISK="${COMPACTED_DISK:-0}"
# 1: leave the last target's data of the last size where it is (the server stopped), to look
# into with the database's own tools; the next run wipes it.
KEEP="${KEEP:-0}"
ETCD_QUOTA=$((8 * 1024 * 1024 * 1024))
prepare scale sqlite postgres etcd -- "$@"

# The objects in the store, by a count-only range of everything.
objects() {
    "$ETCDSHIM" bench --endpoints "$ENDPOINT" --json --clients 1 --conns 1 --total 1 \
        --prefix / count | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["keys_counted"]))'
}

# Bytes on disk of target $1's data, in MiB.
disk_mib() {
    case "${1%@*}" in
        etcd | sqlite) du -sm "$WORK/${1%@*}" | cut -f1 ;;
        postgres) psql -qtA -h 127.0.0.1 -U postgres -d test -c "SELECT pg_database_size('etcdshim_bench') / 1048576" ;;
    esac
}

# Reads completed by the disk that holds $WORK (/proc/diskstats' fourth field), 0 where it is
# not a listed block device. This machine's kernel pages out file pages left unused for about a
# minute (DAMON, docs/benchmarks.md), so the probe, written first, is partly on disk again when
# the lists start after a long load; the reads during each list case show how much.
disk_reads() {
    local device
    device=$(basename "$(df --output=source "$WORK" | tail -1)")
    awk -v device="$device" '$3 == device { print $4; found = 1 } END { if (!found) print 0 }' /proc/diskstats
}

# `bench "$@"`, then a note of the disk reads during it (case $2-disk-reads).
bench_reading() {
    local before
    if skipped "$2"; then return 0; fi
    before=$(disk_reads)
    bench "$@"
    note "$1" "$2-disk-reads" disk_reads $(($(disk_reads) - before))
}

# The measurements that must stay flat, against the running target, tagged $1 (TARGET@SIZE),
# their cases suffixed with $2.
probe_cases() {
    local tag="$1" suffix="$2"
    bench_reading "$tag" "list-500$suffix" --clients 1 --conns 1 --total "$LISTS" --prefix "$PROBE_PREFIX" list --keys 0 --page-size 500
    bench_reading "$tag" "list-10000$suffix" --clients 1 --conns 1 --total "$LISTS" --prefix "$PROBE_PREFIX" list --keys 0 --page-size 10000
    bench "$tag" "count$suffix" --clients 1 --conns 1 --total 20 --prefix "$PROBE_PREFIX" count
    bench "$tag" "first-page$suffix" --clients 1 --conns 1 --total 20 --prefix "$PROBE_PREFIX" count --limit 1
}

for target in "${TARGETS[@]}"; do
    echo "== $target" >&2
    wipe "$target"
    start "$target"
    loaded=0
    for size in $SIZES; do
        tag="$target@$size"
        echo "== $tag" >&2
        if [ "$loaded" -eq 0 ]; then
            bench "$tag" load-probe --clients 200 --conns 10 --val-size 1024 --key-size 64 \
                --total "$PROBE" --prefix "$PROBE_PREFIX" put || break
            loaded=$(objects)
        fi
        if [ "$size" -gt "$loaded" ]; then
            # etcd stops at its quota: the size it could not reach ends its run.
            bench "$tag" load --clients 200 --conns 10 --val-size 1024 \
                load --objects $((size - loaded)) || break
        fi
        loaded=$(objects)
        note "$tag" objects objects "$loaded"
        if [ "$target" = postgres ]; then
            probe_cases "$tag" -unvacuumed
            began=$(date +%s%N)
            psql -q -h 127.0.0.1 -U postgres -d etcdshim_bench -c 'VACUUM ANALYZE'
            note "$tag" vacuum vacuum_analyze_ms $((($(date +%s%N) - began) / 1000000))
        fi
        probe_cases "$tag" ""
        note "$tag" rss-after-lists rss_mib "$(rss_mib)"
        # The last pages' buffers are freed as the lists end; jemalloc's background thread
        # returns them to the system within about a second.
        sleep 2
        note "$tag" rss-settled rss_mib "$(rss_mib)"
        # The Fleet simulator on top: 2,000 more clusters (100 at a time) register and report
        # status while the manager lists every cluster record and reloads its cache.
        bench "$tag" fleet --clients 100 --conns 10 --val-size 1024 \
            fleet --clusters 2000 --updates 5 --page-size 500 --reload-every 5s
        stop
        began=$(date +%s%N)
        start "$target"
        note "$tag" restart restart_to_serving_ms $((($(date +%s%N) - began) / 1000000))
        note "$tag" rss-after-restart rss_mib "$(rss_mib)"
        loaded=$(objects)
        note "$tag" disk-per-object disk_bytes_per_object "$(($(disk_mib "$target") * 1048576 / loaded))"
        if [ "$COMPACTED_DISK" = 1 ]; then
            # What a store kube-apiserver compacts (every 5 minutes) holds: compact at the head,
            # wait for it, defragment (VACUUM on SQLite and PostgreSQL), and measure stopped, so
            # SQLite's write-ahead log is folded back into the file.
            head=$("$ETCDCTL" --endpoints "$ENDPOINT" endpoint status -w json |
                python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')
            "$ETCDCTL" --endpoints "$ENDPOINT" --command-timeout=3600s compact "$head" --physical >/dev/null
            "$ETCDCTL" --endpoints "$ENDPOINT" --command-timeout=3600s defrag >/dev/null
            # PostgreSQL's defragment is a plain VACUUM, which keeps the freed pages in each
            # table for its next rows (the writes after a compaction fill them) and does not
            # lock writers out; VACUUM FULL gives them back, as etcd's defrag does.
            if [ "$target" = postgres ]; then
                psql -q -h 127.0.0.1 -U postgres -d etcdshim_bench -c 'VACUUM FULL'
            fi
            stop
            note "$tag" disk-per-object-compacted disk_bytes_per_object "$(($(disk_mib "$target") * 1048576 / loaded))"
            start "$target"
        fi
    done
    stop
    if [ "$KEEP" != 1 ]; then
        wipe "$target"
    fi
done

for target in "${TARGETS[@]}"; do
    first="$target@${SIZES%% *}"
    echo
    echo "### $target: each size against $first"
    grep -E "\"target\":\"$target@" "$RESULTS" >"$WORK/scale-table-$target.jsonl" || continue
    python3 "$ROOT/scripts/table.py" "$WORK/scale-table-$target.jsonl" --reference "$first"
done

#!/usr/bin/env bash
# Soak: one etcdshim server under the Fleet mix for an hour, with leases expiring, automatic
# compaction and watchers, while its resident memory and open file descriptors are sampled.
#
#   scripts/soak.sh [--duration 1h] [--target sqlite|postgres|mysql] [--rate CLUSTERS_PER_S]
#
# The load: `etcdshim bench fleet` (clusters register and report status; a manager lists in
# pages, watches from the list's revision and reloads every 30 s; at the end its cache must
# equal what the clusters wrote, or the run fails), and beside it a lease loop (etcdctl: a
# 2-second lease every second with a key on it, never kept alive) watched by `etcdctl watch`.
# The server compacts automatically every minute, keeping 10,000 revisions.
#
# Checks at the end: the fleet check; every leased key gone once its lease expired; the
# watcher saw one PUT and one DELETE per leased key; and nothing grew without bound: the
# median RSS and descriptor count of the last quarter of the run against those of the second
# quarter (after warm-up), failing when RSS grew by more than half or descriptors by more
# than half plus 20. Samples go to $WORK/soak.csv, the plot to $WORK/soak.svg.
source "$(dirname "$0")/lib.sh"

DURATION=1h
TARGET=sqlite
RATE=20
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --target) TARGET="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        *) echo "usage: scripts/soak.sh [--duration 1h] [--target sqlite|postgres|mysql] [--rate N]" >&2; exit 2 ;;
    esac
done
command -v etcdctl >/dev/null || { echo "soak.sh needs etcdctl (apt-get install etcd-client)" >&2; exit 2; }
seconds() { # 1h, 30m, 45s, 90 -> seconds
    case "$1" in
        *h) echo $(( ${1%h} * 3600 )) ;;
        *m) echo $(( ${1%m} * 60 )) ;;
        *s) echo "${1%s}" ;;
        *) echo "$1" ;;
    esac
}
TOTAL_S="$(seconds "$DURATION")"

prepare soak "$TARGET" -- "$TARGET"
SERVER_FLAGS="${SERVER_FLAGS:-} --compact-interval 1m --compact-min-retain 10000"
wipe "$TARGET"
start "$TARGET"
export ETCDCTL_API=3
CTL=(etcdctl --endpoints "$ENDPOINT")
SAMPLES="$WORK/soak.csv"
echo "seconds,rss_mib,fds" >"$SAMPLES"

cleanup() {
    kill "${SAMPLER:-}" "${LEASES:-}" "${WATCHER:-}" 2>/dev/null || true
    stop
}
trap cleanup EXIT

begin=$(date +%s)
(
    while kill -0 "$TARGET_PID" 2>/dev/null; do
        rss=$(awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$TARGET_PID/status")
        fds=$(ls "/proc/$TARGET_PID/fd" | wc -l)
        echo "$(( $(date +%s) - begin )),$rss,$fds" >>"$SAMPLES"
        sleep 10
    done
) &
SAMPLER=$!

"${CTL[@]}" watch --prefix /soak/leased/ >"$WORK/soak-watch.txt" 2>&1 &
WATCHER=$!
LEASED="$WORK/soak-leased.txt"
: >"$LEASED"
(
    i=0
    while [ $(( $(date +%s) - begin )) -lt "$TOTAL_S" ]; do
        lease=$("${CTL[@]}" lease grant 2 | awk '{ print $2 }')
        "${CTL[@]}" put --lease="$lease" "/soak/leased/$i" v >/dev/null && echo "$i" >>"$LEASED"
        i=$((i + 1))
        sleep 1
    done
) &
LEASES=$!

echo "soak: $TARGET for $DURATION; samples in $SAMPLES" >&2
status=0
"$ETCDSHIM" bench --endpoints "$ENDPOINT" --clients 50 --conns 10 --prefix /soak/fleet/ \
    --duration "${TOTAL_S}s" fleet --clusters 100000000 --rate "$RATE" --updates 5 \
    --reload-every 30s | tee "$WORK/soak-fleet.txt" || status=1
wait "$LEASES" || true
# Leases of 2 s expire within a second or two of their TTL.
sleep 6
left=$("${CTL[@]}" get --prefix /soak/leased/ --limit 1 -w json |
    python3 -c 'import json, sys; print(json.load(sys.stdin).get("count", 0))')
written=$(wc -l <"$LEASED")
kill "$WATCHER" 2>/dev/null || true
puts=$(grep -c '^PUT$' "$WORK/soak-watch.txt" || true)
deletes=$(grep -c '^DELETE$' "$WORK/soak-watch.txt" || true)
echo "leases: $written leased keys written, $left left after expiry; the watcher saw $puts PUT and $deletes DELETE"
if [ "$left" != 0 ] || [ "$puts" != "$written" ] || [ "$deletes" != "$written" ]; then
    echo "FAILED: leased keys or their events went missing" >&2
    status=1
fi

python3 "$ROOT/scripts/soak_plot.py" "$SAMPLES" "$WORK/soak.svg" || status=1
exit "$status"

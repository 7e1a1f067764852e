#!/usr/bin/env bash
# etcd's own benchmark tool (scripts/etcd-benchmark.sh builds it from Debian's etcd source)
# against etcd 3.5.16 (scripts/etcd35.sh) and etcdshim on each datastore, alternating (etcd,
# sqlite, postgres, mysql, etcd, ...) for $ROUNDS rounds so that the machine's drift hits all
# alike; then the table of medians, each as a ratio to etcd's.
#
#   scripts/etcd-tool-vs.sh [TARGET...]     (default: etcd sqlite postgres mysql)
#   ROUNDS=2 (default), CONNS=10 and CLIENTS=100 (default) as in etcd's performance docs;
#   CASES="tool-range tool-range-absent" runs only those workloads.
#
# Workloads: put (8-byte keys over 100,000, 256-byte values), txn-put (a txn of one put over
# 10,000 keys), range of one key present and absent (linearizable), stm (read-modify-write txns
# whose commit compares the mod revisions read: a txn with a compare), watch (1,000 watchers
# over 100 keys, 5,000 puts at 1,000/s: events received) and watch-latency (put-to-event
# latency for $CLIENTS watchers of one key, 2,000 puts at 200/s).
#
# Results go to $RESULTS (default /tmp/etcdshim-bench/etcd-tool.jsonl, replaced each run).
source "$(dirname "$0")/lib.sh"

ROUNDS="${ROUNDS:-2}"
CONNS="${CONNS:-10}"
CLIENTS="${CLIENTS:-100}"
ETCD35="$("$ROOT/scripts/etcd35.sh")"
ETCD_BIN="${ETCD_BIN:-$ETCD35/etcd}"
TOOL="${ETCD_BENCHMARK:-$("$ROOT/scripts/etcd-benchmark.sh")}"
prepare etcd-tool etcd sqlite postgres mysql -- "$@"

# tool TARGET CASE ARGS...: runs etcd's benchmark tool against the running target and appends
# its last summary (requests/s, mean and p99 latency) to $RESULTS.
tool() {
    local target="$1" case="$2"
    shift 2
    if skipped "$case"; then return 0; fi
    "$TOOL" --endpoints "127.0.0.1:$PORT" --conns "$CONNS" --clients "$CLIENTS" "$@" 2>/dev/null |
        python3 -c '
import json, re, sys
text = sys.stdin.read()
last = text.rsplit("Summary:", 1)[-1]
def seconds(pattern):
    found = re.search(pattern, last)
    return float(found.group(1)) if found else None
report = {
    "per_second": seconds(r"Requests/sec:\s+([0-9.]+)"),
    "mean_ms": 1000 * (seconds(r"Average:\s+([0-9.]+) secs") or 0),
    "p99_ms": 1000 * (seconds(r"99% in ([0-9.]+) secs") or 0),
    "errors": len(re.findall(r"^\s+\[\d+\]", text.split("Error distribution:", 1)[-1], re.M))
              if "Error distribution:" in text else 0,
}
if report["per_second"] is None:
    sys.exit("etcd benchmark tool: no summary in its output:\n" + text[-2000:])
print(json.dumps({"target": sys.argv[1], "case": sys.argv[2], "report": report}))
' "$target" "$case" | tee -a "$RESULTS"
}

tool_cases() {
    local target="$1"
    tool "$target" tool-put put --key-size=8 --val-size=256 --sequential-keys --key-space-size=100000 --total=40000
    tool "$target" tool-txn-put txn-put --key-size=8 --val-size=256 --key-space-size=10000 --total=20000
    ETCDCTL_API=3 "$ETCD35/etcdctl" --endpoints "$ENDPOINT" put foo bar >/dev/null
    tool "$target" tool-range range foo --consistency=l --total=40000
    tool "$target" tool-range-absent range no-such-key --consistency=l --total=40000
    tool "$target" tool-stm stm --isolation=r --keys=1000 --keys-per-txn=2 --txn-wr-percent=50 --val-size=256 --total=10000
    tool "$target" tool-watch watch --streams=10 --watch-per-stream=100 --watched-key-total=100 --put-total=5000 --put-rate=1000
    tool "$target" tool-watch-latency watch-latency --total=2000 --put-rate=200
}

for round in $(seq 1 "$ROUNDS"); do
    for target in "${TARGETS[@]}"; do
        echo "== round $round: $target" >&2
        wipe "$target"
        start "$target"
        tool_cases "$target"
        stop
        wipe "$target"
    done
done

ETCD_LABEL="etcd 3.5.16" python3 "$ROOT/scripts/table.py" "$RESULTS"

#!/usr/bin/env bash
# Shared by the benchmark scripts: start and stop a target (real etcd or etcdshim on one
# datastore) on 127.0.0.1, and run `etcdshim bench` against it. Source it; do not run it.
#
# Targets: etcd (Debian's etcd-server, `etcd` from PATH or $ETCD_BIN), sqlite, postgres,
# mysql. PostgreSQL and MariaDB are the machine's (127.0.0.1:5432 user postgres, 127.0.0.1:3306
# user root); each run uses a fresh database named etcdshim_bench.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The bench client (and, unless SERVER_BIN says otherwise, the server); built from the work tree
# unless given.
ETCDSHIM="${ETCDSHIM:-$ROOT/target/release/etcdshim}"
# Extra flags for etcdshim's server (SERVER_FLAGS="--read-cache-mib 0").
# The binary `start` serves a target with (scripts/ab.sh points it at the build under test);
# the bench client is always $ETCDSHIM.
SERVER_BIN="${SERVER_BIN:-$ETCDSHIM}"
# etcd: $ETCD_BIN, or Debian's `etcd` from PATH (the scripts that compare with 3.5.16 set it).
WORK="${BENCH_WORK:-/tmp/etcdshim-bench}"
PORT="${BENCH_PORT:-23790}"
ENDPOINT="http://127.0.0.1:$PORT"
TARGET_PID=""

# prepare NAME DEFAULT_TARGET...: sets TARGETS to the script's arguments (or the defaults, given
# after NAME; call as `prepare NAME defaults... -- "$@"`), empties $RESULTS (default
# $WORK/NAME.jsonl) and builds the release binary (unless $ETCDSHIM names another).
prepare() {
    local name="$1"
    shift
    local defaults=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        defaults+=("$1")
        shift
    done
    shift || true
    TARGETS=("$@")
    [ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${defaults[@]}")
    RESULTS="${RESULTS:-$WORK/$name.jsonl}"
    mkdir -p "$WORK"
    : >"$RESULTS"
    if [ "$ETCDSHIM" = "$ROOT/target/release/etcdshim" ]; then
        (cd "$ROOT" && cargo build --release --quiet)
    fi
}

# The datastore endpoint etcdshim uses for a target.
datastore() {
    case "${1%@*}" in
        sqlite) echo "sqlite://$WORK/sqlite/state.db" ;;
        postgres) echo "postgres://postgres@127.0.0.1:5432/etcdshim_bench" ;;
        mysql) echo "mysql://root@tcp(127.0.0.1:3306)/etcdshim_bench" ;;
        *) echo "unknown target $1" >&2; return 1 ;;
    esac
}

# Removes a target's data, so the next start is empty.
wipe() {
    case "${1%@*}" in
        etcd) rm -rf "$WORK/etcd" ;;
        sqlite) rm -rf "$WORK/sqlite" ;;
        postgres) psql -q -h 127.0.0.1 -U postgres -d test -c 'DROP DATABASE IF EXISTS etcdshim_bench' ;;
        mysql) mysql -h 127.0.0.1 -u root -e 'DROP DATABASE IF EXISTS etcdshim_bench' ;;
    esac
}

# Starts target $1 on $PORT (keeping its data) and waits until it answers a read. A target may
# carry a tag after `@` (sqlite@old): it names the results, not the datastore.
start() {
    local target="${1%@*}"
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        echo "something already listens on 127.0.0.1:$PORT; stop it or set BENCH_PORT" >&2
        return 1
    fi
    mkdir -p "$WORK/$target"
    if [ "$target" = etcd ]; then
        "${ETCD_BIN:-etcd}" --name bench --data-dir "$WORK/etcd/data" \
            --listen-client-urls "$ENDPOINT" --advertise-client-urls "$ENDPOINT" \
            --listen-peer-urls "http://127.0.0.1:$((PORT + 1))" \
            --initial-advertise-peer-urls "http://127.0.0.1:$((PORT + 1))" \
            --initial-cluster "bench=http://127.0.0.1:$((PORT + 1))" \
            --quota-backend-bytes "${ETCD_QUOTA:-$((16 * 1024 * 1024 * 1024))}" \
            >"$WORK/etcd.log" 2>&1 &
    else
        # shellcheck disable=SC2086 # SERVER_FLAGS is a list of flags
        "$SERVER_BIN" --listen-address "127.0.0.1:$PORT" --endpoint "$(datastore "$target")" \
            --metrics-bind-address 0 ${SERVER_FLAGS:-} >"$WORK/$target.log" 2>&1 &
    fi
    TARGET_PID=$!
    wait_serving
}

# Waits until the endpoint answers a count-only range (at most 10 minutes).
wait_serving() {
    for _ in $(seq 1 30000); do
        if "$ETCDSHIM" bench --endpoints "$ENDPOINT" --conns 1 --clients 1 --total 1 \
            --prefix /nothing/ count >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$TARGET_PID" 2>/dev/null; then
            echo "the target stopped; see $WORK/*.log" >&2
            return 1
        fi
        sleep 0.02
    done
    echo "the target did not answer within 10 minutes" >&2
    return 1
}

stop() {
    if [ -n "$TARGET_PID" ]; then
        kill "$TARGET_PID" 2>/dev/null || true
        wait "$TARGET_PID" 2>/dev/null || true
        TARGET_PID=""
    fi
}

# The workloads of the 100k table (scripts/bench-vs-etcd.sh), against the running target $1;
# CASES="put txn-put" runs only those (a list case loads its keys in list-100k-500).
small_cases() {
    local target="$1"
    bench "$target" put --clients 100 --conns 10 --total 50000 put
    bench "$target" txn-put --clients 100 --conns 10 --total 50000 txn-put
    bench "$target" range --clients 100 --conns 10 --total 100000 range --keys 10000
    bench "$target" watch-1 --clients 50 --conns 10 --total 20000 watch --watchers 1
    bench "$target" watch-1000 --clients 50 --conns 10 --total 2000 watch --watchers 1000
    bench "$target" list-100k-500 --clients 1 --conns 1 --total 3 --prefix /list/ list --keys 100000 --page-size 500
    bench "$target" list-100k-10000 --clients 1 --conns 1 --total 3 --prefix /list/ list --keys 0 --page-size 10000
    bench "$target" count-100k --clients 1 --conns 1 --total 20 --prefix /list/ count
}

# Resident memory of the running target, in MiB.
rss_mib() {
    awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$TARGET_PID/status"
}

# skipped CASE: whether $CASES names cases to run and CASE is not one of them.
skipped() {
    [ -n "${CASES:-}" ] && [[ " $CASES " != *" $1 "* ]]
}

# bench TARGET CASE ARGS...: runs `etcdshim bench ARGS --json` and appends each report line,
# tagged with the target and case, to $RESULTS.
bench() {
    local target="$1" case="$2"
    shift 2
    if skipped "$case"; then return 0; fi
    "$ETCDSHIM" bench --endpoints "$ENDPOINT" --json "$@" | while read -r line; do
        echo "{\"target\":\"$target\",\"case\":\"$case\",\"report\":$line}" | tee -a "$RESULTS"
    done
}

# note TARGET CASE NAME VALUE: appends a single measurement (not from bench) to $RESULTS.
note() {
    echo "{\"target\":\"$1\",\"case\":\"$2\",\"report\":{\"$3\":$4}}" | tee -a "$RESULTS"
}

trap stop EXIT

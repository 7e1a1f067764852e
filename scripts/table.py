#!/usr/bin/env python3
"""Turns the JSON lines of scripts/bench-vs-etcd.sh, scale.sh or ab.sh into a Markdown table:
one row per measurement, one column per target, each cell with its ratio to the reference
target (etcd by default). A measurement taken several times (ab.sh's rounds) shows its median.

    python3 scripts/table.py RESULTS.jsonl [--reference TARGET]
"""
import json
import os
import statistics
import sys

# (case, field, label, unit, scale, higher_is_better)
ROWS = [
    ("put", "per_second", "put, 100 clients", "ops/s", 1, True),
    ("put", "p99_ms", "put p99", "ms", 1, False),
    ("txn-put", "per_second", "txn-put (create txn), 100 clients", "ops/s", 1, True),
    ("txn-put", "p99_ms", "txn-put p99", "ms", 1, False),
    ("range", "per_second", "range of one key, 100 clients", "ops/s", 1, True),
    ("range", "p99_ms", "range p99", "ms", 1, False),
    ("watch-1", "per_second", "watch, 1 watcher: events delivered", "events/s", 1, True),
    ("watch-1", "p99_ms", "watch, 1 watcher: put-to-event p99", "ms", 1, False),
    ("watch-1000", "per_second", "watch, 1,000 watchers: events delivered", "events/s", 1, True),
    ("watch-1000", "p99_ms", "watch, 1,000 watchers: put-to-event p99", "ms", 1, False),
    ("list-100k-500", "p50_ms", "list 100k keys, pages of 500", "ms", 1, False),
    ("list-100k-10000", "p50_ms", "list 100k keys, pages of 10,000", "ms", 1, False),
    ("count-100k", "p50_ms", "count_only of 100k keys", "ms", 1, False),
    ("load", "per_second", "load: create txns of 1 KiB objects, 200 clients", "objects/s", 1, True),
    ("load-probe", "per_second", "load: puts of the probe's 1 KiB objects, 200 clients", "objects/s", 1, True),
    ("objects", "objects", "objects stored", "objects", 1, True),
]
# The probe's measurements (scripts/scale.sh), right after a load on PostgreSQL (-unvacuumed)
# and as production runs.
for suffix, when in (("-unvacuumed", ", before VACUUM"), ("", "")):
    ROWS += [
        (f"list-500{suffix}", "p50_ms", f"full list, pages of 500{when}", "s", 0.001, False),
        (f"list-500{suffix}", "first_page_ms", f"first page of 500{when}", "ms", 1, False),
        (f"list-500{suffix}", "middle_page_ms", f"middle page of 500{when}", "ms", 1, False),
        (f"list-500{suffix}", "last_page_ms", f"last page of 500{when}", "ms", 1, False),
        (f"list-500{suffix}", "first_page_p50_ms", f"first page of 500, median of the lists{when}", "ms", 1, False),
        (f"list-500{suffix}", "middle_page_p50_ms", f"middle page of 500, median of the lists{when}", "ms", 1, False),
        (f"list-500{suffix}", "page_p50_ms", f"page of 500, p50{when}", "ms", 1, False),
        (f"list-500{suffix}", "page_p99_ms", f"page of 500, p99{when}", "ms", 1, False),
        (f"list-10000{suffix}", "p50_ms", f"full list, pages of 10,000{when}", "s", 0.001, False),
        (f"list-10000{suffix}", "first_page_ms", f"first page of 10,000{when}", "ms", 1, False),
        (f"list-10000{suffix}", "middle_page_ms", f"middle page of 10,000{when}", "ms", 1, False),
        (f"list-10000{suffix}", "last_page_ms", f"last page of 10,000{when}", "ms", 1, False),
        (f"list-10000{suffix}", "page_p50_ms", f"page of 10,000, p50{when}", "ms", 1, False),
        (f"count{suffix}", "p50_ms", f"count_only{when}", "ms", 1, False),
        (f"first-page{suffix}", "p50_ms", f"range with limit 1 (and its count){when}", "ms", 1, False),
    ]
ROWS += [
    ("vacuum", "vacuum_analyze_ms", "VACUUM ANALYZE after the load", "ms", 1, False),
    ("rss-after-lists", "rss_mib", "RSS after the load and the lists", "MiB", 1, False),
    ("rss-settled", "rss_mib", "RSS 2 s after the lists", "MiB", 1, False),
    ("disk-per-object", "disk_bytes_per_object", "bytes on disk per object", "bytes", 1, False),
    ("disk-per-object-compacted", "disk_bytes_per_object", "bytes on disk per object, compacted and defragmented", "bytes", 1, False),
    ("fleet-register", "per_second", "fleet: registration creates", "ops/s", 1, True),
    ("fleet-register", "p99_ms", "fleet: registration create p99", "ms", 1, False),
    ("fleet-status", "per_second", "fleet: status updates", "ops/s", 1, True),
    ("fleet-status", "p99_ms", "fleet: status update p99", "ms", 1, False),
    ("fleet-read", "p99_ms", "fleet: read own bundle deployments p99", "ms", 1, False),
    ("fleet-page", "p99_ms", "fleet: manager's list page p99 while clusters write", "ms", 1, False),
    ("fleet-page", "p999_ms", "fleet: manager's list page p99.9 while clusters write", "ms", 1, False),
    ("fleet-list", "p50_ms", "fleet: manager's full list of cluster records", "ms", 1, False),
    ("fleet-reload", "p50_ms", "fleet: manager's reload (list, then watch caught up)", "ms", 1, False),
    ("fleet-reload", "clusters_cached", "fleet: cluster records in the manager's cache", "records", 1, True),
    ("restart", "restart_to_serving_ms", "restart to serving", "ms", 1, False),
    ("rss-after-load", "rss_mib", "RSS after the load", "MiB", 1, False),
    ("rss-after-restart", "rss_mib", "RSS after a restart", "MiB", 1, False),
    ("rss-after-list", "rss_mib", "RSS after a restart and one list (pages of 10,000)", "MiB", 1, False),
    ("disk", "disk_mib", "data on disk", "MiB", 1, False),
]
# etcd's own benchmark tool (scripts/etcd-tool-vs.sh).
for case, label in (
    ("tool-put", "put"),
    ("tool-txn-put", "txn-put"),
    ("tool-range", "range of one key, present (linearizable)"),
    ("tool-range-absent", "range of one key, absent (linearizable)"),
    ("tool-stm", "stm: read-modify-write txns with a compare"),
    ("tool-watch", "watch: events received, 1,000 watchers"),
    ("tool-watch-latency", "watch-latency: put to event"),
):
    if case != "tool-watch-latency":
        ROWS.append((case, "per_second", f"etcd tool, {label}", "per s", 1, True))
    ROWS.append((case, "mean_ms", f"etcd tool, {label}: mean latency", "ms", 1, False))
    ROWS.append((case, "p99_ms", f"etcd tool, {label}: p99", "ms", 1, False))


def main(path, reference_target="etcd"):
    samples = {}
    targets = []
    with open(path) as lines:
        for line in lines:
            record = json.loads(line)
            target, report = record["target"], record["report"]
            if target not in targets:
                targets.append(target)
            # The fleet case has a report per kind of request: keyed by the report's name.
            case = record["case"]
            if report.get("workload", "").startswith("fleet-"):
                case = report["workload"]
            for field, value in report.items():
                if isinstance(value, (int, float)):
                    samples.setdefault((target, case, field), []).append(value)
            if report.get("errors"):
                print(f"warning: {target} {case}: {report['errors']} errors", file=sys.stderr)
    values = {key: statistics.median(found) for key, found in samples.items()}
    # The reference first, then the others in the order they ran.
    if reference_target in targets:
        targets.remove(reference_target)
        targets.insert(0, reference_target)
    has_reference = targets and targets[0] == reference_target
    # The scripts that run etcd 3.5.16 say so (ETCD_LABEL); the 100k table's is Debian's 3.4.
    names = {"etcd": os.environ.get("ETCD_LABEL", "etcd 3.4")}
    header = ["measurement"]
    for target in targets:
        shim = target != reference_target and not target.startswith("etcd")
        name = names.get(target, f"etcdshim {target}" if shim else target)
        if has_reference and target != reference_target:
            name += f" (ratio to {names.get(reference_target, reference_target)})"
        header.append(name)
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for case, field, label, unit, scale, higher in ROWS:
        cells = [values.get((t, case, field)) for t in targets]
        if all(c is None for c in cells):
            continue
        better = "higher" if higher else "lower"
        row = [f"{label} ({unit}, {better} is better)"]
        reference = values.get((reference_target, case, field))
        for target, value in zip(targets, cells):
            if value is None:
                row.append("")
                continue
            text = format_value(value * scale)
            if target != reference_target and reference:
                text += f" ({value / reference:.2f})"
            row.append(text)
        print("| " + " | ".join(row) + " |")


def format_value(value):
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


if __name__ == "__main__":
    arguments = sys.argv[1:]
    reference = "etcd"
    if "--reference" in arguments:
        at = arguments.index("--reference")
        reference = arguments[at + 1]
        del arguments[at : at + 2]
    main(arguments[0], reference)

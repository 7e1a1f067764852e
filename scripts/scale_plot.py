#!/usr/bin/env python3
"""The plot of docs/benchmarks.md's scale table: what must not grow with the store (a page of
500 of the probe's list, first and middle, a page of 10,000, count_only and a limit=1 range of
the probe's 1,000,000 keys) against the number of objects stored, one panel per target, from
the JSON lines of scripts/scale.sh (one or more files, e.g. one per run). Writes an SVG with no
plotting library.

    python3 scripts/scale_plot.py RESULTS.jsonl [MORE.jsonl...] OUT.svg
"""
import json
import math
import sys

# (case, field, label, colour)
SERIES = [
    ("list-500", "first_page_ms", "first page of 500", "#1f77b4"),
    ("list-500", "middle_page_ms", "middle page of 500", "#2ca02c"),
    ("list-500", "page_p99_ms", "page of 500, p99", "#17becf"),
    ("list-10000", "middle_page_ms", "middle page of 10,000", "#9467bd"),
    ("count", "p50_ms", "count_only of 1M keys", "#d62728"),
    ("first-page", "p50_ms", "limit=1 range (with its count)", "#ff7f0e"),
]
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 620, 360, 70, 220, 40, 50


def load(paths):
    points = {}  # target -> {series index -> [(objects, ms)]}
    objects = {}
    rows = [json.loads(line) for path in paths for line in open(path) if line.strip()]
    for row in rows:
        if row["case"] == "objects":
            objects[row["target"]] = row["report"]["objects"]
    for row in rows:
        target, _, size = row["target"].partition("@")
        stored = objects.get(row["target"], int(size or 0))
        for index, (case, field, _, _) in enumerate(SERIES):
            value = row["report"].get(field)
            if row["case"] == case and isinstance(value, (int, float)) and value > 0:
                points.setdefault(target, {}).setdefault(index, []).append((stored, value))
    return points


def panel(target, series, x0):
    xs = [x for found in series.values() for x, _ in found]
    ys = [y for found in series.values() for _, y in found]
    lo_x, hi_x = math.log10(min(xs)), math.log10(max(xs))
    hi_x = max(hi_x, lo_x + 0.1)
    lo_y, hi_y = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    hi_y = max(hi_y, lo_y + 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def at(x, y):
        px = x0 + LEFT + (math.log10(x) - lo_x) / (hi_x - lo_x) * plot_w
        py = TOP + plot_h - (math.log10(y) - lo_y) / (hi_y - lo_y) * plot_h
        return px, py

    out = [f'<text x="{x0 + LEFT}" y="22" font-size="14">{target}: milliseconds against objects stored</text>']
    out.append(f'<rect x="{x0 + LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>')
    for decade in range(lo_y, hi_y + 1):
        _, py = at(10**lo_x, 10**decade)
        out.append(f'<line x1="{x0 + LEFT}" y1="{py:.1f}" x2="{x0 + LEFT + plot_w}" y2="{py:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 + LEFT - 6}" y="{py + 4:.1f}" font-size="11" text-anchor="end">{10**decade:g}</text>')
    for x in sorted(set(xs)):
        px, _ = at(x, 10**lo_y)
        out.append(f'<text x="{px:.1f}" y="{TOP + plot_h + 16}" font-size="11" text-anchor="middle">{x / 1e6:g}M</text>')
    for index, found in sorted(series.items()):
        _, _, label, colour = SERIES[index]
        found.sort()
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in (at(x, y) for x, y in found))
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in found:
            px, py = at(x, y)
            out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>')
        ly = TOP + 14 + 18 * index
        lx = x0 + LEFT + plot_w + 10
        out.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 16}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{lx + 20}" y="{ly}" font-size="11">{label}</text>')
    return out


def main(paths, out_path):
    points = load(paths)
    targets = sorted(points)
    if not targets:
        sys.exit(f"{', '.join(paths)}: no scale measurements")
    body = []
    for index, target in enumerate(targets):
        body += panel(target, points[target], index * WIDTH)
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH * len(targets)}" height="{HEIGHT}" '
        f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
        + "".join(body)
        + "</svg>\n"
    )
    with open(out_path, "w") as out:
        out.write(svg)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1:-1], sys.argv[-1])

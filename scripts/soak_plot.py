#!/usr/bin/env python3
"""The soak run's samples (scripts/soak.sh: seconds, RSS in MiB, open descriptors) as an SVG
with two panels, RSS and descriptors against time, and the growth check: the medians of the
last quarter against those of the second quarter (the first is warm-up). Exits 1 when RSS grew
by more than half, or descriptors by more than half plus 20. No plotting library.

    python3 scripts/soak_plot.py SAMPLES.csv OUT.svg
"""
import csv
import statistics
import sys

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 620, 220, 70, 30, 30, 40


def panel(samples, column, label, colour, y0):
    times = [row[0] for row in samples]
    values = [row[column] for row in samples]
    top = max(values) * 1.1 or 1
    span = max(times[-1], 1)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t):
        return LEFT + inner_w * t / span

    def y(v):
        return y0 + TOP + inner_h * (1 - v / top)

    out = [f'<text x="{LEFT}" y="{y0 + 18}" font-size="13">{label}</text>']
    out.append(f'<line x1="{LEFT}" y1="{y(0)}" x2="{WIDTH - RIGHT}" y2="{y(0)}" stroke="#999"/>')
    out.append(f'<line x1="{LEFT}" y1="{y(0)}" x2="{LEFT}" y2="{y(top)}" stroke="#999"/>')
    for fraction in (0, 0.5, 1):
        v = top * fraction
        out.append(f'<text x="{LEFT - 6}" y="{y(v) + 4}" font-size="11" text-anchor="end">{v:.0f}</text>')
        t = span * fraction
        out.append(f'<text x="{x(t)}" y="{y(0) + 16}" font-size="11" text-anchor="middle">{t / 60:.0f} min</text>')
    points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, values))
    out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
    return out


def main(samples_path, svg_path):
    with open(samples_path) as f:
        samples = [(float(r["seconds"]), float(r["rss_mib"]), float(r["fds"])) for r in csv.DictReader(f)]
    if len(samples) < 8:
        print(f"soak: only {len(samples)} samples; run longer for the growth check", file=sys.stderr)
        return 1
    body = panel(samples, 1, "etcdshim resident memory (MiB)", "#1f77b4", 0)
    body += panel(samples, 2, "open file descriptors", "#d62728", HEIGHT)
    with open(svg_path, "w") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{2 * HEIGHT}" '
                f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
                + "".join(body) + "</svg>\n")
    quarter = len(samples) // 4
    status = 0
    for column, name, allowed in ((1, "RSS MiB", lambda a: a * 1.5), (2, "descriptors", lambda a: a * 1.5 + 20)):
        second = statistics.median(row[column] for row in samples[quarter:2 * quarter])
        last = statistics.median(row[column] for row in samples[3 * quarter:])
        peak = max(row[column] for row in samples)
        verdict = "ok" if last <= allowed(second) else "GREW"
        status |= verdict != "ok"
        print(f"{name}: second quarter median {second:.0f}, last quarter median {last:.0f}, peak {peak:.0f}: {verdict}")
    print(f"plot: {svg_path}")
    return status


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

#!/usr/bin/env python3
"""SVG charts for BENCHMARKS.md, drawn from the same results as its tables.

Usage: bench_charts.py RESULTS_DIR OUT_DIR

Reads RESULTS_DIR/results.jsonl (written by scripts/bench.sh) through
scripts/bench_report.py's own functions, so a chart and the table beside it
show the same medians, and writes into OUT_DIR:
  throughput.svg  the pinned round, one panel per scenario, every server
                  side by side, the raw-TCP ceiling hatched where measured
  latency.svg     p50 / p90 / p99 / p99.9 of the echo scenarios (log scale)
  memory.svg      idle KiB per connection
Needs matplotlib (scripts/bench.sh installs it in .venv-bench).
"""
import os
import statistics
import sys

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_report as br  # noqa: E402

COLORS = {"wsedge": "#2f6fde", "tt": "#d68b00", "fws": "#7b4fd6", "tcp": "#9aa5b1"}
plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                     "axes.spines.right": False, "svg.hashsalt": "wsedge"})

# (scenario, metric, axis label); scenarios missing from the results are skipped.
THROUGHPUT = [
    ("echo1", "msgs_per_sec", "messages/s"),
    ("echo16", "msgs_per_sec", "messages/s"),
    ("echo16k", "mb_per_sec", "MB/s"),
    ("connect", "handshakes_per_sec", "handshakes/s"),
]
# Scenarios another part of bench.sh adds (fan-out) are charted when present.
EXTRA_RATE_KEYS = ["deliveries_per_sec", "msgs_per_sec"]


def servers_in(g, scen):
    found = {s for (s, sc) in g if sc == scen}
    return [s for s in br.SERVER_ORDER if s in found] + sorted(found - set(br.SERVER_ORDER))


def name(s):
    return br.NAMES.get(s, s).split(" (")[0]


def human(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e4:
        return f"{v / 1e3:.0f} k"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.2f}"


def bars(ax, g, scen, key, label):
    ss = [s for s in servers_in(g, scen) if br.medm(g, s, scen, key) is not None]
    vals = [br.medm(g, s, scen, key) for s in ss]
    xs = range(len(ss))
    for x, s, v in zip(xs, ss, vals):
        ax.bar(x, v, color=COLORS.get(s, "#546e7a"), hatch="//" if s == "tcp" else None,
               edgecolor="white")
        ax.annotate(human(v), (x, v), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), [name(s) for s in ss], rotation=20, ha="right")
    ax.set_ylabel(label)
    ax.set_title(br.scen_label(scen, g), fontsize=9)
    ax.set_ylim(0, max(vals) * 1.18 if vals else 1)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: human(v) if v else "0"))
    return bool(ss)


def throughput(g, out):
    panels = [(s, k, l) for s, k, l in THROUGHPUT if any(sc == s for (_, sc) in g)]
    extra = sorted({sc for (_, sc) in g} - {s for s, _, _ in THROUGHPUT} - {"idle", "idle19k", "idle1m"})
    for sc in extra:
        for k in EXTRA_RATE_KEYS:
            if any(br.medm(g, s, sc, k) is not None for s in servers_in(g, sc)):
                panels.append((sc, k, k.replace("_per_sec", "/s").replace("_", " ")))
                break
    if not panels:
        return None
    cols = min(4, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.0 * rows), squeeze=False)
    for ax, (s, k, l) in zip(axes.flat, panels):
        bars(ax, g, s, k, l)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("Throughput, server pinned to one core (median of repetitions; higher is better)",
                 fontsize=10)
    fig.tight_layout()
    path = os.path.join(out, "throughput.svg")
    fig.savefig(path)
    plt.close(fig)
    return path


def raw_percentiles(rows, server, scen):
    keys = [("p50", "p50_us"), ("p90", "p90_us"), ("p99", "p99_us"), ("p99.9", "p999_us")]
    got = {}
    for label, k in keys:
        vals = [r["bench"].get(k) for r in rows
                if r["round"] == "pinned" and r["server"] == server and r["scenario"] == scen
                and r.get("bench") and r["bench"].get(k) is not None]
        if vals:
            got[label] = statistics.median(vals)
    return got


def latency(rows, g, out):
    scens = [s for s in ("echo1", "echo16", "echo16k") if any(sc == s for (_, sc) in g)]
    if not scens:
        return None
    fig, axes = plt.subplots(1, len(scens), figsize=(4.2 * len(scens), 3.2), squeeze=False)
    for ax, scen in zip(axes.flat, scens):
        ss = servers_in(g, scen)
        width = 0.8 / max(1, len(ss))
        labels = ["p50", "p90", "p99", "p99.9"]
        for i, s in enumerate(ss):
            p = raw_percentiles(rows, s, scen)
            xs = [j + i * width for j in range(len(labels))]
            ax.bar(xs, [p.get(lb, 0) for lb in labels], width, label=name(s),
                   color=COLORS.get(s, "#546e7a"), hatch="//" if s == "tcp" else None,
                   edgecolor="white")
        ax.set_xticks([j + width * (len(ss) - 1) / 2 for j in range(len(labels))], labels)
        ax.set_yscale("log")
        ax.set_ylabel("round trip, µs")
        ax.set_title(br.scen_label(scen, g), fontsize=9)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle("Echo latency percentiles at full load (log scale; lower is better)", fontsize=10)
    fig.tight_layout()
    path = os.path.join(out, "latency.svg")
    fig.savefig(path)
    plt.close(fig)
    return path


def memory(g, out):
    items = []
    for s in servers_in(g, "idle"):
        v = br.medm(g, s, "idle", "kib_per_conn")
        if v is not None:
            n = br.medm(g, s, "idle", "conns")
            items.append((f"{name(s)}\n{int(n or 0):,} idle", v, s))
    for scen, what in (("idle19k", "idle"), ("idle1m", "after 1 MiB echo")):
        v = br.medm(g, "wsedge", scen, "kib_per_conn")
        if v is not None:
            n = br.medm(g, "wsedge", scen, "conns")
            items.append((f"wsedge\n{int(n or 0):,} {what}", v, "wsedge"))
    if not items:
        return None
    fig, ax = plt.subplots(figsize=(1.6 * len(items) + 1.5, 3.2))
    for x, (label, v, s) in enumerate(items):
        ax.bar(x, v, color=COLORS.get(s, "#546e7a"), edgecolor="white")
        ax.annotate(f"{v:.2f}", (x, v), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(items)), [i[0] for i in items], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("KiB of RSS per connection")
    ax.set_title("Memory per idle WebSocket connection (log scale; lower is better)", fontsize=10)
    fig.tight_layout()
    path = os.path.join(out, "memory.svg")
    fig.savefig(path)
    plt.close(fig)
    return path


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    rows = br.load(src)
    g = br.group(rows, "pinned")
    for path in (throughput(g, out), latency(rows, g, out), memory(g, out)):
        if path:
            print(f"chart: {path}")


if __name__ == "__main__":
    main()

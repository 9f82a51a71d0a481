"""PNG charts of a benchmark run, drawn from its figures (``python -m bench`` writes them
beside ``bench/results/latest.json``).

- ``ratios.png``: every figure that has a ceiling measured in the same run, as its ratio to
  that ceiling — how close each stage comes to the bound no implementation could beat here.
- ``latency.png``: the latency percentiles (every figure in ms) against their targets.
- ``cardinality.png``: the aggregator's records/s and the same run's Postgres floor against
  the number of items (``bench.cardinality``), each point labelled with its ratio.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server

import matplotlib.pyplot as plt
import matplotlib.ticker

from bench.common import Figure

__all__ = ["draw"]

_TARGET_MS = re.compile(r"≤\s*([\d,.]+)\s*ms")
_ITEMS = re.compile(r"^([\d,]+) items: ")


def _label(f: Figure) -> str:
    return f"{f.stage}: {f.metric}" + (f" ÷ {f.ceiling_label}" if f.ceiling_label else "")


def _ratios(figures: list[Figure], path: Path) -> None:
    rows = [f for f in figures if f.ratio is not None and f.unit != "ms"]
    fig, ax = plt.subplots(figsize=(13, 0.45 * len(rows) + 1.4))
    ax.barh([_label(f) for f in rows], [f.ratio or 0.0 for f in rows], color="#2563eb")
    for i, f in enumerate(rows):
        ax.text((f.ratio or 0.0) + 0.005, i, f"{f.ratio:.2f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("figure ÷ ceiling measured in the same run")
    fig.suptitle("Throughput against the same run's ceilings")
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _latency(figures: list[Figure], path: Path) -> None:
    rows = [f for f in figures if f.unit == "ms"]
    fig, ax = plt.subplots(figsize=(13, 0.45 * len(rows) + 1.4))
    ax.barh([_label(f) for f in rows], [f.value for f in rows], color="#16a34a")
    for i, f in enumerate(rows):
        ax.text(f.value * 1.05, i, f"{f.value:,.1f} ms", va="center", fontsize=8)
        target = _TARGET_MS.search(f.target)
        if target:
            limit = float(target.group(1).replace(",", ""))
            ax.plot([limit, limit], [i - 0.4, i + 0.4], color="#dc2626", linewidth=2)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds (log scale); red: the target")
    fig.suptitle("Latency percentiles")
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sweep(figures: list[Figure]) -> list[tuple[int, Figure]]:
    """The cardinality stage's rates against their floor, by item count."""
    out = []
    for f in figures:
        match = _ITEMS.match(f.metric)
        if f.stage == "cardinality" and match and f.ceiling and f.unit == "records/s":
            out.append((int(match.group(1).replace(",", "")), f))
    return sorted(out, key=lambda row: row[0])


def _cardinality(figures: list[Figure], path: Path) -> None:
    rows = _sweep(figures)
    items = [n for n, _ in rows]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.plot(items, [f.value for _, f in rows], "o-", color="#2563eb", label="aggregator, records/s")
    ax.plot(
        items,
        [f.ceiling or 0.0 for _, f in rows],
        "s--",
        color="#6b7280",
        label=f"{rows[0][1].ceiling_label}, rows/s (same run)",
    )
    ax.plot(
        items,
        [0.5 * (f.ceiling or 0.0) for _, f in rows],
        ":",
        color="#dc2626",
        label="target: 0.5 × floor",
    )
    for n, f in rows:
        ax.annotate(f"{f.ratio:.2f} ×", (n, f.value), textcoords="offset points", xytext=(6, 6))
    ax.set_xscale("log")
    ax.set_xticks(items, [f"{n:,}" for n in items])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("items (log scale), the same usage points spread over them")
    ax.set_ylabel("per second")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.legend(fontsize=8)
    fig.suptitle("Aggregator at high cardinality against the same run's Postgres floor")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw(figures: list[Figure], directory: Path) -> list[Path]:
    """The charts of these figures, written into ``directory``; the paths written (a chart
    with nothing to show is not drawn)."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, drawer, wanted in (
        ("ratios.png", _ratios, [f for f in figures if f.ratio is not None and f.unit != "ms"]),
        ("latency.png", _latency, [f for f in figures if f.unit == "ms"]),
        ("cardinality.png", _cardinality, [f for _, f in _sweep(figures)]),
    ):
        if wanted:
            path = directory / name
            drawer(figures, path)
            written.append(path)
    return written

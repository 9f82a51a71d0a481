"""PNG charts of a benchmark run, drawn from its figures (``python -m bench`` writes them
beside ``bench/results/latest.json``).

- ``ratios.png``: every figure that has a ceiling measured in the same run, as its ratio to
  that ceiling — how close each stage comes to the bound no implementation could beat here.
- ``latency.png``: the latency percentiles (every figure in ms) against their targets.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server

import matplotlib.pyplot as plt

from bench.common import Figure

__all__ = ["draw"]

_TARGET_MS = re.compile(r"≤\s*([\d,.]+)\s*ms")


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


def draw(figures: list[Figure], directory: Path) -> list[Path]:
    """The charts of these figures, written into ``directory``; the paths written (a chart
    with nothing to show is not drawn)."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, drawer, wanted in (
        ("ratios.png", _ratios, [f for f in figures if f.ratio is not None and f.unit != "ms"]),
        ("latency.png", _latency, [f for f in figures if f.unit == "ms"]),
    ):
        if wanted:
            path = directory / name
            drawer(figures, path)
            written.append(path)
    return written

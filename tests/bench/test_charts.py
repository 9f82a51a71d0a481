"""The benchmark charts are drawn from a run's figures: one PNG of ratios to the same run's
ceilings, one of latency percentiles against their targets."""

from __future__ import annotations

from pathlib import Path

from bench.charts import draw
from bench.common import Figure

FIGURES = [
    Figure("ingest", "single record", 17_856, "req/s", "≥ 0.35 × echo", 49_025, "echo", True),
    Figure("ingest", "p99 at 5,000 req/s", 6.85, "ms", "≤ 25 ms", passed=True),
    Figure("end to end", "p99", 60.2, "ms", "≤ 100 ms", 2.99, "summaries round trip", True),
    Figure("invoicer", "lifecycle", 1_570, "invoices/s", "≥ 2,000", 2_402, "bulk", False),
    Figure("ingest", "batches of 1000", 457_612, "records/s", "≥ 250,000", passed=True),
]


def _png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000


def test_both_charts_are_drawn(tmp_path: Path) -> None:
    written = draw(FIGURES, tmp_path / "charts")
    assert [p.name for p in written] == ["ratios.png", "latency.png"]
    assert all(_png(p) for p in written)


def test_a_chart_with_nothing_to_show_is_not_drawn(tmp_path: Path) -> None:
    only_throughput = [f for f in FIGURES if f.unit != "ms"]
    assert [p.name for p in draw(only_throughput, tmp_path)] == ["ratios.png"]
    assert draw([FIGURES[-1]], tmp_path / "none") == []  # no ceiling, no latency


SWEEP = [
    Figure(
        "cardinality",
        f"{n:,} items: 300,000 points at distinct timestamps, into Postgres windows",
        rate,
        "records/s",
        "≥ 0.5 × Postgres floor",
        floor,
        "Postgres floor",
        rate >= 0.5 * floor,
    )
    for n, rate, floor in ((50_000, 31_682, 76_289), (1_000, 109_128, 101_377))
] + [Figure("cardinality", "1,000 items: Postgres floor", 101_377, "rows/s")]


def test_the_cardinality_sweep_is_drawn_against_its_floor(tmp_path: Path) -> None:
    written = draw(FIGURES + SWEEP, tmp_path)
    assert [p.name for p in written] == ["ratios.png", "latency.png", "cardinality.png"]
    assert _png(written[-1])
    assert "cardinality.png" not in [p.name for p in draw(FIGURES, tmp_path / "without")]

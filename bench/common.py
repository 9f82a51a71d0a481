"""Figures, the table they print as, and the results file."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Figure", "print_table", "write_results"]

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured number; ``ceiling`` is a reference measured in the same run."""

    stage: str
    metric: str
    value: float
    unit: str
    target: str = ""
    ceiling: float | None = None
    ceiling_label: str = ""
    passed: bool | None = None      # against the SPEC target, when it has one

    @property
    def ratio(self) -> float | None:
        return None if not self.ceiling else self.value / self.ceiling


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def print_table(figures: list[Figure]) -> None:
    header = ("stage", "metric", "value", "unit", "ceiling (same run)", "ratio", "target", "ok")
    rows = [header]
    for f in figures:
        ceiling = f"{_fmt(f.ceiling)} {f.ceiling_label}".strip() if f.ceiling else ""
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else ""
        ok = "" if f.passed is None else ("yes" if f.passed else "NO")
        rows.append((f.stage, f.metric, _fmt(f.value), f.unit, ceiling, ratio, f.target, ok))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def write_results(figures: list[Figure], name: str = "latest.json") -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    payload = {
        "at": int(time.time()), "machine": platform.platform(), "python": platform.python_version(),
        "figures": [asdict(f) | {"ratio": f.ratio} for f in figures],
    }
    path.write_text(json.dumps(payload, indent=2))
    return path

"""Run the benchmarks: ``python -m bench [stage ...]`` (default: every stage).

Each stage module exposes ``async def run(broker: str) -> list[Figure]`` and sets up its
own isolated environment (``infra.devenv.isolated_settings``). On a terminal, each load
run, round and sample loop shows a progress bar on stderr (``infra.progress``); piped, the
output is the figures alone. The figures go to ``bench/results/latest.json`` and are drawn
as PNG charts beside it (``bench.charts``).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys

from bench.charts import draw
from bench.common import RESULTS, Figure, print_table, write_results
from infra.devenv import dev_broker

STAGES = (
    "ingest",
    "redis",
    "aggregator",
    "cardinality",
    "meter_events",
    "groups",
    "invoicer",
    "end_to_end",
)


async def _run(stages: list[str], broker: str) -> list[Figure]:
    figures: list[Figure] = []
    for stage in stages:
        module = importlib.import_module(f"bench.{stage}")
        print(f"== {stage} ==", flush=True)
        figures.extend(await module.run(broker))
    return figures


def main(argv: list[str]) -> int:
    stages = argv or [s for s in STAGES if importlib.util.find_spec(f"bench.{s}") is not None]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        print(f"unknown stage(s): {', '.join(unknown)}; choose from {', '.join(STAGES)}")
        return 2
    with dev_broker() as broker:
        figures = asyncio.run(_run(stages, broker))
    print()
    print_table(figures)
    path = write_results(figures)
    print(f"\nresults written to {path}")
    for chart in draw(figures, RESULTS):
        print(f"chart written to {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Figures, the table they print as, and the results file."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import platform
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from aggregator.worker import Aggregator
from domain.accounts import create_account
from domain.ratelimit.store import FIELDS, set_overrides
from infra.devenv import role_env
from infra.settings import Settings
from vinr.roles import tune_gc

__all__ = [
    "Figure",
    "Served",
    "bench_env",
    "catch_up",
    "metered_fixture",
    "print_table",
    "serve_process",
    "write_results",
]

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
    passed: bool | None = None  # against the stage's target, when it has one

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
        "at": int(time.time()),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "figures": [asdict(f) | {"ratio": f.ratio} for f in figures],
    }
    path.write_text(json.dumps(payload, indent=2))
    return path


def bench_env(settings: Settings) -> dict[str, str]:
    """A role subprocess's environment in the bench's isolated env, logging warnings only."""
    return role_env(settings, VINR_LOG_LEVEL="WARNING")


class Served(str):
    """A served process's base URL, which also knows the process (for its CPU time)."""

    pid: int

    def cpu_s(self) -> float:
        """User + system CPU seconds the process has used so far (Linux ``/proc``)."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def serve_process(
    args: list[str], env: dict[str, str], port: int, ready_path: str
) -> AsyncIterator[Served]:
    """A server subprocess, up once ``ready_path`` answers; SIGTERM (graceful) on exit."""
    proc = await asyncio.create_subprocess_exec(sys.executable, *args, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=2) as client:
            deadline = time.monotonic() + 30
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"{args} exited with {proc.returncode}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(ready_path)).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{args} did not become ready")
                await asyncio.sleep(0.1)
        served = Served(url)
        served.pid = proc.pid
        yield served
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


# The bench account's per-key limits, both planes (requests/s and burst).
BENCH_RATE = 1_000_000


async def metered_fixture(api: str, settings: Settings) -> tuple[str, str, int]:
    """(sandbox key, subscription item id, period start) for a metered sum price."""
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        account, key, _ = await create_account(conn, "bench")
        # One key carries the whole load (the end-to-end stage also polls summaries on the
        # control plane): the account gets budgets above what the machine can send, so the
        # limiter admits every request (it still runs, leasing 10,000 tokens at a time) and
        # the figures measure the API, not the default limits.
        await set_overrides(conn, account, {name: BENCH_RATE for name in FIELDS})
    finally:
        await conn.close()
    async with httpx.AsyncClient(
        base_url=api, timeout=10, headers={"Authorization": f"Bearer {key}"}
    ) as c:

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = await c.post(path, json=body)
            response.raise_for_status()
            result: dict[str, Any] = response.json()
            return result

        product = await post("/v1/products", {"name": "bench"})
        price = await post(
            "/v1/prices",
            {
                "product": product["id"],
                "currency": "EUR",
                "billingScheme": "usage",
                "unitAmountDecimal": "0.2",
                "recurring": {"interval": "month", "usageType": "metered", "aggregateUsage": "sum"},
            },
        )
        customer = await post("/v1/customers", {"name": "bench", "paymentMethod": "pm_card_visa"})
        sub = await post(
            "/v1/subscriptions", {"customer": customer["id"], "items": [{"price": price["id"]}]}
        )
    return key, sub["items"]["data"][0]["id"], int(sub["currentPeriodStart"])


async def catch_up(agg: Aggregator, ends: dict[int, int]) -> float:
    """Run a started aggregator until its commits reach ``ends`` (partition → end offset),
    then stop it: the seconds it took. The commits are watched in memory (a Postgres poll
    would compete for the same loop and server); callers confirm against the stored
    offsets."""
    started = time.perf_counter()
    runner = asyncio.create_task(agg.run())
    try:
        while any(agg.committed.get(p, -1) < end for p, end in ends.items()):
            if runner.done():
                runner.result()
                raise RuntimeError("the aggregator stopped before catching up")
            await asyncio.sleep(0.001)
        return time.perf_counter() - started
    finally:
        agg.request_stop()
        await runner


@contextlib.contextmanager
def aggregator_gc() -> Iterator[None]:
    """The aggregator role's collector settings (``vinr.roles.tune_gc``) for a stage that
    runs an aggregator in the bench's process, put back afterwards."""
    thresholds = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)

"""End-to-end benchmark: ``python -m bench end_to_end``.

A real ``vinr up`` (api + aggregator + invoicer + dispatcher) in an isolated environment.
For each sample a record is posted, and the clock runs from the moment its 200 arrives
until ``GET /v1/usage_records/summaries`` shows it. The ceiling is
the summaries round trip alone, measured in the same run: the floor any sample can reach.
A background producer keeps batches flowing meanwhile, so the aggregator is not idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid

import httpx

from bench.common import Figure, bench_env, metered_fixture, serve_process
from infra import progress
from infra.devenv import free_port, isolated_settings

__all__ = ["run"]

STAGE = "end to end"
SAMPLES = 300
BACKGROUND_BATCH = 200


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _background(c: httpx.AsyncClient, item: str, stop: asyncio.Event) -> int:
    """Batches for the same item, back to back, until ``stop``: the records sent."""
    sent = 0
    while not stop.is_set():
        response = await c.post(
            "/v1/usage_records/batch",
            headers={"Idempotency-Key": uuid.uuid4().hex},
            json={"subscriptionItem": item, "records": [{"quantity": 1}] * BACKGROUND_BATCH},
        )
        response.raise_for_status()
        sent += BACKGROUND_BATCH
    return sent


async def run(broker: str) -> list[Figure]:
    async with isolated_settings(broker, label="benche2e") as settings:
        port = free_port()
        args = ["-m", "vinr.cli", "up", "--port", str(port)]
        async with serve_process(args, bench_env(settings), port, "/readyz") as api:
            key, item, _ = await metered_fixture(api, settings)
            probe_key, probe_item, _ = await metered_fixture(api, settings)
            async with (
                httpx.AsyncClient(
                    base_url=api, timeout=10, headers={"Authorization": f"Bearer {key}"}
                ) as busy,
                httpx.AsyncClient(
                    base_url=api, timeout=10, headers={"Authorization": f"Bearer {probe_key}"}
                ) as c,
            ):
                stop = asyncio.Event()
                background = asyncio.create_task(_background(busy, item, stop))
                lags: list[float] = []
                floors: list[float] = []
                expected = 0
                with progress.bar("  samples") as report:
                    for n in range(SAMPLES):
                        expected += n + 1
                        response = await c.post(
                            "/v1/usage_records",
                            json={"subscriptionItem": probe_item, "quantity": n + 1},
                            headers={"Idempotency-Key": uuid.uuid4().hex},
                        )
                        response.raise_for_status()
                        accepted = time.perf_counter()
                        while True:
                            asked = time.perf_counter()
                            summary = (
                                await c.get(
                                    "/v1/usage_records/summaries",
                                    params={"subscriptionItem": probe_item},
                                )
                            ).json()
                            floors.append(time.perf_counter() - asked)
                            if summary["data"][0]["totalUsage"] >= expected:
                                break
                            if time.perf_counter() - accepted > 10:
                                raise RuntimeError("a record did not show up within 10 s")
                        lags.append(time.perf_counter() - accepted)
                        report(n + 1, SAMPLES)
                stop.set()
                background_records = 0
                with contextlib.suppress(httpx.HTTPError):
                    background_records = await background
    p99 = _p(lags, 0.99) * 1000
    floor = statistics.median(floors) * 1000
    return [
        Figure(
            STAGE,
            "accepted → in summaries, p50",
            _p(lags, 0.5) * 1000,
            "ms",
            ceiling=floor,
            ceiling_label="ms summaries round trip",
        ),
        Figure(
            STAGE,
            "accepted → in summaries, p99",
            p99,
            "ms",
            target="≤ 100 ms",
            ceiling=floor,
            ceiling_label="ms summaries round trip",
            passed=p99 <= 100,
        ),
        Figure(STAGE, "background records meanwhile", float(background_records), "records"),
    ]

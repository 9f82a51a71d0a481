"""Chaos: ≥ 200k records while aggregators are killed, frozen and doubled up.

Two ``vinr aggregator`` processes own the same partitions (manual assignment; the dev
broker cannot rebalance two group members). One of them is SIGKILLed at random
moments and restarted, and once frozen with SIGSTOP mid-stream and resumed (a zombie with a
batch in hand); the other runs throughout. Meanwhile usage is published: 1000-record batch
requests, single records, ``set`` records, and client retries (the same request id
published again later). Afterwards every window must equal the ground truth folded
independently from what was published — zero lost, zero double counted.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from domain.wire import UsageMessage
from infra.db import create_pool
from infra.devenv import isolated_settings
from infra.settings import Settings
from tests.support.aggregator import (
    CLI,
    PERIOD,
    Published,
    message,
    publish,
    role_env,
    stored_offsets,
    windows,
)

SEED = int(os.environ.get("VINR_CHAOS_SEED", "20240229"))
ITEMS = 40
BATCHES = 210  # × 1000 records
SINGLES = 3_000
WAVES = 12
SECOND_PERIOD = (PERIOD[1], PERIOD[1] + 30 * 86_400)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def env(broker: str) -> AsyncIterator[tuple[Settings, asyncpg.Pool]]:
    async with isolated_settings(broker, label="chaos") as settings:
        pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            yield settings, pool
        finally:
            await pool.close()


def waves(rnd: random.Random) -> list[list[UsageMessage]]:
    """The traffic, in publishing waves; retries re-publish earlier requests."""
    requests = []
    for n in range(BATCHES):
        item = rnd.randrange(ITEMS)
        period = SECOND_PERIOD if item % 4 == 0 and n % 2 else PERIOD  # two windows
        gauge = item % 5 == 0
        t0 = period[0] + 60 * n
        records = [
            (t0 + j // 100, rnd.randrange(50), gauge or rnd.random() < 0.01) for j in range(1000)
        ]
        requests.append(message(f"mbu_b{n}", item, records, period=period))
    for n in range(SINGLES):
        item = rnd.randrange(ITEMS)
        period = SECOND_PERIOD if item % 4 == 0 and n % 2 else PERIOD
        records = [(period[0] + rnd.randrange(20_000), rnd.randrange(9), rnd.random() < 0.2)]
        requests.append(message(f"mbu_s{n}", item, records, period=period))
    rnd.shuffle(requests)
    out: list[list[UsageMessage]] = [[] for _ in range(WAVES)]
    for i, request in enumerate(requests):
        out[i * WAVES // len(requests)].append(request)
    for wave in range(1, WAVES):
        earlier = [r for w in out[:wave] for r in w]
        out[wave] += rnd.sample(earlier, 6)  # client retries past Redis
    return out


class Role:
    """A ``vinr aggregator`` subprocess with its output kept for the failure message."""

    def __init__(self, settings: Settings, name: str, **env: str) -> None:
        self.name = name
        fd, self.log = tempfile.mkstemp(prefix=f"vinr-chaos-{name}-", suffix=".log")
        try:
            self.proc = subprocess.Popen(
                [*CLI, "aggregator", "--partitions", "0,1,2,3"],
                env=role_env(settings, **env),
                stdout=fd,
                stderr=subprocess.STDOUT,
            )
        finally:
            os.close(fd)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def output(self) -> str:
        with open(self.log, encoding="utf-8") as f:
            return f.read()

    async def ready(self, timeout_s: float = 20) -> None:
        """Until it consumes (its signal handlers are in place from then on)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if "aggregator consuming" in self.output():
                return
            assert self.proc.poll() is None, f"{self.name} exited; log: {self.log}"
            assert time.monotonic() < deadline, f"{self.name} did not start; log: {self.log}"
            await asyncio.sleep(0.05)

    async def wait(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"{self.name} did not exit; log: {self.log}")
            await asyncio.sleep(0.05)
        return self.proc.returncode


async def test_chaos_kill_freeze_and_double_consumers(env: tuple[Settings, asyncpg.Pool]) -> None:
    settings, pool = env
    rnd = random.Random(SEED)
    traffic = waves(rnd)
    assert sum(len(r.records) for w in traffic for r in w) >= 200_000
    metrics_port = free_port()
    steady = Role(settings, "steady", VINR_METRICS_PORT=str(metrics_port))
    victim = Role(settings, "victim", VINR_AGGREGATOR_MAX_RECORDS="4")
    roles = [steady, victim]
    published = Published()

    async def produce() -> None:
        for wave in traffic:
            await publish(settings, wave, published)
            await asyncio.sleep(0.35)

    producer = asyncio.create_task(produce())
    kills = 0
    try:
        while not producer.done() or kills < 4:
            await asyncio.sleep(rnd.uniform(0.8, 1.8))  # the victim is up and working
            if kills == 1:
                victim.signal(signal.SIGSTOP)  # a zombie holding its batch
                await asyncio.sleep(1.0)
                victim.signal(signal.SIGCONT)
                await asyncio.sleep(rnd.uniform(0.2, 0.6))
            victim.signal(signal.SIGKILL)
            assert await victim.wait(10) == -signal.SIGKILL
            kills += 1
            victim = Role(settings, f"victim{kills}", VINR_AGGREGATOR_MAX_RECORDS="4")
            roles.append(victim)
        await producer
        await victim.ready()
        ends: dict[int, int] = {}
        for partition, offset, _ in published.entries:
            ends[partition] = max(ends.get(partition, 0), offset + 1)
        deadline = time.monotonic() + 30
        while True:
            stored = await stored_offsets(pool, settings)
            if all(stored.get(p, 0) >= end for p, end in ends.items()):
                break
            assert time.monotonic() < deadline, "the aggregators did not catch up"
            await asyncio.sleep(0.1)
        async with httpx.AsyncClient() as client:
            scrape = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    finally:
        producer.cancel()
        for role in (steady, victim):
            if role.proc.poll() is None:
                role.signal(signal.SIGTERM)
        codes = [await steady.wait(30), await victim.wait(30)]
    assert codes == [0, 0], f"logs: {steady.log} {victim.log}"
    got, truth = await windows(pool), published.truth()
    assert len(truth) > ITEMS
    wrong = {k: (got.get(k), v) for k, v in truth.items() if got.get(k) != v}
    assert not wrong, f"{len(wrong)} window(s) differ (seed {SEED}): {list(wrong.items())[:3]}"
    assert set(got) == set(truth)
    distinct = {m.id for _, _, m in published.entries}
    assert await pool.fetchval("SELECT count(*) FROM usage_ledger") == len(distinct)
    assert kills >= 4
    # the consumers really did collide: batches were refused (logged by every process,
    # counted in the metrics of the one that ran throughout)
    assert any(line.startswith("vinr_aggregator_fenced_total ") for line in scrape.splitlines())
    assert sum(role.output().count("fenced: stored offset") for role in roles) > 0
    for role in roles:
        os.unlink(role.log)

"""Graceful shutdown: SIGTERM a ``vinr aggregator`` mid-stream.

It must exit 0 after finishing the batch in hand, and what it stored must be exactly
consistent: the windows equal the ground truth of the messages below the stored offsets —
nothing beyond them folded, nothing below them missing. A restart then picks up from there.
"""

from __future__ import annotations

import ast
import asyncio
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from aggregator.worker import Aggregator
from domain.wire import UsageMessage
from infra.db import create_pool
from infra.devenv import isolated_settings
from infra.settings import Settings
from tests.support.aggregator import (
    CLI,
    PERIOD,
    message,
    publish,
    role_env,
    stored_offsets,
    windows,
)


@pytest.fixture
async def env(broker: str) -> AsyncIterator[tuple[Settings, asyncpg.Pool]]:
    async with isolated_settings(broker, label="aggterm") as settings:
        pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            yield settings, pool
        finally:
            await pool.close()


def wave(n: int) -> list[UsageMessage]:
    return [
        message(
            f"mbu_w{n}_{i}",
            10 + i % 8,
            [(PERIOD[0] + n * 10 + j % 7, j % 13, j % 97 == 0) for j in range(1000)],
        )
        for i in range(8)
    ]


def start_aggregator(settings: Settings) -> tuple[subprocess.Popen[bytes], str]:
    """``vinr aggregator`` in small batches, its output in a temporary file."""
    fd, log = tempfile.mkstemp(prefix="vinr-sigterm-", suffix=".log")
    try:
        proc = subprocess.Popen(
            [*CLI, "aggregator"],
            stdout=fd,
            stderr=subprocess.STDOUT,
            env=role_env(settings, VINR_AGGREGATOR_MAX_RECORDS="2"),
        )
    finally:
        os.close(fd)
    return proc, log


async def test_sigterm_mid_stream_commits_the_batch_in_hand_and_exits_0(
    env: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = env
    published = await publish(settings, wave(0))
    proc, log = start_aggregator(settings)

    def output() -> str:
        with open(log, encoding="utf-8") as f:
            return f.read()

    deadline = time.monotonic() + 20
    while "aggregator consuming" not in output():
        assert proc.poll() is None and time.monotonic() < deadline, output()
        await asyncio.sleep(0.05)
    n = 1
    while not any((await stored_offsets(pool, settings)).values()):
        await publish(settings, wave(n), published)
        n += 1
        assert time.monotonic() < deadline, output()
    for _ in range(3):  # keep it busy: the SIGTERM lands mid-stream
        await publish(settings, wave(n), published)
        n += 1
    proc.send_signal(signal.SIGTERM)
    stopping = asyncio.create_task(asyncio.to_thread(proc.wait, 30))
    while not stopping.done():
        await publish(settings, wave(n), published)
        n += 1
    assert await stopping == 0, output()
    text = output()
    assert "aggregator stopped; next offsets" in text and "Traceback" not in text, text

    stored = await stored_offsets(pool, settings)
    # what it says it committed last (its batch in flight included) is what Postgres holds
    said = text.split("aggregator stopped; next offsets ", 1)[1].split(" committed", 1)[0]
    assert ast.literal_eval(said) == stored
    ends: dict[int, int] = {}
    for partition, offset, _ in published.entries:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    assert any(stored.get(p, 0) < end for p, end in ends.items()), "it was not mid-stream"
    assert await windows(pool) == published.truth(below=stored)

    async with Aggregator(settings, pool=pool, retention_s=None) as agg:
        await agg.drain()
    assert await windows(pool) == published.truth()
    os.unlink(log)

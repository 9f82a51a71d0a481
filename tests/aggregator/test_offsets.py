"""A stored offset the log does not hold (a replaced dev broker starts again at 0).

The broker's own fetch answer (OFFSET_OUT_OF_RANGE) decides, not ``end_offsets``, which
is not the high watermark on every Kafka-protocol broker; the ledger keeps the restart from
counting anything twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from aggregator.store import PostgresWindowStore
from aggregator.worker import Aggregator
from infra.db import create_pool
from infra.devenv import isolated_settings
from infra.settings import Settings
from tests.support.aggregator import message, publish, stored_offsets, windows


@pytest.fixture
async def env(broker: str) -> AsyncIterator[tuple[Settings, asyncpg.Pool]]:
    async with isolated_settings(broker, label="offsets") as settings:
        pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            yield settings, pool
        finally:
            await pool.close()


async def test_a_stored_offset_past_the_log_end_restarts_at_the_log_start(
    env: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = env
    published = await publish(
        settings, [message(f"mbu_o{i}", i, [(1_700_000_000 + i, 2, False)]) for i in range(24)]
    )
    parts = sorted({p for p, _, _ in published.entries})
    store = PostgresWindowStore(pool, group=settings.consumer_group, topic=settings.usage_topic)
    await store.init_offsets({p: 0 for p in parts})
    for p in parts:
        assert await store.reset_offset(p, 1_000, expected=0)  # beyond what the log holds
    agg = Aggregator(settings, retention_s=None)
    await agg.start()
    try:
        ends: dict[int, int] = {}
        for p, offset, _ in published.entries:
            ends[p] = max(ends.get(p, 0), offset + 1)
        for _ in range(50):
            if await stored_offsets(pool, settings) == ends:
                break
            await agg.step(100)
    finally:
        await agg.stop()
    assert await stored_offsets(pool, settings) == ends
    assert await windows(pool) == published.truth()

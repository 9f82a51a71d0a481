"""Completeness: has the aggregator consumed everything the topic held at a given moment?

The invoicer takes the topic's end offsets *after* a period closed and waits until the
aggregator's stored offsets (in Postgres, written with the windows) have reached them; only
then are the period's windows complete.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from vinr.errors import DependencyUnavailable
from vinr.kafka import bootstrap
from vinr.settings import Settings
from vinr.telemetry import M

__all__ = ["Watermark", "caught_up", "lagging_partitions"]


def lagging_partitions(stored: dict[int, int], ends: dict[int, int]) -> dict[int, int]:
    """Partition → messages still to consume, for partitions not yet at ``ends``."""
    return {p: end - stored.get(p, 0) for p, end in ends.items() if stored.get(p, 0) < end}


async def caught_up(pool: asyncpg.Pool, group: str, topic: str, ends: dict[int, int]) -> bool:
    rows = await pool.fetch(
        "SELECT partition, next_offset FROM consumer_offsets"
        " WHERE consumer_group = $1 AND topic = $2", group, topic)
    return not lagging_partitions({r["partition"]: r["next_offset"] for r in rows}, ends)


class Watermark:
    """Reads the topic's end offsets; waits for the aggregator to reach them."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self._settings = settings
        self._pool = pool
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        servers = bootstrap(self._settings)
        try:
            self._producer = AIOKafkaProducer(bootstrap_servers=servers)
            await self._producer.start()
            self._consumer = AIOKafkaConsumer(bootstrap_servers=servers,
                                              enable_auto_commit=False)
            await self._consumer.start()
        except KafkaError as exc:
            await self.stop()
            raise DependencyUnavailable("kafka", str(exc)) from exc

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def __aenter__(self) -> Watermark:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def end_offsets(self) -> dict[int, int]:
        if self._producer is None or self._consumer is None:
            raise DependencyUnavailable("kafka", "watermark not started")
        topic = self._settings.usage_topic
        parts = sorted(await self._producer.partitions_for(topic))
        ends = await self._consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: off for tp, off in ends.items()}

    async def wait(self, ends: dict[int, int], timeout_s: float) -> bool:
        """True once stored offsets reach ``ends``; False after ``timeout_s``."""
        started = time.monotonic()
        s = self._settings
        try:
            while True:
                if await caught_up(self._pool, s.consumer_group, s.usage_topic, ends):
                    return True
                if time.monotonic() - started > timeout_s:
                    return False
                await asyncio.sleep(0.02)
        finally:
            M.watermark_wait.observe(time.monotonic() - started)

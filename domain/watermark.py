"""Completeness: has the aggregator consumed everything the topic held at a given moment?

The invoicer takes the topic's end offsets *after* a period closed and waits until the
aggregator's stored offsets (in Postgres, written in the same transaction as the windows)
have reached them; only then are the period's windows complete. ``progress`` answers the
same question per partition, for operators (``vinr watermark``) and dashboards.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from infra.errors import DependencyUnavailable
from infra.kafka import bootstrap
from infra.settings import Settings
from infra.telemetry import M

__all__ = ["PartitionProgress", "Watermark", "caught_up", "lagging_partitions", "progress"]


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    partition: int
    stored: int | None  # the aggregator's stored offset; None: never consumed
    end: int  # the topic's end offset when it was read

    @property
    def lag(self) -> int:
        return max(self.end - (self.stored or 0), 0)

    @property
    def caught_up(self) -> bool:
        return (self.stored or 0) >= self.end


def lagging_partitions(stored: dict[int, int], ends: dict[int, int]) -> dict[int, int]:
    """Partition → messages still to consume, for partitions not yet at ``ends``."""
    return {p: end - stored.get(p, 0) for p, end in ends.items() if stored.get(p, 0) < end}


async def _stored(
    db: asyncpg.Pool | asyncpg.Connection[Any], group: str, topic: str
) -> dict[int, int]:
    rows = await db.fetch(
        "SELECT partition, next_offset FROM consumer_offsets"
        " WHERE consumer_group = $1 AND topic = $2",
        group,
        topic,
    )
    return {r["partition"]: r["next_offset"] for r in rows}


async def progress(
    db: asyncpg.Pool | asyncpg.Connection[Any], group: str, topic: str, ends: dict[int, int]
) -> list[PartitionProgress]:
    """Per partition of ``ends``: stored offset, end offset, lag."""
    stored = await _stored(db, group, topic)
    return [PartitionProgress(p, stored.get(p), end) for p, end in sorted(ends.items())]


async def caught_up(
    db: asyncpg.Pool | asyncpg.Connection[Any], group: str, topic: str, ends: dict[int, int]
) -> bool:
    """True once every partition's stored offset has reached ``ends``."""
    return not lagging_partitions(await _stored(db, group, topic), ends)


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
            self._consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
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
        """The topic's end offsets now, per partition.

        Raises:
            DependencyUnavailable: not started, or Kafka does not answer.
        """
        if self._producer is None or self._consumer is None:
            raise DependencyUnavailable("kafka", "watermark not started")
        topic = self._settings.usage_topic
        try:
            parts = sorted(await self._producer.partitions_for(topic))
            ends = await self._consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        except KafkaError as exc:
            raise DependencyUnavailable("kafka", str(exc)) from exc
        return {tp.partition: off for tp, off in ends.items()}

    async def progress(self, ends: dict[int, int] | None = None) -> list[PartitionProgress]:
        """Per partition: the aggregator's stored offset against ``ends`` (default: now)."""
        s = self._settings
        if ends is None:
            ends = await self.end_offsets()
        return await progress(self._pool, s.consumer_group, s.usage_topic, ends)

    async def wait(self, ends: dict[int, int], timeout_s: float) -> bool:
        """True once stored offsets reach ``ends``; False after ``timeout_s``, counted by
        ``vinr_invoicer_watermark_missed_total`` (invoicing waits for the next pass)."""
        started = time.monotonic()
        s = self._settings
        try:
            while True:
                if await caught_up(self._pool, s.consumer_group, s.usage_topic, ends):
                    return True
                if time.monotonic() - started > timeout_s:
                    M.watermark_missed.inc()
                    return False
                await asyncio.sleep(0.02)
        finally:
            M.watermark_wait.observe(time.monotonic() - started)

"""Publishing accepted usage to Kafka, coalesced: one message per partition per batch call.

A single-record request is small (~150 bytes on the wire) and aiokafka's ``send`` costs more
than everything else the ingest does for it, so the single-record requests accepted during
one event-loop iteration (while at most ``max_concurrent`` earlier calls await their acks)
go out together: one ``vinr.wire`` message per partition holding them in arrival order.
The partition is the one the item's key maps to (the producer's own partitioner), so one
item's requests keep their order in one partition exactly as with one message each.
Batch requests, already large, are sent as one message each.

Each request learns its own outcome: a partition whose send failed fails only the requests
in its message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from ingest.idempotency import Coalescer
from vinr.wire import Entry, encode_entries

__all__ = ["UsagePublisher"]

Records = Sequence[tuple[int, int, bool]]
_Item = tuple[bytes, Entry]          # (item key, header entry) of a single-record request


class UsagePublisher:
    def __init__(self, producer: Callable[[], AIOKafkaProducer], topic: str, *,
                 max_batch: int = 500, max_concurrent: int = 4) -> None:
        self._producer = producer       # raises DependencyUnavailable when not connected
        self._topic = topic
        self._partitioner = DefaultPartitioner()
        self._cache: dict[bytes, int] = {}
        self._cached_for = 0
        self._singles: Coalescer[_Item, BaseException | None] = Coalescer(
            self._send_singles, max_batch=max_batch, max_concurrent=max_concurrent)

    async def publish(self, key: bytes, entry: Entry, records: Records | None) -> None:
        """Until the broker acknowledged the request's message.

        Raises:
            KafkaError: the send failed; DependencyUnavailable: no producer.
        """
        if records is None:
            error = await self._singles.submit((key, entry))
            if error is not None:
                raise error
            return
        delivered = await self._producer().send(
            self._topic, encode_entries([entry], [records]), key=key)
        await delivered

    async def _send_singles(self, items: list[_Item]) -> list[BaseException | None]:
        producer = self._producer()
        groups: dict[int | None, list[int]] = {}
        for index, (key, _) in enumerate(items):
            groups.setdefault(self._partition_of(producer, key), []).append(index)
        sends: list[tuple[list[int], Any]] = []
        for partition, indexes in groups.items():
            if partition is None:          # no metadata yet: one message each, by key
                for i in indexes:
                    sends.append(([i], await producer.send(
                        self._topic, encode_entries([items[i][1]], [None]), key=items[i][0])))
                continue
            value = encode_entries([items[i][1] for i in indexes], [None] * len(indexes))
            sends.append((indexes, await producer.send(
                self._topic, value, key=items[indexes[0]][0], partition=partition)))
        results: list[BaseException | None] = [None] * len(items)
        outcomes = await asyncio.gather(*(f for _, f in sends), return_exceptions=True)
        for (indexes, _), outcome in zip(sends, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                for i in indexes:
                    results[i] = outcome
        return results

    def _partition_of(self, producer: AIOKafkaProducer, key: bytes) -> int | None:
        """The partition ``send(key=key)`` would choose (aiokafka's default partitioner)."""
        every = producer.client.cluster.partitions_for_topic(self._topic)
        if not every:
            return None
        if len(every) != self._cached_for or len(self._cache) > 100_000:
            self._cache.clear()
            self._cached_for = len(every)
        partition = self._cache.get(key)
        if partition is None:      # murmur2 in pure Python: once per item, not per request
            partition = self._cache[key] = self._partitioner(key, sorted(every), [])
        return partition

"""Publishing accepted usage to Kafka, coalesced: one message per partition per batch call.

A single-record request is small (~150 bytes on the wire) and aiokafka's ``send`` costs more
than everything else the ingest does for it, so the single-record requests accepted during
one event-loop iteration (while at most ``max_concurrent`` earlier calls await their acks)
go out together: one ``domain.wire`` message per partition holding them in arrival order.
The partition is the one the item's key maps to (the producer's own partitioner), so one
item's requests keep their order in one partition exactly as with one message each.
Batch requests, already large, are sent as one message each.

Each request learns its own outcome: a partition whose send failed fails only the requests
in its message.

**Deadline.** Every request is answered within ``timeout_s`` of calling ``publish``: acked,
failed, or ``TimeoutError`` (the message may still land later; the retry with the same key
carries the same id, which the ledger drops). The invoicer's settle time relies on this
bound. A single-record request's deadline travels with it through the coalescer and its
message waits until the earliest deadline among the requests it carries: one timer per
message, not one per request (a timer costs more than the rest of a request's publish).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from domain.wire import Entry, encode_entries
from infra.coalescer import Coalescer

__all__ = ["UsagePublisher"]

Records = Sequence[tuple[int, int, bool]]
_Item = tuple[bytes, Entry, float]  # a single record: (item key, entry, monotonic deadline)


class UsagePublisher:
    def __init__(
        self,
        producer: Callable[[], AIOKafkaProducer],
        topic: str,
        *,
        timeout_s: float,
        max_batch: int = 500,
        max_concurrent: int = 4,
    ) -> None:
        self._producer = producer  # raises DependencyUnavailable when not connected
        self._topic = topic
        self._timeout_s = timeout_s
        self._partitioner = DefaultPartitioner()
        self._cache: dict[bytes, int] = {}
        self._cached_for = 0
        self._singles: Coalescer[_Item, BaseException | None] = Coalescer(
            self._send_singles, max_batch=max_batch, max_concurrent=max_concurrent
        )

    async def publish(self, key: bytes, entry: Entry, records: Records | None) -> None:
        """Until the broker acknowledged the request's message, at most ``timeout_s``.

        Raises:
            KafkaError: the send failed; TimeoutError: no ack within ``timeout_s``;
            DependencyUnavailable: no producer.
        """
        if records is None:
            deadline = time.monotonic() + self._timeout_s
            error = await self._singles.enqueue((key, entry, deadline))
            if error is not None:
                raise error
            return
        async with asyncio.timeout(self._timeout_s):
            delivered = await self._producer().send(
                self._topic, encode_entries([entry], [records]), key=key
            )
            await delivered

    async def publish_messages(self, messages: Sequence[tuple[bytes, bytes]]) -> None:
        """Send ``(key, value)`` messages together; until the broker acknowledged every one,
        at most ``timeout_s`` (meter events: one message per partition key).

        Raises:
            KafkaError: a send failed; TimeoutError: not every ack within ``timeout_s``;
            DependencyUnavailable: no producer.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        async with asyncio.timeout_at(deadline):
            producer = self._producer()
            deliveries = [
                await producer.send(self._topic, value, key=key) for key, value in messages
            ]
        # asyncio.wait, not a timeout around gather: past the deadline the delivery futures
        # stay the producer's to settle (it may still deliver).
        _, pending = await asyncio.wait(deliveries, timeout=max(0.0, deadline - loop.time()))
        if pending:
            raise TimeoutError(f"no ack from Kafka within {self._timeout_s} s")
        for delivery in deliveries:
            if delivery.cancelled():
                raise KafkaError("the producer cancelled the send")
            error = delivery.exception()
            if error is not None:
                raise error

    async def _send_singles(self, items: list[_Item]) -> list[BaseException | None]:
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        results: list[BaseException | None] = [None] * len(items)
        live = [i for i, item in enumerate(items) if item[2] > now]
        if len(live) < len(items):  # queued past their deadline (sends were stuck)
            late = TimeoutError(f"no ack from Kafka within {self._timeout_s} s")
            for i in set(range(len(items))).difference(live):
                results[i] = late
            if not live:
                return results
        deadline = min(items[i][2] for i in live) - now + loop.time()  # on the loop's clock
        sends: list[tuple[list[int], asyncio.Future[Any]]] = []
        try:
            async with asyncio.timeout_at(deadline):
                producer = self._producer()
                groups: dict[int | None, list[int]] = {}
                for index in live:
                    groups.setdefault(self._partition_of(producer, items[index][0]), []).append(
                        index
                    )
                for partition, indexes in groups.items():
                    if partition is None:  # no metadata yet: one message each, by key
                        for i in indexes:
                            sends.append(
                                (
                                    [i],
                                    await producer.send(
                                        self._topic,
                                        encode_entries([items[i][1]], [None]),
                                        key=items[i][0],
                                    ),
                                )
                            )
                        continue
                    value = encode_entries([items[i][1] for i in indexes], [None] * len(indexes))
                    sends.append(
                        (
                            indexes,
                            await producer.send(
                                self._topic, value, key=items[indexes[0]][0], partition=partition
                            ),
                        )
                    )
        except TimeoutError as exc:  # the send queue stayed full (a broker outage)
            sent = {i for indexes, _ in sends for i in indexes}
            for i in live:
                if i not in sent:
                    results[i] = exc
        if sends:
            # asyncio.wait, not a timeout around gather: when the deadline passes the
            # delivery futures stay the producer's to settle (it may still deliver).
            await asyncio.wait([f for _, f in sends], timeout=max(0.0, deadline - loop.time()))
        for indexes, delivery in sends:
            outcome: BaseException | None
            if not delivery.done():
                outcome = TimeoutError(f"no ack from Kafka within {self._timeout_s} s")
            elif delivery.cancelled():
                outcome = KafkaError("the producer cancelled the send")
            else:
                outcome = delivery.exception()
            if outcome is not None:
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
        if partition is None:  # murmur2 in pure Python: once per item, not per request
            partition = self._cache[key] = self._partitioner(key, sorted(every), [])
        return partition

"""The aggregator role: consume usage messages, fold them into windows, exactly once.

The loop reads like aiokafka's examples: ``getmany``, one Postgres transaction, then the
offsets — which live in that same transaction, not in Kafka. Partitions are assigned
manually (all of them by default, or ``partitions=[…]``); correctness never depends on
consumer-group membership, because a batch is applied only from the stored offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from aggregator.store import PartitionBatch, PostgresWindowStore
from vinr.db import create_pool
from vinr.errors import DependencyUnavailable
from vinr.kafka import bootstrap
from vinr.settings import Settings
from vinr.telemetry import M
from vinr.wire import UsageMessage, decode_usage

__all__ = ["Aggregator"]

log = logging.getLogger(__name__)

_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


class Aggregator:
    def __init__(self, settings: Settings, *, partitions: list[int] | None = None,
                 pool: asyncpg.Pool | None = None) -> None:
        self._settings = settings
        self._wanted = partitions
        self._pool = pool
        self._own_pool = pool is None
        self._consumer: AIOKafkaConsumer | None = None
        self._store: PostgresWindowStore | None = None
        self._tps: list[TopicPartition] = []
        self._stopping = asyncio.Event()
        self.records = 0

    async def start(self) -> None:
        s = self._settings
        if self._pool is None:
            self._pool = await create_pool(s, min_size=1, max_size=4)
        self._store = PostgresWindowStore(self._pool, group=s.consumer_group,
                                          topic=s.usage_topic)
        servers = bootstrap(s)
        try:
            meta = AIOKafkaProducer(bootstrap_servers=servers)
            await meta.start()
            try:
                parts = sorted(await meta.partitions_for(s.usage_topic))
            finally:
                await meta.stop()
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=servers, enable_auto_commit=False, auto_offset_reset="earliest",
                max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
            await self._consumer.start()
        except KafkaError as exc:
            await self.stop()
            raise DependencyUnavailable("kafka", str(exc)) from exc
        if self._wanted is not None:
            parts = [p for p in parts if p in self._wanted]
        self._tps = [TopicPartition(s.usage_topic, p) for p in parts]
        self._consumer.assign(self._tps)
        await self._seek_to_stored()
        log.info("aggregator consuming %s partitions %s", s.usage_topic, parts)

    async def _seek_to_stored(self) -> None:
        consumer, store = self._require()
        begins = await consumer.beginning_offsets(self._tps)
        ends = await consumer.end_offsets(self._tps)
        await store.init_offsets({tp.partition: begins[tp] for tp in self._tps})
        stored = await store.stored_offsets([tp.partition for tp in self._tps])
        for tp in self._tps:
            offset = stored[tp.partition]
            if offset > ends[tp] or offset < begins[tp]:
                # The log no longer holds this offset (a replaced dev broker, or retention
                # passed it). Re-reading from the beginning loses nothing: the ledger
                # drops what was already applied.
                log.error("stored offset %d for partition %d is outside the log [%d, %d];"
                          " restarting from %d", offset, tp.partition, begins[tp], ends[tp],
                          begins[tp])
                offset = begins[tp]
                await store.reset_offset(tp.partition, offset)
            consumer.seek(tp, offset)

    def _require(self) -> tuple[AIOKafkaConsumer, PostgresWindowStore]:
        if self._consumer is None or self._store is None:
            raise RuntimeError("aggregator not started")
        return self._consumer, self._store

    async def stop(self) -> None:
        """Idempotent; the batch in hand was already committed by ``step``."""
        self._stopping.set()
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
        if self._pool is not None and self._own_pool:
            pool, self._pool = self._pool, None
            await pool.close()

    async def __aenter__(self) -> Aggregator:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Until ``request_stop``: the batch in flight is finished and committed first."""
        while not self._stopping.is_set():
            await self.step(self._settings.aggregator_poll_ms)

    async def step(self, timeout_ms: int) -> int:
        """Fetch one batch and apply it; the number of records folded."""
        consumer, store = self._require()
        fetched = await consumer.getmany(timeout_ms=timeout_ms,
                                         max_records=self._settings.aggregator_max_records)
        if not fetched:
            return 0
        batches: list[PartitionBatch] = []
        for tp, msgs in fetched.items():
            if not msgs:
                continue
            decoded: list[UsageMessage] = []
            for msg in msgs:
                try:
                    decoded.append(decode_usage(msg.value))
                except (ValueError, KeyError, TypeError):
                    log.error("undecodable message at %s:%d skipped", tp, msg.offset)
                    M.aggregator_dead_letters.labels("undecodable").inc()
            batches.append(PartitionBatch(tp.partition, msgs[0].offset, msgs[-1].offset + 1,
                                          decoded))
        started = time.perf_counter()
        for attempt in range(5):
            try:
                result = await store.apply_batch(batches)
                break
            except _RETRYABLE:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        M.aggregator_batch_seconds.observe(time.perf_counter() - started)
        for partition, offset in result.fenced.items():
            M.aggregator_fenced.inc()
            log.warning("partition %d fenced: stored offset is %d; seeking there",
                        partition, offset)
            if offset >= 0:
                consumer.seek(TopicPartition(self._settings.usage_topic, partition), offset)
        M.aggregator_records.inc(result.records)
        M.aggregator_duplicates.inc(result.duplicates)
        if result.dead_letters:
            M.aggregator_dead_letters.labels("period_invoiced").inc(result.dead_letters)
        self.records += result.records
        for tp in self._tps:
            with contextlib.suppress(Exception):
                lag = consumer.highwater(tp)
                position = await consumer.position(tp)
                if lag is not None:
                    M.aggregator_lag.labels(str(tp.partition)).set(lag - position)
        return result.records

    async def drain(self, idle_ms: int = 100) -> int:
        """Run-once mode: apply batches until a fetch comes back empty."""
        total = 0
        while True:
            folded = await self.step(idle_ms)
            total += folded
            if folded == 0 and not await self._has_more():
                return total

    async def _has_more(self) -> bool:
        consumer, _ = self._require()
        ends = await consumer.end_offsets(self._tps)
        for tp in self._tps:
            if await consumer.position(tp) < ends[tp]:
                return True
        return False

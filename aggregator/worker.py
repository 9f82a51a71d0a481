"""The aggregator role: consume usage messages, fold them into windows, exactly once.

The loop reads like aiokafka's examples — ``getmany``, one Postgres transaction, then the
offsets, which live in that same transaction, not in Kafka — with one twist for speed:
while batch N's transaction runs in Postgres, batch N+1 is fetched, decoded and
pre-aggregated here (two cores busy instead of one). Batches still commit strictly one
after another, each from the offset the previous one stored.

Partitions are assigned manually (all of them by default, or ``partitions=[…]``), or by
Kafka group membership (``group=True``). Either way the consumer seeks to the offsets
stored in Postgres on start and on every assignment, and correctness never depends on
membership: a batch is applied only from the stored offset, so a zombie or a second
aggregator on the same partitions is fenced (it seeks to the stored offset and goes on).

Run-once mode for tests and tools: ``drain()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, NoOffsetForPartitionError, OffsetOutOfRangeError

from aggregator.batch import BatchBuilder, PreparedBatch
from aggregator.retention import purge_closed_windows
from aggregator.store import BatchResult, PostgresWindowStore
from infra.db import create_pool
from infra.errors import DependencyUnavailable
from infra.kafka import bootstrap
from infra.lifecycle import Service
from infra.settings import Settings
from infra.telemetry import M

__all__ = ["Aggregator"]

log = logging.getLogger(__name__)

_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
# One fetch brings at most this much per partition (~50k records of batch messages), which
# bounds a transaction; a single larger message still comes whole (Kafka KIP-74).
_PARTITION_FETCH_BYTES = 1024 * 1024
_FETCH_BYTES = 16 * 1024 * 1024
_RETRY_S = 1.0
_RETENTION_S = 300.0
# Prepare a batch in slices of about this many message bytes, yielding to the event loop
# between slices so the previous batch's transaction keeps moving (one statement per slice).
_SLICE_BYTES = 64 * 1024
# ... or of this many messages (small requests decode at ~10 µs each).
_SLICE_MESSAGES = 256
# A batch takes what the consumer has fetched, up to about this many message bytes.
_BATCH_BYTES = 2 * 1024 * 1024


class _SeekOnAssign(ConsumerRebalanceListener):  # type: ignore[misc]
    """Group mode's hand-over. The group waits for ``on_partitions_revoked`` before it
    assigns the partitions elsewhere, so the batch in flight commits (or fails) while this
    member still owns them, and a batch prepared but not yet submitted loses the revoked
    partitions before it is submitted (``Aggregator._owned``). A member that missed the
    hand-over (frozen, or its session expired) is still fenced by the stored offsets."""

    def __init__(self, aggregator: Aggregator) -> None:
        self._aggregator = aggregator

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self._aggregator.quiesce()
        self._aggregator.forget(revoked)
        log.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        await self._aggregator.seek_to_stored(list(assigned))
        for tp in assigned:
            M.aggregator_assigned.labels(str(tp.partition)).set(1)
        log.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))


class Aggregator(Service):
    """Consumes the usage topic into Postgres windows; see the module docstring.

    Args:
        settings: the deployment's settings.
        partitions: the partitions to own (default: all); ignored with ``group=True``.
        pool: an existing pool (else one is created and closed with the aggregator).
        group: use Kafka consumer-group membership instead of manual assignment.
        retention_s: how often ``run`` purges closed windows' points and ledger rows
            (None: never; ``vinr retention`` does the same on demand).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        partitions: list[int] | None = None,
        pool: asyncpg.Pool | None = None,
        group: bool = False,
        retention_s: float | None = _RETENTION_S,
    ) -> None:
        super().__init__()
        self._settings = settings
        self._wanted = partitions
        self._group = group
        self._retention_s = retention_s
        self._pool = pool
        self._own_pool = pool is None
        self._consumer: AIOKafkaConsumer | None = None
        self._store: PostgresWindowStore | None = None
        self._positions: dict[int, int] = {}  # partition → where its next batch starts
        self._in_flight: asyncio.Task[BatchResult] | None = None
        self.records = 0
        self.meter_events = 0  # meter events counted into buckets
        self.committed: dict[int, int] = {}  # partition → offset its last commit stored

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        s = self._settings
        if self._pool is None:
            self._pool = await create_pool(s, min_size=1, max_size=4)
        self._store = PostgresWindowStore(self._pool, group=s.consumer_group, topic=s.usage_topic)
        servers = bootstrap(s)
        try:
            meta = AIOKafkaProducer(bootstrap_servers=servers)
            await meta.start()
            try:
                parts = sorted(await meta.partitions_for(s.usage_topic))
            finally:
                await meta.stop()
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=servers,
                enable_auto_commit=False,
                # Never a silent jump: a position the log lacks is reported (see _fetch).
                auto_offset_reset="none",
                group_id=s.consumer_group if self._group else None,
                session_timeout_ms=s.aggregator_session_timeout_ms,
                heartbeat_interval_ms=s.aggregator_session_timeout_ms // 3,
                max_partition_fetch_bytes=_PARTITION_FETCH_BYTES,
                fetch_max_bytes=_FETCH_BYTES,
                # How long the broker may hold a fetch that finds nothing new: the delay a
                # record arriving just after such a fetch waits (aiokafka's default is 500 ms).
                fetch_max_wait_ms=s.aggregator_fetch_wait_ms,
            )
            await self._consumer.start()
        except KafkaError as exc:
            await self.stop()
            raise DependencyUnavailable("kafka", str(exc)) from exc
        if self._group:
            self._consumer.subscribe([s.usage_topic], listener=_SeekOnAssign(self))
            log.info(
                "aggregator consuming %s as a member of group %s", s.usage_topic, s.consumer_group
            )
            return
        if self._wanted is not None:
            parts = [p for p in parts if p in self._wanted]
        tps = [TopicPartition(s.usage_topic, p) for p in parts]
        self._consumer.assign(tps)
        await self.seek_to_stored(tps)
        for tp in tps:
            M.aggregator_assigned.labels(str(tp.partition)).set(1)
        log.info("aggregator consuming %s partitions %s", s.usage_topic, parts)

    async def stop(self) -> None:
        """Idempotent. A batch in flight is finished (committed or rolled back) first."""
        self._stopping.set()
        with contextlib.suppress(Exception):
            await self.quiesce()
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
        if self._store is not None:
            await self._store.close()
        if self._pool is not None and self._own_pool:
            pool, self._pool = self._pool, None
            await pool.close()

    def _require(self) -> tuple[AIOKafkaConsumer, PostgresWindowStore]:
        if self._consumer is None or self._store is None:
            raise RuntimeError("aggregator not started")
        return self._consumer, self._store

    # -- positions ---------------------------------------------------------------------

    async def seek_to_stored(self, tps: list[TopicPartition]) -> None:
        """Seek each partition to its offset stored in Postgres (created at the log start
        the first time); a stored offset below the log start (retention passed unconsumed
        messages) restarts there.

        A stored offset past the log end is not judged here: ``end_offsets`` is not the
        high watermark on every Kafka-protocol broker (tansu answers the last batch's base
        offset + 1), so only the broker's own OFFSET_OUT_OF_RANGE on fetch says the log
        lacks it (``_out_of_range``)."""
        consumer, store = self._require()
        if not tps:
            return
        begins = await consumer.beginning_offsets(tps)
        await store.init_offsets({tp.partition: begins[tp] for tp in tps})
        stored = await store.stored_offsets([tp.partition for tp in tps])
        for tp in tps:
            offset = stored[tp.partition]
            if offset < begins[tp]:
                offset = await self._restart(tp, offset, begins[tp])
            self._positions[tp.partition] = offset
            consumer.seek(tp, offset)

    async def _restart(self, tp: TopicPartition, offset: int, begin: int) -> int:
        """Move a stored offset the log does not hold to the log start; where to read."""
        _, store = self._require()
        # A replaced dev broker (offsets start again at 0), or retention passed unconsumed
        # messages. The ledger drops anything already applied.
        log.error(
            "stored offset %d for partition %d is outside the log (it starts at %d);"
            " restarting from %d",
            offset,
            tp.partition,
            begin,
            begin,
        )
        if await store.reset_offset(tp.partition, begin, expected=offset):
            return begin
        return (await store.stored_offsets([tp.partition]))[tp.partition]

    async def _out_of_range(self, exc: OffsetOutOfRangeError) -> None:
        consumer, _ = self._require()
        offsets: dict[TopicPartition, int] = exc.args[0] if exc.args else {}
        owned = [tp for tp in offsets if tp.partition in self._positions]
        if not owned:
            return
        begins = await consumer.beginning_offsets(owned)
        for tp in owned:
            offset = await self._restart(tp, offsets[tp], begins[tp])
            self._positions[tp.partition] = offset
            consumer.seek(tp, offset)

    def assignment(self) -> set[TopicPartition]:
        """The partitions the consumer holds now (group mode: this member's share)."""
        consumer, _ = self._require()
        return set(consumer.assignment())

    def forget(self, tps: Collection[TopicPartition]) -> None:
        """Stop owning these partitions: nothing more is prepared or submitted for them."""
        for tp in tps:
            self._positions.pop(tp.partition, None)
            M.aggregator_assigned.labels(str(tp.partition)).set(0)
            with contextlib.suppress(KeyError):
                M.aggregator_lag.remove(str(tp.partition))

    def _owned(self, batch: PreparedBatch) -> PreparedBatch | None:
        """The batch minus partitions revoked since it was fetched."""
        return self._without(batch, [p for p in batch.ranges if p not in self._positions])

    async def quiesce(self) -> None:
        """Wait for the batch in flight (if any) to commit or fail."""
        task = self._in_flight
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    async def _resync(self) -> None:
        """After a failed transaction (its outcome unknown): seek to what Postgres holds."""
        consumer, _ = self._require()
        await self.seek_to_stored(list(consumer.assignment()))

    # -- batches -----------------------------------------------------------------------

    async def _fetch(self, timeout_ms: int) -> PreparedBatch | None:
        consumer, _ = self._require()
        limit = self._settings.aggregator_max_records
        try:
            fetched = await consumer.getmany(timeout_ms=timeout_ms, max_records=limit)
        except OffsetOutOfRangeError as exc:
            await self._out_of_range(exc)
            return None
        except NoOffsetForPartitionError:  # just assigned: the listener's seek is under way
            await asyncio.sleep(timeout_ms / 1000)
            return None
        builder = BatchBuilder(self._positions)
        found = False
        total = count = 0
        while fetched:
            for tp in sorted(fetched):
                msgs = fetched[tp]
                if not msgs or tp.partition not in self._positions:
                    continue
                found = True
                count += len(msgs)
                lo = size = 0
                for i, msg in enumerate(msgs):
                    size += len(msg.value)
                    if size >= _SLICE_BYTES or i + 1 - lo >= _SLICE_MESSAGES:
                        builder.add(tp.partition, msgs[lo : i + 1])
                        total, lo, size = total + size, i + 1, 0
                        await asyncio.sleep(0)
                builder.add(tp.partition, msgs[lo:])
                total += size
            # Whatever else is already fetched joins this batch, up to a bound.
            if total >= _BATCH_BYTES or count >= limit:
                break
            try:
                fetched = await consumer.getmany(timeout_ms=0, max_records=limit - count)
            except (OffsetOutOfRangeError, NoOffsetForPartitionError):  # the next fetch's
                break
        if not found:
            return None
        built = self._owned(builder.build())  # a revocation may come while it is prepared
        if built is None:
            return None
        batch = built
        for partition, span in batch.ranges.items():
            self._positions[partition] = span.next
        if batch.undecodable:
            M.aggregator_dead_letters.labels("undecodable").inc(batch.undecodable)
        return batch

    async def _apply(self, batch: PreparedBatch) -> BatchResult:
        _, store = self._require()
        started = time.perf_counter()
        for attempt in range(5):
            try:
                result = await store.apply_batch(batch)
                break
            except _RETRYABLE:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        M.aggregator_batch_seconds.observe(time.perf_counter() - started)
        self.committed.update(result.committed)
        return result

    def _account(self, result: BatchResult) -> None:
        """Metrics, and a seek back for each partition another consumer got to first."""
        consumer, _ = self._require()
        topic = self._settings.usage_topic
        for partition, offset in result.fenced.items():
            M.aggregator_fenced.inc()
            log.warning(
                "partition %d fenced: stored offset is %d; seeking there", partition, offset
            )
            if offset >= 0 and partition in self._positions:
                self._positions[partition] = offset
                consumer.seek(TopicPartition(topic, partition), offset)
        M.aggregator_records.inc(result.records)
        M.aggregator_duplicates.inc(result.duplicates)
        for reason, count in result.dead_letters.items():
            M.aggregator_dead_letters.labels(reason).inc(count)
        if result.meter_events:
            M.aggregator_meter_events.labels("counted").inc(result.meter_events)
        if result.meter_duplicates:
            M.aggregator_meter_events.labels("duplicate").inc(result.meter_duplicates)
        if result.tombstones_filled:
            M.aggregator_meter_events.labels("after_cancel").inc(result.tombstones_filled)
        for reason, count in result.meter_rejected.items():
            M.aggregator_meter_events.labels(reason).inc(count)
        if result.alerts_fired:
            M.aggregator_alerts_fired.inc(result.alerts_fired)
        self.records += result.records
        self.meter_events += result.meter_events
        self._update_lag(result.committed)

    def _update_lag(self, offsets: dict[int, int]) -> None:
        """Messages between ``offsets`` (committed) and each partition's high watermark."""
        consumer, _ = self._require()
        topic = self._settings.usage_topic
        for partition, offset in offsets.items():
            if partition not in self._positions:  # revoked meanwhile: another member's now
                continue
            high = consumer.highwater(TopicPartition(topic, partition))
            if high is not None:
                M.aggregator_lag.labels(str(partition)).set(max(high - offset, 0))

    @staticmethod
    def _without(batch: PreparedBatch, partitions: Collection[int]) -> PreparedBatch | None:
        """The batch minus partitions that were just fenced (they restart elsewhere)."""
        return batch.only([p for p in batch.ranges if p not in partitions])

    async def step(self, timeout_ms: int) -> int:
        """Fetch one batch and apply it (no pipelining); the number of records folded."""
        batch = await self._fetch(timeout_ms)
        if batch is None:
            return 0
        try:
            result = await self._apply(batch)
        except Exception:
            await self._resync()
            raise
        self._account(result)
        return result.records

    async def run(self) -> None:
        """Until ``request_stop``: the batch in flight is finished and committed first.

        Pipelined: the next batch is fetched and prepared while the previous one's
        transaction runs. A batch prepared but not yet submitted when the stop comes is
        dropped — it was never applied, and the next start reads it again from the stored
        offsets.
        """
        retention = (
            asyncio.create_task(self._retention_loop()) if self._retention_s is not None else None
        )
        try:
            while not self._stopping.is_set():
                try:
                    await self._pipeline()
                except (
                    OSError,
                    TimeoutError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                    KafkaError,
                    DependencyUnavailable,
                ) as exc:
                    log.error("aggregator batch failed: %s; resyncing in %.0fs", exc, _RETRY_S)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), _RETRY_S)
                    if not self._stopping.is_set():
                        with contextlib.suppress(Exception):
                            await self._resync()
        finally:
            if retention is not None:
                retention.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await retention
        log.info(
            "aggregator stopped; next offsets %s committed", dict(sorted(self._positions.items()))
        )

    async def _pipeline(self) -> None:
        poll_ms = self._settings.aggregator_poll_ms
        try:
            while not self._stopping.is_set():
                batch = await self._fetch(poll_ms)
                if self._in_flight is not None:
                    task, self._in_flight = self._in_flight, None
                    result = await task
                    self._account(result)
                    if batch is not None and result.fenced:
                        batch = self._without(batch, result.fenced)
                if batch is None:  # idle: positions are what is stored
                    self._update_lag(self._positions)
                    continue
                if self._stopping.is_set():  # dropped: never applied, read again later
                    for partition, span in batch.ranges.items():
                        if partition in self._positions:
                            self._positions[partition] = span.start
                    continue
                # Revoked while the previous batch committed: never submitted for them.
                owned = self._owned(batch)
                if owned is not None:
                    self._in_flight = asyncio.create_task(self._apply(owned))
        finally:
            if self._in_flight is not None:
                task, self._in_flight = self._in_flight, None
                try:
                    self._account(await task)
                except asyncio.CancelledError:
                    task.cancel()
                    raise

    async def drain(self, idle_ms: int = 100) -> int:
        """Run-once mode: apply batches until every partition reached the end offsets the
        topic had when ``drain`` was called."""
        consumer, _ = self._require()
        total = 0
        deadline = time.monotonic() + 30
        while self._group and (
            not consumer.assignment()
            or any(tp.partition not in self._positions for tp in consumer.assignment())
        ):
            if time.monotonic() > deadline:
                raise DependencyUnavailable("kafka", "no partitions assigned to this member")
            total += await self.step(idle_ms)
        tps = list(consumer.assignment())
        ends = await consumer.end_offsets(tps)
        while any(self._positions.get(tp.partition, 0) < ends[tp] for tp in tps):
            total += await self.step(idle_ms)
        return total

    async def _retention_loop(self) -> None:
        if self._pool is None or self._retention_s is None:
            return
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._retention_s)
            if self._stopping.is_set():
                return
            try:
                await purge_closed_windows(
                    self._pool, ledger_ttl_s=self._settings.idempotency_ttl_s
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.error("retention pass failed: %s", exc)

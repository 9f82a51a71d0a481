"""Aggregator stage: Kafka usage topic → Postgres windows, against a bare consume loop.

Two workloads, each on a fresh topic, preloaded exactly as the ingest publishes
(``domain.wire``; ``ingest.publisher``): a batch request is a message of its own, keyed by
its item; single-record requests share messages per partition, ``COALESCED`` at a time (what
the ingest's publisher packs at ~18k requests/s), in arrival order. Both have some requests
published twice (client retries that slipped past Redis, sent again later), gauge-like
items reporting with ``set``, and records out of timestamp order.

- **mixed**: the traffic of one ingest node at its targets — 10,000 single-record
  requests/s beside 250,000 records/s in 1000-record batches (4% of records, 97% of
  requests, are single);
- **batch requests only**: 1000-record batches.

In alternating rounds over the same topic:

(a) the ceiling: a bare aiokafka loop — ``getmany`` and each message's header decoded;
(b) the aggregator: ``Aggregator.run`` from stored offsets at the log start until the stored
    offsets reach the log end (everything committed to Postgres), on fresh tables.

Every round's windows are checked against a ground truth folded independently in memory.
The dev broker keeps at most 5 MB per partition, which bounds N (~600k records).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from aggregator.worker import Aggregator
from bench.common import Figure, aggregator_gc, catch_up
from domain.fold import fold_map
from domain.watermark import caught_up
from domain.wire import Entry, encode_entries, item_key, usage_entry
from infra import progress
from infra.db import create_pool
from infra.devenv import isolated_settings
from infra.settings import Settings

STAGE = "aggregator"
ROUNDS = 3
ITEMS = 1000
BATCH = 1000
COALESCED = 25  # single-record requests per message (measured: ingest publisher)
DUPLICATE_SHARE = 0.02  # of requests, published a second time later
GAUGE_SHARE = 0.1  # of items, reporting with `set`
LATE_SHARE = 0.2  # of single records, up to 2 minutes behind the clock
BASE = 1_700_000_000
PERIOD = (BASE - 3_600, BASE + 30 * 86_400)


@dataclass(frozen=True)
class Mix:
    label: str
    records: int
    single_share: float  # of records, in single-record requests


MIXES = (Mix("mixed", 500_000, 10_000 / 260_000), Mix("batch requests only", 600_000, 0.0))


@dataclass
class Workload:
    messages: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # partition, key, value
    truth: dict[tuple[int, int], list[tuple[int, int, bool]]] = field(default_factory=dict)
    records: int = 0  # distinct records (first copies)
    requests: int = 0  # distinct requests
    published: int = 0  # records on the topic, copies included (what the loop reads)


class _Packer:
    """Messages as the ingest's publisher makes them: batches alone, single-record requests
    together per partition; a partition's pending singles go out before its next batch."""

    def __init__(self, w: Workload, partitions: list[int]) -> None:
        self._w = w
        self._partitions = partitions
        self._partitioner = DefaultPartitioner()
        self._pending: dict[int, list[Entry]] = {}

    def add(self, item: int, entry: Entry, records: Sequence[tuple[int, int, bool]] | None) -> None:
        key = item_key(item)
        partition: int = self._partitioner(key, self._partitions, self._partitions)
        self._w.published += entry[7]
        if records is None:
            pending = self._pending.setdefault(partition, [])
            pending.append(entry)
            if len(pending) == COALESCED:
                self._flush(partition)
            return
        self._flush(partition)
        self._w.messages.append((partition, key, encode_entries([entry], [records])))

    def finish(self) -> None:
        for partition in list(self._pending):
            self._flush(partition)

    def _flush(self, partition: int) -> None:
        """One message of the partition's pending singles, keyed by the first one's item
        (as the publisher keys it)."""
        pending = self._pending.pop(partition, [])
        if pending:
            self._w.messages.append(
                (partition, item_key(pending[0][3]), encode_entries(pending, [None] * len(pending)))
            )


def build_workload(mix: Mix, partitions: list[int], seed: int = 4) -> Workload:
    """Messages in publish order, and each window's records in arrival order (first copy
    of a request only: the ledger drops the second)."""
    rnd = random.Random(seed)
    w = Workload()
    packer = _Packer(w, partitions)
    gauges = set(rnd.sample(range(ITEMS), int(ITEMS * GAUGE_SHARE)))
    single_odds = mix.single_share * BATCH / (mix.single_share * BATCH + 1 - mix.single_share)
    clock = BASE
    n = 0
    replays: list[tuple[int, Entry, Sequence[tuple[int, int, bool]] | None]] = []
    while w.records < mix.records:
        item = rnd.randrange(ITEMS)
        is_set = item in gauges
        if rnd.random() < single_odds:
            ts = clock - rnd.randrange(120) if rnd.random() < LATE_SHARE else clock
            recs = [(ts, rnd.randrange(1, 50), is_set)]
        else:
            # A reporter's batch: records taken over the last few seconds.
            recs = [
                (clock - 5 + j * 5 // BATCH, rnd.randrange(1, 50), is_set) for j in range(BATCH)
            ]
        n += 1
        entry, records = usage_entry(
            f"mbu_bench{n:09d}", "acct_bench", False, item, PERIOD[0], PERIOD[1], clock, recs
        )
        packer.add(item, entry, records)
        w.truth.setdefault((item, PERIOD[0]), []).extend(recs)
        w.records += len(recs)
        w.requests += 1
        if rnd.random() < DUPLICATE_SHARE:
            replays.append((item, entry, records))
        if replays and rnd.random() < 0.05:
            packer.add(*replays.pop(0))
        clock += rnd.random() < 0.02
    for replay in replays:
        packer.add(*replay)
    packer.finish()
    return w


async def topic_partitions(settings: Settings) -> list[int]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        return sorted(await producer.partitions_for(settings.usage_topic))
    finally:
        await producer.stop()


async def preload(settings: Settings, workload: Workload, parts: list[int]) -> dict[int, int]:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        linger_ms=5,
        max_batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        sends = [
            await producer.send(settings.usage_topic, value, key=key, partition=partition)
            for partition, key, value in workload.messages
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(settings.usage_topic, p) for p in parts]
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    if any(begins.values()) or sum(ends.values()) != len(workload.messages):
        raise RuntimeError(
            "the broker did not keep the whole preload (the dev broker keeps"
            " 5 MB per partition); lower the workload's records"
        )
    return {tp.partition: off for tp, off in ends.items()}


async def bare_loop(
    settings: Settings, ends: dict[int, int], *, records_too: bool = False
) -> tuple[float, int]:
    """The ceiling: ``getmany`` and each message's header decoded — the least any reader of
    the topic does to learn what a message holds — nothing else; ``records_too`` decodes
    the records that follow the header as well. Returns (seconds, records)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(settings.usage_topic, p) for p in ends]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        records = 0
        left = dict(ends)
        loads = orjson.loads
        started = time.perf_counter()
        while any(left.values()):
            fetched = await consumer.getmany(timeout_ms=200, max_records=20_000)
            for tp, msgs in fetched.items():
                for msg in msgs:
                    value = msg.value
                    cut = value.find(b"\n")
                    for entry in loads(value if cut < 0 else memoryview(value)[:cut])["q"]:
                        records += entry[7]
                    if records_too and cut >= 0:
                        loads(memoryview(value)[cut + 1 :])
                left[tp.partition] = ends[tp.partition] - (msgs[-1].offset + 1)
        return time.perf_counter() - started, records
    finally:
        await consumer.stop()


async def reset_tables(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "TRUNCATE usage_ledger, usage_points, usage_windows, consumer_offsets, usage_dead_letters"
    )
    await pool.execute("VACUUM ANALYZE usage_ledger, usage_points, usage_windows")


async def aggregator_round(
    settings: Settings, pool: asyncpg.Pool, ends: dict[int, int]
) -> tuple[float, dict[str, int]]:
    """One aggregator from the log start to the log end, committed. (seconds, counters)"""
    await reset_tables(pool)
    agg = Aggregator(settings, retention_s=None)
    await agg.start()
    try:
        elapsed = await catch_up(agg, ends)
        if not await caught_up(pool, settings.consumer_group, settings.usage_topic, ends):
            raise RuntimeError("the aggregator reported commits Postgres does not hold")
    finally:
        await agg.stop()
    counts = dict(
        await pool.fetchrow(
            "SELECT (SELECT count(*) FROM usage_ledger) AS requests,"
            " (SELECT count(*) FROM usage_points) AS points,"
            " (SELECT coalesce(sum(records), 0) FROM usage_windows) AS records"
        )
    )
    return elapsed, {k: int(v) for k, v in counts.items()}


async def check_windows(pool: asyncpg.Pool, workload: Workload) -> int:
    """Windows that differ from the ground truth (0 expected)."""
    rows = {
        (r["item_pk"], r["period_start"]): r
        for r in await pool.fetch(
            "SELECT item_pk, period_start, total, max, last_ts, last_quantity, records"
            " FROM usage_windows"
        )
    }
    wrong = len(set(rows) ^ set(workload.truth))
    for key, recs in workload.truth.items():
        row = rows.get(key)
        if row is None:
            continue
        usage = fold_map(recs)
        last = max(usage)
        if (
            int(row["total"]),
            int(row["max"]),
            row["last_ts"],
            int(row["last_quantity"]),
            row["records"],
        ) != (sum(usage.values()), max(usage.values()), last, usage[last], len(recs)):
            wrong += 1
    return wrong


async def run(broker: str) -> list[Figure]:
    """Both loops run under the aggregator role's collector settings (``tune_gc``)."""
    with aggregator_gc():
        return await _run(broker)


async def _run(broker: str) -> list[Figure]:
    figures: list[Figure] = []
    for mix in MIXES:
        print(f"  {mix.label}:", flush=True)
        figures.extend(await _run_mix(broker, mix))
    return figures


async def _run_mix(broker: str, mix: Mix) -> list[Figure]:
    async with isolated_settings(broker, label="benchagg") as settings:
        parts = await topic_partitions(settings)
        workload = build_workload(mix, parts)
        ends = await preload(settings, workload, parts)
        pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            bare: list[float] = []
            full: list[float] = []
            agg: list[float] = []
            wrong = 0
            counts: dict[str, int] = {}
            with progress.bar(f"    {mix.label}: rounds") as report:
                for n in range(ROUNDS):
                    for _ in range(2):  # the bare loop is short (~0.1 s): two passes a round
                        seconds, records = await bare_loop(settings, ends)
                        if records != workload.published:
                            raise RuntimeError(
                                f"bare loop read {records} records, not {workload.published}"
                            )
                        bare.append(records / seconds)
                        seconds, _ = await bare_loop(settings, ends, records_too=True)
                        full.append(workload.published / seconds)
                    seconds, counts = await aggregator_round(settings, pool, ends)
                    agg.append(workload.records / seconds)
                    wrong += await check_windows(pool, workload)
                    print(
                        f"    round {n + 1}: bare loop {bare[-1]:,.0f} records/s (records"
                        f" decoded too {full[-1]:,.0f}), aggregator {agg[-1]:,.0f} records/s",
                        flush=True,
                    )
                    report(n + 1, ROUNDS)
        finally:
            await pool.close()
    ceiling = statistics.median(bare)
    value = statistics.median(agg)
    ok = wrong == 0 and value >= 300_000 and value >= 0.5 * ceiling
    messages = len(workload.messages)
    return [
        Figure(
            STAGE,
            f"{mix.label}: bare aiokafka loop (getmany + headers decoded)",
            ceiling,
            "records/s",
        ),
        Figure(
            STAGE,
            f"{mix.label}: bare loop, records decoded too",
            statistics.median(full),
            "records/s",
        ),
        Figure(
            STAGE,
            f"{mix.label}: into Postgres windows ({workload.records:,} records,"
            f" {workload.requests:,} requests, {messages:,} messages)",
            value,
            "records/s",
            "≥ 300,000/s and ≥ 0.5 × bare loop",
            ceiling,
            "bare loop",
            ok,
        ),
        Figure(
            STAGE,
            f"{mix.label}: requests (ledger rows) per second",
            value * workload.requests / workload.records,
            "requests/s",
        ),
        Figure(
            STAGE,
            f"{mix.label}: usage_points rows per record",
            counts.get("points", 0) / workload.records,
            "rows",
        ),
        Figure(
            STAGE,
            f"{mix.label}: windows off the ground truth ({ROUNDS} rounds)",
            wrong,
            "windows",
            "0",
            passed=wrong == 0,
        ),
    ]

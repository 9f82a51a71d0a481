"""Meter-events stage: meter events on the usage topic → the per-event ledger and minute
buckets in Postgres, against the Postgres floor of the ledger rows alone.

The workload: ``EVENTS`` meter events, each with its own identifier, from ``CUSTOMERS``
customers on ``METERS`` meters, timestamps spread over ``SPAN_S`` seconds in arrival order
(so most events of a customer and meter fall on distinct timestamps), a fifth of the values
decimal. Messages are packed as the ingest publishes a meter-event batch: per partition (the
partition of each event's ``meter_key``), ``PER_MESSAGE`` events a message, in order.

In alternating rounds over the same topic:

(a) the aggregator: ``Aggregator.run`` from stored offsets at the log start until its
    commits reach the log end (watched in memory, then confirmed against the stored
    offsets), on fresh tables — every event a ledger row, every bucket upserted;
(b) the floor: the same (meter_pk, identifier) pairs in one ``INSERT … ON CONFLICT DO
    NOTHING RETURNING`` per batch-sized chunk into a table keyed by them, on a fresh table —
    the least any implementation that keeps a ledger row per event in Postgres writes.

Every round's buckets are checked against a ground truth folded in memory.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg
from aiokafka.partitioner import DefaultPartitioner

from aggregator.worker import Aggregator
from bench.aggregator import Workload, preload, topic_partitions
from bench.common import Figure, aggregator_gc, catch_up
from domain.meters import Number, Stats, bucket_of, event_stats, merge
from domain.watermark import caught_up
from domain.wire import MeterEvent, encode_meter_events, meter_key
from infra import progress
from infra.db import create_pool
from infra.devenv import isolated_settings
from infra.settings import Settings

__all__ = ["run"]

STAGE = "meter_events"
ROUNDS = 3
EVENTS = 150_000  # the dev broker keeps 5 MB per partition (~80 bytes an event)
CUSTOMERS = 1000
METERS = 3
SPAN_S = 600
PER_MESSAGE = 100
DECIMAL_SHARE = 0.2
FLOOR_CHUNK = 20_000  # rows per floor statement: about what one aggregator batch holds
TARGET = 50_000
BASE = 1_700_000_000


@dataclass
class MeterWorkload:
    messages: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # partition, key, value
    pairs: list[tuple[int, str]] = field(default_factory=list)  # (meter_pk, identifier)
    truth: dict[tuple[int, int, int], Stats] = field(default_factory=dict)  # per bucket


def build_workload(partitions: list[int], seed: int = 7) -> MeterWorkload:
    rnd = random.Random(seed)
    w = MeterWorkload()
    partitioner = DefaultPartitioner()
    pending: dict[int, list[MeterEvent]] = {}
    offsets = dict.fromkeys(partitions, 0)

    def flush(partition: int) -> None:
        batch = pending.pop(partition, [])
        if not batch:
            return
        key = meter_key(batch[0].meter_pk, batch[0].customer_pk)
        w.messages.append((partition, key, encode_meter_events(batch)))
        for index, e in enumerate(batch):
            seq = offsets[partition] * 1_000_000 + index
            bucket = (e.meter_pk, e.customer_pk, bucket_of(e.timestamp))
            stats = event_stats(e.timestamp, e.value, seq)
            held = w.truth.get(bucket)
            w.truth[bucket] = stats if held is None else merge(held, stats)
        offsets[partition] += 1

    for n in range(EVENTS):
        meter_pk = 1 + rnd.randrange(METERS)
        customer_pk = 1 + rnd.randrange(CUSTOMERS)
        ts = BASE + n * SPAN_S // EVENTS
        value: Number = (
            Decimal(f"{rnd.randrange(1000)}.{rnd.randrange(1, 100):02d}").normalize()
            if rnd.random() < DECIMAL_SHARE
            else rnd.randrange(1, 100)
        )
        identifier = f"mevt_bench{n:09d}"
        e = MeterEvent(identifier, "acct_bench", False, meter_pk, customer_pk, ts, value, ts)
        partition: int = partitioner(meter_key(meter_pk, customer_pk), partitions, partitions)
        pending.setdefault(partition, []).append(e)
        w.pairs.append((meter_pk, identifier))
        if len(pending[partition]) == PER_MESSAGE:
            flush(partition)
    for partition in list(pending):
        flush(partition)
    return w


async def reset_tables(pool: asyncpg.Pool) -> None:
    await pool.execute("TRUNCATE meter_events, meter_buckets, consumer_offsets")
    await pool.execute("VACUUM ANALYZE meter_events, meter_buckets")


async def aggregator_round(
    settings: Settings, pool: asyncpg.Pool, ends: dict[int, int]
) -> tuple[float, int]:
    """One aggregator from the log start to the log end, committed. (seconds, events)"""
    await reset_tables(pool)
    agg = Aggregator(settings, retention_s=None)
    await agg.start()
    try:
        elapsed = await catch_up(agg, ends)
        if not await caught_up(pool, settings.consumer_group, settings.usage_topic, ends):
            raise RuntimeError("the aggregator reported commits Postgres does not hold")
    finally:
        await agg.stop()
    return elapsed, agg.meter_events


async def floor_round(pool: asyncpg.Pool, pairs: list[tuple[int, str]]) -> float:
    """The ledger rows alone: rows/s of ``INSERT … ON CONFLICT DO NOTHING RETURNING``."""
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS bench_meter_floor (meter_pk bigint NOT NULL,"
        " identifier text NOT NULL, PRIMARY KEY (meter_pk, identifier))"
    )
    await pool.execute("TRUNCATE bench_meter_floor")
    await pool.execute("VACUUM ANALYZE bench_meter_floor")
    async with pool.acquire() as conn:
        started = time.perf_counter()
        for lo in range(0, len(pairs), FLOOR_CHUNK):
            chunk = pairs[lo : lo + FLOOR_CHUNK]
            async with conn.transaction():
                got = await conn.fetch(
                    "INSERT INTO bench_meter_floor (meter_pk, identifier)"
                    " SELECT * FROM unnest($1::bigint[], $2::text[])"
                    " ON CONFLICT DO NOTHING RETURNING identifier",
                    [p[0] for p in chunk],
                    [p[1] for p in chunk],
                )
            if len(got) != len(chunk):
                raise RuntimeError("the floor table was not empty")
        return len(pairs) / (time.perf_counter() - started)


async def check_buckets(pool: asyncpg.Pool, w: MeterWorkload) -> int:
    """Buckets that differ from the ground truth (0 expected)."""
    rows = await pool.fetch(
        "SELECT meter_pk, customer_pk, minute, total, events, max, last_ts, last_value"
        " FROM meter_buckets"
    )
    got = {(r["meter_pk"], r["customer_pk"], r["minute"]): r for r in rows}
    wrong = len(set(got) ^ set(w.truth))
    for key, want in w.truth.items():
        r = got.get(key)
        if r is not None and (
            r["total"],
            r["events"],
            r["max"],
            r["last_ts"],
            r["last_value"],
        ) != (want.total, want.events, want.max, want.last_ts, want.last_value):
            wrong += 1
    return wrong


async def run(broker: str) -> list[Figure]:
    """Under the aggregator role's collector settings (``tune_gc``)."""
    with aggregator_gc():
        return await _run(broker)


async def _run(broker: str) -> list[Figure]:
    async with isolated_settings(broker, label="benchmtr") as settings:
        parts = await topic_partitions(settings)
        w = build_workload(parts)
        ends = await preload(settings, Workload(messages=w.messages), parts)
        pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            agg: list[float] = []
            floor: list[float] = []
            wrong = 0
            with progress.bar("    meter events: rounds") as report:
                for n in range(ROUNDS):
                    seconds, counted = await aggregator_round(settings, pool, ends)
                    if counted != EVENTS:
                        raise RuntimeError(f"the aggregator counted {counted}, not {EVENTS}")
                    agg.append(EVENTS / seconds)
                    wrong += await check_buckets(pool, w)
                    floor.append(await floor_round(pool, w.pairs))
                    print(
                        f"    round {n + 1}: aggregator {agg[-1]:,.0f} events/s,"
                        f" ledger floor {floor[-1]:,.0f} rows/s",
                        flush=True,
                    )
                    report(n + 1, ROUNDS)
            await pool.execute("DROP TABLE IF EXISTS bench_meter_floor")
        finally:
            await pool.close()
    value = statistics.median(agg)
    ceiling = statistics.median(floor)
    return [
        Figure(
            STAGE,
            "ledger floor: INSERT … ON CONFLICT DO NOTHING RETURNING (meter_pk, identifier)",
            ceiling,
            "rows/s",
        ),
        Figure(
            STAGE,
            f"into the ledger and minute buckets ({EVENTS:,} events, {CUSTOMERS:,} customers,"
            f" {METERS} meters, {len(w.messages):,} messages, {len(w.truth):,} buckets)",
            value,
            "events/s",
            f"≥ {TARGET:,}/s",
            ceiling,
            "ledger floor",
            wrong == 0 and value >= TARGET,
        ),
        Figure(
            STAGE,
            f"buckets off the ground truth ({ROUNDS} rounds)",
            wrong,
            "buckets",
            "0",
            passed=wrong == 0,
        ),
    ]

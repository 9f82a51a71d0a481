"""Cardinality stage: the aggregator's records/s as the number of items grows, against a
Postgres floor measured in the same run.

A fixed number of usage points (``POINTS``), every record at its own timestamp, spread
over 1,000, 5,000 and 50,000 items: each item sends its share as one batch request, a
message of its own keyed by the item (as the ingest publishes one, ``domain.wire``), the
items in random order. So the rows Postgres must hold for the usage map are the same at
every item count; what grows with items is the windows (one per item and period), the
ledger rows (one per request) and the messages.

Per item count, on a fresh topic preloaded while no aggregator runs, in alternating rounds:

(a) the aggregator: ``Aggregator.run`` from the stored offsets at the log start until the
    stored offsets reach the log end, on fresh tables (``bench.aggregator.aggregator_round``);
    the windows are checked against a ground truth folded independently in memory;
(b) the floor: the same (item, ts, quantity) points written with one
    ``INSERT … SELECT unnest(…) ON CONFLICT (item_pk, ts) DO UPDATE`` a batch into a fresh
    table keyed like ``usage_points``, each batch committed on its own, batches as large
    as the aggregator's were in that round (its points per transaction). No ledger, no
    windows, no offsets: what the usage map alone costs Postgres here.

Target: records/s ≥ 0.5 × the floor's rows/s at every item count.

After the timed rounds, one more round says where the time per item goes
(``breakdown_round``): through a connection class that records each statement of the
aggregator's transactions, its arguments and its round trip, then those statements
replayed in order on fresh tables under ``EXPLAIN ANALYZE`` — the server's own time per
step, and per table write inside the combined points + windows + offsets statement. That
round is not part of the figures' rates. ``python -m bench.cardinality --profile ITEMS``
runs one round under cProfile instead and prints where the Python side spends its time.

The dev broker keeps at most 5 MB per partition, which bounds ``POINTS`` (300,000 points
over 50,000 items put 4.6 MB in the fullest of 4 partitions; the preload checks the broker
kept everything).
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import pstats
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import REGISTRY

from aggregator.worker import Aggregator
from bench.aggregator import (
    Workload,
    aggregator_round,
    check_windows,
    preload,
    reset_tables,
    topic_partitions,
)
from bench.common import Figure, aggregator_gc, catch_up
from domain.wire import encode_entries, item_key, usage_entry
from infra.db import create_pool
from infra.devenv import dev_broker, isolated_settings
from infra.settings import Settings
from vinr.roles import tune_gc

__all__ = [
    "Breakdown",
    "build_workload",
    "floor_batches",
    "points_of",
    "run",
    "statement_kind",
]

STAGE = "cardinality"
ITEMS = (1_000, 5_000, 50_000)
POINTS = 300_000  # the same at every item count; at 50,000 items the fullest partition holds 4.6 MB
ROUNDS = 3
TARGET = 0.5
FLOOR_LABEL = "Postgres floor"
BASE = 1_700_000_000
PERIOD = (BASE - 3_600, BASE + 30 * 86_400)

Point = tuple[int, int, int]  # item, ts, quantity


def build_workload(items: int, points: int, partitions: list[int], seed: int = 7) -> Workload:
    """``points`` usage points over ``items`` items (``points // items`` each), every record
    at a timestamp of its own, one batch request per item, the items in random order.
    Messages are placed on partitions as the ingest's producer places them (by key)."""
    if items <= 0 or points % items:
        raise ValueError("points must be a positive multiple of items")
    per_item = points // items
    rnd = random.Random(seed)
    partitioner = DefaultPartitioner()
    order = list(range(items))
    rnd.shuffle(order)
    w = Workload()
    for n, item in enumerate(order):
        first = PERIOD[0] + 60 + item * per_item  # distinct across items too
        recs = [(first + j, rnd.randrange(1, 50), False) for j in range(per_item)]
        entry, records = usage_entry(
            f"mbu_card{n:09d}", "acct_bench", False, item, PERIOD[0], PERIOD[1], BASE, recs
        )
        key = item_key(item)
        partition: int = partitioner(key, partitions, partitions)
        w.messages.append((partition, key, encode_entries([entry], [records])))
        w.truth[(item, PERIOD[0])] = recs
        w.records += per_item
        w.requests += 1
        w.published += per_item
    return w


def points_of(workload: Workload) -> list[Point]:
    """The workload's (item, ts, quantity) points in publish order: what the floor writes.
    (Every record has a timestamp of its own, so a record is a point.)"""
    by_item = {key[0]: recs for key, recs in workload.truth.items()}
    out: list[Point] = []
    for _, key, _ in workload.messages:
        item = int(key)
        out.extend((item, ts, q) for ts, q, _ in by_item[item])
    return out


def floor_batches(points: Sequence[Point], size: int) -> list[Sequence[Point]]:
    """``points`` cut into consecutive batches of ``size`` (the last one shorter)."""
    if size <= 0:
        raise ValueError("batch size must be positive")
    return [points[i : i + size] for i in range(0, len(points), size)]


async def floor_round(pool: asyncpg.Pool, points: Sequence[Point], size: int) -> float:
    """Seconds to upsert ``points`` into a fresh table keyed like ``usage_points``, one
    statement and one commit per batch of ``size``."""
    async with pool.acquire() as conn:
        await conn.execute("DROP TABLE IF EXISTS bench_floor_points")
        await conn.execute(
            "CREATE TABLE bench_floor_points (item_pk bigint NOT NULL, ts bigint NOT NULL,"
            " quantity numeric(38, 0) NOT NULL, PRIMARY KEY (item_pk, ts))"
            " WITH (fillfactor = 80)"
        )
        batches = [
            ([p[0] for p in b], [p[1] for p in b], [p[2] for p in b])
            for b in floor_batches(points, size)
        ]
        started = time.perf_counter()
        for items, tss, quantities in batches:
            await conn.execute(
                "INSERT INTO bench_floor_points (item_pk, ts, quantity)"
                " SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])"
                " ON CONFLICT (item_pk, ts) DO UPDATE SET quantity = EXCLUDED.quantity",
                items,
                tss,
                quantities,
            )
        elapsed = time.perf_counter() - started
        rows = await conn.fetchval("SELECT count(*) FROM bench_floor_points")
        await conn.execute("DROP TABLE bench_floor_points")
    if rows != len(points):
        raise RuntimeError(f"the floor wrote {rows} rows, not {len(points)}")
    return elapsed


def _transactions() -> float:
    return REGISTRY.get_sample_value("vinr_aggregator_batch_seconds_count") or 0.0


# -- where the time goes -----------------------------------------------------------------

_KINDS = (
    ("BEGIN", "begin"),
    ("COMMIT", "commit"),
    ("WITH o AS (SELECT partition", "fence + ledger insert"),
    ("INSERT INTO usage_windows", "new windows insert"),
    ("WITH k AS (SELECT", "windows written or locked and read"),
    ("SELECT w.item_pk", "windows locked and read"),
    ("SELECT p.item_pk", "old points read"),
    ("WITH p AS (INSERT INTO usage_points", "points + windows + offsets write"),
    ("UPDATE usage_windows w SET max", "max recomputed"),
)


def statement_kind(query: str) -> str:
    """Which step of the aggregator's transaction a statement is (by how it starts)."""
    text = query.lstrip()
    for prefix, kind in _KINDS:
        if text.startswith(prefix):
            return kind
    return "other"


def _modify_times(node: dict[str, Any]) -> dict[str, float]:
    """The time (ms) of each table write in a plan tree (``ModifyTable`` nodes, by their
    operation and table): how a statement of several parts splits."""
    out: dict[str, float] = {}
    if node.get("Node Type") == "ModifyTable":
        name = f"{node['Operation'].lower()} {node['Relation Name']}"
        out[name] = float(node["Actual Total Time"]) * int(node.get("Actual Loops", 1))
    for sub in node.get("Plans", ()):
        for name, ms in _modify_times(sub).items():
            out[name] = out.get(name, 0.0) + ms
    return out


@dataclass
class Breakdown:
    """Per step of the aggregator's transactions: round trips as the aggregator saw them
    (ms), statements, rows (the length of the statement's first array), and the server's
    execution time of the same statements replayed under EXPLAIN ANALYZE (ms), with the
    time of each table write inside them."""

    round_trip_ms: dict[str, float] = field(default_factory=dict)
    statements: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    server_ms: dict[str, float] = field(default_factory=dict)
    writes_ms: dict[str, float] = field(default_factory=dict)
    captured: list[tuple[str, str, tuple[Any, ...]]] = field(default_factory=list)

    def add(self, kind: str, query: str, args: tuple[Any, ...], elapsed_s: float) -> None:
        self.round_trip_ms[kind] = self.round_trip_ms.get(kind, 0.0) + elapsed_s * 1000
        self.statements[kind] = self.statements.get(kind, 0) + 1
        self.rows[kind] = self.rows.get(kind, 0) + _rows(kind, args)
        self.captured.append((kind, query, args))

    def add_server(self, kind: str, plan: dict[str, Any]) -> None:
        self.server_ms[kind] = self.server_ms.get(kind, 0.0) + float(plan["Execution Time"])
        for name, ms in _modify_times(plan["Plan"]).items():
            self.writes_ms[name] = self.writes_ms.get(name, 0.0) + ms


def _rows(kind: str, args: tuple[Any, ...]) -> int:
    # The fence + ledger statement's 5th argument is the requests' ids. Arrays travel as
    # lists or as array literals (``{1,2,3}``).
    at = 4 if kind == "fence + ledger insert" else 0
    arg = args[at] if len(args) > at else None
    if isinstance(arg, list):
        return len(arg)
    if isinstance(arg, str) and arg.startswith("{"):
        return 0 if arg == "{}" else arg.count(",") + 1
    return 0


BREAKDOWN = Breakdown()


class _TimedConnection(asyncpg.Connection):  # type: ignore[misc]
    """Records each statement of the aggregator's transactions, its arguments and its
    round trip in ``BREAKDOWN``; the bench's own statements are not recorded."""

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> str:
        started = time.perf_counter()
        status: str = await super().execute(query, *args, **kwargs)
        self._record(query, args, started)
        return status

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        rows = await super().fetch(query, *args, **kwargs)
        self._record(query, args, started)
        return rows

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        row = await super().fetchrow(query, *args, **kwargs)
        self._record(query, args, started)
        return row

    @staticmethod
    def _record(query: str, args: tuple[Any, ...], started: float) -> None:
        kind = statement_kind(query)
        if kind != "other":
            BREAKDOWN.add(kind, query, args, time.perf_counter() - started)


async def breakdown_round(
    settings: Settings, pool: asyncpg.Pool, ends: dict[int, int]
) -> tuple[Breakdown, float]:
    """One untimed aggregator round on fresh tables, through a pool of ``_TimedConnection``,
    then its statements replayed in order under EXPLAIN ANALYZE on fresh tables again (each
    takes effect as it did): (breakdown, the round's seconds)."""
    global BREAKDOWN
    await reset_tables(pool)
    timed = await asyncpg.create_pool(
        settings.database_url.get_secret_value(),
        min_size=1,
        max_size=2,
        connection_class=_TimedConnection,
    )
    BREAKDOWN = breakdown = Breakdown()
    agg = Aggregator(settings, pool=timed, retention_s=None)
    try:
        await agg.start()
        seconds = await catch_up(agg, ends)
    finally:
        await agg.stop()
        await timed.close()
    BREAKDOWN = Breakdown()
    await reset_tables(pool)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset, updated)"
            " SELECT $1, $2, p, 0, 0 FROM unnest($3::int[]) p",
            settings.consumer_group,
            settings.usage_topic,
            list(ends),
        )
        for kind, query, args in breakdown.captured:
            if kind in ("begin", "commit"):
                await conn.execute(query)
                continue
            plan = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + query, *args)
            # The pool's connections decode json already (infra.db); a bare one does not.
            breakdown.add_server(kind, (json.loads(plan) if isinstance(plan, str) else plan)[0])
    breakdown.captured.clear()
    return breakdown, seconds


# -- the stage ---------------------------------------------------------------------------


@dataclass
class Measured:
    items: int
    records: int
    rate: float  # aggregator records/s (median of rounds)
    floor: float  # floor rows/s (median of rounds)
    batch: int  # points per aggregator transaction (median of rounds)
    transactions: float
    wrong: int
    breakdown: Breakdown
    breakdown_s: float

    @property
    def ratio(self) -> float:
        return self.rate / self.floor


async def run(broker: str) -> list[Figure]:
    """Under the aggregator role's collector settings (``tune_gc``), like its stage."""
    with aggregator_gc():
        measured = [await _measure(broker, items) for items in ITEMS]
    print_sweep(measured)
    print_breakdown(measured)
    return figures(measured)


async def _measure(broker: str, items: int) -> Measured:
    async with isolated_settings(broker, label="benchcard") as settings:
        parts = await topic_partitions(settings)
        workload = build_workload(items, POINTS, parts)
        ends = await preload(settings, workload, parts)
        points = points_of(workload)
        pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            rates: list[float] = []
            floors: list[float] = []
            batches: list[int] = []
            transactions: list[float] = []
            wrong = 0
            for n in range(ROUNDS):
                before = _transactions()
                seconds, counts = await aggregator_round(settings, pool, ends)
                done = _transactions() - before
                wrong += await check_windows(pool, workload)
                wrong += counts["points"] != workload.records  # every record its own point
                size = max(round(counts["points"] / max(done, 1)), 1)
                floor_s = await floor_round(pool, points, size)
                rates.append(workload.records / seconds)
                floors.append(len(points) / floor_s)
                batches.append(size)
                transactions.append(done)
                print(
                    f"    {items:,} items, round {n + 1}: aggregator {rates[-1]:,.0f} records/s"
                    f" ({done:.0f} transactions, {size:,} points each), floor"
                    f" {floors[-1]:,.0f} rows/s, ratio {rates[-1] / floors[-1]:.2f}",
                    flush=True,
                )
            breakdown, breakdown_s = await breakdown_round(settings, pool, ends)
            wrong += await check_windows(pool, workload)
            await reset_tables(pool)
        finally:
            await pool.close()
    return Measured(
        items,
        workload.records,
        statistics.median(rates),
        statistics.median(floors),
        int(statistics.median(batches)),
        statistics.median(transactions),
        wrong,
        breakdown,
        breakdown_s,
    )


def print_sweep(measured: list[Measured]) -> None:
    header = ("items", "records", "records/s", "floor rows/s", "ratio", "target", "ok")
    rows = [header] + [
        (
            f"{m.items:,}",
            f"{m.records:,}",
            f"{m.rate:,.0f}",
            f"{m.floor:,.0f}",
            f"{m.ratio:.2f}",
            f"≥ {TARGET} ×",
            "yes" if m.ratio >= TARGET and not m.wrong else "NO",
        )
        for m in measured
    ]
    _table(rows)


def print_breakdown(measured: list[Measured]) -> None:
    """Per item count, µs per point: each step's round trips as the aggregator saw them and
    the server's execution time of the same statements (EXPLAIN ANALYZE), with the table
    writes inside them."""
    kinds = [k for _, k in _KINDS if any(k in m.breakdown.statements for m in measured)]
    writes = sorted({k for m in measured for k in m.breakdown.writes_ms})
    print("\n  where the time goes (one untimed round each; µs per point: round trip / server):")
    rows: list[tuple[str, ...]] = [("step", *(f"{m.items:,} items" for m in measured))]
    for kind in kinds:
        rows.append(
            (
                f"{kind} (statements, rows)",
                *(
                    f"{_per(m, m.breakdown.round_trip_ms.get(kind, 0))}"
                    f" / {_per(m, m.breakdown.server_ms.get(kind, 0))}"
                    f" ({m.breakdown.statements.get(kind, 0)}, {m.breakdown.rows.get(kind, 0):,})"
                    for m in measured
                ),
            )
        )
    for name in writes:
        rows.append(
            (f"  of which {name}", *(_per(m, m.breakdown.writes_ms.get(name, 0)) for m in measured))
        )
    rows.append(
        (
            "all statements",
            *(
                f"{_per(m, sum(m.breakdown.round_trip_ms.values()))}"
                f" / {_per(m, sum(m.breakdown.server_ms.values()))}"
                for m in measured
            ),
        )
    )
    rows.append(("the whole round", *(_per(m, m.breakdown_s * 1000) for m in measured)))
    _table(rows, indent="    ")


def _per(m: Measured, ms: float) -> str:
    return f"{ms * 1000 / m.records:.2f}"


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print(indent + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
        if n == 0:
            print(indent + "  ".join("-" * w for w in widths))


def figures(measured: list[Measured]) -> list[Figure]:
    out: list[Figure] = []
    for m in measured:
        ok = m.ratio >= TARGET and m.wrong == 0
        out += [
            Figure(
                STAGE,
                f"{m.items:,} items: {m.records:,} points at distinct timestamps, into"
                " Postgres windows",
                m.rate,
                "records/s",
                f"≥ {TARGET} × {FLOOR_LABEL}",
                m.floor,
                FLOOR_LABEL,
                ok,
            ),
            Figure(
                STAGE,
                f"{m.items:,} items: {FLOOR_LABEL} (INSERT … ON CONFLICT DO UPDATE,"
                f" {m.batch:,} rows a statement)",
                m.floor,
                "rows/s",
            ),
            Figure(STAGE, f"{m.items:,} items: aggregator transactions", m.transactions, "txns"),
        ]
        per_point = [
            (f"{kind}, round trip", m.breakdown.round_trip_ms.get(kind, 0.0))
            for _, kind in _KINDS
            if kind in m.breakdown.statements
        ]
        per_point += [
            (f"{kind}, server", m.breakdown.server_ms[kind])
            for _, kind in _KINDS
            if kind in m.breakdown.server_ms
        ]
        per_point += [(f"server, {name}", ms) for name, ms in sorted(m.breakdown.writes_ms.items())]
        per_point.append(("the whole breakdown round", m.breakdown_s * 1000))
        out += [
            Figure(STAGE, f"{m.items:,} items: {label}", ms * 1000 / m.records, "µs/point")
            for label, ms in per_point
        ]
        out.append(
            Figure(
                STAGE,
                f"{m.items:,} items: windows off the ground truth ({ROUNDS} rounds)",
                m.wrong,
                "windows",
                "0",
                passed=m.wrong == 0,
            )
        )
    return out


# -- the Python side, under cProfile ---------------------------------------------------------


async def _profile(items: int) -> pstats.Stats:
    with dev_broker() as broker:
        async with isolated_settings(broker, label="benchcard") as settings:
            parts = await topic_partitions(settings)
            workload = build_workload(items, POINTS, parts)
            ends = await preload(settings, workload, parts)
            pool = await create_pool(settings, min_size=1, max_size=2)
            try:
                await aggregator_round(settings, pool, ends)  # warm
                profiler = cProfile.Profile()
                profiler.enable()
                seconds, _ = await aggregator_round(settings, pool, ends)
                profiler.disable()
                if await check_windows(pool, workload):
                    raise RuntimeError("windows off the ground truth")
            finally:
                await pool.close()
    print(f"{items:,} items: {POINTS / seconds:,.0f} records/s under cProfile")
    return pstats.Stats(profiler)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--profile" or not argv[1].isdigit():
        print("usage: python -m bench.cardinality --profile ITEMS")
        return 2
    tune_gc()
    stats = asyncio.run(_profile(int(argv[1])))
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

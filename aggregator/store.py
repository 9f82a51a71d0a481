"""Usage windows in Postgres, written exactly once per accepted request.

One transaction per batch: (1) lock this group's stored offsets and refuse partitions
whose batch does not start where the stored offset says (fencing: a zombie or duplicate
consumer can never apply a batch twice), (2) insert the requests' ids into the ledger and
keep only the new ones, (3) fold them into per-(item, period) windows, sending requests
for already-invoiced windows to the dead-letter table, (4) advance the stored offsets.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from aggregator.fold import PointOp, WindowState, apply, combine
from vinr.clock import now_s
from vinr.ids import new_id
from vinr.wire import UsageMessage

__all__ = ["BatchResult", "PartitionBatch", "PostgresWindowStore"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PartitionBatch:
    partition: int
    start_offset: int
    next_offset: int
    messages: list[UsageMessage]


@dataclass(slots=True)
class BatchResult:
    fenced: dict[int, int] = field(default_factory=dict)   # partition → stored offset
    requests: int = 0
    records: int = 0
    duplicates: int = 0
    dead_letters: int = 0


WindowKey = tuple[int, int]  # (item_pk, period_start)


class PostgresWindowStore:
    def __init__(self, pool: asyncpg.Pool, *, group: str, topic: str) -> None:
        self._pool = pool
        self._group = group
        self._topic = topic

    async def stored_offsets(self, partitions: list[int]) -> dict[int, int]:
        rows = await self._pool.fetch(
            "SELECT partition, next_offset FROM consumer_offsets"
            " WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3::int[])",
            self._group, self._topic, partitions)
        return {r["partition"]: r["next_offset"] for r in rows}

    async def init_offsets(self, start: dict[int, int]) -> None:
        """Create missing offset rows at ``start`` (the log's beginning)."""
        await self._pool.execute(
            "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset, updated)"
            " SELECT $1, $2, p, o, $5 FROM unnest($3::int[], $4::bigint[]) AS v(p, o)"
            " ON CONFLICT DO NOTHING",
            self._group, self._topic, list(start), list(start.values()), now_s())

    async def reset_offset(self, partition: int, offset: int) -> None:
        await self._pool.execute(
            "UPDATE consumer_offsets SET next_offset = $4, updated = $5"
            " WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
            self._group, self._topic, partition, offset, now_s())

    async def apply_batch(self, batches: list[PartitionBatch]) -> BatchResult:
        async with self._pool.acquire() as conn, conn.transaction():
            return await self._apply(conn, batches)

    async def _apply(self, conn: asyncpg.Connection[Any], batches: list[PartitionBatch]
                     ) -> BatchResult:
        result = BatchResult()
        parts = sorted(b.partition for b in batches)
        rows = await conn.fetch(
            "SELECT partition, next_offset FROM consumer_offsets WHERE consumer_group = $1"
            " AND topic = $2 AND partition = ANY($3::int[]) ORDER BY partition FOR UPDATE",
            self._group, self._topic, parts)
        stored = {r["partition"]: r["next_offset"] for r in rows}
        accepted: list[PartitionBatch] = []
        for b in batches:
            if stored.get(b.partition) != b.start_offset:
                result.fenced[b.partition] = stored.get(b.partition, -1)
            else:
                accepted.append(b)
        if not accepted:
            return result
        first: dict[str, UsageMessage] = {}
        for b in accepted:
            for m in b.messages:
                first.setdefault(m.id, m)
        fresh = await self._ledger(conn, list(first.values()))
        result.requests = len(fresh)
        result.duplicates = sum(len(b.messages) for b in accepted) - len(fresh)
        if fresh:
            result.records, result.dead_letters = await self._fold(conn, fresh)
        await conn.execute(
            "UPDATE consumer_offsets o SET next_offset = v.n, updated = $5"
            " FROM unnest($3::int[], $4::bigint[]) AS v(p, n)"
            " WHERE o.consumer_group = $1 AND o.topic = $2 AND o.partition = v.p",
            self._group, self._topic, [b.partition for b in accepted],
            [b.next_offset for b in accepted], now_s())
        return result

    async def _ledger(self, conn: asyncpg.Connection[Any], messages: list[UsageMessage]
                      ) -> list[UsageMessage]:
        rows = await conn.fetch(
            "INSERT INTO usage_ledger (id, item_pk, period_start, records, accepted_at)"
            " SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::int[],"
            " $5::bigint[]) ON CONFLICT DO NOTHING RETURNING id",
            [m.id for m in messages], [m.item_pk for m in messages],
            [m.period_start for m in messages], [len(m.records) for m in messages],
            [m.accepted_at for m in messages])
        new_ids = {r["id"] for r in rows}
        return [m for m in messages if m.id in new_ids]

    async def _fold(self, conn: asyncpg.Connection[Any], messages: list[UsageMessage]
                    ) -> tuple[int, int]:
        ends: dict[WindowKey, int] = {}
        for m in messages:
            ends.setdefault((m.item_pk, m.period_start), m.period_end)
        keys = sorted(ends)
        now = now_s()
        await conn.execute(
            "INSERT INTO usage_windows (item_pk, period_start, period_end, updated)"
            " SELECT * , $4 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])"
            " ON CONFLICT DO NOTHING",
            [k[0] for k in keys], [k[1] for k in keys], [ends[k] for k in keys], now)
        rows = await conn.fetch(
            "SELECT w.* FROM usage_windows w JOIN unnest($1::bigint[], $2::bigint[]) AS k(i, s)"
            " ON w.item_pk = k.i AND w.period_start = k.s"
            " ORDER BY w.item_pk, w.period_start FOR UPDATE OF w",
            [k[0] for k in keys], [k[1] for k in keys])
        windows: dict[WindowKey, WindowState] = {}
        closed: set[WindowKey] = set()
        for r in rows:
            key = (r["item_pk"], r["period_start"])
            if r["invoice_id"] is not None:
                closed.add(key)
            windows[key] = WindowState(int(r["total"]), int(r["max"]), r["last_ts"],
                                       int(r["last_quantity"]), r["records"])
        dead = [m for m in messages if (m.item_pk, m.period_start) in closed]
        if dead:
            await self._dead_letter(conn, dead, "period_invoiced")
        live = [m for m in messages if (m.item_pk, m.period_start) not in closed]
        # Collapse records per (item, timestamp), in arrival order.
        grouped: dict[tuple[int, int], list[tuple[int, bool]]] = defaultdict(list)
        window_of: dict[tuple[int, int], WindowKey] = {}
        record_count: dict[WindowKey, int] = defaultdict(int)
        for m in live:
            wkey = (m.item_pk, m.period_start)
            record_count[wkey] += len(m.records)
            for ts, quantity, is_set in m.records:
                grouped[(m.item_pk, ts)].append((quantity, is_set))
                window_of[(m.item_pk, ts)] = wkey
        if not grouped:
            return 0, len(dead)
        points = sorted(grouped)
        old_rows = await conn.fetch(
            "SELECT p.item_pk, p.ts, p.quantity FROM usage_points p"
            " JOIN unnest($1::bigint[], $2::bigint[]) AS k(i, t) ON p.item_pk = k.i AND p.ts = k.t",
            [p[0] for p in points], [p[1] for p in points])
        old = {(r["item_pk"], r["ts"]): int(r["quantity"]) for r in old_rows}
        new_values: list[int] = []
        recompute: set[WindowKey] = set()
        for point in points:
            wkey = window_of[point]
            op: PointOp = combine(grouped[point])
            value, again = apply(windows[wkey], point[1], old.get(point), op)
            new_values.append(value)
            if again:
                recompute.add(wkey)
        await conn.execute(
            "INSERT INTO usage_points (item_pk, ts, quantity)"
            " SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::numeric[])"
            " ON CONFLICT (item_pk, ts) DO UPDATE SET quantity = EXCLUDED.quantity",
            [p[0] for p in points], [p[1] for p in points], new_values)
        touched = sorted(record_count)
        states = [windows[k] for k in touched]
        await conn.execute(
            "UPDATE usage_windows w SET total = v.total, max = v.max, last_ts = v.lts,"
            " last_quantity = v.lq, records = w.records + v.n, updated = $8"
            " FROM unnest($1::bigint[], $2::bigint[], $3::numeric[], $4::numeric[],"
            " $5::bigint[], $6::numeric[], $7::bigint[]) AS v(i, s, total, max, lts, lq, n)"
            " WHERE w.item_pk = v.i AND w.period_start = v.s",
            [k[0] for k in touched], [k[1] for k in touched], [w.total for w in states],
            [w.max for w in states], [w.last_ts for w in states],
            [w.last_quantity for w in states], [record_count[k] for k in touched], now)
        if recompute:
            again_keys = sorted(recompute)
            await conn.execute(
                "UPDATE usage_windows w SET max = coalesce((SELECT max(p.quantity)"
                " FROM usage_points p WHERE p.item_pk = w.item_pk AND p.ts >= w.period_start"
                " AND p.ts < w.period_end), 0)"
                " FROM unnest($1::bigint[], $2::bigint[]) AS k(i, s)"
                " WHERE w.item_pk = k.i AND w.period_start = k.s",
                [k[0] for k in again_keys], [k[1] for k in again_keys])
        return sum(record_count.values()), len(dead)

    async def _dead_letter(self, conn: asyncpg.Connection[Any], messages: list[UsageMessage],
                           reason: str) -> None:
        await conn.executemany(
            "INSERT INTO usage_dead_letters (id, account_id, livemode, ledger_id, item_pk,"
            " period_start, reason, payload, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            [(new_id("dl"), m.account_id, m.livemode, m.id, m.item_pk, m.period_start, reason,
              {"records": m.records, "periodEnd": m.period_end, "acceptedAt": m.accepted_at},
              now_s()) for m in messages])
        log.warning("dead-lettered %d request(s): %s", len(messages), reason)

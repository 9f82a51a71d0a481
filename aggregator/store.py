"""Usage windows in Postgres, written exactly once per accepted request.

One transaction per prepared batch:

1. lock this group's stored offsets and refuse partitions whose batch does not start where
   the stored offset says (fencing: a zombie or duplicate consumer can never apply a batch
   twice, and a refused partition is reported so the consumer seeks back to the stored
   offset);
2. insert the requests into the ledger (id, window, Kafka position, records) and keep only
   the ids that were not there yet — the unit of dedupe is the request (docs/adr/0001);
3. fold the new requests' pre-aggregated deltas into per-(item, period) windows and the
   per-timestamp map ``usage_points``; requests for windows already closed by an invoice,
   and requests whose records are malformed, go to ``usage_dead_letters`` with the reason
   (and a ``usage_record.dead_lettered`` event);
4. meter events (``aggregator/meters.py``): their ledger ``meter_events`` in the fence's
   statement, their minute buckets and the alerts they may fire (``domain/alerting.py``);
5. advance the stored offsets.

Bulk statements only, however many rows a step touches, and few round trips — each costs
~0.5 ms while the event loop prepares the next batch. A batch of known windows takes five:
``BEGIN``; the fence and the ledger insert (one statement); the windows locked and read;
points, windows and stored offsets written (one statement of three parts on different
tables); ``COMMIT``. New windows, old points before a window's latest timestamp, a ``set``
that lowers ``max``, and dead letters add a statement each when they occur. Meter events
add one statement (buckets, with the offsets when no window was written); identifiers
already in their ledger add one more (tombstones), alerts to evaluate a few.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from aggregator import meters
from aggregator.batch import (
    MeterEntry,
    PreparedBatch,
    Request,
    WindowDelta,
    WindowKey,
    bucket_deltas,
    window_deltas,
)
from domain import alerting
from domain.clock import now_s
from domain.deadletters import insert_dead_letters
from domain.fold import WindowState, fold_ops, points_to_read, window_state

__all__ = ["BatchResult", "PostgresWindowStore"]

log = logging.getLogger(__name__)

_INT64 = 2**63 - 1


@dataclass(slots=True)
class BatchResult:
    fenced: dict[int, int] = field(default_factory=dict)  # partition → stored offset
    committed: dict[int, int] = field(default_factory=dict)  # partition → new stored offset
    requests: int = 0  # new requests folded or dead-lettered
    records: int = 0  # records folded into windows
    duplicates: int = 0  # requests already in the ledger (or twice in the batch)
    dead_letters: dict[str, int] = field(default_factory=dict)  # reason → requests
    points: int = 0  # usage_points rows written
    windows: int = 0  # windows updated
    meter_events: int = 0  # meter events counted into buckets
    meter_duplicates: int = 0  # meter events already in their ledger (or twice in the batch)
    meter_rejected: dict[str, int] = field(default_factory=dict)  # reason → events
    tombstones_filled: int = 0  # events that arrived after their cancel
    buckets: int = 0  # meter buckets written
    alerts_fired: int = 0


def _offsets_update(n: int) -> str:
    """The stored offsets' advance; parameters from ``$n``: group, topic, partitions,
    their next offsets, the time."""
    return (
        f"UPDATE consumer_offsets o SET next_offset = v.n, updated = ${n + 4}"
        f" FROM unnest(${n + 2}::int[], ${n + 3}::bigint[]) AS v(p, n)"
        f" WHERE o.consumer_group = ${n} AND o.topic = ${n + 1} AND o.partition = v.p"
    )


def _numeric_type(values: list[int]) -> str:
    """bigint[] travels much faster than numeric[]; numeric only for hostile totals."""
    return "bigint" if all(-_INT64 <= v <= _INT64 for v in values) else "numeric"


class PostgresWindowStore:
    """Applies prepared batches; holds one connection for them (``close`` returns it).

    Windows known to exist (committed by an earlier batch; window rows are never deleted)
    skip the insert-if-missing statement.
    """

    _KNOWN_MAX = 1_000_000

    def __init__(self, pool: asyncpg.Pool, *, group: str, topic: str) -> None:
        self._pool = pool
        self._group = group
        self._topic = topic
        self._conn: asyncpg.Connection[Any] | None = None
        self._known: set[WindowKey] = set()

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._pool.release(conn)

    async def stored_offsets(self, partitions: list[int]) -> dict[int, int]:
        rows = await self._pool.fetch(
            "SELECT partition, next_offset FROM consumer_offsets"
            " WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3::int[])",
            self._group,
            self._topic,
            partitions,
        )
        return {r["partition"]: r["next_offset"] for r in rows}

    async def init_offsets(self, start: dict[int, int]) -> None:
        """Create missing offset rows at ``start`` (the log's beginning)."""
        await self._pool.execute(
            "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset, updated)"
            " SELECT $1, $2, p, o, $5 FROM unnest($3::int[], $4::bigint[]) AS v(p, o)"
            " ON CONFLICT DO NOTHING",
            self._group,
            self._topic,
            list(start),
            list(start.values()),
            now_s(),
        )

    async def reset_offset(self, partition: int, offset: int, *, expected: int) -> bool:
        """Move a stored offset, only if it still is ``expected`` (another consumer may have
        moved it meanwhile); True if moved."""
        status = await self._pool.execute(
            "UPDATE consumer_offsets SET next_offset = $4, updated = $6"
            " WHERE consumer_group = $1 AND topic = $2 AND partition = $3"
            " AND next_offset = $5",
            self._group,
            self._topic,
            partition,
            offset,
            expected,
            now_s(),
        )
        return bool(status == "UPDATE 1")

    async def apply_batch(self, batch: PreparedBatch) -> BatchResult:
        """One transaction; on any error it rolled back (or its outcome is unknown, if the
        connection broke during COMMIT: the caller re-reads the stored offsets)."""
        if self._conn is None:
            self._conn = await self._pool.acquire()
        conn = self._conn
        created: list[WindowKey] = []
        try:
            async with conn.transaction():
                result = await self._apply(conn, batch, created)
        except BaseException:
            await self.close()
            raise
        self._known.update(created)
        if len(self._known) > self._KNOWN_MAX:
            self._known.clear()
        return result

    async def _apply(
        self, conn: asyncpg.Connection[Any], batch: PreparedBatch, created: list[WindowKey]
    ) -> BatchResult:
        result = BatchResult(
            duplicates=batch.duplicates_in_batch, meter_duplicates=batch.meter_duplicates_in_batch
        )
        parts = sorted(batch.ranges)
        stored, inserted, row = await self._fence_and_ledger(conn, batch, parts)
        for p in parts:
            if stored.get(p) == batch.ranges[p].start:
                result.committed[p] = batch.ranges[p].next
            else:
                result.fenced[p] = stored.get(p, -1)
        if not result.committed:
            return result
        requests, windows = batch.requests, batch.windows
        if result.fenced:
            requests = [r for r in requests if r.partition in result.committed]
            windows = window_deltas(requests)
        if requests:
            fresh = {r.id for r in requests} if inserted is None else inserted
            if len(fresh) < len(requests):
                result.duplicates += len(requests) - len(fresh)
                requests, windows = self._without_duplicates(requests, windows, fresh)
            result.requests = len(requests)
        advanced = await self._fold(conn, requests, windows, result, created)
        if batch.meter_events:
            advanced = await self._meters(conn, batch, row, result, advanced)
        if not advanced:
            await conn.execute(
                _offsets_update(1),
                self._group,
                self._topic,
                list(result.committed),
                list(result.committed.values()),
                now_s(),
            )
        return result

    async def _fence_and_ledger(
        self, conn: asyncpg.Connection[Any], batch: PreparedBatch, parts: list[int]
    ) -> tuple[dict[int, int], set[str] | None, asyncpg.Record]:
        """One statement: lock this group's stored offsets, and insert into the ledgers the
        requests and meter events of the partitions whose batch starts at the stored offset
        (the others are fenced). Returns the stored offsets, the ids that were new — None
        when all of them were (only a count comes back then) — and the row, whose meter
        columns ``meters.outcome_of`` reads."""
        requests = batch.requests
        events = batch.meter_events
        meter_ctes = meters.ledger_ctes(14, events) if events else ""
        meter_columns = meters.LEDGER_COLUMNS if events else ""
        meter_args = meters.ledger_args(events) if events else []
        row = await conn.fetchrow(
            "WITH o AS (SELECT partition, next_offset FROM consumer_offsets"
            " WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3::int[])"
            " ORDER BY partition FOR UPDATE),"
            " ok AS (SELECT o.partition FROM o JOIN unnest($3::int[], $4::bigint[]) AS s(p, b)"
            " ON o.partition = s.p AND o.next_offset = s.b),"
            " r AS (SELECT * FROM unnest($5::text[], $6::bigint[], $7::bigint[], $8::int[],"
            " $9::bigint[], $10::int[], $11::bigint[], $12::int[], $13::bytea[])"
            " AS r(id, item_pk, period_start, records, accepted_at, kafka_partition,"
            " kafka_offset, kafka_index, payload)"
            " WHERE r.kafka_partition IN (SELECT partition FROM ok)),"
            " ins AS (INSERT INTO usage_ledger (id, item_pk, period_start, records,"
            " accepted_at, kafka_partition, kafka_offset, kafka_index, payload)"
            " SELECT * FROM r ON CONFLICT DO NOTHING RETURNING id)"
            f"{meter_ctes}"
            " SELECT (SELECT array_agg(partition) FROM o) AS parts,"
            " (SELECT array_agg(next_offset) FROM o) AS offsets,"
            " CASE WHEN (SELECT count(*) FROM ins) < (SELECT count(*) FROM r)"
            f" THEN coalesce((SELECT array_agg(id) FROM ins), '{{}}') END AS ids{meter_columns}",
            self._group,
            self._topic,
            parts,
            [batch.ranges[p].start for p in parts],
            [r.id for r in requests],
            [r.item_pk for r in requests],
            [r.period_start for r in requests],
            [r.count for r in requests],
            [r.accepted_at for r in requests],
            [r.partition for r in requests],
            [r.offset for r in requests],
            [r.index for r in requests],
            [r.payload for r in requests],
            *meter_args,
        )
        stored = dict(zip(row["parts"] or (), row["offsets"] or (), strict=True))
        return stored, (None if row["ids"] is None else set(row["ids"])), row

    async def _meters(
        self,
        conn: asyncpg.Connection[Any],
        batch: PreparedBatch,
        row: asyncpg.Record,
        result: BatchResult,
        advanced: bool,
    ) -> bool:
        """The meter events' outcome, buckets and alerts; True once the stored offsets
        were advanced (with the buckets, when the windows did not already)."""
        events: list[MeterEntry] = batch.meter_events
        buckets = batch.buckets
        if result.fenced:
            events = [e for e in events if e.partition in result.committed]
            buckets = bucket_deltas(events)
        if not events:
            return advanced
        outcome = meters.outcome_of(row, events, buckets)
        result.meter_events = len(outcome.counted)
        result.meter_duplicates += len(outcome.conflicts)
        result.meter_rejected = outcome.rejected
        if outcome.conflicts:
            result.tombstones_filled = await meters.fill_tombstones(conn, outcome.conflicts)
            result.meter_duplicates -= result.tombstones_filled
        if not outcome.buckets:
            return advanced
        tail = (
            None
            if advanced
            else (
                _offsets_update,
                [
                    self._group,
                    self._topic,
                    list(result.committed),
                    list(result.committed.values()),
                    now_s(),
                ],
            )
        )
        candidates = await meters.write_buckets(conn, outcome.buckets, tail)
        result.buckets = len(outcome.buckets)
        if candidates:
            result.alerts_fired = await alerting.evaluate(conn, candidates)
        return True

    @staticmethod
    def _without_duplicates(
        requests: list[Request], windows: dict[WindowKey, WindowDelta], fresh: set[str]
    ) -> tuple[list[Request], dict[WindowKey, WindowDelta]]:
        """Drop requests the ledger already held; rebuild only the windows they touched."""
        kept = [r for r in requests if r.id in fresh]
        stale = {r.window for r in requests if r.id not in fresh}
        rebuilt = window_deltas(r for r in kept if r.window in stale)
        merged = {k: d for k, d in windows.items() if k not in stale}
        merged.update(rebuilt)
        return kept, merged

    async def _fold(
        self,
        conn: asyncpg.Connection[Any],
        requests: list[Request],
        windows: dict[WindowKey, WindowDelta],
        result: BatchResult,
        created: list[WindowKey],
    ) -> bool:
        """Fold the new requests; True when the stored offsets were advanced with the
        windows (there was an open window to write)."""
        invalid = [r for r in requests if r.ops is None]
        keys = sorted({r.window for r in requests if r.ops is not None})
        states, closed = await self._lock_windows(
            conn, keys, [k for k in keys if k not in self._known], windows, created
        )
        missing = [k for k in keys if k not in states and k not in closed]
        if missing:  # known to exist, yet gone (deleted by hand): create them again
            more, more_closed = await self._lock_windows(conn, missing, missing, windows, created)
            states.update(more)
            closed |= more_closed
        late = [r for r in requests if r.ops is not None and r.window in closed]
        for reason, dead in (("invalid_records", invalid), ("period_invoiced", late)):
            if dead:
                await insert_dead_letters(conn, dead, reason)
                result.dead_letters[reason] = len(dead)
        if late:
            # The late requests' ledger rows go with the next retention pass.
            late_keys = sorted({r.window for r in late})
            await conn.execute(
                "UPDATE usage_windows w SET purged_at = NULL"
                " FROM unnest($1::bigint[], $2::bigint[]) AS k(i, s)"
                " WHERE w.item_pk = k.i AND w.period_start = k.s AND w.purged_at IS NOT NULL",
                [k[0] for k in late_keys],
                [k[1] for k in late_keys],
            )
        if not states:
            return False
        await self._fold_open(conn, {k: windows[k] for k in states}, states, result)
        return True

    async def _lock_windows(
        self,
        conn: asyncpg.Connection[Any],
        keys: list[WindowKey],
        new: list[WindowKey],
        windows: dict[WindowKey, WindowDelta],
        created: list[WindowKey],
    ) -> tuple[dict[WindowKey, WindowState], set[WindowKey]]:
        """Create the ``new`` windows if missing, then lock and read ``keys``: the open
        windows' states, and the keys of closed ones."""
        states: dict[WindowKey, WindowState] = {}
        closed: set[WindowKey] = set()
        if not keys:
            return states, closed
        if new:
            await conn.execute(
                "INSERT INTO usage_windows (item_pk, period_start, period_end, updated)"
                " SELECT i, s, e, $4 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])"
                " AS v(i, s, e) ON CONFLICT DO NOTHING",
                [k[0] for k in new],
                [k[1] for k in new],
                [windows[k].period_end for k in new],
                now_s(),
            )
            created.extend(new)
        rows = await conn.fetch(
            "SELECT w.item_pk, w.period_start, w.total, w.max, w.last_ts, w.last_quantity,"
            " w.records, w.invoice_id IS NOT NULL AS closed FROM usage_windows w"
            " JOIN unnest($1::bigint[], $2::bigint[]) AS k(i, s)"
            " ON w.item_pk = k.i AND w.period_start = k.s"
            " ORDER BY w.item_pk, w.period_start FOR UPDATE OF w",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        for r in rows:
            key = (r["item_pk"], r["period_start"])
            if r["closed"]:
                closed.add(key)
            else:
                states[key] = window_state(r)
        return states, closed

    async def _fold_open(
        self,
        conn: asyncpg.Connection[Any],
        windows: dict[WindowKey, WindowDelta],
        states: dict[WindowKey, WindowState],
        result: BatchResult,
    ) -> None:
        wanted_items: list[int] = []
        wanted_ts: list[int] = []
        for key, delta in windows.items():
            needed = points_to_read(states[key], delta.ops)
            wanted_items += [key[0]] * len(needed)
            wanted_ts += needed
        old: dict[int, dict[int, int]] = {}
        if wanted_ts:
            rows = await conn.fetch(
                "SELECT p.item_pk, p.ts, p.quantity FROM usage_points p"
                " JOIN unnest($1::bigint[], $2::bigint[]) AS k(i, t)"
                " ON p.item_pk = k.i AND p.ts = k.t",
                wanted_items,
                wanted_ts,
            )
            for r in rows:
                old.setdefault(r["item_pk"], {})[r["ts"]] = int(r["quantity"])
        p_items: list[int] = []
        p_ts: list[int] = []
        p_values: list[int] = []
        recompute: list[WindowKey] = []
        for key, delta in windows.items():
            state = states[key]
            points, again = fold_ops(state, delta.ops, old.get(key[0], {}))
            p_items += [key[0]] * len(points)
            p_ts += points.keys()
            p_values += points.values()
            state.records += delta.records
            result.records += delta.records
            if again:
                recompute.append(key)
        # Points, windows and the stored offsets: one statement (its parts touch different
        # tables, so running them together changes nothing but the round trips).
        p_kind = _numeric_type(p_values)
        keys = sorted(windows)
        totals = [states[k].total for k in keys]
        maxes = [states[k].max for k in keys]
        lasts = [states[k].last_quantity for k in keys]
        w_kind = _numeric_type(totals + maxes + lasts)
        await conn.execute(
            "WITH p AS (INSERT INTO usage_points (item_pk, ts, quantity)"
            f" SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::{p_kind}[])"
            " ON CONFLICT (item_pk, ts) DO UPDATE SET quantity = EXCLUDED.quantity),"
            " w AS (UPDATE usage_windows w SET total = v.total, max = v.max, last_ts = v.lts,"
            " last_quantity = v.lq, records = v.n, updated = $11"
            f" FROM unnest($4::bigint[], $5::bigint[], $6::{w_kind}[], $7::{w_kind}[],"
            f" $8::bigint[], $9::{w_kind}[], $10::bigint[]) AS v(i, s, total, max, lts, lq, n)"
            " WHERE w.item_pk = v.i AND w.period_start = v.s) " + _offsets_update(12),
            p_items,
            p_ts,
            p_values,
            [k[0] for k in keys],
            [k[1] for k in keys],
            totals,
            maxes,
            [states[k].last_ts for k in keys],
            lasts,
            [states[k].records for k in keys],
            now_s(),
            self._group,
            self._topic,
            list(result.committed),
            list(result.committed.values()),
            now_s(),
        )
        result.points += len(p_ts)
        result.windows += len(keys)
        if recompute:
            await conn.execute(
                "UPDATE usage_windows w SET max = coalesce((SELECT max(p.quantity)"
                " FROM usage_points p WHERE p.item_pk = w.item_pk AND p.ts >= w.period_start"
                " AND p.ts < w.period_end), 0)"
                " FROM unnest($1::bigint[], $2::bigint[]) AS k(i, s)"
                " WHERE w.item_pk = k.i AND w.period_start = k.s",
                [k[0] for k in recompute],
                [k[1] for k in recompute],
            )

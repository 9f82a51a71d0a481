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
~0.5 ms while the event loop prepares the next batch. A batch takes five: ``BEGIN``; the
fence and the ledger insert (one statement); the windows (one statement: new ones inserted,
every existing one locked in key order, in-order increments folded — below); points, the
windows folded in Python and stored offsets written (one statement of three parts on
different tables); ``COMMIT``.

**In-order increments** (docs/adr/0014). A window whose delta holds only increments comes
with its ``Appended`` summary from the batch (sum, largest op, first and last timestamp,
last quantity). The windows statement inserts such a window, when this process has not
seen it, with those figures as they are; on an existing one it checks on the locked row
that it is open and that its latest timestamp lies before the delta's first, and then adds
them — no read, no Python fold. Every window that fails the guard (closed by an invoice,
reaching back in time) and every window with a ``set`` comes back from the same statement,
locked and read, and is folded by ``domain.fold.fold_ops`` as before. So the decision is
made on the locked row, inside the transaction: a window closed or written meanwhile is
never folded from the batch alone.

Old points before a window's latest timestamp, a ``set`` that lowers ``max``, new windows
holding a ``set``, windows gone missing and dead letters add a statement each when they
occur. Meter events add one statement (buckets, with the offsets when no window was
written); identifiers already in their ledger add one more (tombstones), alerts to
evaluate a few. Integers travel as array literals cast in SQL (``_literal``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

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
_INT_TYPE = {int}


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


def _literal(values: Sequence[int | None]) -> str:
    """An array literal of integers (``{1,2,NULL}``), sent as text and cast in SQL: the
    driver's binary array encoding checks every element's type, which for the per-window
    and per-point columns costs more than Postgres's parsing of the text."""
    if None in values:
        return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"
    try:  # orjson writes a list of integers ~20× faster than str() and join
        return "{" + orjson.dumps(values)[1:-1].decode() + "}"
    except TypeError:  # an integer beyond 64 bits
        return "{" + ",".join(map(str, values)) + "}"


def _ledger_literal(values: Sequence[Any]) -> str:
    """``_literal`` for a column as a message's header gave it (a malformed request keeps
    its fields as they came): anything but integers is refused, as the driver's own
    encoding refuses it, so no text can ever reach the literal."""
    if values and set(map(type, values)) != _INT_TYPE:
        raise ValueError("a ledger column holds a value that is not an integer")
    return _literal(values)


# The windows of a batch in one statement (``_write_windows``). ``k`` holds every window of
# the batch, ordered: new ``Appended`` ones ($11 of them), known ``Appended`` ones (up to
# $12), then the others; the summary columns cover the ``Appended`` ones only (``unnest``
# pads the rest with NULLs), period ends the new ones. New windows are inserted with their
# folded figures; every existing window is locked in key order, and the guard — open, and
# no point at or after the delta's first timestamp — is evaluated on the locked row, so a
# window closed or written meanwhile is read instead, never folded blindly. The rows that
# come back are the windows read (plus one row with the count folded, and the keys folded
# when that count does not account for every window: some window was missing).
_WINDOWS_SQL = (
    "WITH k AS (SELECT * FROM unnest($1::text::bigint[], $2::text::bigint[],"
    " $3::text::bigint[], $4::text::bigint[], $5::text::{kind}[], $6::text::bigint[],"
    " $7::text::{kind}[], $8::text::bigint[], $9::text::{kind}[]) WITH ORDINALITY"
    " AS k(i, s, e, f, tot, n, mx, lts, lq, ord)),"
    " ins AS (INSERT INTO usage_windows (item_pk, period_start, period_end, total, max,"
    " last_ts, last_quantity, records, updated)"
    " SELECT i, s, e, tot, mx, lts, lq, n, $10 FROM k WHERE ord <= $11 ORDER BY i, s"
    " ON CONFLICT DO NOTHING RETURNING item_pk, period_start),"
    " l AS (SELECT w.item_pk, w.period_start, w.total, w.max, w.last_ts, w.last_quantity,"
    " w.records, w.invoice_id IS NOT NULL AS closed, k.ord <= $12 AND w.invoice_id IS NULL"
    " AND (w.last_ts IS NULL OR w.last_ts < k.f) AS fast, k.tot, k.n, k.mx, k.lts, k.lq"
    " FROM usage_windows w JOIN k ON w.item_pk = k.i AND w.period_start = k.s"
    " ORDER BY w.item_pk, w.period_start FOR UPDATE OF w),"
    " up AS (UPDATE usage_windows w SET total = w.total + l.tot, max = greatest(w.max, l.mx),"
    " last_ts = l.lts, last_quantity = l.lq, records = w.records + l.n, updated = $10"
    " FROM l WHERE l.fast AND w.item_pk = l.item_pk AND w.period_start = l.period_start"
    " RETURNING w.item_pk, w.period_start),"
    " a AS (SELECT * FROM ins UNION ALL SELECT * FROM up),"
    " c AS (SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM l WHERE NOT l.fast)"
    " < $13 AS short)"
    " SELECT h.applied_i, h.applied_s, r.* FROM (SELECT CASE WHEN c.short THEN"
    " coalesce((SELECT array_agg(item_pk ORDER BY item_pk, period_start) FROM a), '{{}}')"
    " END AS applied_i, CASE WHEN c.short THEN coalesce((SELECT array_agg(period_start"
    " ORDER BY item_pk, period_start) FROM a), '{{}}') END AS applied_s FROM c) h"
    " LEFT JOIN (SELECT l.item_pk, l.period_start, l.total, l.max, l.last_ts,"
    " l.last_quantity, l.records, l.closed FROM l WHERE NOT l.fast) r ON true"
)


def _numeric_type(values: list[int]) -> str:
    """bigint[] travels much faster than numeric[]; numeric only for hostile totals."""
    return (
        "bigint" if not values or (min(values) >= -_INT64 and max(values) <= _INT64) else "numeric"
    )


async def _insert_empty_windows(
    conn: asyncpg.Connection[Any], keys: list[WindowKey], windows: dict[WindowKey, WindowDelta]
) -> None:
    """Create the windows ``keys`` empty if missing, in key order (the order windows are
    locked in everywhere)."""
    await conn.execute(
        "INSERT INTO usage_windows (item_pk, period_start, period_end, updated)"
        " SELECT i, s, e, $4 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])"
        " AS v(i, s, e) ORDER BY i, s ON CONFLICT DO NOTHING",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [windows[k].period_end for k in keys],
        now_s(),
    )


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
            " r AS (SELECT * FROM unnest($5::text[], $6::text::bigint[], $7::text::bigint[],"
            " $8::text::int[], $9::text::bigint[], $10::text::int[], $11::text::bigint[],"
            " $12::text::int[], $13::bytea[])"
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
            _ledger_literal([r.item_pk for r in requests]),
            _ledger_literal([r.period_start for r in requests]),
            _ledger_literal([r.count for r in requests]),
            _ledger_literal([r.accepted_at for r in requests]),
            _literal([r.partition for r in requests]),
            _literal([r.offset for r in requests]),
            _literal([r.index for r in requests]),
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
        fast, states, closed, missing = await self._write_windows(conn, keys, windows, created)
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
        if not states and not fast:
            return False
        await self._fold_open(conn, windows, states, fast, result)
        return True

    async def _write_windows(
        self,
        conn: asyncpg.Connection[Any],
        keys: list[WindowKey],
        windows: dict[WindowKey, WindowDelta],
        created: list[WindowKey],
    ) -> tuple[list[WindowKey], dict[WindowKey, WindowState], set[WindowKey], list[WindowKey]]:
        """One statement for the windows of ``keys``: every window is locked in key order;
        a window whose delta is ``Appended`` is folded right there from the batch alone when
        the guard holds on its locked row (open, and its latest timestamp before the delta's
        first) — or inserted with its folded figures when it is new. The others are read.

        Returns the windows folded in SQL (their points are still to write), the states of
        the open windows read (for ``fold_ops``), the keys of closed windows, and the keys
        that turned out missing (believed to exist, or inserted meanwhile by another
        transaction this statement's snapshot does not see)."""
        if not keys:
            return [], {}, set(), []
        known = self._known
        fresh_fast: list[WindowKey] = []
        known_fast: list[WindowKey] = []
        slow: list[WindowKey] = []
        for k in keys:
            if windows[k].appended is None:
                slow.append(k)
            elif k in known:
                known_fast.append(k)
            else:
                fresh_fast.append(k)
        fresh_slow = [k for k in slow if k not in known]
        if fresh_slow:
            await _insert_empty_windows(conn, fresh_slow, windows)
        fast = fresh_fast + known_fast
        order = fast + slow
        sums = [a for a in (windows[k].appended for k in fast) if a is not None]
        totals = [a.total for a in sums]
        maxes = [a.max for a in sums]
        lasts = [a.last_quantity for a in sums]
        kind = _numeric_type(totals + maxes + lasts)
        rows = await conn.fetch(
            _WINDOWS_SQL.format(kind=kind),
            _literal([k[0] for k in order]),
            _literal([k[1] for k in order]),
            _literal([windows[k].period_end for k in fresh_fast]),
            _literal([a.first_ts for a in sums]),
            _literal(totals),
            _literal([windows[k].records for k in fast]),
            _literal(maxes),
            _literal([a.last_ts for a in sums]),
            _literal(lasts),
            now_s(),
            len(fresh_fast),
            len(fast),
            len(order),
        )
        created.extend(fresh_fast)
        created.extend(fresh_slow)
        states: dict[WindowKey, WindowState] = {}
        closed: set[WindowKey] = set()
        for r in rows:
            if r["item_pk"] is None:
                continue
            key = (r["item_pk"], r["period_start"])
            if r["closed"]:
                closed.add(key)
            else:
                states[key] = window_state(r)
        head = rows[0]
        if head["applied_i"] is None:  # every window was folded or read
            return [k for k in fast if k not in states and k not in closed], states, closed, []
        applied = set(zip(head["applied_i"], head["applied_s"], strict=True))
        missing = [k for k in keys if k not in applied and k not in states and k not in closed]
        return [k for k in fast if k in applied], states, closed, missing

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
            await _insert_empty_windows(conn, new, windows)
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
        fast: list[WindowKey],
        result: BatchResult,
    ) -> None:
        """Write the points of the windows folded in SQL (``fast``) and fold the windows
        read (``states``): their old points read where ``fold_ops`` needs them, then
        points, those windows and the stored offsets in one statement."""
        wanted_items: list[int] = []
        wanted_ts: list[int] = []
        for key, state in states.items():
            needed = points_to_read(state, windows[key].ops)
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
        for key in fast:
            delta = windows[key]
            ops = delta.ops
            p_items += [key[0]] * len(ops)
            p_ts += ops
            p_values += [op.value for op in ops.values()]
            result.records += delta.records
        recompute: list[WindowKey] = []
        for key, state in states.items():
            delta = windows[key]
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
        keys = sorted(states)
        totals = [states[k].total for k in keys]
        maxes = [states[k].max for k in keys]
        lasts = [states[k].last_quantity for k in keys]
        w_kind = _numeric_type(totals + maxes + lasts)
        await conn.execute(
            "WITH p AS (INSERT INTO usage_points (item_pk, ts, quantity)"
            f" SELECT * FROM unnest($1::text::bigint[], $2::text::bigint[], $3::text::{p_kind}[])"
            " ON CONFLICT (item_pk, ts) DO UPDATE SET quantity = EXCLUDED.quantity),"
            " w AS (UPDATE usage_windows w SET total = v.total, max = v.max, last_ts = v.lts,"
            " last_quantity = v.lq, records = v.n, updated = $11"
            f" FROM unnest($4::text::bigint[], $5::text::bigint[], $6::text::{w_kind}[],"
            f" $7::text::{w_kind}[], $8::text::bigint[], $9::text::{w_kind}[],"
            " $10::text::bigint[]) AS v(i, s, total, max, lts, lq, n)"
            " WHERE w.item_pk = v.i AND w.period_start = v.s) " + _offsets_update(12),
            _literal(p_items),
            _literal(p_ts),
            _literal(p_values),
            _literal([k[0] for k in keys]),
            _literal([k[1] for k in keys]),
            _literal(totals),
            _literal(maxes),
            _literal([states[k].last_ts for k in keys]),
            _literal(lasts),
            _literal([states[k].records for k in keys]),
            now_s(),
            self._group,
            self._topic,
            list(result.committed),
            list(result.committed.values()),
            now_s(),
        )
        result.points += len(p_ts)
        result.windows += len(keys) + len(fast)
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

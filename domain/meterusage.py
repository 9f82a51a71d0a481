"""Meter usage in Postgres: a customer's usage of a meter over time ranges, its events
(``event_page``), and cancelling an event. The aggregator writes the ledger and the buckets
(``aggregator/meters.py``); this module reads them and corrects them.

A range ``[start, end)`` is answered from the minute buckets wholly inside it plus the
counted events of the partial minutes at its edges (a range on minute boundaries reads
buckets only) — never by reading every event. An event counts when it has a value (it is
not a cancel that came before its event), is not cancelled and was not refused by the
aggregator.

Invoicing moves a customer's boundaries for a meter (``meter_closes``): when an invoice
billing the meter is marked closing, ``closing_until`` moves to its period end
(``mark_meters_closing``: ingest refuses earlier events once its meter cache drops); when it
is finalized, the boundary row is locked and ``closed_until`` moves too (``close_meters``:
the aggregator counts no earlier event), then the invoice measures the usage in the same
transaction. Boundaries only move forward.

A cancel (``cancel_event``) marks the event's ledger row and rebuilds its bucket from the
bucket's counted events. It locks the bucket row first, in its own statement, so the
rebuild reads every event the aggregator committed before it; an aggregator batch that
comes after waits for the lock and adds its own events to the rebuilt bucket. A cancel for
an identifier not seen yet writes a tombstone: the event, when it arrives, is recorded and
never counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import asyncpg

from domain.meters import BUCKET_S, Number, Stats, merge, timestamp_refusal
from domain.store.meters import bump_meter_epoch
from domain.tenant import Tenant
from infra.errors import InvalidRequest

__all__ = [
    "SEQ_INDEX_SPAN",
    "CancelOutcome",
    "EventPage",
    "RangeAsk",
    "cancel_event",
    "close_meters",
    "closing_boundaries",
    "customers_usage",
    "event_customers",
    "event_page",
    "mark_meters_closing",
    "range_stats",
]

SEQ_INDEX_SPAN = 1_000_000  # an event's arrival position: kafka_offset * span + kafka_index


@dataclass(frozen=True, slots=True)
class RangeAsk:
    """One customer's usage of one meter over ``[start, end)``."""

    meter_pk: int
    customer_pk: int
    start: int
    end: int


def _number(value: Any) -> Number:
    if value is None:
        return 0
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value.normalize()
    return int(value)


_ASKS = (
    "unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[])"
    " WITH ORDINALITY AS k(m, c, s, e, n)"
)

# The latest bucket with events holds the range's latest event (buckets are disjoint).
_BUCKETS = f"""
SELECT k.n, sum(b.total) AS total, sum(b.events) AS events, max(b.max) AS max,
       (array_agg(b.last_ts ORDER BY b.minute DESC) FILTER (WHERE b.events > 0))[1] AS lts,
       (array_agg(b.last_value ORDER BY b.minute DESC) FILTER (WHERE b.events > 0))[1] AS lv,
       (array_agg(b.last_seq ORDER BY b.minute DESC) FILTER (WHERE b.events > 0))[1] AS ls
FROM {_ASKS}
JOIN meter_buckets b ON b.meter_pk = k.m AND b.customer_pk = k.c
                    AND b.minute >= k.s AND b.minute < k.e
GROUP BY k.n
"""

_COUNTED = "v.value IS NOT NULL AND v.cancelled_at IS NULL AND v.rejected IS NULL"

_EDGES = f"""
SELECT k.n, v.ts, v.value, v.kafka_offset, v.kafka_index
FROM {_ASKS}
JOIN meter_events v ON v.meter_pk = k.m AND v.customer_pk = k.c AND v.ts >= k.s AND v.ts < k.e
WHERE {_COUNTED}
"""


async def _fetch_spans(
    conn: asyncpg.Connection[Any] | asyncpg.Pool,
    query: str,
    spans: Sequence[tuple[int, int, int, int, int]],
) -> list[asyncpg.Record]:
    """``query`` over ``(ask, meter, customer, start, end)`` spans, as ``_ASKS`` unnests them."""
    return list(
        await conn.fetch(
            query,
            [x[1] for x in spans],
            [x[2] for x in spans],
            [x[3] for x in spans],
            [x[4] for x in spans],
        )
    )


async def range_stats(
    conn: asyncpg.Connection[Any] | asyncpg.Pool, asks: Sequence[RangeAsk]
) -> list[Stats]:
    """The stats of each ask, in order: at most two queries however many asks."""
    out = [Stats() for _ in asks]
    inner: list[tuple[int, int, int, int, int]] = []  # (ask, meter, customer, lo, hi)
    edges: list[tuple[int, int, int, int, int]] = []
    for i, a in enumerate(asks):
        if a.end <= a.start:
            continue
        lo = -(-a.start // BUCKET_S) * BUCKET_S  # the first whole minute inside
        hi = a.end - a.end % BUCKET_S  # the end of the last whole minute inside
        if lo >= hi:
            edges.append((i, a.meter_pk, a.customer_pk, a.start, a.end))
            continue
        inner.append((i, a.meter_pk, a.customer_pk, lo, hi))
        if a.start < lo:
            edges.append((i, a.meter_pk, a.customer_pk, a.start, lo))
        if hi < a.end:
            edges.append((i, a.meter_pk, a.customer_pk, hi, a.end))
    if inner:
        for r in await _fetch_spans(conn, _BUCKETS, inner):
            if not r["events"]:
                continue
            merge(
                out[inner[r["n"] - 1][0]],
                Stats(
                    _number(r["total"]),
                    int(r["events"]),
                    _number(r["max"]),
                    r["lts"],
                    _number(r["lv"]),
                    int(r["ls"]),
                ),
            )
    if edges:
        for r in await _fetch_spans(conn, _EDGES, edges):
            value = _number(r["value"])
            seq = int(r["kafka_offset"] or 0) * SEQ_INDEX_SPAN + int(r["kafka_index"] or 0)
            merge(out[edges[r["n"] - 1][0]], Stats(value, 1, value, r["ts"], value, seq))
    return out


async def closing_boundaries(
    conn: asyncpg.Connection[Any] | asyncpg.Pool, pairs: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], int]:
    """``closing_until`` of each (meter, customer) pair that has one."""
    if not pairs:
        return {}
    rows = await conn.fetch(
        "SELECT c.meter_pk, c.customer_pk, c.closing_until FROM meter_closes c"
        " JOIN unnest($1::bigint[], $2::bigint[]) AS k(m, c) ON c.meter_pk = k.m"
        " AND c.customer_pk = k.c",
        [p[0] for p in pairs],
        [p[1] for p in pairs],
    )
    return {(r["meter_pk"], r["customer_pk"]): int(r["closing_until"]) for r in rows}


def _latest(bounds: Sequence[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(meter, customer, until) with one row per pair (the latest until), in key order: one
    statement may touch a row once, and rows locked in one order never deadlock."""
    latest: dict[tuple[int, int], int] = {}
    for meter_pk, customer_pk, until in bounds:
        key = (meter_pk, customer_pk)
        latest[key] = max(until, latest.get(key, until))
    return [(m, c, u) for (m, c), u in sorted(latest.items())]


async def mark_meters_closing(
    conn: asyncpg.Connection[Any], bounds: Sequence[tuple[int, int, int]], now: int
) -> None:
    """In the transaction marking invoices closing: each (meter, customer)'s
    ``closing_until`` becomes at least ``until`` (the invoice's period end), and the meter
    epoch is bumped so ingest's cached boundaries drop."""
    rows = _latest(bounds)
    if not rows:
        return
    await conn.execute(
        "INSERT INTO meter_closes (meter_pk, customer_pk, closing_until, updated)"
        " SELECT m, c, u, $4 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(m, c, u)"
        " ORDER BY m, c ON CONFLICT (meter_pk, customer_pk) DO UPDATE"
        " SET closing_until = greatest(meter_closes.closing_until, EXCLUDED.closing_until),"
        " updated = EXCLUDED.updated",
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        now,
    )
    await bump_meter_epoch(conn)


async def close_meters(
    conn: asyncpg.Connection[Any], bounds: Sequence[tuple[int, int, int]], now: int
) -> None:
    """In the finalizing transaction, before measuring: lock each (meter, customer)'s
    boundary row (``FOR UPDATE``: an aggregator batch counting its events waits, or is
    waited for), then move ``closed_until`` — and ``closing_until``, for an invoice finalized
    without being marked closing, bumping the meter epoch then — to at least ``until``."""
    rows = _latest(bounds)
    if not rows:
        return
    args = ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    await conn.execute(
        "INSERT INTO meter_closes (meter_pk, customer_pk, updated)"
        " SELECT m, c, $3 FROM unnest($1::bigint[], $2::bigint[]) AS v(m, c) ORDER BY m, c"
        " ON CONFLICT DO NOTHING",
        args[0],
        args[1],
        now,
    )
    locked = await conn.fetch(
        "SELECT c.meter_pk, c.customer_pk, c.closing_until FROM meter_closes c"
        " JOIN unnest($1::bigint[], $2::bigint[]) AS v(m, cu)"
        " ON c.meter_pk = v.m AND c.customer_pk = v.cu"
        " ORDER BY c.meter_pk, c.customer_pk FOR UPDATE OF c",
        args[0],
        args[1],
    )
    closing = {(r["meter_pk"], r["customer_pk"]): int(r["closing_until"]) for r in locked}
    await conn.execute(
        "UPDATE meter_closes c SET closed_until = greatest(c.closed_until, v.u),"
        " closing_until = greatest(c.closing_until, v.u), updated = $4"
        " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(m, cu, u)"
        " WHERE c.meter_pk = v.m AND c.customer_pk = v.cu",
        *args,
        now,
    )
    if any(closing.get((m, c), 0) < u for m, c, u in rows):
        await bump_meter_epoch(conn)


CancelOutcome = Literal["complete", "pending"]

_LATEST = "ORDER BY v.ts DESC, v.kafka_offset DESC, v.kafka_index DESC"

_REBUILD = f"""
UPDATE meter_buckets b SET total = coalesce(x.total, 0), events = x.n, max = x.max,
       last_ts = x.lts, last_value = x.lv, last_seq = x.ls, updated = $4
FROM (SELECT sum(v.value) AS total, count(*) AS n, max(v.value) AS max,
             (array_agg(v.ts {_LATEST}))[1] AS lts,
             (array_agg(v.value {_LATEST}))[1] AS lv,
             (array_agg(v.kafka_offset::numeric * $5 + v.kafka_index {_LATEST}))[1] AS ls
      FROM meter_events v
      WHERE v.meter_pk = $1 AND v.customer_pk = $2 AND v.ts >= $3 AND v.ts < $3 + 60
        AND {_COUNTED}) x
WHERE b.meter_pk = $1 AND b.customer_pk = $2 AND b.minute = $3
"""


async def cancel_event(
    conn: asyncpg.Connection[Any], meter_pk: int, identifier: str, now: int
) -> CancelOutcome:
    """Cancel the event ``identifier`` of a meter, in the caller's transaction.

    ``complete``: the event is (now, or already was) cancelled and out of its bucket;
    ``pending``: it has not arrived yet and will never count when it does.

    Raises:
        InvalidRequest: the event lies in a period already invoiced for its customer.
    """
    inserted = await conn.fetchval(
        "INSERT INTO meter_events (meter_pk, identifier, cancelled_at) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING RETURNING true",
        meter_pk,
        identifier,
        now,
    )
    if inserted:
        return "pending"
    row = await conn.fetchrow(
        "SELECT customer_pk, ts, value, cancelled_at, rejected FROM meter_events"
        " WHERE meter_pk = $1 AND identifier = $2 FOR UPDATE",
        meter_pk,
        identifier,
    )
    if row is None or row["value"] is None:
        return "pending"  # a tombstone already holds the identifier
    if row["cancelled_at"] is not None:
        return "complete"
    customer_pk, ts = int(row["customer_pk"]), int(row["ts"])
    boundary = await conn.fetchval(
        "SELECT closing_until FROM meter_closes WHERE meter_pk = $1 AND customer_pk = $2 FOR SHARE",
        meter_pk,
        customer_pk,
    )
    refusal = timestamp_refusal(ts, ts, int(boundary or 0), future_tolerance_s=0)
    if refusal is not None and refusal[0] == "timestamp_in_invoiced_period":
        raise InvalidRequest(
            f"event '{identifier}' cannot be cancelled: its {refusal[1]}",
            param="cancel.identifier",
            code="event_in_invoiced_period",
        )
    await conn.execute(
        "UPDATE meter_events SET cancelled_at = $3 WHERE meter_pk = $1 AND identifier = $2",
        meter_pk,
        identifier,
        now,
    )
    if row["rejected"] is not None:
        return "complete"  # never counted: no bucket to correct
    minute = ts - ts % BUCKET_S
    locked = await conn.fetchval(
        "SELECT true FROM meter_buckets WHERE meter_pk = $1 AND customer_pk = $2 AND minute = $3"
        " FOR UPDATE",
        meter_pk,
        customer_pk,
        minute,
    )
    if locked:
        await conn.execute(_REBUILD, meter_pk, customer_pk, minute, now, SEQ_INDEX_SPAN)
    return "complete"


async def customers_usage(
    db: asyncpg.Connection[Any] | asyncpg.Pool, meter_pk: int, start: int, end: int, *, limit: int
) -> list[tuple[str, Stats]]:
    """Each customer's stats over ``[start, end)`` (on minute boundaries: buckets only), for
    the customers with events in it, by customer id; at most ``limit``."""
    rows = await db.fetch(
        "SELECT c.id, sum(b.total) AS total, sum(b.events) AS events, max(b.max) AS max,"
        " (array_agg(b.last_ts ORDER BY b.minute DESC))[1] AS lts,"
        " (array_agg(b.last_value ORDER BY b.minute DESC))[1] AS lv,"
        " (array_agg(b.last_seq ORDER BY b.minute DESC))[1] AS ls"
        " FROM meter_buckets b JOIN customers c ON c.pk = b.customer_pk"
        " WHERE b.meter_pk = $1 AND b.minute >= $2 AND b.minute < $3 AND b.events > 0"
        " GROUP BY c.id ORDER BY c.id LIMIT $4",
        meter_pk,
        start,
        end,
        limit,
    )
    return [
        (
            r["id"],
            Stats(
                _number(r["total"]),
                int(r["events"]),
                _number(r["max"]),
                r["lts"],
                _number(r["lv"]),
                int(r["ls"]),
            ),
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of a customer's events of a meter, newest first."""

    rows: list[asyncpg.Record]
    has_more: bool


async def event_page(
    db: asyncpg.Connection[Any] | asyncpg.Pool,
    meter_pk: int,
    customer_pk: int,
    *,
    limit: int,
    starting_after: str | None,
) -> EventPage:
    """A customer's events of a meter — counted, cancelled or rejected — newest timestamp
    first (ties: identifier, descending), after the event ``starting_after`` (an identifier
    in the same list). A cancel whose event has not arrived is not an event yet: not listed.

    Raises:
        InvalidRequest: ``starting_after`` is no event of this list.
    """
    args: list[Any] = [meter_pk, customer_pk]
    after = ""
    if starting_after is not None:
        anchor = await db.fetchval(
            "SELECT ts FROM meter_events WHERE meter_pk = $1 AND customer_pk = $2"
            " AND identifier = $3 AND value IS NOT NULL",
            meter_pk,
            customer_pk,
            starting_after,
        )
        if anchor is None:
            raise InvalidRequest(
                f"startingAfter: no event '{starting_after}' in this list",
                param="startingAfter",
            )
        args += [anchor, starting_after]
        after = " AND (ts, identifier) < ($3, $4)"
    args.append(limit + 1)
    rows = await db.fetch(
        "SELECT identifier, ts, value, accepted_at, cancelled_at, rejected FROM meter_events"
        f" WHERE meter_pk = $1 AND customer_pk = $2 AND value IS NOT NULL{after}"
        f" ORDER BY ts DESC, identifier DESC LIMIT ${len(args)}",
        *args,
    )
    return EventPage(list(rows[:limit]), len(rows) > limit)


async def event_customers(
    db: asyncpg.Connection[Any] | asyncpg.Pool, t: Tenant, pairs: Sequence[tuple[int, str]]
) -> list[asyncpg.Record]:
    """For each (meter pk, customer id) whose customer is this account and mode's (others are
    absent): meter_pk, customer_id, customer_pk, the meter's closing boundary for the
    customer (0 when none) and ``clock_now``, the latest frozen time of a test clock one of
    the customer's subscriptions runs on (NULL when none). One query for a whole batch."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT q.meter_pk, c.id AS customer_id, c.pk AS customer_pk,"
        " COALESCE(mc.closing_until, 0) AS closing_until,"
        " (SELECT max(tc.frozen_time) FROM subscriptions s"
        "  JOIN test_clocks tc ON tc.id = s.test_clock_id WHERE s.customer_pk = c.pk) AS clock_now"
        " FROM unnest($3::bigint[], $4::text[]) AS q(meter_pk, customer_id)"
        " JOIN customers c ON c.account_id = $1 AND c.livemode = $2 AND c.id = q.customer_id"
        " LEFT JOIN meter_closes mc ON mc.meter_pk = q.meter_pk AND mc.customer_pk = c.pk",
        t.account_id,
        t.livemode,
        [m for m, _ in pairs],
        [c for _, c in pairs],
    )
    return rows

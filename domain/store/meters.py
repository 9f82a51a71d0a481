"""Storage of meters and usage alerts: every statement on ``meters``, ``billing_alerts``,
``billing_alert_triggers`` and ``meter_epoch``.

The control plane writes meters and alerts; the ingest reads meters by their event name and
the customers events name (with their closing boundaries and test clocks), the
invoicer by its key, the aggregator the alerts that watch a meter. ``meter_epoch`` is bumped
in the transaction of every change the ingest caches about meters (a meter's status, a
customer's invoiced boundary, a test clock's time); each API process polls it and drops its
meter caches when it moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg

from domain.tenant import Tenant

__all__ = [
    "active_meter_by_event",
    "active_meters_by_event",
    "bump_meter_epoch",
    "event_customers",
    "meter_by_id",
    "meter_epoch",
    "meter_ids",
]

Db: TypeAlias = "asyncpg.Pool | asyncpg.Connection[Any]"


async def meter_by_id(db: Db, t: Tenant, meter_id: str) -> asyncpg.Record | None:
    """This account and mode's meter ``meter_id``, any status."""
    return await db.fetchrow(
        "SELECT * FROM meters WHERE id = $1 AND account_id = $2 AND livemode = $3",
        meter_id,
        t.account_id,
        t.livemode,
    )


async def active_meter_by_event(db: Db, t: Tenant, event_name: str) -> asyncpg.Record | None:
    """The active meter events named ``event_name`` land in (at most one)."""
    return await db.fetchrow(
        "SELECT * FROM meters WHERE account_id = $1 AND livemode = $2 AND event_name = $3"
        " AND status = 'active'",
        t.account_id,
        t.livemode,
        event_name,
    )


async def meter_ids(db: Db, pks: Sequence[int]) -> dict[int, str]:
    """Meter key → meter id, for rendering what refers to meters by key."""
    if not pks:
        return {}
    rows = await db.fetch("SELECT pk, id FROM meters WHERE pk = ANY($1::bigint[])", list(pks))
    return {r["pk"]: r["id"] for r in rows}


async def bump_meter_epoch(conn: asyncpg.Connection[Any]) -> None:
    """In the writing transaction: API processes drop their meter caches once it commits."""
    await conn.execute("UPDATE meter_epoch SET epoch = epoch + 1")


async def meter_epoch(db: Db) -> int:
    return int(await db.fetchval("SELECT epoch FROM meter_epoch"))


# -- the ingest's reads -------------------------------------------------------------------


async def active_meters_by_event(
    db: Db, t: Tenant, event_names: Sequence[str]
) -> list[asyncpg.Record]:
    """The active meters events with these names land in (one query for a batch): pk, id,
    event_name, formula, customer_key, value_key."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT pk, id, event_name, formula, customer_key, value_key FROM meters"
        " WHERE account_id = $1 AND livemode = $2 AND event_name = ANY($3::text[])"
        " AND status = 'active'",
        t.account_id,
        t.livemode,
        list(event_names),
    )
    return rows


async def event_customers(
    db: Db, t: Tenant, pairs: Sequence[tuple[int, str]]
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

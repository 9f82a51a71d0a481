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

from domain.objects import render_alert, render_meter
from domain.store.owned import page
from domain.tenant import Tenant

__all__ = [
    "ACTIVE_EVENT_INDEX",
    "active_meter_by_event",
    "active_meters_by_event",
    "alert_by_id",
    "alert_page",
    "bump_meter_epoch",
    "insert_alert",
    "insert_meter",
    "locked_meter",
    "meter_by_id",
    "meter_epoch",
    "meter_ids",
    "meter_page",
    "rename_meter",
    "set_alert_status",
    "set_meter_status",
]

# The unique index that keeps one active meter per event name, account and mode: a write
# that breaks it raises ``asyncpg.UniqueViolationError`` with this ``constraint_name``.
ACTIVE_EVENT_INDEX = "meters_active_event"

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


async def insert_meter(
    conn: asyncpg.Connection[Any],
    t: Tenant,
    *,
    meter_id: str,
    display_name: str,
    event_name: str,
    formula: str,
    customer_key: str,
    value_key: str,
    now: int,
) -> asyncpg.Record:
    """The new active meter's row. In a savepoint of its own, so that the caller's
    transaction survives ``asyncpg.UniqueViolationError`` (``ACTIVE_EVENT_INDEX``: another
    active meter has the event name) and can name the other meter."""
    async with conn.transaction():
        row: asyncpg.Record = await conn.fetchrow(
            "INSERT INTO meters (id, account_id, livemode, display_name, event_name, formula,"
            " customer_key, value_key, status, created, updated)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $9) RETURNING *",
            meter_id,
            t.account_id,
            t.livemode,
            display_name,
            event_name,
            formula,
            customer_key,
            value_key,
            now,
        )
    return row


async def meter_page(
    db: asyncpg.Pool, t: Tenant, *, limit: int, starting_after: str | None, status: str | None
) -> dict[str, Any]:
    """A page of this account and mode's meters, newest first, of one status or all."""
    where, args = ("", ()) if status is None else (" AND t.status = $3", (status,))
    return await page(
        db,
        table="meters",
        t=t,
        limit=limit,
        starting_after=starting_after,
        url="/v1/billing/meters",
        render=render_meter,
        where=where,
        args=args,
    )


async def rename_meter(
    conn: asyncpg.Connection[Any], t: Tenant, meter_id: str, display_name: str, now: int
) -> asyncpg.Record | None:
    """The meter renamed, or None when it is not this account and mode's. ``updated`` moves
    on an active meter only: on an inactive one it is the time it was deactivated
    (``statusTransitions.deactivatedAt``), which a rename does not change."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "UPDATE meters SET display_name = $4,"
        " updated = CASE WHEN status = 'active' THEN $5 ELSE updated END"
        " WHERE id = $1 AND account_id = $2 AND livemode = $3 RETURNING *",
        meter_id,
        t.account_id,
        t.livemode,
        display_name,
        now,
    )
    return row


async def set_meter_status(
    conn: asyncpg.Connection[Any], pk: int, status: str, now: int
) -> asyncpg.Record:
    """The meter ``pk`` (which the caller holds locked) in ``status`` since ``now``. In a
    savepoint: reactivating raises ``asyncpg.UniqueViolationError`` (``ACTIVE_EVENT_INDEX``)
    when another meter took the event name meanwhile, and the caller's transaction goes on."""
    async with conn.transaction():
        row: asyncpg.Record = await conn.fetchrow(
            "UPDATE meters SET status = $2, updated = $3 WHERE pk = $1 RETURNING *",
            pk,
            status,
            now,
        )
    return row


async def locked_meter(
    conn: asyncpg.Connection[Any], t: Tenant, meter_id: str
) -> asyncpg.Record | None:
    """This account and mode's meter ``meter_id``, locked for a change of its status."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM meters WHERE id = $1 AND account_id = $2 AND livemode = $3 FOR UPDATE",
        meter_id,
        t.account_id,
        t.livemode,
    )
    return row


# ---- usage alerts ---------------------------------------------------------------------------

# An alert with the ids of its meter and customer, as ``domain.objects.render_alert`` takes
# them (a customer id is unique only within its account and mode: joined by key). ``{src}``
# is the table, or a statement's RETURNING rows.
_WITH_IDS = (
    "SELECT a.*, m.id AS meter_id, c.id AS customer_id FROM {src} a"
    " JOIN meters m ON m.pk = a.meter_pk LEFT JOIN customers c ON c.pk = a.customer_pk"
)
_ALERTS = "(" + _WITH_IDS.format(src="billing_alerts") + ")"


async def insert_alert(
    conn: asyncpg.Connection[Any],
    t: Tenant,
    *,
    alert_id: str,
    title: str,
    meter_pk: int,
    customer_pk: int | None,
    gte: int,
    recurrence: str,
    now: int,
) -> asyncpg.Record:
    """The new active alert, with ``meter_id`` and ``customer_id``."""
    row: asyncpg.Record = await conn.fetchrow(
        "WITH n AS (INSERT INTO billing_alerts (id, account_id, livemode, title, meter_pk,"
        " customer_pk, gte, recurrence, status, created)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9) RETURNING *) "
        + _WITH_IDS.format(src="n"),
        alert_id,
        t.account_id,
        t.livemode,
        title,
        meter_pk,
        customer_pk,
        gte,
        recurrence,
        now,
    )
    return row


async def alert_by_id(
    db: Db, t: Tenant, alert_id: str, *, for_update: bool = False
) -> asyncpg.Record | None:
    """This account and mode's alert ``alert_id``, with ``meter_id`` and ``customer_id``
    (locked for a change of its status with ``for_update``)."""
    row: asyncpg.Record | None = await db.fetchrow(
        _WITH_IDS.format(src="billing_alerts")
        + " WHERE a.id = $1 AND a.account_id = $2 AND a.livemode = $3"
        + (" FOR UPDATE OF a" if for_update else ""),
        alert_id,
        t.account_id,
        t.livemode,
    )
    return row


async def alert_page(
    db: asyncpg.Pool, t: Tenant, *, limit: int, starting_after: str | None, meter: str | None
) -> dict[str, Any]:
    """A page of this account and mode's alerts, newest first, of one meter or all."""
    where, args = ("", ()) if meter is None else (" AND t.meter_id = $3", (meter,))
    return await page(
        db,
        table=_ALERTS,
        t=t,
        limit=limit,
        starting_after=starting_after,
        url="/v1/billing/alerts",
        render=lambda r: render_alert(r, meter_id=r["meter_id"], customer_id=r["customer_id"]),
        where=where,
        args=args,
    )


async def set_alert_status(conn: asyncpg.Connection[Any], pk: int, status: str) -> asyncpg.Record:
    """The alert ``pk`` (which the caller holds locked) in ``status``."""
    row: asyncpg.Record = await conn.fetchrow(
        "WITH n AS (UPDATE billing_alerts SET status = $2 WHERE pk = $1 RETURNING *) "
        + _WITH_IDS.format(src="n"),
        pk,
        status,
    )
    return row


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

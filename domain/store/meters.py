"""Storage of meters and usage alerts: every statement on ``meters``, ``billing_alerts``,
``billing_alert_triggers`` and ``meter_epoch``.

The control plane writes meters and alerts; the ingest reads a meter by its event name, the
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
    "bump_meter_epoch",
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

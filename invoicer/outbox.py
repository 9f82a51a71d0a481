"""Many outbox events in one transaction: the bulk twin of ``vinr.events.emit_event``.

The invoicer writes thousands of events per second (SPEC §6), so it cannot afford two
statements per event. These are the same rows ``emit_event`` writes — the event, and one
pending delivery per enabled endpoint subscribed to its type (same delivery id scheme) —
in two statements for the whole list. Call inside the state change's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from vinr.clock import now_s
from vinr.ids import new_id

__all__ = ["Event", "emit_events"]


@dataclass(frozen=True, slots=True)
class Event:
    account_id: str
    livemode: bool
    type: str
    data: dict[str, Any]


async def emit_events(conn: asyncpg.Connection[Any], events: list[Event]) -> list[str]:
    """Insert the events (in list order) and their deliveries; returns the event ids."""
    if not events:
        return []
    ids = [new_id("evt") for _ in events]
    created = now_s()
    accounts = [e.account_id for e in events]
    modes = [e.livemode for e in events]
    types = [e.type for e in events]
    await conn.execute(
        "INSERT INTO events (id, account_id, livemode, type, data, created)"
        " SELECT i, a, l, t, d, $6 FROM unnest($1::text[], $2::text[], $3::bool[],"
        " $4::text[], $5::jsonb[]) WITH ORDINALITY AS v(i, a, l, t, d, n) ORDER BY n",
        ids, accounts, modes, types, [e.data for e in events], created)
    await conn.execute(
        "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, next_attempt_at, created)"
        " SELECT 'whd_' || md5(v.i || e.id), v.i, e.id, extract(epoch from clock_timestamp()),"
        " $5 FROM unnest($1::text[], $2::text[], $3::bool[], $4::text[]) AS v(i, a, l, t)"
        " JOIN webhook_endpoints e ON e.account_id = v.a AND e.livemode = v.l"
        " AND e.status <> 'disabled' AND (v.t = ANY(e.enabled_events)"
        " OR '*' = ANY(e.enabled_events))",
        ids, accounts, modes, types, created)
    return ids

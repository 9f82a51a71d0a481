"""The outbox: events are written in the caller's transaction, with one pending delivery per
enabled endpoint subscribed to the event's type, so a committed change always has its event
and its deliveries, and a rolled-back one has neither.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from vinr.clock import now_s
from vinr.ids import new_id

__all__ = ["EVENT_TYPES", "emit_event"]

EVENT_TYPES = frozenset({
    "customer.created", "customer.updated",
    "customer.subscription.created", "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_failed",
    "invoice.payment_succeeded", "invoice.marked_uncollectible",
    "charge.succeeded", "charge.failed",
    "test_helpers.test_clock.advanced",
    "usage_record.dead_lettered",
    "webhook_endpoint.disabled",
})


async def emit_event(
    conn: asyncpg.Connection[Any], account_id: str, livemode: bool, event_type: str,
    data: dict[str, Any],
) -> str:
    """Insert the event and its deliveries; call inside the state change's transaction."""
    event_id = new_id("evt")
    created = now_s()
    await conn.execute(
        "INSERT INTO events (id, account_id, livemode, type, data, created)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        event_id, account_id, livemode, event_type, data, created,
    )
    await conn.execute(
        "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, next_attempt_at, created)"
        " SELECT 'whd_' || md5($1 || e.id), $1, e.id, extract(epoch from clock_timestamp()), $5"
        " FROM webhook_endpoints e"
        " WHERE e.account_id = $2 AND e.livemode = $3 AND e.status <> 'disabled'"
        "   AND ($4 = ANY(e.enabled_events) OR '*' = ANY(e.enabled_events))",
        event_id, account_id, livemode, event_type, created,
    )
    return event_id

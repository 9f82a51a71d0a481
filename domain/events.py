"""The outbox: events are written in the caller's transaction, with one pending delivery per
enabled endpoint subscribed to the event's type, so a committed change always has its event
and its deliveries, and a rolled-back one has neither. ``emit_events`` writes many in one
``COPY`` and one statement (the invoicer emits thousands a second), each distinct payload
rendered once; ``emit_event`` is the one-event case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from domain.clock import now_s
from domain.store import webhooks as store
from infra.ids import new_id

__all__ = ["EVENT_TYPES", "Event", "emit_event", "emit_events"]

EVENT_TYPES = frozenset(
    {
        "customer.created",
        "customer.updated",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_failed",
        "invoice.payment_succeeded",
        "invoice.marked_uncollectible",
        "charge.succeeded",
        "charge.failed",
        "billing.alert.triggered",
        "test_helpers.test_clock.advanced",
        "usage_record.dead_lettered",
        "webhook_endpoint.disabled",
    }
)


@dataclass(frozen=True, slots=True)
class Event:
    account_id: str
    livemode: bool
    type: str
    data: dict[str, Any]


async def emit_events(
    conn: asyncpg.Connection[Any], events: list[Event], *, ids: list[str] | None = None
) -> list[str]:
    """Insert the events (in list order) and their deliveries; returns the event ids —
    ``ids`` when given (a caller that records them in the same transaction, beforehand)."""
    if not events:
        return []
    if ids is None:
        ids = [new_id("evt") for _ in events]
    elif len(ids) != len(events):
        raise ValueError("one id per event")
    # One payload per distinct object: events built from the same rendering share it.
    index: dict[int, int] = {}
    payloads: list[dict[str, Any]] = []
    payload_of = []
    for e in events:
        k = index.setdefault(id(e.data), len(payloads))
        if k == len(payloads):
            payloads.append(e.data)
        payload_of.append(k)
    await store.insert_outbox(
        conn,
        ids=ids,
        accounts=[e.account_id for e in events],
        modes=[e.livemode for e in events],
        types=[e.type for e in events],
        payloads=payloads,
        payload_of=payload_of,
        created=now_s(),
    )
    return ids


async def emit_event(
    conn: asyncpg.Connection[Any],
    account_id: str,
    livemode: bool,
    event_type: str,
    data: dict[str, Any],
) -> str:
    """Insert one event and its deliveries; call inside the state change's transaction."""
    (event_id,) = await emit_events(conn, [Event(account_id, livemode, event_type, data)])
    return event_id

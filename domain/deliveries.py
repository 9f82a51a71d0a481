"""Webhook deliveries as the API and the Dashboard show them, and resending an event: one
copy of each rule for both (the control plane's ``/v1/events/{id}/deliveries`` and
``/resend``, the Dashboard's webhook page and its Resend button)."""

from __future__ import annotations

from typing import Any

import asyncpg

from domain.clock import now_s
from domain.objects import render_delivery
from domain.store import webhooks as store
from domain.store.owned import found
from domain.store.webhooks import Db
from domain.tenant import Tenant
from infra.errors import InvalidRequest

__all__ = ["endpoint_deliveries", "event_deliveries", "event_or_404", "resend"]


async def event_or_404(db: Db, t: Tenant, event_id: str) -> asyncpg.Record:
    """The tenant's event's id and type, or the 404 naming it."""
    return found(await store.event_head(db, t, event_id), what="event", ident=event_id)


async def event_deliveries(
    db: Db,
    event_id: str,
    *,
    endpoints: list[str] | None = None,
    limit: int = 100,
    starting_after: str | None = None,
) -> dict[str, Any]:
    """One event's deliveries (one per endpoint), ordered by id, each with its attempts."""
    rows = await store.deliveries(
        db, event_id, endpoints=endpoints, starting_after=starting_after, limit=limit + 1
    )
    attempts = await store.attempts(db, [r["id"] for r in rows[:limit]]) if rows else {}
    return {
        "object": "list",
        "url": f"/v1/events/{event_id}/deliveries",
        "hasMore": len(rows) > limit,
        "data": [render_delivery(r, attempts.get(r["id"], [])) for r in rows[:limit]],
    }


async def endpoint_deliveries(db: Db, t: Tenant, endpoint_id: str, limit: int) -> list[Any]:
    """The endpoint's most recent deliveries, newest first, each rendered with its attempts
    and its event's ``type`` as ``eventType``; 404 for an endpoint the tenant does not have."""
    found(await store.live_endpoint(db, t, endpoint_id), what="webhook endpoint", ident=endpoint_id)
    rows = await store.recent_deliveries(db, endpoint_id, limit)
    attempts = await store.attempts(db, [r["id"] for r in rows]) if rows else {}
    return [
        render_delivery(r, attempts.get(r["id"], [])) | {"eventType": r["event_type"]} for r in rows
    ]


async def resend(
    conn: asyncpg.Connection[Any], t: Tenant, event_id: str, endpoint_id: str | None
) -> list[str]:
    """Queue the event again, due now: to one endpoint (``webhookEndpoint``; not a disabled
    one), or to every enabled (or failing) endpoint subscribed to its type. A delivery keeps
    its id and attempt history; its 3-day retry window starts again. Returns the endpoints.
    Run inside the caller's transaction."""
    event = await event_or_404(conn, t, event_id)
    if endpoint_id is not None:
        endpoint = found(
            await store.live_endpoint(conn, t, endpoint_id),
            what="webhook endpoint",
            ident=endpoint_id,
            param="webhookEndpoint",
        )
        if endpoint["status"] == "disabled":
            raise InvalidRequest(
                f"webhook endpoint {endpoint['id']} is disabled; enable it first",
                param="webhookEndpoint",
                code="endpoint_disabled",
            )
        targets = [endpoint["id"]]
    else:
        targets = await store.subscribed_endpoints(conn, t, event["type"])
    await store.requeue_deliveries(conn, event_id, targets, now_s())
    return targets

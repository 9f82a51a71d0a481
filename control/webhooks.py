"""Events, webhook endpoints and their deliveries.

Endpoint status: ``enabled``; ``disabled`` by the caller (no new deliveries, pending ones
canceled); ``failing`` when the dispatcher gave up on a delivery after 3 days — a failing
endpoint still receives new events and returns to ``enabled`` on its next success. A deleted
endpoint is kept disabled and hidden, so its deliveries stay listed on their events.
"""

from __future__ import annotations

from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Query, Request
from pydantic import Field

from control.common import (
    ApiModel,
    HttpUrlAsWritten,
    Json,
    StartingAfter,
    fetch_or_404,
    fetch_owned,
    page,
    services,
    tenant,
)
from domain.accounts import Tenant
from domain.clock import now_s
from domain.events import EVENT_TYPES
from domain.objects import render_event, render_webhook_endpoint
from infra.errors import InvalidRequest, NotFound
from infra.ids import new_id, new_secret

__all__ = ["SECRET_ROLL_GRACE_S", "router"]

router = APIRouter(tags=["webhooks"])

# How long the replaced secret keeps signing deliveries after a roll.
SECRET_ROLL_GRACE_S = 86_400

_LIVE_ENDPOINT = (
    "SELECT * FROM webhook_endpoints WHERE id = $1 AND account_id = $2 AND livemode = $3"
    " AND deleted_at IS NULL"
)


def _check_event_types(names: list[str]) -> None:
    for i, name in enumerate(names):
        if name != "*" and name not in EVENT_TYPES:
            raise InvalidRequest(
                f"unknown event type '{name}'; use '*' or one of: "
                + ", ".join(sorted(EVENT_TYPES)),
                param=f"enabledEvents[{i}]",
            )


@router.get("/v1/events/{event_id}")
async def get_event(event_id: str, request: Request) -> Json:
    t, s = tenant(request), services(request)
    row = await fetch_owned(s.pool, "events", t, event_id, what="event")
    return Json(render_event(row))


@router.get("/v1/events")
async def list_events(
    request: Request,
    limit: int = 10,
    starting_after: StartingAfter = None,
    type: str | None = None,
) -> Json:
    t, s = tenant(request), services(request)
    where, args = ("", []) if type is None else (" AND t.type = $3", [type])
    return Json(
        await page(
            s.pool,
            table="events",
            t=t,
            limit=limit,
            starting_after=starting_after,
            url="/v1/events",
            render=render_event,
            where=where,
            args=args,
        )
    )


def _render_delivery(row: asyncpg.Record, attempts: list[asyncpg.Record]) -> dict[str, Any]:
    pending = row["status"] == "pending"
    return {
        "id": row["id"],
        "object": "webhook_delivery",
        "created": row["created"],
        "livemode": row["livemode"],
        "event": row["event_id"],
        "webhookEndpoint": row["endpoint_id"],
        "url": row["url"],
        "status": row["status"],
        "attemptCount": row["attempts"],
        "nextAttemptAt": int(row["next_attempt_at"]) if pending else None,
        "firstAttemptAt": row["first_attempt_at"],
        "deliveredAt": row["delivered_at"],
        "lastStatusCode": row["last_status_code"],
        "lastError": row["last_error"],
        "attempts": {
            "object": "list",
            "hasMore": False,
            "data": [
                {
                    "attempt": a["attempt"],
                    "statusCode": a["status_code"],
                    "error": a["error"],
                    "durationMs": a["duration_ms"],
                    "created": a["created"],
                }
                for a in attempts
            ],
        },
    }


async def _deliveries(
    db: asyncpg.Pool | asyncpg.Connection[Any],
    event_id: str,
    *,
    endpoints: list[str] | None = None,
    limit: int = 100,
    starting_after: str | None = None,
) -> dict[str, Any]:
    """One event's deliveries (one per endpoint), ordered by id, each with its attempts."""
    rows = await db.fetch(
        "SELECT d.*, e.livemode, w.url FROM webhook_deliveries d"
        " JOIN events e ON e.id = d.event_id JOIN webhook_endpoints w ON w.id = d.endpoint_id"
        " WHERE d.event_id = $1 AND ($2::text[] IS NULL OR d.endpoint_id = ANY($2::text[]))"
        "   AND ($3::text IS NULL OR d.id > $3) ORDER BY d.id LIMIT $4",
        event_id,
        endpoints,
        starting_after,
        limit + 1,
    )
    attempts: dict[str, list[asyncpg.Record]] = {}
    if rows:
        for a in await db.fetch(
            "SELECT * FROM webhook_attempts WHERE delivery_id = ANY($1::text[])"
            " ORDER BY delivery_id, attempt",
            [r["id"] for r in rows[:limit]],
        ):
            attempts.setdefault(a["delivery_id"], []).append(a)
    return {
        "object": "list",
        "url": f"/v1/events/{event_id}/deliveries",
        "hasMore": len(rows) > limit,
        "data": [_render_delivery(r, attempts.get(r["id"], [])) for r in rows[:limit]],
    }


async def _event_or_404(
    db: asyncpg.Pool | asyncpg.Connection[Any], t: Tenant, event_id: str
) -> asyncpg.Record:
    return await fetch_or_404(
        db,
        "SELECT id, type FROM events WHERE id = $1 AND account_id = $2 AND livemode = $3",
        event_id,
        t.account_id,
        t.livemode,
        what="event",
        ident=event_id,
    )


@router.get("/v1/events/{event_id}/deliveries")
async def list_deliveries(
    event_id: str,
    request: Request,
    limit: int = 10,
    starting_after: StartingAfter = None,
    webhook_endpoint: str | None = Query(default=None, alias="webhookEndpoint"),
) -> Json:
    """The event's deliveries, one per endpoint it was sent to, with every attempt."""
    t, s = tenant(request), services(request)
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit must be between 1 and 100", param="limit")
    await _event_or_404(s.pool, t, event_id)
    endpoints = None if webhook_endpoint is None else [webhook_endpoint]
    return Json(
        await _deliveries(
            s.pool, event_id, endpoints=endpoints, limit=limit, starting_after=starting_after
        )
    )


class ResendIn(ApiModel):
    webhookEndpoint: str | None = Field(default=None, max_length=255)


@router.post("/v1/events/{event_id}/resend")
async def resend_event(event_id: str, request: Request, body: ResendIn | None = None) -> Json:
    """Queue the event again, due now: to one endpoint, or to every enabled (or failing)
    endpoint subscribed to its type. A delivery keeps its id and attempt history; its
    3-day retry window starts again."""
    t, s = tenant(request), services(request)
    async with s.pool.acquire() as conn, conn.transaction():
        event = await _event_or_404(conn, t, event_id)
        chosen = body.webhookEndpoint if body is not None else None
        if chosen is not None:
            endpoint = await fetch_or_404(
                conn,
                _LIVE_ENDPOINT,
                chosen,
                t.account_id,
                t.livemode,
                what="webhook endpoint",
                ident=chosen,
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
            targets = [
                r["id"]
                for r in await conn.fetch(
                    "SELECT id FROM webhook_endpoints WHERE account_id = $1 AND livemode = $2"
                    " AND status <> 'disabled' AND deleted_at IS NULL"
                    " AND ($3 = ANY(enabled_events) OR '*' = ANY(enabled_events))",
                    t.account_id,
                    t.livemode,
                    event["type"],
                )
            ]
        await conn.execute(
            "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, next_attempt_at, created)"
            " SELECT 'whd_' || md5($1 || w), $1, w, extract(epoch from clock_timestamp()), $3"
            " FROM unnest($2::text[]) AS w"
            " ON CONFLICT (event_id, endpoint_id) DO UPDATE SET status = 'pending',"
            "   next_attempt_at = excluded.next_attempt_at, first_attempt_at = NULL,"
            "   delivered_at = NULL",
            event_id,
            targets,
            now_s(),
        )
        listing = await _deliveries(conn, event_id, endpoints=targets, limit=max(1, len(targets)))
    return Json(listing)


class EndpointCreate(ApiModel):
    url: HttpUrlAsWritten
    enabledEvents: list[str] = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)


class EndpointUpdate(ApiModel):
    url: HttpUrlAsWritten | None = None
    enabledEvents: list[str] | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    status: Literal["enabled", "disabled"] | None = None


@router.post("/v1/webhook_endpoints")
async def create_endpoint(body: EndpointCreate, request: Request) -> Json:
    t, s = tenant(request), services(request)
    _check_event_types(body.enabledEvents)
    row = await s.pool.fetchrow(
        "INSERT INTO webhook_endpoints (id, account_id, livemode, url, enabled_events, secret,"
        " description, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        new_id("we"),
        t.account_id,
        t.livemode,
        body.url,
        body.enabledEvents,
        new_secret("whsec"),
        body.description,
        now_s(),
    )
    return Json(render_webhook_endpoint(row, with_secret=True))


@router.get("/v1/webhook_endpoints")
async def list_endpoints(
    request: Request,
    limit: int = 10,
    starting_after: StartingAfter = None,
) -> Json:
    t, s = tenant(request), services(request)
    return Json(
        await page(
            s.pool,
            table="webhook_endpoints",
            t=t,
            limit=limit,
            starting_after=starting_after,
            url="/v1/webhook_endpoints",
            render=render_webhook_endpoint,
            where=" AND t.deleted_at IS NULL",
        )
    )


@router.get("/v1/webhook_endpoints/{endpoint_id}")
async def get_endpoint(endpoint_id: str, request: Request) -> Json:
    t, s = tenant(request), services(request)
    row = await fetch_or_404(
        s.pool,
        _LIVE_ENDPOINT,
        endpoint_id,
        t.account_id,
        t.livemode,
        what="webhook endpoint",
        ident=endpoint_id,
    )
    return Json(render_webhook_endpoint(row))


async def _cancel_pending(conn: asyncpg.Connection[Any], endpoint_id: str, why: str) -> None:
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'canceled', last_error = $2"
        " WHERE endpoint_id = $1 AND status = 'pending'",
        endpoint_id,
        why,
    )


@router.post("/v1/webhook_endpoints/{endpoint_id}")
async def update_endpoint(endpoint_id: str, body: EndpointUpdate, request: Request) -> Json:
    """Change ``url``, ``enabledEvents``, ``description`` or ``status`` (enabled/disabled).

    Disabling cancels the endpoint's pending deliveries (``POST /v1/events/{id}/resend``
    queues them again); enabling also clears ``failing``.
    """
    t, s = tenant(request), services(request)
    if body.enabledEvents is not None:
        _check_event_types(body.enabledEvents)
    async with s.pool.acquire() as conn, conn.transaction():
        await fetch_or_404(
            conn,
            _LIVE_ENDPOINT + " FOR UPDATE",
            endpoint_id,
            t.account_id,
            t.livemode,
            what="webhook endpoint",
            ident=endpoint_id,
        )
        row = await conn.fetchrow(
            "UPDATE webhook_endpoints SET url = coalesce($2, url),"
            " enabled_events = coalesce($3, enabled_events), status = coalesce($4, status),"
            " description = CASE WHEN $5 THEN $6 ELSE description END"
            " WHERE id = $1 RETURNING *",
            endpoint_id,
            body.url,
            body.enabledEvents,
            body.status,
            "description" in body.model_fields_set,
            body.description,
        )
        if body.status == "disabled":
            await _cancel_pending(conn, endpoint_id, "endpoint disabled")
    return Json(render_webhook_endpoint(row))


@router.delete("/v1/webhook_endpoints/{endpoint_id}")
async def delete_endpoint(endpoint_id: str, request: Request) -> Json:
    t, s = tenant(request), services(request)
    async with s.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE webhook_endpoints SET status = 'disabled', deleted_at = $4"
            " WHERE id = $1 AND account_id = $2 AND livemode = $3 AND deleted_at IS NULL"
            " RETURNING id",
            endpoint_id,
            t.account_id,
            t.livemode,
            now_s(),
        )
        if row is None:
            raise NotFound(f"no such webhook endpoint: '{endpoint_id}'", param="id")
        await _cancel_pending(conn, endpoint_id, "endpoint deleted")
    return Json({"id": endpoint_id, "object": "webhook_endpoint", "deleted": True})


@router.post("/v1/webhook_endpoints/{endpoint_id}/roll_secret")
async def roll_secret(endpoint_id: str, request: Request) -> Json:
    """A new secret, returned this once; the replaced one keeps signing for 24 h (deliveries
    carry a ``v1`` for each). Rolling again within 24 h retires the older one at once."""
    t, s = tenant(request), services(request)
    row = await s.pool.fetchrow(
        "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_expires = $5,"
        " secret = $4 WHERE id = $1 AND account_id = $2 AND livemode = $3"
        " AND deleted_at IS NULL RETURNING *",
        endpoint_id,
        t.account_id,
        t.livemode,
        new_secret("whsec"),
        now_s() + SECRET_ROLL_GRACE_S,
    )
    if row is None:
        raise NotFound(f"no such webhook endpoint: '{endpoint_id}'", param="id")
    return Json(render_webhook_endpoint(row, with_secret=True))

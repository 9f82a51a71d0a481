"""Events, webhook endpoints and their deliveries.

Endpoint status: ``enabled``; ``disabled`` by the caller (no new deliveries, pending ones
canceled); ``failing`` when the dispatcher gave up on a delivery after 3 days — a failing
endpoint still receives new events and returns to ``enabled`` on its next success. A deleted
endpoint is kept disabled and hidden, so its deliveries stay listed on their events.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query, Request
from pydantic import Field

from control.common import (
    ApiModel,
    HttpUrlAsWritten,
    Json,
    Limit,
    StartingAfter,
    Text,
    services,
    tenant,
)
from control.routing import api_router
from control.schemas import (
    DeletedWebhookEndpoint,
    Event,
    EventList,
    WebhookDeliveryList,
    WebhookEndpoint,
    WebhookEndpointList,
    WebhookEndpointWithSecret,
)
from domain import deliveries
from domain.clock import now_s
from domain.events import EVENT_TYPES
from domain.objects import render_event, render_webhook_endpoint
from domain.store import webhooks as store
from domain.store.owned import found, page
from domain.tenant import Tenant
from domain.webhook_targets import check_static, check_target
from infra.errors import InvalidRequest, NotFound
from infra.ids import new_id, new_secret
from infra.resolver import resolve

__all__ = ["SECRET_ROLL_GRACE_S", "router"]

router = api_router("webhooks")

# How long the replaced secret keeps signing deliveries after a roll.
SECRET_ROLL_GRACE_S = 86_400


def _check_event_types(names: list[str]) -> None:
    for i, name in enumerate(names):
        if name != "*" and name not in EVENT_TYPES:
            raise InvalidRequest(
                f"unknown event type '{name}'; use '*' or one of: "
                + ", ".join(sorted(EVENT_TYPES)),
                param=f"enabledEvents[{i}]",
            )


async def _check_url(url: str, t: Tenant) -> None:
    """Refuse a target the dispatcher would not send to. A live endpoint's name is resolved
    and every address must be public; in sandbox mode only what the URL itself says is
    checked here (the dispatcher checks the resolved addresses at every delivery)."""
    if t.livemode:
        verdict = await check_target(url, live=True, resolver=resolve)
    else:
        verdict = check_static(url, live=False)
    if verdict.refused is not None:
        raise InvalidRequest(
            f"webhook endpoint URL refused: {verdict.refused}. Live endpoints must use"
            " http or https and resolve only to public addresses; sandbox endpoints may"
            " also use local receivers (loopback or private addresses)",
            param="url",
        )


@router.get("/v1/events/{event_id}", response_model=Event)
async def get_event(event_id: str, request: Request) -> Json:
    t, s = tenant(request), services(request)
    row = found(await store.event(s.pool, t, event_id), what="event", ident=event_id)
    return Json(render_event(row))


@router.get("/v1/events", response_model=EventList)
async def list_events(
    request: Request,
    limit: Limit = 10,
    starting_after: StartingAfter = None,
    type: str | None = None,
) -> Json:
    t, s = tenant(request), services(request)
    listing = store.event_list(type)
    return Json(
        await page(
            s.pool,
            table=listing.table,
            t=t,
            limit=limit,
            starting_after=starting_after,
            url="/v1/events",
            render=render_event,
            where=listing.where,
            args=listing.args,
        )
    )


@router.get("/v1/events/{event_id}/deliveries", response_model=WebhookDeliveryList)
async def list_deliveries(
    event_id: str,
    request: Request,
    limit: Limit = 10,
    starting_after: StartingAfter = None,
    webhook_endpoint: Annotated[str | None, Query(alias="webhookEndpoint")] = None,
) -> Json:
    """The event's deliveries, one per endpoint it was sent to, with every attempt."""
    t, s = tenant(request), services(request)
    await deliveries.event_or_404(s.pool, t, event_id)
    endpoints = None if webhook_endpoint is None else [webhook_endpoint]
    return Json(
        await deliveries.event_deliveries(
            s.pool, event_id, endpoints=endpoints, limit=limit, starting_after=starting_after
        )
    )


class ResendIn(ApiModel):
    webhookEndpoint: Text | None = Field(default=None, max_length=255)


@router.post("/v1/events/{event_id}/resend", response_model=WebhookDeliveryList)
async def resend_event(event_id: str, request: Request, body: ResendIn | None = None) -> Json:
    """Queue the event again, due now: to one endpoint, or to every enabled (or failing)
    endpoint subscribed to its type. A delivery keeps its id and attempt history; its
    3-day retry window starts again."""
    t, s = tenant(request), services(request)
    chosen = body.webhookEndpoint if body is not None else None
    async with s.pool.acquire() as conn, conn.transaction():
        targets = await deliveries.resend(conn, t, event_id, chosen)
        listing = await deliveries.event_deliveries(
            conn, event_id, endpoints=targets, limit=max(1, len(targets))
        )
    return Json(listing)


# An event type or "*": checked against the list by ``_check_event_types`` (naming the
# entry at fault and the types there are).
EventName = Annotated[Text, Field(min_length=1, max_length=100)]


class EndpointCreate(ApiModel):
    url: HttpUrlAsWritten
    enabledEvents: list[EventName] = Field(min_length=1, max_length=100)
    description: Text | None = Field(default=None, max_length=500)


class EndpointUpdate(ApiModel):
    url: HttpUrlAsWritten | None = None
    enabledEvents: list[EventName] | None = Field(default=None, min_length=1, max_length=100)
    description: Text | None = Field(default=None, max_length=500)
    status: Literal["enabled", "disabled"] | None = None


@router.post("/v1/webhook_endpoints", response_model=WebhookEndpointWithSecret)
async def create_endpoint(body: EndpointCreate, request: Request) -> Json:
    t, s = tenant(request), services(request)
    _check_event_types(body.enabledEvents)
    await _check_url(body.url, t)
    row = await store.insert_endpoint(
        s.pool,
        t,
        endpoint_id=new_id("we"),
        url=body.url,
        enabled_events=body.enabledEvents,
        secret=new_secret("whsec"),
        description=body.description,
        created=now_s(),
    )
    return Json(render_webhook_endpoint(row, with_secret=True))


@router.get("/v1/webhook_endpoints", response_model=WebhookEndpointList)
async def list_endpoints(
    request: Request,
    limit: Limit = 10,
    starting_after: StartingAfter = None,
) -> Json:
    t, s = tenant(request), services(request)
    return Json(
        await page(
            s.pool,
            table=store.ENDPOINT_LIST.table,
            t=t,
            limit=limit,
            starting_after=starting_after,
            url="/v1/webhook_endpoints",
            render=render_webhook_endpoint,
            where=store.ENDPOINT_LIST.where,
            args=store.ENDPOINT_LIST.args,
        )
    )


@router.get("/v1/webhook_endpoints/{endpoint_id}", response_model=WebhookEndpoint)
async def get_endpoint(endpoint_id: str, request: Request) -> Json:
    t, s = tenant(request), services(request)
    row = found(
        await store.live_endpoint(s.pool, t, endpoint_id),
        what="webhook endpoint",
        ident=endpoint_id,
    )
    return Json(render_webhook_endpoint(row))


@router.post("/v1/webhook_endpoints/{endpoint_id}", response_model=WebhookEndpoint)
async def update_endpoint(endpoint_id: str, body: EndpointUpdate, request: Request) -> Json:
    """Change ``url``, ``enabledEvents``, ``description`` or ``status`` (enabled/disabled).

    Disabling cancels the endpoint's pending deliveries (``POST /v1/events/{id}/resend``
    queues them again); enabling also clears ``failing``.
    """
    t, s = tenant(request), services(request)
    if body.enabledEvents is not None:
        _check_event_types(body.enabledEvents)
    if body.url is not None:
        await _check_url(body.url, t)
    async with s.pool.acquire() as conn, conn.transaction():
        found(
            await store.live_endpoint(conn, t, endpoint_id, for_update=True),
            what="webhook endpoint",
            ident=endpoint_id,
        )
        row = await store.update_endpoint(
            conn,
            endpoint_id,
            url=body.url,
            enabled_events=body.enabledEvents,
            status=body.status,
            set_description="description" in body.model_fields_set,
            description=body.description,
        )
        if body.status == "disabled":
            await store.cancel_pending(conn, endpoint_id, "endpoint disabled")
    return Json(render_webhook_endpoint(row))


@router.delete("/v1/webhook_endpoints/{endpoint_id}", response_model=DeletedWebhookEndpoint)
async def delete_endpoint(endpoint_id: str, request: Request) -> Json:
    t, s = tenant(request), services(request)
    async with s.pool.acquire() as conn, conn.transaction():
        if not await store.delete_endpoint(conn, t, endpoint_id, now_s()):
            raise NotFound(f"no such webhook endpoint: '{endpoint_id}'", param="id")
        await store.cancel_pending(conn, endpoint_id, "endpoint deleted")
    return Json({"id": endpoint_id, "object": "webhook_endpoint", "deleted": True})


@router.post(
    "/v1/webhook_endpoints/{endpoint_id}/roll_secret", response_model=WebhookEndpointWithSecret
)
async def roll_secret(endpoint_id: str, request: Request) -> Json:
    """A new secret, returned this once; the replaced one keeps signing for 24 h (deliveries
    carry a ``v1`` for each). Rolling again within 24 h retires the older one at once."""
    t, s = tenant(request), services(request)
    row = found(
        await store.roll_secret(
            s.pool, t, endpoint_id, new_secret("whsec"), now_s() + SECRET_ROLL_GRACE_S
        ),
        what="webhook endpoint",
        ident=endpoint_id,
    )
    return Json(render_webhook_endpoint(row, with_secret=True))
